"""A token bank for super-resolution training: clips tokenized once, then trained on for many epochs.

Tokenizing a 17-frame 256×256 clip (its target, its 2× downsampled condition and that condition's draft)
costs several times the tiny SR model's own forward and backward, so a run that tokenizes every item on
the fly spends most of its time there. With ``bank = N`` the recipe tokenizes the first N readable clips
of its data once, keeps their tokens (and caption embeddings) on the training device, and every step
reads items from them; masks, noise and dropout are still drawn per item, seeded by its position.

The bank is written to ``out_dir/token_bank.safetensors`` (safetensors, its settings in the header) and
read back by a resumed run with the same settings, so a resume trains on the same tokens it left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset

from videopoet.outputs import atomic_path

log = logging.getLogger("videopoet.train.token_bank")

BANK_FILE = "token_bank.safetensors"
FIELDS = ("hi", "lo", "draft", "text", "text_mask", "detail")


@dataclass(frozen=True)
class BankSlot:
    """A dataset item of a bank run: which clip of the bank (the step gathers its tokens on the device)."""

    index: int


class BankIndex(Dataset):
    """The bank's clips as dataset items (for the engine's data order and the item draws)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> BankSlot:
        return BankSlot(int(i))


@dataclass
class TokenBank:
    """Per clip: target tokens (N, t, H, W), condition tokens (N, t, H/2, W/2), the clean condition's
    draft (N, t, H, W) or None, caption embeddings (N, S, E) float16 and their mask (N, S) or None, and
    the detail the condition lost per target token (N, t, H, W) float16 or None
    (``train.superres.detail_map``)."""

    hi: torch.Tensor
    lo: torch.Tensor
    draft: torch.Tensor | None
    text: torch.Tensor | None
    text_mask: torch.Tensor | None
    detail: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.hi.shape[0]

    def to(self, device) -> TokenBank:
        move = {f: None if getattr(self, f) is None else getattr(self, f).to(device) for f in FIELDS}
        return TokenBank(**move)

    def take(self, index: torch.Tensor) -> TokenBank:
        """The clips at ``index`` (B,), token ids as int64, on the bank's device."""
        index = index.to(self.hi.device)
        rows = {f: None if getattr(self, f) is None else getattr(self, f)[index] for f in FIELDS}
        for f in ("hi", "lo", "draft"):
            rows[f] = None if rows[f] is None else rows[f].long()
        return TokenBank(**rows)

    def save(self, path: Path, settings: dict[str, str]) -> None:
        tensors = {f: getattr(self, f).contiguous().cpu() for f in FIELDS if getattr(self, f) is not None}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=settings)


def load_bank(path: Path, settings: dict[str, str]) -> TokenBank | None:
    """The bank at ``path`` when it was made with exactly ``settings``; None otherwise (or when absent)."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}) != settings:
                log.warning("%s was made with other settings: making a new bank", path)
                return None
            return TokenBank(**{k: f.get_tensor(k) if k in f.keys() else None for k in FIELDS})
    except Exception as e:  # a damaged cache is remade, never trusted
        log.warning("%s is unreadable (%s: %s): making a new bank", path, type(e).__name__, e)
        return None


class _Readable(Dataset):
    """Dataset index → (uint8 frames, caption) or (None, why it was passed over): read in loader workers."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, str]:
        from videopoet.data.datasets import readable_items

        skipped: list[str] = []
        for _, sample in readable_items(self.dataset, [i], log=skipped.append):
            return torch.from_numpy(np.ascontiguousarray(sample.frames)), sample.caption or ""
        return None, skipped[0] if skipped else f"item {i}: unreadable"


def read_clips(dataset, n: int, batch_size: int, num_workers: int):
    """Batches of (frames (B, T, H, W, 3) uint8, captions) of the first ``n`` readable clips, in order;
    each clip passed over is logged with its reason."""
    loader = DataLoader(_Readable(dataset), batch_size=batch_size, num_workers=num_workers, collate_fn=list)
    kept = 0
    for items in loader:
        good = []
        for frames, caption in items:
            if frames is None:
                log.warning("token bank: skipped %s", caption)
            elif kept + len(good) < n:
                good.append((frames, caption))
        if good:
            kept += len(good)
            yield torch.stack([f for f, _ in good]), [c for _, c in good]
        if kept >= n:
            return
    if kept < n:
        raise ValueError(f"the data holds only {kept} readable clips; bank = {n} asks for more")


def build_bank(batches, tokenize: Callable) -> TokenBank:
    """``tokenize(frames, captions)`` → dict of per-batch tensors (FIELDS) for every batch → one bank;
    token ids stored as int16 where they fit (int32 for codebooks over 2^15), caption embeddings padded to
    the longest caption."""
    parts: dict[str, list[torch.Tensor]] = {f: [] for f in FIELDS}
    for k, (frames, captions) in enumerate(batches):
        out = tokenize(frames, captions)
        if k % 50 == 49:
            log.info("token bank: %d clips tokenized", sum(len(t) for t in parts["hi"]) + len(frames))
        for f in FIELDS:
            if out.get(f) is not None:
                parts[f].append(out[f].cpu())
    ids = {f: _compact(torch.cat(parts[f])) if parts[f] else None for f in ("hi", "lo", "draft")}
    detail = torch.cat(parts["detail"]).half() if parts["detail"] else None
    if not parts["text"]:
        return TokenBank(**ids, text=None, text_mask=None, detail=detail)
    width = max(t.shape[1] for t in parts["text"])  # captions padded to the longest one
    text = torch.cat([F.pad(t, (0, 0, 0, width - t.shape[1])) for t in parts["text"]]).half()
    mask = torch.cat([F.pad(m, (0, width - m.shape[1])) for m in parts["text_mask"]])
    return TokenBank(**ids, text=text, text_mask=mask, detail=detail)


def _compact(ids: torch.Tensor) -> torch.Tensor:
    """Token ids in the smallest integer type that holds them: int16, else int32."""
    return ids.to(torch.int16 if int(ids.max()) < 2**15 else torch.int32)
