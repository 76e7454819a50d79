"""Array helpers shared by the judge: input check, binary morphology, Gaussian blur, a robust line fit."""

from __future__ import annotations

import math

import numpy as np


def check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    return frames


def erode(mask: np.ndarray) -> np.ndarray:
    """3×3 binary erosion over the last two axes (border pixels count as outside)."""
    m = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)])
    out = np.ones_like(mask)
    h, w = mask.shape[-2:]
    for dy in range(3):
        for dx in range(3):
            out &= m[..., dy : dy + h, dx : dx + w]
    return out


def dilate(mask: np.ndarray, r: int = 1) -> np.ndarray:
    out = mask.copy()
    for _ in range(r):
        m = np.pad(out, [(0, 0)] * (out.ndim - 2) + [(1, 1), (1, 1)])
        h, w = out.shape[-2:]
        acc = np.zeros_like(out)
        for dy in range(3):
            for dx in range(3):
                acc |= m[..., dy : dy + h, dx : dx + w]
        out = acc
    return out


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over the last two axes (reflect padding)."""
    r = max(1, int(math.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = [(0, 0)] * (img.ndim - 2)
    x = np.pad(img, pad + [(r, r), (0, 0)], mode="reflect")
    x = sum(k[i] * x[..., i : i + img.shape[-2], :] for i in range(2 * r + 1))
    x = np.pad(x, pad + [(0, 0), (r, r)], mode="reflect")
    return sum(k[i] * x[..., :, i : i + img.shape[-1]] for i in range(2 * r + 1))


def robust_line(s: np.ndarray, v: np.ndarray, drop: float | None = None) -> tuple[float, float, np.ndarray]:
    """Least-squares line v ≈ a + b s; with ``drop`` re-fit twice without points more than ``drop`` below."""
    keep = np.isfinite(v)
    a = b = 0.0
    for _ in range(3 if drop is not None else 1):
        if keep.sum() < 2:
            break
        b, a = np.polyfit(s[keep], v[keep], 1)
        if drop is None:
            break
        keep = np.isfinite(v) & (v - (a + b * s) > -drop)
    return float(a), float(b), keep
