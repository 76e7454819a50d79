"""VideoPoetPipeline's continuation, painting, stylization, editing, audio-video continuation and long video
on debug components (32×32, 5 frames; an LM of max_seq_len 200, so one window is 5 frames and 9 frames
take two): given pixels come back unchanged, the sampler is handed the prefix only, same seed → same
output, and the long-video seams are the conditioning frames' decode."""

import numpy as np
import pytest
import torch

from test_pipeline import FakeEncoder
from videopoet import conditions
from videopoet.data.sample import frames_to_tensor
from videopoet.data.synthetic import render_clip
from videopoet.errors import MissingExtra, UserError
from videopoet.lm import records, tasks
from videopoet.lm.transformer import PrefixLM
from videopoet.lm.vocab import Vocab
from videopoet.pipeline import VideoPoetPipeline
from videopoet.tokenizers.audio import AudioTokenizer
from videopoet.tokenizers.conditioning import commit_condition
from videopoet.tokenizers.video import VideoTokenizer

W = H = 32
FRAMES = 5
MAX_SEQ_LEN = 200  # holds every 5-frame task at 32×32 (video_to_audio: 164 ids), no 9-frame video_to_audio
OUTPUT_MARKERS = (Vocab.bov_o, Vocab.eov_o, Vocab.boa_o, Vocab.eoa_o, Vocab.eos)


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    lm = PrefixLM.from_preset("debug", max_seq_len=MAX_SEQ_LEN)
    video, audio = VideoTokenizer.from_preset("debug"), AudioTokenizer.from_preset("debug")
    return VideoPoetPipeline(video, audio, FakeEncoder(), lm)


@pytest.fixture(scope="module")
def clip():
    return render_clip(3, width=W, height=H, frames=FRAMES)


@pytest.fixture
def calls(monkeypatch):
    """Every sampler call's (task, prefix ids, prefix_len, plan), checked to hold the prefix only."""
    from videopoet.sampling import autoregressive

    seen, generate = [], autoregressive.generate

    def spy(model, ids, prefix_len, *args, plan, **kwargs):
        assert ids.shape[-1] == prefix_len  # nothing after the prefix: no output token reaches the sampler
        assert not any(int(i) in OUTPUT_MARKERS for i in ids)
        seen.append((ids.cpu(), prefix_len, plan))
        return generate(model, ids, prefix_len, *args, plan=plan, **kwargs)

    monkeypatch.setattr(autoregressive, "generate", spy)
    return seen


def run(pipe, **kw):
    return pipe(**{"num_frames": FRAMES, "width": W, "height": H, **kw})


def lm_ids(pipe, frames):
    return pipe.vocab.visual_grid_to_lm(torch.from_numpy(pipe._encode_video(frames)).long())


def test_window_frames(pipe):
    assert pipe.window_frames("t2v", W, H) == 5  # video_to_audio of 9 frames does not fit 200 ids
    assert pipe.window_frames("t2v", W, H, with_audio=False) == 17  # a trained duration fits
    big = VideoPoetPipeline(pipe.video_tokenizer, pipe.audio_tokenizer, None, PrefixLM.from_preset("debug"))
    assert big.window_frames("continue", W, H) == 41


def test_continuation_keeps_the_given_frames(pipe, clip, calls, one_thread):
    out = run(pipe, task="continue", video=clip.frames[:1])
    assert out.frames.shape == (FRAMES, H, W, 3) and out.audio.shape == (FRAMES * 2000,)
    assert np.array_equal(out.frames[:1], clip.frames[:1])
    ids, prefix_len, plan = calls[0]
    given = lm_ids(pipe, clip.frames[:1])  # 1 latent frame of 4×4 ids
    assert plan[1 : 1 + 16] == given.tolist()  # forced while decoding
    t = 2  # the prefix: frame_prediction's input, latent frame 0 repeated (lm/tasks.py)
    assert torch.equal(ids[prefix_len - 1 - 16 * t : prefix_len - 1], given.repeat(t))
    longer = run(pipe, task="continue", video=clip.frames, num_frames=9, with_audio=False)
    assert longer.frames.shape == (9, H, W, 3) and np.array_equal(longer.frames[:FRAMES], clip.frames)


def test_painting_keeps_the_kept_pixels(pipe, clip, tmp_path, calls, one_thread):
    Image = pytest.importorskip("PIL.Image")
    central = conditions.region_mask("center", H, W)
    bands = np.zeros((H, W), bool)
    bands[:8], bands[-8:] = True, True
    Image.fromarray(bands.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    cases = [
        ("inpaint", central, "inpainting"),
        ("outpaint", ~central, "outpainting_central"),
        ("outpaint_h", "sides", "outpainting_horizontal"),
        ("outpaint_v", tmp_path / "mask.png", "outpainting_vertical"),
        ("outpaint_v", None, "outpainting_vertical"),  # the trained region: the same bands
    ]
    for task, mask, name in cases:
        calls.clear()
        out = run(pipe, task=task, video=clip.frames, mask=mask, with_audio=False)
        keep = ~conditions.load_mask(mask, name, H, W)
        assert out.frames.shape == clip.frames.shape
        assert np.array_equal(out.frames[:, keep], clip.frames[:, keep])
        ids, prefix_len, _ = calls[0]  # the prefix holds the training condition's tokens
        cond = commit_condition(frames_to_tensor(clip.frames)[None], name).video
        want = pipe.vocab.visual_grid_to_lm(torch.from_numpy(pipe._encode_condition(cond)).long())
        assert torch.equal(ids[prefix_len - 1 - len(want) : prefix_len - 1], want)


def test_painting_condition_matches_training(clip):
    x = frames_to_tensor(clip.frames)[None]
    for name in tasks.PAINTING_KINDS:
        mask = conditions.region_mask(conditions.DEFAULT_REGION[name], H, W)
        assert torch.equal(
            conditions.painting_condition(clip.frames, mask, name), commit_condition(x, name).video
        )
    pytest.importorskip("scipy")
    ring = conditions.region_mask("border", H, W)
    ring[:4], ring[12:20, 12:20] = False, True  # not a box: nearest kept pixel by distance transform
    cond = conditions.painting_condition(clip.frames, ring, "outpainting_central")
    keep = torch.from_numpy(~ring)
    assert torch.equal(cond[..., keep], x[..., keep])
    assert torch.equal(cond[..., 0, 0, 14, 16], x[..., 0, 0, 11, 16])  # 3 rows above: the nearest kept


def test_stylization(pipe, clip, calls, one_thread):
    out = run(pipe, prompt="a blue star", task="stylize", video=clip.frames, flow=clip.flow, depth=clip.depth)
    assert out.frames.shape == clip.frames.shape and out.audio is not None
    out = run(pipe, prompt="a blue star", task="stylize", video=clip.frames, flow=clip.flow,
              depth=clip.depth, keep_first_frame=True, with_audio=False)  # fmt: skip
    ids, prefix_len, _ = calls[-1]
    assert torch.equal(ids[prefix_len - 17 : prefix_len - 1], lm_ids(pipe, clip.frames[:1]))  # first frame
    with pytest.raises(ValueError, match="flow must be float"):
        run(pipe, prompt="x", task="stylize", video=clip.frames, flow=clip.flow[:, :8], depth=clip.depth)


def test_stylization_without_opencv_or_depth_estimator(pipe, clip, monkeypatch, one_thread):
    monkeypatch.setattr("videopoet.lm.records.farneback_flow", _no_opencv)
    monkeypatch.setattr("videopoet.lm.records.DEPTH_ESTIMATORS", {})
    used = []
    for name in ("block_flow", "motion_depth"):
        real = getattr(records, name)
        monkeypatch.setattr(records, name, lambda *a, _f=real, _n=name, **k: used.append(_n) or _f(*a, **k))
    out = run(pipe, prompt="x", task="stylize", video=clip.frames, with_audio=False)
    assert out.frames.shape == clip.frames.shape and used == ["block_flow", "motion_depth"]
    out = run(pipe, prompt="x", task="edit", image=clip.frames[0], with_audio=False)
    assert out.frames.shape == clip.frames.shape and used[2:] == ["block_flow", "motion_depth"]


def test_block_flow_and_motion_depth():
    texture = np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    frames = np.stack([texture[10:74, 10:74], texture[12:76, 7:71], texture[12:76, 7:71]])
    flow = records.block_flow(frames)  # content moves by (+3, −2) pixels, then stays
    assert flow.shape == (2, 64, 64, 2) and flow.dtype == np.float32
    assert np.array_equal(flow[0], np.broadcast_to([3.0, -2.0], (64, 64, 2))) and not flow[1].any()
    world = render_clip(9, frames=9, width=64, height=64)  # static camera, two objects moving
    assert world.attributes["camera"] == "static"
    flow = records.block_flow(world.frames)
    on = world.masks.any(0)  # (T, H, W) object pixels
    assert np.linalg.norm(flow - world.flow, axis=-1)[on[1:]].mean() < 1.5  # pixels per frame
    depth = records.motion_depth(flow, len(world.frames))
    assert depth.shape == world.depth.shape and depth[on].mean() < 1.5 < 3.0 < depth[~on].mean()
    with pytest.raises(ValueError, match="at least two frames"):
        records.motion_depth(flow[:0], 1)
    with pytest.raises(ValueError, match="2 frames or more"):
        conditions.clip_geometry(world.frames[:1])


def test_editing_is_image_to_video_then_stylization(pipe, clip, monkeypatch, one_thread):
    monkeypatch.setattr("videopoet.lm.records.farneback_flow", lambda f: np.ones((len(f) - 1, H, W, 2), "f4"))
    depth = {"fake": lambda device: lambda f: np.ones(f.shape[:3], np.float32)}
    monkeypatch.setattr("videopoet.lm.records.DEPTH_ESTIMATORS", depth)
    steps, sample = [], pipe._sample
    monkeypatch.setattr(pipe, "_sample", lambda name, *a, **k: steps.append(name) or sample(name, *a, **k))
    out = run(pipe, prompt="a green square", task="edit", image=clip.frames[0])
    assert steps == ["image_to_video", "stylization", "video_to_audio"]
    assert out.frames.shape == clip.frames.shape and out.audio is not None


def test_av_continuation(pipe, clip, calls, one_thread):
    out = run(pipe, task="avcont", video=clip.frames, audio=clip.audio)
    assert out.frames.shape == clip.frames.shape and out.audio.shape == clip.audio.shape
    assert np.array_equal(out.frames[0], clip.frames[0])
    kept = tasks.audio_head(2, 31) * pipe.audio_tokenizer.config.hop  # 7 codec frames read by the prefix
    assert np.array_equal(out.audio[:kept], clip.audio[:kept])
    image = run(pipe, task="avcont", image=clip.frames[0], audio=clip.audio, with_audio=False)
    assert np.array_equal(image.frames, out.frames) and np.array_equal(image.audio, out.audio)
    with pytest.raises(ValueError, match="needs audio= unless video= is a file"):
        run(pipe, task="avcont", video=clip.frames)
    with pytest.raises(ValueError, match="from video= or from image=: give one"):
        run(pipe, task="avcont", video=clip.frames, image=clip.frames[0], audio=clip.audio)


def test_long_video_windows_and_seams(pipe, calls, one_thread):
    progress = []
    out = run(pipe, prompt="a red circle", num_frames=9, progress=lambda *a: progress.append(a))
    assert out.frames.shape == (9, H, W, 3) and out.audio.shape == (18000,)
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]  # t2v, frame_prediction, 2 × video_to_audio
    _, _, plan = calls[1]  # the second window continues from frame 4, its conditioning frame
    seam = torch.tensor(plan[1:17]) - pipe.vocab.visual_start
    assert all(isinstance(p, int) for p in plan[1:17])
    assert np.array_equal(out.frames[4:5], pipe._decode_video(seam.view(1, 4, 4)))
    again = run(pipe, prompt="a red circle", num_frames=9)
    assert np.array_equal(out.frames, again.frames) and np.array_equal(out.audio, again.audio)
    with pytest.raises(ValueError, match="inpainting of 25 frames .* does not fit the LM's max_seq_len"):
        run(pipe, task="inpaint", video=np.zeros((25, H, W, 3), np.uint8), num_frames=25, with_audio=False)


def test_windows_arithmetic():
    wins = conditions.continuation_windows(17, 81, 17, conditions.SEAM_LATENTS)
    assert len(wins) == 8 and all(w.length == 17 and w.given == 3 for w in wins)  # 8 frames a window
    assert [w.start for w in wins[:2]] == [8, 16] and wins[-1].start + 17 == 81
    assert conditions.continuation_windows(7, 17, 17, 2) == [conditions.Window(2, 17, 2)]  # cut at 17
    assert conditions.audio_windows(81, 17) == [0, 8, 16, 24, 32, 40, 48, 56, 64]
    assert conditions.audio_windows(9, 5) == [0, 4] and conditions.audio_windows(5, 17) == [0]
    out = np.zeros(12, np.float32)
    end = conditions.crossfade(out, np.ones(8, np.float32), 0, 0, 4)
    end = conditions.crossfade(out, np.full(8, 3.0, np.float32), 4, end, 2)
    assert end == 12 and np.array_equal(out[:6], np.ones(6)) and np.array_equal(out[8:], np.full(4, 3.0))
    w = np.sin(np.pi / 2 * np.array([0.25, 0.75]))  # equal power over the overlap's last 2 samples
    assert np.allclose(out[6:8], np.sqrt(1 - w**2) * 1 + w * 3)


def test_bad_inputs(pipe, clip):
    video = clip.frames
    cases = [
        (dict(task="inpaint", video=video, mask="middle"), UserError, "no such file and not a region"),
        (dict(task="inpaint", video=video, mask=np.zeros((H, W), bool)), UserError, "marks no pixel"),
        (dict(task="inpaint", video=video, mask=np.ones((8, 8), bool)), ValueError, "mask must be bool"),
        (dict(task="t2v", prompt="x", mask="center"), ValueError, "text_to_video does not read mask="),
        (dict(task="continue", video=video), ValueError, "num_frames .* must be more"),
        (dict(task="i2v", image=video[0], keep_first_frame=True), ValueError, "stylization variant"),
        (dict(task="v2a", video=video, with_audio=False), ValueError, "whose output is sound"),
        (dict(task="t2a", prompt="x", with_audio=False), ValueError, "whose output is sound"),
    ]
    for kw, error, message in cases:
        with pytest.raises(error, match=message):
            run(pipe, **kw)


def test_image_to_video_starts_with_the_images_own_tokens(pipe, clip, calls, one_thread):
    out = run(pipe, task="i2v", image=clip.frames[0], with_audio=False)
    x = frames_to_tensor(clip.frames[:1])[None]  # (1, 3, 1, H, W)
    tokens = pipe.video_tokenizer.encode(x)  # (1, 1, h, w): the image is the first latent frame
    first = pipe._decode_video(tokens[0])  # (1, H, W, 3)
    assert np.array_equal(out.frames[0], first[0])  # the causal decoder: frame 0 reads latent frame 0 only
    _, _, plan = calls[-1]
    forced = pipe.vocab.visual_grid_to_lm(tokens[0]).tolist()
    assert plan[1 : 1 + len(forced)] == forced  # forced in the sampler's plan, never sampled


def test_a_trained_length_that_fits_is_one_call_not_windows(calls, one_thread):
    """At max_seq_len 160 a 17-frame text_to_video (153 ids) fits but its continuation step (169) does not:
    17 frames, a trained length, are one sampler call; 21 frames (not a trained length) go in windows."""
    torch.manual_seed(0)
    lm = PrefixLM.from_preset("debug", max_seq_len=160)
    small = VideoPoetPipeline(VideoTokenizer.from_preset("debug"), AudioTokenizer.from_preset("debug"),
                              FakeEncoder(), lm)  # fmt: skip
    assert small.window_frames("t2v", W, H, with_audio=False) < 17
    out = small("a red circle", num_frames=17, width=W, height=H, with_audio=False)
    assert out.frames.shape[0] == 17 and len(calls) == 1
    out = small("a red circle", num_frames=21, width=W, height=H, with_audio=False)
    assert out.frames.shape[0] == 21 and len(calls) > 2


def _no_opencv(frames):
    raise MissingExtra("cv2 is not installed")
