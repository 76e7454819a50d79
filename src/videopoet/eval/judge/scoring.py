"""Agreement between judged clips and attribute sets (world ground truth or a parsed caption)."""

from __future__ import annotations

from typing import Any

import numpy as np

from videopoet.eval.judge.clip import judge_clip
from videopoet.eval.judge.results import JudgeResult

ATTRIBUTES = ("color", "shape", "size", "motion", "background", "camera", "events")


def _gt_objects(attributes: dict[str, Any]) -> list[dict[str, str]]:
    return list(attributes.get("objects", []))


def score_against(result: JudgeResult, attributes: dict[str, Any]) -> dict[str, float]:
    """Per-attribute agreement in [0, 1] between a judged clip and an attribute set.

    Objects are matched by colour (objects in a clip differ in colour). ``color`` is the Jaccard index of
    the colour sets (hallucinated or missing objects both cost); ``shape``/``size``/``motion`` are the
    fraction of attribute-set objects whose matched prediction agrees (a missing object counts wrong).
    Only keys present in ``attributes`` are scored (a parsed caption may name no size or camera);
    ``events`` (every bounce frame heard within ±1 and every click near a bounce: ``event_f1`` = 1) only
    when the result has audio events.
    """
    scores: dict[str, float] = {}
    gt = _gt_objects(attributes)
    pred = {o.color: o for o in result.objects}
    if gt:
        gt_colors = {o["color"] for o in gt if "color" in o}
        if gt_colors:
            scores["color"] = len(gt_colors & set(pred)) / len(gt_colors | set(pred))
        for key in ("shape", "size", "motion"):
            named = [o for o in gt if key in o]
            if named:
                hits = [o.get("color") in pred and getattr(pred[o["color"]], key) == o[key] for o in named]
                scores[key] = float(np.mean(hits))
    bg = attributes.get("background")
    if isinstance(bg, dict):
        bg = bg.get("kind")
    if bg is not None:
        scores["background"] = float(result.background == bg)
    if attributes.get("camera") is not None:
        scores["camera"] = float(result.camera == attributes["camera"])
    if result.events is not None and "events" in attributes:
        gt_frames = sorted({int(e["frame"]) if isinstance(e, dict) else int(e) for e in attributes["events"]})
        scores["events"] = float(event_f1(result.events, gt_frames) >= 0.999)
    return scores


def event_f1(pred: list[int], gt: list[int], tolerance: int = 1) -> float:
    """F1 of event frames: precision = predicted frames with a true one within ``tolerance``, recall = true
    frames with a predicted one within it (not one-to-one: clicks closer than CLICK_MIN_GAP_S — two walls
    hit at once — are one sound, yet may round to neighbouring frames)."""
    pred, gt = sorted(set(pred)), sorted(set(gt))
    if not pred and not gt:
        return 1.0
    if not pred or not gt:
        return 0.0
    precision = np.mean([any(abs(p - g) <= tolerance for g in gt) for p in pred])
    recall = np.mean([any(abs(p - g) <= tolerance for p in pred) for g in gt])
    return float(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))


def all_correct(scores: dict[str, float]) -> bool:
    return all(v >= 0.999 for v in scores.values())


def judge_accuracy(
    clips_frames,
    attributes,
    *,
    audios=None,
    sample_rate: int = 16000,
    fps: float = 8,
    results: list[JudgeResult] | None = None,
) -> dict[str, float]:
    """Mean per-attribute agreement and all-correct rate of the judge over clips and their attributes.

    ``clips_frames``: sequence of uint8 (T, H, W, 3) arrays (ground truth, reconstructions or
    generations); ``attributes``: the matching attribute dicts; ``audios`` (optional) enables ``events``.
    """
    per: dict[str, list[float]] = {}
    every = []
    for i, (frames, attrs) in enumerate(zip(clips_frames, attributes, strict=True)):
        if results is not None:
            res = results[i]
        else:
            audio = audios[i] if audios is not None else None
            res = judge_clip(frames, audio, sample_rate=sample_rate, fps=fps)
        sc = score_against(res, attrs)
        for key, v in sc.items():
            per.setdefault(key, []).append(v)
        every.append(all_correct(sc))
    out = {key: float(np.mean(per[key])) for key in ATTRIBUTES if key in per}
    out["all_correct"] = float(np.mean(every)) if every else float("nan")
    out["num_clips"] = len(every)
    return out


def chance_agreement(attribute_sets: list[dict[str, Any]]) -> dict[str, float]:
    """Agreement expected from guessing by the marginal frequencies: Σ_v p(v)² per attribute."""
    counts: dict[str, dict[str, int]] = {}
    for attrs in attribute_sets:
        for o in _gt_objects(attrs):
            for key in ("color", "shape", "size", "motion"):
                counts.setdefault(key, {}).setdefault(o[key], 0)
                counts[key][o[key]] += 1
        bg = attrs.get("background")
        bg = bg.get("kind") if isinstance(bg, dict) else bg
        counts.setdefault("background", {}).setdefault(bg, 0)
        counts["background"][bg] += 1
        counts.setdefault("camera", {}).setdefault(attrs.get("camera"), 0)
        counts["camera"][attrs.get("camera")] += 1
    out = {}
    for key, c in counts.items():
        p = np.asarray(list(c.values()), np.float64)
        p /= p.sum()
        out[key] = float((p**2).sum())
    return out
