"""The vocabulary of the synthetic audio-visual world: what can appear in a clip.

Shared by the renderer (``data/synthetic.py``), the judge (``eval/judge/``) and captioning. Object
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

# Background colours: dark and mid tones, all desaturated and darker than every object colour (max channel
# <= 112, objects have a channel >= 200), so object pixels separate from the background by colour alone.
# Two-colour backgrounds (gradient, stripes, noise) blend one dark tone with one mid tone (contrast ~60
# levels: visible texture, soft enough for a small tokenizer); solid backgrounds use any one tone.
BACKGROUND_DARK: dict[str, tuple[int, int, int]] = {
    "charcoal": (30, 30, 34),
    "navy": (24, 30, 62),
    "forest": (24, 52, 36),
    "maroon": (58, 26, 30),
}
BACKGROUND_MID: dict[str, tuple[int, int, int]] = {
    "slate": (86, 94, 110),
    "sand": (112, 100, 78),
    "sage": (84, 104, 86),
    "mauve": (104, 84, 104),
}

CAMERAS: tuple[str, ...] = ("static", "pan left", "pan right", "pan up", "pan down", "zoom in", "zoom out")

# Caption vocabulary: every attribute value has paraphrases; a caption uses one phrase per attribute.
# Sizes, colours and shapes are always named by their own word. An empty camera phrase = not mentioned.
MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "moving left": ("moving left", "sliding to the left", "drifting left"),
    "moving right": ("moving right", "sliding to the right", "drifting right"),
    "moving up": ("moving up", "rising", "drifting upward"),
    "moving down": ("moving down", "sinking", "drifting downward"),
    "bouncing": ("bouncing", "bouncing off the walls", "bouncing around"),
    "rotating": ("rotating", "spinning", "turning in place"),
    "growing": ("growing", "getting bigger", "expanding"),
    "shrinking": ("shrinking", "getting smaller", "contracting"),
    "static": ("static", "standing still", "not moving"),
}
BACKGROUND_PHRASES: dict[str, tuple[str, ...]] = {
    "solid": ("plain", "solid", "uniform"),
    "gradient": ("gradient", "smoothly shaded", "softly graded"),
    "stripes": ("striped", "diagonally striped", "stripy"),
    "noise": ("mottled", "noisy textured", "cloudy"),
}
CAMERA_PHRASES: dict[str, tuple[str, ...]] = {
    "static": ("", "static camera", "the camera is still"),
    "pan left": ("camera pans left", "the camera pans left", "panning left"),
    "pan right": ("camera pans right", "the camera pans right", "panning right"),
    "pan up": ("camera pans up", "the camera pans up", "panning up"),
    "pan down": ("camera pans down", "the camera pans down", "panning down"),
    "zoom in": ("camera zooms in", "the camera zooms in", "zooming in"),
    "zoom out": ("camera zooms out", "the camera zooms out", "zooming out"),
}

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


# Compositions that never occur in either split: a rotating circle looks exactly like a static one (the
# renderer's shading rotates with the object, but too faintly to name the motion), so captions would lie.
EXCLUDED_COMPOSITIONS: tuple[dict[str, str], ...] = ({"shape": "circle", "motion": "rotating"},)


def is_excluded_object(obj: dict[str, str]) -> bool:
    """True when the object matches a composition the world never renders (see EXCLUDED_COMPOSITIONS)."""
    return any(all(obj.get(k) == v for k, v in combo.items()) for combo in EXCLUDED_COMPOSITIONS)


def is_heldout_object(obj: dict[str, str]) -> bool:
    """True when the object (with shape/color/motion keys) matches any held-out composition."""
    return any(all(obj.get(k) == v for k, v in combo.items()) for combo in HELDOUT_COMPOSITIONS)
