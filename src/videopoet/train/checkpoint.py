"""Atomic, pickle-free training checkpoints: safetensors for tensors, JSON for everything else.

Layout of a run directory::

    run/checkpoints/step_00001000/{model,ema,opt_g,…,rng}.safetensors + state.json
    run/checkpoints/latest          (text: the name of the newest complete checkpoint)

A checkpoint is written into a temporary sibling directory (``state.json`` last, with ``"complete":
true``), renamed into place, then ``latest`` is replaced atomically. A crash mid-write leaves at most a
temporary directory, which resume ignores and the next run removes. When ``latest`` is missing or names
something that is not a complete checkpoint, resume falls back to the newest complete ``step_*``.

Every tensor is stored in its full (unsharded) form: modules and optimizers go through
``torch.distributed.checkpoint.state_dict`` (full state dicts gathered from FSDP2 shards; optimizer state
keyed by parameter name), so a checkpoint written by N ranks loads on any number of ranks — resharding is
a load. (DCP's own file format stores its metadata with pickle, which this project never loads.)
"""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from videopoet.distributed import is_distributed

LATEST = "latest"
STATE = "state.json"


class CheckpointError(RuntimeError):
    pass


# ---------------------------------------------------------------- modules and optimizers <-> flat tensors
def _options(cpu: bool = True, strict: bool = True):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    full = is_distributed()
    return StateDictOptions(full_state_dict=full, cpu_offload=cpu and full, strict=strict)


def _full(t: torch.Tensor) -> torch.Tensor:
    """A plain CPU tensor (a DTensor shard is gathered first)."""
    if hasattr(t, "full_tensor"):
        t = t.full_tensor()
    return t.detach().contiguous().cpu()


def module_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's full state dict (gathered from FSDP2 shards; a collective when distributed)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return {k: _full(v) for k, v in get_model_state_dict(module, options=_options()).items()}


def load_module_state(module: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(module, tensors, options=_options(cpu=False))


def optimizer_state(module: nn.Module, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state keyed by parameter name → (``"name/key"`` tensors, JSON-able remainder)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    full = get_optimizer_state_dict(module, opt, options=_options())
    return optimizer_to_flat(full) if "state" in full else ({}, {})  # ranks > 0 receive nothing


def load_optimizer_state(
    module: nn.Module, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    # not strict: a parameter that has had no gradient yet (an unused branch) has no state to restore
    state = optimizer_from_flat(tensors, meta)
    set_optimizer_state_dict(module, opt, state, options=_options(cpu=False, strict=False))


def upgrade_optimizer_state(
    module: nn.Module, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The optimizer state of ``module`` (``optimizer_to_flat``'s form, keyed by parameter name) in an
    older parameter layout → today's, by ``components.upgraded_state`` (the module's own tensors go
    through it directly): each kind of per-parameter state, and the parameter names of each group."""
    from videopoet.components import upgraded_state

    if meta.get("int_keys") or meta.get("scalars"):  # not keyed by parameter name alone
        return tensors, meta
    upgrade = functools.partial(upgraded_state, module)
    kinds: dict[str, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        fqn, kind = name.rsplit("/", 1)
        kinds.setdefault(kind, {})[fqn] = value
    tensors = {f"{fqn}/{kind}": v for kind, d in kinds.items() for fqn, v in upgrade(d).items()}
    groups = []
    for group in meta["param_groups"]:  # names only: 0-d stand-ins go through the same upgrade
        names = upgrade({name: torch.zeros(()) for name in group["params"]})
        groups.append(dict(group, params=list(names)))
    return tensors, dict(meta, param_groups=groups)


def optimizer_to_flat(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into named tensors and a JSON-able remainder."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state_dict["state"].items():
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"{pid}/{key}"] = _full(value)
            else:
                scalars.setdefault(str(pid), {})[key] = value
    groups = json.loads(json.dumps(state_dict["param_groups"]))  # tuples → lists, checks JSON-ability
    keyed_by_int = all(isinstance(pid, int) for pid in state_dict["state"])
    return tensors, {"param_groups": groups, "scalars": scalars, "int_keys": keyed_by_int}


def optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    key = int if meta.get("int_keys") else str
    state: dict[Any, dict[str, Any]] = {}
    for name, value in tensors.items():
        pid, k = name.rsplit("/", 1)
        state.setdefault(key(pid), {})[k] = value
    for pid, kv in meta.get("scalars", {}).items():
        state.setdefault(key(pid), {}).update(kv)
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else g for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


# ---------------------------------------------------------------- RNG state
def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["torch_cuda"] = torch.cuda.get_rng_state()  # the current device's; every rank is in step
    np_state = np.random.get_state()
    meta = {
        "python": _jsonable(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if "torch_cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["torch_cuda"])
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = meta["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))


def _jsonable(x: Any) -> Any:
    if isinstance(x, tuple | list):
        return [_jsonable(v) for v in x]
    return x


# ---------------------------------------------------------------- save / find / load
def save_checkpoint(
    ckpt_root: str | Path,
    step: int,
    tensors: dict[str, dict[str, torch.Tensor]],
    state: dict[str, Any],
    *,
    keep: int = 2,
) -> Path:
    """Write ``{group}.safetensors`` for each tensor group plus ``state.json``, atomically.

    ``tensors`` maps a group name (``model``, ``ema``, ``opt_g``, …) to a flat name → tensor dict. Older
    complete checkpoints beyond the newest ``keep`` are removed once the new one is in place."""
    root = Path(ckpt_root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    final = root / name
    tmp = root / f".{name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    rng_t, rng_meta = rng_state()
    groups = {k: v for k, v in tensors.items() if v} | {"rng": rng_t}  # safetensors can't store nothing
    for group, flat in groups.items():
        save_file({k: _full(v) for k, v in flat.items()}, str(tmp / f"{group}.safetensors"))
    _write_text(tmp / STATE, json.dumps({"step": step, "complete": True, "rng": rng_meta, **state}, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_text(root / LATEST, name)
    _prune(root, keep, protect=final)
    return final


def is_complete(path: Path) -> bool:
    try:
        return bool(json.loads((path / STATE).read_text()).get("complete"))
    except (OSError, ValueError, AttributeError):
        return False


def latest_checkpoint(ckpt_root: str | Path) -> Path | None:
    """The newest complete checkpoint: the one ``latest`` names, else the newest complete ``step_*``."""
    root = Path(ckpt_root)
    try:
        named = root / (root / LATEST).read_text().strip()
        if named.name.startswith("step_") and is_complete(named):
            return named
    except (OSError, UnicodeDecodeError):
        pass
    complete = [p for p in sorted(root.glob("step_*"), reverse=True) if p.is_dir() and is_complete(p)]
    return complete[0] if complete else None


def load_checkpoint(path: str | Path, *, restore_rng: bool = True) -> tuple[dict[str, dict], dict]:
    """Read a checkpoint directory → (tensor groups, state). Restores RNG states unless told not to."""
    path = Path(path)
    if not is_complete(path):
        raise CheckpointError(f"{path} is not a checkpoint (no complete state.json); pick a step_* directory")
    state = json.loads((path / STATE).read_text())
    try:
        groups = {p.stem: load_file(str(p)) for p in sorted(path.glob("*.safetensors"))}
    except (SafetensorError, OSError) as e:
        msg = f"{path}: a tensor file cannot be read ({e}); remove this folder to resume from the one before"
        raise CheckpointError(msg) from None
    if restore_rng:
        set_rng_state(groups["rng"], state["rng"])
    return groups, state


def remove_temporaries(ckpt_root: str | Path) -> list[Path]:
    """Delete half-written checkpoint directories (``.step_*.tmp-*``) a crash left behind."""
    gone = [p for p in Path(ckpt_root).glob(".step_*.tmp-*") if p.is_dir()]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _prune(root: Path, keep: int, *, protect: Path) -> None:
    complete = [p for p in sorted(root.glob("step_*")) if p.is_dir() and is_complete(p)]
    for old in complete[:-keep] if keep > 0 else []:
        if old != protect:
            shutil.rmtree(old, ignore_errors=True)
