"""The primary build of a synthetic IVF-sized corpus, alone in a process: its peak memory.

Makes ``--n`` unit rows of ``--dim`` dimensions in float16 (a build's stored precision),
a slice at a time, records the process's high-water mark (``VmHWM``), builds the primary
with ``ann.build_primary`` under settings that force ``--kind``, and prints one JSON line:
the high-water mark before and after the build, the plan and the build's timings. FAISS
allocates outside Python, so tracemalloc would not see it; ``VmHWM`` does. For A/B runs,
run it as a file with another checkout's ``src`` on ``PYTHONPATH``::

    PYTHONPATH=src python benchmarks/primary_peak_bench.py --n 200000 --kind ivf_flat
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from codeintel.core.settings import IndexSettings
from codeintel.indexer import ann

SETTINGS = {
    "flat": {"exact_budget_ms": 1e9},
    "ivf_flat": {"exact_budget_ms": 0.0},
    "ivf_pq": {"exact_budget_ms": 0.0, "ivf_flat_max_bytes": 0},
}


def high_water_mib() -> float:
    """The process's peak resident memory so far, MiB (``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def synthetic(n: int, dim: int, seed: int = 7) -> np.ndarray:
    """(n, dim) float16 unit rows around n/40 centres, made 16,384 rows at a time."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(n // 40, 1), dim), dtype=np.float32)
    out = np.empty((n, dim), dtype=np.float16)
    for start in range(0, n, 16_384):
        rows = min(16_384, n - start)
        x = centres[rng.integers(0, len(centres), rows)]
        x += 0.8 * rng.standard_normal((rows, dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[start : start + rows] = x
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--kind", choices=sorted(SETTINGS), default="ivf_flat")
    ap.add_argument(
        "--train-sample-max", type=int, default=20_000, help="training rows (bounds the CPU)"
    )
    args = ap.parse_args(argv)
    xb = synthetic(args.n, args.dim)
    ids = np.arange(args.n, dtype=np.int64)
    before = high_water_mib()
    settings = IndexSettings(
        train_sample_max=args.train_sample_max,
        use_gpu=False,
        **SETTINGS[args.kind],  # type: ignore[arg-type]
    )
    cpu = time.process_time()
    index, plan, timings = ann.build_primary(xb, ids, settings)
    cpu = time.process_time() - cpu
    print(
        json.dumps(
            {
                "n": args.n,
                "dim": args.dim,
                "type": plan.type,
                "nlist": plan.nlist,
                "ntotal": int(index.ntotal),
                "high_water_mib_before_build": round(before, 1),
                "high_water_mib_after_build": round(high_water_mib(), 1),
                "build_cpu_s": round(cpu, 2),
                "timings_s": {k: round(v, 3) for k, v in timings.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
