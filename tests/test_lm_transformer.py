"""Prefix LM contracts on the debug preset: the prefix-LM mask, text slots, KV-cache parity, the factorized
and tied heads, parameter counts on the meta device, save/load and input checks."""

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from videopoet.errors import UserError
from videopoet.lm.transformer import PRESETS, PrefixLM, one_query_attention, param_count, prefix_lm_mask
from videopoet.lm.vocab import VOCABS, Vocab

pytestmark = pytest.mark.usefixtures("one_thread")

V = VOCABS["debug"]
S = 4  # text slots used by these sequences
FACTORIZED = {"factorized_visual": (V.visual_start, V.visual_codebook_size)}  # 2^8 → 2 × 16
TIED = {"tie_embeddings": True}
ROOT = Path(__file__).resolve().parents[1]


def _model(**overrides) -> PrefixLM:
    torch.manual_seed(0)
    model = PrefixLM.from_preset("debug", **overrides).eval()
    with torch.no_grad():  # larger weights than the init: every token's influence well above rounding
        for p in model.parameters():
            if p.ndim > 1:
                p.mul_(4.0)
    return model


def _batch(rows=2, n_in=6, n_out=8, seed=0):
    """<bos> <task> <bot_i> <text>×S <eot_i> <bov_i> visual×n_in <eov_i> ‖ <bov_o> visual×n_out; the
    second row's prefix stops before its visual input (so the rows' prefix_len differ)."""
    g = torch.Generator().manual_seed(seed)
    head = [V.bos, V.task("video"), V.bot_i] + [V.text_slot] * S + [V.eot_i, V.bov_i]
    ids = []
    for _ in range(rows):
        vis_in = V.visual_to_lm(torch.randint(0, V.visual_codebook_size, (n_in,), generator=g)).tolist()
        vis_out = V.visual_to_lm(torch.randint(0, V.visual_codebook_size, (n_out,), generator=g)).tolist()
        ids.append(head + vis_in + [V.eov_i, V.bov_o] + vis_out)
    full = len(head) + n_in + 1
    prefix_len = torch.tensor([full, len(head)][:rows] + [full] * max(0, rows - 2))
    text = torch.randn(rows, S, PRESETS["debug"].text_dim, generator=g)
    return torch.tensor(ids), prefix_len, text


@pytest.fixture(scope="module")
def model():
    return _model()


def _changed(a, b, tol=1e-4):
    return (a - b).abs().amax(-1) > tol  # per position


def _replaced(ids, b, j):
    """ids with token (b, j) swapped for another of its kind (the next visual code, or <eos>)."""
    out, token = ids.clone(), int(ids[b, j])
    if V.block_of(token).kind == "visual":
        out[b, j] = V.visual_to_lm((V.lm_to_visual(token) + 1) % V.visual_codebook_size)
    else:
        out[b, j] = V.eos
    return out


# ------------------------------------------------------------------------------------------ the mask
def test_mask_matches_its_definition():
    q = k = torch.arange(7)
    prefix_len = torch.tensor([3, 0])
    ok = torch.ones(2, 7, dtype=torch.bool)
    mask = prefix_lm_mask(q, k, prefix_len, ok, ok)[:, 0]
    for b in range(2):
        for i in range(7):
            for j in range(7):
                assert mask[b, i, j] == (j <= i or (i < prefix_len[b] and j < prefix_len[b]))


def test_output_tokens_never_change_earlier_logits(model):
    ids, prefix_len, text = _batch(rows=1)
    base = model(ids, prefix_len, text)
    p = int(prefix_len[0])
    for j in range(p, ids.shape[1]):
        out = model(_replaced(ids, 0, j), prefix_len, text)
        assert torch.allclose(out[0, :j], base[0, :j], atol=1e-6, rtol=0), f"output {j} leaked backwards"
        assert _changed(out[0, j:], base[0, j:]).all()  # and it does move itself and everything after


def test_prefix_is_bidirectional(model):
    ids, prefix_len, text = _batch(rows=1)
    base = model(ids, prefix_len, text)
    p = int(prefix_len[0])
    first_visual = p - 1 - 6  # the visual input's first token
    for j in range(first_visual, p - 1):
        moved = _changed(model(_replaced(ids, 0, j), prefix_len, text)[0], base[0])
        assert moved.all(), f"prefix token {j} missed positions {(~moved).nonzero().flatten().tolist()}"


def test_prefix_len_zero_is_causal_and_rows_use_their_own_prefix(model):
    ids, prefix_len, text = _batch(rows=2)
    both = model(ids, prefix_len, text)
    for b in range(2):  # a row's logits do not depend on the other rows
        alone = model(ids[b : b + 1], prefix_len[b : b + 1], text[b : b + 1])
        assert torch.allclose(alone, both[b : b + 1], atol=1e-5, rtol=0)
    # row 1's prefix ends before its visual input: a visual-input token there cannot reach back
    j = int(prefix_len[1]) + 2
    out = model(_replaced(ids, 1, j), prefix_len, text)
    assert torch.allclose(out[1, :j], both[1, :j], atol=1e-6, rtol=0)
    plain = torch.tensor([[V.bos, V.bov_o] + list(V.visual_range[:6])])
    causal = model(plain, torch.tensor([0]))
    plain[0, 5] = V.visual_range.start + 9
    assert torch.allclose(model(plain, torch.tensor([0]))[0, :5], causal[0, :5], atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------ text and padding
def test_text_reaches_every_position(model):
    ids, prefix_len, text = _batch(rows=1)
    base = model(ids, prefix_len, text)
    other = text.clone()
    other[0, 2] += 1.0
    assert _changed(model(ids, prefix_len, other)[0], base[0]).all()


def test_masked_text_slots_influence_nothing(model):
    ids, prefix_len, text = _batch(rows=2)
    text_mask = torch.tensor([[True, True, False, False], [False] * S])  # row 1: no text (as for CFG)
    base = model(ids, prefix_len, text, text_mask)
    other = text.clone()
    other[0, 2:] = torch.randn(2, text.shape[-1]) * 10
    other[1] = torch.randn(S, text.shape[-1]) * 10
    assert torch.equal(model(ids, prefix_len, other, text_mask), base)
    other[0, 1] += 1.0  # an unmasked slot still counts, everywhere but in the masked slots themselves
    moved = _changed(model(ids, prefix_len, other, text_mask)[0], base[0])
    masked_slots = (ids[0] == V.text_slot).nonzero().flatten()[2:]
    assert not moved[masked_slots].any() and moved.sum() == ids.shape[1] - 2
    # a fully masked row equals the same row given any other text, fully masked
    assert torch.equal(model(ids[1:], prefix_len[1:], text[:1], text_mask[1:]), base[1:])


def test_padding_is_never_attended_to(model):
    ids, prefix_len, text = _batch(rows=1)
    ids[0, int(prefix_len[0]) - 1] = V.pad  # a pad inside the prefix, in place of <eov_i>
    base = model(ids, prefix_len, text)
    with torch.no_grad():
        model.tok_embeddings.weight[V.pad] += 3.0  # what a pad position holds cannot matter elsewhere
    try:
        out = model(ids, prefix_len, text)
    finally:
        with torch.no_grad():
            model.tok_embeddings.weight[V.pad] -= 3.0
    keep = torch.ones(ids.shape[1], dtype=torch.bool)
    keep[int(prefix_len[0]) - 1] = False
    assert torch.allclose(out[0, keep], base[0, keep], atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------ KV cache
@pytest.mark.parametrize(
    "overrides", [{}, {"n_kv_heads": 2}, FACTORIZED, TIED], ids=["mha", "gqa", "factorized", "tied"]
)
def test_kv_cache_matches_uncached_logits(overrides):
    model = _model(**overrides)
    ids, prefix_len, text = _batch(rows=2)
    text_mask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    full = model(ids, prefix_len, text, text_mask)
    model.setup_caches(max_batch=3, max_seq_len=40)
    for _ in range(2):  # a second generation reuses the caches: nothing stale may leak in
        t = int(prefix_len.max())  # one prefill holding every row's whole prefix, bidirectionally
        steps = [model(ids[:, :t], prefix_len, text, text_mask, input_pos=torch.arange(t))]
        for i in range(t, ids.shape[1]):
            steps.append(model(ids[:, i : i + 1], prefix_len, input_pos=torch.tensor([i])))
        torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)
    # the uncached path ignores caches that are set up
    torch.testing.assert_close(model(ids, prefix_len, text, text_mask), full, atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_one_query_attention_is_sdpa(dtype):
    """The decode step's attention equals SDPA's for one query per row, masked keys included."""
    torch.manual_seed(0)
    q = torch.randn(3, 4, 1, 8, dtype=dtype)
    k, v = torch.randn(2, 3, 4, 50, 8, dtype=dtype)
    mask = torch.rand(3, 1, 1, 50) < 0.6
    mask[..., 0] = True  # every row keeps a key (the model's query always keeps itself)
    want = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
    got = one_query_attention(q, k, v, mask)
    assert got.dtype == dtype and got.shape == (3, 4, 1, 8)
    tol = {} if dtype == torch.float32 else dict(atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(got.float(), want, **tol)
    other = ~mask | (mask.cumsum(-1) == 1)  # another mask gives another answer: the mask is applied
    assert not torch.allclose(one_query_attention(q, k, v, other).float(), want, atol=1e-3)


@pytest.mark.parametrize("dtype,used", [(torch.float32, True), (torch.bfloat16, False)])
def test_decode_step_attention_by_dtype(monkeypatch, dtype, used):
    """A cached one-token step takes one_query_attention in fp32 only; bf16 keeps SDPA (faster there)."""
    import videopoet.lm.transformer as tr

    calls = []
    monkeypatch.setattr(tr, "one_query_attention", lambda *a: calls.append(1) or one_query_attention(*a))
    model = _model().to(dtype)
    ids, prefix_len, text = _batch(rows=1)
    model.setup_caches(max_batch=1, max_seq_len=40, dtype=dtype)
    t = int(prefix_len.max())
    model(ids[:, :t], prefix_len, text.to(dtype), input_pos=torch.arange(t))
    assert not calls  # the prefill has many queries: SDPA
    model(ids[:, t : t + 1], prefix_len, input_pos=torch.tensor([t]))
    assert bool(calls) == used


def test_cache_setup_limits():
    model = _model()
    with pytest.raises(ValueError, match="setup_caches"):
        model.setup_caches(1, PRESETS["debug"].max_seq_len + 1)
    model.setup_caches(2, 32, dtype=torch.float64)
    ids, prefix_len, text = _batch(rows=2)
    t = int(prefix_len.max())
    out = model(ids[:, :t], prefix_len, text, input_pos=torch.arange(t))
    assert torch.allclose(out, model(ids[:, :t], prefix_len, text), atol=1e-4)


# ------------------------------------------------------------------------------------------ factorized head
def test_factorized_head_recomposes_visual_ids():
    model = _model(**FACTORIZED)
    head = model.output
    n = head.n
    assert n * n == V.visual_codebook_size
    idx = torch.arange(V.visual_codebook_size)
    assert torch.equal((idx // n) * n + idx % n, idx)  # (high, low) ↔ index, every visual id once
    ids, prefix_len, text = _batch(rows=2)
    logp = model(ids, prefix_len, text)  # (B, L, V): normalised log-probs
    assert logp.shape == (2, ids.shape[1], V.size)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(logp.shape[:2]), atol=1e-5, rtol=0)
    h = model.hidden_states(ids, prefix_len, text)  # (B, L, D)
    rest, high, low = (torch.log_softmax(t, -1) for t in head.factors(h))
    composed = head(h)
    assert torch.equal(composed, logp)
    visual = composed[..., V.visual_range.start : V.visual_range.stop]
    expected = rest[..., -1:] + high[..., idx // n] + low[..., idx % n]
    torch.testing.assert_close(visual, expected, atol=1e-5, rtol=0)
    outside = torch.cat([composed[..., : V.visual_start], composed[..., V.audio_start :]], -1)
    torch.testing.assert_close(outside, rest[..., :-1], atol=1e-6, rtol=0)


def test_factorized_head_saves_parameters():
    paper = PRESETS["paper-300m"]
    flat = dataclasses.replace(paper, factorized_visual=None)
    saved = param_count(flat) - param_count(paper)
    assert saved == paper.dim * (2**18 - 1 - 2 * 512)  # D·N² gone; 2·D·N and one "visual" class added


# ------------------------------------------------------------------------------------------ sizes
def test_param_counts_on_the_meta_device(capsys):
    counts = {name: (param_count(name), param_count(name, include_vocab=False)) for name in PRESETS}
    with capsys.disabled():
        for name, (total, blocks) in counts.items():
            print(f"\n{name:>11}: {total / 1e6:9.2f}M parameters, {blocks / 1e6:9.2f}M outside the vocab")
    assert 100e3 < counts["debug"][0] < 1e6  # "a few hundred K"
    assert counts["tiny"][0] == 14_013_312  # docs/components.md and docs/pretrained.md state it
    for name, size in (("paper-300m", 300e6), ("paper-1b", 1e9), ("paper-8b", 8e9)):
        assert 0.95 < counts[name][1] / size < 1.05, name  # the paper's sizes, on the blocks alone
    tiny = PRESETS["tiny"]
    assert (tiny.dim, tiny.n_layers, tiny.n_heads, tiny.vocab_size) == (384, 6, 6, VOCABS["tiny"].size)
    assert tiny.tie_embeddings and tiny.factorized_visual is None
    assert PRESETS["paper-8b"].vocab_size == VOCABS["paper"].size
    # a 17-frame 128×128 clip with its audio and 64 text slots fits (≈1,800 tokens)
    assert tiny.max_seq_len >= tiny.text_slots + 1280 + 4 * 106 + 20


def test_debug_preset_matches_a_direct_count():
    model = _model()
    assert sum(p.numel() for p in model.parameters()) == param_count("debug")
    cfg = PRESETS["debug"]
    per_block = 4 * cfg.dim**2 + 3 * cfg.dim * cfg.ffn_dim + 2 * cfg.dim
    expected = 2 * cfg.vocab_size * cfg.dim + cfg.text_dim * cfg.dim + cfg.n_layers * per_block + cfg.dim
    assert param_count("debug") == expected
    tied = dataclasses.replace(cfg, **TIED)
    assert param_count(tied) == expected - cfg.vocab_size * cfg.dim  # the head's matrix is the embedding
    assert param_count(tied, include_vocab=False) == param_count("debug", include_vocab=False)


# ------------------------------------------------------------------------------------------ tied head
def test_tied_head_is_the_embedding():
    model = _model(**TIED)
    assert model.output.weight is model.tok_embeddings.weight
    assert sum(p is model.tok_embeddings.weight for p in model.parameters()) == 1
    state = model.state_dict()
    assert not any(k.startswith("output.") for k in state)
    assert len({t.data_ptr() for t in state.values()}) == len(state)  # no tensor under two names
    ids, prefix_len, text = _batch(rows=1)
    h = model.hidden_states(ids, prefix_len, text)
    assert torch.equal(model(ids, prefix_len, text), h @ model.tok_embeddings.weight.T)
    # the embedding learns from both ends: its rows of tokens absent from the input still get a gradient
    model(ids, prefix_len, text).logsumexp(-1).sum().backward()
    absent = torch.ones(V.size, dtype=torch.bool)
    absent[ids.flatten()] = False
    assert model.tok_embeddings.weight.grad[absent].abs().sum(-1).gt(0).all()
    with pytest.raises(ValueError, match="flat head"):
        PrefixLM.from_preset("debug", **TIED, **FACTORIZED)


@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_tied_save_load_writes_the_matrix_once(tmp_path, int8):
    from safetensors import safe_open

    from videopoet.components import dequantize_int8, quantize_int8

    model = _model(**TIED)
    model.save_pretrained(tmp_path / "lm", int8=int8)
    with safe_open(str(tmp_path / "lm" / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    assert "tok_embeddings.weight" in names and not any(n.startswith("output.") for n in names)
    loaded = PrefixLM.from_pretrained(tmp_path / "lm")
    assert loaded.config == model.config and loaded.output.weight is loaded.tok_embeddings.weight
    if int8:  # what the file holds is the rounded matrices: the head must use the same rounded embedding
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim >= 2 and p.numel() >= 4096:
                    p.copy_(dequantize_int8(*quantize_int8(p)))
    ids, prefix_len, text = _batch(rows=2)
    with torch.no_grad():
        assert torch.equal(loaded(ids, prefix_len, text), model(ids, prefix_len, text))


@pytest.mark.slow
def test_tied_lm_trains_on_two_ranks_like_one(tmp_path):
    """FSDP2 (gloo, fp32) on configs/lm_debug.toml with model.tie_embeddings=true: the losses of one
    process. Slow (two launches of the CLI); tests/test_lm_train.py runs the untied case by default."""
    from cli_train import train_cli
    from videopoet.eval.report import read_jsonl

    sets = ["model.tie_embeddings=true", "max_steps=3", "eval_every=0", "ckpt_every=0"]
    runs = {}
    for ranks in (1, 2):
        out = tmp_path / f"r{ranks}"
        proc = train_cli("lm", ROOT / "configs" / "lm_debug.toml", out, sets, ranks=ranks)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[ranks] = [r for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]
        final = PrefixLM.from_pretrained(out / "final")
        assert final.config.tie_embeddings and final.output.weight is final.tok_embeddings.weight
    assert len(runs[1]) == len(runs[2]) == 3
    for a, b in zip(runs[1], runs[2]):
        assert a["task"] == b["task"] and a["data_signature"] == b["data_signature"]
        assert abs(a["loss"] - b["loss"]) <= 1e-5, (a["step"], a["loss"], b["loss"])


# ------------------------------------------------------------------------------------------ save / load
@pytest.mark.parametrize("overrides", [{}, FACTORIZED, TIED], ids=["flat", "factorized", "tied"])
def test_save_load_identical_logits(tmp_path, overrides):
    pytest.importorskip("videopoet.components")
    model = _model(**overrides)
    ids, prefix_len, text = _batch(rows=2)
    model.save_pretrained(tmp_path / "lm")
    loaded = PrefixLM.from_pretrained(tmp_path / "lm")
    assert loaded.config == model.config
    assert torch.equal(loaded(ids, prefix_len, text), model(ids, prefix_len, text))
    model.setup_caches(1, 16)  # caches are inference state: never saved
    assert not any("cache" in k for k in model.state_dict())


@pytest.mark.parametrize("int8", [False, True], ids=["float", "int8"])
def test_files_with_separate_w1_w3_load_as_w13(tmp_path, int8):
    """Weights written before the SwiGLU's two input matrices were stacked (the bundled file's layout)."""
    from safetensors.torch import load_file, save_file

    model = _model()
    ids, prefix_len, text = _batch(rows=2)
    folder = model.save_pretrained(tmp_path / "lm", int8=int8)
    state, old = load_file(str(folder / "model.safetensors")), {}
    for key, value in state.items():
        if ".w13." in key:  # int8: the matrix and its per-row scales split alike
            old[key.replace(".w13.", ".w1.")], old[key.replace(".w13.", ".w3.")] = value.chunk(2)
        else:
            old[key] = value
    assert any(".w1." in k for k in old) and not any(".w13." in k for k in old)
    save_file(old, str(folder / "model.safetensors"))
    # float: the model itself; int8: the stacked int8 file of the same weights
    reference = (
        PrefixLM.from_pretrained(model.save_pretrained(tmp_path / "new", int8=True)) if int8 else model
    )
    out = PrefixLM.from_pretrained(folder)(ids, prefix_len, text)
    assert torch.equal(out, reference(ids, prefix_len, text))


# ------------------------------------------------------------------------------------------ bad inputs
def test_bad_inputs_raise(model):
    ids, prefix_len, text = _batch(rows=2)
    out_of_vocab = ids.clone()
    out_of_vocab[1, -1] = V.size
    cases = [
        (lambda: model(ids.float(), prefix_len, text), "ids must be a long"),
        (lambda: model(ids[0], prefix_len, text), "ids must have shape"),
        (lambda: model(out_of_vocab, prefix_len, text), "vocabulary"),
        (lambda: model(ids, prefix_len.int(), text), "prefix_len must be a long"),
        (lambda: model(ids, prefix_len[:1], text), "prefix_len must have shape"),
        (lambda: model(ids, prefix_len + 100, text), "prefix_len must lie"),
        (lambda: model(ids, -prefix_len, text), "prefix_len must lie"),
        (lambda: model(ids, prefix_len), "no text was given"),
        (lambda: model(ids, prefix_len, text[:, :3]), "exactly S = 3"),
        (lambda: model(ids, prefix_len, text[..., :10]), "text must have shape"),
        (lambda: model(ids, prefix_len, text.long()), "text must be a float"),
        (lambda: model(ids, prefix_len, text, torch.ones(2, S)), "text_mask must be bool"),
        (lambda: model(ids, prefix_len, None, torch.ones(2, S, dtype=torch.bool)), "text_mask given"),
        (lambda: model(ids, torch.tensor([2, 2]), text), "inside the prefix"),
        (lambda: model(ids[:, 9:], prefix_len.clamp(max=3), text), "text without text slots"),
        (lambda: model(ids, prefix_len, text, input_pos=torch.arange(ids.shape[1])), "setup_caches"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    too_long = torch.full((1, PRESETS["debug"].max_seq_len + 1), V.bos)
    with pytest.raises(ValueError, match="longer than max_seq_len"):
        model(too_long, torch.tensor([0]))
    no_text = _model(text_slots=0)
    with pytest.raises(ValueError, match="text_slots=0"):
        no_text(ids, prefix_len, text)
    with pytest.raises(UserError, match="unknown prefix LM preset"):
        PrefixLM.from_preset("huge")
    with pytest.raises(ValueError, match="n_kv_heads"):
        PrefixLM.from_preset("debug", n_kv_heads=3)
    with pytest.raises(ValueError, match="model.n_heads"):  # a config file's table, checked per key
        PrefixLM.from_preset("debug", n_heads="four")
    with pytest.raises(ValueError, match="unknown key"):
        PrefixLM.from_preset("debug", n_layer=3)


def test_model_table_from_a_config_reaches_the_model_config():
    """`--set model.X=none` clears an optional field; a TOML list becomes the tuple the config holds."""
    from videopoet.config import load_config
    from videopoet.train.lm import LMTrainConfig

    sets = ["model.n_kv_heads=none", f"model.factorized_visual=[{V.visual_start}, {V.visual_codebook_size}]"]
    cfg = load_config(LMTrainConfig, ROOT / "configs" / "lm_debug.toml", sets)
    assert cfg.model["n_kv_heads"] == "none"  # a free table: the model config decides what it means
    mcfg = PrefixLM.from_preset("debug", **(cfg.model | {"vocab_size": V.size})).config
    assert mcfg.n_kv_heads is None and mcfg.factorized_visual == FACTORIZED["factorized_visual"]
    cleared = load_config(LMTrainConfig, None, ["preset='paper-300m'", "model.factorized_visual=none"])
    with torch.device("meta"):
        assert PrefixLM.from_preset("paper-300m", **cleared.model).config.factorized_visual is None


def test_bad_cached_calls_raise():
    model = _model()
    ids, prefix_len, text = _batch(rows=2)
    model.setup_caches(max_batch=2, max_seq_len=24)
    t = int(prefix_len.max())
    rows, lens = torch.cat([ids] * 2), torch.cat([prefix_len] * 2)
    cases = [
        (lambda: model(ids[:, : t - 2], prefix_len, text, input_pos=torch.arange(t - 2)), "whole prefix"),
        (lambda: model(ids[:, 3:t], prefix_len, None, input_pos=torch.arange(3, t)), "start at position 0"),
        (lambda: model(ids[:, :2], prefix_len, None, input_pos=torch.tensor([30, 31])), "inside the cache"),
        (lambda: model(ids[:, :2], prefix_len, None, input_pos=torch.tensor([20, 22])), "consecutive"),
        (lambda: model(rows[:, t : t + 1], lens, None, input_pos=torch.tensor([t])), "max_batch"),
        (lambda: model(ids[:, :1], prefix_len, None, input_pos=torch.tensor([0.0])), "must be a long"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_meta_model_allocates_nothing():
    with torch.device("meta"):
        model = PrefixLM(PRESETS["paper-8b"])
    assert all(p.is_meta for p in model.parameters())
    assert math.isclose(sum(p.numel() for p in model.parameters()), param_count("paper-8b"))
    assert Vocab.text_slot == V.text_slot


def test_int8_save_loads_close_to_the_float_model(tmp_path):
    torch.manual_seed(0)
    model = PrefixLM.from_preset("debug").eval()
    model.save_pretrained(tmp_path / "q", int8=True)
    loaded = PrefixLM.from_pretrained(tmp_path / "q")
    ids = torch.randint(30, model.config.vocab_size, (1, 12))
    prefix = torch.tensor([4])
    with torch.no_grad():
        a, b = model(ids, prefix), loaded(ids, prefix)
    assert (a - b).abs().max() < 0.02 * a.abs().max()
    assert json.loads((tmp_path / "q" / "config.json").read_text())["storage"] == "int8-weight-only"
