"""Judge the reconstructions of several video tokenizers on the same clips, side by side.

    python benchmarks/compare_video_tokenizers.py \\
        --tokenizers src/videopoet/pretrained/video_tokenizer,runs/vte/final \\
        --num 200 --seed 970000 --device cuda --workers 15

Each clip of both splits (seeds ``--seed`` … ``--seed + num − 1``) is rendered once, reconstructed by
every tokenizer (encode → decode, bf16 autocast on CUDA) and judged with the bundled shape reader; prints
and writes JSON with the judge's mean score per attribute (per clip, as ``judge_accuracy``), per split and
tokenizer. ``--workers`` judges clips in that many processes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from videopoet.data.synthetic import render_clip
from videopoet.eval.judge import judge_clip, score_against
from videopoet.eval.tokenizer import reconstruct_frames
from videopoet.tokenizers.video import VideoTokenizer

BATCH = 32


def _judge(job: tuple[np.ndarray, dict]) -> dict[str, float]:
    torch.set_num_threads(1)
    frames, attributes = job
    return score_against(judge_clip(frames), attributes)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokenizers", required=True, help="comma-separated save_pretrained directories")
    p.add_argument("--num", type=int, default=200, help="clips per split")
    p.add_argument("--seed", type=int, default=970_000, help="first seed")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=1, help="processes that judge clips")
    p.add_argument("--out", default="video_tokenizers_judged.json")
    args = p.parse_args(argv)
    names = args.tokenizers.split(",")
    report: dict = {"num_per_split": args.num, "first_seed": args.seed}
    t0 = time.time()
    # spawned, not forked: the parent holds the tokenizer (and a CUDA context, on a GPU), which a fork copies
    pool = (
        ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"))
        if args.workers > 1
        else None
    )
    judge = pool.map if pool else map
    try:
        for split in ("train", "heldout"):
            clips = [render_clip(s, split=split) for s in range(args.seed, args.seed + args.num)]
            report[split] = {}
            for name in names:
                tok = VideoTokenizer.from_pretrained(name, device=args.device)
                frames = [c.frames for c in clips]
                recons = [
                    r
                    for i in range(0, len(frames), BATCH)
                    for r in reconstruct_frames(tok, frames[i : i + BATCH])
                ]
                scores = list(judge(_judge, [(r, c.attributes) for r, c in zip(recons, clips)]))
                keys = dict.fromkeys(k for s in scores for k in s)  # as judge_accuracy: over the clips
                report[split][name] = {k: float(np.mean([s[k] for s in scores if k in s])) for k in keys}
    finally:
        if pool:
            pool.shutdown()
    report["seconds"] = round(time.time() - t0, 1)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
