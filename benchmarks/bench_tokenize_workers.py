"""``videopoet tokenize`` without its models: clips/s of the loader-worker side, JSON out.

    python benchmarks/bench_tokenize_workers.py [--num 64] [--workers 0] [--size 128x128] [--frames 17]
        [--main | --stages]

Reads ``PreparedItems`` over ``synthetic:train`` with every condition kind, as the command's DataLoader
does (``--workers 0``: in this process; N: N loader processes, batches of ``--batch-size``), and counts
the CPU work the main process did per clip before the flow-depth video moved into the workers (turning
flow and depth into that video) so that older and newer code measure the same work. ``--main`` adds the
command's main-process side with the bundled tokenizers' ``encode`` replaced by all-zero codes: what a
batch costs beyond the models (COMMIT paddings on the CPU, records, shards). The first batch is a warm-up
and is not timed. ``--stages`` times each step alone in this process: milliseconds per clip.
"""

from __future__ import annotations

import argparse
import json
import platform
import time


def _finish(batch):
    """Every item's flow-depth video, made here where the worker did not make it."""
    from videopoet.lm.records import Geometry
    from videopoet.tokenizers.conditioning import flow_depth_video

    for p in batch:
        if isinstance(p.geometry, Geometry):
            flow_depth_video(p.geometry.flow, p.geometry.depth)
    return len(batch)


class _Main:
    """The command's loop body: tokenize a batch, write its records to shards in a temporary folder."""

    def __init__(self, tokenizer):
        import tempfile

        from videopoet.lm.records import TokenShardWriter

        self.tokenizer, self.folder = tokenizer, tempfile.TemporaryDirectory()
        self.writer = TokenShardWriter(self.folder.name, 64)

    def __call__(self, batch) -> int:
        from videopoet.lm.tokenize import write_batch

        write_batch(self.tokenizer, self.writer, batch)
        return len(batch)


def _no_model_tokenizer(batch_size: int):
    """The bundled tokenizers in a RecordTokenizer, their encoders replaced by zeros of the right shape."""
    import torch

    from videopoet.lm.records import RecordTokenizer
    from videopoet.tokenizers.audio import AudioTokenizer
    from videopoet.tokenizers.video import VideoTokenizer

    video, audio = VideoTokenizer.from_pretrained(None), AudioTokenizer.from_pretrained(None)
    tf, sf, hop, levels = (
        video.config.temporal_factor,
        video.config.spatial_factor,
        audio.config.hop,
        audio.config.num_levels,
    )
    video.encode = lambda x: torch.zeros(  # (B, t, h, w)
        x.shape[0], (x.shape[2] - 1) // tf + 1, x.shape[3] // sf, x.shape[4] // sf, dtype=torch.long
    )
    audio.encode = lambda w: torch.zeros(w.shape[0], levels, w.shape[-1] // hop, dtype=torch.long)
    return RecordTokenizer(video, audio, None, device="cpu", encode_batch=batch_size)  # as the command


def _stages(num: int, width: int, height: int, frames: int) -> dict:
    """Milliseconds per clip of each step, one at a time, as the command took them before any reuse."""
    from videopoet.data.datasets import open_dataset
    from videopoet.data.sample import frames_to_tensor
    from videopoet.lm.records import COMMIT_KINDS, synthetic_geometry
    from videopoet.tokenizers.conditioning import commit_condition, flow_depth_video

    ds = open_dataset(f"synthetic:train:{num}", frames=frames, width=width, height=height)
    total = dict.fromkeys(("render", "render_again_for_geometry", "flow_depth_video", "commit_x4"), 0.0)
    for i in range(num):
        t0 = time.perf_counter()
        sample = ds[i]
        t1 = time.perf_counter()
        geo = synthetic_geometry(sample)
        t2 = time.perf_counter()
        flow_depth_video(geo.flow, geo.depth)
        t3 = time.perf_counter()
        x = frames_to_tensor(sample.frames)[None]  # (1, 3, T, H, W)
        for kind in COMMIT_KINDS:
            commit_condition(x, kind)
        t4 = time.perf_counter()
        for key, dt in zip(total, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            total[key] += dt
    return {f"{k}_ms": round(1000 * v / num, 2) for k, v in total.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=64, help="clips timed (after one warm-up batch)")
    parser.add_argument("--workers", type=int, default=0, help="loader processes (0: in this process)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", default="128x128", help="WxH")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--main", action="store_true", help="also the main process, models left out")
    parser.add_argument("--stages", action="store_true", help="ms per clip of each step instead (1 thread)")
    args = parser.parse_args(argv)

    import torch
    from torch.utils.data import DataLoader

    from videopoet.data.datasets import open_dataset
    from videopoet.lm.records import PreparedItems
    from videopoet.lm.tokenize import _worker_init

    torch.set_num_threads(1)
    width, height = (int(v) for v in args.size.split("x"))
    if args.stages:
        result = {**_stages(args.num, width, height, args.frames), "size": args.size, "frames": args.frames}
        print(json.dumps(result))
        return result
    total = args.num + args.batch_size
    ds = open_dataset(f"synthetic:train:{total}", frames=args.frames, width=width, height=height)
    loader = DataLoader(
        PreparedItems(ds, geometry=True, estimate=False),
        batch_size=args.batch_size,
        num_workers=args.workers,
        collate_fn=list,
        worker_init_fn=_worker_init if args.workers else None,
    )
    consume = _finish
    if args.main:
        consume = _Main(_no_model_tokenizer(args.batch_size))
    batches = iter(loader)
    consume(next(batches))  # warm-up: worker start, imports
    t0, n = time.perf_counter(), 0
    for batch in batches:
        n += consume(batch)
    seconds = time.perf_counter() - t0
    result = {
        "clips": n,
        "seconds": round(seconds, 3),
        "clips_per_s": round(n / seconds, 2),
        "ms_per_clip": round(1000 * seconds / n, 2),
        "workers": args.workers,
        "size": args.size,
        "frames": args.frames,
        "main": args.main,
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
