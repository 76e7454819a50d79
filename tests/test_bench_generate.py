"""benchmarks/bench_generate.py: the decode-only comparison at the debug shape (fast), and one end-to-end
clip with sound from the bundled tokenizers (slow: ~15 s on a 2-core CPU)."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_generate.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_generate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_decode_only_sets_ours_beside_the_reference(bench, capsys):
    args = [
        "--decode-only",
        "--presets",
        "debug,paper-300m",
        "--tokens",
        "4",
        "--start",
        "8",
        "--repeats",
        "1",
    ]
    result = bench.main(args + ["--device", "cpu"])
    debug, paper = result["presets"]
    assert debug["preset"] == "debug" and debug["decode_threads"] == 1 and not debug["compiled"]
    assert debug["ours_ms_per_token"] > 0 and debug["reference_ms_per_token"] > 0 and debug["ratio"] > 0
    assert "CUDA only" in paper["skipped"]
    assert '"mode": "decode_only"' in capsys.readouterr().out


@pytest.mark.slow
def test_quick_end_to_end_times_every_phase(bench):
    result = bench.main(["--quick"])
    best = result["best"]
    assert result["clip"] == {"frames": 17, "size": [128, 128], "sound": True}
    assert result["guidance"] == 1.0 and result["compiled_decode"] is False and result["lm"] == "bundled"
    assert best["t2v_tokens"] == 1283 and best["v2a_tokens"] == 427  # fixed by the layout
    parts = ("text_s", "t2v_prefill_s", "t2v_decode_s", "video_decode_s", "v2a_s")
    assert all(best[k] > 0 for k in parts) and sum(best[k] for k in parts) <= best["total_s"]
