"""Video tokenizer training (the recipe on the training engine) and evaluation CLIs end to end on the debug
preset (tiny clips, a few steps)."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from videopoet.cli import main as cli
from videopoet.config import ConfigError, from_dict, load_config
from videopoet.data.sample import Sample, uint8_to_video
from videopoet.eval.report import read_jsonl
from videopoet.tokenizers.video import VideoTokenizer
from videopoet.train import loop
from videopoet.train.loop import Engine, StepItems, collate_step
from videopoet.train.video_tokenizer import VideoTokenizerRecipe, VideoTokenizerTrainConfig, clip_to_tensor

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
DEBUG = [
    "preset=debug",
    "batch_size=2",
    "frames=5",
    "width=16",
    "height=16",
    "monitor_every=2",
    "warmup_steps=2",
    "lr=1e-3",
    "device=cpu",
]


def _args(out, *extra):
    sets = [*DEBUG, f"out_dir='{out}'", *extra]
    return [a for s in sets for a in ("--set", s)]


def _recipe(**kw) -> VideoTokenizerRecipe:
    """A recipe on a CPU engine, without a run (nested tables as dicts: ``gan={"weight": 0.0}``)."""
    cfg = from_dict(VideoTokenizerTrainConfig, {"preset": "debug", "device": "cpu", **kw})
    return VideoTokenizerRecipe(cfg, Engine(cfg))


def _steps(rows):
    return {r["step"]: r for r in rows if "loss" in r}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("vt") / "run"
    extra = ("max_steps=4", "num_workers=1", "gan.start=2", "sample_every=2", "ckpt_every=2")
    assert cli(["train", "video-tokenizer", *_args(out, *extra)]) == 0
    return out


def test_train_cli_writes_everything(trained):
    rows = read_jsonl(trained / "metrics.jsonl")
    steps = _steps(rows)
    assert sorted(steps) == [1, 2, 3, 4]  # one row per step
    assert all(np.isfinite(r["loss"]) for r in steps.values())
    assert [steps[s]["gan_on"] for s in (1, 2, 3, 4)] == [False, False, True, True]
    assert "d_loss" in steps[4] and "lecam" in steps[4] and "d_loss" not in steps[2]
    assert "usage" in steps[2] and "min_bit_entropy" in steps[2] and "usage" not in steps[1]
    assert all(r["nonfinite_total"] == 0 and "nonfinite" not in r for r in steps.values())
    assert [r["event"] for r in rows if "event" in r] == ["start", "end"]
    assert rows[-1]["event"] == "end" and rows[-1]["exported"] and rows[-1]["reason"] == "done"
    saved = json.loads((trained / "train_config.json").read_text())
    assert saved["max_steps"] == 4 and saved["gan"]["start"] == 2 and saved["preset"] == "debug"
    assert not (trained / "config.json").exists()
    assert (trained / "checkpoints" / "latest").read_text() == "step_00000004"
    samples = trained / "samples"
    assert sorted(p.name for p in samples.iterdir()) == ["step_00000002", "step_00000004"]
    assert all(list(d.glob("*.gif")) for d in samples.iterdir())  # each preview inside its step's folder
    final = load_file(str(trained / "final" / "model.safetensors"))
    assert all(v.dtype == torch.float16 for v in final.values() if v.is_floating_point())
    model = VideoTokenizer.from_pretrained(trained / "final")
    assert model.encode(torch.zeros(1, 3, 5, 16, 16)).shape == (1, 2, 2, 2)


def test_resume_gives_identical_loss(tmp_path):
    """3 steps straight vs 2 steps + resume for 1 (the GAN on from step 2, so the discriminator, its
    optimizer and LeCam's anchors are resumed too): same loss at step 3, same final weights."""
    common = ["max_steps=3", "num_workers=0", "gan.start=1", "sample_every=0", "ckpt_every=0"]
    assert cli(["train", "video-tokenizer", *_args(tmp_path / "a", *common)]) == 0
    assert cli(["train", "video-tokenizer", *_args(tmp_path / "b", *common, "stop_after_steps=2")]) == 0
    b = tmp_path / "b"
    assert json.loads((b / "checkpoints" / "step_00000002" / "state.json").read_text())["step"] == 2
    assert not (b / "final").exists()  # paused, not finished
    assert cli(["train", "video-tokenizer", *_args(b, *common), "--resume"]) == 0
    rows_b = read_jsonl(b / "metrics.jsonl")
    assert [r["event"] for r in rows_b if "event" in r] == ["start", "end", "resumed", "end"]
    a, b_ = _steps(read_jsonl(tmp_path / "a" / "metrics.jsonl")), _steps(rows_b)
    assert sorted(b_) == [1, 2, 3]
    for step in (1, 2, 3):
        assert a[step]["data_signature"] == b_[step]["data_signature"], step  # the same clips
    for key in ("loss", "d_loss", "lecam", "l1", "entropy_loss", "logits_real"):
        assert a[3][key] == b_[3][key], key
    wa = load_file(str(tmp_path / "a" / "final" / "model.safetensors"))
    wb = load_file(str(b / "final" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


class _Flaky:
    """Item 1 raises, item 2 is unreadable, item 3 has the wrong dtype; others are fine."""

    def __len__(self):
        return 6

    def __getitem__(self, i):
        if i == 1:
            raise OSError("disk on fire")
        if i == 2:
            return None
        frames = np.full((5, 8, 8, 3), 10 * i, dtype=np.uint8 if i != 3 else np.float32)
        return Sample(frames=frames, audio=np.zeros(10, np.float32), sample_rate=16000, fps=8, key=str(i))


def test_bad_samples_are_skipped_deterministically(monkeypatch):
    monkeypatch.setattr(loop, "MAX_PERMUTED", 4)  # datasets larger than this are read in order
    prepare = _recipe(gan={"weight": 0.0}).prepare  # what the engine's loader runs: uint8 frames
    items = StepItems(_Flaky(), prepare, seed=0)
    assert not items.shuffle
    video, index, reasons = items[1]
    assert index == 4 and reasons[0].startswith("item 1: OSError: disk on fire")
    assert len(reasons) == 3 and "unreadable" in reasons[1] and "uint8" in reasons[2]
    assert torch.equal(video, items[4][0]) and video.dtype == torch.uint8  # position 1 fell through to 4
    assert torch.equal(uint8_to_video(video), clip_to_tensor(_Flaky()[4], 4))  # what train_step converts
    batch = collate_step([items[0], items[1], items[4]])
    assert batch.count == 3 and batch.data.shape == (3, 5, 8, 8, 3) and len(batch.skipped) == 3
    monkeypatch.undo()

    shuffled = StepItems(_Flaky(), clip_to_tensor, seed=3)
    assert shuffled.shuffle
    assert sorted(shuffled.index(g) for g in range(6)) == list(range(6))  # a permutation per epoch
    assert sorted(shuffled.index(g) for g in range(6, 12)) == list(range(6))
    again = StepItems(_Flaky(), clip_to_tensor, seed=3)
    assert [shuffled.index(g) for g in range(12)] == [again.index(g) for g in range(12)]
    g = next(g for g in range(6) if shuffled.index(g) == 1)  # an item that raises, under shuffling
    x, i, why = shuffled[g]
    assert i not in (1, 2, 3) and why[0].startswith("item 1: OSError") and torch.equal(x, again[g][0])

    class Broken(_Flaky):
        def __getitem__(self, i):
            raise OSError("gone")

    nothing = StepItems(Broken(), clip_to_tensor, seed=0)[0]
    assert nothing[0] is None and nothing[1] == -1 and len(nothing[2]) == loop.MAX_RETRIES
    empty = collate_step([nothing])
    assert empty.count == 0 and empty.data is None


def test_collapse_warning(caplog):
    recipe = _recipe(gan={"weight": 0.0})
    assert recipe.disc is None and "disc" not in recipe.state
    recipe.counts[7] = 500  # every token the same code
    recipe.bit_ones += torch.tensor([1.0] * 3 + [0.0] * 5)
    recipe.window = 1
    with caplog.at_level(logging.WARNING):
        stats = recipe.monitor(10)
    assert stats["collapse_warning"] and stats["usage"] == 1 / 256 and stats["min_bit_entropy"] == 0.0
    assert "codebook collapse at step 10" in caplog.text
    assert recipe.counts.sum() == 0 and recipe.window == 0


def test_init_from_copies_weights_and_checks_architecture(tmp_path):
    torch.manual_seed(5)
    source = VideoTokenizer.from_preset("debug")
    source.save_pretrained(tmp_path / "src")
    recipe = _recipe(gan={"weight": 0.0}, init_from=str(tmp_path / "src"))
    for k, v in source.state_dict().items():
        assert torch.equal(recipe.model.state_dict()[k], v), k
    assert torch.equal(
        recipe.ema.state_dict()["decoder.conv_out.conv.weight"],
        source.state_dict()["decoder.conv_out.conv.weight"].float(),
    )
    with pytest.raises(ConfigError, match="different architecture"):
        _recipe(gan={"weight": 0.0}, model={"codebook_bits": 6}, init_from=str(tmp_path / "src"))


def test_init_from_widens_the_codebook(tmp_path):
    torch.manual_seed(6)
    source = VideoTokenizer.from_preset("debug").eval()  # 8 bits
    source.save_pretrained(tmp_path / "src")
    source = VideoTokenizer.from_pretrained(tmp_path / "src").float().eval()
    cfg = dict(gan={"weight": 0.0}, batch_size=2, frames=5, width=16, height=16, lr=1e-2, warmup_steps=1)
    cfg |= dict(loss={"edge": 1.0}, model={"codebook_bits": 10}, init_from=str(tmp_path / "src"))
    recipe = _recipe(**cfg)
    wide = recipe.model.eval()
    assert wide.config.codebook_size == 1024
    video = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    old_idx, new_idx = source.encode(video), wide.encode(video)
    assert torch.equal(new_idx % 256, old_idx)  # the source's bits keep their meaning
    assert (new_idx >= 256).any()  # the new bits are live in the encoder from the start
    with torch.no_grad():  # ... but nothing reads them yet: reconstructions are the source's
        torch.testing.assert_close(wide(video).recon, source(video).recon, atol=1e-5, rtol=0)
    new_cols = lambda: wide.decoder.conv_in.conv.weight[:, 8:]  # noqa: E731
    assert not new_cols().any()
    row = recipe.train_step(torch.randint(0, 256, (2, 5, 16, 16, 3), dtype=torch.uint8), 0)  # as batched
    assert row["edge"] > 0 and np.isfinite(row["grad_norm"])  # the edge loss is on and logged
    assert new_cols().abs().sum() > 0  # one step and the decoder starts to read them
    with pytest.raises(ConfigError, match="not only in codebook_bits"):
        _recipe(**(cfg | {"model": {"codebook_bits": 10, "base_channels": 16}}))


def test_config_errors(tmp_path, capsys):
    run = ["train", "video-tokenizer"]
    for bad in ("frames=6", "preset=huge", "model.bogus=1", "model.codebook_bits=0", "model.norm_groups=5"):
        assert cli([*run, *_args(tmp_path / "x", bad)]) == 2, bad
    assert not (tmp_path / "x").exists()  # nothing written before the config is known to be good
    capsys.readouterr()
    # renamed keys name their new place, in one line
    renamed = {"steps=4": '"max_steps"', "gan_start=2": '"gan.start"', "log_every=1": "metrics row"}
    for old, new in renamed.items():
        assert cli([*run, *_args(tmp_path / "x", old)]) == 2, old
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f'"{old.split("=")[0]}"' in err and new in err, err
    toml = tmp_path / "old.toml"
    toml.write_text('preset = "debug"\nedge_weight = 1.0\n[gan]\nstart = 2\n')  # the old top-level key
    assert cli([*run, "--config", str(toml)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and '"loss.edge"' in err and "renamed" in err, err


def test_used_folder_is_refused(trained, tmp_path, capsys):
    """A folder that holds a run needs --resume or --overwrite; --resume needs a checkpoint."""
    before = (trained / "metrics.jsonl").read_text()
    assert cli(["train", "video-tokenizer", *_args(trained, "max_steps=4")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume" in err and "--overwrite" in err, err
    assert (trained / "metrics.jsonl").read_text() == before  # untouched
    assert cli(["train", "video-tokenizer", *_args(tmp_path / "new", "max_steps=4"), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no complete checkpoint" in err, err


def test_overwrite_starts_over(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 7, "loss": 1.0}\n')  # an earlier run's files
    (tmp_path / "checkpoints" / "step_00000007").mkdir(parents=True)
    (tmp_path / "mine.txt").write_text("not the engine's")
    extra = ("max_steps=1", "num_workers=0", "gan.weight=0")
    assert cli(["train", "video-tokenizer", *_args(tmp_path, *extra), "--overwrite"]) == 0
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["event"] for r in rows if "event" in r] == ["start", "end"]  # the old rows are gone
    assert sorted(_steps(rows)) == [1] and (tmp_path / "final" / "model.safetensors").is_file()
    assert [p.name for p in (tmp_path / "checkpoints").glob("step_*")] == ["step_00000001"]
    assert (tmp_path / "mine.txt").is_file()  # only the run's own files are replaced


def test_eval_cli(trained, tmp_path):
    out = tmp_path / "report"
    rc = cli(
        [
            "eval",
            "tokenizer",
            "--model",
            str(trained / "final"),
            "--data",
            "synthetic:heldout:3",
            "--num",
            "3",
            "--batch-size",
            "2",
            "--frames",
            "5",
            "--size",
            "16x16",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    m = json.loads(out.with_suffix(".json").read_text())
    assert m["clips"] == 3 and m["tokens"] == 3 * 2 * 2 * 2
    assert 0 < m["psnr_db"] < 100 and -1 <= m["ssim"] <= 1
    assert 0 < m["codebook_usage"] <= 1 and m["codebook_used"] == round(m["codebook_usage"] * 256)
    assert "psnr_db" in out.with_suffix(".md").read_text()
    assert (tmp_path / "report_recon.gif").is_file()


def test_eval_on_real_mp4_folder(trained, tmp_path):
    """Real footage path: an mp4 of another size and frame rate, read and conformed by the dataset reader."""
    pytest.importorskip("av")
    from videopoet.data.media import write_mp4
    from videopoet.data.synthetic import render_clip

    folder = tmp_path / "videos"
    folder.mkdir()
    clip = render_clip(1, width=48, height=40, frames=24, fps=12)
    write_mp4(folder / "clip.mp4", clip.frames, 12)
    out = tmp_path / "real"
    rc = cli(
        [
            "eval",
            "tokenizer",
            "--model",
            str(trained / "final"),
            "--data",
            str(folder),
            "--num",
            "2",
            "--frames",
            "5",
            "--size",
            "16x16",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert json.loads(out.with_suffix(".json").read_text())["clips"] >= 1


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("video_tokenizer_*.toml")), ids=lambda p: p.stem)
def test_shipped_configs_load(path):
    cfg = load_config(VideoTokenizerTrainConfig, path)
    assert cfg.preset == path.stem.removeprefix("video_tokenizer_")
    assert cfg.model_config().codebook_bits in (8, 12, 18)


def test_every_shipped_config_has_a_test():
    """Each configs/*.toml is loaded by a test_shipped_*configs_load (here, audio, LM or SR tests)."""
    # lm_*: tests/test_lm_train.py; superres_*: tests/test_superres_train.py
    covered = ("video_tokenizer_", "audio_tokenizer_", "lm_", "superres_")
    assert [p.name for p in CONFIGS.glob("*.toml") if not p.name.startswith(covered)] == []
