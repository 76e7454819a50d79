"""LM training-step time with the head on every position (the full (B, L, V) logits, then the target rows'
cross-entropy) against ``train.lm.target_loss`` (the head on the target rows only), and the logits memory
the latter avoids at a paper preset's shapes. Prints one JSON object.

    python3 benchmarks/bench_lm_loss.py                       # tiny preset, batch 2, two ~1,700-token tasks
    python3 benchmarks/bench_lm_loss.py --tasks frame_prediction --iters 2

One step = forward, loss, backward and an AdamW step, fp32 (the engine's CPU precision: autocast is a
no-op there) or bf16 autocast on CUDA, random weights (the time depends on the shapes only). The batch is
built by the task builders from a random 17-frame 128×128 record of the tiny tokenizers' grid (5 × 16 × 16
latents, 4 × 106 audio codes), so prefix and target lengths are the real ones. Both losses run on one
model, alternating; the best of ``--iters`` timed steps of each is reported after one warm-up step, in
wall seconds and in this process's CPU seconds (on a shared CPU, ``--threads 1`` and CPU seconds are the
steadier measure: another process's load stretches wall time, not this one's CPU time).
``memory`` is analytic: B × L × V × 4 bytes of fp32 logits at every position against R × (rest + 2N) × 4
bytes of the factorized head's factors at the target rows, for the preset given (``--memory-preset``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

from videopoet.device import autocast, pick_device, synchronize
from videopoet.lm.loss import collate_examples, example_item, target_loss
from videopoet.lm.records import TokenRecord
from videopoet.lm.tasks import build_example
from videopoet.lm.transformer import PRESETS, PrefixLM
from videopoet.lm.vocab import VOCABS


def full_logits_loss(model, batch, *, text: bool, factorized_visual=None) -> torch.Tensor:
    """The loss before ``target_loss``: logits at every position, then the target rows in fp32."""
    args = (batch["text"], batch["text_mask"]) if text else (None, None)
    logits = model(batch["ids"], batch["prefix_len"], *args)  # (B, L, V)
    targets = batch["loss_mask"][:, 1:]  # (B, L−1): is token j + 1 a target?
    return F.cross_entropy(logits[:, :-1][targets].float(), batch["ids"][:, 1:][targets])


def random_record(seed: int) -> TokenRecord:
    r = np.random.default_rng(seed)
    grid = (5, 16, 16)  # 17 frames at 128×128 through the tiny video tokenizer
    conditions = {k: r.integers(0, 4096, grid).astype(np.int32) for k in ("inpainting", "flow_depth")}
    return TokenRecord(key=f"r{seed}", caption="x", video=r.integers(0, 4096, grid).astype(np.int32),
                       audio=r.integers(0, 1024, (4, 106)).astype(np.int32),
                       text=r.standard_normal((12, 384)).astype(np.float16), text_mask=np.ones(12, bool),
                       conditions=conditions, width=128, height=128, frames=17)  # fmt: skip


def make_batch(task: str, batch_size: int, slots: int, device: torch.device) -> dict:
    vocab = VOCABS["tiny"]
    examples = [build_example(task, random_record(i), vocab, text_slots=slots, text_dim=384,
                              rng=np.random.default_rng(i)) for i in range(batch_size)]  # fmt: skip
    batch = collate_examples([example_item(task, ex) for ex in examples])
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def step_seconds(model, opt, loss_fn, batch, text: bool, device) -> tuple[float, float]:
    """Wall and CPU (this process's) seconds of one step."""
    synchronize(device)
    t0, c0 = time.perf_counter(), time.process_time()
    with autocast(device):
        loss = loss_fn(model, batch, text=text, factorized_visual=model.config.factorized_visual)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    synchronize(device)
    return time.perf_counter() - t0, time.process_time() - c0


def time_task(model, opt, task: str, args, device) -> dict:
    from videopoet.lm.tasks import task as task_spec

    batch = make_batch(task, args.batch, model.config.text_slots, device)
    text = "text" in task_spec(task).inputs
    fns = {"full_logits": full_logits_loss, "target_rows": target_loss}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    for _ in range(args.iters + 1):
        for name, fn in fns.items():
            times[name].append(step_seconds(model, opt, fn, batch, text, device))
    wall = {name: min(w for w, _ in t[1:]) for name, t in times.items()}  # step 0 warms up
    cpu = {name: min(c for _, c in t[1:]) for name, t in times.items()}
    length, targets = batch["ids"].shape[1], int(batch["loss_mask"][:, 1:].sum())
    return {"seq_len": length, "target_rows": targets, "rows": args.batch * length,
            **{f"{k}_wall_s": round(v, 3) for k, v in wall.items()},
            **{f"{k}_cpu_s": round(v, 3) for k, v in cpu.items()},
            "speedup_wall": round(wall["full_logits"] / wall["target_rows"], 3),
            "speedup_cpu": round(cpu["full_logits"] / cpu["target_rows"], 3)}  # fmt: skip


def logits_memory(preset: str, batch: int, target_share: float) -> dict:
    cfg = PRESETS[preset]
    n = math.isqrt(cfg.factorized_visual[1]) if cfg.factorized_visual else 0
    rest = cfg.vocab_size - n * n + 1 if n else cfg.vocab_size
    rows = batch * cfg.max_seq_len
    full = rows * cfg.vocab_size * 4
    factors = round(rows * target_share) * (rest + 2 * n) * 4
    return {"preset": preset, "batch": batch, "seq_len": cfg.max_seq_len, "vocab": cfg.vocab_size,
            "target_share": target_share, "full_logits_GiB": round(full / 2**30, 2),
            "target_row_factors_GiB": round(factors / 2**30, 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--tasks", default="audio_to_video,video_to_audio")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--memory-preset", default="paper-1b")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    torch.manual_seed(0)
    model = PrefixLM.from_preset(args.preset).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    result = {"device": str(device), "cpu": platform.processor() or platform.machine(),
              "threads": torch.get_num_threads(), "preset": args.preset, "batch": args.batch,
              "precision": "bf16 autocast" if device.type == "cuda" else "fp32"}  # fmt: skip
    result["tasks"] = {t: time_task(model, opt, t, args, device) for t in args.tasks.split(",")}
    result["memory"] = logits_memory(args.memory_preset, 1, 0.5)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
