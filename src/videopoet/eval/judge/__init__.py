"""The world judge: recover what the synthetic world put in a clip from its pixels and sound alone.

Analytic, so it cannot be fooled by caption priors and needs no training (the optional shape reader,
``eval/shape_net.py``, is the one learned part). One module per concept:

- ``objects``: every pixel is matched to the nearest palette colour (allowing the renderer's ±15%
  shading); a colour that covers a solid blob (present after a 3×3 erosion) in most frames is an object;
- ``shapes``: rotation-invariant complex moments of the object mask, |Σ (z − z̄)^m| normalised
  (m = 2…6), plus compactness; each world shape has its own symmetry order (diamond 2, triangle 3,
  square and cross 4, star 5, circle none), and these are classified by a small decision list
  (``classify_shape``); size is the radius implied by the mask area and the shape's area-to-radius²
  ratio, taken at the middle frame of a robust log-area line fit and divided by the camera zoom there;
- ``measure``: per object, the frames to trust (occlusion), the shape (moments or the shape reader), the
  rotation (phase of the symmetry-order moment) and how far the screen track turns back;
- ``camera``: consecutive-frame photometric fits of a pan (x or y) or zoom on the background (objects
  masked out), the family with the lowest residual wins when it moves far enough;
- ``motion``: rotation, growth from the log-radius slope (camera zoom removed), bouncing from a reversal
  of the screen trajectory, moving/static from the world-space displacement (camera motion removed);
- ``background``: smoothed background-luminance statistics (flat → solid, a plane → gradient, one
  dominant gradient orientation → stripes, else noise);
- ``events``: onsets of energy above the voices' band (every voice partial stays below 0.38·rate;
  bounce clicks are broadband) in the audio;
- ``clip``: ``judge_clip`` runs them all and returns a ``JudgeResult`` (``results``) including a
  fixed-length feature vector (``features``, ``FEATURE_DIM``) for Fréchet distances;
- ``scoring``: ``score_against`` compares a result with a clip's attributes (world ground truth, or a
  partial set such as a caption read by ``captions.parse_caption``); ``judge_accuracy`` aggregates over
  many clips;
- ``degrade``: a hand-drawn clip and a tokenizer-like degradation for robustness checks;
- ``arrays``: the numpy helpers they share.
"""

from videopoet.data.world import BACKGROUNDS, CAMERAS, MOTIONS
from videopoet.eval.judge.captions import parse_caption
from videopoet.eval.judge.clip import judge_clip
from videopoet.eval.judge.degrade import draw_moving_shape, simulate_reconstruction
from videopoet.eval.judge.events import audio_events
from videopoet.eval.judge.features import FEATURE_DIM
from videopoet.eval.judge.objects import (
    COLOR_NAMES,
    FoundObjects,
    find_objects,
    membership,
    object_crops_of,
    palette_labels,
)
from videopoet.eval.judge.results import JudgedObject, JudgeResult
from videopoet.eval.judge.scoring import (
    ATTRIBUTES,
    all_correct,
    chance_agreement,
    event_f1,
    judge_accuracy,
    score_against,
)

__all__ = [
    "ATTRIBUTES",
    "BACKGROUNDS",
    "CAMERAS",
    "COLOR_NAMES",
    "FEATURE_DIM",
    "MOTIONS",
    "FoundObjects",
    "JudgeResult",
    "JudgedObject",
    "all_correct",
    "audio_events",
    "chance_agreement",
    "draw_moving_shape",
    "event_f1",
    "find_objects",
    "judge_accuracy",
    "judge_clip",
    "membership",
    "object_crops_of",
    "palette_labels",
    "parse_caption",
    "score_against",
    "simulate_reconstruction",
]
