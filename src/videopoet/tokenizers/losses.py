"""Training-only losses for the tokenizers: a 3D video discriminator, hinge / non-saturating GAN losses,
LeCam regularisation and a pluggable perceptual loss. Nothing here is needed to encode or decode.

Dimension key: B batch, C channels, T frames, H W pixels, N images (B·frames), L feature layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videopoet.distributed import global_mean, local_rand
from videopoet.errors import UserError


# ================================================================================ 3D discriminator
@dataclass(kw_only=True)
class DiscriminatorConfig:
    in_channels: int = 3  # RGB video in [-1, 1]
    base_channels: int = 32  # width after the stem
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)  # width multiplier per down-sampling residual block
    norm_groups: int = 8  # GroupNorm groups inside the residual blocks (must divide every width)


DISCRIMINATOR_PRESETS: dict[str, DiscriminatorConfig] = {
    "debug": DiscriminatorConfig(base_channels=8, channel_mult=(1, 2, 2), norm_groups=4),
    "tiny": DiscriminatorConfig(base_channels=32, channel_mult=(1, 2, 4, 4), norm_groups=8),
    "paper": DiscriminatorConfig(base_channels=64, channel_mult=(1, 2, 4, 4, 4), norm_groups=32),
}


class _DownBlock(nn.Module):
    """Residual block with 3D convs that halves H and W (and T while T > 1), StyleGAN-style scaling."""

    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv3d(c_in, c_out, 3, padding=1)
        self.norm1 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv3d(c_out, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.skip = nn.Conv3d(c_in, c_out, 1, bias=False)

    @staticmethod
    def _pool(x: torch.Tensor) -> torch.Tensor:
        kt = 2 if x.shape[2] > 1 else 1
        return F.avg_pool3d(x, (kt, 2, 2), ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.norm1(self.conv1(x)), 0.2)
        h = F.leaky_relu(self.norm2(self.conv2(h)), 0.2)
        return (self._pool(h) + self._pool(self.skip(x))) / math.sqrt(2)


class Discriminator3D(nn.Module):
    """Patch discriminator over whole clips (B, 3, T, H, W) → logits (B, 1, t', h', w')."""

    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        widths = [config.base_channels * m for m in config.channel_mult]
        self.stem = nn.Conv3d(config.in_channels, widths[0], 3, padding=1)
        ins = [widths[0]] + widths[:-1]
        self.blocks = nn.ModuleList(_DownBlock(a, b, config.norm_groups) for a, b in zip(ins, widths))
        self.head = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.Conv3d(widths[-1], widths[-1], 1),
            nn.LeakyReLU(0.2),
            nn.Conv3d(widths[-1], 1, 1),
        )

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        h = self.stem(video)
        for block in self.blocks:
            h = block(h)
        return self.head(h)


# ================================================================================ GAN losses
def d_loss(real: torch.Tensor, fake: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """Discriminator loss on real / fake logits: ``hinge`` or ``non_saturating`` (softplus)."""
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if kind == "non_saturating":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    raise ValueError(f"GAN loss kind must be 'hinge' or 'non_saturating', got {kind!r}")


def g_loss(fake: torch.Tensor, kind: str = "hinge") -> torch.Tensor:
    """Generator loss on the discriminator's logits for reconstructions."""
    if kind == "hinge":
        return -fake.mean()
    if kind == "non_saturating":
        return F.softplus(-fake).mean()
    raise ValueError(f"GAN loss kind must be 'hinge' or 'non_saturating', got {kind!r}")


def edge_loss(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean L1 between the horizontal and vertical pixel differences of two (B, C, T, H, W) videos.

    Plain L1/L2 spend little on thin detail (a star's points, a small object's outline): its area is
    tiny. Differences weigh every edge by its contrast, whatever the area behind it.
    """
    dx = lambda v: v[..., :, 1:] - v[..., :, :-1]  # noqa: E731
    dy = lambda v: v[..., 1:, :] - v[..., :-1, :]  # noqa: E731
    return 0.5 * ((dx(recon) - dx(target)).abs().mean() + (dy(recon) - dy(target)).abs().mean())


class LeCam(nn.Module):
    """LeCam regularisation (Tseng et al. 2021): keep the discriminator's real/fake predictions near the
    moving averages of each other, which bounds its over-confidence when data is limited.

    ``reg = mean(relu(D(real) − ema_fake)²) + mean(relu(ema_real − D(fake))²)``; the EMAs are buffers, so
    they travel in checkpoints and resume exactly.
    """

    def __init__(self, decay: float = 0.99):
        super().__init__()
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        # anchors over the global batch (every rank's logits), so they do not depend on the rank count
        real_mean = global_mean(real.detach().float().reshape(-1), grad=False)
        fake_mean = global_mean(fake.detach().float().reshape(-1), grad=False)
        with torch.no_grad():
            if not bool(self.initialised):
                self.ema_real.copy_(real_mean)
                self.ema_fake.copy_(fake_mean)
                self.initialised.fill_(True)
            else:
                self.ema_real.lerp_(real_mean, 1 - self.decay)
                self.ema_fake.lerp_(fake_mean, 1 - self.decay)
        reg_real = F.relu(real.float() - self.ema_fake).pow(2).mean()
        return reg_real + F.relu(self.ema_real - fake.float()).pow(2).mean()


# ================================================================================ perceptual loss
class VGG16Features(nn.Module):
    """The convolutional trunk of VGG16 with torchvision's parameter names (``features.{i}.weight``), so a
    user's local VGG16 weights converted to safetensors load directly. Returns the 5 LPIPS taps
    (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3)."""

    LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
    TAPS = (3, 8, 15, 22, 29)  # indices (in ``features``) of the ReLUs whose outputs are compared

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in self.LAYOUT:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
                c = v
        self.features = nn.Sequential(*layers)
        # ImageNet normalisation of inputs mapped from [-1, 1] to [0, 1]
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = ((images + 1) / 2 - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.TAPS:
                out.append(x)
            if i >= self.TAPS[-1]:
                break
        return out


FEATURE_NETWORKS: dict[str, type[nn.Module]] = {"vgg16": VGG16Features}


def load_feature_network(path: str | Path, arch: str = "vgg16") -> nn.Module:
    """A frozen feature network from a local safetensors file (nothing is downloaded)."""
    from safetensors.torch import load_file

    if arch not in FEATURE_NETWORKS:
        raise UserError(f"unknown perceptual network {arch!r}; choose one of {sorted(FEATURE_NETWORKS)}")
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"perceptual weights {path} not found; set perceptual_weights to a local "
            ".safetensors file (e.g. torchvision VGG16 weights converted with safetensors.torch.save_file)"
        )
    net = FEATURE_NETWORKS[arch]()
    state = load_file(str(path))
    wanted = net.state_dict()
    missing = [k for k in wanted if k not in state]
    if missing:
        raise UserError(
            f"{path} lacks {len(missing)} {arch} tensors (e.g. {missing[0]}); "
            "expected torchvision parameter names such as features.0.weight"
        )
    net.load_state_dict({k: state[k].float() for k in wanted})
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


class PerceptualLoss(nn.Module):
    """LPIPS-style distance (unit-normalised channels, squared difference, mean) on sampled frames."""

    def __init__(self, network: nn.Module, frames_per_clip: int = 4):
        super().__init__()
        self.network = network
        self.frames_per_clip = frames_per_clip

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        b, _, t = recon.shape[:3]
        k = min(self.frames_per_clip, t)
        # the same random frames for recon and target; drawn from torch's global RNG (restored on resume)
        idx = local_rand(b, t).argsort(dim=1)[:, :k].to(recon.device)  # (B, k)
        gather = idx.view(b, 1, k, 1, 1).expand(-1, recon.shape[1], -1, *recon.shape[3:])
        x = rearrange(torch.gather(recon, 2, gather), "b c k h w -> (b k) c h w")
        y = rearrange(torch.gather(target, 2, gather), "b c k h w -> (b k) c h w")
        total = recon.new_zeros((), dtype=torch.float32)
        for fx, fy in zip(self.network(x), self.network(y)):
            fx = fx.float() / (fx.float().norm(dim=1, keepdim=True) + 1e-10)
            fy = fy.float() / (fy.float().norm(dim=1, keepdim=True) + 1e-10)
            total = total + (fx - fy).pow(2).sum(1).mean()
        return total
