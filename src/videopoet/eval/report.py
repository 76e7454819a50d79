"""Write an evaluation's results as JSON plus a Markdown report that links its pictures."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from videopoet.data.media import write_gif, write_mp4
from videopoet.data.sample import tensor_to_frames
from videopoet.errors import require
from videopoet.outputs import atomic_path, atomic_write_text, check_outputs

log = logging.getLogger("videopoet.eval.report")


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


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file (a training run's ``metrics.jsonl``); blank lines are skipped."""
    rows = []
    with Path(path).open() as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def check_report(out_prefix: str | Path, extra: list[str | Path] = (), *, overwrite: bool = False) -> None:
    """Before an evaluation runs: ``OUT.json``, ``OUT.md`` and the ``extra`` files it will write must be
    writable and, unless ``overwrite``, not exist yet (videopoet.outputs.check_outputs)."""
    out_prefix = Path(out_prefix)
    check_outputs(
        [out_prefix.with_suffix(".json"), out_prefix.with_suffix(".md"), *extra], overwrite=overwrite
    )


def write_report(
    out_prefix: str | Path,
    title: str,
    metrics: dict[str, Any],
    *,
    images: list[tuple[str, str | Path]] | None = None,
    notes: list[str] | None = None,
    intro: list[str] | None = None,
) -> tuple[Path, Path]:
    """Write ``OUT.json`` (metrics) and ``OUT.md`` (``intro`` paragraphs, a table of scalar metrics, notes
    and images).

    ``images`` are (caption, path) pairs; paths are written relative to the Markdown file.
    """
    out_prefix = Path(out_prefix)
    json_path = out_prefix.with_suffix(".json")
    md_path = out_prefix.with_suffix(".md")
    atomic_write_text(json_path, json.dumps(_clean(metrics), indent=2) + "\n")
    lines = [f"# {title}", ""]
    for paragraph in intro or []:
        lines += [paragraph, ""]
    lines += ["| metric | value |", "|---|---|"]
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
    atomic_write_text(md_path, "\n".join(lines) + "\n")
    return json_path, md_path


def _flatten(d: dict[str, Any], prefix: str = ""):
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _flatten(v, key + ".")
        else:
            yield key, v


# ---------------------------------------------------------------- pictures (pillow; matplotlib when present)
_BAR_COLORS = ((66, 133, 244), (219, 68, 55), (244, 180, 0), (15, 157, 88), (171, 71, 188), (0, 172, 193))


def _font():
    return require("PIL.ImageFont").load_default()


def bar_chart(
    path: str | Path,
    series: dict[str, dict[str, float]],
    *,
    title: str = "",
    ymax: float | None = 1.0,
    size: tuple[int, int] = (720, 360),
) -> Path:
    """Grouped bar chart PNG: ``series`` maps a legend name to {category: value} (e.g. per-attribute
    accuracy of several runs). Values are printed on the bars; missing categories are left empty."""
    Image, ImageDraw = require("PIL.Image"), require("PIL.ImageDraw")
    path = Path(path)
    cats: list[str] = []
    for values in series.values():
        cats += [c for c in values if c not in cats]
    if not cats:
        raise ValueError("bar_chart needs at least one value")
    finite = [
        v
        for vals in series.values()
        for v in vals.values()
        if isinstance(v, int | float) and math.isfinite(v)
    ]
    top = ymax if ymax is not None else max([1e-9, *finite]) * 1.1
    w, h = size
    left, right, top_pad, bottom = 48, 16, 40, 56
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = _font()
    draw.text((left, 10), title, fill="black", font=font)
    plot_h = h - top_pad - bottom
    for i in range(5):  # grid lines and y labels
        y = top_pad + plot_h - plot_h * i / 4
        draw.line([(left, y), (w - right, y)], fill=(225, 225, 225))
        draw.text((4, y - 6), f"{top * i / 4:.2g}", fill="black", font=font)
    group_w = (w - left - right) / len(cats)
    bar_w = max(2.0, group_w * 0.8 / max(1, len(series)))
    for si, (name, values) in enumerate(series.items()):
        color = _BAR_COLORS[si % len(_BAR_COLORS)]
        for ci, cat in enumerate(cats):
            v = values.get(cat)
            if not isinstance(v, int | float) or not math.isfinite(v):
                continue
            x0 = left + ci * group_w + group_w * 0.1 + si * bar_w
            y0 = top_pad + plot_h - plot_h * min(max(v, 0.0), top) / top
            draw.rectangle([x0, y0, x0 + bar_w - 1, top_pad + plot_h], fill=color)
            draw.text((x0, y0 - 12), f"{v:.2f}", fill="black", font=font)
        if len(series) > 1:
            lx = left + si * 140
            draw.rectangle([lx, h - 16, lx + 10, h - 6], fill=color)
            draw.text((lx + 14, h - 18), name[:20], fill="black", font=font)
    for ci, cat in enumerate(cats):
        draw.text((left + ci * group_w + 2, top_pad + plot_h + 4), cat[:14], fill="black", font=font)
    return _save_image(img, path)


def sample_grid(
    path: str | Path, clips: list[Any], *, columns: int | None = None, fps: float = 8, scale: int = 1
) -> Path:
    """Write clips (uint8 (T, H, W, 3) each) side by side as an animated GIF (``.gif``) or, for ``.png``,
    a still grid with one row per clip showing its first, middle and last frames."""
    Image = require("PIL.Image")
    path = Path(path)
    if not clips:
        raise ValueError("sample_grid needs at least one clip")
    clips = [np.asarray(c) for c in clips]
    for c in clips:
        if c.dtype != np.uint8 or c.ndim != 4 or c.shape[-1] != 3:
            raise ValueError(f"clips must be uint8 (T, H, W, 3), got {c.dtype} {c.shape}")
    h, w = max(c.shape[1] for c in clips), max(c.shape[2] for c in clips)
    gap = 2
    if path.suffix.lower() == ".png":
        rows = []
        for c in clips:
            picks = sorted({0, c.shape[0] // 2, c.shape[0] - 1})
            row = np.full((h, len(picks) * (w + gap) - gap, 3), 255, np.uint8)
            for i, t in enumerate(picks):
                row[: c.shape[1], i * (w + gap) : i * (w + gap) + c.shape[2]] = c[t]
            rows.append(row)
        width = max(r.shape[1] for r in rows)
        canvas = np.full((len(rows) * (h + gap) - gap, width, 3), 255, np.uint8)
        for i, r in enumerate(rows):
            canvas[i * (h + gap) : i * (h + gap) + h, : r.shape[1]] = r
        img = Image.fromarray(canvas)
        if scale > 1:
            img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
        return _save_image(img, path)
    cols = columns or min(len(clips), 4)
    rows_n = math.ceil(len(clips) / cols)
    frames_n = max(c.shape[0] for c in clips)
    images = []
    for t in range(frames_n):
        canvas = np.full((rows_n * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, np.uint8)
        for i, c in enumerate(clips):
            r, q = divmod(i, cols)
            frame = c[min(t, c.shape[0] - 1)]
            canvas[r * (h + gap) : r * (h + gap) + c.shape[1], q * (w + gap) : q * (w + gap) + c.shape[2]] = (
                frame
            )
        img = Image.fromarray(canvas)
        if scale > 1:
            img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
        images.append(img)
    with atomic_path(path) as tmp:
        images[0].save(tmp, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0)
    return path


def plot_loss_curves(
    metrics_jsonl: str | Path,
    path: str | Path,
    *,
    keys: list[str] | None = None,
    title: str = "training curves",
    size: tuple[int, int] = (720, 400),
) -> Path:
    """PNG of numeric columns of a training metrics JSONL (one JSON object per line with ``step``).

    ``keys`` defaults to every numeric column except step/time/lr. Uses matplotlib when importable
    (log-scale y when all values are positive), else a pillow line plot with the same content.
    """
    rows = read_jsonl(metrics_jsonl)
    if not rows:
        raise ValueError(f"{metrics_jsonl}: no rows to plot")
    if keys is None:
        keys = []
        for row in rows:
            for k, v in row.items():
                if k not in ("step", "time", "lr") and isinstance(v, int | float) and not isinstance(v, bool):
                    if k not in keys:
                        keys.append(k)
    curves: dict[str, list[tuple[float, float]]] = {}
    for i, row in enumerate(rows):
        step = row.get("step", i)
        for k in keys:
            v = row.get(k)
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                curves.setdefault(k, []).append((float(step), float(v)))
    if not curves:
        raise ValueError(f"{metrics_jsonl}: none of {keys} has numeric values")
    path = Path(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _pillow_lines(path, curves, title, size)
    fig, ax = plt.subplots(figsize=(size[0] / 100, size[1] / 100), dpi=100)
    for k, pts in curves.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=k)
    if all(p[1] > 0 for pts in curves.values() for p in pts):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return path


def _pillow_lines(path: Path, curves: dict[str, list[tuple[float, float]]], title: str, size) -> Path:
    Image, ImageDraw = require("PIL.Image"), require("PIL.ImageDraw")

    w, h = size
    left, right, top_pad, bottom = 56, 16, 36, 40
    xs = [p[0] for pts in curves.values() for p in pts]
    ys = [p[1] for pts in curves.values() for p in pts]
    log = all(y > 0 for y in ys)
    f = (lambda y: math.log10(y)) if log else (lambda y: y)
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(f(y) for y in ys), max(f(y) for y in ys)
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5, y1 + 0.5
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = _font()
    draw.text((left, 8), title + ("  (log y)" if log else ""), fill="black", font=font)
    px = lambda x: left + (x - x0) / (x1 - x0) * (w - left - right)
    py = lambda y: top_pad + (1 - (f(y) - y0) / (y1 - y0)) * (h - top_pad - bottom)
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        yy = top_pad + (1 - i / 4) * (h - top_pad - bottom)
        draw.line([(left, yy), (w - right, yy)], fill=(225, 225, 225))
        draw.text((2, yy - 6), f"{10**yv if log else yv:.3g}", fill="black", font=font)
    draw.text((left, h - bottom + 6), f"step {x0:g}", fill="black", font=font)
    draw.text((w - right - 80, h - bottom + 6), f"step {x1:g}", fill="black", font=font)
    for i, (k, pts) in enumerate(curves.items()):
        color = _BAR_COLORS[i % len(_BAR_COLORS)]
        if len(pts) > 1:
            draw.line([(px(x), py(y)) for x, y in pts], fill=color, width=2)
        else:
            draw.ellipse(
                [px(pts[0][0]) - 2, py(pts[0][1]) - 2, px(pts[0][0]) + 2, py(pts[0][1]) + 2], fill=color
            )
        draw.text((left + i * 150, h - 16), k[:22], fill=color, font=font)
    return _save_image(img, path)


def _save_image(img, path: Path) -> Path:
    """A pillow image to ``path`` atomically (format from the suffix, which the temporary name keeps)."""
    with atomic_path(path) as tmp:
        img.save(tmp)
    return path


def write_preview(prefix: Path, original, recon, fps: float = 8.0) -> list[Path]:
    """Clips (B, 3, T, H, W) in [-1, 1]: originals (top row) over reconstructions (bottom row) → PREFIX.gif
    (+ PREFIX.mp4 when PyAV imports). Used by training previews and the tokenizer report."""
    top = np.concatenate([tensor_to_frames(v) for v in original], axis=2)  # (T, H, B·W, 3)
    bottom = np.concatenate([tensor_to_frames(v) for v in recon], axis=2)
    grid = np.concatenate([top, bottom], axis=1)  # (T, 2H, B·W, 3)
    written = [prefix.with_suffix(".gif")]
    write_gif(written[0], grid, fps)  # pillow when importable, else a plain built-in GIF
    try:
        require("av")
    except ImportError:
        return written
    try:
        write_mp4(prefix.with_suffix(".mp4"), grid, fps)
        written.append(prefix.with_suffix(".mp4"))
    except Exception as e:  # a preview must never end a run
        log.warning("could not write %s.mp4: %s", prefix, e)
    return written
