"""Multi-GPU scaling of prefix-LM training (issue 17): tokens/s per GPU, MFU, peak memory, efficiency.

For each preset in ``--presets`` and each rank count N in ``--gpus`` it runs ``videopoet train lm`` under
``python -m torch.distributed.run --standalone --nproc_per_node N`` on a token-shard folder (``--data``,
written by ``videopoet tokenize``): FSDP2 through the engine, ``--batch-per-gpu`` sequences per GPU (weak
scaling: global batch = N × per-GPU), ``--steps`` steps, no evaluation (``eval_every=0``), no periodic
checkpoint (``ckpt_every=0``), bf16 on CUDA / fp32 with ``--device cpu``. Each rank runs
``benchmarks/lm_bench_rank.py`` — ``videopoet.train.lm.train`` in-process — which also writes the rank's
``torch.cuda.max_memory_allocated()`` to the run folder at exit.

Model: the preset, with ``model.vocab_size`` set to the shards' vocabulary (``tokens.json``) when it
differs (then ``model.factorized_visual=none``: the paper presets' factorized 2^18 visual head does not fit
a smaller vocabulary) and ``model.text_dim`` to the shards' text width when they carry text; ``--set``
overrides go last.

Measured per (preset, N), from rank 0's ``metrics.jsonl`` (a row per step with ``time``, seconds since
the run began, and ``tokens``, the global tokens of the step): the first ``--warmup-steps`` steps are not
timed; over the rest,

- ``tokens_per_s`` = Σ tokens / (time of the last step − time of the last warm-up step) (global);
- ``tokens_per_s_per_gpu`` = tokens_per_s / N;
- ``scaling_efficiency`` = tokens_per_s_per_gpu / that of N = 1 (same preset; null without an N = 1 run);
- ``mfu`` = achieved FLOP/s per GPU / (``--peak-tflops`` × 10^12) (default 989: an H100/H200's dense bf16),
  with the training FLOPs of one token (forward + backward, the usual 6N + attention count)

      flops_per_token = 6 · (P_blocks + P_head) + 12 · n_layers · seq_len · dim

  P_blocks = ``param_count(cfg, include_vocab=False)`` (everything but the input embedding and the output
  head), P_head = the output head's parameters (the input embedding is a lookup: no FLOPs), seq_len = the
  step's sequence length (tokens / global batch; the mean over the timed steps is reported); the
  attention term counts the full L × L score and value products (no causal/prefix discount);
- ``peak_memory_gb`` = the largest ``torch.cuda.max_memory_allocated()`` over the ranks (null on a CPU).

``--kill-resume``: instead of the table, one run on ``--kill-from`` ranks stopped after ``--kill-at`` steps
(``stop_after_steps``: a checkpoint written by those ranks), then ``--resume`` on ``--resume-on`` ranks
(the checkpoint resharded) to ``--steps``; it reports the loss rows before and after and whether the
resumed run continues (steps kill_at + 1 … steps, each once, every loss finite). The global batch is
``kill_from × batch_per_gpu`` on both sides (it must split over ``resume_on`` ranks).

Output: one JSON object (stdout and ``--out FILE``): hardware, the commands run, the table (or the
kill/resume report).

    python benchmarks/bench_lm_scaling.py --data tokens/train --gpus 1,2,4 --presets paper-300m,paper-1b \\
        --steps 30 --warmup-steps 10 --batch-per-gpu 8 --out bench_lm_scaling.json
    python benchmarks/bench_lm_scaling.py --data tokens/train --kill-resume --kill-from 4 --resume-on 2 \\
        --presets paper-300m --steps 20 --kill-at 10 --out bench_lm_kill_resume.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RANK_SCRIPT = Path(__file__).resolve().parent / "lm_bench_rank.py"


# ============================================================================================ model
def model_overrides(preset: str, data: str, sets: list[str]) -> dict[str, Any]:
    """The ``model.*`` overrides that make ``preset`` read the shards at ``data`` (vocabulary, text)."""
    from videopoet.lm.records import TokenShardDataset
    from videopoet.lm.transformer import PRESETS

    base = PRESETS[preset]
    shards = TokenShardDataset(data)
    out: dict[str, Any] = {}
    vocab = shards.vocab.size
    if vocab != base.vocab_size:
        out["vocab_size"] = vocab
        fv = base.factorized_visual
        if fv is not None and fv[0] + fv[1] > vocab:
            out["factorized_visual"] = None
    if len(shards):
        text = shards[0].text
        if text is not None and text.ndim == 2 and text.shape[0] and text.shape[1] != base.text_dim:
            out["text_dim"] = int(text.shape[1])
    given = {s.split("=", 1)[0].strip()[len("model.") :] for s in sets if s.strip().startswith("model.")}
    return {k: v for k, v in out.items() if k not in given}


def model_config(preset: str, overrides: dict[str, Any], sets: list[str]):
    """The PrefixLMConfig a run trains: the preset, the data's overrides, then ``--set model.*``."""
    from videopoet.config import load_config
    from videopoet.lm.transformer import PRESETS
    from videopoet.train.lm import LMTrainConfig

    model_sets = [s for s in sets if s.strip().startswith("model.") and not _is_none(s)]
    nones = [s.split("=", 1)[0].strip()[len("model.") :] for s in sets if s.strip().startswith("model.")]
    nones = [k for k, s in zip(nones, [s for s in sets if s.strip().startswith("model.")]) if _is_none(s)]
    cfg = load_config(LMTrainConfig, None, [f"preset='{preset}'", *model_sets])
    merged = {**overrides, **cfg.model, **dict.fromkeys(nones)}
    return dataclasses.replace(PRESETS[preset], **merged)


def _is_none(s: str) -> bool:
    return s.partition("=")[2].strip().strip("'\"").lower() in ("none", "null")


def flop_terms(mcfg) -> dict[str, Any]:
    """Parameters in the FLOP count: blocks (no embedding, no head) and the output head."""
    import torch

    from videopoet.lm.transformer import PrefixLM, param_count

    blocks = param_count(mcfg, include_vocab=False)
    with torch.device("meta"):
        head = sum(p.numel() for p in PrefixLM(mcfg).output.parameters())
    if mcfg.tie_embeddings:  # the tied head's matmul is the embedding's V · D matrix
        head = mcfg.vocab_size * mcfg.dim
    return {"params_blocks": blocks, "params_head": head, "n_layers": mcfg.n_layers, "dim": mcfg.dim}


def flops_per_token(terms: dict[str, Any], seq_len: float) -> float:
    return (
        6.0 * (terms["params_blocks"] + terms["params_head"])
        + 12.0 * terms["n_layers"] * seq_len * terms["dim"]
    )


# ============================================================================================ runs
def _set_value(v: Any) -> str:
    if v is None:
        return "none"
    return json.dumps(v) if not isinstance(v, str) else f"'{v}'"


def run_sets(args, preset: str, out: Path, batch: int, overrides: dict[str, Any], **extra: Any) -> list[str]:
    cpu = args.device == "cpu"
    sets = [
        f"preset='{preset}'",
        f"data='{args.data}'",
        f"out_dir='{out.as_posix()}'",
        f"batch_size={batch}",
        f"max_steps={args.steps}",
        "eval_every=0",
        "ckpt_every=0",
        "sample_every=0",
        f"precision='{'fp32' if cpu else 'bf16'}'",
        f"device='{'cpu' if cpu else 'auto'}'",
        f"num_workers={args.workers}",
        f"seed={args.seed}",
    ]
    if args.eval_data:
        sets.append(f"eval_data='{args.eval_data}'")
    sets += [f"model.{k}={_set_value(v)}" for k, v in overrides.items()]
    sets += [f"{k}={_set_value(v)}" for k, v in extra.items()]
    return sets + list(args.set)


def launch(ranks: int, sets: list[str], *, resume: bool, log_path: Path, cpu: bool) -> tuple[list[str], int]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
           str(RANK_SCRIPT), *[a for s in sets for a in ("--set", s)]]  # fmt: skip
    if resume:
        cmd.append("--resume")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p)
    if cpu:
        env.setdefault("OMP_NUM_THREADS", "1")
        env["CUDA_VISIBLE_DEVICES"] = ""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    return cmd, proc.returncode


def step_rows(out: Path) -> list[dict[str, Any]]:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if "loss" in r and "tokens" in r]


def peak_memory(out: Path, resume: bool = False) -> dict[str, Any]:
    suffix = "_resume" if resume else ""
    files = sorted(out.glob(f"bench_memory_rank*{suffix}.json"))
    if not resume:
        files = [f for f in files if not f.stem.endswith("_resume")]
    per_rank = [json.loads(f.read_text()).get("peak_memory_bytes") for f in files]
    known = [b for b in per_rank if b is not None]
    gb = [None if b is None else round(b / 2**30, 3) for b in per_rank]
    return {"peak_memory_gb": round(max(known) / 2**30, 3) if known else None, "peak_memory_gb_per_rank": gb}


def measure(rows: list[dict[str, Any]], warmup: int, ranks: int, batch: int, terms: dict[str, Any],
            peak_tflops: float) -> dict[str, Any]:  # fmt: skip
    """Throughput and MFU over the steps after the warm-up (rows: rank 0's, one per step)."""
    rows = sorted(rows, key=lambda r: r["step"])
    start = [r for r in rows if r["step"] <= warmup]
    timed = [r for r in rows if r["step"] > warmup]
    if not timed:
        raise SystemExit(f"no timed steps: {len(rows)} step rows, warm-up {warmup}")
    t0 = start[-1]["time"] if start else 0.0
    seconds = timed[-1]["time"] - t0
    tokens = sum(float(r["tokens"]) for r in timed)
    flops = sum(float(r["tokens"]) * flops_per_token(terms, float(r["tokens"]) / batch) for r in timed)
    seconds = max(seconds, 1e-9)
    tps = tokens / seconds
    return {
        "timed_steps": len(timed),
        "timed_seconds": round(seconds, 4),
        "tokens_per_step": round(tokens / len(timed), 1),
        "mean_seq_len": round(tokens / len(timed) / batch, 1),
        "tokens_per_s": round(tps, 2),
        "tokens_per_s_per_gpu": round(tps / ranks, 2),
        "tflops_per_gpu": round(flops / seconds / ranks / 1e12, 6),
        "mfu": flops / seconds / ranks / (peak_tflops * 1e12),
        "final_loss": timed[-1]["loss"],
    }


def hardware(device: str) -> dict[str, Any]:
    import torch

    if device == "cpu" or not torch.cuda.is_available():
        return {"device": "cpu", "gpus_visible": 0, "torch": torch.__version__}
    return {"device": torch.cuda.get_device_name(0), "gpus_visible": torch.cuda.device_count(),
            "torch": torch.__version__, "cuda": torch.version.cuda}  # fmt: skip


# ============================================================================================ modes
def scaling(args, work: Path, report: dict[str, Any]) -> None:
    table = []
    for preset in args.presets:
        overrides = model_overrides(preset, args.data, args.set)
        terms = flop_terms(model_config(preset, overrides, args.set))
        base_per_gpu = None
        for ranks in args.gpus:
            out = work / f"{preset}_n{ranks}"
            batch = ranks * args.batch_per_gpu
            sets = run_sets(args, preset, out, batch, overrides)
            cmd, rc = launch(ranks, sets, resume=False, log_path=work / f"{preset}_n{ranks}.log",
                             cpu=args.device == "cpu")  # fmt: skip
            report["commands"].append(_shown(cmd))
            entry: dict[str, Any] = {"preset": preset, "gpus": ranks, "global_batch": batch}
            entry.update(batch_per_gpu=args.batch_per_gpu, returncode=rc, **terms)
            if rc != 0:
                entry["error"] = _tail(work / f"{preset}_n{ranks}.log")
                table.append(entry)
                continue
            entry.update(measure(step_rows(out), args.warmup_steps, ranks, batch, terms, args.peak_tflops))
            entry["flops_per_token"] = flops_per_token(terms, entry["mean_seq_len"])
            entry.update(peak_memory(out))
            if ranks == 1:
                base_per_gpu = entry["tokens_per_s_per_gpu"]
            entry["scaling_efficiency"] = (
                round(entry["tokens_per_s_per_gpu"] / base_per_gpu, 4) if base_per_gpu else None
            )
            table.append(entry)
            print(json.dumps({k: entry.get(k) for k in ("preset", "gpus", "tokens_per_s_per_gpu", "mfu",
                  "peak_memory_gb", "scaling_efficiency")}), file=sys.stderr)  # fmt: skip
    report["table"] = table


def kill_resume(args, work: Path, report: dict[str, Any]) -> None:
    preset = args.presets[0]
    overrides = model_overrides(preset, args.data, args.set)
    batch = args.kill_from * args.batch_per_gpu
    if batch % args.resume_on:
        raise SystemExit(f"global batch {batch} does not split over --resume-on {args.resume_on} ranks")
    if not 0 < args.kill_at < args.steps:
        raise SystemExit("--kill-at must lie between 0 and --steps")
    out = work / f"{preset}_kill{args.kill_from}_resume{args.resume_on}"
    cpu = args.device == "cpu"
    runs = []
    for ranks, resume, extra in ((args.kill_from, False, {"stop_after_steps": args.kill_at}),
                                 (args.resume_on, True, {})):  # fmt: skip
        sets = run_sets(args, preset, out, batch, overrides, **extra)
        cmd, rc = launch(ranks, sets, resume=resume, log_path=out.with_suffix(".log"), cpu=cpu)
        report["commands"].append(_shown(cmd))
        runs.append({"gpus": ranks, "resume": resume, "returncode": rc, **peak_memory(out, resume)})
        if rc != 0:
            break
    rows = step_rows(out)
    keep = ("step", "loss", "task", "tokens", "data_signature", "grad_norm")
    before = [{k: r.get(k) for k in keep} for r in rows if r["step"] <= args.kill_at]
    after = [{k: r.get(k) for k in keep} for r in rows if r["step"] > args.kill_at]
    steps_after = [r["step"] for r in after]
    continues = (
        all(r["returncode"] == 0 for r in runs)
        and len(runs) == 2
        and [r["step"] for r in before] == list(range(1, args.kill_at + 1))
        and steps_after == list(range(args.kill_at + 1, args.steps + 1))
        and all(math.isfinite(float(r["loss"])) for r in before + after)
    )
    report["kill_resume"] = {
        "preset": preset, "kill_from": args.kill_from, "kill_at": args.kill_at, "resume_on": args.resume_on,
        "steps": args.steps, "global_batch": batch, "runs": runs, "before": before, "after": after,
        "continues": bool(continues),
    }  # fmt: skip


def _shown(cmd: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(c) for c in cmd)


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.is_file() else ""


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="token-shard folder (videopoet tokenize)")
    p.add_argument("--eval-data", default="", help="held-out token shards (unused: eval_every=0)")
    p.add_argument("--presets", default="paper-300m,paper-1b", type=lambda s: [x for x in s.split(",") if x])
    p.add_argument("--gpus", default="1,2,4", type=_ints, help="rank counts (GPUs; processes on a CPU)")
    p.add_argument("--steps", type=int, default=30, help="max_steps of each run")
    p.add_argument("--warmup-steps", type=int, default=10, help="first steps left out of the timing")
    p.add_argument("--batch-per-gpu", type=int, default=8, help="sequences per rank per step")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="a GPU's dense peak (bf16) for MFU")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--workers", type=int, default=None, help="loader workers per rank (4 on CUDA, 0 on CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more train lm overrides")
    p.add_argument("--work-dir", default="", help="run folders (default: a fresh folder under runs/)")
    p.add_argument("--out", default="", help="also write the JSON here")
    p.add_argument("--kill-resume", action="store_true", help="the kill/resume check instead of the table")
    p.add_argument("--kill-from", type=int, default=4)
    p.add_argument("--kill-at", type=int, default=10)
    p.add_argument("--resume-on", type=int, default=2)
    args = p.parse_args(argv)
    if args.workers is None:
        args.workers = 0 if args.device == "cpu" else 4
    if args.warmup_steps >= args.steps and not args.kill_resume:
        p.error("--warmup-steps must be below --steps")
    args.data = str(Path(args.data).resolve())
    if args.eval_data:
        args.eval_data = str(Path(args.eval_data).resolve())
    return args


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT / "src"))
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = Path(args.work_dir or ROOT / "runs" / f"bench_lm_scaling_{stamp}").resolve()
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "benchmark": "lm_scaling",
        "hardware": hardware(args.device),
        "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "commands": [],
    }
    report["settings"]["work_dir"] = str(work)
    (kill_resume if args.kill_resume else scaling)(args, work, report)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    failed = any(e.get("returncode") for e in report.get("table", [])) or (
        args.kill_resume and not report["kill_resume"]["continues"]
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
