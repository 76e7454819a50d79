"""``videopoet generate``: a thin command over ``VideoPoetPipeline`` (prompt and media files in, an mp4 out).

Order of work: the arguments are checked (the task and the media it reads: a missing or unreadable file,
an input the task does not read, a mask of the wrong size or empty or an unknown region, flow/depth that
cannot be computed, a length the --video cannot give), then the output path(s) (``outputs.check_output``:
an existing file is refused without ``--overwrite``), and only then is the model loaded and run; the
result is written atomically through ``export_to_video`` / ``export_to_gif``. Every problem is one line
and exit status 2 through ``cli.main``'s error handling (UserError / ValueError / OSError).

Lengths: ``--seconds S`` picks 1 + 4k frames at 8 fps nearest to S seconds (2.1 s → 17 frames, 10 s → 81);
above one window (``VideoPoetPipeline.window_frames``: 17 frames for the bundled shapes) the clip is made
in windows under a progress bar. Without --seconds: 17 frames; ``continue``: the --video's frames then one
second more; ``v2a``: the whole --video; painting and ``stylize``: the --video's length, at most 17 frames.
text_to_image makes one frame; with ``--out F.png`` it is written as a PNG, otherwise as a one-frame mp4.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

from videopoet.errors import UserError

DEFAULT_FRAMES = 17
SUFFIXES = (".mp4", ".gif", ".png")
MAX_PROMPT_CHARS = 2000  # a prompt longer than this is a mistake (a file pasted by accident), not a caption
_READS_VIDEO_LENGTH = ("video_to_audio", "stylization", "inpainting", "outpainting_central",
                       "outpainting_horizontal", "outpainting_vertical")  # fmt: skip
_SOUND_OUT = ("video_to_audio", "text_to_audio", "av_continuation")  # tasks whose output is (also) sound


class _VideoInfo(NamedTuple):
    frames: int  # frames the file covers at the pipeline's 8 fps
    width: int
    height: int
    has_audio: bool


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


def _input_file(path: str | None, flag: str) -> str | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{flag} {path}: no such file")
    return str(p)


def _check_args(args, task: str) -> None:
    from videopoet.conditions import MEDIA_INPUTS
    from videopoet.lm import tasks

    needs, may = MEDIA_INPUTS[task]
    for kind in ("image", "video", "audio", "mask"):
        given = getattr(args, kind) is not None
        if kind in needs and not given:
            raise UserError(f"task {task} needs --{kind} FILE")
        if given and kind not in needs + may:
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
    if not reads_text and (args.guidance not in (None, 1.0) or args.negative_prompt):
        raise UserError(f"--guidance and --negative-prompt need a text task; {task} reads no text")
    if args.no_audio and task in _SOUND_OUT:
        raise UserError(f"--no-audio contradicts task {task}, whose output is sound")
    if args.temperature is not None and not (math.isfinite(args.temperature) and args.temperature > 0):
        raise UserError(f"--temperature must be positive, got {args.temperature}")
    if args.guidance is not None and not math.isfinite(args.guidance):
        raise UserError(f"--guidance must be a finite number, got {args.guidance}")


def _probe(path: str | None) -> _VideoInfo | None:
    """The --video's length at 8 fps, size and sound, read before the model loads (MediaError: one line)."""
    if path is None:
        return None
    from videopoet.conditions import FPS, covered_frames
    from videopoet.data.media import probe_video

    info = probe_video(path)
    return _VideoInfo(covered_frames(info.duration, FPS), info.width, info.height, info.has_audio)


def _default_frames(task: str, video: _VideoInfo | None) -> int:
    from videopoet.conditions import FPS
    from videopoet.lm.tasks import TEMPORAL_FACTOR as TF

    if task == "frame_prediction":  # the given clip, then one second more
        return 1 + TF * math.ceil((video.frames + FPS - 1) / TF)
    if task in _READS_VIDEO_LENGTH:
        fit = 1 + TF * ((video.frames - 1) // TF)  # the longest 1 + 4k the clip covers
        return fit if task == "video_to_audio" else min(fit, DEFAULT_FRAMES)
    return DEFAULT_FRAMES


def _num_frames(args, task: str, video: _VideoInfo | None) -> int:
    from videopoet.cli import MAX_CLIP_PIXELS, MAX_FRAMES
    from videopoet.conditions import FPS
    from videopoet.lm.tasks import TEMPORAL_FACTOR

    if task == "text_to_image":
        if args.seconds is not None:
            raise UserError("text_to_image makes one frame: --seconds does not apply")
        return 1
    if args.seconds is not None:
        frames = frames_for_seconds(args.seconds, FPS, TEMPORAL_FACTOR)
    else:
        frames = _default_frames(task, video)
    up = getattr(args, "upscale", 1)
    w, h = args.size[0] * up, args.size[1] * up  # the written clip's size: --upscale multiplies it
    if frames > MAX_FRAMES:
        raise UserError(f"{frames} frames is too long: at most {MAX_FRAMES} per clip (fewer --seconds)")
    if frames * w * h > MAX_CLIP_PIXELS:
        upscaled = f" upscaled {up}x to {w}x{h}" if up > 1 else ""
        raise UserError(
            f"{frames} frames at --size {args.size[0]}x{args.size[1]}{upscaled} is {frames * w * h:,} "
            f"pixels; at most {MAX_CLIP_PIXELS:,} (fewer seconds, a smaller size or less --upscale)"
        )
    have = None if video is None else video.frames
    if task == "frame_prediction" and frames <= have:
        raise UserError(
            f"--video {args.video} has {have} frames ({have / FPS:.2f} s at {FPS} fps): continuing it needs "
            f"more --seconds than that (the output holds them, then the new frames)"
        )
    if task in _READS_VIDEO_LENGTH and frames < 1 + TEMPORAL_FACTOR:  # (--seconds is checked for this)
        raise UserError(
            f"task {task} needs a clip of at least {1 + TEMPORAL_FACTOR} frames at {FPS} fps; --video "
            f"{args.video} covers {have} ({have / FPS:.2f} s)"
        )
    if task in _READS_VIDEO_LENGTH and frames > have:
        raise UserError(
            f"--video {args.video} covers {have} frames ({have / FPS:.2f} s at {FPS} fps); task {task} "
            f"needs {frames} (at least {1 + TEMPORAL_FACTOR}): a longer video or fewer --seconds"
        )
    return frames


def _check_mask(args, video: _VideoInfo | None) -> None:
    """A mask image must open, mark some pixels to generate and keep others, and be the size of the
    --video (it is then cropped and resized with it) or of --size."""
    from videopoet.conditions import REGIONS, check_mask, read_mask_image

    if args.mask is None or args.mask in REGIONS:
        return
    path = Path(args.mask).expanduser()
    if not path.is_file():
        raise UserError(f"--mask {args.mask}: no such file, and not a region ({', '.join(REGIONS)})")
    mask = read_mask_image(path)
    h, w = mask.shape
    sizes = {tuple(args.size), (video.width, video.height)}
    if (w, h) not in sizes:
        raise UserError(
            f"--mask {args.mask} is {w}x{h}: it must be the size of --video ({video.width}x{video.height}) "
            f"or of --size ({args.size[0]}x{args.size[1]})"
        )
    check_mask(mask, f"--mask {args.mask}")
    args.mask = str(path)


def _check_inputs(args, task: str) -> int:
    """Every check that needs no model → the clip's length in frames."""
    from videopoet.conditions import load_image

    for kind in ("image", "video", "audio"):
        setattr(args, kind, _input_file(getattr(args, kind), f"--{kind}"))
    _check_args(args, task)
    if args.image is not None:  # opened now, so that a bad file is reported before the model loads
        load_image(args.image, *args.size)
    video = _probe(args.video)
    num_frames = _num_frames(args, task, video)
    _check_mask(args, video)
    if task == "av_continuation":
        if (args.image is None) == (args.video is None):
            raise UserError("task av_continuation needs --video FILE (or --image FILE and --audio FILE)")
        if args.audio is None and (video is None or not video.has_audio):
            raise UserError("task av_continuation needs sound: --audio FILE, or a --video with sound")
    if args.model is not None and not Path(args.model).expanduser().is_dir():
        raise UserError(f"--model {args.model}: no such folder (a pipeline folder from save_pretrained)")
    return num_frames


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


def _write_png(frame, path: Path) -> None:
    from videopoet.errors import require
    from videopoet.outputs import atomic_path

    Image = require("PIL.Image")
    with atomic_path(path) as tmp:
        Image.fromarray(frame).save(tmp, format="PNG")


class _Bar:
    """A tqdm bar over the pipeline's sampler calls (``progress(done, total)``), made at the first call."""

    def __init__(self):
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="videopoet: sampling", unit="step", file=sys.stderr)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _generate(pipe, args, task: str, num_frames: int):
    w, h = args.size
    with_audio = not args.no_audio
    window = pipe.window_frames(task, w, h, with_audio=with_audio)
    windows = f" in windows of {window} frames" if num_frames > window else ""
    print(
        f"videopoet: generating {task}: {num_frames} frame(s) at {w}x{h}{windows}, seed {args.seed} ...",
        file=sys.stderr,
        flush=True,
    )
    bar = _Bar()
    try:
        return pipe(
            args.prompt, task=task, image=args.image, video=args.video, audio=args.audio, mask=args.mask,
            num_frames=num_frames, width=w, height=h, guidance_scale=args.guidance,
            negative_prompt=args.negative_prompt, seed=args.seed,
            temperature=args.temperature, top_k=args.top_k,
            with_audio=with_audio, progress=bar, upscale=getattr(args, "upscale", 1),
        )  # fmt: skip
    finally:
        bar.close()


def main(args) -> int:
    from videopoet.lm import tasks

    task = tasks.task(args.task).name  # ValueError naming the valid tasks
    num_frames = _check_inputs(args, task)
    paths = _outputs(args, task)  # before the model is loaded: a refused output costs nothing

    from videopoet.pipeline import VideoPoetPipeline, export_to_gif, export_to_video

    start = time.perf_counter()
    where = args.model or "the bundled model"
    print(f"videopoet: loading {where}", file=sys.stderr, flush=True)
    pipe = VideoPoetPipeline.from_pretrained(args.model)
    out = _generate(pipe, args, task, num_frames)
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
