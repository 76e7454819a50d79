"""C3D (Tran et al. 2015): the video classifier of the UCF-101 Inception Score (TGAN / VideoPoet protocol).

Dimension key: B batch, C channels, T frames, H W pixels, K classes.

Input: (B, 3, 16, 112, 112) float, pixel values 0–255 minus the per-channel mean of the weights' training
data (``C3DConfig.input_mean``); ``forward`` returns K logits (101 for the UCF-101 fine-tuned model).

State-dict keys follow the common PyTorch port (DavideA/c3d-pytorch): ``conv1``, ``conv2``, ``conv3a``,
``conv3b``, ``conv4a``, ``conv4b``, ``conv5a``, ``conv5b`` (``.weight``/``.bias``), ``fc6``, ``fc7``, ``fc8``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from videopoet.eval.standard.weights import load_weights


@dataclass(kw_only=True)
class C3DConfig:
    num_classes: int = 101  # UCF-101 classes (487 for the Sports-1M original)
    channel_scale: float = 1.0  # multiplies conv channel counts; 1.0 = the real network
    fc_width: int = 4096  # fc6/fc7 width
    frames: int = 16  # clip length the fc6 size is computed for
    image_size: int = 112  # crop size the fc6 size is computed for
    # RGB mean (0–255) subtracted before the network: set it to the mean your weights were trained with
    # (the default is the per-channel average of the Sports-1M mean volume C3D ports usually ship).
    input_mean: tuple[float, float, float] = field(default=(90.0, 98.0, 102.0))


PRESETS: dict[str, C3DConfig] = {
    "paper": C3DConfig(),
    "debug": C3DConfig(num_classes=7, channel_scale=0.0625, fc_width=64, frames=16, image_size=32),
}


class C3D(nn.Module):
    def __init__(self, cfg: C3DConfig):
        super().__init__()
        self.cfg = cfg
        c = lambda n: max(1, round(n * cfg.channel_scale))
        conv = lambda i, o: nn.Conv3d(i, o, 3, padding=1)
        self.conv1, self.conv2 = conv(3, c(64)), conv(c(64), c(128))
        self.conv3a, self.conv3b = conv(c(128), c(256)), conv(c(256), c(256))
        self.conv4a, self.conv4b = conv(c(256), c(512)), conv(c(512), c(512))
        self.conv5a, self.conv5b = conv(c(512), c(512)), conv(c(512), c(512))
        # pool1 keeps time; pools 2–5 halve it; pool5 pads H and W by one: 16×112² → 1×4×4.
        t, s = cfg.frames // 16, (cfg.image_size // 16 + 2) // 2
        self.fc6 = nn.Linear(c(512) * max(1, t) * s * s, cfg.fc_width)
        self.fc7 = nn.Linear(cfg.fc_width, cfg.fc_width)
        self.fc8 = nn.Linear(cfg.fc_width, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, S, S) mean-subtracted 0–255 pixels → (B, K) logits."""
        want = (3, self.cfg.frames, self.cfg.image_size, self.cfg.image_size)
        if x.ndim != 5 or tuple(x.shape[1:]) != want:
            raise ValueError(f"C3D expects (B, {', '.join(map(str, want))}), got {tuple(x.shape)}")
        x = F.max_pool3d(F.relu(self.conv1(x)), (1, 2, 2), (1, 2, 2))
        x = F.max_pool3d(F.relu(self.conv2(x)), 2, 2)
        x = F.max_pool3d(F.relu(self.conv3b(F.relu(self.conv3a(x)))), 2, 2)
        x = F.max_pool3d(F.relu(self.conv4b(F.relu(self.conv4a(x)))), 2, 2)
        x = F.max_pool3d(F.relu(self.conv5b(F.relu(self.conv5a(x)))), 2, 2, padding=(0, 1, 1))
        x = x.flatten(1)  # (B, C·t·s·s), channel-major as in the Caffe original
        x = F.relu(self.fc7(F.relu(self.fc6(x))))  # dropout is training-only
        return self.fc8(x)


def build_c3d(preset: str | C3DConfig = "paper", weights: str | Path | None = None) -> C3D:
    """C3D, randomly initialised, or loaded from a local safetensors file (c3d-pytorch layout)."""
    cfg = PRESETS[preset] if isinstance(preset, str) else preset
    model = C3D(cfg).eval()
    if weights is not None:
        load_weights(
            model, weights, network="C3D", doc="see videopoet/eval/standard/c3d.py (c3d-pytorch layout)"
        )
    return model
