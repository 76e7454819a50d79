"""Report pictures: bar charts, sample grids (GIF/PNG), loss curves from a training metrics JSONL."""

import numpy as np
import pytest
from PIL import Image

from videopoet.eval.report import bar_chart, plot_loss_curves, sample_grid, write_report
from videopoet.train.common import MetricsLogger


def test_bar_chart_draws_bars_proportional_to_values(tmp_path):
    path = bar_chart(tmp_path / "bars.png", {"run": {"a": 1.0, "b": 0.25}}, title="acc", size=(400, 300))
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape == (300, 400, 3)
    blue = (img == np.array([66, 133, 244])).all(-1)  # the first series' colour
    cols = np.flatnonzero(blue.any(0))
    heights = [blue[:, c].sum() for c in (cols.min(), cols.max())]
    assert heights[0] == pytest.approx(4 * heights[1], rel=0.1)
    with pytest.raises(ValueError):
        bar_chart(tmp_path / "x.png", {})


def test_sample_grid_gif_and_png(tmp_path):
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, (5, 16, 24, 3), dtype=np.uint8) for _ in range(3)]
    gif = Image.open(sample_grid(tmp_path / "s.gif", clips, columns=2))
    assert gif.n_frames == 5 and gif.size == (2 * 24 + 2, 2 * 16 + 2)
    png = np.asarray(Image.open(sample_grid(tmp_path / "s.png", clips)).convert("RGB"))
    assert png.shape == (3 * 16 + 2 * 2, 3 * 24 + 2 * 2, 3)
    np.testing.assert_array_equal(png[:16, :24], clips[0][0])  # row 0 starts with clip 0's first frame
    with pytest.raises(ValueError, match="uint8"):
        sample_grid(tmp_path / "bad.gif", [np.zeros((2, 8, 8, 3), np.float32)])


def test_loss_curves_from_training_log(tmp_path):
    log = MetricsLogger(tmp_path / "metrics.jsonl")
    for step in range(50):
        log.log(step, loss=2.0 * 0.95**step, recon=1.0 / (step + 1), lr=1e-3)
    log.close()
    path = plot_loss_curves(tmp_path / "metrics.jsonl", tmp_path / "curves.png")
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[0] > 100 and (img != 255).any(-1).mean() > 0.01  # something was drawn
    with pytest.raises(ValueError, match="no rows"):
        (tmp_path / "empty.jsonl").write_text("")
        plot_loss_curves(tmp_path / "empty.jsonl", tmp_path / "e.png")


def test_write_report_keeps_its_signature_and_links_pictures(tmp_path):
    chart = bar_chart(tmp_path / "pics" / "c.png", {"x": {"a": 0.5}})
    json_path, md_path = write_report(tmp_path / "r", "T", {"a": {"b": 1.5}, "inf": float("inf")},
                                      images=[("chart", chart)], notes=["n"])  # fmt: skip
    md = md_path.read_text()
    assert "| a.b | 1.5 |" in md and "![chart](pics/c.png)" in md
    assert '"inf": "inf"' in json_path.read_text()
