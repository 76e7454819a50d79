"""``videopoet eval generation``: every task a VideoPoet model runs, scored on the world, each entry beside
its baseline (a floor a model must beat or a ceiling it can at best reach) and a verdict.

Metrics and baselines are pure functions over arrays (generated clips, conditions, ground truth);
``evaluate`` runs one scorer per task (``SCORERS``) through one interface,
``generate_fn(task, prompt, conditions) -> GeneratedClip``, so the same code scores the world's own
renderings (``--real``: the ceiling) and a model (``--model DIR``: ``VideoPoetPipeline.from_pretrained``).
A task the generator refuses (ValueError, UserError, TypeError for an input it does not take) is recorded
as ``{"skipped": reason}`` and the run goes on.

Entries (``entry``: metric, value, floor or ceiling, target, verdict):
- t2v: judge agreement per attribute and all-correct with the caption (target by split, floor: the same
  generator with an empty prompt judged against the same captions); judge-feature Fréchet distance to
  real clips as a ratio to the video tokenizer's own reconstructions' (target ≤ 3);
- i2v: first-frame PSNR (ceiling: the tokenizer's reconstruction PSNR of that frame; target within 2 dB);
- continue: PSNR of the predicted frames (floor: the last given frame held);
- inpaint / outpaint: PSNR of the generated region (floors: ``border_fill``, ``edge_replicate``);
- stylize: motion following (floor: unconditional samples'), text following reported;
- v2a: bounce-click sync (target ≥ 0.8; floor: another clip's sound), with F1, clicks per bounce and
  ``chance_sync`` (random clicks at the generated rate) reported;
- a2v: audio-video event agreement (floor: unconditional samples against the same sound);
  both on clips whose scene has a bounce (``event_clips``: the first ``num`` of the split from the run's
  seed up), since a silent source gives them nothing to follow;
- avcont / t2a: agreement of the generated sound with the generated frames (floors: the given sound
  looped / another clip's sound);
- long: the fraction of 1-second windows of a 10-s t2v clip in which every object keeps its colour and
  shape (target ≥ 0.9).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from videopoet.errors import UserError
from videopoet.eval.judge import (
    FEATURE_DIM,
    JudgeResult,
    audio_events,
    event_f1,
    judge_accuracy,
    judge_clip,
)
from videopoet.eval.metrics import frames_psnr, frechet_distance
from videopoet.lm.tasks import task as task_spec

# The registry's tasks (lm/tasks.py) this evaluation scores, by alias, plus "long": text_to_video at 10 s.
SCORED_TASKS = (
    "text_to_video",
    "image_to_video",
    "frame_prediction",
    "inpainting",
    "outpainting_central",
    "stylization",
    "video_to_audio",
    "audio_to_video",
    "av_continuation",
    "text_to_audio",
)
LONG = "long"
TASKS = (*(task_spec(name).alias for name in SCORED_TASKS), LONG)
REAL_SEED_OFFSET = 1_000_000  # real reference clips (Fréchet distances, floors) use disjoint seeds
EVENT_SCAN = 50  # event_clips looks at most this many seeds per clip it needs
MASK_FRACTION = 0.5  # the central in/outpainting box covers this fraction of each side
CONTINUE_GIVEN = 5  # frames given to continuation (two latent frames; Kinetics-600 gives 5 of 16)
LONG_FRAMES = 81  # 10 s at 8 fps, 1 + 4k frames
T2V_TARGETS = {"train": 0.85, "heldout": 0.65}  # judge agreement a model must reach per split
FRECHET_RATIO_TARGET = 3.0  # generated clips' Fréchet distance ≤ 3 × the tokenizer's reconstructions'
I2V_MARGIN_DB = 2.0  # first-frame PSNR within this of the tokenizer's reconstruction PSNR
V2A_SYNC_TARGET = 0.8
LONG_TARGET = 0.9
VISUAL_ATTRIBUTES = ("color", "shape", "size", "motion", "background", "camera")


@dataclass
class GeneratedClip:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    audio: np.ndarray | None = None  # float32 (N,) or None
    sample_rate: int = 16000
    fps: float = 8.0


GenerateFn = Callable[[str, str, dict[str, Any]], GeneratedClip]


# ================================================================ pure metrics
def first_frame_psnr(frames: np.ndarray, image: np.ndarray) -> float:
    """Image-to-video fidelity: PSNR of the generated frame 0 to the conditioning image."""
    return frames_psnr(np.asarray(frames)[0], image)


def central_mask(height: int, width: int, fraction: float = MASK_FRACTION) -> np.ndarray:
    """bool (H, W): the central box (``fraction`` of each side) that inpainting fills / outpainting keeps."""
    mask = np.zeros((height, width), bool)
    bh, bw = int(round(height * fraction)), int(round(width * fraction))
    top, left = (height - bh) // 2, (width - bw) // 2
    mask[top : top + bh, left : left + bw] = True
    return mask


@dataclass
class MaskedFidelity:
    inside_psnr: float  # PSNR inside the mask vs the original clip
    outside_psnr: float  # PSNR outside the mask


def masked_fidelity(frames: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> MaskedFidelity:
    """In/outpainting fidelity: PSNR inside and outside a (H, W) mask (per frame, then the mean)."""
    inside = np.asarray(mask, bool)
    return MaskedFidelity(
        frames_psnr(frames, reference, mask=inside), frames_psnr(frames, reference, mask=~inside)
    )


@dataclass
class TemporalConsistency:
    frame_psnr: float  # mean PSNR between consecutive frames (higher = steadier)
    flicker: float  # mean |Δ mean colour| between consecutive frames, 0–255 levels
    persistence: float  # fraction of frames in which each judged object is visible (mean over objects)


def temporal_consistency(frames: np.ndarray, result: JudgeResult | None = None) -> TemporalConsistency:
    """Consecutive-frame similarity, global colour flicker and (with a judge result) object persistence."""
    f = np.asarray(frames, np.float64)
    if f.shape[0] < 2:
        return TemporalConsistency(float("nan"), 0.0, 1.0)
    frame_psnr = float(np.mean([frames_psnr(f[t], f[t + 1]) for t in range(f.shape[0] - 1)]))  # ≤ 100 dB
    means = f.reshape(f.shape[0], -1, 3).mean(1)
    flicker = float(np.abs(np.diff(means, axis=0)).mean())
    persistence = 1.0
    if result is not None and result.objects:
        persistence = float(
            np.mean([np.mean([math.isfinite(x) for x, _ in o.track]) for o in result.objects])
        )
    return TemporalConsistency(frame_psnr, flicker, persistence)


def track_agreement(result: JudgeResult, source: JudgeResult, size: int) -> float:
    """Motion following: 1 − mean centroid distance (fraction of ``size``, capped at 1) between the output's
    object tracks and the source's, objects paired by the order of their mean positions."""
    if not source.objects:
        return float("nan")
    if not result.objects:
        return 0.0

    def tracks(res):
        return [np.asarray(o.track, np.float64) for o in res.objects]

    src, out = tracks(source), tracks(result)
    scores = []
    for s in src:
        best = 1.0
        for o in out:
            n = min(len(s), len(o))
            d = np.hypot(*(s[:n] - o[:n]).T) / size
            d = d[np.isfinite(d)]
            if d.size:
                best = min(best, float(np.clip(d.mean(), 0.0, 1.0)))
        scores.append(1.0 - best)
    return float(np.mean(scores))


def event_sync(audio: np.ndarray, sample_rate: int, fps: float, event_frames: list[int]) -> float:
    """Video-to-audio sync: fraction of the video's bounce frames with a click within one frame."""
    return heard_sync(audio_events(audio, sample_rate, fps)[0], event_frames)


def heard_sync(heard: list[int], event_frames: list[int]) -> float:
    """``event_sync`` of click frames already heard (``audio_events``)."""
    if not event_frames:
        return float("nan")
    return float(np.mean([any(abs(h - e) <= 1 for h in heard) for e in event_frames]))


def chance_sync(clicks: int, frames: int, event_frames: list[int]) -> float:
    """The ``event_sync`` that ``clicks`` clicks at distinct frames drawn uniformly from ``frames`` would
    score on average: each bounce is missed only when no click falls in its ±1-frame window."""
    if not event_frames:
        return float("nan")
    k = min(max(int(clicks), 0), frames)
    hits = []
    for e in event_frames:
        window = sum(0 <= f < frames for f in (e - 1, e, e + 1))
        hits.append(1.0 - math.comb(frames - window, k) / math.comb(frames, k))
    return float(np.mean(hits))


def video_bounce_frames(result: JudgeResult, min_speed_ratio: float = 0.1) -> list[int]:
    """Frames where an object the judge calls bouncing reverses its screen velocity in x or y.

    Steps count when they move by at least ``min_speed_ratio`` of the object's median speed along that
    axis. A wall contact at the very last frame cannot be seen reversing."""
    frames: set[int] = set()
    for obj in result.objects:
        track = np.asarray(obj.track, np.float64)
        if obj.motion != "bouncing" or track.shape[0] < 3:
            continue
        v = np.diff(track, axis=0)  # (T-1, 2)
        for axis in (0, 1):
            va = v[:, axis]
            speed = np.nanmedian(np.abs(va))
            if not np.isfinite(speed) or speed <= 0:
                continue
            # Steps that clearly move; a step containing the wall contact can nearly cancel out, so a
            # reversal is a sign change between consecutive clear steps i < k, at frame ≈ (i + k + 1) / 2.
            clear = [j for j in range(va.size) if np.isfinite(va[j]) and abs(va[j]) > min_speed_ratio * speed]
            for i, k in zip(clear[:-1], clear[1:]):
                if va[i] * va[k] < 0 and k - i <= 2:
                    frames.add(int(math.floor((i + k + 1) / 2 + 0.5)))
    return sorted(frames)


def audio_video_agreement(result: JudgeResult, audio: np.ndarray, sample_rate: int, fps: float) -> float:
    """Audio-to-video agreement: F1 (±1 frame) of bounces seen in the video vs clicks heard in the audio."""
    heard, _ = audio_events(audio, sample_rate, fps)
    return event_f1(video_bounce_frames(result), heard)


def events_agreement(result: JudgeResult, audio: np.ndarray, sample_rate: int, fps: float) -> float:
    """``audio_video_agreement`` of a generated pair, NaN when neither has an event: silence under a clip
    without a bounce (or without any object) agrees trivially and is not counted."""
    heard, _ = audio_events(audio, sample_rate, fps)
    seen = video_bounce_frames(result)
    return event_f1(seen, heard) if seen or heard else float("nan")


def audio_features(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Fixed audio description (2·64 + 2): mean and std over time of 64 log-mel bands (25 ms / 10 ms),
    the click-onset rate per second and the RMS level in dB — for audio Fréchet distances."""
    from videopoet.eval.standard.vggish import mel_matrix

    a = np.asarray(audio, np.float64)
    if a.ndim != 1:
        raise ValueError(f"audio must be mono (N,), got shape {a.shape}")
    win, hop = round(0.025 * sample_rate), round(0.010 * sample_rate)
    nfft = 2 ** math.ceil(math.log2(win))
    if a.size < win:
        a = np.pad(a, (0, win - a.size))
    frames = np.lib.stride_tricks.sliding_window_view(a, win)[::hop]
    spec = np.abs(np.fft.rfft(frames * np.hanning(win), nfft))
    mel = np.log(spec @ _mel(spec.shape[1], sample_rate, mel_matrix) + 0.01)
    onsets = len(audio_events(a, sample_rate, fps=1.0)[0]) / (a.size / sample_rate)
    rms_db = 20 * math.log10(max(float(np.sqrt((a**2).mean())), 1e-5))
    return np.concatenate([mel.mean(0), mel.std(0), [onsets, rms_db / 20]]).astype(np.float64)


def _mel(bins: int, sample_rate: int, mel_matrix) -> np.ndarray:
    if sample_rate == 16000:
        return mel_matrix(bins)
    return mel_matrix(bins, sample_rate)


# ================================================================ baselines (pure)
def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), half-open, of the bounding box of a bool (H, W) mask's True pixels."""
    rows, cols = np.flatnonzero(np.any(mask, axis=1)), np.flatnonzero(np.any(mask, axis=0))
    if rows.size == 0:
        raise ValueError("the mask is empty")
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _ramp(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Linear interpolation between border values a, b (..., 3) over the n pixels between → (..., n, 3)."""
    w = (np.arange(n) + 1.0) / (n + 1.0)
    return a[..., None, :] * (1 - w)[:, None] + b[..., None, :] * w[:, None]


def border_fill(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Inpainting floor: the mask's bounding box filled from its border, each pixel the mean of the linear
    interpolation along its row (between the columns just left and right of the box) and along its column
    (between the rows just above and below). A side on the frame's edge uses the opposite border alone.
    Exact on any affine image. uint8 (T, H, W, 3) → uint8 (T, H, W, 3)."""
    f = np.asarray(frames, np.float64)
    t, h, w, _ = f.shape
    top, bottom, left, right = mask_box(mask)
    bh, bw = bottom - top, right - left
    parts = []
    if left > 0 or right < w:
        a = f[:, top:bottom, left - 1 if left > 0 else right]  # (T, bh, 3)
        b = f[:, top:bottom, right if right < w else left - 1]
        parts.append(_ramp(a, b, bw))  # (T, bh, bw, 3)
    if top > 0 or bottom < h:
        a = f[:, top - 1 if top > 0 else bottom, left:right]  # (T, bw, 3)
        b = f[:, bottom if bottom < h else top - 1, left:right]
        parts.append(_ramp(a, b, bh).transpose(0, 2, 1, 3))  # (T, bw, bh, 3) → (T, bh, bw, 3)
    if not parts:
        raise ValueError("the mask covers the whole frame: there is no border to fill from")
    out = f.copy()
    out[:, top:bottom, left:right] = np.mean(parts, axis=0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def edge_replicate(frames: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Outpainting floor: every pixel outside the kept box (bounding box of ``keep``, bool (H, W)) copies the
    nearest pixel of the box (``np.pad(..., mode="edge")``). uint8 (T, H, W, 3) → the same shape."""
    f = np.asarray(frames)
    top, bottom, left, right = mask_box(keep)
    ys = np.clip(np.arange(f.shape[1]), top, bottom - 1)
    xs = np.clip(np.arange(f.shape[2]), left, right - 1)
    return f[:, ys[:, None], xs[None, :]]


def hold_last_frame(given: np.ndarray, total: int) -> np.ndarray:
    """Continuation floor: the given frames (G, H, W, 3), then the last of them repeated up to ``total``."""
    g = np.asarray(given)
    if not 1 <= len(g) <= total:
        raise ValueError(f"need between 1 and {total} given frames, got {len(g)}")
    return np.concatenate([g, np.repeat(g[-1:], total - len(g), axis=0)])


def loop_audio(given: np.ndarray, length: int) -> np.ndarray:
    """Audio-video continuation floor: the given sound (N0,) repeated to ``length`` samples."""
    g = np.asarray(given, np.float32)
    if g.size == 0:
        return np.zeros(length, np.float32)
    return np.tile(g, -(-length // g.size))[:length]


# ================================================================ long video (pure)
def second_windows(num_frames: int, fps: float) -> list[slice]:
    """1-second windows of a clip, each ``fps`` + 1 frames (its boundary frames shared with the next):
    81 frames at 8 fps → 10 windows."""
    step = int(round(fps))
    return [slice(s, s + step + 1) for s in range(0, num_frames - step, step)]


def identity_kept(first: JudgeResult, later: list[JudgeResult]) -> float:
    """Fraction of (later window, object of the first window) pairs in which the window holds an object
    of the same colour and shape; 0 when the first window has no object (every prompt names one), NaN
    when there is no later window."""
    if not later:
        return float("nan")
    if not first.objects:
        return 0.0
    kept = [
        any(o.color == ref.color and o.shape == ref.shape for o in res.objects)
        for res in later
        for ref in first.objects
    ]
    return float(np.mean(kept))


def long_identity(frames: np.ndarray, fps: float) -> float:
    """``identity_kept`` of a long clip judged on its 1-second windows, each compared with the first."""
    results = [judge_clip(frames[w], None, fps=fps) for w in second_windows(len(frames), fps)]
    return identity_kept(results[0], results[1:]) if results else float("nan")


# ================================================================ verdicts (pure)
def _finite(*xs: float) -> bool:
    return all(x is not None and not math.isnan(x) for x in xs)


def at_least(value: float, target: float) -> bool | None:
    return bool(value >= target) if _finite(value, target) else None


def at_most(value: float, target: float) -> bool | None:
    return bool(value <= target) if _finite(value, target) else None


def above(value: float, floor: float) -> bool | None:
    """Beats its floor: strictly above it (an infinite PSNR beats any finite floor)."""
    return bool(value > floor) if _finite(value, floor) else None


def all_of(*oks: bool | None) -> bool | None:
    """False when any is False, else None when any is undecided (None), else True."""
    return False if False in oks else (None if None in oks else True)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("pass" if ok else "fail")


def entry(metric: str, value: float, ok: bool | None, *, target: str | None = None, **baseline) -> dict:
    """One scored entry: the metric's description, its value, its baseline (``floor=`` or ``ceiling=``,
    and ``baseline=`` saying what it is), the target (text) and the verdict."""
    out: dict[str, Any] = {"metric": metric, "value": value, **baseline}
    if target is not None:
        out["target"] = target
    out["verdict"] = verdict(ok)
    return out


def mean(xs) -> float:
    """Mean skipping None and NaN (undefined entries); +inf (a perfect PSNR) is kept; NaN when empty."""
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return float(np.mean(xs)) if xs else float("nan")


# ================================================================ generators
def stylized_attributes(attributes: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """New text attributes for stylization: every object gets another colour, the background another kind;
    shape, size and motion stay (the output must keep the source's motion)."""
    from videopoet.data.world import BACKGROUNDS, COLORS

    taken = {o["color"] for o in attributes["objects"]}
    free = [c for c in COLORS if c not in taken]
    rng.shuffle(free)
    objects = [
        {**{k: o[k] for k in ("shape", "size", "motion")}, "color": free[i]}
        for i, o in enumerate(attributes["objects"])
    ]
    kind = (
        attributes["background"]["kind"]
        if isinstance(attributes["background"], dict)
        else attributes["background"]
    )
    kinds = [b for b in BACKGROUNDS if b != kind]
    return {"objects": objects, "background": kinds[int(rng.integers(len(kinds)))]}


def caption_for(attributes: dict[str, Any]) -> str:
    """A world-style caption naming every attribute (used for stylization prompts)."""
    objs = " and ".join(
        f"a {o['size']} {o['color']} {o['shape']} {o['motion']}" for o in attributes["objects"]
    )
    bg = attributes.get("background")
    bg = bg["kind"] if isinstance(bg, dict) else bg
    names = {"solid": "plain", "gradient": "gradient", "stripes": "striped", "noise": "mottled"}
    return f"{objs} on a {names.get(bg, bg)} background"


def visual_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """A clip's attributes without its bounce events (visual tasks are judged without sound)."""
    return {k: v for k, v in attributes.items() if k != "events"}


def real_generate_fn(task: str, prompt: str, conditions: dict[str, Any]) -> GeneratedClip:
    """The ceiling: each task's 'generation' is the world clip in ``conditions["clip"]`` (the source clip for
    stylization, so its text following is that of an identity stylizer; for an empty t2v prompt the
    evaluation hands it a clip of another seed: a perfect unconditional sample)."""
    clip = conditions["clip"]
    return GeneratedClip(clip.frames, clip.audio, clip.sample_rate, clip.fps)


# Condition keys a pipeline call takes as keyword arguments (the rest, e.g. "clip", are for the scorers).
PIPELINE_KEYS = (
    "image",
    "video",
    "audio",
    "mask",
    "flow",
    "depth",
    "num_frames",
    "guidance_scale",
    "with_audio",
)


class PipelineGenerator:
    """``generate_fn`` backed by a ``VideoPoetPipeline``: the clip sets the size and length, ``conditions``
    the task's inputs (``PIPELINE_KEYS``) and the sample seed (``evaluate`` gives each clip its run seed + the
    clip's index; the generator's own ``seed`` is used only when the conditions carry none). ``sampling``
    (``temperature``, ``top_k``) goes to every call."""

    def __init__(self, pipe, *, seed: int = 0, sampling: dict[str, Any] | None = None):
        self.pipe, self.seed, self.sampling = pipe, seed, dict(sampling or {})

    @property
    def video_tokenizer(self):
        return self.pipe.video_tokenizer

    def __call__(self, task: str, prompt: str, conditions: dict[str, Any]) -> GeneratedClip:
        t, h, w, _ = conditions["clip"].frames.shape
        kwargs = {k: conditions[k] for k in PIPELINE_KEYS if k in conditions}
        kwargs.setdefault("num_frames", t)
        seed = int(conditions.get("seed", self.seed))  # never added twice: --seed S, clip i → S + i
        out = self.pipe(prompt, task=task, width=w, height=h, seed=seed, **self.sampling, **kwargs)
        return GeneratedClip(np.asarray(out.frames), out.audio, out.sample_rate, out.fps)


def model_generate_fn(
    model_dir: str, *, seed: int = 0, sampling: dict[str, Any] | None = None, device="cpu"
) -> PipelineGenerator:
    """``PipelineGenerator`` of ``VideoPoetPipeline.from_pretrained(model_dir, device=device)``."""
    from videopoet.pipeline import VideoPoetPipeline

    pipe = VideoPoetPipeline.from_pretrained(model_dir, device=device)
    return PipelineGenerator(pipe, seed=seed, sampling=sampling)


class TaskSkipped(Exception):
    """The generator refused a task (the reason is recorded as the task's entry)."""


def generate_checked(
    generate_fn: GenerateFn, task: str, prompt: str, conditions: dict[str, Any]
) -> GeneratedClip:
    """``generate_fn`` with its refusals (ValueError, UserError, TypeError: an input it does not take,
    NotImplementedError) turned into TaskSkipped, and its frames checked against the clip's shape."""
    try:
        out = generate_fn(task, prompt, conditions)
    except (ValueError, UserError, TypeError, NotImplementedError) as e:
        raise TaskSkipped(f"{task}: {type(e).__name__}: {e}") from None
    t, h, w, c = conditions["clip"].frames.shape
    expected = (int(conditions.get("num_frames", t)), h, w, c)
    frames = np.asarray(out.frames)
    if frames.dtype != np.uint8 or frames.shape != expected:
        raise TaskSkipped(
            f"{task}: the generator returned {frames.dtype} frames {frames.shape}, not uint8 {expected}"
        )
    return out


def scored_aliases(tasks) -> tuple[str, ...]:
    """Task names or aliases (or "long") → the aliases of the scored tasks (UserError for any other)."""
    out = []
    for t in tasks:
        if t == LONG:
            out.append(t)
            continue
        try:
            alias = task_spec(t).alias
        except ValueError as e:
            raise UserError(str(e)) from None
        if alias not in TASKS:
            raise UserError(f"task {t!r} is not scored by this evaluation; choose from {', '.join(TASKS)}")
        out.append(alias)
    return tuple(dict.fromkeys(out))


# ================================================================ one run's state
def event_clips(split: str, seed: int, num: int) -> list[Any]:
    """The first ``num`` world clips of ``split`` from ``seed`` up whose scene has a bounce event."""
    from videopoet.data.synthetic import render_clip

    out = []
    for s in range(seed, seed + EVENT_SCAN * num):
        clip = render_clip(s, split=split)
        if clip.attributes["events"]:
            out.append(clip)
            if len(out) == num:
                return out
    raise UserError(f"fewer than {num} clips with bounces among seeds {seed}..{s} of split {split!r}")


@dataclass
class Setup:
    """What every scorer shares: the generator, the world clips (seed + i) and real references of
    disjoint seeds, the split, the tokenizer for ceilings (None: those ceilings are NaN), the t2v guidance
    and caches (judge results, unconditional samples)."""

    generate_fn: GenerateFn
    clips: list[Any]  # videopoet.data.synthetic.Clip
    references: list[Any]
    split: str
    seed: int
    tokenizer: Any = None
    guidance: float = 1.0
    cache: dict[Any, Any] = field(default_factory=dict)

    def event_clips(self) -> list[Any]:
        """Clips of the split with a bounce (sound events), as many as ``clips``, from the run's seed up."""
        if "event_clips" not in self.cache:
            self.cache["event_clips"] = event_clips(self.split, self.seed, len(self.clips))
        return self.cache["event_clips"]

    def generate(self, task: str, prompt: str, i: int, **conditions) -> GeneratedClip:
        conditions.setdefault("clip", self.clips[i])
        conditions.setdefault("seed", self.seed + i)
        return generate_checked(self.generate_fn, task, prompt, conditions)

    def judged(self, which: str, i: int) -> JudgeResult:
        """The judge's reading of clip i (``which`` = "clip") or of reference i ("reference")."""
        key = (which, i)
        if key not in self.cache:
            clip = (self.clips if which == "clip" else self.references)[i]
            self.cache[key] = judge_clip(clip.frames, None, clip.sample_rate, clip.fps)
        return self.cache[key]

    def unconditional(self, i: int) -> JudgeResult | None:
        """The judged i-th sample of t2v with an empty prompt (None when the generator refuses it): the floor
        of t2v, stylization and a2v. The conditions carry reference i, so ``--real`` gets a world clip of
        another seed."""
        key = ("unconditional", i)
        if key not in self.cache:
            try:
                seed = self.seed + REAL_SEED_OFFSET + i
                out = self.generate("t2v", "", i, clip=self.references[i], seed=seed, with_audio=False)
                self.cache[key] = judge_clip(out.frames, None, out.sample_rate, out.fps)
            except TaskSkipped:
                self.cache[key] = None
        return self.cache[key]

    def floor_results(self) -> list[JudgeResult] | None:
        results = [self.unconditional(i) for i in range(len(self.clips))]
        return None if any(r is None for r in results) else results


# ================================================================ scorers (one per task)
def score_t2v(s: Setup) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Prompt following per attribute vs the unconditional floor, the Fréchet ratio, temporal consistency."""
    results, attrs, temporal, samples = [], [], [], []
    for i, clip in enumerate(s.clips):
        out = s.generate("t2v", clip.caption, i, guidance_scale=s.guidance, with_audio=False)
        res = judge_clip(out.frames, None, out.sample_rate, out.fps)
        results.append(res)
        attrs.append(visual_attributes(clip.attributes))
        temporal.append(temporal_consistency(out.frames, res))
        samples.append(out.frames)
    acc = judge_accuracy([None] * len(results), attrs, results=results)
    floors = s.floor_results()
    floor = {} if floors is None else judge_accuracy([None] * len(floors), attrs, results=floors)
    target = T2V_TARGETS[s.split]
    following = {
        key: entry(
            f"judge agreement with the caption: {key}",
            acc[key],
            at_least(acc[key], target),
            target=f">= {target} ({s.split})",
            floor=floor.get(key, float("nan")),
            baseline="unconditional samples (empty prompt) judged against the same captions",
        )
        for key in (*VISUAL_ATTRIBUTES, "all_correct")
        if key in acc
    }
    metrics = {
        "prompt_following": following,
        "frechet": frechet_entry(s, [r.features for r in results]),
        "temporal": {
            "frame_psnr": mean([t.frame_psnr for t in temporal]),
            "flicker": mean([t.flicker for t in temporal]),
            "persistence": mean([t.persistence for t in temporal]),
        },
    }
    return metrics, samples


def frechet_entry(s: Setup, features: list[np.ndarray]) -> dict[str, Any]:
    """Judge-feature Fréchet distance of generated clips to real ones (disjoint seeds), as a ratio to that
    of the tokenizer's reconstructions of the evaluated clips (NaN without a tokenizer)."""
    from videopoet.eval.tokenizer import reconstruct_frames

    real = np.stack([s.judged("reference", i).features for i in range(len(s.references))])
    fd = frechet_distance(np.stack(features), real)
    recon_fd = float("nan")
    if s.tokenizer is not None:
        recon = [reconstruct_frames(s.tokenizer, [c.frames])[0] for c in s.clips]  # one clip per batch
        recon_fd = frechet_distance(np.stack([judge_clip(r).features for r in recon]), real)
    ratio = fd / recon_fd if _finite(recon_fd) and recon_fd > 0 else float("nan")
    return entry(
        "judge-feature Fréchet distance to real clips / the tokenizer reconstructions' distance",
        ratio,
        at_most(ratio, FRECHET_RATIO_TARGET),
        target=f"<= {FRECHET_RATIO_TARGET:g}",
        ceiling=1.0,
        baseline="the video tokenizer's encode-decode reconstructions of the same clips (ratio 1)",
        frechet=fd,
        tokenizer_frechet=recon_fd,
    )


def score_i2v(s: Setup) -> tuple[dict[str, Any], list[np.ndarray]]:
    """First-frame PSNR vs the tokenizer's reconstruction PSNR of that frame; judge agreement reported."""
    from videopoet.eval.tokenizer import reconstruct_frames

    psnrs, ceilings, results, attrs, samples = [], [], [], [], []
    for i, clip in enumerate(s.clips):
        image = clip.frames[0]
        out = s.generate("i2v", clip.caption, i, image=image, with_audio=False)
        psnrs.append(first_frame_psnr(out.frames, image))
        if s.tokenizer is not None:
            ceilings.append(frames_psnr(reconstruct_frames(s.tokenizer, [image[None]])[0][0], image))
        results.append(judge_clip(out.frames, None, out.sample_rate, out.fps))
        attrs.append(visual_attributes(clip.attributes))
        samples.append(out.frames)
    value, ceiling = mean(psnrs), mean(ceilings)
    first = entry(
        "PSNR (dB) of generated frame 0 to the given image",
        value,
        at_least(value, ceiling - I2V_MARGIN_DB),
        target=f"within {I2V_MARGIN_DB:g} dB of the ceiling",
        ceiling=ceiling,
        baseline="the video tokenizer's reconstruction PSNR of the same image",
    )
    following = judge_accuracy([None] * len(results), attrs, results=results)
    return {"first_frame": first, "prompt_following": following}, samples


def score_continue(s: Setup) -> tuple[dict[str, Any], list[np.ndarray]]:
    """PSNR of the predicted frames to the real future vs holding the last given frame."""
    values, floors, samples = [], [], []
    for i, clip in enumerate(s.clips):
        total, given = len(clip.frames), clip.frames[:CONTINUE_GIVEN]
        out = s.generate("continue", "", i, video=given, num_frames=total, with_audio=False)
        future = clip.frames[CONTINUE_GIVEN:]
        values.append(frames_psnr(out.frames[CONTINUE_GIVEN:], future))
        floors.append(frames_psnr(hold_last_frame(given, total)[CONTINUE_GIVEN:], future))
        samples.append(out.frames)
    value, floor = mean(values), mean(floors)
    e = entry(
        f"PSNR (dB) of frames {CONTINUE_GIVEN}.. to the real future, given frames 0..{CONTINUE_GIVEN - 1}",
        value,
        above(value, floor),
        target="above the floor",
        floor=floor,
        baseline="the last given frame held (hold_last_frame)",
    )
    return {"future_psnr": e}, samples


def score_painting(s: Setup, task: str) -> tuple[dict[str, Any], list[np.ndarray]]:
    """In- or outpainting around the central box: PSNR of the generated region to the original vs its
    floor (``border_fill`` inside the box, ``edge_replicate`` around it); PSNR of the given region
    reported."""
    inpaint = task == "inpaint"
    made, given, floors, samples = [], [], [], []
    for i, clip in enumerate(s.clips):
        box = central_mask(*clip.frames.shape[1:3])
        generate = box if inpaint else ~box  # True: the pixels the model makes
        shown = clip.frames.copy()
        shown[:, generate] = 0
        out = s.generate(task, clip.caption, i, video=shown, mask=generate, with_audio=False)
        fid = masked_fidelity(out.frames, clip.frames, box)
        made.append(fid.inside_psnr if inpaint else fid.outside_psnr)
        given.append(fid.outside_psnr if inpaint else fid.inside_psnr)
        guess = border_fill(shown, box) if inpaint else edge_replicate(shown, box)
        floors.append(frames_psnr(guess, clip.frames, mask=generate))
        samples.append(out.frames)
    value, floor = mean(made), mean(floors)
    where = "inside the central box (half of each side)" if inpaint else "outside the kept central box"
    baseline = (
        "the box filled from its border, rows and columns interpolated (border_fill)"
        if inpaint
        else "the kept box's edge pixels replicated outwards (edge_replicate)"
    )
    e = entry(f"PSNR (dB) {where} to the original", value, above(value, floor), target="above the floor",
              floor=floor, baseline=baseline)  # fmt: skip
    made_key, given_key = ("inside_psnr", "outside_psnr") if inpaint else ("outside_psnr", "inside_psnr")
    return {made_key: e, given_key: mean(given)}, samples


def score_stylize(s: Setup) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Motion following of the source's flow and depth vs unconditional samples'; text following reported."""
    rng = np.random.default_rng(s.seed)
    follow, floor, results, targets, samples = [], [], [], [], []
    for i, clip in enumerate(s.clips):
        target = stylized_attributes(clip.attributes, rng)
        inputs = dict(video=clip.frames, flow=clip.flow, depth=clip.depth, with_audio=False)
        out = s.generate("stylize", caption_for(target), i, **inputs)
        res = judge_clip(out.frames, None, out.sample_rate, out.fps)
        size = min(clip.frames.shape[1:3])
        follow.append(track_agreement(res, s.judged("clip", i), size))
        uncond = s.unconditional(i)
        floor.append(float("nan") if uncond is None else track_agreement(uncond, s.judged("clip", i), size))
        results.append(res)
        targets.append(target)
        samples.append(out.frames)
    value, floor_value = mean(follow), mean(floor)
    motion = entry(
        "motion following: 1 - mean track distance to the source's objects (fraction of the frame)",
        value,
        above(value, floor_value),
        target="above the floor",
        floor=floor_value,
        baseline="unconditional samples (empty prompt) against the same sources",
    )
    text = judge_accuracy([None] * len(results), targets, results=results)
    return {"motion_following": motion, "text_following": text}, samples


def _with_audio(task: str, out: GeneratedClip) -> np.ndarray:
    if out.audio is None:
        raise TaskSkipped(f"{task}: the generator returned no audio")
    return np.asarray(out.audio, np.float32)


def score_v2a(s: Setup) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Bounce-click sync of the generated sound vs another clip's sound; audio Fréchet distance reported."""
    sync, floor, gen_feats, real_feats, f1, clicks, chance = [], [], [], [], [], [], []
    clips = s.event_clips()
    for i, clip in enumerate(clips):
        out = s.generate("v2a", "", i, clip=clip, video=clip.frames)
        audio = _with_audio("v2a", out)
        bounces = sorted({int(e["frame"]) for e in clip.attributes["events"]})
        other = s.references[i]
        heard, _ = audio_events(audio, out.sample_rate, clip.fps)
        sync.append(heard_sync(heard, bounces))
        f1.append(event_f1(bounces, heard))
        clicks.append(len(heard) / len(bounces))
        chance.append(chance_sync(len(set(heard)), len(clip.frames), bounces))
        floor.append(event_sync(other.audio, other.sample_rate, clip.fps, bounces))
        gen_feats.append(audio_features(audio, out.sample_rate))
        real_feats.append(audio_features(other.audio, other.sample_rate))
    value, floor_value = mean(sync), mean(floor)
    e = entry(
        "bounce sync: fraction of the video's bounces with a click within one frame",
        value,
        all_of(at_least(value, V2A_SYNC_TARGET), above(value, floor_value)),
        target=f">= {V2A_SYNC_TARGET} and above the floor",
        floor=floor_value,
        baseline="the sound of another world clip (disjoint seed)",
    )
    metrics = {
        "bounce_sync": e,
        "clips_with_bounces": sum(_finite(x) for x in sync),
        "seeds": [c.attributes["seed"] for c in clips],
        # sync alone rewards clicks everywhere: the F1 of clicks against bounces, and clicks per bounce
        "bounce_f1": mean(f1),
        "clicks_per_bounce": mean(clicks),
        "chance_sync": mean(chance),  # the sync of as many clicks at random frames
        "audio_frechet": frechet_distance(np.stack(gen_feats), np.stack(real_feats)),
    }
    return metrics, []


def score_a2v(s: Setup) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Agreement of the generated video's bounces with the given sound's clicks vs unconditional samples."""
    values, floor, samples = [], [], []
    clips = s.event_clips()
    for i, clip in enumerate(clips):
        out = s.generate("a2v", "", i, clip=clip, audio=clip.audio)
        res = judge_clip(out.frames, None, out.sample_rate, out.fps)
        values.append(audio_video_agreement(res, clip.audio, clip.sample_rate, clip.fps))
        uncond = s.unconditional(i)
        floor.append(
            float("nan")
            if uncond is None
            else audio_video_agreement(uncond, clip.audio, clip.sample_rate, clip.fps)
        )
        samples.append(out.frames)
    value, floor_value = mean(values), mean(floor)
    e = entry(
        "event F1 (±1 frame): bounces seen in the video vs clicks heard in the given sound",
        value,
        above(value, floor_value),
        target="above the floor",
        floor=floor_value,
        baseline="unconditional samples (no text, no sound) against the same sound",
    )
    return {"event_agreement": e, "seeds": [c.attributes["seed"] for c in clips]}, samples


def _pair_scores(res: JudgeResult, out: GeneratedClip, floor_audio: np.ndarray, floor_rate: int):
    """(value, floor) of a generated pair: ``events_agreement`` of its sound and ``audio_video_agreement``
    of the floor's sound with its frames; both NaN (not counted) when the pair has no event at all."""
    value = events_agreement(res, out.audio, out.sample_rate, out.fps)
    if math.isnan(value):
        return value, value
    return value, audio_video_agreement(res, floor_audio, floor_rate, out.fps)


def _sound_entry(values: list[float], floors: list[float], baseline: str) -> dict[str, Any]:
    value, floor = mean(values), mean(floors)
    e = entry(
        "event F1 (±1 frame): bounces seen in the generated frames vs clicks in the generated sound "
        "(pairs with neither are not counted)",
        value,
        above(value, floor),
        target="above the floor",
        floor=floor,
        baseline=baseline,
    )
    return {"event_agreement": e, "clips_with_events": sum(_finite(v) for v in values)}


def score_avcont(s: Setup) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Agreement of the continued sound with the continued frames vs the given sound looped."""
    values, floors, samples = [], [], []
    for i, clip in enumerate(s.clips):
        head = clip.audio[: int(round(clip.sample_rate / clip.fps))]  # the sound of frame 0
        out = s.generate("avcont", "", i, image=clip.frames[0], audio=head, num_frames=len(clip.frames))
        _with_audio("avcont", out)
        res = judge_clip(out.frames, None, out.sample_rate, out.fps)
        value, floor = _pair_scores(res, out, loop_audio(head, clip.audio.size), clip.sample_rate)
        values.append(value)
        floors.append(floor)
        samples.append(out.frames)
    baseline = "the given sound of frame 0 looped under the same frames (loop_audio)"
    return _sound_entry(values, floors, baseline), samples


def score_t2a(s: Setup) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Agreement of the generated sound with the generated frames vs another clip's sound."""
    values, floors, samples = [], [], []
    for i, clip in enumerate(s.clips):
        out = s.generate("t2a", clip.caption, i)
        _with_audio("t2a", out)
        res = judge_clip(out.frames, None, out.sample_rate, out.fps)
        other = s.references[i]
        value, floor = _pair_scores(res, out, other.audio, other.sample_rate)
        values.append(value)
        floors.append(floor)
        samples.append(out.frames)
    baseline = "the sound of another world clip (disjoint seed) under the same frames"
    return _sound_entry(values, floors, baseline), samples


def score_long(s: Setup) -> tuple[dict[str, Any], list[np.ndarray]]:
    """10-s text-to-video: objects keep their colour and shape over its 1-second windows."""
    from videopoet.data.synthetic import render_clip

    values, ceilings, samples = [], [], []
    for i, clip in enumerate(s.clips):
        long = render_clip(s.seed + i, split=s.split, frames=LONG_FRAMES, fps=clip.fps)
        out = s.generate("t2v", clip.caption, i, clip=long, guidance_scale=s.guidance, with_audio=False)
        values.append(long_identity(out.frames, out.fps))
        same = out.frames.shape == long.frames.shape and np.array_equal(out.frames, long.frames)
        ceilings.append(values[-1] if same else long_identity(long.frames, long.fps))  # --real: judged once
        samples.append(out.frames)
    value = mean(values)
    e = entry(
        f"fraction of 1-s windows of a {LONG_FRAMES}-frame t2v clip in which each object keeps its colour "
        "and shape (judged per window vs the first)",
        value,
        at_least(value, LONG_TARGET),
        target=f">= {LONG_TARGET}",
        ceiling=mean(ceilings),
        baseline="the world's own 10-s rendering of the same scene",
    )
    return {"identity_kept": e}, samples


SCORERS: dict[str, Callable[[Setup], tuple[dict[str, Any], list[np.ndarray]]]] = {
    "t2v": score_t2v,
    "i2v": score_i2v,
    "continue": score_continue,
    "inpaint": functools.partial(score_painting, task="inpaint"),
    "outpaint": functools.partial(score_painting, task="outpaint"),
    "stylize": score_stylize,
    "v2a": score_v2a,
    "a2v": score_a2v,
    "avcont": score_avcont,
    "t2a": score_t2a,
    LONG: score_long,
}


# ================================================================ the run
def evaluate(
    generate_fn: GenerateFn,
    *,
    num: int,
    split: str = "heldout",
    seed: int = 0,
    tasks: tuple[str, ...] = TASKS,
    tokenizer: Any = None,
    guidance: float = 1.0,
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
    """Score ``tasks`` on ``num`` world clips of ``split`` → (metrics, sample clips per task).

    ``tokenizer``: the video tokenizer whose reconstructions set the t2v Fréchet and i2v ceilings (None:
    those are NaN and their verdicts "n/a"); ``guidance``: the t2v (and long) guidance scale. A task the
    generator refuses becomes ``{"skipped": reason}``; ``metrics["verdicts"]`` has one line per task."""
    from tqdm import tqdm

    from videopoet.data.synthetic import render_clip

    if num < 2:
        raise UserError("--num must be at least 2 (Fréchet distances need two clips per side)")
    tasks = scored_aliases(tasks)
    setup = Setup(
        generate_fn,
        [render_clip(seed + i, split=split) for i in range(num)],
        [render_clip(seed + REAL_SEED_OFFSET + i, split=split) for i in range(num)],
        split,
        seed,
        tokenizer,
        guidance,
    )
    metrics: dict[str, Any] = {"num": num, "split": split, "seed": seed, "guidance": guidance}
    samples: dict[str, list[np.ndarray]] = {}
    for alias in tqdm(tasks, desc="eval generation", disable=not progress):
        try:
            metrics[alias], clips = SCORERS[alias](setup)
        except TaskSkipped as e:
            metrics[alias], clips = {"skipped": str(e)}, []
        if clips:
            samples[alias] = clips
    metrics["verdicts"] = {alias: task_verdict(metrics[alias]) for alias in tasks}
    return metrics, samples


def _entries(d: dict[str, Any], prefix: str = ""):
    """(name, entry) of every scored entry in a task's metrics (dicts with a "verdict"), depth first."""
    for key, value in d.items():
        if isinstance(value, dict):
            if "verdict" in value:
                yield prefix + key, value
            else:
                yield from _entries(value, f"{prefix}{key}.")


def task_verdict(task_metrics: dict[str, Any]) -> str:
    """ "skipped"; else "fail" if any entry fails, "pass" if every entry passes, else "n/a"."""
    if "skipped" in task_metrics:
        return "skipped"
    verdicts = [e["verdict"] for _, e in _entries(task_metrics)]
    if "fail" in verdicts:
        return "fail"
    return "pass" if verdicts and all(v == "pass" for v in verdicts) else "n/a"


def _fmt(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else ("" if x is None else str(x))


def verdict_table(metrics: dict[str, Any]) -> str:
    """Markdown table: one row per scored entry (task, entry, value, floor / ceiling, target, verdict) and
    one per skipped task."""
    rows = ["| task | entry | value | floor / ceiling | target | verdict |", "|---|---|---|---|---|---|"]
    for alias in metrics.get("verdicts", {}):
        task_metrics = metrics[alias]
        if "skipped" in task_metrics:
            rows.append(f"| {alias} | skipped: {task_metrics['skipped']} | | | | skipped |")
            continue
        for name, e in _entries(task_metrics):
            kind = "floor" if "floor" in e else "ceiling" if "ceiling" in e else None
            baseline = f"{kind} {_fmt(e[kind])}" if kind else ""
            value, target = _fmt(e["value"]), e.get("target", "")
            rows.append(f"| {alias} | {name} | {value} | {baseline} | {target} | {e['verdict']} |")
    return "\n".join(rows)


# ================================================================ command line
def _tokenizer_for(generate_fn) -> Any:
    """The video tokenizer for the ceilings: the pipeline's own, or for --real the bundled one (None, with a
    warning, when the install has none)."""
    if isinstance(generate_fn, PipelineGenerator):
        return generate_fn.video_tokenizer
    from videopoet.tokenizers.video import VideoTokenizer

    try:
        return VideoTokenizer.from_pretrained()
    except UserError as e:
        print(f"warning: no video tokenizer for the reconstruction ceilings ({e})")
        return None


def _charts(out_dir: Path, metrics: dict[str, Any]) -> list[tuple[str, Path]]:
    from videopoet.eval.report import bar_chart

    images = []
    t2v = metrics.get("t2v", {}).get("prompt_following")
    if t2v:
        series = {
            "generated": {k: e["value"] for k, e in t2v.items()},
            "floor (unconditional)": {k: e["floor"] for k, e in t2v.items()},
        }
        chart = bar_chart(out_dir / "t2v_attributes.png", series, title="t2v: judge agreement")
        images.append(("t2v prompt following per attribute vs the unconditional floor", chart))
    style = metrics.get("stylize", {})
    if "motion_following" in style:
        acc = {k: v for k, v in style["text_following"].items() if k != "num_clips"}
        acc["motion following"] = style["motion_following"]["value"]
        chart = bar_chart(out_dir / "stylize.png", {"stylize": acc}, title="stylization")
        images.append(("stylization: text following per attribute and motion following", chart))
    return images


def main(args) -> int:
    from videopoet.eval.report import check_report, sample_grid, write_report
    from videopoet.outputs import check_output

    tasks = scored_aliases([t for arg in (args.tasks or TASKS) for t in arg.split(",") if t])
    out_dir = check_output(Path(args.out), kind="dir")
    pictures = [out_dir / f"{t}_samples.gif" for t in tasks] + [
        out_dir / "t2v_attributes.png",
        out_dir / "stylize.png",
        out_dir / "samples.png",
    ]
    check_report(out_dir / "generation", pictures, overwrite=getattr(args, "overwrite", False))
    sampling = {k: v for k, v in (("temperature", args.temperature), ("top_k", args.top_k)) if v is not None}
    if args.real:
        if sampling or args.device != "cpu":
            raise UserError(
                "--temperature, --top-k and --device run a model: they go with --model, not --real"
            )
        generate_fn, source = real_generate_fn, "real (world renderings: the ceiling)"
    else:
        from videopoet.device import pick_device

        device = pick_device(args.device)
        generate_fn = model_generate_fn(args.model, seed=args.seed, sampling=sampling, device=device)
        source = f"model {args.model}" + "".join(f", {k} {v:g}" for k, v in sampling.items())
        source += f", on {device.type}"
    t0 = time.time()
    metrics, samples = evaluate(generate_fn, num=args.num, split=args.split, seed=args.seed, tasks=tasks,
                                tokenizer=_tokenizer_for(generate_fn), guidance=args.guidance)  # fmt: skip
    metrics["source"] = source
    metrics["seconds"] = round(time.time() - t0, 1)
    images = _charts(out_dir, metrics)
    for task, clips in samples.items():
        images.append((f"{task} samples", sample_grid(out_dir / f"{task}_samples.gif", clips[:8], scale=1)))
    firsts = {task: clips[0] for task, clips in samples.items() if clips}
    if firsts:  # one still row per task: its first clip's first, middle and last frames
        sheet = sample_grid(out_dir / "samples.png", list(firsts.values()))
        images.append((f"first sample of each task, one row each: {', '.join(firsts)}", sheet))
    intro = [
        f"Source: {source}; {args.num} clips of split `{args.split}` from seed {args.seed}; "
        f"t2v guidance {args.guidance:g}.",
        'Verdicts (pass: the entry meets its target, "above the floor" where that is the target; n/a: its '
        "baseline or value could not be computed, e.g. no tokenizer for a ceiling):",
        verdict_table(metrics),
    ]
    notes = [
        "Judge Fréchet distances compare judge features with real clips of disjoint seeds; with fewer clips "
        f"than feature dimensions ({FEATURE_DIM}) they are biased upwards: compare equal N.",
    ]
    json_path, md_path = write_report(
        out_dir / "generation", "Generation evaluation", metrics, images=images, notes=notes, intro=intro
    )
    print(f"wrote {json_path} and {md_path}")
    return 0
