"""The one component format (videopoet.components): save → load gives identical outputs for every
component class, the bundled weights (old layouts included) load as a raw read of their files does, every
bad directory is a one-line UserError naming the file, and an interrupted save changes nothing."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import videopoet.components as components
from videopoet.components import load_component, read_component_config, save_component
from videopoet.config import from_dict
from videopoet.data.synthetic import render_clip
from videopoet.errors import UserError
from videopoet.eval.shape_net import ShapeNet, ShapeNetConfig
from videopoet.tokenizers.audio import AudioTokenizer, AudioTokenizerConfig
from videopoet.tokenizers.video import VideoTokenizer, VideoTokenizerConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _rand(*shape, seed=0, lo=-1.0, hi=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) * (hi - lo) + lo


def _small_reader(seed=0) -> ShapeNet:
    torch.manual_seed(seed)
    return ShapeNet(ShapeNetConfig(channels=4, blocks=1, wide=True, trust=True)).eval()


def _trained_codec(seed=0) -> AudioTokenizer:
    """A debug codec as after training: codebooks marked initialised, EMA statistics moved off their init."""
    torch.manual_seed(seed)
    codec = AudioTokenizer.from_preset("debug").eval()
    for level in codec.quantizer.levels:
        level.initted.fill_(True)
        level.cluster_size.mul_(3.0)
    return codec


# ------------------------------------------------------------------------------ save → load


def test_video_tokenizer_round_trip(tmp_path):
    torch.manual_seed(0)
    model = VideoTokenizer.from_preset("debug").eval()
    x = _rand(1, 3, 5, 16, 16)
    path = model.save_pretrained(tmp_path / "vt")
    assert path == tmp_path / "vt" and sorted(p.name for p in path.iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    text = (path / "config.json").read_text()
    meta = json.loads(text)
    assert set(meta) == {"model_type", "config"} and meta["model_type"] == VideoTokenizer.MODEL_TYPE
    assert text == json.dumps(meta, indent=2, sort_keys=True) + "\n"  # sorted and indented
    loaded = VideoTokenizer.from_pretrained(path)
    assert loaded.config == model.config and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x).recon, model(x).recon)
    idx = model.encode(x)
    assert torch.equal(loaded.encode(x), idx) and torch.equal(loaded.decode(idx), model.decode(idx))


def test_audio_tokenizer_round_trip_leaves_out_and_refreshes_ema_statistics(tmp_path):
    model = _trained_codec()
    wave = _rand(2, 1, 1600, seed=1, lo=-0.8, hi=0.8)
    model.save_pretrained(tmp_path / "at")
    assert not [k for k in load_file(str(tmp_path / "at" / "model.safetensors")) if "cluster_size" in k]
    loaded = AudioTokenizer.from_pretrained(tmp_path / "at")
    codes = model.encode(wave)
    assert torch.equal(loaded.encode(wave), codes)
    assert torch.equal(loaded.decode(codes, length=1600), model.decode(codes, length=1600))
    for mine, theirs in zip(model.quantizer.levels, loaded.quantizer.levels, strict=True):
        assert torch.equal(mine.embed, theirs.embed) and bool(theirs.initted)
        fresh = mine.cluster_size.clone()
        mine.fresh_statistics()  # what loading does instead of reading the training-time statistics
        assert not torch.equal(fresh, theirs.cluster_size)
        assert torch.equal(mine.cluster_size, theirs.cluster_size)
        assert torch.equal(mine.embed_avg, theirs.embed_avg)


def test_shape_reader_round_trip_and_dtypes(tmp_path):
    net = _small_reader()
    crops = _rand(3, 2, 32, 32, lo=0.0)
    save_component(net, tmp_path / "r")
    loaded = load_component(ShapeNet, tmp_path / "r")
    (a, ta), (b, tb) = net(crops), loaded(crops)
    assert torch.equal(a, b) and torch.equal(ta, tb)
    # shipped in float16: loads as float32 unless asked for another dtype
    save_component(net, tmp_path / "h", dtype=torch.float16)
    assert {t.dtype for t in load_file(str(tmp_path / "h" / "model.safetensors")).values()} == {torch.float16}
    assert next(load_component(ShapeNet, tmp_path / "h").parameters()).dtype == torch.float32
    half = ShapeNet.from_pretrained(tmp_path / "h", dtype=torch.bfloat16)
    assert next(half.parameters()).dtype == torch.bfloat16
    for (name, w), v in zip(net.state_dict().items(), half.state_dict().values(), strict=True):
        assert torch.equal(w.half().to(torch.bfloat16), v), name


def test_saving_replaces_a_component_and_refuses_a_foreign_directory(tmp_path):
    save_component(_small_reader(0), tmp_path / "r")
    (tmp_path / "r" / "train_eval.json").write_text("{}")  # e.g. a trainer's note beside the weights
    second = _small_reader(1)
    save_component(second, tmp_path / "r")
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["config.json", "model.safetensors"]
    assert torch.equal(load_component(ShapeNet, tmp_path / "r").head.weight, second.head.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no temporary or old directory left
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(UserError, match="todo.txt"):
        save_component(second, tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_interrupted_save_leaves_the_previous_component(tmp_path, monkeypatch):
    first = _small_reader(0)
    save_component(first, tmp_path / "r")
    before = {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()}

    def fail_midway(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x00" * 100)  # half a file, then the disk fills up
        raise OSError("No space left on device")

    monkeypatch.setattr(components, "save_file", fail_midway)
    with pytest.raises(OSError, match="No space"):
        save_component(_small_reader(1), tmp_path / "r")
    with pytest.raises(OSError, match="No space"):
        save_component(_small_reader(1), tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    assert {p.name: p.read_bytes() for p in (tmp_path / "r").iterdir()} == before
    assert torch.equal(load_component(ShapeNet, tmp_path / "r").head.weight, first.head.weight)


# ------------------------------------------------------------------------------ bundled weights


def _raw(cls, config_cls, name):
    """The bundled component read without components.py: its config.json (either layout) and its
    safetensors file straight into the model, as each class's loader did before the one format."""
    directory = components.PRETRAINED_ROOT / name
    meta = json.loads((directory / "config.json").read_text())
    fields = meta["config"] if "config" in meta else {k: v for k, v in meta.items() if k != "model_type"}
    model = cls(from_dict(config_cls, fields))
    missing, unexpected = model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=False)
    assert not unexpected and all(k.endswith((".cluster_size", ".embed_avg")) for k in missing)
    return model.float().eval()


def test_bundled_video_tokenizer_encodes_as_its_raw_weights():
    clip = render_clip(7, width=64, height=64, frames=9)
    video = torch.from_numpy(clip.frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1  # (1, 3, T, H, W)
    model, raw = (
        VideoTokenizer.from_pretrained(),
        _raw(VideoTokenizer, VideoTokenizerConfig, "video_tokenizer"),
    )
    assert (
        read_component_config(components.PRETRAINED_ROOT / "video_tokenizer")[0] == VideoTokenizer.MODEL_TYPE
    )
    for (name, a), b in zip(model.state_dict().items(), raw.state_dict().values(), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    idx = model.encode(video)
    assert idx.shape == (1, 3, 8, 8) and torch.equal(idx, raw.encode(video))


def test_bundled_audio_tokenizer_and_shape_reader_load_from_their_flat_configs():
    for cls, config_cls, name in (
        (AudioTokenizer, AudioTokenizerConfig, "audio_tokenizer"),
        (ShapeNet, ShapeNetConfig, "judge_shapes"),
    ):
        meta = json.loads((components.PRETRAINED_ROOT / name / "config.json").read_text())
        assert "config" not in meta  # still the old flat layout: it must keep loading
        model_type, fields = read_component_config(components.PRETRAINED_ROOT / name)
        assert model_type == cls.MODEL_TYPE and fields == {k: v for k, v in meta.items() if k != "model_type"}
        model, raw = cls.from_pretrained(), _raw(cls, config_cls, name)
        assert model.config == raw.config
        for key, value in raw.state_dict().items():
            if not key.endswith((".cluster_size", ".embed_avg")):  # rebuilt on load, checked above
                assert torch.equal(model.state_dict()[key], value), key
    wave = _rand(1, 1, 3200, lo=-0.5, hi=0.5)
    codec, raw = (
        AudioTokenizer.from_pretrained(),
        _raw(AudioTokenizer, AudioTokenizerConfig, "audio_tokenizer"),
    )
    codes = codec.encode(wave)
    assert torch.equal(codes, raw.encode(wave)) and torch.equal(codec.decode(codes), raw.decode(codes))


def test_old_flat_layout_of_a_saved_component_loads(tmp_path):
    model = _trained_codec()
    model.save_pretrained(tmp_path / "a")
    meta = json.loads((tmp_path / "a" / "config.json").read_text())
    flat = {"model_type": meta["model_type"], **meta["config"]}
    (tmp_path / "a" / "config.json").write_text(json.dumps(flat))
    wave = _rand(1, 1, 960, seed=2, lo=-0.5, hi=0.5)
    assert torch.equal(AudioTokenizer.from_pretrained(tmp_path / "a").encode(wave), model.encode(wave))


# ------------------------------------------------------------------------------ bad directories


def _break(directory, how):
    """Spoil a saved shape reader's directory in one way; → the directory to load."""
    cfg, weights = directory / "config.json", directory / "model.safetensors"
    meta = json.loads(cfg.read_text())
    fields = meta["config"]
    if how == "no directory":
        return directory.parent / "absent"
    if how == "no config.json":
        cfg.unlink()
    elif how == "not JSON":
        cfg.write_text('{"model_type": ')
    elif how == "not an object":
        cfg.write_text("[1, 2]")
    elif how == "no model_type":
        cfg.write_text(json.dumps({"config": fields}))
    elif how == "wrong model_type":
        cfg.write_text(json.dumps({**meta, "model_type": AudioTokenizer.MODEL_TYPE}))
    elif how == "unknown field":
        cfg.write_text(json.dumps({**meta, "config": {**fields, "depth": 3}}))
    elif how == "field of the wrong type":
        cfg.write_text(json.dumps({**meta, "config": {**fields, "channels": "four"}}))
    elif how == "no model.safetensors":
        weights.unlink()
    elif how == "not safetensors":
        weights.write_bytes(b"PK\x03\x04 a zip file, not tensors")
    elif how == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "another architecture":
        cfg.write_text(json.dumps({**meta, "config": {**fields, "channels": 8}}))
    elif how == "names that do not fit":
        state = load_file(str(weights))
        state["extra.weight"] = state.pop("head.bias")
        save_file(state, str(weights))
    return directory


# (how the directory is spoilt, the file the message must name ("": the directory), what it must say)
BAD = [
    ("no directory", "", "not found: a judge shape reader directory needs config.json and model.safetensors"),
    ("no config.json", "config.json", "not found"),
    ("not JSON", "config.json", "not valid JSON"),
    ("not an object", "config.json", "must hold a JSON object, got a list"),
    ("no model_type", "config.json", "has no model_type; a judge shape reader has model_type 'videopoet-j"),
    ("wrong model_type", "config.json", "is 'videopoet-audio-tokenizer', not a judge shape reader"),
    ("unknown field", "config.json", "depth"),
    ("field of the wrong type", "config.json", "config.channels: expected int, got .four."),
    ("no model.safetensors", "model.safetensors", "not found"),
    ("not safetensors", "model.safetensors", "not a readable safetensors file"),
    ("truncated", "model.safetensors", "not a readable safetensors file"),
    (
        "another architecture",
        "model.safetensors",
        r"tensors \d+ of the wrong shape \(e.g. features.0.bias: \(4,\) in the file, \(8,\)",
    ),
    (
        "names that do not fit",
        "model.safetensors",
        r"1 missing \(e.g. head.bias\), 1 unexpected \(e.g. extra",
    ),
]


@pytest.mark.parametrize("how,file,match", BAD, ids=[b[0] for b in BAD])
def test_bad_directory_is_one_line_naming_the_file(tmp_path, how, file, match):
    save_component(_small_reader(), tmp_path / "r")
    directory = _break(tmp_path / "r", how)
    with pytest.raises(UserError, match=match) as err:
        ShapeNet.from_pretrained(directory)
    message = str(err.value)
    assert "\n" not in message and str(directory / file if file else directory) in message, message


# ------------------------------------------------------------------------------ int8 weight-only storage


class _Matrices(torch.nn.Module):
    """A component dominated by weight matrices, with a bias, a norm and a small matrix beside them."""

    MODEL_TYPE = "test-matrices"
    CONFIG = ShapeNetConfig  # any config dataclass: only saved and compared here

    def __init__(self, config=None):
        super().__init__()
        self.config = config or ShapeNetConfig()
        self.big = torch.nn.Linear(256, 512)  # 131072 weights + 512 bias
        self.conv = torch.nn.Conv2d(32, 64, 3)  # (64, 32, 3, 3): 18432 weights
        self.small = torch.nn.Linear(16, 8)  # 128 weights: under INT8_MIN_ELEMENTS
        self.norm = torch.nn.LayerNorm(512)
        self.register_buffer("table", torch.randn(64, 64))  # a buffer: never quantized
        self.register_buffer("steps", torch.arange(4))


def test_quantize_int8_round_trip_error_is_at_most_half_a_step():
    w = _rand(37, 5, 3) * torch.logspace(-4, 1, 37)[:, None, None]  # channels of very different sizes
    w[3] = 0.0  # an all-zero channel
    q, scale = components.quantize_int8(w)
    assert q.dtype == torch.int8 and q.shape == w.shape
    assert scale.shape == (37,) and scale.dtype == torch.float32
    assert q.abs().max() == 127 and scale[3] == 0 and not q[3].any()
    back = components.dequantize_int8(q, scale, torch.float32)
    assert ((w - back).abs() <= scale[:, None, None] / 2 * (1 + 1e-5)).all()
    assert components.dequantize_int8(q, scale, torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(ValueError):
        components.quantize_int8(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError):
        components.dequantize_int8(q, scale[:-1])


def test_int8_file_is_four_times_smaller_and_keeps_small_tensors_as_they_are(tmp_path):
    torch.manual_seed(0)
    model = _Matrices().eval()
    save_component(model, tmp_path / "f32")
    save_component(model, tmp_path / "i8", int8=True)
    save_component(model, tmp_path / "i8h", int8=True, dtype=torch.float16)
    f32, i8 = ((tmp_path / d / "model.safetensors").stat().st_size for d in ("f32", "i8"))
    assert 3.5 < f32 / i8 < 4.0, (f32, i8)
    assert json.loads((tmp_path / "i8" / "config.json").read_text())["storage"] == "int8-weight-only"
    assert "storage" not in json.loads((tmp_path / "f32" / "config.json").read_text())
    state = load_file(str(tmp_path / "i8h" / "model.safetensors"))
    assert {k for k, v in state.items() if v.dtype == torch.int8} == {"big.weight", "conv.weight"}
    assert state["conv.weight.int8_scale"].shape == (64,) and state["big.weight.int8_scale"].shape == (512,)
    for name in ("big.bias", "small.weight", "norm.weight", "table"):  # stored as floats, cast to dtype
        assert torch.equal(state[name], model.state_dict()[name].half()), name
    assert state["steps"].dtype == torch.int64
    loaded = load_component(_Matrices, tmp_path / "i8")
    for name, value in model.state_dict().items():
        got = loaded.state_dict()[name]
        assert got.dtype == value.dtype, name
        if name in ("big.weight", "conv.weight"):
            scale = value.abs().flatten(1).amax(1) / 127
            assert ((got - value).abs().flatten(1) <= scale[:, None] / 2 * (1 + 1e-5)).all(), name
            assert not torch.equal(got, value)
        else:
            assert torch.equal(got, value), name
    assert load_component(_Matrices, tmp_path / "i8", dtype=torch.bfloat16).big.weight.dtype == torch.bfloat16


def test_int8_prefix_lm_logits_stay_close_to_float(tmp_path):
    from videopoet.lm.transformer import PrefixLM

    torch.manual_seed(0)
    lm = PrefixLM.from_preset("debug").eval()
    ids = torch.randint(0, lm.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    prefix = torch.tensor([8, 12])
    save_component(lm, tmp_path / "f")
    save_component(lm, tmp_path / "q", int8=True)
    sizes = [(tmp_path / d / "model.safetensors").stat().st_size for d in ("f", "q")]
    loaded = PrefixLM.from_pretrained(tmp_path / "q")
    state = load_file(str(tmp_path / "q" / "model.safetensors"))
    quantized = {k for k, v in state.items() if v.dtype == torch.int8}
    assert {"tok_embeddings.weight", "layers.0.attention.wqkv.weight", "output.weight"} <= quantized
    assert state["norm.weight"].dtype == torch.float32
    with torch.no_grad():
        ref, got = lm(ids, prefix), loaded(ids, prefix)
    # random-init logits are small (|logit| ≤ 0.67 here); measured: max |Δ| 6.7e-3, relative rms 0.9 %
    delta, peak = (got - ref).abs().max().item(), ref.abs().max().item()
    rms = ((got - ref).norm() / ref.norm()).item()
    print(f"debug PrefixLM: {sizes[0]} B fp32, {sizes[1]} B int8; max |dlogit| {delta:.2e} of {peak:.2f}")
    assert sizes[0] / sizes[1] > 3.5
    assert delta < 0.02 * peak and rms < 0.02, (delta, peak, rms)
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() > 0.95


def test_bundled_components_are_unquantized_and_load_as_before():
    for name in ("video_tokenizer", "audio_tokenizer", "judge_shapes"):
        directory = components.PRETRAINED_ROOT / name
        assert "storage" not in json.loads((directory / "config.json").read_text())
        state = load_file(str(directory / "model.safetensors"))
        assert not [k for k, v in state.items() if k.endswith(".int8_scale") or v.dtype == torch.int8]
    # (their loads compared with raw reads of the files: the bundled tests above)


def _int8_reader(tmp_path):
    torch.manual_seed(0)
    net = ShapeNet(ShapeNetConfig(channels=32, blocks=1, wide=True, trust=True)).eval()
    save_component(net, tmp_path / "r", int8=True)
    weights = tmp_path / "r" / "model.safetensors"
    state = load_file(str(weights))
    key = next(k for k in state if k.endswith(".int8_scale"))
    return tmp_path / "r", weights, state, key


INT8_BAD = {
    "scale without its tensor": (lambda s, k: s.pop(k[: -len(".int8_scale")]), "has no tensor"),
    "scale of the wrong length": (lambda s, k: s.__setitem__(k, s[k][:-1]), "one scale per row"),
    "negative scale": (lambda s, k: s.__setitem__(k, -s[k]), "finite, non-negative"),
    "int8 tensor without a scale": (lambda s, k: s.pop(k), r"is torch.int8, with no .*int8_scale"),
}


@pytest.mark.parametrize("how", sorted(INT8_BAD))
def test_corrupt_int8_storage_is_one_line_naming_the_file(tmp_path, how):
    directory, weights, state, key = _int8_reader(tmp_path)
    spoil, match = INT8_BAD[how]
    spoil(state, key)
    save_file(state, str(weights))
    with pytest.raises(UserError, match=match) as err:
        ShapeNet.from_pretrained(directory)
    assert "\n" not in str(err.value) and str(weights) in str(err.value)


def test_int8_marker_and_scales_must_agree(tmp_path):
    directory, weights, _, key = _int8_reader(tmp_path)
    cfg = directory / "config.json"
    meta = json.loads(cfg.read_text())
    cfg.write_text(json.dumps({k: v for k, v in meta.items() if k != "storage"}))
    with pytest.raises(UserError, match=f"{key}.*no .storage") as err:
        ShapeNet.from_pretrained(directory)
    assert str(weights) in str(err.value)
    cfg.write_text(json.dumps({**meta, "storage": "int4"}))
    with pytest.raises(UserError, match="unknown storage 'int4'") as err:
        ShapeNet.from_pretrained(directory)
    assert str(cfg) in str(err.value)


def test_bundled_prefix_lm_is_int8_tied_and_fits_the_bundled_tokenizers():
    from videopoet.lm.transformer import PrefixLM
    from videopoet.lm.vocab import Vocab
    from videopoet.text import MAX_TEXT_TOKENS

    meta = json.loads((components.PRETRAINED_ROOT / "transformer" / "config.json").read_text())
    assert meta["model_type"] == "prefix_lm" and meta["storage"] == "int8-weight-only"
    lm = PrefixLM.from_pretrained()
    assert lm.config == PrefixLM.from_preset("tiny").config  # the bundled default is the tiny preset
    assert lm.config.tie_embeddings and lm.output.weight is lm.tok_embeddings.weight
    video, audio = VideoTokenizer.from_pretrained(), AudioTokenizer.from_pretrained().config
    vocab = Vocab(video.config.codebook_size, audio.num_levels, audio.codebook_size)
    assert lm.config.vocab_size == vocab.size and lm.config.text_dim == 384  # MiniLM's width
    assert lm.config.text_slots == MAX_TEXT_TOKENS
