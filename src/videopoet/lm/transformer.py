"""The VideoPoet prefix LM: a decoder-only transformer, bidirectional over its prefix, causal after it.

Dimension key: B batch, L tokens of this call, C cached positions (the KV cache length), D width,
V vocabulary, S text slots (text tokens), E text embedding width, H attention heads, G key/value heads,
K head width, F SwiGLU hidden width, N one visual factor's size (√ visual codebook).

One sequence per row (ids from lm/vocab.py; the task builders decide which parts are present)::

    <bos> <task:…> … <bot_i> <text> × S <eot_i> <bov_i> visual in <eov_i> … ‖ <bov_o> visual out … <eos>
    └──────────────────────── prefix: prefix_len[b] tokens ───────────────┘ └── outputs ──────────────┘

- Prefix-LM mask: position q attends to key k when k ≤ q or k < prefix_len[b], so the prefix sees itself
  both ways and every output sees the whole prefix and the outputs before it; prefix_len = 0 is a plain
  causal LM.
- Text slots: the ids carry the placeholder ``<text>`` (Vocab.text_slot) once per text token, inside the
  prefix (the builders put them right after ``<bot_i>``). ``text`` (B, S, E) holds per-token embeddings of
  a frozen encoder (MiniLM 384-d by default, T5-XL 2048-d in the paper); one linear layer projects them to
  D and they replace the placeholders' embeddings in order, so every row needs exactly S placeholders.
  ``text_mask`` (B, S) marks real tokens; a masked slot keeps the placeholder's own embedding and, like a
  ``<pad>`` position, is neither attended to nor attends to anything but itself (so its row of the
  softmax stays finite). A row without text (classifier-free guidance) keeps its slots, all masked.
- Positions: RoPE on the sequence index (text slots included), computed on the fly, so max_seq_len costs
  no parameters; it bounds the sequences the model accepts (and the KV cache).
- Generation (a sampler outside this file): ``setup_caches(max_batch, max_seq_len)``, then
  ``forward(ids[:, :T], prefix_len, text, text_mask, input_pos=arange(T))`` once for a chunk holding the
  whole prefix (bidirectional prefill; T ≥ every row's prefix_len), then one token at a time with
  ``input_pos = tensor([T])``, ``tensor([T + 1])``, …, each attending to every cached position before it.
  A call that starts inside a row's prefix must start at 0 and cover the whole prefix: bidirectional
  attention cannot be prefilled in chunks.
- Input checks (ValueError) run eagerly and are skipped under torch.compile, where they would break the
  graph (they read values back from the device).

Nothing but the forward pass lives here: losses, training, sampling and guidance live elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from videopoet.components import Pretrained
from videopoet.config import override_fields
from videopoet.errors import UserError
from videopoet.lm.vocab import VOCABS, Vocab

FFN_ROUND = 64  # SwiGLU hidden width is rounded up to a multiple of this (tensor-core friendly)
NORM_EPS = 1e-5


@dataclass(kw_only=True)
class PrefixLMConfig:
    vocab_size: int = VOCABS["tiny"].size  # V: size of the id space (lm/vocab.py)
    dim: int = 384  # D: residual stream width
    n_layers: int = 8  # transformer blocks
    n_heads: int = 6  # H: query heads; head width K = dim / n_heads
    n_kv_heads: int | None = None  # G: key/value heads (grouped-query attention); None = n_heads
    ffn_mult: float = 8 / 3  # SwiGLU hidden width F ≈ ffn_mult · D (8/3 keeps 3 matrices ≈ a 4× MLP)
    max_seq_len: int = 4096  # longest sequence accepted (RoPE has no table: costs no parameters)
    text_dim: int = 384  # E: width of the text encoder's per-token embeddings
    text_slots: int = 64  # most text tokens per sequence; 0 = no text conditioning
    rope_base: float = 10_000.0  # RoPE wavelength base
    factorized_visual: tuple[int, int] | None = None  # (first visual id, visual codebook size): 2 √-heads
    tie_embeddings: bool = False  # the flat head reuses the input embedding matrix (V · D fewer weights)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "dim", "n_layers", "n_heads", "max_seq_len", "text_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.text_slots < 0 or self.text_slots > self.max_seq_len:
            raise ValueError(f"text_slots must lie in [0, max_seq_len], got {self.text_slots}")
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError(f"dim={self.dim} must split into n_heads={self.n_heads} heads of even width")
        if self.n_heads % self.kv_heads:
            raise ValueError(f"n_kv_heads={self.n_kv_heads} must divide n_heads={self.n_heads}")
        if self.factorized_visual is not None:
            if self.tie_embeddings:
                raise ValueError("tie_embeddings needs the flat head: set factorized_visual=None")
            self.factorized_visual = tuple(self.factorized_visual)
            start, size = self.factorized_visual
            if math.isqrt(size) ** 2 != size or start < 0 or start + size > self.vocab_size:
                raise ValueError(
                    f"factorized_visual=(start {start}, size {size}) needs a square size (2^(2k)) "
                    f"inside the vocabulary [0, {self.vocab_size})"
                )

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def ffn_dim(self) -> int:
        return -(-round(self.ffn_mult * self.dim) // FFN_ROUND) * FFN_ROUND


def _visual_factorization(vocab: Vocab) -> tuple[int, int]:
    return (vocab.visual_start, vocab.visual_codebook_size)


# Sizes: `param_count(name)` builds a preset on the meta device and counts it (numbers live in the docs).
# The paper's 300M / 1B / 8B are matched on the transformer blocks alone (param_count(..., include_vocab=
# False)): at 2^18 visual codes the input embedding is 0.27 B parameters at width 1024, nearly a 300M
# model by itself. The paper presets predict visual ids through the factorized head (two 512-way heads);
# pass factorized_visual=None for the flat 266k-way head. Their text_dim is T5-XL's (2048).
PRESETS: dict[str, PrefixLMConfig] = {
    # Seconds on a CPU: the debug tokenizers' vocabulary (2^8 visual, 4 × 64 audio), MiniLM text width.
    "debug": PrefixLMConfig(vocab_size=VOCABS["debug"].size, dim=64, n_layers=2, n_heads=4),
    # The bundled default: width 384 × 6 blocks over the bundled tokenizers' 2^12 + 4 × 1024 codes, the
    # head tied to the embedding so that int8 storage fits the package's size budget (≈14 MB). 4,096
    # positions hold every 17-frame 128×128 task (the longest, stylization with a first frame: ≈2.9k),
    # 17-frame portrait tasks with one visual input (T2V + audio ≈2.8k, I2V + audio ≈3.2k) and 41-frame
    # 128×128 T2V with its audio (64 + 2,816 + 1,024 + specials ≈ 3.9k); not 41-frame portrait clips
    # (4,928 tokens of video alone) nor portrait in/outpainting and stylization (two 2,240-token visual
    # segments).
    "tiny": PrefixLMConfig(
        vocab_size=VOCABS["tiny"].size, dim=384, n_layers=6, n_heads=6, tie_embeddings=True
    ),
    # The paper's ablation size; 8,192 positions hold a 41-frame portrait clip with text and audio.
    "paper-300m": PrefixLMConfig(
        vocab_size=VOCABS["paper"].size,
        dim=1024,
        n_layers=24,
        n_heads=16,
        max_seq_len=8192,
        text_dim=2048,
        factorized_visual=_visual_factorization(VOCABS["paper"]),
    ),
    "paper-1b": PrefixLMConfig(
        vocab_size=VOCABS["paper"].size,
        dim=2048,
        n_layers=20,
        n_heads=16,
        max_seq_len=8192,
        text_dim=2048,
        factorized_visual=_visual_factorization(VOCABS["paper"]),
    ),
    # LLaMA-3-8B's block shapes (grouped-query attention with 8 KV heads keeps the KV cache small).
    "paper-8b": PrefixLMConfig(
        vocab_size=VOCABS["paper"].size,
        dim=4096,
        n_layers=36,
        n_heads=32,
        n_kv_heads=8,
        ffn_mult=3.5,
        max_seq_len=8192,
        text_dim=2048,
        factorized_visual=_visual_factorization(VOCABS["paper"]),
    ),
}


# ============================================================================================ layers
class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = NORM_EPS):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()  # the mean square in fp32: bf16 activations would lose the small ones
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rope_angles(positions: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (L,) → cos, sin (L, K/2) in fp32: channel pair i turns by pos · base^(−2i/K)."""
    exponents = torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim
    angles = positions.float()[:, None] * base ** -exponents[None]  # (L, K/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive channel pairs of x (B, L, H, K) by the angles of its positions."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)  # (B, L, H, K/2) each
    cos, sin = cos[None, :, None], sin[None, :, None]  # (1, L, 1, K/2)
    rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (B, L, H, K/2, 2)
    return rotated.flatten(-2).type_as(x)  # (B, L, H, K)


def prefix_lm_mask(
    q_pos: torch.Tensor,
    k_pos: torch.Tensor,
    prefix_len: torch.Tensor,
    key_ok: torch.Tensor,
    query_ok: torch.Tensor,
) -> torch.Tensor:
    """Which keys each query may attend to: bool (B, 1, Lq, Lk), broadcast over heads.

    q_pos (Lq,) and k_pos (Lk,) are sequence positions, prefix_len (B,), key_ok (B, Lk) and query_ok
    (B, Lq) are False at <pad> and masked text slots. Every query keeps itself: a row of the softmax with
    no key at all would be NaN.
    """
    causal = k_pos[None, :] <= q_pos[:, None]  # (Lq, Lk)
    in_prefix = k_pos[None, None, :] < prefix_len[:, None, None]  # (B, 1, Lk)
    allowed = (causal[None] | in_prefix) & key_ok[:, None, :] & query_ok[:, :, None]  # (B, Lq, Lk)
    itself = k_pos[None, :] == q_pos[:, None]  # (Lq, Lk)
    return (allowed | itself[None])[:, None]  # (B, 1, Lq, Lk)


class KVCache(nn.Module):
    """Preallocated keys and values of one attention layer (gpt-fast): (max_batch, G, C, K) each."""

    def __init__(self, max_batch: int, max_seq_len: int, n_kv_heads: int, head_dim: int, dtype, device):
        super().__init__()
        shape = (max_batch, n_kv_heads, max_seq_len, head_dim)
        # not persistent: a cache is inference state, never part of saved weights
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """Write this call's k, v (B, G, L, K) at positions input_pos (L,); return the rows' caches
        (B, G, C, K)."""
        k_all, v_all = self.k_cache[: k.shape[0]], self.v_cache[: k.shape[0]]
        k_all.index_copy_(2, input_pos, k.to(k_all.dtype))
        v_all.index_copy_(2, input_pos, v.to(v_all.dtype))
        return k_all, v_all


class Attention(nn.Module):
    def __init__(self, cfg: PrefixLMConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.wqkv = nn.Linear(cfg.dim, (cfg.n_heads + 2 * cfg.kv_heads) * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)
        self.kv_cache: KVCache | None = None

    def forward(self, x, rope, mask, input_pos=None) -> torch.Tensor:
        b, n, _ = x.shape
        hk, gk = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        q, k, v = self.wqkv(x).split([hk, gk, gk], dim=-1)
        q = apply_rope(q.view(b, n, self.n_heads, self.head_dim), *rope)  # (B, L, H, K)
        k = apply_rope(k.view(b, n, self.n_kv_heads, self.head_dim), *rope)  # (B, L, G, K)
        v = v.view(b, n, self.n_kv_heads, self.head_dim)  # (B, L, G, K)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H|G, L, K)
        if input_pos is not None:
            k, v = self.kv_cache.update(input_pos, k, v)  # (B, G, C, K)
            k, v = k.to(q.dtype), v.to(q.dtype)
        if self.n_kv_heads != self.n_heads:  # each group of H/G query heads shares one KV head
            k = k.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)  # (B, H, C|L, K)
            v = v.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)
        if n == 1 and input_pos is not None and q.dtype == torch.float32:  # an fp32 decode step
            y = one_query_attention(q, k, v, mask)  # (B, H, 1, K)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, L, K)
        return self.wo(y.transpose(1, 2).reshape(b, n, hk))  # (B, L, D)


def one_query_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Attention of one query per row, q (B, H, 1, K), over the cache k, v (B, H, C, K) with a bool mask
    (B, 1, 1, C): what F.scaled_dot_product_attention computes, as two matrix-vector products around an
    fp32 softmax. In fp32, SDPA's GPU kernel (memory-efficient) tiles over queries, so one query leaves most
    of the GPU idle while a few blocks walk all C keys; these ops spread over the keys. In bf16
    SDPA's step measured faster, so Attention calls this for fp32 only (docs/generation.md, "Speed")."""
    scores = (q @ k.transpose(-2, -1)).float() * q.shape[-1] ** -0.5  # (B, H, 1, C)
    weights = torch.softmax(scores.masked_fill(~mask, -math.inf), dim=-1)
    return weights.to(v.dtype) @ v  # (B, H, 1, K)


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) · w3 x), w1 and w3 stacked as one matrix w13 (one product, not two)."""

    def __init__(self, cfg: PrefixLMConfig):
        super().__init__()
        self.w13 = nn.Linear(cfg.dim, 2 * cfg.ffn_dim, bias=False)
        self.w2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w13(x).chunk(2, dim=-1)  # (B, L, F) each
        return self.w2(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: PrefixLMConfig):
        super().__init__()
        self.attention_norm = RMSNorm(cfg.dim)
        self.attention = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim)
        self.feed_forward = FeedForward(cfg)

    def forward(self, x, rope, mask, input_pos=None) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), rope, mask, input_pos)
        return x + self.feed_forward(self.ffn_norm(x))


class FactorLogits(NamedTuple):
    rest: torch.Tensor  # (B, L, V − N² + 1): the ids outside the visual block in id order, then "visual"
    high: torch.Tensor  # (B, L, N): visual index // N (the upper half of the LFQ bits)
    low: torch.Tensor  # (B, L, N): visual index % N (the lower half)


class FactorizedHead(nn.Module):
    """Output head that predicts a visual id as two independent √-sized factors (MAGVIT-v2's token
    factorization, spec §5: 2^18 → 2 × 512).

    log p(visual index i) = log p(visual | rest head) + log p(i // N | high) + log p(i % N | low); every
    other id takes its log-prob from the rest head (a softmax over the non-visual ids and one "visual"
    class), so the V log-probs form one normalised distribution.

    Trade-off: the visual part costs D · 2N weights instead of D · N² (at D = 1024 and 2^18 codes: 1M
    instead of 268M, and as many fewer FLOPs per position), but the two halves of one token are sampled
    independently given the context: the model cannot express a correlation between a token's high and
    low bits (e.g. "code 7 or code 512·3 + 9 but nothing in between") except through the context.
    """

    def __init__(self, dim: int, vocab_size: int, visual_start: int, visual_size: int):
        super().__init__()
        self.visual_start, self.visual_size, self.n = visual_start, visual_size, math.isqrt(visual_size)
        self.rest = nn.Linear(dim, vocab_size - visual_size + 1, bias=False)
        self.high = nn.Linear(dim, self.n, bias=False)
        self.low = nn.Linear(dim, self.n, bias=False)

    def factors(self, h: torch.Tensor) -> FactorLogits:
        """Hidden states (B, L, D) → the three unnormalised factors (for a loss that never builds V)."""
        return FactorLogits(self.rest(h), self.high(h), self.low(h))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, L, D) → log-probs (B, L, V) (valid logits: their softmax is themselves)."""
        rest, high, low = (F.log_softmax(t.float(), dim=-1) for t in self.factors(h))
        visual = rest[..., -1:, None] + high[..., :, None] + low[..., None, :]  # (B, L, N, N)
        visual = visual.flatten(-2)  # (B, L, N²): index = high · N + low
        s = self.visual_start
        return torch.cat([rest[..., :s], visual, rest[..., s:-1]], dim=-1)  # (B, L, V)


class TiedHead(nn.Module):
    """Flat output head whose weight is the input embedding matrix (V, D): logits = h · Eᵀ.

    The embedding is held in a tuple, not registered as a submodule, so the matrix has one name
    (``tok_embeddings.weight``): the state dict holds it once (safetensors refuses two names for one
    tensor, int8 storage quantizes it once), parameter counts and optimizers see it once, loading a file
    re-ties by construction, and FSDP2 shards it once with the root module, which owns both uses. The
    weight is looked up at each call because FSDP2 swaps the embedding's parameter between its sharded
    and gathered forms.
    """

    def __init__(self, embedding: nn.Embedding):
        super().__init__()
        self._embedding = (embedding,)

    @property
    def weight(self) -> torch.Tensor:
        return self._embedding[0].weight

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.weight)  # (B, L, V)

    def extra_repr(self) -> str:
        return "weight=tok_embeddings.weight"


# ============================================================================================ model
class PrefixLM(Pretrained, nn.Module):
    """ids (B, L) + prefix_len (B,) [+ text (B, S, E), text_mask (B, S)] → logits (B, L, V)."""

    MODEL_TYPE = "prefix_lm"
    CONFIG = PrefixLMConfig
    BUNDLED = "transformer"
    DESCRIPTION = "a prefix LM"

    def __init__(self, config: PrefixLMConfig):
        super().__init__()
        self.config = cfg = config
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.text_proj = nn.Linear(cfg.text_dim, cfg.dim, bias=False) if cfg.text_slots else None
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim)
        if cfg.tie_embeddings:
            self.output = TiedHead(self.tok_embeddings)
        elif cfg.factorized_visual is None:
            self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        else:
            self.output = FactorizedHead(cfg.dim, cfg.vocab_size, *cfg.factorized_visual)
        # set by setup_caches: per row and cached position, may that key be attended to (False at <pad>
        # and masked text slots); not persistent, like the KV caches
        self.register_buffer("cache_key_ok", None, persistent=False)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # GPT-2: N(0, 0.02), residual output projections shrunk by √(2 · layers) so the stream's variance
        # does not grow with depth
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, Attention | FeedForward):
            out = module.wo if isinstance(module, Attention) else module.w2
            nn.init.normal_(out.weight, std=0.02 / math.sqrt(2 * self.config.n_layers))

    # ---------------------------------------------------------------------------------------- IO
    @staticmethod
    def upgrade_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Tensors keyed by parameter name, written before w1 and w3 were stacked (weights, or one kind
        of optimizer state): each block's two → its w13, in w1's place. A 0-d pair (an optimizer's step
        count) is one number for both: w1's is kept."""
        out = {}
        for name, t in state.items():
            if name.endswith(".feed_forward.w1.weight") and name.replace(".w1.", ".w3.") in state:
                w3 = state[name.replace(".w1.", ".w3.")]
                out[name.replace(".w1.", ".w13.")] = t if t.dim() == 0 else torch.cat([t, w3])  # (2F, D)
            elif not (name.endswith(".feed_forward.w3.weight") and name.replace(".w3.", ".w1.") in state):
                out[name] = t
        return out

    @classmethod
    def from_preset(cls, name: str, **overrides) -> PrefixLM:
        """Preset ``name`` with some fields replaced. ``overrides`` may come from a config file's free
        ``model`` table: each is checked against PrefixLMConfig (ConfigError, a ValueError, names the
        key) and converted as a TOML value must be ("none" → None for optional fields, lists → tuples)."""
        if name not in PRESETS:
            raise UserError(f"unknown prefix LM preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(override_fields(PRESETS[name], overrides))

    # ---------------------------------------------------------------------------------------- cache
    def setup_caches(self, max_batch: int, max_seq_len: int | None = None, dtype: torch.dtype | None = None):
        """Preallocate every layer's KV cache for ``max_batch`` rows × ``max_seq_len`` positions (default
        the config's) on the model's device, in ``dtype`` (default the weights')."""
        max_seq_len = self.config.max_seq_len if max_seq_len is None else max_seq_len
        if not 1 <= max_seq_len <= self.config.max_seq_len or max_batch < 1:
            raise ValueError(
                f"setup_caches needs max_batch ≥ 1 and 1 ≤ max_seq_len ≤ {self.config.max_seq_len}, "
                f"got max_batch={max_batch}, max_seq_len={max_seq_len}"
            )
        weight = self.tok_embeddings.weight
        dtype = dtype or weight.dtype
        cfg = self.config
        for layer in self.layers:
            layer.attention.kv_cache = KVCache(
                max_batch, max_seq_len, cfg.kv_heads, cfg.head_dim, dtype, weight.device
            )
        self.cache_key_ok = torch.ones(max_batch, max_seq_len, dtype=torch.bool, device=weight.device)

    # ---------------------------------------------------------------------------------------- forward
    def forward(
        self,
        ids: torch.Tensor,
        prefix_len: torch.Tensor,
        text: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        *,
        input_pos: torch.Tensor | None = None,
        rows: torch.Tensor | None = None,
    ) -> torch.Tensor | FactorLogits:
        """Logits (B, L, V) (normalised log-probs with the factorized head).

        ``input_pos`` None: the whole sequence at positions 0 … L−1, no cache. Given (L,): the positions
        of these tokens; keys and values go into the caches (setup_caches) and every query attends over
        the cache (see the module docstring for the prefill / decode order).

        ``rows`` (B, L) bool: the head runs on those positions only (a training loss needs the ones that
        predict a target), returning logits (R, V) for the R selected rows in row-major order, or the
        factorized head's unnormalised ``factors`` (R, ·), never its (R, V) log-probs. It is an argument
        of forward, not a method of its own, so that FSDP2's hooks on the root (gathering the head and
        the tied embedding) and ``torch.compile(model)`` cover it like any forward call.
        """
        h = self.hidden_states(ids, prefix_len, text, text_mask, input_pos=input_pos)  # (B, L, D)
        if rows is None:
            return self.output(h)
        if rows.dtype != torch.bool or rows.shape != ids.shape:
            raise ValueError(f"rows must be a bool mask shaped like ids {tuple(ids.shape)}, got {rows.shape}")
        h = h[rows]  # (R, D)
        return self.output.factors(h) if isinstance(self.output, FactorizedHead) else self.output(h)

    def hidden_states(self, ids, prefix_len, text=None, text_mask=None, *, input_pos=None) -> torch.Tensor:
        """The normalised last hidden states (B, L, D) that ``self.output`` turns into logits (a loss on
        the factorized head's ``factors`` needs them: its (B, L, V) log-probs are large at 2^18)."""
        if not torch.compiler.is_compiling():
            self._check_inputs(ids, prefix_len, text, text_mask, input_pos)
        x, ok = self._embed(ids, text, text_mask)  # (B, L, D), (B, L)
        if input_pos is None:
            q_pos = k_pos = torch.arange(ids.shape[1], device=ids.device)  # (L,)
            mask = prefix_lm_mask(q_pos, k_pos, prefix_len, ok, ok)  # (B, 1, L, L)
        else:
            q_pos, k_pos = input_pos, torch.arange(self.cache_key_ok.shape[1], device=ids.device)
            key_ok = self.cache_key_ok[: ids.shape[0]]  # (B, C)
            key_ok.index_copy_(1, input_pos, ok)
            mask = prefix_lm_mask(q_pos, k_pos, prefix_len, key_ok, ok)  # (B, 1, L, C)
        rope = rope_angles(q_pos, self.config.head_dim, self.config.rope_base)
        for layer in self.layers:
            x = layer(x, rope, mask, input_pos)
        return self.norm(x)

    def _embed(self, ids, text, text_mask) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (B, L) → input embeddings (B, L, D) with the projected text in the <text> slots, and
        which positions may be attended to (B, L)."""
        x = self.tok_embeddings(ids)  # (B, L, D)
        ok = ids != Vocab.pad
        if text is None:
            return x, ok
        slots = ids == Vocab.text_slot  # (B, L), exactly S per row (checked)
        t = self.text_proj(text.to(x.dtype))  # (B, S, D)
        if text_mask is not None:
            # a masked slot keeps the placeholder embedding: nothing of the masked text reaches the model
            t = torch.where(text_mask[..., None], t, self.tok_embeddings.weight[Vocab.text_slot])
            ok = ok.masked_scatter(slots, text_mask)
        return x.masked_scatter(slots[..., None], t), ok  # slots filled row by row, in order

    # ---------------------------------------------------------------------------------------- checks
    def _check_inputs(self, ids, prefix_len, text, text_mask, input_pos) -> None:
        cfg = self.config
        _check_int_tensor(ids, "ids", (None, None))
        b, n = ids.shape
        if b < 1 or n < 1:
            raise ValueError(f"ids must hold at least one row of at least one token, got shape {(b, n)}")
        lo, hi = torch.aminmax(ids)
        if lo < 0 or hi >= cfg.vocab_size:
            raise ValueError(f"ids must lie in [0, {cfg.vocab_size}) (the vocabulary), got [{lo}, {hi}]")
        _check_int_tensor(prefix_len, "prefix_len", (b,))
        if input_pos is None:
            if n > cfg.max_seq_len:
                raise ValueError(f"sequence of {n} tokens is longer than max_seq_len={cfg.max_seq_len}")
            limit = n
        else:
            limit = self._check_positions(input_pos, prefix_len, b, n)
        if b and (prefix_len.min() < 0 or prefix_len.max() > limit):
            raise ValueError(f"prefix_len must lie in [0, {limit}], got {prefix_len.tolist()}")
        self._check_text(ids, prefix_len, text, text_mask, input_pos)

    def _check_positions(self, input_pos, prefix_len, b: int, n: int) -> int:
        """Checks a cached call; returns the largest prefix_len it allows (the cache length)."""
        if self.cache_key_ok is None:
            raise ValueError("forward with input_pos needs KV caches: call setup_caches(max_batch) first")
        max_batch, cache_len = self.cache_key_ok.shape
        _check_int_tensor(input_pos, "input_pos", (n,))
        start = int(input_pos[0])
        if not torch.equal(input_pos.cpu(), torch.arange(start, start + n)) or start + n > cache_len:
            raise ValueError(
                f"input_pos must be consecutive positions inside the cache [0, {cache_len}), got "
                f"{input_pos.tolist() if n <= 8 else f'{n} positions from {start}'}"
            )
        if b > max_batch:
            raise ValueError(f"batch of {b} rows is larger than the caches' max_batch={max_batch}")
        inside = prefix_len > start  # rows whose prefix this call reaches into
        if bool(inside.any()) and (start != 0 or bool((prefix_len[inside] > start + n).any())):
            raise ValueError(
                "a cached call that touches a row's prefix must start at position 0 and hold the whole "
                f"prefix (bidirectional attention cannot be filled in chunks): positions [{start}, "
                f"{start + n}), prefix_len {prefix_len.tolist()}"
            )
        return cache_len

    def _check_text(self, ids, prefix_len, text, text_mask, input_pos) -> None:
        slots = ids == Vocab.text_slot  # (B, L)
        if text is None:
            if text_mask is not None:
                raise ValueError("text_mask given without text")
            if bool(slots.any()):
                raise ValueError("ids hold <text> slots but no text was given (mask rows out with text_mask)")
            return
        b, s = ids.shape[0], self.config.text_slots
        if not torch.is_tensor(text) or not text.is_floating_point() or text.ndim != 3:
            raise ValueError(f"text must be a float tensor (B, S, E), got {_describe(text)}")
        if s == 0:
            raise ValueError("this model has no text slots (text_slots=0) but text was given")
        if text.shape[0] != b or not 1 <= text.shape[1] <= s or text.shape[2] != self.config.text_dim:
            raise ValueError(
                f"text must have shape ({b}, S ≤ {s}, {self.config.text_dim}), got {tuple(text.shape)}"
            )
        if text_mask is not None and (text_mask.dtype != torch.bool or text_mask.shape != text.shape[:2]):
            raise ValueError(f"text_mask must be bool {tuple(text.shape[:2])}, got {_describe(text_mask)}")
        counts = slots.sum(1)
        if bool((counts != text.shape[1]).any()):
            raise ValueError(
                f"every row needs exactly S = {text.shape[1]} <text> slots for text of {text.shape[1]} "
                f"tokens; the rows hold {counts.tolist()} (text without text slots?)"
            )
        pos = torch.arange(ids.shape[1], device=ids.device) if input_pos is None else input_pos
        if bool((slots & (pos[None] >= prefix_len[:, None])).any()):
            raise ValueError("<text> slots must lie inside the prefix (positions < prefix_len)")


def _check_int_tensor(x, name: str, shape: tuple[int | None, ...]) -> None:
    """x must be a long tensor of ``shape`` (None: any size)."""
    want = "(" + ", ".join("·" if d is None else str(d) for d in shape) + ")"
    if not torch.is_tensor(x) or x.dtype != torch.long:
        raise ValueError(f"{name} must be a long (int64) tensor of shape {want}, got {_describe(x)}")
    if x.ndim != len(shape) or any(d is not None and d != have for d, have in zip(shape, x.shape)):
        raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")


def _describe(x: object) -> str:
    return f"{x.dtype} {tuple(x.shape)}" if torch.is_tensor(x) else type(x).__name__


def param_count(preset: str | PrefixLMConfig, *, include_vocab: bool = True) -> int:
    """Parameters of a preset (or config), counted on the meta device: no memory, even for paper-8b.
    ``include_vocab=False`` leaves out the input embedding and the output head (what the vocabulary
    size alone changes)."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise UserError(f"unknown prefix LM preset {preset!r}; choose one of {sorted(PRESETS)}")
        preset = PRESETS[preset]
    with torch.device("meta"):
        model = PrefixLM(preset)
    total = sum(p.numel() for p in model.parameters())
    if not include_vocab:
        total -= sum(p.numel() for m in (model.tok_embeddings, model.output) for p in m.parameters())
    return total
