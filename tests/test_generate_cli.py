"""``videopoet generate`` on a saved debug pipeline (no text encoder: the text-free tasks i2v and v2a):
mp4 and GIF written, an existing output refused without --overwrite and left as it was, and the one-line
errors (missing model folder, bad size or length, unsupported task, no bundled LM)."""

import numpy as np
import pytest
import torch

from test_pipeline import FakeEncoder  # the one fake text encoder of the pipeline tests
from videopoet import cli
from videopoet.generate import frames_for_seconds
from videopoet.lm.transformer import PrefixLM
from videopoet.pipeline import VideoPoetPipeline
from videopoet.tokenizers.audio import AudioTokenizer
from videopoet.tokenizers.video import VideoTokenizer


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    lm = PrefixLM.from_preset("debug")
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
