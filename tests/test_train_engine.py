"""The training engine (train/loop.py) end to end through the CLI: ranks, kills, resumes, signals, saves.

Runs go through real processes (``python -m videopoet.cli``, ``torchrun``) because what is tested is what a
process does: several ranks on gloo, kill -9, SIGTERM. The debug tokenizers keep each run to seconds.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from videopoet.eval.report import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ["video-tokenizer", "--config", str(ROOT / "configs" / "video_tokenizer_debug.toml")]
VIDEO_SETS = ["width=16", "height=16", "max_steps=6", "sample_every=0", "ckpt_every=2", "gan.start=3"]
AUDIO = ["audio-tokenizer", "--config", str(ROOT / "configs" / "audio_tokenizer_debug.toml")]
AUDIO_SETS = ["segment_samples=1600", "max_steps=4", "eval_every=0", "sample_every=0", "gan.start=2"]
TOL = 1e-5


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")


def _argv(kind: list[str], out: Path, sets: list[str], *extra: str, ranks: int = 1) -> list[str]:
    launcher = [sys.executable, "-m", "videopoet.cli"]
    if ranks > 1:
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={ranks}",
        ]
        launcher += ["-m", "videopoet.cli"]
    flags = [a for s in [*sets, "precision='fp32'", f"out_dir='{out.as_posix()}'"] for a in ("--set", s)]
    return [*launcher, "train", *kind, *flags, *extra]


def _run(kind, out, sets, *extra, ranks=1) -> subprocess.CompletedProcess:
    argv = _argv(kind, out, sets, *extra, ranks=ranks)
    return subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=600)


def _rows(out: Path) -> list[dict]:
    return [r for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]


def _assert_same(a: list[dict], b: list[dict], tol: float = 0.0) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        assert ra["data_signature"] == rb["data_signature"], ra["step"]
        for key in ("loss", "d_loss"):
            if key in ra:
                assert abs(ra[key] - rb[key]) <= tol, (ra["step"], key, ra[key], rb[key])


@pytest.fixture(scope="module")
def straight_video(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("engine") / "straight"
    proc = _run(VIDEO, out, VIDEO_SETS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(out)
    assert [r["step"] for r in rows] == list(range(1, 7))
    return rows


@pytest.mark.parametrize("kind", ["video", "audio"])
def test_two_ranks_give_the_losses_of_one(kind, tmp_path, straight_video):
    """The same global batch split over 2 gloo ranks: same data and losses per step (fp32, |Δ| ≤ 1e-5)."""
    spec, sets = (VIDEO, VIDEO_SETS) if kind == "video" else (AUDIO, AUDIO_SETS)
    if kind == "video":
        one = straight_video
    else:
        proc = _run(spec, tmp_path / "one", sets)
        assert proc.returncode == 0, proc.stderr[-3000:]
        one = _rows(tmp_path / "one")
    proc = _run(spec, tmp_path / "two", sets, ranks=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same(one, _rows(tmp_path / "two"), TOL)
    start = read_jsonl(tmp_path / "two" / "metrics.jsonl")[0]
    assert start["event"] == "start" and start["world_size"] == 2
    assert "world size 2" in proc.stderr
    assert (tmp_path / "two" / "final" / "model.safetensors").is_file()
    if kind == "video":
        assert any(r.get("d_loss") for r in one)  # the discriminator and LeCam ran on both


def test_kill_9_then_resume_is_exact(tmp_path, straight_video):
    out = tmp_path / "run"
    kill_after = random.Random().randint(3, 5)
    proc = subprocess.Popen(_argv(VIDEO, out, VIDEO_SETS), env=_env(), stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (out / "metrics.jsonl").is_file() and any(r["step"] >= kill_after for r in _rows(out)):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = _run(VIDEO, out, VIDEO_SETS, "--resume")
    assert resumed.returncode == 0, (kill_after, resumed.stderr[-3000:])
    _assert_same(straight_video, _rows(out))  # bit-identical, one row per step
    assert not list((out / "checkpoints").glob(".*tmp*"))


def test_checkpoints_reshard_between_rank_counts(tmp_path, straight_video):
    """2 ranks to step 2, 1 rank to step 4, 2 ranks to the end: the losses of one uninterrupted rank."""
    out = tmp_path / "run"
    for ranks, stop, resume in ((2, 2, ()), (1, 2, ("--resume",)), (2, 0, ("--resume",))):
        proc = _run(
            VIDEO, out, [*VIDEO_SETS, f"stop_after_steps={stop}", "keep_checkpoints=9"], *resume, ranks=ranks
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_same(straight_video, _rows(out), TOL)
    sizes = [
        r["world_size"] for r in read_jsonl(out / "metrics.jsonl") if r.get("event") in ("start", "resumed")
    ]
    assert sizes == [2, 1, 2]
    # what 2 ranks saved: full (unsharded) tensors, optimizer state keyed by parameter name, JSON state
    from safetensors.torch import load_file

    step = out / "checkpoints" / "step_00000002"
    state = json.loads((step / "state.json").read_text())
    assert state["complete"] and state["world_size"] == 2 and state["step"] == 2
    model = load_file(str(step / "model.safetensors"))
    opt = load_file(str(step / "opt_g.safetensors"))
    assert any(k.endswith("/exp_avg") for k in opt) and all(k.rsplit("/", 1)[0] in model for k in opt)


def test_sigterm_to_the_process_group_with_loader_workers(tmp_path):
    """A time limit's TERM (or a scheduler's) reaches the whole process group, the loader's workers too:
    the run still stops after its step with a checkpoint, exit status 0, and no traceback."""
    out = tmp_path / "run"
    sets = [*VIDEO_SETS[:2], "max_steps=400", "sample_every=0", "ckpt_every=50", "num_workers=2"]
    argv = _argv(VIDEO, out, sets)
    proc = subprocess.Popen(argv, env=_env(), stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not ((out / "metrics.jsonl").is_file() and len(_rows(out)) >= 3):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "Traceback" not in err, err[-3000:]
    last = _rows(out)[-1]["step"]
    assert 3 <= last < 400 and f"stopped at step {last} (signal)" in err
    assert (out / "checkpoints" / "latest").read_text() == f"step_{last:08d}"


def test_sigterm_checkpoints_and_exits_cleanly(tmp_path, straight_video):
    out = tmp_path / "run"
    proc = subprocess.Popen(_argv(VIDEO, out, VIDEO_SETS), env=_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not ((out / "metrics.jsonl").is_file() and _rows(out)):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    end = read_jsonl(out / "metrics.jsonl")[-1]
    last = _rows(out)[-1]["step"]
    assert end["event"] == "end" and end["reason"] in ("signal", "done")
    assert (out / "checkpoints" / "latest").read_text() == f"step_{last:08d}"
    assert _run(VIDEO, out, VIDEO_SETS, "--resume").returncode == 0
    _assert_same(straight_video, _rows(out))


def _in_process(out: Path, *sets: str, resume: bool = False) -> int:
    from videopoet.config import load_config
    from videopoet.train.video_tokenizer import VideoTokenizerTrainConfig, train

    path = ROOT / "configs" / "video_tokenizer_debug.toml"
    overrides = [*VIDEO_SETS, f"out_dir='{out.as_posix()}'", "precision='fp32'", *sets]
    return train(load_config(VideoTokenizerTrainConfig, path, overrides), resume=resume, progress=False)


@pytest.mark.usefixtures("one_thread")
def test_a_crash_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, straight_video):
    import videopoet.train.checkpoint as ckpt

    real, calls = ckpt.save_file, []

    def failing(tensors, path):  # the second checkpoint dies after its first file
        calls.append(path)
        if "step_00000004" in path and len([c for c in calls if "step_00000004" in c]) == 2:
            raise OSError(28, "No space left on device")
        return real(tensors, path)

    monkeypatch.setattr(ckpt, "save_file", failing)
    with pytest.raises(OSError):
        _in_process(tmp_path)
    root = tmp_path / "checkpoints"
    assert ckpt.latest_checkpoint(root).name == "step_00000002"
    assert list(root.glob(".step_00000004.tmp-*"))  # the half-written one is there, and ignored
    monkeypatch.setattr(ckpt, "save_file", real)
    assert _in_process(tmp_path, resume=True) == 0
    assert not list(root.glob(".*tmp*"))
    _assert_same(straight_video, _rows(tmp_path))


@pytest.mark.usefixtures("one_thread")
def test_a_kill_right_after_a_checkpoint_keeps_that_steps_row(tmp_path, monkeypatch, straight_video):
    from videopoet.train.loop import Engine

    real = Engine.save

    def save_then_die(self, recipe):  # as if killed the moment the step-4 checkpoint landed
        real(self, recipe)
        if self.step == 4:
            raise SystemExit(137)

    monkeypatch.setattr(Engine, "save", save_then_die)
    with pytest.raises(SystemExit):
        _in_process(tmp_path)
    assert [r["step"] for r in _rows(tmp_path)] == [1, 2, 3, 4]
    monkeypatch.setattr(Engine, "save", real)
    assert _in_process(tmp_path, resume=True) == 0
    _assert_same(straight_video, _rows(tmp_path))


@pytest.mark.usefixtures("one_thread")
def test_nonfinite_steps_are_skipped_counted_and_stop_the_run(tmp_path, monkeypatch):
    import videopoet.train.video_tokenizer as vt

    bad_steps = {2}
    real = vt.edge_loss
    state = {"calls": 0}

    def poisoned(recon, x):
        state["calls"] += 1
        value = real(recon, x)
        return value * float("nan") if state["calls"] in bad_steps else value

    monkeypatch.setattr(vt, "edge_loss", poisoned)
    assert _in_process(tmp_path / "a", "loss.edge=1.0", "max_steps=4") == 0
    rows = _rows(tmp_path / "a")
    assert [r.get("nonfinite", False) for r in rows] == [False, True, False, False]
    assert rows[-1]["nonfinite_total"] == 1 and (tmp_path / "a" / "final").is_dir()
    bad_steps.update(range(1, 100))
    state["calls"] = 0
    assert _in_process(tmp_path / "b", "loss.edge=1.0", "max_nonfinite=3") == 3
    assert [r["step"] for r in _rows(tmp_path / "b")] == [1, 2, 3]
    assert read_jsonl(tmp_path / "b" / "metrics.jsonl")[-1]["event"] == "stopped"
    assert not (tmp_path / "b" / "final").exists()


def _cli(capsys, *argv: str) -> tuple[int, str]:
    from videopoet.cli import main

    code = main(["train", *argv])
    return code, capsys.readouterr().err


@pytest.mark.usefixtures("one_thread")
def test_run_folders_are_never_lost(tmp_path, capsys):
    out = tmp_path / "run"
    sets = [a for s in [*VIDEO_SETS, "max_steps=4", f"out_dir='{out.as_posix()}'"] for a in ("--set", s)]
    assert _cli(capsys, *VIDEO, *sets, "--resume")[0] == 2  # nothing to resume: one line
    assert _cli(capsys, *VIDEO, *sets)[0] == 0
    before = (out / "metrics.jsonl").read_text()
    code, err = _cli(capsys, *VIDEO, *sets)  # a second run into the same folder is refused
    assert code == 2 and "--resume" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out / "metrics.jsonl").read_text() == before
    (out / "checkpoints" / "latest").write_bytes(b"\xff\x00garbage")  # an unreadable pointer
    sets4 = [*sets[:-2], "--set", "max_steps=6", *sets[-2:]]
    assert _cli(capsys, *VIDEO, *sets4, "--resume")[0] == 0  # falls back to the newest complete step
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert [r["world_size"] for r in rows if r.get("event") == "resumed"] == [1]
    assert _cli(capsys, *VIDEO, *sets, "--overwrite")[0] == 0
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl") if "loss" in r] == [1, 2, 3, 4]


def test_old_keys_name_their_new_ones(tmp_path, capsys):
    for kind, old, new in ((VIDEO, "gan_start=2", "gan.start"), (AUDIO, "w_adv=1.0", "gan.weight")):
        code, err = _cli(capsys, *kind, "--set", old, "--set", f"out_dir='{tmp_path.as_posix()}/x'")
        assert code == 2 and new in err and len(err.strip().splitlines()) == 1


def test_fsdp2_sharded_training_matches_one_process_and_reshards(tmp_path):
    """tests/engine_toy.py (3 blocks, ``fully_shard`` per block): 1 process vs 2 ranks, resumed on 1."""
    toy = [str(ROOT / "tests" / "engine_toy.py")]
    run = [sys.executable, *toy]
    dist_run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *toy]
    one, sharded = tmp_path / "one", tmp_path / "sharded"
    assert subprocess.run([*run, str(one)], env=_env(), capture_output=True).returncode == 0
    for launcher, extra in ((dist_run, ["stop_after_steps=3"]), (run, ["--resume"])):
        proc = subprocess.run([*launcher, str(sharded), *extra], env=_env(), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _rows(one), _rows(sharded)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 7))
    assert all(abs(ra["loss"] - rb["loss"]) <= TOL for ra, rb in zip(a, b))
    assert all(abs(ra["grad_norm"] - rb["grad_norm"]) <= 1e-4 for ra, rb in zip(a, b))
    assert (sharded / "final" / "model.safetensors").is_file()
