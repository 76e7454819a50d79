"""Pure functions from logits to tokens: temperature, top-k, top-p, classifier-free guidance, id blocks.

Dimension key: B rows, V vocabulary. Nothing here holds state or reads values back to the host, so each
function can sit inside a ``torch.compile``d decode step.

- ``logits_to_probs``: softmax(logits / temperature) restricted to the top_k largest logits and to the
  nucleus of mass top_p: a token is kept when the probability mass of the tokens ranked strictly before it
  (descending, after top-k) is < top_p, so the most probable token is always kept.
- ``sample``: temperature 0 is argmax; otherwise one draw from those probabilities by the exponential
  race (argmax of p / q with q ~ Exp(1), as gpt-fast): exact, and it takes its randomness as a tensor, so
  the random numbers can come from a seeded generator outside a compiled function.
"""

from __future__ import annotations

import math

import torch

GUIDANCE_SCHEDULES = ("constant", "linear", "cosine")
Allowed = range | torch.Tensor  # a block of ids: a range, or a long tensor (2,) = [start, stop)


def logits_to_probs(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """Logits (..., V) → probabilities (..., V) in fp32, zero outside top-k and the top-p nucleus."""
    if temperature <= 0:
        raise ValueError(
            f"logits_to_probs needs temperature > 0 (0 is argmax: use sample), got {temperature}"
        )
    logits = logits.float() if temperature == 1 else logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (..., 1): the k-th largest
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        mass_before = sorted_probs.cumsum(-1) - sorted_probs  # mass of the tokens ranked strictly before
        drop_sorted = mass_before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to id order
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def sample_from_noise(
    logits: torch.Tensor,
    noise: torch.Tensor | None,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """Token ids (...) from logits (..., V) and Exp(1) noise (..., V) (None when temperature is 0)."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = logits_to_probs(logits, temperature, top_k, top_p)
    return (probs / noise).argmax(-1)  # the exponential race: P(i wins) = p_i exactly


def sample(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token id per row of logits (..., V) → long (...); temperature 0 = argmax (no randomness)."""
    noise = None if temperature == 0 else exponential_noise(logits.shape, logits.device, generator)
    return sample_from_noise(logits, noise, temperature=temperature, top_k=top_k, top_p=top_p)


def exponential_noise(shape, device, generator: torch.Generator | None) -> torch.Tensor:
    """Exp(1) draws (fp32) of ``shape`` from ``generator`` (seeded sampling). On the CPU by inversion,
    −log(1 − U) with U ~ U[0, 1) (finite: 1 − U > 0), a quarter of ``Tensor.exponential_``'s time there."""
    if torch.device(device).type == "cpu":
        return torch.rand(shape, device=device, generator=generator).neg_().log1p_().neg_()
    return torch.empty(shape, device=device).exponential_(generator=generator)


def cfg_logits(cond: torch.Tensor, uncond: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """Classifier-free guidance: uncond + scale · (cond − uncond); scale 1 gives cond, 0 gives uncond."""
    return uncond + scale * (cond - uncond)


def guidance_schedule(step: int, total: int, scale: float, kind: str = "constant") -> float:
    """The guidance scale at output token ``step`` of ``total``: ``constant`` is ``scale`` throughout;
    ``linear`` and ``cosine`` ramp from 1 (no guidance) at the first token to ``scale`` at the last, so
    early tokens (the scene's layout) follow the sampler's own prior and later ones the prompt harder."""
    if kind not in GUIDANCE_SCHEDULES:
        raise ValueError(f"unknown guidance schedule {kind!r}; choose one of {list(GUIDANCE_SCHEDULES)}")
    if not 0 <= step < total:
        raise ValueError(f"step must lie in [0, {total}), got {step}")
    frac = step / max(total - 1, 1)
    if kind == "constant":
        return float(scale)
    ramp = frac if kind == "linear" else (1 - math.cos(math.pi * frac)) / 2
    return 1.0 + (scale - 1.0) * ramp


def constrain(logits: torch.Tensor, allowed: Allowed) -> torch.Tensor:
    """Logits (..., V) with −inf outside the id block ``allowed`` (a range, or a tensor [start, stop))."""
    if isinstance(allowed, range):
        if allowed.step != 1 or not 0 <= allowed.start < allowed.stop <= logits.shape[-1]:
            raise ValueError(f"allowed must be a non-empty range of step 1 inside [0, {logits.shape[-1]})")
        allowed = torch.tensor([allowed.start, allowed.stop], device=logits.device)
    ids = torch.arange(logits.shape[-1], device=logits.device)
    inside = (ids >= allowed[0]) & (ids < allowed[1])  # tensor bounds: no host read, compile-friendly
    return logits.masked_fill(~inside, -math.inf)
