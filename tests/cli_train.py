"""One helper for tests that train through the real CLI on one process or several (torchrun, gloo)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train_cli(
    kind: str, config: Path, out: Path, sets: list[str], *, ranks: int = 1, timeout: int = 600, resume=False
):
    """``videopoet train KIND --config CONFIG --set ... --set out_dir=OUT [--resume]`` on ``ranks``
    processes (fp32 as the config says, one thread each) → the CompletedProcess (output captured)."""
    launcher = [sys.executable, "-m", "videopoet.cli"]
    if ranks > 1:
        run = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
        launcher = [*run, "-m", "videopoet.cli"]
    flags = [a for s in [*sets, f"out_dir='{out.as_posix()}'"] for a in ("--set", s)]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    argv = [*launcher, "train", kind, "--config", str(config), *flags, *(["--resume"] if resume else [])]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
