"""The one sample format every dataset yields (synthetic world, video folders, shards).

Keeping media as uint8 frames + float32 mono audio means datasets never touch torch; the training side
converts with ``frames_to_tensor`` / ``audio_to_tensor``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Sample:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    audio: np.ndarray  # float32 (N,) mono in [-1, 1]; zeros when has_audio is False
    sample_rate: int  # audio sample rate, Hz (16000 by default)
    fps: float  # frames per second of `frames` (8 by default)
    caption: str = ""
    has_audio: bool = True
    key: str = ""  # a stable id: file path + clip start, or "synthetic/<split>/<seed>"
    meta: dict[str, Any] = field(default_factory=dict)  # JSON-able extras (attributes for synthetic clips)


def frames_to_tensor(frames: np.ndarray, device=None):
    """uint8 (T, H, W, 3) → float32 torch tensor (3, T, H, W) in [-1, 1], made on ``device`` (None: the
    CPU): the uint8 frames are moved, a quarter of the float bytes, and converted there (same values)."""
    return uint8_to_video(frames_to_uint8(frames).to(device))


def frames_to_uint8(frames: np.ndarray):
    """uint8 (T, H, W, 3) → the same as a uint8 torch tensor (on the CPU), checked: what batches carry
    between processes (``uint8_to_video`` converts them where they land)."""
    import torch

    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames of shape (T, H, W, 3), got {frames.dtype} {frames.shape}")
    return torch.from_numpy(np.ascontiguousarray(frames))


def uint8_to_video(frames):
    """uint8 tensor (..., T, H, W, 3) → float (..., 3, T, H, W) in [-1, 1], on the tensor's device: one clip
    or a batch. Data can travel as uint8 (a quarter of the bytes) and be converted where it lands."""
    return frames.movedim(-1, -4).float() / 127.5 - 1.0


def tensor_to_frames(video) -> np.ndarray:
    """float tensor (3, T, H, W) in [-1, 1] → uint8 (T, H, W, 3) (values outside the range are clipped)."""
    x = video.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to("cpu")
    return x.permute(1, 2, 3, 0).numpy().astype(np.uint8)


def audio_to_tensor(audio: np.ndarray):
    """float32 (N,) → torch tensor (1, N)."""
    import torch

    if audio.ndim != 1:
        raise ValueError(f"expected mono audio of shape (N,), got {audio.shape}")
    return torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).unsqueeze(0)
