"""Train the judge's shape reader (``eval/shape_net.py``) on the world's ground truth.

    python -m videopoet.train.judge_shapes --out DIR --clips 3000 [--wide] \\
        [--video-tokenizer src/videopoet/pretrained/video_tokenizer] [--device cuda] [--workers 16]

(The bundled reader: ``--wide --clips 3000`` with the bundled video tokenizer on one GPU; docs/evaluation.md.)

Data: train-split clips from ``--seed-start`` on (the judge is measured on seeds 900000+ of both splits,
and developed on 800000–800039, so the defaults never overlap them). Each clip gives its objects' crops
(as the judge finds and crops them) three times: clean, through ``simulate_reconstruction`` at a random
strength, and, with ``--video-tokenizer``, through that tokenizer's encode → decode. Frames where the
object touches another (it may be hidden) are left out. Labels are the world's shapes, matched by colour;
an object the judge finds in a colour the clip does not have is skipped.

Training: random rotations (any angle), flips and ±10% scale on the crops, AdamW, cosine schedule. One
clip in ten is held back; the per-variant accuracy on those clips is printed as JSON with the weights'
directory (``config.json`` + ``model.safetensors``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from torch import nn

from videopoet.data.synthetic import render_clip
from videopoet.eval.judge import COLOR_NAMES, find_objects, object_crops_of, simulate_reconstruction
from videopoet.eval.shape_net import CROP, ShapeNet, ShapeNetConfig

VARIANTS = ("clean", "simulated", "tokenizer")
HOLDOUT_EVERY = 10  # every tenth clip is validation
SIM_STRENGTH = (0.5, 1.5)  # range of simulate_reconstruction strengths


def clip_crops(frames: np.ndarray, attributes: dict, wide: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(crops uint8 (N, P, S, S), shape labels int64 (N,)) of one clip's objects, untouched frames only."""
    truth = {o["color"]: o["shape"] for o in attributes["objects"]}
    shapes = ShapeNetConfig().shapes
    found = find_objects(frames)
    crops, labels = [], []
    for k in found.chosen:
        name = COLOR_NAMES[k]
        if name not in truth:
            continue
        c, idx = object_crops_of(frames, found, k, wide)
        c = c[~found.contact[k][idx]]
        crops.append(np.rint(c * 255).astype(np.uint8))
        labels.append(np.full(len(c), shapes.index(truth[name]), np.int64))
    if not crops:
        planes = ShapeNetConfig(wide=wide).planes
        return np.zeros((0, planes, CROP, CROP), np.uint8), np.zeros(0, np.int64)
    return np.concatenate(crops), np.concatenate(labels)


def _render(seed: int):
    clip = render_clip(seed, split="train")
    return clip.frames, clip.attributes


def _crop_job(args):
    seed, frames, attributes, wide = args
    out = {"clean": clip_crops(frames, attributes, wide)}
    strength = np.random.default_rng(seed).uniform(*SIM_STRENGTH)
    degraded = simulate_reconstruction(frames, seed, strength=strength)
    out["simulated"] = clip_crops(degraded, attributes, wide)
    return out


def _tok_job(args):
    recon, attributes, wide = args
    return clip_crops(recon, attributes, wide)


def collect(
    seeds: list[int], tokenizer: str | None, device: str, workers: int, *, wide: bool = False, batch: int = 32
):
    """{variant: {"train"|"val": (crops, labels)}} for the given train-split seeds."""
    run = None
    if tokenizer:
        from videopoet.data.sample import frames_to_tensor, tensor_to_frames
        from videopoet.tokenizers.video import VideoTokenizer

        model = VideoTokenizer.from_pretrained(tokenizer, device=device)
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32

        @torch.no_grad()
        def run(frames_list):
            x = torch.stack([frames_to_tensor(f) for f in frames_list]).to(device)
            with torch.autocast(device_type=x.device.type, dtype=dtype, enabled=dtype != torch.float32):
                y = model.decode(model.encode(x)).float()
            return [tensor_to_frames(v.cpu())[: f.shape[0]] for v, f in zip(y, frames_list)]

    parts = {v: {"train": ([], []), "val": ([], [])} for v in VARIANTS}

    def add(variant, seed, crops_labels):
        split = "val" if seed % HOLDOUT_EVERY == 0 else "train"
        parts[variant][split][0].append(crops_labels[0])
        parts[variant][split][1].append(crops_labels[1])

    with ProcessPoolExecutor(workers) as pool:
        for start in range(0, len(seeds), batch):
            chunk = seeds[start : start + batch]
            rendered = list(pool.map(_render, chunk))
            jobs = [(s, f, a, wide) for s, (f, a) in zip(chunk, rendered)]
            for s, out in zip(chunk, pool.map(_crop_job, jobs)):
                for variant, cl in out.items():
                    add(variant, s, cl)
            if run is not None:
                recons = run([f for f, _ in rendered])
                tok = pool.map(_tok_job, [(r, a, wide) for r, (_, a) in zip(recons, rendered)])
                for s, cl in zip(chunk, tok):
                    add("tokenizer", s, cl)
            print(json.dumps({"clips": start + len(chunk), "of": len(seeds)}), flush=True)
    data = {}
    for variant, splits in parts.items():
        for split, (c, lab) in splits.items():
            if c:
                data.setdefault(variant, {})[split] = (np.concatenate(c), np.concatenate(lab))
    return data


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """x (B, C, S, S) → the same crops rotated by a random angle, maybe mirrored, scaled by ±10%."""
    b = x.shape[0]
    angle = torch.rand(b, generator=gen) * 2 * math.pi
    scale = 1 + (torch.rand(b, generator=gen) - 0.5) * 0.2
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, torch.zeros(b)], -1),
                         torch.stack([sin * flip, cos, torch.zeros(b)], -1)], 1)  # fmt: skip
    grid = nn.functional.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return nn.functional.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def train(
    data, *, device: str, epochs: int, batch_size: int, lr: float, seed: int, tokenizer_repeat: int = 1
) -> tuple[ShapeNet, dict]:
    """Fit a ShapeNet to ``collect``'s crops (tokenizer crops ``tokenizer_repeat`` times: the hard ones)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    reps = {v: tokenizer_repeat if v == "tokenizer" else 1 for v in data}
    xs = np.concatenate([d["train"][0] for v, d in data.items() if "train" in d for _ in range(reps[v])])
    ys = np.concatenate([d["train"][1] for v, d in data.items() if "train" in d for _ in range(reps[v])])
    x_all = torch.from_numpy(xs)  # uint8 (N, P, S, S)
    y_all = torch.from_numpy(ys)
    model = ShapeNet(ShapeNetConfig(wide=xs.shape[1] == 2)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(x_all) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x_all), generator=gen)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            x = x_all[idx].to(device).float() / 255  # (B, P, S, S)
            x = augment(x, gen)
            loss = nn.functional.cross_entropy(model(x), y_all[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    report = {"train_crops": len(x_all), "final_loss": loss.item()}
    with torch.no_grad():
        for variant, d in data.items():
            if "val" not in d:
                continue
            xv = torch.from_numpy(d["val"][0]).float() / 255
            pred = torch.cat(
                [model(xv[i : i + 2048].to(device)).argmax(-1).cpu() for i in range(0, len(xv), 2048)]
            )
            report[f"val_frame_accuracy/{variant}"] = float((pred.numpy() == d["val"][1]).mean())
    return model.cpu(), report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="directory for config.json + model.safetensors")
    ap.add_argument("--clips", type=int, default=3000, help="train-split clips to learn from")
    ap.add_argument("--seed-start", type=int, default=100000, help="first train-split seed")
    ap.add_argument(
        "--video-tokenizer", default=None, help="also learn from this tokenizer's reconstructions"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=2, help="processes that render and crop clips")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument(
        "--tokenizer-repeat", type=int, default=1, help="times each tokenizer crop is seen per epoch"
    )
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wide", action="store_true", help="add the wide-membership plane (ShapeNetConfig.wide)")
    args = ap.parse_args(argv)
    if args.clips < HOLDOUT_EVERY:
        ap.error(f"--clips must be ≥ {HOLDOUT_EVERY} (one clip in {HOLDOUT_EVERY} is held back)")
    t0 = time.time()
    seeds = list(range(args.seed_start, args.seed_start + args.clips))
    data = collect(seeds, args.video_tokenizer, args.device, args.workers, wide=args.wide)
    t1 = time.time()
    model, report = train(
        data,
        device=args.device,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        tokenizer_repeat=args.tokenizer_repeat,
    )
    model.save_pretrained(args.out)
    report.update(out=args.out, clips=args.clips, data_seconds=round(t1 - t0, 1),
                  train_seconds=round(time.time() - t1, 1), video_tokenizer=args.video_tokenizer)  # fmt: skip
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
