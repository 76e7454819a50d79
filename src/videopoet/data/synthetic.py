"""The synthetic audio-visual world: a clip is a pure function of (seed, split, size, frames, fps, rate).

Pure numpy, so it runs anywhere (GPU boxes without ffmpeg included). Every clip carries its ground truth:
attributes, per-frame object positions / radii / angles, visible-pixel masks, depth, analytic optical flow
and wall-bounce events, so the world doubles as the evaluation oracle.

Dimension key: T frames, H W pixels, K objects, N audio samples, S side of an object's pixel box,
C candidate start positions, E envelope points.

Geometry. Pixel (row i, column j) has its centre at (x=j, y=i); the frame spans [-0.5, W-0.5]. Time inside
a clip is normalised, s = frame / (T-1) in [0, 1], so a motion covers the same fraction of the frame in a
17- and a 41-frame clip (a 41-frame clip is the same motion, slower). The camera maps a world point w to
the screen as p = c + z(s) * (w - c - P(s)) with c the frame centre, P the pan offset (the camera's
position: "pan left" moves P left, so content slides right) and z the zoom (a focal-length zoom about the
centre: no parallax, depth unchanged). Object pixels are painted with a faint shading gradient fixed to
the object, so the analytic flow (object motion + camera, rotation and scaling included) is checkable
on object interiors, not just edges.

Choices a judge relies on (docs/synthetic_world.md lists them all):
- backgrounds are low-frequency (stripe periods and noise cells >= 16 px) and darker than any object;
- a moving camera always has a textured background (stripes or noise): on a solid or gradient background
  a pan would be invisible or read as object motion; under a pan, stripes are tilted 15-35 degrees off
  the pan axis so the pan moves them visibly and its axis stays readable (stripes only show motion
  across them);
- a bouncing object bounces off the frame borders (the walls of the view), so every bounce is visible
  under any camera motion; other objects move in the world and are carried by the camera;
- circles never rotate (EXCLUDED_COMPOSITIONS in world.py): a rotating circle looks static;
- the size word names the radius at the middle frame (growing / shrinking change it by 1.8x
  geometrically around it);
- sound: one voice per object (timbre from the shape, pitch from colour and size), loudness from the
  object's own speed (camera motion is silent), a broadband click at every wall bounce, exact silence
  when nothing moves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from videopoet.data.world import (
    BACKGROUND_DARK,
    BACKGROUND_MID,
    BACKGROUND_PHRASES,
    BACKGROUNDS,
    CAMERA_PHRASES,
    CAMERAS,
    COLORS,
    HELDOUT_COMPOSITIONS,
    MOTION_PHRASES,
    MOTIONS,
    SHAPES,
    SIZES,
    is_excluded_object,
    is_heldout_object,
)
from videopoet.errors import UserError

SPLITS = ("train", "heldout")

# ---------------------------------------------------------------- world constants (tuning knobs)
MOVE_DISTANCE = 0.38  # moving objects travel this fraction of the frame width/height per clip
PAN_DISTANCE = 0.12  # a pan shifts the view by this fraction of the frame per clip
ZOOM_FACTOR = 1.35  # zoom in ends at this magnification (zoom out at its inverse)
GROWTH = 1.8  # growing/shrinking objects change radius by this factor over the clip
ROTATION_RANGE = (0.6 * math.pi, 0.9 * math.pi)  # total rotation per clip, radians (either direction)
BOUNCE_MAJOR = (
    1.15,
    1.9,
)  # bouncing: travel along the main axis, in wall-to-wall spans per clip (>1: a bounce)
BOUNCE_MINOR = (0.45, 1.2)  # ... and along the other axis (diagonal motion)
SHADING = 0.15  # object colour varies by +-15% across the object (fixed to it: makes motion trackable)
EDGE_MARGIN = 1.0  # objects stay at least this many pixels inside the frame
STRIPE_PAN_TILT = (15.0, 35.0)  # under a pan, the stripe normal is this many degrees off the pan axis
STRIPE_PERIOD = (20 / 128, 36 / 128)  # stripe period as a fraction of min(W, H) (>= 16 px enforced)
NOISE_CELL = (20 / 128, 32 / 128)  # noise lattice cell as a fraction of min(W, H) (>= 16 px enforced)
MIN_TEXTURE_PX = 16.0  # no background structure finer than this: keeps clips tokenizer-friendly
CAMERA_STATIC_P = 0.4  # probability of a static camera (the other six moves share the rest)
TWO_OBJECTS_P = 0.5  # probability of a second object
BACKGROUND_DEPTH = 4.0  # depth of the background plane (objects: 1 + depth order)

# Sound.
VOICE_AMP = 0.3  # a voice's loudness approaches this as its speed grows
SPEED_REF = 0.3  # speed (frame sizes per clip) at which a voice reaches half of VOICE_AMP
CLICK_AMP = 0.5  # peak of a bounce click
CLICK_SECONDS = 0.04  # click length; it decays in ~8 ms
CLICK_DECAY_S = 0.008
FADE_S = 0.005  # voices fade in/out over this at the clip's ends (no start/stop clicks)
MAX_HARMONIC_FRACTION = (
    0.38  # voice partials stay below this fraction of the sample rate (clicks own the top)
)
ENVELOPE_HZ = 200  # loudness is computed at this rate, then interpolated per sample
# Pitch per colour (a major pentatonic ladder, C4..E5), scaled by size: small an octave up, large down.
COLOR_PITCH_HZ = {
    "red": 261.63,
    "orange": 293.66,
    "yellow": 329.63,
    "green": 392.00,
    "cyan": 440.00,
    "blue": 523.25,
    "purple": 587.33,
    "white": 659.25,
}
SIZE_OCTAVE = {"small": 2.0, "medium": 1.0, "large": 0.5}
# Timbre per shape: relative amplitudes of harmonics 1, 2, 3, ... (sine, square-, triangle-, saw-like, ...).
SHAPE_HARMONICS = {
    "circle": (1.0,),
    "square": (1.0, 0.0, 1 / 3, 0.0, 1 / 5, 0.0, 1 / 7),
    "triangle": (1.0, 0.0, 1 / 9, 0.0, 1 / 25),
    "star": (1.0, 1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 6),
    "diamond": (1.0, 0.6, 0.0, 0.3),
    "cross": (1.0, 0.0, 0.0, 0.7, 0.0, 0.0, 0.5),
}

# Shape geometry: the shape's half bounding box at angle 0, (x, y) in units of the object radius (keeps
# unrotated objects inside the frame without wasting room), and its extent (bounding circle radius).
SHAPE_HALF_BOX = {
    "circle": (1.0, 1.0),
    "square": (0.85, 0.85),
    "triangle": (1.25 * math.sqrt(3) / 2, 1.25),
    "star": (1.25 * math.sin(math.radians(72)), 1.25),
    "diamond": (0.75, 1.2),
    "cross": (1.1, 1.1),
}
SHAPE_EXTENT = {
    "circle": 1.0,
    "square": 0.85 * math.sqrt(2),
    "triangle": 1.25,
    "star": 1.25,
    "diamond": 1.2,
    "cross": math.hypot(1.1, 0.38),
}


class ClipArgumentError(UserError, ValueError):
    """A bad argument to render_clip (a ValueError, and a one-line UserError for the CLI)."""


@dataclass
class Clip:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    audio: np.ndarray  # float32 (N,) in [-1, 1], N = round(T / fps * sample_rate)
    sample_rate: int  # Hz
    fps: float  # frames per second
    caption: str  # one paraphrase of the attributes
    attributes: dict[str, Any]  # JSON-able ground truth (objects, background, camera, events, split, seed)
    masks: np.ndarray  # bool (K, T, H, W): visible pixels of each object after occlusion
    depth: np.ndarray  # float32 (T, H, W): BACKGROUND_DEPTH on the background, 1 + depth order on objects
    flow: np.ndarray  # float32 (T-1, H, W, 2): (dx, dy) in pixels taking frame t to frame t+1


# ---------------------------------------------------------------- scene description (size independent)
class _Camera(NamedTuple):
    motion: str
    pan: tuple[float, float]  # pan offset at s=1, as a fraction of (W, H)
    zoom_end: float  # zoom at s=1


@dataclass
class _Object:
    shape: str
    color: str
    size: str
    motion: str
    depth: int
    angle0: float  # orientation at s=0 (0: canonical, e.g. triangle pointing up)
    spin: float  # total rotation over the clip, radians
    bounce: tuple[float, float, float, float]  # bouncing: (u0x, u0y, travel_x, travel_y) in wall spans
    choice: float  # uniform draw that picks the start position among the feasible ones
    extra: tuple[float, ...]  # uniform draws for alternative starts (second object avoiding the first)

    def spec(self) -> dict[str, str]:
        return {"shape": self.shape, "color": self.color, "size": self.size, "motion": self.motion}


def _sample_object(rng: np.random.Generator, fixed: dict[str, str] | None, banned_colors: set[str]) -> dict:
    """Draw shape/color/size/motion, honouring the fixed keys, avoiding excluded compositions."""
    while True:
        obj = {
            "shape": SHAPES[rng.integers(len(SHAPES))],
            "color": COLORS_LIST[rng.integers(len(COLORS_LIST))],
            "size": SIZES_LIST[rng.integers(len(SIZES_LIST))],
            "motion": MOTIONS[rng.integers(len(MOTIONS))],
        }
        obj.update(fixed or {})
        if obj["color"] not in banned_colors and not is_excluded_object(obj):
            return obj


COLORS_LIST = tuple(COLORS)
SIZES_LIST = tuple(SIZES)


def _sample_scene(rng: np.random.Generator, split: str) -> tuple[list[_Object], _Camera, dict[str, Any]]:
    """A scene's objects, camera and background (in this order of draws from ``rng``)."""
    objects = [_place_object(rng, spec, k) for k, spec in enumerate(_sample_specs(rng, split))]
    camera = _sample_camera(rng)
    return objects, camera, _sample_background(rng, camera.motion)


def _sample_specs(rng: np.random.Generator, split: str) -> list[dict]:
    """One or two objects' colour, shape, size and motion: a held-out composition first on the held-out
    split, none on the train split."""
    n_obj = 2 if rng.random() < TWO_OBJECTS_P else 1
    heldout_slot = int(rng.integers(n_obj))
    combo = HELDOUT_COMPOSITIONS[rng.integers(len(HELDOUT_COMPOSITIONS))]
    specs: list[dict] = []
    if split == "heldout":  # the held-out object first (its colour may be fixed), then any other
        specs.append(_sample_object(rng, dict(combo), set()))
        if n_obj == 2:
            other = _sample_object(rng, None, {specs[0]["color"]})
            specs.insert(1 - heldout_slot, other)  # heldout_slot picks which one is in front
        return specs
    for _ in range(n_obj):
        used = {o["color"] for o in specs}
        spec = _sample_object(rng, None, used)
        while is_heldout_object(spec):
            spec = _sample_object(rng, None, used)
        specs.append(spec)
    return specs


def _place_object(rng: np.random.Generator, spec: dict, depth: int) -> _Object:
    """``spec`` with its bounce start and direction, spin and the draws its motion may use."""
    sx = -1.0 if rng.random() < 0.5 else 1.0
    sy = -1.0 if rng.random() < 0.5 else 1.0
    major, minor = rng.uniform(*BOUNCE_MAJOR), rng.uniform(*BOUNCE_MINOR)
    tx, ty = (major, minor) if rng.random() < 0.6 else (minor, major)
    bounce = (rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), sx * tx, sy * ty)
    spin = rng.uniform(*ROTATION_RANGE) * (-1.0 if rng.random() < 0.5 else 1.0)
    return _Object(
        **spec,
        depth=depth,
        angle0=0.0,
        spin=spin if spec["motion"] == "rotating" else 0.0,
        bounce=bounce,
        choice=float(rng.random()),
        extra=tuple(float(v) for v in rng.random(12)),
    )


def _sample_camera(rng: np.random.Generator) -> _Camera:
    if rng.random() < CAMERA_STATIC_P:
        cam_motion = "static"
    else:
        cam_motion = CAMERAS[1 + rng.integers(len(CAMERAS) - 1)]
    pan = {
        "pan left": (-PAN_DISTANCE, 0.0),
        "pan right": (PAN_DISTANCE, 0.0),
        "pan up": (0.0, -PAN_DISTANCE),
        "pan down": (0.0, PAN_DISTANCE),
    }.get(cam_motion, (0.0, 0.0))
    zoom_end = {"zoom in": ZOOM_FACTOR, "zoom out": 1.0 / ZOOM_FACTOR}.get(cam_motion, 1.0)
    return _Camera(cam_motion, pan, zoom_end)


def _stripe_angle(cam_motion: str, u_angle: float, flip: bool) -> float:
    """Stripes only show motion across them (the aperture problem): under a pan, the stripe normal is
    tilted 15-35 deg off the pan axis, so the pan moves them clearly (>= cos 35 of its speed) and a pan
    along the other axis would have to be >= 1.4x faster to look the same; otherwise diagonal."""
    if cam_motion in ("pan left", "pan right", "pan up", "pan down"):
        axis = 0.0 if cam_motion in ("pan left", "pan right") else 90.0
        off = STRIPE_PAN_TILT[0] + (STRIPE_PAN_TILT[1] - STRIPE_PAN_TILT[0]) * u_angle
        return axis + (-off if flip else off)
    return 20.0 + 50.0 * u_angle + (90.0 if flip else 0.0)  # diagonal: never axis-aligned


def _sample_background(rng: np.random.Generator, cam_motion: str) -> dict[str, Any]:
    # A moving camera needs texture to be seen: solid and gradient backgrounds only with a static camera.
    kinds = BACKGROUNDS if cam_motion == "static" else ("stripes", "noise")
    kind = kinds[rng.integers(len(kinds))]
    dark = list(BACKGROUND_DARK.items())[rng.integers(len(BACKGROUND_DARK))]
    mid = list(BACKGROUND_MID.items())[rng.integers(len(BACKGROUND_MID))]
    solid = dark if rng.random() < 0.5 else mid
    u_angle, flip = rng.random(), rng.random() < 0.5
    background: dict[str, Any] = {"kind": kind}
    if kind == "solid":
        background.update(color_names=[solid[0]], colors=[list(solid[1])])
    else:
        lo_first = rng.random() < 0.5
        names = [dark[0], mid[0]] if lo_first else [mid[0], dark[0]]
        cols = [list(dark[1]), list(mid[1])] if lo_first else [list(mid[1]), list(dark[1])]
        background.update(color_names=names, colors=cols)
    if kind == "gradient":
        background["angle_deg"] = float(rng.uniform(0.0, 360.0))
    elif kind == "stripes":
        background.update(
            angle_deg=float(_stripe_angle(cam_motion, u_angle, flip)),
            period_frac=float(rng.uniform(*STRIPE_PERIOD)),
            phase=float(rng.random()),
        )
    elif kind == "noise":
        background.update(cell_frac=float(rng.uniform(*NOISE_CELL)), noise_seed=int(rng.integers(2**31)))
    return background


# ---------------------------------------------------------------- trajectories
class _Track(NamedTuple):
    x: np.ndarray  # (..., n) screen centre x, pixels
    y: np.ndarray  # (..., n) screen centre y, pixels
    radius: np.ndarray  # (..., n) object radius on screen, pixels (zoom included)
    angle: np.ndarray  # (n,) orientation, radians


def _camera_zoom(cam: _Camera, s: np.ndarray) -> np.ndarray:
    return cam.zoom_end**s


def _camera_offset(cam: _Camera, s: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    return cam.pan[0] * width * s, cam.pan[1] * height * s


def _fold(u: np.ndarray) -> np.ndarray:
    """Triangle wave: position in [0, 1] of a point moving at constant speed between two walls."""
    m = np.mod(u, 2.0)
    return 1.0 - np.abs(m - 1.0)


def _object_radius(obj: _Object, s: np.ndarray, base: float) -> np.ndarray:
    if obj.motion == "growing":
        return base * GROWTH ** (s - 0.5)
    if obj.motion == "shrinking":
        return base * GROWTH ** (0.5 - s)
    return np.full_like(s, base)


def _world_offset(obj: _Object, s: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    dx, dy = {
        "moving left": (-MOVE_DISTANCE * width, 0.0),
        "moving right": (MOVE_DISTANCE * width, 0.0),
        "moving up": (0.0, -MOVE_DISTANCE * height),
        "moving down": (0.0, MOVE_DISTANCE * height),
    }.get(obj.motion, (0.0, 0.0))
    return dx * s, dy * s


def _half_box(obj: _Object) -> tuple[float, float]:
    """Half bounding box of the object over the clip, in units of its radius."""
    if obj.spin != 0.0:
        return SHAPE_EXTENT[obj.shape], SHAPE_EXTENT[obj.shape]
    return SHAPE_HALF_BOX[obj.shape]


def _bounce_track(
    obj: _Object, s: np.ndarray, zoom: np.ndarray, base: float, width: int, height: int, u0=None
) -> tuple[np.ndarray, np.ndarray]:
    """Screen centre of a bouncing object: constant speed between the frame borders (radius-aware)."""
    hx, hy = _half_box(obj)
    ex, ey = base * hx * zoom + EDGE_MARGIN, base * hy * zoom + EDGE_MARGIN
    u0x, u0y, tx, ty = obj.bounce
    if u0 is not None:
        u0x, u0y = u0
    lo_x, hi_x = ex - 0.5, np.maximum(width - 0.5 - ex, ex - 0.5)
    lo_y, hi_y = ey - 0.5, np.maximum(height - 0.5 - ey, ey - 0.5)
    x = lo_x + (hi_x - lo_x) * _fold(np.add.outer(np.atleast_1d(u0x), tx * s))
    y = lo_y + (hi_y - lo_y) * _fold(np.add.outer(np.atleast_1d(u0y), ty * s))
    return x, y


def _bounce_events(obj: _Object, frames: int) -> list[tuple[float, str]]:
    """(fractional frame, wall) of every wall contact in (0, T-1]; none for a 1-frame clip."""
    if obj.motion != "bouncing" or frames < 2:
        return []
    u0x, u0y, tx, ty = obj.bounce
    events = []
    for u0, travel, walls in ((u0x, tx, ("left", "right")), (u0y, ty, ("top", "bottom"))):
        lo, hi = sorted((u0, u0 + travel))
        for n in range(math.floor(lo) + 1, math.ceil(hi)):
            s = (n - u0) / travel
            if 0.0 < s <= 1.0:
                events.append((s * (frames - 1), walls[n % 2]))  # even integers: u=0 side, odd: u=1 side
    return events


def _bounce_starts(obj: _Object) -> tuple[np.ndarray, np.ndarray]:
    """Candidate (u0x, u0y) starts (C,) of a bouncing object: its own draw first, then alternatives."""
    u0x = np.array([obj.bounce[0], *(0.1 + 0.8 * np.asarray(obj.extra[0::2]))])
    u0y = np.array([obj.bounce[1], *(0.1 + 0.8 * np.asarray(obj.extra[1::2]))])
    return u0x, u0y


def _candidate_tracks(obj, cam, s, base, width, height) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Screen tracks (C, T) for every candidate start, plus a feasibility flag (C,)."""
    zoom = _camera_zoom(cam, s)
    radius = _object_radius(obj, s, base) * zoom
    hx, hy = _half_box(obj)
    ex, ey = radius * hx + EDGE_MARGIN, radius * hy + EDGE_MARGIN
    if obj.motion == "bouncing":
        u0x, u0y = _bounce_starts(obj)
        x, y = _bounce_track(obj, s, zoom, base, width, height, u0=(u0x, u0y))
        return x, y, np.ones(x.shape[0], bool)
    grid = np.linspace(0.0, 1.0, 33)
    gx, gy = np.meshgrid(grid * (width - 1), grid * (height - 1), indexing="xy")
    wx0, wy0 = gx.reshape(-1), gy.reshape(-1)  # (C,)
    ox, oy = _world_offset(obj, s, width, height)
    px, py = _camera_offset(cam, s, width, height)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    x = cx + zoom * (wx0[:, None] + ox - cx - px)  # (C, T)
    y = cy + zoom * (wy0[:, None] + oy - cy - py)
    inside = (x - ex >= -0.5) & (x + ex <= width - 0.5) & (y - ey >= -0.5) & (y + ey <= height - 0.5)
    return x, y, inside.all(axis=1)


def _place_objects(objects, cam, s, width, height) -> list[_Track]:
    """Choose each object's start so it stays inside the frame and the back object is not hidden for long."""
    short = min(width, height)
    tracks: list[_Track] = []
    zoom = _camera_zoom(cam, s)
    for obj in objects:
        base = SIZES[obj.size] * short
        x, y, ok = _candidate_tracks(obj, cam, s, base, width, height)
        radius = _object_radius(obj, s, base) * zoom
        if obj.motion == "bouncing":
            # candidate 0 is the object's own draw; the others are alternatives for avoiding overlap
            order = list(range(x.shape[0]))
        else:
            feasible = np.flatnonzero(ok)
            if feasible.size == 0:  # tiny frames: take the least-bad start (centre-most)
                cx, cy = (width - 1) / 2, (height - 1) / 2
                feasible = np.array([int(np.argmin(np.abs(x - cx).max(1) + np.abs(y - cy).max(1)))])
            picks = [obj.choice, *obj.extra]
            order = [int(feasible[min(int(u * feasible.size), feasible.size - 1)]) for u in picks]
        chosen = order[0]
        if tracks:
            best, best_score = order[0], -1.0
            for c in order:
                score = 1.0
                for t in tracks:
                    ext_sum = (radius * SHAPE_EXTENT[obj.shape] + t.radius * SHAPE_EXTENT["circle"]) * 0.75
                    close = np.hypot(x[c] - t.x, y[c] - t.y) < ext_sum
                    score = min(score, 1.0 - close.mean())
                if score >= 0.65:
                    best = c
                    break
                if score > best_score:
                    best, best_score = c, score
            chosen = best
        if obj.motion == "bouncing":  # events and sound follow the start actually used
            u0x, u0y = _bounce_starts(obj)
            obj.bounce = (float(u0x[chosen]), float(u0y[chosen]), *obj.bounce[2:])
        angle = obj.angle0 + obj.spin * s
        tracks.append(_Track(x[chosen], y[chosen], radius, angle))
    return tracks


def _own_speed(obj: _Object, s: np.ndarray, width: int, height: int, short: float) -> np.ndarray:
    """The object's own speed (camera excluded), in frame sizes per clip, at normalised times s."""
    base = SIZES[obj.size] * short
    radius = _object_radius(obj, s, base)
    if obj.motion == "bouncing":
        x, y = _bounce_track(obj, s, np.ones_like(s), base, width, height)
        x, y = x[0], y[0]
    else:
        x, y = _world_offset(obj, s, width, height)
        x, y = np.broadcast_to(x, s.shape), np.broadcast_to(y, s.shape)
    angle = obj.angle0 + obj.spin * s
    if s.size < 2:
        return np.zeros_like(s)
    ext = SHAPE_EXTENT[obj.shape]
    speed = (
        np.hypot(np.gradient(x, s), np.gradient(y, s))
        + np.abs(np.gradient(radius, s)) * ext
        + np.abs(np.gradient(angle, s)) * radius * ext
    )
    return speed / short


# ---------------------------------------------------------------- shapes (signed distance, object units)
def _sd_circle(qx, qy):
    return np.hypot(qx, qy) - 1.0


def _sd_square(qx, qy, half=0.85):
    dx, dy = np.abs(qx) - half, np.abs(qy) - half
    return np.hypot(np.maximum(dx, 0), np.maximum(dy, 0)) + np.minimum(np.maximum(dx, dy), 0)


def _sd_triangle(qx, qy, circumradius=1.25):
    # equilateral triangle pointing up (screen y grows downwards, so flip y)
    r = circumradius * math.sqrt(3) / 2  # half the side
    k = math.sqrt(3.0)
    px, py = np.abs(qx) - r, -qy + r / k
    fold = px + k * py > 0
    px, py = np.where(fold, (px - k * py) / 2, px), np.where(fold, (-k * px - py) / 2, py)
    px = px - np.clip(px, -2 * r, 0.0)
    return -np.hypot(px, py) * np.sign(py)


def _sd_diamond(qx, qy, bx=0.75, by=1.2):
    px, py = np.abs(qx), np.abs(qy)
    h = np.clip(((bx - 2 * px) * bx - (by - 2 * py) * by) / (bx * bx + by * by), -1.0, 1.0)
    d = np.hypot(px - 0.5 * bx * (1 - h), py - 0.5 * by * (1 + h))
    return d * np.sign(px * by + py * bx - bx * by)


def _sd_star(qx, qy, r=1.25, rf=0.5):
    # five-pointed star, one point up (iq's sdStar5), folded into one sector by reflections
    k1x, k1y = 0.809016994375, -0.587785252292
    k2x, k2y = -k1x, k1y
    px, py = np.abs(qx), -qy
    d = np.maximum(k1x * px + k1y * py, 0.0)
    px, py = px - 2 * d * k1x, py - 2 * d * k1y
    d = np.maximum(k2x * px + k2y * py, 0.0)
    px, py = px - 2 * d * k2x, py - 2 * d * k2y
    px = np.abs(px)
    py = py - r
    bax, bay = rf * -k1y - 0.0, rf * k1x - 1.0
    h = np.clip((px * bax + py * bay) / (bax * bax + bay * bay), 0.0, r)
    return np.hypot(px - bax * h, py - bay * h) * np.sign(py * bax - px * bay)


def _sd_cross(qx, qy, bx=1.1, by=0.38):
    px, py = np.abs(qx), np.abs(qy)
    swap = py > px
    px, py = np.where(swap, py, px), np.where(swap, px, py)
    ux, uy = px - bx, py - by
    k = np.maximum(uy, ux)
    wx, wy = np.where(k > 0, ux, by - px), np.where(k > 0, uy, -k)
    return np.sign(k) * np.hypot(np.maximum(wx, 0), np.maximum(wy, 0))


SHAPE_SDF = {
    "circle": _sd_circle,
    "square": _sd_square,
    "triangle": _sd_triangle,
    "star": _sd_star,
    "diamond": _sd_diamond,
    "cross": _sd_cross,
}


# ---------------------------------------------------------------- backgrounds (functions of world position)
def _hash01(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic uniform [0, 1) value per integer lattice point (an integer hash, no RNG state)."""
    h = ix.astype(np.uint32) * np.uint32(374761393) + iy.astype(np.uint32) * np.uint32(668265263)
    h = h + np.uint32((seed * 2246822519) & 0xFFFFFFFF)
    h = (h ^ (h >> np.uint32(13))) * np.uint32(1274126177)
    h = h ^ (h >> np.uint32(16))
    return (h >> np.uint32(8)).astype(np.float32) / np.float32(1 << 24)


_STRIPE_LUT_SIZE = 4096
_STRIPE_SHARPNESS = 1.8  # soft square wave: flat bands with smooth edges (no hard steps)
_STRIPE_LUT = (
    0.5
    + 0.5
    * np.tanh(_STRIPE_SHARPNESS * np.sin(2 * np.pi * np.arange(_STRIPE_LUT_SIZE + 1) / _STRIPE_LUT_SIZE))
    / math.tanh(_STRIPE_SHARPNESS)
).astype(np.float32)


def _lattice_weights(g: np.ndarray, origin: int, n: int) -> np.ndarray:
    """(F, P) lattice coordinates -> (F, P, n) smoothstep interpolation weights onto lattice nodes."""
    g0 = np.floor(g)
    f = g - g0
    f = f * f * (3 - 2 * f)  # smoothstep: no creases at cell borders
    j = (g0 - origin).astype(np.intp)
    w = np.zeros((*g.shape, n), np.float32)
    np.put_along_axis(w, j[..., None], (1 - f)[..., None].astype(np.float32), axis=-1)
    np.put_along_axis(w, j[..., None] + 1, f[..., None].astype(np.float32), axis=-1)
    return w


def _background_level(bg: dict, wx: np.ndarray, wy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Blend weight (F, H, W) in [0, 1] between the background's two colours.

    The camera only pans and zooms (no rotation), so world x depends on (frame, column) and world y on
    (frame, row): wx is (F, W), wy is (F, H), and every pattern is evaluated separably.
    """
    short = min(width, height)
    kind = bg["kind"]
    if kind == "gradient":
        a = math.radians(bg["angle_deg"])
        span = math.hypot(width, height)
        px = (wx - (width - 1) / 2) * (math.cos(a) / span)  # (F, W)
        py = (wy - (height - 1) / 2) * (math.sin(a) / span)  # (F, H)
        return np.clip(0.5 + py[:, :, None] + px[:, None, :], 0.0, 1.0)
    if kind == "stripes":
        a = math.radians(bg["angle_deg"])
        period = max(bg["period_frac"] * short, MIN_TEXTURE_PX)
        px = wx * (math.cos(a) / period) + bg["phase"]  # (F, W) phase in periods
        py = wy * (math.sin(a) / period)  # (F, H)
        phase = py[:, :, None] + px[:, None, :]  # (F, H, W)
        idx = ((phase - np.floor(phase)) * _STRIPE_LUT_SIZE).astype(np.intp)
        return _STRIPE_LUT[idx]
    if kind == "noise":
        cell = max(bg["cell_frac"] * short, MIN_TEXTURE_PX)
        gx, gy = wx / cell, wy / cell
        ix0, iy0 = int(np.floor(gx.min())), int(np.floor(gy.min()))
        nx, ny = int(np.floor(gx.max())) - ix0 + 2, int(np.floor(gy.max())) - iy0 + 2
        lat = _hash01(*np.meshgrid(np.arange(nx) + ix0, np.arange(ny) + iy0, indexing="xy"), bg["noise_seed"])
        wxm = _lattice_weights(gx, ix0, nx)  # (F, W, nx)
        wym = _lattice_weights(gy, iy0, ny)  # (F, H, ny)
        v = wym @ lat @ wxm.transpose(0, 2, 1)  # (F, H, ny) @ (ny, nx) @ (F, nx, W) -> (F, H, W)
        return np.clip(0.5 + 1.4 * (v - 0.5), 0.0, 1.0)  # stretch: value noise bunches around 0.5
    raise AssertionError(kind)


_LEVELS = 1024  # background blend weights are quantised this finely (far below one colour level)


def _render_background(bg, cam, s, width, height) -> np.ndarray:
    """uint8 (T, H, W, 3) background as seen by the camera (a fresh, writable array)."""
    frames = s.shape[0]
    cols = np.asarray(bg["colors"], np.float32)
    if bg["kind"] == "solid":
        return np.broadcast_to(cols[0].astype(np.uint8), (frames, height, width, 3)).copy()
    cx, cy = (width - 1) / 2, (height - 1) / 2
    xs = np.arange(width, dtype=np.float64)
    ys = np.arange(height, dtype=np.float64)
    if cam.motion == "static":
        wx, wy = xs[None, :], ys[None, :]  # (1, W), (1, H)
    else:
        zoom = _camera_zoom(cam, s)[:, None]
        px, py = _camera_offset(cam, s, width, height)
        wx = cx + px[:, None] + (xs[None, :] - cx) / zoom  # (T, W)
        wy = cy + py[:, None] + (ys[None, :] - cy) / zoom  # (T, H)
    level = _background_level(bg, wx, wy, width, height)  # (F, H, W) in [0, 1], F = T or 1
    # colours through a lookup table: one uint8 gather instead of float passes over (T, H, W, 3)
    lut = np.rint(cols[0] + (cols[1] - cols[0]) * np.linspace(0.0, 1.0, _LEVELS + 1)[:, None]).astype(
        np.uint8
    )
    out = lut[(level * _LEVELS + 0.5).astype(np.intp)]  # (F, H, W, 3)
    if out.shape[0] != frames:  # static camera: one picture for every frame
        out = np.broadcast_to(out, (frames, height, width, 3)).copy()
    return out


def _background_flow(cam, s, width, height) -> np.ndarray:
    """float32 (T-1, H, W, 2) flow of world-fixed points under the camera motion."""
    frames = s.shape[0]
    flow = np.zeros((max(frames - 1, 0), height, width, 2), np.float32)
    if cam.motion == "static" or frames < 2:
        return flow
    zoom = _camera_zoom(cam, s)
    px, py = _camera_offset(cam, s, width, height)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    z0, z1 = zoom[:-1, None], zoom[1:, None]
    xs, ys = np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64)
    # p' = c + z1 * ((p - c) / z0 + P0 - P1)
    fx = cx + z1 * ((xs[None, :] - cx) / z0 + (px[:-1] - px[1:])[:, None]) - xs[None, :]  # (T-1, W)
    fy = cy + z1 * ((ys[None, :] - cy) / z0 + (py[:-1] - py[1:])[:, None]) - ys[None, :]  # (T-1, H)
    flow[..., 0] = fx[:, None, :]
    flow[..., 1] = fy[:, :, None]
    return flow


# ---------------------------------------------------------------- objects: coverage, colour, flow
class _ObjectRaster(NamedTuple):
    coverage: np.ndarray  # float32 (T, H, W) in [0, 1] (anti-aliased, before occlusion)
    color: np.ndarray  # float32 (T, S, S, 3) shaded colour on the object's box
    box: np.ndarray  # int (T, 2): top-left (x, y) of each frame's box
    local: tuple[np.ndarray, np.ndarray]  # (T, S, S) object-local coordinates (units of radius)


def _raster_object(obj: _Object, track: _Track, width: int, height: int) -> _ObjectRaster:
    frames = track.x.shape[0]
    ext = track.radius * SHAPE_EXTENT[obj.shape]
    side = 2 * int(math.ceil(float(ext.max()))) + 4
    ox = np.floor(track.x).astype(np.int64) - side // 2 + 1
    oy = np.floor(track.y).astype(np.int64) - side // 2 + 1
    ar = np.arange(side, dtype=np.float64)
    dx = (ox[:, None] + ar[None, :] - track.x[:, None])[:, None, :]  # (T, 1, S)
    dy = (oy[:, None] + ar[None, :] - track.y[:, None])[:, :, None]  # (T, S, 1)
    cos, sin = np.cos(track.angle)[:, None, None], np.sin(track.angle)[:, None, None]
    rad = track.radius[:, None, None]
    qx = (cos * dx + sin * dy) / rad  # (T, S, S) object-local, rotated back by the object's angle
    qy = (-sin * dx + cos * dy) / rad
    sd = SHAPE_SDF[obj.shape](qx, qy) * rad  # signed distance in pixels
    cov_box = np.clip(0.5 - sd, 0.0, 1.0).astype(np.float32)
    # lit from the top left, painted on the object: turns, scales and moves with it
    shade = 1.0 + SHADING * np.clip((qy - qx) / (math.sqrt(2) * SHAPE_EXTENT[obj.shape]), -1.0, 1.0)
    color = np.asarray(COLORS[obj.color], np.float32) * shade[..., None].astype(np.float32)
    coverage = np.zeros((frames, height, width), np.float32)
    for t in range(frames):
        x0, y0 = int(ox[t]), int(oy[t])
        xa, xb, ya, yb = max(x0, 0), min(x0 + side, width), max(y0, 0), min(y0 + side, height)
        if xa < xb and ya < yb:
            coverage[t, ya:yb, xa:xb] = cov_box[t, ya - y0 : yb - y0, xa - x0 : xb - x0]
    return _ObjectRaster(coverage, np.minimum(color, 255.0), np.stack([ox, oy], 1), (qx, qy))


def _paste(t: int, box: np.ndarray, side: int, width: int, height: int):
    x0, y0 = int(box[t, 0]), int(box[t, 1])
    xa, xb, ya, yb = max(x0, 0), min(x0 + side, width), max(y0, 0), min(y0 + side, height)
    return (slice(ya, yb), slice(xa, xb)), (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))


# ---------------------------------------------------------------- sound
def _render_audio(objects, tracks_events, frames, fps, sample_rate, width, height, rng) -> np.ndarray:
    n = int(round(frames / fps * sample_rate))
    audio = np.zeros(n, np.float64)
    if n == 0:
        return audio.astype(np.float32)
    short = min(width, height)
    time = np.arange(n) / sample_rate
    # seconds per unit of normalised time; a still image sounds like the start of a 17-frame clip
    span = (frames - 1 if frames > 1 else 16) / fps
    env_t = np.arange(0.0, n / sample_rate + 2.0 / ENVELOPE_HZ, 1.0 / ENVELOPE_HZ)
    fade = np.clip(np.minimum(time, n / sample_rate - time) / FADE_S, 0.0, 1.0)
    for obj in objects:
        speed = _own_speed(obj, env_t / span, width, height, short)
        amp_env = VOICE_AMP * speed / (speed + SPEED_REF)
        phases = rng.uniform(0.0, 2 * math.pi, len(SHAPE_HARMONICS[obj.shape]))
        if not np.any(amp_env > 0):
            continue
        amp = np.interp(time, env_t, amp_env) * fade
        f0 = COLOR_PITCH_HZ[obj.color] * SIZE_OCTAVE[obj.size]
        harm = np.asarray(SHAPE_HARMONICS[obj.shape])
        keep = (np.arange(1, harm.size + 1) * f0 < MAX_HARMONIC_FRACTION * sample_rate) & (harm > 0)
        norm = harm[keep].sum()
        wave = np.zeros(n)
        for h in np.flatnonzero(keep):
            wave += harm[h] / norm * np.sin(2 * math.pi * (h + 1) * f0 * time + phases[h])
        audio += amp * wave
    click_n = int(round(CLICK_SECONDS * sample_rate))
    ct = np.arange(click_n) / sample_rate
    click_env = np.exp(-ct / CLICK_DECAY_S) * (1 - np.exp(-ct / 0.0005))
    chirp = np.sin(2 * math.pi * (3000.0 * ct - 0.5 * 40000.0 * ct * ct))  # 3 kHz falling to 1.4 kHz
    for frame_f, _wall, _k in tracks_events:
        noise = rng.uniform(-1.0, 1.0, click_n)
        start = int(round(frame_f / fps * sample_rate))
        if start >= n:
            continue
        stop = min(start + click_n, n)
        audio[start:stop] += (CLICK_AMP * click_env * (0.7 * noise + 0.3 * chirp))[: stop - start]
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------- captions
def _caption(objects, camera: _Camera, background: dict, rng: np.random.Generator) -> str:
    def pick(options):
        return options[rng.integers(len(options))]

    phrases = [f"a {o.size} {o.color} {o.shape} {pick(MOTION_PHRASES[o.motion])}" for o in objects]
    if len(phrases) == 2:
        objs = phrases[0] + pick((" and ", " in front of ")) + phrases[1]  # phrases are in depth order
    else:
        objs = phrases[0]
    bg = pick(BACKGROUND_PHRASES[background["kind"]])
    cam = pick(CAMERA_PHRASES[camera.motion])
    template = int(rng.integers(5))
    if template == 0:
        text = f"{objs} on a {bg} background" + (f", {cam}" if cam else "")
    elif template == 1:
        text = f"{objs} over a {bg} backdrop" + (f"; {cam}" if cam else "")
    elif template == 2:
        text = f"a {bg} background with {objs}" + (f", {cam}" if cam else "")
    elif template == 3:
        text = f"video of {objs} against a {bg} background" + (f". {cam}" if cam else "")
    else:
        lead = f"{cam}: " if cam else "still shot: "
        text = f"{lead}{objs} on a {bg} background"
    return text


# ---------------------------------------------------------------- public API
def _check_args(seed, split, width, height, frames, fps, sample_rate) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise ClipArgumentError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    if split not in SPLITS:
        raise ClipArgumentError(f"split must be one of {SPLITS}, got {split!r}")
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 16 or v % 8:
            raise ClipArgumentError(f"{name} must be an integer multiple of 8 and at least 16, got {v!r}")
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise ClipArgumentError(
            f"frames must be a positive integer (1, 17 and 41 are the usual), got {frames!r}"
        )
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.number)) or not 0 < fps < 1000:
        raise ClipArgumentError(f"fps must be a positive number below 1000, got {fps!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate < 4000:
        raise ClipArgumentError(f"sample_rate must be an integer of at least 4000 Hz, got {sample_rate!r}")


def _paint(canvas: np.ndarray, r, width: int, height: int) -> None:
    """Blend one object's raster ``r`` over ``canvas`` uint8 (T, H, W, 3), in place."""
    side = r.color.shape[1]
    a = r.coverage[..., None]
    for t in range(canvas.shape[0]):
        full, loc = _paste(t, r.box, side, width, height)
        a_t = a[t][full]
        blend = canvas[t][full] * (1.0 - a_t) + r.color[t][loc] * a_t
        canvas[t][full] = np.rint(blend)  # convex blend of colours in [0, 255]: no clipping needed


def _object_flow(flow: np.ndarray, r, tr, mask: np.ndarray, width: int, height: int) -> None:
    """Write one object's forward flow into ``flow`` (T − 1, H, W, 2) where ``mask`` (T, H, W) shows it."""
    side = r.color.shape[1]
    # a point at local q moves to c' + radius' * R(angle') q
    qx, qy = r.local[0][:-1], r.local[1][:-1]  # (T-1, S, S)
    c1, s1 = np.cos(tr.angle[1:])[:, None, None], np.sin(tr.angle[1:])[:, None, None]
    rad1 = tr.radius[1:, None, None]
    nx = tr.x[1:, None, None] + rad1 * (c1 * qx - s1 * qy)
    ny = tr.y[1:, None, None] + rad1 * (s1 * qx + c1 * qy)
    ar = np.arange(side)
    px = r.box[:-1, 0, None, None] + ar[None, None, :]
    py = r.box[:-1, 1, None, None] + ar[None, :, None]
    fx, fy = (nx - px).astype(np.float32), (ny - py).astype(np.float32)
    for t in range(qx.shape[0]):
        full, loc = _paste(t, r.box, side, width, height)
        m = mask[t][full]
        flow[t][full][m] = np.stack([fx[t][loc][m], fy[t][loc][m]], -1)


def render_clip(
    seed: int,
    *,
    split: str = "train",
    width: int = 128,
    height: int = 128,
    frames: int = 17,
    fps: float = 8,
    sample_rate: int = 16000,
) -> Clip:
    """Render one clip of the synthetic world; the same arguments always give bit-identical arrays.

    The scene (objects, camera, background, caption) depends only on (seed, split); size and length
    change how it is drawn, not what it is. ``split="heldout"`` clips contain at least one object
    matching ``world.HELDOUT_COMPOSITIONS``; ``split="train"`` clips never do.
    """
    _check_args(seed, split, width, height, frames, fps, sample_rate)
    seed, width, height, frames, sample_rate = (
        int(seed),
        int(width),
        int(height),
        int(frames),
        int(sample_rate),
    )
    fps = float(fps)
    scene_ss, caption_ss, audio_ss = np.random.SeedSequence([seed, SPLITS.index(split)]).spawn(3)
    objects, camera, background = _sample_scene(np.random.default_rng(scene_ss), split)

    s = np.arange(frames, dtype=np.float64) / max(frames - 1, 1)  # normalised time of each frame
    tracks = _place_objects(objects, camera, s, width, height)

    # pictures: background, then objects back to front
    canvas = _render_background(background, camera, s, width, height)  # uint8 (T, H, W, 3)
    rasters = [_raster_object(o, tr, width, height) for o, tr in zip(objects, tracks)]
    solid = np.stack([r.coverage >= 0.5 for r in rasters])  # (K, T, H, W)
    masks = solid.copy()
    for k in range(1, len(objects)):  # objects[0] is in front (depth 0)
        masks[k] &= ~solid[:k].any(axis=0)
    depth = np.full((frames, height, width), BACKGROUND_DEPTH, np.float32)
    flow = _background_flow(camera, s, width, height)
    for k in reversed(range(len(objects))):
        _paint(canvas, rasters[k], width, height)
        depth[masks[k]] = 1.0 + objects[k].depth
        if frames > 1:
            _object_flow(flow, rasters[k], tracks[k], masks[k], width, height)

    events = sorted(
        (frame_f, wall, k) for k, o in enumerate(objects) for frame_f, wall in _bounce_events(o, frames)
    )
    audio = _render_audio(
        objects, events, frames, fps, sample_rate, width, height, np.random.default_rng(audio_ss)
    )
    caption = _caption(objects, camera, background, np.random.default_rng(caption_ss))

    attributes = _attributes(objects, tracks, camera, background, events, s, split, seed, width, height, fps)
    return Clip(
        frames=canvas,
        audio=audio,
        sample_rate=sample_rate,
        fps=fps,
        caption=caption,
        attributes=attributes,
        masks=masks,
        depth=depth,
        flow=flow,
    )


def _attributes(objects, tracks, camera, background, events, s, split, seed, width, height, fps) -> dict:
    objs = []
    for k, (o, tr) in enumerate(zip(objects, tracks)):
        objs.append(
            {
                **o.spec(),
                "depth": o.depth,
                "rgb": list(COLORS[o.color]),
                "pitch_hz": COLOR_PITCH_HZ[o.color] * SIZE_OCTAVE[o.size],
                "heldout": is_heldout_object(o.spec()),
                "positions": [[round(float(x), 4), round(float(y), 4)] for x, y in zip(tr.x, tr.y)],
                "radii": [round(float(v), 4) for v in tr.radius],
                "extent": SHAPE_EXTENT[o.shape],
                "angles": [round(float(v), 5) for v in tr.angle],
                "bounce_frames": [int(round(f)) for f, _, kk in events if kk == k],
            }
        )
    zoom = _camera_zoom(camera, s)
    px, py = _camera_offset(camera, s, width, height)
    return {
        "objects": objs,
        "background": background,
        "camera": camera.motion,
        "camera_track": {
            "offset": [[round(float(a), 4), round(float(b), 4)] for a, b in zip(px, py)],
            "zoom": [round(float(v), 6) for v in zoom],
        },
        "events": [
            {"frame": int(round(f)), "time": round(f / fps, 6), "object": k, "wall": wall}
            for f, wall, k in events
        ],
        "split": split,
        "seed": seed,
    }


def render_clips(seeds, **kwargs) -> list[Clip]:
    """``render_clip`` for each seed (same keyword arguments)."""
    return [render_clip(int(seed), **kwargs) for seed in seeds]
