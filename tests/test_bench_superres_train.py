"""benchmarks/bench_superres_train.py on the debug config: both runs time the same steps, JSON out."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_superres_train.py"

pytestmark = pytest.mark.usefixtures("one_thread")


def test_on_the_fly_and_bank_side_by_side(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_superres_train", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "speed.json"
    args = ["--config", str(ROOT / "configs" / "superres_debug.toml"), "--bank", "4", "--steps", "4"]
    result = bench.main(args + ["--warmup", "2", "--set", "text_encoder=none", "--out", str(out)])
    fly, bank = result["on_the_fly"], result["token_bank"]
    assert fly["bank"] == 0 and bank["bank"] == 4 and fly["batch_size"] == bank["batch_size"] == 4
    assert fly["steps_per_s"] > 0 and bank["steps_per_s"] > 0
    assert result["speedup"] == round(bank["steps_per_s"] / fly["steps_per_s"], 2)
    assert json.loads(out.read_text()) == result and '"speedup"' in capsys.readouterr().out
