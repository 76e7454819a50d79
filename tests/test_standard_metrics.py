"""Standard metric networks and drivers (FVD, CLIPSIM, IS, FAD) with randomly initialised weights."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from videopoet.errors import UserError
from videopoet.eval.metrics import frechet_distance
from videopoet.eval.standard import (
    CLIPTokenizer,
    build_c3d,
    build_clip,
    build_i3d,
    build_inception,
    build_vggish,
    c3d,
    c3d_inception_score,
    clip,
    clip_similarity,
    fad,
    fvd,
    i3d,
    i3d_features,
    image_inception_score,
    inception,
    vggish,
    vggish_embeddings,
)
from videopoet.eval.standard.clip import write_vocab
from videopoet.eval.standard.drivers import c3d_preprocess
from videopoet.eval.standard.vggish import mel_matrix, waveform_to_examples


def _videos(n, t=17, h=40, w=48, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(t, h, w, 3), dtype=np.uint8) for _ in range(n)]


def _count(builder, preset):
    with torch.device("meta"):
        model = builder(preset)
    return sum(p.numel() for p in model.parameters())


def test_paper_presets_have_the_published_parameter_counts():
    # torchvision inception_v3 (27,161,264) minus AuxLogits (3,326,696); OpenAI ViT-B/16; torchvggish.
    assert _count(inception.InceptionV3, inception.PRESETS["paper"]) == 23_834_568
    assert _count(clip.CLIP, clip.PRESETS["ViT-B/16"]) == 149_620_737
    assert _count(vggish.VGGish, vggish.PRESETS["paper"]) == 72_141_184
    # C3D: the classic 8192 → 4096 fc6 follows from 16×112×112 input.
    with torch.device("meta"):
        net = c3d.C3D(c3d.PRESETS["paper"])
    assert net.fc6.in_features == 8192
    with torch.device("meta"):
        net = i3d.InceptionI3d(i3d.PRESETS["paper"])
    assert net.feature_dim == 1024 and net.logits.conv3d.out_channels == 400


def test_i3d_paper_size_forward_shape():
    model = build_i3d("paper")
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 16, 224, 224))
    assert out.shape == (1, 400)


def test_fvd_driver_protocol_and_distance():
    torch.manual_seed(0)
    model = build_i3d("debug")
    real = _videos(6, seed=1)
    feats = i3d_features(real, model, size=32)
    assert feats.shape == (6, 16) and feats.dtype == np.float64
    # Only the first 16 frames count: changing frame 17 changes nothing.
    edited = [v.copy() for v in real]
    for v in edited:
        v[16] = 255 - v[16]
    np.testing.assert_allclose(i3d_features(edited, model, size=32), feats, rtol=1e-6, atol=1e-6)
    # Batching does not change features.
    np.testing.assert_allclose(
        i3d_features(real[:3], model, size=32, batch_size=2), feats[:3], rtol=1e-5, atol=1e-5
    )
    assert fvd(real, real, model, size=32) == pytest.approx(0.0, abs=1e-6)
    dark = i3d_features([(v // 4).astype(np.uint8) for v in _videos(6, seed=2)], model, size=32)
    alike = i3d_features(_videos(6, seed=3), model, size=32)
    assert frechet_distance(feats, dark) > 10 * frechet_distance(feats, alike) >= 0
    with pytest.raises(ValueError, match="16 frames"):
        i3d_features(_videos(2, t=8), model, size=32)


def test_weight_loader_round_trip_and_clear_errors(tmp_path):
    torch.manual_seed(0)
    src = build_i3d("debug")
    for p in src.parameters():
        p.data.normal_()
    state = {k: v.contiguous() for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "i3d.safetensors"
    save_file(state, str(path))
    x = torch.randn(1, 3, 16, 32, 32)
    loaded = build_i3d("debug", weights=path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), src.eval()(x))

    missing = dict(state)
    missing.pop("logits.conv3d.bias")
    save_file(missing, str(tmp_path / "m.safetensors"))
    with pytest.raises(UserError, match=r"1 missing \(logits.conv3d.bias\)"):
        build_i3d("debug", weights=tmp_path / "m.safetensors")
    with pytest.raises(UserError, match="other shapes"):
        build_i3d(i3d.I3DConfig(num_classes=17, channel_scale=0.125), weights=path)
    extra = dict(state, **{"extra.weight": torch.zeros(1)})
    save_file(extra, str(tmp_path / "x.safetensors"))
    with pytest.raises(UserError, match="unexpected"):
        build_i3d("debug", weights=tmp_path / "x.safetensors")
    with pytest.raises(UserError, match="not found"):
        build_i3d("debug", weights=tmp_path / "nope.safetensors")
    (tmp_path / "w.pt").write_bytes(b"x")
    with pytest.raises(UserError, match="never pickles"):
        build_i3d("debug", weights=tmp_path / "w.pt")


def test_inception_loader_ignores_aux_logits_and_image_is(tmp_path):
    torch.manual_seed(0)
    src = build_inception("debug")
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    state["AuxLogits.fc.weight"] = torch.zeros(3, 3)
    save_file(state, str(tmp_path / "inc.safetensors"))
    model = build_inception("debug", weights=tmp_path / "inc.safetensors")
    images = [f for v in _videos(4, t=5) for f in v]  # 20 images of 40×48, resized to 75×75
    score = image_inception_score(images, model, splits=2)
    assert 1.0 <= score.mean <= model.cfg.num_classes
    # IS of a single image repeated is exactly 1 (the marginal equals every conditional).
    assert image_inception_score([images[0]] * 6, model, splits=2).mean == pytest.approx(1.0, abs=1e-9)


def test_c3d_inception_score_driver():
    torch.manual_seed(0)
    model = build_c3d("debug")
    videos = _videos(8, t=16, h=36, w=48)
    assert c3d_preprocess(videos[0], model).shape == (3, 16, 32, 32)
    score = c3d_inception_score(videos, model, splits=2)
    assert 1.0 <= score.mean <= 7 and score.std >= 0


def _tiny_clip_tokenizer(tmp_path):
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {t: i for i, t in enumerate(letters + [c + "</w>" for c in letters])}
    for extra in ("re", "red</w>", "ca", "cat</w>", "<|startoftext|>", "<|endoftext|>"):
        vocab[extra] = len(vocab)
    write_vocab(tmp_path, vocab, ["r e", "re d</w>", "c a", "ca t</w>"])
    return CLIPTokenizer(tmp_path, context_length=16), vocab


def test_clip_tokenizer_bpe(tmp_path):
    tok, vocab = _tiny_clip_tokenizer(tmp_path)
    ids = tok(["A  Red\tCAT", "rat"])
    assert ids.shape == (2, 16)
    start, end = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    assert ids[0, :6].tolist() == [start, vocab["a</w>"], vocab["red</w>"], vocab["cat</w>"], end, 0]
    assert ids[1, :5].tolist() == [start, vocab["r"], vocab["a"], vocab["t</w>"], end]
    long = tok(["cat " * 40])
    assert long[0, -1].item() == end  # truncated, end marker kept


def test_clip_similarity_driver(tmp_path):
    torch.manual_seed(0)
    tok, vocab = _tiny_clip_tokenizer(tmp_path)
    cfg = clip.CLIPConfig(**{**clip.PRESETS["debug"].__dict__, "vocab_size": len(vocab)})
    model = build_clip(cfg)
    # Padding after the end token cannot change the text embedding (causal mask + read at the end token).
    ids = tok(["red cat"])
    noisy = ids.clone()
    noisy[0, 5:] = 7
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(ids, tok.end_id), model.encode_text(noisy, tok.end_id))
    videos = _videos(3, t=17, h=40, w=56)
    res = clip_similarity(videos, ["red cat", "cat", "red"], model, tok, eval_size=64)
    assert res.per_clip.shape == (3,) and np.all(np.abs(res.per_clip) <= 1)
    # The driver's number equals the definition computed by hand for clip 0 (16 frames, no eval resize).
    res0 = clip_similarity(videos[:1], ["red cat"], model, tok, eval_size=None)
    with torch.no_grad():
        img = model.encode_image(clip.preprocess_frames(torch.from_numpy(videos[0][:16]), 32))
        txt = model.encode_text(tok(["red cat"]), tok.end_id)
    manual = torch.nn.functional.cosine_similarity(img, txt).mean().item()
    assert res0.mean == pytest.approx(manual, abs=1e-5)


def test_clip_loader_round_trip(tmp_path):
    torch.manual_seed(0)
    src = build_clip("debug")
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    state["context_length"] = torch.tensor(16)  # OpenAI's files carry these scalars
    save_file(state, str(tmp_path / "clip.safetensors"))
    model = build_clip("debug", weights=tmp_path / "clip.safetensors")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(x), src.encode_image(x))


def test_vggish_frontend_matches_reference_definition():
    sr = 16000
    t = np.arange(int(2.125 * sr)) / sr
    examples = waveform_to_examples(0.5 * np.sin(2 * np.pi * 1000 * t), sr)
    assert examples.shape == (2, 96, 64)  # 1 + (34000 − 400) // 160 = 211 frames → 2 whole examples
    # The loudest band is the one whose triangle peaks nearest 1 kHz.
    centers = np.linspace(1127 * np.log1p(125 / 700), 1127 * np.log1p(7500 / 700), 66)[1:-1]
    expect = int(np.argmin(np.abs(700 * (np.exp(centers / 1127) - 1) - 1000)))
    assert int(np.argmax(examples[0].mean(0))) == expect
    # Silence sits at log(0.01) everywhere.
    np.testing.assert_allclose(waveform_to_examples(np.zeros(sr)), np.log(0.01), rtol=1e-6)
    m = mel_matrix(257)
    assert m.shape == (257, 64) and (m[0] == 0).all() and m.max() <= 1.0
    # 48 kHz input is resampled to 16 kHz first.
    t48 = np.arange(int(2.125 * 48000)) / 48000
    ex48 = waveform_to_examples(0.5 * np.sin(2 * np.pi * 1000 * t48), 48000)
    np.testing.assert_allclose(ex48, examples, atol=0.05)


def test_fad_driver():
    torch.manual_seed(0)
    model = build_vggish("debug")
    rng = np.random.default_rng(0)
    sr, n = 16000, 34000
    tone = lambda f: [0.3 * np.sin(2 * np.pi * f * np.arange(n) / sr + rng.uniform(0, 6)) for _ in range(4)]
    noise = [0.3 * rng.standard_normal(n) for _ in range(4)]
    emb = vggish_embeddings(tone(440), model)
    assert emb.shape == (8, 16)
    real = tone(440) + noise
    assert fad(real, real, model) == pytest.approx(0.0, abs=1e-6)
    assert fad(real, [0.3 * rng.standard_normal(n) for _ in range(8)], model) > 0
    with pytest.raises(ValueError, match="0.96 s"):
        vggish_embeddings([np.zeros(1000)], model)
    assert frechet_distance(emb, emb) == pytest.approx(0.0, abs=1e-8)
