"""Shape and size from an object's mask: complex moments per frame, the moments' decision list, and the
size word of a radius.

Dimension key: T frames, H W pixels, M moment order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from videopoet.data.world import SHAPES, SIZES
from videopoet.eval.shape_net import pool_frames

# Area / radius² of each world shape (radius = the object's nominal radius, see data/world.py SIZES).
SHAPE_AREA = {
    "circle": math.pi,
    "square": 1.7**2,
    "triangle": 3 * math.sqrt(3) / 4 * 1.25**2,
    "star": 2.30,  # five-pointed star of outer radius 1.25 (median area of rendered masks / radius²)
    "diamond": 2 * 0.75 * 1.2,
    "cross": 2 * (2.2 * 0.76) - 0.76**2,
}
SYMMETRY_ORDER = {"circle": 0, "square": 4, "triangle": 3, "star": 5, "diamond": 2, "cross": 4}
MOMENT_ORDERS = (2, 3, 4, 5, 6)
# Shape frames: the SHARPEST_FRAC of trusted frames with the strongest |M2…M5| relative to these clean values
# (diamond, triangle, square/cross, star; see classify_shape).
SHARPEST_SCALE = np.asarray([0.42, 0.76, 0.7, 1.44])
SHARPEST_FRAC = 0.5


@dataclass
class Geometry:
    area: np.ndarray  # (T,) pixels
    cx: np.ndarray  # (T,) centroid x (NaN when absent)
    cy: np.ndarray  # (T,)
    moments: np.ndarray  # complex (T, len(MOMENT_ORDERS)) Σ (z − z̄)^m / (area · μ2^{m/2})
    compact: np.ndarray  # (T,) area / (2π μ2): 1 for a disc
    extent: np.ndarray  # (T,) max |z − z̄|² / μ2


def measure_geometry(mask: np.ndarray) -> Geometry:
    t_count, h, w = mask.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    area = mask.sum((1, 2)).astype(np.float64)
    nan = np.full(t_count, np.nan)
    cx, cy, compact, extent = nan.copy(), nan.copy(), nan.copy(), nan.copy()
    moments = np.full((t_count, len(MOMENT_ORDERS)), np.nan + 0j)
    for t in range(t_count):
        if area[t] < 3:
            continue
        x, y = xs[mask[t]], ys[mask[t]]
        cx[t], cy[t] = x.mean(), y.mean()
        z = (x - cx[t]) + 1j * (y - cy[t])
        r2 = np.abs(z) ** 2
        mu2 = r2.mean() + 1.0 / 6.0  # + the second moment of a unit pixel (discretisation)
        compact[t] = area[t] / (2 * math.pi * mu2)
        extent[t] = r2.max() / mu2
        for i, m in enumerate(MOMENT_ORDERS):
            moments[t, i] = (z**m).mean() / mu2 ** (m / 2)
    return Geometry(area, cx, cy, moments, compact, extent)


def classify_shape(mag: np.ndarray, compact: float) -> str:
    """Shape from median normalised moment magnitudes |M2|…|M6| and compactness (a decision list).

    On clean renders (300 clips): star |M5| ≈ 1.6 (others < 0.2); triangle |M3| ≈ 0.8 (others < 0.1);
    diamond |M2| ≈ 0.44 (others < 0.07); square |M4| ≈ 0.60 with compactness 0.95, cross |M4| ≈ 0.77
    with compactness 0.85 (blur and codecs push both towards the circle); circle: every |Mm| < 0.08,
    compactness ≈ 1. Thresholds sit between them. Real tokenizer reconstructions (80 development clips,
    seeds 800000–800039) keep diamond |M2| ≥ 0.32 at the 10th percentile but smear moving objects, which
    gives other shapes |M2| up to ≈ 0.3, hence the diamond threshold 0.3.
    """
    m2, m3, m4, m5, _ = mag
    if m5 > 0.5:
        return "star"
    if m3 > 0.4:
        return "triangle"
    if m2 > 0.3:  # reconstructions smear moving objects along their track, which also raises |M2|
        return "diamond"
    if m4 > 0.3:
        # Compactness separates them best (clean and degraded: square ≥ 0.95, cross ≤ 0.92 at the 95th
        # percentile); inside the overlap band the sharper four-fold moment (cross ≈ 0.72+) decides.
        if compact >= 0.95 or (compact >= 0.92 and m4 < 0.62):
            return "square"
        return "cross"
    return "circle"


def read_shape(
    g: Geometry, clear: np.ndarray, shape_lp: np.ndarray | None, shape_trust: np.ndarray | None
) -> tuple[str, np.ndarray, float]:
    """(shape, median |M2|…|M6|, compactness) of an object from its ``clear`` frames (bool (T,)): the
    moments' decision list, overruled by the shape reader's pooled per-frame log-probabilities
    ``shape_lp`` (T, K) (NaN rows: no crop) weighted by ``shape_trust`` (T,) when they are given."""
    # Blur only removes symmetry, and reconstructions blur some frames far more than others (fast motion,
    # the later frames of a temporal code group): read the shape from the sharpest half of the frames,
    # those whose strongest moment (relative to its clean value) is highest.
    idx = np.flatnonzero(clear & np.isfinite(g.compact))
    if idx.size > 3:
        strength = (np.abs(g.moments[idx, : len(SHARPEST_SCALE)]) / SHARPEST_SCALE).max(1)
        idx = idx[np.argsort(-strength, kind="stable")[: max(3, int(round(SHARPEST_FRAC * idx.size)))]]
    mags = np.nanmedian(np.abs(g.moments[idx]), axis=0)
    compact = float(np.nanmedian(g.compact[idx]))
    shape = classify_shape(mags, compact)
    if shape_lp is not None:
        # the reader pools its evidence over the frames the moments trust (all cropped frames otherwise)
        have = np.isfinite(shape_lp).all(1)
        use = clear & have if (clear & have).any() else have
        if use.any():
            trust = np.zeros(int(use.sum())) if shape_trust is None else shape_trust[use]
            pooled = pool_frames(torch.from_numpy(shape_lp[use]), torch.from_numpy(trust))
            shape = SHAPES[int(torch.argmax(pooled))]
    return shape, mags, compact


def size_word(radius_frac: float) -> str:
    names = list(SIZES)
    values = np.log([SIZES[n] for n in names])
    return names[int(np.argmin(np.abs(values - math.log(max(radius_frac, 1e-6)))))]
