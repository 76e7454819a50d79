"""``videopoet demo``: the README Quickstart's main job.

Until the default pretrained model ships, it renders ``--num`` clips of the synthetic audio-visual world
(the data the model learns from) and writes, per clip, an mp4 with sound, a GIF preview and the caption.
"""

from __future__ import annotations

import time
from pathlib import Path

# The demo's clip format: the model's native one (17 frames = 2.125 s at 8 fps, 128x128, 16 kHz mono).
DEMO_FRAMES = 17
DEMO_SIZE = 128
DEMO_FPS = 8
DEMO_SAMPLE_RATE = 16000


def demo_outputs(out: str | Path, num: int, seed: int = 0) -> list[Path]:
    """The files ``render_demo`` writes: mp4, GIF and caption per clip (checked before any is rendered)."""
    stems = [Path(out) / f"clip_{seed + i:04d}" for i in range(num)]
    return [stem.with_suffix(ext) for stem in stems for ext in (".mp4", ".gif", ".txt")]


def render_demo(
    out: str | Path,
    num: int,
    seed: int = 0,
    *,
    size: int = DEMO_SIZE,
    frames: int = DEMO_FRAMES,
    progress: bool = True,
    overwrite: bool = False,
) -> list[Path]:
    """Render ``num`` clips (seeds ``seed`` ... ``seed + num - 1``) into ``out``; returns the mp4 paths.

    Clips already in ``out`` under the same names (an earlier run's, or files a user put there) are
    refused before anything is rendered unless ``overwrite``; every file appears atomically."""
    from tqdm import tqdm

    from videopoet.data.media import write_gif, write_mp4
    from videopoet.data.synthetic import render_clip
    from videopoet.outputs import atomic_write_text, check_output, check_outputs

    if num <= 0:
        raise ValueError(f"num must be positive, got {num}")
    out = check_output(out, kind="dir")
    check_outputs(demo_outputs(out, num, seed), overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i in tqdm(range(num), desc="rendering clips", unit="clip", disable=None if progress else True):
        clip = render_clip(
            seed + i, width=size, height=size, frames=frames, fps=DEMO_FPS, sample_rate=DEMO_SAMPLE_RATE
        )
        stem = out / f"clip_{seed + i:04d}"
        write_mp4(stem.with_suffix(".mp4"), clip.frames, clip.fps, clip.audio, clip.sample_rate)
        write_gif(stem.with_suffix(".gif"), clip.frames, clip.fps)
        atomic_write_text(stem.with_suffix(".txt"), clip.caption + "\n")
        written.append(stem.with_suffix(".mp4"))
    return written


def main(args) -> int:
    from videopoet.errors import require

    require("av")  # mp4 needs PyAV: say so before anything is rendered
    t0 = time.perf_counter()
    paths = render_demo(args.out, args.num, args.seed, overwrite=getattr(args, "overwrite", False))
    seconds = time.perf_counter() - t0
    for p in paths:
        caption = p.with_suffix(".txt").read_text(encoding="utf-8").strip()
        print(f"{p}  ({p.with_suffix('.gif').name}): {caption}")
    print(
        f"wrote {len(paths)} clip(s) with sound to {args.out}/ in {seconds:.1f} s "
        "(mp4 = H.264 + AAC, plays in a browser; .gif = preview; .txt = caption)"
    )
    return 0
