"""``videopoet eval tokenizer``: reconstruction quality and codebook usage of a video tokenizer.

Reads ``--num`` clips from ``--data`` (synthetic:heldout[:N], tar shards or a folder of videos), encodes and
decodes them, and writes OUT.json + OUT.md (with a GIF of originals over reconstructions): PSNR and SSIM
(per frame, averaged per clip, then over clips), codebook usage over the whole set (fraction of codes
used, entropy in bits, perplexity) and per-bit entropies.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch

from videopoet.errors import UserError

log = logging.getLogger("videopoet.eval.tokenizer")


@torch.no_grad()
def reconstruct_frames(model, clips: list) -> list:
    """uint8 (T, H, W, 3) clips of one shape → their encode → decode reconstructions, as uint8 clips.

    One batch on the model's device; bf16 autocast there when it is a GPU (how the judge's benchmarks and
    the shape reader's training data see a tokenizer), fp32 on a CPU.
    """
    from videopoet.data.sample import frames_to_tensor, tensor_to_frames

    device = next(model.parameters()).device
    x = torch.stack([frames_to_tensor(f) for f in clips]).to(device)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        y = model.decode(model.encode(x)).float()
    return [tensor_to_frames(v.cpu())[: f.shape[0]] for v, f in zip(y, clips)]


def evaluate(
    model,
    dataset,
    *,
    num: int,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[dict[str, Any], torch.Tensor | None, torch.Tensor | None]:
    """→ (metrics, first originals, their reconstructions). Unreadable items are skipped and counted."""
    from videopoet.data.datasets import readable_items
    from videopoet.data.sample import frames_to_tensor
    from videopoet.eval.metrics import CodebookCounter, bit_entropies, psnr, ssim

    device = torch.device(device)
    model = model.to(device).eval()
    counter = CodebookCounter(model.config.codebook_size)
    psnrs, ssims, keys, skipped = [], [], [], []
    first = None
    indices_all = []
    n = min(num, len(dataset))
    it = range(0, n, batch_size)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="eval tokenizer", disable=not sys.stderr.isatty())
    t0 = time.time()
    for start in it:
        vids, batch = [], range(start, min(n, start + batch_size))
        for _, sample in readable_items(dataset, batch, log=skipped.append):
            vids.append(frames_to_tensor(sample.frames))
            keys.append(sample.key)
        if not vids:
            continue
        x = torch.stack(vids).to(device)
        idx = model.encode(x)
        recon = model.decode(idx).float()
        psnrs.append(psnr(recon, x).cpu())
        ssims.append(ssim(recon, x).cpu())
        counter.update(idx)
        indices_all.append(idx.cpu())
        if first is None:
            first = (x[:4].cpu(), recon[:4].cpu())
    if not psnrs:
        raise UserError(f"no readable clips among the first {n} items: {'; '.join(skipped[:3])}")
    p, s = torch.cat(psnrs), torch.cat(ssims)
    bits = bit_entropies(torch.cat([i.reshape(-1) for i in indices_all]), model.config.codebook_bits)
    metrics = _metrics(p, s, counter.result(), bits, model.config, skipped)
    metrics["seconds"] = round(time.time() - t0, 2)
    metrics["per_clip"] = [{"key": k, "psnr_db": float(a), "ssim": float(b)} for k, a, b in zip(keys, p, s)]
    metrics["skipped_reasons"] = skipped[:20]
    return metrics, *(first if first else (None, None))


def _metrics(p, s, usage, bits, config, skipped) -> dict[str, Any]:
    """Per-clip PSNR and SSIM (p, s), codebook usage and bit entropies → the report's summary fields."""
    return {
        "clips": int(p.numel()),
        "skipped": len(skipped),
        "psnr_db": float(p.mean()),
        "psnr_db_min": float(p.min()),
        "ssim": float(s.mean()),
        "codebook_size": config.codebook_size,
        "codebook_used": usage.used,
        "codebook_usage": usage.used_fraction,
        "codebook_entropy_bits": usage.entropy_bits,
        "codebook_perplexity": usage.perplexity,
        "tokens": usage.tokens,
        "min_bit_entropy": float(bits.min()),
        "mean_bit_entropy": float(bits.mean()),
    }


def main(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    from videopoet.data.datasets import open_dataset
    from videopoet.device import pick_device
    from videopoet.eval.report import check_report, write_report
    from videopoet.tokenizers.video import VideoTokenizer

    preview = Path(args.out).with_name(Path(args.out).name + "_recon")
    extra = [preview.with_suffix(".gif"), preview.with_suffix(".mp4")]
    check_report(args.out, extra, overwrite=getattr(args, "overwrite", False))
    device = pick_device(args.device)
    model = VideoTokenizer.from_pretrained(args.model, device=device)
    frames = getattr(args, "frames", 17)
    width, height = getattr(args, "size", (128, 128))
    spec = args.data
    split = "heldout" if spec == "synthetic" else "train"
    dataset = open_dataset(spec, frames=frames, width=width, height=height, split=split)
    metrics, orig, recon = evaluate(
        model, dataset, num=args.num, batch_size=args.batch_size, device=device, progress=True
    )
    metrics.update(
        model=str(args.model), data=str(spec), frames=frames, width=width, height=height, device=str(device)
    )
    out = Path(args.out)
    images = []
    if orig is not None:
        from videopoet.eval.report import write_preview

        gif = write_preview(out.with_name(out.name + "_recon"), orig, recon)[0]
        images.append(("originals (top) and reconstructions (bottom)", gif))
    notes = [
        f"{metrics['clips']} clips of {frames}×{width}×{height} from `{spec}`; PSNR/SSIM per frame, "
        "averaged per clip then over clips; codebook usage counts every token of the set."
    ]
    json_path, md_path = write_report(out, "Video tokenizer evaluation", metrics, images=images, notes=notes)
    print(
        f"PSNR {metrics['psnr_db']:.2f} dB, SSIM {metrics['ssim']:.4f}, codebook usage "
        f"{100 * metrics['codebook_usage']:.1f}% ({metrics['codebook_used']}/{metrics['codebook_size']}), "
        f"entropy {metrics['codebook_entropy_bits']:.2f} bits → {json_path}, {md_path}"
    )
    return 0
