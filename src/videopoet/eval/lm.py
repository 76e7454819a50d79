"""``videopoet eval lm``: the per-task held-out loss of a saved prefix LM, beside a unigram baseline.

For every trained task (lm/tasks.py's ``TRAINED_TASKS``, or ``--tasks``) the first ``--num`` records of a
held-out token set become that task's examples exactly as the trainer's evaluation builds them
(lm/loss.py's ``heldout_items``: the same rng for the same ``--seed``), and lm/loss.py's ``target_loss``
is averaged over their target tokens in mini-batches of ``--batch-size`` (``heldout_loss``: the sum of
the per-token losses over their count, whatever the batching). So a run's ``val_loss/<task>`` is what
this command reports for its exported weights on the same records. Precision as the trainer's default:
bf16 autocast on CUDA, fp32 on a CPU. Tasks the records cannot serve (no audio, no condition tokens, no
text) are reported as skipped with the reason.

With ``--baseline-data`` (the training token set), the targets of each task there give an add-one-smoothed
unigram over the vocabulary; its cross-entropy on the very held-out targets the loss is on is what a model
that ignores every prefix and position scores, and log V is the uniform distribution's.

This module reads lm/loss.py (the held-out loss the trainer also uses: one loss function).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from videopoet.errors import UserError
from videopoet.lm.tasks import TRAINED_TASKS
from videopoet.lm.vocab import Vocab

log = logging.getLogger("videopoet.eval.lm")


# ============================================================================================ inputs
def lm_folder(path: str | Path) -> Path:
    """A PrefixLM component folder, or a pipeline folder's transformer/ (its model_index.json says where)."""
    from videopoet.pipeline import MODEL_INDEX, read_index

    path = Path(path)
    if (path / MODEL_INDEX).is_file():
        return path / read_index(path / MODEL_INDEX)["transformer"]
    return path


def open_token_set(spec: str | Path, vocab_size: int, flag: str):
    """A ``videopoet tokenize`` set whose vocabulary is the model's (``vocab_size`` ids); else UserError."""
    from videopoet.lm.records import TokenShardDataset

    ds = TokenShardDataset(spec)
    if ds.vocab.size != vocab_size:
        raise UserError(
            f"{flag} {spec}: the token set's tokenizers make a vocabulary of {ds.vocab.size} ids, the model "
            f"has {vocab_size}; pass shards tokenized with the tokenizers the model was trained on"
        )
    return ds


def parse_tasks(names: list[str] | None) -> list[str]:
    """``--tasks`` (names or aliases, space- or comma-separated) → canonical trained task names, in the
    registry's order; None: every trained task."""
    from videopoet.lm.tasks import task

    if not names:
        return list(TRAINED_TASKS)
    chosen = set()
    for name in (n for arg in names for n in arg.split(",") if n):
        try:
            spec = task(name)
        except ValueError as e:
            raise UserError(str(e)) from None
        if spec.name not in TRAINED_TASKS:
            raise UserError(
                f"task {name!r} composes {', '.join(spec.composed_of)}: the LM is not trained on it"
            )
        chosen.add(spec.name)
    return [t for t in TRAINED_TASKS if t in chosen]


# ============================================================================================ baseline
def target_tokens(items: list[dict[str, Any]]) -> torch.Tensor:
    """The target ids of examples (``example_item`` dicts), concatenated (N,)."""
    return torch.cat([it["ids"][it["loss_mask"]] for it in items])


def unigram_nats(fit: torch.Tensor, test: torch.Tensor, vocab_size: int) -> float:
    """Cross-entropy (nats per token) of ``test`` ids under the add-one-smoothed unigram of ``fit`` ids."""
    counts = torch.bincount(fit, minlength=vocab_size).double() + 1.0
    log_p = (counts / counts.sum()).log()
    return float(-log_p[test].mean())


def task_unigram(
    task: str,
    fit_records: list,
    test_items: list[dict[str, Any]],
    vocab: Vocab,
    *,
    text_slots: int,
    text_dim: int,
) -> float | None:
    """The unigram baseline of ``task`` on ``test_items``' targets, counted on the task's targets of
    ``fit_records``; None when either side has no example of the task."""
    from videopoet.lm.loss import heldout_items

    fit, _ = heldout_items(task, fit_records, vocab, text_slots=text_slots, text_dim=text_dim, seed=0)
    if not fit or not test_items:
        return None
    return unigram_nats(target_tokens(fit), target_tokens(test_items), vocab.size)


def unigram_baseline(
    fit_records: list,
    test_records: list,
    vocab: Vocab,
    *,
    text_slots: int,
    text_dim: int,
    tasks: tuple[str, ...] | list[str] = TRAINED_TASKS,
) -> dict[str, float]:
    """{task: unigram nats} for the tasks that both record lists can make examples of (the targets do not
    depend on the examples' rng)."""
    from videopoet.lm.loss import heldout_items

    out = {}
    for task in tasks:
        test, _ = heldout_items(task, test_records, vocab, text_slots=text_slots, text_dim=text_dim, seed=0)
        nats = task_unigram(task, fit_records, test, vocab, text_slots=text_slots, text_dim=text_dim)
        if nats is not None:
            out[task] = nats
    return out


# ============================================================================================ evaluation
@torch.no_grad()
def evaluate(
    model,
    records: list,
    vocab: Vocab,
    *,
    tasks: list[str] | tuple[str, ...] = TRAINED_TASKS,
    batch_size: int = 8,
    seed: int = 0,
    device: torch.device | str = "cpu",
    fit_records: list | None = None,
) -> dict[str, Any]:
    """→ {"tasks": [{"task", "loss", "sequences", "target_tokens"[, "unigram_nats"]}, ...], "skipped":
    {task: reason}}: the held-out loss (nats per target token) of ``model`` (a PrefixLM) per task."""
    from videopoet.lm.loss import heldout_items, heldout_loss

    device = torch.device(device)
    model = model.to(device).eval()
    cfg = model.config
    shape = dict(text_slots=cfg.text_slots, text_dim=cfg.text_dim)
    rows, skipped = [], {}
    for task in tasks:
        items, reason = heldout_items(task, records, vocab, seed=seed, **shape)
        if not items:
            skipped[task] = reason or "no held-out records"
            continue
        loss, tokens = heldout_loss(model, items, batch_size=batch_size, device=device, amp=True,
                                    factorized_visual=cfg.factorized_visual)  # fmt: skip
        row = {"task": task, "loss": loss, "sequences": len(items), "target_tokens": tokens}
        if fit_records is not None:
            row["unigram_nats"] = task_unigram(task, fit_records, items, vocab, **shape)
        rows.append(row)
        log.info("%s: %.4f nats per target token (%d sequences)", task, loss, len(items))
    return {"tasks": rows, "skipped": skipped}


# ============================================================================================ report
def _table(metrics: dict[str, Any]) -> str:
    """Markdown: one row per task (loss, and the baselines when counted), skipped tasks last."""
    baseline = metrics["baseline_data"] is not None
    head = ["task", "sequences", "target tokens", "loss (nats/token)"]
    head += ["unigram", "uniform"] if baseline else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in metrics["tasks"]:
        cells = [row["task"], str(row["sequences"]), str(row["target_tokens"]), f"{row['loss']:.4f}"]
        if baseline:
            unigram = row.get("unigram_nats")
            cells += ["—" if unigram is None else f"{unigram:.4f}", f"{metrics['uniform_nats']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    for task in metrics["skipped"]:
        lines.append("| " + " | ".join([task, "skipped", *[""] * (len(head) - 2)]) + " |")
    return "\n".join(lines)


def _storage(folder: Path) -> dict[str, Any]:
    """How the weights are stored (config.json's storage; float unless int8) and the file's size."""
    meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return {
        "storage": meta.get("storage") or "float",
        "weights_bytes": (folder / "model.safetensors").stat().st_size,
    }


def _records(args, vocab_size: int) -> tuple[Any, list, list | None, list[str]]:
    """(held-out set, its first --num readable records, baseline records or None, skip reasons)."""
    from videopoet.lm.loss import first_records

    heldout = open_token_set(args.data, vocab_size, "--data")
    fit = None
    if args.baseline_data:
        fit = first_records(
            open_token_set(args.baseline_data, vocab_size, "--baseline-data"), args.baseline_num
        )
    unreadable: list[str] = []
    records = first_records(heldout, args.num, on_skip=unreadable.append)
    if not records:
        raise UserError(f"--data {args.data}: no readable records ({'; '.join(unreadable[:3]) or 'empty'})")
    return heldout, records, fit, unreadable


def main(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    from videopoet.device import pick_device
    from videopoet.eval.report import check_report, write_report
    from videopoet.lm.transformer import PrefixLM

    check_report(args.out, overwrite=getattr(args, "overwrite", False))
    tasks = parse_tasks(args.tasks)
    device = pick_device(args.device)
    folder = lm_folder(args.model)
    model = PrefixLM.from_pretrained(folder, device=device)
    heldout, records, fit, unreadable = _records(args, model.config.vocab_size)
    t0 = time.time()
    result = evaluate(model, records, heldout.vocab, tasks=tasks, batch_size=args.batch_size, seed=args.seed,
                      device=device, fit_records=fit)  # fmt: skip
    metrics = {
        "model": str(args.model),
        **_storage(folder),
        "data": str(args.data),
        "baseline_data": str(args.baseline_data) if args.baseline_data else None,
        "records": len(records),
        "unreadable_records": len(unreadable),
        "baseline_records": len(fit) if fit is not None else 0,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "device": str(device),
        "vocab_size": model.config.vocab_size,
        "uniform_nats": math.log(model.config.vocab_size),
        "seconds": round(time.time() - t0, 2),
        **result,
    }
    notes = [f"unreadable record: {reason}" for reason in unreadable[:20]]  # skipped tasks: in the table
    json_path, md_path = write_report(args.out, "Prefix LM held-out loss", metrics, intro=[_table(metrics)],
                                      notes=notes)  # fmt: skip
    summary = ", ".join(f"{r['task']} {r['loss']:.4f}" for r in result["tasks"]) or "no task could be scored"
    print(
        f"held-out loss (nats per target token) on {len(records)} records: {summary} → {json_path}, {md_path}"
    )
    return 0
