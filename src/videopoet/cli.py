"""The ``videopoet`` command.

Every sub-command is declared here (so ``videopoet --help`` is fast and complete) and dispatched to a
``main(args)`` function in the module that owns the work; heavy imports happen only after dispatch.
Errors meant for the user (bad paths, bad configs, bad arguments, OSError about a file, ValueError from
model code's input checks) print one line and exit with 2; set VIDEOPOET_TRACEBACK=1 to see the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Upper bounds on sizes and counts: generous, but refused before any memory is allocated (a typo such as
# --num 10000000000 or --size 128000x128 is one line, not a frozen machine).
MAX_SIDE = 2048  # --size: pixels per side
MAX_FRAMES = 1025  # --frames: frames per clip (1 + 4 * 256)
MAX_CLIP_PIXELS = 2**28  # frames * width * height of one clip (~0.8 GB of uint8 RGB; 1025 frames at 512x512)
MAX_DEMO_CLIPS = 10_000  # videopoet demo --num
MAX_DATA_CLIPS = 10_000_000  # videopoet data synth --num
MAX_EVAL_CLIPS = 1_000_000  # videopoet eval ... --num
MAX_BATCH = 1024  # --batch-size
MAX_SHARD_CLIPS = 100_000  # --shard-size: clips per tar shard
MAX_SEED = 2**63 - 1  # the synthetic world's seeds are in [0, 2**63)


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments are one line on stderr (no usage block) and exit status 2, like every user error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} must look like WIDTHxHEIGHT, e.g. 128x128") from None
    if w <= 0 or h <= 0 or w % 8 or h % 8:
        raise argparse.ArgumentTypeError(f"size {text!r}: width and height must be positive multiples of 8")
    if w > MAX_SIDE or h > MAX_SIDE:
        raise argparse.ArgumentTypeError(f"size {text!r}: width and height are at most {MAX_SIDE}")
    return w, h


def _int_in(low: int, high: int, what: str):
    """An argparse type: an integer in [low, high], else a one-line error naming the bound."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            must = "a positive integer" if low == 1 else f"at least {low:,}"
            raise argparse.ArgumentTypeError(f"{text!r} must be {must}")
        if value > high:
            raise argparse.ArgumentTypeError(f"{text} is too large: at most {high:,} {what}")
        return value

    parse.__name__ = what
    return parse


_seed = _int_in(0, MAX_SEED, "")
_frames = _int_in(1, MAX_FRAMES, "frames per clip")
_batch = _int_in(1, MAX_BATCH, "clips per batch")


def _check_clip_budget(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    frames, size = getattr(args, "frames", None), getattr(args, "size", None)
    if frames and size and frames * size[0] * size[1] > MAX_CLIP_PIXELS:
        parser.exit(
            2,
            f"videopoet: error: --frames {frames} at --size {size[0]}x{size[1]} is "
            f"{frames * size[0] * size[1]:,} pixels per clip; at most {MAX_CLIP_PIXELS:,} "
            "(fewer frames or a smaller size)\n",
        )


def _add_overwrite(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--overwrite", action="store_true", help=f"replace {what} (refused without this flag)")


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
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in a folder that holds a run: its checkpoints, final/ and metrics are replaced",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="videopoet", description="VideoPoet: tokenizers, LM, training, eval.")
    parser.add_argument("--version", action="version", version=_version())
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_demo(top)
    _add_data(top)
    _add_train(top)
    _add_tokenize(top)
    _add_eval(top)
    _add_generate(top)
    _add_assemble(top)
    _add_upscale(top)
    return parser


def _add_demo(top) -> None:
    p = top.add_parser("demo", help="generate a few clips with sound from text (offline, on a CPU)")
    p.add_argument("--out", default="demo", help="output directory (default: ./demo)")
    p.add_argument("--model", help="pipeline folder (default: the bundled model)")
    p.add_argument(
        "--num",
        type=_int_in(1, MAX_DEMO_CLIPS, "demo clips"),
        default=3,
        help=f"number of clips (at most {MAX_DEMO_CLIPS:,})",
    )
    p.add_argument("--seed", type=_seed, default=0)
    _add_overwrite(p, "clips of the same seeds already in --out")
    p.set_defaults(handler="videopoet.demo:main")


def _add_clip_format(p: argparse.ArgumentParser, frames_help: str) -> None:
    p.add_argument(
        "--size", type=_size, default=(128, 128), help=f"WIDTHxHEIGHT, multiples of 8, at most {MAX_SIDE}"
    )
    p.add_argument("--frames", type=_frames, default=17, help=f"{frames_help}; at most {MAX_FRAMES}")


def _add_data(top) -> None:
    data = top.add_parser("data", help="make and inspect datasets").add_subparsers(
        dest="data_command", metavar="SUBCOMMAND", required=True
    )
    shard_size = _int_in(1, MAX_SHARD_CLIPS, "clips per shard")
    shard_help = f"clips per tar shard (at most {MAX_SHARD_CLIPS:,})"
    p = data.add_parser("synth", help="render synthetic-world clips into tar shards")
    p.add_argument("--out", required=True, help="output directory for shards")
    p.add_argument(
        "--num",
        type=_int_in(1, MAX_DATA_CLIPS, "clips"),
        required=True,
        help=f"number of clips (at most {MAX_DATA_CLIPS:,})",
    )
    p.add_argument("--seed", type=_seed, default=0, help="first seed; clip i uses seed + i")
    p.add_argument("--split", choices=["train", "heldout"], default="train")
    _add_clip_format(p, "frames per clip (1, 17 or 41)")
    p.add_argument("--shard-size", type=shard_size, default=256, help=shard_help)
    _add_overwrite(p, "the shards already in --out (other files there are left alone)")
    p.set_defaults(handler="videopoet.data.commands:synth")
    p = data.add_parser("pack", help="conform a folder of real videos into tar shards (for training)")
    p.add_argument("path", help="a folder of videos (captions from sidecar .txt or manifest.jsonl/.csv)")
    p.add_argument("--out", required=True, help="output directory for shards")
    _add_clip_format(p, "frames per clip (17 or 41)")
    p.add_argument("--shard-size", type=shard_size, default=256, help=shard_help)
    _add_overwrite(p, "the shards already in --out (other files there are left alone)")
    p.set_defaults(handler="videopoet.data.commands:pack")
    p = data.add_parser("check", help="scan a video folder or shard set; report usable clips and bad files")
    p.add_argument("path", help="a folder of videos or of tar shards")
    p.add_argument("--json", dest="json_out", help="also write the report as JSON here")
    p.add_argument(
        "--frames", type=_frames, default=17, help=f"clip length the scan checks for (at most {MAX_FRAMES})"
    )
    _add_overwrite(p, "an existing --json file")
    p.set_defaults(handler="videopoet.data.commands:check")


def _add_train(top) -> None:
    train = top.add_parser("train", help="train a component").add_subparsers(
        dest="train_command", metavar="COMPONENT", required=True
    )
    p = train.add_parser("video-tokenizer", help="train the MAGVIT-v2 video tokenizer")
    _add_train_args(p)
    p.set_defaults(handler="videopoet.train.video_tokenizer:main")
    p = train.add_parser("audio-tokenizer", help="train the SoundStream audio codec")
    _add_train_args(p)
    p.set_defaults(handler="videopoet.train.audio_tokenizer:main")
    p = train.add_parser("lm", help="train the prefix LM on token shards or tokenized-on-the-fly clips")
    _add_train_args(p)
    p.set_defaults(handler="videopoet.train.lm:main")
    p = train.add_parser("superres", help="train the token-space super-resolution transformer (2x)")
    _add_train_args(p)
    p.set_defaults(handler="videopoet.train.superres:main")


def _add_tokenize(top) -> None:
    p = top.add_parser("tokenize", help="pre-tokenize a dataset into token shards for the LM")
    p.add_argument(
        "--data", help="dataset spec: synthetic:train[:N], synthetic:heldout[:N], a video/shard folder"
    )
    p.add_argument("--out", required=True, help="folder of token shards (tokens-*.tar + tokens.json)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--tasks", nargs="+", metavar="TASK", help="store the conditions these tasks need")
    kinds = "inpainting outpainting_central outpainting_horizontal outpainting_vertical flow_depth".split()
    kinds_help = f"condition kinds: {', '.join(kinds)} or none (default: all)"
    which.add_argument("--conditions", nargs="+", choices=[*kinds, "none"], metavar="KIND", help=kinds_help)
    p.add_argument("--model", help="a pipeline folder with video_tokenizer/ and audio_tokenizer/")
    p.add_argument(
        "--video-tokenizer", help="video tokenizer folder (default: --model's, else the bundled one)"
    )
    p.add_argument("--audio-tokenizer", help="audio codec folder (default: --model's, else the bundled one)")
    p.add_argument(
        "--text", default="auto", help="minilm, none, a T5 folder, or auto (minilm when installed)"
    )
    p.add_argument("--text-only", action="store_true", help="add text embeddings to the shards in --out")
    p.add_argument("--num", type=_int_in(1, MAX_DATA_CLIPS, "clips"), help="tokenize the first N clips")
    p.add_argument("--seed", type=_seed, default=0, help="first synthetic seed; clip i uses seed + i")
    p.add_argument("--batch-size", type=_batch, default=8, help=f"clips per batch (at most {MAX_BATCH})")
    p.add_argument("--workers", type=_int_in(0, 256, "worker processes"), default=2, help="loader processes")
    shard_help = f"records per shard (at most {MAX_SHARD_CLIPS:,})"
    p.add_argument("--shard-size", type=_int_in(1, MAX_SHARD_CLIPS, "records"), default=256, help=shard_help)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    _add_clip_format(p, "frames per clip (1 + 4k: 17 or 41)")
    p.add_argument("--resume", action="store_true", help="continue the set in --out after its last shard")
    _add_overwrite(p, "the token set in --out, once the new one is complete")
    p.set_defaults(handler="videopoet.lm.tokenize:main")


def _add_eval_common(p: argparse.ArgumentParser, *, batch: bool = True) -> None:
    p.add_argument(
        "--num",
        type=_int_in(1, MAX_EVAL_CLIPS, "clips"),
        default=64,
        help=f"number of clips to evaluate (at most {MAX_EVAL_CLIPS:,})",
    )
    if batch:
        p.add_argument("--batch-size", type=_batch, default=8, help=f"clips per batch (at most {MAX_BATCH})")
        p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def _add_eval(top) -> None:
    ev = top.add_parser("eval", help="measure a component").add_subparsers(
        dest="eval_command", metavar="WHAT", required=True
    )
    _add_eval_tokenizers(ev)
    _add_eval_lm(ev)
    _add_eval_generation(ev)


def _add_eval_tokenizers(ev) -> None:
    p = ev.add_parser("tokenizer", help="video tokenizer: PSNR, SSIM, codebook usage")
    p.add_argument("--model", required=True, help="directory with config.json + model.safetensors")
    p.add_argument("--data", required=True, help="shards/video folder, or synthetic:heldout[:N]")
    _add_eval_common(p)
    _add_clip_format(p, "frames per clip (1 + 4k)")
    p.add_argument("--out", default="eval_tokenizer", help="output prefix: writes OUT.json and OUT.md")
    _add_overwrite(p, "an earlier report with the same --out")
    p.set_defaults(handler="videopoet.eval.tokenizer:main")
    p = ev.add_parser("audio", help="audio codec: SI-SNR, mel distance, codebook usage, bitrate")
    p.add_argument("--model", required=True, help="directory with config.json + model.safetensors")
    p.add_argument("--data", required=True, help="shards/video folder, or synthetic:heldout[:N]")
    _add_eval_common(p)
    p.add_argument("--out", default="eval_audio", help="output prefix: writes OUT.json and OUT.md")
    _add_overwrite(p, "an earlier report with the same --out")
    p.set_defaults(handler="videopoet.eval.audio:main")


def _add_eval_lm(ev) -> None:
    p = ev.add_parser("lm", help="prefix LM: held-out loss per task, beside a unigram baseline")
    p.add_argument(
        "--model", required=True, help="prefix LM folder (a run's final/; fp16 or int8) or a pipeline folder"
    )
    p.add_argument(
        "--data", required=True, help="held-out token shards (videopoet tokenize, the model's vocab)"
    )
    p.add_argument(
        "--baseline-data", metavar="DIR", help="training token shards: adds a unigram baseline per task"
    )
    p.add_argument(
        "--baseline-num",
        type=_int_in(1, MAX_EVAL_CLIPS, "records"),
        default=2000,
        help="records of --baseline-data the unigram is counted on (default 2000)",
    )
    _add_eval_common(p)
    p.add_argument(
        "--tasks",
        nargs="+",
        metavar="TASK",
        help="tasks to score, e.g. t2v i2v or t2v,i2v (default: every trained task)",
    )
    p.add_argument(
        "--seed", type=_seed, default=0, help="the training run's seed (the held-out examples' rng)"
    )
    p.add_argument("--out", default="eval_lm", help="output prefix: writes OUT.json and OUT.md")
    _add_overwrite(p, "an earlier report with the same --out")
    p.set_defaults(handler="videopoet.eval.lm:main")


def _add_eval_generation(ev) -> None:
    p = ev.add_parser("generation", help="prompt following, Fréchet distances, task fidelity")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="pipeline directory to generate with")
    src.add_argument("--real", action="store_true", help="score the world's own renderings (the ceiling)")
    _add_eval_common(p, batch=False)
    p.add_argument("--split", choices=["train", "heldout"], default="heldout")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument(
        "--tasks",
        nargs="+",
        metavar="TASK",
        help="tasks to score, e.g. t2v i2v or t2v,i2v (default: every task: t2v i2v continue inpaint "
        "outpaint stylize v2a a2v avcont t2a long)",
    )
    p.add_argument(
        "--guidance", type=float, default=1.0, help="t2v and long guidance scale (1 = none; others: default)"
    )
    p.add_argument(
        "--temperature",
        type=float,
        help="--model: sampling temperature of every task (default: 1, painting 0.25)",
    )
    p.add_argument("--top-k", type=_int_in(1, 2**31, "ids"), help="--model: sample among the k likeliest ids")
    p.add_argument("--device", default="cpu", help="--model: cpu (default), auto, cuda or cuda:N")
    p.add_argument("--out", default="eval_generation", help="output directory for JSON, Markdown, pictures")
    _add_overwrite(p, "an earlier report in --out")
    p.set_defaults(handler="videopoet.eval.generation:main")


def _add_generate(top) -> None:
    p = top.add_parser("generate", help="generate a clip (with sound) from a prompt or media files")
    p.add_argument("prompt", nargs="?", help="text prompt (text tasks; ignored by the others)")
    p.add_argument(
        "--task",
        default="t2v",
        help="t2v, t2i, i2v, continue, inpaint, outpaint, outpaint_h, outpaint_v, stylize, edit, v2a, a2v, "
        "avcont, t2a, uncond, or full names (default: t2v)",
    )
    p.add_argument("--image", help="image file (i2v, edit; avcont instead of --video)")
    p.add_argument("--video", help="video file (continue, inpaint/outpaint*, stylize, v2a, avcont)")
    p.add_argument("--audio", help="WAV or video file with sound (a2v; avcont, default: --video's sound)")
    p.add_argument(
        "--mask",
        metavar="FILE|REGION",
        help="inpaint/outpaint*: mask image (white = generate) or center, border, sides, top-bottom "
        "(default: the task's own region)",
    )
    p.add_argument(
        "--seconds",
        type=float,
        help="clip length, 1 + 4k frames at 8 fps nearest; longer than one window (17 frames) is made "
        "in windows (default: 17 frames; continue: the video + 1 s; v2a: the whole video)",
    )
    p.add_argument("--size", type=_size, default=(128, 128), help="WIDTHxHEIGHT, multiples of 8")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument(
        "--guidance",
        type=float,
        help="classifier-free guidance scale (1 = none; default: 3 for a task given a prompt, else 1)",
    )
    p.add_argument("--negative-prompt", help="text to steer away from (text tasks)")
    p.add_argument("--temperature", type=float, help="sampling temperature (default: 1; 0.25 for painting)")
    p.add_argument("--top-k", type=_int_in(1, 2**31, "ids"), help="sample among the k likeliest ids")
    p.add_argument("--model", help="pipeline folder (save_pretrained); default: the bundled model")
    p.add_argument("--out", default="videopoet.mp4", help="output .mp4, .gif (or .png for t2i)")
    p.add_argument("--gif", action="store_true", help="also write a GIF next to --out")
    p.add_argument("--no-audio", action="store_true", help="no sound track (skips video-to-audio)")
    upscale_help = "super-resolution 2x or 4x after generation (a pipeline folder with super_resolution/)"
    p.add_argument("--upscale", type=int, choices=[1, 2, 4], default=1, help=upscale_help)
    _add_overwrite(p, "an existing --out (and its .gif)")
    p.set_defaults(handler="videopoet.generate:main")


def _add_upscale(top) -> None:
    p = top.add_parser("upscale", help="upscale a clip 2x or 4x with a super-resolution model (keeps sound)")
    p.add_argument("input", metavar="IN", help="a video file (width and height multiples of 8)")
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument("--factor", type=int, choices=[2, 4], default=2, help="2 (one stage) or 4 (two stages)")
    p.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="DIR",
        help="super-resolution folder (videopoet train superres; default: the bundled one, when shipped); "
        "twice: stage 1 then stage 2 of --factor 4",
    )
    p.add_argument("--video-tokenizer", metavar="DIR", help="video tokenizer folder (default: the bundled)")
    p.add_argument("--prompt", help="text describing the clip (optional; text guidance needs it)")
    p.add_argument("--steps", type=_int_in(1, 1000, "steps"), default=24, help="MaskGIT steps per stage")
    p.add_argument(
        "--guidance-text",
        type=float,
        default=1.0,
        help="text guidance scale (with --prompt; default: 1, none)",
    )
    p.add_argument("--guidance-lowres", type=float, default=1.0, help="low-res condition guidance scale")
    p.add_argument(
        "--temperature", type=float, default=0.0, help="MaskGIT sampling temperature (default: 0, greedy)"
    )
    p.add_argument(
        "--consistency",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="back-project the output onto the input clip (downsampled, it gives the input back)",
    )
    p.add_argument(
        "--consistency-coarse",
        type=int,
        choices=(1, 2, 4, 8),
        default=1,
        help="back-project only below 1/C of the input's resolution (above it the model's detail stays)",
    )
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    _add_overwrite(p, "an existing --out")
    p.set_defaults(handler="videopoet.superres.upscale:main")


def _add_assemble(top) -> None:
    p = top.add_parser("assemble", help="build a pipeline folder from trained component folders")
    folder = "folder (a training run's final/)"
    p.add_argument("--video-tokenizer", required=True, metavar="DIR", help=f"video tokenizer {folder}")
    p.add_argument("--audio-tokenizer", required=True, metavar="DIR", help=f"audio codec {folder}")
    p.add_argument("--transformer", required=True, metavar="DIR", help=f"prefix LM {folder}")
    p.add_argument("--super-resolution", metavar="DIR", help=f"optional super-resolution {folder}")
    p.add_argument(
        "--text", default="minilm", metavar="SPEC", help="minilm, none, or a T5 folder: what tokenize used"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="pipeline folder to write")
    p.add_argument(
        "--int8",
        action="store_true",
        help="store the transformer (and SR model) int8 weight-only (half an fp16 file)",
    )
    _add_overwrite(p, "a pipeline already in --out")
    p.set_defaults(handler="videopoet.assemble:main")


def _version() -> str:
    from videopoet import __version__

    return f"videopoet {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_clip_budget(parser, args)
    module_name, func_name = args.handler.split(":")
    try:
        handler = getattr(importlib.import_module(module_name), func_name)
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print("videopoet: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        message = _user_message(e)
        if message is None or os.environ.get("VIDEOPOET_TRACEBACK"):
            raise  # a programming error keeps its traceback
        print(f"videopoet: error: {message}", file=sys.stderr)
        return 2


def _user_message(e: Exception) -> str | None:
    """The one line for an error meant for the user, or None for one that is not (a bug: traceback).

    User errors are UserError / ConfigError, OSError about a path (permissions, read-only file system,
    disk full, missing file, ...), and ValueError, which model code raises at its public entry points."""
    from videopoet.errors import UserError

    if isinstance(e, UserError | ValueError):
        text = str(e)
    elif isinstance(e, OSError):
        text = _os_error_text(e)
    else:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines) or type(e).__name__


def _os_error_text(e: OSError) -> str:
    if not e.strerror:
        return str(e) or type(e).__name__
    names = [str(f) for f in (e.filename, e.filename2) if f is not None]
    return f"{' -> '.join(names)}: {e.strerror}" if names else e.strerror


if __name__ == "__main__":
    sys.exit(main())
