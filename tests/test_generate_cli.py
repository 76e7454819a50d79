"""``videopoet generate`` on a saved debug pipeline (no text encoder: the text-free tasks, or a fake one
patched in; an LM of max_seq_len 200, so 9 frames take two windows): mp4 and GIF written, every task from
files, long video, an existing output refused without --overwrite and left as it was, and the one-line
errors checked before the model loads (missing model folder, bad size or length, a task's missing or
unread input, bad masks, no flow/depth, no bundled LM)."""

import numpy as np
import pytest
import torch

from test_pipeline import FakeEncoder  # the one fake text encoder of the pipeline tests
from videopoet import cli
from videopoet.errors import MissingExtra
from videopoet.generate import frames_for_seconds
from videopoet.lm.transformer import PrefixLM
from videopoet.pipeline import VideoPoetPipeline
from videopoet.tokenizers.audio import AudioTokenizer
from videopoet.tokenizers.video import VideoTokenizer


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    lm = PrefixLM.from_preset("debug", max_seq_len=200)  # one window: 5 frames at 32x32 with sound
    video, audio = VideoTokenizer.from_preset("debug"), AudioTokenizer.from_preset("debug")
    folder = tmp_path_factory.mktemp("gen") / "model"
    VideoPoetPipeline(video, audio, None, lm).save_pretrained(folder)  # text_encoder: null
    return folder


@pytest.fixture(scope="module")
def png(tmp_path_factory):
    Image = pytest.importorskip("PIL.Image")
    path = tmp_path_factory.mktemp("img") / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
    return path


def run(argv, capsys):
    try:
        rc = cli.main(["generate", *map(str, argv)])
    except SystemExit as e:  # argparse errors
        rc = e.code
    captured = capsys.readouterr()
    return rc, captured.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_seconds_to_frames():
    assert frames_for_seconds(2.1, 8, 4) == 17 and frames_for_seconds(0.6, 8, 4) == 5
    assert frames_for_seconds(5.1, 8, 4) == 41
    for bad in (0.1, 0, -1, float("nan")):
        with pytest.raises(ValueError):
            frames_for_seconds(bad, 8, 4)


def test_i2v_mp4_then_refused_then_gif(model, png, tmp_path, capsys, one_thread):
    pytest.importorskip("av")
    from videopoet.data.media import read_video

    out = tmp_path / "out.mp4"
    argv = ["--model", model, "--task", "i2v", "--image", png, "--size", "32x32", "--seconds", 0.6]
    rc, err = run([*argv, "--out", out], capsys)
    assert rc == 0, err
    assert "generating image_to_video" in err
    back = read_video(out)
    assert back.frames.shape == (5, 32, 32, 3) and back.audio is not None
    before = out.read_bytes()
    rc, err = run([*argv, "--out", out], capsys)  # no --overwrite: refused before the model loads
    assert rc == 2 and "already exists" in one_error_line(err) and "loading" not in err
    assert out.read_bytes() == before
    rc, err = run([*argv, "--out", out, "--gif", "--overwrite", "--no-audio", "--seed", 1], capsys)
    assert rc == 0, err
    assert (tmp_path / "out.gif").read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    assert read_video(out).audio is None


def test_v2a_from_mp4(model, tmp_path, capsys, one_thread):
    pytest.importorskip("av")
    from videopoet.data.media import read_video, write_mp4

    clip = np.random.default_rng(1).integers(0, 256, (9, 48, 48, 3), dtype=np.uint8)
    write_mp4(tmp_path / "in.mp4", clip, 8.0)
    rc, err = run(
        ["--model", model, "--task", "v2a", "--video", tmp_path / "in.mp4", "--size", "32x32",
         "--seconds", 0.6, "--out", tmp_path / "o.mp4"], capsys,
    )  # fmt: skip
    assert rc == 0, err
    back = read_video(tmp_path / "o.mp4")
    assert back.frames.shape == (5, 32, 32, 3) and back.audio is not None


def test_one_line_errors(model, png, tmp_path, capsys, monkeypatch):
    out = ["--out", tmp_path / "x.mp4"]
    i2v = ["--task", "i2v", "--image", png]
    cases = [
        (["--model", tmp_path / "missing", *i2v, *out], "no such folder"),
        (["--model", png.parent, *i2v, *out], "model_index.json not found"),
        (["--model", model, *i2v, "--size", "30x30", *out], "multiples of 8"),
        (["--model", model, *i2v, "--size", "ax32", *out], "WIDTHxHEIGHT"),
        (["--model", model, *i2v, "--seconds", 0.1, *out], "shorter than the shortest clip"),
        (["--model", model, *i2v, "--seconds", 1000, *out], "at most 1025"),
        (["--model", model, *i2v, "--size", "512x512", "--seconds", 10, "--upscale", 4, *out], "upscaled 4x"),
        (["--model", model, "--task", "inpaint", *out], "needs --video"),
        (["--model", model, "--task", "nope", *out], "unknown task 'nope'"),
        (["--model", model, "--task", "i2v", "--image", tmp_path / "no.png", *out], "no such file"),
        (["--model", model, "--task", "i2v", *out], "needs --image"),
        (["--model", model, *i2v, "--out", tmp_path / "x.txt"], "must end in .mp4"),
        (["a red circle", "--model", model, "--size", "32x32", "--seconds", 0.6, *out], "no text encoder"),
        (["--model", model, "--task", "t2v", *out], "needs a prompt"),
    ]
    (tmp_path / "bad.png").write_bytes(b"not an image")
    cases.append((["--model", model, "--task", "i2v", "--image", tmp_path / "bad.png", "--size", "32x32",
                   "--seconds", 0.6, *out], "not a readable image"))  # fmt: skip
    for argv, message in cases:
        rc, err = run(argv, capsys)
        assert rc == 2, (argv, err)
        assert message in one_error_line(err), (argv, err)
    assert not (tmp_path / "x.mp4").exists()


def test_no_bundled_lm(png, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("videopoet.pipeline.PRETRAINED_ROOT", tmp_path)  # a root without transformer/
    rc, err = run(["--task", "i2v", "--image", png, "--out", tmp_path / "x.mp4"], capsys)
    assert rc == 2 and "videopoet train lm" in one_error_line(err)


def test_text_tasks_png_and_gif(model, tmp_path, capsys, monkeypatch, one_thread):
    Image = pytest.importorskip("PIL.Image")
    load = VideoPoetPipeline.from_pretrained.__func__
    monkeypatch.setattr(
        VideoPoetPipeline,
        "from_pretrained",
        classmethod(lambda cls, path=None, **kw: load(cls, path, text_encoder=FakeEncoder())),
    )
    common = ["--model", model, "--size", "32x32"]
    rc, err = run(["a blue square", *common, "--task", "t2i", "--out", tmp_path / "a.png"], capsys)
    assert rc == 0, err
    with Image.open(tmp_path / "a.png") as im:
        assert im.size == (32, 32)
    argv = ["a red circle", *common, "--seconds", 0.6, "--guidance", 2, "--negative-prompt", "a green star"]
    rc, err = run([*argv, "--top-k", 50, "--temperature", 0.8, "--out", tmp_path / "b.gif", "--gif"], capsys)
    assert rc == 0, err
    assert (tmp_path / "b.gif").read_bytes()[:6] in (b"GIF89a", b"GIF87a")


def test_help_lists_generate(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "generate" in capsys.readouterr().out


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """A 9-frame 48x48 mp4 with sound, a silent one, a one-frame one, and mask images (white = generate)."""
    Image = pytest.importorskip("PIL.Image")
    pytest.importorskip("av")
    from videopoet.data.media import write_mp4

    folder = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(2)
    clip = rng.integers(0, 256, (9, 48, 48, 3), dtype=np.uint8)
    write_mp4(folder / "in.mp4", clip, 8.0, (0.1 * rng.standard_normal(18000)).astype(np.float32), 16000)
    write_mp4(folder / "silent.mp4", clip, 8.0)
    write_mp4(folder / "one_frame.mp4", clip[:1], 8.0)
    (folder / "junk.mp4").write_bytes(b"not a video")
    box = np.zeros((48, 48), np.uint8)
    box[12:36, 12:36] = 255
    for name, mask in [("box", box), ("black", box * 0), ("small", box[:40, :40])]:
        Image.fromarray(mask).save(folder / f"{name}.png")
    return folder


def test_tasks_from_files(model, media, tmp_path, capsys, one_thread):
    from videopoet.data.media import read_video

    common = ["--model", model, "--size", "32x32"]
    video, silent, sound = ["--video", media / "in.mp4"], ["--video", media / "silent.mp4"], media / "in.mp4"
    cases = [
        (["--task", "continue", *video], 17),  # the 9 given frames + 1 s
        (["--task", "inpaint", *video, "--mask", "center", "--seconds", 0.6], 5),
        (["--task", "outpaint", *video, "--mask", media / "box.png", "--no-audio"], 9),
        (["--task", "avcont", *video, "--seconds", 0.6], 5),
        (["--task", "avcont", *silent, "--audio", sound, "--seconds", 0.6], 5),
        (["--task", "avcont", "--image", media / "box.png", "--audio", sound, "--seconds", 0.6], 5),
    ]
    for i, (argv, frames) in enumerate(cases):
        rc, err = run([*common, *argv, "--out", tmp_path / f"{i}.mp4"], capsys)
        assert rc == 0, (argv, err)
        back = read_video(tmp_path / f"{i}.mp4")
        assert back.frames.shape == (frames, 32, 32, 3), argv
        assert (back.audio is None) == ("--no-audio" in argv), argv


def test_long_video(model, png, tmp_path, capsys, one_thread):
    pytest.importorskip("av")
    from videopoet.data.media import read_video

    argv = ["--model", model, "--task", "i2v", "--image", png, "--size", "32x32", "--seconds", 1.1]
    rc, err = run([*argv, "--out", tmp_path / "long.mp4"], capsys)
    assert rc == 0, err
    assert "9 frame(s) at 32x32 in windows of 5 frames" in err
    back = read_video(tmp_path / "long.mp4")
    assert back.frames.shape == (9, 32, 32, 3) and len(back.audio) >= 18000


def test_stylize_and_edit(model, media, png, tmp_path, capsys, monkeypatch, one_thread):

    style = [
        "a blue star",
        "--model",
        model,
        "--task",
        "stylize",
        "--video",
        media / "in.mp4",
        "--size",
        "32x32",
    ]
    load = VideoPoetPipeline.from_pretrained.__func__
    monkeypatch.setattr(
        VideoPoetPipeline,
        "from_pretrained",
        classmethod(lambda cls, path=None, **kw: load(cls, path, text_encoder=FakeEncoder())),
    )
    # without OpenCV or a depth estimator: block_flow and motion_depth (conditions.clip_geometry)
    monkeypatch.setattr("videopoet.lm.records.farneback_flow", _no_opencv)
    monkeypatch.setattr("videopoet.lm.records.DEPTH_ESTIMATORS", {})
    rc, err = run([*style, "--seconds", 0.6, "--out", tmp_path / "s.mp4"], capsys)
    assert rc == 0, err
    monkeypatch.setattr(
        "videopoet.lm.records.farneback_flow", lambda f: np.ones((len(f) - 1, 32, 32, 2), "f4")
    )
    depth = {"fake": lambda device: lambda f: np.ones(f.shape[:3], np.float32)}
    monkeypatch.setattr("videopoet.lm.records.DEPTH_ESTIMATORS", depth)
    rc, err = run([*style, "--seconds", 0.6, "--out", tmp_path / "s.gif"], capsys)
    assert rc == 0, err
    edit = ["a green square", "--model", model, "--task", "edit", "--image", png, "--size", "32x32"]
    rc, err = run([*edit, "--seconds", 0.6, "--no-audio", "--out", tmp_path / "e.gif"], capsys)
    assert rc == 0, err


def test_bad_inputs_one_line_before_loading(model, media, png, tmp_path, capsys):
    out = tmp_path / "x.mp4"
    out.write_bytes(b"mine")
    common = ["--model", model, "--size", "32x32", "--out", out, "--overwrite"]
    video = ["--video", media / "in.mp4"]
    cases = [
        (
            ["--task", "inpaint", *video, "--mask", "middle"],
            "not a region (center, border, sides, top-bottom)",
        ),
        (["--task", "inpaint", *video, "--mask", media / "small.png"], "must be the size of --video (48x48)"),
        (["--task", "outpaint", *video, "--mask", media / "black.png"], "marks no pixel to generate"),
        (["x", "--task", "t2v", "--mask", "center"], "--mask is not read by task text_to_video"),
        (["--task", "continue", "--image", png, *video], "--image is not read by task frame_prediction"),
        (["--task", "continue"], "needs --video"),
        (["--task", "continue", *video, "--seconds", 0.6], "continuing it needs more --seconds"),
        (["--task", "v2a", *video, "--seconds", 2.1], "covers 9 frames"),
        (["x", "--task", "stylize", "--video", media / "one_frame.mp4"], "needs a clip of at least 5 frames"),
        (["x", "--task", "t2i", "--seconds", 1], "--seconds does not apply"),
        (["--task", "avcont", "--video", media / "silent.mp4"], "needs sound"),
        (["--task", "avcont", "--image", png], "needs sound"),
        (["--task", "avcont", "--audio", media / "in.mp4"], "needs --video FILE (or --image FILE"),
        (["--task", "avcont", *video, "--no-audio"], "--no-audio contradicts"),
        (["--task", "v2a", "--video", media / "junk.mp4"], "junk.mp4"),  # not a video
        (["x", "--task", "i2v", "--image", media / "junk.mp4"], "not a readable image"),
        (["x", "--guidance", "nan"], "--guidance must be a finite number"),
        (["x", "--guidance", "inf"], "--guidance must be a finite number"),
        (["x", "--temperature", "nan"], "--temperature must be positive"),
    ]
    for argv, message in cases:
        rc, err = run([*common, *argv], capsys)
        assert rc == 2, (argv, err)
        assert message in one_error_line(err) and "loading" not in err, (argv, err)
    # too long for the model: found once it is loaded, still before anything is written
    rc, err = run([*common, "--task", "avcont", *video, "--seconds", 2.1], capsys)
    assert rc == 2 and "does not fit the LM's max_seq_len" in one_error_line(err)
    assert out.read_bytes() == b"mine"


def _no_opencv(frames):
    raise MissingExtra("cv2 is not installed")
