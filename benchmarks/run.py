"""``make bench``: every benchmark in one run, each writing JSON + a markdown table.

    python -m benchmarks.run [--quick] [--only ann,indexing,searcher]

Results land in ``benchmarks/results/<name>.json`` and ``.md``. Benchmarks never
assert on time; they measure and report (ratios against the named baselines).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

BENCHMARKS = {
    "ann": ("benchmarks.ann_bench", ["--quick"]),
    "indexing": ("benchmarks.indexing_bench", []),
    "update": ("benchmarks.update_bench", ["--base-chunks", "5000"]),
    "searcher": (
        "benchmarks.searcher_bench",
        ["--commits", "300", "--samples", "20", "--clients", "50", "--seconds", "5"],
    ),
    "mcp_sessions": ("benchmarks.mcp_sessions_bench", ["--calls", "1500"]),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run the codeintel benchmarks")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset")
    args = parser.parse_args(argv)
    failed = []
    for name in args.only.split(","):
        module_name, quick_args = BENCHMARKS[name]
        print(f"== {name} ==", flush=True)
        start = time.perf_counter()
        try:
            module = importlib.import_module(module_name)
            module.main(quick_args if args.quick else [])
        except Exception as e:  # report every benchmark, even when one breaks
            print(f"{name} failed: {type(e).__name__}: {e}", file=sys.stderr)
            failed.append(name)
        print(f"== {name}: {time.perf_counter() - start:.1f} s ==", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
