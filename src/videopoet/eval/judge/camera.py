"""Camera motion from the background: photometric fits of a pan along x or y and of a zoom on consecutive
frames (objects masked out); the family with the lowest residual wins when it moves far enough.

Dimension key: T frames, H W pixels (at half resolution inside the fit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from videopoet.data.synthetic import PAN_DISTANCE, ZOOM_FACTOR

# Camera thresholds sit halfway between "nothing" and the world's own magnitudes.
CAMERA_PAN_MIN = 0.5 * PAN_DISTANCE  # pan distance (fraction of the frame per clip) that counts as a pan
CAMERA_ZOOM_MIN = 0.5 * math.log(ZOOM_FACTOR)  # |log zoom| per clip that counts as a zoom
CAMERA_GAIN_MIN = 0.15  # a camera move must explain this fraction of the static residual
# Stripes are 1-D: a pan along x and one along y can shift them identically, at different speeds. The
# family whose speed is nearer the world's own then wins: score = residual/static + this × |log(speed ratio)|.
CAMERA_MAGNITUDE_WEIGHT = 0.5
GAUSS_NEWTON_STEPS = 4  # per camera family; sub-pixel per-step motions converge in two or three
CAMERA_TIE = 0.15  # pan scores closer than this are a tie that the objects' world tracks break


@dataclass
class CameraEstimate:
    motion: str
    pan_x: float  # camera travel over the clip, fraction of the width (+ = the view moves right)
    pan_y: float  # fraction of the height (+ = the view moves down)
    log_zoom: float  # log zoom at the end of the clip
    residuals: dict[str, float]  # mean squared background residual per hypothesis
    alternative: CameraEstimate | None = None  # the other pan axis when the background cannot tell them apart


STATIC = ("static", 0.0, 0.0, 0.0)  # motion, pan_x, pan_y, log_zoom of a still camera


class _Pairs(NamedTuple):
    """Consecutive background frames at half resolution, shaped for one warp of all pairs at once."""

    cur: np.ndarray  # float32 (T-1, h, w) luminance of frames 0 … T-2
    cur_valid: np.ndarray  # bool (T-1, h, w) background pixels of those frames
    nxt: np.ndarray  # float32 (4, T-1, h, w): frames 1 … T-1 as [luminance, validity, ∂x, ∂y]
    xs: np.ndarray  # float32 (h, w) pixel grid
    ys: np.ndarray  # float32 (h, w)


def estimate_camera(gray: np.ndarray, valid: np.ndarray) -> CameraEstimate:
    """Fit each one-parameter camera family on consecutive frame pairs of the background."""
    t_count = gray.shape[0]
    if t_count < 2:
        return CameraEstimate(*STATIC, {})
    pairs = _half_resolution_pairs(gray, valid)
    h, w = pairs.xs.shape
    residuals, params = {}, {}
    residuals["static"] = _residual_and_grad(pairs, "x", 0.0)[0]
    for family in ("x", "y", "z"):
        u = 0.0
        for _ in range(GAUSS_NEWTON_STEPS):
            _, jtj, jtr = _residual_and_grad(pairs, family, u)
            if jtj <= 0:
                break
            step = -jtr / jtj
            u += float(np.clip(step, -2.0, 2.0) if family != "z" else np.clip(step, -0.05, 0.05))
        residuals[family] = _residual_and_grad(pairs, family, u)[0]
        params[family] = u
    steps = t_count - 1
    # Content moves by −u per step, the camera's position P by +u (pan left: content slides right).
    return _choose(residuals, params["x"] * steps / w, params["y"] * steps / h, params["z"] * steps)


def _half_resolution_pairs(gray: np.ndarray, valid: np.ndarray) -> _Pairs:
    # Half resolution: 4× cheaper and the texture is coarse (≥ 16 px); pans are fractions of the frame.
    t_count, full_h, full_w = gray.shape
    half_h, half_w = full_h // 2, full_w // 2
    gray = gray[:, : 2 * half_h, : 2 * half_w].reshape(t_count, half_h, 2, half_w, 2).mean((2, 4))
    valid = valid[:, : 2 * half_h, : 2 * half_w].reshape(t_count, half_h, 2, half_w, 2).all((2, 4))
    gray = gray.astype(np.float32)
    ys, xs = np.mgrid[0:half_h, 0:half_w].astype(np.float32)
    gy_all, gx_all = np.gradient(gray, axis=(1, 2))
    # Next frames stacked as channels [luminance, background validity, ∂x, ∂y]: every pair shares the
    # same sampling grid (the motion per step is constant), so one gather per channel serves them all.
    nxt = np.stack([gray[1:], valid[1:].astype(np.float32), gx_all[1:], gy_all[1:]])  # (4, T-1, H, W)
    return _Pairs(gray[:-1], valid[:-1], nxt, xs, ys)


def _residual_and_grad(pairs: _Pairs, family: str, u: float) -> tuple[float, float, float]:
    """Mean squared residual and the Gauss-Newton sums for per-step parameter u (all pairs at once)."""
    xs, ys, nxt = pairs.xs, pairs.ys, pairs.nxt
    h, w = xs.shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    if family == "x":
        px, py, dpx, dpy = xs - u, ys, -np.ones_like(xs), np.zeros_like(ys)
    elif family == "y":
        px, py, dpx, dpy = xs, ys - u, np.zeros_like(xs), -np.ones_like(ys)
    else:
        rho = math.exp(u)
        px, py = cx + rho * (xs - cx), cy + rho * (ys - cy)
        dpx, dpy = rho * (xs - cx), rho * (ys - cy)
    inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)  # (H, W)
    xc, yc = np.clip(px, 0, w - 1.001), np.clip(py, 0, h - 1.001)
    x0, y0 = xc.astype(np.intp), yc.astype(np.intp)
    fx, fy = (xc - x0).astype(np.float32), (yc - y0).astype(np.float32)
    warped = (
        nxt[:, :, y0, x0] * ((1 - fx) * (1 - fy))
        + nxt[:, :, y0, x0 + 1] * (fx * (1 - fy))
        + nxt[:, :, y0 + 1, x0] * ((1 - fx) * fy)
        + nxt[:, :, y0 + 1, x0 + 1] * (fx * fy)
    )  # (4, T-1, H, W)
    # weights, cheaper than indexing
    keep = (inside & pairs.cur_valid & (warped[1] > 0.99)).astype(np.float32)
    r = (warped[0] - pairs.cur) * keep
    j = (warped[2] * dpx + warped[3] * dpy) * keep
    count = max(float(keep.sum()), 1.0)
    return float((r * r).sum()) / count, float((j * j).sum()), float((j * r).sum())


def _choose(residuals: dict[str, float], pan_x: float, pan_y: float, log_zoom: float) -> CameraEstimate:
    """The family that explains enough of the static residual with a plausible magnitude; for two pans
    that tie (stripes at ~45°) the other one is kept as ``alternative``."""
    base = residuals["static"]
    candidates = []
    for family, magnitude, minimum, nominal in (
        ("x", abs(pan_x), CAMERA_PAN_MIN, PAN_DISTANCE),
        ("y", abs(pan_y), CAMERA_PAN_MIN, PAN_DISTANCE),
        ("z", abs(log_zoom), CAMERA_ZOOM_MIN, math.log(ZOOM_FACTOR)),
    ):
        relative = residuals[family] / max(base, 1e-9)
        if magnitude >= minimum and 1.0 - relative >= CAMERA_GAIN_MIN:
            score = relative + CAMERA_MAGNITUDE_WEIGHT * abs(math.log(magnitude / nominal))
            candidates.append((score, family))

    def estimate(family: str | None) -> CameraEstimate:
        if family is None:
            return CameraEstimate(*STATIC, residuals)
        if family == "x":
            return CameraEstimate("pan right" if pan_x > 0 else "pan left", pan_x, 0.0, 0.0, residuals)
        if family == "y":
            return CameraEstimate("pan down" if pan_y > 0 else "pan up", 0.0, pan_y, 0.0, residuals)
        return CameraEstimate("zoom in" if log_zoom > 0 else "zoom out", 0.0, 0.0, log_zoom, residuals)

    if not candidates:
        return estimate(None)
    candidates.sort()
    best = estimate(candidates[0][1])
    pans = [c for c in candidates if c[1] in ("x", "y")]
    if len(pans) == 2 and abs(pans[0][0] - pans[1][0]) < CAMERA_TIE and candidates[0][1] != "z":
        best.alternative = estimate(pans[1][1] if pans[0][1] == candidates[0][1] else pans[0][1])
    return best
