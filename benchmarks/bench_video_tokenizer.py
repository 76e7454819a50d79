"""Video tokenizer speed: encode/decode clips per second at 17×128×128, achieved TFLOP/s, training steps/s.

    PYTHONPATH=src python3 benchmarks/bench_video_tokenizer.py                   # GPU if present, else CPU
    PYTHONPATH=src python3 benchmarks/bench_video_tokenizer.py --device cpu --preset tiny --batch 1
    PYTHONPATH=src python3 benchmarks/bench_video_tokenizer.py --preset paper --batch 4 --no-train

On CUDA the model runs under bf16 autocast; FLOPs are counted once with torch.utils.flop_counter (convs and
matmuls, 2 per multiply-add) and divided by the measured time. ``peak_ratio`` compares with the H100 SXM
dense bf16 peak (989 TFLOP/s). ``train`` times full optimizer steps of the training loop (tokenizer +
losses, with and without the GAN) on random clips and extrapolates steps per minute. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform

import torch
from torch.utils.flop_counter import FlopCounterMode

H100_BF16_DENSE_TFLOPS = 989.4


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch", type=int, default=None, help="clips per call (default 16 on CUDA, 1 on CPU)")
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--compile", action="store_true", help="torch.compile encoder and decoder")
    ap.add_argument(
        "--train",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time training steps too (default: on CUDA only; slow on CPU)",
    )
    args = ap.parse_args()

    from videopoet.device import autocast, pick_device, time_call
    from videopoet.tokenizers.video import VideoTokenizer

    device = pick_device(args.device)
    cuda = device.type == "cuda"
    batch = args.batch or (16 if cuda else 1)
    iters = args.iters or (20 if cuda else 2)
    torch.manual_seed(0)
    model = VideoTokenizer.from_preset(args.preset).to(device).eval()
    if cuda:
        torch.backends.cudnn.benchmark = True
    enc, dec = model.encoder, model.decoder
    if args.compile:
        enc, dec = torch.compile(enc), torch.compile(dec)
    x = torch.rand(batch, 3, args.frames, args.size, args.size, device=device) * 2 - 1

    @torch.no_grad()
    def encode():
        with autocast(device):
            return model.quantizer(enc(x), compute_losses=False).indices

    idx = encode()

    @torch.no_grad()
    def decode():
        with autocast(device):
            return dec(model.indices_to_codes(idx).to(x.dtype))

    result: dict = {
        "preset": args.preset,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "codebook_size": model.config.codebook_size,
        "device": torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "precision": "bf16 autocast" if cuda else "fp32",
        "batch": batch,
        "clip": f"{args.frames}x{args.size}x{args.size}",
        "latent": list(idx.shape[1:]),
        "compile": args.compile,
    }
    for name, fn in (("encode", encode), ("decode", decode)):
        flops = _flops(fn)
        sec = time_call(fn, device, iters, warmup=3 if cuda else 1)
        tflops = flops / sec / 1e12
        result[name] = {
            "clips_per_s": round(batch / sec, 2),
            "ms_per_batch": round(sec * 1e3, 2),
            "gflop_per_clip": round(flops / batch / 1e9, 2),
            "tflop_per_s": round(tflops, 2),
        }
        if cuda:
            result[name]["peak_ratio_h100_bf16"] = round(tflops / H100_BF16_DENSE_TFLOPS, 4)
    if cuda:
        result["max_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)

    if args.train or (args.train is None and cuda):
        result["train"] = _bench_train(args, device, batch, iters)
    print(json.dumps(result, indent=2))


def _bench_train(args, device: torch.device, batch: int, iters: int) -> dict:
    """Full training steps (as ``videopoet train video-tokenizer`` runs them) on random clips."""
    from videopoet.device import time_call
    from videopoet.train.video_tokenizer import Trainer, VideoTokenizerTrainConfig

    out = {}
    for gan in (False, True):
        cfg = VideoTokenizerTrainConfig(
            preset=args.preset,
            device=str(device),
            batch_size=batch,
            gan_start=0,
            gan_weight=0.1 if gan else 0.0,
            compile=args.compile,
            frames=args.frames,
            width=args.size,
            height=args.size,
        )
        trainer = Trainer(cfg)
        x = torch.rand(batch, 3, args.frames, args.size, args.size, device=device) * 2 - 1
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sec = time_call(
            functools.partial(trainer.train_step, x),
            device,
            max(2, iters // 2),
            warmup=2 if device.type == "cuda" else 1,
        )
        key = "with_gan" if gan else "without_gan"
        out[key] = {
            "ms_per_step": round(sec * 1e3, 1),
            "clips_per_s": round(batch / sec, 2),
            "steps_per_min": round(60 / sec, 1),
        }
        if device.type == "cuda":
            out[key]["max_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        del trainer, x
    return out


if __name__ == "__main__":
    main()
