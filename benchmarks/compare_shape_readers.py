"""Judge the same video-tokenizer reconstructions with several shape readers, side by side.

    python benchmarks/compare_shape_readers.py \\
        --readers moments,src/videopoet/pretrained/judge_shapes,runs/other_reader \\
        --num 100 --seed 900000 --video-tokenizer src/videopoet/pretrained/video_tokenizer --device cpu

Each clip of both splits (seeds ``--seed`` … ``--seed + num − 1``) is reconstructed once (encode → decode)
and judged once per reader ("moments": the judge's moments alone; otherwise a ``ShapeNet`` directory);
prints and writes JSON with the mean shape, motion and size scores per split and reader.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from videopoet.data.sample import frames_to_tensor, tensor_to_frames
from videopoet.data.synthetic import render_clip
from videopoet.eval.judge import judge_clip, score_against
from videopoet.eval.shape_net import ShapeNet
from videopoet.tokenizers.video import VideoTokenizer

SCORED = ("shape", "motion", "size")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--readers", required=True, help="comma-separated: moments or ShapeNet directories")
    p.add_argument("--video-tokenizer", required=True)
    p.add_argument("--num", type=int, default=100, help="clips per split")
    p.add_argument("--seed", type=int, default=900_000, help="first seed")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="shape_readers.json")
    args = p.parse_args(argv)
    names = args.readers.split(",")
    readers = {n: None if n == "moments" else ShapeNet.from_pretrained(n) for n in names}
    tok = VideoTokenizer.from_pretrained(args.video_tokenizer, device=args.device)
    report: dict = {
        "num_per_split": args.num,
        "first_seed": args.seed,
        "video_tokenizer": args.video_tokenizer,
    }
    t0 = time.time()
    for split in ("train", "heldout"):
        scores = {n: {a: [] for a in SCORED} for n in names}
        for seed in range(args.seed, args.seed + args.num):
            clip = render_clip(seed, split=split)
            with torch.no_grad():
                x = frames_to_tensor(clip.frames).unsqueeze(0).to(args.device)
                recon = tensor_to_frames(tok.decode(tok.encode(x))[0].cpu())[: clip.frames.shape[0]]
            for n, reader in readers.items():
                s = score_against(judge_clip(recon, shape_reader=reader), clip.attributes)
                for a in SCORED:
                    scores[n][a].append(s[a])
        report[split] = {n: {a: float(np.mean(v)) for a, v in d.items()} for n, d in scores.items()}
    report["seconds"] = round(time.time() - t0, 1)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
