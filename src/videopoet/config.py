"""Config machinery shared by every component.

Each component keeps its own keyword-only ``@dataclass`` config next to its model (nanoGPT style) with a
``PRESETS`` table of named configs; training configs live next to their training loop. This module only
turns TOML files and ``--set key=value`` overrides into those dataclasses, with clear errors.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit its dataclass."""


def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass (possibly nested) as a plain JSON/TOML-able dict."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: dict[str, Any], *, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``: unknown and renamed keys and values of the wrong type are a
    ConfigError naming the key (typos must not pass silently; a value is checked against its annotation)."""
    kwargs = check_dict(cls, data, where=where)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:  # a required field left out, or the config's own checks
        raise ConfigError(f"{where or cls.__name__}: {_one_line(e)}") from None


def check_dict(cls: type, data: Any, *, where: str = "", build: bool = True) -> dict[str, Any]:
    """The keyword arguments ``from_dict`` passes to ``cls``: every key a field of ``cls`` and every value
    checked (and converted: lists → tuples, ints → floats) against the field's annotation. Nested tables
    become nested dataclasses when ``build``, else stay checked dicts (so one override is checked alone,
    without the configs' own cross-field checks seeing a half-made config)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a table, got {_shown(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    renamed = getattr(cls, "RENAMED", {})
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in fields and key in renamed:
            raise ConfigError(_renamed_message(f"{prefix}{key}", prefix, renamed[key]))
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown key(s) {unknown}; valid keys are {sorted(fields)}"
        )
    return {name: _check_value(hints[name], value, f"{prefix}{name}", build) for name, value in data.items()}


def _renamed_message(old: str, prefix: str, new: str) -> str:
    """RENAMED maps an old key to its new dotted key, or to a note: "(why it is gone)" or "what replaced
    it"."""
    if all(part.isidentifier() for part in new.split(".")):
        return f'"{old}" was renamed to "{prefix}{new}"'
    if new.startswith("("):
        return f'"{old}" was removed {new}'
    return f'"{old}" was replaced by {new}'


def _check_value(hint: Any, value: Any, key: str, build: bool = True) -> Any:
    """``value`` as a ``hint``-typed field wants it, or ConfigError naming the key, the type and the value."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, dict):
            return (
                from_dict(hint, value, where=key)
                if build
                else check_dict(hint, value, where=key, build=False)
            )
    elif origin in (typing.Union, types.UnionType):
        for arm in args:
            try:
                return _check_value(arm, value, key, build)
            except ConfigError:
                continue
        if type(None) in args and isinstance(value, str) and value.lower() in ("none", "null"):
            return None  # TOML has no null: `--set limit=none` clears an optional field
    elif origin is typing.Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
    elif hint is tuple or origin is tuple:
        if isinstance(value, list | tuple):
            return _check_tuple(args, value, key, hint, build)
    elif hint is list or origin is list:
        if isinstance(value, list | tuple):
            return (
                [_check_value(args[0], v, f"{key}[{i}]", build) for i, v in enumerate(value)]
                if args
                else list(value)
            )
    elif hint is dict or origin is dict:
        if isinstance(value, dict):
            k_hint, v_hint = args or (Any, Any)
            return {
                _check_value(k_hint, k, key): _check_value(v_hint, v, f"{key}.{k}", build)
                for k, v in value.items()
            }
    elif _fits_scalar(hint, value):
        return float(value) if hint is float else value
    raise ConfigError(f"{key}: expected {_type_name(hint)}, got {_shown(value)}")


def _fits_scalar(hint: Any, value: Any) -> bool:
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation this checker does not know (a TypeVar, a Protocol, ...): let it through


def _check_tuple(args: tuple, value: list | tuple, key: str, hint: Any, build: bool) -> tuple:
    if not args:  # bare `tuple`
        return tuple(value)
    if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]
        return tuple(_check_value(args[0], v, f"{key}[{i}]", build) for i, v in enumerate(value))
    if len(value) != len(args):
        raise ConfigError(f"{key}: expected {_type_name(hint)} ({len(args)} values), got {_shown(value)}")
    return tuple(_check_value(a, v, f"{key}[{i}]", build) for i, (a, v) in enumerate(zip(args, value)))


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "None"
    if isinstance(hint, type) and not typing.get_args(hint):
        return "a table" if dataclasses.is_dataclass(hint) else hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def _shown(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


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


def apply_overrides(
    data: dict[str, Any], overrides: list[str] | None, cls: type | None = None
) -> dict[str, Any]:
    """Return a copy of nested dict ``data`` with each ``key.path=value`` override set. With ``cls`` each
    override is checked alone first (renamed or unknown key, wrong type → ConfigError naming the --set)."""
    out = _deepcopy_dict(data)
    for item in overrides or []:
        path, value = parse_override(item)
        if cls is not None:
            value = _checked_override(cls, item, path, value)
        node = out
        for depth, part in enumerate(path[:-1]):
            if part not in node:
                node[part] = _table_default(cls, path[: depth + 1])
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a table")
        node[path[-1]] = value
    return out


def _table_default(cls: type | None, path: list[str]) -> dict[str, Any]:
    """What ``--set a.b.key=v`` starts from when the file has no table ``a.b``: a copy of the field's
    default when that field is a dict (so one key of a task mixture changes and the others keep their
    defaults), else an empty table (a nested dataclass fills its own defaults)."""
    for depth, part in enumerate(path):
        if cls is None or not dataclasses.is_dataclass(cls):
            return {}
        field = next((f for f in dataclasses.fields(cls) if f.name == part), None)
        if field is None:
            return {}
        if depth < len(path) - 1:
            cls = typing.get_type_hints(cls)[part]
            continue
        if field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = field.default
        return _deepcopy_dict(default) if isinstance(default, dict) else {}
    return {}


def _checked_override(cls: type, item: str, path: list[str], value: Any) -> Any:
    try:
        check_dict(cls, _nest(path, value), build=False)
        return value
    except ConfigError as e:
        error = e
    raw = item.split("=", 1)[1]
    if not isinstance(value, str):  # `--set out_dir=2024`: a str field takes the text as written
        try:
            check_dict(cls, _nest(path, raw), build=False)
            return raw
        except ConfigError:
            pass
    raise ConfigError(f"--set {item}: {error}") from None


def _nest(path: list[str], value: Any) -> dict[str, Any]:
    for part in reversed(path):
        value = {part: value}
    return value


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
    if path is not None:
        try:
            check_dict(cls, data, build=False)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    return from_dict(cls, apply_overrides(data, overrides, cls))


def replace(cfg: T, **changes: Any) -> T:
    return dataclasses.replace(cfg, **changes)


def override_fields(cfg: T, changes: dict[str, Any], *, where: str = "model") -> T:
    """``cfg`` with ``changes`` from a free table of a config file (a trainer's ``model`` overrides of a
    preset): every key checked against cfg's dataclass and every value converted as ``from_dict`` would
    (``--set model.x=none`` → None for an optional field, a list → a tuple). A free table cannot be
    checked when the file is read, since its dataclass depends on the preset; ConfigError names the key."""
    kwargs = check_dict(type(cfg), changes, where=where)
    try:
        return dataclasses.replace(cfg, **kwargs)
    except (TypeError, ValueError) as e:  # the config's own cross-field checks
        raise ConfigError(f"{where}: {_one_line(e)}") from None


def _deepcopy_dict(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deepcopy_dict(v) if isinstance(v, dict) else v for k, v in d.items()}
