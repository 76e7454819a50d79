"""The task registry: every VideoPoet task by name, the one place task names live (spec §3).

Each ``TaskSpec`` says what a task reads and writes; the conditioning code (``tokenizers/conditioning.py``),
the evaluation (``eval/generation.py``) and the command line refer to tasks through ``task(name_or_alias)``.
Modalities: ``text`` (prompt embeddings), ``video``, ``image`` (one frame = the first latent frame),
``audio``, ``flow_depth`` (optical flow + depth tokenized as a video, for stylization).

Compositions (``composed_of``) run their steps one after another at inference (spec §3: tasks compose
zero-shot); the LM is never trained on them.

Layout of this module: the registry (``TaskSpec``, ``TASKS``, ``task``), then — added with the LM's
training data — one small declarative sequence builder per trained task, each returning
(prefix, target, loss mask) and keyed by ``TaskSpec.name``.
"""

from __future__ import annotations

from dataclasses import dataclass

MODALITIES = ("text", "video", "image", "audio", "flow_depth")


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    name: str  # canonical name, e.g. "image_to_video"
    alias: str  # short command-line name, e.g. "i2v"
    description: str  # one line for --help and reports
    inputs: tuple[str, ...]  # modalities the prefix reads (empty: unconditional)
    outputs: tuple[str, ...]  # modalities the model writes
    composed_of: tuple[str, ...] = ()  # names of the tasks run in turn; empty for a trained task

    def __post_init__(self) -> None:
        unknown = [m for m in (*self.inputs, *self.outputs) if m not in MODALITIES]
        if unknown:
            raise ValueError(f"task {self.name!r}: unknown modalities {unknown}; use {MODALITIES}")
        if not self.outputs:
            raise ValueError(f"task {self.name!r} writes nothing")


def _specs(*specs: TaskSpec) -> dict[str, TaskSpec]:
    table = {s.name: s for s in specs}
    keys = [k for s in specs for k in (s.name, s.alias)]
    if len(set(keys)) != len(keys):
        raise ValueError(f"task names and aliases must be unique: {keys}")
    for s in specs:
        missing = [step for step in s.composed_of if step not in table]
        if missing:
            raise ValueError(f"composition {s.name!r} names unknown tasks {missing}")
    return table


TASKS: dict[str, TaskSpec] = _specs(
    TaskSpec(
        name="unconditional",
        alias="uncond",
        description="a video from nothing",
        inputs=(),
        outputs=("video",),
    ),
    TaskSpec(
        name="text_to_video",
        alias="t2v",
        description="a video from a text prompt",
        inputs=("text",),
        outputs=("video",),
    ),
    TaskSpec(
        name="text_to_image",
        alias="t2i",
        description="an image (the first latent frame) from a text prompt",
        inputs=("text",),
        outputs=("image",),
    ),
    TaskSpec(
        name="frame_prediction",
        alias="continue",
        description="the future frames of a given clip (continuation; replicate-padded COMMIT condition)",
        inputs=("video",),
        outputs=("video",),
    ),
    TaskSpec(
        name="image_to_video",
        alias="i2v",
        description="a video whose first frame is the given image",
        inputs=("image",),
        outputs=("video",),
    ),
    TaskSpec(
        name="inpainting",
        alias="inpaint",
        description="the clip with its central box filled in (zero-padded COMMIT condition)",
        inputs=("video",),
        outputs=("video",),
    ),
    TaskSpec(
        name="outpainting_central",
        alias="outpaint",
        description="the whole frame around a kept central box (edge-padded COMMIT condition)",
        inputs=("video",),
        outputs=("video",),
    ),
    TaskSpec(
        name="outpainting_horizontal",
        alias="outpaint_h",
        description="the clip extended left and right from its central columns (edge padding)",
        inputs=("video",),
        outputs=("video",),
    ),
    TaskSpec(
        name="outpainting_vertical",
        alias="outpaint_v",
        description="the clip extended up and down from its central rows (edge padding)",
        inputs=("video",),
        outputs=("video",),
    ),
    TaskSpec(
        name="stylization",
        alias="stylize",
        description="a clip restyled by text that keeps a source's flow and depth (+ first frame at times)",
        inputs=("text", "flow_depth", "image"),
        outputs=("video",),
    ),
    TaskSpec(
        name="audio_to_video",
        alias="a2v",
        description="a video that matches the given audio",
        inputs=("audio",),
        outputs=("video",),
    ),
    TaskSpec(
        name="video_to_audio",
        alias="v2a",
        description="the audio of a given video",
        inputs=("video",),
        outputs=("audio",),
    ),
    TaskSpec(
        name="av_continuation",
        alias="avcont",
        description="the rest of a clip and its audio from its first frame and that frame's audio",
        inputs=("image", "audio"),
        outputs=("video", "audio"),
    ),
    TaskSpec(
        name="text_to_audio",
        alias="t2a",
        description="audio for a text prompt: text_to_video, then video_to_audio",
        inputs=("text",),
        outputs=("video", "audio"),
        composed_of=("text_to_video", "video_to_audio"),
    ),
    TaskSpec(
        name="editing",
        alias="edit",
        description="an image animated (image_to_video), then restyled by a new prompt (stylization)",
        inputs=("image", "text"),
        outputs=("video",),
        composed_of=("image_to_video", "stylization"),
    ),
)
_BY_ALIAS = {s.alias: s for s in TASKS.values()}


def task(name_or_alias: str) -> TaskSpec:
    """The ``TaskSpec`` of a canonical name ("image_to_video") or alias ("i2v"); ValueError otherwise."""
    spec = TASKS.get(name_or_alias) or _BY_ALIAS.get(name_or_alias)
    if spec is None:
        valid = ", ".join(f"{s.name} ({s.alias})" for s in TASKS.values())
        raise ValueError(f"unknown task {name_or_alias!r}; choose one of: {valid}")
    return spec
