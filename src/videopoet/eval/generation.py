"""``videopoet eval generation``: how well generated clips follow their conditions, judged on the world.

Metrics are pure functions over arrays (generated clips, conditions, ground truth); ``evaluate`` runs
them for every task through one interface, ``generate_fn(task, prompt, conditions) -> GeneratedClip``,
so the same code scores the world's own renderings (``--real``: the ceiling) and, once the generation
pipeline exists, a model (``--model DIR``: ``VideoPoetPipeline.from_pretrained`` is the only call).

Tasks and what they are scored on (all conditions come from world clips of the chosen split):
- t2v: the judge's per-attribute agreement with the caption's clip attributes, all-correct rate, the
  Fréchet distance between judge features of generated clips and of real clips of disjoint seeds, and
  temporal consistency (consecutive-frame PSNR, colour flicker, object persistence);
- i2v: PSNR of frame 0 to the given image, plus the judge's agreement on the continued clip;
- inpaint / outpaint: PSNR inside and outside the central mask against the original clip;
- stylize: motion following (object tracks of the output vs the source's) and text following (the
  judge's agreement with the new colours / background);
- v2a: bounce-click sync (fraction of the video's bounces with a click within one frame) and the audio
  Fréchet distance on log-mel statistics; a2v: agreement of the video's bounce frames with the audio's.
"""

from __future__ import annotations

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

# The registry's tasks (lm/tasks.py) this evaluation scores; metrics, sample grids and generate_fn calls
# name them by their aliases ("t2v", "i2v", …).
SCORED_TASKS = (
    "text_to_video",
    "image_to_video",
    "inpainting",
    "outpainting_central",
    "stylization",
    "video_to_audio",
    "audio_to_video",
)
TASKS = tuple(task_spec(name).alias for name in SCORED_TASKS)
REAL_SEED_OFFSET = 1_000_000  # real reference clips for Fréchet distances use disjoint seeds
MASK_FRACTION = 0.5  # the central in/outpainting box covers this fraction of each side


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
    values = [frames_psnr(f[t], f[t + 1]) for t in range(f.shape[0] - 1)]
    finite = [v for v in values if math.isfinite(v)]
    frame_psnr = float(np.mean(finite)) if finite else float("inf")
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
    if not event_frames:
        return float("nan")
    heard, _ = audio_events(audio, sample_rate, fps)
    return float(np.mean([any(abs(h - e) <= 1 for h in heard) for e in event_frames]))


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


# ================================================================ tasks
@dataclass
class Condition:
    """One evaluation item: a world clip and what each task is given."""

    seed: int
    split: str
    clip: Any  # videopoet.data.synthetic.Clip
    extras: dict[str, Any] = field(default_factory=dict)


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


def real_generate_fn(task: str, prompt: str, conditions: dict[str, Any]) -> GeneratedClip:
    """The ceiling: each task's 'generation' is the world's own clip (the source clip for stylization,
    so its text following is that of an identity stylizer: the floor a model must beat)."""
    clip = conditions["clip"]
    return GeneratedClip(clip.frames, clip.audio, clip.sample_rate, clip.fps)


def model_generate_fn(model_dir: str, *, seed: int = 0) -> GenerateFn:
    """``generate_fn`` backed by the generation pipeline (a later part of the project)."""
    try:
        from videopoet.pipeline import VideoPoetPipeline  # type: ignore[import-not-found]
    except ImportError:
        raise UserError(
            "the generation pipeline is not available in this version; use --real to score the world's "
            "own renderings"
        ) from None
    pipe = VideoPoetPipeline.from_pretrained(model_dir)

    def generate(task: str, prompt: str, conditions: dict[str, Any]) -> GeneratedClip:
        clip = conditions["clip"]
        kwargs = {k: v for k, v in conditions.items() if k in ("image", "video", "audio", "mask")}
        t, h, w, _ = clip.frames.shape
        out = pipe(prompt=prompt, task=task, num_frames=t, width=w, height=h, seed=seed, **kwargs)
        return GeneratedClip(np.asarray(out.frames), getattr(out, "audio", None), out.sample_rate, out.fps)

    return generate


def scored_aliases(tasks) -> tuple[str, ...]:
    """Task names or aliases → the aliases of the scored tasks (UserError for any other task)."""
    out = []
    for t in tasks:
        try:
            alias = task_spec(t).alias
        except ValueError as e:
            raise UserError(str(e)) from None
        if alias not in TASKS:
            raise UserError(f"task {t!r} is not scored by this evaluation; choose from {TASKS}")
        out.append(alias)
    return tuple(dict.fromkeys(out))


def evaluate(
    generate_fn: GenerateFn,
    *,
    num: int,
    split: str = "heldout",
    seed: int = 0,
    tasks: tuple[str, ...] = TASKS,
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
    """Run every task on ``num`` world clips of ``split`` and score them. Returns (metrics, sample clips)."""
    from tqdm import tqdm

    from videopoet.data.synthetic import render_clip

    if num < 2:
        raise UserError("--num must be at least 2 (Fréchet distances need two clips per side)")
    tasks = scored_aliases(tasks)
    rng = np.random.default_rng(seed)
    t2v_results, t2v_attrs, gen_feats, real_feats = [], [], [], []
    temporal, i2v_psnr, i2v_results, i2v_attrs = [], [], [], []
    inside, outside, outpaint_inside, outpaint_outside = [], [], [], []
    motion_follow, style_results, style_attrs = [], [], []
    sync, a2v_agree, gen_audio_feats, real_audio_feats = [], [], [], []
    samples: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    for i in tqdm(range(num), desc="eval generation", disable=not progress):
        clip = render_clip(seed + i, split=split)
        if "t2v" in tasks or "v2a" in tasks:  # real references on disjoint seeds, for Fréchet distances
            real = render_clip(seed + i + REAL_SEED_OFFSET, split=split)
            if "t2v" in tasks:
                real_feats.append(judge_clip(real.frames, None, real.sample_rate, real.fps).features)
            if "v2a" in tasks:
                real_audio_feats.append(audio_features(real.audio, real.sample_rate))
        attrs = clip.attributes
        h, w = clip.frames.shape[1:3]
        if "t2v" in tasks:
            out = generate_fn("t2v", clip.caption, {"clip": clip})
            res = judge_clip(out.frames, out.audio, out.sample_rate, out.fps)
            t2v_results.append(res)
            t2v_attrs.append({k: v for k, v in attrs.items() if k != "events"})
            gen_feats.append(res.features)
            temporal.append(temporal_consistency(out.frames, res))
            samples["t2v"].append(out.frames)
        if "i2v" in tasks:
            out = generate_fn("i2v", clip.caption, {"clip": clip, "image": clip.frames[0]})
            i2v_psnr.append(first_frame_psnr(out.frames, clip.frames[0]))
            i2v_results.append(judge_clip(out.frames, None, out.sample_rate, out.fps))
            i2v_attrs.append({k: v for k, v in attrs.items() if k != "events"})
            samples["i2v"].append(out.frames)
        mask = central_mask(h, w)
        if "inpaint" in tasks:
            masked = clip.frames.copy()
            masked[:, mask] = 0
            out = generate_fn("inpaint", clip.caption, {"clip": clip, "video": masked, "mask": mask})
            fid = masked_fidelity(out.frames, clip.frames, mask)
            inside.append(fid.inside_psnr)
            outside.append(fid.outside_psnr)
            samples["inpaint"].append(out.frames)
        if "outpaint" in tasks:
            kept = clip.frames.copy()
            kept[:, ~mask] = 0
            out = generate_fn("outpaint", clip.caption, {"clip": clip, "video": kept, "mask": ~mask})
            fid = masked_fidelity(out.frames, clip.frames, mask)
            outpaint_inside.append(fid.inside_psnr)
            outpaint_outside.append(fid.outside_psnr)
            samples["outpaint"].append(out.frames)
        if "stylize" in tasks:
            target = stylized_attributes(attrs, rng)
            out = generate_fn("stylize", caption_for(target), {"clip": clip, "video": clip.frames})
            res = judge_clip(out.frames, None, out.sample_rate, out.fps)
            src = judge_clip(clip.frames, None, clip.sample_rate, clip.fps)
            motion_follow.append(track_agreement(res, src, min(h, w)))
            style_results.append(res)
            style_attrs.append(target)
            samples["stylize"].append(out.frames)
        if "v2a" in tasks:
            out = generate_fn("v2a", "", {"clip": clip, "video": clip.frames})
            if out.audio is not None:
                bounce_frames = sorted({int(e["frame"]) for e in attrs["events"]})
                value = event_sync(out.audio, out.sample_rate, clip.fps, bounce_frames)
                if math.isfinite(value):
                    sync.append(value)
                gen_audio_feats.append(audio_features(out.audio, out.sample_rate))
        if "a2v" in tasks:
            out = generate_fn("a2v", "", {"clip": clip, "audio": clip.audio})
            res = judge_clip(out.frames, None, out.sample_rate, out.fps)
            a2v_agree.append(audio_video_agreement(res, clip.audio, clip.sample_rate, clip.fps))
            samples["a2v"].append(out.frames)

    def mean(xs):  # NaN (undefined) entries are skipped; +inf (a perfect PSNR) is kept
        xs = [x for x in xs if x is not None and not math.isnan(x)]
        return float(np.mean(xs)) if xs else float("nan")

    metrics: dict[str, Any] = {"num": num, "split": split, "seed": seed}
    if t2v_results:
        metrics["t2v"] = {
            "prompt_following": judge_accuracy([None] * len(t2v_results), t2v_attrs, results=t2v_results),
            "judge_frechet": frechet_distance(np.stack(gen_feats), np.stack(real_feats)),
            "temporal": {
                "frame_psnr": mean([t.frame_psnr for t in temporal]),
                "flicker": mean([t.flicker for t in temporal]),
                "persistence": mean([t.persistence for t in temporal]),
            },
        }
    if i2v_psnr:
        metrics["i2v"] = {
            "first_frame_psnr": mean(i2v_psnr),
            "prompt_following": judge_accuracy([None] * len(i2v_results), i2v_attrs, results=i2v_results),
        }
    if inside:
        metrics["inpaint"] = {"inside_psnr": mean(inside), "outside_psnr": mean(outside)}
    if outpaint_inside:
        metrics["outpaint"] = {"inside_psnr": mean(outpaint_inside), "outside_psnr": mean(outpaint_outside)}
    if style_results:
        metrics["stylize"] = {
            "motion_following": mean(motion_follow),
            "text_following": judge_accuracy([None] * len(style_results), style_attrs, results=style_results),
        }
    if "v2a" in tasks:
        metrics["v2a"] = {
            "event_sync": mean(sync),
            "clips_with_bounces": len(sync),
            "audio_frechet": frechet_distance(np.stack(gen_audio_feats), np.stack(real_audio_feats))
            if len(gen_audio_feats) >= 2
            else float("nan"),
        }
    if a2v_agree:
        metrics["a2v"] = {"audio_video_agreement": mean(a2v_agree)}
    return metrics, samples


# ================================================================ command line
def main(args) -> int:
    from videopoet.eval.report import bar_chart, check_report, sample_grid, write_report
    from videopoet.outputs import check_output

    out_dir = check_output(Path(args.out), kind="dir")
    pictures = [out_dir / f"{t}_samples.gif" for t in TASKS] + [
        out_dir / "t2v_attributes.png",
        out_dir / "stylize.png",
    ]
    check_report(out_dir / "generation", pictures, overwrite=getattr(args, "overwrite", False))
    if args.real:
        generate_fn, source = real_generate_fn, "real (world renderings: the ceiling)"
    else:
        generate_fn, source = model_generate_fn(args.model, seed=args.seed), f"model {args.model}"
    t0 = time.time()
    metrics, samples = evaluate(generate_fn, num=args.num, split=args.split, seed=args.seed)
    metrics["source"] = source
    metrics["seconds"] = round(time.time() - t0, 1)
    images = []
    shown = {t: clips[:8] for t, clips in samples.items() if clips}
    for task, clips in shown.items():
        images.append((f"{task} samples", sample_grid(out_dir / f"{task}_samples.gif", clips, scale=1)))
    if "t2v" in metrics:
        acc = {k: v for k, v in metrics["t2v"]["prompt_following"].items() if k != "num_clips"}
        chart = bar_chart(out_dir / "t2v_attributes.png", {"t2v": acc}, title="t2v: judge agreement")
        images.insert(0, ("t2v prompt following per attribute", chart))
    if "stylize" in metrics:
        acc = {k: v for k, v in metrics["stylize"]["text_following"].items() if k != "num_clips"}
        acc["motion"] = metrics["stylize"]["motion_following"]
        images.append(
            ("stylization", bar_chart(out_dir / "stylize.png", {"stylize": acc}, title="stylization"))
        )
    notes = [
        f"Source: {source}; {args.num} clips of split `{args.split}` from seed {args.seed}.",
        "Judge Fréchet distances compare judge features of the outputs with real clips of disjoint seeds; "
        f"with fewer clips than feature dimensions ({FEATURE_DIM}) they are biased upwards: compare equal N.",
    ]
    json_path, md_path = write_report(
        out_dir / "generation", "Generation evaluation", metrics, images=images, notes=notes
    )
    print(f"wrote {json_path} and {md_path}")
    return 0
