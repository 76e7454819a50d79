"""``VideoPoetPipeline``: prompt and media in, frames and sound out. Glue only: the inputs are read
(``conditions.py``) and tokenized into a ``TokenRecord`` → ``lm/tasks.py``'s ``build_example`` (its prefix)
→ ``sampling.autoregressive.generate`` on ``output_plan`` → ``decode_output`` → the tokenizers' decoders.
docs/generation.md says what each task reads and the choices made here.

Dimension key: T frames, H W pixels, t h w latent grid, K audio RVQ levels, N audio samples (or codec
frames where it says so), S text slots, D text width.

Ground truth never reaches generation: the record holds the real input tokens and *placeholder* output
tokens (zeros of the output's shape, so ``build_example`` can lay out the whole sequence), and only
``ids[:prefix_len]`` is handed to the sampler. Given pixels come back unchanged: frame_prediction forces
the given frames' tokens during decoding (they are input tokens, also in the prefix) and pastes the given
frames over the decode; the painting tasks paste the kept pixels back; av_continuation its first frame
and the sound the prefix read.

Long video (``num_frames`` above ``window_frames``: the longest trained clip length, 17 frames for the
bundled shapes, that every step fits the LM's max_seq_len): the task makes the first window, then
frame_prediction windows continue from the last second of what exists (SEAM_LATENTS latent frames = 9
frames) until the clip is long enough. At each seam the conditioning frames are re-encoded; their real
tokens are forced in the window's output, and the window's decode (the conditioning frames' decode, then
the new frames) replaces them, so each window's frames come from one decode. Only the first window reads
the prompt (frame_prediction reads no text).

Sound: visual tasks get theirs by running video_to_audio on the generated frames afterwards
(``with_audio=True``, the default; the paper's zero-shot composition), in windows of ``window_frames``
overlapping like the video's and joined with an equal-power cross-fade of CROSSFADE_S at the end of each
overlap; text_to_audio is that composition by name; audio_to_video returns the given sound with its
frames; av_continuation generates frames and sound together. Each sampler call gets its own seed (seed,
seed + 1, … in order) and is reported to ``progress(done, total)``.

Checkpoint layout (``save_pretrained`` / ``from_pretrained``; diffusers-like, nothing pickled)::

    DIR/model_index.json     {"_class_name": "VideoPoetPipeline", "format_version": 1,
                              "video_tokenizer": "video_tokenizer", "audio_tokenizer": "audio_tokenizer",
                              "transformer": "transformer", "text_encoder": {"spec": "minilm"} | null,
                              "super_resolution": "super_resolution" | null (optional; absent = null)}
    DIR/video_tokenizer/     config.json + model.safetensors (each component's own save_pretrained)
    DIR/audio_tokenizer/
    DIR/transformer/
    DIR/super_resolution/    (only with a super-resolution model: ``pipe(..., upscale=2|4)`` runs it on
                             the finished frames' tokens, after the LM and the soundtrack)

The text encoder is a reference (its ``spec``, rebuilt with ``text.load_text_encoder``), never a copy.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from videopoet.components import PRETRAINED_ROOT
from videopoet.conditions import (
    CROSSFADE_S,
    FPS,
    SEAM_LATENTS,
    Window,
    audio_windows,
    check_media,
    clip_geometry,
    continuation_windows,
    crossfade,
    latents,
    load_audio,
    load_image,
    load_mask,
    load_video,
    painting_condition,
)
from videopoet.errors import UserError, require
from videopoet.lm import tasks
from videopoet.lm.records import TokenRecord, encode_captions
from videopoet.lm.tasks import TEMPORAL_FACTOR
from videopoet.lm.vocab import DURATIONS, Vocab
from videopoet.outputs import replace_folder

MODEL_INDEX = "model_index.json"
FORMAT_VERSION = 1
COMPONENTS = ("video_tokenizer", "audio_tokenizer", "transformer")  # folders; the text encoder is a reference
SUPER_RESOLUTION = "super_resolution"  # the optional component's key and folder
SUPPORTED_TASKS = tuple(tasks.TASKS)  # every task of the registry, compositions included
# Tasks whose output may be longer than one window (later windows by frame_prediction; video_to_audio:
# its sound in windows).
LONG_TASKS = ("unconditional", "text_to_video", "image_to_video", "text_to_audio", "frame_prediction",
              "video_to_audio")  # fmt: skip
_GENERATE_FIRST = ("unconditional", "text_to_video", "text_to_image", "image_to_video", "text_to_audio")
_COMPOSED = {
    "text_to_audio": ("text_to_video",),
    "editing": ("image_to_video", "stylization"),
}  # visual steps
_VISUAL_WITH_SOUND = (  # get sound from video_to_audio when with_audio
    "unconditional", "text_to_video", "image_to_video", "frame_prediction", *tasks.PAINTING_KINDS,
    "stylization", "editing",
)  # fmt: skip
_READS_AUDIO = ("video_to_audio", "audio_to_video", "av_continuation")
# The guidance scale of a task that reads a (non-empty) prompt when the caller names none; every other
# task samples unguided. The bundled model's sweep: docs/generation.md, "Guidance".
DEFAULT_GUIDANCE = 3.0


def default_guidance(task: str, prompt: str | None, guidance_scale: float | None) -> float:
    """``guidance_scale``, or when None: DEFAULT_GUIDANCE for a text task given a prompt, else 1."""
    if guidance_scale is not None:
        return guidance_scale
    return DEFAULT_GUIDANCE if prompt and "text" in tasks.task(task).inputs else 1.0


# The sampling temperature of an in/outpainting step when the caller names none; every other step samples
# at 1. The bundled model's comparison: docs/generation.md, "Temperature of the painting tasks".
PAINTING_TEMPERATURE = 0.25


def default_temperature(task: str, temperature: float | None) -> float:
    """``temperature``, or when None: PAINTING_TEMPERATURE for an in/outpainting step, else 1."""
    if temperature is not None:
        return temperature
    return PAINTING_TEMPERATURE if tasks.task(task).name in tasks.PAINTING_KINDS else 1.0


@dataclass
class VideoPoetOutput:
    frames: np.ndarray  # uint8 (T, H, W, 3); T = 1 for text_to_image
    audio: np.ndarray | None  # float32 (N,) mono in [-1, 1], N = T / fps · sample_rate; None: no sound
    sample_rate: int  # Hz of ``audio``
    fps: float  # frames per second of ``frames``


class VideoPoetPipeline:
    """The four components of a VideoPoet model and the tasks they run (see the module docstring)."""

    def __init__(self, video_tokenizer, audio_tokenizer, text_encoder, transformer, super_resolution=None):
        self.video_tokenizer = video_tokenizer.eval()
        self.super_resolution = None if super_resolution is None else super_resolution.eval()
        if super_resolution is not None:
            from videopoet.superres.upscale import check_vocabulary

            check_vocabulary(video_tokenizer, [super_resolution])
            sr_text = super_resolution.config.text_dim  # 0: a model without text, given none
            if text_encoder is not None and sr_text and text_encoder.dim != sr_text:
                raise UserError(
                    f"the text encoder gives {text_encoder.dim}-d embeddings; the super-resolution model "
                    f"takes {sr_text}"
                )
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
            index[SUPER_RESOLUTION] = None
            if self.super_resolution is not None:
                self.super_resolution.save_pretrained(tmp / SUPER_RESOLUTION)
                index[SUPER_RESOLUTION] = SUPER_RESOLUTION
            (tmp / MODEL_INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
            replace_folder(tmp, target)
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
        index = read_index(root / MODEL_INDEX)
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
        sr = None
        if index[SUPER_RESOLUTION] is not None:
            from videopoet.superres.model import SuperResTransformer

            sr = SuperResTransformer.from_pretrained(root / index[SUPER_RESOLUTION], device=device)
        return cls(parts["video_tokenizer"], parts["audio_tokenizer"], text_encoder, parts["transformer"], sr)

    @classmethod
    def _bundled(cls, device, text_encoder):
        if not (PRETRAINED_ROOT / "transformer").is_dir():
            raise UserError(
                f"no language model is bundled here ({PRETRAINED_ROOT / 'transformer'} is missing: reinstall "
                "the package, or train one with `videopoet train lm` and pass its pipeline folder)"
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
        sr = None
        if (PRETRAINED_ROOT / SUPER_RESOLUTION).is_dir():  # optional: bundled once it is trained
            from videopoet.superres.model import SuperResTransformer

            sr = SuperResTransformer.from_pretrained(device=device)
        return cls(video, audio, text_encoder, PrefixLM.from_pretrained(device=device), sr)

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
        mask=None,
        flow=None,
        depth=None,
        num_frames: int = 17,
        width: int = 128,
        height: int = 128,
        guidance_scale: float | None = None,
        negative_prompt: str | None = None,
        seed: int = 0,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        with_audio: bool = True,
        keep_first_frame: bool = False,
        progress: Callable[[int, int], None] | None = None,
        upscale: int = 1,
        compile: bool = False,
    ) -> VideoPoetOutput:
        """Run ``task`` (a name or alias of lm/tasks.py; all of SUPPORTED_TASKS) → ``VideoPoetOutput`` of
        ``num_frames`` frames at width × height (one frame for text_to_image). Media, as arrays or files:

        - ``image``: uint8 (H, W, 3) or an image file (image_to_video, editing);
        - ``video``: uint8 (T, H, W, 3) or a video file: the clip to continue (frame_prediction: all its
          frames, num_frames counts them too), paint (its first num_frames), restyle (stylization), give
          sound to (video_to_audio), or whose first frame av_continuation continues (or its image=);
        - ``audio``: float32 (N,) at ``sample_rate`` or a WAV / video file (audio_to_video; av_continuation,
          whose default is the video file's own sound);
        - ``mask`` (painting): bool (height, width) True = generate, a mask image (white = generate), or a
          region of ``conditions.REGIONS``; None: the task's trained region;
        - ``flow`` float32 (T − 1, H, W, 2) and ``depth`` float32 (T, H, W) of the stylization source at
          the output size (else computed: conditions.clip_geometry).

        Centre-cropped and resized to width × height. Visual tasks get sound from video_to_audio unless
        ``with_audio`` is False (a ValueError for video_to_audio and text_to_audio, whose output is sound;
        audio_to_video and av_continuation return their sound regardless); ``keep_first_frame``:
        stylization's variant that also reads the source's first frame. Clips longer than
        ``window_frames`` are made in windows (module docstring); ``progress(done, total)`` is called
        after each sampler call. Same arguments and seed → same output. Guidance (``guidance_scale`` ≠ 1
        or ``negative_prompt``) needs a text task and steers only its steps that read the prompt; None:
        ``default_guidance``. ``temperature`` applies to every sampler step; None: ``default_temperature``
        per step (cooler for the painting step, 1 for the others, its sound included). ``upscale`` 2 or 4:
        the super_resolution component's 2× stages (one or two) over the finished frames (the sound is
        made from the frames before upscaling). ``compile``
        (CUDA only): the sampler's decode step as one CUDA graph (``generate(compile=True)``), which pays
        a one-time compilation and then decodes faster: for many clips, not one."""
        name = tasks.task(task).name
        self._check_upscale(upscale)
        media = dict(image=image, video=video, audio=audio, mask=mask, flow=flow, depth=depth)
        check_media(name, media)
        guidance_scale = default_guidance(name, prompt, guidance_scale)
        self._check_options(name, keep_first_frame, with_audio, guidance_scale, negative_prompt, compile)
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        frames = 1 if name == "text_to_image" else num_frames
        self._check_shape(frames, width, height)
        sampling = dict(guidance_scale=guidance_scale, temperature=temperature, top_k=top_k, top_p=top_p,
                        compile=compile)  # fmt: skip
        ctx = _Context(prompt, negative_prompt, frames, width, height, seed, sampling, keep_first_frame)
        sound = _makes_sound(name, with_audio)
        window = self._window(name, ctx, sound)
        given = self._load(name, ctx, media)
        run = _Run(ctx, window, self._count_steps(name, given, ctx, window, sound), progress)
        if name == "av_continuation":
            return self._upscaled(self._output(*self._av_continuation(given, run)), upscale, ctx)
        out = self._frames(name, given, run)
        if name == "audio_to_video":
            return self._upscaled(self._output(out, given.audio), upscale, ctx)
        return self._upscaled(self._output(out, self._soundtrack(out, run) if sound else None), upscale, ctx)

    def _check_options(self, name, keep_first_frame, with_audio, guidance_scale, negative_prompt, compile):
        """The call's flags against its task and this pipeline's device: a ValueError naming the clash."""
        if keep_first_frame and name not in ("stylization", "editing"):
            raise ValueError(f"keep_first_frame is a stylization variant; task {name!r} has none")
        if not with_audio and name in ("video_to_audio", "text_to_audio"):
            raise ValueError(f"with_audio=False contradicts task {name!r}, whose output is sound")
        if "text" not in tasks.task(name).inputs and (guidance_scale != 1 or negative_prompt):
            raise ValueError(f"guidance needs a text prompt; task {name!r} reads none")
        if compile and self.device.type != "cuda":
            raise ValueError(f"compile=True captures CUDA graphs; this pipeline is on {self.device}")

    def window_frames(
        self, task: str, width: int = 128, height: int = 128, *, with_audio: bool = True,
        keep_first_frame: bool = False,
    ) -> int:  # fmt: skip
        """The most frames one window of ``task`` makes at width × height: the longest trained clip length
        (lm/vocab.py DURATIONS) at which every step it runs (the task, frame_prediction for long video,
        video_to_audio for sound) fits the LM's max_seq_len; where none does (small test models), the
        longest 1 + 4k below them that fits. ValueError when not even 5 frames fit."""
        name = tasks.task(task).name
        if name == "text_to_image":
            return 1
        steps = self._steps(name, _makes_sound(name, with_audio))
        size = (width, height, keep_first_frame)
        trained = [d for d in DURATIONS if self._fits(steps, d, *size)]
        if trained:
            return max(trained)
        tf = TEMPORAL_FACTOR
        fitting = [f for f in range(1 + tf, min(DURATIONS), tf) if self._fits(steps, f, *size)]
        if not fitting:
            raise ValueError(
                f"{name} at {width}×{height}: not even {1 + tf} frames fit the LM's max_seq_len "
                f"({self.transformer.config.max_seq_len})"
            )
        return max(fitting)

    def _steps(self, name: str, sound: bool) -> tuple[str, ...]:
        """The trained tasks one window of ``name`` runs."""
        steps = list(_COMPOSED.get(name, (name,)))
        if name in LONG_TASKS and name != "video_to_audio":
            steps.append("frame_prediction")
        if sound:
            steps.append("video_to_audio")
        return tuple(dict.fromkeys(steps))

    def _fits(self, steps, frames: int, width: int, height: int, first_frame: bool) -> bool:
        grid = self.video_tokenizer.latent_shape(frames, height, width)
        cfg, levels = self.transformer.config, self.audio_tokenizer.config.num_levels
        n = self.audio_tokenizer.num_frames(_audio_samples(frames, self.sample_rate))
        lengths = [
            tasks.sequence_length(
                step, self.vocab, grid=grid, audio_frames=n if step in _READS_AUDIO else 0,
                audio_levels=levels, text_slots=cfg.text_slots,
                first_frame=first_frame and step == "stylization",
            )
            for step in steps
        ]  # fmt: skip
        return max(lengths) - 1 <= cfg.max_seq_len  # the sampler never feeds the last output token (<eos>)

    def _window(self, name: str, ctx: _Context, sound: bool) -> int:
        """window_frames, after checking that a task that makes no long clips fits in one."""
        window = self.window_frames(
            name, ctx.width, ctx.height, with_audio=sound, keep_first_frame=ctx.keep_first_frame
        )
        size = (ctx.width, ctx.height, ctx.keep_first_frame)
        one_call = tuple(s for s in self._steps(name, sound) if s != "frame_prediction" or s == name)
        if ctx.frames > window and ctx.frames in DURATIONS and self._fits(one_call, ctx.frames, *size):
            # a trained length that fits without the continuation step (41 frames, portrait 17): one call
            return ctx.frames
        if (
            name not in LONG_TASKS
            and name != "text_to_image"
            and not self._fits(self._steps(name, sound=False), ctx.frames, *size)
        ):
            raise ValueError(
                f"{name} of {ctx.frames} frames at {ctx.width}×{ctx.height} does not fit the LM's "
                f"max_seq_len ({self.transformer.config.max_seq_len}): fewer frames or a smaller size (only "
                f"{', '.join(LONG_TASKS)} make clips longer than one window)"
            )
        return window

    def _check_upscale(self, upscale: int) -> None:
        if upscale not in (1, 2, 4):
            raise ValueError(f"upscale must be 1, 2 or 4, got {upscale!r}")
        if upscale > 1 and self.super_resolution is None:
            raise ValueError(
                "upscale needs a super_resolution component: this pipeline has none (train one with "
                "`videopoet train superres` and save a pipeline with it)"
            )

    def _upscaled(self, out: VideoPoetOutput, factor: int, ctx: _Context) -> VideoPoetOutput:
        """``out`` with its frames upscaled ``factor``× (1: as it is); the prompt conditions the stages."""
        if factor == 1:
            return out
        from videopoet.superres.upscale import TEXT_GUIDANCE, stages_for, upscale_frames

        text = text_mask = None
        reads_text = self.super_resolution.config.text_dim > 0
        if reads_text and ctx.prompt and ctx.prompt.strip() and self.text_encoder is not None:
            embeddings, mask = self.text_encoder.encode([ctx.prompt])
            text, text_mask = embeddings.to(self.device), mask.to(self.device)
        stages = stages_for([self.super_resolution], factor)
        scale = TEXT_GUIDANCE if text is not None else 1.0
        frames = upscale_frames(
            out.frames, self.video_tokenizer, stages, text=text, text_mask=text_mask, text_scale=scale,
            seed=ctx.seed, compile=ctx.sampling["compile"],
        )  # fmt: skip
        return dataclasses.replace(out, frames=frames)

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

    # ------------------------------------------------------------------------------------ the tasks
    def _load(self, name: str, ctx: _Context, media: dict) -> _Inputs:
        """The call's media as arrays at the output size, checked before any sampling."""
        w, h = ctx.width, ctx.height
        image = None if media["image"] is None else load_image(media["image"], w, h)
        video = None
        if media["video"] is not None:
            count = {"frame_prediction": None, "av_continuation": 1}.get(name, ctx.frames)
            video = load_video(media["video"], frames=count, width=w, height=h, fps=FPS)
        if name == "frame_prediction" and len(video) >= ctx.frames:
            raise ValueError(
                f"frame_prediction continues the {len(video)} given frames: num_frames (the whole output, "
                f"given frames included) must be more, got {ctx.frames}"
            )
        sound = media["audio"]
        if name == "av_continuation":
            if (image is None) == (video is None):
                raise ValueError("av_continuation reads its first frame from video= or from image=: give one")
            video = video if image is None else image[None]
            if sound is None and not isinstance(media["video"], str | os.PathLike):
                raise ValueError("av_continuation needs audio= unless video= is a file with sound")
            sound = media["video"] if sound is None else sound
        wave = None if sound is None else load_audio(sound, _audio_samples(ctx.frames, self.sample_rate),
                                                    self.sample_rate)  # fmt: skip
        mask = load_mask(media["mask"], name, h, w) if name in tasks.PAINTING_KINDS else None
        flow = depth = None
        if name == "stylization":
            flow, depth = clip_geometry(video, media["flow"], media["depth"], device=self.device)
        return _Inputs(image, video, wave, mask, flow, depth)

    def _count_steps(self, name: str, given: _Inputs, ctx: _Context, window: int, sound: bool) -> int:
        """Sampler calls the run makes (for ``progress``)."""
        total = ctx.frames
        if name in _GENERATE_FIRST:
            first = min(total, window)
            video = 1 + len(continuation_windows(first, total, window, SEAM_LATENTS))
        elif name == "frame_prediction":
            have = len(given.video)
            video = len(continuation_windows(have, total, window, latents(have)))
        else:
            video = {"video_to_audio": 0, "editing": 2}.get(name, 1)
        return video + (len(audio_windows(total, window)) if sound else 0)

    def _frames(self, name: str, given: _Inputs, run: _Run) -> np.ndarray:
        """The frames of every task but av_continuation, uint8 (T, H, W, 3)."""
        if name in _GENERATE_FIRST:
            step = _COMPOSED.get(name, (name,))[0]
            first = self._generate_video(
                step, run.call(step, min(run.ctx.frames, run.window)), image=given.image
            )
            return self._extend(first, run, SEAM_LATENTS)
        if name == "frame_prediction":
            out = self._extend(given.video, run, latents(len(given.video)))
            out[: len(given.video)] = given.video  # the given frames come back unchanged
            return out
        if name in tasks.PAINTING_KINDS:
            return self._paint(name, given, run)
        if name == "stylization":
            return self._stylize(given.video, given.flow, given.depth, run)
        if name == "editing":
            clip = self._generate_video("image_to_video", run.call("image_to_video", run.ctx.frames),
                                        image=given.image)  # fmt: skip
            return self._stylize(clip, *clip_geometry(clip, device=self.device), run)
        if name == "audio_to_video":
            return self._generate_video(name, run.call(name, run.ctx.frames), audio=given.audio)
        return given.video  # video_to_audio: the given frames, with new sound

    def _generate_video(self, name: str, ctx: _Context, *, image=None, audio=None) -> np.ndarray:
        """A visual task from text, an image (uint8 (H, W, 3)) or sound → uint8 frames (T, H, W, 3)."""
        grid = self.video_tokenizer.latent_shape(ctx.frames, ctx.height, ctx.width)
        video = np.zeros(grid, np.int32)  # placeholder output tokens: never reach the sampler
        forced = None
        if image is not None:
            video[:1] = self._encode_video(image[None])  # one frame = the first latent frame
            # the output's first latent frame is the image's own tokens, as frame_prediction's given ones
            forced = self.vocab.visual_grid_to_lm(torch.from_numpy(video[:1]).long())
        codes = None if audio is None else self._encode_audio(audio)
        record = self._record(ctx, video, codes, text="text" in tasks.task(name).inputs)
        tokens = self._sample(name, record, ctx, forced=forced)
        indices, _ = tasks.decode_output(name, tokens, self.vocab, grid, *self._audio_shape(codes))
        return self._decode_video(indices)

    def _extend(self, frames: np.ndarray, run: _Run, first_given: int) -> np.ndarray:
        """Continue ``frames`` to the call's length in frame_prediction windows (module docstring)."""
        total = run.ctx.frames
        for win in continuation_windows(len(frames), total, run.window, first_given):
            cond = frames[win.start : win.start + 1 + TEMPORAL_FACTOR * (win.given - 1)]
            frames = np.concatenate([frames[: win.start], self._prediction_window(cond, win, run)])[:total]
        return frames

    def _prediction_window(self, cond: np.ndarray, win: Window, run: _Run) -> np.ndarray:
        """One frame_prediction window: its first frames ``cond`` uint8 (1 + 4(k − 1), H, W, 3) → the
        decoded window uint8 (win.length, H, W, 3), whose first latent frames are cond's real tokens."""
        ctx = run.call("frame_prediction", win.length)
        grid = self.video_tokenizer.latent_shape(win.length, ctx.height, ctx.width)
        given = self._encode_video(cond)  # (k, h, w): causal, so the window's first k latent frames
        video = np.zeros(grid, np.int32)
        video[: win.given] = given
        forced = self.vocab.visual_grid_to_lm(torch.from_numpy(given).long())
        record = self._record(ctx, video, None, text=False)
        tokens = self._sample("frame_prediction", record, ctx, given=win.given, forced=forced)
        indices, _ = tasks.decode_output(
            "frame_prediction", tokens, self.vocab, grid, *self._audio_shape(None)
        )
        return self._decode_video(indices)

    def _paint(self, name: str, given: _Inputs, run: _Run) -> np.ndarray:
        """In/outpainting: the COMMIT condition of the kept pixels → the clip, kept pixels pasted back."""
        ctx = run.call(name, run.ctx.frames)
        grid = self.video_tokenizer.latent_shape(ctx.frames, ctx.height, ctx.width)
        cond = self._encode_condition(painting_condition(given.video, given.mask, name))
        record = self._record(ctx, np.zeros(grid, np.int32), None, text=False, conditions={name: cond})
        tokens = self._sample(name, record, ctx)
        indices, _ = tasks.decode_output(name, tokens, self.vocab, grid, *self._audio_shape(None))
        out = self._decode_video(indices)
        out[:, ~given.mask] = given.video[:, ~given.mask]
        return out

    def _stylize(self, source: np.ndarray, flow: np.ndarray, depth: np.ndarray, run: _Run) -> np.ndarray:
        """Stylization: the prompt + the flow/depth tokens of ``source`` (+ its first frame with
        keep_first_frame) → a new clip."""
        from videopoet.tokenizers.conditioning import flow_depth_video

        ctx = run.call("stylization", run.ctx.frames)
        grid = self.video_tokenizer.latent_shape(ctx.frames, ctx.height, ctx.width)
        video = np.zeros(grid, np.int32)
        if ctx.keep_first_frame:
            video[:1] = self._encode_video(source[:1])
        cond = self._encode_condition(flow_depth_video(flow, depth))  # as lm/records.py tokenizes it
        record = self._record(ctx, video, None, text=True, conditions={"flow_depth": cond})
        tokens = self._sample("stylization", record, ctx, first_frame=ctx.keep_first_frame)
        indices, _ = tasks.decode_output("stylization", tokens, self.vocab, grid, *self._audio_shape(None))
        return self._decode_video(indices)

    def _av_continuation(self, given: _Inputs, run: _Run) -> tuple[np.ndarray, np.ndarray]:
        """The first frame + the sound covering it → the whole clip and its sound (given parts unchanged)."""
        ctx = run.call("av_continuation", run.ctx.frames)
        grid = self.video_tokenizer.latent_shape(ctx.frames, ctx.height, ctx.width)
        video = np.zeros(grid, np.int32)
        video[:1] = self._encode_video(given.video[:1])
        codes = self._encode_audio(given.audio)  # (K, N)
        head = tasks.audio_head(grid[0], codes.shape[1])
        audio = np.zeros_like(codes)  # what follows the head is output: placeholders
        audio[:, :head] = codes[:, :head]
        record = self._record(ctx, video, audio, text=False)
        tokens = self._sample("av_continuation", record, ctx)
        tail, tail_codes = tasks.decode_output(
            "av_continuation", tokens, self.vocab, grid, *codes.shape[::-1]
        )
        frames = self._decode_video(torch.cat([torch.from_numpy(video[:1]).long(), tail]))
        frames[0] = given.video[0]
        sound = self._decode_audio(torch.cat([torch.from_numpy(audio[:, :head]).long(), tail_codes], 1),
                                   len(given.audio))  # fmt: skip
        kept = head * self.audio_tokenizer.config.hop  # the samples the prefix read
        sound[:kept] = given.audio[:kept]
        return frames, sound

    def _soundtrack(self, frames: np.ndarray, run: _Run) -> np.ndarray:
        """video_to_audio over ``frames`` uint8 (T, H, W, 3) → float32 (N,), in windows joined by a
        cross-fade when T is above the window."""
        length = min(len(frames), run.window)
        out, end = np.zeros(_audio_samples(len(frames), self.sample_rate), np.float32), 0
        fade = int(round(CROSSFADE_S * self.sample_rate))
        for start in audio_windows(len(frames), run.window):
            part = self._video_to_audio(frames[start : start + length], run.call("video_to_audio", length))
            end = crossfade(out, part, _audio_samples(start, self.sample_rate), end, fade)
        return out

    def _video_to_audio(self, frames: np.ndarray, ctx: _Context) -> np.ndarray:
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
        return self._decode_audio(codes, n)

    # ------------------------------------------------------------------------------------ records, sampling
    def _audio_shape(self, codes) -> tuple[int, int]:
        """(codec frames, levels) of the record's audio (0 frames when it has none)."""
        levels = self.audio_tokenizer.config.num_levels
        return (0, levels) if codes is None else (codes.shape[1], levels)

    def _record(self, ctx, video: np.ndarray, audio, *, text: bool, conditions=None) -> TokenRecord:
        text, mask = self._encode_prompt(ctx.prompt) if text else (None, None)
        return TokenRecord(
            "pipeline", ctx.prompt or "", video, audio, text, mask, conditions or {}, ctx.width, ctx.height,
            ctx.frames,
        )  # fmt: skip

    def _encode_prompt(self, prompt: str | None):
        """(float16 (S, D), bool (S,)) as training stored it; an empty prompt: one masked slot (no text)."""
        if not prompt or not prompt.strip():
            return np.zeros((1, self.transformer.config.text_dim), np.float16), np.zeros(1, bool)
        if self.text_encoder is None:
            raise UserError("this pipeline has no text encoder: it cannot read a prompt")
        return encode_captions(self.text_encoder, [prompt])[0]

    def _sample(self, name: str, record: TokenRecord, ctx, *, first_frame=False, given=None, forced=None):
        """The prefix of ``record`` under ``name`` → the sampled output segment, long (T_out,).
        ``given``: frame_prediction's given latent frames; ``forced``: LM ids (n,) the first n visual
        output positions take (the given frames' tokens); ``first_frame``: stylization's variant."""
        from videopoet.sampling.autoregressive import generate, output_plan

        reads_text = "text" in tasks.task(name).inputs  # _Run.call unguides the steps that read none
        ex = self._example(name, record, ctx.seed, first_frame=first_frame, given=given)
        negative = None
        if reads_text and ctx.negative_prompt:
            text, mask = self._encode_prompt(ctx.negative_prompt)
            neg = self._example(name, dataclasses.replace(record, text=text, text_mask=mask), ctx.seed,
                                first_frame=first_frame)  # fmt: skip
            negative = (neg.text.to(self.device), neg.text_mask.to(self.device))
        plan = output_plan(name, self.vocab, record.video.shape, *self._audio_shape(record.audio))
        if forced is not None:
            plan = _force(plan, forced.tolist())
        prefix = ex.ids[: ex.prefix_len].to(self.device)
        text_args = (ex.text.to(self.device), ex.text_mask.to(self.device)) if reads_text else (None, None)
        sampling = {**ctx.sampling, "temperature": default_temperature(name, ctx.sampling["temperature"])}
        out = generate(
            self.transformer, prefix, ex.prefix_len, *text_args, plan=plan, negative=negative, seed=ctx.seed,
            **sampling,
        )  # fmt: skip
        if ctx.on_step is not None:
            ctx.on_step()
        return out.cpu()

    def _example(self, name: str, record: TokenRecord, seed: int, *, first_frame=False, given=None):
        cfg = self.transformer.config
        ex = tasks.build_example(
            name, record, self.vocab, text_slots=cfg.text_slots, text_dim=cfg.text_dim,
            rng=np.random.default_rng(seed), first_frame=bool(first_frame),
        )  # fmt: skip
        if given is None:
            return ex
        # build_example draws frame_prediction's given latent frames at random (training); here they are
        # the ``given`` real ones: its one visual input segment, just before the prefix's last id, becomes
        # prediction_input(video, given) (lm/tasks.py)
        n, stop = record.video.size, ex.prefix_len - 1
        ids = ex.ids.clone()
        if ids[stop - n - 1] != Vocab.bov_i or ids[stop] != Vocab.eov_i:
            raise ValueError("frame_prediction's prefix is not laid out as lm/tasks.py documents")
        video = torch.from_numpy(record.video).long()
        ids[stop - n : stop] = self.vocab.visual_grid_to_lm(tasks.prediction_input(video, given))
        return dataclasses.replace(ex, ids=ids)

    # ------------------------------------------------------------------------------------ media ↔ tokens
    def _encode_video(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (T, H, W, 3) → int32 (t, h, w) tokenizer indices."""
        from videopoet.data.sample import frames_to_tensor

        return self._encode_condition(frames_to_tensor(frames)[None])

    def _encode_condition(self, video: torch.Tensor) -> np.ndarray:
        """float (1, 3, T, H, W) in [-1, 1] → int32 (t, h, w) tokenizer indices."""
        return self.video_tokenizer.encode(video.to(self.device))[0].to(torch.int32).cpu().numpy()

    def _decode_video(self, indices: torch.Tensor) -> np.ndarray:
        from videopoet.data.sample import tensor_to_frames

        return tensor_to_frames(self.video_tokenizer.decode(indices[None].to(self.device))[0])

    def _encode_audio(self, wave: np.ndarray) -> np.ndarray:
        """float32 (N,) → int32 (K, N // hop) codec codes."""
        x = torch.from_numpy(np.ascontiguousarray(wave, np.float32))[None, None].to(self.device)
        return self.audio_tokenizer.encode(x)[0].to(torch.int32).cpu().numpy()

    def _decode_audio(self, codes: torch.Tensor, samples: int) -> np.ndarray:
        """long (K, N') codec codes → float32 (samples,)."""
        return self.audio_tokenizer.decode(codes[None].to(self.device), length=samples)[0, 0].cpu().numpy()


@dataclass(frozen=True)
class _Context:
    """One sampler call's settings (``_Run.call`` makes them from the call's)."""

    prompt: str | None
    negative_prompt: str | None
    frames: int
    width: int
    height: int
    seed: int
    sampling: dict
    keep_first_frame: bool = False
    on_step: Callable[[], None] | None = None  # called after the sampler returns

    def unguided(self, seed: int) -> _Context:
        """The settings of a step that reads no text: another seed, no guidance."""
        sampling = {**self.sampling, "guidance_scale": 1.0}
        return dataclasses.replace(self, seed=seed, negative_prompt=None, sampling=sampling)


@dataclass
class _Run:
    """One call's sampler steps: each gets the next seed and is reported to ``progress``."""

    ctx: _Context  # the call's settings; ctx.frames is the whole output's length
    window: int  # most frames one sampler call makes
    total: int  # sampler calls the call makes
    progress: Callable[[int, int], None] | None
    issued: int = 0
    done: int = 0

    def call(self, task: str, frames: int) -> _Context:
        """The settings of the next sampler call: ``frames`` long, seed + calls so far, guided only when
        ``task`` reads the prompt."""
        seed = self.ctx.seed + self.issued
        self.issued += 1
        ctx = dataclasses.replace(self.ctx, frames=frames, seed=seed, on_step=self.step_done)
        return ctx if "text" in tasks.task(task).inputs else ctx.unguided(seed)

    def step_done(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


class _Inputs(NamedTuple):
    """A call's media at the output size (None where the task reads none)."""

    image: np.ndarray | None  # uint8 (H, W, 3)
    video: np.ndarray | None  # uint8 (T, H, W, 3)
    audio: np.ndarray | None  # float32 (N,) at sample_rate, the output's length
    mask: np.ndarray | None  # bool (H, W), True = generate
    flow: np.ndarray | None  # float32 (T − 1, H, W, 2)
    depth: np.ndarray | None  # float32 (T, H, W)


def _force(plan: list, ids: list[int]) -> list:
    """``plan`` with its first len(ids) visual positions (after <bov_o>) forced to ``ids``."""
    if not all(isinstance(entry, range) for entry in plan[1 : 1 + len(ids)]):
        raise ValueError("the forced ids must fall on the output's first visual positions")
    return [plan[0], *ids, *plan[1 + len(ids) :]]


def _makes_sound(name: str, with_audio: bool) -> bool:
    """Whether the output's sound comes from video_to_audio over its frames."""
    return name in ("text_to_audio", "video_to_audio") or (with_audio and name in _VISUAL_WITH_SOUND)


def _audio_samples(frames: int, sample_rate: int) -> int:
    """Samples of sound that last as long as ``frames`` frames at FPS (17 → 34,000 at 16 kHz)."""
    return int(round(frames / FPS * sample_rate))


def read_index(path: Path) -> dict:
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
    sr = index.setdefault(SUPER_RESOLUTION, None)
    if sr is not None and (not isinstance(sr, str) or not (path.parent / sr).is_dir()):
        raise UserError(f"{path}: {SUPER_RESOLUTION} must be null or a folder next to it (got {sr!r})")
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
