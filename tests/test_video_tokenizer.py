"""Video tokenizer contracts on the debug preset: shapes, causality, first frame, save/load, errors."""

import json

import pytest
import torch

from videopoet.errors import UserError
from videopoet.tokenizers.video import PRESETS, VideoTokenizer


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = VideoTokenizer.from_preset("debug").eval()
    # random init leaves most latents near 0; larger weights make every token depend on its inputs
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim > 1:
                p.mul_(1.5)
    return m


def _video(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) * 2 - 1


@pytest.mark.parametrize(
    "t,h,w,latent",
    [
        (17, 128, 128, (5, 16, 16)),
        (1, 128, 128, (1, 16, 16)),
        (17, 224, 128, (5, 28, 16)),
        (41, 32, 32, (11, 4, 4)),
    ],
)
def test_encode_decode_shapes(model, t, h, w, latent):
    x = _video(1, 3, t, h, w)
    idx = model.encode(x)
    assert idx.shape == (1, *latent) and idx.dtype == torch.long
    assert int(idx.min()) >= 0 and int(idx.max()) < model.config.codebook_size
    assert model.latent_shape(t, h, w) == latent
    y = model.decode(idx)
    assert y.shape == (1, 3, t, h, w)
    assert float(y.abs().max()) <= 1.0


def test_temporal_causality(model):
    """Changing input frame k never changes latents (hence tokens) of latent frames j with 4j < k."""
    x = _video(2, 3, 17, 16, 16)
    with torch.no_grad():
        z = model.encoder(x)
    idx = model.encode(x)
    for k in (1, 4, 5, 8, 12, 16):
        x2 = x.clone()
        x2[:, :, k] = _video(2, 3, 16, 16, seed=k)
        with torch.no_grad():
            z2 = model.encoder(x2)
        first_affected = (k + 3) // 4  # latent frame j covers input frames 4j−3 … 4j
        assert torch.equal(z[:, :, :first_affected], z2[:, :, :first_affected]), k
        assert torch.equal(idx[:, :first_affected], model.encode(x2)[:, :first_affected]), k
        assert not torch.equal(z[:, :, first_affected], z2[:, :, first_affected]), k  # the test can fail


def test_decoder_causality(model):
    """Changing latent frame j never changes decoded frames before 4j − 3."""
    idx = torch.randint(0, model.config.codebook_size, (1, 5, 4, 4))
    idx2 = idx.clone()
    idx2[:, 3] = (idx2[:, 3] + 1) % model.config.codebook_size
    y, y2 = model.decode(idx), model.decode(idx2)
    assert torch.equal(y[:, :, :9], y2[:, :, :9])
    assert not torch.equal(y[:, :, 9:13], y2[:, :, 9:13])


def test_image_tokens_equal_first_latent_frame(model):
    video = _video(2, 3, 17, 32, 24)
    image = video[:, :, :1]
    assert torch.equal(model.encode(image)[:, 0], model.encode(video)[:, 0])
    # and a 5-frame prefix gives the first two latent frames of the 17-frame video
    assert torch.equal(model.encode(video[:, :, :5]), model.encode(video)[:, :2])


def test_save_load_identical_outputs(model, tmp_path):
    x = _video(1, 3, 9, 16, 16)
    model.save_pretrained(tmp_path / "fp32")
    loaded = VideoTokenizer.from_pretrained(tmp_path / "fp32")
    meta = json.loads((tmp_path / "fp32" / "config.json").read_text())
    assert meta["config"]["codebook_bits"] == model.config.codebook_bits
    idx = model.encode(x)
    assert torch.equal(loaded.encode(x), idx)
    assert torch.equal(loaded.decode(idx), model.decode(idx))
    with torch.no_grad():
        assert torch.equal(loaded(x).recon, model(x).recon)
    # fp16 export loads into an fp32 model whose weights equal the fp16-rounded originals
    model.save_pretrained(tmp_path / "fp16", dtype=torch.float16)
    half = VideoTokenizer.from_pretrained(tmp_path / "fp16")
    assert next(half.parameters()).dtype == torch.float32
    for (name, a), (_, b) in zip(model.state_dict().items(), half.state_dict().items()):
        assert torch.equal(a.half().float(), b), name
    assert (tmp_path / "fp16" / "model.safetensors").stat().st_size < 0.6 * (
        tmp_path / "fp32" / "model.safetensors"
    ).stat().st_size


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(UserError, match="config.json"):
        VideoTokenizer.from_pretrained(tmp_path)
    with pytest.raises(UserError, match="unknown video tokenizer preset"):
        VideoTokenizer.from_preset("huge")


@pytest.mark.parametrize(
    "bad,match",
    [
        (torch.zeros(1, 3, 17, 32, 32, dtype=torch.uint8), "float"),
        (torch.zeros(3, 17, 32, 32), r"shape \(B, 3"),
        (torch.zeros(1, 4, 17, 32, 32), r"shape \(B, 3"),
        (torch.zeros(1, 3, 16, 32, 32), "1 \\+ 4"),
        (torch.zeros(1, 3, 17, 30, 32), "multiples of 8"),
        (torch.full((1, 3, 5, 32, 32), 2.0), r"\[-1, 1\]"),
        (torch.full((1, 3, 5, 32, 32), float("nan")), r"\[-1, 1\]"),
    ],
)
def test_bad_inputs(model, bad, match):
    with pytest.raises(ValueError, match=match):
        model.encode(bad)


def test_bad_indices(model):
    with pytest.raises(ValueError, match="integer"):
        model.decode(torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, t, h, w\)"):
        model.decode(torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="lie in"):
        model.decode(torch.full((1, 1, 2, 2), model.config.codebook_size))


def test_forward_returns_losses_and_gradients(model):
    m = VideoTokenizer.from_preset("debug")
    x = _video(2, 3, 5, 16, 16)
    out = m(x)
    assert out.recon.shape == x.shape and out.indices.shape == (2, 2, 2, 2)
    loss = (out.recon - x).pow(2).mean() + 0.25 * out.commit_loss + 0.1 * out.entropy_loss
    loss.backward()
    assert all(p.grad is not None for p in m.encoder.parameters())
    assert m.encoder.conv_in.conv.weight.grad.abs().sum() > 0


def test_presets_are_consistent():
    assert PRESETS["paper"].codebook_bits == 18
    for name, cfg in PRESETS.items():
        assert cfg.spatial_factor == 8 and cfg.temporal_factor == 4, name
    assert 10 <= PRESETS["tiny"].codebook_bits <= 14


@pytest.mark.slow
def test_paper_preset_runs_on_small_input():
    m = VideoTokenizer.from_preset("paper").eval()
    idx = m.encode(_video(1, 3, 5, 16, 16))
    assert idx.shape == (1, 2, 2, 2) and int(idx.max()) < 2**18
    assert m.decode(idx).shape == (1, 3, 5, 16, 16)


def test_reconstruct_frames_is_encode_decode_per_clip():
    import numpy as np

    from videopoet.data.sample import frames_to_tensor, tensor_to_frames
    from videopoet.eval.tokenizer import reconstruct_frames

    torch.manual_seed(0)
    model = VideoTokenizer.from_preset("debug").eval()
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, (5, 16, 24, 3), dtype=np.uint8) for _ in range(2)]
    out = reconstruct_frames(model, clips)
    assert len(out) == 2 and all(r.shape == c.shape and r.dtype == np.uint8 for r, c in zip(out, clips))
    with torch.no_grad():
        alone = tensor_to_frames(model.decode(model.encode(frames_to_tensor(clips[1])[None]))[0])
    assert np.abs(out[1].astype(int) - alone.astype(int)).max() <= 1  # batching changes nothing but rounding


def test_benchmark_runs_on_cpu_with_training_steps(one_thread):
    """benchmarks/bench_video_tokenizer.py at toy size with ``--train``: the recipe's train_step is timed."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_video_tokenizer.py"
    spec = importlib.util.spec_from_file_location("bench_video_tokenizer", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["--device", "cpu", "--preset", "debug", "--batch", "1", "--frames", "5", "--size", "16"]
    result = bench.main(argv + ["--iters", "1", "--train"])
    assert result["clip"] == "5x16x16" and result["precision"] == "fp32" and result["latent"] == [2, 2, 2]
    for name in ("encode", "decode"):
        assert result[name]["clips_per_s"] > 0 and result[name]["ms_per_batch"] > 0
    assert set(result["train"]) == {"without_gan", "with_gan"}
    for row in result["train"].values():
        assert row["ms_per_step"] > 0 and row["clips_per_s"] > 0 and row["steps_per_min"] > 0
