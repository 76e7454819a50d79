"""VideoPoetPipeline on debug components: the first six tasks' shapes, determinism, save → load, the
bundled-default and bad-folder errors, export to mp4 and GIF (the other tasks and long video:
test_pipeline_tasks.py)."""

import json

import numpy as np
import pytest
import torch

from videopoet.errors import UserError
from videopoet.lm.transformer import PrefixLM
from videopoet.pipeline import (
    MODEL_INDEX,
    VideoPoetOutput,
    VideoPoetPipeline,
    export_to_gif,
    export_to_video,
)
from videopoet.tokenizers.audio import AudioTokenizer
from videopoet.tokenizers.video import VideoTokenizer

W = H = 32
FRAMES = 5
N_AUDIO = FRAMES * 16000 // 8  # 10,000 samples at 16 kHz for 5 frames at 8 fps


class FakeEncoder:
    """The TextEncoder protocol with a hashed embedding per word: deterministic, no weights."""

    dim, max_tokens, spec = 384, 64, "minilm"

    def encode(self, texts):
        words = [t.split()[: self.max_tokens] for t in texts]
        s = max(len(w) for w in words)
        emb, mask = torch.zeros(len(texts), s, self.dim), torch.zeros(len(texts), s, dtype=torch.bool)
        for i, ws in enumerate(words):
            for j, w in enumerate(ws):
                g = torch.Generator().manual_seed(sum(map(ord, w)))
                emb[i, j], mask[i, j] = torch.randn(self.dim, generator=g), True
        return emb, mask


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    lm = PrefixLM.from_preset("debug")
    assert lm.config.text_dim == FakeEncoder.dim
    video, audio = VideoTokenizer.from_preset("debug"), AudioTokenizer.from_preset("debug")
    return VideoPoetPipeline(video, audio, FakeEncoder(), lm)


def run(pipe, **kw):
    return pipe(num_frames=FRAMES, width=W, height=H, **kw)


def check(out, frames, audio):
    assert isinstance(out, VideoPoetOutput) and out.fps == 8 and out.sample_rate == 16000
    assert out.frames.dtype == np.uint8 and out.frames.shape == (frames, H, W, 3)
    if audio:
        assert out.audio.dtype == np.float32 and out.audio.shape == (N_AUDIO,)
        assert np.abs(out.audio).max() <= 1
    else:
        assert out.audio is None


def test_text_to_video_with_and_without_sound(pipe, one_thread):
    check(run(pipe, prompt="a red circle bouncing"), FRAMES, audio=True)
    check(run(pipe, prompt="a red circle", with_audio=False, guidance_scale=2.0, top_k=50), FRAMES, False)


def test_default_guidance_is_for_prompted_text_tasks_only(pipe, one_thread):
    from videopoet.pipeline import DEFAULT_GUIDANCE, default_guidance

    assert DEFAULT_GUIDANCE != 1
    assert default_guidance("t2v", "a red circle", None) == DEFAULT_GUIDANCE
    assert default_guidance("t2v", "", None) == default_guidance("v2a", "a red circle", None) == 1.0
    assert default_guidance("t2v", "a red circle", 1.0) == 1.0  # a scale given is kept
    kw = dict(prompt="a red circle", with_audio=False, seed=3)
    unset, named = run(pipe, **kw), run(pipe, guidance_scale=DEFAULT_GUIDANCE, **kw)
    assert np.array_equal(unset.frames, named.frames)
    assert not np.array_equal(unset.frames, run(pipe, guidance_scale=1.0, **kw).frames)


def test_compile_reaches_the_sampler_and_is_for_cuda_only(pipe, one_thread, monkeypatch):
    from videopoet.sampling import autoregressive as ar

    seen, generate = [], ar.generate
    monkeypatch.setattr(ar, "generate", lambda *a, **kw: seen.append(kw["compile"]) or generate(*a, **kw))
    run(pipe, prompt="a red circle")  # t2v, then v2a for its sound
    assert seen == [False, False]
    with pytest.raises(ValueError, match="compile=True captures CUDA graphs; this pipeline is on cpu"):
        run(pipe, prompt="a red circle", compile=True)


def test_default_temperature_is_cooler_for_the_painting_step_only(pipe, one_thread, monkeypatch):
    from videopoet.pipeline import PAINTING_TEMPERATURE, default_temperature
    from videopoet.sampling import autoregressive as ar

    assert PAINTING_TEMPERATURE != 1
    assert default_temperature("inpaint", None) == PAINTING_TEMPERATURE
    assert default_temperature("outpaint_h", None) == PAINTING_TEMPERATURE
    assert default_temperature("t2v", None) == default_temperature("v2a", None) == 1.0
    assert default_temperature("inpaint", 1.0) == 1.0  # a temperature given is kept
    seen, generate = [], ar.generate
    monkeypatch.setattr(ar, "generate", lambda *a, **kw: seen.append(kw["temperature"]) or generate(*a, **kw))
    video = np.zeros((FRAMES, H, W, 3), np.uint8)
    run(pipe, task="inpaint", video=video, mask="center")  # the painting step, then v2a for its sound
    run(pipe, prompt="a red circle")  # t2v, then v2a
    run(pipe, task="inpaint", video=video, mask="center", temperature=0.8)
    assert seen == [PAINTING_TEMPERATURE, 1.0, 1.0, 1.0, 0.8, 0.8]


def test_text_to_image_is_one_frame(pipe, one_thread):
    check(run(pipe, prompt="a blue square", task="t2i", negative_prompt="a red circle"), 1, audio=False)


def test_image_video_and_audio_inputs(pipe, one_thread):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)  # centre-cropped and resized to 32×32
    check(run(pipe, task="image_to_video", image=image), FRAMES, audio=True)
    clip = rng.integers(0, 256, (FRAMES, H, W, 3), dtype=np.uint8)
    out = run(pipe, task="v2a", video=clip)
    check(out, FRAMES, audio=True)
    assert np.array_equal(out.frames, clip)  # the given video comes back with its new sound
    sound = (0.1 * rng.standard_normal(N_AUDIO)).astype(np.float32)
    out = run(pipe, task="audio_to_video", audio=sound)
    check(out, FRAMES, audio=True)
    assert np.array_equal(out.audio, sound)
    check(run(pipe, prompt="a green star", task="t2a"), FRAMES, audio=True)


def test_same_seed_same_output(pipe, one_thread):
    a, b = (run(pipe, prompt="a red circle", seed=3) for _ in range(2))
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    c = run(pipe, prompt="a red circle", seed=4)
    assert not np.array_equal(a.frames, c.frames) or not np.array_equal(a.audio, c.audio)


def test_bad_task_and_inputs(pipe):
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        run(pipe, task="nope")
    with pytest.raises(ValueError, match="inpainting needs video="):
        run(pipe, task="inpainting")
    with pytest.raises(ValueError, match="text_to_video does not read image="):
        run(pipe, prompt="x", image=np.zeros((H, W, 3), np.uint8))
    with pytest.raises(ValueError, match="num_frames must be 1 \\+ 4"):
        pipe(prompt="x", num_frames=6, width=W, height=H)
    for seed in (-1, 1.5, True):
        with pytest.raises(ValueError, match="seed must be a non-negative integer"):
            run(pipe, prompt="x", seed=seed)
    with pytest.raises(ValueError, match="guidance needs a text prompt"):
        run(pipe, task="v2a", video=np.zeros((FRAMES, H, W, 3), np.uint8), guidance_scale=3.0)
    with pytest.raises(ValueError, match="needs image="):
        run(pipe, task="i2v")


def test_save_load_same_outputs(pipe, tmp_path, one_thread):
    pipe.save_pretrained(tmp_path / "model")
    index = json.loads((tmp_path / "model" / MODEL_INDEX).read_text())
    assert index["text_encoder"] == {"spec": "minilm"} and index["transformer"] == "transformer"
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == sorted(
        [MODEL_INDEX, "audio_tokenizer", "transformer", "video_tokenizer"]
    )
    loaded = VideoPoetPipeline.from_pretrained(tmp_path / "model", text_encoder=FakeEncoder())
    a, b = (run(p, prompt="a red circle", seed=1) for p in (pipe, loaded))
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    pipe.save_pretrained(tmp_path / "model")  # replacing a pipeline folder is allowed
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not an empty folder or a pipeline"):
        pipe.save_pretrained(tmp_path / "other")


def test_bad_model_index(tmp_path):
    with pytest.raises(UserError, match=f"{MODEL_INDEX} not found"):
        VideoPoetPipeline.from_pretrained(tmp_path)
    (tmp_path / MODEL_INDEX).write_text("{not json")
    with pytest.raises(UserError, match=f"{MODEL_INDEX} is not valid JSON") as e:
        VideoPoetPipeline.from_pretrained(tmp_path)
    assert "\n" not in str(e.value)
    (tmp_path / MODEL_INDEX).write_text(json.dumps({"video_tokenizer": "video_tokenizer"}))
    with pytest.raises(UserError, match="component 'video_tokenizer' names no folder"):
        VideoPoetPipeline.from_pretrained(tmp_path)


def test_no_bundled_lm_yet(monkeypatch, tmp_path):
    monkeypatch.setattr("videopoet.pipeline.PRETRAINED_ROOT", tmp_path)  # a root without transformer/
    with pytest.raises(UserError, match="no language model is bundled.*videopoet train lm") as e:
        VideoPoetPipeline.from_pretrained(None)
    assert "\n" not in str(e.value)


def test_export(tmp_path):
    pytest.importorskip("PIL")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (FRAMES, H, W, 3), dtype=np.uint8)
    out = VideoPoetOutput(frames, (0.1 * rng.standard_normal(N_AUDIO)).astype(np.float32), 16000, 8.0)
    gif = export_to_gif(out, tmp_path / "a.gif")
    assert gif.read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    pytest.importorskip("av")
    from videopoet.data.media import read_video

    back = read_video(export_to_video(out, tmp_path / "a.mp4"))
    assert back.frames.shape == (FRAMES, H, W, 3) and back.audio is not None


def test_top_level_export():
    import videopoet

    assert videopoet.VideoPoetPipeline is VideoPoetPipeline


def test_inputs_from_files(pipe, tmp_path, one_thread):
    Image = pytest.importorskip("PIL.Image")
    pytest.importorskip("av")
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    check(run(pipe, task="i2v", image=tmp_path / "a.png", with_audio=False), FRAMES, audio=False)
    frames = rng.integers(0, 256, (9, 64, 64, 3), dtype=np.uint8)
    sound = (0.1 * rng.standard_normal(18000)).astype(np.float32)
    mp4 = export_to_video(VideoPoetOutput(frames, sound, 16000, 8.0), tmp_path / "in.mp4")
    check(run(pipe, task="v2a", video=mp4), FRAMES, audio=True)
    check(run(pipe, task="a2v", audio=mp4), FRAMES, audio=True)
