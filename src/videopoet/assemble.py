"""``videopoet assemble``: the component folders that training runs export (each run's ``final/``) → one
pipeline folder that ``VideoPoetPipeline.from_pretrained`` and ``videopoet generate --model`` read.

Order of work: the output is checked first (a writable place; an existing pipeline needs ``--overwrite``;
a non-empty folder that is not a pipeline is refused, never deleted), then the components are loaded and
checked against each other (the tokenizers' vocabulary is the transformer's ``vocab_size``; the text
encoder's width is its ``text_dim``: the pipeline's own checks), then the folder is written into a hidden
sibling, loaded back as a pipeline, and renamed into place.

Components are copied byte for byte (their ``config.json`` and ``model.safetensors``), so a pipeline's
tokenizers keep the weights hash that ``videopoet tokenize`` recorded in its ``tokens.json``. With
``int8`` the transformer (and the super-resolution model) is stored again, int8 weight-only
(``components.save_component``; its cost on held-out loss: docs/pretrained.md). The text encoder is a
reference (``{"spec": ...}``), never a copy.
Arguments are declared in ``videopoet/cli.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from videopoet.components import CONFIG_FILE, WEIGHTS_FILE
from videopoet.errors import UserError
from videopoet.outputs import OVERWRITE_HINT, check_output, replace_folder

NO_TEXT = "none"


@dataclass(frozen=True)
class Sources:
    """The component folders a pipeline is assembled from, and its text encoder's spec."""

    video_tokenizer: Path
    audio_tokenizer: Path
    transformer: Path
    text: str = "minilm"  # "minilm", "none" or a T5 folder: what the LM's token shards were encoded with
    super_resolution: Path | None = None  # an SR component folder (`videopoet train superres`'s final/)


def main(args) -> int:
    sr = None if args.super_resolution is None else Path(args.super_resolution)
    sources = Sources(
        Path(args.video_tokenizer), Path(args.audio_tokenizer), Path(args.transformer), args.text, sr
    )
    out = assemble(sources, args.out, int8=args.int8, overwrite=args.overwrite)
    print(_summary(out))
    return 0


def assemble(sources: Sources, out: str | Path, *, int8: bool = False, overwrite: bool = False) -> Path:
    """Write the pipeline folder ``out`` from ``sources`` (see the module docstring); returns ``Path(out)``.
    Every problem (a missing or wrong folder, pieces that do not fit, an existing output) is one UserError."""
    target = _check_target(Path(out), overwrite)
    pipe = _load(sources)
    stage = target.with_name(f".{target.name}.assemble-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        stage.mkdir(parents=True)
        _write(pipe, sources, stage, int8)
        _load_back(stage, pipe.text_encoder)
        replace_folder(stage, target)
    except OSError as e:
        raise UserError(f"could not write {target}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return Path(out)


def _check_target(out: Path, overwrite: bool) -> Path:
    """Before any work: ``out`` must be new, an empty folder, or (with ``overwrite``) a pipeline folder."""
    from videopoet.pipeline import MODEL_INDEX

    check_output(out, kind="dir")
    target = Path(os.path.abspath(out.expanduser()))
    if not target.is_dir() or not any(target.iterdir()):
        return target
    if not (target / MODEL_INDEX).is_file():
        raise UserError(f"{out} is a folder that holds files but no pipeline: choose a new or empty folder")
    if not overwrite:
        raise UserError(f"{out} already holds a pipeline; {OVERWRITE_HINT}")
    return target


def _load(sources: Sources):
    """Load every component (a one-line error naming the flag) and check that they fit together."""
    from videopoet.lm.transformer import PrefixLM
    from videopoet.pipeline import VideoPoetPipeline
    from videopoet.tokenizers.audio import AudioTokenizer
    from videopoet.tokenizers.video import VideoTokenizer

    video = _component(VideoTokenizer, sources.video_tokenizer, "--video-tokenizer")
    audio = _component(AudioTokenizer, sources.audio_tokenizer, "--audio-tokenizer")
    transformer = _component(PrefixLM, sources.transformer, "--transformer")
    text = None
    if sources.text != NO_TEXT:
        from videopoet.text import load_text_encoder

        text = load_text_encoder(sources.text)
    sr = None
    if sources.super_resolution is not None:
        from videopoet.superres.model import SuperResTransformer

        sr = _component(SuperResTransformer, sources.super_resolution, "--super-resolution")
    return VideoPoetPipeline(video, audio, text, transformer, sr)  # its checks: vocabularies, text widths


def _component(cls, directory: Path, flag: str):
    if not (directory / CONFIG_FILE).is_file() and (directory / "final" / CONFIG_FILE).is_file():
        raise UserError(
            f"{flag} {directory} is a training run folder; pass the component it exported: "
            f"{directory / 'final'}"
        )
    try:
        return cls.from_pretrained(directory)
    except UserError as e:
        raise UserError(f"{flag} {directory}: {e}") from None


def _write(pipe, sources: Sources, stage: Path, int8: bool) -> None:
    """One folder per component (copied, or the transformer stored again as int8) + model_index.json."""
    from videopoet.pipeline import FORMAT_VERSION, MODEL_INDEX, SUPER_RESOLUTION

    folders = {
        "video_tokenizer": sources.video_tokenizer,
        "audio_tokenizer": sources.audio_tokenizer,
        "transformer": sources.transformer,
    }
    if sources.super_resolution is not None:
        folders[SUPER_RESOLUTION] = sources.super_resolution
    for name, source in folders.items():
        if int8 and name in ("transformer", SUPER_RESOLUTION):
            getattr(pipe, name).save_pretrained(stage / name, int8=True)
        else:
            (stage / name).mkdir()
            for file in (CONFIG_FILE, WEIGHTS_FILE):
                shutil.copyfile(source / file, stage / name / file)
    index = {"_class_name": type(pipe).__name__, "format_version": FORMAT_VERSION}
    index.update({name: name for name in folders})
    index.setdefault(SUPER_RESOLUTION, None)
    index["text_encoder"] = None if pipe.text_encoder is None else {"spec": pipe.text_encoder.spec}
    (stage / MODEL_INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def _load_back(stage: Path, text_encoder) -> None:
    """What was written loads as a pipeline (the encoder already loaded is passed, not loaded again)."""
    from videopoet.pipeline import VideoPoetPipeline

    VideoPoetPipeline.from_pretrained(stage, text_encoder=text_encoder)


def _summary(out: Path) -> str:
    from videopoet.pipeline import MODEL_INDEX

    index = json.loads((out / MODEL_INDEX).read_text(encoding="utf-8"))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    storage = json.loads((out / "transformer" / CONFIG_FILE).read_text(encoding="utf-8")).get("storage")
    text = index["text_encoder"]["spec"] if index["text_encoder"] else "none"
    sr = ", super_resolution" if index.get("super_resolution") else ""
    return (
        f"assembled {out}: video_tokenizer, audio_tokenizer, transformer ({storage or 'as trained'}){sr}, "
        f"text encoder {text}; {size / 1e6:.1f} MB"
    )
