"""The judge's learned shape reader: crops, weights round trip, its training script, the bundled reader."""

import json
import math

import numpy as np
import pytest
import torch

from videopoet.data.synthetic import render_clip
from videopoet.errors import UserError
from videopoet.eval.judge import find_objects, judge_clip, object_crops_of
from videopoet.eval.shape_net import (
    CROP,
    CROP_RADII,
    ShapeNet,
    ShapeNetConfig,
    bundled_shape_net,
    object_crops,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("size", [CROP, 48])
def test_crops_are_centred_and_scale_normalised(size):
    t, h, w = 3, 96, 128
    ys, xs = np.mgrid[0:h, 0:w]
    mask = np.zeros((t, h, w), bool)
    for i, (cx, cy, r) in enumerate([(30, 40, 6), (90, 50, 12), (64, 48, 1)]):
        mask[i] = (xs - cx) ** 2 + (ys - cy) ** 2 <= r**2
    crops, idx = object_crops(mask[None].astype(np.float32), mask, size)
    assert idx.tolist() == [0, 1]  # the 5-pixel disc is below MIN_AREA: no crop
    assert crops.shape == (2, 1, size, size)
    expected = math.pi * (size / (2 * CROP_RADII)) ** 2  # disc area in crop pixels, whatever its size
    for c in crops[:, 0]:
        assert abs(c.sum() - expected) < 0.15 * expected
        yy, xx = np.mgrid[0:size, 0:size]
        assert abs((c * xx).sum() / c.sum() - (size - 1) / 2) < 0.5  # centred
        assert abs((c * yy).sum() / c.sum() - (size - 1) / 2) < 0.5


def test_shape_net_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    for wide, trust in ((False, False), (True, True)):
        net = ShapeNet(ShapeNetConfig(channels=4, blocks=2, wide=wide, trust=trust)).eval()
        net.save_pretrained(tmp_path / "s")
        loaded = ShapeNet.from_pretrained(tmp_path / "s")
        assert (loaded.config.wide, loaded.config.trust) == (wide, trust)
        x = torch.rand(3, 1 + wide, CROP, CROP)
        (logits, tr), (logits2, tr2) = net(x), loaded(x)
        assert torch.equal(logits, logits2) and torch.equal(tr, tr2)
        assert logits.shape == (3, len(ShapeNetConfig().shapes)) and tr.shape == (3,)
        assert (tr != 0).all() if trust else (tr == 0).all()
    # a reader passed to the judge is the one it uses
    clip = render_clip(92_200, split="train")
    torch.manual_seed(0)
    untrained = ShapeNet(ShapeNetConfig(channels=4, blocks=1)).eval()
    with torch.no_grad():
        untrained.head.bias.copy_(torch.tensor([0.0, 0, 0, 0, 0, 50.0]))  # always "cross"
    assert {o.shape for o in judge_clip(clip.frames, shape_reader=untrained).objects} == {"cross"}
    (tmp_path / "s" / "config.json").write_text(json.dumps({"model_type": "something-else"}))
    with pytest.raises(UserError, match="not a judge shape reader"):
        ShapeNet.from_pretrained(tmp_path / "s")
    with pytest.raises(UserError, match="needs config.json and model.safetensors"):
        ShapeNet.from_pretrained(tmp_path / "missing")


def test_pool_frames_weights_frames_by_trust():
    from videopoet.eval.shape_net import pool_frames

    # frame 0 is sure of class 0, frames 1-2 lean to class 1
    lp = torch.log_softmax(torch.tensor([[6.0, 0.0], [0.0, 4.0], [0.0, 4.0]]), -1)
    equal = pool_frames(lp, torch.zeros(3))
    assert torch.allclose(equal, torch.log_softmax(lp.mean(0), -1)) and equal.argmax() == 1
    assert pool_frames(lp, torch.tensor([5.0, 0.0, 0.0])).argmax() == 0  # trusting the first frame
    mask = torch.tensor([True, False, False])  # a masked frame has no say, whatever its trust
    assert pool_frames(lp, torch.tensor([0.0, 9.0, 9.0]), mask).argmax() == 0
    batched = pool_frames(lp.expand(4, 3, 2), torch.zeros(4, 3), mask.expand(4, 3))
    assert batched.shape == (4, 2) and torch.allclose(batched.exp().sum(-1), torch.ones(4))


def test_training_script_writes_a_loadable_reader(tmp_path, capsys):
    from videopoet.train.judge_shapes import clip_crops, main

    clip = render_clip(100_000, split="train")
    objects = clip_crops(clip.frames, clip.attributes)
    assert objects and all(c.dtype == np.uint8 and c.shape[1:] == (1, CROP, CROP) for c, _ in objects)
    shapes = ShapeNetConfig().shapes
    assert {shapes[lab] for _, lab in objects} <= {o["shape"] for o in clip.attributes["objects"]}
    args = ["--out", str(tmp_path / "r"), "--clips", "20", "--epochs", "1", "--workers", "1"]
    assert main([*args, "--splits", "train,heldout", "--trust"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.rindex("\n{") + 1 :])
    assert report["train_crops"] > 100 and 0.0 <= report["val_frame_accuracy/clean"] <= 1.0
    assert 0.0 <= report["val_object_accuracy/simulated"] <= 1.0
    assert report["splits"] == ["train", "heldout"]
    assert ShapeNet.from_pretrained(tmp_path / "r").config.trust
    with pytest.raises(SystemExit) as bad:
        main([*args, "--splits", "train,test"])
    assert bad.value.code == 2 and "--splits" in capsys.readouterr().err
    assert ShapeNet.from_pretrained(tmp_path / "r").config.shapes == shapes
    # a larger crop and a wider reader: the config records them and the judge crops to the reader's size
    assert main([*args, "--wide", "--crop", "40", "--channels", "8", "--out", str(tmp_path / "r40")]) == 0
    capsys.readouterr()
    r40 = ShapeNet.from_pretrained(tmp_path / "r40")
    assert (r40.config.crop, r40.config.channels, r40.config.wide) == (40, 8, True)
    assert len(judge_clip(clip.frames, shape_reader=r40).objects) == len(clip.attributes["objects"])
    with pytest.raises(SystemExit) as bad:
        main([*args, "--crop", "4"])
    assert bad.value.code == 2 and "--crop" in capsys.readouterr().err


def test_bundled_reader_reads_clean_and_degraded_shapes():
    net = bundled_shape_net()
    if net is None:
        pytest.skip("no bundled shape reader in this install")
    from videopoet.eval.judge import simulate_reconstruction

    right = total = 0
    for seed in range(92_000, 92_010):
        clip = render_clip(seed, split="heldout")
        truth = {o["color"]: o["shape"] for o in clip.attributes["objects"]}
        for frames in (clip.frames, simulate_reconstruction(clip.frames, seed)):
            for o in judge_clip(frames).objects:
                if o.color in truth:
                    total += 1
                    right += o.shape == truth[o.color]
    assert total >= 20 and right / total >= 0.95


def test_moments_alone_still_read_clean_shapes():
    right = total = 0
    for seed in range(92_100, 92_110):
        clip = render_clip(seed, split="train")
        truth = {o["color"]: o["shape"] for o in clip.attributes["objects"]}
        found = find_objects(clip.frames)
        assert all(
            object_crops_of(clip.frames, found, k, True)[0].shape[1:] == (2, CROP, CROP) for k in found.chosen
        )
        for o in judge_clip(clip.frames, shape_reader=None).objects:
            if o.color in truth:
                total += 1
                right += o.shape == truth[o.color]
    assert total >= 10 and right / total >= 0.9


def test_compare_shape_readers_benchmark_runs(tmp_path):
    import importlib.util
    from pathlib import Path

    from videopoet.tokenizers.video import VideoTokenizer

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_shape_readers.py"
    spec = importlib.util.spec_from_file_location("compare_shape_readers", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    torch.manual_seed(0)
    VideoTokenizer.from_preset("debug").save_pretrained(tmp_path / "vt")
    ShapeNet(ShapeNetConfig(channels=4, blocks=1)).save_pretrained(tmp_path / "reader")
    out = tmp_path / "r.json"
    report = bench.main(["--readers", f"moments,{tmp_path / 'reader'}", "--num", "1", "--seed", "92300",
                         "--video-tokenizer", str(tmp_path / "vt"), "--out", str(out)])  # fmt: skip
    assert json.loads(out.read_text()) == report
    for split in ("train", "heldout"):
        assert set(report[split]) == {"moments", str(tmp_path / "reader")}
        assert all(0.0 <= v <= 1.0 for r in report[split].values() for v in r.values())


def test_compare_video_tokenizers_benchmark_runs(tmp_path, monkeypatch):
    import importlib
    from pathlib import Path

    from videopoet.tokenizers.video import VideoTokenizer

    # importable by name, so that its worker processes can find the judging function
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    bench = importlib.import_module("compare_video_tokenizers")
    torch.manual_seed(0)
    VideoTokenizer.from_preset("debug").save_pretrained(tmp_path / "a")
    VideoTokenizer.from_preset("debug").save_pretrained(tmp_path / "b")
    out = tmp_path / "r.json"
    pair = f"{tmp_path / 'a'},{tmp_path / 'b'}"
    report = bench.main(["--tokenizers", pair, "--num", "1", "--seed", "92300", "--workers", "2",
                         "--out", str(out)])  # fmt: skip
    assert json.loads(out.read_text()) == report
    for split in ("train", "heldout"):
        assert set(report[split]) == {str(tmp_path / "a"), str(tmp_path / "b")}
        scores = report[split][str(tmp_path / "a")]
        assert {"color", "shape", "motion"} <= set(scores)
        assert all(0.0 <= v <= 1.0 for v in scores.values())
