"""Metric drivers: clips in, numbers out, with the paper's preprocessing (protocols.py).

Videos are uint8 arrays (T, H, W, 3); audio is float mono (N,). Every driver takes an already built
network (``build_i3d(weights=...)`` etc.), so tests pass small randomly initialised ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from videopoet.eval.metrics import InceptionScore, frechet_distance, inception_score
from videopoet.eval.standard import protocols as P
from videopoet.eval.standard.clip import CLIP, CLIPTokenizer, preprocess_frames
from videopoet.eval.standard.vggish import waveform_to_examples


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _check_video(v: np.ndarray, frames: int) -> np.ndarray:
    v = np.asarray(v)
    if v.dtype != np.uint8 or v.ndim != 4 or v.shape[-1] != 3:
        raise ValueError(f"videos must be uint8 (T, H, W, 3), got {v.dtype} {v.shape}")
    if v.shape[0] < frames:
        raise ValueError(f"the protocol needs {frames} frames per clip, got a clip of {v.shape[0]}")
    return v[:frames]


def _batches(items: Iterable, size: int):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def resize_video(video: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """(T, 3, H, W) float → (T, 3, h, w), bilinear with antialiasing (area-correct when shrinking)."""
    size = (size, size) if isinstance(size, int) else size
    if tuple(video.shape[-2:]) == tuple(size):
        return video
    return F.interpolate(video, size=size, mode="bilinear", align_corners=False, antialias=True)


# ------------------------------------------------------------------------------------------- FVD (I3D)
@torch.no_grad()
def i3d_features(
    videos: Iterable[np.ndarray],
    model: nn.Module,
    *,
    frames: int = P.FVD_FRAMES,
    size: int = P.FVD_SIZE,
    batch_size: int = 8,
) -> np.ndarray:
    """I3D logits (N, 400) in float64: first ``frames`` frames, resized to size², scaled to [-1, 1]."""
    dev, feats = _device(model), []
    for batch in _batches(videos, batch_size):
        clips = []
        for v in batch:
            x = torch.from_numpy(_check_video(v, frames)).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
            clips.append(resize_video(x, size) / 127.5 - 1.0)
        x = rearrange(torch.stack(clips), "b t c h w -> b c t h w").to(dev)
        feats.append(model(x).double().cpu().numpy())
    return np.concatenate(feats)


def fvd(real: Iterable[np.ndarray], generated: Iterable[np.ndarray], model: nn.Module, **kw) -> float:
    """Fréchet Video Distance between two clip sets (each ≥ 2 clips; the paper uses 10k or 50k)."""
    return frechet_distance(i3d_features(real, model, **kw), i3d_features(generated, model, **kw))


# ------------------------------------------------------------------------------------------- CLIPSIM
class ClipSimilarity(NamedTuple):
    mean: float  # mean over clips of the per-clip score
    per_clip: np.ndarray  # (N,) mean over frames of cos(image embedding, text embedding)


@torch.no_grad()
def clip_similarity(
    videos: Sequence[np.ndarray],
    captions: Sequence[str],
    model: CLIP,
    tokenizer: CLIPTokenizer,
    *,
    frames: int = P.T2V_FRAMES,
    eval_size: int | None = P.T2V_EVAL_SIZE,
) -> ClipSimilarity:
    """CLIPSIM: per-frame CLIP image–text cosine similarity averaged over frames, then over clips.

    Frames are first brought to ``eval_size`` (the paper's 256 upsampling; None keeps them), then CLIP's
    own preprocessing (bicubic short-side resize to 224, centre crop, normalisation).
    """
    if len(videos) != len(captions):
        raise ValueError(f"got {len(videos)} videos but {len(captions)} captions")
    dev, scores = _device(model), []
    tokens = tokenizer(list(captions)).to(dev)
    text = F.normalize(model.encode_text(tokens, tokenizer.end_id).float(), dim=-1)  # (N, E)
    for i, v in enumerate(videos):
        clip = _check_video(v, frames)
        if eval_size is not None:
            x = torch.from_numpy(clip).permute(0, 3, 1, 2).float()
            x = resize_video(x, eval_size).round().clamp(0, 255).to(torch.uint8)
            clip = x.permute(0, 2, 3, 1)
        else:
            clip = torch.from_numpy(np.ascontiguousarray(clip))
        img = F.normalize(
            model.encode_image(preprocess_frames(clip, model.cfg.image_size).to(dev)).float(), dim=-1
        )
        scores.append(float((img @ text[i]).mean()))
    per = np.asarray(scores, dtype=np.float64)
    return ClipSimilarity(float(per.mean()), per)


# ------------------------------------------------------------------------------------------- IS
@torch.no_grad()
def image_inception_score(
    images: Iterable[np.ndarray], model: nn.Module, *, splits: int = P.IS_SPLITS, batch_size: int = 32
) -> InceptionScore:
    """Inception Score of uint8 images (H, W, 3) with InceptionV3 (bilinear resize to its input size)."""
    dev, probs, size = _device(model), [], model.cfg.image_size
    for batch in _batches(images, batch_size):
        x = torch.from_numpy(np.stack([np.asarray(b) for b in batch])).permute(0, 3, 1, 2).float()
        x = resize_video(x, size) / 127.5 - 1.0
        probs.append(torch.softmax(model(x.to(dev)).double(), dim=-1).cpu().numpy())
    return inception_score(np.concatenate(probs), splits=splits)


def c3d_preprocess(video: np.ndarray, model: nn.Module) -> torch.Tensor:
    """uint8 (T, H, W, 3) → C3D input (3, T, S, S): short side to 128·S/112, centre crop S, minus mean."""
    cfg = model.cfg
    x = torch.from_numpy(_check_video(video, cfg.frames)).permute(0, 3, 1, 2).float()  # (T, 3, H, W)
    short = round(cfg.image_size * P.C3D_RESIZE / P.C3D_CROP)
    h, w = x.shape[-2:]
    x = resize_video(x, (max(short, round(h * short / min(h, w))), max(short, round(w * short / min(h, w)))))
    top, left = (x.shape[-2] - cfg.image_size) // 2, (x.shape[-1] - cfg.image_size) // 2
    x = x[:, :, top : top + cfg.image_size, left : left + cfg.image_size]
    x = x - torch.tensor(cfg.input_mean).view(1, 3, 1, 1)
    return rearrange(x, "t c h w -> c t h w")


@torch.no_grad()
def c3d_inception_score(
    videos: Iterable[np.ndarray], model: nn.Module, *, splits: int = P.IS_SPLITS, batch_size: int = 8
) -> InceptionScore:
    """The UCF-101 video Inception Score: C3D class probabilities of 16-frame clips, 10 splits."""
    dev, probs = _device(model), []
    for batch in _batches(videos, batch_size):
        x = torch.stack([c3d_preprocess(v, model) for v in batch]).to(dev)
        probs.append(torch.softmax(model(x).double(), dim=-1).cpu().numpy())
    return inception_score(np.concatenate(probs), splits=splits)


# ------------------------------------------------------------------------------------------- FAD
@torch.no_grad()
def vggish_embeddings(
    waves: Iterable[np.ndarray], model: nn.Module, *, sample_rate: int = 16000, batch_size: int = 64
) -> np.ndarray:
    """VGGish embeddings (M, E) float64 of every 0.96 s example of every wave, pooled."""
    examples = [waveform_to_examples(np.asarray(w, dtype=np.float64), sample_rate) for w in waves]
    examples = np.concatenate(examples) if examples else np.zeros((0, 96, 64), np.float32)
    if examples.shape[0] == 0:
        raise ValueError("no 0.96 s VGGish example in the given audio: clips must be at least 0.96 s long")
    dev, out = _device(model), []
    for start in range(0, examples.shape[0], batch_size):
        x = torch.from_numpy(examples[start : start + batch_size]).to(dev)
        out.append(model(x).double().cpu().numpy())
    return np.concatenate(out)


def fad(
    real: Iterable[np.ndarray], generated: Iterable[np.ndarray], model: nn.Module, *, sample_rate=16000
) -> float:
    """Fréchet Audio Distance between VGGish embeddings of two sets of mono waves."""
    return frechet_distance(
        vggish_embeddings(real, model, sample_rate=sample_rate),
        vggish_embeddings(generated, model, sample_rate=sample_rate),
    )
