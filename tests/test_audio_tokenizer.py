"""SoundStream codec: frame-count contract, causality, save/load, fewer-level decoding, input checks."""

import json
import math

import pytest
import torch

from videopoet.errors import UserError
from videopoet.tokenizers.audio import PRESETS, AudioTokenizer

SR = 16000
FPS = 8


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return AudioTokenizer.from_preset("debug").eval()


def _wave(b, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SR
    tone = 0.5 * torch.sin(2 * torch.pi * 440 * t)
    return (tone + 0.1 * torch.randn(b, 1, n, generator=g)).clamp(-1, 1)


@pytest.mark.parametrize("video_frames, frames", [(1, 6), (17, 106), (41, 256)])
def test_frame_count_for_video_frames_worth_of_audio(model, video_frames, frames):
    n = video_frames * SR // FPS  # 2000, 34000, 82000 samples
    codes = model.encode(_wave(1, n))
    assert codes.shape == (1, 4, frames) and codes.dtype == torch.long
    assert model.num_frames(n) == frames
    assert model.decode(codes).shape == (1, 1, frames * 320)
    wave = model.decode(codes, length=n)
    assert wave.shape == (1, 1, n) and wave.dtype == torch.float32
    assert float(wave.abs().max()) <= 1.0
    assert torch.all(wave[..., frames * 320 :] == 0)  # the uncoded tail is silence


def test_presets_share_the_paper_frame_rate():
    for name, cfg in PRESETS.items():
        assert cfg.hop == 320 and cfg.frame_rate == 50.0, name
    assert PRESETS["tiny"].num_levels == 4 and PRESETS["tiny"].codebook_size == 1024
    assert PRESETS["tiny"].bitrate == 2000.0  # 4 levels · 10 bits · 50 frames/s
    assert 1e6 < AudioTokenizer.from_preset("tiny").num_parameters() < 5e6


def test_causality_future_samples_never_change_past_frames():
    torch.manual_seed(0)
    m = AudioTokenizer.from_preset("debug").double().eval()
    n, p = 6400, 2900  # change everything from sample p on
    a = _wave(1, n, seed=1).double()
    b = a.clone()
    b[..., p:] = _wave(1, n - p, seed=2).double()
    za, zb = m.encoder(a), m.encoder(b)
    done = p // 320  # frames 0..done-1 end at or before sample p
    assert torch.equal(za[..., :done], zb[..., :done])
    assert not torch.allclose(za[..., done:], zb[..., done:])  # the changed region does matter
    assert torch.equal(m.encode(a)[..., :done], m.encode(b)[..., :done])
    # The decoder is causal too: output samples of frame f depend on frames ≤ f only.
    ca, cb = m.encode(a), m.encode(b)
    cb[..., done:] = (cb[..., done:] + 1) % m.config.codebook_size
    ya, yb = (
        m.decoder(m.codes_to_embeddings(ca).double())[0],
        m.decoder(m.codes_to_embeddings(cb).double())[0],
    )
    assert torch.equal(ya[..., : done * 320], yb[..., : done * 320])
    assert not torch.allclose(ya[..., done * 320 :], yb[..., done * 320 :])


def test_save_load_identical_outputs(model, tmp_path):
    wave = _wave(2, 4000)
    codes = model.encode(wave)
    out = model.decode(codes, length=4000)
    model.save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["model_type"] == "videopoet-audio-tokenizer" and cfg["config"]["strides"] == [2, 4, 5, 8]
    loaded = AudioTokenizer.from_pretrained(tmp_path / "m")
    assert torch.equal(loaded.encode(wave), codes)
    assert torch.equal(loaded.decode(codes, length=4000), out)
    # fp16 shipping: same codes on this input, outputs within half precision
    model.save_pretrained(tmp_path / "h", dtype=torch.float16)
    half = AudioTokenizer.from_pretrained(tmp_path / "h")
    assert (half.encode(wave) == codes).float().mean() > 0.9
    torch.testing.assert_close(half.decode(codes), model.decode(codes), atol=2e-2, rtol=0)


def test_fewer_levels_decode(model):
    wave = _wave(1, 3200)
    codes = model.encode(wave)
    for k in (1, 2, 3):
        assert torch.equal(model.encode(wave, n_levels=k), codes[:, :k])
        y = model.decode(codes[:, :k])
        assert y.shape == (1, 1, 3200) and torch.isfinite(y).all()
    emb1 = model.codes_to_embeddings(codes[:, :1])
    emb4 = model.codes_to_embeddings(codes)
    assert not torch.allclose(emb1, emb4)


def test_input_validation(model, tmp_path):
    with pytest.raises(ValueError, match="float"):
        model.encode(torch.zeros(1, 1, 640, dtype=torch.int16))
    with pytest.raises(ValueError, match=r"\(B, 1, N\)"):
        model.encode(torch.zeros(1, 640))
    with pytest.raises(ValueError, match=r"\(B, 1, N\)"):
        model.encode(torch.zeros(1, 2, 640))
    with pytest.raises(ValueError, match="NaN"):
        model.encode(torch.full((1, 1, 640), float("nan")))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        model.encode(torch.full((1, 1, 640), 3.0))
    with pytest.raises(ValueError, match="at least 320"):
        model.encode(torch.zeros(1, 1, 100))
    with pytest.raises(ValueError, match="length"):
        model.decode(torch.zeros(1, 4, 2, dtype=torch.long), length=-1)
    with pytest.raises(UserError, match="preset"):
        AudioTokenizer.from_preset("huge")
    with pytest.raises(UserError, match="config.json"):
        AudioTokenizer.from_pretrained(tmp_path)


def test_training_forward_backward_shapes():
    torch.manual_seed(0)
    m = AudioTokenizer.from_preset("debug").train()
    wave = _wave(3, 3200)
    out = m(wave)
    assert out.recon.shape == wave.shape and out.codes.shape == (3, 4, 10)
    loss = (out.recon - wave).abs().mean() + out.commitment_loss
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.encoder.parameters())
    assert all(bool(level.initted) for level in m.quantizer.levels)


def test_snake_activation_option(tmp_path):
    import dataclasses

    from videopoet.tokenizers.audio import Snake

    x = torch.linspace(-3, 3, 7).reshape(1, 1, 7)
    snake = Snake(1)
    torch.testing.assert_close(snake(x), x + torch.sin(x).pow(2))  # α = 1 at initialisation
    torch.manual_seed(0)
    m = AudioTokenizer(dataclasses.replace(PRESETS["debug"], activation="snake")).eval()
    assert any(isinstance(mod, Snake) for mod in m.modules())
    wave = _wave(1, 3200)
    codes = m.encode(wave)
    assert codes.shape == (1, 4, 10)
    m.save_pretrained(tmp_path / "s")
    loaded = AudioTokenizer.from_pretrained(tmp_path / "s")
    assert loaded.config.activation == "snake"
    assert torch.equal(loaded.decode(codes), m.decode(codes))
    with pytest.raises(ValueError, match="activation"):
        dataclasses.replace(PRESETS["debug"], activation="relu").validate()


def test_noise_branch_bands_decoding_and_causality(tmp_path):
    import dataclasses

    from videopoet.tokenizers.audio import band_noise

    noise = band_noise(2, 6100.0, 16000, length=8192).double()  # (2, 8192)
    assert noise.shape == (2, 8192)
    torch.testing.assert_close(noise.pow(2).mean(-1), torch.ones(2, dtype=torch.float64), rtol=1e-4, atol=0)
    power = torch.fft.rfft(noise).abs().pow(2)  # (2, F)
    freqs = torch.fft.rfftfreq(8192, 1 / 16000)
    assert power[:, freqs < 6100].sum() < 1e-6 * power.sum()  # nothing below the branch's band
    assert power[0, freqs > 7050].sum() < 1e-6 * power[0].sum()  # the bands do not overlap
    torch.manual_seed(0)
    m = AudioTokenizer(dataclasses.replace(PRESETS["debug"], noise_bands=2)).double().eval()
    n, p = 6400, 2900
    a = _wave(1, n, seed=1).double()
    b = a.clone()
    b[..., p:] = _wave(1, n - p, seed=2).double()
    done = p // 320
    with torch.no_grad():
        m.decoder.noise.gain.conv.weight.normal_()  # a trained branch: gains follow the features
        ca, cb = m.encode(a), m.encode(b)
        cb[..., done:] = (cb[..., done:] + 1) % m.config.codebook_size
        (ya, ga), (yb, _) = (m.decoder(m.codes_to_embeddings(c).double()) for c in (ca, cb))
    assert ga.shape == (1, 2, n // 8)  # a gain per band every 8 samples
    assert torch.equal(ya[..., : done * 320], yb[..., : done * 320])  # still causal
    assert not torch.allclose(ya[..., done * 320 :], yb[..., done * 320 :])
    assert torch.equal(m.decode(ca), m.decode(ca))  # deterministic: the noise is a fixed buffer
    m.float().save_pretrained(tmp_path / "nf")
    loaded = AudioTokenizer.from_pretrained(tmp_path / "nf")
    assert loaded.config.noise_bands == 2
    assert torch.equal(loaded.decode(ca), m.decode(ca))
    with pytest.raises(ValueError, match="noise_min_hz"):
        dataclasses.replace(PRESETS["debug"], noise_bands=1, noise_min_hz=9000.0).validate()


def test_new_noise_branch_starts_silent():
    import dataclasses

    from videopoet.tokenizers.audio import NOISE_FLOOR

    torch.manual_seed(0)
    m = AudioTokenizer(dataclasses.replace(PRESETS["debug"], noise_bands=2)).eval()
    out = m(_wave(1, 3200))
    assert (out.noise_log_gains - math.log(NOISE_FLOOR)).abs().max() < 0.5  # near the −80 dB floor
