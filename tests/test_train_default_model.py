"""scripts/train_default_model.sh on debug settings (slow, ``--runslow``): token shards, unigram baseline,
LM, SR, an int8 pipeline folder, the held-out loss of both LM files; run again, every step is skipped or
resumed and the pipeline is the same."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEBUG = {
    "VIDEOPOET_DEVICE": "cpu",
    "VIDEOPOET_WORKERS": "0",
    "VIDEOPOET_CLIPS": "8",
    "VIDEOPOET_HELDOUT": "4",
    "VIDEOPOET_TOKENIZE_ARGS": "--frames 5 --size 32x32",
    "VIDEOPOET_LM_CONFIG": "configs/lm_debug.toml",
    "VIDEOPOET_LM_SET": "--set max_steps=2 --set eval_every=0 --set ckpt_every=1",
    "VIDEOPOET_SR_CONFIG": "configs/superres_debug.toml",
    # the bundled 2^12-code video tokenizer, so the SR model fits the pipeline's tokenizer
    "VIDEOPOET_SR_SET": "--set video_tokenizer= --set model.codebook_bits=12 --set max_steps=2 "
    "--set eval_every=0 --set ckpt_every=1 --set sample_every=0",
}


SCRIPT = ROOT / "scripts" / "train_default_model.sh"


def _env(**changes: str) -> dict[str, str]:
    return {**os.environ, **DEBUG, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **changes}


def _run(out: Path, **changes: str) -> str:
    done = subprocess.run(
        ["bash", str(SCRIPT), str(out)], env=_env(**changes), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
def test_the_script_trains_resumes_and_assembles(tmp_path):
    from videopoet.pipeline import VideoPoetPipeline

    out = tmp_path / "run"
    assert "done:" in _run(out)
    index = json.loads((out / "pipeline" / "model_index.json").read_text())
    assert index["super_resolution"] == "super_resolution" and index["text_encoder"] == {"spec": "minilm"}
    for name in ("transformer", "super_resolution"):
        config = json.loads((out / "pipeline" / name / "config.json").read_text())
        assert config["storage"] == "int8-weight-only"
    assert "text_to_video" in json.loads((out / "unigram.json").read_text())["unigram_nats"]
    reports = {k: json.loads((out / f"eval_lm_{k}.json").read_text()) for k in ("fp16", "int8")}
    assert reports["int8"]["storage"] == "int8-weight-only" and reports["fp16"]["storage"] == "float"
    for report in reports.values():
        rows = {row["task"]: row for row in report["tasks"]}
        assert report["records"] == 4 and rows["text_to_video"]["unigram_nats"] > 0
    weights = (out / "lm" / "final" / "model.safetensors").read_bytes()
    stamp = (out / "lm" / "final" / "model.safetensors").stat().st_mtime_ns
    again = _run(out)  # a second run: nothing to redo
    assert again.count("already complete") == 2 and again.count("reached its last step, skipped") == 2
    assert "pipeline is up to date" in again and again.count("is up to date, skipped") == 3
    assert (out / "lm" / "final" / "model.safetensors").read_bytes() == weights
    assert (out / "lm" / "final" / "model.safetensors").stat().st_mtime_ns == stamp  # not even re-exported
    pipe = VideoPoetPipeline.from_pretrained(out / "pipeline")
    assert pipe.super_resolution is not None


@pytest.mark.slow
def test_a_term_signal_stops_the_script_and_the_next_run_resumes(tmp_path):
    """A time limit's TERM reaches the LM trainer (it checkpoints and exits), the script stops with 143
    before any later step; the next run resumes the LM to its last step and finishes."""
    out = tmp_path / "run"
    long_lm = {"VIDEOPOET_LM_SET": "--set max_steps=400 --set eval_every=0 --set ckpt_every=1",
               "VIDEOPOET_SR_CONFIG": ""}  # fmt: skip
    proc = subprocess.Popen(["bash", str(SCRIPT), str(out)], env=_env(**long_lm), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    metrics, deadline = out / "lm" / "metrics.jsonl", time.time() + 300
    while time.time() < deadline and not (metrics.is_file() and '"step": 3' in metrics.read_text()):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=300)
    assert proc.returncode == 143, stdout
    assert not (out / "pipeline").exists()  # nothing after the interrupted step ran
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    stopped = max(r["step"] for r in rows)
    assert 3 <= stopped < 400 and rows[-1].get("event") == "end" and rows[-1]["reason"] != "done"
    done = _run(out, VIDEOPOET_LM_SET=long_lm["VIDEOPOET_LM_SET"].replace("400", str(stopped + 2)),
                VIDEOPOET_SR_CONFIG="")  # fmt: skip
    assert "resumed" in metrics.read_text() and "done:" in done


@pytest.mark.slow
def test_a_run_stopped_before_its_first_checkpoint_starts_over(tmp_path):
    """A trainer killed before it saved anything leaves metrics.jsonl and train_config.json but no
    checkpoint: the next run starts that step over instead of stopping at the trainer's refusal."""
    out = tmp_path / "run"
    lm = out / "lm"
    (lm / "checkpoints").mkdir(parents=True)
    (lm / "train_config.json").write_text("{}\n")
    (lm / "metrics.jsonl").write_text('{"step": 0, "time": 0.0, "event": "start", "world_size": 1}\n')
    assert "done:" in _run(out, VIDEOPOET_SR_CONFIG="")
    rows = [json.loads(line) for line in (lm / "metrics.jsonl").read_text().splitlines()]
    assert [r["event"] for r in rows if "event" in r] == ["start", "end"] and rows[-1]["reason"] == "done"
