"""Building ``chunks.sqlite`` rows from a build's chunk drafts (``publishing.chunk_rows``).

Chunks the corpus once (not timed), then times three ways to turn every draft into a
:class:`Chunk`, interleaved round by round so the machine's load falls on all alike:
``asdict`` (``Chunk(id=..., **msgspec.structs.asdict(draft))``, the 08:36 form),
``keywords`` (every field by name, the form before it) and ``positional`` (what
``chunk_rows`` does now: positional from ``msgspec.structs.astuple``).

    python -m benchmarks.chunk_rows_bench [--corpus /work/benchcache/corpora/sympy] [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
import numpy as np

from benchmarks.common import write_results
from codeintel.core.store.chunks import Chunk
from codeintel.indexer import chunking, publishing

Variant = Callable[[np.ndarray, list[chunking.ChunkDraft]], list[Chunk]]


def _asdict(ids: np.ndarray, drafts: list[chunking.ChunkDraft]) -> list[Chunk]:
    return [Chunk(id=int(i), **msgspec.structs.asdict(d)) for i, d in zip(ids, drafts, strict=True)]


def _keywords(ids: np.ndarray, drafts: list[chunking.ChunkDraft]) -> list[Chunk]:
    return [
        Chunk(
            id=int(i),
            path=d.path,
            start_line=d.start_line,
            end_line=d.end_line,
            language=d.language,
            symbol=d.symbol,
            content_hash=d.content_hash,
            text=d.text,
        )
        for i, d in zip(ids, drafts, strict=True)
    ]


VARIANTS: dict[str, Variant] = {
    "asdict": _asdict,
    "keywords": _keywords,
    "positional": publishing.chunk_rows,
}


def drafts_of(root: Path) -> list[chunking.ChunkDraft]:
    drafts: list[chunking.ChunkDraft] = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        drafts.extend(chunking.chunk_file(str(path.relative_to(root)), text))
    return drafts


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("/work/benchcache/corpora/sympy"))
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    drafts = drafts_of(args.corpus)
    ids = np.arange(len(drafts), dtype=np.int64)
    expected = _keywords(ids, drafts)
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, build in VARIANTS.items():
            start = time.perf_counter()
            rows = build(ids, drafts)
            seconds[name].append(time.perf_counter() - start)
            if rows != expected:
                raise SystemExit(f"{name} built different rows")
    base = statistics.median(seconds["asdict"])
    result_rows = [
        {
            "variant": name,
            "median_ms": statistics.median(times) * 1000,
            "min_ms": min(times) * 1000,
            "vs_asdict": statistics.median(times) / base,
        }
        for name, times in seconds.items()
    ]
    meta = {
        "corpus": str(args.corpus),
        "chunks": len(drafts),
        "rounds": args.rounds,
        "load_average_1m": os.getloadavg()[0],
    }
    write_results("chunk_rows", result_rows, meta)
    for row in result_rows:
        print(row)
    print(meta)


if __name__ == "__main__":
    main()
