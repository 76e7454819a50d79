"""Per-task unigram baseline for the prefix LM's held-out loss (JSON out).

For each task, the target tokens of ``--train-items`` training records give an add-one-smoothed unigram
distribution over the vocabulary; the baseline is its cross-entropy (nats per target token) on the same
task's targets of the held-out records — what a model that ignores every prefix and position would score.

    python benchmarks/lm_unigram_baseline.py --train shards/train --heldout shards/heldout --out base.json

The computation is the package's (``videopoet.eval.lm.unigram_baseline``); ``videopoet eval lm
--baseline-data`` reports it beside a model's loss.
"""

from __future__ import annotations

import argparse
import json
import math

from videopoet.eval.lm import unigram_baseline
from videopoet.lm.loss import first_records
from videopoet.lm.records import TokenShardDataset


def baseline(train, heldout, n: int, slots: int, dim: int) -> dict:
    """{task: nats, rounded to 4 places} on the first ``n`` records of each set (eval/lm.py computes it)."""
    fit, test = first_records(train, n), first_records(heldout, n)
    result = unigram_baseline(fit, test, train.vocab, text_slots=slots, text_dim=dim)
    return {task: round(nats, 4) for task, nats in result.items()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", required=True)
    p.add_argument("--heldout", required=True)
    p.add_argument("--train-items", type=int, default=2000)
    p.add_argument("--text-slots", type=int, default=64)
    p.add_argument("--text-dim", type=int, default=384)
    p.add_argument("--out")
    args = p.parse_args(argv)
    train, heldout = TokenShardDataset(args.train), TokenShardDataset(args.heldout)
    res = baseline(train, heldout, args.train_items, args.text_slots, args.text_dim)
    report = {"unigram_nats": res, "uniform_nats": round(math.log(train.vocab.size), 4)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return report


if __name__ == "__main__":
    main()
