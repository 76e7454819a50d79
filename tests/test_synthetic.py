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


# ---------------------------------------------------------------- motion ground truth: flow and tracks
def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    x0 = np.clip(np.floor(x).astype(int), 0, w - 2)
    y0 = np.clip(np.floor(y).astype(int), 0, h - 2)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    return (
        img[y0, x0] * (1 - fx) * (1 - fy)
        + img[y0, x0 + 1] * fx * (1 - fy)
        + img[y0 + 1, x0] * (1 - fx) * fy
        + img[y0 + 1, x0 + 1] * fx * fy
    )


def _warp_errors(clip: Clip, region: np.ndarray) -> tuple[float, float]:
    """Mean |frame t - frame t+1 sampled at p + flow| over region (T-1, H, W), and the same with zero flow."""
    f = clip.frames.astype(np.float32)
    t_, h, w = region.shape
    ys, xs = np.mgrid[0:h, 0:w]
    with_flow, zero = [], []
    for t in range(t_):
        x2, y2 = xs + clip.flow[t, ..., 0], ys + clip.flow[t, ..., 1]
        m = region[t] & (x2 >= 0) & (x2 <= w - 1) & (y2 >= 0) & (y2 <= h - 1)
        with_flow.append(np.abs(_bilinear(f[t + 1], x2[m], y2[m]) - f[t][m]).ravel())
        zero.append(np.abs(f[t + 1][m] - f[t][m]).ravel())
    return float(np.concatenate(with_flow).mean()), float(np.concatenate(zero).mean())


def _interior(mask: np.ndarray, r: int = 2) -> np.ndarray:
    """Pixels of a (.., H, W) mask whose (2r+1)^2 neighbourhood is inside it (no scipy needed)."""
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out &= np.roll(mask, (dy, dx), axis=(-2, -1))
    return out


def _stays_on(clip: Clip, layer: np.ndarray) -> np.ndarray:
    """(T-1, H, W): pixels of layer (T, H, W) at t whose flow destination is on the layer at t+1."""
    t_, h, w = layer.shape
    ys, xs = np.mgrid[0:h, 0:w]
    out = np.zeros((t_ - 1, h, w), bool)
    for t in range(t_ - 1):
        x2 = np.clip(np.rint(xs + clip.flow[t, ..., 0]).astype(int), 0, w - 1)
        y2 = np.clip(np.rint(ys + clip.flow[t, ..., 1]).astype(int), 0, h - 1)
        out[t] = layer[t] & layer[t + 1][y2, x2]
    return out


@pytest.mark.parametrize(
    "motion,camera",
    [("rotating", "pan left"), ("bouncing", "zoom in"), ("growing", "pan up"), ("moving right", "zoom out")],
)
def test_flow_warps_frame_t_onto_frame_t_plus_1(motion, camera):
    seed = _find(lambda a: a["camera"] == camera and a["objects"][0]["motion"] == motion, limit=3000)
    c = render_clip(seed)
    # object pixels (away from edges) whose flow lands on the same object, still visible, next frame
    region = np.zeros_like(c.flow[..., 0], dtype=bool)
    for k in range(len(c.masks)):
        region |= _stays_on(c, _interior(c.masks[k]))
    assert region.sum() > 500
    err, err_zero = _warp_errors(c, region)
    assert err < 1.0, (err, err_zero)
    assert err_zero > 3 * err and err_zero > 0.5, (err, err_zero)
    # background: the camera's flow moves the texture
    bg = _stays_on(c, _interior(~c.masks.any(0), r=2))
    err_bg, err_bg_zero = _warp_errors(c, bg)
    assert err_bg < 0.6 and err_bg_zero > 2 * err_bg, (err_bg, err_bg_zero)


def test_flow_is_zero_when_nothing_moves_and_matches_track():
    seed = _find(
        lambda a: a["camera"] == "static" and len(a["objects"]) == 1 and a["objects"][0]["motion"] == "static"
    )
    c = render_clip(seed)
    assert not c.flow.any()
    assert np.array_equal(c.frames[0], c.frames[-1])
    seed = _find(lambda a: a["camera"] == "static" and a["objects"][0]["motion"] == "moving left")
    c = render_clip(seed)
    pos = np.asarray(c.attributes["objects"][0]["positions"])
    m = c.masks[0, :-1] & _interior(c.masks[0, :-1])
    # on a translating object every visible pixel moves by the track's displacement
    for t in range(len(pos) - 1):
        assert np.allclose(c.flow[t][m[t]], pos[t + 1] - pos[t], atol=1e-3)
    assert pos[-1][0] - pos[0][0] <= -0.25 * 128  # clear displacement


def test_motions_are_visible():
    for motion in (
        "moving left",
        "moving right",
        "moving up",
        "moving down",
        "growing",
        "shrinking",
        "rotating",
    ):
        seed = _find(lambda a, m=motion: a["objects"][0]["motion"] == m and len(a["objects"]) == 1)
        o = render_clip(seed).attributes["objects"][0]
        pos, radii, ang = np.asarray(o["positions"]), np.asarray(o["radii"]), np.asarray(o["angles"])
        if motion.startswith("moving"):
            cam = render_clip(seed).attributes["camera_track"]
            assert np.abs(pos[-1] - pos[0]).max() >= 0.25 * 128 or cam["zoom"][-1] != 1.0, motion
        if motion in ("growing", "shrinking"):
            assert max(radii[0], radii[-1]) / min(radii[0], radii[-1]) >= 1.6
            assert (radii[-1] > radii[0]) == (motion == "growing")
        if motion == "rotating":
            assert abs(ang[-1] - ang[0]) > 0.5 * np.pi
    # every object stays fully inside the frame: no object pixel on the border rows / columns
    for seed in range(25):
        m = render_clip(seed, width=128, height=224).masks
        assert not (m[..., 0, :].any() or m[..., -1, :].any() or m[..., 0].any() or m[..., -1].any()), seed
        assert m[0].any(axis=(1, 2)).all(), "the front object is visible in every frame"


def test_bounces_reverse_the_motion_at_the_event_frames():
    n = 0
    for seed in range(200):
        a = render_clip(seed, width=16, height=16, frames=1).attributes
        if not any(o["motion"] == "bouncing" for o in a["objects"]):
            continue
        a = render_clip(seed).attributes
        for k, o in enumerate(a["objects"]):
            if o["motion"] != "bouncing":
                continue
            n += 1
            assert o["bounce_frames"], "a bouncing object must hit a wall in 17 frames"
            v = np.diff(np.asarray(o["positions"]), axis=0)
            flips = [
                t for t in range(1, len(v)) for ax in (0, 1) if np.sign(v[t, ax]) != np.sign(v[t - 1, ax])
            ]
            for f in flips:
                assert any(abs(f - b) <= 1 for b in o["bounce_frames"]), (seed, flips, o["bounce_frames"])
            assert [e["frame"] for e in a["events"] if e["object"] == k] == o["bounce_frames"]
        assert a["events"] == sorted(a["events"], key=lambda e: (e["time"], e["object"]))
        if n >= 12:
            break
    assert n >= 12


# ---------------------------------------------------------------- sound
def _click_onsets(audio: np.ndarray, sr: int) -> np.ndarray:
    """Times (s) of transients: energy above 6.8 kHz (voices stay below) in 4 ms windows, peak-picked."""
    spec = np.fft.rfft(audio.astype(np.float64))
    freqs = np.fft.rfftfreq(audio.size, 1 / sr)
    spec[freqs < 6800] = 0
    hp = np.fft.irfft(spec, audio.size)
    win = int(0.004 * sr)
    energy = (hp[: hp.size // win * win].reshape(-1, win) ** 2).sum(1)
    # a click puts ~0.4 of energy into a window; voices leak < 1e-4 (fades, loudness changes)
    above = (energy > 0.1 * energy.max()) & (energy > 0.01)
    starts = np.flatnonzero(above & ~np.r_[False, above[:-1]])
    return starts * win / sr


def _matches(onsets: np.ndarray, event_times: list[float], tol: float) -> bool:
    return all(np.abs(onsets - t).min() <= tol for t in event_times) and all(
        min(abs(o - t) for t in event_times) <= tol for o in onsets
    )


def test_bounce_clicks_are_within_one_frame_of_the_events():
    checked = 0
    for seed in range(300):
        a = render_clip(seed, width=16, height=16, frames=1).attributes
        if not any(o["motion"] == "bouncing" for o in a["objects"]):
            continue
        c = render_clip(seed, width=32, height=32)
        events = [e["frame"] / c.fps for e in c.attributes["events"]]
        onsets = _click_onsets(c.audio, c.sample_rate)
        assert len(onsets) > 0 and len(events) > 0
        assert _matches(onsets, events, tol=1 / c.fps), (seed, onsets, events)
        # the check can fail: clicks two frames late would not match
        assert not _matches(onsets, [t + 2 / c.fps for t in events], tol=1 / c.fps)
        checked += 1
        if checked == 6:
            break
    assert checked == 6
    # and no clicks without bounces
    seed = _find(lambda a: all(o["motion"] != "bouncing" for o in a["objects"]) and a["camera"] == "static")
    quiet = render_clip(seed, width=32, height=32)
    assert quiet.attributes["events"] == [] and _click_onsets(quiet.audio, 16000).size == 0


def test_silence_when_nothing_moves():
    seed = _find(lambda a: a["camera"] == "static" and all(o["motion"] == "static" for o in a["objects"]))
    c = render_clip(seed)
    assert np.abs(c.audio).max() < 1e-4
    # a panning camera over static objects is silent too; any object motion is not
    seed = _find(lambda a: a["camera"] != "static" and all(o["motion"] == "static" for o in a["objects"]))
    assert np.abs(render_clip(seed, width=32, height=32).audio).max() < 1e-4
    seed = _find(lambda a: a["camera"] == "static" and any(o["motion"] != "static" for o in a["objects"]))
    assert np.sqrt(np.mean(render_clip(seed, width=32, height=32).audio ** 2)) > 0.02


def test_voice_pitch_and_loudness_follow_the_object():
    seed = _find(lambda a: len(a["objects"]) == 1 and a["objects"][0]["motion"] == "moving left")
    c = render_clip(seed, width=32, height=32)
    o = c.attributes["objects"][0]
    spec = np.abs(np.fft.rfft(c.audio))
    freqs = np.fft.rfftfreq(c.audio.size, 1 / c.sample_rate)
    assert abs(freqs[spec.argmax()] - o["pitch_hz"]) < 0.02 * o["pitch_hz"]
    # growing objects speed up (radius grows exponentially): the voice gets louder through the clip
    seed = _find(lambda a: len(a["objects"]) == 1 and a["objects"][0]["motion"] == "growing")
    audio = render_clip(seed, width=32, height=32).audio
    q = audio.size // 4
    assert np.sqrt(np.mean(audio[-q:] ** 2)) > 1.2 * np.sqrt(np.mean(audio[:q] ** 2))


def test_camera_motion_is_visible_on_the_background():
    by_camera: dict[str, list[int]] = {cam: [] for cam in world.CAMERAS}
    for seed in range(150):
        by_camera[render_clip(seed, width=16, height=16, frames=1).attributes["camera"]].append(seed)
    for camera, seeds in by_camera.items():
        assert len(seeds) >= 3, camera
        for seed in seeds[:3]:
            c = render_clip(seed, width=64, height=64)
            bg = _interior(~c.masks.any(0), r=1)  # away from anti-aliased object edges
            both = bg[0] & bg[-1]
            change = np.abs(c.frames[-1].astype(int) - c.frames[0].astype(int))[both].mean()
            if camera == "static":
                assert change < 0.05, (seed, change)  # (faint partial-coverage pixels at star tips)
                assert not c.flow.any(axis=-1)[~c.masks.any(0)[:-1]].any()
            else:
                assert c.attributes["background"]["kind"] in ("stripes", "noise"), (
                    "pan on a textureless background"
                )
                assert change > 4.0, (camera, seed, change)
