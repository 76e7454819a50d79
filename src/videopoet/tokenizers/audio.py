"""SoundStream audio codec (arXiv 2107.03312): causal 1-D conv encoder/decoder + residual vector quantizer.

Dimension key:
    B  batch
    C  channels of a conv layer
    N  audio samples (16 kHz mono)
    F  latent frames (one per ``hop`` = prod(strides) = 320 samples → 50 frames per second)
    D  latent width (the RVQ code vectors' width)
    K  RVQ levels (4 by default), each with its own codebook of ``codebook_size`` (1024) codes

Samples ↔ frames (the contract every caller relies on):
    frames = floor(N / hop). Latent frame f summarises samples [f·hop, (f+1)·hop) and, the convolutions
    being causal (padded on the left only), depends on no sample at or after (f+1)·hop. A 2.125 s clip
    (34,000 samples) → 106 frames (34,000 / 320 = 106.25), as in the VideoPoet paper; one video frame at
    8 fps (2,000 samples) → 6 frames; 41 video frames (82,000 samples) → 256 frames. The decoder turns F
    frames into exactly F·hop samples; ``decode(codes, length=N)`` pads the tail with silence (or crops)
    to N samples, so a 34,000-sample clip comes back as 33,920 decoded samples + 80 zeros (the last
    5 ms, which no frame covers, are not coded).

Strided convolutions use kernel 2·stride and left padding = stride, so a layer maps L → floor(L / stride)
samples; transposed convolutions (kernel 2·stride) map L → (L + 1)·stride and are trimmed by ``stride``
samples on the right (the part that would depend on future frames), giving exactly L·stride.

Training-only parts (losses, discriminator) live in ``tokenizers/audio_losses.py`` and
``train/audio_tokenizer.py``; this file holds what encoding and decoding need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils import parametrizations

from videopoet.components import PRETRAINED_ROOT, Pretrained
from videopoet.config import override_fields
from videopoet.dsp import band_edges, band_split
from videopoet.errors import UserError
from videopoet.tokenizers.quantizers import ResidualVQ

MODEL_TYPE = "videopoet-audio-tokenizer"
# How far outside [-1, 1] input audio may stray (resampling / AAC decoding overshoot a little) before
# encode() refuses it as not being normalised audio.
INPUT_RANGE_TOLERANCE = 0.05


@dataclass(kw_only=True)
class AudioTokenizerConfig:
    sample_rate: int = 16000  # Hz, mono; the codec only accepts this rate (resample before encoding)
    channels: int = 32  # width of the first encoder conv; doubles at every downsampling block
    strides: tuple[int, ...] = (2, 4, 5, 8)  # encoder downsampling per block; product = hop (320)
    dilations: tuple[int, ...] = (1, 3, 9)  # one residual unit per dilation in every block
    kernel_size: int = 7  # kernel of the input/output convs and of the residual units' dilated convs
    latent_dim: int = 128  # D: width of the latent frames and of the RVQ code vectors
    num_levels: int = 4  # K: RVQ levels (each adds log2(codebook_size) bits per frame)
    codebook_size: int = 1024  # codes per RVQ level
    ema_decay: float = 0.99  # codebook EMA decay (per training step)
    dead_code_threshold: float = 0.5  # restart a code whose EMA count of assignments per batch falls below
    kmeans_iters: int = 10  # k-means iterations for the data initialisation of the codebooks
    quantizer_dropout: float = 0.5  # training: P(an example uses a random 1..K levels instead of all K)
    weight_norm: bool = True  # weight-normalised convs (SEANet/SoundStream); stabilises GAN training
    # "elu" (SoundStream) or "snake" (x + sin²(αx)/α with a learned α per channel, as in BigVGAN and DAC):
    # a periodic bias that lets a small decoder synthesise harmonics; the ELU codec of the same size
    # renders nothing above ~2.5 kHz (docs/pretrained.md).
    activation: str = "elu"
    # Noise filling of the top band (as in HE-AAC's band replication and Opus/CELT): the decoder adds
    # ``noise_bands`` bands of fixed white noise between ``noise_min_hz`` and Nyquist, each scaled by a
    # gain it predicts from its features after the second upsampling (every 8 samples for the default
    # strides: 0.5 ms). A deterministic decoder cannot match a noise burst's phase, so waveform losses
    # teach it to leave such bursts out (the world's bounce clicks); their envelope it can match.
    # 0 bands (the default, and every codec saved before this option) = no noise branch.
    noise_bands: int = 0
    noise_min_hz: float = 6100.0  # lower edge of the noise bands (the world's voices stay below 6,080 Hz)

    @property
    def hop(self) -> int:
        """Audio samples per latent frame (320 for the default strides)."""
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        """Latent frames per second (50 at 16 kHz with hop 320)."""
        return self.sample_rate / self.hop

    @property
    def bitrate(self) -> float:
        """Bits per second of the codes at all K levels: K · log2(codebook_size) · frame rate."""
        return self.num_levels * math.log2(self.codebook_size) * self.frame_rate

    def validate(self) -> AudioTokenizerConfig:
        if self.sample_rate <= 0 or self.channels <= 0 or self.latent_dim <= 0:
            raise ValueError("sample_rate, channels and latent_dim must be positive")
        if not self.strides or any(s < 1 for s in self.strides):
            raise ValueError(f"strides must be positive integers, got {self.strides}")
        if not self.dilations or any(d < 1 for d in self.dilations):
            raise ValueError(f"dilations must be positive integers, got {self.dilations}")
        if self.kernel_size < 1:
            raise ValueError(f"kernel_size must be ≥ 1, got {self.kernel_size}")
        if self.num_levels < 1 or self.codebook_size < 2:
            raise ValueError(
                f"need num_levels ≥ 1 and codebook_size ≥ 2, got {self.num_levels}, {self.codebook_size}"
            )
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if not 0.0 <= self.quantizer_dropout <= 1.0:
            raise ValueError(f"quantizer_dropout must be in [0, 1], got {self.quantizer_dropout}")
        if self.noise_bands < 0:
            raise ValueError(f"noise_bands must be ≥ 0, got {self.noise_bands}")
        if self.noise_bands and not 0.0 < self.noise_min_hz < self.sample_rate / 2:
            raise ValueError(
                f"noise_min_hz must lie in (0, {self.sample_rate / 2:g}) Hz, got {self.noise_min_hz}"
            )
        if self.noise_bands and len(self.strides) < 2:
            raise ValueError(
                "the noise branch reads the decoder after its second upsampling: need ≥ 2 strides"
            )
        return self


PRESETS: dict[str, AudioTokenizerConfig] = {
    # Runs in seconds on a CPU; same strides (hop 320) so every frame-count contract holds.
    "debug": AudioTokenizerConfig(
        channels=4,
        dilations=(1, 3),
        latent_dim=16,
        codebook_size=64,
        kmeans_iters=2,
        dead_code_threshold=0.05,
    ),
    # The bundled default: ~2.5 M parameters, 4 × 1024 codes (2 kbit/s); trains on one GPU in minutes.
    "tiny": AudioTokenizerConfig(channels=16, latent_dim=64),
    # SoundStream's published encoder width (C = 32) with 4 × 1024 codes as in VideoPoet; ~9.8 M params.
    # The paper does not state its codec's size; latent width 128 follows EnCodec/SoundStream practice.
    "paper": AudioTokenizerConfig(channels=32, latent_dim=128),
}


# ---------------------------------------------------------------------------------------------- layers
class Snake(nn.Module):
    """x + sin²(α·x)/α per channel (Ziyin et al. 2020; BigVGAN, DAC); α starts at 1 and is learned."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.alpha
        return x + torch.sin(a * x).pow(2) / (a + 1e-9)


ACTIVATIONS = {"elu": lambda channels: nn.ELU(), "snake": Snake}


def _maybe_wn(conv: nn.Module, enabled: bool) -> nn.Module:
    return parametrizations.weight_norm(conv) if enabled else conv


class CausalConv1d(nn.Module):
    """Conv1d padded on the left only: output j sees inputs < (j + 1)·stride; length L → L // stride."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, *, stride: int = 1, dilation: int = 1, wn: bool = True
    ):
        super().__init__()
        self.pad = (kernel - 1) * dilation + 1 - stride
        if self.pad < 0:
            raise ValueError(f"kernel {kernel} (dilation {dilation}) is shorter than its stride {stride}")
        self.conv = _maybe_wn(nn.Conv1d(c_in, c_out, kernel, stride=stride, dilation=dilation), wn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(nn.functional.pad(x, (self.pad, 0)))


class CausalConvTranspose1d(nn.Module):
    """ConvTranspose1d (kernel 2·stride) trimmed on the right: length L → L·stride, causal."""

    def __init__(self, c_in: int, c_out: int, stride: int, *, wn: bool = True):
        super().__init__()
        self.stride = stride
        self.conv = _maybe_wn(nn.ConvTranspose1d(c_in, c_out, 2 * stride, stride=stride), wn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)  # (B, C, (L + 1)·stride)
        return y[..., : y.shape[-1] - self.stride]  # (B, C, L·stride)


class ResidualUnit(nn.Module):
    """x + Conv1x1(ELU(CausalConv_k,dilation(ELU(x)))) (SoundStream Fig. 2)."""

    def __init__(self, channels: int, kernel: int, dilation: int, *, wn: bool = True, act: str = "elu"):
        super().__init__()
        self.block = nn.Sequential(
            ACTIVATIONS[act](channels),
            CausalConv1d(channels, channels, kernel, dilation=dilation, wn=wn),
            ACTIVATIONS[act](channels),
            CausalConv1d(channels, channels, 1, wn=wn),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class Encoder(nn.Module):
    """wave (B, 1, N) → latents (B, D, N // hop)."""

    def __init__(self, cfg: AudioTokenizerConfig):
        super().__init__()
        wn, k = cfg.weight_norm, cfg.kernel_size
        ch, act = cfg.channels, cfg.activation
        layers: list[nn.Module] = [CausalConv1d(1, ch, k, wn=wn)]
        for stride in cfg.strides:
            layers += [ResidualUnit(ch, k, d, wn=wn, act=act) for d in cfg.dilations]
            layers += [ACTIVATIONS[act](ch), CausalConv1d(ch, 2 * ch, 2 * stride, stride=stride, wn=wn)]
            ch *= 2
        layers += [ACTIVATIONS[act](ch), CausalConv1d(ch, cfg.latent_dim, 3, wn=wn)]
        self.net = nn.Sequential(*layers)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.net(wave)


NOISE_PERIOD = 2**15  # samples of the noise branch's fixed white noise, repeated (2 s at 16 kHz)
NOISE_SEED = 0
NOISE_FLOOR = 1e-4  # band RMS a new branch starts at (−80 dB) and the envelope target's floor
NOISE_MAX_LOG_GAIN = 2.0  # gains are capped at e² ≈ 7.4 (a band RMS far above any [-1, 1] signal's)
# The gain conv's output is multiplied by this to give log gains: a log gain must travel ~7 (from the
# floor to a burst's level), and Adam moves a parameter by about the learning rate per step.
NOISE_LOG_SCALE = 10.0
NOISE_INIT_STD = 1e-3  # gain-conv weights at initialisation: log gains start within ~±0.15 of the floor


def band_noise(bands: int, min_hz: float, sample_rate: int, length: int = NOISE_PERIOD) -> torch.Tensor:
    """float32 (bands, length): fixed white noise split into ``bands`` equal bands from ``min_hz`` to
    Nyquist, each of unit RMS, periodic in ``length`` (a pure function of its arguments)."""
    g = torch.Generator().manual_seed(NOISE_SEED)
    white = torch.randn(length, generator=g, dtype=torch.float64)
    noise = band_split(white, band_edges(bands, min_hz, sample_rate), sample_rate)  # (bands, length)
    return (noise / noise.pow(2).mean(-1, keepdim=True).sqrt()).float()


class NoiseFill(nn.Module):
    """features (B, C, L) at 1/``up`` of the sample rate → noise (B, 1, L·up) = Σ_b gain_b(t) · noise_b(t),
    and the log gains (B, bands, L) (training fits them to the target's band envelope).

    A gain is the band's RMS; it holds for ``up`` samples. The noise is a fixed buffer, so decoding stays
    deterministic and causal.
    """

    def __init__(self, channels: int, cfg: AudioTokenizerConfig, up: int):
        super().__init__()
        self.up = up
        # It reads features normalised to unit RMS per sample (the trunk's scale is arbitrary). Small random
        # weights, not zeros: zeros would also cut the gradient into the trunk, which must first learn to
        # carry what the gains need (a trained ELU codec's latents hold no linear trace of the clicks).
        self.gain = CausalConv1d(channels, cfg.noise_bands, 3, wn=False)
        nn.init.normal_(self.gain.conv.weight, std=NOISE_INIT_STD)
        nn.init.constant_(self.gain.conv.bias, math.log(NOISE_FLOOR) / NOISE_LOG_SCALE)
        noise = band_noise(cfg.noise_bands, cfg.noise_min_hz, cfg.sample_rate)
        self.register_buffer("noise", noise, persistent=False)  # (bands, NOISE_PERIOD)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = feats / (feats.float().pow(2).mean(1, keepdim=True).sqrt() + 1e-5).to(feats.dtype)
        log_gains = NOISE_LOG_SCALE * self.gain(feats).float()  # (B, bands, L)
        log_gains = log_gains.clamp(max=NOISE_MAX_LOG_GAIN)
        gains = log_gains.exp().repeat_interleave(self.up, dim=-1)  # (B, bands, L·up)
        n, period = gains.shape[-1], self.noise.shape[-1]
        noise = self.noise.repeat(1, -(-n // period))[:, :n]  # (bands, L·up)
        return (gains * noise).sum(1, keepdim=True), log_gains


class Decoder(nn.Module):
    """latents (B, D, F) → wave (B, 1, F·hop) (unbounded; ``AudioTokenizer.decode`` clamps to [-1, 1])."""

    def __init__(self, cfg: AudioTokenizerConfig):
        super().__init__()
        wn, k = cfg.weight_norm, cfg.kernel_size
        ch, act = cfg.channels * 2 ** len(cfg.strides), cfg.activation
        layers: list[nn.Module] = [CausalConv1d(cfg.latent_dim, ch, k, wn=wn)]
        self.tap = 0  # index of the layer after which the noise branch reads the features
        for i, stride in enumerate(reversed(cfg.strides)):
            layers += [ACTIVATIONS[act](ch), CausalConvTranspose1d(ch, ch // 2, stride, wn=wn)]
            ch //= 2
            layers += [ResidualUnit(ch, k, d, wn=wn, act=act) for d in cfg.dilations]
            if i == 1:
                self.tap, tap_channels = len(layers) - 1, ch
        layers += [ACTIVATIONS[act](ch), CausalConv1d(ch, 1, k, wn=wn)]
        self.net = nn.Sequential(*layers)
        self.noise = None
        if cfg.noise_bands:
            self.noise = NoiseFill(tap_channels, cfg, up=math.prod(cfg.strides[:-2]))

    def forward(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """latents (B, D, F) → (wave (B, 1, F·hop), the noise branch's log gains (B, bands, F·hop / up) or
        None without one)."""
        if self.noise is None:
            return self.net(latents), None
        x, tap = latents, None
        for i, layer in enumerate(self.net):
            x = layer(x)
            if i == self.tap:
                tap = x  # (B, C, F·hop / up)
        noise, log_gains = self.noise(tap)
        return x + noise.to(x.dtype), log_gains


# ---------------------------------------------------------------------------------------------- model
class AudioTokenizerOutput(NamedTuple):
    recon: torch.Tensor  # float (B, 1, F·hop): decoded audio, unclamped (compare with wave[..., :F·hop])
    codes: torch.Tensor  # long (B, K, F)
    commitment_loss: torch.Tensor  # scalar
    num_levels: torch.Tensor  # long (B,): RVQ levels each example used (quantizer dropout)
    noise_log_gains: torch.Tensor | None  # float (B, bands, F·hop / up): the noise branch's, or None


class AudioTokenizer(Pretrained, nn.Module):
    """SoundStream codec: ``encode(wave) → codes``, ``decode(codes) → wave``; ``forward`` = training pass."""

    # the component format (videopoet.components)
    MODEL_TYPE = MODEL_TYPE
    CONFIG = AudioTokenizerConfig
    BUNDLED = "audio_tokenizer"
    DESCRIPTION = "an audio tokenizer"
    # the RVQ codebooks' EMA statistics are training state: not shipped, rebuilt by ``_after_load``
    UNSAVED_TENSORS = ("*.cluster_size", "*.embed_avg")

    def __init__(self, config: AudioTokenizerConfig):
        super().__init__()
        self.config = config.validate()
        self.encoder = Encoder(config)
        self.quantizer = ResidualVQ(
            dim=config.latent_dim,
            num_levels=config.num_levels,
            codebook_size=config.codebook_size,
            decay=config.ema_decay,
            dead_code_threshold=config.dead_code_threshold,
            kmeans_iters=config.kmeans_iters,
            dropout=config.quantizer_dropout,
        )
        self.decoder = Decoder(config)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_preset(cls, name: str = "tiny", **overrides) -> AudioTokenizer:
        if name not in PRESETS:
            raise UserError(f"unknown audio tokenizer preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(override_fields(PRESETS[name], overrides))  # "none" → None, lists → tuples

    @property
    def hop(self) -> int:
        return self.config.hop

    def num_frames(self, num_samples: int) -> int:
        """Latent frames for ``num_samples`` audio samples: floor(N / hop) (34,000 → 106)."""
        return int(num_samples) // self.hop

    def num_samples(self, num_frames: int) -> int:
        """Samples the decoder produces for ``num_frames`` frames: F · hop."""
        return int(num_frames) * self.hop

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ training pass
    def forward(self, wave: torch.Tensor, n_levels: int | None = None) -> AudioTokenizerOutput:
        """wave (B, 1, N) → reconstruction of the first F·hop samples, codes, commitment loss.

        In training mode the quantizer updates its codebooks and applies quantizer dropout.
        """
        self._check_wave(wave, check_values=False)
        z = self.encoder(wave)  # (B, D, F)
        q = self.quantizer(z, n_levels)
        recon, log_gains = self.decoder(q.quantized.to(z.dtype))  # (B, 1, F·hop)
        return AudioTokenizerOutput(recon, q.codes, q.commitment_loss, q.num_levels, log_gains)

    # ------------------------------------------------------------------ public codec API
    @torch.no_grad()
    def encode(self, wave: torch.Tensor, n_levels: int | None = None) -> torch.Tensor:
        """wave float (B, 1, N) in [-1, 1] at ``sample_rate`` → long codes (B, n_levels or K, N // hop)."""
        self._check_wave(wave)
        return self.quantizer.encode(self.encoder(wave.to(self._dtype())), n_levels)

    def codes_to_embeddings(self, codes: torch.Tensor) -> torch.Tensor:
        """long codes (B, k, F), k ≤ K levels → latents (B, D, F): the sum of the first k levels' codes."""
        return self.quantizer.decode(codes.to(self._device()))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """long codes (B, k, F), k ≤ K (fewer levels: lower bitrate) → float32 wave (B, 1, length), [-1, 1].

        Without ``length`` the output has F·hop samples; with it the tail is zero-padded or cropped.
        """
        if length is not None and (not isinstance(length, int) or length < 0):
            raise ValueError(f"length must be a non-negative int (samples), got {length!r}")
        emb = self.codes_to_embeddings(codes).to(self._dtype())  # (B, D, F)
        wave = self.decoder(emb)[0].float().clamp(-1.0, 1.0)  # (B, 1, F·hop)
        if length is not None:
            n = wave.shape[-1]
            wave = nn.functional.pad(wave, (0, length - n)) if length > n else wave[..., :length]
        return wave

    # ------------------------------------------------------------------ weights
    def _after_load(self) -> None:
        """The file has no EMA statistics: give every code a fresh count, so that fine-tuning does not
        restart codes at once (``EMACodebook.fresh_statistics``)."""
        for level in self.quantizer.levels:
            level.fresh_statistics()

    # ------------------------------------------------------------------ helpers
    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _check_wave(self, wave: torch.Tensor, *, check_values: bool = True) -> None:
        if not isinstance(wave, torch.Tensor):
            raise ValueError(f"wave must be a torch tensor (B, 1, N), got {type(wave).__name__}")
        if not wave.is_floating_point():
            raise ValueError(
                f"wave must be a float tensor in [-1, 1], got {wave.dtype}; divide int16 PCM by 32768"
            )
        if wave.ndim != 3 or wave.shape[1] != 1:
            raise ValueError(
                f"wave must have shape (B, 1, N) (batch, mono channel, samples), got {tuple(wave.shape)}; "
                "use wave.unsqueeze(0) / .unsqueeze(1) or mix stereo down to mono"
            )
        if wave.shape[-1] < self.hop:
            raise ValueError(
                f"wave has {wave.shape[-1]} samples; the codec needs at least {self.hop} "
                f"({1000 * self.hop / self.config.sample_rate:.0f} ms at {self.config.sample_rate} Hz), "
                "one latent frame"
            )
        if check_values and wave.numel():
            if not bool(torch.isfinite(wave).all()):
                raise ValueError("wave contains NaN or inf samples")
            peak = float(wave.abs().max())
            if peak > 1.0 + INPUT_RANGE_TOLERANCE:
                raise ValueError(
                    f"wave peaks at {peak:.3g}; audio must lie in [-1, 1] (normalise or clip it first)"
                )


def bundled_path() -> Path:
    """Where the bundled default (tiny) codec lives inside the package: config.json + model.safetensors."""
    return PRETRAINED_ROOT / AudioTokenizer.BUNDLED
