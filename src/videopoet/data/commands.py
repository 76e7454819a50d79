"""``videopoet data synth`` (render synthetic clips into tar shards), ``videopoet data pack`` (a folder
of real videos → tar shards of conformed clips) and ``videopoet data check`` (scan a video folder or shard
set and report what is usable). Arguments are declared in ``videopoet/cli.py``."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from videopoet.errors import UserError
from videopoet.outputs import atomic_write_text, check_output, existing_files, staged_files

SHARD_PATTERN = "shard-*.tar"  # the shard names ShardWriter writes (its default prefix)


def synth(args) -> int:
    from tqdm import tqdm

    from videopoet.data.datasets import ClipFormat, SyntheticDataset

    width, height = args.size
    try:
        fmt = ClipFormat(frames=args.frames, width=width, height=height)
    except ValueError as e:
        raise UserError(str(e)) from None
    _check_shard_out(args)
    ds = SyntheticDataset(split=args.split, length=args.num, seed=args.seed, fmt=fmt)
    t0 = time.perf_counter()
    with _shard_writer(args) as writer:
        for i in tqdm(range(args.num), desc=f"synth {args.split}", unit="clip", disable=None):
            try:
                sample = ds[i]
            except ValueError as e:
                # The renderer's own argument checks (e.g. an unsupported frame count) are user errors here.
                raise UserError(f"cannot render clip with seed {args.seed + i}: {e}") from None
            writer.write(sample)
    seconds = time.perf_counter() - t0
    print(
        f"wrote {writer.count} {args.split} clips ({width}x{height}, "
        f"{args.frames} frames at {fmt.fps:g} fps, "
        f"seeds {args.seed}..{args.seed + args.num - 1}) in {len(writer.shards)} shard(s) to {args.out} "
        f"({writer.bytes / 1e6:.1f} MB, {seconds:.1f} s)"
    )
    return 0


def pack(args) -> int:
    """Conform every clip of a video folder (fps, size, length, mono 16 kHz audio) into tar shards once, so
    training reads small uniform samples instead of decoding long source files again each epoch."""
    from tqdm import tqdm

    from videopoet.data.datasets import ClipFormat, VideoFolderDataset

    width, height = args.size
    try:
        fmt = ClipFormat(frames=args.frames, width=width, height=height)
    except ValueError as e:
        raise UserError(str(e)) from None
    src = Path(args.path)
    if not src.is_dir():
        raise UserError(f"{src}: no such directory; pass a folder of videos")
    _check_shard_out(args)
    ds = VideoFolderDataset(src, fmt=fmt, progress=True)
    failed = 0
    t0 = time.perf_counter()
    with _shard_writer(args) as writer:
        for i in tqdm(range(len(ds)), desc="pack", unit="clip", disable=None):
            sample = ds[i]  # None for a clip that fails to decode now (the reason is logged)
            if sample is None:
                failed += 1
                continue
            writer.write(sample)
    seconds = time.perf_counter() - t0
    print(
        f"packed {writer.count} clip(s) ({width}x{height}, {args.frames} frames at {fmt.fps:g} fps) from "
        f"{src} into {len(writer.shards)} shard(s) in {args.out} ({writer.bytes / 1e6:.1f} MB, "
        f"{seconds:.1f} s); {len(ds.skipped)} file(s) skipped at scan, {failed} clip(s) failed to decode"
    )
    for path, reason in ds.skipped:
        print(f"  skipped {path}: {reason}")
    return 0


def _check_shard_out(args) -> None:
    """Before the work: --out must be a writable folder without shards of an earlier set (unless
    --overwrite, which replaces only those shards once the new set is complete)."""
    out = check_output(args.out, kind="dir")
    old = existing_files(out, SHARD_PATTERN)
    if old and not getattr(args, "overwrite", False):
        raise UserError(
            f"{out} already holds shards ({old[0].name}, ...); pass --overwrite to replace them "
            "or write into an empty folder"
        )


@contextlib.contextmanager
def _shard_writer(args):
    """A ShardWriter into a staging folder of --out: the new shards replace an earlier set only when
    complete (videopoet.outputs.staged_files)."""
    from videopoet.data.shards import ShardWriter

    with staged_files(args.out, SHARD_PATTERN, overwrite=getattr(args, "overwrite", False)) as stage:
        with ShardWriter(stage, shard_size=args.shard_size) as writer:
            yield writer
    writer.shards = [Path(args.out) / p.name for p in writer.shards]


@contextlib.contextmanager
def _quiet(logger_name: str):
    """The report lists every skipped file itself: keep the datasets' per-file warnings off stderr."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_path(path: str | Path, *, frames: int = 17, progress: bool = False) -> dict[str, Any]:
    """Scan a video folder or a shard set; returns the report that ``videopoet data check`` prints."""
    from videopoet.data.datasets import ClipFormat, VideoFolderDataset
    from videopoet.data.media import MediaError
    from videopoet.data.shards import ShardDataset, find_shards

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such directory; pass a folder of videos or of .tar shards")
    fmt = ClipFormat(frames=frames)
    with _quiet("videopoet.data"):
        if find_shards(path):
            ds = ShardDataset(path, frames=frames)
            skipped = list(ds.skipped)
            indices = range(len(ds))
            if progress:
                from tqdm import tqdm

                indices = tqdm(indices, desc="decoding samples", unit="clip", disable=None)
            usable = 0
            for i in indices:
                try:
                    ds.load(i)
                    usable += 1
                except MediaError as e:
                    where, _, reason = str(e).partition(": ")
                    skipped.append((where, reason))
            report = {
                "path": str(path),
                "kind": "shards",
                "shards": len(ds.shards),
                "samples": len(ds),
                "usable_clips": usable,
            }
        elif path.is_dir():
            ds = VideoFolderDataset(path, fmt=fmt, progress=progress)
            skipped = list(ds.skipped)
            report = {
                "path": str(path),
                "kind": "videos",
                "files": len(ds.files) + len(ds.skipped),
                "usable_files": len(ds.files),
                "usable_clips": len(ds),
                "clips_per_file": {f.rel: len(f.clips) for f in ds.files},
            }
        else:
            raise UserError(
                f"{path}: not a directory or .tar shard; pass a folder of videos or of .tar shards"
            )
    report.update(frames=frames, fps=fmt.fps, skipped=[{"path": p, "reason": r} for p, r in skipped])
    return report


def check(args) -> int:
    if args.json_out:
        check_output(args.json_out, kind="file", overwrite=getattr(args, "overwrite", False))
    report = check_path(args.path, frames=args.frames, progress=sys.stderr.isatty())
    if report["kind"] == "shards":
        head = f"{report['shards']} shard(s), {report['samples']} sample(s)"
    else:
        head = f"{report['files']} video file(s), {report['usable_files']} usable"
    print(
        f"{report['path']}: {head}; {report['usable_clips']} usable {report['frames']}-frame clip(s) "
        f"at {report['fps']:g} fps; {len(report['skipped'])} skipped"
    )
    for item in report["skipped"]:
        print(f"  skipped {item['path']}: {item['reason']}")
    if args.json_out:
        atomic_write_text(args.json_out, json.dumps(report, indent=2) + "\n")
    return 0
