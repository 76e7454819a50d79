"""Video tokenizer training and evaluation CLIs end to end on the debug preset (tiny clips, a few steps)."""

import json
import logging

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from videopoet.cli import main as cli
from videopoet.data.sample import Sample
from videopoet.tokenizers.video import VideoTokenizer
from videopoet.train.common import read_jsonl
from videopoet.train.video_tokenizer import StepClips, Trainer, VideoTokenizerTrainConfig

DEBUG = [
    "preset=debug",
    "batch_size=2",
    "frames=5",
    "width=16",
    "height=16",
    "log_every=1",
    "monitor_every=2",
    "warmup_steps=2",
    "lr=1e-3",
]


def _args(out, *extra):
    sets = [*DEBUG, f"out_dir='{out}'", *extra]
    return [a for s in sets for a in ("--set", s)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("vt") / "run"
    rc = cli(
        [
            "train",
            "video-tokenizer",
            *_args(out, "max_steps=4", "num_workers=1", "gan_start=2", "sample_every=2", "ckpt_every=2"),
        ]
    )
    assert rc == 0
    return out


def test_train_cli_writes_everything(trained):
    rows = read_jsonl(trained / "metrics.jsonl")
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
    assert [r["gan_on"] for r in rows if "loss" in r] == [False, False, True, True]
    assert "d_loss" in rows[-2] and "lecam" in rows[-2]
    assert "usage" in rows[1] and "min_bit_entropy" in rows[1]
    assert rows[-1]["event"] == "end"
    assert (trained / "checkpoints" / "latest").read_text() == "step_00000004"
    assert sorted(p.name for p in (trained / "samples").glob("*.gif")) == [
        "step_00000002.gif",
        "step_00000004.gif",
    ]
    final = load_file(str(trained / "final" / "model.safetensors"))
    assert all(v.dtype == torch.float16 for v in final.values() if v.is_floating_point())
    model = VideoTokenizer.from_pretrained(trained / "final")
    assert model.encode(torch.zeros(1, 3, 5, 16, 16)).shape == (1, 2, 2, 2)


def test_resume_gives_identical_loss(tmp_path):
    """4 steps straight vs 2 steps + resume for 2: same losses at steps 3 and 4, same final weights."""
    common = ["max_steps=4", "num_workers=0", "gan_start=1", "sample_every=0", "ckpt_every=0"]
    assert cli(["train", "video-tokenizer", *_args(tmp_path / "a", *common)]) == 0
    assert cli(["train", "video-tokenizer", *_args(tmp_path / "b", *common, "stop_after=2")]) == 0
    assert (
        json.loads((tmp_path / "b" / "checkpoints" / "step_00000002" / "state.json").read_text())["step"] == 2
    )
    assert cli(["train", "video-tokenizer", *_args(tmp_path / "b", *common), "--resume"]) == 0
    a = {r["step"]: r for r in read_jsonl(tmp_path / "a" / "metrics.jsonl") if "loss" in r}
    b = {r["step"]: r for r in read_jsonl(tmp_path / "b" / "metrics.jsonl") if "loss" in r}
    assert sorted(b) == [1, 2, 3, 4]
    for step in (3, 4):
        for key in ("loss", "d_loss", "lecam", "l1", "entropy_loss"):
            assert a[step][key] == b[step][key], (step, key)
    wa = load_file(str(tmp_path / "a" / "final" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "final" / "model.safetensors"))
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


def test_bad_samples_are_skipped_deterministically():
    clips = StepClips(_Flaky(), seed=0, shuffle=False)
    video, reasons = clips[1]
    assert video is not None and reasons[0].startswith("item 1: OSError: disk on fire")
    assert len(reasons) == 3 and "unreadable" in reasons[1] and "uint8" in reasons[2]
    assert torch.equal(video, clips[4][0])  # position 1 fell through to item 4
    shuffled = StepClips(_Flaky(), seed=3)
    assert sorted(shuffled.index(g) for g in range(6)) == list(range(6))  # a permutation per epoch
    assert [shuffled.index(g) for g in range(12)] == [StepClips(_Flaky(), seed=3).index(g) for g in range(12)]


def test_collapse_warning(caplog):
    cfg = VideoTokenizerTrainConfig(preset="debug", device="cpu", gan_weight=0.0)
    trainer = Trainer(cfg)
    trainer.counts[7] = 500  # every token the same code
    trainer.bit_ones += torch.tensor([1.0] * 3 + [0.0] * 5)
    trainer.window_steps = 1
    with caplog.at_level(logging.WARNING):
        stats = trainer.monitor()
    assert stats["collapse_warning"] and stats["usage"] == 1 / 256 and stats["min_bit_entropy"] == 0.0
    assert "codebook collapse" in caplog.text
    assert trainer.counts.sum() == 0


def test_init_from_copies_weights_and_checks_architecture(tmp_path):
    torch.manual_seed(5)
    source = VideoTokenizer.from_preset("debug")
    source.save_pretrained(tmp_path / "src")
    trainer = Trainer(
        VideoTokenizerTrainConfig(
            preset="debug", device="cpu", gan_weight=0.0, init_from=str(tmp_path / "src")
        )
    )
    for k, v in source.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[k], v), k
    assert torch.equal(
        trainer.ema.state_dict()["decoder.conv_out.conv.weight"],
        source.state_dict()["decoder.conv_out.conv.weight"].float(),
    )
    with pytest.raises(Exception, match="different architecture"):
        Trainer(
            VideoTokenizerTrainConfig(
                preset="debug",
                device="cpu",
                gan_weight=0.0,
                model={"codebook_bits": 6},
                init_from=str(tmp_path / "src"),
            )
        )


def test_init_from_widens_the_codebook(tmp_path):
    torch.manual_seed(6)
    source = VideoTokenizer.from_preset("debug").eval()  # 8 bits
    source.save_pretrained(tmp_path / "src")
    source = VideoTokenizer.from_pretrained(tmp_path / "src").float().eval()
    cfg = dict(preset="debug", device="cpu", gan_weight=0.0, batch_size=2, frames=5, width=16, height=16)
    cfg |= dict(lr=1e-2, warmup_steps=1, edge_weight=1.0)
    cfg |= dict(model={"codebook_bits": 10}, init_from=str(tmp_path / "src"))
    trainer = Trainer(VideoTokenizerTrainConfig(**cfg))
    wide = trainer.model.eval()
    assert wide.config.codebook_size == 1024
    video = torch.rand(2, 3, 5, 16, 16) * 2 - 1
    old_idx, new_idx = source.encode(video), wide.encode(video)
    assert torch.equal(new_idx % 256, old_idx)  # the source's bits keep their meaning
    assert (new_idx >= 256).any()  # the new bits are live in the encoder from the start
    with torch.no_grad():  # ... but nothing reads them yet: reconstructions are the source's
        torch.testing.assert_close(wide(video).recon, source(video).recon, atol=1e-5, rtol=0)
    new_cols = lambda: wide.decoder.conv_in.conv.weight[:, 8:]  # noqa: E731
    assert not new_cols().any()
    wide.train()
    batch = (torch.rand(2, 3, 5, 16, 16) * 2 - 1).to(trainer.device)
    row = trainer.train_step(batch)
    assert row["edge"] > 0  # the edge loss is on and logged
    assert new_cols().abs().sum() > 0  # one step and the decoder starts to read them
    with pytest.raises(Exception, match="not only in codebook_bits"):
        Trainer(VideoTokenizerTrainConfig(**(cfg | {"model": {"codebook_bits": 10, "base_channels": 16}})))


def test_config_errors(tmp_path):
    assert cli(["train", "video-tokenizer", *_args(tmp_path, "frames=6")]) == 2
    assert cli(["train", "video-tokenizer", *_args(tmp_path, "preset=huge")]) == 2
    assert cli(["train", "video-tokenizer", *_args(tmp_path, "model.bogus=1")]) == 2
    assert cli(["train", "video-tokenizer", *_args(tmp_path, "model.codebook_bits=0")]) == 2
    assert cli(["train", "video-tokenizer", *_args(tmp_path, "model.norm_groups=5")]) == 2


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


@pytest.mark.parametrize("name", ["debug", "tiny", "paper"])
def test_shipped_configs_load(name):
    from pathlib import Path

    from videopoet.config import load_config

    path = Path(__file__).resolve().parent.parent / "configs" / f"video_tokenizer_{name}.toml"
    cfg = load_config(VideoTokenizerTrainConfig, path)
    assert cfg.preset == name and cfg.model_config().codebook_bits in (8, 12, 18)
