"""`videopoet upscale` end to end on random debug models (a debug SR model + a debug video tokenizer saved
as components): 2× and 4× keep the frame rate and the sound; bad input is one line and exit status 2."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from videopoet import cli
from videopoet.data.sample import frames_to_tensor
from videopoet.superres.model import PRESETS, SuperResTransformer
from videopoet.superres.upscale import (
    back_project,
    pieces_of,
    resize,
    stage_grid_error,
    stages_for,
    tiled_size,
    upscale_frames,
)
from videopoet.tokenizers.video import VideoTokenizer

pytest.importorskip("av")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("upscale")
    torch.manual_seed(0)
    VideoTokenizer.from_preset("debug").save_pretrained(root / "tok")
    SuperResTransformer.from_preset("debug").save_pretrained(root / "sr")
    return root


def _clip(path, width=32, height=32, frames=6, audio=True):
    from videopoet.data.media import write_mp4

    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    sound = (0.1 * np.sin(np.arange(frames * 2000) / 5)).astype(np.float32) if audio else None
    write_mp4(path, video, 8, sound, 16000)
    return path


def _main(argv):
    """cli.main's status; argparse's refusals exit (status 2) before main returns."""
    try:
        return cli.main([str(a) for a in argv])
    except SystemExit as e:
        return e.code


def _run(models, *args):
    base = ["--model", models / "sr", "--video-tokenizer", models / "tok", "--steps", "2"]
    return _main(["upscale", *args, *base])


@pytest.mark.parametrize("factor,side", [(2, 64), (4, 128)])
def test_upscale_end_to_end_keeps_rate_and_sound(models, tmp_path, factor, side):
    from videopoet.data.media import read_video

    src = _clip(tmp_path / "in.mp4")
    out = tmp_path / "out.mp4"
    assert _run(models, src, "--out", out, "--factor", factor) == 0
    data = read_video(out)
    assert data.frames.shape == (5, side, side, 3)  # 6 frames in: the first 1 + 4k kept
    assert data.fps == 8 and data.audio is not None and abs(len(data.audio) - 10_000) <= 1024


@pytest.mark.parametrize("factor", [2, 4])
def test_back_projection_keeps_a_consistent_clip_and_pulls_others_to_the_input(factor):
    torch.manual_seed(0)
    hi = torch.rand(1, 3, 2, 8 * factor, 8 * factor) * 2 - 1
    lo = resize(hi, 1 / factor)  # what hi gives downsampled: hi is consistent with it
    assert torch.equal(back_project(hi, lo), hi)
    other = torch.rand(1, 3, 2, 8, 8) * 2 - 1
    gap = (resize(hi, 1 / factor) - other).abs().mean()
    once, more = back_project(hi, other), back_project(hi, other, iterations=4)
    assert (
        (resize(more, 1 / factor) - other).abs().mean()
        < (resize(once, 1 / factor) - other).abs().mean()
        < gap
    )
    with pytest.raises(ValueError, match="2x or 4x"):
        back_project(hi, torch.zeros(1, 3, 2, 5, 5))


def test_coarse_back_projection_corrects_only_below_its_scale():
    torch.manual_seed(0)
    hi = torch.rand(1, 3, 2, 32, 32) - 0.5  # room for the shifts below: no clamping
    lo = resize(hi, 1 / 2)
    assert torch.equal(back_project(hi, lo, coarse=2), hi)  # consistent: left as it is
    i = torch.arange(16)
    fine = 0.3 * (-1.0) ** (i[:, None] + i[None, :])  # a ±0.3 checkerboard: nothing below half lo's scale
    flat = torch.full_like(lo, 0.3)  # all below it
    full, coarse = back_project(hi, lo + fine), back_project(hi, lo + fine, coarse=2)
    assert (full - hi).abs().mean() > 0.05 and (coarse - hi).abs().mean() < 0.2 * (full - hi).abs().mean()
    moved = back_project(hi, lo + flat, coarse=2) - hi
    assert moved[..., 4:-4, 4:-4].sub(0.3).abs().max() < 0.05  # the flat shift comes through
    with pytest.raises(ValueError, match="coarse"):
        back_project(hi, lo, coarse=3)


def test_upscale_frames_back_projects_onto_its_input_by_default(models):
    tok = VideoTokenizer.from_pretrained(models / "tok")
    sr = SuperResTransformer.from_pretrained(models / "sr")
    frames = np.random.default_rng(2).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    video = frames_to_tensor(frames)[None]  # (1, 3, T, H, W)

    def gap(out):  # mean |downsampled output − input|
        return (resize(frames_to_tensor(out)[None], 0.5) - video).abs().mean()

    raw = upscale_frames(frames, tok, [sr], steps=2, seed=3, consistency=False)
    assert gap(upscale_frames(frames, tok, [sr], steps=2, seed=3)) < 0.5 * gap(raw)
    coarse = upscale_frames(frames, tok, [sr], steps=2, seed=3, coarse=4)  # corrects the lowest band only
    assert gap(upscale_frames(frames, tok, [sr], steps=2, seed=3)) < gap(coarse) < gap(raw)
    with pytest.raises(ValueError, match="coarse must be one of"):
        upscale_frames(frames, tok, [sr], steps=2, seed=3, coarse=3)


def test_upscale_frames_repeat_for_a_seed(models):
    tok = VideoTokenizer.from_pretrained(models / "tok")
    sr = SuperResTransformer.from_pretrained(models / "sr")
    frames = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    a = upscale_frames(frames, tok, [sr], steps=2, seed=3)
    assert a.shape == (5, 64, 64, 3) and np.array_equal(a, upscale_frames(frames, tok, [sr], steps=2, seed=3))
    assert len(stages_for([sr], 4)) == 2 and stages_for([sr, tok], 4)[1] is tok
    tiny = SimpleNamespace(config=PRESETS["tiny"])  # windows of 8 rows: 128x128 → 256x256 tiles, 80 rows not
    assert stage_grid_error(tiny, (5, 16, 16)) is None and "tile" in stage_grid_error(tiny, (5, 10, 16))


def test_tiled_size_pads_to_the_nearest_grid_the_windows_tile():
    tok = SimpleNamespace(
        config=SimpleNamespace(spatial_factor=8), latent_shape=lambda t, h, w: (5, h // 8, w // 8)
    )
    tiny = SimpleNamespace(config=PRESETS["tiny"])  # high-res grids of 8k rows and 8k columns
    assert tiled_size([tiny], tok, (17, 128, 128)) == (128, 128)
    assert tiled_size([tiny], tok, (17, 144, 176)) == (160, 192)  # 18 x 22 tokens → 20 x 24
    assert tiled_size([tiny, tiny], tok, (17, 224, 128)) == (224, 128)
    stage1 = SimpleNamespace(config=PRESETS["paper-stage1"])  # 5-frame windows: 5 latent frames only
    tok3 = SimpleNamespace(config=tok.config, latent_shape=lambda t, h, w: (3, h // 8, w // 8))
    with pytest.raises(ValueError, match="no padded size"):
        tiled_size([stage1], tok3, (9, 128, 224))


def test_upscale_frames_pads_a_grid_the_windows_do_not_tile_and_crops_back(models, tmp_path):
    import dataclasses

    tok = VideoTokenizer.from_pretrained(models / "tok")
    cfg = dataclasses.replace(PRESETS["debug"], vertical=(1, 0, 4), horizontal=(1, 4, 0), temporal=(0, 4, 4))
    torch.manual_seed(0)
    SuperResTransformer(cfg).save_pretrained(tmp_path / "sr4")
    sr = SuperResTransformer.from_pretrained(tmp_path / "sr4")
    frames = np.random.default_rng(2).integers(0, 256, (5, 24, 40, 3), dtype=np.uint8)  # 3 x 5 tokens
    assert stage_grid_error(sr, (2, 3, 5)) is not None and tiled_size([sr], tok, frames.shape[:3]) == (32, 48)
    out = upscale_frames(frames, tok, [sr], steps=2, seed=3)
    assert out.shape == (5, 48, 80, 3)
    padded = np.pad(frames, ((0, 0), (0, 8), (0, 8), (0, 0)), mode="edge")
    whole = upscale_frames(padded, tok, [sr], steps=2, seed=3)  # the same work, not cropped
    assert np.array_equal(out, whole[:, :48, :80])


def _one_line_exit_2(capsys, status, match):
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err[-1].startswith("videopoet") and match in err[-1]
    assert not any("Traceback" in line for line in err)


@pytest.mark.parametrize(
    "case,match",
    [
        ("size", "multiples of 8"),
        ("factor", "invalid choice"),
        ("coarse", "invalid choice"),
        ("missing", "no such file"),
        ("exists", "already exists"),
        ("vocabulary", "not trained together"),
        ("suffix", "must end in .mp4"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(models, tmp_path, capsys, case, match):
    src = _clip(tmp_path / "in.mp4", width=36 if case == "size" else 32, frames=5, audio=False)
    out = tmp_path / ("out.gif" if case == "suffix" else "out.mp4")
    if case == "exists":
        out.write_bytes(b"mine")
    args = [tmp_path / "nope.mp4" if case == "missing" else src, "--out", out]
    args += ["--factor", "3"] if case == "factor" else []
    args += ["--consistency-coarse", "3"] if case == "coarse" else []
    if case == "vocabulary":
        status = cli.main(
            ["upscale", *map(str, args), "--model", str(models / "sr")]
        )  # the bundled tokenizer
    else:
        status = _run(models, *args)
    _one_line_exit_2(capsys, status, match)
    assert case != "exists" or out.read_bytes() == b"mine"


def test_prompt_for_a_model_without_text_is_one_line(models, tmp_path, capsys):
    SuperResTransformer.from_preset("debug", text_dim=0).save_pretrained(tmp_path / "notext")
    src, out = _clip(tmp_path / "in.mp4", frames=5, audio=False), tmp_path / "out.mp4"
    base = ["--model", tmp_path / "notext", "--video-tokenizer", models / "tok", "--steps", "2"]
    status = _main(["upscale", src, "--out", out, "--prompt", "a red circle", *base])
    _one_line_exit_2(capsys, status, "trained without text")
    assert not out.exists()
    assert _main(["upscale", src, "--out", out, *base]) == 0  # without --prompt it upscales


def test_no_model_says_pass_model(tmp_path, capsys):
    src = _clip(tmp_path / "in.mp4", frames=5, audio=False)
    _one_line_exit_2(capsys, _main(["upscale", src, "--out", tmp_path / "o.mp4"]), "--model DIR")


def test_a_bundled_model_is_the_default(models, tmp_path, monkeypatch):
    """Once pretrained/super_resolution/ ships, `upscale` without --model and the bundled pipeline use it."""
    import shutil

    from videopoet import components, pipeline
    from videopoet.lm.transformer import PrefixLM
    from videopoet.superres import upscale
    from videopoet.tokenizers.audio import AudioTokenizer

    root = tmp_path / "pretrained"
    shutil.copytree(models / "sr", root / "super_resolution")
    shutil.copytree(models / "tok", root / "video_tokenizer")
    AudioTokenizer.from_preset("debug").save_pretrained(root / "audio_tokenizer")
    PrefixLM.from_preset("debug").save_pretrained(root / "transformer")
    for module in (components, pipeline, upscale):
        monkeypatch.setattr(module, "PRETRAINED_ROOT", root)
    src, out = _clip(tmp_path / "in.mp4"), tmp_path / "out.mp4"
    assert _main(["upscale", src, "--out", out, "--steps", "2"]) == 0 and out.is_file()
    pipe = pipeline.VideoPoetPipeline.from_pretrained(None, text_encoder=_NoText())
    assert pipe.super_resolution is not None


class _NoText:
    """A text encoder stand-in of MiniLM's width (the bundled pipeline's default would load MiniLM)."""

    dim, max_tokens, spec = 384, 64, "minilm"


def test_a_draft_model_needs_the_tokenizer_and_reads_its_draft(models, monkeypatch):
    from videopoet.superres import upscale

    tok = VideoTokenizer.from_pretrained(models / "tok")
    sr = SuperResTransformer.from_pretrained(models / "sr")
    assert sr.config.draft
    lo = tok.encode(
        frames_to_tensor(np.random.default_rng(5).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8))[None]
    )
    with pytest.raises(ValueError, match="pass the video tokenizer"):
        upscale.upscale_tokens(sr, lo, steps=1)
    seen = []
    real = upscale.draft_tokens
    monkeypatch.setattr(upscale, "draft_tokens", lambda *a: seen.append(real(*a)) or seen[-1])
    out = upscale.upscale_tokens(sr, lo, tokenizer=tok, steps=1)
    assert out.shape == seen[0].shape == (1, lo.shape[1], 2 * lo.shape[2], 2 * lo.shape[3])
    assert torch.equal(seen[0], tok.encode(resize(tok.decode(lo), 2).clamp(-1, 1)))
    # a draft the caller made is read as it is: no tokenizer needed, none made again, the same tokens
    given = upscale.upscale_tokens(sr, lo, draft=seen[0], steps=1)
    assert len(seen) == 1 and torch.equal(given, out)
    other = upscale.upscale_tokens(sr, lo, draft=torch.zeros_like(seen[0]), steps=1)
    assert len(seen) == 1 and not torch.equal(other, out)


def test_upscale_cli_pads_and_says_so(models, tmp_path, capsys):
    import dataclasses

    from videopoet.data.media import read_video

    cfg = dataclasses.replace(PRESETS["debug"], vertical=(1, 0, 4), horizontal=(1, 4, 0), temporal=(0, 4, 4))
    SuperResTransformer(cfg).save_pretrained(tmp_path / "sr4")
    src, out = _clip(tmp_path / "in.mp4", width=40, height=24), tmp_path / "out.mp4"
    argv = ["upscale", src, "--out", out, "--model", tmp_path / "sr4", "--video-tokenizer", models / "tok"]
    assert _main([*argv, "--steps", "2"]) == 0
    assert "padding 40x24 to 48x32" in capsys.readouterr().err
    assert read_video(out).frames.shape == (5, 48, 80, 3)


def test_a_long_clip_goes_in_pieces_that_share_their_boundary_frame(models):
    tok = VideoTokenizer.from_pretrained(models / "tok")
    sr = SuperResTransformer.from_pretrained(models / "sr")
    frames = np.random.default_rng(4).integers(0, 256, (13, 32, 32, 3), dtype=np.uint8)
    out = upscale_frames(frames, tok, [sr], steps=2, seed=3, chunk_frames=5)
    pieces = [upscale_frames(frames[s : s + 5], tok, [sr], steps=2, seed=3) for s in (0, 4, 8)]
    assert np.array_equal(out, np.concatenate([pieces[0], pieces[1][1:], pieces[2][1:]]))
    whole = upscale_frames(frames, tok, [sr], steps=2, seed=3, chunk_frames=13)  # one piece
    assert whole.shape == out.shape == (13, 64, 64, 3) and not np.array_equal(whole, out)
    with pytest.raises(ValueError, match="chunk_frames"):
        upscale_frames(frames, tok, [sr], chunk_frames=6)


def test_pieces_share_a_frame_and_each_is_checked_as_cut():
    assert pieces_of(33, 17, 4) == [(0, 17), (16, 33)] and pieces_of(21, 17, 4) == [(0, 17), (16, 21)]
    assert pieces_of(1, 17, 4) == [(0, 1)] and pieces_of(17, 17, 4) == [(0, 17)]
    tok = SimpleNamespace(
        config=SimpleNamespace(spatial_factor=8),
        latent_shape=lambda t, h, w: ((t - 1) // 4 + 1, h // 8, w // 8),
    )
    stage1 = SimpleNamespace(config=PRESETS["paper-stage1"])  # 5-latent-frame windows: 17-frame pieces fit
    assert all(tiled_size([stage1], tok, (b - a, 224, 128)) == (224, 128) for a, b in pieces_of(33, 17, 4))
    with pytest.raises(ValueError, match="no padded size"):  # the whole 33-frame clip would not
        tiled_size([stage1], tok, (33, 224, 128))


def test_upscale_cli_passes_temperature_and_consistency_band(models, tmp_path, monkeypatch):
    import videopoet.superres.upscale as up

    seen, real = {}, up.upscale_frames

    def spy(*args, **kw):
        seen.update(kw)
        return real(*args, **kw)

    monkeypatch.setattr(up, "upscale_frames", spy)
    src = _clip(tmp_path / "in.mp4", frames=5, audio=False)
    out = tmp_path / "out.mp4"
    assert _run(models, src, "--out", out, "--temperature", "0.5", "--consistency-coarse", "4") == 0
    assert seen["temperature"] == 0.5 and seen["coarse"] == 4 and seen["consistency"] is True


def test_upscale_cli_defaults_are_the_pipelines():
    """`videopoet upscale` samples as the pipeline does unless told otherwise (one set of defaults)."""
    from videopoet.cli import build_parser
    from videopoet.superres.upscale import COARSE, FACTORS, TEMPERATURE, TEXT_GUIDANCE

    args = build_parser().parse_args(["upscale", "in.mp4", "--out", "o.mp4"])
    assert (args.guidance_text, args.temperature, args.consistency_coarse) == (TEXT_GUIDANCE, TEMPERATURE, 1)
    actions = {a.dest: a for a in build_parser()._subparsers._group_actions[0].choices["upscale"]._actions}
    assert (
        tuple(actions["consistency_coarse"].choices) == COARSE and tuple(actions["factor"].choices) == FACTORS
    )
