"""The world judge: accuracy on fresh clips (clean, degraded), shuffled-caption control, wrong clips."""

import numpy as np
import pytest

from videopoet.data.synthetic import render_clip
from videopoet.eval.judge import (
    FEATURE_DIM,
    all_correct,
    chance_agreement,
    draw_moving_shape,
    event_f1,
    judge_accuracy,
    judge_clip,
    parse_caption,
    score_against,
    simulate_reconstruction,
)
from videopoet.eval.metrics import frames_psnr

SEEDS = range(90_000, 90_015)  # fresh seeds (the judge's thresholds were studied on 1000–1100, 2000–2400)


@pytest.fixture(scope="module")
def judged():
    out = []
    for split in ("train", "heldout"):
        for seed in SEEDS:
            clip = render_clip(seed, split=split)
            out.append((clip, judge_clip(clip.frames, clip.audio, clip.sample_rate, clip.fps)))
    return out


def test_judge_recovers_ground_truth_on_both_splits(judged):
    acc = judge_accuracy([c.frames for c, _ in judged], [c.attributes for c, _ in judged],
                         results=[r for _, r in judged])  # fmt: skip
    assert acc["num_clips"] == 30
    for key in ("color", "shape", "size", "motion", "background", "camera", "events"):
        assert acc[key] >= 0.95, (key, acc)
    assert acc["all_correct"] >= 0.85, acc


def test_judge_survives_tokenizer_like_degradation():
    clips = [render_clip(seed, split="heldout") for seed in range(91_000, 91_008)]
    degraded = [simulate_reconstruction(c.frames, seed=i) for i, c in enumerate(clips)]
    assert not np.array_equal(degraded[0], clips[0].frames)
    # a plausible small-tokenizer reconstruction quality
    assert 20 < frames_psnr(degraded[0], clips[0].frames) < 35
    acc = judge_accuracy(degraded, [c.attributes for c in clips])
    for key in ("color", "shape", "size", "motion", "background", "camera"):
        assert acc[key] >= 0.9, (key, acc)


def test_shuffled_captions_score_near_chance(judged):
    results = [r for _, r in judged]
    attrs = [c.attributes for c, _ in judged]
    shuffled = attrs[11:] + attrs[:11]  # every clip scored against another clip's attributes
    matched = judge_accuracy([None] * len(results), attrs, results=results)
    control = judge_accuracy([None] * len(results), shuffled, results=results)
    chance = chance_agreement(attrs)
    for key in ("shape", "size", "motion", "background", "camera"):
        assert control[key] <= chance[key] + 0.25, (key, control[key], chance[key])
        assert control[key] < matched[key] - 0.2, (key, control[key], matched[key])
    assert control["color"] < 0.35
    assert control["all_correct"] <= 0.05


def test_wrong_clip_does_not_pass_for_another_caption():
    blue_square_left = draw_moving_shape("square", (50, 80, 235), dx=-50)
    red_circle_right = draw_moving_shape("circle", (230, 40, 40), dx=50)
    res = judge_clip(blue_square_left)
    assert [(o.color, o.shape, o.size, o.motion) for o in res.objects] == [
        ("blue", "square", "medium", "moving left")
    ]
    wrong = score_against(res, parse_caption("a red circle moving right"))
    assert wrong == {"color": 0.0, "shape": 0.0, "motion": 0.0}
    assert not all_correct(wrong)
    assert all_correct(
        score_against(res, parse_caption("a medium blue square sliding to the left on a plain background"))
    )
    res2 = judge_clip(red_circle_right)
    assert all_correct(score_against(res2, parse_caption("a red circle moving right")))
    assert not all_correct(score_against(res2, parse_caption("a blue square moving left")))
    # Right colour and shape but the opposite motion still fails the motion attribute.
    assert score_against(res, parse_caption("a blue square moving right"))["motion"] == 0.0


def test_parse_caption_reads_world_captions(judged):
    for clip, _ in judged[:15]:
        parsed = parse_caption(clip.caption)
        truth = {o["color"]: o for o in clip.attributes["objects"]}
        assert {o["color"] for o in parsed["objects"]} == set(truth), clip.caption
        for o in parsed["objects"]:
            for key in ("shape", "size", "motion"):
                assert o[key] == truth[o["color"]][key], (clip.caption, key)
        assert parsed["background"] == clip.attributes["background"]["kind"], clip.caption
        if "camera" in parsed:
            assert parsed["camera"] == clip.attributes["camera"], clip.caption


def test_features_are_fixed_length_and_deterministic(judged):
    clip, res = judged[0]
    assert res.features.shape == (FEATURE_DIM,) and np.isfinite(res.features).all()
    again = judge_clip(clip.frames, clip.audio, clip.sample_rate, clip.fps)
    np.testing.assert_array_equal(again.features, res.features)
    # Different clips have different features.
    assert not np.allclose(judged[1][1].features, res.features)


def test_event_f1_and_input_validation():
    assert event_f1([3, 9], [4, 9]) == 1.0
    assert event_f1([3], [6]) == 0.0
    assert event_f1([], []) == 1.0
    assert event_f1([2, 8], [2]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="uint8"):
        judge_clip(np.zeros((4, 32, 32, 3), np.float32))
    # Audio events are scored only when audio is given.
    clip = render_clip(5, split="train")
    assert "events" not in score_against(judge_clip(clip.frames), clip.attributes)


def _polygon_clip(
    corners: int, spin: float, dx: float, bumps: int = 0, frames: int = 17, size: int = 128, track=None
):
    """A regular polygon (radius 18 px, cyan) on a dark solid background drawn here, turning by ``spin`` rad
    and moving by ``dx`` px over the clip (or along ``track``: the centre's x per frame); ``bumps`` random
    blobs on its rim per frame mimic a codec's ragged outlines (their moment phases are random from frame
    to frame)."""
    rng = np.random.default_rng(3)
    video = np.full((frames, size, size, 3), (30, 30, 34), np.uint8)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    for t in range(frames):
        s = t / (frames - 1)
        cx, cy, angle = size / 2 - dx / 2 + dx * s, size / 2, spin * s
        if track is not None:
            cx = track[t]
        r, phi = np.hypot(xs - cx, ys - cy), np.arctan2(ys - cy, xs - cx) - angle
        sector = 2 * np.pi / corners
        inside = r * np.cos((phi % sector) - sector / 2) <= 18 * np.cos(sector / 2)
        for a in rng.uniform(0, 2 * np.pi, bumps):
            inside |= np.hypot(xs - cx - 17 * np.cos(a), ys - cy - 17 * np.sin(a)) <= 5
        video[t][inside] = (40, 200, 220)
    return video


def test_rotation_needs_coherent_phases():
    # A turning square reads as rotating (0.75π over the clip, inside the world's range)…
    (turning,) = judge_clip(_polygon_clip(4, 0.75 * np.pi, dx=0)).objects
    assert (turning.shape, turning.motion) == ("square", "rotating")
    assert abs(turning.details["rotation"]) == pytest.approx(0.75 * np.pi, rel=0.15)
    # …a ragged outline whose moment phases jump at random does not: it moves right.
    # (The judge before this check read it as rotating by −1.2 rad.)
    (ragged,) = judge_clip(_polygon_clip(4, 0.0, dx=50, bumps=1)).objects
    assert ragged.details["rotation"] == 0.0 and ragged.motion == "moving right", ragged.details


def test_a_far_turn_back_is_a_bounce_even_when_the_outline_turns():
    # A codec's smear can make a bouncing object's moment phase turn coherently; a track that comes back
    # 20 px is a bounce (no other world motion turns back more than a few pixels)…
    out_and_back = np.concatenate([np.linspace(34, 74, 12), np.linspace(74, 54, 6)[1:]])
    (obj,) = judge_clip(_polygon_clip(4, 0.75 * np.pi, 0, track=out_and_back)).objects
    assert obj.motion == "bouncing" and obj.details["rotation"] != 0.0, obj.details
    # …while a 4-pixel wobble (another object hiding part of a turning one shifts its centroid so much)
    # does not outrank the measured rotation.
    wobble = 64 + 4 * np.sin(np.linspace(0, np.pi, 17))
    (obj,) = judge_clip(_polygon_clip(4, 0.75 * np.pi, 0, track=wobble)).objects
    assert obj.motion == "rotating", obj.details


def test_rotation_survives_a_codec_holding_frames():
    # A causal tokenizer codes frames in groups of four and can hold an outline over a group, then jump.
    # Held so, a star turning 0.7π per clip read as static before: the sum of frame-to-frame phase steps
    # lost the last group's turn, and the coherence at that biased turn failed its test. The fit of a
    # constant-speed turn over all frames finds it.
    for seed in (93439, 93634):  # one rotating star each
        clip = render_clip(seed, split="train")
        (truth,) = clip.attributes["objects"]
        assert (truth["shape"], truth["motion"]) == ("star", "rotating")
        held = clip.frames.copy()
        for t in range(1, len(held)):
            held[t] = clip.frames[1 + 4 * ((t - 1) // 4)]
        (obj,) = judge_clip(held).objects
        assert obj.motion == "rotating", obj.details
        turn = truth["angles"][-1] - truth["angles"][0]
        assert obj.details["rotation"] == pytest.approx(turn, rel=0.15)


def test_object_confusions_count_only_the_wrong_objects(judged):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "judge_accuracy.py"
    spec = importlib.util.spec_from_file_location("judge_accuracy_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    results = [r for _, r in judged]
    attrs = [c.attributes for c, _ in judged]
    right = bench.object_confusions(results, attrs)
    assert right["objects"] == sum(len(a["objects"]) for a in attrs)
    wrong_count = sum(right["errors_by_true_size"].values())
    assert wrong_count <= 1  # ground truth: at most a stray miss over 30 clips
    shuffled = bench.object_confusions(results, attrs[7:] + attrs[:7])
    assert sum(shuffled["errors_by_true_size"].values()) > 10 * max(1, wrong_count)
    assert all(" read as " in k for k in shuffled["top_confusions"])


def _yellow_disc_clip(xs, radii, y=64, size=128):
    """A yellow disc with per-frame centre x and radius (radius 0: absent) on a dark plain background."""
    video = np.zeros((len(xs), size, size, 3), np.uint8)
    video[:] = (30, 30, 34)
    yy, xx = np.mgrid[0:size, 0:size]
    for t, (x, r) in enumerate(zip(xs, radii)):
        video[t][(xx - x) ** 2 + (yy - y) ** 2 <= r**2] = (240, 225, 40)
    return video


def test_bounce_survives_a_codec_fading_the_object():
    # Right 60 px, then back 20 px (a wall bounce), with the disc fading to a smaller blob from frame 6
    # on, as a tokenizer fades fast objects. The area trend is not a growth: before the bounce was read
    # ahead of growth (and from the faded frames too), this clip read as shrinking.
    xs = np.concatenate([np.linspace(40, 100, 12), np.linspace(100, 80, 6)[1:]])
    (obj,) = judge_clip(_yellow_disc_clip(xs, [11] * 6 + [7] * 11)).objects
    assert obj.motion == "bouncing", obj.details
    assert obj.details["reversal_px"] == pytest.approx(20.0, abs=1.0)
    # A disc that really shrinks, without coming back, still reads as shrinking.
    (shrinking,) = judge_clip(_yellow_disc_clip([64] * 17, np.linspace(16, 16 / 1.8, 17))).objects
    assert shrinking.motion == "shrinking", shrinking.details


def test_a_moving_object_that_fades_is_still_moving():
    # Right by the world's move distance (0.38 of the frame) while a codec fades it from radius 10 to 7:
    # the area trend passes the growth threshold, the displacement passes its own by more.
    xs = np.linspace(40, 40 + 0.38 * 128, 17)
    (obj,) = judge_clip(_yellow_disc_clip(xs, np.linspace(10, 7, 17))).objects
    assert obj.motion == "moving right", obj.details
    # A growing disc that stays put still grows.
    (obj,) = judge_clip(_yellow_disc_clip([64] * 17, np.linspace(10, 18, 17))).objects
    assert obj.motion == "growing", obj.details


def test_an_object_left_in_few_frames_is_still_found():
    # A tokenizer can drop a small fast object from most frames: present in 5 of 17 it is still found.
    radii = [10 if t % 4 == 0 else 0 for t in range(17)]
    res = judge_clip(_yellow_disc_clip([64] * 17, radii))
    assert [o.color for o in res.objects] == ["yellow"]
    # In 4 of 17 it is not (too little to judge).
    radii = [10 if t in (0, 4, 8, 12) else 0 for t in range(17)]
    assert judge_clip(_yellow_disc_clip([64] * 17, radii)).objects == []
