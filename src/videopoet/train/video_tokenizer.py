"""The MAGVIT-v2 video tokenizer's recipe for the training engine (``videopoet train video-tokenizer``).

One step: reconstruct a batch, minimise L1 + L2 (+ edge) + commitment + annealed LFQ entropy penalty
(+ perceptual, + GAN after ``gan.start``), then — once the GAN is on — one discriminator step with LeCam
regularisation. Data order, checkpoints, resume, logging and torchrun come from ``train/loop.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from videopoet.config import ConfigError, override_fields
from videopoet.device import autocast
from videopoet.distributed import all_sum
from videopoet.eval.metrics import psnr
from videopoet.eval.report import write_preview
from videopoet.tokenizers.losses import (
    DISCRIMINATOR_PRESETS,
    Discriminator3D,
    LeCam,
    PerceptualLoss,
    d_loss,
    edge_loss,
    g_loss,
    load_feature_network,
)
from videopoet.tokenizers.video import PRESETS, VideoTokenizer, VideoTokenizerConfig
from videopoet.train.common import EMA, copy_matching_weights
from videopoet.train.loop import Engine, OptimizerOf, Recipe, TrainConfig, train_command

log = logging.getLogger("videopoet.train.video_tokenizer")


@dataclass(kw_only=True)
class VideoLossConfig:
    l1: float = 1.0  # reconstruction L1
    l2: float = 1.0  # reconstruction L2 (MSE)
    edge: float = 0.0  # L1 on horizontal/vertical pixel differences (thin detail; 0 = off)
    commit: float = 0.25  # LFQ commitment ‖z − sg(q)‖²
    entropy_start: float = 0.1  # LFQ entropy penalty weight at step 0 …
    entropy: float = 0.05  # … annealed linearly to this value …
    entropy_anneal_steps: int = 2000  # … over these steps
    perceptual: float = 0.0  # 0 = off; needs perceptual_weights
    perceptual_weights: str = ""  # local safetensors file of the feature network (never downloaded)
    perceptual_arch: str = "vgg16"  # feature network architecture (tokenizers.losses.FEATURE_NETWORKS)
    perceptual_frames: int = 4  # frames per clip fed to the perceptual network

    def entropy_at(self, step: int) -> float:
        frac = min(1.0, step / max(1, self.entropy_anneal_steps))
        return self.entropy_start + frac * (self.entropy - self.entropy_start)


@dataclass(kw_only=True)
class VideoGANConfig:
    weight: float = 0.1  # generator adversarial loss weight (0 = no discriminator)
    start: int = 2000  # step at which the discriminator and LeCam switch on
    lr: float = 0.0  # discriminator learning rate (0 = the run's lr)
    loss: str = "hinge"  # "hinge" or "non_saturating"
    lecam_weight: float = 0.001  # LeCam regularisation weight on the discriminator
    lecam_decay: float = 0.99  # EMA decay of LeCam's real/fake anchors
    model: dict[str, Any] = field(default_factory=dict)  # overrides of the discriminator preset


_VIDEO_RENAMED = {
    "l1_weight": "loss.l1",
    "l2_weight": "loss.l2",
    "edge_weight": "loss.edge",
    "commit_weight": "loss.commit",
    "entropy_weight_start": "loss.entropy_start",
    "entropy_weight": "loss.entropy",
    "entropy_anneal_steps": "loss.entropy_anneal_steps",
    "perceptual_weight": "loss.perceptual",
    "perceptual_weights": "loss.perceptual_weights",
    "perceptual_arch": "loss.perceptual_arch",
    "perceptual_frames": "loss.perceptual_frames",
    "gan_weight": "gan.weight",
    "gan_start": "gan.start",
    "gan_loss": "gan.loss",
    "lecam_weight": "gan.lecam_weight",
    "lecam_decay": "gan.lecam_decay",
    "discriminator": "gan.model",
}


@dataclass(kw_only=True)
class VideoTokenizerTrainConfig(TrainConfig):
    out_dir: str = "runs/video_tokenizer"
    frames: int = 17  # clip length (1 + 4k)
    width: int = 128  # clip width (multiple of 8)
    height: int = 128  # clip height (multiple of 8)
    num_samples: int = 4  # held-out clips in a preview
    monitor_every: int = 100  # steps per codebook-usage window (warns on collapse)
    loss: VideoLossConfig = field(default_factory=VideoLossConfig)
    gan: VideoGANConfig = field(default_factory=VideoGANConfig)

    RENAMED: ClassVar[dict[str, str]] = TrainConfig.RENAMED | _VIDEO_RENAMED

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.preset not in PRESETS:
            raise ConfigError(f"preset {self.preset!r} unknown; choose one of {sorted(PRESETS)}")
        if (self.frames - 1) % 4 or self.frames < 1 or self.width % 8 or self.height % 8:
            raise ConfigError(
                f"clips must be 1 + 4k frames and multiples of 8 pixels, got "
                f"{self.frames} frames {self.width}x{self.height}"
            )
        if self.gan.loss not in ("hinge", "non_saturating"):
            raise ConfigError(f"gan.loss must be 'hinge' or 'non_saturating', got {self.gan.loss!r}")
        if self.loss.perceptual > 0 and not self.loss.perceptual_weights:
            raise ConfigError("loss.perceptual > 0 needs loss.perceptual_weights = a local .safetensors file")

    def model_config(self) -> VideoTokenizerConfig:
        return override_fields(PRESETS[self.preset], self.model)  # ConfigError names a bad key or value


# ============================================================================================ fine-tuning
def widen_codebook(model: VideoTokenizer, source: VideoTokenizer, *, what: str) -> None:
    """Load a tokenizer with K0 LFQ bits into ``model`` with K > K0 bits and otherwise the same shapes.

    The first K0 bits keep the source's meaning: the encoder's output rows, the decoder's input columns
    and the adaptive norms' conditioning columns (the per-frame mean and std of each bit) are copied. The
    new bits' encoder rows keep their fresh initialisation; every weight that reads them starts at zero,
    so the widened model reconstructs exactly as the source did until training teaches the decoder to use
    them (their own gradient, code × upstream gradient, is not zero, and the entropy term spreads them).
    """
    k0, k = source.config.codebook_bits, model.config.codebook_bits
    mine, theirs = model.state_dict(), source.state_dict()
    if set(mine) != set(theirs):
        raise ValueError(f"{what} holds a different architecture than this run's model (tensor names differ)")
    out = {}
    for name, new in mine.items():
        old = theirs[name]
        if old.shape == new.shape:
            out[name] = old
            continue
        w = torch.zeros_like(new)
        if name.startswith("encoder.conv_out.") and new.shape[1:] == old.shape[1:] and old.shape[0] == k0:
            w = new.clone()  # the new bits' rows keep their initialisation
            w[:k0] = old
        elif name == "decoder.conv_in.conv.weight" and old.shape[1] == k0 and new.shape[1] == k:
            w[:, :k0] = old
        elif name.endswith("to_scale_shift.weight") and old.shape[1] == 2 * k0 and new.shape[1] == 2 * k:
            w[:, :k0], w[:, k : k + k0] = old[:, :k0], old[:, k0:]  # [mean of each bit | std of each bit]
        else:
            raise ValueError(
                f"{what} differs from this run's model in {name} ({tuple(old.shape)} vs {tuple(new.shape)}), "
                "not only in codebook_bits; pick the matching preset and overrides, or drop init_from"
            )
        out[name] = w
    model.load_state_dict(out)


def init_from(model: VideoTokenizer, directory: str) -> None:
    """Copy weights from a component directory whose architecture matches (fewer LFQ bits: widened)."""
    source = VideoTokenizer.from_pretrained(None if directory == "bundled" else directory)
    what = f"init_from={directory!r}"
    try:
        if source.config.codebook_bits < model.config.codebook_bits:
            widen_codebook(model, source, what=what)
            log.info("initialised from %s, codebook widened from %d to %d bits (the new bits start unused)",
                     directory, source.config.codebook_bits, model.config.codebook_bits)  # fmt: skip
            return
        copy_matching_weights(model, source, what=what)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    log.info("initialised from %s", directory)


# ============================================================================================ the recipe
def clip_to_tensor(sample: Any, position: int) -> torch.Tensor:
    from videopoet.data.sample import frames_to_tensor

    return frames_to_tensor(sample.frames)  # (3, T, H, W) in [-1, 1]


class VideoTokenizerRecipe(Recipe):
    progress_keys = ("loss", "psnr")

    def __init__(self, cfg: VideoTokenizerTrainConfig, engine: Engine):
        self.cfg, self.engine, dev = cfg, engine, engine.device
        self.model = VideoTokenizer(cfg.model_config()).to(dev)
        if cfg.init_from:
            init_from(self.model, cfg.init_from)
        self.ema = EMA(self.model, cfg.ema_decay)
        adam = dict(lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.opt_g = torch.optim.AdamW(self.model.parameters(), **adam)
        self.lecam = LeCam(cfg.gan.lecam_decay).to(dev)
        self.state = {"model": self.model, "ema": self.ema, "opt_g": OptimizerOf(self.opt_g, self.model)}
        self.disc = None
        if cfg.gan.weight > 0:
            dpreset = cfg.preset if cfg.preset in DISCRIMINATOR_PRESETS else "tiny"
            try:
                dcfg = dataclasses.replace(DISCRIMINATOR_PRESETS[dpreset], **cfg.gan.model)
            except TypeError as e:
                raise ConfigError(f"gan.model overrides {cfg.gan.model}: {e}") from None
            self.disc = Discriminator3D(dcfg).to(dev)
            self.opt_d = torch.optim.AdamW(self.disc.parameters(), **(adam | {"lr": cfg.gan.lr or cfg.lr}))
            self.state |= {
                "disc": self.disc,
                "opt_d": OptimizerOf(self.opt_d, self.disc),
                "lecam": self.lecam,
            }
        self.perceptual = None
        if cfg.loss.perceptual > 0:
            net = load_feature_network(cfg.loss.perceptual_weights, cfg.loss.perceptual_arch).to(dev)
            self.perceptual = PerceptualLoss(net, cfg.loss.perceptual_frames)
        self.fwd_model = torch.compile(self.model) if cfg.compile else self.model
        self.fwd_disc = torch.compile(self.disc) if cfg.compile and self.disc else self.disc
        self.counts = torch.zeros(self.model.config.codebook_size, dtype=torch.float64)
        self.bit_ones = torch.zeros(self.model.config.codebook_bits, dtype=torch.float64)
        self.window = 0
        self._preview: torch.Tensor | None = None

    def dataset(self):
        return _open(self.cfg.data, self.cfg, split="train")

    def prepare(self, sample: Any, position: int) -> torch.Tensor:
        """uint8 (T, H, W, 3): a quarter of the float bytes between loader processes; ``train_step``
        converts the batch on the device."""
        from videopoet.data.sample import frames_to_uint8

        return frames_to_uint8(sample.frames)

    def _set_lr(self, step: int) -> float:
        cfg = self.cfg
        lr = cfg.lr_at(step)
        for group in self.opt_g.param_groups:
            group["lr"] = lr
        if self.disc is not None:
            for group in self.opt_d.param_groups:
                group["lr"] = cfg.lr_at(step, cfg.gan.lr or cfg.lr)
        return lr

    def _generator_loss(self, x: torch.Tensor, step: int, gan_on: bool):
        """→ (loss, model output, reconstruction, metrics) of the tokenizer's side of the step."""
        lw, amp = self.cfg.loss, self.engine.amp
        with autocast(self.engine.device, amp):
            out = self.fwd_model(x)
        recon = out.recon.float()
        l1, l2 = (recon - x).abs().mean(), (recon - x).pow(2).mean()
        ent_w = lw.entropy_at(step)
        loss = lw.l1 * l1 + lw.l2 * l2 + lw.commit * out.commit_loss + ent_w * out.entropy_loss
        row: dict[str, Any] = {"l1": l1.item(), "l2": l2.item(), "entropy_weight": ent_w}
        if lw.edge > 0:
            edge = edge_loss(recon, x)
            loss = loss + lw.edge * edge
            row["edge"] = edge.item()
        if self.perceptual is not None:
            with autocast(self.engine.device, amp):
                perc = self.perceptual(recon, x)
            loss = loss + lw.perceptual * perc
            row["perceptual"] = perc.item()
        if gan_on:
            self.disc.requires_grad_(False)
            with autocast(self.engine.device, amp):
                gl = g_loss(self.fwd_disc(recon).float(), self.cfg.gan.loss)
            loss = loss + self.cfg.gan.weight * gl
            self.disc.requires_grad_(True)
            row["g_loss"] = gl.item()
        return loss, out, recon, row

    def _discriminator_step(self, x: torch.Tensor, recon: torch.Tensor) -> dict[str, float]:
        gan = self.cfg.gan
        with autocast(self.engine.device, self.engine.amp):
            real = self.fwd_disc(x).float()
            fake = self.fwd_disc(recon.detach()).float()
        dl = d_loss(real, fake, gan.loss)
        reg = self.lecam(real, fake)
        norm = self.engine.step_optimizer(dl + gan.lecam_weight * reg, self.opt_d)
        return {
            "d_loss": dl.item(),
            "lecam": reg.item(),
            "logits_real": real.mean().item(),
            "logits_fake": fake.mean().item(),
            "d_grad_norm": float("nan") if norm is None else norm,
        }

    def train_step(self, frames: torch.Tensor, step: int) -> dict[str, Any]:
        from videopoet.data.sample import uint8_to_video

        x = uint8_to_video(frames).contiguous()  # uint8 (B, T, H, W, 3) → float (B, 3, T, H, W) in [-1, 1]
        lr = self._set_lr(step)
        gan_on = self.disc is not None and step >= self.cfg.gan.start
        self.model.train()
        loss, out, recon, row = self._generator_loss(x, step, gan_on)
        norm = self.engine.step_optimizer(loss, self.opt_g)
        if gan_on:
            row.update(self._discriminator_step(x, recon))
        self.ema.update(self.model)
        self._count_codes(out)
        row.update(
            loss=loss.item(),
            psnr=psnr(recon.detach().clamp(-1, 1), x).mean().item(),
            commit=out.commit_loss.item(),
            entropy_loss=out.entropy_loss.item(),
            per_sample_entropy=out.per_sample_entropy.item(),
            codebook_entropy=out.codebook_entropy.item(),
            lr=lr,
            grad_norm=float("nan") if norm is None else norm,
            gan_on=bool(gan_on),
        )
        if (step + 1) % self.cfg.monitor_every == 0:
            row.update(self.monitor(step + 1))
        return row

    # ------------------------------------------------------------------ codebook monitoring
    def _count_codes(self, out) -> None:
        idx = out.indices.detach().reshape(-1).cpu()
        self.counts += torch.bincount(idx, minlength=self.counts.numel()).double()
        self.bit_ones += out.bit_ones.detach().double().cpu()
        self.window += 1

    def monitor(self, step: int) -> dict[str, Any]:
        """Usage over the window and every rank; warns when it collapses (< 10% of the codes it could
        have used, or a bit whose entropy < 0.1 — a constant bit halves the usable codebook)."""
        from videopoet.tokenizers.quantizers import binary_entropy_bits

        counts = all_sum(self.counts).numpy()
        bit_h = binary_entropy_bits(all_sum(self.bit_ones) / max(1, self.window * self.engine.world))
        tokens, used, size = int(counts.sum()), int((counts > 0).sum()), counts.size
        p = counts[counts > 0] / max(tokens, 1)
        stats: dict[str, Any] = {
            "usage": used / size,
            "usage_of_possible": used / max(1, min(size, tokens)),
            "code_entropy_bits": float(-(p * np.log2(p)).sum()),
            "min_bit_entropy": float(bit_h.min()),
        }
        if stats["usage_of_possible"] < 0.1 or stats["min_bit_entropy"] < 0.1:
            log.warning("codebook collapse at step %d: %d of %d codes used over %d tokens, lowest bit "
                        "entropy %.3f (bit %d); raise loss.entropy or lower lr",
                        step, used, size, tokens, float(bit_h.min()), int(bit_h.argmin()))  # fmt: skip
            stats["collapse_warning"] = True
        self.counts.zero_()
        self.bit_ones.zero_()
        self.window = 0
        return stats

    # ------------------------------------------------------------------ previews and export
    def ema_model(self) -> VideoTokenizer:
        model = copy.deepcopy(self.model)
        self.ema.copy_to(model)
        return model.eval()

    @torch.no_grad()
    def write_samples(self, folder: Path) -> None:
        if not self.engine.is_main:
            return
        clips = self._preview_clips()
        if clips is None:
            return
        model = self.ema_model()
        with autocast(self.engine.device, self.engine.amp):
            recon = model(clips.to(self.engine.device), compute_losses=False).recon.float().clamp(-1, 1)
        folder.mkdir(parents=True, exist_ok=True)
        write_preview(folder / "preview", clips.cpu(), recon.cpu())  # preview.gif (+ .mp4)

    def _preview_clips(self) -> torch.Tensor | None:
        if self._preview is None:
            from videopoet.data.datasets import readable_items

            spec = self.cfg.heldout_spec()
            ds = _open(spec, self.cfg, split="heldout" if spec.startswith("synthetic") else "train")
            items = readable_items(ds, range(len(ds)), log=log.warning)
            vids = [clip_to_tensor(s, i) for i, s in itertools.islice(items, self.cfg.num_samples)]
            self._preview = torch.stack(vids) if vids else torch.empty(0)
        return self._preview if self._preview.numel() else None

    def export(self, folder: Path) -> None:
        """EMA weights → ``folder`` (fp16 component)."""
        if self.engine.is_main:
            self.ema_model().save_pretrained(folder, dtype=torch.float16)


def _open(spec: str, cfg: VideoTokenizerTrainConfig, *, split: str):
    from videopoet.data.datasets import open_dataset

    seed = cfg.seed if split == "train" else 0
    return open_dataset(spec, frames=cfg.frames, width=cfg.width, height=cfg.height, split=split, seed=seed)


def train(cfg: VideoTokenizerTrainConfig, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> int:  # fmt: skip
    """Run (or continue) training → exit status."""
    engine = Engine(cfg)
    return engine.run(
        VideoTokenizerRecipe(cfg, engine), resume=resume, overwrite=overwrite, progress=progress
    )


def main(args) -> int:
    return train_command(args, VideoTokenizerTrainConfig, train, "video tokenizer")
