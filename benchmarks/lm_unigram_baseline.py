"""Per-task unigram baseline for the prefix LM's held-out loss (JSON out).

For each task, the target tokens of ``--train-items`` training records give an add-one-smoothed unigram
distribution over the vocabulary; the baseline is its cross-entropy (nats per target token) on the same
task's targets of the held-out records — what a model that ignores every prefix and position would score.

    python benchmarks/lm_unigram_baseline.py --train shards/train --heldout shards/heldout --out base.json
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch

from videopoet.lm.records import TokenShardDataset
from videopoet.lm.tasks import TRAINED_TASKS, build_example


def _targets(task: str, ds: TokenShardDataset, n: int, slots: int, dim: int) -> list[torch.Tensor]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(min(n, len(ds))):
        try:
            ex = build_example(task, ds[i], ds.vocab, text_slots=slots, text_dim=dim, rng=rng)
        except ValueError:
            continue
        out.append(ex.ids[ex.loss_mask])
    return out


def baseline(train: TokenShardDataset, heldout: TokenShardDataset, n: int, slots: int, dim: int) -> dict:
    result = {}
    for task in TRAINED_TASKS:
        fit, test = _targets(task, train, n, slots, dim), _targets(task, heldout, n, slots, dim)
        if not fit or not test:
            continue
        counts = torch.bincount(torch.cat(fit), minlength=train.vocab.size).double() + 1.0
        logp = (counts / counts.sum()).log()
        result[task] = round(float(-logp[torch.cat(test)].mean()), 4)
    return result


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
