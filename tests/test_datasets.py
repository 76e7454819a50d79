"""Datasets: the synthetic world, folders of real videos (any rate, size, length; bad files skipped)."""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch

from videopoet.data.datasets import (
    SYNTHETIC_LENGTH,
    ClipFormat,
    SyntheticDataset,
    VideoFolderDataset,
    clip_starts,
    collate_samples,
    open_dataset,
    read_manifest,
    readable_items,
)
from videopoet.data.sample import Sample
from videopoet.data.synthetic import render_clip
from videopoet.errors import UserError

pytest.importorskip("av")
from videopoet.data import media  # noqa: E402


def level_frames(n: int, h: int, w: int) -> np.ndarray:
    """uint8 (n, h, w, 3) flat frames whose colour encodes the frame index k (red: k % 10, green: k // 10)."""
    k = np.arange(n)
    out = np.full((n, h, w, 3), 128, np.uint8)
    out[..., 0] = (40 + 20 * (k % 10))[:, None, None]
    out[..., 1] = (40 + 20 * (k // 10))[:, None, None]
    return out


def decode_index(frame: np.ndarray) -> int:
    r, g = (float(frame[..., c].mean()) for c in (0, 1))
    return int(round((r - 40) / 20)) + 10 * int(round((g - 40) / 20))


def tone(seconds: float, rate: int, freq: float = 440.0, t0: float = 0.0) -> np.ndarray:
    t = t0 + np.arange(int(round(seconds * rate))) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


FMT = ClipFormat(frames=9, width=32, height=32)  # 1.125 s clips


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory):
    """Real mp4s of different rates, sizes and lengths (one silent) mixed with every kind of bad file."""
    root = tmp_path_factory.mktemp("videos")
    (root / "a").mkdir()
    (root / "b").mkdir()
    # 29.97 and 12.5 fps: no 8 fps target time falls exactly half-way between two source frames.
    media.write_mp4(root / "a" / "clip30.mp4", level_frames(90, 60, 80), 29.97, tone(3.0, 44100), 44100)
    (root / "a" / "clip30.txt").write_text("a grey fade with a tone\n")
    media.write_mp4(root / "b" / "portrait12.mp4", level_frames(30, 96, 48), 12.5)
    media.write_mp4(root / "short.mp4", level_frames(8, 32, 32), 8, tone(1.0, 16000), 16000)
    good = (root / "a" / "clip30.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(good[: len(good) // 2])
    (root / "empty.mp4").write_bytes(b"")
    (root / "random.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
    (root / "notes.mp4").write_text("a text file renamed to .mp4\n" * 10)
    (root / "readme.txt").write_text("not a video, not a candidate")
    (root / ".partial.mp4").write_bytes(b"hidden temporary file")
    with (root / "manifest.jsonl").open("w") as f:
        f.write(json.dumps({"path": "b/portrait12.mp4", "caption": "a silent portrait fade"}) + "\n")
        f.write(json.dumps({"path": "a/clip30.mp4", "caption": "the sidecar wins over this"}) + "\n")
    return root


def test_synthetic_dataset_matches_render_clip():
    ds = open_dataset("synthetic:heldout:3", frames=5, width=32, height=48, seed=10)
    assert isinstance(ds, SyntheticDataset) and len(ds) == 3
    s = ds[2]
    clip = render_clip(12, split="heldout", width=32, height=48, frames=5, fps=8, sample_rate=16000)
    np.testing.assert_array_equal(s.frames, clip.frames)
    np.testing.assert_array_equal(s.audio, clip.audio)
    assert s.frames.shape == (5, 48, 32, 3) and s.audio.shape == (10000,)
    assert (s.caption, s.key, s.has_audio) == (clip.caption, "synthetic/heldout/12", True)
    assert s.meta["attributes"] == clip.attributes and s.meta["seed"] == 12
    assert ds[-1].key == s.key
    with pytest.raises(IndexError):
        ds[3]
    assert len(open_dataset("synthetic")) == SYNTHETIC_LENGTH
    assert open_dataset("synthetic:train", split="heldout").split == "train"
    assert open_dataset("synthetic", split="heldout").split == "heldout"
    assert len(open_dataset("synthetic:7")) == 7


@pytest.mark.parametrize(
    "spec", ["synthetic:validation", "synthetic:heldout:0", "synthetic:heldout:x", "synthetic:a:b:c"]
)
def test_bad_synthetic_specs(spec):
    with pytest.raises(UserError, match="synthetic"):
        open_dataset(spec)


def test_synthetic_path_needs_no_media_libraries():
    code = (
        "import sys\n"
        "for m in ('av', 'PIL', 'scipy'): sys.modules[m] = None  # importing them now fails\n"
        "from videopoet.data.datasets import open_dataset, collate_samples\n"
        "ds = open_dataset('synthetic:2', frames=3, width=16, height=16)\n"
        "b = collate_samples([ds[0], ds[1]])\n"
        "print(tuple(b.video.shape), tuple(b.audio.shape))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(2, 3, 3, 16, 16) (2, 1, 6000)"


def test_clip_starts():
    fmt = ClipFormat(frames=17)  # 2.125 s
    assert clip_starts(2.125, 8, fmt) == [0.0]
    assert clip_starts(2.0, 8, fmt) == []
    assert clip_starts(6.5, 30, fmt) == [0.0, 2.125, 4.25]
    assert clip_starts(3.0, 30, fmt, stride=0.5) == [0.0, 0.5]


def test_video_folder_scan_lists_clips_and_skips_bad_files(video_folder, caplog):
    with caplog.at_level(logging.WARNING, logger="videopoet.data"):
        ds = VideoFolderDataset(video_folder, fmt=FMT)
    assert [f.rel for f in ds.files] == ["a/clip30.mp4", "b/portrait12.mp4"]
    assert [(ds.files[c.file].rel, c.start) for c in ds.clips] == [
        ("a/clip30.mp4", 0.0),
        ("a/clip30.mp4", 1.125),
        ("b/portrait12.mp4", 0.0),
        ("b/portrait12.mp4", 1.125),
    ]
    reasons = dict(ds.skipped)
    assert sorted(reasons) == ["empty.mp4", "notes.mp4", "random.mp4", "short.mp4", "truncated.mp4"]
    assert "too short" in reasons["short.mp4"]
    assert "empty file" in reasons["empty.mp4"]
    assert "not a readable media file" in reasons["random.mp4"]
    assert "not a readable media file" in reasons["notes.mp4"]
    assert "truncated" in reasons["truncated.mp4"] or "corrupt" in reasons["truncated.mp4"]
    assert all("\n" not in r for r in reasons.values())
    for name in reasons:  # every skip is logged with its reason
        assert any(name in rec.getMessage() for rec in caplog.records)
    assert ds.files[0].caption == "a grey fade with a tone"
    assert ds.files[1].caption == "a silent portrait fade"


def test_video_folder_resamples_to_8fps_with_audio(video_folder):
    ds = VideoFolderDataset(video_folder, fmt=FMT)
    s = ds[1]  # clip30.mp4 from 1.125 s
    assert isinstance(s, Sample)
    assert s.frames.shape == (9, 32, 32, 3) and s.frames.dtype == np.uint8
    assert (s.fps, s.sample_rate, s.has_audio) == (8, 16000, True)
    targets = 1.125 + np.arange(9) / 8
    expected = np.rint(targets * 29.97).astype(int)  # nearest source frame to each 8 fps time
    assert [decode_index(f) for f in s.frames] == expected.tolist()
    assert s.audio.shape == (18000,) and s.audio.dtype == np.float32
    # The 44.1 kHz tone, cut at exactly 1.125 s and resampled to 16 kHz.
    assert np.corrcoef(s.audio, tone(1.125, 16000, t0=1.125))[0, 1] > 0.95
    assert s.key == "a/clip30.mp4@1.125"
    assert s.meta["source_fps"] == pytest.approx(29.97) and s.meta["source_size"] == [80, 60]


def test_video_folder_silent_portrait_source(video_folder):
    fmt = ClipFormat(frames=9, width=16, height=32)  # portrait target
    ds = VideoFolderDataset(video_folder, fmt=fmt)
    s = ds[3]  # portrait12.mp4 from 1.125 s
    assert s.frames.shape == (9, 32, 16, 3)
    assert not s.has_audio and s.audio.shape == (18000,) and not s.audio.any()
    expected = np.rint((1.125 + np.arange(9) / 8) * 12.5).astype(int)
    assert [decode_index(f) for f in s.frames] == expected.tolist()


def test_file_broken_after_scan_gives_none(video_folder, tmp_path, caplog):
    import shutil

    root = tmp_path / "copy"
    root.mkdir()
    shutil.copy(video_folder / "a" / "clip30.mp4", root / "x.mp4")
    ds = VideoFolderDataset(root, fmt=FMT)
    assert len(ds) == 2
    (root / "x.mp4").write_bytes(b"\x00" * 100)
    with caplog.at_level(logging.WARNING, logger="videopoet.data"):
        assert ds[0] is None
    assert any("x.mp4" in r.getMessage() for r in caplog.records)


def test_collate_drops_bad_items_and_checks_shapes(video_folder):
    ds = VideoFolderDataset(video_folder, fmt=FMT)
    batch = collate_samples([ds[0], None, ds[2]])
    assert batch.video.shape == (2, 3, 9, 32, 32) and batch.video.dtype == torch.float32
    assert batch.video.min() >= -1 and batch.video.max() <= 1
    assert batch.audio.shape == (2, 1, 18000)
    assert batch.has_audio.tolist() == [True, False]
    assert batch.captions == ["a grey fade with a tone", "a silent portrait fade"]
    assert batch.keys == ["a/clip30.mp4@0.000", "b/portrait12.mp4@0.000"]
    assert collate_samples([None, None]) is None
    other = Sample(
        frames=np.zeros((5, 32, 32, 3), np.uint8),
        audio=np.zeros(10000, np.float32),
        sample_rate=16000,
        fps=8,
        key="other",
    )
    with pytest.raises(ValueError, match="different shapes"):
        collate_samples([ds[0], other])


def test_readable_items_skips_and_logs_each_unusable_item():
    """Item 1 raises, item 2 is None, item 4 fails the caller's check; reading stops when the caller does."""
    good = SyntheticDataset(length=8, fmt=ClipFormat(frames=1, width=16, height=16))
    read = []

    class Flaky:
        def __getitem__(self, i):
            read.append(i)
            if i == 1:
                raise OSError("disk on fire")
            return None if i == 2 else good[i]

    reasons = []
    check = lambda s: "no thanks" if s.key.endswith("/4") else None
    items = readable_items(Flaky(), range(8), log=reasons.append, check=check)
    got = list(itertools.islice(items, 3))
    assert [i for i, _ in got] == [0, 3, 5] and got[0][1].key == "synthetic/train/0"
    unreadable = "item 2: unreadable (see the dataset's log)"
    assert reasons == ["item 1: OSError: disk on fire", unreadable, "no thanks"]
    assert read == [0, 1, 2, 3, 4, 5]  # lazy: nothing after the last item taken


def test_dataloader_over_video_folder(video_folder):
    ds = open_dataset(video_folder, frames=9, width=32, height=32)
    assert isinstance(ds, VideoFolderDataset)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate_samples)
    sizes = [b.video.shape[0] for b in loader]
    assert sizes == [3, 1]
    # spawned workers receive the dataset by pickling (the default outside Linux)
    spawned = torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=1, multiprocessing_context="spawn", sampler=[2]
    )
    assert [s.key for s in spawned] == [ds[2].key]


def test_manifest_csv_and_errors(tmp_path):
    (tmp_path / "manifest.csv").write_text('path,caption\nx.mp4,"a red, round thing"\nsub/y.mp4,\n')
    caps = read_manifest(tmp_path)
    assert caps[(tmp_path / "x.mp4").resolve()] == "a red, round thing"
    assert caps[(tmp_path / "sub" / "y.mp4").resolve()] == ""
    (tmp_path / "manifest.jsonl").write_text('{"file": "x.mp4"}\n')
    with pytest.raises(UserError, match="needs 'path' and 'caption'"):
        read_manifest(tmp_path)


def test_open_dataset_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "bad.mp4").write_bytes(b"junk")
    with pytest.raises(UserError, match="no usable clips.*bad.mp4"):
        open_dataset(tmp_path)
