"""The judge's fixed-length feature vector of a clip (for Fréchet distances between sets of clips)."""

from __future__ import annotations

import math

import numpy as np

from videopoet.eval.judge.objects import COLOR_NAMES
from videopoet.eval.judge.results import JudgeResult
from videopoet.eval.judge.shapes import Geometry

# Fixed-length feature layout: per palette colour a slot of object features, then scene features.
OBJECT_FEATURES = 14
SCENE_FEATURES = 12
FEATURE_DIM = len(COLOR_NAMES) * OBJECT_FEATURES + SCENE_FEATURES


def clip_features(result: JudgeResult, geoms: dict[int, Geometry], frames: np.ndarray) -> np.ndarray:
    """Fixed-length description: one slot per palette colour, then scene statistics."""
    feats = np.zeros(FEATURE_DIM, np.float32)
    for obj in result.objects:
        k = COLOR_NAMES.index(obj.color)
        d = obj.details
        slot = [1.0, obj.radius * 4, *d["moment_mags"], d["compact"], d["rotation"] / math.pi, d["growth"],
                d["reversal_px"] / min(frames.shape[1:3]) * 4, d["world_dx"], d["world_dy"], 0.0]  # fmt: skip
        g = geoms[k]
        slot[-1] = float(np.nanstd(g.area) / max(np.nanmean(g.area), 1.0))
        feats[k * OBJECT_FEATURES : (k + 1) * OBJECT_FEATURES] = np.nan_to_num(np.asarray(slot, np.float32))
    det = result.details
    mean_rgb = frames.reshape(-1, 3).mean(0) / 255.0
    scene = [
        det.get("bg_std", 0.0) / 32,
        det.get("bg_plane_residual", 0.0) / 32,
        det.get("bg_coherence", 0.0),
        det.get("bg_slope", 0.0) / 64,
        det["camera_pan_x"] * 4,
        det["camera_pan_y"] * 4,
        det["camera_log_zoom"] * 4,
        *mean_rgb,
        float(np.abs(np.diff(frames.astype(np.float32), axis=0)).mean() / 32) if frames.shape[0] > 1 else 0.0,
        float(len(result.objects)),
    ]
    feats[len(COLOR_NAMES) * OBJECT_FEATURES :] = np.nan_to_num(np.asarray(scene, np.float32))
    return feats
