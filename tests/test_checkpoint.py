import json
import random

import numpy as np
import pytest
import torch

from videopoet.eval.report import read_jsonl
from videopoet.train.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    load_module_state,
    load_optimizer_state,
    module_state,
    optimizer_from_flat,
    optimizer_state,
    optimizer_to_flat,
    remove_temporaries,
    save_checkpoint,
)
from videopoet.train.common import EMA, MetricsLogger, cosine_lr


def _model_and_opt():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return model, opt


def _step(model, opt):
    x = torch.randn(16, 4)
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def test_resume_reproduces_training_exactly(tmp_path):
    model, opt = _model_and_opt()
    for _ in range(3):
        _step(model, opt)
    opt_t, opt_meta = optimizer_to_flat(opt.state_dict())
    save_checkpoint(tmp_path, 3, {"model": model.state_dict(), "optimizer": opt_t}, {"optimizer": opt_meta})
    straight = [_step(model, opt) for _ in range(3)]

    model2, opt2 = _model_and_opt()
    groups, state = load_checkpoint(latest_checkpoint(tmp_path))
    model2.load_state_dict(groups["model"])
    opt2.load_state_dict(optimizer_from_flat(groups["optimizer"], state["optimizer"]))
    resumed = [_step(model2, opt2) for _ in range(3)]
    assert state["step"] == 3
    assert straight == resumed


def test_module_and_optimizer_state_by_name_resume_exactly(tmp_path):
    """What the engine saves: full module state and optimizer state keyed by parameter name."""
    model, opt = _model_and_opt()
    for _ in range(3):
        _step(model, opt)
    opt_t, opt_meta = optimizer_state(model, opt)
    assert opt_t and all(name.split("/")[0] in dict(model.named_parameters()) for name in opt_t)
    assert opt_meta["int_keys"] is False
    save_checkpoint(tmp_path, 3, {"model": module_state(model), "opt": opt_t}, {"opt": opt_meta})
    straight = [_step(model, opt) for _ in range(3)]

    model2, opt2 = _model_and_opt()
    groups, state = load_checkpoint(latest_checkpoint(tmp_path))
    load_module_state(model2, groups["model"])
    load_optimizer_state(model2, opt2, groups["opt"], state["opt"])
    assert opt2.param_groups[0]["betas"] == opt.param_groups[0]["betas"]
    assert [_step(model2, opt2) for _ in range(3)] == straight


def test_rng_states_restored(tmp_path):
    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    save_checkpoint(tmp_path, 1, {}, {})
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(99)
    load_checkpoint(latest_checkpoint(tmp_path))
    got = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(expected[0], got[0]) and expected[1:] == got[1:]


def test_atomic_layout_latest_and_pruning(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"model": {"w": torch.full((2,), float(step))}}, {"x": step}, keep=2)
    dirs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert dirs == ["step_00000002", "step_00000003"]
    assert not list(tmp_path.glob(".*tmp*"))
    latest = latest_checkpoint(tmp_path)
    assert latest.name == "step_00000003"
    assert json.loads((latest / "state.json").read_text())["x"] == 3


def test_half_written_checkpoint_is_ignored(tmp_path):
    save_checkpoint(tmp_path, 1, {"model": {"w": torch.zeros(1)}}, {})
    # a crash mid-write leaves only a temp dir; latest still points to the complete one
    (tmp_path / ".step_00000002.tmp-123").mkdir()
    assert latest_checkpoint(tmp_path).name == "step_00000001"
    assert latest_checkpoint(tmp_path / "nothing") is None
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(tmp_path / ".step_00000002.tmp-123")


def test_latest_falls_back_to_the_newest_complete_checkpoint(tmp_path):
    for step in (1, 2):
        save_checkpoint(tmp_path, step, {"model": {"w": torch.zeros(1)}}, {}, keep=5)
    (tmp_path / "latest").write_text("step_00000009")  # names something that is not there
    assert latest_checkpoint(tmp_path).name == "step_00000002"
    (tmp_path / "step_00000002" / "state.json").write_text('{"step": 2}')  # not marked complete
    assert latest_checkpoint(tmp_path).name == "step_00000001"
    (tmp_path / "latest").unlink()
    assert latest_checkpoint(tmp_path).name == "step_00000001"


def test_unreadable_tensors_and_temporaries(tmp_path):
    path = save_checkpoint(tmp_path, 1, {"model": {"w": torch.zeros(4)}}, {})
    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path)
    (tmp_path / ".step_00000002.tmp-123").mkdir()
    gone = remove_temporaries(tmp_path)
    assert [p.name for p in gone] == [".step_00000002.tmp-123"] and not gone[0].exists()
    assert path.is_dir() and remove_temporaries(tmp_path / "nothing") == []


def test_ema_tracks_and_copies():
    model, opt = _model_and_opt()
    ema = EMA(model, decay=0.5)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    _step(model, opt)
    ema.update(model)
    w = "0.weight"
    expected = 0.5 * before[w] + 0.5 * model.state_dict()[w]
    assert torch.allclose(ema.state_dict()[w], expected)
    ema.copy_to(model)
    assert torch.allclose(model.state_dict()[w], expected)
    with pytest.raises(ValueError):
        EMA(model, decay=1.5)


def test_metrics_logger_and_lr(tmp_path):
    log = MetricsLogger(tmp_path / "m.jsonl")
    log.log(1, loss=torch.tensor(0.5), bad=float("nan"))
    log.log(2, loss=0.25)
    log.close()
    rows = read_jsonl(tmp_path / "m.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and rows[0]["loss"] == 0.5 and rows[0]["bad"] == "nan"
    assert cosine_lr(0, base_lr=1.0, warmup=10, total=100) == pytest.approx(0.1)
    assert cosine_lr(100, base_lr=1.0, warmup=10, total=100) == pytest.approx(0.1)
    assert cosine_lr(10, base_lr=1.0, warmup=10, total=100) == pytest.approx(1.0)


def test_metrics_logger_keeps_the_rows_up_to_a_resumed_step(tmp_path):
    path = tmp_path / "m.jsonl"
    log = MetricsLogger(path)
    for step in (1, 2, 3, 4):
        log.log(step, loss=float(step))
    log.close()
    with path.open("a") as f:
        f.write('{"step": 5, "lo')  # a row cut short by a kill
    log = MetricsLogger(path, keep_until=2)  # resumed from the step-2 checkpoint: steps 3-4 are replayed
    log.log(3, loss=30.0)
    log.close()
    assert [(r["step"], r["loss"]) for r in read_jsonl(path)] == [(1, 1.0), (2, 2.0), (3, 30.0)]
