"""Standard video/audio metrics with user-supplied weights: FVD (I3D), CLIPSIM (CLIP), Inception Score
(InceptionV3 for images, C3D for UCF-101 videos) and FAD (VGGish).

Networks are pure torch (``i3d.py``, ``clip.py``, ``inception.py``, ``c3d.py``, ``vggish.py``); weights come
from local safetensors files whose key names each file documents (nothing is downloaded); ``protocols.py``
holds the paper's protocols; ``drivers.py`` turns clips into numbers.
"""

from videopoet.eval.standard.c3d import build_c3d
from videopoet.eval.standard.clip import CLIPTokenizer, build_clip
from videopoet.eval.standard.drivers import (
    ClipSimilarity,
    c3d_inception_score,
    clip_similarity,
    fad,
    fvd,
    i3d_features,
    image_inception_score,
    vggish_embeddings,
)
from videopoet.eval.standard.i3d import build_i3d
from videopoet.eval.standard.inception import build_inception
from videopoet.eval.standard.protocols import PROTOCOLS
from videopoet.eval.standard.vggish import build_vggish

__all__ = [
    "PROTOCOLS",
    "CLIPTokenizer",
    "ClipSimilarity",
    "build_c3d",
    "build_clip",
    "build_i3d",
    "build_inception",
    "build_vggish",
    "c3d_inception_score",
    "clip_similarity",
    "fad",
    "fvd",
    "i3d_features",
    "image_inception_score",
    "vggish_embeddings",
]
