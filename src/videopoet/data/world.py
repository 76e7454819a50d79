"""The vocabulary of the synthetic audio-visual world: what can appear in a clip.

Shared by the renderer (``data/synthetic.py``), the judge (``eval/judge.py``) and captioning. Object
colours are saturated palette colours; background colours are kept darker and desaturated so an object
is always separable from the background by colour.
"""

from __future__ import annotations

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "cross")

# name -> RGB (uint8). Saturated and far apart in RGB, so the colour of any visible object pixel names it.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 80, 235),
    "yellow": (240, 225, 40),
    "purple": (160, 60, 210),
    "orange": (250, 140, 20),
    "white": (245, 245, 245),
    "cyan": (40, 220, 230),
}

# Object radius as a fraction of min(width, height): 128 px canvas -> 10, 16, 24 px.
SIZES: dict[str, float] = {"small": 10 / 128, "medium": 16 / 128, "large": 24 / 128}

MOTIONS: tuple[str, ...] = (
    "moving left",
    "moving right",
    "moving up",
    "moving down",
    "bouncing",
    "rotating",
    "growing",
    "shrinking",
    "static",
)

BACKGROUNDS: tuple[str, ...] = ("solid", "gradient", "stripes", "noise")

CAMERAS: tuple[str, ...] = ("static", "pan left", "pan right", "pan up", "pan down", "zoom in", "zoom out")

# Compositions that never occur in split="train" and make up split="heldout": each entry is a partial
# object description; an object matches when every key/value of the entry equals its attribute.
# Every held-out clip contains at least one matching object; no train clip contains any.
HELDOUT_COMPOSITIONS: tuple[dict[str, str], ...] = (
    {"color": "red", "shape": "star"},
    {"color": "blue", "shape": "triangle"},
    {"color": "yellow", "shape": "circle"},
    {"shape": "square", "motion": "bouncing"},
    {"shape": "diamond", "motion": "rotating"},
    {"color": "green", "motion": "growing"},
)


def is_heldout_object(obj: dict[str, str]) -> bool:
    """True when the object (with shape/color/motion keys) matches any held-out composition."""
    return any(all(obj.get(k) == v for k, v in combo.items()) for combo in HELDOUT_COMPOSITIONS)
