"""Token-space upscaling with a trained ``SuperResTransformer``: tokens → 2× tokens (one stage), frames →
2× or 4× frames (tokenize, one or two chained stages, decode), and ``videopoet upscale``.

Dimension key: B batch, T frames, H W pixels, t h w the low-res token grid (the high-res one is t, 2h, 2w).

A stage doubles the token grid: MaskGIT decoding (``sampling.masked.maskgit_decode``) of the high-res
tokens given the low-res ones (and the text). A model with the draft path also reads ``draft_tokens``: the
low-res tokens decoded, upsampled bicubically and tokenized again, so a stage then needs the tokenizer.
4× chains two stages: the second reads the first one's tokens, so the clip is decoded to pixels once, at
the end. One model may serve both stages (its windows resolve on any grid they tile) or each stage gets
its own (the paper's stage 1 / stage 2).

Consistency (``upscale_frames(..., consistency=True)``, the default): the decoded clip is back-projected
onto its input (``back_project``), so that downsampling the output gives the input back; the model's
token errors then cost only detail, not the low frequencies the input already holds
(docs/superres.md, "Back-projection").

A clip longer than 17 frames is upscaled in 17-frame pieces that share their boundary frame
(``upscale_frames(..., chunk_frames=)``): the length the models train on, and memory that does not grow
with the clip. A clip whose token grid the windows do not tile (a 176×144 clip on ``tiny``'s 8-row
windows) is padded with its edge pixels to the nearest size they tile (``tiled_size``) and the output
cropped back.

``videopoet upscale IN --out OUT``: checks the arguments, the input clip (size a multiple of 8, at most
``cli.MAX_CLIP_PIXELS`` pixels after upscaling) and the output path before any model loads; keeps the
clip's frame rate and sound (cut to the frames kept: the tokenizer takes 1 + 4k frames); writes the mp4
atomically.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from videopoet.components import PRETRAINED_ROOT
from videopoet.errors import UserError
from videopoet.superres.model import SuperResTransformer, resolve_window

FACTORS = (2, 4)
# Sampling defaults of the pipeline, `videopoet upscale` and the benchmark (chosen by measurement:
# docs/superres.md, "Sampling defaults"): no text guidance (the prompt still conditions), greedy MaskGIT.
TEXT_GUIDANCE = 1.0
TEMPERATURE = 0.0


def stage_grid_error(model: SuperResTransformer, lo_grid: tuple[int, int, int]) -> str | None:
    """Why ``model`` cannot upscale a low-res token grid (t, h, w), or None when it can."""
    t, h, w = lo_grid
    for window in model.config.windows:
        try:
            sizes = resolve_window(window, (t, 2 * h, 2 * w))
        except ValueError as e:
            return str(e)
        if sizes[1] % 2 or sizes[2] % 2:
            return f"window {window} resolves to {sizes} on the grid {(t, 2 * h, 2 * w)}: odd spatial size"
    return None


@torch.no_grad()
def upsampled_reconstruction(tokenizer, lo_tokens: torch.Tensor) -> torch.Tensor:
    """Low-res tokens (B, t, h, w) → their decoding, upsampled 2× bicubically (B, 3, T, 2H, 2W) in [-1, 1]."""
    return resize(tokenizer.decode(lo_tokens), 2).clamp(-1, 1)


@torch.no_grad()
def draft_tokens(tokenizer, lo_tokens: torch.Tensor) -> torch.Tensor:
    """The draft grid of low-res tokens (B, t, h, w) → (B, t, 2h, 2w): the tokenizer's tokens of the bicubic
    2× upsampling of their decoding (no model involved)."""
    return tokenizer.encode(upsampled_reconstruction(tokenizer, lo_tokens))


@torch.no_grad()
def upscale_tokens(
    model: SuperResTransformer,
    lo_tokens: torch.Tensor,
    text: torch.Tensor | None = None,
    text_mask: torch.Tensor | None = None,
    *,
    tokenizer=None,
    draft: torch.Tensor | None = None,
    steps: int = 24,
    text_scale: float = 1.0,
    lo_scale: float = 1.0,
    temperature: float = TEMPERATURE,
    seed: int = 0,
    compile: bool = False,
) -> torch.Tensor:
    """One 2× stage: low-res tokens (B, t, h, w) → high-res tokens (B, t, 2h, 2w). A model with the draft
    path reads ``draft`` when the caller has made it (``draft_tokens`` of these tokens), else one made
    here with ``tokenizer``. ValueError when the model's windows do not tile the high-res grid, or when it
    needs a draft and has neither."""
    from videopoet.sampling.masked import maskgit_decode

    why = stage_grid_error(model, tuple(lo_tokens.shape[1:]))
    if why:
        raise ValueError(f"super-resolution of a {tuple(lo_tokens.shape[1:])} token grid: {why}")
    if not model.config.draft:
        draft = None
    elif draft is None:
        if tokenizer is None:
            raise ValueError("this super-resolution model reads a draft grid: pass the video tokenizer")
        draft = draft_tokens(tokenizer, lo_tokens.to(next(tokenizer.parameters()).device)).to(
            lo_tokens.device
        )
    return maskgit_decode(
        model, lo_tokens, text, text_mask, draft=draft, steps=steps, text_scale=text_scale, lo_scale=lo_scale,
        temperature=temperature, seed=seed, compile=compile,
    )  # fmt: skip


def chain_stages(
    stages: Sequence[SuperResTransformer], tokens: torch.Tensor, text=None, text_mask=None, **kw
):
    """Run the stages one after another (stage i seeded seed + i) → tokens (B, t, 2^n h, 2^n w)."""
    seed = kw.pop("seed", 0)
    for i, model in enumerate(stages):
        dev = next(model.parameters()).device
        tokens = upscale_tokens(
            model, tokens.to(dev), _on(text, dev), _on(text_mask, dev), seed=seed + i, **kw
        )
    return tokens


def resize(video: torch.Tensor, scale: float) -> torch.Tensor:
    """Bicubic resize of each frame of video (B, C, T, H, W) by ``scale`` (antialiased when shrinking)."""
    import torch.nn.functional as F

    b, c, t, h, w = video.shape
    frames = video.transpose(1, 2).reshape(b * t, c, h, w)  # (B·T, C, H, W)
    out = F.interpolate(frames, scale_factor=scale, mode="bicubic", align_corners=False, antialias=scale < 1)
    return out.reshape(b, t, c, *out.shape[-2:]).transpose(1, 2)  # (B, C, T, H′, W′)


def back_project(hi: torch.Tensor, lo: torch.Tensor, iterations: int = 1, coarse: int = 1) -> torch.Tensor:
    """Iterative back-projection: hi (B, C, T, fH, fW) ← hi + up(lo − down(hi)), in [-1, 1], with
    lo (B, C, T, H, W) and bicubic resizes by f. A hi whose downsample is lo already stays as it is.
    ``coarse`` = c > 1 keeps the correction lo − down(hi) only below 1/c of lo's resolution (downsampled
    by c before the upsampling; H and W multiples of c): there the output follows lo, above it hi."""
    factor = hi.shape[-1] / lo.shape[-1]
    if hi.shape[:3] != lo.shape[:3] or hi.shape[-2] != lo.shape[-2] * factor or factor not in (2, 4):
        raise ValueError(f"back_project needs hi 2x or 4x lo, got {tuple(hi.shape)} and {tuple(lo.shape)}")
    if coarse < 1 or lo.shape[-1] % coarse or lo.shape[-2] % coarse:
        raise ValueError(f"coarse must be >= 1 and divide lo's size {tuple(lo.shape[-2:])}, got {coarse}")
    for _ in range(iterations):
        gap = lo - resize(hi, 1 / factor)  # (B, C, T, H, W)
        gap = gap if coarse == 1 else resize(gap, 1 / coarse)  # (B, C, T, H/c, W/c)
        hi = (hi + resize(gap, factor * coarse)).clamp(-1, 1)
    return hi


def _on(x, device):
    return None if x is None else x.to(device)


COARSE = (1, 2, 4, 8)  # back-projection bands ``upscale_frames`` takes: divisors of the tokenizer's 8 px
CHUNK_FRAMES = 17  # frames per upscaled piece: the clip length the tokenizer and the SR model train on
MAX_PAD_TOKENS = 64  # how far ``tiled_size`` looks for a grid the windows tile, per axis


def tiled_size(stages: Sequence[SuperResTransformer], tokenizer, shape: tuple[int, ...]) -> tuple[int, int]:
    """The smallest frame size (H′, W′) ≥ (H, W) of a clip ``shape`` (T, H, W) whose token grid every stage's
    windows tile (stage i reads the grid 2^i times larger); H and W must be multiples of the tokenizer's
    spatial factor. ValueError when none is near, e.g. when the frame count is what does not tile."""
    f = tokenizer.config.spatial_factor
    t, h, w = tokenizer.latent_shape(*shape)
    for dh in range(MAX_PAD_TOKENS):
        for dw in range(MAX_PAD_TOKENS):
            if _grid_error(stages, (t, h + dh, w + dw)) is None:
                return (h + dh) * f, (w + dw) * f
    why = _grid_error(stages, (t, h, w))
    size = f"{shape[2]}x{shape[1]}, {shape[0]} frames"
    raise ValueError(f"{size}: no padded size fits the model's windows ({why})")


def _grid_error(stages: Sequence[SuperResTransformer], lo_grid: tuple[int, int, int]) -> str | None:
    """The first stage's reason it cannot take its grid (stage i reads lo_grid 2^i times larger), or None."""
    t, h, w = lo_grid
    return next((e for i, m in enumerate(stages) if (e := stage_grid_error(m, (t, h << i, w << i)))), None)


@torch.no_grad()
def upscale_frames(
    frames: np.ndarray,
    tokenizer,
    stages: Sequence[SuperResTransformer],
    *,
    consistency: bool = True,
    coarse: int = 1,
    chunk_frames: int = CHUNK_FRAMES,
    **kw,
) -> np.ndarray:
    """uint8 (T, H, W, 3) with T = 1 + 4k → uint8 (T, 2^n H, 2^n W, 3) for n = len(stages), in pieces of
    ``chunk_frames`` frames that share their boundary frame (the later piece's copy is dropped), so memory
    is that of one piece whatever the clip's length. Each piece: ``_upscale_piece``; ``coarse``: the
    back-projection's (``back_project``)."""
    if coarse not in COARSE:
        raise ValueError(f"coarse must be one of {COARSE} (it divides every padded size), got {coarse}")
    pieces = []
    for start, stop in pieces_of(len(frames), chunk_frames, tokenizer.config.temporal_factor):
        piece = _upscale_piece(frames[start:stop], tokenizer, stages, coarse if consistency else 0, **kw)
        pieces.append(piece if start == 0 else piece[1:])
    return np.concatenate(pieces)


def pieces_of(n_frames: int, chunk_frames: int, temporal_factor: int) -> list[tuple[int, int]]:
    """(start, stop) frame ranges of ``upscale_frames``'s pieces: at most ``chunk_frames`` frames each,
    consecutive pieces sharing one frame."""
    tf = temporal_factor
    if chunk_frames < 1 + tf or (chunk_frames - 1) % tf:
        raise ValueError(f"chunk_frames must be 1 + {tf}k frames with k ≥ 1, got {chunk_frames}")
    starts = range(0, max(n_frames - 1, 1), chunk_frames - 1)
    return [(start, min(start + chunk_frames, n_frames)) for start in starts]


def _upscale_piece(frames: np.ndarray, tokenizer, stages, coarse: int, **kw) -> np.ndarray:
    """Pad the frames (edge pixels, bottom and right) to ``tiled_size``, tokenize, chain the stages
    (keywords: ``upscale_tokens``'s and ``text``, ``text_mask``), decode, back-project the result onto
    the frames (``coarse`` ≥ 1; 0: not) and crop the padding off."""
    from videopoet.data.sample import frames_to_tensor, tensor_to_frames

    (t, h, w), n = frames.shape[:3], 2 ** len(stages)
    ph, pw = tiled_size(stages, tokenizer, (t, h, w))
    padded = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    device = next(tokenizer.parameters()).device
    video = frames_to_tensor(padded)[None].to(device)  # (1, 3, T, H′, W′)
    tokens = chain_stages(stages, tokenizer.encode(video), tokenizer=tokenizer, **kw)
    hi = tokenizer.decode(tokens.to(device))  # (1, 3, T, 2^n H′, 2^n W′)
    if coarse:
        hi = back_project(hi.float(), video.float(), coarse=coarse)
    return tensor_to_frames(hi[0, :, :, : n * h, : n * w])


def stages_for(models: Sequence[SuperResTransformer], factor: int) -> list[SuperResTransformer]:
    """The models of a 2× or 4× upscale: one model serves both 4× stages unless two are given."""
    if factor not in FACTORS:
        raise ValueError(f"the upscale factor must be 2 or 4, got {factor}")
    if not models:
        raise ValueError("no super-resolution model")
    n = 1 if factor == 2 else 2
    return [models[min(i, len(models) - 1)] for i in range(n)]


def check_vocabulary(tokenizer, models: Sequence[SuperResTransformer]) -> None:
    bits = tokenizer.config.codebook_bits
    for model in models:
        if model.config.codebook_bits != bits:
            raise UserError(
                f"the super-resolution model predicts {model.config.codebook_bits}-bit tokens but the video "
                f"tokenizer makes {bits}-bit ones: they were not trained together (see --video-tokenizer)"
            )


# ============================================================================================ the command
NO_MODEL = (
    "no super-resolution model is bundled with this version: pass --model DIR, a folder written by "
    "`videopoet train superres` (its out_dir/final)"
)


def _check_args(args) -> tuple[Path, Path]:
    from videopoet.errors import require
    from videopoet.outputs import check_output

    src = Path(args.input).expanduser()
    if not src.is_file():
        raise UserError(f"{args.input}: no such file")
    out = Path(args.out).expanduser()
    if out.suffix.lower() != ".mp4":
        raise UserError(f"--out {args.out}: the file must end in .mp4")
    if args.steps < 1:
        raise UserError(f"--steps must be at least 1, got {args.steps}")
    require("av")
    check_output(out, overwrite=args.overwrite)
    if src.resolve() == out.resolve():
        raise UserError(f"--out {args.out} is the input clip; write to another file")
    if not args.model and not (PRETRAINED_ROOT / SuperResTransformer.BUNDLED).is_dir():
        raise UserError(NO_MODEL)
    if len(args.model) > 2:
        raise UserError("--model: give one folder (used by every stage) or two (stage 1, stage 2)")
    return src, out


def _read_clip(src: Path, factor: int):
    """The clip's first 1 + 4k frames (and the sound under them), its size checked before decoding."""
    from videopoet.cli import MAX_CLIP_PIXELS
    from videopoet.data.media import probe_video, read_video

    info = probe_video(src)
    if info.width % 8 or info.height % 8:
        raise UserError(
            f"{src}: {info.width}x{info.height}; width and height must be multiples of 8 (crop or resize it)"
        )
    frames_est = max(1, info.num_frames)
    if frames_est * info.width * info.height * factor**2 > MAX_CLIP_PIXELS:
        raise UserError(
            f"{src}: {frames_est} frames of {info.width * factor}x{info.height * factor} after upscaling is "
            f"more than {MAX_CLIP_PIXELS:,} pixels; cut the clip"
        )
    data = read_video(src)
    keep = 1 + 4 * ((len(data.frames) - 1) // 4)
    if keep < len(data.frames):
        print(f"videopoet: note: keeping {keep} of {len(data.frames)} frames (1 + 4k)", file=sys.stderr)
    audio = None
    if data.audio is not None:
        audio = data.audio[: int(round(keep / data.fps * data.sample_rate))]
    return data.frames[:keep], data.fps, audio, data.sample_rate


def load_models(args, device) -> tuple:
    from videopoet.tokenizers.video import VideoTokenizer

    for folder in args.model or ():
        if not Path(folder).expanduser().is_dir():
            raise UserError(f"--model {folder}: no such folder (a super-resolution component folder)")
    folders = [Path(m).expanduser() for m in args.model] if args.model else [None]  # None: the bundled one
    models = [SuperResTransformer.from_pretrained(m, device=device) for m in folders]
    tokenizer = VideoTokenizer.from_pretrained(args.video_tokenizer, device=device).eval()
    check_vocabulary(tokenizer, models)
    return tokenizer, [m.eval() for m in models]


def _prompt(args, models, device):
    if not args.prompt:
        return None, None
    dims = {m.config.text_dim for m in models}
    if 0 in dims:
        raise UserError("--prompt: this super-resolution model was trained without text (text_dim 0)")
    from videopoet.text import load_text_encoder

    encoder = load_text_encoder(device=device)
    if dims != {encoder.dim}:
        raise UserError(f"the text encoder gives {encoder.dim}-d embeddings; the models take {sorted(dims)}")
    text = encoder.encode([args.prompt])
    return text.embeddings, text.mask


def main(args) -> int:
    from videopoet.data.media import write_mp4
    from videopoet.device import pick_device

    src, out = _check_args(args)
    frames, fps, audio, rate = _read_clip(src, args.factor)
    device = pick_device(args.device)
    tokenizer, models = load_models(args, device)
    stages = stages_for(models, args.factor)
    h, w = frames.shape[1:3]
    pieces = pieces_of(len(frames), CHUNK_FRAMES, tokenizer.config.temporal_factor)
    try:  # every piece, as upscale_frames will cut them (the last one may be shorter)
        ph, pw = max(tiled_size(stages, tokenizer, (stop - start, h, w)) for start, stop in pieces)
    except ValueError as e:
        raise UserError(f"{src}: cannot be upscaled by this model: {e}") from None
    text, text_mask = _prompt(args, models, device)
    if (ph, pw) != (h, w):
        print(f"videopoet: note: padding {w}x{h} to {pw}x{ph} for the model's windows; the output is cropped "
              "back", file=sys.stderr)  # fmt: skip
    print(f"videopoet: upscaling {len(frames)} frames {w}x{h} → {w * args.factor}x{h * args.factor} ...",
          file=sys.stderr, flush=True)  # fmt: skip
    big = upscale_frames(
        frames, tokenizer, stages, text=text, text_mask=text_mask, steps=args.steps,
        text_scale=args.guidance_text if text is not None else 1.0, lo_scale=args.guidance_lowres,
        temperature=args.temperature, seed=args.seed, consistency=args.consistency,
        coarse=args.consistency_coarse,
    )  # fmt: skip
    write_mp4(out, big, fps, audio, rate if audio is not None else 16000)
    print(f"videopoet: wrote {out}", file=sys.stderr)
    return 0
