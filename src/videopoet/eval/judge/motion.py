"""Size and motion words of a measured object under the clip's camera (world displacement, growth, turns)."""

from __future__ import annotations

import math

import numpy as np

from videopoet.data.synthetic import GROWTH, MOVE_DISTANCE, ROTATION_RANGE
from videopoet.eval.judge.arrays import robust_line
from videopoet.eval.judge.camera import CameraEstimate
from videopoet.eval.judge.measure import Measured
from videopoet.eval.judge.objects import COLOR_NAMES
from videopoet.eval.judge.results import JudgedObject
from videopoet.eval.judge.shapes import SHAPE_AREA, size_word

REVERSAL_FRAC = 0.025  # a bounce reverses the screen track by ≥ this fraction of min(H, W)
BOUNCE_SURE_FRAC = 0.05  # …and a reversal this large is a bounce even when a rotation was measured
# Motion thresholds sit halfway between "nothing" and the world's own magnitudes.
ROTATION_MIN = 0.5 * ROTATION_RANGE[0]  # total rotation (rad) that counts as rotating
GROWTH_MIN = 0.5 * math.log(GROWTH)  # |log-radius change| over the clip that counts as growing/shrinking
MOVE_MIN = 0.5 * MOVE_DISTANCE  # world displacement (fraction of the frame) that counts as moving


def _world_displacement(m: Measured, camera: CameraEstimate, h: int, w: int) -> tuple[float, float]:
    """Displacement over the clip in world coordinates (camera undone), fractions of the frame."""
    g = m.geometry
    t_count = g.area.shape[0]
    s = np.arange(t_count) / max(t_count - 1, 1)
    zoom = np.exp(camera.log_zoom * s)
    ccx, ccy = (w - 1) / 2, (h - 1) / 2
    # The world's camera: p = c + z (w − c − P)  ⇒  w = c + P + (p − c) / z.
    wx = ccx + camera.pan_x * w * s + (g.cx - ccx) / zoom
    wy = ccy + camera.pan_y * h * s + (g.cy - ccy) / zoom
    _, dx, _ = robust_line(s, np.where(m.ok, wx, np.nan))
    _, dy, _ = robust_line(s, np.where(m.ok, wy, np.nan))
    return dx / w, dy / h


def world_cost(m: Measured, camera: CameraEstimate, h: int, w: int) -> float:
    """Distance of an object's world displacement from the world's own (still, or MOVE_DISTANCE along x/y)."""
    if m.reversal >= REVERSAL_FRAC * min(h, w):
        return 0.0  # bouncing objects move in screen space: no evidence about the camera
    dx, dy = _world_displacement(m, camera, h, w)
    targets = [
        (0.0, 0.0),
        (MOVE_DISTANCE, 0.0),
        (-MOVE_DISTANCE, 0.0),
        (0.0, MOVE_DISTANCE),
        (0.0, -MOVE_DISTANCE),
    ]
    return min(math.hypot(dx - tx, dy - ty) for tx, ty in targets)


def label_object(m: Measured, camera: CameraEstimate, h: int, w: int) -> JudgedObject:
    """Size and motion words of a measured object under the clip's camera."""
    short = min(h, w)
    a0, b0 = m.log_area_fit
    # Size: radius at the middle frame from the area fit, camera zoom removed.
    radius = (
        math.sqrt(math.exp(a0 + b0 * 0.5) / SHAPE_AREA[m.shape]) / math.exp(camera.log_zoom * 0.5) / short
    )
    growth = b0 / 2 - camera.log_zoom  # log-radius change over the clip, camera zoom removed
    dx, dy = _world_displacement(m, camera, h, w)
    # A bounce outranks a measured rotation when the track turns back far (a smeared fast object's moment
    # phase can turn coherently), and a measured growth always (a codec fading a fast object fakes an area
    # trend). Development clips: clean bounces turn back ≥ 8.5 px, other motions ≤ 2.6 px after the
    # tokenizer, up to 4.5 px where another object hides part of a rotating one.
    if m.reversal >= BOUNCE_SURE_FRAC * short:
        motion = "bouncing"
    elif abs(m.rotation) >= ROTATION_MIN:
        motion = "rotating"
    elif m.reversal >= REVERSAL_FRAC * short:
        motion = "bouncing"
    elif abs(growth) >= GROWTH_MIN and abs(growth) / GROWTH_MIN >= max(abs(dx), abs(dy)) / MOVE_MIN:
        # a world object grows or moves, never both: when both pass, the larger relative to its threshold
        # wins. Development reconstructions: a codec fading a small moving object fakes a shrink of up to
        # 0.98× the world's growth while it still moves ≥ 0.7× the world's distance; growing and shrinking
        # objects move ≤ 0.16× it.
        motion = "growing" if growth > 0 else "shrinking"
    elif max(abs(dx), abs(dy)) >= MOVE_MIN:
        if abs(dx) >= abs(dy):
            motion = "moving right" if dx > 0 else "moving left"
        else:
            motion = "moving down" if dy > 0 else "moving up"
    else:
        motion = "static"
    details = {
        "moment_mags": [float(v) for v in m.mags],
        "compact": m.compact,
        "rotation": float(m.rotation),
        "growth": float(growth),
        "reversal_px": float(m.reversal),
        "world_dx": float(dx),
        "world_dy": float(dy),
        "hidden_frames": int(m.hidden.sum()),
    }
    g = m.geometry
    track = [(float(x), float(y)) for x, y in zip(g.cx, g.cy)]
    return JudgedObject(
        COLOR_NAMES[m.color], m.shape, size_word(radius), motion, float(radius), track, details
    )
