"""Rendering speed of the synthetic world (frames + audio + masks + depth + flow + caption), JSON out.

    python benchmarks/bench_synthetic.py [--clips 50] [--threads 1]

Times whole ``render_clip`` calls over consecutive seeds (mixed scenes: every camera, background and
motion) after a warm-up, for 17x128x128, 41x128x128 and 17 frames of 128 wide x 224 tall.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=50, help="clips per setting")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads (1 = one core)")
    args = parser.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy loads its BLAS

    import numpy as np

    from videopoet.data.synthetic import render_clip

    results = []
    for frames, width, height in ((17, 128, 128), (41, 128, 128), (17, 128, 224)):
        for seed in range(3):  # warm-up
            render_clip(10_000 + seed, width=width, height=height, frames=frames)
        times, cpu = [], []
        for seed in range(args.clips):
            t0, c0 = time.perf_counter(), time.process_time()
            render_clip(seed, width=width, height=height, frames=frames)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        times = np.asarray(times)
        results.append(
            {
                "frames": frames,
                "width": width,
                "height": height,
                "clips": args.clips,
                "clips_per_s": round(float(len(times) / times.sum()), 2),
                "ms_per_clip": round(float(times.mean() * 1000), 2),
                "ms_median": round(float(np.median(times) * 1000), 2),
                "ms_p90": round(float(np.percentile(times, 90) * 1000), 2),
                # CPU time of this process: less sensitive than wall time to other jobs on the machine
                "cpu_ms_per_clip": round(float(np.mean(cpu) * 1000), 2),
            }
        )
    report = {
        "benchmark": "synthetic.render_clip",
        "threads": args.threads,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "cpu_count": os.cpu_count(),
        "results": results,
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return report


if __name__ == "__main__":
    main()
