"""The pipeline's optional super_resolution component on debug models: absent = None (upscale refused),
upscale=2 and 4 after the LM (the sound made at the LM's size), save → load keeps it."""

import json

import numpy as np
import pytest
import torch

from test_pipeline import FakeEncoder  # the one fake text encoder of the pipeline tests
from videopoet.lm.transformer import PrefixLM
from videopoet.pipeline import MODEL_INDEX, VideoPoetPipeline
from videopoet.superres.model import SuperResTransformer
from videopoet.tokenizers.audio import AudioTokenizer
from videopoet.tokenizers.video import VideoTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    video, audio = VideoTokenizer.from_preset("debug"), AudioTokenizer.from_preset("debug")
    return (
        video,
        audio,
        FakeEncoder(),
        PrefixLM.from_preset("debug"),
        SuperResTransformer.from_preset("debug"),
    )


def _run(pipe, **kw):
    return pipe("a red circle", num_frames=5, width=32, height=32, with_audio=False, **kw)


def test_upscale_needs_the_component(parts):
    pipe = VideoPoetPipeline(*parts[:4])
    assert pipe.super_resolution is None
    with pytest.raises(ValueError, match="super_resolution component"):
        _run(pipe, upscale=2)
    with pytest.raises(ValueError, match="1, 2 or 4"):
        VideoPoetPipeline(*parts)(num_frames=5, width=32, height=32, upscale=3)


def test_upscale_after_the_lm_and_save_load(parts, tmp_path):
    pipe = VideoPoetPipeline(*parts)
    base = _run(pipe)
    two = pipe("a red circle", num_frames=5, width=32, height=32, upscale=2)
    assert two.frames.shape == (5, 64, 64, 3) and two.audio.shape == (10_000,)
    assert _run(pipe, upscale=4).frames.shape == (5, 128, 128, 3) and base.frames.shape == (5, 32, 32, 3)
    pipe.save_pretrained(tmp_path / "p")
    assert json.loads((tmp_path / "p" / MODEL_INDEX).read_text())["super_resolution"] == "super_resolution"
    loaded = VideoPoetPipeline.from_pretrained(tmp_path / "p", text_encoder=FakeEncoder())
    assert np.array_equal(_run(loaded, upscale=2).frames, _run(pipe, upscale=2).frames)
    VideoPoetPipeline(*parts[:4]).save_pretrained(tmp_path / "q")
    index = json.loads((tmp_path / "q" / MODEL_INDEX).read_text())
    assert index["super_resolution"] is None
    del index["super_resolution"]  # written before the component existed: absent = None
    (tmp_path / "q" / MODEL_INDEX).write_text(json.dumps(index))
    assert (
        VideoPoetPipeline.from_pretrained(tmp_path / "q", text_encoder=FakeEncoder()).super_resolution is None
    )


def test_a_model_without_text_upscales_with_a_prompt(parts, monkeypatch):
    from videopoet.superres import upscale

    seen = []
    real = upscale.upscale_tokens
    monkeypatch.setattr(upscale, "upscale_tokens", lambda *a, **kw: seen.append(a[2]) or real(*a, **kw))
    torch.manual_seed(1)
    notext = SuperResTransformer.from_preset("debug", text_dim=0)
    pipe = VideoPoetPipeline(*parts[:4], super_resolution=notext)
    assert _run(pipe, upscale=2).frames.shape == (5, 64, 64, 3)
    assert seen == [None]  # the prompt did not reach the model
    _run(VideoPoetPipeline(*parts), upscale=2)
    assert seen[1] is not None  # a model with text gets the prompt


def test_generate_cli_upscale(parts, tmp_path, capsys, monkeypatch):
    pytest.importorskip("av")
    from videopoet import cli
    from videopoet.data.media import read_video

    load = VideoPoetPipeline.from_pretrained.__func__
    monkeypatch.setattr(
        VideoPoetPipeline,
        "from_pretrained",
        classmethod(lambda cls, path=None, **kw: load(cls, path, text_encoder=FakeEncoder())),
    )
    VideoPoetPipeline(*parts).save_pretrained(tmp_path / "with")
    VideoPoetPipeline(*parts[:4]).save_pretrained(tmp_path / "without")
    argv = ["generate", "a red circle", "--size", "32x32", "--seconds", "0.6", "--no-audio", "--upscale", "2"]
    assert cli.main([*argv, "--model", str(tmp_path / "with"), "--out", str(tmp_path / "a.mp4")]) == 0
    assert read_video(tmp_path / "a.mp4").frames.shape == (5, 64, 64, 3)
    capsys.readouterr()
    assert cli.main([*argv, "--model", str(tmp_path / "without"), "--out", str(tmp_path / "b.mp4")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "super_resolution component" in err[-1] and not (tmp_path / "b.mp4").exists()
