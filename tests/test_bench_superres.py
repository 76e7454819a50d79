"""benchmarks/bench_superres.py's quality rows on one held-out frame: one (a′) and (c′) row per
consistency band, row (a) from --model, and skipped with its reason without one."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_superres.py"

pytestmark = pytest.mark.usefixtures("one_thread")


def _bench():
    spec = importlib.util.spec_from_file_location("bench_superres", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_rows_per_band_and_row_a_from_a_model(tmp_path):
    from videopoet.superres.model import SuperResTransformer

    torch.manual_seed(0)
    SuperResTransformer.from_preset("tiny").save_pretrained(tmp_path / "sr")  # random: plumbing only
    out = tmp_path / "q.json"
    common = ["--device", "cpu", "--seeds", "4243", "--frames", "1", "--consistency-coarse", "1", "4"]
    result = _bench().main(
        common + ["--model", str(tmp_path / "sr"), "--steps", "2", "--no-text", "--out", str(out)]
    )
    q = result["quality"]
    for name in ("superres", "bicubic", "tokenizer_256", "bicubic_tokens"):
        assert set(q[name]) >= {"psnr_db", "ssim", "small_shape_accuracy"}, name
    for name in ("superres_consistent", "superres_consistent_coarse4", "tokenizer_256_consistent",
                 "tokenizer_256_consistent_coarse4"):  # fmt: skip
        assert q[name]["psnr_db"] > 0, name
    # full back-projection pulls the output onto the 128×128 reconstruction: bicubic's level
    assert abs(q["tokenizer_256_consistent"]["psnr_db"] - q["bicubic"]["psnr_db"]) < 1.0
    assert q["superres"]["settings"] == {"steps": 2, "guidance_lowres": 1.0, "temperature": 0.0,
                                         "guidance_text": None}  # fmt: skip
    assert json.loads(out.read_text()) == result


def test_model_none_or_none_bundled_skips_row_a_with_its_reason(monkeypatch, tmp_path):
    import videopoet.components as components

    bench = _bench()
    assert bench._model("none", "cpu") == (None, "--model none")
    monkeypatch.setattr(
        components, "PRETRAINED_ROOT", tmp_path
    )  # an install without pretrained/super_resolution
    model, why = bench._model("bundled", "cpu")
    assert model is None and "no super-resolution model is bundled" in why
    assert bench.consistent_row("superres", 1) == "superres_consistent"
    assert bench.consistent_row("tokenizer_256", 4) == "tokenizer_256_consistent_coarse4"
