"""Tar shards: write synthetic samples, read them back (same captions/attributes, frames close), atomic
shards, and damaged shards or members skipped with a reason."""

from __future__ import annotations

import io
import json
import logging
import tarfile

import numpy as np
import pytest
import torch

from videopoet.data.datasets import collate_samples, open_dataset
from videopoet.data.media import MediaError
from videopoet.data.sample import Sample
from videopoet.errors import UserError
from videopoet.eval.metrics import frames_psnr

pytest.importorskip("av")
from videopoet.data.shards import ShardDataset, ShardWriter, find_shards, shard_key  # noqa: E402

FMT = dict(frames=5, width=32, height=32)


@pytest.fixture(scope="module")
def samples():
    ds = open_dataset("synthetic:5", **FMT, seed=100)
    return [ds[i] for i in range(len(ds))]


@pytest.fixture()
def shard_dir(tmp_path, samples):
    with ShardWriter(tmp_path / "shards", shard_size=2) as w:
        keys = [w.write(s) for s in samples]
    assert keys == [
        "synthetic_train_100",
        "synthetic_train_101",
        "synthetic_train_102",
        "synthetic_train_103",
        "synthetic_train_104",
    ]
    return tmp_path / "shards"


def test_write_then_read_back(shard_dir, samples):
    assert [p.name for p in find_shards(shard_dir)] == [
        "shard-000000.tar",
        "shard-000001.tar",
        "shard-000002.tar",
    ]
    assert not [p for p in shard_dir.iterdir() if p.name.startswith(".")], "temporary shard left behind"
    with tarfile.open(shard_dir / "shard-000000.tar") as tf:  # plain tar, webdataset layout
        assert tf.getnames() == [
            f"synthetic_train_10{i}.{e}" for i in (0, 1) for e in ("mp4", "wav", "json", "txt")
        ]
        meta = json.loads(tf.extractfile("synthetic_train_100.json").read())
    assert meta["fps"] == 8 and meta["sample_rate"] == 16000 and meta["has_audio"] is True
    assert (meta["num_frames"], meta["width"], meta["height"]) == (5, 32, 32)
    ds = ShardDataset(shard_dir)
    assert len(ds) == 5 and ds.skipped == []
    for orig, back in zip(samples, (ds[i] for i in range(5))):
        assert back.key == orig.key and back.caption == orig.caption
        assert back.meta == orig.meta  # attributes survive JSON exactly
        assert back.frames.shape == orig.frames.shape and back.frames.dtype == np.uint8
        assert frames_psnr(back.frames, orig.frames) > 38  # 4:4:4 H.264 keeps the sharp synthetic edges
        assert back.audio.shape == orig.audio.shape
        assert np.abs(back.audio - orig.audio).max() <= 0.5 / 32768 + 1e-6  # 16-bit WAV
        assert (back.fps, back.sample_rate, back.has_audio) == (8, 16000, True)
    # spawned DataLoader workers receive the index by pickling (the default outside Linux)
    spawned = torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=1, multiprocessing_context="spawn", sampler=[4]
    )
    assert [s.key for s in spawned] == [samples[4].key]


def test_shard_dataset_conforms_to_a_clip_format(shard_dir):
    ds = open_dataset(shard_dir, frames=3, width=16, height=24)
    assert isinstance(ds, ShardDataset)
    s = ds[0]
    assert s.frames.shape == (3, 24, 16, 3) and s.audio.shape == (6000,)
    batch = collate_samples([ds[0], ds[1]])
    assert batch.video.shape == (2, 3, 3, 24, 16)
    too_long = ShardDataset(shard_dir, frames=17)
    assert too_long[0] is None
    with pytest.raises(MediaError, match="shard-000000.tar:synthetic_train_100: .*not covered"):
        too_long.load(0)


def test_silent_sample_round_trip(tmp_path):
    s = Sample(
        frames=np.full((3, 16, 16, 3), 77, np.uint8),
        audio=np.zeros(6000, np.float32),
        sample_rate=16000,
        fps=8,
        caption="quiet",
        has_audio=False,
        key="clips/quiet.mp4@0.000",
        meta={"source": "x"},
    )
    with ShardWriter(tmp_path, prefix="silent") as w:
        assert w.write(s) == "clips_quiet_mp4_0_000"
    back = ShardDataset(tmp_path / "silent-000000.tar")[0]
    assert not back.has_audio and back.audio.shape == (6000,) and not back.audio.any()
    assert back.key == "clips/quiet.mp4@0.000" and back.meta == {"source": "x"} and back.caption == "quiet"


def test_shard_is_atomic_and_aborted_on_error(tmp_path, samples):
    out = tmp_path / "s"
    with pytest.raises(RuntimeError, match="boom"):
        with ShardWriter(out, shard_size=2) as w:
            for s in samples[:3]:
                w.write(s)
                # Only completed shards carry the final name.
                assert len(find_shards(out)) == len(w.shards)
            raise RuntimeError("boom")
    assert [p.name for p in out.iterdir()] == ["shard-000000.tar"]
    assert len(ShardDataset(out)) == 2
    with pytest.raises(UserError, match="already holds shards"):
        ShardWriter(out)


def test_writer_rejects_bad_input(tmp_path, samples):
    with pytest.raises(ValueError, match="shard_size"):
        ShardWriter(tmp_path / "a", shard_size=0)
    with pytest.raises(ValueError, match="prefix"):
        ShardWriter(tmp_path / "b", prefix="my shards")
    with ShardWriter(tmp_path / "c") as w:
        w.write(samples[0])
        with pytest.raises(ValueError, match="duplicate sample key"):
            w.write(samples[0])
    assert shard_key("a/b.mp4@1.500") == "a_b_mp4_1_500"


def test_damaged_member_gives_none(shard_dir, caplog):
    ds = ShardDataset(shard_dir)
    shard, key, members = ds.shards[ds.items[1][0]], ds.items[1][1], ds.items[1][2]
    offset, size = members["mp4"]
    with open(shard, "r+b") as f:  # scribble over the video member, keep the tar structure
        f.seek(offset)
        f.write(b"\x00" * size)
    with caplog.at_level(logging.WARNING, logger="videopoet.data"):
        assert ds[1] is None
    assert any(key in r.getMessage() for r in caplog.records)
    assert ds[0] is not None and ds[2] is not None
    with pytest.raises(MediaError, match=f"shard-000000.tar:{key}: "):
        ds.load(1)


def test_truncated_shard_and_incomplete_sample(shard_dir):
    last = shard_dir / "shard-000002.tar"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 3])
    extra = shard_dir / "shard-000003.tar"
    with tarfile.open(extra, "w") as tf:
        for name, payload in (("lonely.txt", b"caption only"), ("lonely.json", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    ds = ShardDataset(shard_dir)
    assert len(ds) == 4
    reasons = dict(ds.skipped)
    assert "truncated" in reasons["shard-000002.tar"] or "not a readable tar" in reasons["shard-000002.tar"]
    assert "incomplete sample" in reasons["shard-000003.tar:lonely"]
