"""Captions → attributes: what a world-style caption names, for ``score_against``."""

from __future__ import annotations

import re
from typing import Any

from videopoet.data.world import BACKGROUND_PHRASES, CAMERA_PHRASES, MOTION_PHRASES, SHAPES, SIZES
from videopoet.eval.judge.objects import COLOR_NAMES


def parse_caption(caption: str) -> dict[str, Any]:
    """Attributes named by a world-style caption (objects with the words they use, background, camera).

    Recognises the world's vocabulary and paraphrases (data/world.py); unnamed attributes are absent,
    so ``score_against`` only checks what the caption says.
    """
    text = " " + re.sub(r"[^a-z ]+", " ", caption.lower()) + " "
    text = re.sub(r" +", " ", text)
    motion_phrases = sorted(
        ((p, m) for m, ps in MOTION_PHRASES.items() for p in ps), key=lambda x: -len(x[0])
    )
    color_re = "|".join(COLOR_NAMES)
    objects = []
    pattern = rf" (?:(?P<size>{'|'.join(SIZES)}) )?(?P<color>{color_re}) (?P<shape>{'|'.join(SHAPES)})"
    for match in re.finditer(pattern, text):
        obj = {"color": match["color"], "shape": match["shape"]}
        if match["size"]:
            obj["size"] = match["size"]
        rest = text[match.end() :]
        for phrase, motion in motion_phrases:
            if rest.startswith(" " + phrase + " "):
                obj["motion"] = motion
                break
        objects.append(obj)
    out: dict[str, Any] = {"objects": objects}
    for kind, phrases in BACKGROUND_PHRASES.items():
        if any(f" {p} background" in text or f" {p} backdrop" in text for p in phrases):
            out["background"] = kind
    for cam in sorted(CAMERA_PHRASES, key=lambda c: c == "static"):
        if any(p and f" {p} " in text for p in CAMERA_PHRASES[cam]):
            out["camera"] = cam
            break
    if "still shot" in text:
        out["camera"] = "static"
    return out
