"""The ``videopoet`` command.

Every sub-command is declared here (so ``videopoet --help`` is fast and complete) and dispatched to a
``main(args)`` function in the module that owns the work; heavy imports happen only after dispatch.
Errors meant for the user (bad paths, bad configs, bad arguments) print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} must look like WIDTHxHEIGHT, e.g. 128x128") from None
    if w <= 0 or h <= 0 or w % 8 or h % 8:
        raise argparse.ArgumentTypeError(f"size {text!r}: width and height must be positive multiples of 8")
    return w, h


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
    return value


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML file with the training config (defaults apply when omitted)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set lr=3e-4 --set model.preset=debug (repeatable)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in out_dir")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videopoet", description="VideoPoet: tokenizers, LM, training, eval."
    )
    parser.add_argument("--version", action="version", version=_version())
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # ------------------------------------------------------------------ demo (the Quickstart's main job)
    p = top.add_parser("demo", help="render a few clips with sound to mp4 (runs offline on a CPU)")
    p.add_argument("--out", default="demo", help="output directory (default: ./demo)")
    p.add_argument("--num", type=_positive_int, default=3, help="number of clips")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler="videopoet.demo:main")

    # ------------------------------------------------------------------ data
    data = top.add_parser("data", help="make and inspect datasets").add_subparsers(
        dest="data_command", metavar="SUBCOMMAND", required=True
    )
    p = data.add_parser("synth", help="render synthetic-world clips into tar shards")
    p.add_argument("--out", required=True, help="output directory for shards")
    p.add_argument("--num", type=_positive_int, required=True, help="number of clips")
    p.add_argument("--seed", type=int, default=0, help="first seed; clip i uses seed + i")
    p.add_argument("--split", choices=["train", "heldout"], default="train")
    p.add_argument("--size", type=_size, default=(128, 128), help="WIDTHxHEIGHT, multiples of 8")
    p.add_argument("--frames", type=_positive_int, default=17, help="frames per clip (1, 17 or 41)")
    p.add_argument("--shard-size", type=_positive_int, default=256, help="clips per tar shard")
    p.set_defaults(handler="videopoet.data.commands:synth")
    p = data.add_parser("pack", help="conform a folder of real videos into tar shards (for training)")
    p.add_argument("path", help="a folder of videos (captions from sidecar .txt or manifest.jsonl/.csv)")
    p.add_argument("--out", required=True, help="output directory for shards")
    p.add_argument("--size", type=_size, default=(128, 128), help="WIDTHxHEIGHT, multiples of 8")
    p.add_argument("--frames", type=_positive_int, default=17, help="frames per clip (17 or 41)")
    p.add_argument("--shard-size", type=_positive_int, default=256, help="clips per tar shard")
    p.set_defaults(handler="videopoet.data.commands:pack")
    p = data.add_parser("check", help="scan a video folder or shard set; report usable clips and bad files")
    p.add_argument("path", help="a folder of videos or of tar shards")
    p.add_argument("--json", dest="json_out", help="also write the report as JSON here")
    p.add_argument("--frames", type=_positive_int, default=17, help="clip length the scan checks for")
    p.set_defaults(handler="videopoet.data.commands:check")

    # ------------------------------------------------------------------ train
    train = top.add_parser("train", help="train a component").add_subparsers(
        dest="train_command", metavar="COMPONENT", required=True
    )
    p = train.add_parser("video-tokenizer", help="train the MAGVIT-v2 video tokenizer")
    _add_train_args(p)
    p.set_defaults(handler="videopoet.train.video_tokenizer:main")
    p = train.add_parser("audio-tokenizer", help="train the SoundStream audio codec")
    _add_train_args(p)
    p.set_defaults(handler="videopoet.train.audio_tokenizer:main")

    # ------------------------------------------------------------------ eval
    ev = top.add_parser("eval", help="measure a component").add_subparsers(
        dest="eval_command", metavar="WHAT", required=True
    )
    p = ev.add_parser("tokenizer", help="video tokenizer: PSNR, SSIM, codebook usage")
    p.add_argument("--model", required=True, help="directory with config.json + model.safetensors")
    p.add_argument("--data", required=True, help="shards/video folder, or synthetic:heldout[:N]")
    p.add_argument("--num", type=_positive_int, default=64, help="number of clips to evaluate")
    p.add_argument("--batch-size", type=_positive_int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--frames", type=_positive_int, default=17, help="frames per clip (1 + 4k)")
    p.add_argument("--size", type=_size, default=(128, 128), help="WIDTHxHEIGHT, multiples of 8")
    p.add_argument("--out", default="eval_tokenizer", help="output prefix: writes OUT.json and OUT.md")
    p.set_defaults(handler="videopoet.eval.tokenizer:main")
    p = ev.add_parser("audio", help="audio codec: SI-SNR, mel distance, codebook usage, bitrate")
    p.add_argument("--model", required=True, help="directory with config.json + model.safetensors")
    p.add_argument("--data", required=True, help="shards/video folder, or synthetic:heldout[:N]")
    p.add_argument("--num", type=_positive_int, default=64, help="number of clips to evaluate")
    p.add_argument("--batch-size", type=_positive_int, default=8)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="eval_audio", help="output prefix: writes OUT.json and OUT.md")
    p.set_defaults(handler="videopoet.eval.audio:main")
    p = ev.add_parser("generation", help="prompt following, Fréchet distances, task fidelity")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="pipeline directory to generate with")
    src.add_argument("--real", action="store_true", help="score the world's own renderings (the ceiling)")
    p.add_argument("--num", type=_positive_int, default=64)
    p.add_argument("--split", choices=["train", "heldout"], default="heldout")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="eval_generation", help="output directory for JSON, Markdown, pictures")
    p.set_defaults(handler="videopoet.eval.generation:main")
    return parser


def _version() -> str:
    from videopoet import __version__

    return f"videopoet {__version__}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, func_name = args.handler.split(":")
    from videopoet.config import ConfigError
    from videopoet.errors import UserError

    try:
        handler = getattr(importlib.import_module(module_name), func_name)
        return int(handler(args) or 0)
    except (UserError, ConfigError, FileNotFoundError, NotADirectoryError) as e:
        print(f"videopoet: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("videopoet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
