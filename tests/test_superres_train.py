"""Super-resolution training on the debug presets: the item draws (masking, noise, dropout), the loss on
masked tokens only, and a few engine steps → the exported component loads and samples identically."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videopoet.config import ConfigError, load_config
from videopoet.sampling.masked import maskgit_decode
from videopoet.superres.model import PRESETS, SuperResLogits, SuperResTransformer
from videopoet.train.loop import Engine
from videopoet.train.superres import (
    ItemDraws,
    SuperResRecipe,
    SuperResTrainConfig,
    downsample,
    masked_loss,
    model_inputs,
)

pytestmark = pytest.mark.usefixtures("one_thread")

CFG = PRESETS["debug"]
HI_GRID = (2, 8, 8)


class _Sample:
    frames = np.zeros((5, 64, 64, 3), np.uint8)
    caption = "a red circle"


def _draws(**kw):
    args = dict(seed=0, hi_grid=HI_GRID, codebook_size=256, lo_noise=0.5, lo_dropout=0.5, text_dropout=0.5)
    return ItemDraws(**(args | kw))


def test_item_draws_are_a_function_of_the_position_and_cover_the_schedule():
    draws = _draws()
    a, b = draws(_Sample(), 7), draws(_Sample(), 7)
    for key in ("hi_mask", "noise_mask", "noise_ids"):
        assert torch.equal(a[key], b[key])
    items = [draws(_Sample(), p) for p in range(200)]
    ratios = np.array([float(it["hi_mask"].float().mean()) for it in items])
    assert ratios.min() >= 1 / 128 and ratios.max() <= 1.0
    # cos(π/2 · u), u uniform: mean 2/π ≈ 0.64, and about half the items mask more than cos(π/4) ≈ 0.71
    assert abs(ratios.mean() - 2 / np.pi) < 0.06
    assert 0.3 < np.mean([it["drop_lo"] for it in items]) < 0.7
    assert 0.3 < np.mean([it["drop_text"] for it in items]) < 0.7
    noise = np.array([float(it["noise_mask"].float().mean()) for it in items])
    assert 0.15 < noise.mean() < 0.35  # rate ~ U(0, 0.5), then 32 coin flips per item
    assert items[0]["noise_mask"].shape == items[0]["noise_ids"].shape == (2, 4, 4)
    assert int(max(it["noise_ids"].max() for it in items)) < 256
    quiet = _draws(lo_noise=0.0, lo_dropout=0.0, text_dropout=0.0)(_Sample(), 3)
    assert not quiet["noise_mask"].any() and not quiet["drop_lo"] and not quiet["drop_text"]


def test_model_inputs_mask_noise_and_drop():
    g = torch.Generator().manual_seed(0)
    hi = torch.randint(0, 256, (2, *HI_GRID), generator=g)
    lo = torch.randint(0, 256, (2, 2, 4, 4), generator=g)
    batch = {
        "hi_mask": torch.rand(2, *HI_GRID, generator=g) < 0.5,
        "noise_mask": torch.rand(2, 2, 4, 4, generator=g) < 0.3,
        "noise_ids": torch.randint(0, 256, (2, 2, 4, 4), generator=g),
        "drop_lo": torch.tensor([False, True]),
    }
    hi_in, lo_in, none = model_inputs(hi, lo, batch, CFG.mask_id)
    assert none is None
    assert torch.equal(hi_in[batch["hi_mask"]], torch.full_like(hi[batch["hi_mask"]], CFG.mask_id))
    assert torch.equal(hi_in[~batch["hi_mask"]], hi[~batch["hi_mask"]])
    noisy = batch["noise_mask"][0]
    assert torch.equal(lo_in[0][noisy], batch["noise_ids"][0][noisy]) and torch.equal(
        lo_in[0][~noisy], lo[0][~noisy]
    )
    assert (lo_in[1] == CFG.mask_id).all()
    seen = []  # the draft is made from the noised condition (as at inference), then dropped with it
    _, lo_again, draft = model_inputs(
        hi, lo, batch, CFG.mask_id, lambda x: seen.append(x) or x.repeat(1, 1, 2, 2)
    )
    assert torch.equal(lo_again, lo_in) and torch.equal(seen[0][0], lo_in[0]) and draft.shape == (2, 2, 8, 8)
    assert torch.equal(draft[0], lo_in[0].repeat(1, 2, 2)) and (draft[1] == CFG.mask_id).all()


def test_loss_reads_masked_positions_only():
    g = torch.Generator().manual_seed(0)
    hi = torch.randint(0, 256, (1, *HI_GRID), generator=g)
    mask = torch.rand(1, *HI_GRID, generator=g) < 0.5
    logits = SuperResLogits(
        torch.randn(1, *HI_GRID, 16, generator=g), torch.randn(1, *HI_GRID, 16, generator=g)
    )
    loss, acc = masked_loss(logits, hi, mask, 16)
    moved = SuperResLogits(
        logits.a + 5 * (~mask)[..., None], logits.b - 3 * (~mask)[..., None] * torch.arange(16)
    )
    assert torch.equal(masked_loss(moved, hi, mask, 16)[0], loss)
    perfect = SuperResLogits(
        torch.nn.functional.one_hot(hi // 16, 16).float() * 50,
        torch.nn.functional.one_hot(hi % 16, 16).float() * 50,
    )
    loss0, acc1 = masked_loss(perfect, hi, mask, 16)
    assert loss0 < 1e-6 and acc1 == 1.0 and 0 <= acc <= 1


def test_downsample_halves_frames_and_stays_in_range():
    video = torch.rand(2, 3, 5, 64, 48) * 2 - 1
    small = downsample(video)
    assert small.shape == (2, 3, 5, 32, 24) and small.min() >= -1 and small.max() <= 1
    flat = torch.full((1, 3, 1, 16, 16), 0.25)
    assert torch.allclose(downsample(flat), torch.full((1, 3, 1, 8, 8), 0.25), atol=1e-6)


def test_config_checks():
    with pytest.raises(ConfigError, match="multiples of 16"):
        SuperResTrainConfig(width=72)
    with pytest.raises(ConfigError, match="lo_dropout"):
        SuperResTrainConfig(lo_dropout=1.5)


def _debug_cfg(out, **kw):
    base = dict(
        out_dir=str(out), preset="debug", video_tokenizer="preset:debug", text_encoder="none", frames=5,
        width=64, height=64, batch_size=2, num_workers=0, max_steps=3, warmup_steps=1, lr=1e-3, ema_decay=0.5,
        eval_items=2, num_samples=1, sample_steps=2, ckpt_every=2, device="cpu", precision="fp32",
    )  # fmt: skip
    return SuperResTrainConfig(**(base | kw))


def test_train_export_load_identical_samples(tmp_path):
    cfg = _debug_cfg(tmp_path / "run")
    engine = Engine(cfg)
    recipe = SuperResRecipe(cfg, engine)
    assert engine.run(recipe, progress=False) == 0
    final = tmp_path / "run" / "final"
    assert (final / "config.json").is_file() and (tmp_path / "run" / "video_tokenizer").is_dir()
    trained = SuperResTransformer(recipe.mcfg)
    trained.load_state_dict(recipe.model.state_dict())
    recipe.ema.copy_to(trained)  # the export holds the EMA weights
    loaded = SuperResTransformer.from_pretrained(final)
    assert loaded.config.text_dim == 0  # trained with text_encoder = "none": the export says it takes none
    lo = torch.randint(0, CFG.mask_id, (1, 2, 4, 4), generator=torch.Generator().manual_seed(1))
    kw = dict(steps=3, lo_scale=2.0, seed=5)
    a, b = maskgit_decode(trained.eval(), lo, **kw), maskgit_decode(loaded, lo, **kw)
    assert torch.equal(a, b)
    assert not torch.equal(a, maskgit_decode(loaded, lo, steps=3, lo_scale=2.0, seed=6))
    assert (tmp_path / "run" / "checkpoints").is_dir()


def test_evaluate_reports_copying_the_draft_beside_the_model(tmp_path, monkeypatch):
    # training draws noise and drops the condition everywhere; held out, the condition stays clean
    cfg = _debug_cfg(tmp_path / "run", lo_dropout=1.0, lo_noise=1.0, text_dropout=1.0)
    recipe = SuperResRecipe(cfg, Engine(cfg))
    hi = torch.randint(0, CFG.mask_id, (2, *HI_GRID), generator=torch.Generator().manual_seed(2))
    lo = hi[:, :, ::2, ::2]
    right = torch.zeros(HI_GRID, dtype=torch.bool)
    right[0] = True  # the draft is right in the first latent frame only
    draft = torch.where(right, hi, (hi + 1) % CFG.mask_id)
    monkeypatch.setattr(recipe, "_tokens", lambda video: (hi, lo))
    seen = []
    monkeypatch.setattr(recipe, "_draft", lambda lo_in: seen.append(lo_in) or draft)
    out = recipe.evaluate(0)
    assert torch.equal(seen[0], lo)  # the draft is made from the clean condition
    mask = recipe._eval_batch()["hi_mask"]
    assert out["val_draft_acc"] == pytest.approx((mask & right).sum().item() / mask.sum().item())
    assert out["val_draft_all_acc"] == pytest.approx(0.5)  # one latent frame of two
    assert 0 <= out["val_acc"] <= 1 and out["val_loss"] > 0


def test_evaluate_one_shot_sees_no_true_token(tmp_path, monkeypatch):
    # a stand-in model that copies every visible token and says the draft where it sees [MASK]: its
    # masked-position accuracy is the draft's, and from the all-[MASK] grid it is the draft everywhere
    cfg = _debug_cfg(tmp_path / "run")
    recipe = SuperResRecipe(cfg, Engine(cfg))
    hi = torch.randint(0, CFG.mask_id, (2, *HI_GRID), generator=torch.Generator().manual_seed(4))
    wrong = (hi + 1) % CFG.mask_id
    monkeypatch.setattr(recipe, "_tokens", lambda video: (hi, hi[:, :, ::2, ::2]))
    monkeypatch.setattr(recipe, "_draft", lambda lo_in: wrong)

    def copier(hi_in, lo_in, text, text_mask, draft):
        ids = torch.where(hi_in == CFG.mask_id, draft, hi_in)
        n = CFG.factor_size
        return SuperResLogits(*(F.one_hot(x, n).float() for x in (ids // n, ids % n)))

    monkeypatch.setattr(recipe, "fwd", copier)
    out = recipe.evaluate(0)
    assert out["val_acc"] == out["val_draft_acc"] == 0.0
    assert out["val_oneshot_acc"] == out["val_draft_all_acc"] == 0.0
    monkeypatch.setattr(recipe, "_draft", lambda lo_in: hi)  # a perfect draft: both become 1
    out = recipe.evaluate(0)
    assert out["val_oneshot_acc"] == out["val_acc"] == 1.0


def test_init_from_copies_weights_and_rejects_other_architectures(tmp_path):
    torch.manual_seed(3)
    SuperResTransformer(dataclasses.replace(CFG, text_dim=0)).save_pretrained(tmp_path / "src")  # no text
    cfg = _debug_cfg(tmp_path / "a", init_from=str(tmp_path / "src"))
    recipe = SuperResRecipe(cfg, Engine(cfg))
    source = SuperResTransformer.from_pretrained(tmp_path / "src").state_dict()
    assert all(torch.equal(v, source[k]) for k, v in recipe.model.state_dict().items())
    wider = _debug_cfg(tmp_path / "b", init_from=str(tmp_path / "src"), model={"dim": 2 * CFG.dim})
    with pytest.raises(ValueError, match="different architecture"):  # the CLI's one-line error
        SuperResRecipe(wider, Engine(wider))
    SuperResTransformer(CFG).save_pretrained(tmp_path / "texted")  # a model with a text projection
    textless = _debug_cfg(tmp_path / "c", init_from=str(tmp_path / "texted"))
    with pytest.raises(ValueError, match="different architecture"):
        SuperResRecipe(textless, Engine(textless))


def test_resume_continues_to_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    def run(out, resume=False, **kw):
        cfg = _debug_cfg(out, **kw)
        engine = Engine(cfg)
        assert engine.run(SuperResRecipe(cfg, engine), resume=resume, progress=False) == 0

    run(tmp_path / "straight")
    run(tmp_path / "split", stop_after_steps=2)
    assert not (tmp_path / "split" / "final").exists()
    run(tmp_path / "split", resume=True)
    a, b = (load_file(tmp_path / d / "final" / "model.safetensors") for d in ("straight", "split"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_shipped_superres_configs_load():
    paths = sorted(CONFIGS.glob("superres_*.toml"))
    assert [p.stem for p in paths] == ["superres_debug", "superres_tiny"]
    for path in paths:
        cfg = load_config(SuperResTrainConfig, path)
        assert cfg.preset == path.stem.removeprefix("superres_")
        assert SuperResTransformer(cfg.model_config()).config.codebook_bits in (8, 12)


def test_detail_map_pools_each_target_tokens_pixels_and_frames():
    from videopoet.train.superres import detail_map

    video = torch.zeros(1, 3, 9, 16, 16)  # 9 frames: token frames {0}, {1..4}, {5..8}
    up = video.clone()
    up[0, :, 6, 8:16, 0:8] = 0.4  # one frame of token frame 2, row 1, column 0
    up[0, 0, 0, 0, 0] = 6.4  # one pixel of one channel in the first frame
    d = detail_map(video, up, temporal=4, spatial=8)
    assert d.shape == (1, 3, 2, 2)
    expected = torch.zeros(1, 3, 2, 2)
    expected[0, 2, 1, 0] = 0.4 / 4  # a quarter of that token's frames
    expected[0, 0, 0, 0] = 6.4 / 3 / 64  # a third of the channels, a 64th of the pixels
    assert torch.allclose(d, expected)


def test_masked_loss_weights_count_per_position():
    from types import SimpleNamespace

    from videopoet.train.superres import loss_weights, masked_loss

    g = torch.Generator().manual_seed(0)
    logits = SimpleNamespace(
        a=torch.randn(1, 1, 2, 2, 4, generator=g), b=torch.randn(1, 1, 2, 2, 4, generator=g)
    )
    hi = torch.randint(0, 16, (1, 1, 2, 2), generator=g)
    mask = torch.tensor([[[[True, True], [True, False]]]])
    plain = masked_loss(logits, hi, mask, 4)[0]
    assert torch.allclose(masked_loss(logits, hi, mask, 4, torch.full((1, 1, 2, 2), 5.0))[0], plain)
    # weight only on the first position, and on the unmasked one, whose weight counts for nothing
    only_first = torch.tensor([[[[1.0, 0.0], [0.0, 7.0]]]])
    first = masked_loss(logits, hi, torch.tensor([[[[True, False], [False, False]]]]), 4)[0]
    assert torch.allclose(masked_loss(logits, hi, mask, 4, only_first)[0], first)
    weight, total = loss_weights(torch.tensor([True, False]), torch.tensor([1.0, 3.0]), 2.0)
    assert torch.allclose(weight, torch.tensor([2.0, 4.0])) and torch.isclose(total, torch.tensor(2.0))
    weight, total = loss_weights(mask, None, 2.0)  # no detail: no weights, the masked count
    assert weight is None and total.item() == 3.0


@pytest.mark.parametrize("strength", [0.0, 3.0])
def test_the_step_loss_is_weighted_by_the_batchs_detail_only_when_asked(tmp_path, monkeypatch, strength):
    import videopoet.train.superres as sr

    cfg = _debug_cfg(tmp_path / "run", detail_weight=strength)
    recipe = SuperResRecipe(cfg, Engine(cfg))
    clips = recipe._open(cfg.data, "train")
    batch = recipe.collate([recipe.prepare(clips[i], i) for i in range(2)])
    seen = []
    monkeypatch.setattr(sr, "masked_loss", lambda *a, **kw: seen.append(a[4]) or masked_loss(*a, **kw))
    recipe._loss(batch)
    if not strength:
        assert seen == [None]
        return
    lost = recipe._inputs(batch, detail=True)[2]
    assert torch.allclose(seen[0], sr.loss_weights(batch["hi_mask"], lost, strength)[0]) and seen[0].std() > 0
