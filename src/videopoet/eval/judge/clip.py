"""``judge_clip``: every part of the judge on one clip, from pixels (and sound) to a ``JudgeResult``."""

from __future__ import annotations

import numpy as np

from videopoet.data.world import SHAPES
from videopoet.eval.judge.arrays import blur, check_frames, dilate
from videopoet.eval.judge.background import TEXTURED, background_kind
from videopoet.eval.judge.camera import CameraEstimate, estimate_camera
from videopoet.eval.judge.events import audio_events
from videopoet.eval.judge.features import FEATURE_DIM, clip_features
from videopoet.eval.judge.measure import measure_object
from videopoet.eval.judge.motion import label_object, world_cost
from videopoet.eval.judge.objects import find_objects, object_crops_of
from videopoet.eval.judge.results import JudgeResult
from videopoet.eval.judge.shapes import measure_geometry
from videopoet.eval.shape_net import ShapeNet, bundled_shape_net, shape_log_probs


def judge_clip(
    frames: np.ndarray,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    fps: float = 8,
    *,
    shape_reader: ShapeNet | str | None = "bundled",
) -> JudgeResult:
    """Recover objects (colour, shape, size, motion), background, camera and bounce events of a clip.

    Shapes come from ``shape_reader``: "bundled" (the default: the reader in ``pretrained/judge_shapes``,
    or the moments where the install has none), a ``ShapeNet`` (``eval/shape_net.py``), or None for the
    moments alone."""
    frames = check_frames(frames)
    t_count, h, w, _ = frames.shape
    found = find_objects(frames)
    labels, chosen = found.labels, found.chosen

    # Background pixels: not near any object-coloured pixel.
    any_obj = labels >= 0
    valid_bg = ~dilate(any_obj, 3)
    gray = frames.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # (T, H, W)
    background, bg_info = background_kind(gray, valid_bg)
    if background in TEXTURED:
        camera = estimate_camera(blur(gray, 1.0), valid_bg)
    else:  # a featureless background shows no camera motion (the world only moves the camera over texture)
        camera = CameraEstimate("static", 0.0, 0.0, 0.0, {})

    geoms = {k: measure_geometry(found.masks[k]) for k in chosen}
    net = bundled_shape_net() if isinstance(shape_reader, str) else shape_reader
    if net is not None and tuple(net.config.shapes) != SHAPES:
        raise ValueError(f"the shape reader's classes {net.config.shapes} are not the world's {SHAPES}")
    measured = []
    for k in chosen:
        shape_lp = shape_trust = None
        if net is not None:
            crops, idx = object_crops_of(frames, found, k, net.config.wide, net.config.crop)
            shape_lp = np.full((t_count, len(net.config.shapes)), np.nan)
            shape_trust = np.zeros(t_count)
            shape_lp[idx], shape_trust[idx] = shape_log_probs(net, crops)
        measured.append(measure_object(k, geoms[k], found.contact[k], shape_lp, shape_trust))
    if camera.alternative is not None:
        # Stripes moving at ~45°: the background cannot tell a pan along x from one along y. Objects the
        # camera carries can: under the right pan they are world-still or move along one axis.
        costs = [sum(world_cost(m, cam, h, w) for m in measured) for cam in (camera, camera.alternative)]
        if costs[1] < costs[0]:
            camera = camera.alternative
    objects = [label_object(m, camera, h, w) for m in measured]

    events = None
    if audio is not None:
        events, _ = audio_events(audio, sample_rate, fps)
    result = JudgeResult(objects, background, camera.motion, events, np.zeros(FEATURE_DIM, np.float32))
    result.details = {**bg_info, "camera_pan_x": camera.pan_x, "camera_pan_y": camera.pan_y,
                      "camera_log_zoom": camera.log_zoom, "camera_residuals": camera.residuals}  # fmt: skip
    result.features = clip_features(result, geoms, frames)
    return result
