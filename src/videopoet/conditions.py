"""What ``VideoPoetPipeline`` reads from the user: media (arrays or files) and the conditions built from
them, before any tokenizer runs. No model state here; ``pipeline.py`` tokenizes what these return.

Dimension key: T frames, H W pixels, N audio samples.

- ``MEDIA_INPUTS``: which media keyword each task needs and which it may take (the pipeline and
  ``videopoet generate`` refuse the others).
- ``load_image`` / ``load_video`` / ``load_audio``: centre-cropped and resized to the output size; sound
  becomes mono float32 at the codec's rate, cut or padded with silence to the clip's length.
- ``load_mask`` + ``painting_condition``: the painting tasks' region (True = the pixels to generate) from
  an array, a mask image (white = generate) or a named region (``REGIONS``), and the COMMIT condition
  built from it with the padding the task was trained with (``tokenizers/conditioning.py``): zeros for
  inpainting, nearest-kept-pixel (edge) padding for the three outpaintings. On the trained regions the
  condition is exactly ``conditioning.commit_condition``'s.
- ``clip_geometry``: stylization's optical flow and depth, given (the synthetic world's ``Clip.flow`` /
  ``Clip.depth``) or computed (``lm/records.py``: OpenCV Farnebäck flow, else ``block_flow``; a
  registered depth estimator, else ``motion_depth``), so stylization runs on any clip.
- Long video: ``continuation_windows`` (the frame_prediction windows after the first), ``audio_windows``
  and ``crossfade`` (their sound), pure arithmetic the pipeline runs (pipeline.py's module docstring).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from videopoet.errors import UserError, require
from videopoet.lm.tasks import PAINTING_KINDS, TEMPORAL_FACTOR

FPS = 8  # frames per second the tokenizers and the LM are trained at (the synthetic world's rate)
# Long video: each window continues from the last second of the clip (the paper's recipe, spec §6): the
# latent frames covering 1 + FPS frames (3 → 9 frames, 1.125 s at 8 fps).
SEAM_SECONDS = 1.0
SEAM_LATENTS = int(SEAM_SECONDS * FPS) // TEMPORAL_FACTOR + 1
CROSSFADE_S = 1 / FPS  # cross-fade between the sound of two windows: one frame (125 ms)

# task → (media keywords it needs, media keywords it may also take); tasks read nothing else
MEDIA_INPUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "unconditional": ((), ()),
    "text_to_video": ((), ()),
    "text_to_image": ((), ()),
    "text_to_audio": ((), ()),
    "image_to_video": (("image",), ()),
    "editing": (("image",), ()),
    "frame_prediction": (("video",), ()),
    **{kind: (("video",), ("mask",)) for kind in PAINTING_KINDS},
    "stylization": (("video",), ("flow", "depth")),
    "video_to_audio": (("video",), ()),
    "audio_to_video": (("audio",), ()),
    # its first frame from video= or image= (pipeline checks one is given); no audio=: the video file's sound
    "av_continuation": ((), ("video", "image", "audio")),
}
MEDIA = ("image", "video", "audio", "mask", "flow", "depth")

# Named mask regions → the painting task whose trained region (conditioning.py's defaults: the central
# half of each side) they are; the region is what gets generated.
REGION_TASKS = {
    "center": "inpainting",
    "border": "outpainting_central",
    "sides": "outpainting_horizontal",
    "top-bottom": "outpainting_vertical",
}
REGIONS = tuple(REGION_TASKS)
DEFAULT_REGION = {task: region for region, task in REGION_TASKS.items()}
_NO_SOUND_RATE = 16000  # conform_clip wants a rate; load_video reads no sound, so any will do
MASK_THRESHOLD = 128  # a mask image's grey level at or above which a pixel is generated (white)


def check_media(task: str, given: dict[str, object]) -> None:
    """ValueError when ``task`` lacks a medium it needs or is given one it does not read."""
    needs, may = MEDIA_INPUTS[task]
    for kind in MEDIA:
        if kind in needs and given.get(kind) is None:
            raise ValueError(f"{task} needs {kind}= ({_MEDIA_HELP[kind]})")
        if given.get(kind) is not None and kind not in needs + may:
            raise ValueError(f"{task} does not read {kind}=; it reads {', '.join(needs + may) or 'no media'}")


_MEDIA_HELP = {
    "image": "uint8 (H, W, 3) or an image file",
    "video": "uint8 (T, H, W, 3) frames or a video file",
    "audio": "float32 (N,) samples or a WAV / video file",
}


# ================================================================================== pictures and sound
def load_image(image, width: int, height: int) -> np.ndarray:
    """A path or uint8 (H, W, 3) → uint8 (height, width, 3), centre-cropped and resized."""
    from videopoet.data.media import resize_center_crop

    if isinstance(image, str | os.PathLike):
        image = _read_image(image, "RGB")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    return resize_center_crop(image[None], width, height)[0]


def _read_image(path, mode: str) -> np.ndarray:
    Image = require("PIL.Image")
    if not Path(path).is_file():
        raise UserError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            return np.array(im.convert(mode))  # a writable copy (torch warns on read-only arrays)
    except OSError as e:
        raise UserError(f"{path}: not a readable image ({e})") from None


def covered_frames(duration: float, fps: float) -> int:
    """Frames at ``fps`` that ``duration`` seconds of video cover (``conform_clip`` can cut that many)."""
    return max(0, math.ceil(duration * fps - 1e-6))


def load_video(video, *, frames: int | None, width: int, height: int, fps: float) -> np.ndarray:
    """A path or uint8 (T, H, W, 3) → uint8 (frames, height, width, 3): the first ``frames`` frames (a file
    at ``fps``), or all of them when ``frames`` is None; centre-cropped and resized."""
    from videopoet.data.media import conform_clip, read_video, resize_center_crop

    if isinstance(video, str | os.PathLike):
        data = read_video(video, with_audio=False)
        if frames is None:
            hold = float(np.median(np.diff(data.times))) if len(data.times) > 1 else 1 / (data.fps or fps)
            frames = covered_frames(data.times[-1] + hold, fps)  # the clip's whole length at fps
        return conform_clip(data, start=0.0, num_frames=frames, fps=fps, width=width, height=height,
                            sample_rate=_NO_SOUND_RATE).frames  # fmt: skip
    video = np.asarray(video)
    least = frames or 1
    if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3 or len(video) < least:
        raise ValueError(f"video must be uint8 (T ≥ {least}, H, W, 3), got {video.dtype} {video.shape}")
    return resize_center_crop(video[:frames], width, height)


def load_audio(audio, samples: int, sample_rate: int) -> np.ndarray:
    """A path (WAV or a video with sound) or float (N,) at ``sample_rate`` → float32 (samples,): cut, or
    padded with silence, and clipped to [-1, 1]."""
    from videopoet.data.media import read_video, read_wav, resample_audio

    if isinstance(audio, str | os.PathLike):
        if str(audio).lower().endswith(".wav"):
            data = read_wav(audio)
            audio = resample_audio(data.audio, data.sample_rate, sample_rate)
        else:
            path, audio = audio, read_video(audio, sample_rate=sample_rate).audio
            if audio is None:
                raise UserError(f"{path}: the file has no sound")
    audio = np.asarray(audio)
    if audio.ndim != 1 or audio.dtype.kind != "f":
        raise ValueError(
            f"audio must be float (N,) mono at {sample_rate} Hz, got {audio.dtype} {audio.shape}"
        )
    out = np.zeros(samples, np.float32)
    out[: min(samples, len(audio))] = np.clip(audio[:samples], -1, 1)
    return out


# ================================================================================== painting
def region_mask(region: str, height: int, width: int) -> np.ndarray:
    """bool (height, width), True = generate: a named region (``REGIONS``), the one its task trained on."""
    from videopoet.tokenizers.conditioning import commit_condition

    if region not in REGION_TASKS:
        raise UserError(
            f"unknown mask region {region!r}: give a mask image file or one of {', '.join(REGIONS)}"
        )
    blank = torch.zeros(1, 3, 1, height, width)  # (B, 3, T, H, W): only the condition's mask is used
    return ~commit_condition(blank, REGION_TASKS[region]).mask[0, 0, 0].numpy()


def read_mask_image(path) -> np.ndarray:
    """A mask image at its own size → bool (H, W), True where it is white (≥ MASK_THRESHOLD grey)."""
    return _read_image(path, "L") >= MASK_THRESHOLD


def check_mask(mask: np.ndarray, what: str = "the mask") -> np.ndarray:
    """UserError when ``mask`` generates nothing or everything (nothing left to paint around)."""
    if not mask.any():
        raise UserError(f"{what} marks no pixel to generate (white or True = generate)")
    if mask.all():
        raise UserError(f"{what} marks every pixel to generate: nothing is kept to paint around")
    return mask


def load_mask(mask, task: str, height: int, width: int) -> np.ndarray:
    """A painting task's mask → bool (height, width), True = generate. ``mask``: None (the task's trained
    region), a region name, a mask image file (white = generate; centre-cropped and resized like the
    video, so a mask drawn at the video's size lines up) or a bool array at the output size."""
    from videopoet.data.media import resize_center_crop

    if mask is None:
        return region_mask(DEFAULT_REGION[task], height, width)
    if isinstance(mask, str) and mask in REGION_TASKS:
        return region_mask(mask, height, width)
    if isinstance(mask, str | os.PathLike):
        if not Path(mask).is_file():
            raise UserError(f"mask {mask}: no such file and not a region ({', '.join(REGIONS)})")
        grey = read_mask_image(mask).astype(np.uint8) * 255
        rgb = np.repeat(grey[None, :, :, None], 3, axis=-1)  # (1, H, W, 3) for the frames' resize
        return check_mask(resize_center_crop(rgb, width, height)[0, :, :, 0] >= MASK_THRESHOLD, str(mask))
    mask = np.asarray(mask)
    if mask.dtype != np.bool_ or mask.shape != (height, width):
        raise ValueError(
            f"mask must be bool ({height}, {width}) (True = generate), got {mask.dtype} {mask.shape}"
        )
    return check_mask(mask)


def painting_condition(frames: np.ndarray, generate: np.ndarray, task: str) -> torch.Tensor:
    """uint8 (T, H, W, 3) + bool (H, W) → the COMMIT condition float (1, 3, T, H, W) in [-1, 1]: kept
    pixels as given; generated ones zero (inpainting) or copies of the nearest kept pixel (outpainting)."""
    from videopoet.data.sample import frames_to_tensor

    if task not in PAINTING_KINDS:
        raise ValueError(f"no painting condition for task {task!r}; painting tasks: {PAINTING_KINDS}")
    x = frames_to_tensor(frames)[None]  # (1, 3, T, H, W)
    keep = ~np.asarray(generate, bool)
    if task == "inpainting":
        return x * torch.from_numpy(keep)
    rows, cols = _nearest_kept(keep)
    return x[..., rows, cols]


def _nearest_kept(keep: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices (broadcasting to (H, W)) of each pixel's nearest kept pixel. A kept box
    gives the clamped indices, i.e. conditioning.outpainting's replicate padding exactly; any other
    shape needs scipy's Euclidean distance transform."""
    ys, xs = np.nonzero(keep)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    h, w = keep.shape
    if keep[y0:y1, x0:x1].all():  # the bounding box is all kept: the kept region is that box
        return torch.arange(h).clamp(y0, y1 - 1)[:, None], torch.arange(w).clamp(x0, x1 - 1)[None, :]
    ndimage = require("scipy.ndimage")
    _, (rows, cols) = ndimage.distance_transform_edt(~keep, return_indices=True)
    return torch.from_numpy(rows), torch.from_numpy(cols)


# ================================================================================== flow and depth
def clip_geometry(frames: np.ndarray, flow=None, depth=None, *, device="cpu"):
    """(flow float32 (T − 1, H, W, 2), depth float32 (T, H, W), larger = farther) of uint8 frames
    (T, H, W, 3): the given arrays (their first T − 1 / T frames) or computed ones. Flow:
    ``records.estimated_flow`` (Farnebäck where OpenCV is installed, else ``block_flow``); depth: the first
    registered depth estimator, else ``motion_depth`` of that flow (what moves apart from the camera is
    near)."""
    from videopoet.lm.records import estimated_flow, load_depth_estimator, motion_depth

    t, h, w = frames.shape[:3]
    if t < 2:
        raise ValueError(f"optical flow and depth need a source clip of 2 frames or more, got {t}")
    if flow is None:
        flow = estimated_flow(frames)
    flow = _geometry_array(flow, "flow", (t - 1, h, w, 2))
    # "auto": the first registered depth estimator, None where none is
    estimator = load_depth_estimator("auto", torch.device(device)) if depth is None else None
    if estimator is not None:
        depth = estimator(frames)
    depth = motion_depth(flow, t) if depth is None else depth
    return flow, _geometry_array(depth, "depth", (t, h, w))


def _geometry_array(a, name: str, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(a, np.float32)
    if a.ndim != len(shape) or a.shape[0] < shape[0] or a.shape[1:] != shape[1:]:
        want = f"({shape[0]}+, {', '.join(map(str, shape[1:]))})"
        raise ValueError(f"{name} must be float {want} at the output size, got {a.shape}")
    return a[: shape[0]]


# ================================================================================== long video
class Window(NamedTuple):
    """One frame_prediction window of a long video."""

    start: int  # its first frame's index in the whole clip
    length: int  # frames it makes (1 + 4k), its conditioning frames included
    given: int  # latent frames it is conditioned on: its first 1 + 4(given − 1) frames


def continuation_windows(have: int, total: int, window: int, first_given: int) -> list[Window]:
    """The frame_prediction windows that continue ``have`` frames to ``total``, at most ``window`` frames
    each: the first conditioned on up to ``first_given`` latent frames, the next on SEAM_LATENTS (fewer
    where the window or the clip is too short), each as long as needed (the last may run past ``total``:
    cut)."""
    windows, given, t_max = [], first_given, (window - 1) // TEMPORAL_FACTOR + 1
    while have < total:
        if t_max < 2:
            raise ValueError(f"a window of {window} frames cannot continue a clip (5 frames at least)")
        k = max(1, min(given, t_max - 1, latents(have)))
        cond = 1 + TEMPORAL_FACTOR * (k - 1)
        length = min(window, cond + TEMPORAL_FACTOR * math.ceil((total - have) / TEMPORAL_FACTOR))
        windows.append(Window(have - cond, length, k))
        have, given = have - cond + length, SEAM_LATENTS
    return windows


def audio_windows(total: int, window: int) -> list[int]:
    """First frames of the video_to_audio windows (``window`` frames each) over ``total`` frames: the video
    windows' stride, the last one flush with the end."""
    if total <= window:
        return [0]
    k = min(SEAM_LATENTS, (window - 1) // TEMPORAL_FACTOR)
    stride = window - (1 + TEMPORAL_FACTOR * (k - 1))
    return [*range(0, total - window, stride), total - window]


def crossfade(out: np.ndarray, part: np.ndarray, at: int, end: int, fade: int) -> int:
    """Write ``part`` into ``out`` from sample ``at``; ``out`` holds sound up to ``end``: the overlap keeps
    it up to its last ``fade`` samples, fading there into ``part`` (equal power: two independent
    generations keep their loudness) → the new end."""
    f = max(0, min(fade, end - at))
    if f:
        w = np.sin(0.5 * np.pi * (np.arange(f) + 0.5) / f).astype(np.float32)
        lo = end - f
        out[lo:end] = out[lo:end] * np.sqrt(1 - w**2) + part[lo - at : end - at] * w
    stop = min(len(out), at + len(part))
    out[end:stop] = part[end - at : stop - at]
    return stop


def latents(frames: int) -> int:
    """Latent frames covering ``frames`` pixel frames (1 + 4(k − 1) → k)."""
    return (frames - 1) // TEMPORAL_FACTOR + 1
