"""benchmarks/bench_lm_scaling.py on CPU ranks: debug token shards → the scaling table (1 and 2 gloo
ranks) and the kill/resume check (2 ranks stopped, resumed on 1)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_lm_scaling.py"
MIX = "tasks={unconditional=1.0, image_to_video=1.0, inpainting=1.0, video_to_audio=1.0}"
TEXT_FREE = ["--set", MIX, "--set", "records.text_encoder='none'", "--set", "text_dropout=1.0"]
# four torchrun launches each (~30 s on a 2-core CPU): opt-in with --runslow; the engine's own multi-rank,
# resharding and resume behaviour is in the default suite (tests/test_train_engine.py, test_lm_train.py)
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """6 synthetic clips tokenized by the debug tokenizers, as tests/test_lm_train.py makes them."""
    from videopoet.tokenizers.audio import AudioTokenizer
    from videopoet.tokenizers.video import VideoTokenizer

    tmp = tmp_path_factory.mktemp("bench_lm_shards")
    torch.manual_seed(0)
    VideoTokenizer.from_preset("debug").save_pretrained(tmp / "video")
    AudioTokenizer.from_preset("debug").save_pretrained(tmp / "audio")
    argv = [sys.executable, "-m", "videopoet.cli", "tokenize", "--data", "synthetic:train", "--num", "6",
            "--size", "32x32", "--frames", "5", "--video-tokenizer", str(tmp / "video"),
            "--audio-tokenizer", str(tmp / "audio"), "--text", "none", "--device", "cpu", "--workers", "0",
            "--batch-size", "3", "--out", str(tmp / "train")]  # fmt: skip
    proc = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "train"


def _bench(tmp_path: Path, shards: Path, *flags: str) -> dict:
    out = tmp_path / "bench.json"
    argv = [sys.executable, str(SCRIPT), "--device", "cpu", "--presets", "debug", "--data", str(shards),
            "--batch-per-gpu", "2", "--work-dir", str(tmp_path / "runs"), "--out", str(out), *TEXT_FREE,
            *flags]  # fmt: skip
    proc = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report == json.loads(proc.stdout)  # the same JSON on stdout
    assert report["hardware"]["device"] == "cpu" and report["commands"]
    assert all("torch.distributed.run" in c and "--standalone" in c for c in report["commands"])
    return report


def test_scaling_table_on_one_and_two_cpu_ranks(tmp_path, shards):
    report = _bench(tmp_path, shards, "--gpus", "1,2", "--steps", "3", "--warmup-steps", "1")
    table = {row["gpus"]: row for row in report["table"]}
    assert sorted(table) == [1, 2]
    for n, row in table.items():
        assert row["returncode"] == 0 and row["preset"] == "debug"
        assert row["global_batch"] == 2 * n and row["timed_steps"] == 2
        assert row["tokens_per_s"] > 0 and row["tokens_per_s_per_gpu"] == pytest.approx(
            row["tokens_per_s"] / n, abs=0.01
        )  # both rounded to 2 decimals in the report
        assert isinstance(row["mfu"], float) and math.isfinite(row["mfu"]) and row["mfu"] > 0
        assert row["flops_per_token"] > 6 * row["params_blocks"] > 0
        assert row["peak_memory_gb"] is None and row["peak_memory_gb_per_rank"] == [None] * n
        assert math.isfinite(row["final_loss"])
    assert table[1]["scaling_efficiency"] == 1.0
    assert table[2]["scaling_efficiency"] == pytest.approx(
        table[2]["tokens_per_s_per_gpu"] / table[1]["tokens_per_s_per_gpu"], rel=1e-3
    )


def test_kill_on_two_ranks_resume_on_one(tmp_path, shards):
    report = _bench(tmp_path, shards, "--kill-resume", "--kill-from", "2", "--kill-at", "2",
                    "--resume-on", "1", "--steps", "4")  # fmt: skip
    kr = report["kill_resume"]
    assert kr["continues"] is True and len(report["commands"]) == 2
    assert [r["gpus"] for r in kr["runs"]] == [2, 1] and "--resume" in report["commands"][1]
    assert [r["step"] for r in kr["before"]] == [1, 2] and [r["step"] for r in kr["after"]] == [3, 4]
    assert all(math.isfinite(r["loss"]) for r in kr["before"] + kr["after"])
