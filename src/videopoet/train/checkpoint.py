"""Atomic, pickle-free training checkpoints: safetensors for tensors, JSON for everything else.

Layout of a run directory::

    run/checkpoints/step_00001000/{model,ema,optimizer,extra}.safetensors + state.json
    run/checkpoints/latest          (text: the name of the newest complete checkpoint)

A checkpoint is written into a temporary sibling directory and renamed into place, then ``latest`` is
replaced atomically, so a crash mid-write never leaves a half checkpoint that resume would pick up.
Resume is exact: model, EMA, optimizer, step, data position and every RNG state are restored.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

LATEST = "latest"


class CheckpointError(RuntimeError):
    pass


# ---------------------------------------------------------------- optimizer state <-> flat tensors + JSON
def optimizer_to_flat(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into named tensors and a JSON-able remainder."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state_dict["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for pid, kv in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(kv)
    return {"state": state, "param_groups": meta["param_groups"]}


# ---------------------------------------------------------------- RNG state
def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    np_state = np.random.get_state()
    meta = {
        "python": _jsonable(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("torch_cuda_"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = meta["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))


def _jsonable(x: Any) -> Any:
    if isinstance(x, tuple | list):
        return [_jsonable(v) for v in x]
    return x


# ---------------------------------------------------------------- save / load
def save_checkpoint(
    ckpt_root: str | Path,
    step: int,
    tensors: dict[str, dict[str, torch.Tensor]],
    state: dict[str, Any],
    *,
    keep: int = 2,
) -> Path:
    """Write ``{group}.safetensors`` for each tensor group plus ``state.json``, atomically.

    ``tensors`` maps a group name (``model``, ``ema``, ``optimizer``, ...) to a flat name → tensor dict.
    Older checkpoints beyond the newest ``keep`` are removed.
    """
    root = Path(ckpt_root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    final = root / name
    tmp = root / f".{name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    rng_t, rng_meta = rng_state()
    groups = dict(tensors)
    groups["rng"] = rng_t
    for group, flat in groups.items():
        flat = {k: v.detach().contiguous().cpu() for k, v in flat.items()}
        save_file(flat, str(tmp / f"{group}.safetensors"))
    payload = {"step": step, "rng": rng_meta, **state}
    with (tmp / "state.json").open("w") as f:
        json.dump(payload, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _atomic_write_text(root / LATEST, name)
    _prune(root, keep)
    return final


def latest_checkpoint(ckpt_root: str | Path) -> Path | None:
    root = Path(ckpt_root)
    marker = root / LATEST
    if not marker.is_file():
        return None
    path = root / marker.read_text().strip()
    return path if (path / "state.json").is_file() else None


def load_checkpoint(path: str | Path, *, restore_rng: bool = True) -> tuple[dict[str, dict], dict]:
    """Read a checkpoint directory → (tensor groups, state). Restores RNG states unless told not to."""
    path = Path(path)
    if not (path / "state.json").is_file():
        raise CheckpointError(f"{path} is not a checkpoint (no state.json); pick a step_* directory")
    with (path / "state.json").open() as f:
        state = json.load(f)
    groups = {p.stem: load_file(str(p)) for p in sorted(path.glob("*.safetensors"))}
    if restore_rng:
        set_rng_state(groups["rng"], state["rng"])
    return groups, state


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _prune(root: Path, keep: int) -> None:
    steps = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
