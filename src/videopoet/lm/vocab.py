"""The prefix LM's one id space: special and task tokens, then visual codes, then audio codes per RVQ level.

Layout (spec §2; ids are stable: new special tokens are appended, never inserted)::

    [0, 256)          special tokens (SPECIAL_TOKENS below); the ids after them are reserved
    [256, 256 + Nv)   visual codes: LM id = 256 + tokenizer index (Nv = 2^12 tiny, 2^18 paper)
    [256 + Nv, V)     audio codes, one block of Na per RVQ level: LM id = audio_start + level·Na + code
                      (4 × 1024 for the bundled codec)

Dimension key: t h w latent video grid, K audio RVQ levels, N audio frames.

Choices the spec leaves open, made here:
- ``<task>`` has one value per distinct *output* (spec §2: T2V, I2V and unconditional video share one).
  TASK_OUTPUTS names them: ``video`` (a whole clip: unconditional, T2V, I2V, A2V), ``image`` (the first
  latent frame, T2I), ``continuation`` (future frames of a given clip), ``av_continuation`` (future frames
  and their audio), ``painting`` (the whole clip completed from a masked one: in/outpainting),
  ``stylization`` (the whole clip restyled from flow/depth), ``audio`` (V2A).
- ``<res>`` has a value per output resolution (128×128 and portrait 128 wide × 224 tall) and the duration
  a value per clip length (17 and 41 frames), so the builders may always state both.
- ``<text>`` is the placeholder id of one text slot: the model replaces it with a projected text embedding
  (lm/transformer.py); ``<pad>`` fills sequences to a common length and is never attended to.
- ``<source>`` (paper Table 4) is kept as one id whose use the task builders decide.
- The paper's small English word list after the audio codes is not part of this vocabulary: text enters
  only as embeddings.
- Visual grids flatten time-major, then rows, then columns (causal latents come first); audio codes
  flatten level-major (all level-0 frames, then level 1, …), as in the paper.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch

SPECIAL_BLOCK = 256  # ids [0, 256) belong to special and task tokens (spec §2)
TASK_OUTPUTS = ("video", "image", "continuation", "av_continuation", "painting", "stylization", "audio")
RESOLUTIONS = ((128, 128), (128, 224))  # (width, height) of the outputs the paper trains on
DURATIONS = (17, 41)  # frames per clip (2.125 s and 5.125 s at 8 fps)

SPECIAL_TOKENS: tuple[str, ...] = (
    "<pad>",
    "<bos>",
    "<eos>",
    "<bot_i>",
    "<eot_i>",
    "<bov_i>",
    "<eov_i>",
    "<boa_i>",
    "<eoa_i>",
    "<bov_o>",
    "<eov_o>",
    "<boa_o>",
    "<eoa_o>",
    "<source>",
    "<text>",
    *(f"<task:{kind}>" for kind in TASK_OUTPUTS),
    *(f"<res:{w}x{h}>" for w, h in RESOLUTIONS),
    *(f"<dur:{frames}>" for frames in DURATIONS),
)
SPECIAL_IDS: dict[str, int] = {name: i for i, name in enumerate(SPECIAL_TOKENS)}
assert len(SPECIAL_TOKENS) <= SPECIAL_BLOCK


class Block(NamedTuple):
    """Which block an id lies in: kind is "special", "visual" or "audio"; level is the RVQ level (audio)."""

    kind: str
    level: int | None = None


IntOrTensor = int | torch.Tensor


@dataclass(frozen=True)
class Vocab:
    visual_codebook_size: int  # video tokenizer codebook (2^K for K LFQ bits)
    audio_levels: int  # RVQ levels of the audio codec, one id block each
    audio_codebook_size: int  # codes per RVQ level

    pad: ClassVar[int] = SPECIAL_IDS["<pad>"]
    bos: ClassVar[int] = SPECIAL_IDS["<bos>"]
    eos: ClassVar[int] = SPECIAL_IDS["<eos>"]
    bot_i: ClassVar[int] = SPECIAL_IDS["<bot_i>"]
    eot_i: ClassVar[int] = SPECIAL_IDS["<eot_i>"]
    bov_i: ClassVar[int] = SPECIAL_IDS["<bov_i>"]
    eov_i: ClassVar[int] = SPECIAL_IDS["<eov_i>"]
    boa_i: ClassVar[int] = SPECIAL_IDS["<boa_i>"]
    eoa_i: ClassVar[int] = SPECIAL_IDS["<eoa_i>"]
    bov_o: ClassVar[int] = SPECIAL_IDS["<bov_o>"]
    eov_o: ClassVar[int] = SPECIAL_IDS["<eov_o>"]
    boa_o: ClassVar[int] = SPECIAL_IDS["<boa_o>"]
    eoa_o: ClassVar[int] = SPECIAL_IDS["<eoa_o>"]
    source: ClassVar[int] = SPECIAL_IDS["<source>"]
    text_slot: ClassVar[int] = SPECIAL_IDS["<text>"]

    def __post_init__(self) -> None:
        for name in ("visual_codebook_size", "audio_levels", "audio_codebook_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Vocab.{name} must be a positive int, got {value!r}")

    # ------------------------------------------------------------------------------------ layout
    @property
    def size(self) -> int:
        """V: ids are [0, size)."""
        return self.audio_start + self.audio_levels * self.audio_codebook_size

    @property
    def special_range(self) -> range:
        return range(0, SPECIAL_BLOCK)

    @property
    def visual_start(self) -> int:
        return SPECIAL_BLOCK

    @property
    def visual_range(self) -> range:
        """The ids a visual output position may take (for constrained decoding)."""
        return range(self.visual_start, self.visual_start + self.visual_codebook_size)

    @property
    def audio_start(self) -> int:
        return self.visual_start + self.visual_codebook_size

    def audio_range(self, level: int) -> range:
        """The ids of RVQ level ``level`` (an audio output position of that level may take only these)."""
        level = self._check_level(level)
        start = self.audio_start + level * self.audio_codebook_size
        return range(start, start + self.audio_codebook_size)

    # ------------------------------------------------------------------------------------ named ids
    def task(self, output: str) -> int:
        """The ``<task>`` id of an output kind (one of TASK_OUTPUTS)."""
        if output not in TASK_OUTPUTS:
            raise ValueError(f"unknown task output {output!r}; choose one of {list(TASK_OUTPUTS)}")
        return SPECIAL_IDS[f"<task:{output}>"]

    def resolution(self, width: int, height: int) -> int:
        """The ``<res>`` id of an output size (width × height pixels)."""
        if (width, height) not in RESOLUTIONS:
            sizes = ", ".join(f"{w}x{h}" for w, h in RESOLUTIONS)
            raise ValueError(f"no resolution token for {width}x{height} (width x height); known: {sizes}")
        return SPECIAL_IDS[f"<res:{width}x{height}>"]

    def duration(self, frames: int) -> int:
        """The duration id of a clip of ``frames`` frames."""
        if frames not in DURATIONS:
            raise ValueError(f"no duration token for {frames} frames; known: {list(DURATIONS)}")
        return SPECIAL_IDS[f"<dur:{frames}>"]

    def block_of(self, token: int) -> Block:
        """Which block ``token`` lies in."""
        token = _checked(token, self.size, "LM id")
        if token < self.visual_start:
            return Block("special")
        if token < self.audio_start:
            return Block("visual")
        return Block("audio", (token - self.audio_start) // self.audio_codebook_size)

    def token_name(self, token: int) -> str:
        """A readable name: ``<bos>``, ``<reserved:40>``, ``v123`` (visual index), ``a1:45`` (level 1)."""
        block = self.block_of(token)
        if block.kind == "special":
            return SPECIAL_TOKENS[token] if token < len(SPECIAL_TOKENS) else f"<reserved:{token}>"
        if block.kind == "visual":
            return f"v{token - self.visual_start}"
        return f"a{block.level}:{token - self.audio_range(block.level).start}"

    # ------------------------------------------------------------------------------------ maps
    def visual_to_lm(self, index: IntOrTensor) -> IntOrTensor:
        """Video tokenizer index (int or integer tensor of any shape) → LM id."""
        return _checked(index, self.visual_codebook_size, "visual index") + self.visual_start

    def lm_to_visual(self, ids: IntOrTensor) -> IntOrTensor:
        """LM id(s) in the visual block → video tokenizer index."""
        return _checked(ids, self.visual_range, "visual LM id") - self.visual_start

    def audio_to_lm(self, codes: IntOrTensor, level: int) -> IntOrTensor:
        """Codes of one RVQ level (int or integer tensor) → LM ids in that level's block."""
        start = self.audio_range(level).start
        return _checked(codes, self.audio_codebook_size, f"audio code (level {level})") + start

    def lm_to_audio(self, ids: IntOrTensor, level: int) -> IntOrTensor:
        """LM id(s) in level ``level``'s block → codes of that level."""
        block = self.audio_range(level)
        return _checked(ids, block, f"audio LM id of level {level}") - block.start

    def visual_grid_to_lm(self, indices: torch.Tensor) -> torch.Tensor:
        """Tokenizer grid (..., t, h, w) → LM ids (..., t·h·w), time-major then rows."""
        if not torch.is_tensor(indices) or indices.ndim < 3:
            raise ValueError(f"indices must be a (..., t, h, w) tensor, got {_describe(indices)}")
        return self.visual_to_lm(indices.flatten(-3))  # (..., t·h·w)

    def lm_to_visual_grid(self, ids: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """LM ids (..., t·h·w) → tokenizer grid (..., t, h, w)."""
        t, h, w = grid
        if not torch.is_tensor(ids) or ids.ndim < 1 or ids.shape[-1] != t * h * w:
            raise ValueError(f"ids must be a (..., {t * h * w}) tensor for grid {grid}, got {_describe(ids)}")
        return self.lm_to_visual(ids).unflatten(-1, (t, h, w))  # (..., t, h, w)

    def audio_codes_to_lm(self, codes: torch.Tensor) -> torch.Tensor:
        """Codec codes (..., K, N) of levels 0 … K−1 → LM ids (..., K·N), level-major."""
        if not torch.is_tensor(codes) or codes.ndim < 2 or not 1 <= codes.shape[-2] <= self.audio_levels:
            raise ValueError(
                f"codes must be a (..., K, N) tensor with 1 ≤ K ≤ {self.audio_levels} levels, "
                f"got {_describe(codes)}"
            )
        levels = [self.audio_to_lm(codes[..., k, :], k) for k in range(codes.shape[-2])]
        return torch.cat(levels, dim=-1)  # (..., K·N) level-major

    def lm_to_audio_codes(self, ids: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        """LM ids (..., K·N), level-major → codec codes (..., K, N); K = ``levels`` (default all)."""
        levels = self.audio_levels if levels is None else levels
        if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= self.audio_levels:
            raise ValueError(f"levels must be an int in [1, {self.audio_levels}], got {levels!r}")
        if not torch.is_tensor(ids) or ids.ndim < 1 or ids.shape[-1] % levels:
            raise ValueError(f"ids must be a (..., {levels}·N) tensor, got {_describe(ids)}")
        per_level = ids.unflatten(-1, (levels, -1))  # (..., K, N)
        return torch.stack([self.lm_to_audio(per_level[..., k, :], k) for k in range(levels)], dim=-2)

    def _check_level(self, level: int) -> int:
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < self.audio_levels:
            raise ValueError(f"audio level must be an int in [0, {self.audio_levels}), got {level!r}")
        return level


# The vocabularies of the tokenizer presets (video bits, audio levels × codes): debug 2^8 + 4 × 64,
# tiny (bundled) 2^12 + 4 × 1024, paper 2^18 + 4 × 1024.
VOCABS: dict[str, Vocab] = {
    "debug": Vocab(2**8, 4, 64),
    "tiny": Vocab(2**12, 4, 1024),
    "paper": Vocab(2**18, 4, 1024),
}


def _checked(x: IntOrTensor, allowed: int | range, what: str) -> IntOrTensor:
    """``x`` (int or integer tensor) after checking every value lies in ``allowed`` ([0, n) for an int n)."""
    lo, hi = (0, allowed) if isinstance(allowed, int) else (allowed.start, allowed.stop)
    if torch.is_tensor(x):
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"{what}s must be an integer tensor, got {x.dtype}")
        if x.numel():
            low, high = torch.aminmax(x)
            if low < lo or high >= hi:
                bad = (low if low < lo else high).item()
                raise ValueError(f"{what} {bad} is out of range: {what}s lie in [{lo}, {hi})")
        return x
    if isinstance(x, bool):
        raise ValueError(f"{what} must be an int or an integer tensor, got a bool")
    try:
        value = operator.index(x)
    except TypeError:
        raise ValueError(f"{what} must be an int or an integer tensor, got {_describe(x)}") from None
    if not lo <= value < hi:
        raise ValueError(f"{what} {value} is out of range: {what}s lie in [{lo}, {hi})")
    return value


def _describe(x: object) -> str:
    return f"shape {tuple(x.shape)}" if torch.is_tensor(x) else type(x).__name__
