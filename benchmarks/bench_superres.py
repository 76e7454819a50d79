"""Super-resolution quality (128 → 256 px) on held-out scenes, and the speed of MaskGIT decoding against
autoregressive decoding of the same tokens. Prints (and with --out writes) one JSON object.

    PYTHONPATH=src python3 benchmarks/bench_superres.py --out sr.json   # all rows, the bundled SR model
    PYTHONPATH=src python3 benchmarks/bench_superres.py --model runs/superres_tiny/final  # another model
    PYTHONPATH=src python3 benchmarks/bench_superres.py --speed --preset debug --device cpu --no-quality
    PYTHONPATH=src python3 benchmarks/bench_superres.py --speed --preset tiny --compile   # on CUDA

Quality: the synthetic world renders each held-out scene (seeds 4242–4246, split heldout, 17 frames) at
128×128 and at 256×256, so the reference is exact. Rows, each against the 256×256 rendering:

- (a) ``superres``: the SR model's 2× of the video tokenizer's tokens of the 128×128 clip, decoded
  (the bundled model, or --model DIR; ``--model none`` skips it). A model with text reads the scene's caption
  (MiniLM; text guidance ``--guidance-text``, the pipeline's by default; ``--no-text`` for none);
- (a') ``superres_consistent``: row (a) back-projected onto the 128×128 reconstruction
  (``superres.upscale.back_project``; ``--consistency-coarse C`` keeps its correction below 1/C of the
  128×128 scale), what ``upscale_frames`` returns; with C > 1 it is ``superres_consistent_coarseC``,
  and several values of C give one row each;
- (b) ``bicubic``: the tokenizer's reconstruction of the 128×128 clip, upsampled 2× bicubic;
- (c) ``tokenizer_256``: the tokenizer's own reconstruction of the 256×256 rendering (SR's ceiling);
- (c') ``tokenizer_256_consistent``: row (c) back-projected as row (a') is: what back-projection leaves of
  an SR model that got every token right;
- (d) ``bicubic_tokens``: the tokenizer's tokens of row (b)'s 256×256 frames, decoded: what copying the
  bicubic upsample into the 256×256 token grid gives, without any model;
- ``reference``: the rendering itself (the judge's own ceiling; PSNR/SSIM are undefined there).

Metrics: PSNR and SSIM (eval/metrics.py, per frame, averaged over frames and clips) and the world judge's
shape accuracy on the small objects (objects of size "small", matched by colour: a missing one counts
wrong), pooled over the clips. Rows (a) and (d) also report ``token_agreement``: the fraction of their
high-res tokens equal to the tokenizer's tokens of the 256×256 rendering (row c's tokens). The judge runs
on the CPU; ``--workers N`` runs it in N spawned processes while the device makes the next scene.

Speed (--speed): the SR preset's 24 MaskGIT steps, unguided (one row per step) and guided on text and
low-res (three rows per step: ``maskgit_decode`` with scales 8 and 2), against autoregressive decoding
of the same 5,120 tokens (5×32×32) after a 1,280-token prefix (the low-res tokens) with a prefix LM of
about the same parameter count and width, one row, static KV cache (``sampling.autoregressive.generate``).
``--compile`` compiles both sides the same way: the AR decode step and the MaskGIT forward, each under
torch.compile with CUDA graphs (mode "reduce-overhead"). Random weights: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
import torch

HELDOUT_SEEDS = (4242, 4243, 4244, 4245, 4246)


def _args(argv):
    from videopoet.superres.upscale import COARSE, TEMPERATURE, TEXT_GUIDANCE

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--model",
        default="bundled",
        help="super-resolution folder of row (a); 'bundled' (default): the bundled one; 'none': no row (a)",
    )
    ap.add_argument("--video-tokenizer", help="video tokenizer folder (default: the bundled one)")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(HELDOUT_SEEDS))
    ap.add_argument("--frames", type=int, default=17)
    ap.add_argument("--steps", type=int, default=24, help="MaskGIT steps (row a and --speed)")
    ap.add_argument("--guidance-lowres", type=float, default=1.0)
    ap.add_argument("--guidance-text", type=float, default=TEXT_GUIDANCE, help="row (a), a model with text")
    ap.add_argument("--temperature", type=float, default=TEMPERATURE, help="row (a): MaskGIT (0 = greedy)")
    ap.add_argument(
        "--consistency-coarse",
        type=int,
        nargs="+",
        choices=COARSE,
        default=[1],
        help="rows (a'), (c'): back_project's coarse; several values give those rows for each",
    )
    ap.add_argument(
        "--text",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="row (a): a model with text reads each scene's caption (MiniLM), as in the pipeline",
    )
    ap.add_argument("--quality", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--speed", action="store_true", help="MaskGIT vs autoregressive decoding time")
    ap.add_argument("--preset", default="tiny", help="SR preset of --speed")
    ap.add_argument("--grid", default="5,32,32", help="high-res token grid T,H,W of --speed")
    ap.add_argument("--compile", action="store_true", help="--speed: compile both decoders (CUDA graphs)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=1, help="processes that run the judge (on the CPU)")
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--overwrite", action="store_true")
    return ap.parse_args(argv)


# ============================================================================================ quality
def _to_tensor(frames: np.ndarray) -> torch.Tensor:
    from videopoet.data.sample import frames_to_tensor

    return frames_to_tensor(frames)[None]  # (1, 3, T, H, W)


def _small_object_hits(frames: np.ndarray, attributes: dict) -> tuple[int, int]:
    """(small objects whose shape the judge reads right, small objects)."""
    from videopoet.eval.judge import judge_clip

    small = [o for o in attributes["objects"] if o["size"] == "small"]
    if not small:
        return 0, 0
    found = {o.color: o.shape for o in judge_clip(frames).objects}
    return sum(found.get(o["color"]) == o["shape"] for o in small), len(small)


def _judge(pool, frames: dict, attributes: dict) -> list:
    """[(row, (hits, small objects))] of each row's frames, or [(row, a future of it)] with a pool."""
    if pool is None:
        return [(name, _small_object_hits(f, attributes)) for name, f in frames.items()]
    return [(name, pool.submit(_small_object_hits, f, attributes)) for name, f in frames.items()]


def _caption_text(encoder, caption: str, device):
    """(text (1, S, E), text_mask (1, S)) of a caption, or (None, None) without an encoder."""
    if encoder is None:
        return None, None
    out = encoder.encode([caption])
    return out.embeddings.to(device), out.mask.to(device)


def _row_outputs(seed, args, tokenizer, model, device, encoder=None):
    """Each row's decoded 256×256 clip (1, 3, T, H, W) on the CPU, the 256×256 rendering, and the token
    agreement of rows (a) and (d) with the rendering's tokens."""
    from videopoet.data.synthetic import render_clip
    from videopoet.superres.upscale import back_project, resize, upscale_tokens

    small = render_clip(seed, split="heldout", width=128, height=128, frames=args.frames)
    lo_tokens = tokenizer.encode(_to_tensor(small.frames).to(device))
    big = render_clip(seed, split="heldout", width=256, height=256, frames=args.frames)
    true = tokenizer.encode(_to_tensor(big.frames).to(device))
    lo_recon = tokenizer.decode(lo_tokens)  # (1, 3, T, 128, 128)
    bicubic = resize(lo_recon, 2).clamp(-1, 1)
    tokens = {"bicubic_tokens": tokenizer.encode(bicubic)}  # = draft_tokens(tokenizer, lo_tokens); (a) too
    out = {"bicubic": bicubic, "tokenizer_256": tokenizer.decode(true)}
    if model is not None:
        text, mask = _caption_text(encoder, small.caption or "", device)
        scale = args.guidance_text if text is not None else 1.0
        tokens["superres"] = upscale_tokens(
            model,
            lo_tokens,
            text,
            mask,
            tokenizer=tokenizer,
            draft=tokens["bicubic_tokens"],
            steps=args.steps,
            text_scale=scale,
            lo_scale=args.guidance_lowres,
            temperature=args.temperature,
            seed=seed,
        )
    out |= {name: tokenizer.decode(ids) for name, ids in tokens.items()}
    for coarse in args.consistency_coarse:  # rows (c') and (a'): what upscale_frames returns, at each band
        for name in [n for n in ("tokenizer_256", "superres") if n in out]:
            hi = out[name].float()
            out[consistent_row(name, coarse)] = back_project(hi, lo_recon.float(), coarse=coarse)
    agreement = {name: float((ids == true).float().mean()) for name, ids in tokens.items()}
    return {k: v.float().cpu() for k, v in out.items()}, big, agreement


def consistent_row(name: str, coarse: int) -> str:
    """The row of ``name`` back-projected with ``coarse``: "NAME_consistent" (full), else with the band."""
    return f"{name}_consistent" + ("" if coarse == 1 else f"_coarse{coarse}")


def _model(spec: str, device):
    """(the SR model of --model, None) or (None, why row (a) is skipped)."""
    from videopoet.components import bundled_directory
    from videopoet.errors import UserError
    from videopoet.superres.model import SuperResTransformer

    if spec == "none":
        return None, "--model none"
    if spec == "bundled":
        try:
            bundled_directory(SuperResTransformer)
        except UserError:
            return None, "no super-resolution model is bundled in this install; pass --model DIR"
    folder = None if spec == "bundled" else spec
    return SuperResTransformer.from_pretrained(folder, device=device).eval(), None


def quality(args, device) -> dict:
    from videopoet.data.sample import tensor_to_frames
    from videopoet.eval.metrics import psnr, ssim
    from videopoet.tokenizers.video import VideoTokenizer

    tokenizer = VideoTokenizer.from_pretrained(args.video_tokenizer, device=device).eval()
    model, skipped = _model(args.model, device)
    encoder = None
    if model is not None and model.config.text_dim and args.text:
        from videopoet.text import load_text_encoder

        encoder = load_text_encoder(device=device)
    names = ["superres", "bicubic", "tokenizer_256", "bicubic_tokens", "reference"]
    names += [consistent_row(n, c) for c in args.consistency_coarse for n in ("superres", "tokenizer_256")]
    rows = {name: {"psnr": [], "ssim": [], "hits": 0, "small": 0, "agree": []} for name in names}
    t0 = time.perf_counter()
    # the judge runs on the CPU: --workers spawned processes judge while the device makes the next scene
    pool = ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) if args.workers > 1 else None
    judged = []  # (row, (hits, small) or a future of it)
    try:
        for seed in args.seeds:
            out, clip, agreement = _row_outputs(seed, args, tokenizer, model, device, encoder)
            for name, value in agreement.items():
                rows[name]["agree"].append(value)
            target = _to_tensor(clip.frames)
            frames = {"reference": clip.frames} | {k: tensor_to_frames(v[0]) for k, v in out.items()}
            judged += _judge(pool, frames, clip.attributes)
            for name, video in out.items():
                rows[name]["psnr"].append(float(psnr(video, target)[0]))
                rows[name]["ssim"].append(float(ssim(video, target)[0]))
        for name, counts in judged:
            hits, n = counts.result() if pool else counts
            rows[name]["hits"] += hits
            rows[name]["small"] += n
    finally:
        if pool:
            pool.shutdown()
    result = {name: _summary(row) for name, row in rows.items()}
    if model is None:
        result = {k: v for k, v in result.items() if not k.startswith("superres")}
        result["superres"] = {"skipped": skipped}
    else:
        result["superres"]["settings"] = {
            "steps": args.steps,
            "guidance_lowres": args.guidance_lowres,
            "temperature": args.temperature,
            "guidance_text": args.guidance_text if encoder is not None else None,
        }
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def _summary(row: dict) -> dict:
    out = {}
    if row["psnr"]:
        out["psnr_db"] = round(float(np.mean(row["psnr"])), 3)
        out["ssim"] = round(float(np.mean(row["ssim"])), 4)
        out["psnr_per_clip"] = [round(v, 3) for v in row["psnr"]]
    if row["agree"]:
        out["token_agreement"] = round(float(np.mean(row["agree"])), 3)
    if row["small"]:
        out["small_shape_accuracy"] = round(row["hits"] / row["small"], 3)
        out["small_objects"] = row["small"]
    return out


# ============================================================================================ speed
def _matched_lm(sr_params: int, dim: int, n_heads: int, vocab: int, length: int):
    """The prefix LM config of width ``dim`` whose parameter count is closest to ``sr_params``."""
    from videopoet.lm.transformer import PrefixLMConfig, param_count

    def cfg(n):
        return PrefixLMConfig(vocab_size=vocab, dim=dim, n_layers=n, n_heads=n_heads, max_seq_len=length,
                              text_dim=384, text_slots=0)  # fmt: skip

    best = min(range(1, 65), key=lambda n: abs(param_count(cfg(n)) - sr_params))
    return cfg(best)


def speed(args, device) -> dict:
    from videopoet.device import synchronize
    from videopoet.lm.transformer import PrefixLM
    from videopoet.lm.vocab import Vocab
    from videopoet.sampling.autoregressive import generate
    from videopoet.sampling.masked import maskgit_decode
    from videopoet.superres.model import SuperResTransformer, param_count

    t, h, w = (int(v) for v in args.grid.split(","))
    torch.manual_seed(0)
    sr = SuperResTransformer.from_preset(args.preset).to(device).eval()
    cfg = sr.config
    lo = torch.randint(0, cfg.mask_id, (1, t, h // 2, w // 2), device=device)
    n_out, n_prefix = t * h * w, lo.numel()
    first = Vocab(2, 1, 2).visual_start  # visual ids start after the special ids, as in the LM's vocabulary
    lm_cfg = _matched_lm(param_count(cfg), cfg.dim, cfg.n_heads, first + cfg.mask_id, n_prefix + n_out)
    lm = PrefixLM(lm_cfg).to(device).eval()
    plan = [range(first, first + cfg.mask_id)] * n_out

    text = torch.randn(1, 8, cfg.text_dim, device=device)
    # a draft grid as the model's input (making it is one tokenizer decode + encode, not timed here)
    draft = torch.randint(0, cfg.mask_id, (1, t, h, w), device=device) if cfg.draft else None

    def masked():
        return maskgit_decode(sr, lo, draft=draft, steps=args.steps, seed=0, compile=args.compile)

    def guided():  # the paper's stage-2 scales: three rows per step (full, no text, no low-res)
        return maskgit_decode(sr, lo, text, draft=draft, steps=args.steps, text_scale=8.0, lo_scale=2.0,
                              seed=0, compile=args.compile)  # fmt: skip

    def autoregressive():
        return generate(lm, lo.flatten() + first, n_prefix, plan=plan, seed=0, compile=args.compile)

    timings = {}
    for name, fn in (("maskgit", masked), ("maskgit_guided", guided), ("autoregressive", autoregressive)):
        if device.type == "cuda" or args.compile:
            fn()  # warm-up: kernels, allocator, CUDA graphs
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        timings[name] = time.perf_counter() - t0
    return {
        "sr_preset": args.preset,
        "sr_params_m": round(param_count(cfg) / 1e6, 3),
        "lm_params_m": round(sum(p.numel() for p in lm.parameters()) / 1e6, 3),
        "lm_layers": lm_cfg.n_layers,
        "width": cfg.dim,
        "tokens": n_out,
        "prefix_tokens": n_prefix,
        "maskgit_steps": args.steps,
        "maskgit_s": round(timings["maskgit"], 3),
        "maskgit_guided_s": round(timings["maskgit_guided"], 3),
        "autoregressive_s": round(timings["autoregressive"], 3),
        "speedup": round(timings["autoregressive"] / timings["maskgit"], 2),
        "speedup_guided": round(timings["autoregressive"] / timings["maskgit_guided"], 2),
        "compile": args.compile,
    }


def main(argv: list[str] | None = None) -> dict:
    args = _args(argv)
    from videopoet.device import pick_device
    from videopoet.outputs import atomic_write_text, check_output

    if args.out:
        check_output(args.out, overwrite=args.overwrite)
    device = pick_device(args.device)
    result: dict = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if args.quality:
        result["seeds"] = args.seeds
        result["quality"] = quality(args, device)
    if args.speed:
        result["speed"] = speed(args, device)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        atomic_write_text(args.out, text + "\n")
    return result


if __name__ == "__main__":
    main()
