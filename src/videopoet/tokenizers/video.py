"""MAGVIT-v2 video tokenizer: a causal 3D CNN encoder/decoder around a lookup-free quantizer (LFQ).

Dimension key: B batch, C channels, T frames, H W pixels, t h w latent grid, K code bits (LFQ channels),
G norm groups.

Contracts (checked by tests/test_video_tokenizer.py):
- Input video is float (B, 3, T, H, W) in [-1, 1] with T = 1 + 4k and H, W multiples of 8; it becomes a
  long (B, t, h, w) grid with t = 1 + k, h = H/8, w = W/8 (17×128×128 → 5×16×16, 41 frames → 11).
- Causal in time: every 3D convolution pads k_t − 1 frames *before* its input only (a replicate of the
  first frame) and normalisation never mixes frames, so latent frame j depends on input frames ≤ 4j.
  Hence a still image is a 1-frame video, and its tokens equal the first latent frame of any video that
  starts with it.
- Temporal downsampling is a stride-2 causal conv (T → (T − 1)/2 + 1: 17 → 9 → 5); the decoder upsamples
  by depth-to-space ×2 in time and drops the first frame (5 → 10 → 9 → 18 → 17).
- Spatial 8× by stride-2 convs; depth-to-space upsampling; adaptive GroupNorm in the decoder whose scale
  and shift are predicted from the quantized latent (per latent frame, MAGVIT-v2 style).

Weights ship as ``config.json`` + ``model.safetensors`` (``save_pretrained`` / ``from_pretrained``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videopoet.components import PRETRAINED_ROOT, Pretrained
from videopoet.config import override_fields
from videopoet.errors import UserError
from videopoet.tokenizers.quantizers import LFQ

MODEL_TYPE = "videopoet-video-tokenizer"


@dataclass(kw_only=True)
class VideoTokenizerConfig:
    in_channels: int = 3  # RGB (stylization conditions are also mapped to 3 channels)
    base_channels: int = 32  # width of the full-resolution level
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)  # width multiplier per level; levels − 1 = spatial 2× steps
    temporal_downsample: tuple[bool, ...] = (False, True, True)  # which 2× spatial steps also halve time
    encoder_res_blocks: int = 1  # residual blocks per encoder level
    decoder_res_blocks: int = 2  # residual blocks per decoder level
    norm_groups: int = 8  # GroupNorm groups (per frame); must divide every level's width
    temporal_pad: str = "replicate"  # causal padding before the first frame: "replicate" or "zeros"
    codebook_bits: int = 12  # K: LFQ bits per token, codebook size 2^K
    code_scale: float = 1.0  # LFQ code values ±code_scale (paper: ±1)
    inv_temperature: float = 1.0  # sharpness of the soft code distribution used by the entropy penalty
    entropy_group_bits: int = 12  # bits per group for the codebook-entropy term (memory 2^g per token)
    diversity_weight: float = 1.0  # weight of codebook entropy inside the LFQ entropy loss

    def __post_init__(self) -> None:
        if len(self.channel_mult) < 1:
            raise ValueError("channel_mult needs at least one level")
        if len(self.temporal_downsample) != len(self.channel_mult) - 1:
            raise ValueError(
                f"temporal_downsample has {len(self.temporal_downsample)} entries; it needs one per spatial "
                f"downsampling step, i.e. len(channel_mult) − 1 = {len(self.channel_mult) - 1}"
            )
        for m in self.channel_mult:
            if (self.base_channels * m) % self.norm_groups:
                raise ValueError(
                    f"norm_groups={self.norm_groups} must divide every level width "
                    f"(base_channels × channel_mult = {self.base_channels * m})"
                )
        for name in ("in_channels", "base_channels", "norm_groups", "codebook_bits", "entropy_group_bits"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.temporal_pad not in ("replicate", "zeros"):
            raise ValueError(f"temporal_pad must be 'replicate' or 'zeros', got {self.temporal_pad!r}")
        self.channel_mult = tuple(self.channel_mult)
        self.temporal_downsample = tuple(bool(v) for v in self.temporal_downsample)

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.temporal_downsample)

    @property
    def codebook_size(self) -> int:
        return 2**self.codebook_bits


PRESETS: dict[str, VideoTokenizerConfig] = {
    # Seconds on a CPU: the contracts (shapes, causality, save/load) at toy width.
    "debug": VideoTokenizerConfig(
        base_channels=8,
        channel_mult=(1, 2, 2, 2),
        encoder_res_blocks=1,
        decoder_res_blocks=1,
        norm_groups=4,
        codebook_bits=8,
        entropy_group_bits=8,
    ),
    # The bundled default: ~210 steps/min at batch 24 on one H100/H200; the bundled weights took ~7,000
    # steps (~45 GPU minutes) to reach 30 dB held-out PSNR (docs/pretrained.md); 2^12 codes keeps the full
    # (ungrouped) codebook entropy affordable and lets a few dozen held-out clips use most codes.
    "tiny": VideoTokenizerConfig(
        base_channels=32,
        channel_mult=(1, 2, 4, 4),
        encoder_res_blocks=1,
        decoder_res_blocks=2,
        norm_groups=8,
        codebook_bits=12,
        entropy_group_bits=12,
    ),
    # MAGVIT-v2 sized (2^18 codes, 128 base width, ×(1, 2, 2, 4), 4 residual blocks per level); the
    # codebook entropy is taken over two 9-bit groups (2 × 512 floats per token instead of 2^18).
    "paper": VideoTokenizerConfig(
        base_channels=128,
        channel_mult=(1, 2, 2, 4),
        encoder_res_blocks=4,
        decoder_res_blocks=4,
        norm_groups=32,
        codebook_bits=18,
        entropy_group_bits=9,
    ),
}


# ============================================================================================ layers
class CausalConv3d(nn.Module):
    """3D conv that pads k_t − 1 frames before the input (none after) and (k − 1)/2 pixels spatially."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int = 3,
        *,
        stride: tuple[int, int, int] = (1, 1, 1),
        temporal_pad: str = "replicate",
    ):
        super().__init__()
        self.time_pad = kernel - 1
        self.temporal_pad = temporal_pad
        self.conv = nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=(0, kernel // 2, kernel // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_pad:
            if self.temporal_pad == "replicate":
                first = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
            else:
                first = x.new_zeros(x.shape[0], x.shape[1], self.time_pad, *x.shape[3:])
            x = torch.cat([first, x], dim=2)  # (B, C, T + k_t − 1, H, W)
        return self.conv(x)


def frame_group_norm(x: torch.Tensor, groups: int, eps: float = 1e-6) -> torch.Tensor:
    """GroupNorm over (C/G, H, W) of each frame separately (never over T, which would break causality).

    Frames are folded into the batch for the fused kernel, which keeps only its input and per-group
    statistics for backward; it runs outside autocast so bf16 activations stay bf16 (the kernel
    accumulates in fp32).
    """
    b = x.shape[0]
    y = rearrange(x, "b c t h w -> (b t) c h w")
    with torch.autocast(x.device.type, enabled=False):
        y = F.group_norm(y, groups, eps=eps)
    return rearrange(y, "(b t) c h w -> b c t h w", b=b)


class FrameGroupNorm(nn.Module):
    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        y = frame_group_norm(x, self.groups)
        weight, bias = (p.view(1, -1, 1, 1, 1).to(y.dtype) for p in (self.weight, self.bias))
        if torch.is_grad_enabled():
            return y * weight + bias
        return y.mul_(weight).add_(bias)  # inference: in place on this call's own tensor, same values


class AdaptiveGroupNorm(nn.Module):
    """Per-frame GroupNorm whose scale and shift come from the quantized latent (MAGVIT-v2 decoder).

    The latent's per-frame spatial mean and std (B, 2K, t) predict a per-channel (1 + γ) and β for each
    latent frame; feature frame i at a level with temporal factor s takes latent frame ⌈i / s⌉, the same
    grouping the causal encoder used (latent frame j summarises input frames 4j − 3 … 4j).
    """

    def __init__(self, channels: int, groups: int, cond_channels: int):
        super().__init__()
        self.groups = groups
        self.base = FrameGroupNorm(channels, groups)
        self.to_scale_shift = nn.Linear(2 * cond_channels, 2 * channels)
        nn.init.zeros_(self.to_scale_shift.weight)  # start as a plain GroupNorm
        nn.init.zeros_(self.to_scale_shift.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        assert cond is not None, "AdaptiveGroupNorm needs the quantized latent"
        y = self.base(x)
        t_feat, t_lat = x.shape[2], cond.shape[2]
        stats = torch.cat([cond.mean(dim=(3, 4)), cond.std(dim=(3, 4), correction=0)], dim=1)  # (B, 2K, t)
        scale, shift = self.to_scale_shift(stats.transpose(1, 2)).chunk(2, dim=-1)  # (B, t, C) each
        if t_lat > 1:
            s = (t_feat - 1) // (t_lat - 1)
            idx = (torch.arange(t_feat, device=x.device) + s - 1) // s  # ⌈i / s⌉
        else:
            idx = torch.zeros(t_feat, dtype=torch.long, device=x.device)
        scale = rearrange(scale[:, idx], "b t c -> b c t 1 1").to(y.dtype)
        shift = rearrange(shift[:, idx], "b t c -> b c t 1 1").to(y.dtype)
        return y * (1 + scale) + shift


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, cfg: VideoTokenizerConfig, *, cond_channels: int = 0):
        super().__init__()
        norm = (
            (lambda c: AdaptiveGroupNorm(c, cfg.norm_groups, cond_channels))
            if cond_channels
            else (lambda c: FrameGroupNorm(c, cfg.norm_groups))
        )
        self.norm1 = norm(c_in)
        self.conv1 = CausalConv3d(c_in, c_out, 3, temporal_pad=cfg.temporal_pad)
        self.norm2 = norm(c_out)
        self.conv2 = CausalConv3d(c_out, c_out, 3, temporal_pad=cfg.temporal_pad)
        self.skip = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        # Inference works in place on the tensors made here: the same values, and far fewer full-size
        # allocations, which cost as much as the convolutions in a CPU encode (page faults).
        inplace = not torch.is_grad_enabled()
        h = self.conv1(F.silu(self.norm1(x, cond), inplace=inplace))
        h = self.conv2(F.silu(self.norm2(h, cond), inplace=inplace))
        skip = self.skip(x)
        return h.add_(skip) if inplace and h.dtype == skip.dtype else skip + h


class DepthToSpaceUpsample(nn.Module):
    """Conv to C·(s_t·2·2) channels, then depth-to-space; a temporal ×2 drops the first frame (t → 2t − 1)."""

    def __init__(self, c_in: int, c_out: int, temporal: bool, temporal_pad: str):
        super().__init__()
        self.st = 2 if temporal else 1
        self.conv = CausalConv3d(c_in, c_out * self.st * 4, 3, temporal_pad=temporal_pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        # (B, C·st·2·2, T, H, W) → (B, C, T·st, 2H, 2W)
        x = rearrange(x, "b (c pt ph pw) t h w -> b c (t pt) (h ph) (w pw)", pt=self.st, ph=2, pw=2)
        return x[:, :, 1:] if self.st == 2 else x


# ============================================================================================ model
class Encoder(nn.Module):
    def __init__(self, cfg: VideoTokenizerConfig):
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.channel_mult]
        self.conv_in = CausalConv3d(cfg.in_channels, widths[0], 3, temporal_pad=cfg.temporal_pad)
        self.levels = nn.ModuleList()
        for i, width in enumerate(widths):
            blocks = nn.ModuleList(ResBlock(width, width, cfg) for _ in range(cfg.encoder_res_blocks))
            down = None
            if i < len(widths) - 1:
                stride = (2 if cfg.temporal_downsample[i] else 1, 2, 2)
                down = CausalConv3d(width, widths[i + 1], 3, stride=stride, temporal_pad=cfg.temporal_pad)
            self.levels.append(nn.ModuleDict({"blocks": blocks, **({"down": down} if down else {})}))
        self.norm_out = FrameGroupNorm(widths[-1], cfg.norm_groups)
        self.conv_out = nn.Conv3d(widths[-1], cfg.codebook_bits, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.levels:
            for block in level["blocks"]:
                h = block(h)
            if "down" in level:
                h = level["down"](h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, K, t, h, w)


class Decoder(nn.Module):
    def __init__(self, cfg: VideoTokenizerConfig):
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.channel_mult][::-1]
        temporal = list(cfg.temporal_downsample)[::-1]
        k = cfg.codebook_bits
        self.conv_in = CausalConv3d(k, widths[0], 3, temporal_pad=cfg.temporal_pad)
        self.levels = nn.ModuleList()
        for i, width in enumerate(widths):
            blocks = nn.ModuleList(
                ResBlock(width, width, cfg, cond_channels=k) for _ in range(cfg.decoder_res_blocks)
            )
            mods: dict[str, nn.Module] = {"blocks": blocks}
            if i < len(widths) - 1:
                mods["up"] = DepthToSpaceUpsample(width, widths[i + 1], temporal[i], cfg.temporal_pad)
            self.levels.append(nn.ModuleDict(mods))
        self.norm_out = AdaptiveGroupNorm(widths[-1], cfg.norm_groups, k)
        self.conv_out = CausalConv3d(widths[-1], cfg.in_channels, 3, temporal_pad=cfg.temporal_pad)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(q)
        for level in self.levels:
            for block in level["blocks"]:
                h = block(h, q)
            if "up" in level:
                h = level["up"](h)
        return self.conv_out(F.silu(self.norm_out(h, q)))  # (B, 3, T, H, W)


class TokenizerOutput(NamedTuple):
    recon: torch.Tensor  # float (B, 3, T, H, W), unclamped
    indices: torch.Tensor  # long (B, t, h, w)
    entropy_loss: torch.Tensor  # scalar (nats): per-sample − diversity_weight · codebook entropy
    per_sample_entropy: torch.Tensor  # scalar (nats)
    codebook_entropy: torch.Tensor  # scalar (nats)
    commit_loss: torch.Tensor  # scalar
    bit_ones: torch.Tensor  # (K,) fraction of tokens with bit k set


class VideoTokenizer(Pretrained, nn.Module):
    """MAGVIT-v2 tokenizer: ``encode`` video → indices, ``decode`` indices → video."""

    # the component format (videopoet.components)
    MODEL_TYPE = MODEL_TYPE
    CONFIG = VideoTokenizerConfig
    BUNDLED = "video_tokenizer"
    DESCRIPTION = "a video tokenizer"

    def __init__(self, config: VideoTokenizerConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = LFQ(
            config.codebook_bits,
            code_scale=config.code_scale,
            inv_temperature=config.inv_temperature,
            entropy_group_bits=config.entropy_group_bits,
            diversity_weight=config.diversity_weight,
        )
        self.decoder = Decoder(config)

    # ---------------------------------------------------------------------------- construction / IO
    @classmethod
    def from_preset(cls, name: str, **overrides) -> VideoTokenizer:
        if name not in PRESETS:
            raise UserError(f"unknown video tokenizer preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(override_fields(PRESETS[name], overrides))  # "none" → None, lists → tuples

    # ---------------------------------------------------------------------------- shapes and checks
    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        cfg = self.config
        return (
            (frames - 1) // cfg.temporal_factor + 1,
            height // cfg.spatial_factor,
            width // cfg.spatial_factor,
        )

    def check_video(self, video: torch.Tensor, *, check_range: bool = True) -> None:
        cfg = self.config
        tf, sf = cfg.temporal_factor, cfg.spatial_factor
        if not torch.is_tensor(video) or not video.is_floating_point():
            raise ValueError(
                f"video must be a float tensor in [-1, 1], got "
                f"{getattr(video, 'dtype', type(video).__name__)}; convert uint8 with x / 127.5 − 1"
            )
        if video.ndim != 5 or video.shape[1] != cfg.in_channels:
            raise ValueError(
                f"video must have shape (B, {cfg.in_channels}, T, H, W), got {tuple(video.shape)}"
            )
        t, h, w = video.shape[2:]
        if (t - 1) % tf:
            raise ValueError(
                f"video has {t} frames; the tokenizer needs T = 1 + {tf}·k frames (1, 5, 9, 17, …, 41)"
            )
        if h <= 0 or w <= 0 or h % sf or w % sf:
            raise ValueError(
                f"video is {w} wide × {h} tall; width and height must be positive multiples of {sf}"
            )
        if check_range and video.numel():
            lo, hi = torch.aminmax(video.detach())
            if lo < -1.0 - 1e-3 or hi > 1.0 + 1e-3 or not torch.isfinite(lo + hi):
                raise ValueError(
                    f"video values must lie in [-1, 1], got [{lo.item():.3g}, {hi.item():.3g}]; "
                    "map uint8 pixels with x / 127.5 − 1"
                )

    def check_indices(self, indices: torch.Tensor) -> None:
        if not torch.is_tensor(indices) or indices.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"indices must be an integer (long) tensor, got {getattr(indices, 'dtype', indices)}"
            )
        if indices.ndim != 4:
            raise ValueError(f"indices must have shape (B, t, h, w), got {tuple(indices.shape)}")

    # ---------------------------------------------------------------------------- encode / decode
    def forward(self, video: torch.Tensor, *, compute_losses: bool = True) -> TokenizerOutput:
        """Training pass: reconstruction plus the LFQ losses (no range check: callers normalise data)."""
        self.check_video(video, check_range=False)
        z = self.encoder(video)  # (B, K, t, h, w)
        q = self.quantizer(z, compute_losses=compute_losses)
        recon = self.decoder(q.codes)
        return TokenizerOutput(
            recon,
            q.indices,
            q.entropy_loss,
            q.per_sample_entropy,
            q.codebook_entropy,
            q.commit_loss,
            q.bit_ones,
        )

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """float (B, 3, T, H, W) in [-1, 1] → long (B, t, h, w)."""
        self.check_video(video)
        z = self.encoder(video.to(self._dtype()))
        return self.quantizer(z, compute_losses=False).indices

    @torch.no_grad()
    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """long (B, t, h, w) → float (B, 3, 1 + 4(t − 1), 8h, 8w) clamped to [-1, 1]."""
        self.check_indices(indices)
        codes = self.indices_to_codes(indices.to(self._device()))
        return self.decoder(codes.to(self._dtype())).clamp(-1, 1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """long (B, t, h, w) → float (B, K, t, h, w) of ±code_scale."""
        return self.quantizer.indices_to_codes(indices)

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype


def bundled_path() -> Path:
    """Where the bundled default (tiny) tokenizer weights live inside the package."""
    return PRETRAINED_ROOT / VideoTokenizer.BUNDLED
