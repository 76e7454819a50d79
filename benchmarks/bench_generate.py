"""Generation speed: one 17-frame 128×128 clip with sound end to end, and the LM's decode step against a
minimal gpt-fast-style decode loop of the same shape. Prints one JSON object.

    python3 benchmarks/bench_generate.py --quick                     # one end-to-end run on the CPU
    python3 benchmarks/bench_generate.py                             # warm-up + timed runs (GPU if present)
    python3 benchmarks/bench_generate.py --decode-only --presets tiny
    python3 benchmarks/bench_generate.py --decode-only --presets tiny,paper-300m   # paper shapes: CUDA only

End to end (default): a ``VideoPoetPipeline`` from the bundled tokenizers, the MiniLM text encoder and the
bundled LM, or ``PrefixLM.from_preset("tiny")`` with random weights when none is bundled (``lm`` in the
JSON says which): the speed does not depend on the weights, since the layout fixes the token count. One
text_to_video call with its sound (video_to_audio on the generated frames), split into text encoding,
prefill, decode (tokens; ms/token over the decode loop's tokens, the first one comes from the prefill),
video tokenizer decode, and the whole video_to_audio step (its prefill and decode also apart). The phases
are timed by wrapping the pipeline's and the sampler's functions (``instrument``). Unguided by default
(``--guidance``, 1: the recorded runs; the pipeline's own default for a prompt is 3). On CUDA the decode
step is compiled (``--compile``: ``pipe(..., compile=True)``) and the first run is a warm-up; ``--runs``
timed runs, the best one reported.

Decode only (``--decode-only``): ms/token of ``sampling.autoregressive.decode_n_tokens`` (the loop
``generate`` runs: guided, batch 2 = the conditional and unconditional rows, sampled over the visual id
block) against ``_RefLM`` below: gpt-fast's recipe (static KV cache, a precomputed RoPE table and causal
mask, fused qkv and w1·w3, SwiGLU, full-vocabulary head, exponential-race sampling) with blocks of the
same shape, the same cache length, start position (``--start``) and batch, guided the same way, its
noise from the same ``probs.exponential_noise`` (gpt-fast's ``exponential_`` is 4× slower on a CPU and
would flatter ours). Compiled on CUDA (bf16), eager on CPU (fp32), both under the thread count
``generate`` decodes with (one on CPU up to width 512). The two loops alternate ``--repeats`` times and
the best of each is reported; ``ratio`` = ours / reference (≤ 1: our step is no slower).
``--profile`` (CUDA) then runs each loop once more under ``torch.profiler`` and reports, per token, the GPU
kernel time, the kernel count and the kernels that take the most time (``profile`` in the JSON): where
the two steps differ.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import time

import torch
import torch.nn.functional as F
from torch import nn

PROMPT = "a red ball bounces across a green field"
FRAMES, SIZE = 17, 128


# ============================================================================================ end to end
class PhaseClock:
    """Wraps functions so each call adds its (device-synchronised) seconds to a named phase."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, list[float]] = {}
        self.tokens: list[int] = []  # output tokens of each generate call (its plan's length)

    def wrap(self, name: str, fn) -> _Timed:
        return _Timed(self, name, fn)

    def reset(self) -> None:
        self.seconds.clear()
        self.tokens.clear()


class _Timed:
    def __init__(self, clock: PhaseClock, name: str, fn):
        self.clock, self.name, self.fn = clock, name, fn

    def __call__(self, *args, **kwargs):
        _sync(self.clock.device)
        t0 = time.perf_counter()
        out = self.fn(*args, **kwargs)
        _sync(self.clock.device)
        self.clock.seconds.setdefault(self.name, []).append(time.perf_counter() - t0)
        return out


class _CountedGenerate:
    """``generate`` that records its plan's length."""

    def __init__(self, generate, clock: PhaseClock):
        self.generate, self.clock = generate, clock

    def __call__(self, *args, **kwargs):
        self.clock.tokens.append(len(kwargs["plan"]))
        return self.generate(*args, **kwargs)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_pipeline(device: torch.device):
    """The bundled tokenizers + MiniLM + the bundled LM, or a random-weight ``tiny`` LM → (pipe, lm)."""
    from videopoet.components import PRETRAINED_ROOT
    from videopoet.lm.transformer import PrefixLM
    from videopoet.pipeline import VideoPoetPipeline
    from videopoet.text import load_text_encoder
    from videopoet.tokenizers.audio import AudioTokenizer
    from videopoet.tokenizers.video import VideoTokenizer

    video = VideoTokenizer.from_pretrained(device=device)
    audio = AudioTokenizer.from_pretrained(device=device)
    text = load_text_encoder(device=device)
    if (PRETRAINED_ROOT / "transformer").is_dir():
        lm, which = PrefixLM.from_pretrained(device=device), "bundled"
    else:
        torch.manual_seed(0)
        lm, which = PrefixLM.from_preset("tiny").to(device), "tiny preset, random weights (none bundled)"
    return VideoPoetPipeline(video, audio, text, lm), which


def instrument(pipe, clock: PhaseClock) -> None:
    """Time the pipeline's phases. ``generate`` looks ``prefill`` and ``decode_n_tokens`` up in its
    module when it runs, and the pipeline imports ``generate`` when it samples, so patching the module
    attributes reaches both."""
    from videopoet.sampling import autoregressive as ar

    ar.generate = _CountedGenerate(ar.generate, clock)
    ar.prefill = clock.wrap("prefill", ar.prefill)
    ar.decode_n_tokens = clock.wrap("decode", ar.decode_n_tokens)
    pipe._encode_prompt = clock.wrap("text", pipe._encode_prompt)
    pipe._decode_video = clock.wrap("video_decode", pipe._decode_video)
    pipe._video_to_audio = clock.wrap("video_to_audio", pipe._video_to_audio)


def end_to_end(args, device: torch.device) -> dict:
    pipe, which = build_pipeline(device)
    clock = PhaseClock(device)
    instrument(pipe, clock)
    runs = 1 if args.quick else args.runs
    warmup = 0 if args.quick else args.warmup
    results = []
    for i in range(warmup + runs):
        clock.reset()
        t0 = time.perf_counter()
        out = pipe(PROMPT, num_frames=FRAMES, width=SIZE, height=SIZE, seed=i,
                   guidance_scale=args.guidance, compile=args.compile)  # fmt: skip
        _sync(device)
        total = time.perf_counter() - t0
        if i >= warmup:
            results.append(_phases(clock, total))
    best = min(results, key=lambda r: r["total_s"])
    return {
        "mode": "end_to_end",
        "lm": which,
        "lm_shape": _shape(pipe.transformer.config),
        "compiled_decode": args.compile,
        "guidance": args.guidance,
        "clip": {"frames": int(out.frames.shape[0]), "size": list(out.frames.shape[1:3]), "sound": True},
        "runs": runs,
        "warmup": warmup,
        "best": best,
        "all_total_s": [r["total_s"] for r in results],
    }


def _phases(clock: PhaseClock, total: float) -> dict:
    """One run's phases: the first generate call is text_to_video, the second video_to_audio."""
    s = clock.seconds
    t2v_tokens, v2a_tokens = clock.tokens[0], clock.tokens[1]
    decode = s["decode"][0]
    return {
        "total_s": round(total, 3),
        "text_s": round(sum(s.get("text", [])), 4),
        "t2v_prefill_s": round(s["prefill"][0], 4),
        "t2v_decode_s": round(decode, 3),
        "t2v_tokens": t2v_tokens,
        "t2v_ms_per_token": round(1000 * decode / max(t2v_tokens - 1, 1), 3),
        "video_decode_s": round(s["video_decode"][0], 3),
        "v2a_s": round(s["video_to_audio"][0], 3),
        "v2a_prefill_s": round(s["prefill"][1], 4),
        "v2a_decode_s": round(s["decode"][1], 3),
        "v2a_tokens": v2a_tokens,
        "v2a_ms_per_token": round(1000 * s["decode"][1] / max(v2a_tokens - 1, 1), 3),
    }


def _shape(cfg) -> dict:
    return {"dim": cfg.dim, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "vocab_size": cfg.vocab_size}


# ============================================================================================ decode only
class _RefAttention(nn.Module):
    """gpt-fast's Attention: fused qkv, RoPE from a table, static KV cache written by index."""

    def __init__(self, dim, n_heads, n_kv_heads, batch, cache_len, dtype, device):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, dim // n_heads
        self.wqkv = nn.Linear(dim, (n_heads + 2 * n_kv_heads) * self.head_dim, bias=False)
        self.wo = nn.Linear(dim, dim, bias=False)
        shape = (batch, n_kv_heads, cache_len, self.head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype, device=device))
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype, device=device))

    def forward(self, x, freqs, mask, input_pos):
        b, n, d = x.shape
        kv = self.n_kv_heads * self.head_dim
        q, k, v = self.wqkv(x).split([d, kv, kv], dim=-1)
        q = _ref_rope(q.view(b, n, self.n_heads, self.head_dim), freqs)
        k = _ref_rope(k.view(b, n, self.n_kv_heads, self.head_dim), freqs)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.view(b, n, self.n_kv_heads, -1).transpose(1, 2)
        self.k_cache[:, :, input_pos] = k
        self.v_cache[:, :, input_pos] = v
        k, v = self.k_cache, self.v_cache
        if self.n_kv_heads != self.n_heads:
            k = k.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)
            v = v.repeat_interleave(self.n_heads // self.n_kv_heads, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, 1, K)
        return self.wo(y.transpose(1, 2).contiguous().view(b, n, d))


def _ref_rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """gpt-fast's apply_rotary_emb: x (B, L, H, K), freqs (L, K/2, 2) cos/sin."""
    xs = x.float().reshape(*x.shape[:-1], -1, 2)  # (B, L, H, K/2, 2)
    f = freqs.view(1, xs.size(1), 1, xs.size(3), 2)
    out = torch.stack(
        [xs[..., 0] * f[..., 0] - xs[..., 1] * f[..., 1], xs[..., 1] * f[..., 0] + xs[..., 0] * f[..., 1]], -1
    )
    return out.flatten(3).type_as(x)


class _RefRMSNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-5)).type_as(x) * self.weight


class _RefBlock(nn.Module):
    def __init__(self, cfg, batch, cache_len, dtype, device):
        super().__init__()
        self.attention_norm, self.ffn_norm = _RefRMSNorm(cfg.dim), _RefRMSNorm(cfg.dim)
        self.attention = _RefAttention(cfg.dim, cfg.n_heads, cfg.kv_heads, batch, cache_len, dtype, device)
        self.w13 = nn.Linear(cfg.dim, 2 * cfg.ffn_dim, bias=False)
        self.w2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x, freqs, mask, input_pos):
        x = x + self.attention(self.attention_norm(x), freqs, mask, input_pos)
        a, b = self.w13(self.ffn_norm(x)).chunk(2, dim=-1)
        return x + self.w2(F.silu(a) * b)


class _RefLM(nn.Module):
    """A minimal gpt-fast Transformer of a PrefixLM config's shape (flat or factorized head)."""

    def __init__(self, cfg, batch: int, cache_len: int, dtype, device):
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(
            _RefBlock(cfg, batch, cache_len, dtype, device) for _ in range(cfg.n_layers)
        )
        self.norm = _RefRMSNorm(cfg.dim)
        if cfg.factorized_visual is None:
            self.output = nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        else:
            from videopoet.lm.transformer import FactorizedHead

            self.output = FactorizedHead(cfg.dim, cfg.vocab_size, *cfg.factorized_visual)
        k = cfg.head_dim
        inv = 1.0 / (cfg.rope_base ** (torch.arange(0, k, 2, device=device).float() / k))
        angles = torch.outer(torch.arange(cache_len, device=device).float(), inv)  # (C, K/2)
        self.register_buffer("freqs", torch.stack([angles.cos(), angles.sin()], -1))  # (C, K/2, 2)
        causal = torch.tril(torch.ones(cache_len, cache_len, dtype=torch.bool, device=device))
        self.register_buffer("causal_mask", causal)
        self.to(device=device, dtype=dtype)

    def forward(self, ids, input_pos):
        mask = self.causal_mask[None, None, input_pos]  # (1, 1, L, C)
        freqs = self.freqs[input_pos]
        x = self.tok_embeddings(ids)
        for layer in self.layers:
            x = layer(x, freqs, mask, input_pos)
        return self.output(self.norm(x))


def _ref_step(model, token, input_pos, scale, noise):
    """gpt-fast decode_one_token, guided: logits of both rows → CFG → exponential-race sample."""
    logits = model(token, input_pos)[:, -1].float()  # (2, V)
    cond, uncond = logits.chunk(2)
    probs = torch.softmax(uncond + scale * (cond - uncond), dim=-1)
    return (probs / noise).argmax(-1).repeat(2)[:, None]


def _ref_decode(step, model, token, start: int, n: int, scale, generator):
    from videopoet.sampling.probs import exponential_noise  # ours: on the CPU 4× gpt-fast's exponential_

    positions = torch.arange(start, start + n, device=token.device)
    out = torch.empty(token.shape[0], n, dtype=torch.long, device=token.device)
    for i in range(n):
        noise = exponential_noise((1, model.cfg.vocab_size), token.device, generator)
        token = step(model, token, positions[i : i + 1], scale, noise).clone()
        out[:, i] = token[:, 0]
    return out


@contextlib.contextmanager
def _same_threads(model, device):
    yield


def _ours(cfg, batch, cache_len, dtype, device):
    from videopoet.lm.transformer import PrefixLM

    model = PrefixLM(cfg).to(device=device, dtype=dtype).eval()
    model.setup_caches(batch, cache_len)
    return model


def decode_only(args, device: torch.device) -> dict:
    from videopoet.lm.transformer import PRESETS
    from videopoet.lm.vocab import VOCABS

    presets = [p for p in args.presets.split(",") if p]
    rows = []
    for name in presets:
        if name.startswith("paper") and device.type != "cuda":
            rows.append({"preset": name, "skipped": "paper shapes run on CUDA only"})
            continue
        rows.append(_decode_pair(name, PRESETS[name], VOCABS["paper" if name.startswith("paper") else name],
                                 args, device))  # fmt: skip
    return {"mode": "decode_only", "batch": 2, "guided": True, "presets": rows}


def _decode_pair(name, cfg, vocab, args, device) -> dict:
    """Our decode loop and the reference's at one preset's shape, timed side by side."""
    from videopoet.sampling import autoregressive as ar

    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    n = args.tokens or (256 if cuda else 48)
    start = args.start
    cache_len = ar.cache_length(start + n + 1, cfg.max_seq_len)  # as generate (and gpt-fast): a multiple of 8
    torch.manual_seed(0)
    ours = _ours(cfg, 2, cache_len, dtype, device)
    ref = _RefLM(cfg, 2, cache_len, dtype, device).eval()
    token = torch.full((2, 1), vocab.bov_o, device=device)
    block = vocab.visual_range
    allowed = torch.tensor([[block.start, block.stop]] * n, device=device)
    scales = torch.full((n,), 3.0, device=device)
    step = {"step": ar._compiled_step()} if cuda else {}  # eager: generate's default loop
    ref_step = torch.compile(_ref_step, mode="reduce-overhead", fullgraph=True) if cuda else _ref_step
    params = dict(guided=True, temperature=1.0, top_k=None, top_p=None)
    loops = {
        "ours": functools.partial(ar.decode_n_tokens, ours, token, start, allowed, scales, **step, **params),
        "reference": functools.partial(_ref_decode, ref_step, ref, token, start, n, scales[0]),
    }
    ms = {"ours": [], "reference": []}
    threads = getattr(ar, "_decode_threads", _same_threads)  # the thread count generate decodes with
    with torch.no_grad(), threads(ours, device):  # as generate: no_grad
        decode_threads = torch.get_num_threads()
        for loop in loops.values():  # warm-up: compile and capture
            loop(torch.Generator(device).manual_seed(0))
        for _ in range(args.repeats):  # interleaved: a busy machine slows both alike
            for key, loop in loops.items():
                _sync(device)
                t0 = time.perf_counter()
                loop(torch.Generator(device).manual_seed(0))
                _sync(device)
                ms[key].append(1000 * (time.perf_counter() - t0) / n)
    best = {k: min(v) for k, v in ms.items()}
    profile = None
    if args.profile:
        profile = {k: _kernel_profile(loop, device, n) for k, loop in loops.items()} if cuda else {
            "skipped": "the kernel profile needs CUDA"}  # fmt: skip
    return {
        "preset": name,
        "shape": _shape(cfg),
        "dtype": str(dtype).removeprefix("torch."),
        "compiled": cuda,
        "decode_threads": decode_threads,
        "start_pos": start,
        "tokens": n,
        "ours_ms_per_token": round(best["ours"], 3),
        "reference_ms_per_token": round(best["reference"], 3),
        "ratio": round(best["ours"] / best["reference"], 3),
        "all_ms": {k: [round(x, 3) for x in v] for k, v in ms.items()},
    } | ({"profile": profile} if profile else {})


def _kernel_profile(loop, device: torch.device, n: int, top: int = 12) -> dict:
    """One run of ``loop`` under torch.profiler → per token: device kernel µs, kernel count, and the
    ``top`` kernels by time as [name, calls per token, µs per token]."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        loop(torch.Generator(device).manual_seed(0))
        _sync(device)
    kernels: dict[str, list] = {}
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            entry = kernels.setdefault(event.name[:100], [0, 0.0])
            entry[0] += 1
            entry[1] += event.device_time_total
    ranked = sorted(kernels.items(), key=lambda kv: -kv[1][1])[:top]
    return {
        "kernel_us_per_token": round(sum(t for _, t in kernels.values()) / n, 1),
        "kernels_per_token": round(sum(c for c, _ in kernels.values()) / n, 1),
        "top_kernels": [[name, round(c / n, 2), round(t / n, 2)] for name, (c, t) in ranked],
    }


# ============================================================================================ main
def _cpu_name() -> str:
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="one end-to-end run, no warm-up, on CPU")
    ap.add_argument("--runs", type=int, default=2, help="timed end-to-end runs (the best is reported)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: 1 on CUDA, 0)")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="compile the decode step (default: on CUDA)")  # fmt: skip
    ap.add_argument("--guidance", type=float, default=1.0, help="end to end: t2v guidance scale (default 1)")
    ap.add_argument("--decode-only", action="store_true", help="our decode step vs the gpt-fast-style loop")
    ap.add_argument("--presets", default="tiny", help="decode-only: comma-separated PrefixLM presets")
    ap.add_argument("--tokens", type=int, default=None, help="decode-only: tokens per timed loop")
    ap.add_argument("--start", type=int, default=1024, help="decode-only: position of the first token")
    ap.add_argument("--repeats", type=int, default=3, help="decode-only: timed loops per model")
    ap.add_argument("--profile", action="store_true", help="decode-only: per-kernel GPU time of both loops")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args(argv)
    from videopoet.device import pick_device

    device = pick_device("cpu" if args.quick and args.device == "auto" else args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.compile = device.type == "cuda" if args.compile is None else args.compile
    args.warmup = (1 if device.type == "cuda" else 0) if args.warmup is None else args.warmup
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    result |= decode_only(args, device) if args.decode_only else end_to_end(args, device)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
