"""Token-space super-resolution: the windowed masked transformer (spec §5); MaskGIT decoding lives in
videopoet.sampling.masked."""

from videopoet.superres.model import PRESETS, SuperResConfig, SuperResTransformer, param_count

__all__ = ["PRESETS", "SuperResConfig", "SuperResTransformer", "param_count"]
