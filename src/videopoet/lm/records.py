"""Tokenized clips for the LM: ``TokenRecord``, the ``RecordTokenizer`` that makes them, and token shards.

Dimension key: B batch, T frames, H W pixels, t h w latent video grid, K audio RVQ levels, N audio
frames, S text tokens (≤ 64), D text width.

The LM never sees pixels: every clip is tokenized once (video tokens, audio codes, COMMIT tokens for the
painting tasks, flow/depth tokens for stylization, text embeddings) into token shards, which are small and
travel to the GPU machines. The flow, three steps that may run on three machines:

1. ``videopoet tokenize --data SPEC --out DIR [--text none]`` — any machine with torch (synthetic clips
   are rendered in-process, so neither PyAV nor ffmpeg is needed for them); ``--resume`` continues after
   the last complete shard.
2. ``videopoet tokenize --text-only --out DIR --text minilm`` — only where the text encoder package is
   installed: adds text embeddings to the records of every shard that lacks them (each shard replaced
   atomically, shards already done are skipped, so it is resumable too). Do not run it while a training
   run reads DIR. Skip step 2 by passing ``--text minilm`` to step 1 where the package is installed.
3. ``videopoet train lm`` reads ``TokenShardDataset(DIR)``. Small runs may instead tokenize as they read
   (``OnTheFlyRecords(spec, record_tokenizer)``), with the same tokenizer and so the same records.

On-disk format (pickle-free; a plain ``tar`` or webdataset reads it): ``DIR/tokens.json`` (the set's
settings, vocabulary sizes, text encoder, per-shard counts) and ``DIR/tokens-000000.tar``, ``-000001``, …
of ``shard_size`` records in dataset order. A record is consecutive members sharing one key::

    {key}.json              {"key", "caption", "index" (dataset item), "width", "height", "frames",
                             "text_encoder" (name, or null while no encoder has run over the caption)}
    {key}.video.npy         int32 (t, h, w)            video-tokenizer indices
    {key}.audio.npy         int32 (K, N)               codec codes per RVQ level (absent: no audio)
    {key}.text.npy          float16 (S, D)             per-token text embeddings (absent: no text yet,
                                                       or an empty caption)
    {key}.text_mask.npy     bool (S,)
    {key}.cond.{kind}.npy   int32 (t, h, w)            one per condition kind the clip has

``.npy`` members are read with ``allow_pickle=False``. Shards are written whole under a hidden temporary
name and renamed (``videopoet.outputs.atomic_path``): a half-written shard is never visible.

Conditions (``CONDITION_KINDS``): the four COMMIT paddings of ``tokenizers/conditioning.py`` with its
defaults (the spec's 0.5 H × 0.5 W centre box / central half of the columns or rows), and ``flow_depth``:
optical flow + depth as a 3-channel video (``flow_depth_video``). Flow and depth come from

- synthetic clips (the world's own samples and shards written by ``videopoet data synth``): the world's
  ground truth, re-rendered from the sample's seed and split (a ``Sample`` carries no geometry) and used
  only when the re-rendered frames match the sample's (≥ 30 dB: shards are lossy mp4). Items of a
  synthetic dataset itself are rendered once, with their ground truth (``PreparedItems``), in the loader
  workers, which also make the flow-depth video;
- real video: the estimates generation uses on any clip (``conditions.clip_geometry``), so training and
  generation see the same kind of condition: OpenCV Farnebäck flow (``opencv-python-headless``,
  optional) or else ``block_flow``; depth from an estimator in ``DEPTH_ESTIMATORS`` (register one with
  ``register_depth_estimator``) or else ``motion_depth`` (what moves apart from the camera is near). No
  estimator ships (no MiDaS-class weights are available offline). A one-frame clip gets no ``flow_depth``
  condition: the reason is logged once and counted, and the stylization task skips that clip.

Frame prediction stores no condition: its length varies per training item. The tokenizer being causal,
the latent frames that cover 1 + 4k given frames are the first k + 1 of ``video``; only the replicate-padded
rest of its COMMIT condition would need the tokenizer again.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from videopoet.data.sample import Sample, audio_to_tensor, frames_to_tensor
from videopoet.errors import MissingExtra, UserError, require
from videopoet.lm.vocab import Vocab
from videopoet.outputs import atomic_path

log = logging.getLogger(__name__)

CONDITION_KINDS = (
    "inpainting",
    "outpainting_central",
    "outpainting_horizontal",
    "outpainting_vertical",
    "flow_depth",
)
COMMIT_KINDS = CONDITION_KINDS[:4]  # kind = the registry name of its task (lm/tasks.py)
MAX_TEXT_TOKENS = 64  # the LM's text slots
INFO_FILE = "tokens.json"
SHARD_PATTERN = "tokens-*.tar"
FORMAT = "videopoet-token-shards"
FORMAT_VERSION = 1
# Re-rendered synthetic frames must match the sample this closely to lend it their flow and depth: shards
# from `data synth` measure ~47 dB; a clip cut or resized to another format measures far below.
GEOMETRY_MATCH_DB = 30.0


@dataclass
class TokenRecord:
    key: str
    caption: str
    video: np.ndarray  # int32 (t, h, w) video-tokenizer indices
    audio: np.ndarray | None  # int32 (K, N) codec codes per RVQ level
    text: np.ndarray | None  # float16 (S, D) per-token text embeddings (S ≤ 64)
    text_mask: np.ndarray | None  # bool (S,)
    # int32 (t, h, w) COMMIT tokens by kind: "inpainting", "outpainting_central", "outpainting_horizontal",
    # "outpainting_vertical", "flow_depth"
    conditions: dict[str, np.ndarray]
    width: int
    height: int
    frames: int


class RecordError(ValueError):
    """A stored record that cannot be used (corrupt member, wrong dtype or shape); the message says where."""


def check_record(r: TokenRecord) -> None:
    """ValueError naming the first field that breaks the documented dtypes and shapes."""

    def bad(field: str, want: str, x: Any) -> ValueError:
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        return ValueError(f"record {r.key!r}: {field} must be {want}, got {got}")

    if not isinstance(r.video, np.ndarray) or r.video.dtype != np.int32 or r.video.ndim != 3:
        raise bad("video", "int32 (t, h, w)", r.video)
    if r.audio is not None and (
        not isinstance(r.audio, np.ndarray) or r.audio.dtype != np.int32 or r.audio.ndim != 2
    ):
        raise bad("audio", "int32 (K, N) or None", r.audio)
    if (r.text is None) != (r.text_mask is None):
        raise ValueError(f"record {r.key!r}: text and text_mask must both be set or both be None")
    if r.text is not None:
        if r.text.dtype != np.float16 or r.text.ndim != 2 or r.text.shape[0] > MAX_TEXT_TOKENS:
            raise bad("text", f"float16 (S ≤ {MAX_TEXT_TOKENS}, D)", r.text)
        if r.text_mask.dtype != np.bool_ or r.text_mask.shape != r.text.shape[:1]:
            raise bad("text_mask", f"bool ({r.text.shape[0]},)", r.text_mask)
    for kind, cond in r.conditions.items():
        if kind not in CONDITION_KINDS:
            raise ValueError(f"record {r.key!r}: unknown condition kind {kind!r}; use {CONDITION_KINDS}")
        if not isinstance(cond, np.ndarray) or cond.dtype != np.int32 or cond.shape != r.video.shape:
            raise bad(f"conditions[{kind!r}]", f"int32 {r.video.shape}", cond)


def kinds_for_tasks(names: Sequence[str]) -> tuple[str, ...]:
    """The condition kinds the tasks (names or aliases of lm/tasks.py, compositions included) need."""
    from videopoet.lm.tasks import task

    needed: set[str] = set()
    todo = list(names)
    while todo:
        spec = task(todo.pop())
        todo.extend(spec.composed_of)
        if spec.name in COMMIT_KINDS:
            needed.add(spec.name)
        if "flow_depth" in spec.inputs:
            needed.add("flow_depth")
    return tuple(k for k in CONDITION_KINDS if k in needed)


def _check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    unknown = [k for k in kinds if k not in CONDITION_KINDS]
    if unknown:
        raise ValueError(f"unknown condition kinds {unknown}; choose from {CONDITION_KINDS}")
    return tuple(k for k in CONDITION_KINDS if k in kinds)  # one canonical order


# ================================================================================= flow and depth
class Geometry(NamedTuple):
    flow: np.ndarray  # float32 (T − 1, H, W, 2): pixels moved from frame t to t + 1
    depth: np.ndarray | None  # float32 (T, H, W), larger = farther; None until a depth estimator ran


# A depth estimator: uint8 frames (T, H, W, 3) → float32 depth (T, H, W), larger = farther (negate or
# invert the inverse-depth maps of MiDaS-like models). Registered as name → factory(device).
DepthEstimator = Callable[[np.ndarray], np.ndarray]
DEPTH_ESTIMATORS: dict[str, Callable[[torch.device], DepthEstimator]] = {}


def register_depth_estimator(name: str, factory: Callable[[torch.device], DepthEstimator]) -> None:
    """Make ``name`` a depth estimator for real video; ``depth_estimator="auto"`` picks the first one."""
    DEPTH_ESTIMATORS[name] = factory


def load_depth_estimator(choice: str | DepthEstimator | None, device: torch.device) -> DepthEstimator | None:
    """``"auto"``: the first registered estimator, else None (real clips then get ``motion_depth``);
    ``None``/``"none"``: None; a registered name; or an estimator callable itself."""
    if choice is None or choice == "none":
        return None
    if callable(choice):
        return choice
    if choice == "auto":
        return next(iter(DEPTH_ESTIMATORS.values()))(device) if DEPTH_ESTIMATORS else None
    if choice not in DEPTH_ESTIMATORS:
        raise UserError(
            f"unknown depth estimator {choice!r}; registered: {sorted(DEPTH_ESTIMATORS) or 'none'}"
        )
    return DEPTH_ESTIMATORS[choice](device)


def synthetic_geometry(sample: Sample) -> Geometry | str:
    """The world's ground-truth flow and depth for a synthetic clip, or why there are none."""
    from videopoet.data.synthetic import SPLITS, render_clip

    meta = sample.meta or {}
    seed, split = meta.get("seed"), meta.get("split")
    if isinstance(seed, bool) or not isinstance(seed, int) or split not in SPLITS:
        return "not a synthetic-world clip"
    t, h, w, _ = sample.frames.shape
    try:
        clip = render_clip(
            seed, split=split, width=w, height=h, frames=t, fps=sample.fps, sample_rate=sample.sample_rate
        )
    except ValueError as e:
        return f"synthetic seed {seed} cannot be re-rendered ({e})"
    if not np.array_equal(clip.frames, sample.frames):
        err = (clip.frames.astype(np.float64) - sample.frames) ** 2
        db = 10 * np.log10(255.0**2 / max(float(err.mean()), 1e-12))  # over the whole clip
        if db < GEOMETRY_MATCH_DB:
            return (
                f"synthetic seed {seed} re-rendered at {w}x{h}x{t} differs from the clip ({db:.1f} dB < "
                f"{GEOMETRY_MATCH_DB:g} dB): it was cut or resized after rendering"
            )
    return Geometry(clip.flow, clip.depth)


def farneback_flow(frames: np.ndarray) -> np.ndarray:
    """uint8 (T, H, W, 3) → float32 (T − 1, H, W, 2) dense flow (OpenCV Farnebäck; MissingExtra without)."""
    cv2 = require("cv2")
    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    t, h, w = len(gray), *frames.shape[1:3]
    flow = np.zeros((max(t - 1, 0), h, w, 2), np.float32)
    for i in range(t - 1):
        # OpenCV's usual settings: pyramid ×0.5 over 3 levels, 15-pixel window, 3 iterations, poly 5 / 1.2
        flow[i] = cv2.calcOpticalFlowFarneback(gray[i], gray[i + 1], None, 0.5, 3, 15, 3, 5, 1.2, 0)
    return flow


def block_flow(frames: np.ndarray, block: int = 8, radius: int = 6) -> np.ndarray:
    """uint8 (T, H, W, 3) → float32 (T − 1, H, W, 2) dense flow without OpenCV: for each block × block
    tile of frame t, the whole-pixel shift within ±``radius`` that best matches frame t + 1 (mean absolute
    grey-level difference; ties go to the smaller shift, so flat regions read still), bilinearly
    upsampled. Coarser than Farnebäck; generation uses it where OpenCV is missing."""
    import torch.nn.functional as F

    g = torch.from_numpy(np.ascontiguousarray(frames)).float().mean(-1)  # (T, H, W)
    t, h, w = g.shape
    if t < 2:
        return np.zeros((0, h, w, 2), np.float32)
    b = min(block, h, w)
    nxt = F.pad(g[1:, None], (radius,) * 4, mode="replicate")[:, 0]  # (T − 1, H + 2r, W + 2r)
    shifts = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    costs = []
    for dy, dx in shifts:
        diff = (nxt[:, radius + dy : radius + dy + h, radius + dx : radius + dx + w] - g[:-1]).abs()
        costs.append(F.avg_pool2d(diff[:, None], b, ceil_mode=True)[:, 0] + 1e-3 * (abs(dy) + abs(dx)))
    best = torch.stack(costs, -1).argmin(-1)  # (T − 1, h/b, w/b)
    d = torch.tensor(shifts, dtype=torch.float32)[best]  # (T − 1, h/b, w/b, 2) as (dy, dx)
    flow = d.flip(-1).permute(0, 3, 1, 2)  # (T − 1, 2, h/b, w/b) as (dx, dy)
    flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
    return flow.permute(0, 2, 3, 1).contiguous().numpy()


def motion_depth(flow: np.ndarray, frames: int, near: float = 1.0, far: float = 4.0) -> np.ndarray:
    """Depth (``frames``, H, W) from flow (frames − 1, H, W, 2) without a depth estimator: pixels moving
    apart from the frame's dominant (camera) motion, by more than a pixel, are ``near``, the rest ``far``
    (the synthetic world's layout: objects in front of a background plane). The first frame takes the
    first flow's reading."""
    flow = np.asarray(flow, np.float32)
    if flow.shape[0] == 0:
        raise ValueError("motion_depth needs at least two frames")
    camera = np.median(flow.reshape(flow.shape[0], -1, 2), axis=1)[:, None, None]  # (T − 1, 1, 1, 2)
    moving = np.linalg.norm(flow - camera, axis=-1) > 1.0  # (T − 1, H, W)
    depth = np.where(moving, near, far).astype(np.float32)
    return np.concatenate([depth[:1], depth])[:frames]


def estimated_flow(frames: np.ndarray) -> np.ndarray:
    """Optical flow of any clip: Farnebäck where OpenCV is installed, else ``block_flow``."""
    try:
        return farneback_flow(frames)
    except MissingExtra:
        return block_flow(frames)


def clip_geometry(sample: Sample, *, estimate: bool) -> Geometry | str:
    """Flow and depth of a clip, or why there are none: the synthetic ground truth when it applies; else
    the estimates generation also uses on any clip (``conditions.clip_geometry``): ``estimated_flow``
    (CPU, in loader workers), and depth from the registered estimator later (``estimate``) or else
    ``motion_depth`` of that flow."""
    truth = synthetic_geometry(sample)
    if isinstance(truth, Geometry):
        return truth
    t = len(sample.frames)
    if t < 2:
        return f"{truth} and a single frame has no optical flow"
    flow = estimated_flow(sample.frames)
    return Geometry(flow, None if estimate else motion_depth(flow, t))


# ================================================================================= tokenizing
def _as_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def text_arrays(embeddings: Any, mask: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """A text encoder's batch (B, S, D) float + (B, S) bool → per caption (float16 (S', D), bool (S',)) with
    the trailing padding cut (so a record never depends on its batch) and at most MAX_TEXT_TOKENS slots."""
    emb, mask = _as_numpy(embeddings), _as_numpy(mask).astype(bool)
    if emb.ndim != 3 or mask.shape != emb.shape[:2]:
        raise ValueError(
            f"text encoder gave embeddings {emb.shape} and mask {mask.shape}; want (B, S, D), (B, S)"
        )
    out = []
    for e, m in zip(emb, mask):
        n = min(int(np.flatnonzero(m)[-1]) + 1 if m.any() else 0, MAX_TEXT_TOKENS)
        out.append((e[:n].astype(np.float16), m[:n].copy()))
    return out


def encode_captions(encoder, captions: list[str]) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
    """(text, text_mask) per caption; an empty caption has no text to condition on: (None, None).

    One caption per encoder call: padding to a batch-mate's length moves MiniLM's outputs by an fp16 ulp
    here and there, and a stored prompt must equal bit for bit what generation computes for it alone
    (and what a later ``--text-only`` pass computes). Next to tokenizing video this costs little."""
    return [text_arrays(*encoder.encode([c]))[0] if c.strip() else (None, None) for c in captions]


class RecordTokenizer:
    """Samples → ``TokenRecord``s on ``device``: video tokens, audio codes (clips with audio), one token grid
    per condition kind in ``kinds`` (flow_depth where the clip has flow and depth), text embeddings when a
    text encoder is given (its ``encode(captions) -> (float (B, S, D), bool (B, S))``; else text=None and a
    later ``videopoet tokenize --text-only`` fills it).

    ``missing`` counts why clips went without flow_depth (each reason is also logged once)."""

    def __init__(
        self,
        video_tokenizer,
        audio_tokenizer,
        text_encoder=None,
        *,
        kinds: Sequence[str] = CONDITION_KINDS,
        device: str | torch.device = "cpu",
        depth_estimator: str | DepthEstimator | None = "auto",
        encode_batch: int = 16,
    ):
        from videopoet.device import pick_device

        self.device = pick_device(device) if isinstance(device, str) else torch.device(device)
        self.video = video_tokenizer.to(self.device).eval()
        self.audio = audio_tokenizer.to(self.device).eval() if audio_tokenizer is not None else None
        self.text = text_encoder
        self.kinds = _check_kinds(kinds)
        self.depth = (
            load_depth_estimator(depth_estimator, self.device) if "flow_depth" in self.kinds else None
        )
        self.encode_batch = encode_batch
        self.missing: Counter[str] = Counter()

    @property
    def vocab(self) -> Vocab:
        a = self.audio.config if self.audio is not None else None
        return Vocab(
            visual_codebook_size=self.video.config.codebook_size,
            audio_levels=a.num_levels if a else 1,
            audio_codebook_size=a.codebook_size if a else 1,
        )

    def geometry(self, sample: Sample) -> Geometry | str:
        """What ``__call__`` computes when not given: flow and depth, or why there are none."""
        return clip_geometry(sample, estimate=self.depth is not None)

    def __call__(self, samples: list[Sample], geometry: Sequence[Any] | None = None) -> list[TokenRecord]:
        """Tokenize a batch of samples of one clip format. ``geometry`` (one per sample, e.g. computed in
        loader workers: flow and depth, or already their ``flow_depth_video`` as a float32 (1, 3, T, H, W)
        tensor or array, or why there are none) skips the flow/depth computation; None entries are
        computed here."""
        if not samples:
            return []
        _check_same_format(samples)
        video = torch.stack([frames_to_tensor(s.frames, self.device) for s in samples])  # (B, 3, T, H, W)
        groups: dict[str, tuple[list[int], torch.Tensor]] = {"video": (list(range(len(samples))), video)}
        if self.kinds:
            from videopoet.tokenizers.conditioning import commit_condition

            for kind in self.kinds:
                if kind in COMMIT_KINDS:
                    groups[kind] = (groups["video"][0], commit_condition(video, kind).video)
        if "flow_depth" in self.kinds:
            rows, fd = self._flow_depth(samples, geometry)
            if rows:
                groups["flow_depth"] = (rows, fd)
        tokens = self._encode_groups(groups)
        audio = self._audio_codes(samples)
        text = self._text(samples)
        records = []
        for i, s in enumerate(samples):
            conds = {k: tokens[k][i] for k in self.kinds if i in tokens.get(k, {})}
            t, h, w = s.frames.shape[:3]
            records.append(
                TokenRecord(s.key, s.caption, tokens["video"][i], audio[i], *text[i], conds, w, h, t)
            )
        return records

    def _flow_depth(self, samples, geometry) -> tuple[list[int], torch.Tensor | None]:
        """Rows that have flow and depth, and their (rows, 3, T, H, W) conditioning videos."""
        from videopoet.tokenizers.conditioning import flow_depth_video

        rows, videos = [], []
        for i, s in enumerate(samples):
            g = geometry[i] if geometry is not None and geometry[i] is not None else self.geometry(s)
            if isinstance(g, Geometry) and g.depth is None:
                g = g._replace(depth=np.asarray(self.depth(s.frames), np.float32))
            if isinstance(g, str):
                if self.missing[g] == 0:
                    log.warning("no flow_depth condition for %s (and others like it): %s", s.key, g)
                self.missing[g] += 1
                continue
            rows.append(i)
            # an array or tensor is the video itself, made where the flow and depth were
            fd = torch.as_tensor(g) if not isinstance(g, Geometry) else flow_depth_video(g.flow, g.depth)
            videos.append(fd.to(self.device))  # (1, 3, T, H, W)
        return rows, (torch.cat(videos) if videos else None)

    @torch.no_grad()
    def _encode_groups(self, groups) -> dict[str, dict[int, np.ndarray]]:
        """Every group's videos through the tokenizer in chunks of ``encode_batch`` → kind → row → int32."""
        videos = [v for _, v in groups.values()]
        chunks = [self.video.encode(c) for c in _chunks(videos, self.encode_batch)]
        ids = torch.cat(chunks).to(torch.int32).cpu().numpy()  # (ΣB, t, h, w)
        out, at = {}, 0
        for kind, (rows, _) in groups.items():
            out[kind] = {r: ids[at + j] for j, r in enumerate(rows)}
            at += len(rows)
        return out

    @torch.no_grad()
    def _audio_codes(self, samples: list[Sample]) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = [None] * len(samples)
        rows = [i for i, s in enumerate(samples) if s.has_audio]
        if self.audio is None or not rows:
            return out
        rate = self.audio.config.sample_rate
        for i in rows:
            if samples[i].sample_rate != rate:
                raise ValueError(
                    f"{samples[i].key}: audio at {samples[i].sample_rate} Hz; the codec takes {rate} Hz "
                    "(open the dataset with sample_rate={rate})"
                )
        wave = torch.stack([audio_to_tensor(samples[i].audio) for i in rows]).to(self.device)  # (B, 1, N)
        codes = self.audio.encode(wave).to(torch.int32).cpu().numpy()  # (B, K, N // hop)
        for j, i in enumerate(rows):
            out[i] = codes[j]
        return out

    def _text(self, samples: list[Sample]) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
        if self.text is None:
            return [(None, None)] * len(samples)
        return encode_captions(self.text, [s.caption for s in samples])


def _chunks(videos: list[torch.Tensor], size: int) -> list[torch.Tensor]:
    """The rows of ``videos`` one after the other, in chunks of ``size`` (the last may be short): the
    chunks of their concatenation, without copying it. A chunk inside one tensor is a view of it (when the
    encode batch equals the loader batch, every chunk is one condition kind's videos)."""
    chunks, pieces, filled = [], [], 0
    for v in videos:
        at = 0
        while at < v.shape[0]:
            take = min(size - filled, v.shape[0] - at)
            pieces.append(v[at : at + take])
            at, filled = at + take, filled + take
            if filled == size:
                chunks.append(pieces[0].contiguous() if len(pieces) == 1 else torch.cat(pieces))
                pieces, filled = [], 0
    if pieces:
        chunks.append(pieces[0].contiguous() if len(pieces) == 1 else torch.cat(pieces))
    return chunks


def _check_same_format(samples: list[Sample]) -> None:
    first = samples[0]
    for s in samples:
        if s.frames.shape != first.frames.shape or s.audio.shape != first.audio.shape:
            raise ValueError(
                f"cannot tokenize samples of different formats in one batch: {first.key} has frames "
                f"{first.frames.shape}, {s.key} has {s.frames.shape}; open the dataset with one clip format"
            )


# ================================================================================= shard files
def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def record_members(record: TokenRecord, index: int, text_encoder: str | None) -> dict[str, bytes]:
    """A record → its tar members (field → bytes; see the module doc), after ``check_record``."""
    check_record(record)
    meta = {
        "key": record.key,
        "caption": record.caption,
        "index": int(index),
        "width": int(record.width),
        "height": int(record.height),
        "frames": int(record.frames),
        # which encoder ran over the caption (an empty caption gets no text, yet counts as done)
        "text_encoder": text_encoder if record.text is not None or not record.caption.strip() else None,
    }
    members = {"json": json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8")}
    members["video.npy"] = _npy(record.video)
    if record.audio is not None:
        members["audio.npy"] = _npy(record.audio)
    if record.text is not None:
        members["text.npy"], members["text_mask.npy"] = _npy(record.text), _npy(record.text_mask)
    for kind, cond in record.conditions.items():
        members[f"cond.{kind}.npy"] = _npy(cond)
    return members


def record_from_members(members: dict[str, bytes], where: str) -> TokenRecord:
    """Tar members of one record → TokenRecord; RecordError saying which member is bad and why."""

    def load(field: str) -> np.ndarray | None:
        if field not in members:
            return None
        try:
            return np.load(io.BytesIO(members[field]), allow_pickle=False)
        except Exception as e:  # a damaged .npy fails in many ways; each is this one error
            raise RecordError(
                f"{where}: {field}: not a readable .npy array ({type(e).__name__}: {e})"
            ) from None

    try:
        meta = json.loads(members["json"].decode("utf-8"))
        key, caption = str(meta["key"]), str(meta["caption"])
        size = int(meta["width"]), int(meta["height"]), int(meta["frames"])
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as e:
        raise RecordError(f"{where}: json: unreadable record metadata ({type(e).__name__}: {e})") from None
    where = f"{where} ({key})"
    conds = {f[5:-4]: load(f) for f in members if f.startswith("cond.") and f.endswith(".npy")}
    record = TokenRecord(
        key,
        caption,
        load("video.npy"),
        load("audio.npy"),
        load("text.npy"),
        load("text_mask.npy"),
        conds,
        *size,
    )
    try:
        check_record(record)
    except ValueError as e:
        raise RecordError(f"{where}: {e}") from None
    return record


def write_shard(path: Path, records: list[dict[str, bytes]], keys: list[str]) -> None:
    """Write one tar of records (members in order) atomically; byte-identical for identical records."""
    with atomic_path(path) as tmp, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for key, members in zip(keys, records):
            for field, data in members.items():
                info = tarfile.TarInfo(f"{key}.{field}")
                info.size, info.mode, info.mtime = len(data), 0o644, 0  # fixed: same records, same bytes
                tar.addfile(info, io.BytesIO(data))


def member_keys(record_keys: list[str]) -> list[str]:
    """Tar-safe, dot-free keys (the extension starts at the first dot), unique within a shard."""
    from videopoet.data.shards import shard_key

    seen: Counter[str] = Counter()
    out = []
    for k in record_keys:
        base = shard_key(k)
        seen[base] += 1
        out.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return out


class TokenShardWriter:
    """Append records; every ``shard_size`` of them become ``out_dir/tokens-NNNNNN.tar`` (from
    ``first_shard`` on). ``on_shard(summary)`` runs after each shard is in place (the command records it in
    tokens.json). ``close()`` writes the last, partial shard; after an exception, don't: it is dropped."""

    def __init__(
        self,
        out_dir: str | Path,
        shard_size: int,
        *,
        first_shard: int = 0,
        text_encoder: str | None = None,
        on_shard: Callable[[dict[str, Any]], None] | None = None,
    ):
        if shard_size <= 0:
            raise ValueError(f"shard_size must be positive, got {shard_size}")
        self.out_dir, self.shard_size, self.next_shard = Path(out_dir), shard_size, first_shard
        self.text_encoder, self.on_shard = text_encoder, on_shard
        self._pending: list[tuple[str, int, dict[str, bytes]]] = []
        self.count = 0  # records in the shards written by this writer

    def write(self, record: TokenRecord, index: int) -> None:
        self._pending.append((record.key, index, record_members(record, index, self.text_encoder)))
        if len(self._pending) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        path = self.out_dir / f"tokens-{self.next_shard:06d}.tar"
        keys = member_keys([k for k, _, _ in self._pending])
        write_shard(path, [m for _, _, m in self._pending], keys)
        summary = {
            "file": path.name,
            "records": len(self._pending),
            "first_index": self._pending[0][1],
            "last_index": self._pending[-1][1],
        }
        self.count += len(self._pending)
        self._pending, self.next_shard = [], self.next_shard + 1
        if self.on_shard is not None:
            self.on_shard(summary)

    def close(self) -> None:
        self.flush()


# ================================================================================= reading shards
def find_token_shards(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if folder.is_file():
        return [folder] if folder.suffix == ".tar" else []
    return sorted(p for p in folder.glob(SHARD_PATTERN) if p.is_file() and not p.name.startswith("."))


def is_token_shard_folder(spec: str | Path) -> bool:
    """True for a folder written by ``videopoet tokenize`` (its tokens.json or token shards)."""
    path = Path(str(spec))
    return path.is_dir() and ((path / INFO_FILE).is_file() or bool(find_token_shards(path)))


def read_info(folder: str | Path) -> dict[str, Any]:
    """The set's tokens.json ({} when there is none); UserError when it cannot be read."""
    path = Path(folder) / INFO_FILE
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: cannot read the token set's description ({e})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise UserError(f"{path} is not a videopoet token set description (format {FORMAT!r})")
    return info


def _index_shard(shard: Path) -> tuple[list[tuple[str, int, int, set[str]]], str | None]:
    """The records of one shard as (key, byte offset, byte length, fields) — members sharing a key are
    consecutive — and why reading stopped early (damage), or None."""
    groups: list[tuple[str, int, int, set[str]]] = []
    size, error = shard.stat().st_size, None
    try:
        with tarfile.open(shard, "r:") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                end = m.offset_data + -(-m.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
                if m.offset_data + m.size > size:
                    error = f"truncated: member {m.name} runs past the end of the file"
                    break
                key, _, field = m.name.rpartition("/")[2].partition(".")
                if groups and groups[-1][0] == key:
                    k, start, _, fields = groups[-1]
                    groups[-1] = (k, start, end - start, fields | {field})
                else:
                    groups.append((key, m.offset, end - m.offset, {field}))
    except (tarfile.TarError, OSError, EOFError) as e:
        error = f"not a readable tar file ({e})"
    if error and groups:
        groups.pop()  # the record the damage cut into
    return groups, error


class TokenShardDataset(Dataset):
    """Map-style dataset of ``TokenRecord`` over every shard of a token set (random access by index).

    Shards are indexed once at open: three integers per record, so millions of records fit in memory and
    in every loader worker. ``ds[i]`` reads one byte range; a corrupt record raises ``RecordError``
    (a ValueError) that names the shard, the record and the member (the training engine skips it).
    Records or shards lost to damage at open are listed in ``skipped`` as (where, reason)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not self.folder.exists():
            raise UserError(f"token set {self.folder} not found; write one with videopoet tokenize")
        self.shards = find_token_shards(self.folder)
        if not self.shards:
            raise UserError(
                f"{self.folder} holds no token shards ({SHARD_PATTERN}); write them with videopoet tokenize"
            )
        self.info = read_info(self.folder) if self.folder.is_dir() else {}
        shard_ids, offsets, lengths = [], [], []
        self.skipped: list[tuple[str, str]] = []
        for si, shard in enumerate(self.shards):
            groups, error = _index_shard(shard)
            if error:
                self._skip(shard.name, f"{error}; the {len(groups)} complete record(s) before it are kept")
            for key, offset, length, fields in groups:
                if "json" not in fields or "video.npy" not in fields:
                    self._skip(f"{shard.name}:{key}", "incomplete record: no json or video.npy member")
                    continue
                shard_ids.append(si)
                offsets.append(offset)
                lengths.append(length)
        self.shard_of = np.asarray(shard_ids, np.int32)  # record → index into self.shards
        self._offset = np.asarray(offsets, np.int64)
        self._length = np.asarray(lengths, np.int64)

    def _skip(self, where: str, reason: str) -> None:
        log.warning("skipping %s: %s", where, reason)
        self.skipped.append((where, reason))

    @property
    def vocab(self) -> Vocab:
        """The id layout of the tokenizers that wrote the set (from tokens.json)."""
        if "vocab" not in self.info:
            raise UserError(
                f"{self.folder / INFO_FILE} is missing: the set's tokenizers (vocabulary) are unknown"
            )
        return Vocab(**self.info["vocab"])

    def __len__(self) -> int:
        return len(self._offset)

    def members(self, i: int) -> dict[str, bytes]:
        """The raw members (field → bytes) of record ``i``."""
        shard = self.shards[int(self.shard_of[i])]
        with shard.open("rb") as f:
            f.seek(int(self._offset[i]))
            data = f.read(int(self._length[i]))
        out = {}
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
                for m in tf:
                    out[m.name.rpartition("/")[2].partition(".")[2]] = tf.extractfile(m).read()
        except (tarfile.TarError, OSError, EOFError, AttributeError) as e:
            raise RecordError(f"{shard.name}: record {i}: unreadable tar members ({e})") from None
        return out

    def __getitem__(self, i: int) -> TokenRecord:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} token records")
        i %= len(self)
        members = self.members(i)
        return record_from_members(members, f"{self.shards[int(self.shard_of[i])].name}: record {i}")


# ================================================================================= on the fly
class Prepared(NamedTuple):
    index: int  # dataset item
    sample: Sample | None  # None: unreadable (see reasons)
    # the flow-depth conditioning video, a float32 (1, 3, T, H, W) tensor; flow without depth (an estimator
    # fills it in the main process); or why there is none; None: not needed
    geometry: torch.Tensor | Geometry | str | None
    reasons: list[str]  # why the item was passed over


def _condition_video(geometry: Geometry | str | None) -> torch.Tensor | Geometry | str | None:
    """Flow and depth → their conditioning video (per clip, so its values do not depend on where it is
    made): loader workers do this work, and ship one tensor instead of two arrays (a tensor travels to
    the main process through shared memory, an array through the loader's pipe)."""
    if not isinstance(geometry, Geometry) or geometry.depth is None:
        return geometry
    from videopoet.tokenizers.conditioning import flow_depth_video

    return flow_depth_video(geometry.flow, geometry.depth)  # float32 (1, 3, T, H, W)


class _Renders:
    """A synthetic dataset's items as (sample, clip) pairs, for ``readable_items``."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __getitem__(self, i: int):
        return self.dataset.render(i)


class PreparedItems(Dataset):
    """Loader-worker side of tokenizing: item i → ``Prepared`` (the sample read or rendered, its flow-depth
    conditioning video when ``flow_depth`` is wanted); reading failures become reasons, never exceptions.

    A synthetic clip is rendered once, with its ground truth: that is what ``synthetic_geometry`` would
    re-render from the sample (same arguments, same arrays), at half the cost."""

    def __init__(self, dataset: Dataset, *, geometry: bool, estimate: bool):
        self.dataset, self.geometry, self.estimate = dataset, geometry, estimate

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Prepared:
        from videopoet.data.datasets import SyntheticDataset, readable_items

        reasons: list[str] = []
        if self.geometry and isinstance(self.dataset, SyntheticDataset):
            for _, (sample, clip) in readable_items(_Renders(self.dataset), [i], log=reasons.append):
                return Prepared(i, sample, _condition_video(Geometry(clip.flow, clip.depth)), reasons)
            return Prepared(i, None, None, reasons)
        for _, sample in readable_items(self.dataset, [i], log=reasons.append):
            geo = clip_geometry(sample, estimate=self.estimate) if self.geometry else None
            return Prepared(i, sample, _condition_video(geo), reasons)
        return Prepared(i, None, None, reasons)


class OnTheFlyRecords(Dataset):
    """Records of any dataset spec (``open_dataset(spec, **kwargs)``) tokenized when read: for small runs.
    Gives the records ``videopoet tokenize`` would store. An unreadable item raises RecordError (the
    training engine skips it). The tokenizer runs where the item is read: keep it on the CPU when loader
    workers read."""

    def __init__(self, spec: str | Path, record_tokenizer: RecordTokenizer, **open_dataset_kwargs):
        from videopoet.data.datasets import open_dataset

        if record_tokenizer.audio is not None:
            open_dataset_kwargs.setdefault("sample_rate", record_tokenizer.audio.config.sample_rate)
        self.spec, self.tokenizer = str(spec), record_tokenizer
        self.items = PreparedItems(
            open_dataset(spec, **open_dataset_kwargs),
            geometry="flow_depth" in record_tokenizer.kinds,
            estimate=record_tokenizer.depth is not None,
        )

    @property
    def vocab(self) -> Vocab:
        return self.tokenizer.vocab

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> TokenRecord:
        p = self.items[i]
        if p.sample is None:
            raise RecordError(f"{self.spec}: {'; '.join(p.reasons) or f'item {i} is unreadable'}")
        return self.tokenizer([p.sample], [p.geometry])[0]
