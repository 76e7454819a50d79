"""Camera-independent measurements of one object: which frames to trust (occlusion from the area fit),
its shape (moments or the shape reader), its rotation and how far its screen track turns back.

Dimension key: T frames, K shape classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from videopoet.data.synthetic import ROTATION_RANGE
from videopoet.eval.judge.arrays import robust_line
from videopoet.eval.judge.shapes import MOMENT_ORDERS, SYMMETRY_ORDER, Geometry, read_shape

OCCLUSION_DROP = 0.08  # frames whose area is this far (log) below the robust area fit are occluded
ENVELOPE_DROP = 0.03  # …and, for objects touching another all clip long, this far below the upper envelope
# The screen track also keeps frames whose area fell (a codec fades fast objects in some frames) while no
# other object is near, unless less than e^(−TRACK_AREA_DROP) of the fitted area is left (a sliver).
TRACK_AREA_DROP = 1.0
ROTATION_MAX = 1.5 * ROTATION_RANGE[1]  # the largest turn (rad per clip) the rotation fit considers
ROTATION_COHERENCE = 1.5  # turned-back coherent |mean M_m| must beat the unturned one by this factor
ROTATION_STEP = 0.005  # rad per clip: the grid of candidate turns


@dataclass
class Measured:
    color: int  # palette index
    geometry: Geometry
    ok: np.ndarray  # (T,) frames whose mask is trusted (not hidden)
    hidden: np.ndarray  # (T,) frames judged partly hidden by another object
    log_area_fit: tuple[float, float]  # log area ≈ a + b s over trusted frames
    mags: np.ndarray  # median |M2|…|M6|
    compact: float
    shape: str
    rotation: float  # total rotation, rad
    reversal: float  # largest come-back excursion of the screen track, pixels


def measure_object(
    k: int,
    g: Geometry,
    contact: np.ndarray,
    shape_lp: np.ndarray | None = None,
    shape_trust: np.ndarray | None = None,
) -> Measured:
    """Camera-independent measurements of one object; ``shape_lp`` (T, K): the shape reader's per-frame
    log-probabilities over the world's SHAPES (NaN rows: no crop), or None for the moments alone;
    ``shape_trust`` (T,): its per-frame trust (None: equal)."""
    t_count = g.area.shape[0]
    s = np.arange(t_count) / max(t_count - 1, 1)
    v = _visibility(g, contact, s)
    shape, mags, compact = read_shape(g, v.clear, shape_lp, shape_trust)
    rotation = _fit_rotation(g, SYMMETRY_ORDER[shape], v.ok, s)
    # Bounces are read from the screen track: the trusted frames plus faded ones far from other objects.
    track = np.isfinite(g.cx) & (v.ok | (~contact & (v.below > -TRACK_AREA_DROP)))
    reversal = max(_reversal(g.cx[track]), _reversal(g.cy[track]))
    return Measured(k, g, v.ok, v.hidden, v.log_area_fit, mags, compact, shape, rotation, reversal)


class _Visibility(NamedTuple):
    log_area_fit: tuple[float, float]  # log area ≈ a + b s
    below: np.ndarray  # (T,) log area minus the fit (NaN where absent)
    hidden: np.ndarray  # bool (T,) frames judged partly hidden by another object
    ok: np.ndarray  # bool (T,) frames whose mask is trusted
    clear: np.ndarray  # bool (T,) frames for shape measurements


def _visibility(g: Geometry, contact: np.ndarray, s: np.ndarray) -> _Visibility:
    """Which frames show the whole object, from a robust line fit of its log area over the clip."""
    t_count = g.area.shape[0]
    log_area = np.log(np.maximum(g.area, 1.0))
    log_area[g.area < 3] = np.nan
    # Occlusion only ever removes area, and only while the objects touch: fit the area line on frames
    # without contact when there are enough of them (a back object can be hidden for most of the clip).
    free = ~contact & np.isfinite(log_area)
    enough = free.sum() >= max(3, t_count // 4)
    if enough:
        a0, b0, _ = robust_line(s, np.where(free, log_area, np.nan), drop=OCCLUSION_DROP)
    else:  # touching all along: follow the upper envelope of the area (the least hidden frames)
        a0, b0, _ = robust_line(s, log_area, drop=ENVELOPE_DROP)
    below = log_area - (a0 + b0 * s)
    hidden = np.isfinite(log_area) & ((below < -OCCLUSION_DROP) | (contact & (below < -0.03)))
    ok = ~hidden & np.isfinite(g.cx)
    if ok.sum() < 2:
        ok = np.isfinite(g.cx)
    # Frames for shape measurements: untouched ones, else the (nearly) fully visible ones.
    if (ok & ~contact).sum() >= 3:
        clear = ok & ~contact
    elif (ok & (below > -ENVELOPE_DROP)).sum() >= 2:
        clear = ok & (below > -ENVELOPE_DROP)
    else:
        clear = ok
    return _Visibility((a0, b0), below, hidden, ok, clear)


def _fit_rotation(g: Geometry, order: int, ok: np.ndarray, s: np.ndarray) -> float:
    """Total rotation (rad) from the phase of the symmetry-order moment (M_m turns by m·angle); 0 when the
    shape has no symmetry order or no turn aligns the moments clearly enough.

    The constant-speed turn, among those the world can make, that best aligns the trusted frames' moments
    when turned back (|mean M_m e^{−i m θ s}| largest). A fit over all frames, not a sum of frame-to-frame
    phase steps: a causal tokenizer can hold an outline over a group of frames and then jump, which biases
    a step sum (a hold at the end of the clip loses its turn) and with it the coherence test below."""
    if not order:
        return 0.0
    ph = g.moments[:, MOMENT_ORDERS.index(order)]
    good = ok & np.isfinite(ph) & (np.abs(np.nan_to_num(ph)) > 0)
    if good.sum() < 3:
        return 0.0
    v = ph[good]
    turns = np.arange(-ROTATION_MAX, ROTATION_MAX, ROTATION_STEP)  # (R,) candidate θ, rad per clip
    coherence = np.abs((v * np.exp(-1j * order * np.outer(turns, s[good]))).mean(1))  # (R,)
    best = int(np.argmax(coherence))
    # A blurred blob's phase noise also aligns at some turn: trust it only when the alignment is
    # well above both the unturned one and the noise of the magnitudes.
    still = abs(np.mean(v))
    if coherence[best] >= ROTATION_COHERENCE * max(still, 0.5 * float(np.median(np.abs(v)))):
        return float(turns[best])
    return 0.0


def _reversal(v: np.ndarray) -> float:
    """Largest excursion of a 1-D track that comes back: min(rise, fall) over peaks and troughs."""
    v = v[np.isfinite(v)]
    if v.size < 3:
        return 0.0
    best = 0.0
    for j in range(1, v.size - 1):
        rise = v[j] - v[:j].min()
        fall = v[j] - v[j + 1 :].min()
        dip = v[:j].max() - v[j]
        climb = v[j + 1 :].max() - v[j]
        best = max(best, min(rise, fall), min(dip, climb))
    return float(best)
