"""Autoregressive sampling from the prefix LM on its static KV cache (read like gpt-fast's generate.py).

Dimension key: B samples, R model rows (B, or 2B under classifier-free guidance), P prefix tokens,
T output tokens, V vocabulary, S text slots, E text width.

Order (lm/transformer.py's module docstring): ``prefill`` runs the whole prefix once, bidirectionally,
and its last position predicts the first output token (the ``<bov_o>`` / ``<boa_o>`` marker, which ends
the prefix in lm/tasks.py); then ``decode_one_token`` feeds one token at a time at positions P, P + 1, …
Every output position has a *plan* entry (``output_plan`` derives it from the task layout): an id block
(a ``range``: visual ids in a video segment, level-l ids in audio level l) or a forced id (a segment
marker or ``<eos>``). A forced id is the one-id block [id, id + 1).

Classifier-free guidance runs the conditional and unconditional rows as one batch of 2B rows (the
unconditional row: the same prefix with every text slot masked, or the negative prompt's text); both
rows continue with the token sampled from the guided logits.

Two decode loops, the same tokens (greedy; sampled ones follow the same distribution):

- Eager (``compile=False``, the CPU's): ``decode_blocks`` reads the plan to the host once and then, per
  step, computes the output head for the step's id block only (a forced id skips the head) and draws
  noise for that block; ``CachedDecoder`` runs the model's blocks for one token without the input checks
  and over the filled keys only. It uses the blocks' parts (lm/transformer.py ``Block``, ``Attention``,
  ``KVCache.update``) directly: tests/test_sampling.py checks it against uncached forwards. On the CPU
  the loop of a narrow model runs on one thread (``_decode_threads``).
- Compiled (``compile=True``, for GPUs): ``decode_one_token`` on the full vocabulary, the block applied
  as a mask with tensor bounds, so every step is one CUDA graph (torch.compile, mode
  "reduce-overhead"). The loop reads nothing back to the host (positions, plan bounds, guidance scales
  and random numbers are device tensors made before or outside the step); the model's eager input
  checks, which read values back, are skipped under compile.

Speed: benchmarks/bench_generate.py; numbers in docs/generation.md ("Speed").
"""

from __future__ import annotations

import contextlib
import functools
import math

import torch
import torch.nn.functional as F

from videopoet.lm import tasks
from videopoet.lm.transformer import FactorizedHead, apply_rope, rope_angles
from videopoet.lm.vocab import Vocab
from videopoet.sampling.probs import (
    cfg_logits,
    constrain,
    exponential_noise,
    guidance_schedule,
    sample_from_noise,
)

PlanEntry = range | int  # an id block, or a forced id
ONE_THREAD_MAX_DIM = 512  # CPU decode of models up to this width (debug, tiny) runs on one thread
NOISE_STEPS = 16  # the compiled loop draws random numbers for this many steps at a time
CACHE_MULTIPLE = 8  # KV cache lengths are rounded up to a multiple of this


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
        if (isinstance(entry, range) and entry.step != 1) or not Vocab.pad < start < stop <= vocab_size:
            raise ValueError(  # <pad> is never sampled: the cached steps take every output as a key
                f"plan entries must be ids or step-1 ranges inside ({Vocab.pad}, {vocab_size}) (no <pad>), "
                f"got {entry}"
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
    constrained to ``allowed`` (None: logits of one id block, all allowed), then sampled; a guided pair
    of rows continues with the same token."""
    if guided:
        cond, uncond = logits.chunk(2)
        logits = cfg_logits(cond.float(), uncond.float(), scale)
    if allowed is not None:
        logits = constrain(logits, allowed)
    token = sample_from_noise(logits, noise, temperature=temperature, top_k=top_k, top_p=top_p)
    return token.repeat(2 if guided else 1)[:, None]


def step_table(start: int, allowed: torch.Tensor, scales: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The compiled loop's per-step inputs as one float32 table (n, 4): position (start, start + 1, …),
    id block start and stop (``allowed`` (n, 2)), guidance scale (``scales`` (n,)). A step takes one
    row, so each CUDA-graph replay copies one small input, not three. float32 holds integers below 2^24
    exactly: every position and id, checked without reading the device."""
    n = allowed.shape[0]
    if start + n >= 2**24 or vocab_size > 2**24:
        raise ValueError(f"positions and ids must lie below 2^24, got {start + n} and {vocab_size}")
    positions = torch.arange(start, start + n, device=allowed.device)
    cols = torch.stack([positions, allowed[:, 0], allowed[:, 1]], 1)  # (n, 3)
    return torch.cat([cols.float(), scales.float()[:, None]], 1)  # (n, 4)


def decode_one_token(model, token, row, noise, **params) -> torch.Tensor:
    """One step on the KV cache: token (R, 1) and the step's ``step_table`` row (4,) → the next token
    (R, 1). ``params``: guided, temperature, top_k, top_p (python constants: static under torch.compile).

    A decode query comes after the whole prefix, so its prefix-LM mask is the causal one; prefix_len =
    the query's own position says exactly that (keys before it are open either way) with no extra input."""
    pos = row[:1].long()  # (1,)
    logits = model(token, pos.expand(token.shape[0]), input_pos=pos)[:, -1]  # (R, V)
    return next_token(logits, row[1:3].long(), row[3], noise, **params)


def decode_n_tokens(
    model, token, start: int, allowed, scales, generator, *, step=None, **params
) -> torch.Tensor:
    """Feed ``token`` (R, 1) at position ``start`` and each sampled token after it: n = len(allowed)
    steps → long (R, n). ``allowed`` (n, 2) and ``scales`` (n,) are the steps' plan bounds and guidance.

    ``step`` None (eager): ``decode_blocks``, which computes only the allowed block of the output head.
    A step function (``decode_one_token``, or the compiled one): the full head, constrained on the
    device; one code path for every block, so a compiled step is one CUDA graph. Its random numbers
    are drawn ``NOISE_STEPS`` steps at a time: one generator launch, not one per token."""
    if step is None:
        return decode_blocks(model, token, start, allowed, scales, generator, **params)
    n, rows, vocab = allowed.shape[0], token.shape[0], model.config.vocab_size
    table = step_table(start, allowed, scales, vocab)
    out = torch.empty(n, rows, dtype=torch.long, device=token.device)  # step-major: out[i] is contiguous
    for i in range(n):
        if i % NOISE_STEPS == 0:
            noise = _noise(vocab, rows, token.device, generator, params, steps=min(NOISE_STEPS, n - i))
        token = step(model, token, table[i], None if noise is None else noise[i % NOISE_STEPS], **params)
        out[i] = token[:, 0]  # kept before the next replay overwrites the graph's output
        token = out[i][:, None]  # (R, 1)
    return out.t()


def decode_blocks(model, token, start: int, allowed, scales, generator, **params) -> torch.Tensor:
    """``decode_n_tokens`` for eager runs: each step computes the logits of its id block only (the
    visual block is under half of the tiny vocabulary, an audio level an eighth) and draws noise for
    that block; a forced id skips the head. The plan is read to the host once, before the loop; the
    steps then read nothing back. Greedy, the full-head step's tokens (up to float rounding in the
    head); sampled, the same distribution with other draws (noise for the block, not V ids)."""
    n, rows = allowed.shape[0], token.shape[0]
    bounds, weights = allowed.tolist(), scales.tolist()
    decoder = CachedDecoder(model, rows, start, n)
    out = torch.empty(rows, n, dtype=torch.long, device=token.device)
    for i, ((lo, hi), scale) in enumerate(zip(bounds, weights)):
        h = decoder.hidden(token, i)  # (R, D)
        if hi - lo == 1:  # a forced marker: the step only fills the KV cache
            token = torch.full((rows, 1), lo, dtype=torch.long, device=token.device)
        else:
            noise = _noise(hi - lo, rows, token.device, generator, params)
            token = next_token(block_logits(model, h, lo, hi), None, scale, noise, **params) + lo
        out[:, i] = token[:, 0]
    return out


def block_logits(model, h: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Hidden states (R, D) → the logits (R, stop − start) of ids [start, stop): a flat head (its own or
    tied to the embedding) multiplies by those rows of its weight only; the factorized head computes
    its normalised log-probs in full and slices them."""
    head = model.output
    if isinstance(head, FactorizedHead):
        return head(h)[..., start:stop]
    return F.linear(h, head.weight[start:stop])  # a view of contiguous rows: no copy


class CachedDecoder:
    """The prefix LM's cached forward for one token per row at positions start, start + 1, …: what
    ``PrefixLM.hidden_states`` and its blocks compute, minus what a decode step does not need.

    - No input checks (the sampler built the inputs; ``prefill`` ran the checks on the prefix).
    - Step i attends to the keys [0, start + i] only, not the whole cache: the later keys are masked
      anyway, and reading them was half the KV traffic of a clip on average.
    - The RoPE angles of every step and the key mask (False at ``<pad>`` and masked text slots: the
      prefill's ``cache_key_ok``; outputs are never ``<pad>``) are made once, not at every step.
    """

    def __init__(self, model, rows: int, start: int, n: int):
        if model.cache_key_ok is None:
            raise ValueError("decoding needs the KV caches: setup_caches and prefill first")
        cfg, device = model.config, model.tok_embeddings.weight.device
        self.model, self.start = model, start
        self.positions = torch.arange(start, start + n, device=device)  # (n,)
        self.cos, self.sin = rope_angles(self.positions, cfg.head_dim, cfg.rope_base)  # (n, K/2) each
        key_ok = model.cache_key_ok[:rows]  # (R, C), kept up to date for later cached calls
        key_ok[:, start : start + n] = True
        self.mask = None  # every key open: SDPA needs no mask
        if not bool(key_ok[:, :start].all()):  # one host read, before the loop
            mask = torch.zeros(key_ok.shape, dtype=model.tok_embeddings.weight.dtype, device=device)
            self.mask = mask.masked_fill_(~key_ok, -math.inf)[:, None, None]  # (R, 1, 1, C), added

    def hidden(self, token: torch.Tensor, i: int) -> torch.Tensor:
        """Token (R, 1) at step i (position start + i) → its normalised last hidden state (R, D)."""
        pos, rope = self.positions[i : i + 1], (self.cos[i : i + 1], self.sin[i : i + 1])
        keys = self.start + i + 1
        mask = None if self.mask is None else self.mask[..., :keys]  # (R, 1, 1, keys)
        x = self.model.tok_embeddings(token)  # (R, 1, D)
        for layer in self.model.layers:
            x = x + self._attention(layer.attention, layer.attention_norm(x), rope, mask, pos, keys)
            x = x + layer.feed_forward(layer.ffn_norm(x))
        return self.model.norm(x)[:, -1]

    @staticmethod
    def _attention(attn, x, rope, mask, pos, keys: int) -> torch.Tensor:
        """lm/transformer.py's ``Attention.forward`` for one cached token, over the first ``keys`` keys."""
        r, (h, g, k) = x.shape[0], (attn.n_heads, attn.n_kv_heads, attn.head_dim)
        qk, value = attn.wqkv(x).split([(h + g) * k, g * k], dim=-1)
        qk = apply_rope(qk.view(r, 1, h + g, k), *rope).transpose(1, 2)  # (R, H + G, 1, K): one call
        q, key = qk[:, :h], qk[:, h:]  # (R, H, 1, K), (R, G, 1, K)
        key, value = attn.kv_cache.update(pos, key, value.view(r, 1, g, k).transpose(1, 2))  # (R, G, C, K)
        key, value = key[:, :, :keys].to(q.dtype), value[:, :, :keys].to(q.dtype)
        if g != h:  # each group of H/G query heads shares one KV head
            key, value = key.repeat_interleave(h // g, dim=1), value.repeat_interleave(h // g, dim=1)
        y = F.scaled_dot_product_attention(q, key, value, attn_mask=mask)  # (R, H, 1, K)
        return attn.wo(y.transpose(1, 2).reshape(r, 1, h * k))  # (R, 1, D)


def _noise(width: int, rows: int, device, generator, params, steps: int | None = None):
    """Exp(1) draws (B, width) for one step's sampled rows (the conditional ones), or (steps, B, width)
    for ``steps`` steps; None for argmax."""
    if params["temperature"] == 0:
        return None
    shape = (rows // (2 if params["guided"] else 1), width)
    return exponential_noise(shape if steps is None else (steps, *shape), device, generator)


def cache_length(length: int, max_seq_len: int) -> int:
    """``length`` rounded up to a multiple of ``CACHE_MULTIPLE``, at most ``max_seq_len``."""
    return min(-(-length // CACHE_MULTIPLE) * CACHE_MULTIPLE, max_seq_len)


def _setup_caches(model, rows: int, length: int) -> None:
    """Allocate the KV caches unless ones of this shape exist: a compiled step keeps its CUDA graph when
    the buffers stay (stale entries are harmless: prefill and each step write a position before any query
    may attend to it). The length is rounded up to a multiple of ``CACHE_MULTIPLE`` (as gpt-fast does):
    attention kernels run faster on aligned key counts, and more calls share one cache and graph."""
    length = cache_length(length, model.config.max_seq_len)
    ok, weight = getattr(model, "cache_key_ok", None), model.tok_embeddings.weight
    cache = model.layers[0].attention.kv_cache
    if ok is None or tuple(ok.shape) != (rows, length) or cache.k_cache.dtype != weight.dtype:
        model.setup_caches(rows, length)


def _check(model, prefix_len: int, n_out: int, temperature, top_k, top_p, guidance_scale) -> None:
    if prefix_len < 1 or n_out < 1 or prefix_len + n_out - 1 > model.config.max_seq_len:
        raise ValueError(
            f"prefix of {prefix_len} + {n_out} output tokens must fit max_seq_len {model.config.max_seq_len}"
        )
    bad_temperature = not (math.isfinite(temperature) and temperature >= 0)  # NaN fails every comparison
    if bad_temperature or (top_k is not None and top_k < 1) or (top_p is not None and not 0 < top_p <= 1):
        raise ValueError(
            f"need temperature ≥ 0, top_k ≥ 1, 0 < top_p ≤ 1; got {temperature}, {top_k}, {top_p}"
        )
    if not math.isfinite(guidance_scale):
        raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale}")


@contextlib.contextmanager
def _decode_threads(model, device: torch.device):
    """One CPU thread for the decode loop of a narrow model: its ops are (R, 1, ·) vectors and few-row
    matrix products, too small to share between threads, and on a busy machine each op then waits for
    the slower thread (measurements: docs/generation.md, "Speed"). Wider models keep torch's thread
    count: their matrices are worth splitting (not measured)."""
    before = torch.get_num_threads()
    if device.type == "cpu" and model.config.dim <= ONE_THREAD_MAX_DIM:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
    _check(model, prefix_len, n_out, temperature, top_k, top_p, guidance_scale)
    allowed = plan_bounds(plan, model.config.vocab_size, device)
    scales = [guidance_schedule(i, n_out, guidance_scale, guidance_schedule_kind) for i in range(n_out)]
    scales = torch.tensor(scales, device=device)
    generator = torch.Generator(device).manual_seed(seed)
    params = dict(guided=guided, temperature=temperature, top_k=top_k, top_p=top_p)

    _setup_caches(model, rows, prefix_len + n_out - 1)
    plen = torch.full((rows,), prefix_len, dtype=torch.long, device=device)
    logits = prefill(model, ids, plen, text, text_mask)
    noise = _noise(model.config.vocab_size, rows, device, generator, params)
    first = next_token(logits, allowed[0], scales[0], noise, **params)  # (R, 1)
    step = _compiled_step() if compile else None
    with _decode_threads(model, device):
        rest = decode_n_tokens(
            model, first, prefix_len, allowed[1:], scales[1:], generator, step=step, **params
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
