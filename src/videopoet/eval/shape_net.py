"""The judge's learned shape reader: a small CNN over scale-normalised crops of one object's colour.

Dimension key: B crops, T frames, H W pixels, S crop side (``ShapeNetConfig.crop``), C conv channels,
K shapes.

The analytic moments in ``eval/judge.py`` read clean renders almost perfectly but not what a lossy video
tokenizer leaves of a small object (a 20-pixel star becomes a blob with stubs). This network reads the
same object the judge found, frame by frame: the crop is centred on the object's mask, scaled so the
object's equivalent radius sqrt(area/π) spans ``S / (2·CROP_RADII)`` pixels, and holds how close
each pixel's colour is to the object's palette colour (``membership``, from the judge) — relative to
that colour, never the colour itself: a reader given the crops' RGB learnt the train split's
colour–shape pairs and fell from 0.880 to 0.815 on held-out reconstructions. It sees no caption and no
other attribute; its training (``videopoet.train.judge_shapes``) uses the world's ground
truth on clips of both splits, clean and passed through a video tokenizer or simulated degradations, with
random rotations and flips. A clip's frames are pooled with the reader's own per-frame trust
(``pool_frames``): a causal codec keeps some frames sharp and smears others.

Weights: ``config.json`` + ``model.safetensors`` (bundled in ``pretrained/judge_shapes``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from videopoet.components import PRETRAINED_ROOT, Pretrained
from videopoet.data.world import SHAPES

MODEL_TYPE = "videopoet-judge-shapes"
CROP = 32  # S: the default crop side in pixels (configs written before ``ShapeNetConfig.crop`` existed)
CROP_RADII = 2.5  # the crop's half-side, in equivalent radii of the object
MIN_AREA = 6  # frames where the object covers fewer pixels give no crop


@dataclass(kw_only=True)
class ShapeNetConfig:
    shapes: tuple[str, ...] = SHAPES  # K class names, in output order
    # S: crop side in pixels; the object's equivalent radius spans S / (2·CROP_RADII) of them (32: 6.4 px,
    # so a small world object, radius 10 px, is scaled by 0.64–0.85 depending on its shape; 48: 9.6 px,
    # 0.96–1.27)
    crop: int = CROP
    channels: int = 32  # width of the first conv block; doubles once per block
    blocks: int = 3  # conv blocks (two 3×3 convs + 2× max-pool each)
    # a second input plane: the membership at twice the colour tolerance (a codec's smudged edges and
    # points fail the tight test but still show)
    wide: bool = False
    # a per-frame trust score: a clip's frames are pooled with softmax(trust) weights instead of equally
    # (a causal codec keeps the first frame sharp and smears fast motion in later ones)
    trust: bool = False

    @property
    def planes(self) -> int:
        return 1 + int(self.wide)


def bundled_path() -> Path:
    return PRETRAINED_ROOT / ShapeNet.BUNDLED


class ShapeNet(Pretrained, nn.Module):
    """crops float (B, planes, S, S) in [0, 1] → (logits (B, K), trust (B,)); trust is 0 without the
    trust head."""

    # the component format (videopoet.components)
    MODEL_TYPE = MODEL_TYPE
    CONFIG = ShapeNetConfig
    BUNDLED = "judge_shapes"
    DESCRIPTION = "a judge shape reader"

    def __init__(self, config: ShapeNetConfig):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        c_in, c = config.planes, config.channels
        for _ in range(config.blocks):
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.ReLU()]
            layers.append(nn.MaxPool2d(2))
            c_in, c = c, 2 * c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, len(config.shapes))
        self.trust = nn.Linear(c_in, 1) if config.trust else None

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.features(crops).mean((2, 3))  # (B, C)
        trust = self.trust(x)[:, 0] if self.trust is not None else x.new_zeros(x.shape[0])
        return self.head(x), trust  # (B, K), (B,)


@lru_cache(maxsize=1)
def bundled_shape_net() -> ShapeNet | None:
    """The bundled reader, or None where the install has no weights (the judge then uses its moments)."""
    if not (bundled_path() / "model.safetensors").is_file():
        return None
    return ShapeNet.from_pretrained()


def object_crops(planes: np.ndarray, mask: np.ndarray, size: int = CROP) -> tuple[np.ndarray, np.ndarray]:
    """planes float (P, T, H, W) in [0, 1] (memberships of the object's colour), mask bool (T, H, W) of
    the object's main blob → (crops float32 (T', P, S, S), frame indices (T',)) with S = ``size``, for the
    frames where the mask has ≥ MIN_AREA pixels.

    Bilinear samples on an S×S grid centred on the mask's centroid, ± CROP_RADII equivalent radii wide;
    outside the frame counts as 0.
    """
    t_count, h, w = mask.shape
    area = mask.sum((1, 2))
    keep = np.flatnonzero(area >= MIN_AREA)
    crops = np.zeros((keep.size, planes.shape[0], size, size), np.float32)
    steps = (np.arange(size, dtype=np.float64) + 0.5) / size * 2 - 1  # (S,) in (-1, 1)
    for i, t in enumerate(keep):
        ys, xs = np.nonzero(mask[t])
        cy, cx = ys.mean(), xs.mean()
        half = CROP_RADII * math.sqrt(area[t] / math.pi)
        gy, gx = np.meshgrid(cy + steps * half, cx + steps * half, indexing="ij")  # (S, S) each
        for p in range(planes.shape[0]):
            crops[i, p] = _bilinear(planes[p, t], gy, gx)
    return crops, keep


def _bilinear(img: np.ndarray, gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    h, w = img.shape
    padded = np.pad(img, 1)  # zeros outside the frame
    y, x = np.clip(gy + 1, 0, h + 0.999), np.clip(gx + 1, 0, w + 0.999)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, h + 1), np.minimum(x0 + 1, w + 1)
    fy, fx = y - y0, x - x0
    top = padded[y0, x0] * (1 - fx) + padded[y0, x1] * fx
    bottom = padded[y1, x0] * (1 - fx) + padded[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def pool_frames(
    log_probs: torch.Tensor, trust: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-frame log-probabilities (..., T, K) and trust (..., T) → the clip's log-probabilities (..., K):
    log_softmax of the frames' log-probabilities averaged with softmax(trust) weights over the frames in
    ``mask`` (..., T) (all when None). Equal trust is the plain evidence sum, up to a temperature."""
    if mask is not None:
        trust = trust.masked_fill(~mask, float("-inf"))
        log_probs = log_probs.masked_fill(~mask[..., None], 0.0)
    weights = torch.softmax(trust, -1)  # (..., T)
    return torch.log_softmax((weights[..., None] * log_probs).sum(-2), -1)


@torch.no_grad()
def shape_log_probs(model: ShapeNet, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """crops (T', P, S, S) → (log-probabilities float64 (T', K) over ``model.config.shapes``, trust
    float64 (T',)); pool a clip's frames with ``pool_frames``."""
    if crops.shape[0] == 0:
        return np.zeros((0, len(model.config.shapes))), np.zeros(0)
    x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32))  # (T', P, S, S)
    dev = next(model.parameters()).device
    logits, trust = model(x.to(dev))
    lp = torch.log_softmax(logits.float(), -1)
    return lp.cpu().double().numpy(), trust.float().cpu().double().numpy()
