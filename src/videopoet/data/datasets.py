"""Datasets that all yield ``videopoet.data.sample.Sample``: the synthetic world, folders of real videos,
and tar shards (``shards.py``), chosen by ``open_dataset(spec)``.

Every dataset is map-style (``len``, ``ds[i]``). A sample that cannot be read is ``None`` (with a logged
reason), never an exception, so one bad file never stops a training run; ``collate_samples`` drops the
``None`` items of a batch, and ``readable_items`` is the one loop that reads items one by one and logs
each it passes over with the reason.

Shapes in a Batch:
    B batch, T frames, H W pixels, N audio samples (= round(T / fps * sample_rate))

The synthetic path imports neither av, pillow nor scipy: it runs where only the core dependencies exist.
"""

from __future__ import annotations

import csv
import ctypes
import json
import logging
import math
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset

from videopoet.data.media import (
    VIDEO_EXTENSIONS,
    MediaError,
    VideoInfo,
    conform_clip,
    probe_video,
    read_video,
)
from videopoet.data.sample import Sample, audio_to_tensor, frames_to_tensor
from videopoet.errors import UserError

log = logging.getLogger(__name__)

# "Infinite" synthetic data: every seed renders a new clip; a length keeps samplers and len() working.
SYNTHETIC_LENGTH = 2**31 - 1
SPLITS = ("train", "heldout")
MANIFEST_NAMES = ("manifest.jsonl", "manifest.csv")
SPEC_HELP = "use 'synthetic', 'synthetic:train', 'synthetic:heldout[:N]', a video folder or a shard folder"
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent ends (Linux)


@dataclass(kw_only=True)
class ClipFormat:
    frames: int = 17  # frames per clip (17 → 5 latent frames, 41 → 11)
    width: int = 128  # pixels; 128x128 square or 128 wide x 224 tall portrait
    height: int = 128  # pixels
    fps: float = 8.0  # clips are resampled to this frame rate
    sample_rate: int = 16000  # mono audio rate, Hz

    def __post_init__(self) -> None:
        if self.frames <= 0 or self.width <= 0 or self.height <= 0:
            raise ValueError(
                f"clip format needs frames, width, height > 0; got {self.frames}, {self.width}, {self.height}"
            )
        if not (self.fps > 0 and self.sample_rate > 0):
            raise ValueError(
                f"clip format needs positive fps and sample_rate, got {self.fps}/{self.sample_rate}"
            )

    @property
    def seconds(self) -> float:
        return self.frames / self.fps

    @property
    def num_samples(self) -> int:
        return int(round(self.seconds * self.sample_rate))


# ------------------------------------------------------------------------------------------- synthetic
class SyntheticDataset(Dataset):
    """Item i is ``render_clip(seed + i)``: a pure function of (seed, split, format); nothing is stored."""

    def __init__(
        self, *, split: str = "train", length: int = SYNTHETIC_LENGTH, seed: int = 0, fmt: ClipFormat
    ):
        if split not in SPLITS:
            raise ValueError(f"synthetic split must be one of {SPLITS}, got {split!r}")
        if length <= 0:
            raise ValueError(f"synthetic dataset length must be positive, got {length}")
        self.split, self.length, self.seed, self.fmt = split, length, seed, fmt
        self.skipped: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Sample:
        return self.render(i)[0]

    def render(self, i: int):
        """(item i, the rendered ``Clip`` it came from): the clip also holds the world's flow, depth and
        masks, so a caller that needs them renders once instead of twice."""
        if not -self.length <= i < self.length:
            raise IndexError(f"index {i} out of range for {self.length} synthetic clips")
        i %= self.length
        from videopoet.data.synthetic import render_clip

        seed = self.seed + i
        f = self.fmt
        clip = render_clip(
            seed,
            split=self.split,
            width=f.width,
            height=f.height,
            frames=f.frames,
            fps=f.fps,
            sample_rate=f.sample_rate,
        )
        sample = Sample(
            frames=clip.frames,
            audio=clip.audio,
            sample_rate=clip.sample_rate,
            fps=clip.fps,
            caption=clip.caption,
            has_audio=True,
            key=f"synthetic/{self.split}/{seed}",
            meta={"split": self.split, "seed": seed, "attributes": clip.attributes},
        )
        return sample, clip


# ------------------------------------------------------------------------------------------- video folders
class ClipRef(NamedTuple):
    file: int  # index into VideoFolderDataset.files
    start: float  # seconds into the file


@dataclass
class VideoFile:
    path: Path
    rel: str  # path relative to the dataset root, "/"-separated: the stable part of sample keys
    info: VideoInfo
    caption: str = ""
    clips: list[float] = field(default_factory=list)  # clip start times, seconds


def find_videos(root: Path) -> list[Path]:
    """Video files under ``root`` (recursive, by extension, sorted; hidden and temporary files left out)."""
    out = []
    for p in sorted(root.rglob("*")):
        rel_parts = p.relative_to(root).parts
        if any(part.startswith(".") for part in rel_parts):
            continue
        if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file():
            out.append(p)
    return out


def read_manifest(root: Path) -> dict[Path, str]:
    """Captions from ``root/manifest.jsonl`` or ``root/manifest.csv`` (keys/columns: path, caption)."""
    captions: dict[Path, str] = {}
    for name in MANIFEST_NAMES:
        mpath = root / name
        if not mpath.is_file():
            continue
        try:
            with mpath.open(newline="", encoding="utf-8") as f:
                if name.endswith(".jsonl"):
                    rows = [json.loads(line) for line in f if line.strip()]
                else:
                    rows = list(csv.DictReader(f))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as e:
            raise UserError(f"{mpath}: cannot read the caption manifest ({e})") from None
        for n, row in enumerate(rows, 1):
            if not isinstance(row, dict) or "path" not in row or "caption" not in row:
                raise UserError(f"{mpath}: entry {n} needs 'path' and 'caption' (got {row!r:.80})")
            captions[(root / str(row["path"])).resolve()] = str(row["caption"] or "").strip()
    return captions


def clip_starts(
    duration: float, source_fps: float, fmt: ClipFormat, stride: float | None = None
) -> list[float]:
    """Start times of the non-overlapping (or ``stride``-spaced) clips that fit in ``duration`` seconds."""
    stride = fmt.seconds if stride is None else stride
    # Half a source frame of slack: a file of exactly one clip's length must give one clip.
    room = duration - fmt.seconds + 0.5 / source_fps + 1e-6
    if room < 0:
        return []
    return [round(k * stride, 6) for k in range(int(math.floor(room / stride)) + 1)]


class VideoFolderDataset(Dataset):
    """Every ``frames``-frame clip of every video under ``root``, resampled to the clip format.

    Files are probed once at open (header plus a decode of the first frame and the last second); files
    that cannot be used are left out and listed in ``skipped`` as (path, reason). Captions come from a
    sidecar ``<name>.txt`` next to the video (it wins), else from ``manifest.jsonl`` / ``manifest.csv``
    in ``root``.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        fmt: ClipFormat,
        stride: float | None = None,
        max_clips_per_file: int | None = None,
        progress: bool = False,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"video folder {self.root} does not exist or is not a directory")
        if stride is not None and stride <= 0:
            raise ValueError(f"clip stride must be positive seconds, got {stride}")
        self.fmt = fmt
        self.files: list[VideoFile] = []
        self.clips: list[ClipRef] = []
        self.skipped: list[tuple[str, str]] = []
        manifest = read_manifest(self.root)
        paths = find_videos(self.root)
        if progress:
            from tqdm import tqdm

            paths = tqdm(paths, desc="scanning videos", unit="file")
        for path in paths:
            rel = path.relative_to(self.root).as_posix()
            try:
                info = probe_video(path)
            except MediaError as e:
                self._skip(rel, _strip_name(str(e), path))
                continue
            starts = clip_starts(info.duration, info.fps, fmt, stride)
            if not starts:
                self._skip(
                    rel,
                    f"too short: {info.duration:.3f} s < {fmt.seconds:.3f} s for one {fmt.frames}-frame clip "
                    f"at {fmt.fps:g} fps",
                )
                continue
            if max_clips_per_file is not None:
                starts = starts[:max_clips_per_file]
            sidecar = path.with_suffix(".txt")
            caption = (
                sidecar.read_text(encoding="utf-8", errors="replace").strip() if sidecar.is_file() else ""
            )
            caption = caption or manifest.get(path.resolve(), "")
            self.files.append(VideoFile(path, rel, info, caption, starts))
            self.clips.extend(ClipRef(len(self.files) - 1, s) for s in starts)

    def _skip(self, rel: str, reason: str) -> None:
        log.warning("skipping %s: %s", rel, reason)
        self.skipped.append((rel, reason))

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> Sample | None:
        ref = self.clips[i]
        vf = self.files[ref.file]
        fmt = self.fmt
        src_step = 1.0 / vf.info.fps
        # Read one source frame either side so the nearest-frame pick has both neighbours.
        begin = max(0.0, ref.start - src_step)
        try:
            video = read_video(
                vf.path, start=begin, duration=fmt.seconds + 2 * src_step, sample_rate=fmt.sample_rate
            )
            clip = conform_clip(
                video,
                start=ref.start,
                num_frames=fmt.frames,
                fps=fmt.fps,
                width=fmt.width,
                height=fmt.height,
                sample_rate=fmt.sample_rate,
            )
        except MediaError as e:
            log.warning("skipping clip %s@%.3f: %s", vf.rel, ref.start, _strip_name(str(e), vf.path))
            return None
        return Sample(
            frames=clip.frames,
            audio=clip.audio,
            sample_rate=fmt.sample_rate,
            fps=fmt.fps,
            caption=vf.caption,
            has_audio=clip.has_audio,
            key=f"{vf.rel}@{ref.start:.3f}",
            meta={
                "source": vf.rel,
                "start": ref.start,
                "source_fps": vf.info.fps,
                "source_size": [vf.info.width, vf.info.height],
            },
        )


def _strip_name(message: str, path: Path) -> str:
    """MediaError messages start with the file name; a skip list already names the file."""
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


# ------------------------------------------------------------------------------------------- reading
def readable_items(
    dataset,
    indices: Iterable[int],
    *,
    log: Callable[[str], None],
    check: Callable[[Sample], str | None] | None = None,
) -> Iterator[tuple[int, Sample]]:
    """(i, dataset[i]) for each of ``indices`` whose item can be used; every other one is passed over and
    ``log`` gets one line saying which and why: reading it raised (one broken file must never end a run),
    it is None (the dataset logged the details), or ``check(sample)`` returned a reason. Lazy: stop early
    and the items after are never read."""
    for i in indices:
        try:
            sample = dataset[i]
        except Exception as e:  # any reader failure is a skip with its reason
            log(f"item {i}: {type(e).__name__}: {e}")
            continue
        if sample is None:
            log(f"item {i}: unreadable (see the dataset's log)")
            continue
        reason = check(sample) if check is not None else None
        if reason is not None:
            log(reason)
            continue
        yield i, sample


# ------------------------------------------------------------------------------------------- batches
class Batch(NamedTuple):
    video: torch.Tensor  # float32 (B, 3, T, H, W) in [-1, 1]
    audio: torch.Tensor  # float32 (B, 1, N)
    has_audio: torch.Tensor  # bool (B,)
    captions: list[str]
    keys: list[str]
    meta: list[dict[str, Any]]


def collate_samples(items: list[Sample | None]) -> Batch | None:
    """DataLoader ``collate_fn``: stack the readable samples, drop the ``None`` ones; None if none is left."""
    samples = [s for s in items if s is not None]
    if not samples:
        return None
    first = samples[0]
    for s in samples[1:]:
        if s.frames.shape != first.frames.shape or s.audio.shape != first.audio.shape:
            raise ValueError(
                f"cannot batch samples of different shapes: {first.key} has frames {first.frames.shape} "
                f"audio {first.audio.shape}, {s.key} has {s.frames.shape} / {s.audio.shape}; "
                "open the datasets with one clip format"
            )
    video = torch.stack([frames_to_tensor(s.frames) for s in samples])  # (B, 3, T, H, W)
    audio = torch.stack([audio_to_tensor(s.audio) for s in samples])  # (B, 1, N)
    has_audio = torch.tensor([bool(s.has_audio) for s in samples], dtype=torch.bool)
    return Batch(
        video,
        audio,
        has_audio,
        [s.caption for s in samples],
        [s.key for s in samples],
        [s.meta for s in samples],
    )


def loader_worker_init(_: int) -> None:
    """``worker_init_fn`` of every DataLoader: on Linux a worker ignores SIGINT and SIGTERM and dies with
    its main process. A Ctrl-C or a time limit's TERM reaches the whole process group; the main process
    stops cleanly on it (a trainer checkpoints) and shuts its workers down, or dies of it. A worker killed
    by the signal first would make the loader raise "DataLoader worker ... is killed by signal" wherever
    the main process happens to be, even inside a training step. A worker that outlived its main process
    could block on the queue to it for good, so the kernel kills it when that process ends (prctl
    PR_SET_PDEATHSIG). Elsewhere, with no such guarantee, workers keep PyTorch's defaults."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it ended before prctl: end now
        os._exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


# ------------------------------------------------------------------------------------------- open_dataset
def open_dataset(
    spec: str | Path,
    *,
    frames: int = 17,
    width: int = 128,
    height: int = 128,
    fps: float = 8,
    sample_rate: int = 16000,
    split: str = "train",
    seed: int = 0,
    progress: bool = False,
) -> Dataset:
    """``spec`` → a map-style dataset of ``Sample`` (``ds[i]`` is None for an unreadable item).

    * ``synthetic``, ``synthetic:train``, ``synthetic:heldout``, ``synthetic:heldout:N`` (N clips; the
      default length is 2**31 - 1): the synthetic world, item i = ``render_clip(seed + i)``;
    * a folder holding ``*.tar`` shards (or one ``.tar`` file): ``ShardDataset``;
    * any other folder: ``VideoFolderDataset`` over its video files.
    """
    fmt = ClipFormat(frames=frames, width=width, height=height, fps=fps, sample_rate=sample_rate)
    text = str(spec)
    if text == "synthetic" or text.startswith("synthetic:"):
        return _synthetic_from_spec(text, fmt=fmt, split=split, seed=seed)
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"dataset {text!r} not found; {SPEC_HELP}")
    from videopoet.data.shards import ShardDataset, find_shards

    if (path.is_file() and path.suffix == ".tar") or (path.is_dir() and find_shards(path)):
        ds: Dataset = ShardDataset(
            path, frames=frames, width=width, height=height, fps=fps, sample_rate=sample_rate
        )
    elif path.is_dir():
        ds = VideoFolderDataset(path, fmt=fmt, progress=progress)
    else:
        raise UserError(f"dataset {text!r} is a file; {SPEC_HELP}")
    if len(ds) == 0:
        reasons = "; ".join(f"{p}: {r}" for p, r in ds.skipped[:3])
        more = f" (and {len(ds.skipped) - 3} more)" if len(ds.skipped) > 3 else ""
        raise UserError(f"dataset {text!r} has no usable clips" + (f": {reasons}{more}" if reasons else ""))
    return ds


def _synthetic_from_spec(text: str, *, fmt: ClipFormat, split: str, seed: int) -> SyntheticDataset:
    parts = text.split(":")[1:]
    length = SYNTHETIC_LENGTH
    if parts and parts[0] in SPLITS:
        split = parts.pop(0)
    if parts:
        try:
            length = int(parts.pop(0))
        except ValueError:
            raise UserError(
                f"dataset {text!r}: expected a clip count after the split, e.g. synthetic:heldout:64"
            ) from None
        if length <= 0:
            raise UserError(f"dataset {text!r}: the clip count must be positive")
    if parts:
        raise UserError(f"dataset {text!r} not understood; {SPEC_HELP}")
    if split not in SPLITS:
        raise UserError(f"dataset {text!r}: split must be one of {SPLITS}, got {split!r}")
    return SyntheticDataset(split=split, length=length, seed=seed, fmt=fmt)
