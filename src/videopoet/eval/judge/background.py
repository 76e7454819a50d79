"""Background kind (solid, gradient, stripes, noise) from smoothed background luminance."""

from __future__ import annotations

import math

import numpy as np

from videopoet.eval.judge.arrays import blur, erode

TEXTURED = ("stripes", "noise")  # backgrounds on which a camera move is visible


def background_kind(gray: np.ndarray, valid: np.ndarray) -> tuple[str, dict[str, float]]:
    """Kind of background from smoothed luminance of background pixels (averaged over a few frames)."""
    t_count, h, w = gray.shape
    stats = []
    for t in sorted({0, t_count // 2, t_count - 1}):
        g = blur(gray[t], 2.0)
        m = erode(erode(valid[t][None]))[0]
        if m.sum() < 0.1 * h * w:
            continue
        ys, xs = np.mgrid[0:h, 0:w]
        design = np.stack([np.ones(m.sum()), xs[m] / w, ys[m] / h], 1)
        coef, *_ = np.linalg.lstsq(design, g[m], rcond=None)
        resid = g[m] - design @ coef
        gy, gx = np.gradient(g)
        jxx, jyy, jxy = (gx[m] ** 2).mean(), (gy[m] ** 2).mean(), (gx[m] * gy[m]).mean()
        coherence = math.sqrt((jxx - jyy) ** 2 + 4 * jxy**2) / max(jxx + jyy, 1e-9)
        stats.append((float(g[m].std()), float(resid.std()), coherence, float(np.hypot(coef[1], coef[2]))))
    if not stats:
        return "solid", {}
    std, res, coh, slope = (float(np.median([s[i] for s in stats])) for i in range(4))
    info = {"bg_std": std, "bg_plane_residual": res, "bg_coherence": coh, "bg_slope": slope}
    if std < 2.5:
        return "solid", info
    if res < 2.0:
        return "gradient", info
    return ("stripes" if coh > 0.6 else "noise"), info
