"""VGGish (Hershey et al. 2017) and its log-mel front end: the embedding network of FAD.

Dimension key: B batch (examples), N samples, F STFT frames, M mel bands, E embedding size.

The front end reproduces ``vggish_input.waveform_to_examples`` / ``mel_features.py`` of the reference
implementation: 16 kHz mono, 25 ms periodic-Hann windows with 10 ms hop, 512-point FFT magnitude, 64 HTK
mel bands over 125–7500 Hz, ``log(mel + 0.01)``, cut into non-overlapping 0.96 s examples of 96 × 64.

State-dict keys follow the common PyTorch port (harritaylor/torchvggish): ``features.{0,3,6,8,11,13}``
(convolutions) and ``embeddings.{0,2,4}`` (fully connected), each ``.weight``/``.bias``. The PCA /
quantisation post-processor is not used: FAD is computed on the raw 128-d embeddings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import nn

from videopoet.eval.standard.weights import load_weights

SAMPLE_RATE = 16000  # VGGish input rate
STFT_WINDOW_S = 0.025  # analysis window
STFT_HOP_S = 0.010  # hop between frames
MEL_BANDS = 64  # mel bands
MEL_FMIN, MEL_FMAX = 125.0, 7500.0  # mel filterbank edges, Hz
LOG_OFFSET = 0.01  # added before the log
EXAMPLE_FRAMES = 96  # 0.96 s examples (hop = window: non-overlapping)


@dataclass(kw_only=True)
class VGGishConfig:
    channel_scale: float = 1.0  # multiplies conv channel counts; 1.0 = the real network
    fc_width: int = 4096  # width of the two hidden fully connected layers
    embedding_dim: int = 128  # output embedding size E
    final_relu: bool = False  # torchvggish ends with a ReLU; the TF reference's embedding layer has none


PRESETS: dict[str, VGGishConfig] = {
    "paper": VGGishConfig(),
    "debug": VGGishConfig(channel_scale=0.0625, fc_width=64, embedding_dim=16),
}


def _hz_to_mel(hz):
    return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_matrix(num_bins: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(num_bins, MEL_BANDS) triangular HTK-mel weights, as ``mel_features.spectrogram_to_mel_matrix``."""
    bins_mel = _hz_to_mel(np.linspace(0.0, sample_rate / 2, num_bins))
    edges = np.linspace(_hz_to_mel(MEL_FMIN), _hz_to_mel(MEL_FMAX), MEL_BANDS + 2)
    weights = np.empty((num_bins, MEL_BANDS))
    for i in range(MEL_BANDS):
        lower, center, upper = edges[i : i + 3]
        weights[:, i] = np.maximum(
            0.0, np.minimum((bins_mel - lower) / (center - lower), (upper - bins_mel) / (upper - center))
        )
    weights[0, :] = 0.0  # the DC bin carries no mel energy
    return weights


def waveform_to_examples(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float wave (N,) → float32 log-mel examples (B, 96, 64); B = 0 for waves shorter than 0.96 s."""
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim != 1:
        raise ValueError(f"expected mono audio (N,), got shape {wave.shape}")
    if sample_rate != SAMPLE_RATE:
        from scipy.signal import resample_poly

        g = math.gcd(sample_rate, SAMPLE_RATE)
        wave = resample_poly(wave, SAMPLE_RATE // g, sample_rate // g)
    win, hop = round(STFT_WINDOW_S * SAMPLE_RATE), round(STFT_HOP_S * SAMPLE_RATE)
    nfft = 2 ** math.ceil(math.log2(win))
    if wave.shape[0] < win:
        return np.zeros((0, EXAMPLE_FRAMES, MEL_BANDS), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(wave, win)[::hop]  # (F, win)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hann
    spec = np.abs(np.fft.rfft(frames * window, nfft))  # (F, nfft/2 + 1)
    log_mel = np.log(spec @ mel_matrix(spec.shape[1]) + LOG_OFFSET)  # (F, M)
    count = log_mel.shape[0] // EXAMPLE_FRAMES
    return log_mel[: count * EXAMPLE_FRAMES].reshape(count, EXAMPLE_FRAMES, MEL_BANDS).astype(np.float32)


class VGGish(nn.Module):
    def __init__(self, cfg: VGGishConfig):
        super().__init__()
        self.cfg = cfg
        c = lambda n: max(1, round(n * cfg.channel_scale))
        conv = lambda i, o: nn.Conv2d(i, o, 3, padding=1)
        relu, pool = lambda: nn.ReLU(inplace=True), lambda: nn.MaxPool2d(2, 2)
        self.features = nn.Sequential(
            conv(1, c(64)), relu(), pool(),
            conv(c(64), c(128)), relu(), pool(),
            conv(c(128), c(256)), relu(), conv(c(256), c(256)), relu(), pool(),
            conv(c(256), c(512)), relu(), conv(c(512), c(512)), relu(), pool(),
        )  # fmt: skip
        tail = [nn.ReLU(inplace=True)] if cfg.final_relu else []
        self.embeddings = nn.Sequential(
            nn.Linear(c(512) * 6 * 4, cfg.fc_width), nn.ReLU(inplace=True),
            nn.Linear(cfg.fc_width, cfg.fc_width), nn.ReLU(inplace=True),
            nn.Linear(cfg.fc_width, cfg.embedding_dim), *tail,
        )  # fmt: skip

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        """Log-mel examples (B, 96, 64) → embeddings (B, E)."""
        if examples.ndim != 3 or examples.shape[1:] != (EXAMPLE_FRAMES, MEL_BANDS):
            raise ValueError(
                f"VGGish expects (B, {EXAMPLE_FRAMES}, {MEL_BANDS}) log-mel examples, "
                f"got {tuple(examples.shape)}"
            )
        x = self.features(examples.unsqueeze(1))  # (B, C, 6, 4)
        # Flatten in TensorFlow's (H, W, C) order so converted TF weights line up.
        return self.embeddings(rearrange(x, "b c h w -> b (h w c)"))


def build_vggish(preset: str | VGGishConfig = "paper", weights: str | Path | None = None) -> VGGish:
    """VGGish, randomly initialised, or loaded from a local safetensors file (torchvggish layout)."""
    cfg = PRESETS[preset] if isinstance(preset, str) else preset
    model = VGGish(cfg).eval()
    if weights is not None:
        load_weights(
            model,
            weights,
            network="VGGish",
            ignore_prefixes=("pproc.",),
            doc="see videopoet/eval/standard/vggish.py (torchvggish layout)",
        )
    return model
