"""Generation metrics as pure functions, the evaluate() loop with fake generators, and the CLI."""

import json

import numpy as np
import pytest

from videopoet.cli import main as cli_main
from videopoet.data.synthetic import render_clip
from videopoet.eval.generation import (
    GeneratedClip,
    audio_features,
    caption_for,
    central_mask,
    evaluate,
    event_sync,
    first_frame_psnr,
    masked_fidelity,
    real_generate_fn,
    stylized_attributes,
    temporal_consistency,
    track_agreement,
    video_bounce_frames,
)
from videopoet.eval.judge import judge_clip, parse_caption
from videopoet.eval.metrics import frames_psnr


def test_psnr_masks_and_fidelity():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    mask = central_mask(32, 32)
    assert mask.sum() == 16 * 16 and mask[16, 16] and not mask[0, 0]
    out = ref.copy()
    out[:, mask] = 255 - out[:, mask]  # only the inside changes
    fid = masked_fidelity(out, ref, mask)
    assert fid.outside_psnr == float("inf") and fid.inside_psnr < 10
    noisy = np.clip(ref.astype(int) + 10, 0, 255).astype(np.uint8)
    mse = ((noisy.astype(float) - ref) ** 2).mean(axis=(1, 2, 3))  # per frame
    assert frames_psnr(noisy, ref) == pytest.approx(np.mean(10 * np.log10(255**2 / mse)))
    assert first_frame_psnr(out, ref[0]) < 20 and first_frame_psnr(ref, ref[0]) == float("inf")
    with pytest.raises(ValueError, match="shapes differ"):
        frames_psnr(ref, ref[:2])


def test_temporal_consistency_sees_flicker():
    still = np.full((6, 16, 16, 3), 100, np.uint8)
    assert temporal_consistency(still).flicker == 0.0
    assert temporal_consistency(still).frame_psnr == float("inf")
    flicker = still.copy()
    flicker[1::2] = 140
    tc = temporal_consistency(flicker)
    assert tc.flicker == pytest.approx(40.0) and tc.frame_psnr < 20


def _clicks(frames, fps=8, sr=16000, n=34000):
    a = np.zeros(n, np.float32)
    rng = np.random.default_rng(0)
    for f in frames:
        s = int(f / fps * sr)
        a[s : s + 320] += 0.5 * rng.uniform(-1, 1, 320) * np.exp(-np.arange(320) / 128)
    return a


def test_event_sync_counts_clicks_within_one_frame():
    audio = _clicks([3, 10])
    assert event_sync(audio, 16000, 8, [3, 10]) == 1.0
    assert event_sync(audio, 16000, 8, [3, 14]) == 0.5
    assert event_sync(np.zeros(34000, np.float32), 16000, 8, [5]) == 0.0
    assert np.isnan(event_sync(audio, 16000, 8, []))


def test_audio_features_fixed_and_discriminative():
    quiet = np.zeros(34000, np.float32)
    clicks = _clicks([2, 6, 12])
    fq, fc = audio_features(quiet, 16000), audio_features(clicks, 16000)
    assert fq.shape == fc.shape == (130,)
    assert fc[128] == pytest.approx(3 / (34000 / 16000))  # onset rate
    assert np.abs(fq - fc).max() > 1


def test_bounce_frames_and_track_agreement_on_world_clips():
    clips = (render_clip(s, split="train") for s in range(200))
    clip = next(c for c in clips if any(e["frame"] < 16 for e in c.attributes["events"]))
    res = judge_clip(clip.frames)
    # A wall contact at the last frame cannot be seen reversing; every earlier one must be.
    truth = sorted({e["frame"] for e in clip.attributes["events"] if e["frame"] < clip.frames.shape[0] - 1})
    seen = video_bounce_frames(res)
    assert truth
    assert all(any(abs(s - t) <= 1 for s in seen) for t in truth), (seen, truth)
    assert track_agreement(res, res, 128) == 1.0
    shifted = judge_clip(np.roll(clip.frames, 20, axis=2))
    assert track_agreement(shifted, res, 128) < 0.95


def test_stylized_attributes_change_appearance_keep_motion():
    attrs = render_clip(3, split="train").attributes
    new = stylized_attributes(attrs, np.random.default_rng(0))
    for old, o in zip(attrs["objects"], new["objects"]):
        assert o["color"] != old["color"]
        assert (o["shape"], o["size"], o["motion"]) == (old["shape"], old["size"], old["motion"])
    assert new["background"] != attrs["background"]["kind"]
    parsed = parse_caption(caption_for(new))
    assert [o["color"] for o in parsed["objects"]] == [o["color"] for o in new["objects"]]
    assert parsed["background"] == new["background"]


def test_evaluate_real_is_the_ceiling_and_a_bad_generator_scores_lower():
    tasks = ("t2v", "i2v", "inpaint", "stylize", "v2a")  # a2v and outpaint: the CLI test below
    real, samples = evaluate(real_generate_fn, num=2, split="heldout", seed=40, tasks=tasks, progress=False)
    assert real["t2v"]["prompt_following"]["all_correct"] == 1.0
    assert real["i2v"]["first_frame_psnr"] == float("inf")
    assert real["inpaint"]["inside_psnr"] == float("inf") == real["inpaint"]["outside_psnr"]
    assert real["stylize"]["motion_following"] == 1.0
    assert real["stylize"]["text_following"]["color"] == 0.0  # an identity stylizer ignores the new text
    assert len(samples["t2v"]) == 2

    def wrong(task, prompt, conditions):  # answers every prompt with some other clip, silent
        other = render_clip(conditions["clip"].attributes["seed"] + 500, split="train")
        return GeneratedClip(other.frames, np.zeros_like(other.audio))

    bad, _ = evaluate(wrong, num=2, split="heldout", seed=40, tasks=("t2v", "i2v", "stylize"), progress=False)
    assert bad["t2v"]["prompt_following"]["all_correct"] < 0.5
    assert bad["t2v"]["prompt_following"]["color"] < real["t2v"]["prompt_following"]["color"]
    assert bad["i2v"]["first_frame_psnr"] < 30
    assert bad["stylize"]["motion_following"] < 1.0


def test_cli_eval_generation_real_writes_report(tmp_path):
    out = tmp_path / "gen"
    assert cli_main(["eval", "generation", "--real", "--num", "2", "--out", str(out), "--seed", "7"]) == 0
    data = json.loads((out / "generation.json").read_text())
    assert data["t2v"]["prompt_following"]["num_clips"] == 2
    assert data["a2v"]["audio_video_agreement"] >= 0.0
    md = (out / "generation.md").read_text()
    assert "t2v_attributes.png" in md and "t2v_samples.gif" in md
    assert (out / "t2v_attributes.png").stat().st_size > 0 and (out / "t2v_samples.gif").stat().st_size > 0
