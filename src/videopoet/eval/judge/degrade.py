"""Clips for robustness checks: a hand-drawn clip the world never renders, a tokenizer-like degradation."""

from __future__ import annotations

import numpy as np

from videopoet.eval.judge.arrays import blur, check_frames


def draw_moving_shape(shape: str, rgb, dx: float, frames: int = 17, size: int = 128) -> np.ndarray:
    """A clip drawn by hand, not by the world: a circle (any other ``shape``: a square) of radius ~16 px in
    colour ``rgb`` on a dark solid background, moving horizontally by ``dx`` pixels. For wrong-clip checks."""
    video = np.zeros((frames, size, size, 3), np.uint8)
    video[:] = (30, 30, 34)
    ys, xs = np.mgrid[0:size, 0:size]
    for t in range(frames):
        cx, cy = size / 2 - dx / 2 + dx * t / (frames - 1), size / 2
        if shape == "circle":
            inside = (xs - cx) ** 2 + (ys - cy) ** 2 <= 16**2
        else:
            inside = (np.abs(xs - cx) <= 13.6) & (np.abs(ys - cy) <= 13.6)
        video[t][inside] = rgb
    return video


def simulate_reconstruction(frames: np.ndarray, seed: int, *, strength: float = 1.0) -> np.ndarray:
    """Degrade clean frames the way a lossy video tokenizer does, as a stand-in until one is trained.

    Blur (σ = 1 px), a per-clip colour shift (gain ±6%, offset ±10 levels per channel), blockiness
    (each 8×8 block pulled 35% towards its mean, as a coarse codec does) and Gaussian noise (σ = 5
    levels); ``strength`` scales all four.
    """
    frames = check_frames(frames)
    rng = np.random.default_rng(seed)
    x = frames.astype(np.float32)
    x = np.moveaxis(blur(np.moveaxis(x, -1, 1), 1.0 * strength), 1, -1) if strength > 0 else x
    gain = 1 + strength * rng.uniform(-0.06, 0.06, 3).astype(np.float32)
    offset = strength * rng.uniform(-10, 10, 3).astype(np.float32)
    x = x * gain + offset
    t, h, w, c = x.shape
    hb, wb = h // 8, w // 8
    blocks = x[:, : hb * 8, : wb * 8].reshape(t, hb, 8, wb, 8, c)
    means = blocks.mean((2, 4), keepdims=True)
    x[:, : hb * 8, : wb * 8] = (blocks + 0.35 * strength * (means - blocks)).reshape(t, hb * 8, wb * 8, c)
    x = x + rng.normal(0, 5 * strength, x.shape).astype(np.float32)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
