"""Small pieces the training engine and its recipes share: EMA weights, JSONL metrics, seeding, LR
schedule, fine-tuning weight copies."""

from __future__ import annotations

import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class EMA:
    """Exponential moving average of a model's floating-point parameters and buffers. Under FSDP2 each
    rank averages its own shards; ``state_dict`` gathers them (a collective: every rank calls it) and
    ``load_state_dict`` takes full tensors on every rank, so checkpoints hold whole tensors whatever
    the rank count."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.shadow = {
            k: v.detach().clone().float() for k, v in model.state_dict().items() if v.dtype.is_floating_point
        }

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v.detach().float(), 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in self.shadow.items()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in self.shadow.items():
            v.copy_(_like(state[k], v))

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Into a model whose state matches the shadow's layout (sharded like it, or plain like it)."""
        sd = model.state_dict()
        for k, v in self.shadow.items():
            sd[k].copy_(v.to(sd[k].dtype))


def _like(full: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A full tensor as ``target`` holds it: this rank's shard of it when ``target`` is a DTensor."""
    if not hasattr(target, "device_mesh"):
        return full
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full.to(target.device_mesh.device_type), target.device_mesh, target.placements)


class MetricsLogger:
    """Append one JSON object per line to ``path`` (flushed each write, so a crash loses nothing).

    ``keep_until``: a resumed run first drops the rows of steps after its checkpoint (the steps it is
    about to replay), so every step has one row however often the run was killed."""

    def __init__(self, path: str | Path, *, keep_until: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if keep_until is not None and self.path.is_file():
            self._truncate(keep_until)
        self._f = self.path.open("a")
        self._t0 = time.time()

    def _truncate(self, step: int) -> None:
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a row cut short by a kill
            if isinstance(row, dict) and int(row.get("step", 0)) <= step:
                kept.append(line)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        tmp.write_text("".join(f"{line}\n" for line in kept))
        os.replace(tmp, self.path)

    def log(self, step: int, **metrics: Any) -> dict[str, Any]:
        row = {"step": step, "time": round(time.time() - self._t0, 3)}
        for k, v in metrics.items():
            if torch.is_tensor(v):
                v = v.item()
            if isinstance(v, float) and not math.isfinite(v):
                v = str(v)
            row[k] = v
        self._f.write(json.dumps(row) + "\n")
        self._f.flush()
        return row

    def close(self) -> None:
        self._f.close()


def copy_matching_weights(
    model: nn.Module, source: nn.Module, *, what: str, added: tuple[str, ...] = ()
) -> list[str]:
    """Load ``source``'s weights into ``model`` (fine-tuning); a different architecture is a clear error.

    Only tensor names and shapes must match: training-only config fields may differ from the source's.
    Tensors of ``model`` whose names start with one of the ``added`` prefixes may be missing from the
    source (a branch the fine-tune adds); they keep their initialisation. Returns those names.
    """
    mine, theirs = model.state_dict(), source.state_dict()
    new = sorted(k for k in mine if k not in theirs and k.startswith(added)) if added else []
    if {k: v.shape for k, v in mine.items() if k not in new} != {k: v.shape for k, v in theirs.items()}:
        raise ValueError(
            f"{what} holds a different architecture than this run's model; "
            "pick the matching preset and overrides, or drop init_from"
        )
    model.load_state_dict(theirs, strict=not new)
    return new


def cosine_lr(step: int, *, base_lr: float, warmup: int, total: int, min_ratio: float = 0.1) -> float:
    """Linear warm-up then cosine decay to ``min_ratio * base_lr``."""
    if step < warmup:
        return base_lr * (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
