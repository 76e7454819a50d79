"""The command line end to end: `videopoet --help`, `data synth`, `data check` (on a folder mixing good and
broken videos, and on shards), and `demo` (playable mp4s with sound)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from videopoet import cli
from videopoet.data.synthetic import render_clip

pytest.importorskip("av")
from videopoet.data import media  # noqa: E402
from videopoet.data.shards import ShardDataset  # noqa: E402


def run(argv, capsys):
    rc = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_help_lists_subcommands():
    out = subprocess.run(
        [sys.executable, "-m", "videopoet.cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    for name in ("demo", "data", "train", "eval"):
        assert name in out.stdout
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "--help"])
    assert e.value.code == 0


def test_data_help_names_synth_and_check(capsys):
    with pytest.raises(SystemExit):
        cli.main(["data", "--help"])
    text = capsys.readouterr().out
    assert "synth" in text and "check" in text


def test_synth_writes_shards(tmp_path, capsys):
    out = tmp_path / "shards"
    argv = ["data", "synth", "--out", out, "--num", 3, "--seed", 7, "--split", "heldout", "--size", "32x48"]
    rc, stdout, _ = run(argv + ["--frames", 5, "--shard-size", 2], capsys)
    assert rc == 0
    assert stdout.strip().count("\n") == 0 and "wrote 3 heldout clips" in stdout and "2 shard(s)" in stdout
    ds = ShardDataset(out)
    assert len(ds) == 3 and ds.skipped == []
    for i in range(3):
        s = ds[i]
        clip = render_clip(7 + i, split="heldout", width=32, height=48, frames=5)
        assert s.key == f"synthetic/heldout/{7 + i}" and s.caption == clip.caption
        assert s.frames.shape == (5, 48, 32, 3)
        assert s.meta["attributes"] == clip.attributes
    # Writing again into the same folder would mix two sets: refused with a clear one-line error.
    rc, _, err = run(argv, capsys)
    assert rc == 2 and "already holds shards" in err and err.count("\n") == 1


def test_synth_bad_size_is_a_user_error(tmp_path, capsys):
    rc, _, err = run(["data", "synth", "--out", tmp_path / "x", "--num", 1, "--size", "8x8"], capsys)
    assert rc == 2 and err.startswith("videopoet: error:") and err.count("\n") == 1
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "synth", "--out", str(tmp_path), "--num", "1", "--size", "30x30"])
    assert e.value.code == 2


def make_mixed_folder(root):
    """Real mp4s (different fps and sizes, one silent) next to broken files of every kind."""
    root.mkdir()
    rng = np.random.default_rng(0)
    frames = lambda n, h, w: rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8)  # noqa: E731
    audio = lambda sec, rate: (0.3 * np.sin(np.arange(int(sec * rate)) * 0.05)).astype(np.float32)  # noqa: E731
    media.write_mp4(root / "ok_30fps.mp4", frames(180, 72, 96), 30, audio(6.0, 48000), 48000)
    media.write_mp4(root / "ok_silent_12fps.mp4", frames(30, 64, 48), 12)
    (root / "nested").mkdir()
    media.write_mp4(root / "nested" / "ok_8fps.mp4", frames(17, 32, 32), 8, audio(2.125, 16000), 16000)
    good = (root / "ok_30fps.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(good[: len(good) // 2])
    (root / "zero.mp4").write_bytes(b"")
    (root / "noise.mp4").write_bytes(rng.bytes(2048))
    (root / "caption.mp4").write_text("a caption file renamed to .mp4\n")
    return root


def test_check_mixed_folder(tmp_path, capsys):
    root = make_mixed_folder(tmp_path / "videos")
    report_path = tmp_path / "report" / "check.json"
    rc, stdout, _ = run(["data", "check", root, "--json", report_path], capsys)
    assert rc == 0
    lines = stdout.strip().splitlines()
    # 6 s at 30 fps → 2 clips of 2.125 s; 2.5 s → 1; exactly 2.125 s → 1.
    assert lines[0].endswith("7 video file(s), 3 usable; 4 usable 17-frame clip(s) at 8 fps; 4 skipped")
    skipped = {line.split()[1].rstrip(":"): line for line in lines[1:]}
    assert sorted(skipped) == ["caption.mp4", "noise.mp4", "truncated.mp4", "zero.mp4"]
    assert "empty file" in skipped["zero.mp4"]
    assert "not a readable media file" in skipped["noise.mp4"]
    assert "not a readable media file" in skipped["caption.mp4"]
    assert "truncated" in skipped["truncated.mp4"] or "corrupt" in skipped["truncated.mp4"]
    report = json.loads(report_path.read_text())
    assert report["kind"] == "videos" and report["usable_clips"] == 4
    assert report["clips_per_file"] == {"nested/ok_8fps.mp4": 1, "ok_30fps.mp4": 2, "ok_silent_12fps.mp4": 1}
    assert {s["path"] for s in report["skipped"]} == set(skipped)
    # A longer clip length leaves fewer usable clips: only the 6 s file holds a 41-frame clip.
    rc, stdout, _ = run(["data", "check", root, "--frames", 41], capsys)
    assert rc == 0 and "1 usable 41-frame clip(s)" in stdout and "too short" in stdout


def test_check_shards_reports_damaged_sample(tmp_path, capsys):
    out = tmp_path / "shards"
    assert run(["data", "synth", "--out", out, "--num", 3, "--size", "16x16", "--frames", 3], capsys)[0] == 0
    ds = ShardDataset(out)
    offset, size = ds.items[2][2]["mp4"]
    with open(ds.shards[0], "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * size)
    rc, stdout, _ = run(["data", "check", out, "--frames", 3], capsys)
    assert rc == 0
    lines = stdout.strip().splitlines()
    assert "1 shard(s), 3 sample(s); 2 usable 3-frame clip(s)" in lines[0] and lines[0].endswith("1 skipped")
    assert lines[1].startswith("  skipped shard-000000.tar:synthetic_train_2: ")


@pytest.mark.parametrize("make", [None, "file"])
def test_check_missing_directory_exits_2(tmp_path, capsys, make):
    target = tmp_path / "nowhere"
    if make == "file":
        target.write_text("not a folder")
    rc, stdout, err = run(["data", "check", target], capsys)
    assert rc == 2 and stdout == ""
    assert err.startswith("videopoet: error:") and str(target) in err and err.count("\n") == 1


def test_check_empty_folder_is_fine(tmp_path, capsys):
    rc, stdout, _ = run(["data", "check", tmp_path], capsys)
    assert rc == 0 and "0 usable 17-frame clip(s)" in stdout


def test_pack_conforms_a_mixed_folder_into_shards(tmp_path, capsys):
    root = make_mixed_folder(tmp_path / "videos")
    (root / "ok_30fps.txt").write_text("a noisy test pattern\n")
    out = tmp_path / "packed"
    rc, stdout, _ = run(["data", "pack", root, "--out", out, "--size", "32x48", "--frames", 9], capsys)
    assert rc == 0 and "4 file(s) skipped at scan" in stdout
    ds = ShardDataset(out)
    samples = [ds[i] for i in range(len(ds))]
    # 6 s → 5 clips of 9 frames at 8 fps; 2.5 s → 2; 2.125 s → 1 (every clip of every good file, conformed)
    assert len(samples) == 8 and all(s.frames.shape == (9, 48, 32, 3) for s in samples)
    assert all(s.audio.shape == (18000,) and s.sample_rate == 16000 and s.fps == 8 for s in samples)
    silent = [s for s in samples if "silent" in s.key]
    assert silent and not any(s.has_audio for s in silent)
    assert {s.caption for s in samples if "ok_30fps" in s.key} == {"a noisy test pattern"}
    rc, _, err = run(["data", "pack", tmp_path / "nowhere", "--out", tmp_path / "x"], capsys)
    assert rc == 2 and "no such directory" in err
