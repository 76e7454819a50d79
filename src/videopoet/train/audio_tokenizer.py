"""The SoundStream audio codec's recipe for the training engine (``videopoet train audio-tokenizer``).

One step: encode → RVQ (EMA codebooks, quantizer dropout) → decode a batch of fixed-length crops; loss =
multi-scale mel + STFT + waveform L1 + negative SI-SNR (silent crops left out) + commitment (+ high band,
+ the noise branch's envelope); after ``gan.start`` a multi-scale STFT discriminator adds hinge
adversarial and feature-matching losses. Data order, checkpoints, resume, logging, the non-finite-step
policy and torchrun come from ``train/loop.py``. The crop of global position g is hashed from (seed, g),
so it does not depend on the number of ranks or on resumes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from videopoet.config import ConfigError
from videopoet.device import autocast
from videopoet.distributed import all_sum, world_size
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
from videopoet.train.common import EMA, copy_matching_weights
from videopoet.train.loop import Engine, OptimizerOf, Recipe, TrainConfig, train_command

log = logging.getLogger("videopoet.train.audio_tokenizer")
SILENT_RMS = 1e-4  # crops quieter than this have no SI-SNR (left out of the SI-SNR loss)
SISNR_CAP_DB = 40.0  # soft cap of the SI-SNR loss per example


@dataclass(kw_only=True)
class AudioLossConfig:
    mel: float = 1.0  # multi-scale mel loss weight
    stft: float = 1.0  # multi-scale STFT loss weight
    wave: float = 1.0  # waveform L1 weight
    sisnr: float = 1.0  # weight of −SI-SNR/10 (dB/10), the phase-aware waveform loss; 0 = off
    commit: float = 1.0  # RVQ commitment loss weight
    highband: float = 0.0  # linear-magnitude STFT L1 above highband_hz (8 ms window): loud transients
    highband_hz: float = 4000.0  # lower edge of the band that ``highband`` compares
    noise: float = 1.0  # squared error of the noise branch's log gains to the band envelope
    # Waveform L1 and SI-SNR compare the signals below this frequency only (0 = the full band): above it,
    # where the content is noise (the world's bounce clicks own 6.1-8 kHz), no deterministic decoder can
    # match the phase, and there the magnitude losses and the discriminator supervise alone.
    wave_max_hz: float = 0.0


@dataclass(kw_only=True)
class AudioGANConfig:
    weight: float = 1.0  # adversarial (hinge) loss weight, after start
    feature_weight: float = 3.0  # feature-matching loss weight, after start
    start: int = 2000  # step at which the discriminator and its losses switch on
    lr: float = 3e-4  # discriminator learning rate (0 = the run's lr)
    # MultiScaleSTFTDiscriminator fields: channels (width of each sub-discriminator) and scales (STFT
    # windows; shorter than a transient's decay — the world's clicks decay in 128 samples — to judge it)
    model: dict[str, Any] = field(default_factory=lambda: {"channels": 32, "scales": list(DISC_SCALES)})


_AUDIO_RENAMED = {
    "val_clips": "eval_clips",
    "clip_frames": "frames",
    "disc_start": "gan.start",
    "disc_lr": "gan.lr",
    "disc_channels": "gan.model.channels",
    "disc_scales": "gan.model.scales",
    "w_adv": "gan.weight",
    "w_feat": "gan.feature_weight",
    "w_mel": "loss.mel",
    "w_stft": "loss.stft",
    "w_wave": "loss.wave",
    "w_sisnr": "loss.sisnr",
    "w_commit": "loss.commit",
    "w_highband": "loss.highband",
    "highband_hz": "loss.highband_hz",
    "w_noise": "loss.noise",
    "wave_max_hz": "loss.wave_max_hz",
    **{
        f"guard_{k}": "max_nonfinite (non-finite steps are skipped and counted)"
        for k in ("jump_factor", "window", "patience", "lr_backoff", "disable_gan_after", "max_failures")
    },
}


@dataclass(kw_only=True)
class AudioTrainConfig(TrainConfig):
    out_dir: str = "runs/audio_tokenizer"
    batch_size: int = 32
    max_steps: int = 6000
    betas: tuple[float, float] = (0.5, 0.9)  # GAN-friendly, as in SoundStream/EnCodec
    num_workers: int = 0
    eval_clips: int = 16  # held-out clips evaluated at every eval
    frames: int = 17  # clip length in video frames at 8 fps (17 → 34,000 samples)
    frame_size: int = 16  # width = height the clips' pictures are rendered/decoded at (audio-only training)
    segment_samples: int = 16000  # training crop length in samples (a multiple of the codec's hop)
    # Fraction of crops placed around the clip's strongest transient instead of at random: short events
    # such as the world's bounce clicks fill ~1% of the audio and are otherwise nearly absent.
    transient_crop_fraction: float = 0.0
    train_decoder_only: bool = False  # freeze encoder + quantizer (codes stay as they are), tune the decoder
    restart_until: float = 0.9  # dead-code restarts stop after this fraction of the steps
    loss: AudioLossConfig = field(default_factory=AudioLossConfig)
    gan: AudioGANConfig = field(default_factory=AudioGANConfig)

    RENAMED: ClassVar[dict[str, str]] = TrainConfig.RENAMED | _AUDIO_RENAMED

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.preset not in PRESETS:
            raise ConfigError(f"preset {self.preset!r} unknown; choose one of {sorted(PRESETS)}")
        hop = PRESETS[self.preset].hop
        if self.segment_samples <= 0 or self.segment_samples % hop:
            raise ConfigError(
                f"segment_samples must be a positive multiple of the hop ({hop}), got {self.segment_samples}"
            )
        if not 0.0 <= self.transient_crop_fraction <= 1.0:
            raise ConfigError(
                f"transient_crop_fraction must be in [0, 1], got {self.transient_crop_fraction}"
            )
        scales = self.gan.model.get("scales", DISC_SCALES)
        if not scales or any(int(n) < 16 or int(n) % 4 for n in scales):
            raise ConfigError(f"gan.model.scales must be STFT windows >= 16 and divisible by 4, got {scales}")
        if self.loss.wave_max_hz < 0:
            raise ConfigError(f"loss.wave_max_hz must be >= 0 (0 = full band), got {self.loss.wave_max_hz}")


# ---------------------------------------------------------------------------------------------- data
def _hash_int(*parts: int) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@dataclass(frozen=True)
class CropAudio:
    """A clip → a ``segment`` crop (float32 (N,)) at an offset hashed from (seed, position)."""

    segment: int
    seed: int
    transient_fraction: float = 0.0

    def __call__(self, sample: Any, position: int) -> np.ndarray:
        if not sample.has_audio:
            raise ValueError(f"{sample.key}: no audio track")
        audio = np.asarray(sample.audio, dtype=np.float32)
        if audio.shape[0] < self.segment:
            raise ValueError(
                f"{sample.key}: {audio.shape[0]} samples, shorter than the {self.segment}-sample crop"
            )
        h = _hash_int(self.seed, position)
        last = audio.shape[0] - self.segment
        if (h % 10_000) < self.transient_fraction * 10_000:
            # the strongest transient lands at a random place in the middle three quarters of the crop
            peak = int(np.argmax(np.abs(np.diff(audio))))
            start = min(max(peak - self.segment // 8 - (h >> 16) % (3 * self.segment // 4), 0), last)
        else:
            start = h % (last + 1)
        return np.clip(audio[start : start + self.segment], -1.0, 1.0)[None]  # (1, N)


def open_audio_dataset(spec: str, cfg: AudioTrainConfig):
    from videopoet.data.datasets import open_dataset

    return open_dataset(spec, frames=cfg.frames, width=cfg.frame_size, height=cfg.frame_size)


def load_eval_clips(cfg: AudioTrainConfig, sample_rate: int) -> torch.Tensor:
    """The first ``eval_clips`` readable held-out clips with audio: (V, 1, N) float32."""
    from videopoet.data.datasets import readable_items

    waves = []
    ds = open_audio_dataset(cfg.heldout_spec(), cfg)
    for _, s in readable_items(ds, range(len(ds)), log=log.warning):
        if len(waves) >= cfg.eval_clips:
            break
        if not s.has_audio:
            continue
        if s.sample_rate != sample_rate:
            raise UserError(f"{s.key}: audio at {s.sample_rate} Hz, the codec needs {sample_rate} Hz")
        waves.append(torch.from_numpy(np.clip(np.asarray(s.audio, np.float32), -1, 1)))
    if not waves:
        raise UserError(f"eval_data {cfg.heldout_spec()!r} has no clip with audio; point eval_data at sound")
    return torch.stack(waves)[:, None]


# ---------------------------------------------------------------------------------------------- recipe
class AudioTokenizerRecipe(Recipe):
    progress_keys = ("loss", "mel")

    def __init__(self, cfg: AudioTrainConfig, engine: Engine):
        self.cfg, self.engine, dev = cfg, engine, engine.device
        try:
            self.model = AudioTokenizer.from_preset(cfg.preset, **cfg.model).to(dev)
        except (TypeError, ValueError) as e:  # an unknown field, or a value the model config refuses
            raise ConfigError(f"model overrides {cfg.model}: {e}") from None
        self.mcfg = self.model.config
        if cfg.init_from:
            self._init_from(cfg.init_from)
        try:
            self.disc = MultiScaleSTFTDiscriminator(**self._disc_kwargs()).to(dev)
        except TypeError as e:
            raise ConfigError(f"gan.model overrides {cfg.gan.model}: {e}") from None
        self.spectral = MultiScaleSpectralLoss(sample_rate=self.mcfg.sample_rate).to(dev)
        if cfg.train_decoder_only:
            self.model.encoder.requires_grad_(False)
            self.model.quantizer.requires_grad_(False)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.opt_g = torch.optim.Adam(self.trainable, lr=cfg.lr, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.gan.lr or cfg.lr, betas=cfg.betas)
        self.ema = EMA(self.model, decay=cfg.ema_decay)
        self.state = {
            "model": self.model,
            "ema": self.ema,
            "disc": self.disc,
            "opt_g": OptimizerOf(self.opt_g, self.model),
            "opt_d": OptimizerOf(self.opt_d, self.disc),
        }
        self.eval_wave = load_eval_clips(cfg, self.mcfg.sample_rate)

    def _disc_kwargs(self) -> dict[str, Any]:
        kw = dict(self.cfg.gan.model)
        kw["scales"] = tuple(int(n) for n in kw.get("scales", DISC_SCALES))
        return kw

    def _init_from(self, directory: str) -> None:
        """Copy weights (codebooks included) from a component directory of the same architecture."""
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
            log.info(
                "init_from=%s: %d tensors of the new noise branch start untrained", directory, len(added)
            )

    def dataset(self):
        return open_audio_dataset(self.cfg.data, self.cfg)

    @property
    def prepare(self):
        c = self.cfg
        return CropAudio(c.segment_samples, c.seed, c.transient_crop_fraction)

    def gan_active(self, step: int) -> bool:
        return step >= self.cfg.gan.start and bool(self.cfg.gan.weight or self.cfg.gan.feature_weight)

    def _set_lr(self, step: int) -> float:
        lr_g = self.cfg.lr_at(step)
        for group in self.opt_g.param_groups:
            group["lr"] = lr_g
        for group in self.opt_d.param_groups:
            group["lr"] = self.cfg.lr_at(step, self.cfg.gan.lr or self.cfg.lr)
        return lr_g

    def _adversarial(self, recon: torch.Tensor, wave: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        self.disc.requires_grad_(False)
        with autocast(self.engine.device, self.engine.amp):
            fake_logits, fake_feats = self.disc(recon)
            with torch.no_grad():
                _, real_feats = self.disc(wave)
        adv = generator_hinge_loss(fake_logits)
        feat = feature_matching_loss(real_feats, fake_feats)
        self.disc.requires_grad_(True)
        loss = self.cfg.gan.weight * adv + self.cfg.gan.feature_weight * feat
        return loss, {"adv": adv.item(), "feat": feat.item()}

    def _discriminator_step(self, recon: torch.Tensor, wave: torch.Tensor) -> dict[str, float]:
        with autocast(self.engine.device, self.engine.amp):
            real_logits, _ = self.disc(wave)
            fake_logits, _ = self.disc(recon.detach())
        d_loss = discriminator_hinge_loss(real_logits, fake_logits)
        norm = self.engine.step_optimizer(d_loss, self.opt_d)
        return {"d_loss": d_loss.item(), "d_grad_norm": float("nan") if norm is None else norm}

    def train_step(self, wave: torch.Tensor, step: int) -> dict[str, Any]:
        """One step on wave (B, 1, N)."""
        c = self.cfg
        lr_g = self._set_lr(step)
        self.model.train()
        if c.train_decoder_only:  # fixed codes: no codebook EMA, restarts or quantizer dropout
            self.model.encoder.eval()
            self.model.quantizer.eval()
        self.model.quantizer.restart_dead_codes = step < c.restart_until * c.max_steps
        with autocast(self.engine.device, self.engine.amp):
            out = self.model(wave)
        recon = out.recon.float()
        loss, m = reconstruction_loss(
            c.loss,
            self.spectral,
            recon,
            wave,
            out.commitment_loss,
            sample_rate=self.mcfg.sample_rate,
            noise_log_gains=out.noise_log_gains,
            noise_min_hz=self.mcfg.noise_min_hz,
        )
        gan = self.gan_active(step)
        if gan:
            adv, info = self._adversarial(recon, wave)
            loss = loss + adv
            m.update(info)
        norm = self.engine.step_optimizer(loss, self.opt_g)
        m.update(loss=loss.item(), grad_norm=float("nan") if norm is None else norm, lr=lr_g, gan=gan)
        if gan:
            m.update(self._discriminator_step(recon, wave))
        self.ema.decay = min(c.ema_decay, (1 + step) / (10 + step))
        self.ema.update(self.model)
        m["restarts"] = float(sum(self.model.quantizer.last_restarts))
        m["levels_used"] = out.num_levels.float().mean().item()
        return m

    # ------------------------------------------------------------------ evaluation, samples, export
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
    def evaluate(self, step: int) -> dict[str, Any]:
        model = self.ema_model()
        snrs, mels, codes = [], [], []
        for i in range(0, self.eval_wave.shape[0], 8):
            w = self.eval_wave[i : i + 8].to(self.engine.device)
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
    def write_samples(self, folder: Path, count: int = 2) -> None:
        from videopoet.data.media import write_wav

        if not self.engine.is_main:
            return
        model, sr = self.ema_model(), self.mcfg.sample_rate
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(min(count, self.eval_wave.shape[0])):
            w = self.eval_wave[i : i + 1].to(self.engine.device)
            y = model.decode(model.encode(w), length=w.shape[-1])
            write_wav(folder / f"eval{i}_original.wav", w[0, 0].cpu().numpy(), sr)
            write_wav(folder / f"eval{i}.wav", y[0, 0].cpu().numpy(), sr)

    def export(self, folder: Path) -> None:
        """EMA weights (fp16) → ``folder``, with the held-out metrics of the exported codec."""
        model = self.ema_model()
        if not all(
            bool(torch.isfinite(p).all()) for p in model.state_dict().values() if p.is_floating_point()
        ):
            raise UserError(
                "the EMA weights are not finite; nothing exported (resume from an earlier checkpoint)"
            )
        if self.engine.is_main:
            model.save_pretrained(folder, dtype=torch.float16)
            report = {"step": self.engine.step, **self.evaluate(self.engine.step)}
            (folder / "train_eval.json").write_text(json.dumps(report, indent=2) + "\n")


def reconstruction_loss(
    c: AudioLossConfig,
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
    loss = c.mel * rl.mel + c.stft * rl.stft + c.wave * wave_l1 + c.commit * commitment
    m = {
        "mel": rl.mel.item(),
        "stft": rl.stft.item(),
        "wave_l1": wave_l1.item(),
        "commit": commitment.item(),
    }
    if c.highband:
        hb = highband_loss(recon, wave, sample_rate=sample_rate, min_hz=c.highband_hz)
        loss = loss + c.highband * hb
        m["highband"] = hb.item()
    if c.noise and noise_log_gains is not None:
        env = noise_envelope_loss(noise_log_gains, wave, min_hz=noise_min_hz, sample_rate=sample_rate)
        loss = loss + c.noise * env
        m["noise_env"] = env.item()
    if c.sisnr:
        snr = si_snr_loss(wx, wy)
        loss = loss + c.sisnr * snr
        m["neg_sisnr_db"] = 10 * snr.item()
    return loss, m


def si_snr_loss(recon: torch.Tensor, target: torch.Tensor, *, cap_db: float = SISNR_CAP_DB) -> torch.Tensor:
    """−SI-SNR / 10 (1.0 = 10 dB) averaged over the global batch's non-silent examples; float32.

    ``eval.metrics.si_snr`` with a soft cap at ``cap_db`` (nearly perfect examples do not dominate).
    Silent references (rms < SILENT_RMS) have no SI-SNR and are left out (the spectral and waveform losses
    still ask for silence there). Each rank divides its sum by the global count of loud examples (times
    the rank count, which gradient averaging divides back out): the same mean however the batch is split.
    """
    x = recon.reshape(-1, recon.shape[-1]).float()
    y = target.reshape(-1, target.shape[-1]).float()
    y0 = y - y.mean(-1, keepdim=True)
    loud = y0.pow(2).sum(-1) > SILENT_RMS**2 * y.shape[-1]  # (B,)
    n_loud = float(all_sum(loud.sum().float()))
    if n_loud == 0:
        return recon.new_zeros((), dtype=torch.float32)
    snr = si_snr(x[loud], y[loud], eps=1e-12, cap_db=cap_db)
    return (-snr.sum() * world_size() / n_loud / 10).float()


def train(
    cfg: AudioTrainConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True
) -> int:
    """Run (or continue) training → exit status."""
    engine = Engine(cfg)
    return engine.run(
        AudioTokenizerRecipe(cfg, engine), resume=resume, overwrite=overwrite, progress=progress
    )


def main(args) -> int:
    return train_command(args, AudioTrainConfig, train, "audio tokenizer")
