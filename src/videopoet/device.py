"""Where models run: device choice and the training/inference precision."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import torch

from videopoet.errors import UserError

DEVICE_TYPES = ("cpu", "cuda", "mps")


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` → cuda when available, else cpu. An unknown or unavailable device is a one-line UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    hint = "use auto, cpu, cuda or cuda:N"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"unknown device {name!r}; {hint}") from None
    if dev.type not in DEVICE_TYPES:
        raise UserError(f"device {name!r} is not supported here; {hint}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} requested but CUDA is not available; use cpu (or auto) instead")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise UserError(
                f"device {name!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {name!r} requested but MPS is not available; use cpu (or auto) instead")
    return dev


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (the training precision on GPUs); a no-op on CPU, where fp32 is faster."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (a no-op on CPU): host clocks measure nothing before this."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, iters: int, warmup: int) -> float:
    """Mean seconds per call of ``fn`` after ``warmup`` untimed calls, synchronised around the timed loop."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    synchronize(device)
    return (time.perf_counter() - t0) / iters
