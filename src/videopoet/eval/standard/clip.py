"""CLIP (Radford et al. 2021) image and text towers, ViT-B/16 by default: the network of CLIPSIM.

Dimension key: B batch, H W pixels, P patches per side, N tokens (1 + P² for images, context for text),
D width, E joint embedding size, V vocabulary.

State-dict keys are those of OpenAI's released CLIP checkpoints (``ViT-B-16.pt`` → ``state_dict()``),
so a conversion is a plain safetensors save of that dict:
``visual.{conv1.weight, class_embedding, positional_embedding, ln_pre.*, ln_post.*, proj}``,
``visual.transformer.resblocks.{i}.{ln_1,ln_2}.*``, ``….attn.{in_proj_weight,in_proj_bias,out_proj.*}``,
``….mlp.{c_fc,c_proj}.*``; text: ``token_embedding.weight``, ``positional_embedding``,
``transformer.resblocks.{i}.*`` (same block layout), ``ln_final.*``, ``text_projection``, ``logit_scale``.
(OpenAI's file also holds ``input_resolution``, ``context_length``, ``vocab_size`` scalars: they are ignored.)

Text tokenization uses the ``tokenizers`` package with the user's own CLIP BPE files: either a Hugging
Face ``tokenizer.json`` of a CLIP tokenizer, or ``vocab.json`` + ``merges.txt`` (byte-level BPE with the
``</w>`` end-of-word suffix, as in OpenAI's ``bpe_simple_vocab_16e6``).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videopoet.errors import UserError
from videopoet.eval.standard.weights import load_weights


@dataclass(kw_only=True)
class CLIPConfig:
    embed_dim: int = 512  # joint image-text embedding size E
    image_size: int = 224  # input resolution of the vision tower
    patch_size: int = 16  # ViT patch size (B/16)
    vision_width: int = 768  # vision transformer width
    vision_layers: int = 12  # vision transformer depth
    vision_heads: int = 12  # vision attention heads
    context_length: int = 77  # text tokens incl. start/end markers
    vocab_size: int = 49408  # CLIP BPE vocabulary
    text_width: int = 512  # text transformer width
    text_layers: int = 12  # text transformer depth
    text_heads: int = 8  # text attention heads


PRESETS: dict[str, CLIPConfig] = {
    "ViT-B/16": CLIPConfig(),
    "debug": CLIPConfig(
        embed_dim=32, image_size=32, patch_size=8, vision_width=48, vision_layers=2, vision_heads=4,
        context_length=16, vocab_size=64, text_width=32, text_layers=2, text_heads=4,
    ),
}  # fmt: skip

# OpenAI CLIP's image normalisation (after resize-shortest-side + centre crop, pixel values / 255).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
START_TOKEN, END_TOKEN = "<|startoftext|>", "<|endoftext|>"


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, width * 4)),
                    ("gelu", QuickGELU()),
                    ("c_proj", nn.Linear(width * 4, width)),
                ]
            )
        )
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        width, grid = cfg.vision_width, cfg.image_size // cfg.patch_size
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, cfg.patch_size, cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, cfg.vision_layers, cfg.vision_heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, cfg.embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = rearrange(self.conv1(x), "b d p q -> b (p q) d")  # (B, P², D)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding  # (B, 1 + P², D)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj  # (B, E)


class CLIP(nn.Module):
    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.cfg = cfg
        self.visual = VisionTransformer(cfg)
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.text_width)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(cfg.context_length, cfg.text_width))
        self.transformer = Transformer(cfg.text_width, cfg.text_layers, cfg.text_heads)
        self.ln_final = nn.LayerNorm(cfg.text_width)
        self.text_projection = nn.Parameter(cfg.text_width**-0.5 * torch.randn(cfg.text_width, cfg.embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
        causal = torch.full((cfg.context_length, cfg.context_length), float("-inf")).triu(1)
        self.register_buffer("causal_mask", causal, persistent=False)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images (B, 3, S, S) (see ``preprocess_frames``) → (B, E) (not unit length)."""
        s = self.cfg.image_size
        if images.ndim != 4 or images.shape[1:] != (3, s, s):
            raise ValueError(f"CLIP image tower expects (B, 3, {s}, {s}), got {tuple(images.shape)}")
        return self.visual(images)

    def encode_text(self, tokens: torch.Tensor, end_id: int | None = None) -> torch.Tensor:
        """Token ids (B, context) → (B, E), read at each row's end token (OpenAI: the largest id)."""
        if tokens.ndim != 2 or tokens.shape[1] != self.cfg.context_length:
            raise ValueError(
                f"CLIP text tower expects (B, {self.cfg.context_length}) ids, got {tuple(tokens.shape)}"
            )
        x = self.token_embedding(tokens) + self.positional_embedding  # (B, N, D)
        x = self.ln_final(self.transformer(x, self.causal_mask))
        end = tokens.argmax(dim=-1) if end_id is None else (tokens == end_id).int().argmax(dim=-1)
        return x[torch.arange(x.shape[0]), end] @ self.text_projection  # (B, E)


def preprocess_frames(frames: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 (B, H, W, 3) → CLIP input (B, 3, S, S): bicubic short-side resize, centre crop, normalise."""
    x = frames.permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W)
    h, w = x.shape[-2:]
    scale = image_size / min(h, w)
    nh, nw = max(image_size, round(h * scale)), max(image_size, round(w * scale))
    x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    top, left = (nh - image_size) // 2, (nw - image_size) // 2
    x = x[:, :, top : top + image_size, left : left + image_size]
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


class CLIPTokenizer:
    """CLIP's byte-level BPE through the ``tokenizers`` package, from the user's local files."""

    def __init__(self, path: str | Path, context_length: int = 77):
        from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
        from tokenizers.models import BPE

        path = Path(path)
        self.context_length = context_length
        if path.is_file() and path.suffix == ".json" and path.name != "vocab.json":
            self.tok = Tokenizer.from_file(str(path))
            self.tok.no_padding()
            self.tok.no_truncation()
            self.tok.post_processor = None
        else:
            folder = path if path.is_dir() else path.parent
            vocab, merges = folder / "vocab.json", folder / "merges.txt"
            if not vocab.is_file() or not merges.is_file():
                raise UserError(
                    f"CLIP tokenizer {str(path)!r}: expected a tokenizer.json or a folder with "
                    "vocab.json + merges.txt"
                )
            model = BPE.from_file(str(vocab), str(merges), end_of_word_suffix="</w>", unk_token=END_TOKEN)
            self.tok = Tokenizer(model)
            self.tok.normalizer = normalizers.Sequence(
                [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
            )
            # OpenAI simple_tokenizer's split: contractions, letter runs, single digits, symbol runs.
            pattern = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
            self.tok.pre_tokenizer = pre_tokenizers.Sequence(
                [
                    pre_tokenizers.Split(Regex(pattern), behavior="removed", invert=True),
                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
                ]
            )
        self.start_id = self.tok.token_to_id(START_TOKEN)
        self.end_id = self.tok.token_to_id(END_TOKEN)
        if self.start_id is None or self.end_id is None:
            raise UserError(f"CLIP tokenizer {str(path)!r} lacks the {START_TOKEN} / {END_TOKEN} tokens")

    def __call__(self, texts: list[str]) -> torch.Tensor:
        """texts → (B, context) long ids: start, BPE ids (truncated), end, zero padding."""
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = self.tok.encode(text.strip()).ids[: self.context_length - 2]
            row = [self.start_id, *ids, self.end_id]
            out[i, : len(row)] = torch.tensor(row)
        return out


def build_clip(preset: str | CLIPConfig = "ViT-B/16", weights: str | Path | None = None) -> CLIP:
    """CLIP, randomly initialised, or loaded from a local safetensors file (OpenAI key layout)."""
    cfg = PRESETS[preset] if isinstance(preset, str) else preset
    model = CLIP(cfg).eval()
    if weights is not None:
        load_weights(
            model,
            weights,
            network="CLIP",
            ignore_prefixes=("input_resolution", "context_length", "vocab_size"),
            doc="see videopoet/eval/standard/clip.py (OpenAI CLIP layout)",
        )
    return model


def write_vocab(folder: str | Path, vocab: dict[str, int], merges: list[str]) -> Path:
    """Write ``vocab.json`` + ``merges.txt`` (for converting a vocabulary or building a test one)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder
