"""MaskGIT decoding for the super-resolution transformer (spec §5): pure schedule functions and the loop.

Dimension key: B batch, T H W the high-res token grid, L = T·H·W positions, N one factor's size.

Decoding starts with every high-res position [MASK] and runs ``steps`` forward passes. Each step samples
a token for every masked position, then keeps the ``mask_count(step, steps, L)`` least confident of them
masked and fixes the rest for good; the last step fixes everything. Confidence is the sampled token's
log-probability plus Gumbel noise scaled by temperature · (1 − progress): early choices are noisy
(diverse), late ones greedy (MaskGIT's annealed "choice temperature").

Guidance (classifier-free, separately for the two conditions): each step runs three rows as one batch —
full (text + low-res), no text (text_mask all False), no low-res (low-res grid and draft all [MASK]) — and
uses,
per factor head,

    l = l_full + (text_scale − 1) · (l_full − l_no_text) + (lo_scale − 1) · (l_full − l_no_lo)

so text_scale = lo_scale = 1 is exactly the unguided full-row logits. A row whose term vanishes is not
run (scale 1, or no text to drop): unguided decoding costs one row per step, not three.

Compiled (``compile=True``, for GPUs): the model's forward runs under torch.compile (mode
"reduce-overhead": one CUDA graph per step, the same shapes every step), and the loop reads nothing back
from the device between steps, so a step costs the graph's kernels, not their launches.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F


def cosine_schedule(ratio: float) -> float:
    """Fraction of tokens still masked at progress ``ratio`` in [0, 1]: cos(π/2 · ratio), 1 → 0."""
    return math.cos(math.pi / 2 * ratio)


def mask_count(step: int, total_steps: int, n_tokens: int) -> int:
    """How many of ``n_tokens`` stay masked after step ``step`` (0-based) of ``total_steps``.

    floor(n · cos(π/2 · (step + 1) / total)), capped so every step fixes at least one token while any
    are left: decreasing, and 0 after the last step. E.g. n = 16, 4 steps: 14, 11, 6, 0; n = 5,120
    (5×32×32), 24 steps: 5109, 5076, 5021, … 668, 334, 0.
    """
    if not 0 <= step < total_steps or n_tokens < 0:
        raise ValueError(
            f"need 0 ≤ step < total_steps and n_tokens ≥ 0, got {step}, {total_steps}, {n_tokens}"
        )
    scheduled = math.floor(n_tokens * cosine_schedule((step + 1) / total_steps))
    return max(0, min(scheduled, n_tokens - step - 1))


def guide(full: torch.Tensor, no_text: torch.Tensor, no_lo: torch.Tensor, text_scale: float, lo_scale: float):
    """Classifier-free guidance with one scale per condition (formula in the module docstring)."""
    return full + (text_scale - 1) * (full - no_text) + (lo_scale - 1) * (full - no_lo)


def maskgit_step(
    tokens: torch.Tensor,
    logits_a: torch.Tensor,
    logits_b: torch.Tensor,
    n_masked: int,
    *,
    mask_id: int,
    temperature: float = 1.0,
    noise: float = 0.0,
    generator: torch.Generator | None = None,
    check: bool = True,
) -> torch.Tensor:
    """One MaskGIT step on flat rows: tokens (B, L) with ``mask_id`` at the open positions, factor logits
    (B, L, N) each → tokens (B, L) with exactly ``n_masked`` positions per row still masked (the least
    confident of the open ones) and every other open position filled. Fixed positions never change.

    temperature 0 takes the argmax of each factor; ``noise`` scales the Gumbel noise on the confidence.
    Needs at least ``n_masked`` open positions per row (``check=False`` trusts the caller: no read-back).
    """
    n = logits_a.shape[-1]
    open_ = tokens == mask_id  # (B, L)
    if check and int(open_.sum(1).min()) < n_masked:
        raise ValueError(f"maskgit_step: fewer than n_masked={n_masked} open positions in a row")
    logp_a = F.log_softmax(logits_a.float(), dim=-1)  # (B, L, N)
    logp_b = F.log_softmax(logits_b.float(), dim=-1)
    a, b = _sample(logp_a, temperature, generator), _sample(logp_b, temperature, generator)  # (B, L) each
    confidence = logp_a.gather(-1, a[..., None])[..., 0] + logp_b.gather(-1, b[..., None])[..., 0]
    if noise > 0:
        confidence = confidence + noise * _gumbel(confidence.shape, generator, confidence.device)
    confidence = confidence.masked_fill(~open_, math.inf)  # fixed tokens are never re-masked
    out = torch.where(open_, a * n + b, tokens)  # (B, L)
    if n_masked:
        least = confidence.topk(n_masked, dim=1, largest=False).indices  # (B, n_masked), all open
        out = out.scatter(1, least, mask_id)
    return out


def _sample(logp: torch.Tensor, temperature: float, generator) -> torch.Tensor:
    """(B, L, N) log-probs → (B, L) indices."""
    if temperature <= 0:
        return logp.argmax(-1)
    probs = F.softmax(logp / temperature, dim=-1).flatten(0, 1)  # (B·L, N)
    return torch.multinomial(probs, 1, generator=generator).view(logp.shape[:-1])


def _gumbel(shape, generator, device) -> torch.Tensor:
    u = torch.rand(shape, generator=generator, device=device)
    return -torch.log((-torch.log(u.clamp_(min=1e-20))).clamp_(min=1e-20))  # clamps: finite at u = 0, 1


@torch.no_grad()
def maskgit_decode(
    model,
    lo_tokens: torch.Tensor,
    text: torch.Tensor | None = None,
    text_mask: torch.Tensor | None = None,
    *,
    draft: torch.Tensor | None = None,
    steps: int = 24,
    text_scale: float = 1.0,
    lo_scale: float = 1.0,
    temperature: float = 1.0,
    seed: int = 0,
    compile: bool = False,
) -> torch.Tensor:
    """High-res tokens (B, T, 2h, 2w) for low-res tokens (B, T, h, w) (and text (B, S, E), text_mask
    (B, S)) in ``steps`` forward passes of a SuperResTransformer (up to three rows each: see the module
    docstring); ``draft`` (B, T, 2h, 2w) for a model with the draft path (``upscale.draft_tokens``). Same
    inputs and seed → same tokens. ``compile``: the compiled forward (module docstring)."""
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    cfg = model.config
    b, t, h, w = lo_tokens.shape
    grid, n_tokens = (t, 2 * h, 2 * w), t * 4 * h * w
    generator = torch.Generator(device=lo_tokens.device).manual_seed(seed)
    drops = (text is not None and text_scale != 1, lo_scale != 1)  # (no-text row, no-low-res row) run?
    rows = _guidance_rows(lo_tokens, text, text_mask, draft, cfg.mask_id, drops)
    tokens = lo_tokens.new_full((b, n_tokens), cfg.mask_id)  # (B, L): all open
    forward = _compiled_forward() if compile else _forward
    for step in range(steps):
        hi = tokens.view(b, *grid).repeat(1 + sum(drops), 1, 1, 1)  # (R·B, T, H, W): full, no text, no lo
        logits = forward(model, hi, *rows)
        la, lb = (_guided(x.flatten(1, 3), b, drops, text_scale, lo_scale) for x in logits)  # (B, L, N)
        tokens = maskgit_step(
            tokens,
            la,
            lb,
            mask_count(step, steps, n_tokens),
            mask_id=cfg.mask_id,
            temperature=temperature,
            noise=temperature * (1 - (step + 1) / steps),
            generator=generator,
            check=False,  # mask_count leaves at most L - step - 1 masked: always enough open positions
        )
    return tokens.view(b, *grid)


def _forward(model, hi, lo, text, text_mask, draft):
    return model(hi, lo, text, text_mask, draft)


@functools.cache
def _compiled_forward():
    return torch.compile(_forward, mode="reduce-overhead", fullgraph=True)


def _guidance_rows(lo_tokens, text, text_mask, draft, mask_id, drops: tuple[bool, bool]):
    """The conditions of the rows run (full; no text if drops[0]; no low-res if drops[1]) as one batch:
    (lo, text, text_mask, draft), the draft dropped with the low-res grid."""
    drop_text, drop_lo = drops
    lo = torch.cat([lo_tokens] * (1 + drop_text) + [torch.full_like(lo_tokens, mask_id)] * drop_lo)
    if draft is not None:  # (R·B, T, H, W)
        draft = torch.cat([draft] * (1 + drop_text) + [torch.full_like(draft, mask_id)] * drop_lo)
    if text is None:
        return lo, None, None, draft  # lo: (R·B, T, h, w)
    if text_mask is None:
        text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
    masks = [text_mask] + [torch.zeros_like(text_mask)] * drop_text + [text_mask] * drop_lo
    return lo, text.repeat(len(masks), 1, 1), torch.cat(masks), draft


def _guided(logits: torch.Tensor, b: int, drops: tuple[bool, bool], text_scale: float, lo_scale: float):
    """(R·B, L, N) logits of the rows run → guided (B, L, N); a row not run has a vanishing term."""
    rows = logits.split(b)
    full = rows[0]
    no_text = rows[1] if drops[0] else full
    no_lo = rows[-1] if drops[1] else full
    return guide(full, no_text, no_lo, text_scale, lo_scale)
