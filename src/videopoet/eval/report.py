"""Write an evaluation's results as JSON plus a Markdown report that links its pictures."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _clean(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 1) == 0:
        return _clean(x.item())
    return x


def write_report(
    out_prefix: str | Path,
    title: str,
    metrics: dict[str, Any],
    *,
    images: list[tuple[str, str | Path]] | None = None,
    notes: list[str] | None = None,
) -> tuple[Path, Path]:
    """Write ``OUT.json`` (metrics) and ``OUT.md`` (a table of scalar metrics, notes and images).

    ``images`` are (caption, path) pairs; paths are written relative to the Markdown file.
    """
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    json_path = out_prefix.with_suffix(".json")
    md_path = out_prefix.with_suffix(".md")
    json_path.write_text(json.dumps(_clean(metrics), indent=2) + "\n")
    lines = [f"# {title}", "", "| metric | value |", "|---|---|"]
    for key, value in _flatten(metrics):
        if isinstance(value, int | float | str | bool):
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            lines.append(f"| {key} | {shown} |")
    for note in notes or []:
        lines += ["", note]
    for caption, path in images or []:
        rel = Path(path)
        try:
            rel = rel.resolve().relative_to(md_path.parent.resolve())
        except ValueError:
            pass
        lines += ["", f"**{caption}**", "", f"![{caption}]({rel.as_posix()})"]
    md_path.write_text("\n".join(lines) + "\n")
    return json_path, md_path


def _flatten(d: dict[str, Any], prefix: str = ""):
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _flatten(v, key + ".")
        else:
            yield key, v
