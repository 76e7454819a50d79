"""Pre-tokenization (lm/records.py, lm/tokenize.py): records' shapes and dtypes, COMMIT and flow/depth tokens
equal to encoding the conditioning videos directly, pickle-free token shards that round-trip exactly,
resume after an interruption = one straight run, on-the-fly records = stored ones, text added later = text
added at once, and the ``videopoet tokenize`` command end to end and on bad input."""

from __future__ import annotations

import json
import tarfile
import zlib

import numpy as np
import pytest
import torch

from videopoet import cli
from videopoet.data.datasets import open_dataset
from videopoet.data.sample import Sample, frames_to_tensor
from videopoet.data.synthetic import render_clip
from videopoet.errors import MissingExtra
from videopoet.lm import records as R
from videopoet.lm import tokenize as T
from videopoet.tokenizers.audio import AudioTokenizer
from videopoet.tokenizers.conditioning import commit_condition, flow_depth_video
from videopoet.tokenizers.video import VideoTokenizer

FMT = dict(frames=5, width=32, height=32)  # latent grid (2, 4, 4); 10,000 audio samples → 31 codec frames


class FakeText:
    """The text encoder API (encode → float32 (B, S, D), bool (B, S)); padded to the batch's longest caption,
    so a record's text must not depend on its batch."""

    dim = 8

    def encode(self, captions):
        if any(not c.strip() for c in captions):
            raise ValueError("empty prompt")  # as the real encoders do
        words = [["<cls>", *c.split()][: R.MAX_TEXT_TOKENS] for c in captions]
        s = max(len(w) for w in words)
        emb = np.zeros((len(captions), s, self.dim), np.float32)
        mask = np.zeros((len(captions), s), bool)
        for b, ws in enumerate(words):
            for j, w in enumerate(ws):
                emb[b, j] = np.random.default_rng(zlib.crc32(w.encode())).standard_normal(self.dim)
                mask[b, j] = True
        return torch.from_numpy(emb), torch.from_numpy(mask)


@pytest.fixture(scope="module")
def tokenizer_dirs(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tokenizers")
    VideoTokenizer.from_preset("debug").save_pretrained(root / "video")
    AudioTokenizer.from_preset("debug").save_pretrained(root / "audio")
    return root / "video", root / "audio"


@pytest.fixture(scope="module")
def models(tokenizer_dirs):
    vdir, adir = tokenizer_dirs
    return VideoTokenizer.from_pretrained(vdir), AudioTokenizer.from_pretrained(adir)


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def synthetic_samples(n, split="train"):
    ds = open_dataset(f"synthetic:{split}:{n}", **FMT)
    return [ds[i] for i in range(n)]


def assert_records_equal(a: R.TokenRecord, b: R.TokenRecord) -> None:
    assert (a.key, a.caption, a.width, a.height, a.frames) == (b.key, b.caption, b.width, b.height, b.frames)
    for name in ("video", "audio", "text", "text_mask"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert sorted(a.conditions) == sorted(b.conditions)
    for k in a.conditions:
        assert np.array_equal(a.conditions[k], b.conditions[k]), k


# ------------------------------------------------------------------------------------------ records
def test_records_have_the_documented_shapes_and_dtypes(models):
    video, audio = models
    samples = synthetic_samples(4)
    samples[1].has_audio = False
    samples[3].caption = " "  # nothing to encode: no text, and no error
    records = R.RecordTokenizer(video, audio, FakeText(), device="cpu")(samples)
    assert records[3].text is None and records[3].text_mask is None
    for s, r in zip(samples[:3], records):
        R.check_record(r)
        assert (r.key, r.caption, r.width, r.height, r.frames) == (s.key, s.caption, 32, 32, 5)
        assert r.video.dtype == np.int32 and r.video.shape == (2, 4, 4)
        assert r.video.min() >= 0 and r.video.max() < video.config.codebook_size
        assert sorted(r.conditions) == sorted(R.CONDITION_KINDS)  # synthetic: flow/depth ground truth
        assert all(c.dtype == np.int32 and c.shape == (2, 4, 4) for c in r.conditions.values())
        assert r.text.dtype == np.float16 and r.text.shape == (len(s.caption.split()) + 1, FakeText.dim)
        assert r.text_mask.dtype == np.bool_ and r.text_mask.all()
    assert records[0].audio.dtype == np.int32 and records[0].audio.shape == (audio.config.num_levels, 31)
    assert records[1].audio is None
    bare = R.RecordTokenizer(video, audio, None, kinds=("inpainting",))(samples[:1])[0]
    assert bare.text is None and bare.text_mask is None and list(bare.conditions) == ["inpainting"]


def test_condition_tokens_equal_encoding_the_condition_video(models):
    video, audio = models
    samples = synthetic_samples(2)
    records = R.RecordTokenizer(video, audio, None)(samples)
    for s, r in zip(samples, records):
        x = frames_to_tensor(s.frames)[None]  # (1, 3, T, H, W)
        assert np.array_equal(r.video, video.encode(x)[0].numpy())
        for kind in R.COMMIT_KINDS:
            direct = video.encode(commit_condition(x, kind).video)[0].numpy()
            assert np.array_equal(r.conditions[kind], direct), kind
        clip = render_clip(s.meta["seed"], split="train", **FMT)
        direct = video.encode(flow_depth_video(clip.flow, clip.depth))[0].numpy()
        assert np.array_equal(r.conditions["flow_depth"], direct)


def test_in_place_inference_equals_the_training_path_bit_for_bit(models):
    """The video tokenizer's blocks work in place without autograd: the same values as with it."""
    video, _ = models
    x = torch.stack([frames_to_tensor(s.frames) for s in synthetic_samples(2)])
    with torch.enable_grad():
        z_grad = video.encoder(x)
        codes = video.quantizer(z_grad.detach(), compute_losses=False).codes
        recon_grad = video.decoder(codes)
    assert z_grad.requires_grad
    with torch.no_grad():
        z, recon = video.encoder(x), video.decoder(codes)
    assert torch.equal(z.view(torch.int32), z_grad.detach().view(torch.int32))
    assert torch.equal(recon.view(torch.int32), recon_grad.detach().view(torch.int32))


def test_encode_chunks_are_those_of_the_concatenation():
    videos = [torch.arange(n * 2.0).view(n, 2) + 100 * k for k, n in enumerate([3, 5, 2, 4])]
    for size in (1, 2, 3, 4, 7, 16):
        want, got = torch.cat(videos).split(size), R._chunks(videos, size)
        assert len(got) == len(want) and all(torch.equal(a, b) for a, b in zip(got, want)), size
    same = R._chunks(videos[:2], 3)[0]
    assert same.data_ptr() == videos[0].data_ptr()  # one kind's videos: a view, no copy


def test_kinds_for_tasks():
    assert R.kinds_for_tasks(["t2v", "v2a"]) == ()
    assert R.kinds_for_tasks(["inpaint", "outpaint_v"]) == ("inpainting", "outpainting_vertical")
    assert R.kinds_for_tasks(["edit"]) == ("flow_depth",)  # a composition ending in stylization
    with pytest.raises(ValueError, match="unknown task"):
        R.kinds_for_tasks(["bogus"])


def real_clip(frames: np.ndarray) -> Sample:
    return Sample(
        frames=frames, audio=np.zeros(10000, np.float32), sample_rate=16000, fps=8, key="cam/a.mp4@0"
    )


def test_real_video_gets_the_estimates_generation_uses(models, monkeypatch):
    video, audio = models
    sample = real_clip(synthetic_samples(1)[0].frames)
    rt = R.RecordTokenizer(video, audio, None, depth_estimator="auto")
    assert rt.depth is None  # nothing is registered by default
    monkeypatch.setattr(R, "farneback_flow", _no_opencv)
    record = rt([sample])[0]
    flow = R.block_flow(sample.frames)  # without OpenCV or an estimator: block_flow and motion_depth
    estimate = video.encode(flow_depth_video(flow, R.motion_depth(flow, 5)))[0].numpy()
    assert np.array_equal(record.conditions["flow_depth"], estimate) and "inpainting" in record.conditions
    assert not rt.missing
    # a single frame has no flow: no condition, the reason counted
    still = real_clip(synthetic_samples(1)[0].frames[:1])
    assert "flow_depth" not in rt([still])[0].conditions
    [(reason, count)] = rt.missing.items()
    assert "single frame" in reason and count == 1

    # a registered estimator + flow (OpenCV, faked here) give the condition from those
    depth = np.linspace(1, 2, 5 * 32 * 32, dtype=np.float32).reshape(5, 32, 32)
    flow = np.ones((4, 32, 32, 2), np.float32)
    monkeypatch.setitem(R.DEPTH_ESTIMATORS, "fake", lambda device: lambda frames: depth)
    monkeypatch.setattr(R, "farneback_flow", lambda frames: flow)
    record = R.RecordTokenizer(video, audio, None, depth_estimator="auto")([sample])[0]
    direct = video.encode(flow_depth_video(flow, depth))[0].numpy()
    assert np.array_equal(record.conditions["flow_depth"], direct)


def _no_opencv(frames):
    raise MissingExtra("cv2 is not installed")


def test_farneback_flow_follows_a_shift():
    pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8).repeat(2, 0).repeat(2, 1)
    frames = np.stack([np.roll(base, 2 * t, axis=1) for t in range(3)])  # 2 px right per frame
    flow = R.farneback_flow(frames)
    assert flow.shape == (2, 96, 128, 2) and flow.dtype == np.float32
    assert abs(float(np.median(flow[..., 0])) - 2) < 0.5 and abs(float(np.median(flow[..., 1]))) < 0.5


def test_resized_synthetic_shard_clip_gets_no_stale_geometry():
    s = synthetic_samples(1)[0]
    other = render_clip(s.meta["seed"], split="train", frames=9, width=32, height=32).frames[:5]
    moved = Sample(**{**s.__dict__, "frames": other})
    assert isinstance(R.synthetic_geometry(s), R.Geometry)
    assert "differs from the clip" in R.synthetic_geometry(moved)


def stacked_flow_depth_video(flow, depth):
    """flow_depth_video as first written: pad, stack (B, T, H, W, 3), normalise, permute (the reference)."""
    flow, depth = torch.as_tensor(flow)[None], torch.as_tensor(depth)[None]
    flow = torch.cat([torch.zeros_like(flow[:, :1]), flow], dim=1)
    scale = flow.norm(dim=-1).amax(dim=(1, 2, 3)).clamp_min(1e-6).view(-1, 1, 1, 1, 1)
    d_min, d_max = depth.amin(dim=(1, 2, 3), keepdim=True), depth.amax(dim=(1, 2, 3), keepdim=True)
    depth_n = 1 - 2 * (depth - d_min) / (d_max - d_min).clamp_min(1e-6)
    return torch.cat([(flow / scale).clamp(-1, 1), depth_n.unsqueeze(-1)], dim=-1).permute(0, 4, 1, 2, 3)


def test_flow_depth_video_equals_the_stacked_formula_bit_for_bit():
    for split in ("train", "heldout"):
        for seed in range(3):
            clip = render_clip(seed, split=split, **FMT)
            got, want = (
                flow_depth_video(clip.flow, clip.depth),
                stacked_flow_depth_video(clip.flow, clip.depth),
            )
            assert got.shape == want.shape and torch.equal(got.view(torch.int32), want.view(torch.int32))
    still = flow_depth_video(np.zeros((4, 8, 8, 2), np.float32), np.full((5, 8, 8), 4.0, np.float32))
    assert not still[:, :2].any() and bool((still[:, 2] == 1).all())  # no motion; flat depth reads as near
    bad = np.ones((5, 8, 8), np.float32)
    bad[2, 3, 4] = np.nan
    with pytest.raises(ValueError, match="finite"):
        flow_depth_video(np.zeros((4, 8, 8, 2), np.float32), bad)


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_prepared_items_render_once_and_equal_re_rendering(models, monkeypatch, split):
    """The loader-worker side renders a synthetic clip once, with its ground truth, and makes the flow-depth
    video itself: the same sample, video and records as reading the sample and re-rendering it for its
    flow and depth (``synthetic_geometry``) in the main process, as the command did before."""
    import videopoet.data.synthetic as synthetic

    ds = open_dataset(f"synthetic:{split}:3", **FMT)
    renders = []
    render = synthetic.render_clip
    monkeypatch.setattr(synthetic, "render_clip", lambda *a, **k: renders.append(a) or render(*a, **k))
    items = R.PreparedItems(ds, geometry=True, estimate=False)
    prepared = [items[i] for i in range(3)]
    assert len(renders) == 3
    monkeypatch.setattr(synthetic, "render_clip", render)
    reference = [ds[i] for i in range(3)]
    for p, s in zip(prepared, reference):
        assert p.reasons == [] and p.sample.key == s.key and p.sample.caption == s.caption
        assert np.array_equal(p.sample.frames, s.frames) and np.array_equal(p.sample.audio, s.audio)
        geo = R.synthetic_geometry(s)
        expect = flow_depth_video(geo.flow, geo.depth)
        assert p.geometry.dtype == torch.float32 and torch.equal(p.geometry, expect)
    rt = R.RecordTokenizer(*models, None)
    fast = rt([p.sample for p in prepared], [p.geometry for p in prepared])
    for a, b in zip(fast, rt(reference)):
        assert_records_equal(a, b)
    bare = R.PreparedItems(ds, geometry=False, estimate=False)[0]
    assert bare.geometry is None and np.array_equal(bare.sample.frames, reference[0].frames)
    with pytest.raises(IndexError):
        ds[3]
    missing = R.PreparedItems(ds, geometry=True, estimate=False)[3]
    assert missing.sample is None and "IndexError" in missing.reasons[0]


# ------------------------------------------------------------------------------------------ shards
def test_shards_round_trip_exactly(models, tmp_path):
    video, audio = models
    samples = synthetic_samples(5)
    samples[2].has_audio = False
    samples[3].key = samples[4].key  # duplicate keys get distinct member names
    records = R.RecordTokenizer(video, audio, FakeText())(samples[:3])
    records += R.RecordTokenizer(video, audio, None, kinds=())(samples[3:])
    writer = R.TokenShardWriter(tmp_path, 2, text_encoder="fake")
    for i, r in enumerate(records):
        writer.write(r, i)
    writer.close()
    assert [p.name for p in R.find_token_shards(tmp_path)] == [f"tokens-00000{k}.tar" for k in range(3)]
    ds = R.TokenShardDataset(tmp_path)
    assert len(ds) == 5 and not ds.skipped
    for i, r in enumerate(records):
        assert_records_equal(ds[i], r)
    assert_records_equal(ds[-1], records[-1])
    with pytest.raises(IndexError):
        ds[5]


def _member_offset(shard, suffix):
    with tarfile.open(shard) as tf:
        return next(m.offset_data for m in tf if m.name.endswith(suffix))


def test_corrupt_members_raise_a_clear_reason(models, tmp_path):
    video, audio = models
    records = R.RecordTokenizer(video, audio, None, kinds=("inpainting",))(synthetic_samples(3))
    writer = R.TokenShardWriter(tmp_path, 3)
    for i, r in enumerate(records):
        writer.write(r, i)
    writer.close()
    shard = tmp_path / "tokens-000000.tar"
    data = bytearray(shard.read_bytes())
    at = _member_offset(shard, "synthetic_train_1.video.npy")
    data[at : at + 6] = b"NOTNPY"
    shard.write_bytes(bytes(data))
    ds = R.TokenShardDataset(tmp_path)
    assert_records_equal(ds[0], records[0])
    with pytest.raises(
        R.RecordError, match=r"tokens-000000.tar.*synthetic/train/1.*video.npy: not a readable"
    ):
        ds[1]
    shard.write_bytes(bytes(data[: _member_offset(shard, "synthetic_train_2.audio.npy") + 10]))
    ds = R.TokenShardDataset(tmp_path)  # truncated: the damaged record is left out, with a reason
    assert len(ds) == 2 and "truncated" in ds.skipped[0][1]


def object_npy_bytes() -> bytes:
    """A .npy whose header declares an object array (what a pickled array looks like), written by hand:
    the body is not even a pickle, since the reader must refuse at the header."""
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"  # pad the 10-byte preamble + header to 64
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"not a pickle"


def test_pickled_arrays_are_refused(models, tmp_path):
    video, audio = models
    record = R.RecordTokenizer(video, audio, None, kinds=())(synthetic_samples(1))[0]
    members = R.record_members(record, 0, None)
    members["audio.npy"] = object_npy_bytes()
    R.write_shard(tmp_path / "tokens-000000.tar", [members], ["k"])
    with pytest.raises(R.RecordError, match="audio.npy"):
        R.TokenShardDataset(tmp_path)[0]


# ------------------------------------------------------------------------------------------ the command
def run(argv, capsys):
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def tokenize_argv(tokenizer_dirs, out, *extra, num=6):
    """The command on 32x32x5 synthetic clips, debug tokenizers, in-process (no loader workers)."""
    vdir, adir = tokenizer_dirs
    return [
        "tokenize", "--data", "synthetic:train", "--out", out, "--num", num, "--size", "32x32",
        "--frames", 5, "--video-tokenizer", vdir, "--audio-tokenizer", adir, "--device", "cpu",
        "--workers", 0, "--batch-size", 2, *extra,
    ]  # fmt: skip


def shard_bytes(folder):
    return {p.name: p.read_bytes() for p in R.find_token_shards(folder)}


def test_cli_end_to_end(tokenizer_dirs, models, tmp_path, capsys):
    out = tmp_path / "tokens"
    rc, stdout, err = run(tokenize_argv(tokenizer_dirs, out, "--workers", 1, "--text", "none"), capsys)
    assert rc == 0, err
    assert "tokenized 6 clip(s)" in stdout
    info = json.loads((out / R.INFO_FILE).read_text())
    assert info["complete"] and info["records"] == 6 and info["settings"]["text_encoder"] is None
    ds = R.TokenShardDataset(out)
    assert len(ds) == 6 and ds.vocab.visual_codebook_size == models[0].config.codebook_size
    expect = R.RecordTokenizer(*models, None)(synthetic_samples(6))
    for i in range(6):
        assert_records_equal(ds[i], expect[i])
    rc, stdout, _ = run(tokenize_argv(tokenizer_dirs, out, "--resume", "--text", "none"), capsys)
    assert rc == 0 and "nothing to do" in stdout


def test_resume_after_an_interruption_equals_one_run(tokenizer_dirs, tmp_path, capsys, monkeypatch):
    extra = ("--shard-size", 2, "--text", "none", "--num", 5)  # shards of 2, 2 and 1 records
    rc, _, err = run(tokenize_argv(tokenizer_dirs, tmp_path / "straight", *extra), capsys)
    assert rc == 0, err

    out = tmp_path / "resumed"
    write = R.write_shard

    def failing(path, *a, **k):
        if path.name == "tokens-000002.tar":
            raise RuntimeError("machine lost")
        return write(path, *a, **k)

    monkeypatch.setattr(R, "write_shard", failing)
    with pytest.raises(RuntimeError, match="machine lost"):
        cli.main([str(a) for a in tokenize_argv(tokenizer_dirs, out, *extra)])
    monkeypatch.setattr(R, "write_shard", write)
    assert sorted(shard_bytes(out)) == ["tokens-000000.tar", "tokens-000001.tar"]  # the complete ones
    (out / ".tokens-000002.tar.123-abcdef.tmp.tar").write_bytes(b"half a shard")  # never picked up
    info = json.loads((out / R.INFO_FILE).read_text())
    info["shards"].pop()  # as if killed between a shard's rename and the tokens.json update
    (out / R.INFO_FILE).write_text(json.dumps(info))
    rc, _, err = run(tokenize_argv(tokenizer_dirs, out, *extra), capsys)
    assert rc == 2 and "--resume" in err
    rc, _, err = run(tokenize_argv(tokenizer_dirs, out, *extra, "--resume"), capsys)
    assert rc == 0, err
    assert shard_bytes(out) == shard_bytes(tmp_path / "straight")
    assert json.loads((out / R.INFO_FILE).read_text()) == json.loads(
        (tmp_path / "straight" / R.INFO_FILE).read_text()
    )
    # more clips later: the short last shard is filled up, as one run of 7 would have it
    more = (*extra[:-2], "--num", 7)
    rc, _, err = run(tokenize_argv(tokenizer_dirs, out, *more, "--resume"), capsys)
    assert rc == 0, err
    rc, _, err = run(tokenize_argv(tokenizer_dirs, tmp_path / "seven", *more), capsys)
    assert rc == 0, err
    assert shard_bytes(out) == shard_bytes(tmp_path / "seven") and len(shard_bytes(out)) == 4


def test_on_the_fly_records_equal_the_shards(tokenizer_dirs, models, tmp_path, capsys):
    out = tmp_path / "tokens"
    rc, _, err = run(tokenize_argv(tokenizer_dirs, out, "--text", "none", num=4), capsys)
    assert rc == 0, err
    fly = R.OnTheFlyRecords("synthetic:train:4", R.RecordTokenizer(*models, None), **FMT)
    stored = R.TokenShardDataset(out)
    assert len(fly) == len(stored) == 4 and fly.vocab == stored.vocab
    for i in range(4):
        assert_records_equal(fly[i], stored[i])


def test_text_added_later_equals_text_at_once(tokenizer_dirs, tmp_path, capsys, monkeypatch):
    fake = lambda spec, device="cpu": (None, None) if spec == "none" else (FakeText(), spec)  # noqa: E731
    monkeypatch.setattr(T, "load_text", fake)
    extra = ("--shard-size", 4)
    rc, _, err = run(tokenize_argv(tokenizer_dirs, tmp_path / "once", *extra, "--text", "fake"), capsys)
    assert rc == 0, err
    later = tmp_path / "later"
    rc, _, err = run(tokenize_argv(tokenizer_dirs, later, *extra, "--text", "none"), capsys)
    assert rc == 0, err
    assert R.TokenShardDataset(later)[0].text is None
    rc, stdout, err = run(["tokenize", "--text-only", "--out", later, "--text", "fake"], capsys)
    assert rc == 0 and "to 6 of 6" in stdout, err
    assert shard_bytes(later) == shard_bytes(tmp_path / "once")
    assert json.loads((later / R.INFO_FILE).read_text())["settings"]["text_encoder"] == "fake"
    rc, stdout, _ = run(["tokenize", "--text-only", "--out", later, "--text", "fake"], capsys)
    assert rc == 0 and "to 0 of 6" in stdout  # done shards are skipped
    rc, _, err = run(["tokenize", "--text-only", "--out", later, "--text", "other"], capsys)
    assert rc == 2 and "--overwrite" in err


def test_glibc_keeps_freed_memory_only_for_large_cpu_encodes(models):
    from types import SimpleNamespace

    rt = R.RecordTokenizer(*models, None, encode_batch=8)
    small = SimpleNamespace(size=(32, 32), frames=5)
    large = SimpleNamespace(size=(128, 128), frames=17)
    assert not T._page_faults_dominate(small, rt)  # tests and small runs leave the allocator alone
    assert T._page_faults_dominate(large, rt)  # debug width 8: 8 clips × 8 × 17 × 128 × 128 floats = 71 MB
    rt.device = torch.device("meta")
    assert not T._page_faults_dominate(large, rt)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a[:1] + a[3:], "--data is required"),
        (lambda a: a + ["--num", "0"], "positive integer"),
        (lambda a: a + ["--tasks", "bogus"], "unknown task"),
        (lambda a: a + ["--conditions", "sky"], "invalid choice"),
        (lambda a: a + ["--frames", "6"], "1 + 4k frames"),
        (lambda a: a + ["--resume", "--overwrite"], "not both"),
        (lambda a: [x if x != "synthetic:train" else "no/such/folder" for x in a], "not found"),
        (lambda a: a[: a.index("--num")] + a[a.index("--num") + 2 :], "endless"),
    ],
)
def test_bad_arguments_exit_2(tokenizer_dirs, tmp_path, capsys, change, message):
    rc, _, err = run(change([str(x) for x in tokenize_argv(tokenizer_dirs, tmp_path / "t")]), capsys)
    assert rc == 2 and message in err and err.count("\n") == 1, err


def test_resume_with_other_settings_is_refused(tokenizer_dirs, tmp_path, capsys):
    out = tmp_path / "t"
    rc, _, err = run(tokenize_argv(tokenizer_dirs, out, "--text", "none", num=2), capsys)
    assert rc == 0, err
    rc, _, err = run(tokenize_argv(tokenizer_dirs, out, "--text", "none", "--resume", "--seed", 5), capsys)
    assert rc == 2 and "seed 0 → 5" in err
    rc, _, err = run(tokenize_argv(tokenizer_dirs, out, "--text", "none", "--overwrite", "--seed", 5), capsys)
    assert rc == 0, err
    assert R.TokenShardDataset(out)[0].key == "synthetic/train/5"


def test_term_to_the_process_group_stops_cleanly_and_resumes(tokenizer_dirs, tmp_path):
    """A time limit's TERM reaches the command and its loader workers (one process group). The workers
    ignore it; the main process finishes its batch, keeps the shards so far, says so in one line and exits
    143, and the workers go with it rather than linger, holding the terminal's pipe (communicate would time
    out). --resume completes the set."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "tokens"
    argv = [str(a) for a in tokenize_argv(tokenizer_dirs, out, "--text", "none", "--shard-size", 2, num=400)]
    argv[argv.index("--workers") + 1] = "2"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "videopoet.cli", *argv]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not R.find_token_shards(out):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)  # returns once every holder of the pipe is gone
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err[-3000:]
    assert "(signal 15); continue with --resume" in err.strip().splitlines()[-1]
    info = json.loads((out / R.INFO_FILE).read_text())
    assert (
        not info["complete"]
        and 0 < info["records"] < 400
        and len(R.TokenShardDataset(out)) == info["records"]
    )
    done = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / R.INFO_FILE).read_text())["records"] == 400


def _term_after_first_batch(monkeypatch):
    """SIGTERM to this process once the first batch is written (as a time limit would send it)."""
    import os
    import signal

    write = T.write_batch
    sent = []

    def write_then_term(*args):
        n = write(*args)
        if not sent:  # the command's own handler, not the default one that would end the test run
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
            sent.append(os.kill(os.getpid(), signal.SIGTERM))
        return n

    monkeypatch.setattr(T, "write_batch", write_then_term)


def test_signal_keeps_the_shards_so_far_and_resume_matches_one_run(
    tokenizer_dirs, tmp_path, capsys, monkeypatch
):
    whole = tmp_path / "whole"
    assert run(tokenize_argv(tokenizer_dirs, whole, "--text", "none", "--shard-size", 3), capsys)[0] == 0
    out = tmp_path / "t"
    with monkeypatch.context() as m:
        _term_after_first_batch(m)
        rc, _, err = run(tokenize_argv(tokenizer_dirs, out, "--text", "none", "--shard-size", 3), capsys)
    assert rc == 143 and "stopped after 2 new record(s) (signal 15); continue with --resume" in err, err
    info = json.loads((out / R.INFO_FILE).read_text())
    assert (info["complete"], info["records"], len(R.TokenShardDataset(out))) == (False, 2, 2)
    assert (
        run(tokenize_argv(tokenizer_dirs, out, "--text", "none", "--shard-size", 3, "--resume"), capsys)[0]
        == 0
    )
    assert shard_bytes(out) == shard_bytes(whole)
    assert json.loads((out / R.INFO_FILE).read_text())["complete"]


def test_signal_during_overwrite_keeps_the_earlier_set(tokenizer_dirs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "t"
    assert run(tokenize_argv(tokenizer_dirs, out, "--text", "none", num=2), capsys)[0] == 0
    before, info = shard_bytes(out), (out / R.INFO_FILE).read_text()
    _term_after_first_batch(monkeypatch)
    rc, _, err = run(tokenize_argv(tokenizer_dirs, out, "--text", "none", "--overwrite", "--seed", 5), capsys)
    assert rc == 143 and f"the earlier set in {out} is unchanged" in err, err
    assert shard_bytes(out) == before and (out / R.INFO_FILE).read_text() == info
    assert sorted(p.name for p in out.iterdir()) == sorted([*before, R.INFO_FILE])  # no staging folder left
