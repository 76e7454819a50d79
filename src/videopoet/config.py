"""Config machinery shared by every component.

Each component keeps its own keyword-only ``@dataclass`` config next to its model (nanoGPT style) with a
``PRESETS`` table of named configs; training configs live next to their training loop. This module only
turns TOML files and ``--set key=value`` overrides into those dataclasses, with clear errors.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from pathlib import Path
from typing import Any, TypeVar

from videopoet.errors import UserError

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit its dataclass."""


def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass (possibly nested) as a plain JSON/TOML-able dict."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: dict[str, Any], *, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys are an error (typos must not pass silently)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown key(s) {unknown}; valid keys are {sorted(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            kwargs[name] = from_dict(hint, value, where=key)
        elif (hint is tuple or typing.get_origin(hint) is tuple) and isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def read_component(directory: str | Path, *, model_type: str, what: str) -> tuple[dict[str, Any], Path]:
    """A ``save_pretrained`` directory → (its config.json as a dict, the path of its model.safetensors);
    a missing file or another model type is a one-line UserError naming ``what`` the directory should be."""
    directory = Path(directory)
    cfg_path, weights = directory / "config.json", directory / "model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise UserError(f"{directory} is not {what}: it needs config.json and model.safetensors")
    meta = json.loads(cfg_path.read_text())
    if meta.get("model_type") != model_type:
        raise UserError(f"{cfg_path} describes {meta.get('model_type')!r}, not {what}")
    return meta, weights


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"a.b=3"`` → (["a", "b"], 3). Values are parsed as TOML, falling back to a bare string."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.lr=3e-4")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Return a copy of nested dict ``data`` with each ``key.path=value`` override set."""
    out = _deepcopy_dict(data)
    for item in overrides or []:
        path, value = parse_override(item)
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a table")
        node[path[-1]] = value
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; pass an existing .toml file to --config")
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """TOML file (optional) + overrides → dataclass ``cls``."""
    data = load_toml(path) if path is not None else {}
    return from_dict(cls, apply_overrides(data, overrides))


def replace(cfg: T, **changes: Any) -> T:
    return dataclasses.replace(cfg, **changes)


def _deepcopy_dict(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deepcopy_dict(v) if isinstance(v, dict) else v for k, v in d.items()}
