"""Token-space super-resolution: a windowed masked transformer (VideoPoet §5, spec §5).

Dimension key: B batch, T H W the high-resolution token grid, h w the low-resolution grid (H/2, W/2),
D width, S text tokens, E text embedding width, N one factor's size (√ codebook = 2^(b/2)),
n windows per clip, Lw tokens per window, K head width.

It predicts the tokens of a 2× larger clip (B, T, H, W) from the tokens of the small one (B, T, h, w) and
the text, MaskGIT style: positions holding the [MASK] id (= codebook size) are to be predicted; every
position gets logits. Per block:

    for axis in (vertical, horizontal, temporal):                 # MaxViT-style: one axis per layer
        x += self-attention inside windows of the grid            # e.g. (1, H, 4): a column strip
        x += cross-attention to the low-res window of the same place (half the spatial size)
        x += MLP
    x += cross-attention to the text (every block)

- Windows: a window (wt, wh, ww) tiles the grid (T, H, W); 0 means "the whole axis", so one preset
  serves 128×128 (5×32×32) and portrait 128×224 (5×56×32). The low-res window of a high-res window is
  (wt, wh/2, ww/2): the two grids tile into the same windows, so window i attends to exactly the
  low-res tokens under it.
- Token factorization (k = 2): an id i in [0, 2^b) is the pair (i // N, i % N). The input embedding is
  the sum of one embedding per factor, the output two N-way heads (logits_a for i // N, logits_b for
  i % N): 2 · N · D weights each instead of 2^b · D (at 2^18: 1,024 rows instead of 262,144).
- [MASK] (id 2^b) has its own embedding on both grids: a low-res grid all [MASK] is the dropped
  condition (classifier-free guidance; ``lo_tokens=None`` means exactly that). A text row with
  ``text_mask`` all False is the dropped text: every text cross-attention also sees one learned null
  token, so it never attends to nothing. ``text_dim`` 0 is a model trained without text: it has no text
  projection, attends to the null token only, and refuses text.
- The parent path: each high-res position's input also holds the embedding of the low-res token above
  it (the one whose 2×2 children it is), so a fully masked grid starts from the condition in place;
  the cross-attention then reads the window around it.
- The draft path (``draft``): each high-res position's input also holds the embedding of the draft
  token at its place. The draft is the video tokenizer's tokens of the bicubic 2× upsampling of the
  low-res tokens' decoding (``superres.upscale.draft_tokens``): a high-res grid made with no model, that
  already agrees with the true tokens at about two thirds of the positions, so the model learns what to
  change in it rather than every token from the low-res grid. It is a function of the low-res tokens, so
  it is dropped with them (all [MASK]; ``draft_tokens=None`` means exactly that). Not in the paper.
- Positions: fixed 3-D sinusoids of the high-res coordinates (no parameters, any grid size); a low-res
  token sits at high-res coordinate 2i + 0.5, between the two high-res tokens it covers.

Nothing but the forward pass lives here: masking, losses and MaskGIT decoding live elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videopoet.components import Pretrained
from videopoet.config import override_fields
from videopoet.errors import UserError
from videopoet.lm.transformer import RMSNorm

Window = tuple[int, int, int]  # (wt, wh, ww) on the high-res grid; 0 = the whole axis
POSITION_BASE = 10_000.0  # wavelength base of the sinusoidal positions


@dataclass(kw_only=True)
class SuperResConfig:
    codebook_bits: int = 12  # b: ids in [0, 2^b), predicted as two 2^(b/2)-way factors; b must be even
    dim: int = 256  # D: residual stream width
    n_blocks: int = 4  # blocks of three axis layers (+ one text cross-attention)
    n_heads: int = 4  # attention heads; head width K = dim / n_heads
    mlp_mult: int = 4  # MLP hidden width = mlp_mult · D
    vertical: Window = (1, 0, 4)  # window of the first layer of a block: tall strips
    horizontal: Window = (1, 8, 0)  # second layer: wide strips
    temporal: Window = (0, 8, 8)  # third layer: a spatial tile through time
    text_dim: int = 384  # E: width of the text encoder's per-token embeddings; 0 = a model without text
    draft: bool = False  # the draft path (above): the model also reads the draft grid

    def __post_init__(self) -> None:
        for name in ("codebook_bits", "dim", "n_blocks", "n_heads", "mlp_mult"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.text_dim < 0:
            raise ValueError(f"text_dim must be ≥ 0 (0: no text), got {self.text_dim}")
        if self.codebook_bits % 2:
            raise ValueError(f"codebook_bits={self.codebook_bits} must be even (two equal factors)")
        if self.dim % self.n_heads:
            raise ValueError(f"dim={self.dim} must split into n_heads={self.n_heads} heads")
        for name in ("vertical", "horizontal", "temporal"):
            window = tuple(getattr(self, name))
            setattr(self, name, window)
            if len(window) != 3 or any(s < 0 for s in window):
                raise ValueError(f"{name} window must be 3 sizes ≥ 0 (0 = whole axis), got {window}")
            if any(s % 2 for s in window[1:]):
                raise ValueError(f"{name} window {window}: spatial sizes must be even (low-res = half)")

    @property
    def factor_size(self) -> int:
        return 2 ** (self.codebook_bits // 2)  # N

    @property
    def mask_id(self) -> int:
        return 2**self.codebook_bits

    @property
    def windows(self) -> tuple[Window, Window, Window]:
        return (self.vertical, self.horizontal, self.temporal)


# Sizes: `param_count(name)` counts a preset on the meta device. The paper gives windows and model sizes
# (1B, 500M) but not widths: the paper presets pick width × blocks to land on those sizes.
PRESETS: dict[str, SuperResConfig] = {
    # Seconds on a CPU: the debug tokenizer's 2^8 codes (two 16-way heads), grids like 2×8×8.
    "debug": SuperResConfig(
        codebook_bits=8,
        dim=32,
        n_blocks=1,
        n_heads=2,
        mlp_mult=2,
        vertical=(1, 0, 2),
        horizontal=(1, 2, 0),
        temporal=(0, 2, 2),
        draft=True,
    ),
    # The bundled tokenizer (2^12 codes → two 64-way heads): 5×16×16 → 5×32×32 (128 → 256 px) and
    # portrait 5×28×16 → 5×56×32; the windows hold 128–320 tokens and tile both grids. 3.7M parameters:
    # small enough to ship int8 (~3.8 MB) beside the tokenizers and the LM.
    "tiny": SuperResConfig(dim=160, n_blocks=3, n_heads=4, mlp_mult=3, draft=True),
    # 224×128 → 448×256: grid (5, 56, 32), the paper's stage-1 windows.
    "paper-stage1": SuperResConfig(
        codebook_bits=18,
        dim=1536,
        n_blocks=8,
        n_heads=12,
        vertical=(1, 56, 4),
        horizontal=(1, 8, 32),
        temporal=(5, 8, 8),
        text_dim=2048,
    ),
    # 448×256 → 896×512: grid (5, 112, 64), the paper's stage-2 windows.
    "paper-stage2": SuperResConfig(
        codebook_bits=18,
        dim=1024,
        n_blocks=9,
        n_heads=16,
        vertical=(1, 112, 2),
        horizontal=(1, 4, 64),
        temporal=(5, 8, 8),
        text_dim=2048,
    ),
}


# ============================================================================================ windows
def resolve_window(window: Window, grid: tuple[int, int, int]) -> Window:
    """A window's concrete sizes on ``grid`` (0 → the whole axis); ValueError unless it tiles the grid."""
    sizes = tuple(g if s == 0 else s for s, g in zip(window, grid))
    if any(g % s for s, g in zip(sizes, grid)):
        raise ValueError(f"window {window} (= {sizes}) does not tile the token grid {tuple(grid)}")
    return sizes


def low_res_window(window: Window) -> Window:
    """The isomorphic low-res window: same frames, half the rows and columns."""
    wt, wh, ww = window
    return (wt, wh // 2, ww // 2)


def window_partition(x: torch.Tensor, window: Window) -> torch.Tensor:
    """(B, T, H, W, D) → (B·n, Lw, D): the grid cut into windows (wt, wh, ww), each flattened t-h-w."""
    wt, wh, ww = window
    return rearrange(x, "b (nt wt) (nh wh) (nw ww) d -> (b nt nh nw) (wt wh ww) d", wt=wt, wh=wh, ww=ww)


def window_merge(x: torch.Tensor, window: Window, grid: tuple[int, int, int]) -> torch.Tensor:
    """(B·n, Lw, D) → (B, T, H, W, D): the inverse of ``window_partition`` on a grid (T, H, W)."""
    (t, h, w), (wt, wh, ww) = grid, window
    return rearrange(
        x,
        "(b nt nh nw) (wt wh ww) d -> b (nt wt) (nh wh) (nw ww) d",
        nt=t // wt,
        nh=h // wh,
        nw=w // ww,
        wt=wt,
        wh=wh,
        ww=ww,
    )


# ============================================================================================ ids
def split_ids(ids: torch.Tensor, factor_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ids in [0, N²) → (ids // N, ids % N): the two factors the heads predict."""
    return ids // factor_size, ids % factor_size


def join_ids(a: torch.Tensor, b: torch.Tensor, factor_size: int) -> torch.Tensor:
    """The inverse of ``split_ids``."""
    return a * factor_size + b


def grid_positions(grid: tuple[int, int, int], dim: int, stride: int = 1) -> torch.Tensor:
    """Fixed sinusoids (T, H, W, D) of the high-res coordinates of a grid whose rows and columns are
    ``stride`` high-res tokens apart (2 for the low-res grid: its token i covers high-res 2i and 2i+1)."""
    t, h, w = grid
    n_freq = dim // 6  # each axis gets sin and cos of n_freq wavelengths; the leftover channels stay 0
    freqs = POSITION_BASE ** -(torch.arange(n_freq, dtype=torch.float32) / max(n_freq, 1))  # (n_freq,)
    offset = (stride - 1) / 2  # the low-res token's centre between the high-res ones it covers

    def axis(n: int, step: int, off: float) -> torch.Tensor:
        angles = (torch.arange(n, dtype=torch.float32) * step + off)[:, None] * freqs  # (n, n_freq)
        return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (n, 2·n_freq)

    pt, ph, pw = axis(t, 1, 0.0), axis(h, stride, offset), axis(w, stride, offset)
    pos = torch.cat(
        [
            pt[:, None, None].expand(t, h, w, -1),
            ph[None, :, None].expand(t, h, w, -1),
            pw[None, None, :].expand(t, h, w, -1),
        ],
        dim=-1,
    )  # (T, H, W, 6·n_freq)
    return F.pad(pos, (0, dim - pos.shape[-1]))  # (T, H, W, D)


# ============================================================================================ layers
class Attention(nn.Module):
    """Multi-head attention of queries x (B', Lq, D) over a context (B', Lk, D)."""

    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.wq = nn.Linear(dim, dim, bias=False)
        self.wkv = nn.Linear(dim, 2 * dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)

    def forward(self, x, context, mask=None) -> torch.Tensor:
        q = rearrange(self.wq(x), "b l (h k) -> b h l k", h=self.n_heads)  # (B', H, Lq, K)
        k, v = rearrange(self.wkv(context), "b l (two h k) -> two b h l k", two=2, h=self.n_heads)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B', H, Lq, K)
        return self.wo(rearrange(y, "b h l k -> b l (h k)"))  # (B', Lq, D)


class WindowSelfAttention(nn.Module):
    """Self-attention inside each window of the grid: no token sees outside its window."""

    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        self.attention = Attention(dim, n_heads)

    def forward(self, x: torch.Tensor, window: Window) -> torch.Tensor:
        """x (B, T, H, W, D), window concrete (resolve_window) → (B, T, H, W, D)."""
        w = window_partition(x, window)  # (B·n, Lw, D)
        return window_merge(self.attention(w, w), window, x.shape[1:4])


class WindowCrossAttention(nn.Module):
    """Each high-res window attends to the low-res tokens of the isomorphic window (half the size)."""

    def __init__(self, dim: int, n_heads: int):
        super().__init__()
        self.attention = Attention(dim, n_heads)

    def forward(self, x: torch.Tensor, lo: torch.Tensor, window: Window) -> torch.Tensor:
        """x (B, T, H, W, D), lo (B, T, H/2, W/2, D), window concrete on x's grid → (B, T, H, W, D)."""
        queries = window_partition(x, window)  # (B·n, Lw, D)
        context = window_partition(lo, low_res_window(window))  # (B·n, Lw/4, D): the same n windows
        return window_merge(self.attention(queries, context), window, x.shape[1:4])


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.gelu(self.w1(x)))


class AxisLayer(nn.Module):
    """One axis of a block: windowed self-attention, windowed low-res cross-attention, MLP."""

    def __init__(self, cfg: SuperResConfig):
        super().__init__()
        self.self_norm = RMSNorm(cfg.dim)
        self.self_attention = WindowSelfAttention(cfg.dim, cfg.n_heads)
        self.cross_norm = RMSNorm(cfg.dim)
        self.lo_norm = RMSNorm(cfg.dim)
        self.cross_attention = WindowCrossAttention(cfg.dim, cfg.n_heads)
        self.mlp_norm = RMSNorm(cfg.dim)
        self.mlp = MLP(cfg.dim, cfg.mlp_mult * cfg.dim)

    def forward(self, x, lo, window: Window) -> torch.Tensor:
        x = x + self.self_attention(self.self_norm(x), window)
        x = x + self.cross_attention(self.cross_norm(x), self.lo_norm(lo), window)
        return x + self.mlp(self.mlp_norm(x))


class Block(nn.Module):
    def __init__(self, cfg: SuperResConfig):
        super().__init__()
        self.axes = nn.ModuleList(AxisLayer(cfg) for _ in range(3))
        self.text_norm = RMSNorm(cfg.dim)
        self.text_attention = Attention(cfg.dim, cfg.n_heads)

    def forward(self, x, lo, windows, text, text_ok) -> torch.Tensor:
        """x (B, T, H, W, D), lo (B, T, h, w, D), text (B, 1+S, D) with text_ok (B, 1, 1, 1+S)."""
        for layer, window in zip(self.axes, windows):
            x = layer(x, lo, window)
        flat = rearrange(self.text_norm(x), "b t h w d -> b (t h w) d")  # (B, T·H·W, D)
        return x + self.text_attention(flat, text, text_ok).view_as(x)


class FactorEmbedding(nn.Module):
    """id → E_a[id // N] + E_b[id % N]; [MASK] (id N²) → its own vector."""

    def __init__(self, factor_size: int, dim: int):
        super().__init__()
        self.n = factor_size
        self.a = nn.Embedding(factor_size, dim)
        self.b = nn.Embedding(factor_size, dim)
        self.mask = nn.Parameter(torch.zeros(dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        masked = ids == self.n**2
        a, b = split_ids(ids.masked_fill(masked, 0), self.n)
        return torch.where(masked[..., None], self.mask, self.a(a) + self.b(b))  # (..., D)


class SuperResLogits(NamedTuple):
    a: torch.Tensor  # (B, T, H, W, N): logits of id // N
    b: torch.Tensor  # (B, T, H, W, N): logits of id % N


# ============================================================================================ model
class SuperResTransformer(Pretrained, nn.Module):
    """hi_tokens (B, T, H, W) with [MASK]s + lo_tokens (B, T, H/2, W/2) [+ text (B, S, E), text_mask
    (B, S)] [+ draft_tokens (B, T, H, W)] → two factor logits (B, T, H, W, N) each."""

    MODEL_TYPE = "superres"
    CONFIG = SuperResConfig
    BUNDLED = "super_resolution"
    DESCRIPTION = "a super-resolution transformer"

    def __init__(self, config: SuperResConfig):
        super().__init__()
        self.config = cfg = config
        self.hi_embed = FactorEmbedding(cfg.factor_size, cfg.dim)
        self.lo_embed = FactorEmbedding(cfg.factor_size, cfg.dim)
        self.draft_embed = FactorEmbedding(cfg.factor_size, cfg.dim) if cfg.draft else None
        self.text_proj = nn.Linear(cfg.text_dim, cfg.dim, bias=False) if cfg.text_dim else None
        self.text_null = nn.Parameter(torch.zeros(cfg.dim))  # always attendable: text_mask may be all False
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_blocks))
        self.norm = RMSNorm(cfg.dim)
        self.head_a = nn.Linear(cfg.dim, cfg.factor_size, bias=False)
        self.head_b = nn.Linear(cfg.dim, cfg.factor_size, bias=False)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # GPT-2: N(0, 0.02), residual output projections shrunk so the stream's variance does not grow
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, Attention | MLP):
            out = module.wo if isinstance(module, Attention) else module.w2
            # 10 residual branches per block: 3 axes × (self, low-res, MLP) + text
            nn.init.normal_(out.weight, std=0.02 / math.sqrt(10 * self.config.n_blocks))

    # ---------------------------------------------------------------------------------------- IO
    @classmethod
    def from_preset(cls, name: str, **overrides) -> SuperResTransformer:
        if name not in PRESETS:
            raise UserError(f"unknown super-resolution preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(override_fields(PRESETS[name], overrides))  # "none" → None, lists → tuples

    # ---------------------------------------------------------------------------------------- forward
    def forward(
        self,
        hi_tokens: torch.Tensor,
        lo_tokens: torch.Tensor | None,
        text: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        draft_tokens: torch.Tensor | None = None,
    ) -> SuperResLogits:
        """Factor logits for every high-res position. lo_tokens None = the dropped condition (all
        [MASK]); text None (or a text_mask row all False) = no text; draft_tokens (B, T, H, W) only for a
        model with the draft path, None = the dropped draft."""
        windows = self.check_inputs(hi_tokens, lo_tokens, text, text_mask, draft_tokens)
        b, t, h, w = hi_tokens.shape
        if lo_tokens is None:
            lo_tokens = hi_tokens.new_full((b, t, h // 2, w // 2), self.config.mask_id)
        dev, dim = hi_tokens.device, self.config.dim
        lo = self.lo_embed(lo_tokens)  # (B, T, h, w, D)
        parent = lo.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # (B, T, H, W, D)
        x = self.hi_embed(hi_tokens) + parent + grid_positions((t, h, w), dim).to(dev)  # (B, T, H, W, D)
        if self.draft_embed is not None:
            if draft_tokens is None:
                draft_tokens = torch.full_like(hi_tokens, self.config.mask_id)
            x = x + self.draft_embed(draft_tokens)
        lo = lo + grid_positions((t, h // 2, w // 2), dim, stride=2).to(dev)
        context, ok = self._text_context(text, text_mask, b, x.dtype)  # (B, 1+S, D), (B, 1, 1, 1+S)
        for block in self.blocks:
            x = block(x, lo, windows, context, ok)
        x = self.norm(x)
        return SuperResLogits(self.head_a(x), self.head_b(x))  # (B, T, H, W, N) each

    def _text_context(self, text, text_mask, b: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        null = self.text_null.to(dtype).expand(b, 1, -1)  # (B, 1, D)
        if text is None:
            return null, torch.ones(b, 1, 1, 1, dtype=torch.bool, device=null.device)
        if text_mask is None:
            text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
        context = torch.cat([null, self.text_proj(text.to(dtype))], dim=1)  # (B, 1+S, D)
        ok = F.pad(text_mask, (1, 0), value=True)  # (B, 1+S): the null token always
        return context, ok[:, None, None, :]  # (B, 1, 1, 1+S): broadcast over heads and queries

    # ---------------------------------------------------------------------------------------- checks
    def check_inputs(self, hi_tokens, lo_tokens, text, text_mask, draft_tokens=None) -> tuple[Window, ...]:
        """ValueError for bad inputs; returns the three windows resolved on this grid."""
        cfg = self.config
        _check_ids(hi_tokens, "hi_tokens", cfg.mask_id)
        b, t, h, w = hi_tokens.shape
        if h % 2 or w % 2:
            raise ValueError(f"hi_tokens grid {(t, h, w)} needs even height and width (low-res is half)")
        if lo_tokens is not None:
            _check_ids(lo_tokens, "lo_tokens", cfg.mask_id)
            if tuple(lo_tokens.shape) != (b, t, h // 2, w // 2):
                raise ValueError(
                    f"lo_tokens must have shape {(b, t, h // 2, w // 2)} (half of hi_tokens' grid), got "
                    f"{tuple(lo_tokens.shape)}"
                )
        if draft_tokens is not None:
            if not cfg.draft:
                raise ValueError("this super-resolution model has no draft path (config draft false)")
            _check_ids(draft_tokens, "draft_tokens", cfg.mask_id)
            if draft_tokens.shape != hi_tokens.shape:
                raise ValueError(f"draft_tokens must have hi_tokens' shape {(b, t, h, w)}, got "
                                 f"{tuple(draft_tokens.shape)}")  # fmt: skip
        windows = tuple(resolve_window(window, (t, h, w)) for window in cfg.windows)
        for window in windows:
            if window[1] % 2 or window[2] % 2:
                raise ValueError(f"window {window} on grid {(t, h, w)} has an odd spatial size")
        if text is not None and not cfg.text_dim:
            raise ValueError("this super-resolution model takes no text (text_dim 0: trained without it)")
        _check_text(text, text_mask, b, cfg.text_dim)
        return windows


def _check_ids(ids, name: str, mask_id: int) -> None:
    if not torch.is_tensor(ids) or ids.dtype != torch.long or ids.ndim != 4 or 0 in ids.shape:
        raise ValueError(f"{name} must be a non-empty long tensor (B, T, H, W), got {_describe(ids)}")
    if ids.device.type == "meta" or torch.compiler.is_compiling():
        return  # values cannot be read back there: shapes only
    lo, hi = torch.aminmax(ids)
    if lo < 0 or hi > mask_id:
        raise ValueError(f"{name} must lie in [0, {mask_id}] (codes, then [MASK]), got [{lo}, {hi}]")


def _check_text(text, text_mask, b: int, text_dim: int) -> None:
    if text is None:
        if text_mask is not None:
            raise ValueError("text_mask given without text")
        return
    if not torch.is_tensor(text) or not text.is_floating_point() or text.ndim != 3:
        raise ValueError(f"text must be a float tensor (B, S, E), got {_describe(text)}")
    if text.shape[0] != b or text.shape[2] != text_dim:
        raise ValueError(f"text must have shape ({b}, S, {text_dim}), got {tuple(text.shape)}")
    if text_mask is not None and (text_mask.dtype != torch.bool or text_mask.shape != text.shape[:2]):
        raise ValueError(f"text_mask must be bool {tuple(text.shape[:2])}, got {_describe(text_mask)}")


def _describe(x: object) -> str:
    return f"{x.dtype} {tuple(x.shape)}" if torch.is_tensor(x) else type(x).__name__


def param_count(preset: str | SuperResConfig) -> int:
    """Parameters of a preset (or config), counted on the meta device: no memory, even for the paper's."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise UserError(f"unknown super-resolution preset {preset!r}; choose one of {sorted(PRESETS)}")
        preset = PRESETS[preset]
    with torch.device("meta"):
        model = SuperResTransformer(preset)
    return sum(p.numel() for p in model.parameters())
