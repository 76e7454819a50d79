"""Training loop for the MAGVIT-v2 video tokenizer (``videopoet train video-tokenizer``).

One step: reconstruct a batch, minimise L1 + L2 (+ edge) + commitment + annealed LFQ entropy penalty
(+ perceptual, + GAN after ``gan_start``), then — once the GAN is on — one discriminator step with LeCam
regularisation.

Determinism: the clips of step s are ``data[(s·B + i) mod N]`` (finite sets: under a per-epoch
permutation), so a resumed run sees exactly the clips an uninterrupted run would; checkpoints hold model,
EMA, discriminator, both optimizers, the LeCam EMAs and every RNG state. An unreadable clip is replaced by
the next readable index (logged with its reason), so one bad file never stops a run.

Runs with the core dependencies only (no av, pillow or scipy needed on the synthetic path): GIF previews
fall back to a small built-in writer when pillow is missing; mp4 is written only when av imports.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from videopoet.config import ConfigError, load_config, to_dict
from videopoet.errors import UserError
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
from videopoet.train import checkpoint as ckpt
from videopoet.train.common import (
    EMA,
    MetricsLogger,
    autocast,
    copy_matching_weights,
    cosine_lr,
    pick_device,
    seed_everything,
)

log = logging.getLogger("videopoet.train.video_tokenizer")

# A finite dataset is shuffled with a per-epoch permutation; beyond this size (the synthetic world's
# 2^31 − 1 "infinite" seeds) items are taken in order, since every seed is already a random clip.
MAX_PERMUTED = 1 << 24
MAX_RETRIES = 16  # consecutive unreadable items tried before a batch slot is left empty


@dataclass(kw_only=True)
class VideoTokenizerTrainConfig:
    out_dir: str = "runs/video_tokenizer"  # checkpoints/, metrics.jsonl, samples/, final/
    preset: str = "tiny"  # model preset (videopoet.tokenizers.video.PRESETS)
    model: dict[str, Any] = field(default_factory=dict)  # overrides of the preset's fields
    discriminator: dict[str, Any] = field(default_factory=dict)  # overrides of the discriminator preset
    data: str = "synthetic:train"  # dataset spec for videopoet.data.datasets.open_dataset
    sample_data: str = ""  # clips for preview reconstructions; "" = synthetic:heldout for synthetic data
    frames: int = 17  # clip length (1 + 4k)
    width: int = 128  # clip width (multiple of 8)
    height: int = 128  # clip height (multiple of 8)
    seed: int = 0  # model init, data order and augmentation seed
    init_from: str = ""  # fine-tune: start from a save_pretrained directory ("bundled" = shipped weights)
    batch_size: int = 16  # clips per step
    num_workers: int = 8  # DataLoader worker processes (synthetic clips render on the fly in numpy)
    max_steps: int = 3000  # total optimizer steps (the LR schedule spans these)
    max_minutes: float = 0.0  # wall-clock budget; stop cleanly with a checkpoint when spent (0 = none)
    stop_after: int = 0  # stop (checkpointed, resumable) after this many steps in one invocation (0 = off)
    lr: float = 3e-4  # peak learning rate (tokenizer and discriminator)
    betas: tuple[float, float] = (0.9, 0.99)  # AdamW betas
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_steps: int = 200  # linear LR warm-up
    min_lr_ratio: float = 0.1  # cosine decays to this fraction of lr
    grad_clip: float = 1.0  # global grad-norm clip (0 = off)
    l1_weight: float = 1.0  # reconstruction L1
    l2_weight: float = 1.0  # reconstruction L2 (MSE)
    edge_weight: float = 0.0  # L1 on horizontal/vertical pixel differences (thin detail; 0 = off)
    commit_weight: float = 0.25  # LFQ commitment ‖z − sg(q)‖²
    entropy_weight_start: float = 0.1  # LFQ entropy penalty weight at step 0 …
    entropy_weight: float = 0.05  # … annealed linearly to this value …
    entropy_anneal_steps: int = 2000  # … over these steps
    perceptual_weight: float = 0.0  # 0 = off; needs perceptual_weights
    perceptual_weights: str = ""  # local safetensors file of the feature network (never downloaded)
    perceptual_arch: str = "vgg16"  # feature network architecture (tokenizers.losses.FEATURE_NETWORKS)
    perceptual_frames: int = 4  # frames per clip fed to the perceptual network
    gan_weight: float = 0.1  # generator GAN loss weight (0 = no GAN)
    gan_start: int = 2000  # step at which the GAN (and LeCam) switch on
    gan_loss: str = "hinge"  # "hinge" or "non_saturating"
    lecam_weight: float = 0.001  # LeCam regularisation weight on the discriminator
    lecam_decay: float = 0.99  # EMA decay of LeCam's real/fake anchors
    ema_decay: float = 0.999  # EMA of tokenizer weights (exported to final/)
    precision: str = "bf16"  # "bf16" (autocast on CUDA) or "fp32"
    compile: bool = False  # torch.compile the tokenizer and discriminator
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    log_every: int = 10  # steps between metrics rows
    monitor_every: int = 100  # steps per codebook-usage window (warns on collapse)
    sample_every: int = 500  # steps between preview reconstructions (GIF, + mp4 when av imports)
    num_samples: int = 4  # clips in a preview
    ckpt_every: int = 500  # steps between checkpoints
    keep_checkpoints: int = 2  # newest checkpoints kept

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"preset {self.preset!r} unknown; choose one of {sorted(PRESETS)}")
        if (self.frames - 1) % 4 or self.frames < 1 or self.width % 8 or self.height % 8:
            raise ConfigError(
                f"clips must be 1 + 4k frames and multiples of 8 pixels, got "
                f"{self.frames} frames {self.width}x{self.height}"
            )
        if self.batch_size < 1 or self.max_steps < 1:
            raise ConfigError("batch_size and max_steps must be positive")
        if self.gan_loss not in ("hinge", "non_saturating"):
            raise ConfigError(f"gan_loss must be 'hinge' or 'non_saturating', got {self.gan_loss!r}")
        if self.precision not in ("bf16", "fp32"):
            raise ConfigError(f"precision must be 'bf16' or 'fp32', got {self.precision!r}")
        if self.perceptual_weight > 0 and not self.perceptual_weights:
            raise ConfigError("perceptual_weight > 0 needs perceptual_weights = a local .safetensors file")
        self.betas = tuple(self.betas)

    def model_config(self) -> VideoTokenizerConfig:
        try:
            return dataclasses.replace(PRESETS[self.preset], **self.model)
        except (TypeError, ValueError) as e:  # an unknown field, or a value the model config refuses
            raise ConfigError(f"model overrides {self.model}: {e}") from None

    def entropy_weight_at(self, step: int) -> float:
        frac = min(1.0, step / max(1, self.entropy_anneal_steps))
        return self.entropy_weight_start + frac * (self.entropy_weight - self.entropy_weight_start)


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


# ============================================================================================ data
class StepClips(Dataset):
    """Global position g = step·B + i → a video tensor (3, T, H, W), skipping unreadable items."""

    def __init__(self, dataset: Dataset, *, seed: int, shuffle: bool = True):
        self.dataset = dataset
        self.n = len(dataset)
        self.seed = seed
        self.shuffle = shuffle and self.n <= MAX_PERMUTED
        self._perm_epoch, self._perm = -1, None

    def index(self, g: int) -> int:
        epoch, pos = divmod(g, self.n)
        if not self.shuffle:
            return pos
        if epoch != self._perm_epoch:
            self._perm = np.random.RandomState((self.seed * 1_000_003 + epoch) % 2**32).permutation(self.n)
            self._perm_epoch = epoch
        return int(self._perm[pos])

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, g: int) -> tuple[torch.Tensor | None, list[str]]:
        from videopoet.data.sample import frames_to_tensor

        skipped: list[str] = []
        for attempt in range(MAX_RETRIES):
            i = self.index(g + attempt)
            try:
                sample = self.dataset[i]
            except Exception as e:  # a broken file must never end the run
                skipped.append(f"item {i}: {type(e).__name__}: {e}")
                continue
            if sample is None:
                skipped.append(f"item {i}: unreadable (see the dataset's log)")
                continue
            try:
                return frames_to_tensor(sample.frames), skipped
            except ValueError as e:
                skipped.append(f"item {i} ({sample.key}): {e}")
        return None, skipped


class StepBatches(Sampler):
    """Yields the global positions of steps start, start + 1, …, stop − 1."""

    def __init__(self, start: int, stop: int, batch_size: int):
        self.start, self.stop, self.batch_size = start, stop, batch_size

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield [step * self.batch_size + i for i in range(self.batch_size)]

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def _collate(items: list[tuple[torch.Tensor | None, list[str]]]) -> tuple[torch.Tensor | None, list[str]]:
    videos = [v for v, _ in items if v is not None]
    skipped = [s for _, reasons in items for s in reasons]
    return (torch.stack(videos) if videos else None), skipped


def _open(spec: str, cfg: VideoTokenizerTrainConfig, *, split: str = "train") -> Dataset:
    from videopoet.data.datasets import open_dataset

    return open_dataset(
        spec,
        frames=cfg.frames,
        width=cfg.width,
        height=cfg.height,
        split=split,
        seed=cfg.seed if split == "train" else 0,
    )


# ============================================================================================ previews
# ============================================================================================ training
class Trainer:
    def __init__(self, cfg: VideoTokenizerTrainConfig):
        self.cfg = cfg
        self.out = Path(cfg.out_dir)
        self.device = pick_device(cfg.device)
        seed_everything(cfg.seed)
        self.model_cfg = cfg.model_config()
        self.model = VideoTokenizer(self.model_cfg).to(self.device)
        if cfg.init_from:
            self._init_from(cfg.init_from)
        dpreset = cfg.preset if cfg.preset in DISCRIMINATOR_PRESETS else "tiny"
        try:
            dcfg = dataclasses.replace(DISCRIMINATOR_PRESETS[dpreset], **cfg.discriminator)
        except TypeError as e:
            raise ConfigError(f"discriminator overrides {cfg.discriminator}: {e}") from None
        self.use_gan = cfg.gan_weight > 0
        self.disc = Discriminator3D(dcfg).to(self.device) if self.use_gan else None
        self.lecam = LeCam(cfg.lecam_decay).to(self.device)
        self.ema = EMA(self.model, cfg.ema_decay)
        adam = dict(lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.opt_g = torch.optim.AdamW(self.model.parameters(), **adam)
        self.opt_d = torch.optim.AdamW(self.disc.parameters(), **adam) if self.disc else None
        self.perceptual = None
        if cfg.perceptual_weight > 0:
            net = load_feature_network(cfg.perceptual_weights, cfg.perceptual_arch).to(self.device)
            self.perceptual = PerceptualLoss(net, cfg.perceptual_frames)
        self.step = 0
        self.amp = cfg.precision == "bf16"
        self.fwd_model = torch.compile(self.model) if cfg.compile else self.model
        self.fwd_disc = torch.compile(self.disc) if cfg.compile and self.disc else self.disc
        self.counts = np.zeros(self.model_cfg.codebook_size, dtype=np.int64)
        self.bit_ones = torch.zeros(self.model_cfg.codebook_bits, dtype=torch.float64)
        self.window_steps = 0

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> Path:
        groups = {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "lecam": self.lecam.state_dict(),
        }
        state: dict[str, Any] = {"config": to_dict(self.cfg)}
        opt_t, opt_meta = ckpt.optimizer_to_flat(self.opt_g.state_dict())
        groups["opt_g"], state["opt_g"] = opt_t, opt_meta
        if self.disc is not None:
            groups["disc"] = self.disc.state_dict()
            opt_t, opt_meta = ckpt.optimizer_to_flat(self.opt_d.state_dict())
            groups["opt_d"], state["opt_d"] = opt_t, opt_meta
        groups = {k: v for k, v in groups.items() if v}  # safetensors cannot store an empty file
        return ckpt.save_checkpoint(
            self.out / "checkpoints", self.step, groups, state, keep=self.cfg.keep_checkpoints
        )

    def _init_from(self, directory: str) -> None:
        """Copy weights from a ``save_pretrained`` directory whose architecture matches this run's.

        A source with fewer LFQ bits (and otherwise the same architecture) is widened: see
        ``widen_codebook``.
        """
        source = VideoTokenizer.from_pretrained(None if directory == "bundled" else directory)
        what = f"init_from={directory!r}"
        try:
            if source.config.codebook_bits < self.model_cfg.codebook_bits:
                widen_codebook(self.model, source, what=what)
                log.info(
                    "initialised from %s, codebook widened from %d to %d bits (the new bits start unused)",
                    directory,
                    source.config.codebook_bits,
                    self.model_cfg.codebook_bits,
                )
                return
            copy_matching_weights(self.model, source, what=what)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        log.info("initialised from %s", directory)

    def resume(self) -> bool:
        path = ckpt.latest_checkpoint(self.out / "checkpoints")
        if path is None:
            return False
        groups, state = ckpt.load_checkpoint(path)
        self.model.load_state_dict(groups["model"])
        self.ema.load_state_dict(groups["ema"])
        if "lecam" in groups:
            self.lecam.load_state_dict(groups["lecam"])
        self.opt_g.load_state_dict(ckpt.optimizer_from_flat(groups.get("opt_g", {}), state["opt_g"]))
        if self.disc is not None:
            if "disc" not in groups:
                raise UserError(f"{path} has no discriminator but this config trains one (gan_weight > 0)")
            self.disc.load_state_dict(groups["disc"])
            self.opt_d.load_state_dict(ckpt.optimizer_from_flat(groups.get("opt_d", {}), state["opt_d"]))
        self.step = int(state["step"])
        log.info("resumed from %s at step %d", path, self.step)
        return True

    # ------------------------------------------------------------------ one step
    def train_step(self, x: torch.Tensor) -> dict[str, float]:
        cfg = self.cfg
        lr = cosine_lr(
            self.step,
            base_lr=cfg.lr,
            warmup=cfg.warmup_steps,
            total=cfg.max_steps,
            min_ratio=cfg.min_lr_ratio,
        )
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups if opt else []:
                group["lr"] = lr
        gan_on = self.disc is not None and self.step >= cfg.gan_start
        self.model.train()
        with autocast(self.device, self.amp):
            out = self.fwd_model(x)
        recon = out.recon.float()
        l1 = (recon - x).abs().mean()
        l2 = (recon - x).pow(2).mean()
        ent_w = cfg.entropy_weight_at(self.step)
        loss = cfg.l1_weight * l1 + cfg.l2_weight * l2 + cfg.commit_weight * out.commit_loss
        loss = loss + ent_w * out.entropy_loss
        row: dict[str, float] = {}
        if cfg.edge_weight > 0:
            edge = edge_loss(recon, x)
            loss = loss + cfg.edge_weight * edge
            row["edge"] = edge.item()
        if self.perceptual is not None:
            with autocast(self.device, self.amp):
                perc = self.perceptual(recon, x)
            loss = loss + cfg.perceptual_weight * perc
            row["perceptual"] = perc.item()
        if gan_on:
            self.disc.requires_grad_(False)
            with autocast(self.device, self.amp):
                gl = g_loss(self.fwd_disc(recon).float(), cfg.gan_loss)
            loss = loss + cfg.gan_weight * gl
            self.disc.requires_grad_(True)
            row["g_loss"] = gl.item()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip or float("inf"))
        self.opt_g.step()
        if gan_on:
            with autocast(self.device, self.amp):
                real = self.fwd_disc(x).float()
                fake = self.fwd_disc(recon.detach()).float()
            dl = d_loss(real, fake, cfg.gan_loss)
            reg = self.lecam(real, fake)
            self.opt_d.zero_grad(set_to_none=True)
            (dl + cfg.lecam_weight * reg).backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.disc.parameters(), cfg.grad_clip)
            self.opt_d.step()
            row.update(
                d_loss=dl.item(),
                lecam=reg.item(),
                logits_real=real.mean().item(),
                logits_fake=fake.mean().item(),
            )
        self.ema.update(self.model)
        # codebook monitoring window
        idx = out.indices.detach().reshape(-1).cpu()
        self.counts += np.bincount(idx.numpy(), minlength=self.model_cfg.codebook_size)
        self.bit_ones += out.bit_ones.detach().double().cpu()
        self.window_steps += 1
        with torch.no_grad():
            mse = (recon.detach().clamp(-1, 1) - x).pow(2).mean(dim=(1, 3, 4))  # (B, T)
            psnr = (10 * torch.log10(4.0 / mse.clamp_min(1e-10))).mean()
        row.update(
            loss=loss.item(),
            l1=l1.item(),
            l2=l2.item(),
            psnr=psnr.item(),
            commit=out.commit_loss.item(),
            entropy_loss=out.entropy_loss.item(),
            per_sample_entropy=out.per_sample_entropy.item(),
            codebook_entropy=out.codebook_entropy.item(),
            entropy_weight=ent_w,
            lr=lr,
            grad_norm=float(gnorm),
            gan_on=bool(gan_on),
        )
        return row

    def monitor(self) -> dict[str, float]:
        """Usage over the window; warns when it collapses (< 10% of the codes it could have used, or a
        bit whose entropy < 0.1 — a constant bit halves the usable codebook)."""
        from videopoet.tokenizers.quantizers import binary_entropy_bits

        tokens = int(self.counts.sum())
        used = int((self.counts > 0).sum())
        possible = min(self.model_cfg.codebook_size, tokens)
        p = self.counts[self.counts > 0] / max(tokens, 1)
        bit_h = binary_entropy_bits(self.bit_ones / max(1, self.window_steps))
        stats = {
            "usage": used / self.model_cfg.codebook_size,
            "usage_of_possible": used / max(1, possible),
            "code_entropy_bits": float(-(p * np.log2(p)).sum()),
            "min_bit_entropy": float(bit_h.min()),
        }
        if stats["usage_of_possible"] < 0.1 or stats["min_bit_entropy"] < 0.1:
            log.warning(
                "codebook collapse at step %d: %d of %d codes used over %d tokens, lowest bit entropy "
                "%.3f (bit %d); raise entropy_weight or lower lr",
                self.step,
                used,
                self.model_cfg.codebook_size,
                tokens,
                float(bit_h.min()),
                int(bit_h.argmin()),
            )
            stats["collapse_warning"] = True
        self.counts[:] = 0
        self.bit_ones.zero_()
        self.window_steps = 0
        return stats

    @torch.no_grad()
    def preview(self, clips: torch.Tensor) -> list[Path]:
        self.model.eval()
        with autocast(self.device, self.amp):
            recon = self.model(clips.to(self.device), compute_losses=False).recon.float().clamp(-1, 1)
        return write_preview(self.out / "samples" / f"step_{self.step:08d}", clips.cpu(), recon.cpu())

    def export(self) -> Path:
        """EMA weights → ``out_dir/final`` (fp16 safetensors + config.json)."""
        final = VideoTokenizer(self.model_cfg)
        self.ema.copy_to(final)
        return final.save_pretrained(self.out / "final", dtype=torch.float16)


def _preview_clips(cfg: VideoTokenizerTrainConfig) -> torch.Tensor | None:
    spec = cfg.sample_data or ("synthetic:heldout" if cfg.data.startswith("synthetic") else cfg.data)
    try:
        ds = _open(spec, cfg, split="heldout" if spec.startswith("synthetic") else "train")
    except (UserError, FileNotFoundError, ValueError) as e:
        log.warning("no preview clips (%s)", e)
        return None
    clips = StepClips(ds, seed=0, shuffle=False)
    vids = [v for v, _ in (clips[i] for i in range(min(cfg.num_samples, len(ds)))) if v is not None]
    return torch.stack(vids) if vids else None


def train(cfg: VideoTokenizerTrainConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Run (or continue) training; returns the output directory. Stops at max_steps or max_minutes."""
    t0 = time.time()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(cfg)
    if resume and not trainer.resume():
        log.info("no checkpoint in %s/checkpoints; starting from scratch", out)
    (out / "train_config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    dataset = _open(cfg.data, cfg)
    clips = StepClips(dataset, seed=cfg.seed)
    preview = _preview_clips(cfg)
    loader = DataLoader(
        clips,
        batch_sampler=StepBatches(trainer.step, cfg.max_steps, cfg.batch_size),
        collate_fn=_collate,
        num_workers=cfg.num_workers,
        pin_memory=trainer.device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if cfg.num_workers else None,
    )
    metrics = MetricsLogger(out / "metrics.jsonl")
    n_params = sum(p.numel() for p in trainer.model.parameters())
    log.info(
        "video tokenizer %s: %.2fM params, %d codes, device %s, steps %d → %d",
        cfg.preset,
        n_params / 1e6,
        trainer.model_cfg.codebook_size,
        trainer.device,
        trainer.step,
        cfg.max_steps,
    )
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=cfg.max_steps,
            initial=trainer.step,
            desc="video tokenizer",
            dynamic_ncols=True,
            disable=not sys.stderr.isatty(),
        )
    stopped_early = False
    first_step = trainer.step
    t_last, clips_since = time.time(), 0
    for batch, skipped in loader:
        for reason in skipped:
            log.warning("skipped a clip: %s", reason)
        if batch is None:
            log.warning("step %d: no readable clip in the batch; step skipped", trainer.step)
            trainer.step += 1
            continue
        x = batch.to(trainer.device, non_blocking=True)
        row = trainer.train_step(x)
        trainer.step += 1
        clips_since += x.shape[0]
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}", psnr=f"{row['psnr']:.2f}")
        if trainer.step % cfg.monitor_every == 0:
            row.update(trainer.monitor())
        if trainer.step % cfg.log_every == 0 or trainer.step == cfg.max_steps or "usage" in row:
            now = time.time()
            row["clips_per_s"] = clips_since / max(now - t_last, 1e-9)
            t_last, clips_since = now, 0
            row["skipped"] = len(skipped)
            metrics.log(trainer.step, **row)
        if preview is not None and cfg.sample_every and trainer.step % cfg.sample_every == 0:
            trainer.preview(preview)
        if cfg.ckpt_every and trainer.step % cfg.ckpt_every == 0 and trainer.step < cfg.max_steps:
            trainer.save()
        if cfg.stop_after and trainer.step - first_step >= cfg.stop_after and trainer.step < cfg.max_steps:
            log.info(
                "stop_after=%d steps reached at step %d; continue with --resume", cfg.stop_after, trainer.step
            )
            stopped_early = True
            break
        if cfg.max_minutes and (time.time() - t0) / 60 >= cfg.max_minutes and trainer.step < cfg.max_steps:
            log.info(
                "max_minutes=%s spent at step %d: checkpointing; continue with --resume",
                cfg.max_minutes,
                trainer.step,
            )
            stopped_early = True
            break
    if bar is not None:
        bar.close()
    trainer.save()
    if preview is not None:
        trainer.preview(preview)
    final = trainer.export()
    metrics.log(
        trainer.step,
        event="end",
        stopped_early=stopped_early,
        minutes=(time.time() - t0) / 60,
        final=str(final),
    )
    metrics.close()
    return out


def main(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    cfg = load_config(VideoTokenizerTrainConfig, args.config, args.set)
    out = train(cfg, resume=args.resume)
    print(f"video tokenizer: checkpoints in {out / 'checkpoints'}, EMA weights in {out / 'final'}")
    return 0
