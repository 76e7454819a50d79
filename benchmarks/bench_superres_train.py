"""Super-resolution training speed: items tokenized on the fly against a token bank, side by side, JSON out.

    PYTHONPATH=src python3 benchmarks/bench_superres_train.py [--config configs/superres_tiny.toml]
        [--bank 2000] [--steps 100] [--warmup 20] [--compile | --no-compile] [--set key=value ...]

Runs ``videopoet train superres`` twice from the same config in temporary folders, the same in every
setting but ``bank`` (0, then ``--bank``): ``--warmup`` untimed steps, then ``--steps`` timed ones, stopped
there by ``stop_after_steps`` (no held-out evaluation, no export). Steps/s come from the runs' own
metrics.jsonl, over the timed steps only; the bank's making (and the first step's compile) falls before
them and is reported apart, as ``first_step_seconds``. ``--compile`` applies to both runs alike.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path


def _steps_per_second(metrics: Path, first: int, last: int) -> tuple[float, float]:
    """(steps/s between the logged steps ``first`` and ``last``, seconds to the first step)."""
    from videopoet.eval.report import read_jsonl

    times = {r["step"]: r["time"] for r in read_jsonl(metrics) if "loss" in r}
    return (last - first) / (times[last] - times[first]), times[min(times)]


def run(args, bank: int, folder: Path) -> dict:
    from videopoet.config import load_config
    from videopoet.train.superres import SuperResTrainConfig, train

    total = args.warmup + args.steps
    sets = list(args.set) + [
        f"out_dir={folder}", f"bank={bank}", f"max_steps={2 * total}",
        f"stop_after_steps={total}", "max_minutes=0", "eval_every=0", "sample_every=0",
        f"ckpt_every={10 * total}", f"compile={str(args.compile).lower()}",
    ]  # fmt: skip
    cfg = load_config(SuperResTrainConfig, args.config, sets)
    if train(cfg, progress=False) != 0:
        raise SystemExit(f"the run with bank = {bank} did not finish")
    rate, first = _steps_per_second(folder / "metrics.jsonl", args.warmup, total)
    return {"bank": bank, "steps_per_s": round(rate, 3), "items_per_s": round(rate * cfg.batch_size, 1),
            "first_step_seconds": round(first, 1), "batch_size": cfg.batch_size}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/superres_tiny.toml")
    ap.add_argument("--bank", type=int, default=2000, help="clips of the bank run")
    ap.add_argument("--steps", type=int, default=100, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=20, help="untimed steps before them")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.bank < 1 or args.steps < 1 or args.warmup < 1:
        raise SystemExit("--bank, --steps and --warmup must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        fly = run(args, 0, Path(tmp) / "fly")
        banked = run(args, args.bank, Path(tmp) / "bank")
    cuda = torch.cuda.is_available()
    result = {
        "config": args.config,
        "overrides": args.set,
        "compile": args.compile,
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "on_the_fly": fly,
        "token_bank": banked,
        "speedup": round(banked["steps_per_s"] / fly["steps_per_s"], 2),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
