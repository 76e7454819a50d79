"""benchmarks/bench_superres.py's quality rows on one held-out frame: one (a′) and (c′) row per
consistency band, row (a) from --model, and skipped with its reason without one."""

import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_superres.py"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def importable_bench(monkeypatch):
    """The bench as a module that spawned judge processes can import too (they inherit sys.path)."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import bench_superres

    return bench_superres


def test_rows_per_band_and_row_a_from_a_model(tmp_path, importable_bench):
    from videopoet.superres.model import SuperResTransformer

    torch.manual_seed(0)
    SuperResTransformer.from_preset("tiny").save_pretrained(tmp_path / "sr")  # random: plumbing only
    out = tmp_path / "q.json"
    common = [
        "--device",
        "cpu",
        "--seeds",
        "4243",
        "--frames",
        "1",
        "--consistency-coarse",
        "1",
        "4",
        "--workers",
        "2",
    ]
    result = importable_bench.main(
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
    from videopoet.data.synthetic import render_clip  # the judged counts came back from the two processes

    small = [
        o for o in render_clip(4243, split="heldout", frames=1).attributes["objects"] if o["size"] == "small"
    ]
    assert len(small) and all(
        q[name]["small_objects"] == len(small) for name in ("reference", "superres", "bicubic")
    )


def test_model_none_or_none_bundled_skips_row_a_with_its_reason(monkeypatch, tmp_path, importable_bench):
    import videopoet.components as components

    bench = importable_bench
    assert bench._model("none", "cpu") == (None, "--model none")
    monkeypatch.setattr(
        components, "PRETRAINED_ROOT", tmp_path
    )  # an install without pretrained/super_resolution
    model, why = bench._model("bundled", "cpu")
    assert model is None and "no super-resolution model is bundled" in why
    assert bench.consistent_row("superres", 1) == "superres_consistent"
    assert bench.consistent_row("tokenizer_256", 4) == "tokenizer_256_consistent_coarse4"
