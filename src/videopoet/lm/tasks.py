"""The task registry: every VideoPoet task by name, the one place task names live (spec §3).

Each ``TaskSpec`` says what a task reads and writes; the conditioning code (``tokenizers/conditioning.py``),
the evaluation (``eval/generation.py``) and the command line refer to tasks through ``task(name_or_alias)``.
Modalities: ``text`` (prompt embeddings), ``video``, ``image`` (one frame = the first latent frame),
``audio``, ``flow_depth`` (optical flow + depth tokenized as a video, for stylization).

Compositions (``composed_of``) run their steps one after another at inference (spec §3: tasks compose
zero-shot); the LM is never trained on them.

Layout of this module: the registry (``TaskSpec``, ``TASKS``, ``task``), then the sequence builders: one
declarative ``Layout`` per trained task (``LAYOUTS``) and one assembler turning a tokenized clip
(``lm/records.py``'s ``TokenRecord``) into an ``Example`` (``build_example``), its exact length
(``sequence_length``) and the inverse of its output segment (``decode_output``).

Sequences (spec §2, paper Fig. 2; ‖ = prefix_len, the prefix is bidirectional, the rest causal)::

    <bos> <task:…> <res:…> <dur:…> <bot_i> <text>×S <eot_i> <bov_i> visual in <eov_i> <boa_i> audio in <eoa_i>
    ‖ <bov_o> visual out <eov_o> <boa_o> audio out <eoa_o> <eos>

Absent modalities drop their tokens; each task's segments are in ``LAYOUTS`` and written out token by
token in tests/test_lm_tasks.py (GOLDEN). Choices the spec leaves open, made here:
- Header: ``<bos> <task> <res> <dur>`` in every task (text_to_image drops ``<dur>``: an image has no
  duration). The paper sets ``<res>`` only for portrait output; the vocabulary has a token per size, so
  the model is always told the output shape and every header has the same length. ``<res>``
  and ``<dur>`` come from the record's width, height and frames; shapes other than the paper's two sizes
  and two durations (the debug tokenizers' 32×32 × 5 frames) take the nearest aspect ratio / duration.
  ``<source>`` is not used.
- prefix_len is the index of the first begin-of-output marker (``<bov_o>``, or ``<boa_o>`` for V2A): the
  marker is the first output token and a target like every output token, so ``loss_mask`` is exactly
  ``positions ≥ prefix_len``. It is predicted from the last prefix position (fully visible, nothing
  leaks) and costs ~nothing to learn; a sampler prefills ``ids[:prefix_len]`` and may force the marker.
- text_to_image: ``<bov_o>`` + the first latent frame, with no ``<eov_o>`` and no ``<eos>`` (spec §3), so
  a sampler may run on into a video; its loss covers those tokens only.
- Text: exactly S = ``text_slots`` placeholders per text task (fixed length for Alternating Gradient
  Descent), real where the caption has tokens (truncated to S), all masked under ``drop_text``.
- frame_prediction: the input is t latent frames: the clip's first k (k ∈ [1, t−1] from the rng), then
  latent frame k−1 repeated. The tokenizer is causal, so the first k latent frames of a clip are exactly
  the tokens of its first 1 + 4(k−1) pixel frames: they equal COMMIT's replicate-padded condition there;
  the repeated latent frame only approximates COMMIT's tokens of the replicated pixel frame (a still
  after motion encodes differently). Chosen over a k-frame prefix so that one task has one length (AGD
  batches without padding, at the price of (t − k)·h·w redundant prefix tokens); a sampler must build its
  input the same way (``prediction_input``). The output is the whole clip.
- stylization: text + flow/depth tokens, and with probability STYLIZATION_FIRST_FRAME_P the first latent
  frame as a second visual input after them; that variant is its own length
  (``sequence_length(..., first_frame=True)``).
- av_continuation: input = latent frame 0 + the audio frames covering pixel frame 0
  (ceil(N / (1 + 4(t−1))): 7 of 106 for 17 frames), output = latent frames 1…t−1 and the remaining
  audio, so both outputs start at the same moment of the clip.
- Audio is level-major (all level-0 frames, then level 1, …); visual grids time-major, then rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch

from videopoet.lm.vocab import DURATIONS, RESOLUTIONS, Vocab

if TYPE_CHECKING:
    from videopoet.lm.records import TokenRecord

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


# ============================================================================================ builders
TEMPORAL_FACTOR = 4  # pixel frames per latent frame after the first (every video tokenizer preset: 17 → 5)
STYLIZATION_FIRST_FRAME_P = 0.5  # share of stylization examples that also see the first latent frame
PAINTING_KINDS = ("inpainting", "outpainting_central", "outpainting_horizontal", "outpainting_vertical")
CONDITION_KINDS = (*PAINTING_KINDS, "flow_depth")  # TokenRecord.conditions keys (COMMIT / flow+depth tokens)


class Seg(NamedTuple):
    """One segment of a sequence: a modality's tokens between its begin and end markers."""

    modality: str  # "text", "visual" or "audio"
    array: str  # where its tokens come from: "text", "video", "audio", a condition kind, "prediction_input"
    part: str = "all"  # along time: "all"; "head" (latent frame 0 / the audio covering it); "tail" (the rest)


class Layout(NamedTuple):
    output: str  # the <task:…> value (vocab.TASK_OUTPUTS)
    prefix: tuple[Seg, ...]
    outputs: tuple[Seg, ...]
    closed: bool = True  # False: no end marker after the last output and no <eos> (text_to_image)
    duration: bool = True  # False: no <dur:…> in the header (text_to_image: an image has no duration)


TEXT = Seg("text", "text")
VIDEO = Seg("visual", "video")
FIRST_FRAME = Seg("visual", "video", "head")
AUDIO = Seg("audio", "audio")

# The whole layout of every trained task; the assembler below adds the header and the markers.
LAYOUTS: dict[str, Layout] = {
    "unconditional": Layout("video", (), (VIDEO,)),
    "text_to_video": Layout("video", (TEXT,), (VIDEO,)),
    "text_to_image": Layout("image", (TEXT,), (FIRST_FRAME,), closed=False, duration=False),
    "frame_prediction": Layout("continuation", (Seg("visual", "prediction_input"),), (VIDEO,)),
    "image_to_video": Layout("video", (FIRST_FRAME,), (VIDEO,)),
    **{kind: Layout("painting", (Seg("visual", kind),), (VIDEO,)) for kind in PAINTING_KINDS},
    "stylization": Layout("stylization", (TEXT, Seg("visual", "flow_depth")), (VIDEO,)),  # (+ FIRST_FRAME)
    "audio_to_video": Layout("video", (AUDIO,), (VIDEO,)),
    "video_to_audio": Layout("audio", (VIDEO,), (AUDIO,)),
    "av_continuation": Layout(
        "av_continuation",
        (FIRST_FRAME, Seg("audio", "audio", "head")),
        (Seg("visual", "video", "tail"), Seg("audio", "audio", "tail")),
    ),
}
TRAINED_TASKS: tuple[str, ...] = tuple(name for name in TASKS if name in LAYOUTS)
assert set(TRAINED_TASKS) == set(LAYOUTS) == {n for n, s in TASKS.items() if not s.composed_of}

_MARKERS = {  # (modality, is output) → (begin, end)
    ("text", False): (Vocab.bot_i, Vocab.eot_i),
    ("visual", False): (Vocab.bov_i, Vocab.eov_i),
    ("audio", False): (Vocab.boa_i, Vocab.eoa_i),
    ("visual", True): (Vocab.bov_o, Vocab.eov_o),
    ("audio", True): (Vocab.boa_o, Vocab.eoa_o),
}


@dataclass(frozen=True, eq=False)
class Example:
    """One training sequence (see the module docstring for the layouts)."""

    task: str  # TaskSpec.name
    ids: torch.Tensor  # long (L,) LM ids; text slots hold Vocab.text_slot
    prefix_len: int  # tokens of the bidirectional prefix; ids[prefix_len] is the first output marker
    loss_mask: torch.Tensor  # bool (L,): True where the token is a target (= every position ≥ prefix_len)
    text: torch.Tensor  # float32 (text_slots, D): caption embeddings, zero where masked / no text
    text_mask: torch.Tensor  # bool (text_slots,): True on real caption tokens


class _Shape(NamedTuple):
    grid: tuple[int, int, int]  # (t, h, w) latent video grid
    audio_frames: int  # N
    audio_levels: int  # K
    text_slots: int  # S


def audio_head(t: int, audio_frames: int) -> int:
    """Audio frames covering pixel frame 0 (= latent frame 0) of a clip of t latent frames (7 of 106)."""
    return math.ceil(audio_frames / (1 + TEMPORAL_FACTOR * (t - 1)))


def prediction_input(video: torch.Tensor, given: int) -> torch.Tensor:
    """frame_prediction's input: latent frames [0, given) of ``video`` (t, h, w), then frame given − 1
    repeated up to t frames (the latent analogue of COMMIT's replicate padding; module docstring)."""
    t = video.shape[0]
    if not 1 <= given <= t:
        raise ValueError(f"given must be in [1, {t}] latent frames, got {given}")
    return torch.cat([video[:given], video[given - 1 : given].expand(t - given, -1, -1)])


def _span(seg: Seg, shape: _Shape) -> tuple[int, int]:
    """[start, stop) of a segment along time: latent frames (visual) or audio frames (audio)."""
    t, n = shape.grid[0], shape.audio_frames
    length, head = (t, 1) if seg.modality == "visual" else (n, audio_head(t, n))
    return {"all": (0, length), "head": (0, head), "tail": (head, length)}[seg.part]


def _seg_len(seg: Seg, shape: _Shape) -> int:
    if seg.modality == "text":
        return shape.text_slots
    start, stop = _span(seg, shape)
    per_step = shape.grid[1] * shape.grid[2] if seg.modality == "visual" else shape.audio_levels
    return (stop - start) * per_step


def _wrap(segs: tuple[Seg, ...], content: Callable[[Seg], torch.Tensor], *, output: bool, closed: bool):
    """Each segment between its markers; ``closed`` False leaves the last segment open (T2I)."""
    parts = []
    for i, seg in enumerate(segs):
        begin, end = _MARKERS[seg.modality, output]
        parts += [torch.tensor([begin]), content(seg).long()]
        if closed or i < len(segs) - 1:
            parts.append(torch.tensor([end]))
    return parts


def _output_parts(layout: Layout, content: Callable[[Seg], torch.Tensor]) -> list[torch.Tensor]:
    parts = _wrap(layout.outputs, content, output=True, closed=layout.closed)
    return parts + [torch.tensor([Vocab.eos])] * layout.closed


def _assemble(
    header: list[int], prefix: tuple[Seg, ...], layout: Layout, content: Callable[[Seg], torch.Tensor]
) -> tuple[torch.Tensor, int]:
    """The one assembler: header, prefix segments ‖ output segments [+ <eos>] → (ids, prefix_len)."""
    head = torch.cat([torch.tensor(header), *_wrap(prefix, content, output=False, closed=True)])
    return torch.cat([head, *_output_parts(layout, content)]).long(), len(head)


def _header(vocab: Vocab, layout: Layout, width: int, height: int, frames: int) -> list[int]:
    # the nearest of the paper's shapes (exact for them): other tokenizer setups share one layout
    res = min(RESOLUTIONS, key=lambda r: abs(r[1] / r[0] - height / width))
    dur = min(DURATIONS, key=lambda d: abs(d - frames))
    header = [vocab.bos, vocab.task(layout.output), vocab.resolution(*res)]
    return header + [vocab.duration(dur)] * layout.duration


def _layout(task: str) -> Layout:
    if task not in LAYOUTS:
        raise ValueError(f"no sequence builder for task {task!r}; trained tasks: {', '.join(TRAINED_TASKS)}")
    return LAYOUTS[task]


def _prefix(task: str, layout: Layout, rng: np.random.Generator | None, first_frame: bool | None):
    if first_frame is None:
        first_frame = task == "stylization" and bool(rng.random() < STYLIZATION_FIRST_FRAME_P)
    if first_frame and task != "stylization":
        raise ValueError(f"first_frame=True is a stylization variant, not one of {task!r}")
    return layout.prefix + (FIRST_FRAME,) * first_frame


def sequence_length(
    task: str,
    vocab: Vocab,
    *,
    grid: tuple[int, int, int],
    audio_frames: int,
    audio_levels: int,
    text_slots: int,
    first_frame: bool = False,
) -> int:
    """The exact length of ``build_example(task, …)`` for a clip of this shape (AGD groups by it);
    ``first_frame`` picks stylization's variant with the first latent frame."""
    layout = _layout(task)
    shape = _Shape(tuple(grid), audio_frames, audio_levels, text_slots)
    header = _header(vocab, layout, *RESOLUTIONS[0], DURATIONS[0])  # its length does not depend on them
    ids, _ = _assemble(header, _prefix(task, layout, None, first_frame), layout,
                       lambda seg: torch.zeros(_seg_len(seg, shape)))  # fmt: skip
    return len(ids)


def build_example(
    task: str,
    record: TokenRecord,
    vocab: Vocab,
    *,
    text_slots: int,
    text_dim: int,
    rng: np.random.Generator,
    drop_text: bool = False,
    first_frame: bool | None = None,
) -> Example:
    """One training sequence of ``task`` from a tokenized clip. The rng draws frame_prediction's given
    frames and (unless ``first_frame`` says) stylization's variant. ValueError when the record lacks what
    the task needs (audio, a condition, text — also under ``drop_text``) or is too short for it."""
    layout = _layout(task)
    prefix = _prefix(task, layout, rng, first_frame)
    arrays = _arrays(task, prefix + layout.outputs, record, rng)
    audio = arrays.get("audio")
    levels, n_audio = (0, 0) if audio is None else audio.shape
    shape = _Shape(tuple(arrays["video"].shape), n_audio, levels, text_slots)
    for seg in prefix + layout.outputs:
        if seg.modality != "text" and _seg_len(seg, shape) == 0:
            raise ValueError(f"{task}: the clip (grid {shape.grid}, {n_audio} audio frames) is too short")

    def content(seg: Seg) -> torch.Tensor:
        if seg.modality == "text":
            return torch.full((text_slots,), Vocab.text_slot)
        start, stop = _span(seg, shape)
        if seg.modality == "visual":
            return vocab.visual_grid_to_lm(arrays[seg.array][start:stop])
        return vocab.audio_codes_to_lm(audio[:, start:stop])

    header = _header(vocab, layout, _positive(record.width), _positive(record.height), record.frames)
    ids, prefix_len = _assemble(header, prefix, layout, content)
    text, text_mask = _text(task, record, TEXT in prefix, text_slots, text_dim, drop_text)
    return Example(task, ids, prefix_len, torch.arange(len(ids)) >= prefix_len, text, text_mask)


def decode_output(
    task: str, ids: torch.Tensor, vocab: Vocab, grid: tuple[int, int, int], audio_frames: int, levels: int
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The output segment → (video indices long (t', h, w) | None, audio codes long (K, N') | None).

    ``ids`` is the output segment or any sequence ending with it (a whole example); ``grid`` and
    ``audio_frames`` are the whole clip's, so av_continuation gives latent frames 1…t−1 (t' = t − 1) and
    audio frames audio_head(t, N)…N−1, text_to_image the first latent frame. ValueError when a marker is
    not where the layout puts it or a token lies outside its block."""
    layout = _layout(task)
    shape = _Shape(tuple(grid), audio_frames, levels, 0)
    template = torch.cat(_output_parts(layout, lambda seg: torch.full((_seg_len(seg, shape),), -1)))
    ids = torch.as_tensor(ids).long()
    if ids.ndim != 1 or len(ids) < len(template):
        raise ValueError(f"{task}: ids must be 1-D with ≥ {len(template)} ids, got {tuple(ids.shape)}")
    out, fixed = ids[-len(template) :], template >= 0
    if not torch.equal(out[fixed], template[fixed]):
        raise ValueError(f"{task}: the output markers are not where the layout puts them")
    content, video, audio = out[~fixed], None, None
    for seg in layout.outputs:
        n = _seg_len(seg, shape)
        chunk, content = content[:n], content[n:]
        if seg.modality == "visual":
            start, stop = _span(seg, shape)
            video = vocab.lm_to_visual_grid(chunk, (stop - start, *shape.grid[1:]))
        else:
            audio = vocab.lm_to_audio_codes(chunk, levels)
    return video, audio


def _arrays(task: str, segs: tuple[Seg, ...], record: TokenRecord, rng) -> dict[str, torch.Tensor]:
    """The token arrays the segments name (tokenizer indices, long), checked."""
    video = _int_array(record.video, 3, f"{task}: record.video (t, h, w)")
    arrays = {"video": video}
    for name in dict.fromkeys(seg.array for seg in segs if seg.array not in ("text", "video")):
        if name == "audio":
            if record.audio is None:
                raise ValueError(f"{task} needs audio codes; record {record.key!r} has none")
            arrays[name] = _int_array(record.audio, 2, f"{task}: record.audio (K, N)")
        elif name == "prediction_input":
            if video.shape[0] < 2:
                raise ValueError(f"{task} needs ≥ 2 latent frames; {record.key!r} has {video.shape[0]}")
            arrays[name] = prediction_input(video, int(rng.integers(1, video.shape[0])))
        else:  # a COMMIT / flow+depth condition: same grid as the clip
            cond = (record.conditions or {}).get(name)
            if cond is None:
                raise ValueError(f"{task} needs the {name!r} condition; record {record.key!r} lacks it")
            arrays[name] = _int_array(cond, 3, f"{task}: record.conditions[{name!r}]")
            if arrays[name].shape != video.shape:
                raise ValueError(f"{task}: {name} grid {tuple(cond.shape)} ≠ video grid {tuple(video.shape)}")
    return arrays


def _text(task: str, record: TokenRecord, used: bool, slots: int, dim: int, drop: bool):
    """(text float32 (slots, dim), mask bool (slots,)): the caption's first ``slots`` tokens."""
    text, mask = torch.zeros(slots, dim), torch.zeros(slots, dtype=torch.bool)
    if not used:
        return text, mask
    if slots < 1:
        raise ValueError(f"{task} is a text task: it needs text_slots ≥ 1")
    if record.text is None:
        raise ValueError(f"{task} needs text embeddings; record {record.key!r} has none")
    emb = torch.as_tensor(np.asarray(record.text), dtype=torch.float32)
    if emb.ndim != 2 or emb.shape[1] != dim:
        raise ValueError(f"{task}: record.text must be (S, {dim}), got {tuple(emb.shape)}")
    real = torch.ones(len(emb), dtype=torch.bool)
    if record.text_mask is not None:
        real = torch.as_tensor(np.asarray(record.text_mask, dtype=bool))
        if real.shape != emb.shape[:1]:
            raise ValueError(f"{task}: text_mask {tuple(real.shape)} does not match text {tuple(emb.shape)}")
    if drop:  # classifier-free guidance: every slot masked, nothing of the caption kept
        return text, mask
    s = min(len(emb), slots)
    mask[:s] = real[:s]
    text[:s] = emb[:s] * mask[:s, None]
    return text, mask


def _int_array(a, ndim: int, what: str) -> torch.Tensor:
    a = np.asarray(a)
    if a.ndim != ndim or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must be a {ndim}-D integer array, got {a.dtype} {a.shape}")
    return torch.from_numpy(a.astype(np.int64))


def _positive(x: int) -> int:
    if x < 1:
        raise ValueError(f"record width and height must be positive, got {x}")
    return x
