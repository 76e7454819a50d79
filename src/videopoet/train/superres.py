"""The super-resolution transformer's recipe for the training engine (``videopoet train superres``).

MAGVIT masked modeling in token space (spec §5). An item is one high-res clip (``width`` × ``height``);
per item, seeded by its position (so resume and rank count do not change it):

- the **target**: the frozen video tokenizer's tokens (t, H, W) of the clip;
- the **condition**: the tokens (t, H/2, W/2) of its bicubic 2× downsampling, with a random subset (a rate
  drawn from [0, ``lo_noise``]) resampled uniformly — noise augmentation, so the model learns to doubt its
  low-res input as it must at inference, where that input is an LM's sample;
- **masking**: a ratio r = cos(π/2 · u), u ~ U(0, 1) (the cosine schedule MaskGIT decodes with), of the
  target positions is set to [MASK]; the loss is the cross-entropy of both factor heads on those positions
  only (the mean of the two, per masked token);
- the **draft** (a model with the draft path): ``superres.upscale.draft_tokens`` of the noised condition,
  as at inference, where it is made from the LM's sample;
- **condition dropout** for classifier-free guidance: the low-res condition and its draft (all [MASK]) and
  the text (an all-False mask) are each dropped for ``lo_dropout`` / ``text_dropout`` of the items.

The clips are tokenized on the fly inside the step, on the training device (the tokenizer is frozen and
the step's inputs are pixels: no token shards to prepare), or, with ``bank = N``, once for the first N
clips into a token bank that every step then reads (``train/token_bank.py``; there a resampled condition
token resamples the draft's four tokens under it, instead of a new draft being made). Text comes from the
configured encoder (MiniLM by default, ``"none"`` for none). ``video_tokenizer = "preset:NAME"`` builds a
freshly initialised tokenizer of that preset (seeded; for runs that test the plumbing) and writes it to
``out_dir/video_tokenizer`` next to the export, so ``videopoet upscale --video-tokenizer`` can find it.
Data order, checkpoints, resume, EMA export and torchrun come from ``train/loop.py``; the final export is a
component folder (``components.py``): ``out_dir/final``, the EMA weights in float32.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from videopoet.config import ConfigError, override_fields
from videopoet.data.sample import uint8_to_video
from videopoet.device import autocast
from videopoet.outputs import atomic_write_text
from videopoet.superres.model import PRESETS, SuperResConfig, SuperResTransformer
from videopoet.train.common import EMA, copy_matching_weights
from videopoet.train.loop import Engine, OptimizerOf, Recipe, TrainConfig, train_command
from videopoet.train.token_bank import (
    BANK_FILE,
    BankIndex,
    BankSlot,
    TokenBank,
    build_bank,
    load_bank,
    read_clips,
)

log = logging.getLogger("videopoet.train.superres")

PRESET_TOKENIZER = "preset:"  # video_tokenizer = "preset:debug": a fresh, seeded tokenizer of that preset
DETAIL_SHARE = 0.1  # held-out accuracy is also reported at this share of positions: the most detail lost


@dataclass(kw_only=True)
class SuperResTrainConfig(TrainConfig):
    out_dir: str = "runs/superres"
    video_tokenizer: str = ""  # "" = the bundled one, a component folder, or "preset:NAME" (see above)
    text_encoder: str = "minilm"  # "minilm", a T5 folder, or "none"
    frames: int = 17  # clip length (1 + 4k)
    width: int = 256  # high-res width (the condition is half of it; a multiple of 16)
    height: int = 256  # high-res height
    lo_noise: float = 0.1  # most of the low-res tokens resampled in an item (rate ~ U(0, lo_noise))
    lo_dropout: float = 0.1  # items whose low-res condition is dropped (classifier-free guidance)
    text_dropout: float = 0.1  # items whose text is dropped
    bank: int = 0  # clips tokenized once and trained on for many epochs (0 = every item on the fly)
    detail_weight: float = 0.0  # loss weight 1 + this × (detail the condition lost here ÷ its batch mean)
    eval_items: int = 8  # held-out clips of the held-out masked-token loss
    num_samples: int = 2  # held-out clips MaskGIT-decoded into each preview
    sample_steps: int = 12  # MaskGIT steps of a preview

    RENAMED: ClassVar[dict[str, str]] = TrainConfig.RENAMED

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.preset not in PRESETS:
            raise ConfigError(f"preset {self.preset!r} unknown; choose one of {sorted(PRESETS)}")
        if (self.frames - 1) % 4 or self.frames < 1 or self.width % 16 or self.height % 16:
            raise ConfigError(
                f"clips must be 1 + 4k frames and multiples of 16 pixels (the condition is half as large), "
                f"got {self.frames} frames {self.width}x{self.height}"
            )
        if self.detail_weight < 0:
            raise ConfigError(f"detail_weight must be >= 0, got {self.detail_weight}")
        for name in ("lo_noise", "lo_dropout", "text_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.bank < 0:
            raise ConfigError(f"bank must be >= 0 (0 = tokenize on the fly), got {self.bank}")
        if self.sample_steps < 1 or self.eval_items < 1:
            raise ConfigError("sample_steps and eval_items must be at least 1")

    def model_config(self) -> SuperResConfig:
        cfg = override_fields(PRESETS[self.preset], self.model)  # ConfigError names a bad key or value
        # trained without text, the model says so (text_dim 0), and the pipeline gives it none
        return dataclasses.replace(cfg, text_dim=0) if self.text_encoder == "none" else cfg


# ============================================================================================ items
@dataclass(frozen=True)
class ItemDraws:
    """An item's random choices, a pure function of (seed, position): picklable, made in loader workers."""

    seed: int
    hi_grid: tuple[int, int, int]  # (t, H, W) target token grid
    codebook_size: int
    lo_noise: float
    lo_dropout: float
    text_dropout: float

    def __call__(self, sample: Any, position: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, position, 0x5E7])
        t, h, w = self.hi_grid
        lo_grid = (t, h // 2, w // 2)
        n_hi = t * h * w
        ratio = math.cos(math.pi / 2 * rng.random())  # the cosine schedule at a uniform progress
        n_masked = min(n_hi, max(1, math.ceil(ratio * n_hi)))
        hi_mask = np.zeros(n_hi, dtype=bool)
        hi_mask[rng.permutation(n_hi)[:n_masked]] = True
        noise_mask = rng.random(lo_grid) < rng.uniform(0.0, self.lo_noise)
        if isinstance(sample, BankSlot):  # the step gathers the clip's tokens from the bank
            source = {"index": sample.index}
        else:
            frames = torch.from_numpy(np.ascontiguousarray(sample.frames))  # uint8 (T, H, W, 3)
            source = {"frames": frames, "caption": sample.caption or ""}
        return source | {
            "hi_mask": torch.from_numpy(hi_mask.reshape(self.hi_grid)),  # (t, H, W)
            "noise_mask": torch.from_numpy(noise_mask),  # (t, H/2, W/2)
            "noise_ids": torch.from_numpy(rng.integers(0, self.codebook_size, lo_grid)),  # (t, H/2, W/2)
            "drop_lo": bool(rng.random() < self.lo_dropout),
            "drop_text": bool(rng.random() < self.text_dropout),
        }


def downsample(video: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """(B, 3, T, H, W) in [-1, 1] → (B, 3, T, H/f, W/f): bicubic (antialiased), frame by frame."""
    from videopoet.superres.upscale import resize

    return resize(video, 1 / factor).clamp(-1, 1)


def bank_draft(draft: torch.Tensor, batch: dict[str, Any], lo: torch.Tensor | None = None) -> torch.Tensor:
    """The clean condition's draft (B, t, H, W) with the four tokens under each resampled condition token
    resampled too (to that token's noise id): a bank run's stand-in for the draft of the noised condition
    ``lo`` (which it does not need to read)."""
    up = (batch["noise_mask"], batch["noise_ids"])
    mask, ids = (x.repeat_interleave(2, -1).repeat_interleave(2, -2) for x in up)  # (B, t, H, W) each
    return torch.where(mask, ids, draft)


def detail_map(video: torch.Tensor, up: torch.Tensor, temporal: int, spatial: int) -> torch.Tensor:
    """Where the condition lost detail: the clip (B, 3, T, H, W) against ``up``, the bicubic 2× upsample of
    its condition's reconstruction, as the mean absolute difference over each target token's pixels and
    frames (the causal tokenizer's: the first frame alone, then ``temporal`` at a time) → (B, t, H/s, W/s)."""
    d = (video.float() - up.float()).abs().mean(1)  # (B, T, H, W)
    rest = d[:, 1:].unflatten(1, (-1, temporal)).mean(2)  # (B, t - 1, H, W)
    return F.avg_pool2d(torch.cat([d[:, :1], rest], 1), spatial)  # (B, t, H/s, W/s)


def loss_weights(
    hi_mask: torch.Tensor, detail: torch.Tensor | None, strength: float, world: int = 1
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(per-position loss weights or None, the divisor of the weighted loss sum), from one all-reduce over
    the ``world`` ranks' equal slices of the batch.

    Weights: 1 + strength · detail / (the global batch's mean detail), or None without ``detail``. The
    divisor: their sum over every rank's masked positions ÷ ``world`` (the masked count without
    weights); divided by it, each rank's weighted sum averages over ranks (as gradients do) to the global
    batch's weighted mean."""
    from videopoet.distributed import all_sum

    mask = hi_mask.float()
    if detail is None:
        return None, all_sum(mask.sum()) / world
    d = detail.float()
    total_detail, masked_detail, masked = all_sum(torch.stack([d.sum(), (d * mask).sum(), mask.sum()]))
    mean = (total_detail / (d.numel() * world)).clamp_min(1e-6)
    return 1.0 + strength * d / mean, (masked + strength * masked_detail / mean) / world


def model_inputs(hi_tokens, lo_tokens, batch: dict[str, Any], mask_id: int, draft_of=None):
    """Tokens and an item's draws → (masked high-res input, low-res condition, draft or None): masking,
    noise augmentation, the draft of the noised condition (``draft_of(lo)``, when given), low-res
    dropout (of the draft too)."""
    lo = torch.where(batch["noise_mask"], batch["noise_ids"], lo_tokens)
    draft = None if draft_of is None else draft_of(lo)
    drop = batch["drop_lo"].view(-1, 1, 1, 1)
    if draft is not None:
        draft = draft.masked_fill(drop, mask_id)
    return hi_tokens.masked_fill(batch["hi_mask"], mask_id), lo.masked_fill(drop, mask_id), draft


def masked_loss(
    logits, hi_tokens, hi_mask, factor_size: int, weight=None, total=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over masked positions of (CE head a + CE head b) / 2, weighted by ``weight`` (B, t, H, W) when
    given → (loss, token accuracy). ``total``: the weight sum to divide by instead of this batch's
    (``loss_weights``: under several ranks, what makes the averaged gradients the global batch's mean)."""
    from videopoet.superres.model import split_ids

    a, b = split_ids(hi_tokens[hi_mask], factor_size)  # (M,) each
    la, lb = logits.a[hi_mask].float(), logits.b[hi_mask].float()  # (M, N) each
    ce = (F.cross_entropy(la, a, reduction="none") + F.cross_entropy(lb, b, reduction="none")) / 2  # (M,)
    w = torch.ones_like(ce) if weight is None else weight[hi_mask].float()
    correct = (la.argmax(-1) == a) & (lb.argmax(-1) == b)
    return (w * ce).sum() / (w.sum() if total is None else total), correct.float().mean()


# ============================================================================================ recipe
class SuperResRecipe(Recipe):
    progress_keys = ("loss", "acc")

    def __init__(self, cfg: SuperResTrainConfig, engine: Engine):
        self.cfg, self.engine = cfg, engine
        dev = engine.device
        self.tokenizer = _load_tokenizer(cfg.video_tokenizer).to(dev).eval().requires_grad_(False)
        mcfg = cfg.model_config()
        if mcfg.codebook_bits != self.tokenizer.config.codebook_bits:
            raise ConfigError(
                f"preset {cfg.preset!r} predicts {mcfg.codebook_bits}-bit tokens; the video tokenizer makes "
                f"{self.tokenizer.config.codebook_bits}-bit ones (set model.codebook_bits or another preset)"
            )
        model = SuperResTransformer(mcfg)
        if cfg.init_from:
            source = SuperResTransformer.from_pretrained(cfg.init_from)
            copy_matching_weights(model, source, what=f"init_from={cfg.init_from!r}")
        self.mcfg = mcfg
        self.model = engine.shard(model.to(dev), model.blocks)
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay
        )
        self.ema = EMA(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.state = {"model": self.model, "opt": OptimizerOf(self.opt, self.model)}
        if self.ema is not None:
            self.state["ema"] = self.ema
        self.fwd = torch.compile(self.model) if cfg.compile else self.model
        self.text = None if cfg.text_encoder == "none" else _text_encoder(cfg.text_encoder, dev)
        if self.text is not None and self.text.dim != mcfg.text_dim:
            raise ConfigError(f"text encoder {cfg.text_encoder!r} is {self.text.dim}-d; the model takes "
                              f"text_dim={mcfg.text_dim}")  # fmt: skip
        self.hi_grid = self.tokenizer.latent_shape(cfg.frames, cfg.height, cfg.width)
        self.bank: TokenBank | None = None  # made or read when the engine asks for the dataset
        self._eval: list | None = None

    # ------------------------------------------------------------------ data
    def _open(self, spec: str, split: str):
        from videopoet.data.datasets import open_dataset

        c = self.cfg
        return open_dataset(spec, frames=c.frames, width=c.width, height=c.height, split=split, seed=0)

    def dataset(self):
        if not self.cfg.bank:
            return self._open(self.cfg.data, "train")
        self.bank = self._token_bank()
        return BankIndex(len(self.bank))

    def _bank_settings(self) -> dict[str, str]:
        """What a bank's tokens depend on (a tokenizer folder by its weights file's SHA-256; a seeded
        preset by its name): a saved bank with other settings is made again."""
        from videopoet.components import weights_sha256
        from videopoet.tokenizers.video import VideoTokenizer

        keys = ("data", "bank", "video_tokenizer", "text_encoder", "frames", "width", "height")
        out = {k: str(getattr(self.cfg, k)) for k in keys}
        spec = self.cfg.video_tokenizer
        weights = spec if spec.startswith(PRESET_TOKENIZER) else weights_sha256(VideoTokenizer, spec or None)
        detail = {"detail": "true"} if self.cfg.detail_weight else {}  # a bank without it is made again
        return out | {"draft": str(self.mcfg.draft), "tokenizer_sha256": weights} | detail

    def _token_bank(self) -> TokenBank:
        """The run's bank on the training device: the saved one (a resume), or made by the main rank and
        saved, then read by the others."""
        data = self._open(self.cfg.data, "train")
        if self.cfg.bank > len(data):  # every rank refuses, before anything is made
            raise ConfigError(f"bank = {self.cfg.bank}, but {self.cfg.data} holds {len(data)} clips")
        path, settings = self.engine.out / BANK_FILE, self._bank_settings()
        bank = load_bank(path, settings) if self.engine.is_main else None
        if self.engine.is_main and bank is None:
            log.info("token bank: tokenizing the first %d clips of %s", self.cfg.bank, self.cfg.data)
            clips = read_clips(data, self.cfg.bank, self.engine.local_batch, self.cfg.num_workers)
            bank = build_bank(clips, self._bank_rows)
            bank.save(path, settings)
        self.engine.barrier()
        bank = bank if bank is not None else load_bank(path, settings)
        if bank is None:
            raise RuntimeError(f"{path} could not be read back on rank {self.engine.rank}")
        return bank.to(self.engine.device)

    @torch.no_grad()
    def _bank_rows(self, frames: torch.Tensor, captions: list[str]) -> dict[str, torch.Tensor | None]:
        """Clips (B, T, H, W, 3) uint8 → their bank rows: target, condition, clean draft, caption, and the
        detail the condition lost (with ``detail_weight``)."""
        video = uint8_to_video(frames.to(self.engine.device))
        hi, lo = self._tokens(video)
        text, mask = self._text(captions, torch.zeros(len(captions), dtype=torch.bool))
        up = self._upsampled(lo) if self.mcfg.draft or self.cfg.detail_weight else None
        draft = self._encode(up) if self.mcfg.draft else None
        detail = self._detail(video, up) if self.cfg.detail_weight else None
        return {"hi": hi, "lo": lo, "draft": draft, "text": text, "text_mask": mask, "detail": detail}

    @property
    def prepare(self):
        c = self.cfg
        codes = 2**self.mcfg.codebook_bits
        return ItemDraws(c.seed, self.hi_grid, codes, c.lo_noise, c.lo_dropout, c.text_dropout)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        stacked = [k for k in ("frames", "hi_mask", "noise_mask", "noise_ids") if k in items[0]]
        out = {k: torch.stack([it[k] for it in items]) for k in stacked}
        for k in ("drop_lo", "drop_text", "index"):
            if k in items[0]:
                out[k] = torch.tensor([it[k] for it in items])
        if "caption" in items[0]:
            out["caption"] = [it["caption"] for it in items]
        return out

    # ------------------------------------------------------------------ one step
    @torch.no_grad()
    def _tokens(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips (B, 3, T, H, W) → target tokens (B, t, H', W') and condition tokens (B, t, H'/2, W'/2),
        encoded in the run's precision (bf16 on CUDA: most of a step's arithmetic is these encodes)."""
        with autocast(self.engine.device, self.engine.amp):
            return self.tokenizer.encode(video), self.tokenizer.encode(downsample(video))

    @torch.no_grad()
    def _text(self, captions: list[str], drop: torch.Tensor):
        """Captions → (text (B, S, E), text_mask (B, S)) with dropped and empty captions masked out."""
        if self.text is None:
            return None, None
        keep = [bool(c.strip()) for c in captions]
        out = self.text.encode([c if k else "-" for c, k in zip(captions, keep)])
        dev = self.engine.device
        ok = torch.tensor(keep, device=dev) & ~drop.to(dev)
        return out.embeddings.to(dev), out.mask.to(dev) & ok[:, None]

    @torch.no_grad()
    def _upsampled(self, lo_tokens: torch.Tensor) -> torch.Tensor:
        from videopoet.superres.upscale import upsampled_reconstruction

        with autocast(self.engine.device, self.engine.amp):
            return upsampled_reconstruction(self.tokenizer, lo_tokens)

    @torch.no_grad()
    def _encode(self, video: torch.Tensor) -> torch.Tensor:
        with autocast(self.engine.device, self.engine.amp):
            return self.tokenizer.encode(video)

    def _draft(self, lo_tokens: torch.Tensor) -> torch.Tensor:
        """``superres.upscale.draft_tokens`` in the run's precision."""
        return self._encode(self._upsampled(lo_tokens))

    @torch.no_grad()
    def _detail(self, video: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        c = self.tokenizer.config
        return detail_map(video, up, c.temporal_factor, c.spatial_factor)

    def _inputs(self, batch: dict[str, Any], detail: bool = False) -> tuple[torch.Tensor, tuple, Any]:
        """A batch (of clips, or of bank slots) → (target tokens, the model's inputs: masked target,
        condition, text, text mask, draft or None; the detail map when asked for, else None)."""
        if "index" in batch:
            rows = self.bank.take(batch["index"])
            hi_tokens, lo_tokens, lost = rows.hi, rows.lo, rows.detail
            draft_of = None if rows.draft is None else functools.partial(bank_draft, rows.draft, batch)
            text, text_mask = _bank_text(rows, batch["drop_text"])
        else:
            video = uint8_to_video(batch["frames"])
            hi_tokens, lo_tokens = self._tokens(video)
            lost = self._detail(video, self._upsampled(lo_tokens)) if detail else None
            draft_of = self._draft if self.mcfg.draft else None
            text, text_mask = self._text(batch["caption"], batch["drop_text"])
        hi_in, lo_in, draft = model_inputs(hi_tokens, lo_tokens, batch, self.mcfg.mask_id, draft_of)
        return hi_tokens, (hi_in, lo_in, text, text_mask, draft), lost if detail else None

    def _forward(self, inputs: tuple):
        with autocast(self.engine.device, self.engine.amp):
            return self.fwd(*inputs)

    def _loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        strength = self.cfg.detail_weight
        hi_tokens, inputs, detail = self._inputs(batch, detail=bool(strength))
        weight, total = loss_weights(batch["hi_mask"], detail, strength, self.engine.world)
        logits = self._forward(inputs)
        return masked_loss(logits, hi_tokens, batch["hi_mask"], self.mcfg.factor_size, weight, total)

    def train_step(self, batch: dict[str, Any], step: int) -> dict[str, Any]:
        lr = self.cfg.lr_at(step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.model.train()
        loss, acc = self._loss(batch)
        norm = self.engine.step_optimizer(loss, self.opt)
        if self.ema is not None and norm is not None:
            self.ema.update(self.model)
        return {
            "loss": loss.item(),
            "acc": acc.item(),
            "masked": float(batch["hi_mask"].float().mean()),
            "lr": lr,
            "grad_norm": float("nan") if norm is None else norm,
        }

    # ------------------------------------------------------------------ held-out
    def _eval_batch(self) -> dict[str, Any]:
        if self._eval is None:
            from videopoet.data.datasets import readable_items

            ds = self._open(self.cfg.heldout_spec(), "heldout")
            items = readable_items(ds, range(len(ds)), log=log.warning)
            # held out as inference sees a clip: the same masks as training would draw, but a clean
            # condition (with rates 0 the draws consume the same random numbers: the masks do not move)
            draws = dataclasses.replace(self.prepare, lo_noise=0.0, lo_dropout=0.0, text_dropout=0.0)
            self._eval = [draws(s, i) for i, s in itertools.islice(items, self.cfg.eval_items)]
        batch = self.collate(self._eval)
        return {k: v.to(self.engine.device) if torch.is_tensor(v) else v for k, v in batch.items()}

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, Any]:
        """Held-out accuracy on the clean condition (no noise, no dropout), two ways:

        - ``val_loss``, ``val_acc``: on the items' masked positions (their own masks, fixed from run to
          run), the other positions showing the *true* tokens: what training optimises, but inference
          never sees true tokens;
        - ``val_oneshot_acc``: one forward pass from an all-[MASK] grid, argmax at every position: what
          the first MaskGIT step sees, and all a model can know from the condition and the text.

        With the draft path, copying the draft scores ``val_draft_acc`` at the masked positions and
        ``val_draft_all_acc`` at all of them: a model that reads more than its draft has to beat the
        latter in ``val_oneshot_acc``. ``val_oneshot_detail_acc`` and ``val_draft_detail_acc`` score the
        same at the tenth of the positions where the condition lost most detail (``detail_map``)."""
        from videopoet.superres.model import join_ids

        self.model.eval()
        batch = self._eval_batch()
        hi_tokens, inputs, detail = self._inputs(batch, detail=True)
        loss, acc = masked_loss(self._forward(inputs), hi_tokens, batch["hi_mask"], self.mcfg.factor_size)
        blind = self._forward((torch.full_like(hi_tokens, self.mcfg.mask_id), *inputs[1:]))
        guess = join_ids(blind.a.argmax(-1), blind.b.argmax(-1), self.mcfg.factor_size)
        lost = detail >= torch.quantile(detail.float().flatten(), 1 - DETAIL_SHARE)  # the most detail lost
        out = {
            "val_loss": loss.item(),
            "val_acc": acc.item(),
            "val_oneshot_acc": (guess == hi_tokens).float().mean().item(),
            "val_oneshot_detail_acc": (guess == hi_tokens)[lost].float().mean().item(),
        }
        draft, mask = inputs[-1], batch["hi_mask"]
        if draft is not None:
            out["val_draft_acc"] = (draft[mask] == hi_tokens[mask]).float().mean().item()
            out["val_draft_all_acc"] = (draft == hi_tokens).float().mean().item()
            out["val_draft_detail_acc"] = (draft == hi_tokens)[lost].float().mean().item()
        return out

    @torch.no_grad()
    def write_samples(self, folder: Path) -> None:
        """Held-out clips (top) over their 2× super-resolution from the downsampled clip (bottom), decoded as
        at inference (caption as text, ``upscale.TEMPERATURE``), with the tokenizer's own reconstruction
        PSNR beside the SR's in ``psnr.txt``. Every rank gathers the (FSDP2-sharded) weights; rank 0 runs
        a whole copy and writes."""
        from videopoet.eval.metrics import psnr
        from videopoet.eval.report import write_preview
        from videopoet.sampling.masked import maskgit_decode
        from videopoet.superres.upscale import TEMPERATURE

        model = self._whole_model(ema=False)
        if model is None:
            return
        model = model.to(self.engine.device).eval()
        batch, n = self._eval_batch(), self.cfg.num_samples
        video = uint8_to_video(batch["frames"][:n])
        hi_tokens, lo_tokens = self._tokens(video)
        draft = self._draft(lo_tokens) if self.mcfg.draft else None
        text, text_mask = self._text(batch["caption"][:n], batch["drop_text"][:n])  # as at inference
        sr = maskgit_decode(
            model, lo_tokens, text, text_mask, draft=draft, steps=self.cfg.sample_steps,
            temperature=TEMPERATURE, seed=self.cfg.seed,
        )  # fmt: skip
        out, ceiling = self.tokenizer.decode(sr), self.tokenizer.decode(hi_tokens)
        folder.mkdir(parents=True, exist_ok=True)
        write_preview(folder / "superres", video.float().cpu(), out.float().cpu())
        report = f"sr_psnr {psnr(out, video).mean():.3f}\ntokenizer_psnr {psnr(ceiling, video).mean():.3f}\n"
        atomic_write_text(folder / "psnr.txt", report)

    def _whole_model(self, ema: bool) -> SuperResTransformer | None:
        """A whole CPU copy of the (FSDP2-sharded) model, with the EMA weights when ``ema`` and there is
        one, on rank 0; None on the others. A collective: every rank calls it."""
        from videopoet.train.checkpoint import module_state

        state = module_state(self.model)
        if ema and self.ema is not None:
            state |= {k: v.cpu() for k, v in self.ema.state_dict().items()}
        if not self.engine.is_main:
            return None
        model = SuperResTransformer(dataclasses.replace(self.mcfg))
        model.load_state_dict(state)
        return model

    def export(self, folder: Path) -> None:
        """The EMA weights (float32 component); a preset tokenizer is written beside, for upscaling."""
        model = self._whole_model(ema=True)
        if model is None:
            return
        model.save_pretrained(folder)
        if self.cfg.video_tokenizer.startswith(PRESET_TOKENIZER):
            self.tokenizer.cpu().save_pretrained(folder.parent / "video_tokenizer")
            self.tokenizer.to(self.engine.device)


def _bank_text(rows: TokenBank, drop: torch.Tensor):
    """A bank's caption rows → (text (B, S, E) float32, text_mask (B, S)) with dropped captions masked."""
    if rows.text is None:
        return None, None
    return rows.text.float(), rows.text_mask & ~drop.to(rows.text_mask.device)[:, None]


def _load_tokenizer(spec: str):
    from videopoet.tokenizers.video import VideoTokenizer

    if spec.startswith(PRESET_TOKENIZER):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same "random" tokenizer on every rank and every resume
            return VideoTokenizer.from_preset(spec[len(PRESET_TOKENIZER) :])
    return VideoTokenizer.from_pretrained(spec or None)


def _text_encoder(spec: str, device):
    from videopoet.text import load_text_encoder

    return load_text_encoder(spec, device=device)


def train(
    cfg: SuperResTrainConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True
) -> int:
    engine = Engine(cfg)
    return engine.run(SuperResRecipe(cfg, engine), resume=resume, overwrite=overwrite, progress=progress)


def main(args) -> int:
    return train_command(args, SuperResTrainConfig, train, "super-resolution")
