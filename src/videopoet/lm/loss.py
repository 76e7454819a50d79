"""The prefix LM's loss and its held-out evaluation: one function for a training step, the trainer's
held-out loss and ``videopoet eval lm``.

- ``collate_examples`` stacks one task's examples (lm/tasks.py ``build_example``) into a batch; rows
  shorter than the longest are padded at the end (``<pad>``, no loss).
- ``target_loss``: cross-entropy on the output tokens only (the builders' loss mask), with the model's
  head run on the positions that predict a target only (``PrefixLM.forward(..., rows=)``): no (B, L, V)
  logits, and a factorized head's loss comes from its factors (``factorized_cross_entropy``).
- ``heldout_items`` / ``heldout_loss``: each task's examples of the first held-out records (rng seeded
  by the run's seed), scored in mini-batches and weighted by target tokens, so batching never changes
  the number.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from videopoet.device import autocast
from videopoet.lm.transformer import FactorLogits
from videopoet.lm.vocab import Vocab

log = logging.getLogger("videopoet.lm.loss")


def example_item(task: str, ex: Any) -> dict[str, Any]:
    fields = ("ids", "prefix_len", "loss_mask", "text", "text_mask")
    return {"task": task} | {k: getattr(ex, k) for k in fields}


def collate_examples(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack one step's examples; rows shorter than the longest are padded at the end (<pad>, no loss)."""
    longest = max(int(it["ids"].shape[0]) for it in items)
    ids = torch.full((len(items), longest), Vocab.pad, dtype=torch.long)
    loss_mask = torch.zeros((len(items), longest), dtype=torch.bool)
    for row, it in enumerate(items):
        n = int(it["ids"].shape[0])
        ids[row, :n], loss_mask[row, :n] = it["ids"], it["loss_mask"]
    pads = sum(longest - int(it["ids"].shape[0]) for it in items)
    return {
        "tasks": [it["task"] for it in items],
        "ids": ids,
        "prefix_len": torch.tensor([int(it["prefix_len"]) for it in items], dtype=torch.long),
        "loss_mask": loss_mask,
        "text": torch.stack([it["text"] for it in items]).float(),
        "text_mask": torch.stack([it["text_mask"] for it in items]),
        "padding": torch.tensor(pads / ids.numel()),
    }


def target_rows(loss_mask: torch.Tensor) -> torch.Tensor:
    """Loss mask (B, L) → the positions that predict a target (B, L): position j predicts token j + 1."""
    last = torch.zeros_like(loss_mask[:, :1])  # (B, 1): the last position predicts nothing
    return torch.cat([loss_mask[:, 1:], last], dim=1)


def target_loss(model, batch: dict[str, Any], *, text: bool, factorized_visual=None) -> torch.Tensor:
    """Mean cross-entropy (fp32) over the target tokens of ``batch`` (collate_examples) only: the model
    (PrefixLM, sharded or compiled) runs its head on the R positions that predict a target, never on
    the (B, L, V) logits of every position. ``factorized_visual`` is the model config's."""
    args = (batch["text"], batch["text_mask"]) if text else (None, None)
    out = model(batch["ids"], batch["prefix_len"], *args, rows=target_rows(batch["loss_mask"]))
    targets = batch["ids"][:, 1:][batch["loss_mask"][:, 1:]]  # (R,), the order of the selected rows
    if isinstance(out, FactorLogits):
        if factorized_visual is None:
            raise ValueError("a factorized head's loss needs factorized_visual (the model config's)")
        return factorized_cross_entropy(out, targets, *factorized_visual)
    return F.cross_entropy(out.float(), targets)


def factorized_cross_entropy(
    factors: FactorLogits, targets: torch.Tensor, visual_start: int, visual_size: int
) -> torch.Tensor:
    """Mean −log p(target) under FactorizedHead from its factors (R, ·), without its (R, V) log-probs.

    FactorizedHead.forward lays the V ids out as rest[:s] ‖ visual block ‖ rest[s:−1]: an id below the
    block is its own rest index, one above it shifts down by the block's size, and a visual id i takes
    the last rest index ("visual") plus log p_high(i // N) + log p_low(i % N).
    """
    n = factors.high.shape[-1]
    code = targets - visual_start  # (R,): the visual index where the target is visual
    visual = (code >= 0) & (code < visual_size)
    rest_index = torch.where(code < 0, targets, targets - visual_size)
    rest_index = torch.where(visual, factors.rest.shape[-1] - 1, rest_index)
    nll = F.cross_entropy(factors.rest.float(), rest_index, reduction="none")  # (R,)
    code = code.clamp(0, visual_size - 1)  # non-visual rows: any valid class, their term is dropped
    high = F.cross_entropy(factors.high.float(), code // n, reduction="none")
    low = F.cross_entropy(factors.low.float(), code % n, reduction="none")
    return torch.where(visual, nll + high + low, nll).mean()


def batch_loss(model, batch: dict[str, Any], *, amp: bool, factorized_visual=None) -> torch.Tensor:
    """``target_loss`` of a batch of one task (its inputs say whether the text is passed), under bf16
    autocast when ``amp`` and the batch is on a GPU: the loss of a training step and of the held-out one."""
    from videopoet.lm.tasks import task as task_spec

    text = "text" in task_spec(batch["tasks"][0]).inputs
    with autocast(batch["ids"].device, amp):
        return target_loss(model, batch, text=text, factorized_visual=factorized_visual)


# ============================================================================================ held-out loss
HELDOUT_RNG = 0xE7A1  # with the run's seed: the rng of the held-out examples (frame_prediction, stylization)


def first_records(dataset, num: int, *, on_skip=log.warning) -> list:
    """The first ``num`` readable records of ``dataset``; ``on_skip`` gets a line for each unreadable one."""
    from videopoet.data.datasets import readable_items

    items = readable_items(dataset, range(len(dataset)), log=on_skip)
    return [record for _, record in itertools.islice(items, num)]


def heldout_items(
    task: str, records: list, vocab: Vocab, *, text_slots: int, text_dim: int, seed: int
) -> tuple[list[dict[str, Any]], str | None]:
    """The held-out examples of ``task`` (text kept, never dropped), one per record that can make one, in
    order, all drawn from one rng seeded by (seed, HELDOUT_RNG) → (items, the reason the first record that
    could not make one gave, or None). LMRecipe.evaluate and ``videopoet eval lm`` score these."""
    from videopoet.lm.tasks import build_example

    rng = np.random.default_rng([seed, HELDOUT_RNG])
    items, reason = [], None
    for record in records:
        try:
            ex = build_example(task, record, vocab, text_slots=text_slots, text_dim=text_dim, rng=rng)
        except ValueError as e:  # the clip lacks what the task needs (no audio, no condition, no text)
            reason = reason or str(e)
            continue
        items.append(example_item(task, ex))
    return items, reason


@torch.no_grad()
def heldout_loss(
    model, items: list[dict[str, Any]], *, batch_size: int, device, amp: bool, factorized_visual=None
) -> tuple[float, int]:
    """Mean loss per target token of ``items`` (one task) in mini-batches of ``batch_size`` → (nats,
    target tokens). Each batch's mean (``batch_loss``) is weighted by its target count, so the result is
    the sum of the per-token losses over their count whatever the batching (padding adds no target)."""
    total, count = 0.0, 0
    for start in range(0, len(items), batch_size):
        batch = collate_examples(items[start : start + batch_size])
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        n = int(batch["loss_mask"][:, 1:].sum())  # the targets: token j + 1 for every target row j
        total += float(batch_loss(model, batch, amp=amp, factorized_visual=factorized_visual)) * n
        count += n
    if count == 0:
        raise ValueError("heldout_loss needs at least one item with a target token")
    return total / count, count
