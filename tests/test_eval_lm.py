"""``videopoet eval lm`` (eval/lm.py): the held-out loss per task of a saved prefix LM equals the trainer's
``val_loss/<task>`` on the same records, does not depend on the batch size, reads int8 files and pipeline
folders, adds the unigram baseline, refuses a vocabulary mismatch and an existing report in one line."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from test_tokenize import run  # the command in-process → (exit status, stdout, stderr)
from videopoet.lm import records as R
from videopoet.lm.vocab import VOCABS

pytestmark = pytest.mark.usefixtures("one_thread")
TEXT_DIM, TEXT_SLOTS = 8, 8
SCORED = ("unconditional", "text_to_video", "text_to_image", "frame_prediction", "image_to_video",
          "inpainting", "audio_to_video", "video_to_audio", "av_continuation")  # fmt: skip


def _record(i: int, vocab) -> R.TokenRecord:
    """A 32x32x5 clip's tokens (latent grid (2, 4, 4), 31 audio frames); record 0 has no audio, records
    carry the inpainting condition only (no outpainting, no flow/depth: those tasks are skipped)."""
    r = np.random.default_rng(i)
    video = r.integers(0, vocab.visual_codebook_size, (2, 4, 4)).astype(np.int32)
    audio = r.integers(0, vocab.audio_codebook_size, (vocab.audio_levels, 31)).astype(np.int32)
    cond = {"inpainting": r.integers(0, vocab.visual_codebook_size, (2, 4, 4)).astype(np.int32)}
    return R.TokenRecord(key=f"c{i}", caption="x", video=video, audio=None if i == 0 else audio,
                         text=r.standard_normal((5, TEXT_DIM)).astype(np.float16), text_mask=np.arange(5) < 3,
                         conditions=cond, width=32, height=32, frames=5)  # fmt: skip


def _token_set(folder, first: int, n: int, vocab) -> None:
    folder.mkdir(parents=True)
    writer = R.TokenShardWriter(folder, 4, text_encoder="fake")
    for i in range(n):
        writer.write(_record(first + i, vocab), i)
    writer.close()
    info = {"format": R.FORMAT, "version": R.FORMAT_VERSION, "vocab": dataclasses.asdict(vocab),
            "complete": True, "records": n}  # fmt: skip
    (folder / R.INFO_FILE).write_text(json.dumps(info))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Held-out (6 records) and training (8) token sets of the debug vocabulary; a debug LM saved fp16
    and int8, and an int8 pipeline folder around it."""
    from videopoet.assemble import Sources, assemble
    from videopoet.lm.transformer import PrefixLM
    from videopoet.tokenizers.audio import AudioTokenizer
    from videopoet.tokenizers.video import VideoTokenizer

    root = tmp_path_factory.mktemp("eval_lm")
    _token_set(root / "heldout", 0, 6, VOCABS["debug"])
    _token_set(root / "train", 100, 8, VOCABS["debug"])
    _token_set(root / "other", 0, 2, VOCABS["tiny"])
    torch.manual_seed(0)
    model = PrefixLM.from_preset("debug", text_dim=TEXT_DIM, text_slots=TEXT_SLOTS)
    with torch.no_grad():  # logits far from uniform: losses that differ per task
        for p in model.parameters():
            p.mul_(3.0)
    model.save_pretrained(root / "fp16", dtype=torch.float16)
    model.save_pretrained(root / "int8", int8=True)
    VideoTokenizer.from_preset("debug").save_pretrained(root / "video")
    AudioTokenizer.from_preset("debug").save_pretrained(root / "audio")
    assemble(Sources(root / "video", root / "audio", root / "int8", "none"), root / "pipe", int8=True)
    return root


def _eval(setup, capsys, out: str, *extra, model="fp16", data="heldout") -> dict:
    argv = ["eval", "lm", "--model", setup / model, "--data", setup / data, "--device", "cpu", "--seed", 3,
            "--out", setup / out, *extra]  # fmt: skip
    rc, stdout, err = run(argv, capsys)
    assert rc == 0, err
    return json.loads((setup / f"{out}.json").read_text())


def _losses(report: dict) -> dict[str, float]:
    return {row["task"]: row["loss"] for row in report["tasks"]}


def test_loss_equals_the_trainers_evaluation(setup, capsys):
    """LMRecipe.evaluate (init_from the fp16 file, its per-rank batch of 4) and the command on the same
    records give the same numbers; tasks the records cannot serve are skipped with the reason."""
    from videopoet.train.lm import LMRecipe, LMTrainConfig
    from videopoet.train.loop import Engine

    cfg = LMTrainConfig(preset="debug", model={"text_dim": TEXT_DIM, "text_slots": TEXT_SLOTS},
                        init_from=str(setup / "fp16"), data=str(setup / "train"),
                        eval_data=str(setup / "heldout"), eval_items=5, batch_size=4, device="cpu",
                        precision="fp32", seed=3, out_dir=str(setup / "run"))  # fmt: skip
    trainer = LMRecipe(cfg, Engine(cfg)).evaluate(0)
    report = _eval(setup, capsys, "equal", "--num", 5, "--batch-size", 4)
    assert set(_losses(report)) == set(SCORED) == {k.removeprefix("val_loss/") for k in trainer}
    for task, loss in _losses(report).items():
        assert loss == pytest.approx(trainer[f"val_loss/{task}"], abs=1e-6), task
    assert 1.0 < min(_losses(report).values()) and report["records"] == 5
    skipped = report["skipped"]
    assert set(skipped) == {
        "outpainting_central",
        "outpainting_horizontal",
        "outpainting_vertical",
        "stylization",
    }
    assert "condition" in skipped["stylization"] and "flow_depth" in skipped["stylization"]
    rows = {row["task"]: row for row in report["tasks"]}
    assert (
        rows["video_to_audio"]["sequences"] == 4 and rows["text_to_video"]["sequences"] == 5
    )  # no audio in c0


def test_batch_size_int8_pipeline_and_baseline(setup, capsys):
    """Batch 1 and 4 agree to 1e-5; the int8 file (alone or in a pipeline folder) loads and evaluates
    near the fp16 one; --baseline-data adds each task's unigram and log V; --tasks picks tasks."""
    one = _losses(_eval(setup, capsys, "b1", "--batch-size", 1))
    four = _losses(_eval(setup, capsys, "b4", "--batch-size", 4))
    assert one.keys() == four.keys() and all(abs(one[t] - four[t]) <= 1e-5 for t in one)
    int8 = _eval(setup, capsys, "int8", "--baseline-data", setup / "train", model="int8")
    assert int8["storage"] == "int8-weight-only" and int8["baseline_records"] == 8
    assert all(abs(loss - four[t]) < 0.05 for t, loss in _losses(int8).items())
    assert int8["uniform_nats"] == pytest.approx(math.log(VOCABS["debug"].size))
    for row in int8["tasks"]:
        assert 0 < row["unigram_nats"] < int8["uniform_nats"] + 0.1, row
    md = (setup / "int8.md").read_text()
    assert "| text_to_video | 6 |" in md and "unigram" in md and "skipped.stylization" in md
    pipe = _eval(setup, capsys, "pipe", "--tasks", "t2v,i2v", "v2a", model="pipe")
    expect = {t: _losses(int8)[t] for t in ("text_to_video", "image_to_video", "video_to_audio")}
    assert pipe["storage"] == "int8-weight-only" and _losses(pipe) == pytest.approx(expect, abs=1e-6)


@pytest.mark.parametrize(
    "change, message",
    [
        (["--data", "other"], "vocabulary of 8448 ids, the model has 768"),
        (["--baseline-data", "other"], "--baseline-data"),
        (["--tasks", "i2v2"], "unknown task"),
        (["--tasks", "t2a"], "not trained"),
        (["--data", "missing"], "not found"),
    ],
)
def test_bad_inputs_are_one_line_exit_2(setup, capsys, change, message):
    argv = ["eval", "lm", "--model", setup / "fp16", "--data", setup / "heldout", "--device", "cpu",
            "--out", setup / "bad"]  # fmt: skip
    flag, value = change
    argv += [flag, setup / value if flag.endswith("data") else value]
    rc, _, err = run(argv, capsys)
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (setup / "bad.json").exists()


def test_an_existing_report_needs_overwrite(setup, capsys):
    _eval(setup, capsys, "again", "--tasks", "uncond")
    argv = ["eval", "lm", "--model", setup / "fp16", "--data", setup / "heldout", "--tasks", "uncond",
            "--device", "cpu", "--out", setup / "again"]  # fmt: skip
    rc, _, err = run(argv, capsys)
    assert rc == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1, err
    rc, _, err = run([*argv, "--overwrite"], capsys)
    assert rc == 0, err
