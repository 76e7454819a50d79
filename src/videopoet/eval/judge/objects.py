"""Objects by colour: palette labels per pixel, the objects of a clip (solid blobs present in most frames),
their main blob per frame, contact between them, and the crops the shape reader reads.

Dimension key: T frames, H W pixels, K palette colours, P crop planes, S crop side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from videopoet.data.world import COLORS
from videopoet.eval.judge.arrays import dilate, erode
from videopoet.eval.shape_net import CROP, object_crops

COLOR_NAMES = tuple(COLORS)
PALETTE = np.asarray([COLORS[c] for c in COLOR_NAMES], np.float32)  # (K, 3)
MAX_OBJECTS = 2  # the world puts one or two objects in a clip
SHADE_RANGE = (0.78, 1.22)  # palette scale accepted for a pixel (renderer shades ±15%; slack for codecs)
COLOR_TOLERANCE = 45.0  # max RGB distance (0–255) between a pixel and its scaled palette colour
# Backgrounds keep every channel ≤ 112 and objects have one ≥ 200 (≥ 170 after shading): object pixels
# must have a channel above the midpoint, so a colour-shifted mauve or navy never reads as purple/blue.
MIN_OBJECT_CHANNEL = 142.0
MIN_OBJECT_PIXELS_FRAC = 0.0025  # an object covers ≥ this fraction of the frame after erosion…
# …in at least this fraction of frames: a tokenizer can drop a small fast object from most frames (on 320
# development reconstructions, 0.3 → 0.25 found 5 such objects kept in 5 of 17 frames and no extra one)
MIN_PRESENT_FRAMES = 0.25
CONTACT_PX = 4  # objects closer than this many pixels touch (occlusion possible)
WIDE_MEMBERSHIP = 2.0  # the shape reader's optional second plane: membership with margins this much wider


def palette_labels(frames: np.ndarray) -> np.ndarray:
    """int8 (T, H, W): index of the palette colour of each pixel, −1 for background / unclear pixels."""
    p = frames.astype(np.float32)  # (T, H, W, 3)
    dots = p @ PALETTE.T  # (T, H, W, K)
    norms = (PALETTE**2).sum(1)  # (K,)
    scale = np.clip(dots / norms, *SHADE_RANGE)
    # |p − a c|² = |p|² − 2a p·c + a²|c|²
    dist2 = (p**2).sum(-1, keepdims=True) - 2 * scale * dots + scale**2 * norms
    best = dist2.argmin(-1)
    ok = np.take_along_axis(dist2, best[..., None], -1)[..., 0] < COLOR_TOLERANCE**2
    ok &= p.max(-1) >= MIN_OBJECT_CHANNEL
    return np.where(ok, best, -1).astype(np.int8)


def membership(frames: np.ndarray, k: int, widen: float = 1.0) -> np.ndarray:
    """float32 (T, H, W) in [0, 1]: how close each pixel is to palette colour k, shaded as the renderer
    shades. 1 up to half the tolerance of ``palette_labels``, 0 from 1.5× it, and faded to 0 for pixels
    whose brightest channel is ≥ 30 levels under the object minimum (``MIN_OBJECT_CHANNEL``); ``widen``
    scales both margins."""
    p = frames.astype(np.float32)  # (T, H, W, 3)
    c = PALETTE[k]
    dot, norm = p @ c, float(c @ c)
    scale = np.clip(dot / norm, *SHADE_RANGE)
    dist = np.sqrt(np.maximum((p**2).sum(-1) - 2 * scale * dot + scale**2 * norm, 0.0))
    bright = np.clip((p.max(-1) - MIN_OBJECT_CHANNEL) / (30.0 * widen) + 1.0, 0.0, 1.0)
    return (np.clip(1.5 - dist / (COLOR_TOLERANCE * widen), 0.0, 1.0) * bright).astype(np.float32)


def _main_blob(mask: np.ndarray) -> np.ndarray:
    """Keep each frame's compact blob: open away thin rims (edge blends of two other colours can match a
    third palette colour, e.g. red over yellow reads orange), then drop pixels far from the blob's median."""
    opened = dilate(erode(mask)) & mask  # (T, H, W)
    out = np.zeros_like(mask)
    for t in range(mask.shape[0]):
        ys, xs = np.nonzero(opened[t])
        if ys.size < 3:
            continue
        my, mx = np.median(ys), np.median(xs)
        reach = 2.0 * math.sqrt(ys.size / math.pi) + 2.0
        near = (ys - my) ** 2 + (xs - mx) ** 2 <= reach**2
        out[t, ys[near], xs[near]] = True
    return out


@dataclass
class FoundObjects:
    labels: np.ndarray  # int8 (T, H, W) palette index per pixel (−1: none), see palette_labels
    chosen: list[int]  # palette indices of the objects, ascending
    masks: dict[int, np.ndarray]  # palette index → bool (T, H, W) main blob per frame
    contact: dict[int, np.ndarray]  # palette index → bool (T,) frames where it touches another object


def find_objects(frames: np.ndarray) -> FoundObjects:
    """The objects of a clip: colours with a solid blob in most frames (the MAX_OBJECTS largest), each
    one's main blob per frame and the frames where it touches another object (occlusion possible)."""
    t_count, h, w, _ = frames.shape
    labels = palette_labels(frames)  # (T, H, W)
    masks = labels[None] == np.arange(len(COLOR_NAMES))[:, None, None, None]  # (K, T, H, W)
    solid = erode(masks).sum((2, 3))  # (K, T)
    present = (solid >= MIN_OBJECT_PIXELS_FRAC * h * w).mean(1) >= MIN_PRESENT_FRAMES
    mass = np.where(present, masks.sum((1, 2, 3)), -1)
    chosen = sorted(int(k) for k in np.argsort(-mass)[:MAX_OBJECTS] if present[k])
    blobs = {k: _main_blob(masks[k]) for k in chosen}
    # Touching: within a few pixels (codec blur leaves an unclassified rim between two objects).
    dilated = {k: dilate(blobs[k], CONTACT_PX) for k in chosen}
    contact = {}
    for k in chosen:
        contact[k] = np.zeros(t_count, bool)
        for j in chosen:
            if j != k:
                contact[k] |= (dilated[k] & blobs[j]).any((1, 2))
    return FoundObjects(labels, chosen, blobs, contact)


def object_crops_of(
    frames: np.ndarray, found: FoundObjects, k: int, wide: bool = False, size: int = CROP
) -> tuple[np.ndarray, np.ndarray]:
    """The shape reader's input for object k: (crops (T', P, S, S), frame indices (T',)), see shape_net;
    P = 1 (membership near the main blob), 2 with ``wide`` (plus the wider membership a little further);
    S = ``size``."""
    planes = [membership(frames, k) * dilate(found.masks[k], 2)]
    if wide:
        planes.append(membership(frames, k, WIDE_MEMBERSHIP) * dilate(found.masks[k], 4))
    return object_crops(np.stack(planes), found.masks[k], size)
