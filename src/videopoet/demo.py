"""``videopoet demo``: the README Quickstart's main job.

The default model (the bundled one, or ``--model DIR``) makes ``--num`` clips with sound from text. The
prompts are captions of held-out scenes of the synthetic world it was trained on (seeds ``--seed`` …),
so some ask for compositions it never saw. Per clip: an mp4 (H.264 + AAC), a GIF preview and the prompt.
"""

from __future__ import annotations

import time
from pathlib import Path

# The demo's clip format: the bundled model's native one (17 frames = 2.125 s at 8 fps, 128x128, and
# sound at the audio codec's 16 kHz).
DEMO_FRAMES = 17
DEMO_SIZE = 128
DEMO_SPLIT = "heldout"


def demo_prompts(num: int, seed: int = 0) -> list[str]:
    """Captions of the world's held-out scenes ``seed`` … ``seed + num - 1`` (a caption depends only on
    the seed and the split, so tiny renders give it)."""
    from videopoet.data.synthetic import render_clip

    scenes = [render_clip(seed + i, split=DEMO_SPLIT, width=16, height=16, frames=1) for i in range(num)]
    return [scene.caption for scene in scenes]


def demo_outputs(out: str | Path, num: int, seed: int = 0) -> list[Path]:
    """The files ``make_demo`` writes: mp4, GIF and prompt per clip (checked before the model loads)."""
    stems = [Path(out) / f"clip_{seed + i:04d}" for i in range(num)]
    return [stem.with_suffix(ext) for stem in stems for ext in (".mp4", ".gif", ".txt")]


def make_demo(pipe, out: str | Path, num: int, seed: int = 0, *, progress: bool = True) -> list[Path]:
    """Generate ``num`` text-to-video clips with sound into ``out`` (clip ``i`` uses seed ``seed + i`` and
    the caption of that held-out scene); every file appears atomically. Returns the mp4 paths."""
    from tqdm import tqdm

    from videopoet.outputs import atomic_write_text
    from videopoet.pipeline import export_to_gif, export_to_video

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    prompts = demo_prompts(num, seed)
    for i, prompt in enumerate(tqdm(prompts, desc="generating clips", unit="clip", disable=not progress)):
        clip = pipe(prompt, task="text_to_video", num_frames=DEMO_FRAMES, width=DEMO_SIZE, height=DEMO_SIZE,
                    seed=seed + i, with_audio=True)  # fmt: skip
        stem = out / f"clip_{seed + i:04d}"
        export_to_video(clip, stem.with_suffix(".mp4"))
        export_to_gif(clip, stem.with_suffix(".gif"))
        atomic_write_text(stem.with_suffix(".txt"), prompt + "\n")
        written.append(stem.with_suffix(".mp4"))
    return written


def main(args) -> int:
    from videopoet.errors import require
    from videopoet.outputs import check_output, check_outputs
    from videopoet.pipeline import VideoPoetPipeline

    require("av")  # mp4 needs PyAV: say so before anything is loaded
    out = check_output(args.out, kind="dir")
    check_outputs(demo_outputs(out, args.num, args.seed), overwrite=getattr(args, "overwrite", False))
    t0 = time.perf_counter()
    pipe = VideoPoetPipeline.from_pretrained(args.model)
    paths = make_demo(pipe, out, args.num, args.seed)
    seconds = time.perf_counter() - t0
    for p in paths:
        prompt = p.with_suffix(".txt").read_text(encoding="utf-8").strip()
        print(f"{p}  ({p.with_suffix('.gif').name}): {prompt}")
    where = args.model or "the bundled model"
    print(
        f"generated {len(paths)} clip(s) with sound with {where} into {args.out}/ in {seconds:.1f} s "
        "(mp4 = H.264 + AAC, plays in a browser; .gif = preview; .txt = prompt)"
    )
    return 0
