"""Encode + decode speed of the SoundStream audio codec as a real-time factor; prints and writes JSON.

    python benchmarks/bench_audio_tokenizer.py --device cuda --batch-sizes 1,16 --train --out bench_audio.json
    python benchmarks/bench_audio_tokenizer.py --device cpu --batch-sizes 1,4 --preset tiny

real_time_factor = seconds of compute / seconds of audio (below 1 is faster than real time);
x_real_time = its inverse. On CUDA the codec runs under bf16 autocast (``--precision bf16``, the
default; RVQ distances stay float32) or in float32; on CPU always float32. Weights are random unless
``--model DIR`` names a trained codec (speed does not depend on the weights). ``--train`` also times
training steps (codec only / codec + discriminator) so a run's ``max_steps`` can be fitted to a time budget.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from videopoet.device import autocast, pick_device, time_call  # noqa: E402
from videopoet.tokenizers.audio import AudioTokenizer  # noqa: E402


def bench(
    *,
    preset: str = "tiny",
    model_dir: str | None = None,
    device: str = "auto",
    batch_sizes: tuple[int, ...] = (1, 16),
    seconds: float = 2.125,
    precision: str = "bf16",
    iters: int = 10,
    warmup: int = 3,
) -> dict:
    dev = pick_device(device)
    torch.manual_seed(0)
    model = AudioTokenizer.from_pretrained(model_dir) if model_dir else AudioTokenizer.from_preset(preset)
    model = model.to(dev).eval()
    sr = model.config.sample_rate
    n = int(round(seconds * sr))
    use_bf16 = precision == "bf16" and dev.type == "cuda"
    results = []
    for b in batch_sizes:
        t = torch.arange(n, device=dev) / sr
        wave = (0.3 * torch.sin(2 * torch.pi * 440 * t) + 0.05 * torch.randn(b, 1, n, device=dev)).clamp(
            -1, 1
        )
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        with torch.inference_mode(), autocast(dev, use_bf16):
            codes = model.encode(wave)
            enc = time_call(lambda: model.encode(wave), dev, iters, warmup)  # noqa: B023
            dec = time_call(lambda: model.decode(codes, length=n), dev, iters, warmup)  # noqa: B023
            both = time_call(lambda: model.decode(model.encode(wave), length=n), dev, iters, warmup)  # noqa: B023
        audio_s = b * n / sr
        row = {
            "batch": b,
            "audio_seconds": audio_s,
            "encode_ms": round(enc * 1000, 3),
            "decode_ms": round(dec * 1000, 3),
            "encode_decode_ms": round(both * 1000, 3),
            "real_time_factor": both / audio_s,
            "x_real_time": audio_s / both,
        }
        if dev.type == "cuda":
            row["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
        results.append(row)
        print(
            f"batch {b:3d}: encode {row['encode_ms']:.2f} ms, decode {row['decode_ms']:.2f} ms, "
            f"RTF {row['real_time_factor']:.4f} ({row['x_real_time']:.1f}x real time)"
        )
    return {
        "benchmark": "audio_tokenizer_encode_decode",
        "preset": None if model_dir else preset,
        "model": model_dir,
        "parameters": model.num_parameters(),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or "cpu",
        "cpu_threads": torch.get_num_threads(),
        "precision": "bf16-autocast" if use_bf16 else "fp32",
        "clip_seconds": seconds,
        "torch": torch.__version__,
        "iters": iters,
        "results": results,
    }


def bench_train(
    *,
    preset: str,
    device: str,
    batch_size: int,
    segment_samples: int,
    precision: str,
    iters: int,
    warmup: int,
) -> dict:
    """Milliseconds per training step (codec only, and codec + discriminator) at the given batch.

    Times ``AudioTokenizerRecipe.train_step`` as the training engine calls it (generator step, and the
    discriminator step once ``gan.start`` is reached) on a synthetic batch already on the device.
    """
    import itertools
    import tempfile

    from videopoet.config import from_dict
    from videopoet.train.audio_tokenizer import AudioTokenizerRecipe, AudioTrainConfig
    from videopoet.train.loop import Engine

    with tempfile.TemporaryDirectory() as tmp:
        cfg = from_dict(AudioTrainConfig, {
            "out_dir": tmp, "preset": preset, "device": device, "batch_size": batch_size,
            "segment_samples": segment_samples, "precision": precision, "eval_clips": 1,
            "max_steps": 10**6, "gan": {"start": 10**6},
        })  # fmt: skip
        engine = Engine(cfg)
        recipe = AudioTokenizerRecipe(cfg, engine)
        dev = engine.device
        g = torch.Generator().manual_seed(0)
        wave = (0.2 * torch.randn(batch_size, 1, segment_samples, generator=g)).clamp(-1, 1).to(dev)
        steps = itertools.count()
        out = {"batch": batch_size, "segment_samples": segment_samples}
        for name, start in (("codec_only", 10**6), ("with_gan", 0)):
            recipe.cfg.gan.start = start
            ms = time_call(lambda: recipe.train_step(wave, next(steps)), dev, iters, warmup) * 1000
            out[f"{name}_ms_per_step"] = round(ms, 2)
            out[f"{name}_steps_per_minute"] = round(60000 / ms, 1)
        if dev.type == "cuda":
            out["peak_memory_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--model", help="a trained codec directory (config.json + model.safetensors)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-sizes", default="1,16", help="comma-separated, e.g. 1,16")
    p.add_argument("--seconds", type=float, default=2.125, help="clip length (2.125 s = 17 frames at 8 fps)")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--train", action="store_true", help="also time training steps (set max_steps from this)")
    p.add_argument("--train-batch", type=int, default=32, help="training batch for --train")
    p.add_argument("--train-segment", type=int, default=16000, help="training crop (samples) for --train")
    p.add_argument("--out", help="write the JSON here")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    result = bench(
        preset=a.preset,
        model_dir=a.model,
        device=a.device,
        batch_sizes=tuple(int(x) for x in a.batch_sizes.split(",")),
        seconds=a.seconds,
        precision=a.precision,
        iters=a.iters,
        warmup=a.warmup,
    )
    if a.train:
        result["train"] = bench_train(
            preset=a.preset, device=a.device, batch_size=a.train_batch, segment_samples=a.train_segment,
            precision=a.precision, iters=a.iters, warmup=a.warmup,
        )  # fmt: skip
        print(json.dumps(result["train"]))
    text = json.dumps(result, indent=2)
    if a.out:
        Path(a.out).write_text(text + "\n")
    else:
        print(text)
    return result


if __name__ == "__main__":
    main()
