"""scripts/train_default_model.sh on debug settings (slow, ``--runslow``): token shards, unigram baseline,
LM, SR, an int8 pipeline folder, the held-out loss of both LM files; run again, every step is skipped or
resumed and the pipeline is the same."""

import json
import os
import subprocess
import sys
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


def _run(out: Path) -> str:
    env = {**os.environ, **DEBUG, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    script = ROOT / "scripts" / "train_default_model.sh"
    done = subprocess.run(
        ["bash", str(script), str(out)], env=env, capture_output=True, text=True, timeout=600
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
    again = _run(out)  # a second run: nothing to redo
    assert again.count("already complete") == 2 and again.count("exists, skipped") == 2
    assert (out / "lm" / "final" / "model.safetensors").read_bytes() == weights
    pipe = VideoPoetPipeline.from_pretrained(out / "pipeline")
    assert pipe.super_resolution is not None
