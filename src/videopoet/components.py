"""One on-disk format for every model component, and the one way to save and load it.

A component directory holds two files and nothing is pickled::

    config.json        {"model_type": "videopoet-video-tokenizer", "config": {...dataclass fields...}}
                       (JSON, keys sorted, indented: a diff shows what changed between two exports)
    model.safetensors  the state dict; floating tensors optionally cast (e.g. float16 to ship), cpu

A component class (``VideoTokenizer``, ``AudioTokenizer``, ``ShapeNet``, …) declares:

- ``MODEL_TYPE``: the string in config.json, so that a directory of one kind is never loaded as another;
- ``CONFIG``: its keyword-only config dataclass, built with ``config.from_dict`` (unknown keys are errors);
- ``BUNDLED`` (optional): the folder under ``videopoet/pretrained/`` holding its shipped weights, used
  when ``load_component`` is given no directory;
- ``DESCRIPTION`` (optional): how error messages name it ("a video tokenizer");
- ``UNSAVED_TENSORS`` (optional): glob patterns of state-dict names that are training state (e.g. RVQ
  EMA statistics): left out of the file and not required when loading;
- ``_after_load()`` (optional): called once the weights are in, e.g. to rebuild that training state.

Saving is atomic: both files are written into a temporary sibling directory, which then replaces the
target, so an interrupted export (crash, full disk, Ctrl-C) leaves the previous component as it was.

Older layouts still load (the bundled weights are never rewritten: every version stays in git history):
``_normalise_layout`` turns a *flat* config.json — ``{"model_type": ..., <fields>...}``, written by the
audio tokenizer and the judge's shape reader before this module existed — into the nested form. Fields
added to a config since a file was written take their dataclass defaults.

int8 weight-only storage (``save_component(..., int8=True)``) is how the larger components (the LM,
super-resolution) fit the package's git budget: every floating *parameter* with 2 or more dimensions and
at least ``INT8_MIN_ELEMENTS`` elements (the linear, convolution and embedding matrices: nearly all the
bytes) is stored as int8 plus one float32 scale per output channel (axis 0; symmetric, no zero point:
``scale = max|w_row| / 127``, ``q = round(w / scale)``), as ``<name>`` (int8) and ``<name>.int8_scale``
in the same model.safetensors; biases, norms, small tensors and every buffer (codebooks, statistics,
integer state) are stored as without it. config.json then carries ``"storage": "int8-weight-only"``
and ``load_component`` dequantizes (``w = q · scale``) before the weights go in, so the model computes in
floating point as ever: only the stored values are rounded (≤ scale / 2 per weight), which makes the
file about 4× smaller than float32 (2× than float16). That rounding costs each model a different amount
of quality, so it is measured per component (its own metric, int8 against float) before a component is
bundled this way, and docs/pretrained.md records the measurement; ``quantize_int8`` / ``dequantize_int8``
are the two pure functions doing it.

Every problem with a directory is a one-line ``UserError`` naming the file at fault.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from videopoet.config import ConfigError, from_dict, to_dict
from videopoet.errors import UserError
from videopoet.outputs import replace_folder

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PRETRAINED_ROOT = Path(__file__).resolve().parent / "pretrained"

INT8_STORAGE = "int8-weight-only"  # config.json's "storage" value for int8 weight-only files
INT8_SCALE_SUFFIX = ".int8_scale"
INT8_MIN_ELEMENTS = 4096  # smaller weights stay floating: their scales would save little and cost most

M = TypeVar("M", bound=nn.Module)


# ================================================================================================ int8
def quantize_int8(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A floating tensor (C, ...) → (int8 q of its shape, float32 scale (C,)): symmetric, per output
    channel (axis 0), ``scale = max|t[c]| / 127`` and ``q = round(t / scale)``, so that
    ``|t − q · scale| ≤ scale / 2`` elementwise; an all-zero channel has scale 0 and q 0."""
    if not t.is_floating_point() or t.dim() < 1:
        raise ValueError(f"quantize_int8 needs a floating tensor with a channel axis, got {t.dtype}")
    w = t.detach().float()
    if not torch.isfinite(w).all():
        raise ValueError("quantize_int8: the tensor holds inf or NaN")
    scale = w.abs().reshape(w.shape[0], -1).amax(dim=1) / 127  # (C,)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale)).view(-1, *[1] * (w.dim() - 1))
    q = torch.round(w / safe).clamp_(-127, 127).to(torch.int8)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``q.float() · scale`` broadcast over axis 0, in ``dtype``: the inverse of ``quantize_int8``."""
    if q.dtype != torch.int8 or scale.dim() != 1 or q.dim() < 1 or scale.shape[0] != q.shape[0]:
        raise ValueError(
            f"dequantize_int8 needs int8 q (C, ...) and scale (C,), got {q.dtype} {tuple(q.shape)} and "
            f"{tuple(scale.shape)}"
        )
    return (q.float() * scale.float().view(-1, *[1] * (q.dim() - 1))).to(dtype)


# ================================================================================================ save
def save_component(
    model: nn.Module, directory: str | Path, *, dtype: torch.dtype | None = None, int8: bool = False
) -> Path:
    """Write ``model`` as ``directory/{config.json, model.safetensors}``, atomically; returns ``directory``.

    ``dtype`` casts the floating tensors stored as floats; ``int8`` stores the large weight matrices as
    int8 + per-channel scales (see the module docstring: measure the quality it costs first).

    An existing component directory is replaced as a whole (files other than the two are not kept) only
    once the new one is complete; a non-empty directory that is not a component is refused rather than
    deleted.
    """
    directory = Path(directory)
    target = Path(os.path.abspath(directory))  # a name to put siblings beside, even for "." or "out/"
    meta = {"model_type": type(model).MODEL_TYPE, "config": to_dict(model.config)}
    tensors = _tensors_to_save(model, dtype, int8)
    if int8:
        meta["storage"] = INT8_STORAGE
    _refuse_foreign_directory(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir()
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        for name in (CONFIG_FILE, WEIGHTS_FILE):  # on disk before the rename makes them visible
            _fsync(tmp / name)
        replace_folder(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already unless something failed
    return directory


def _tensors_to_save(
    model: nn.Module, dtype: torch.dtype | None, int8: bool = False
) -> dict[str, torch.Tensor]:
    """The state dict minus the class's training-only tensors, on cpu, contiguous, floats cast to dtype;
    with ``int8`` the large weight matrices as int8 + ``.int8_scale`` instead."""
    unsaved = getattr(type(model), "UNSAVED_TENSORS", ())
    parameters = {name for name, _ in model.named_parameters()}  # buffers (codebooks, statistics) stay
    tensors = {}
    for name, value in model.state_dict().items():
        if _matches(name, unsaved):
            continue
        value = value.detach().to("cpu")
        if int8 and name in parameters and _int8_eligible(value):
            try:
                q, scale = quantize_int8(value)
            except ValueError as e:
                raise UserError(f"cannot store {name} as int8: {e}") from None
            tensors[name], tensors[name + INT8_SCALE_SUFFIX] = q.contiguous(), scale.contiguous()
            continue
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[name] = value.contiguous()
    return tensors


def _int8_eligible(value: torch.Tensor) -> bool:
    return value.is_floating_point() and value.dim() >= 2 and value.numel() >= INT8_MIN_ELEMENTS


def _refuse_foreign_directory(directory: Path) -> None:
    """Replacing a directory deletes it: only ever do that to a component (or an empty directory)."""
    if not directory.exists():
        return
    if not directory.is_dir():
        raise UserError(f"{directory} exists and is not a directory; choose another place to save to")
    entries = sorted(p.name for p in directory.iterdir())
    if entries and not {CONFIG_FILE, WEIGHTS_FILE} & set(entries):
        raise UserError(
            f"{directory} holds {len(entries)} file(s) (e.g. {entries[0]}) but is not a component "
            "directory; saving would delete them: choose an empty or new directory"
        )


def _fsync(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())


# ================================================================================================ load
def load_component(
    cls: type[M],
    directory: str | Path | None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> M:
    """Build ``cls(CONFIG(**config))`` from a component directory (None: the class's bundled weights)
    and load its weights, strictly except for the class's ``UNSAVED_TENSORS`` (a class with an
    ``upgrade_state(state) -> state`` first maps its older tensor layouts to today's). Floating weights
    end up float32 unless ``dtype`` is given; the model is returned in eval mode on ``device``."""
    directory = bundled_directory(cls) if directory is None else Path(directory)
    what = _description(cls)
    model_type, fields, storage = _read_config(directory, what)
    cfg_path = directory / CONFIG_FILE
    if model_type is None:
        raise UserError(f"{cfg_path} has no model_type; {what} has model_type {cls.MODEL_TYPE!r}")
    if model_type != cls.MODEL_TYPE:
        raise UserError(f"{cfg_path}: model_type is {model_type!r}, not {what} ({cls.MODEL_TYPE!r})")
    weights = _existing_file(directory / WEIGHTS_FILE, what)
    model = _build(cls, fields, cfg_path)
    _load_weights(model, weights, what, storage)
    after_load = getattr(model, "_after_load", None)
    if after_load is not None:
        after_load()
    return model.to(device=device, dtype=dtype or torch.float32).eval()


def read_component_config(directory: str | Path) -> tuple[str, dict[str, Any]]:
    """(model_type, config dict) of a component directory, old layouts normalised; for callers that
    pick the class to load from the model type. The dict is not yet checked against any dataclass."""
    directory = Path(directory)
    model_type, fields, _ = _read_config(directory, "a component")
    if model_type is None:
        raise UserError(f"{directory / CONFIG_FILE} has no model_type: it was not written by save_pretrained")
    return model_type, fields


def bundled_directory(cls: type) -> Path:
    """Where the weights shipped with the package for ``cls`` live (``pretrained/<cls.BUNDLED>``)."""
    name = getattr(cls, "BUNDLED", None)
    if name is None:
        raise UserError(f"{_description(cls)} has no bundled weights; pass a directory written by save")
    directory = PRETRAINED_ROOT / name
    if not (directory / WEIGHTS_FILE).is_file():
        raise UserError(
            f"{directory / WEIGHTS_FILE} not found: the bundled weights of {_description(cls)} are not part "
            "of this install; pass a directory written by save_pretrained (e.g. a training run's final/)"
        )
    return directory


def weights_sha256(cls: type, directory: str | Path | None = None) -> str:
    """SHA-256 of a component folder's weights file (None: the bundled one's): what identifies the
    weights across machines, where paths differ."""
    directory = Path(directory) if directory else bundled_directory(cls)
    with open(directory / WEIGHTS_FILE, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _read_config(directory: Path, what: str) -> tuple[str | None, dict[str, Any], str | None]:
    """Check the directory and config.json, parse it and normalise its layout."""
    if not directory.is_dir():
        state = "is not a directory" if directory.exists() else "not found"
        raise UserError(f"{directory} {state}: {what} directory needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    cfg_path = _existing_file(directory / CONFIG_FILE, what)
    try:
        meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{cfg_path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    except (UnicodeDecodeError, OSError) as e:
        raise UserError(f"{cfg_path} cannot be read as JSON text ({type(e).__name__})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{cfg_path} must hold a JSON object, got a {type(meta).__name__}")
    return _normalise_layout(meta, cfg_path)


def _normalise_layout(meta: dict[str, Any], cfg_path: Path) -> tuple[str | None, dict[str, Any], str | None]:
    """Every config.json layout ever written → (model_type, config fields, storage).

    - nested (the format): ``{"model_type": T, "config": {...}}``, optionally with
      ``"storage": "int8-weight-only"`` (None: every tensor stored as it is used);
    - flat (audio tokenizer and shape reader before this module): ``{"model_type": T, <fields>...}``.
    No component config has a field called ``config``, so its presence tells the two apart.
    """
    meta = dict(meta)
    model_type = meta.pop("model_type", None)
    if model_type is not None and not isinstance(model_type, str):
        raise UserError(f"{cfg_path}: model_type must be a string, got {model_type!r}")
    if "config" not in meta:
        return model_type, meta, None
    fields, storage = meta.pop("config"), meta.pop("storage", None)
    extra = sorted(meta)
    if not isinstance(fields, dict):
        raise UserError(f'{cfg_path}: "config" must be a JSON object, got a {type(fields).__name__}')
    if extra:
        raise UserError(f"{cfg_path}: unknown top-level key(s) {extra} next to model_type and config")
    if storage is not None and storage != INT8_STORAGE:
        raise UserError(f"{cfg_path}: unknown storage {storage!r}; this version reads {INT8_STORAGE!r}")
    return model_type, dict(fields), storage


def _build(cls: type[M], fields: dict[str, Any], cfg_path: Path) -> M:
    """``cls(CONFIG(**fields))``; every way the fields can be wrong (unknown key, wrong type: ConfigError
    from ``from_dict``; a value the config or the model refuses) becomes one UserError naming the file."""
    try:
        return cls(from_dict(cls.CONFIG, fields, where="config"))
    except (ConfigError, TypeError, ValueError) as e:
        message = " ".join(str(e).split())  # one line, whatever the dataclass's check wrote
        raise UserError(f"{cfg_path}: {message}") from None


def _load_weights(model: nn.Module, weights: Path, what: str, storage: str | None = None) -> None:
    """Read the safetensors file (dequantizing int8 storage) and copy it into ``model`` after checking
    every name and shape."""
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise UserError(f"{weights} is not a readable safetensors file ({reason})") from None
    expected = model.state_dict()
    state = _dequantized(state, expected, weights, storage)
    state = upgraded_state(model, state)
    optional = getattr(type(model), "UNSAVED_TENSORS", ())
    missing = [k for k in expected if k not in state and not _matches(k, optional)]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        problems = [f"{len(missing)} missing (e.g. {missing[0]})"] if missing else []
        problems += [f"{len(unexpected)} unexpected (e.g. {unexpected[0]})"] if unexpected else []
        if wrong:
            k = wrong[0]
            problems.append(
                f"{len(wrong)} of the wrong shape (e.g. {k}: {tuple(state[k].shape)} in the file, "
                f"{tuple(expected[k].shape)} in the model)"
            )
        raise UserError(
            f"{weights} does not fit {what} as config.json describes it: tensors {', '.join(problems)}"
        )
    model.load_state_dict(state, strict=False)


def upgraded_state(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` (tensors keyed by parameter name) in today's layout of ``model``'s class: its
    ``upgrade_state`` maps older layouts (weights files and training checkpoints alike); unchanged for a
    class without one."""
    upgrade = getattr(type(model), "upgrade_state", None)
    return state if upgrade is None else upgrade(state)


def _dequantized(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], weights: Path, storage: str | None
) -> dict[str, torch.Tensor]:
    """Every ``<name>`` + ``<name>.int8_scale`` pair → the float32 ``<name>``; a scale without its int8
    tensor, a shape that does not fit, or an int8 tensor where the model holds floats is a UserError."""
    scales = sorted(k for k in state if k.endswith(INT8_SCALE_SUFFIX))
    if scales and storage != INT8_STORAGE:
        raise UserError(
            f"{weights} holds int8 scales (e.g. {scales[0]}) but config.json has no "
            f'"storage": "{INT8_STORAGE}"'
        )
    state = dict(state)
    for key in scales:
        name, scale = key[: -len(INT8_SCALE_SUFFIX)], state.pop(key)
        q = state.get(name)
        if q is None:
            raise UserError(f"{weights}: {key} has no tensor {name} to scale")
        if q.dtype != torch.int8 or scale.dim() != 1 or q.dim() < 1 or scale.shape[0] != q.shape[0]:
            raise UserError(
                f"{weights}: {name} ({q.dtype}, {tuple(q.shape)}) and {key} ({tuple(scale.shape)}) are "
                "not an int8 tensor with one scale per row"
            )
        if not scale.is_floating_point() or not torch.isfinite(scale).all() or (scale < 0).any():
            raise UserError(f"{weights}: {key} must hold finite, non-negative floats")
        state[name] = dequantize_int8(q, scale)
    for name, value in state.items():
        if name in expected and expected[name].is_floating_point() and not value.is_floating_point():
            raise UserError(f"{weights}: {name} is {value.dtype}, with no {name}{INT8_SCALE_SUFFIX}")
    return state


# ================================================================================================ helpers
def _existing_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise UserError(f"{path} not found: {what} directory needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    return path


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _description(cls: type) -> str:
    return getattr(cls, "DESCRIPTION", None) or f"a {cls.__name__}"


class Pretrained:
    """``save_pretrained`` / ``from_pretrained`` for a model class that declares MODEL_TYPE, CONFIG and
    BUNDLED (the one save/load, for classes with no per-class quirks)."""

    def save_pretrained(
        self, directory: str | Path, dtype: torch.dtype | None = None, int8: bool = False
    ) -> Path:
        """``int8``: weight matrices stored int8 with per-row scales."""
        return save_component(self, directory, dtype=dtype, int8=int8)

    @classmethod
    def from_pretrained(cls, directory: str | Path | None = None, *, device="cpu", dtype=None):
        """Load a ``save_pretrained`` directory (None = the bundled weights) in eval mode."""
        return load_component(cls, directory, device=device, dtype=dtype)
