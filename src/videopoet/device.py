"""Where models run: device choice and the training/inference precision."""

from __future__ import annotations

import contextlib

import torch

from videopoet.errors import UserError


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` → cuda when available, else cpu. An unavailable explicit device is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available; use cpu (or auto) instead")
    return dev


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (the training precision on GPUs); a no-op on CPU, where fp32 is faster."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
