"""Incremental update cost, embedding excluded: ``index update`` adding 1K and 10K chunks.

The seed's targets were < 60 s for 1K new chunks and < 5 min for 10K. This runs
the real pipeline (fetch, diff, chunk, sqlite copy, secondary add, publish) on
a real repository; only the model is replaced by a hash embedder (a few µs per
text) and the ``embed`` stage is subtracted anyway, as the issue asks. A merge
of everything at the end shows the rebuild-from-stored-vectors cost.

    python -m benchmarks.update_bench [--base-chunks 20000] [--dim 384]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.common import write_results
from codeintel.core.settings import Settings
from codeintel.indexer import pipeline, progress

FUNCTIONS_PER_FILE = 5
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.org",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.org",
    "PATH": "/usr/bin:/bin",
}


class HashEmbedder:
    """Deterministic unit vectors from a text's hash: the cost of embedding taken out."""

    def __init__(self, dim: int) -> None:
        self.model = "hash-embedder"
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            out[row] = np.random.default_rng(seed).standard_normal(self.dim)
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def _module(tag: str, i: int) -> str:
    return "\n\n".join(
        f"def {tag}_{i}_{j}(value):\n"
        f'    """Transform value step {j} of module {i} ({tag})."""\n'
        f"    total = value * {j + 1}\n"
        f"    return total + {i}\n"
        for j in range(FUNCTIONS_PER_FILE)
    )


def _commit(repo: Path, tag: str, chunks: int) -> None:
    for i in range(chunks // FUNCTIONS_PER_FILE):
        path = repo / tag / f"m{i // 100}" / f"mod_{i}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_module(tag, i))
    subprocess.run(["git", "add", "-A"], cwd=repo, env=GIT_ENV, check=True)
    subprocess.run(["git", "commit", "-qm", tag], cwd=repo, env=GIT_ENV, check=True)


def run(base_chunks: int, dim: int, sizes: Sequence[int]) -> list[dict[str, object]]:
    embedder = HashEmbedder(dim)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, env=GIT_ENV, check=True)
        _commit(repo, "base", base_chunks)
        settings = Settings.from_env({}, store={"path": Path(tmp) / "store"})
        start = time.perf_counter()
        built = pipeline.build(settings, str(repo), embedder)  # type: ignore[arg-type]
        rows.append(_row("build", built, time.perf_counter() - start, {}))
        for size in sizes:
            _commit(repo, f"add{size}", size)
            reporter = progress.Reporter()
            start = time.perf_counter()
            result = pipeline.update(
                settings,
                embedder,  # type: ignore[arg-type]
                merge_threshold=0,
                reporter=reporter,
            )
            rows.append(
                _row(
                    f"update +{size} chunks", result, time.perf_counter() - start, reporter.timings
                )
            )
        reporter = progress.Reporter()
        start = time.perf_counter()
        merged = pipeline.merge(settings, reporter=reporter)
        rows.append(_row("merge", merged, time.perf_counter() - start, reporter.timings))
    return rows


def _row(
    what: str, result: pipeline.IndexResult, wall: float, timings: dict[str, float]
) -> dict[str, object]:
    embed = timings.get("embed", 0.0)
    return {
        "what": what,
        "new_chunks": result.chunks,
        "primary": result.vectors.primary,
        "secondary": result.vectors.secondary,
        "index_type": result.index_type,
        "wall_s": round(wall, 2),
        "embed_s": round(embed, 2),
        "wall_minus_embed_s": round(wall - embed, 2),
        **{f"{k}_s": round(v, 2) for k, v in timings.items() if k != "embed"},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base-chunks", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--sizes", default="1000,10000")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    rows = run(args.base_chunks, args.dim, [int(s) for s in args.sizes.split(",")])
    for row in rows:
        print(row)
    write_results(
        "update",
        rows,
        {
            "what": "index update adding N chunks, embedding excluded (hash embedder; embed stage subtracted)",
            "targets": "seed: 1K < 60 s, 10K < 5 min",
            "base_chunks": args.base_chunks,
            "dim": args.dim,
        },
    )


if __name__ == "__main__":
    main()
