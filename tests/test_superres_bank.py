"""The super-resolution token bank (train/token_bank.py): a bank item gives the model exactly what the same
clip tokenized on the fly gives it, the bank is saved once and reused only with the same settings, bad
clips are skipped with a reason, and a resumed bank run ends on the same weights as a straight one."""

import logging

import pytest
import torch

from videopoet.train.loop import Engine
from videopoet.train.superres import SuperResRecipe, SuperResTrainConfig, bank_draft
from videopoet.train.token_bank import BANK_FILE, BankSlot, load_bank, read_clips

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(out, **kw):
    base = dict(
        out_dir=str(out), preset="debug", video_tokenizer="preset:debug", text_encoder="minilm", frames=5,
        width=64, height=64, batch_size=2, num_workers=0, max_steps=3, warmup_steps=1, lr=1e-3, ema_decay=0.5,
        eval_items=2, num_samples=1, sample_steps=2, ckpt_every=2, device="cpu", precision="fp32", bank=3,
        lo_noise=0.0,
    )  # fmt: skip
    return SuperResTrainConfig(**(base | kw))


def test_a_bank_item_is_the_clip_tokenized_on_the_fly(tmp_path):
    cfg = _cfg(tmp_path / "run")
    recipe = SuperResRecipe(cfg, Engine(cfg))
    slots = recipe.dataset()
    assert len(slots) == 3 and (tmp_path / "run" / BANK_FILE).is_file()
    clips = recipe._open(cfg.data, "train")
    positions = (0, 5, 9)  # any positions: the draws are the slot's, the tokens the clip's
    from_bank = recipe.collate([recipe.prepare(slots[i], p) for i, p in zip(range(3), positions)])
    on_the_fly = recipe.collate([recipe.prepare(clips[i], p) for i, p in zip(range(3), positions)])
    recipe.model.eval()
    with torch.no_grad():
        (hi_a, in_a, _), (hi_b, in_b, _) = recipe._inputs(from_bank), recipe._inputs(on_the_fly)
        a, b = recipe._forward(in_a), recipe._forward(in_b)
    assert torch.equal(hi_a, hi_b) and all(torch.equal(x, y) for x, y in zip(in_a[:2], in_b[:2]))
    assert torch.equal(in_a[4], in_b[4])  # the drafts
    assert torch.allclose(in_a[2], in_b[2], atol=1e-3) and torch.equal(in_a[3], in_b[3])  # float16 text
    assert torch.allclose(a.a, b.a, atol=1e-5) and torch.allclose(a.b, b.b, atol=1e-5)


def test_bank_draft_resamples_the_four_tokens_under_a_resampled_condition_token():
    draft = torch.arange(2 * 4 * 4).view(1, 2, 4, 4)
    noise_mask = torch.zeros(1, 2, 2, 2, dtype=torch.bool)
    noise_mask[0, 1, 0, 1] = True
    batch = {"noise_mask": noise_mask, "noise_ids": torch.full((1, 2, 2, 2), 99)}
    out = bank_draft(draft, batch)
    changed = out != draft
    assert changed.sum() == 4 and changed[0, 1, 0:2, 2:4].all() and (out[changed] == 99).all()


def test_a_saved_bank_is_reused_only_with_the_same_settings(tmp_path, caplog):
    cfg = _cfg(tmp_path / "run")
    recipe = SuperResRecipe(cfg, Engine(cfg))
    recipe.dataset()
    path, settings = tmp_path / "run" / BANK_FILE, recipe._bank_settings()
    bank = load_bank(path, settings)
    assert bank is not None and torch.equal(bank.hi.long(), recipe.bank.hi.long())
    with caplog.at_level(logging.WARNING):
        assert load_bank(path, settings | {"width": "128"}) is None
        path.write_bytes(b"not a safetensors file")
        assert load_bank(path, settings) is None
    assert "other settings" in caplog.text and "unreadable" in caplog.text


class _Gappy:
    """A dataset whose item 1 cannot be read and item 2 is None."""

    def __init__(self, clips):
        self.clips = clips

    def __len__(self):
        return 6

    def __getitem__(self, i):
        if i == 1:
            raise OSError("truncated file")
        return None if i == 2 else self.clips[i]


def test_read_clips_skips_bad_clips_with_a_reason(tmp_path, caplog):
    cfg = _cfg(tmp_path / "run")
    clips = SuperResRecipe(cfg, Engine(cfg))._open(cfg.data, "train")
    with caplog.at_level(logging.WARNING):
        batches = list(read_clips(_Gappy(clips), 3, batch_size=2, num_workers=0))
    frames = torch.cat([f for f, _ in batches])
    expected = torch.stack([torch.from_numpy(clips[i].frames) for i in (0, 3, 4)])
    assert torch.equal(frames, expected)
    assert "truncated file" in caplog.text and "item 2" in caplog.text
    with pytest.raises(ValueError, match="only 4 readable clips"):
        list(read_clips(_Gappy(clips), 5, batch_size=2, num_workers=0))


def test_a_resumed_bank_run_ends_on_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    def run(out, resume=False, **kw):
        cfg = _cfg(out, text_encoder="none", lo_noise=0.3, **kw)
        engine = Engine(cfg)
        assert engine.run(SuperResRecipe(cfg, engine), resume=resume, progress=False) == 0

    run(tmp_path / "straight")
    run(tmp_path / "split", stop_after_steps=2)
    run(tmp_path / "split", resume=True)
    a, b = (load_file(tmp_path / d / "final" / "model.safetensors") for d in ("straight", "split"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_bank_larger_than_the_data_or_negative_is_refused(tmp_path, monkeypatch):
    from videopoet.config import ConfigError

    with pytest.raises(ConfigError, match="bank must be"):
        SuperResTrainConfig(bank=-1)
    with pytest.raises(ConfigError, match="detail_weight must be"):
        SuperResTrainConfig(detail_weight=-0.5)
    cfg = _cfg(tmp_path / "run", bank=5)
    recipe = SuperResRecipe(cfg, Engine(cfg))
    monkeypatch.setattr(recipe, "_open", lambda spec, split: [None] * 4)
    with pytest.raises(ConfigError, match="holds 4 clips"):
        recipe.dataset()
    assert not (tmp_path / "run" / BANK_FILE).exists()


def test_bank_slots_carry_no_frames(tmp_path):
    cfg = _cfg(tmp_path / "run")
    item = SuperResRecipe(cfg, Engine(cfg)).prepare(BankSlot(2), 0)
    assert item["index"] == 2 and "frames" not in item and "caption" not in item


def test_bank_ids_keep_codebooks_over_int16():
    from videopoet.train.token_bank import build_bank

    big = torch.tensor([[0, 2**15, 2**18 - 1]])
    bank = build_bank([(None, ["a"])], lambda frames, captions: {"hi": big, "lo": big[:, :1]})
    assert bank.hi.dtype == torch.int32 and torch.equal(bank.hi.long(), big)
    assert bank.lo.dtype == torch.int16 and bank.draft is None and bank.text is None


def test_the_bank_names_its_tokenizer_by_its_weights(tmp_path):
    import hashlib

    cfg = _cfg(tmp_path / "a")
    recipe = SuperResRecipe(cfg, Engine(cfg))
    assert recipe._bank_settings()["tokenizer_sha256"] == "preset:debug"  # seeded: its name says it all
    recipe.tokenizer.save_pretrained(tmp_path / "tok")
    folder = _cfg(tmp_path / "b", video_tokenizer=str(tmp_path / "tok"))
    digest = SuperResRecipe(folder, Engine(folder))._bank_settings()["tokenizer_sha256"]
    assert digest == hashlib.sha256((tmp_path / "tok" / "model.safetensors").read_bytes()).hexdigest()


@pytest.mark.parametrize("detail", [0, 3])
def test_two_ranks_share_the_bank_rank_zero_makes(tmp_path, detail):
    """Under torchrun rank 0 makes and saves the bank, the other rank reads it after the barrier: both
    runs see the same items (data signatures), and both export and write previews (two ranks gather the
    sharded model for them). The loss divides by the weight summed over every rank (and detail weights
    by every rank's mean detail), so one and two ranks train alike: the same loss at every step."""
    from pathlib import Path

    from cli_train import train_cli
    from videopoet.eval.report import read_jsonl

    config = Path(__file__).resolve().parents[1] / "configs" / "superres_debug.toml"
    sets = ["text_encoder='none'", "bank=4", "max_steps=3", "eval_every=0", "sample_every=3", "ckpt_every=3"]
    rows = {}
    for ranks in (1, 2):
        out = tmp_path / f"ranks{ranks}"
        proc = train_cli(
            "superres", config, out, [*sets, f"detail_weight={detail}"], ranks=ranks, timeout=300
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert (out / BANK_FILE).is_file() and (out / "final" / "model.safetensors").is_file()
        assert (out / "samples" / "step_00000003" / "psnr.txt").is_file()
        rows[ranks] = [r for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]
    assert [r["data_signature"] for r in rows[1]] == [r["data_signature"] for r in rows[2]]
    assert len(rows[1]) == 3 and all(abs(a["loss"] - b["loss"]) < 1e-5 for a, b in zip(rows[1], rows[2]))
    _assert_same_export(tmp_path / "ranks1", tmp_path / "ranks2")  # the EMA weights, from either count


def _assert_same_export(a, b, atol=1e-5):
    from safetensors.torch import load_file

    one, two = (load_file(d / "final" / "model.safetensors") for d in (a, b))
    assert one.keys() == two.keys() and all(torch.allclose(one[k], two[k], atol=atol) for k in one)


def test_a_one_rank_checkpoint_resumes_on_two_ranks_with_its_ema(tmp_path):
    """The EMA is kept under FSDP2 too: a run stopped on one rank and resumed on two (each rank loads
    its shards of the checkpoint's whole EMA tensors) exports what one rank straight through does."""
    from pathlib import Path

    from cli_train import train_cli

    config = Path(__file__).resolve().parents[1] / "configs" / "superres_debug.toml"
    sets = ["text_encoder='none'", "bank=4", "max_steps=3", "eval_every=0", "sample_every=0", "ckpt_every=3"]
    for out, ranks, extra, resume in [("straight", 1, [], False), ("split", 1, ["stop_after_steps=2"], False),
                                      ("split", 2, [], True)]:  # fmt: skip
        proc = train_cli("superres", config, tmp_path / out, [*sets, *extra], ranks=ranks, resume=resume)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "straight" / "checkpoints" / "step_00000002").exists()
    _assert_same_export(tmp_path / "straight", tmp_path / "split")


def test_a_detail_weighted_bank_holds_the_on_the_fly_detail(tmp_path):
    cfg = _cfg(tmp_path / "run", detail_weight=3.0)
    recipe = SuperResRecipe(cfg, Engine(cfg))
    slots = recipe.dataset()
    assert recipe._bank_settings()["detail"] == "true" and recipe.bank.detail.shape == recipe.bank.hi.shape
    clips = recipe._open(cfg.data, "train")
    from_bank = recipe.collate([recipe.prepare(slots[i], i) for i in range(2)])
    on_the_fly = recipe.collate([recipe.prepare(clips[i], i) for i in range(2)])
    with torch.no_grad():
        (_, _, lost_a), (_, _, lost_b) = recipe._inputs(from_bank, True), recipe._inputs(on_the_fly, True)
    assert lost_a.shape == lost_b.shape and torch.allclose(lost_a.float(), lost_b, atol=2e-3)
    assert (lost_b >= 0).all() and lost_b.std() > 0  # the condition lost more detail in some places
    plain = _cfg(tmp_path / "run")  # the same out_dir without the weight: a bank without detail
    assert "detail" not in SuperResRecipe(plain, Engine(plain))._bank_settings()


def test_previews_decode_as_inference_does(tmp_path, monkeypatch):
    import videopoet.sampling.masked as masked
    from videopoet.superres.upscale import TEMPERATURE

    cfg = _cfg(tmp_path / "run", bank=0)
    recipe = SuperResRecipe(cfg, Engine(cfg))
    seen, real = {}, masked.maskgit_decode

    def spy(model, lo, text=None, text_mask=None, **kw):
        seen.update(kw, text=text, text_mask=text_mask)
        return real(model, lo, text, text_mask, **kw)

    monkeypatch.setattr(masked, "maskgit_decode", spy)
    recipe.write_samples(tmp_path / "samples")
    assert seen["temperature"] == TEMPERATURE and seen["text"] is not None and bool(seen["text_mask"].any())
    assert (tmp_path / "samples" / "psnr.txt").read_text().startswith("sr_psnr ")
