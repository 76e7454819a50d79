"""Training loop of the SoundStream audio codec (``videopoet train audio-tokenizer``).

One step: encode → RVQ (EMA codebooks, quantizer dropout) → decode a batch of fixed-length crops; loss =
multi-scale mel + STFT + waveform L1 + negative SI-SNR (silent crops left out) + commitment; after
``disc_start`` steps a multi-scale STFT discriminator adds hinge adversarial and feature-matching losses.
bf16 autocast on CUDA (spectra, RVQ distances and losses stay float32), gradient clipping, weight EMA,
JSONL metrics, decoded WAV samples, atomic checkpoints with exact resume, a wall-clock budget, and at the
end the EMA weights exported in float16 to ``<out_dir>/final/`` (config.json + model.safetensors).

Data order is a pure function of the step: the crops of step s come from data position p = s +
data_offset (item g = p·batch_size + i, crop offset hashed from (seed, g)), so a resumed run sees exactly
the batches the uninterrupted run would have seen.

Guard (the known failure of GAN-trained codecs: losses exploding once the discriminator starts): a step
fails when its loss or gradient norm is not finite, or when its mel loss exceeds ``guard_jump_factor`` ×
the median of the last ``guard_window`` steps for ``guard_patience`` steps in a row. A failure is logged,
the run rolls back to the newest checkpoint, lowers both learning rates by ``guard_lr_backoff``, skips
the data of the failed stretch and continues; from the ``guard_disable_gan_after``-th failure the GAN
losses are switched off; after ``guard_max_failures`` failures the run stops cleanly (exit status 3). A
checkpoint is never written when any weight is not finite.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from videopoet.config import ConfigError, load_config, to_dict
from videopoet.data.media import write_wav
from videopoet.dsp import lowpass
from videopoet.errors import UserError
from videopoet.eval.metrics import multiscale_mel_distance, rvq_codebook_usage, si_snr
from videopoet.tokenizers.audio import PRESETS, AudioTokenizer
from videopoet.tokenizers.audio_losses import (
    DISC_SCALES,
    MultiScaleSpectralLoss,
    MultiScaleSTFTDiscriminator,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_hinge_loss,
    highband_loss,
    noise_envelope_loss,
)
from videopoet.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    optimizer_from_flat,
    optimizer_to_flat,
    save_checkpoint,
)
from videopoet.train.common import (
    EMA,
    MetricsLogger,
    autocast,
    copy_matching_weights,
    cosine_lr,
    pick_device,
    seed_everything,
)

log = logging.getLogger(__name__)
EXIT_GUARD_STOP = 3  # exit status when the guard gives up after too many failures
PERMUTE_BELOW = 10_000_000  # datasets shorter than this are shuffled per epoch; longer ones are read in order
SILENT_RMS = 1e-4  # crops quieter than this have no SI-SNR (left out of the SI-SNR loss)
SISNR_CAP_DB = 40.0  # soft cap of the SI-SNR loss per example


@dataclass(kw_only=True)
class AudioTrainConfig:
    out_dir: str = "runs/audio_tokenizer"  # checkpoints/, metrics.jsonl, samples/, final/ go here
    preset: str = "tiny"  # model preset from tokenizers/audio.py PRESETS
    model: dict[str, Any] = field(default_factory=dict)  # overrides of the preset's fields, e.g. channels
    data: str = "synthetic:train"  # training data spec (open_dataset): synthetic, shards or a video folder
    val_data: str = "synthetic:heldout"  # held-out data for periodic evaluation and samples
    val_clips: int = 16  # held-out clips evaluated at every eval
    clip_frames: int = 17  # clip length in video frames at 8 fps (17 → 34,000 samples)
    frame_size: int = 16  # width = height the clips' pictures are rendered/decoded at (audio-only training)
    segment_samples: int = 16000  # training crop length in samples (a multiple of the codec's hop, 320)
    batch_size: int = 32  # crops per step
    steps: int = 6000  # optimizer steps
    lr: float = 3e-4  # codec learning rate (Adam), cosine-decayed after warm-up
    disc_lr: float = 3e-4  # discriminator learning rate
    betas: tuple[float, float] = (0.5, 0.9)  # Adam betas (GAN-friendly, as in SoundStream/EnCodec)
    warmup_steps: int = 200  # linear LR warm-up
    min_lr_ratio: float = 0.1  # cosine schedule floor (fraction of lr)
    grad_clip: float = 1.0  # max global gradient norm (codec and discriminator separately)
    ema_decay: float = 0.999  # EMA of the codec weights (warmed up: min(decay, (1 + step) / (10 + step)))
    disc_start: int = 2000  # step at which the discriminator, adversarial and feature-matching losses start
    disc_channels: int = 32  # width of each STFT sub-discriminator
    # STFT windows of the sub-discriminators (EnCodec uses 2048/1024/512/256/128 at 24 kHz); windows
    # shorter than a transient's decay (the world's clicks decay in 8 ms = 128 samples) let it judge them.
    disc_scales: tuple[int, ...] = DISC_SCALES
    w_mel: float = 1.0  # multi-scale mel loss weight
    w_stft: float = 1.0  # multi-scale STFT loss weight
    w_wave: float = 1.0  # waveform L1 weight
    w_sisnr: float = 1.0  # weight of −SI-SNR/10 (dB/10), the phase-aware waveform loss; 0 = off
    w_highband: float = 0.0  # linear-magnitude STFT L1 above highband_hz (8 ms window): loud transients
    highband_hz: float = 4000.0  # lower edge of the band that w_highband compares
    # squared error of the noise branch's log gains to the target's band envelope (model.noise_bands > 0)
    w_noise: float = 1.0
    # Waveform L1 and SI-SNR compare the signals below this frequency only (0 = the full band). Above it,
    # where the content is noise (the world's bounce clicks own 6.1-8 kHz), no deterministic decoder can
    # match the phase, and a phase-aware loss is lowest when the decoder leaves the noise out; there the
    # magnitude losses (mel, STFT, high band) and the discriminator supervise alone.
    wave_max_hz: float = 0.0
    # Fraction of training crops placed around the clip's strongest transient (the peak of its first
    # difference, i.e. its loudest high-frequency burst) instead of at random: short events such as the
    # world's bounce clicks fill ~1% of the audio and are otherwise nearly absent from the losses.
    transient_crop_fraction: float = 0.0
    train_decoder_only: bool = False  # freeze encoder + quantizer (codes stay as they are), tune the decoder
    w_commit: float = 1.0  # RVQ commitment loss weight
    w_adv: float = 1.0  # adversarial (hinge) loss weight, after disc_start
    w_feat: float = 3.0  # feature-matching loss weight, after disc_start
    restart_until: float = 0.9  # dead-code restarts stop after this fraction of the steps
    log_every: int = 25  # steps between metrics lines
    eval_every: int = 500  # steps between held-out evaluations (0 = only at the end)
    sample_every: int = 1000  # steps between decoded WAV samples (0 = only at the end)
    ckpt_every: int = 500  # steps between checkpoints (also the guard's rollback points)
    keep_checkpoints: int = 2  # newest checkpoints kept on disk
    num_workers: int = 0  # DataLoader workers (crops are rendered/decoded in them)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "bf16"  # bf16 (autocast on CUDA; ignored on CPU) | fp32
    seed: int = 0  # seeds weights, data order and crops
    init_from: str = ""  # fine-tune: start from a save_pretrained directory ("bundled" = shipped weights)
    max_minutes: float = 0.0  # wall-clock budget; when reached: checkpoint, export, stop (0 = none)
    stop_after_steps: int = 0  # train in chunks: checkpoint and stop after this many steps (resume later)
    guard_jump_factor: float = 4.0  # mel loss above this × recent median counts as a jump
    guard_window: int = 50  # recent steps whose median mel loss the jump test compares against
    guard_patience: int = 3  # consecutive jumping steps that make a failure
    guard_lr_backoff: float = 0.5  # learning rates are multiplied by this after each failure
    guard_disable_gan_after: int = 2  # from this many failures on, the GAN losses stay off
    guard_max_failures: int = 4  # stop cleanly once this many failures have happened
    debug_nan_steps: tuple[int, ...] = ()  # testing hook: make the loss NaN once at each of these steps

    def validate(self) -> AudioTrainConfig:
        if self.preset not in PRESETS:
            raise ConfigError(f"preset {self.preset!r} unknown; choose one of {sorted(PRESETS)}")
        hop = PRESETS[self.preset].hop
        if self.segment_samples <= 0 or self.segment_samples % hop:
            raise ConfigError(
                f"segment_samples must be a positive multiple of the hop ({hop}), got {self.segment_samples}"
            )
        if self.batch_size < 1 or self.steps < 1:
            raise ConfigError("batch_size and steps must be at least 1")
        if self.precision not in ("bf16", "fp32"):
            raise ConfigError(f"precision must be 'bf16' or 'fp32', got {self.precision!r}")
        if self.ckpt_every < 1:
            raise ConfigError("ckpt_every must be at least 1 (checkpoints are the guard's rollback points)")
        if not 0.0 <= self.transient_crop_fraction <= 1.0:
            raise ConfigError(
                f"transient_crop_fraction must be in [0, 1], got {self.transient_crop_fraction}"
            )
        if not self.disc_scales or any(int(n) < 16 or int(n) % 4 for n in self.disc_scales):
            raise ConfigError(
                f"disc_scales must be STFT windows >= 16 and divisible by 4, got {self.disc_scales}"
            )
        if self.wave_max_hz < 0:
            raise ConfigError(f"wave_max_hz must be >= 0 (0 = full band), got {self.wave_max_hz}")
        if not 0 < self.guard_lr_backoff <= 1:
            raise ConfigError(f"guard_lr_backoff must be in (0, 1], got {self.guard_lr_backoff}")
        return self


# ---------------------------------------------------------------------------------------------- data
def _hash_int(*parts: int) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class SegmentDataset(Dataset):
    """Item g → a ``segment_samples`` crop (float32 (N,)) of clip perm(g), or None with a reason."""

    def __init__(self, base: Dataset, *, segment_samples: int, seed: int, transient_fraction: float = 0.0):
        self.base, self.segment, self.seed = base, segment_samples, seed
        self.transient_fraction = transient_fraction
        self.n = len(base)
        self._perm: tuple[int, np.ndarray] | None = None

    def clip_index(self, g: int) -> int:
        if self.n >= PERMUTE_BELOW:
            return g % self.n
        epoch, i = divmod(g, self.n)
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n))
        return int(self._perm[1][i])

    def __len__(self) -> int:
        return 2**62  # indexed by global item number; the step decides which items are read

    def __getitem__(self, g: int):
        idx = self.clip_index(g)
        sample = self.base[idx]
        if sample is None:
            return None, f"item {idx}: unreadable (see the dataset's log)"
        if not sample.has_audio:
            return None, f"{sample.key}: no audio track"
        audio = np.asarray(sample.audio, dtype=np.float32)
        if audio.shape[0] < self.segment:
            return (
                None,
                f"{sample.key}: {audio.shape[0]} samples, shorter than the {self.segment}-sample crop",
            )
        h = _hash_int(self.seed, g)
        last = audio.shape[0] - self.segment
        if (h % 10_000) < self.transient_fraction * 10_000:
            # the strongest transient lands at a random place in the middle three quarters of the crop
            peak = int(np.argmax(np.abs(np.diff(audio))))
            start = min(max(peak - self.segment // 8 - (h >> 16) % (3 * self.segment // 4), 0), last)
        else:
            start = h % (last + 1)
        return np.clip(audio[start : start + self.segment], -1.0, 1.0), ""


class StepBatches(torch.utils.data.Sampler):
    """Yields, for data positions p = first, first+1, ..., the item numbers [p·B, (p+1)·B)."""

    def __init__(self, first: int, batch_size: int):
        self.first, self.batch_size = first, batch_size

    def __iter__(self):
        p = self.first
        while True:
            yield list(range(p * self.batch_size, (p + 1) * self.batch_size))
            p += 1


class SegmentBatch(NamedTuple):
    audio: torch.Tensor | None  # float32 (B', 1, segment) of the readable crops; None when none was
    skipped: list[str]  # reasons for the crops left out


def collate_segments(items) -> SegmentBatch:
    good = [a for a, _ in items if a is not None]
    skipped = [r for a, r in items if a is None]
    audio = torch.from_numpy(np.stack(good))[:, None] if good else None  # (B', N) → (B', 1, N)
    return SegmentBatch(audio, skipped)


def make_loader(segments: SegmentDataset, first_position: int, cfg: AudioTrainConfig, device: torch.device):
    # A private generator: creating the iterator must not consume the global RNG (exact resume).
    return iter(
        DataLoader(
            segments,
            batch_sampler=StepBatches(first_position, cfg.batch_size),
            collate_fn=collate_segments,
            num_workers=cfg.num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
            prefetch_factor=4 if cfg.num_workers > 0 else None,
            generator=torch.Generator(),
        )
    )


def open_audio_dataset(spec: str, cfg: AudioTrainConfig) -> Dataset:
    from videopoet.data.datasets import open_dataset

    return open_dataset(spec, frames=cfg.clip_frames, width=cfg.frame_size, height=cfg.frame_size)


def load_val_clips(cfg: AudioTrainConfig, sample_rate: int) -> tuple[torch.Tensor, list[str]]:
    """The first ``val_clips`` readable held-out clips with audio: (V, 1, N) float32 and their keys."""
    ds = open_audio_dataset(cfg.val_data, cfg)
    waves, keys = [], []
    for i in range(len(ds)):
        if len(waves) >= cfg.val_clips:
            break
        s = ds[i]
        if s is None or not s.has_audio:
            continue
        if s.sample_rate != sample_rate:
            raise UserError(f"{s.key}: audio at {s.sample_rate} Hz, the codec needs {sample_rate} Hz")
        waves.append(torch.from_numpy(np.clip(np.asarray(s.audio, np.float32), -1, 1)))
        keys.append(s.key)
    if not waves:
        raise UserError(
            f"val_data {cfg.val_data!r} has no clip with audio; point val_data at data with sound"
        )
    return torch.stack(waves)[:, None], keys


# ---------------------------------------------------------------------------------------------- WAV
# ---------------------------------------------------------------------------------------------- trainer
@dataclass
class GuardState:
    data_offset: int = 0  # data position = step + data_offset (grows when a failed stretch is skipped)
    lr_scale: float = 1.0  # product of the guard's LR back-offs
    gan_enabled: bool = True  # False once the guard has switched the GAN off
    failures: int = 0  # failures so far
    history: list[float] = field(default_factory=list)  # recent mel losses (jump test)
    jumps: int = 0  # consecutive jumping steps


class GuardFailure(Exception):
    pass


class StepResult(NamedTuple):
    metrics: dict[str, float]  # scalar losses and diagnostics of the step
    skipped: list[str]  # reasons for crops left out of the batch


class AudioTrainer:
    """Holds the models, optimizers and guard state; ``run()`` trains to ``cfg.steps``."""

    def __init__(self, cfg: AudioTrainConfig, *, resume: bool = False, progress: bool = True):
        self.cfg = cfg.validate()
        self.out = Path(cfg.out_dir)
        self.ckpt_root = self.out / "checkpoints"
        self.device = pick_device(cfg.device)
        self.progress = progress
        if not resume and latest_checkpoint(self.ckpt_root) is not None:
            raise UserError(
                f"{self.out} already holds checkpoints; pass --resume to continue or pick a new out_dir"
            )
        seed_everything(cfg.seed)
        try:
            self.model = AudioTokenizer.from_preset(cfg.preset, **cfg.model).to(self.device)
        except (TypeError, ValueError) as e:  # an unknown field, or a value the model config refuses
            raise ConfigError(f"model overrides {cfg.model}: {e}") from None
        self.mcfg = self.model.config
        if cfg.init_from and not resume:
            self._init_from(cfg.init_from)
        if cfg.segment_samples % self.mcfg.hop:
            raise ConfigError(f"segment_samples must be a multiple of the hop ({self.mcfg.hop})")
        self.disc = MultiScaleSTFTDiscriminator(scales=tuple(cfg.disc_scales), channels=cfg.disc_channels).to(
            self.device
        )
        self.recon_loss = MultiScaleSpectralLoss(sample_rate=self.mcfg.sample_rate).to(self.device)
        if cfg.train_decoder_only:
            self.model.encoder.requires_grad_(False)
            self.model.quantizer.requires_grad_(False)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.opt_g = torch.optim.Adam(trainable, lr=cfg.lr, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.disc_lr, betas=cfg.betas)
        self.ema = EMA(self.model, decay=cfg.ema_decay)
        self.guard = GuardState()
        self.step = 0
        self.injected: set[int] = set()  # debug_nan_steps already fired (in memory: a transient fault)
        self.segments = SegmentDataset(
            open_audio_dataset(cfg.data, cfg),
            segment_samples=cfg.segment_samples,
            seed=cfg.seed,
            transient_fraction=cfg.transient_crop_fraction,
        )
        self.val_wave, self.val_keys = load_val_clips(cfg, self.mcfg.sample_rate)
        self.metrics = MetricsLogger(self.out / "metrics.jsonl")
        if resume:
            path = latest_checkpoint(self.ckpt_root)
            if path is None:
                raise UserError(f"--resume: no checkpoint in {self.ckpt_root}; start without --resume")
            self._load(path)
            self._event("resumed", checkpoint=path.name)
        else:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
            self._save()  # step 0: the guard always has a rollback point

    # ------------------------------------------------------------------ checkpoints
    def _init_from(self, directory: str) -> None:
        """Copy weights (codebooks included) from a ``save_pretrained`` directory of the same architecture."""
        source = AudioTokenizer.from_pretrained(None if directory == "bundled" else directory)
        try:
            added = copy_matching_weights(
                self.model, source, what=f"init_from={directory!r}", added=("decoder.noise.",)
            )
        except ValueError as e:
            raise ConfigError(str(e)) from None
        for level in self.model.quantizer.levels:  # with this run's dead-code threshold
            level.fresh_statistics()
        if added:
            _say(f"init_from={directory}: {len(added)} tensors of the new noise branch start untrained")

    def _tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        g_t, g_meta = optimizer_to_flat(self.opt_g.state_dict())
        d_t, d_meta = optimizer_to_flat(self.opt_d.state_dict())
        self._opt_meta = {"opt_g": g_meta, "opt_d": d_meta}
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "disc": self.disc.state_dict(),
            "opt_g": g_t,
            "opt_d": d_t,
        }

    def _all_finite(self) -> bool:
        groups = [self.model.state_dict(), self.ema.state_dict(), self.disc.state_dict()]
        return all(bool(torch.isfinite(v).all()) for g in groups for v in g.values() if v.is_floating_point())

    def _save(self) -> Path:
        if not self._all_finite():
            raise GuardFailure("non-finite weights; refusing to write a checkpoint")
        tensors = self._tensors()
        state = {
            "opt": self._opt_meta,
            "guard": dataclasses.asdict(self.guard),
            "config": to_dict(self.cfg),
        }
        return save_checkpoint(self.ckpt_root, self.step, tensors, state, keep=self.cfg.keep_checkpoints)

    def _load(self, path: Path) -> None:
        groups, state = load_checkpoint(path)
        self.model.load_state_dict(groups["model"])
        self.ema.load_state_dict(groups["ema"])
        self.disc.load_state_dict(groups["disc"])
        self.opt_g.load_state_dict(optimizer_from_flat(groups.get("opt_g", {}), state["opt"]["opt_g"]))
        self.opt_d.load_state_dict(optimizer_from_flat(groups.get("opt_d", {}), state["opt"]["opt_d"]))
        self.guard = GuardState(**state["guard"])
        self.step = int(state["step"])

    # ------------------------------------------------------------------ one step
    def _lr(self, base: float) -> float:
        c = self.cfg
        return cosine_lr(
            self.step, base_lr=base, warmup=c.warmup_steps, total=c.steps, min_ratio=c.min_lr_ratio
        )

    def gan_active(self) -> bool:
        return (
            self.guard.gan_enabled
            and self.step >= self.cfg.disc_start
            and (self.cfg.w_adv or self.cfg.w_feat)
        )

    def train_step(self, wave: torch.Tensor) -> dict[str, float]:
        """One optimizer step on wave (B, 1, N); raises GuardFailure instead of applying a bad update."""
        c, dev = self.cfg, self.device
        wave = wave.to(dev, non_blocking=True)
        lr_g, lr_d = self._lr(c.lr) * self.guard.lr_scale, self._lr(c.disc_lr) * self.guard.lr_scale
        for group in self.opt_g.param_groups:
            group["lr"] = lr_g
        for group in self.opt_d.param_groups:
            group["lr"] = lr_d
        self.model.train()
        if c.train_decoder_only:  # fixed codes: no codebook EMA, restarts or quantizer dropout
            self.model.encoder.eval()
            self.model.quantizer.eval()
        self.model.quantizer.restart_dead_codes = self.step < c.restart_until * c.steps
        gan = bool(self.gan_active())
        use_amp = c.precision == "bf16"
        with autocast(dev, use_amp):
            out = self.model(wave)
        recon = out.recon.float()
        loss, m = reconstruction_loss(
            c,
            self.recon_loss,
            recon,
            wave,
            out.commitment_loss,
            sample_rate=self.mcfg.sample_rate,
            noise_log_gains=out.noise_log_gains,
            noise_min_hz=self.mcfg.noise_min_hz,
        )
        if gan:
            self.disc.requires_grad_(False)
            with autocast(dev, use_amp):
                fake_logits, fake_feats = self.disc(recon)
                with torch.no_grad():
                    _, real_feats = self.disc(wave)
            adv = generator_hinge_loss(fake_logits)
            feat = feature_matching_loss(real_feats, fake_feats)
            loss = loss + c.w_adv * adv + c.w_feat * feat
            m.update(adv=adv.item(), feat=feat.item())
            self.disc.requires_grad_(True)
        if self.step in c.debug_nan_steps and self.step not in self.injected:
            self.injected.add(self.step)
            loss = loss * float("nan")
        m["loss"] = loss.item()
        self._check(m)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip).item()
        if not math.isfinite(gnorm):
            raise GuardFailure(f"non-finite codec gradient norm at step {self.step}")
        self.opt_g.step()
        m.update(grad_norm=gnorm, lr=lr_g)
        if gan:
            self.opt_d.zero_grad(set_to_none=True)
            with autocast(dev, use_amp):
                real_logits, _ = self.disc(wave)
                fake_logits, _ = self.disc(recon.detach())
            d_loss = discriminator_hinge_loss(real_logits, fake_logits)
            if not math.isfinite(d_loss.item()):
                raise GuardFailure(f"non-finite discriminator loss at step {self.step}")
            d_loss.backward()
            dnorm = torch.nn.utils.clip_grad_norm_(self.disc.parameters(), c.grad_clip).item()
            if not math.isfinite(dnorm):
                raise GuardFailure(f"non-finite discriminator gradient norm at step {self.step}")
            self.opt_d.step()
            m.update(d_loss=d_loss.item(), d_grad_norm=dnorm)
        self.ema.decay = min(c.ema_decay, (1 + self.step) / (10 + self.step))
        self.ema.update(self.model)
        m["restarts"] = float(sum(self.model.quantizer.last_restarts))
        m["levels_used"] = out.num_levels.float().mean().item()
        return m

    def _check(self, m: dict[str, float]) -> None:
        """Raise GuardFailure for a non-finite loss or a sustained jump of the mel loss."""
        g, c = self.guard, self.cfg
        if not math.isfinite(m["loss"]):
            raise GuardFailure(f"non-finite loss at step {self.step}: " + json.dumps(m))
        mel = m["mel"]
        if len(g.history) >= max(2, c.guard_window // 2):
            median = statistics.median(g.history)
            if mel > c.guard_jump_factor * median:
                g.jumps += 1
                if g.jumps >= c.guard_patience:
                    raise GuardFailure(
                        f"mel loss {mel:.4g} above {c.guard_jump_factor}× the recent median {median:.4g} "
                        f"for {g.jumps} steps at step {self.step}"
                    )
                return  # a jumping step does not enter the history
        g.jumps = 0
        g.history = (g.history + [mel])[-c.guard_window :]

    def _recover(self, failed_step: int, reason: str) -> bool:
        """Roll back after a failure; False when the run must stop."""
        kept = dataclasses.replace(self.guard)
        kept.failures += 1
        self._event("guard_failure", failed_step=failed_step, reason=reason, failures=kept.failures)
        if kept.failures >= self.cfg.guard_max_failures:
            self.guard.failures = kept.failures
            self._event("guard_stop", failures=kept.failures)
            return False
        path = latest_checkpoint(self.ckpt_root)
        self._load(path)
        # The guard's own decisions survive the rollback; the replay skips the data that led to failure.
        self.guard.failures = kept.failures
        self.guard.lr_scale = kept.lr_scale * self.cfg.guard_lr_backoff
        self.guard.gan_enabled = kept.gan_enabled and kept.failures < self.cfg.guard_disable_gan_after
        self.guard.data_offset = kept.data_offset + (failed_step + 1 - self.step)
        self.guard.jumps = 0
        self._event(
            "guard_rollback",
            checkpoint=path.name,
            lr_scale=self.guard.lr_scale,
            gan_enabled=self.guard.gan_enabled,
            data_offset=self.guard.data_offset,
        )
        return True

    # ------------------------------------------------------------------ evaluation and samples
    def ema_model(self) -> AudioTokenizer:
        """EMA encoder/decoder weights with the live codebooks.

        The codebooks are already EMAs of the data; averaging them again would blend a restarted code with
        the dead vector it replaced, so the exported codec keeps the live code vectors.
        """
        m = copy.deepcopy(self.model)
        self.ema.copy_to(m)
        m.quantizer.load_state_dict(self.model.quantizer.state_dict())
        return m.eval()

    @torch.no_grad()
    def evaluate(self, model: AudioTokenizer | None = None) -> dict[str, Any]:
        model = model or self.ema_model()
        snrs, mels, codes = [], [], []
        for i in range(0, self.val_wave.shape[0], 8):
            w = self.val_wave[i : i + 8].to(self.device)
            c = model.encode(w)
            y = model.decode(c, length=w.shape[-1])
            snrs.append(si_snr(y.cpu(), w.cpu())[:, 0])
            mels.append(multiscale_mel_distance(y.cpu(), w.cpu(), sample_rate=self.mcfg.sample_rate))
            codes.append(c.cpu())
        usage = rvq_codebook_usage(torch.cat(codes), self.mcfg.codebook_size)
        return {
            "val_si_snr": float(torch.cat(snrs).mean()),
            "val_mel_distance": float(torch.cat(mels).mean()),
            "val_usage": [round(u["usage"], 4) for u in usage],
            "val_entropy_bits": [round(u["entropy_bits"], 3) for u in usage],
        }

    @torch.no_grad()
    def write_samples(self, model: AudioTokenizer | None = None, count: int = 2) -> list[Path]:
        model = model or self.ema_model()
        sr = self.mcfg.sample_rate
        folder = self.out / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(min(count, self.val_wave.shape[0])):
            w = self.val_wave[i : i + 1].to(self.device)
            y = model.decode(model.encode(w), length=w.shape[-1])
            orig = folder / f"val{i}_original.wav"
            if not orig.exists():
                write_wav(orig, w[0, 0].cpu().numpy(), sr)
            paths.append(folder / f"step_{self.step:08d}_val{i}.wav")
            write_wav(paths[-1], y[0, 0].cpu().numpy(), sr)
        return paths

    def export(self) -> Path:
        model = self.ema_model()
        if not all(
            bool(torch.isfinite(p).all()) for p in model.state_dict().values() if p.is_floating_point()
        ):
            raise GuardFailure("EMA weights are not finite; nothing exported")
        return model.save_pretrained(self.out / "final", dtype=torch.float16)

    # ------------------------------------------------------------------ loop
    def _event(self, name: str, **info) -> None:
        self.metrics.log(self.step, event=name, **info)
        _say(f"[audio-tokenizer] step {self.step}: {name} {json.dumps(info)}")

    def run(self) -> int:
        c = self.cfg
        t0 = time.time()
        loader = make_loader(self.segments, self.step + self.guard.data_offset, c, self.device)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(
                total=c.steps, initial=self.step, desc="audio tokenizer", unit="step", dynamic_ncols=True
            )
        status = 0
        first_step = self.step
        try:
            while self.step < c.steps:
                if c.stop_after_steps and self.step - first_step >= c.stop_after_steps:
                    break
                if c.max_minutes and (time.time() - t0) / 60 >= c.max_minutes:
                    self._event("time_budget_reached", minutes=round((time.time() - t0) / 60, 2))
                    break
                batch = next(loader)
                if batch.skipped:
                    self._event("skipped_crops", count=len(batch.skipped), reasons=batch.skipped[:4])
                if batch.audio is None:
                    self.step += 1  # nothing readable at this data position: move on
                    continue
                try:
                    m = self.train_step(batch.audio)
                    self.step += 1
                    if self.step % c.ckpt_every == 0:
                        self._save()
                except GuardFailure as e:
                    failed = self.step
                    if not self._recover(failed, str(e)):
                        status = EXIT_GUARD_STOP
                        break
                    loader = make_loader(self.segments, self.step + self.guard.data_offset, c, self.device)
                    if bar is not None:
                        bar.n = self.step
                        bar.refresh()
                    continue
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(mel=f"{m['mel']:.3f}", loss=f"{m['loss']:.3f}")
                if self.step % c.log_every == 0 or self.step == 1:
                    self.metrics.log(
                        self.step, **m, gan=float(self.gan_active()), lr_scale=self.guard.lr_scale
                    )
                if c.eval_every and self.step % c.eval_every == 0:
                    self.metrics.log(self.step, event="eval", **self.evaluate())
                if c.sample_every and self.step % c.sample_every == 0:
                    self.write_samples()
        finally:
            if bar is not None:
                bar.close()
        if status == EXIT_GUARD_STOP:
            _say(
                f"[audio-tokenizer] stopped after {self.guard.failures} guard failures; the newest good "
                f"checkpoint is {latest_checkpoint(self.ckpt_root)} (metrics.jsonl has the reasons)"
            )
            self.metrics.close()
            return status
        if latest_checkpoint(self.ckpt_root).name != f"step_{self.step:08d}":
            self._save()
        if self.step < c.steps and not (c.max_minutes and (time.time() - t0) / 60 >= c.max_minutes):
            self._event("paused", next="run again with --resume to continue")
            self.metrics.close()
            return 0
        final_eval = self.evaluate()
        live = {f"live_{k}": v for k, v in self.evaluate(copy.deepcopy(self.model).eval()).items()}
        self.metrics.log(self.step, event="final_eval", **final_eval, **live)
        self.write_samples()
        path = self.export()
        (path / "train_eval.json").write_text(json.dumps({"step": self.step, **final_eval}, indent=2) + "\n")
        self._event("exported", path=str(path), minutes=round((time.time() - t0) / 60, 2), **final_eval)
        self.metrics.close()
        return 0


def reconstruction_loss(
    c: AudioTrainConfig,
    spectral: MultiScaleSpectralLoss,
    recon: torch.Tensor,
    wave: torch.Tensor,
    commitment: torch.Tensor,
    *,
    sample_rate: int,
    noise_log_gains: torch.Tensor | None = None,
    noise_min_hz: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The codec's non-adversarial loss with ``c``'s weights: mel + STFT + waveform L1 + commitment, then the
    high-band, SI-SNR and noise-envelope terms when weighted (the last needs the noise branch's log gains);
    waveform L1 and SI-SNR below ``c.wave_max_hz`` when it is set.
    Returns (loss, the terms as floats for the metrics log)."""
    rl = spectral(recon, wave)
    wave_l1, wx, wy = rl.waveform, recon, wave
    if c.wave_max_hz:  # phase-aware losses on the band below wave_max_hz only
        wx = lowpass(recon, c.wave_max_hz, sample_rate)
        wy = lowpass(wave, c.wave_max_hz, sample_rate)
        wave_l1 = (wx - wy).abs().mean()
    loss = c.w_mel * rl.mel + c.w_stft * rl.stft + c.w_wave * wave_l1 + c.w_commit * commitment
    m = {
        "mel": rl.mel.item(),
        "stft": rl.stft.item(),
        "wave_l1": wave_l1.item(),
        "commit": commitment.item(),
    }
    if c.w_highband:
        hb = highband_loss(recon, wave, sample_rate=sample_rate, min_hz=c.highband_hz)
        loss = loss + c.w_highband * hb
        m["highband"] = hb.item()
    if c.w_noise and noise_log_gains is not None:
        env = noise_envelope_loss(noise_log_gains, wave, min_hz=noise_min_hz, sample_rate=sample_rate)
        loss = loss + c.w_noise * env
        m["noise_env"] = env.item()
    if c.w_sisnr:
        snr = si_snr_loss(wx, wy)
        loss = loss + c.w_sisnr * snr
        m["neg_sisnr_db"] = 10 * snr.item()
    return loss, m


def si_snr_loss(recon: torch.Tensor, target: torch.Tensor, *, cap_db: float = SISNR_CAP_DB) -> torch.Tensor:
    """−SI-SNR / 10 (1.0 = 10 dB) averaged over the non-silent examples; differentiable, float32.

    Silent references (rms < SILENT_RMS) have no SI-SNR and are left out (the spectral and waveform losses
    still ask for silence there); a soft cap at ``cap_db`` stops nearly perfect examples from dominating:
    SNR = 10·log10(‖t‖² / (‖n‖² + 10^(−cap/10)·‖t‖²)).
    """
    x = recon.reshape(-1, recon.shape[-1]).float()
    y = target.reshape(-1, target.shape[-1]).float()
    x = x - x.mean(-1, keepdim=True)
    y = y - y.mean(-1, keepdim=True)
    energy = y.pow(2).sum(-1)  # (B,)
    loud = energy > SILENT_RMS**2 * y.shape[-1]
    if not bool(loud.any()):
        return recon.new_zeros((), dtype=torch.float32)
    x, y, energy = x[loud], y[loud], energy[loud]
    proj = (x * y).sum(-1, keepdim=True) / energy[:, None] * y
    t = proj.pow(2).sum(-1)
    noise = (x - proj).pow(2).sum(-1)
    snr = 10 * torch.log10((t + 1e-12) / (noise + 10 ** (-cap_db / 10) * t + 1e-12))
    return -snr.mean() / 10


def _say(text: str) -> None:
    try:
        from tqdm import tqdm

        tqdm.write(text)
    except ImportError:  # pragma: no cover - tqdm is a core dependency
        print(text, flush=True)


def main(args) -> int:
    cfg = load_config(AudioTrainConfig, args.config, args.set)
    trainer = AudioTrainer(cfg, resume=args.resume)
    return trainer.run()
