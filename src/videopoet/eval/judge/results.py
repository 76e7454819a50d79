"""What the judge returns: one ``JudgedObject`` per object found and the clip's ``JudgeResult``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class JudgedObject:
    color: str
    shape: str
    size: str
    motion: str
    radius: float  # estimated nominal radius at the middle frame, fraction of min(H, W)
    track: list[tuple[float, float]]  # centroid per frame (NaN where not visible), pixels
    details: dict[str, float] = field(default_factory=dict)  # the measurements behind the labels


@dataclass
class JudgeResult:
    objects: list[JudgedObject]  # ordered by palette
    background: str
    camera: str
    events: list[int] | None  # bounce frames heard in the audio; None when no audio was given
    features: np.ndarray  # float32 (FEATURE_DIM,)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["features"] = self.features.tolist()
        return d
