"""One rank of ``benchmarks/bench_lm_scaling.py``: ``videopoet train lm`` in-process, then its peak memory.

Run under ``python -m torch.distributed.run ... benchmarks/lm_bench_rank.py --set k=v ... [--resume]``.
It is ``videopoet train lm`` (``videopoet.train.lm.train`` on a config built from the ``--set`` overrides),
plus two things the CLI cannot do:

- ``--set model.KEY=none`` sets the model override to ``None`` (a ``dict[str, Any]`` field keeps the
  string "none" otherwise; ``factorized_visual=None`` is needed when the shards' vocabulary is smaller than
  a paper preset's);
- at exit every rank writes ``OUT_DIR/bench_memory_rank{R}.json`` with its
  ``torch.cuda.max_memory_allocated()`` in bytes (``null`` on a CPU), for the benchmark to read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import torch

    from videopoet.config import load_config
    from videopoet.train.lm import LMTrainConfig, train
    from videopoet.train.loop import setup_logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    nones = [s.split("=", 1)[0][len("model.") :] for s in args.set if _is_model_none(s)]
    sets = [s for s in args.set if not _is_model_none(s)]
    setup_logging()
    cfg = load_config(LMTrainConfig, None, sets)
    cfg.model.update(dict.fromkeys(nones))
    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.reset_peak_memory_stats()
    status = train(cfg, resume=args.resume, overwrite=not args.resume, progress=False)
    rank = int(os.environ.get("RANK", "0"))
    peak = int(torch.cuda.max_memory_allocated()) if cuda else None
    info = {"rank": rank, "peak_memory_bytes": peak, "status": status, "resume": args.resume}
    if cuda:
        info["device"] = torch.cuda.get_device_name()
    path = Path(cfg.out_dir) / f"bench_memory_rank{rank}{'_resume' if args.resume else ''}.json"
    path.write_text(json.dumps(info) + "\n")
    return status


def _is_model_none(s: str) -> bool:
    key, _, value = s.partition("=")
    return key.strip().startswith("model.") and value.strip().strip("'\"").lower() in ("none", "null")


if __name__ == "__main__":
    sys.exit(main())
