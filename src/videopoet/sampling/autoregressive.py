"""Autoregressive sampling from the prefix LM on its static KV cache (read like gpt-fast's generate.py).

Dimension key: B samples, R model rows (B, or 2B under classifier-free guidance), P prefix tokens,
T output tokens, V vocabulary, S text slots, E text width.

Order (lm/transformer.py's module docstring): ``prefill`` runs the whole prefix once, bidirectionally,
and its last position predicts the first output token (the ``<bov_o>`` / ``<boa_o>`` marker, which ends
the prefix in lm/tasks.py); then ``decode_one_token`` feeds one token at a time at positions P, P + 1, …
Every output position has a *plan* entry (``output_plan`` derives it from the task layout): an id block
(a ``range``: visual ids in a video segment, level-l ids in audio level l) or a forced id (a segment
marker or ``<eos>``). A forced id is the one-id block [id, id + 1), so every step runs the same code.

Classifier-free guidance runs the conditional and unconditional rows as one batch of 2B rows (the
unconditional row: the same prefix with every text slot masked, or the negative prompt's text); both
rows continue with the token sampled from the guided logits.

GPU: the loop reads nothing back to the host (positions, plan bounds, guidance scales and random numbers
are device tensors made before or outside the step), so ``compile=True`` can capture the step as a CUDA
graph (torch.compile, mode "reduce-overhead"). The model checks its inputs eagerly, which reads values
back; under compile those checks are skipped.
"""

from __future__ import annotations

import functools

import torch

from videopoet.lm import tasks
from videopoet.lm.vocab import Vocab
from videopoet.sampling.probs import (
    cfg_logits,
    constrain,
    exponential_noise,
    guidance_schedule,
    sample_from_noise,
)

PlanEntry = range | int  # an id block, or a forced id


def output_plan(task: str, vocab: Vocab, grid: tuple[int, int, int], audio_frames: int, levels: int):
    """The plan of ``task``'s output segment (the ids after the prefix, as lm/tasks.py lays them out):
    a list with one entry per output token, an id block (range) or a forced marker id (int)."""
    layout = tasks._layout(task)  # the task module's own assembler, so the plan cannot drift from it
    shape = tasks._Shape(tuple(grid), audio_frames, levels, 0)
    blocks = [vocab.visual_range] + [vocab.audio_range(k) for k in range(levels)]

    def content(seg: tasks.Seg) -> torch.Tensor:  # negative block numbers never collide with marker ids
        n = tasks._seg_len(seg, shape)
        if seg.modality == "visual":
            return torch.full((n,), -1)
        return -2 - torch.arange(levels).repeat_interleave(n // levels)  # level-major

    template = torch.cat(tasks._output_parts(layout, content)).tolist()
    return [blocks[-1 - x] if x < 0 else x for x in template]


def plan_bounds(plan: list[PlanEntry], vocab_size: int, device) -> torch.Tensor:
    """Plan → long (T, 2): each position's allowed ids [start, stop) (a forced id: [id, id + 1))."""
    bounds = []
    for entry in plan:
        start, stop = (entry.start, entry.stop) if isinstance(entry, range) else (entry, entry + 1)
        if (isinstance(entry, range) and entry.step != 1) or not 0 <= start < stop <= vocab_size:
            raise ValueError(
                f"plan entries must be ids or step-1 ranges inside [0, {vocab_size}), got {entry}"
            )
        bounds.append((start, stop))
    if not bounds:
        raise ValueError("the plan must hold at least one output position")
    return torch.tensor(bounds, dtype=torch.long, device=device)


def prefill(model, ids, prefix_len, text=None, text_mask=None) -> torch.Tensor:
    """Run the prefix ids (R, P) through the model once (bidirectional; fills the KV caches) → the
    logits (R, V) of its last position, which predict the first output token."""
    input_pos = torch.arange(ids.shape[1], device=ids.device)
    return model(ids, prefix_len, text, text_mask, input_pos=input_pos)[:, -1]


def next_token(logits, allowed, scale, noise, *, guided: bool, temperature, top_k, top_p) -> torch.Tensor:
    """Logits (R, V) → the next token of every row, long (R, 1): guided (conditional rows first), then
    constrained to ``allowed``, then sampled; a guided pair of rows continues with the same token."""
    if guided:
        cond, uncond = logits.chunk(2)
        logits = cfg_logits(cond.float(), uncond.float(), scale)
    token = sample_from_noise(
        constrain(logits, allowed), noise, temperature=temperature, top_k=top_k, top_p=top_p
    )
    return token.repeat(2 if guided else 1)[:, None]


def decode_one_token(model, token, input_pos, prefix_len, allowed, scale, noise, **params) -> torch.Tensor:
    """One step on the KV cache: token (R, 1) at position input_pos (1,) → the next token (R, 1).
    ``params``: guided, temperature, top_k, top_p (python constants: static under torch.compile)."""
    logits = model(token, prefix_len, input_pos=input_pos)[:, -1]  # (R, V)
    return next_token(logits, allowed, scale, noise, **params)


def decode_n_tokens(
    model, token, start: int, prefix_len, allowed, scales, generator, *, step=decode_one_token, **params
) -> torch.Tensor:
    """Feed ``token`` (R, 1) at position ``start`` and each sampled token after it: n = len(allowed)
    steps → long (R, n). ``allowed`` (n, 2) and ``scales`` (n,) are the steps' plan bounds and guidance."""
    n, rows = allowed.shape[0], token.shape[0]
    positions = torch.arange(start, start + n, device=token.device)  # made once: no host copy per token
    out = torch.empty(rows, n, dtype=torch.long, device=token.device)
    noise_shape = (rows // (2 if params["guided"] else 1), model.config.vocab_size)
    for i in range(n):
        noise = (
            None if params["temperature"] == 0 else exponential_noise(noise_shape, token.device, generator)
        )
        token = step(model, token, positions[i : i + 1], prefix_len, allowed[i], scales[i], noise, **params)
        token = token.clone()  # a CUDA graph's output is overwritten by its next replay
        out[:, i] = token[:, 0]
    return out


def _noise(model, rows: int, device, generator, params) -> torch.Tensor | None:
    """One step's Exp(1) draws (B, V) for the sampled rows (the conditional ones); None for argmax."""
    if params["temperature"] == 0:
        return None
    shape = (rows // (2 if params["guided"] else 1), model.config.vocab_size)
    return exponential_noise(shape, device, generator)


def _setup_caches(model, rows: int, length: int) -> None:
    """Allocate the KV caches unless ones of this shape exist: a compiled step keeps its CUDA graph when
    the buffers stay (stale entries are harmless: prefill and each step write a position before any query
    may attend to it)."""
    ok, weight = getattr(model, "cache_key_ok", None), model.tok_embeddings.weight
    cache = model.layers[0].attention.kv_cache
    if ok is None or tuple(ok.shape) != (rows, length) or cache.k_cache.dtype != weight.dtype:
        model.setup_caches(rows, length)


def _check(model, prefix_len: int, n_out: int, temperature, top_k, top_p) -> None:
    if prefix_len < 1 or n_out < 1 or prefix_len + n_out - 1 > model.config.max_seq_len:
        raise ValueError(
            f"prefix of {prefix_len} + {n_out} output tokens must fit max_seq_len {model.config.max_seq_len}"
        )
    if temperature < 0 or (top_k is not None and top_k < 1) or (top_p is not None and not 0 < top_p <= 1):
        raise ValueError(
            f"need temperature ≥ 0, top_k ≥ 1, 0 < top_p ≤ 1; got {temperature}, {top_k}, {top_p}"
        )


@functools.cache
def _compiled_step():
    return torch.compile(decode_one_token, mode="reduce-overhead", fullgraph=True)


@torch.no_grad()
def generate(
    model,
    ids: torch.Tensor,
    prefix_len: int,
    text: torch.Tensor | None = None,
    text_mask: torch.Tensor | None = None,
    *,
    plan: list[PlanEntry],
    guidance_scale: float = 1.0,
    guidance_schedule_kind: str = "constant",
    negative: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    compile: bool = False,
) -> torch.Tensor:
    """Sample the output tokens after a prefix → long (T,) for 1-D ids, (B, T) for (B, ·) ids.

    ids (P′,) or (B, P′) with P′ ≥ prefix_len: the first prefix_len ids are the prefix (a whole
    lm/tasks.py example may be passed); text (S, E) / (B, S, E) and text_mask fill its ``<text>`` slots.
    ``plan`` (``output_plan``) gives T and each position's id block or forced id. Guidance runs when
    ``guidance_scale`` ≠ 1, a ``negative`` (text, text_mask) prompt is given, or the schedule is not
    constant (``guidance_schedule`` in probs.py); it needs text. Same arguments and seed → same tokens."""
    squeeze = ids.ndim == 1
    ids, text, text_mask = _batched(ids[..., :prefix_len], text, text_mask)
    guided = guidance_scale != 1 or negative is not None or guidance_schedule_kind != "constant"
    if guided:
        ids, text, text_mask = _guidance_rows(ids, text, text_mask, negative)
    rows, device, n_out = ids.shape[0], ids.device, len(plan)
    _check(model, prefix_len, n_out, temperature, top_k, top_p)
    allowed = plan_bounds(plan, model.config.vocab_size, device)
    scales = [guidance_schedule(i, n_out, guidance_scale, guidance_schedule_kind) for i in range(n_out)]
    scales = torch.tensor(scales, device=device)
    generator = torch.Generator(device).manual_seed(seed)
    params = dict(guided=guided, temperature=temperature, top_k=top_k, top_p=top_p)

    _setup_caches(model, rows, prefix_len + n_out - 1)
    plen = torch.full((rows,), prefix_len, dtype=torch.long, device=device)
    logits = prefill(model, ids, plen, text, text_mask)
    noise = _noise(model, rows, device, generator, params)
    first = next_token(logits, allowed[0], scales[0], noise, **params)  # (R, 1)
    step = _compiled_step() if compile else decode_one_token
    rest = decode_n_tokens(
        model, first, prefix_len, plen, allowed[1:], scales[1:], generator, step=step, **params
    )
    out = torch.cat([first, rest], dim=1)[: rows // (1 + guided)]  # the conditional rows
    return out[0] if squeeze else out


def _batched(ids, text, text_mask):
    """Add the batch dimension to unbatched ids (P,), text (S, E) and text_mask (S,); default mask: all."""
    if ids.ndim == 1:
        ids = ids[None]
        text = None if text is None else text[None]
        text_mask = None if text_mask is None else text_mask[None]
    if text is not None and text_mask is None:
        text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
    return ids, text, text_mask


def _guidance_rows(ids, text, text_mask, negative):
    """Rows (B, …) → (2B, …): the conditional rows, then the unconditional ones (text masked out, or the
    negative prompt's text), so both are one batch through the model."""
    if text is None:
        raise ValueError("classifier-free guidance needs a text prompt (text is None)")
    if negative is None:
        neg_text, neg_mask = text, torch.zeros_like(text_mask)  # every slot masked: the "no text" row
    else:
        neg_text, neg_mask = negative
        neg_text = neg_text.expand_as(text)  # one negative prompt (S, E) serves every row
        neg_mask = torch.ones_like(text_mask) if neg_mask is None else neg_mask.expand_as(text_mask)
    return torch.cat([ids, ids]), torch.cat([text, neg_text]), torch.cat([text_mask, neg_mask])
