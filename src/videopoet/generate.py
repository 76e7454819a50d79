"""``videopoet generate``: a thin command over ``VideoPoetPipeline`` (prompt and media files in, an mp4 out).

Order of work: the arguments are checked (task, input files, length, size), then the output path(s)
(``outputs.check_output``: an existing file is refused without ``--overwrite``), and only then is the model
loaded and run; the result is written atomically through ``export_to_video`` / ``export_to_gif``. Every
problem is one line and exit status 2 through ``cli.main``'s error handling (UserError / ValueError /
OSError).

``--seconds S`` picks the clip length the tokenizers take, 1 + 4k frames at 8 fps, nearest to S seconds
(2.1 s → 17 frames, 0.6 s → 5 frames). text_to_image makes one frame; with ``--out F.png`` it is written as
a PNG, otherwise as a one-frame mp4.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from videopoet.errors import UserError

DEFAULT_FRAMES = 17
SUFFIXES = (".mp4", ".gif", ".png")
MAX_PROMPT_CHARS = 2000  # a prompt longer than this is a mistake (a file pasted by accident), not a caption


def frames_for_seconds(seconds: float, fps: float, temporal_factor: int) -> int:
    """The clip length 1 + factor·k (k ≥ 1) nearest to ``seconds`` at ``fps``; ValueError when none is."""
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"--seconds must be a positive number, got {seconds}")
    k = round((seconds * fps - 1) / temporal_factor)
    if k < 1:
        shortest = (1 + temporal_factor) / fps
        raise ValueError(
            f"--seconds {seconds:g} is shorter than the shortest clip ({1 + temporal_factor} frames = "
            f"{shortest:.2f} s at {fps:g} fps)"
        )
    return 1 + temporal_factor * k


def _resolve_task(name: str) -> str:
    from videopoet.lm import tasks
    from videopoet.pipeline import SUPPORTED_TASKS

    spec = tasks.task(name)  # ValueError naming the valid tasks
    if spec.name not in SUPPORTED_TASKS:
        valid = ", ".join(f"{n} ({tasks.task(n).alias})" for n in SUPPORTED_TASKS)
        raise ValueError(
            f"task {spec.name!r} is not supported by `videopoet generate` yet; use one of: {valid}"
        )
    return spec.name


def _input_file(path: str | None, flag: str) -> str | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{flag} {path}: no such file")
    return str(p)


def _check_args(args, task: str) -> None:
    from videopoet.lm import tasks

    needs = {"image_to_video": "image", "video_to_audio": "video", "audio_to_video": "audio"}
    for kind in ("image", "video", "audio"):
        given = getattr(args, kind) is not None
        if needs.get(task) == kind and not given:
            raise UserError(f"task {task} needs --{kind} FILE")
        if given and needs.get(task) != kind:
            raise UserError(f"--{kind} is not read by task {task}")
    reads_text = "text" in tasks.task(task).inputs
    prompt = args.prompt
    if reads_text:
        if prompt is None or not prompt.strip():
            raise UserError(f'task {task} needs a prompt: videopoet generate "a red circle bouncing" ...')
        if len(prompt) > MAX_PROMPT_CHARS or "\x00" in prompt:
            raise UserError(f"the prompt must be text of at most {MAX_PROMPT_CHARS} characters")
    elif prompt is not None and prompt.strip():
        print(f"videopoet: note: task {task} reads no text; the prompt is ignored", file=sys.stderr)
    if not reads_text and (args.guidance != 1.0 or args.negative_prompt):
        raise UserError(f"--guidance and --negative-prompt need a text task; {task} reads no text")
    if args.no_audio and task in ("video_to_audio", "text_to_audio"):
        raise UserError(f"--no-audio contradicts task {task}, whose output is sound")
    if args.temperature is not None and not args.temperature > 0:
        raise UserError(f"--temperature must be positive, got {args.temperature}")


def _outputs(args, task: str) -> list[Path]:
    """The files this run writes, checked before the model loads: --out, and its .gif with --gif."""
    from videopoet.outputs import check_output

    out = Path(args.out).expanduser()
    suffix = out.suffix.lower()
    if suffix not in SUFFIXES:
        raise UserError(f"--out {args.out}: the file must end in .mp4 or .gif (or .png for text_to_image)")
    if suffix == ".png" and task != "text_to_image":
        raise UserError(f"--out {args.out}: a PNG holds one frame; only text_to_image writes one")
    if suffix == ".mp4":
        from videopoet.errors import require

        require("av")  # before the work: an mp4 needs PyAV
    paths = [out]
    if args.gif and suffix != ".gif":
        paths.append(out.with_suffix(".gif"))
    return [check_output(p, overwrite=args.overwrite) for p in paths]


def _num_frames(args, task: str) -> int:
    from videopoet.cli import MAX_CLIP_PIXELS, MAX_FRAMES
    from videopoet.lm.tasks import TEMPORAL_FACTOR
    from videopoet.pipeline import FPS

    if task == "text_to_image":
        return 1
    frames = DEFAULT_FRAMES
    if args.seconds is not None:
        frames = frames_for_seconds(args.seconds, FPS, TEMPORAL_FACTOR)
    w, h = args.size
    if frames > MAX_FRAMES:
        raise UserError(f"--seconds {args.seconds:g} is {frames} frames; at most {MAX_FRAMES} per clip")
    if frames * w * h > MAX_CLIP_PIXELS:
        raise UserError(
            f"{frames} frames at --size {w}x{h} is {frames * w * h:,} pixels; at most {MAX_CLIP_PIXELS:,} "
            "(fewer seconds or a smaller size)"
        )
    return frames


def _write_png(frame, path: Path) -> None:
    from videopoet.errors import require
    from videopoet.outputs import atomic_path

    Image = require("PIL.Image")
    with atomic_path(path) as tmp:
        Image.fromarray(frame).save(tmp, format="PNG")


def main(args) -> int:
    task = _resolve_task(args.task)
    for kind in ("image", "video", "audio"):
        setattr(args, kind, _input_file(getattr(args, kind), f"--{kind}"))
    _check_args(args, task)
    num_frames = _num_frames(args, task)
    if args.model is not None and not Path(args.model).expanduser().is_dir():
        raise UserError(f"--model {args.model}: no such folder (a pipeline folder from save_pretrained)")
    paths = _outputs(args, task)  # before the model is loaded: a refused output costs nothing

    from videopoet.pipeline import VideoPoetPipeline, export_to_gif, export_to_video

    start = time.perf_counter()
    where = args.model or "the bundled model"
    print(f"videopoet: loading {where}", file=sys.stderr, flush=True)
    pipe = VideoPoetPipeline.from_pretrained(args.model)
    w, h = args.size
    print(
        f"videopoet: generating {task}: {num_frames} frame(s) at {w}x{h}, seed {args.seed} ...",
        file=sys.stderr,
        flush=True,
    )
    out = pipe(
        args.prompt,
        task=task,
        image=args.image,
        video=args.video,
        audio=args.audio,
        num_frames=num_frames,
        width=w,
        height=h,
        guidance_scale=args.guidance,
        negative_prompt=args.negative_prompt,
        seed=args.seed,
        temperature=1.0 if args.temperature is None else args.temperature,
        top_k=args.top_k,
        with_audio=not args.no_audio,
    )
    if args.no_audio:
        out = dataclasses.replace(out, audio=None)
    for path in paths:
        suffix = path.suffix.lower()
        if suffix == ".gif":
            export_to_gif(out, path)
        elif suffix == ".png":
            _write_png(out.frames[0], path)
        else:
            export_to_video(out, path)
        print(f"videopoet: wrote {path}", file=sys.stderr, flush=True)
    print(f"videopoet: done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0
