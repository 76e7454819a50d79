"""Behaviour tests for the synthetic audio-visual world (videopoet.data.synthetic)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from videopoet.data import world
from videopoet.data.synthetic import Clip, render_clip, render_clips


def _find(predicate, split="train", limit=400, **kw):
    """First seed whose clip (rendered at 16x16, 1 frame: the scene does not depend on size) matches."""
    for seed in range(limit):
        if predicate(render_clip(seed, split=split, width=16, height=16, frames=1).attributes):
            return seed
    raise AssertionError("no seed found")


@pytest.mark.parametrize("width,height,frames", [(128, 128, 17), (128, 128, 41), (128, 224, 17), (64, 32, 1)])
def test_shapes_and_dtypes(width, height, frames):
    c = render_clip(3, width=width, height=height, frames=frames)
    assert isinstance(c, Clip)
    assert c.frames.shape == (frames, height, width, 3) and c.frames.dtype == np.uint8
    n = round(frames / 8 * 16000)
    assert c.audio.shape == (n,) and c.audio.dtype == np.float32
    assert np.abs(c.audio).max() <= 1.0
    k = len(c.attributes["objects"])
    assert c.masks.shape == (k, frames, height, width) and c.masks.dtype == bool
    assert c.depth.shape == (frames, height, width) and c.depth.dtype == np.float32
    assert c.flow.shape == (frames - 1, height, width, 2) and c.flow.dtype == np.float32
    assert c.sample_rate == 16000 and c.fps == 8
    json.dumps(c.attributes)  # JSON-able
    for o in c.attributes["objects"]:
        assert len(o["positions"]) == len(o["radii"]) == len(o["angles"]) == frames


def test_17_frames_is_34000_samples():
    assert render_clip(0).audio.shape == (34000,)


def test_deterministic_and_seed_dependent():
    a, b = render_clip(11), render_clip(11)
    for name in ("frames", "audio", "masks", "depth", "flow"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.caption == b.caption and a.attributes == b.attributes
    c = render_clip(12)
    assert not np.array_equal(a.frames, c.frames)
    h = render_clip(11, split="heldout")
    assert not np.array_equal(a.frames, h.frames)
    assert [x.caption for x in render_clips([11, 12])] == [a.caption, c.caption]


def test_scene_does_not_depend_on_size():
    big = render_clip(5, width=128, height=224, frames=41).attributes
    small = render_clip(5, width=16, height=16, frames=1).attributes
    strip = lambda a: [{k: o[k] for k in ("shape", "color", "size", "motion", "depth")} for o in a["objects"]]
    assert strip(big) == strip(small)
    assert big["camera"] == small["camera"] and big["background"]["kind"] == small["background"]["kind"]


def test_vocabulary_is_covered():
    seen = {
        "shape": set(),
        "color": set(),
        "size": set(),
        "motion": set(),
        "bg": set(),
        "cam": set(),
        "n": set(),
    }
    for seed in range(300):
        a = render_clip(seed, width=16, height=16, frames=1).attributes
        for o in a["objects"]:
            for key in ("shape", "color", "size", "motion"):
                seen[key].add(o[key])
        seen["bg"].add(a["background"]["kind"])
        seen["cam"].add(a["camera"])
        seen["n"].add(len(a["objects"]))
        colors = [o["color"] for o in a["objects"]]
        assert len(set(colors)) == len(colors), "two objects share a colour"
        assert not any(world.is_excluded_object(o) for o in a["objects"])
    assert seen["shape"] == set(world.SHAPES) and seen["color"] == set(world.COLORS)
    assert seen["size"] == set(world.SIZES) and seen["motion"] == set(world.MOTIONS)
    assert seen["bg"] == set(world.BACKGROUNDS) and seen["cam"] == set(world.CAMERAS)
    assert seen["n"] == {1, 2}


def test_heldout_exclusion_over_many_seeds():
    for seed in range(500):
        train = render_clip(seed, split="train", width=16, height=16, frames=1).attributes
        assert not any(world.is_heldout_object(o) for o in train["objects"]), seed
        held = render_clip(seed, split="heldout", width=16, height=16, frames=1).attributes
        assert any(world.is_heldout_object(o) for o in held["objects"]), seed
        assert train["split"] == "train" and held["split"] == "heldout"


def test_captions_mention_attributes():
    for seed in range(40):
        c = render_clip(seed, width=16, height=16, frames=1)
        a, text = c.attributes, c.caption
        for o in a["objects"]:
            assert f"{o['size']} {o['color']} {o['shape']}" in text, text
            assert any(p in text for p in world.MOTION_PHRASES[o["motion"]]), text
        assert any(
            f"{p} background" in text or f"{p} backdrop" in text
            for p in world.BACKGROUND_PHRASES[a["background"]["kind"]]
        ), text
        if a["camera"] != "static":
            assert any(p and p in text for p in world.CAMERA_PHRASES[a["camera"]]), text
        else:
            assert not any(p in text for cam in world.CAMERAS[1:] for p in world.CAMERA_PHRASES[cam]), text


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"width": 100}, "width"),
        ({"height": 0}, "height"),
        ({"frames": 0}, "frames"),
        ({"split": "test"}, "split"),
        ({"fps": -1}, "fps"),
        ({"sample_rate": 100}, "sample_rate"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        render_clip(0, **kwargs)
    with pytest.raises(ValueError, match="seed"):
        render_clip(-1)


def test_masks_consistent_with_frames_and_depth():
    seed = _find(lambda a: len(a["objects"]) == 2)
    c = render_clip(seed)
    assert not (c.masks[0] & c.masks[1]).any(), "visible masks overlap"
    for k, o in enumerate(c.attributes["objects"]):
        m = c.masks[k]
        assert m.any(axis=(1, 2)).all(), "object invisible in some frame"
        rgb = np.asarray(o["rgb"], np.float32)
        # object pixels carry the object's colour (shading within +-15%, edges anti-aliased)
        hue = c.frames[m].astype(np.float32)
        dist = np.abs(hue / np.maximum(hue.max(1, keepdims=True), 1) - rgb / rgb.max()).max(1)
        assert np.median(dist) < 0.05
        assert np.all(c.depth[m] == 1.0 + o["depth"])
        # the mask sits where the positions say
        ys, xs = np.nonzero(m[0])
        x0, y0 = o["positions"][0]
        assert abs(xs.mean() - x0) < o["radii"][0] and abs(ys.mean() - y0) < o["radii"][0]
    bg = ~c.masks.any(0)
    assert np.all(c.depth[bg] > c.depth[~bg].max())
