"""Navigation latency over REST: read_file, find_symbol, file_outline, find_references (issue 18).

The repository is sympy's sources (``benchmarks/retrieval_corpus.py`` writes it
to ``/work/benchcache/corpora/sympy``: 1,500 files, past 35K chunks). The
navigation tools never touch vectors, and embedding 35K chunks on this machine
takes most of an hour, so the store is built by the product's own pipeline with
:class:`HashEmbedder`, a 16-d vector per text from its hash: the chunk pass, the
symbol index, FTS5 and FAISS are all the real ones, only the vectors mean nothing
(semantic search is not measured here). The store is kept under
``/work/benchcache/stores/sympy-nav`` and rebuilt only when it lacks symbols.

A searcher runs as its own process (``codeintel serve``), so the client's GIL is
not the server's; one keep-alive client sends requests one at a time. Targets:
find_symbol, file_outline and read_file p95 <= 5 ms; find_references p95 <= 30 ms
for names with at most 1,000 occurrences, and every name within the token budget.
``list_repos`` is timed interleaved with every tool as the baseline of the same run
(the machine is shared: ratios to it hold better than absolute figures).

    python -m benchmarks.navigation_bench [--calls 200]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks import serverproc
from benchmarks.common import write_results
from benchmarks.searcher_bench import pct
from codeintel.core import errors
from codeintel.core import symbols as symbols_mod
from codeintel.core.settings import Settings
from codeintel.indexer import pipeline

REPO = Path("/work/benchcache/corpora/sympy")
STORE = Path("/work/benchcache/stores/sympy-nav")
HASH_DIM = 16


class HashEmbedder:
    """A vector per text from its BLAKE2b hash: the cheapest embedder the pipeline accepts."""

    model = "bench-hash-16"
    dim = HASH_DIM

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = [
            np.frombuffer(hashlib.blake2b(t.encode(), digest_size=64).digest(), dtype=np.uint8)[
                :HASH_DIM
            ]
            for t in texts
        ]
        xb = np.asarray(rows, dtype=np.float32).reshape(len(texts), HASH_DIM) + 1.0
        return xb / np.linalg.norm(xb, axis=1, keepdims=True)

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def ensure_store(repo: Path, store: Path) -> tuple[Path, float | None]:
    """The store's live generation directory, building it first if it has no symbols."""
    current = store / "CURRENT"
    if current.is_file():
        gen = store / "generations" / current.read_text().strip()
        try:
            index = symbols_mod.SymbolIndex.open(gen)
        except errors.IndexFormatError:  # an older layout of symbols.sqlite: build again
            index = None
        if index is not None:
            index.close()
            return gen, None
        shutil.rmtree(store)
    settings = Settings.from_env({}, store={"path": store})
    t0 = time.perf_counter()
    pipeline.build(settings, str(repo), HashEmbedder())
    seconds = time.perf_counter() - t0
    return store / "generations" / current.read_text().strip(), seconds


def workload(gen: Path, n: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Requests drawn from the generation's own symbols and files (fixed seed)."""
    rng = random.Random(seed)
    db = sqlite3.connect(gen / "symbols.sqlite")
    names = [r[0] for r in db.execute("SELECT DISTINCT name FROM symbols WHERE length(name) > 3")]
    paths = [r[0] for r in db.execute("SELECT path FROM files WHERE language = 'python'")]
    db.close()
    counts = name_totals(gen)
    chunks = sqlite3.connect(gen / "chunks.sqlite")
    lines = dict(chunks.execute("SELECT path, MAX(end_line) FROM chunks GROUP BY path").fetchall())
    chunks.close()
    bounded = [name for name, total in counts if 1 <= total <= 1000 and len(name) > 2]
    heavy = sorted(counts, key=lambda c: -c[1])[:10]
    reads = [p for p in paths if lines.get(p)]
    return {
        "find_symbol": [{"name": rng.choice(names)} for _ in range(n)],
        "find_symbol+body": [
            {"name": rng.choice(names), "include_body": True, "limit": 3} for _ in range(n // 2)
        ],
        "file_outline": [{"path": rng.choice(paths)} for _ in range(n)],
        "read_file": [
            {"path": p, "start_line": rng.randint(1, max(1, lines[p] - 50))}
            for p in (rng.choice(reads) for _ in range(n))
        ],
        "find_references": [{"name": rng.choice(bounded)} for _ in range(n)],
        "find_references (10 most common)": [{"name": name} for name, _ in heavy],
    }


def name_totals(gen: Path) -> list[tuple[str, int]]:
    """(name, occurrences) of every identifier, by name, from either symbol schema (the
    same for the same sources, so main and a branch draw the same workload)."""
    db = sqlite3.connect(gen / "symbols.sqlite")
    names = dict(db.execute("SELECT id, name FROM names").fetchall())
    (schema,) = db.execute("PRAGMA user_version").fetchone()
    if schema >= 2:  # postings in symbols.postings (store format 8)
        from codeintel.core.store import symbols as symbols_store

        totals = symbols_store.open_postings(gen / "symbols.sqlite").name_totals().tolist()
        counts = [(names[i], n) for i, n in enumerate(totals) if n and i in names]
    else:
        counts = db.execute(
            "SELECT n.name, SUM(c.count) FROM postings AS c JOIN names AS n "
            "ON n.id = c.name_id GROUP BY n.name"
        ).fetchall()
    db.close()
    return sorted(counts)


def run(url: str, calls: dict[str, list[dict[str, Any]]], rounds: int) -> list[dict[str, Any]]:
    rows = []
    with httpx.Client(base_url=url, timeout=120) as c:
        for label, bodies in calls.items():
            tool = label.split("+")[0].split(" ")[0]
            for body in bodies[:5]:  # warm the page cache and the connection
                c.post(f"/v1/{tool}", json=body)
            seconds, base, tokens, statuses = [], [], [], []
            for _ in range(rounds):
                for body in bodies:
                    t0 = time.perf_counter()
                    r = c.post(f"/v1/{tool}", json=body)
                    seconds.append(time.perf_counter() - t0)
                    statuses.append(r.status_code)
                    if r.status_code == 200:
                        tokens.append(int(r.json().get("tokens") or 0))
                    t0 = time.perf_counter()
                    c.post("/v1/list_repos", json={}).raise_for_status()
                    base.append(time.perf_counter() - t0)
            ms, bms = seconds, base  # pct() takes seconds and answers milliseconds
            rows.append(
                {
                    "tool": label,
                    "calls": len(ms),
                    "ok": sum(1 for s in statuses if s == 200),
                    "p50_ms": round(pct(ms, 50), 2),
                    "p95_ms": round(pct(ms, 95), 2),
                    "max_ms": round(max(ms) * 1000, 2),
                    "list_repos_p50_ms": round(pct(bms, 50), 2),
                    "p50_vs_list_repos": round(pct(ms, 50) / pct(bms, 50), 2),
                    "max_tokens_seen": max(tokens) if tokens else 0,
                }
            )
            print(rows[-1], flush=True)
    return rows


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repo", type=Path, default=REPO)
    parser.add_argument("--store", type=Path, default=STORE)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args(argv)
    gen, build_seconds = ensure_store(args.repo, args.store)
    chunks = sqlite3.connect(gen / "chunks.sqlite").execute("SELECT COUNT(*) FROM chunks")
    n_chunks = int(chunks.fetchone()[0])
    calls = workload(gen, args.calls, args.seed)
    load_before = uptime()
    with serverproc.ServerProcess.codeintel("serve", "--store", str(args.store)) as server:
        rows = run(server.url, calls, args.rounds)
    meta = {
        "repo": str(args.repo),
        "chunks": n_chunks,
        "generation": gen.name,
        "store_build_seconds": build_seconds,
        "embedder": f"{HashEmbedder.model} (navigation reads no vectors)",
        "load_before": load_before,
        "load_after": uptime(),
        "seed": args.seed,
    }
    write_results("navigation_bench", rows, meta)


if __name__ == "__main__":
    main()
