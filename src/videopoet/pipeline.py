"""``VideoPoetPipeline``: prompt and media in, frames and sound out. Glue only: tokenize the inputs into a
``TokenRecord`` → ``lm/tasks.py``'s ``build_example`` (its prefix) → ``sampling.autoregressive.generate``
on ``output_plan`` → ``decode_output`` → the tokenizers' decoders.

Dimension key: T frames, H W pixels, t h w latent grid, K audio RVQ levels, N audio samples (or codec
frames where it says so), S text slots, D text width.

Ground truth never reaches generation: the record holds the real input tokens and *placeholder* output
tokens (zeros of the output's shape, so ``build_example`` can lay out the whole sequence), and only
``ids[:prefix_len]`` is handed to the sampler.

Sound: visual tasks (text_to_video, image_to_video) get their sound by running video_to_audio on the
generated frames afterwards (``with_audio=True``, the default), the paper's zero-shot composition;
text_to_audio is that composition by name; audio_to_video returns the given sound with its frames.

Checkpoint layout (``save_pretrained`` / ``from_pretrained``; diffusers-like, nothing pickled)::

    DIR/model_index.json     {"_class_name": "VideoPoetPipeline", "format_version": 1,
                              "video_tokenizer": "video_tokenizer", "audio_tokenizer": "audio_tokenizer",
                              "transformer": "transformer", "text_encoder": {"spec": "minilm"} | null}
    DIR/video_tokenizer/     config.json + model.safetensors (each component's own save_pretrained)
    DIR/audio_tokenizer/
    DIR/transformer/

The text encoder is a reference (its ``spec``, rebuilt with ``text.load_text_encoder``), never a copy.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from videopoet.components import PRETRAINED_ROOT
from videopoet.errors import UserError, require
from videopoet.lm import tasks
from videopoet.lm.records import TokenRecord, encode_captions
from videopoet.lm.vocab import Vocab

MODEL_INDEX = "model_index.json"
FORMAT_VERSION = 1
COMPONENTS = ("video_tokenizer", "audio_tokenizer", "transformer")  # folders; the text encoder is a reference
FPS = 8  # frames per second the tokenizers and the LM are trained at (the synthetic world's rate)
# Tasks whose inputs are tokenizable today. To come (issue 15): frame_prediction (continuation), the
# painting tasks (a mask or named region → COMMIT tokens), stylization (flow + depth of a source video),
# av_continuation and editing.
SUPPORTED_TASKS = (
    "text_to_video",
    "text_to_image",
    "image_to_video",
    "video_to_audio",
    "audio_to_video",
    "text_to_audio",
)
_VISUAL_WITH_SOUND = ("text_to_video", "image_to_video")  # get sound from video_to_audio when with_audio


@dataclass
class VideoPoetOutput:
    frames: np.ndarray  # uint8 (T, H, W, 3); T = 1 for text_to_image
    audio: np.ndarray | None  # float32 (N,) mono in [-1, 1], N = T / fps · sample_rate; None: no sound
    sample_rate: int  # Hz of ``audio``
    fps: float  # frames per second of ``frames``


class VideoPoetPipeline:
    """The four components of a VideoPoet model and the tasks they run (see the module docstring)."""

    def __init__(self, video_tokenizer, audio_tokenizer, text_encoder, transformer):
        self.video_tokenizer = video_tokenizer.eval()
        self.audio_tokenizer = audio_tokenizer.eval()
        self.text_encoder = text_encoder
        self.transformer = transformer.eval()
        a = audio_tokenizer.config
        self.vocab = Vocab(video_tokenizer.config.codebook_size, a.num_levels, a.codebook_size)
        cfg = transformer.config
        if self.vocab.size != cfg.vocab_size:
            raise UserError(
                f"the tokenizers make a vocabulary of {self.vocab.size} ids but the transformer has "
                f"{cfg.vocab_size}: they were not trained together"
            )
        if text_encoder is not None and text_encoder.dim != cfg.text_dim:
            raise UserError(
                f"the text encoder gives {text_encoder.dim}-d embeddings; the LM takes {cfg.text_dim}"
            )

    # ------------------------------------------------------------------------------------ save / load
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``model_index.json`` and one folder per component, atomically (into a temporary sibling
        renamed into place); a non-empty folder that is not a pipeline is refused, never deleted."""
        target = Path(os.path.abspath(directory))
        if target.exists() and (
            not target.is_dir() or (any(target.iterdir()) and not (target / MODEL_INDEX).is_file())
        ):
            raise UserError(f"{target} exists and is not an empty folder or a pipeline: choose another place")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        index = {"_class_name": type(self).__name__, "format_version": FORMAT_VERSION}
        try:
            tmp.mkdir()
            for name in COMPONENTS:
                getattr(self, name).save_pretrained(tmp / name)
                index[name] = name
            index["text_encoder"] = None if self.text_encoder is None else {"spec": self.text_encoder.spec}
            (tmp / MODEL_INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            if target.exists():
                os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return Path(directory)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, *, device="cpu", text_encoder=None):
        """Load a ``save_pretrained`` folder; None = the bundled default. ``text_encoder`` overrides the
        one model_index.json references (e.g. one already loaded). Problems: one-line UserError."""
        from videopoet.lm.transformer import PrefixLM
        from videopoet.tokenizers.audio import AudioTokenizer
        from videopoet.tokenizers.video import VideoTokenizer

        if path is None:
            return cls._bundled(device, text_encoder)
        root = Path(path)
        index = _read_index(root / MODEL_INDEX)
        classes = {
            "video_tokenizer": VideoTokenizer,
            "audio_tokenizer": AudioTokenizer,
            "transformer": PrefixLM,
        }
        parts = {
            name: classes[name].from_pretrained(root / index[name], device=device) for name in COMPONENTS
        }
        if text_encoder is None and index["text_encoder"] is not None:
            from videopoet.text import load_text_encoder

            text_encoder = load_text_encoder(index["text_encoder"]["spec"], device=device)
        return cls(parts["video_tokenizer"], parts["audio_tokenizer"], text_encoder, parts["transformer"])

    @classmethod
    def _bundled(cls, device, text_encoder):
        if not (PRETRAINED_ROOT / "transformer").is_dir():
            raise UserError(
                "no language model is bundled with this version yet: train one with `videopoet train lm` "
                "and pass its pipeline folder to VideoPoetPipeline.from_pretrained(path)"
            )
        from videopoet.lm.transformer import PrefixLM
        from videopoet.text import load_text_encoder
        from videopoet.tokenizers.audio import AudioTokenizer
        from videopoet.tokenizers.video import VideoTokenizer

        video, audio = (
            VideoTokenizer.from_pretrained(device=device),
            AudioTokenizer.from_pretrained(device=device),
        )
        text_encoder = text_encoder or load_text_encoder(device=device)
        return cls(video, audio, text_encoder, PrefixLM.from_pretrained(device=device))

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def sample_rate(self) -> int:
        return self.audio_tokenizer.config.sample_rate

    # ------------------------------------------------------------------------------------ generation
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | None = None,
        *,
        task: str = "text_to_video",
        image=None,
        video=None,
        audio=None,
        num_frames: int = 17,
        width: int = 128,
        height: int = 128,
        guidance_scale: float = 1.0,
        negative_prompt: str | None = None,
        seed: int = 0,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        with_audio: bool = True,
    ) -> VideoPoetOutput:
        """Run ``task`` (a name or alias) → ``VideoPoetOutput``. Supported: text_to_video, text_to_image
        (one frame), image_to_video (``image``: uint8 (H, W, 3) or an image file; centre-cropped and
        resized), video_to_audio (``video``: uint8 (T, H, W, 3) or a video file; returns its frames with
        the generated sound), audio_to_video (``audio``: float32 (N,) at ``sample_rate`` or a WAV / video
        file; returns it with the generated frames), text_to_audio (text_to_video then video_to_audio).
        text_to_video and image_to_video get sound by running video_to_audio after them unless
        ``with_audio`` is False. Still to come: continuation, inpainting / outpainting, stylization,
        audio-video continuation, editing (ValueError until then). Same arguments and seed → same output.
        Guidance (``guidance_scale`` ≠ 1 or ``negative_prompt``) needs a text task."""
        name = tasks.task(task).name
        if name not in SUPPORTED_TASKS:
            raise ValueError(
                f"task {name!r} is not supported by the pipeline yet; use one of {SUPPORTED_TASKS}"
            )
        frames = 1 if name == "text_to_image" else num_frames
        self._check_shape(frames, width, height)
        sampling = dict(guidance_scale=guidance_scale, temperature=temperature, top_k=top_k, top_p=top_p)
        ctx = _Context(prompt, negative_prompt, frames, width, height, seed, sampling)
        if name == "video_to_audio":
            clip = self._load_video(video, ctx)
            return self._output(clip, self._video_to_audio(clip, ctx))
        if name == "audio_to_video":
            wave = self._load_audio(audio, ctx)
            return self._output(self._generate_video(name, ctx, audio=wave), wave)
        out = self._generate_video("text_to_video" if name == "text_to_audio" else name, ctx, image=image)
        sound = None
        if name == "text_to_audio" or (with_audio and name in _VISUAL_WITH_SOUND):
            sound = self._video_to_audio(out, ctx.unguided(seed + 1))
        return self._output(out, sound)

    def _output(self, frames: np.ndarray, audio: np.ndarray | None) -> VideoPoetOutput:
        return VideoPoetOutput(frames, audio, self.sample_rate, float(FPS))

    def _check_shape(self, frames: int, width: int, height: int) -> None:
        cfg = self.video_tokenizer.config
        tf, sf = cfg.temporal_factor, cfg.spatial_factor
        if frames < 1 or (frames - 1) % tf or width < sf or height < sf or width % sf or height % sf:
            raise ValueError(
                f"num_frames must be 1 + {tf}·k (5, 9, 17, 41, …) and width, height positive multiples of "
                f"{sf}; got {frames} frames of {width}×{height}"
            )

    def _generate_video(self, name: str, ctx, *, image=None, audio=None) -> np.ndarray:
        """A visual task → uint8 frames (T, H, W, 3) (T = 1 for text_to_image)."""
        grid = self.video_tokenizer.latent_shape(ctx.frames, ctx.height, ctx.width)
        video = np.zeros(grid, np.int32)  # placeholder output tokens: never reach the sampler
        if name == "image_to_video":
            picture = _load_image(image, ctx.width, ctx.height)
            video[:1] = self._encode_video(picture[None])  # one frame = the first latent frame
        codes = None if audio is None else self._encode_audio(audio)
        record = self._record(ctx, video, codes, text="text" in tasks.task(name).inputs)
        tokens = self._sample(name, record, ctx)
        indices, _ = tasks.decode_output(name, tokens, self.vocab, grid, *self._audio_shape(codes))
        return self._decode_video(indices)

    def _video_to_audio(self, frames: np.ndarray, ctx) -> np.ndarray:
        """uint8 frames (T, H, W, 3) → generated float32 sound (N,) of the same length."""
        n = _audio_samples(len(frames), self.sample_rate)
        placeholder = np.zeros(
            (self.audio_tokenizer.config.num_levels, self.audio_tokenizer.num_frames(n)), np.int32
        )
        record = self._record(ctx, self._encode_video(frames), placeholder, text=False)
        tokens = self._sample("video_to_audio", record, ctx)
        _, codes = tasks.decode_output(
            "video_to_audio", tokens, self.vocab, record.video.shape, *placeholder.shape[::-1]
        )
        return self.audio_tokenizer.decode(codes[None].to(self.device), length=n)[0, 0].cpu().numpy()

    def _audio_shape(self, codes) -> tuple[int, int]:
        """(codec frames, levels) of the record's audio (0 frames when it has none)."""
        levels = self.audio_tokenizer.config.num_levels
        return (0, levels) if codes is None else (codes.shape[1], levels)

    def _record(self, ctx, video: np.ndarray, audio: np.ndarray | None, *, text: bool) -> TokenRecord:
        text, mask = self._encode_prompt(ctx.prompt) if text else (None, None)
        return TokenRecord(
            "pipeline", ctx.prompt or "", video, audio, text, mask, {}, ctx.width, ctx.height, ctx.frames
        )

    def _encode_prompt(self, prompt: str | None):
        """(float16 (S, D), bool (S,)) as training stored it; an empty prompt: one masked slot (no text)."""
        if not prompt or not prompt.strip():
            return np.zeros((1, self.transformer.config.text_dim), np.float16), np.zeros(1, bool)
        if self.text_encoder is None:
            raise UserError("this pipeline has no text encoder: it cannot read a prompt")
        return encode_captions(self.text_encoder, [prompt])[0]

    def _sample(self, name: str, record: TokenRecord, ctx) -> torch.Tensor:
        """The prefix of ``record`` under ``name`` → the sampled output segment, long (T_out,)."""
        from videopoet.sampling.autoregressive import generate, output_plan

        reads_text = "text" in tasks.task(name).inputs
        if not reads_text and (ctx.sampling["guidance_scale"] != 1 or ctx.negative_prompt):
            raise ValueError(f"guidance needs a text prompt; task {name!r} reads none")
        ex = self._example(name, record, ctx.seed)
        negative = None
        if reads_text and ctx.negative_prompt:
            text, mask = self._encode_prompt(ctx.negative_prompt)
            neg = self._example(name, dataclasses.replace(record, text=text, text_mask=mask), ctx.seed)
            negative = (neg.text.to(self.device), neg.text_mask.to(self.device))
        plan = output_plan(name, self.vocab, record.video.shape, *self._audio_shape(record.audio))
        prefix = ex.ids[: ex.prefix_len].to(self.device)
        text_args = (ex.text.to(self.device), ex.text_mask.to(self.device)) if reads_text else (None, None)
        out = generate(
            self.transformer, prefix, ex.prefix_len, *text_args, plan=plan, negative=negative, seed=ctx.seed,
            **ctx.sampling,
        )  # fmt: skip
        return out.cpu()

    def _example(self, name: str, record: TokenRecord, seed: int) -> tasks.Example:
        cfg = self.transformer.config
        return tasks.build_example(
            name, record, self.vocab, text_slots=cfg.text_slots, text_dim=cfg.text_dim,
            rng=np.random.default_rng(seed),
        )  # fmt: skip

    # ------------------------------------------------------------------------------------ media ↔ tokens
    def _encode_video(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (T, H, W, 3) → int32 (t, h, w) tokenizer indices."""
        from videopoet.data.sample import frames_to_tensor

        x = frames_to_tensor(frames)[None].to(self.device)  # (1, 3, T, H, W)
        return self.video_tokenizer.encode(x)[0].to(torch.int32).cpu().numpy()

    def _decode_video(self, indices: torch.Tensor) -> np.ndarray:
        from videopoet.data.sample import tensor_to_frames

        return tensor_to_frames(self.video_tokenizer.decode(indices[None].to(self.device))[0])

    def _encode_audio(self, wave: np.ndarray) -> np.ndarray:
        """float32 (N,) → int32 (K, N // hop) codec codes."""
        x = torch.from_numpy(np.ascontiguousarray(wave, np.float32))[None, None].to(self.device)
        return self.audio_tokenizer.encode(x)[0].to(torch.int32).cpu().numpy()

    def _load_video(self, video, ctx) -> np.ndarray:
        """A path or uint8 (T, H, W, 3) → the first ``ctx.frames`` frames at width × height."""
        from videopoet.data.media import conform_clip, read_video, resize_center_crop

        if video is None:
            raise ValueError("video_to_audio needs video= (uint8 (T, H, W, 3) frames or a video file)")
        if isinstance(video, str | os.PathLike):
            data = read_video(video, with_audio=False)
            return conform_clip(data, start=0.0, num_frames=ctx.frames, fps=FPS, width=ctx.width,
                                height=ctx.height, sample_rate=self.sample_rate).frames  # fmt: skip
        video = np.asarray(video)
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3 or len(video) < ctx.frames:
            raise ValueError(
                f"video must be uint8 (T ≥ {ctx.frames}, H, W, 3), got {video.dtype} {video.shape}"
            )
        return resize_center_crop(video[: ctx.frames], ctx.width, ctx.height)

    def _load_audio(self, audio, ctx) -> np.ndarray:
        """A path (WAV or a video with sound) or float32 (N,) at ``sample_rate`` → exactly the clip's
        samples (cut, or padded with silence)."""
        from videopoet.data.media import read_video, read_wav, resample_audio

        if audio is None:
            raise ValueError("audio_to_video needs audio= (float32 (N,) samples or a WAV / video file)")
        if isinstance(audio, str | os.PathLike):
            if str(audio).lower().endswith(".wav"):
                data = read_wav(audio)
                audio = resample_audio(data.audio, data.sample_rate, self.sample_rate)
            else:
                path, audio = audio, read_video(audio, sample_rate=self.sample_rate).audio
                if audio is None:
                    raise UserError(f"{path}: the file has no sound")
        audio = np.asarray(audio)
        if audio.ndim != 1 or audio.dtype.kind != "f":
            raise ValueError(
                f"audio must be float (N,) mono at {self.sample_rate} Hz, got {audio.dtype} {audio.shape}"
            )
        n = _audio_samples(ctx.frames, self.sample_rate)
        out = np.zeros(n, np.float32)
        out[: min(n, len(audio))] = np.clip(audio[:n], -1, 1)
        return out


@dataclass(frozen=True)
class _Context:
    """One call's settings, handed to the steps."""

    prompt: str | None
    negative_prompt: str | None
    frames: int
    width: int
    height: int
    seed: int
    sampling: dict

    def unguided(self, seed: int) -> _Context:
        """The settings of a composition's next step: another seed, no guidance (it reads no text)."""
        sampling = {**self.sampling, "guidance_scale": 1.0}
        return dataclasses.replace(self, seed=seed, negative_prompt=None, sampling=sampling)


def _audio_samples(frames: int, sample_rate: int) -> int:
    """Samples of sound that last as long as ``frames`` frames at FPS (17 → 34,000 at 16 kHz)."""
    return int(round(frames / FPS * sample_rate))


def _load_image(image, width: int, height: int) -> np.ndarray:
    """A path or uint8 (H, W, 3) → uint8 (height, width, 3), centre-cropped and resized."""
    from videopoet.data.media import resize_center_crop

    if image is None:
        raise ValueError("image_to_video needs image= (uint8 (H, W, 3) or an image file)")
    if isinstance(image, str | os.PathLike):
        Image = require("PIL.Image")
        if not Path(image).is_file():
            raise UserError(f"{image}: no such image file")
        try:
            with Image.open(image) as im:
                image = np.asarray(im.convert("RGB"))
        except OSError as e:
            raise UserError(f"{image}: not a readable image ({e})") from None
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    return resize_center_crop(image[None], width, height)[0]


def _read_index(path: Path) -> dict:
    """model_index.json, checked: every component folder named and present → the dict."""
    if not path.is_file():
        raise UserError(
            f"{path} not found: a pipeline folder is written by VideoPoetPipeline.save_pretrained"
        )
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({type(e).__name__})") from None
    if not isinstance(index, dict):
        raise UserError(f"{path} must hold a JSON object")
    for name in COMPONENTS:
        folder = index.get(name)
        if not isinstance(folder, str) or not (path.parent / folder).is_dir():
            raise UserError(f"{path}: component {name!r} names no folder next to it (got {folder!r})")
    ref = index.get("text_encoder")
    if ref is not None and not (isinstance(ref, dict) and isinstance(ref.get("spec"), str)):
        raise UserError(f'{path}: text_encoder must be null or {{"spec": ...}}, got {ref!r}')
    index.setdefault("text_encoder", None)
    return index


# ---------------------------------------------------------------------------------------- export
def export_to_video(output: VideoPoetOutput, path: str | Path) -> Path:
    """Write ``output`` as an mp4 (H.264 + AAC when it has sound), atomically. Needs PyAV (media extra)."""
    from videopoet.data.media import write_mp4

    require("av")
    write_mp4(path, output.frames, output.fps, output.audio, output.sample_rate, pad_to_even=True)
    return Path(path)


def export_to_gif(output: VideoPoetOutput, path: str | Path) -> Path:
    """Write ``output``'s frames as an animated GIF (no sound), atomically."""
    from videopoet.data.media import write_gif

    write_gif(path, output.frames, output.fps)
    return Path(path)
