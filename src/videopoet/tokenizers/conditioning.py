"""Conditioning videos for the LM's painting, prediction and stylization tasks (for the video tokenizer).

Dimension key: B batch, C channels (3), T frames, H W pixels.

COMMIT-style conditions (MAGVIT v1, arXiv 2212.05199): keep the pixels the task gives, fill the rest of
the full video shape with a task-specific padding, and tokenize the result with the unchanged tokenizer.
Every function returns ``Condition(video, mask)``: ``video`` float (B, 3, T, H, W) in [-1, 1] ready for
``VideoTokenizer.encode`` and ``mask`` bool (B, 1, T, H, W), True where the condition keeps input pixels.

Paddings:
- frame prediction: the first ``given`` frames are kept; every later frame repeats the last given frame.
- central inpainting: everything but the centre rectangle (``fraction`` of H and of W) is kept; the
  centre is zero (mid-grey in [-1, 1]).
- outpainting, edge padding of the kept region (each missing pixel copies the nearest kept pixel):
  ``central`` keeps the centre rectangle; ``horizontal`` keeps the central ``fraction`` of the columns at
  full height (the picture is extended to the left and right); ``vertical`` keeps the central
  ``fraction`` of the rows at full width (extended up and down).

Stylization conditions (VideoPoet §3.4): optical flow (2 channels) and depth (1 channel) normalised to
[-1, 1] and stacked as the 3 "colour" channels (flow x, flow y, depth) of a video for the same tokenizer.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F

from videopoet.lm.tasks import task as task_spec

OUTPAINT_MODES = ("central", "horizontal", "vertical")


class Condition(NamedTuple):
    video: torch.Tensor  # float (B, 3, T, H, W) in [-1, 1]: the padded condition to tokenize
    mask: torch.Tensor  # bool (B, 1, T, H, W): True where the condition keeps input pixels


def _check_video(video: torch.Tensor) -> None:
    if not torch.is_tensor(video) or not video.is_floating_point() or video.ndim != 5:
        raise ValueError(
            f"video must be a float tensor (B, C, T, H, W) in [-1, 1], got "
            f"{getattr(video, 'dtype', type(video).__name__)} {tuple(getattr(video, 'shape', ()))}"
        )


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")


def _centre_span(size: int, fraction: float) -> tuple[int, int]:
    """[start, stop) of the centred band holding round(fraction · size) pixels (at least 1)."""
    n = max(1, min(size, round(size * fraction)))
    start = (size - n) // 2
    return start, start + n


def frame_prediction(video: torch.Tensor, given: int) -> Condition:
    """Keep frames [0, given); later frames replicate frame ``given`` − 1."""
    _check_video(video)
    t = video.shape[2]
    if not 1 <= given <= t:
        raise ValueError(f"given must be between 1 and the number of frames ({t}), got {given}")
    last = video[:, :, given - 1 : given].expand(-1, -1, t - given, -1, -1)
    cond = torch.cat([video[:, :, :given], last], dim=2)
    mask = torch.zeros(video.shape[0], 1, *video.shape[2:], dtype=torch.bool, device=video.device)
    mask[:, :, :given] = True
    return Condition(cond, mask)


def central_inpainting(video: torch.Tensor, fraction: float = 0.5) -> Condition:
    """Zero the centre rectangle (fraction·H × fraction·W); keep the rest."""
    _check_video(video)
    _check_fraction(fraction)
    h, w = video.shape[3:]
    (y0, y1), (x0, x1) = _centre_span(h, fraction), _centre_span(w, fraction)
    mask = torch.ones(video.shape[0], 1, *video.shape[2:], dtype=torch.bool, device=video.device)
    mask[..., y0:y1, x0:x1] = False
    return Condition(video * mask, mask)


def outpainting(video: torch.Tensor, mode: str = "central", fraction: float = 0.5) -> Condition:
    """Keep a central region (see module doc for ``mode``) and edge-pad it to the full frame."""
    _check_video(video)
    _check_fraction(fraction)
    if mode not in OUTPAINT_MODES:
        raise ValueError(f"outpainting mode must be one of {OUTPAINT_MODES}, got {mode!r}")
    h, w = video.shape[3:]
    y0, y1 = _centre_span(h, fraction) if mode in ("central", "vertical") else (0, h)
    x0, x1 = _centre_span(w, fraction) if mode in ("central", "horizontal") else (0, w)
    kept = video[..., y0:y1, x0:x1]
    # replicate-pad only H and W (the last two dims of a 5-D tensor: (w_left, w_right, h_top, h_bottom, 0, 0))
    cond = F.pad(kept, (x0, w - x1, y0, h - y1, 0, 0), mode="replicate")
    mask = torch.zeros(video.shape[0], 1, *video.shape[2:], dtype=torch.bool, device=video.device)
    mask[..., y0:y1, x0:x1] = True
    return Condition(cond, mask)


def commit_condition(video: torch.Tensor, task: str, **kwargs) -> Condition:
    """The COMMIT condition of a task of the registry (``lm/tasks.py``), by name or alias:
    ``frame_prediction`` (given=…), ``inpainting``, ``outpainting_central|horizontal|vertical``."""
    try:
        padding = COMMIT_PADDINGS[task_spec(task).name]
    except (ValueError, KeyError):
        raise ValueError(f"unknown COMMIT task {task!r}; use one of {list(COMMIT_PADDINGS)}") from None
    return padding(video, **kwargs)


# Registry name (lm/tasks.py) → the padding its COMMIT condition uses.
COMMIT_PADDINGS = {
    "frame_prediction": frame_prediction,
    "inpainting": central_inpainting,
    **{f"outpainting_{mode}": functools.partial(outpainting, mode=mode) for mode in OUTPAINT_MODES},
}


def flow_depth_video(
    flow: torch.Tensor, depth: torch.Tensor, *, flow_scale: float | None = None
) -> torch.Tensor:
    """Optical flow + depth → float (B, 3, T, H, W) in [-1, 1] for the RGB tokenizer.

    flow: (T, H, W, 2) or (B, T, H, W, 2) in pixels per frame; T − 1 frames (flow between consecutive
    frames, as the synthetic world provides) are accepted and get a zero-flow first frame.
    depth: (T, H, W) or (B, T, H, W), larger = farther.
    Flow is divided by ``flow_scale`` (default: the clip's largest flow magnitude, so each clip uses the
    full range) and clipped; depth is min–max normalised per clip with near = +1 and far = −1, matching
    the inverse-depth maps (near = bright) of monocular depth estimators.
    """
    flow = torch.as_tensor(flow, dtype=torch.float32)
    depth = torch.as_tensor(depth, dtype=torch.float32)
    if flow.ndim == 4:
        flow = flow.unsqueeze(0)
    if depth.ndim == 3:
        depth = depth.unsqueeze(0)
    if flow.ndim != 5 or flow.shape[-1] != 2:
        raise ValueError(f"flow must have shape (T, H, W, 2) or (B, T, H, W, 2), got {tuple(flow.shape)}")
    if depth.ndim != 4:
        raise ValueError(f"depth must have shape (T, H, W) or (B, T, H, W), got {tuple(depth.shape)}")
    b, t, h, w = depth.shape
    if flow.shape[0] != b or flow.shape[2:4] != (h, w):
        raise ValueError(f"flow {tuple(flow.shape)} and depth {tuple(depth.shape)} disagree on batch or size")
    lead = t - flow.shape[1]  # 1: flow between consecutive frames, none into the first frame
    if lead not in (0, 1) or not flow.shape[1]:
        raise ValueError(f"flow has {flow.shape[1]} frames; depth has {t}: flow needs T or T − 1 frames")
    if not (_finite(flow) and _finite(depth)):
        raise ValueError("flow and depth must be finite")
    if flow_scale is None:
        # (B, T − lead, H, W) → (B,); a zero first frame would add no larger norm
        scale = flow.norm(dim=-1).amax(dim=(1, 2, 3)).clamp_min(1e-6).view(b, 1, 1, 1)
    else:
        if flow_scale <= 0:
            raise ValueError(f"flow_scale must be positive, got {flow_scale}")
        scale = torch.tensor(float(flow_scale))
    # Each channel is written straight into the (B, 3, T, H, W) result: no concatenated or permuted copies
    # (the values are those of normalising the stacked (B, T, H, W, 3) video, element by element).
    video = flow.new_empty(b, 3, t, h, w)
    video[:, :2, :lead] = 0.0
    for c in range(2):
        video[:, c, lead:] = (flow[..., c] / scale).clamp_(-1, 1)
    d_min = depth.amin(dim=(1, 2, 3), keepdim=True)
    d_max = depth.amax(dim=(1, 2, 3), keepdim=True)
    video[:, 2] = 1 - 2 * (depth - d_min) / (d_max - d_min).clamp_min(1e-6)  # near → +1
    return video


def _finite(x: torch.Tensor) -> bool:
    """No inf or NaN (extremes propagate NaN): one pass, not a boolean copy of the tensor."""
    return x.numel() == 0 or bool(torch.isfinite(torch.stack(torch.aminmax(x))).all())
