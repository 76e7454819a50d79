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
import itertools
import json
import platform

import torch
from torch.utils.flop_counter import FlopCounterMode

H100_BF16_DENSE_TFLOPS = 989.4


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def main(argv: list[str] | None = None) -> dict:
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
    args = ap.parse_args(argv)

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
    return result


def _bench_train(args, device: torch.device, batch: int, iters: int) -> dict:
    """Full training steps (``VideoTokenizerRecipe.train_step``, as ``videopoet train video-tokenizer``'s
    engine calls it) on random uint8 clips already on the device."""
    import tempfile

    from videopoet.config import from_dict
    from videopoet.train.loop import Engine
    from videopoet.train.video_tokenizer import VideoTokenizerRecipe, VideoTokenizerTrainConfig

    out = {}
    for gan in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = from_dict(VideoTokenizerTrainConfig, {
                "out_dir": tmp, "preset": args.preset, "device": str(device), "batch_size": batch,
                "compile": args.compile, "frames": args.frames, "width": args.size, "height": args.size,
                "gan": {"start": 0, "weight": 0.1 if gan else 0.0},
            })  # fmt: skip
            engine = Engine(cfg)
            recipe = VideoTokenizerRecipe(cfg, engine)
            shape = (batch, args.frames, args.size, args.size, 3)  # uint8, as the loader batches clips
            x = torch.randint(0, 256, shape, dtype=torch.uint8, device=device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sec = _time_steps(recipe, x, device, max(2, iters // 2), warmup=2 if device.type == "cuda" else 1)
            del recipe, engine, x
        key = "with_gan" if gan else "without_gan"
        out[key] = {
            "ms_per_step": round(sec * 1e3, 1),
            "clips_per_s": round(batch / sec, 2),
            "steps_per_min": round(60 / sec, 1),
        }
        if device.type == "cuda":
            out[key]["max_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


def _time_steps(recipe, x: torch.Tensor, device: torch.device, iters: int, warmup: int) -> float:
    """Mean seconds per ``recipe.train_step`` at consecutive steps (0, 1, …), as the engine calls it."""
    from videopoet.device import time_call

    steps = itertools.count()
    return time_call(lambda: recipe.train_step(x, next(steps)), device, iters, warmup)


if __name__ == "__main__":
    main()
