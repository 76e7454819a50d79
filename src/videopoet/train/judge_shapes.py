"""Train the judge's shape reader (``eval/shape_net.py``) on the world's ground truth.

    python -m videopoet.train.judge_shapes --out DIR --clips 4000 [--wide] [--trust] \\
        [--splits train,heldout] [--crop 32] [--channels 32] \\
        [--video-tokenizer src/videopoet/pretrained/video_tokenizer] [--device cuda] [--workers 16]

(The bundled reader: ``--wide --trust --splits train,heldout --clips 4000`` with the bundled video
tokenizer on one GPU; docs/evaluation.md, "The shape reader".)

Data: clips from ``--seed-start`` on, of the splits in ``--splits`` in turn (the judge is measured on
seeds 900000+ of both splits, and developed on 800000–800239 and 810000–810199, so the defaults never
overlap them). The bundled reader learns from both splits: the held-out split's compositions (a bouncing
square, a rotating diamond) are held out from the generator, not from the instrument that has to read
them, and the reader sees no colour, so the colour–shape pairs cannot teach it a prior. Each clip gives
its objects' crops (as the judge finds and crops them) three times: clean, through
``simulate_reconstruction`` at a random strength, and, with ``--video-tokenizer``, through that
tokenizer's encode → decode. Frames where the object touches another (it may be hidden) are left out.
Labels are the world's shapes, matched by colour; an object the judge finds in a colour the clip does not
have is skipped.

Training: random rotations (any angle), flips and ±10% scale on the crops, AdamW, one-cycle schedule;
then, with ``--trust``, the per-frame trust head on whole objects (see ``train``). One clip in ten is held
back; the per-variant accuracy on those clips (per frame, and per object pooled over its frames) is
printed as JSON with the weights' directory (``config.json`` + ``model.safetensors``).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from torch import nn

from videopoet.data.synthetic import SPLITS, render_clip
from videopoet.eval.judge import COLOR_NAMES, find_objects, object_crops_of, simulate_reconstruction
from videopoet.eval.shape_net import CROP, ShapeNet, ShapeNetConfig, pool_frames

VARIANTS = ("clean", "simulated", "tokenizer")
HOLDOUT_EVERY = 10  # every tenth clip is validation
SIM_STRENGTH = (0.5, 1.5)  # range of simulate_reconstruction strengths


def clip_crops(
    frames: np.ndarray, attributes: dict, wide: bool = False, size: int = CROP
) -> list[tuple[np.ndarray, int]]:
    """One (crops uint8 (T', P, S, S), shape label) per object of the clip the judge finds in a colour the
    clip has, its untouched frames only (objects touching all clip long give none); S = ``size``."""
    truth = {o["color"]: o["shape"] for o in attributes["objects"]}
    shapes = ShapeNetConfig().shapes
    found = find_objects(frames)
    out = []
    for k in found.chosen:
        name = COLOR_NAMES[k]
        if name not in truth:
            continue
        c, idx = object_crops_of(frames, found, k, wide, size)
        c = c[~found.contact[k][idx]]
        if len(c):
            out.append((np.rint(c * 255).astype(np.uint8), shapes.index(truth[name])))
    return out


def _render(job: tuple[int, str]):
    seed, split = job
    clip = render_clip(seed, split=split)
    return clip.frames, clip.attributes


def _crop_job(args):
    seed, frames, attributes, wide, size = args
    out = {"clean": clip_crops(frames, attributes, wide, size)}
    strength = np.random.default_rng(seed).uniform(*SIM_STRENGTH)
    degraded = simulate_reconstruction(frames, seed, strength=strength)
    out["simulated"] = clip_crops(degraded, attributes, wide, size)
    return out


def _tok_job(args):
    recon, attributes, wide, size = args
    return clip_crops(recon, attributes, wide, size)


def collect(
    jobs: list[tuple[int, str]],
    tokenizer: str | None,
    device: str,
    workers: int,
    *,
    wide: bool = False,
    size: int = CROP,
    batch: int = 32,
):
    """{variant: {"train"|"val": [(crops uint8 (T', P, S, S), label), … one per object]}} for the given
    (seed, split) clips; every tenth job is held back for validation (of each split when they alternate)."""
    run = None
    if tokenizer:
        from videopoet.eval.tokenizer import reconstruct_frames
        from videopoet.tokenizers.video import VideoTokenizer

        model = VideoTokenizer.from_pretrained(tokenizer, device=device)

        def run(frames_list):
            return reconstruct_frames(model, frames_list)

    parts = {v: {"train": [], "val": []} for v in VARIANTS}

    n_splits = len({split for _, split in jobs})  # jobs alternate splits: hold back whole rounds

    def add(variant, index, crops_labels):
        split = "val" if (index // n_splits) % HOLDOUT_EVERY == 0 else "train"
        parts[variant][split].extend(crops_labels)

    # spawned, not forked: the parent may already hold a CUDA context (the tokenizer), which a fork copies
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for start in range(0, len(jobs), batch):
            chunk = jobs[start : start + batch]
            index = range(start, start + len(chunk))
            rendered = list(pool.map(_render, chunk))
            crop_jobs = [(seed, f, a, wide, size) for (seed, _), (f, a) in zip(chunk, rendered)]
            for i, out in zip(index, pool.map(_crop_job, crop_jobs)):
                for variant, cl in out.items():
                    add(variant, i, cl)
            if run is not None:
                recons = run([f for f, _ in rendered])
                tok = pool.map(_tok_job, [(r, a, wide, size) for r, (_, a) in zip(recons, rendered)])
                for i, cl in zip(index, tok):
                    add("tokenizer", i, cl)
            print(json.dumps({"clips": start + len(chunk), "of": len(jobs)}), flush=True)
    return {v: {split: seqs for split, seqs in splits.items() if seqs} for v, splits in parts.items()}


def pad_sequences(seqs: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Objects' crop sequences → (crops uint8 (N, T, P, S, S) zero-padded, mask bool (N, T), labels (N,))."""
    t_max = max(len(c) for c, _ in seqs)
    crops = np.zeros((len(seqs), t_max, *seqs[0][0].shape[1:]), np.uint8)
    mask = np.zeros((len(seqs), t_max), bool)
    for i, (c, _) in enumerate(seqs):
        crops[i, : len(c)], mask[i, : len(c)] = c, True
    labels = np.array([lab for _, lab in seqs], np.int64)
    return torch.from_numpy(crops), torch.from_numpy(mask), torch.from_numpy(labels)


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


def read_sequences(model: ShapeNet, crops: torch.Tensor, mask: torch.Tensor, gen=None):
    """crops uint8 (B, T, P, S, S), mask (B, T) → (per-frame log-probs (B, T, K), pooled log-probs (B, K));
    with ``gen`` every frame is augmented."""
    b, t = mask.shape
    x = crops.flatten(0, 1).float() / 255  # (B·T, P, S, S)
    if gen is not None:
        x = augment(x, gen)
    logits, trust = model(x)
    lp = torch.log_softmax(logits.float(), -1).unflatten(0, (b, t))  # (B, T, K)
    return lp, pool_frames(lp, trust.float().unflatten(0, (b, t)), mask)


def train(
    data,
    *,
    device: str,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    tokenizer_repeat: int = 1,
    trust: bool = False,
    trust_epochs: int = 2,
    channels: int = 32,
) -> tuple[ShapeNet, dict]:
    """Fit a ShapeNet to ``collect``'s objects (tokenizer ones ``tokenizer_repeat`` times: the hard ones).

    First the reader, frame by frame: ``batch_size`` random crops a step, cross-entropy. Then, with
    ``trust``, the trust head alone (the reader frozen) on whole objects, 32 a step, for ``trust_epochs``:
    cross-entropy of the pooled clip (``pool_frames``), so it learns which frames to believe."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    reps = {v: tokenizer_repeat if v == "tokenizer" else 1 for v in data}
    seqs = [sq for v, d in data.items() if "train" in d for _ in range(reps[v]) for sq in d["train"]]
    x_all = torch.from_numpy(np.concatenate([c for c, _ in seqs]))  # uint8 (N, P, S, S)
    y_all = torch.from_numpy(np.concatenate([np.full(len(c), lab, np.int64) for c, lab in seqs]))
    config = ShapeNetConfig(wide=x_all.shape[1] == 2, trust=trust, crop=x_all.shape[-1], channels=channels)
    model = ShapeNet(config).to(device)
    model.train()
    loss = _fit_reader(model, x_all, y_all, gen, device=device, epochs=epochs, batch_size=batch_size, lr=lr)
    report = {"train_objects": len(seqs), "train_crops": len(x_all), "final_loss": loss}
    if trust:
        report["final_trust_loss"] = _fit_trust(model, seqs, gen, device=device, epochs=trust_epochs, lr=lr)
    model.eval()
    report.update(_validate(model, data, device))
    return model.cpu(), report


def _fit_reader(model, x_all, y_all, gen, *, device, epochs: int, batch_size: int, lr: float) -> float:
    """The reader, frame by frame: one-cycle AdamW on augmented random crops → the last step's loss."""
    reader = [p for n, p in model.named_parameters() if not n.startswith("trust.")]
    opt = torch.optim.AdamW(reader, lr=lr, weight_decay=1e-4)
    steps = epochs * math.ceil(len(x_all) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 20), pct_start=0.1)
    for _ in range(epochs):
        order = torch.randperm(len(x_all), generator=gen)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            x = augment(x_all[idx].to(device).float() / 255, gen)  # (B, P, S, S)
            loss = nn.functional.cross_entropy(model(x)[0], y_all[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return loss.item()


def _fit_trust(model, seqs, gen, *, device, epochs: int, lr: float) -> float:
    """The trust head alone (the reader frozen), 32 whole objects a step, on the pooled clip's
    cross-entropy → the last step's loss."""
    crops, mask, labels = pad_sequences(seqs)
    for name, p in model.named_parameters():
        if not name.startswith("trust."):
            p.requires_grad_(False)
    opt = torch.optim.AdamW(model.trust.parameters(), lr=lr, weight_decay=0.0)
    for _ in range(epochs):
        order = torch.randperm(len(crops), generator=gen)
        for i in range(0, len(order), 32):
            idx = order[i : i + 32]
            _, pooled = read_sequences(model, crops[idx].to(device), mask[idx].to(device), gen)
            loss = nn.functional.nll_loss(pooled, labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return loss.item()


@torch.no_grad()
def _validate(model, data, device) -> dict[str, float]:
    """Frame and object accuracy on each variant's ``val`` objects."""
    report = {}
    for variant, d in data.items():
        if "val" not in d:
            continue
        c, m, y = pad_sequences(d["val"])
        frame_right, object_right = 0, 0
        for i in range(0, len(c), 256):
            lp, pooled = read_sequences(model, c[i : i + 256].to(device), m[i : i + 256].to(device))
            mi, yi = m[i : i + 256], y[i : i + 256]
            frame_right += int(((lp.argmax(-1).cpu() == yi[:, None]) & mi).sum())
            object_right += int((pooled.argmax(-1).cpu() == yi).sum())
        report[f"val_frame_accuracy/{variant}"] = frame_right / int(m.sum())
        report[f"val_object_accuracy/{variant}"] = object_right / len(c)
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="directory for config.json + model.safetensors")
    ap.add_argument("--clips", type=int, default=3000, help="clips to learn from")
    ap.add_argument("--seed-start", type=int, default=100000, help="the first clip's seed")
    ap.add_argument(
        "--splits", default="train", help="comma-separated world splits; clip i uses the (i mod n)-th"
    )
    ap.add_argument(
        "--video-tokenizer", default=None, help="also learn from this tokenizer's reconstructions"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=2, help="processes that render and crop clips")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument(
        "--tokenizer-repeat", type=int, default=1, help="times each tokenizer crop is seen per epoch"
    )
    ap.add_argument("--batch-size", type=int, default=512, help="crops per step")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wide", action="store_true", help="add the wide-membership plane (ShapeNetConfig.wide)")
    ap.add_argument("--trust", action="store_true", help="learn per-frame trust (ShapeNetConfig.trust)")
    ap.add_argument("--trust-epochs", type=int, default=2, help="epochs of the trust head's training")
    ap.add_argument("--crop", type=int, default=CROP, help="crop side in pixels (ShapeNetConfig.crop)")
    ap.add_argument("--channels", type=int, default=32, help="first conv width (ShapeNetConfig.channels)")
    args = ap.parse_args(argv)
    splits = args.splits.split(",")
    if not splits or any(s not in SPLITS for s in splits):
        ap.error(f"--splits takes a comma-separated list of {', '.join(SPLITS)}, got {args.splits!r}")
    if not 8 <= args.crop <= 256 or args.channels < 1:
        ap.error(f"--crop takes 8–256 pixels and --channels ≥ 1, got {args.crop} and {args.channels}")
    if args.clips < HOLDOUT_EVERY:
        ap.error(f"--clips must be ≥ {HOLDOUT_EVERY} (one clip in {HOLDOUT_EVERY} is held back)")
    t0 = time.time()
    jobs = [(args.seed_start + i, splits[i % len(splits)]) for i in range(args.clips)]
    data = collect(jobs, args.video_tokenizer, args.device, args.workers, wide=args.wide, size=args.crop)
    t1 = time.time()
    model, report = train(
        data,
        device=args.device,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        tokenizer_repeat=args.tokenizer_repeat,
        trust=args.trust,
        trust_epochs=args.trust_epochs,
        channels=args.channels,
    )
    model.save_pretrained(args.out)
    report.update(out=args.out, clips=args.clips, splits=splits, data_seconds=round(t1 - t0, 1),
                  train_seconds=round(time.time() - t1, 1), video_tokenizer=args.video_tokenizer)  # fmt: skip
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
