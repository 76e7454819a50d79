"""``videopoet tokenize``: any dataset spec → token shards for the LM (format and flow: ``lm/records.py``).

Worker processes read or render the samples (and compute flow/depth) through a DataLoader while the main
process tokenizes them on the device, one batch at a time, in dataset order. Shards appear in ``--out``
as they complete; ``tokens.json`` records the run's settings and each complete shard, so ``--resume``
continues after the last complete shard (with the same settings: anything that changes the records is
compared) and gives the same shards as one uninterrupted run. ``--overwrite`` replaces an earlier set only
once the new one is complete (``videopoet.outputs.staged_files``). SIGTERM or Ctrl-C stops after the
current batch with the shards so far (exit 128 + the signal). ``--text-only`` adds text embeddings to an
existing set. Arguments are declared in ``videopoet/cli.py``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videopoet.errors import UserError
from videopoet.lm import records as R
from videopoet.outputs import atomic_write_text, check_output, existing_files, staged_files
from videopoet.signals import StopSignals

log = logging.getLogger(__name__)


def main(args) -> int:
    if args.text_only:
        return fill_text(args)
    if not args.data:
        raise UserError("--data is required (or --text-only to add text embeddings to the shards in --out)")
    if args.resume and args.overwrite:
        raise UserError("pass --resume (continue the set in --out) or --overwrite (replace it), not both")
    out = check_output(args.out, kind="dir")
    if _holds_set(out) and not (args.resume or args.overwrite):
        raise UserError(
            f"{out} already holds a token set; pass --resume to continue it or --overwrite to replace it"
        )
    kinds = _kinds(args)
    tokenizer, settings = _tokenizer(args, kinds)
    if _page_faults_dominate(args, tokenizer):
        keep_freed_memory()
    dataset = _open_data(args, tokenizer)
    num = _count(args, dataset)
    info, start = _start(out, settings, num, args, tokenizer)
    if start is None:
        print(f"{out}: the token set is already complete ({info['records']} records); nothing to do")
        return 0
    run = Run(args, tokenizer, dataset, info, start, num)
    t0 = time.perf_counter()
    replace = args.overwrite and bool(existing_files(out, R.SHARD_PATTERN))
    signum = _write_set(out, run, replace)
    if signum is not None:
        return _stopped(out, run, signum, replace)
    _report(out, run, time.perf_counter() - t0)
    return 0


def _stopped(out: Path, run: Run, signum: int, replace: bool) -> int:
    """One line for a run a signal stopped → 128 + the signal (not 0: the set is not complete)."""
    if replace:
        print(f"videopoet: stopped (signal {signum}); the earlier set in {out} is unchanged", file=sys.stderr)
    else:
        n = run.stats["records"]
        print(f"videopoet: stopped after {n} new record(s) (signal {signum}); continue with --resume",
              file=sys.stderr)  # fmt: skip
    return 128 + signum


# --------------------------------------------------------------------------------------------- setup
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc serves every larger block from its own mmap (64-bit)


def _page_faults_dominate(args, tokenizer: R.RecordTokenizer) -> bool:
    """A CPU encode whose full-resolution activations (encode batch × base width × T × H × W float32) are
    past glibc's largest mmap threshold: each is mapped, faulted in and unmapped again."""
    (width, height), cfg = args.size, tokenizer.video.config
    activation = tokenizer.encode_batch * cfg.base_channels * args.frames * width * height * 4  # bytes
    return tokenizer.device.type == "cpu" and activation > MMAP_THRESHOLD_MAX


def keep_freed_memory() -> bool:
    """Have glibc keep freed memory for the next allocation instead of giving it back to the system.

    A CPU encode allocates and frees full-size activations dozens of times per batch; glibc serves each
    from a fresh mmap and returns it on free, so every one page-faults anew. Served from the heap and
    kept, they cost nothing after the first batch (the same bytes out; the measured gain:
    docs/pretrained.md, "Where `videopoet tokenize` spends its time"). The process then holds its peak
    memory until it ends. False where the C library is not glibc."""
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def _holds_set(out: Path) -> bool:
    return (out / R.INFO_FILE).exists() or bool(existing_files(out, R.SHARD_PATTERN))


def _kinds(args) -> tuple[str, ...]:
    if args.tasks:
        names = [n for item in args.tasks for n in item.split(",") if n]
        return R.kinds_for_tasks(names)  # an unknown task is a ValueError: one line, exit 2
    if args.conditions:
        return () if "none" in args.conditions else tuple(args.conditions)
    return R.CONDITION_KINDS


def load_text(spec: str, device="cpu"):
    """--text → (encoder or None, its name or None). ``auto``: minilm when it loads here, else none (add the
    embeddings later with --text-only where the package is installed)."""
    if spec == "none":
        return None, None
    try:
        from videopoet.text import load_text_encoder
    except ImportError as e:
        if spec == "auto":
            print(f"note: no text encoder here ({e}); records keep captions, add text later with --text-only")
            return None, None
        raise UserError(f"text encoders cannot be loaded here ({e}); use --text none") from None
    if spec != "auto":
        return load_text_encoder(spec, device=device), spec
    try:
        return load_text_encoder("minilm", device=device), "minilm"
    except (ImportError, UserError) as e:
        print(f"note: the minilm text encoder is not available ({e}); records keep captions, add text later")
        return None, None


def _component_dir(explicit: str | None, model: str | None, name: str) -> Path | None:
    if explicit:
        return Path(explicit)
    return Path(model) / name if model else None


def _tokenizer(args, kinds: tuple[str, ...]) -> tuple[R.RecordTokenizer, dict[str, Any]]:
    """Load the tokenizers and the text encoder; the settings that decide what the records hold."""
    from videopoet.components import weights_sha256
    from videopoet.device import pick_device
    from videopoet.tokenizers.audio import AudioTokenizer
    from videopoet.tokenizers.video import VideoTokenizer

    device = pick_device(args.device)
    vdir = _component_dir(args.video_tokenizer, args.model, "video_tokenizer")
    adir = _component_dir(args.audio_tokenizer, args.model, "audio_tokenizer")
    video = VideoTokenizer.from_pretrained(vdir, device=device)
    audio = AudioTokenizer.from_pretrained(adir, device=device)
    (width, height), frames = args.size, args.frames
    tf, sf = video.config.temporal_factor, video.config.spatial_factor
    if (frames - 1) % tf or width % sf or height % sf:
        raise UserError(
            f"--frames {frames} --size {width}x{height}: this video tokenizer needs 1 + {tf}k frames "
            f"(17, 41, …) and sides that are multiples of {sf}"
        )
    text, text_name = load_text(args.text, device)
    tokenizer = R.RecordTokenizer(
        video, audio, text, kinds=kinds, device=device, encode_batch=args.batch_size
    )
    settings = {
        "data": str(args.data),
        "seed": args.seed,
        "frames": frames,
        "width": width,
        "height": height,
        "sample_rate": audio.config.sample_rate,
        "conditions": list(tokenizer.kinds),
        "shard_size": args.shard_size,
        "video_tokenizer": weights_sha256(VideoTokenizer, vdir),
        "audio_tokenizer": weights_sha256(AudioTokenizer, adir),
        "text_encoder": text_name,
    }
    return tokenizer, settings


def _open_data(args, tokenizer: R.RecordTokenizer):
    from videopoet.data.datasets import open_dataset

    width, height = args.size
    return open_dataset(
        args.data,
        frames=args.frames,
        width=width,
        height=height,
        sample_rate=tokenizer.audio.config.sample_rate,
        seed=args.seed,
        progress=True,
    )


def _count(args, dataset) -> int:
    from videopoet.data.datasets import SYNTHETIC_LENGTH

    n = len(dataset)
    if args.num is None:
        if n >= SYNTHETIC_LENGTH:
            raise UserError(f"{args.data} is endless: pass --num N or --data {args.data}:N (e.g. :1000)")
        return n
    if args.num > n:
        print(f"note: {args.data} has {n} clips; tokenizing all {n} (not --num {args.num})")
    return min(args.num, n)


# --------------------------------------------------------------------------------------------- resume
def _start(out: Path, settings: dict, num: int, args, tokenizer) -> tuple[dict[str, Any], int | None]:
    """tokens.json's content for this run and the first dataset item to tokenize (None: nothing left)."""
    fresh = {
        "format": R.FORMAT,
        "version": R.FORMAT_VERSION,
        "settings": settings,
        "vocab": dataclasses.asdict(tokenizer.vocab),
        "num": num,
        "complete": False,
        "records": 0,
        "shards": [],
    }
    if not args.resume or not _holds_set(out):
        return fresh, 0
    info = R.read_info(out)
    if not info:
        raise UserError(f"{out} holds token shards but no {R.INFO_FILE}: it cannot be resumed; --overwrite")
    changed = [k for k in settings if info["settings"].get(k) != settings[k]]
    if changed:
        diffs = ", ".join(f"{k} {info['settings'].get(k)!r} → {settings[k]!r}" for k in changed)
        raise UserError(f"--resume with other settings than the set in {out} ({diffs}); or --overwrite")
    shards = _summaries(out, info)
    if shards and shards[-1]["records"] < settings["shard_size"]:
        shards.pop()  # a finished run's short last shard: rewritten (in place, atomically) as it fills up
    if info.get("complete") and info.get("num", 0) >= num:
        return info, None
    info.update(num=num, complete=False, shards=shards, records=sum(s["records"] for s in shards))
    return info, (shards[-1]["last_index"] + 1 if shards else 0)


def _summaries(out: Path, info: dict) -> list[dict[str, Any]]:
    """One summary per complete shard on disk (tokens.json's, else read from the shard: a shard renamed
    into place just before an interruption may not be in tokens.json yet)."""
    known = {s["file"]: s for s in info.get("shards", [])}
    shards = R.find_token_shards(out)
    out_list = []
    for n, path in enumerate(shards):
        if path.name != f"tokens-{n:06d}.tar":
            raise UserError(f"{out}: shard {path.name} is out of sequence (expected tokens-{n:06d}.tar)")
        if path.name not in known:
            ds = R.TokenShardDataset(path)
            idx = [json.loads(ds.members(i)["json"])["index"] for i in range(len(ds))]
            known[path.name] = {
                "file": path.name,
                "records": len(idx),
                "first_index": idx[0],
                "last_index": idx[-1],
            }
        out_list.append(known[path.name])
    return out_list


# --------------------------------------------------------------------------------------------- the run
@dataclass
class Run:
    args: Any
    tokenizer: R.RecordTokenizer
    dataset: Any
    info: dict[str, Any]  # tokens.json's content, kept up to date
    start: int  # first dataset item to tokenize
    num: int  # items [start, num) are tokenized
    stats: Counter = field(default_factory=Counter)


class _Stopped(Exception):
    """A signal stopped a staged (--overwrite) set: its files are dropped, the earlier set stays."""


def _write_set(out: Path, run: Run, replace: bool) -> int | None:
    """Tokenize the run's items into shards; ``replace`` (--overwrite of an earlier set) goes through a
    staging folder. SIGTERM or Ctrl-C stops after the current batch: the shards so far are kept (a staged
    set's are dropped, the earlier set stays) → the signal, else None."""
    info = run.info
    if not replace:
        _write_info(out, info)

    def on_shard(summary: dict[str, Any]) -> None:
        info["shards"] = [s for s in info["shards"] if s["file"] != summary["file"]] + [summary]
        info["records"] = sum(s["records"] for s in info["shards"])
        if not replace:  # a staged set is described once it is in place
            _write_info(out, info)

    with StopSignals("stopping after this batch; the shards so far are kept") as stop:
        if not replace:
            _tokenize_into(out, run, on_shard, stop)
        else:
            try:
                with staged_files(out, R.SHARD_PATTERN, overwrite=True) as stage:
                    _tokenize_into(stage, run, on_shard, stop)
                    if stop.signum is not None:
                        raise _Stopped
            except _Stopped:
                pass
    if stop.signum is None:
        info.update(complete=True, num=run.num)
        _write_info(out, info)
    return stop.signum


def _write_info(out: Path, info: dict[str, Any]) -> None:
    atomic_write_text(out / R.INFO_FILE, json.dumps(info, indent=2) + "\n")


def _tokenize_into(folder: Path, run: Run, on_shard, stop: StopSignals) -> None:
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from videopoet.data.datasets import loader_worker_init

    args, tokenizer, stats = run.args, run.tokenizer, run.stats
    writer = R.TokenShardWriter(
        folder,
        args.shard_size,
        first_shard=len(run.info["shards"]),
        text_encoder=run.info["settings"]["text_encoder"],
        on_shard=on_shard,
    )
    items = R.PreparedItems(
        run.dataset, geometry="flow_depth" in tokenizer.kinds, estimate=tokenizer.depth is not None
    )
    loader = DataLoader(
        items,
        batch_size=args.batch_size,
        sampler=range(run.start, run.num),
        num_workers=args.workers,
        collate_fn=list,
        worker_init_fn=loader_worker_init,  # called in worker processes only
    )
    with tqdm(total=run.num - run.start, desc="tokenize", unit="clip", disable=None) as bar:
        for batch in loader:
            written = write_batch(tokenizer, writer, batch)
            stats["skipped"] += len(batch) - written
            stats["records"] += written
            bar.update(len(batch))
            bar.set_postfix(skipped=stats["skipped"], refresh=False)
            if stop.signum is not None:
                break
    writer.close()


def write_batch(tokenizer: R.RecordTokenizer, writer: R.TokenShardWriter, batch: list[R.Prepared]) -> int:
    """One loader batch → its records in ``writer``; unreadable items are logged and passed over. → the
    number of records written."""
    for p in batch:
        for reason in p.reasons:
            log.warning("skipping %s", reason)
    good = [p for p in batch if p.sample is not None]
    for p, record in zip(good, tokenizer([p.sample for p in good], [p.geometry for p in good])):
        writer.write(record, p.index)
    return len(good)


def _report(out: Path, run: Run, seconds: float) -> None:
    n, info, tokenizer = run.stats["records"], run.info, run.tokenizer
    text = info["settings"]["text_encoder"] or "none (add it with --text-only)"
    print(
        f"tokenized {n} clip(s) in {seconds:.1f} s ({n / max(seconds, 1e-9):.2f} clips/s) into {out}: "
        f"{info['records']} records in {len(info['shards'])} shard(s); conditions "
        f"{', '.join(tokenizer.kinds) or 'none'}; text {text}; {run.stats['skipped']} item(s) skipped"
    )
    for reason, count in tokenizer.missing.items():
        print(f"  no flow_depth for {count} clip(s): {reason}")


# --------------------------------------------------------------------------------------------- text later
def fill_text(args) -> int:
    """Add text embeddings to every record of the set in --out that lacks them (shard by shard, each
    replaced atomically; shards already done are skipped, so an interrupted pass just runs again)."""
    import numpy as np
    from tqdm import tqdm

    if args.data:
        raise UserError("--text-only works on the shards in --out; it takes no --data")
    out = Path(args.out)
    ds = R.TokenShardDataset(out)
    from videopoet.device import pick_device

    encoder, name = load_text("minilm" if args.text == "auto" else args.text, pick_device(args.device))
    if encoder is None:
        raise UserError("--text-only needs a text encoder: --text minilm or a T5 folder")
    filled = 0
    with tqdm(total=len(ds), desc="text", unit="record", disable=None) as bar:
        for si, shard in enumerate(ds.shards):
            rows = np.flatnonzero(ds.shard_of == si)
            filled += _fill_shard(ds, shard, rows, encoder, name, args)
            bar.update(len(rows))
    info = R.read_info(out)
    if info:
        info["settings"]["text_encoder"] = name
        _write_info(out, info)
    print(f"added {name} text embeddings to {filled} of {len(ds)} record(s) in {out}")
    return 0


def _fill_shard(ds: R.TokenShardDataset, shard: Path, rows, encoder, name: str, args) -> int:
    members = [ds.members(int(i)) for i in rows]
    metas = [json.loads(m["json"]) for m in members]
    have = {m.get("text_encoder") for m in metas}
    if have == {name}:
        return 0
    other = sorted(str(h) for h in have - {None, name})
    if other and not args.overwrite:
        raise UserError(
            f"{shard} holds {other[0]} text embeddings; pass --overwrite to replace them with {name}"
        )
    records = [R.record_from_members(m, shard.name) for m in members]
    for b in range(0, len(records), args.batch_size):
        chunk = records[b : b + args.batch_size]
        for r, (text, mask) in zip(chunk, R.encode_captions(encoder, [r.caption for r in chunk])):
            r.text, r.text_mask = text, mask
    new = [R.record_members(r, meta["index"], name) for r, meta in zip(records, metas)]
    R.write_shard(shard, new, R.member_keys([r.key for r in records]))
    return len(records)
