"""Per-query latency of semantic, lexical and hybrid ranking on a large repository.

    python -m benchmarks.hybrid_latency_bench [--corpus sympy] [--rounds 3] [--out hybrid-latency]

The corpus is the retrieval benchmark's (``retrieval_corpus``: a package's
sources, docstrings blanked; sympy gives ~38K chunks), indexed by the product
with :class:`~benchmarks.update_bench.HashEmbedder`: deterministic random unit
vectors instead of the model. Latency does not depend on what the vectors mean
(the dense side is a FAISS scan of the same size and type, the lexical side
never reads them), so this times the ranking path without an hour of embedding.
Query embedding is left out too: it is the same cost in every mode.

Each query runs as a searcher answers one: dense ids from the engine
(``hits.plan`` depth), then ``hits.rank`` (BM25, fusion, hydration), one query
at a time on one FAISS thread. The query texts are the corpus's ``nl``,
``ident`` and ``words`` queries; every round runs every mode over all of them,
modes interleaved query by query, so load changes hit all modes alike. The
lexical breakdown times ``ChunkDB.lexical`` alone.

Results: ``benchmarks/results/<out>.{json,md}``, with the load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from benchmarks import retrieval_bench as rb
from benchmarks.common import RESULTS_DIR, write_results
from benchmarks.update_bench import HashEmbedder
from codeintel.core import hits as hits_mod
from codeintel.core import store as store_mod
from codeintel.indexer import pipeline

K = 10
DIM = 384


def build(corpus: rb.Corpus, out_dir: Path) -> Path:
    """The corpus indexed with hash vectors at ``out_dir`` (reused when already built)."""
    if (out_dir / "generations").is_dir():
        return out_dir
    shutil.rmtree(out_dir, ignore_errors=True)
    settings = rb.store_settings(out_dir)
    pipeline.build(settings, str(corpus.repo_path), HashEmbedder(DIM))
    return out_dir


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p95_ms": round(float(np.percentile(a, 95)), 2),
        "mean_ms": round(float(a.mean()), 2),
    }


def measure(store_dir: Path, texts: list[str], rounds: int) -> dict[str, list[float]]:
    """Per mode (and ``bm25`` alone), the wall ms of every query of every round."""
    generation = store_mod.Store(store_dir).current()
    embedder = HashEmbedder(DIM)
    xq = embedder.embed(texts)
    engine = hits_mod.open_engine(generation)
    db = generation.chunks()
    timings: dict[str, list[float]] = {m: [] for m in (*hits_mod.MODES, "bm25")}
    try:
        for _ in range(rounds):
            for q, text in enumerate(texts):
                for mode in hits_mod.MODES:
                    t0 = time.perf_counter()
                    dense_k, _ = hits_mod.plan(K, mode, False)
                    dense: list[tuple[int, float]] = []
                    if dense_k:
                        D, I = engine.search(xq[q : q + 1], dense_k)
                        dense = hits_mod.ranked_pairs(D[0], I[0])
                    hits_mod.rank(db, text, mode, K, dense)
                    timings[mode].append((time.perf_counter() - t0) * 1e3)
                t0 = time.perf_counter()
                db.lexical(text, hits_mod.plan(K, "hybrid", False)[1])
                timings["bm25"].append((time.perf_counter() - t0) * 1e3)
    finally:
        engine.close()
        db.close()
    return timings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpus", default="sympy")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-queries", type=int, default=300, help="per query set")
    parser.add_argument("--store", type=Path, help="default: <cache>/stores/<corpus>-hash")
    parser.add_argument("--out", default="hybrid-latency")
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(1)
    corpus = rb.prepare(args.corpus)
    store_dir = build(corpus, args.store or rb.DEFAULT_CACHE / "stores" / f"{args.corpus}-hash")
    generation = store_mod.Store(store_dir).current()
    texts = [
        q.text
        for name in ("nl", "ident", "words")
        for q in corpus.queries[name][: args.max_queries]
    ]
    load_before = os.getloadavg()
    timings = measure(store_dir, texts, args.rounds)
    load_after = os.getloadavg()
    rows = [{"mode": mode, "queries": len(ms), **percentiles(ms)} for mode, ms in timings.items()]
    meta: dict[str, Any] = {
        "what": "per-query ms of dense search + hits.rank, one query at a time, 1 FAISS thread; "
        "hash vectors (latency does not depend on vector quality); query embedding excluded",
        "corpus": args.corpus,
        "chunks": generation.manifest.counts.primary,
        "index": generation.manifest.index.type,
        "rounds": args.rounds,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
    }
    write_results(args.out, rows, meta)
    lines = [f"# {args.out}", ""] + [f"- {k}: {v}" for k, v in meta.items()] + [""]
    lines += ["| mode | queries | p50 ms | p95 ms | mean ms |", "|---|---:|---:|---:|---:|"]
    lines += [
        f"| {r['mode']} | {r['queries']} | {r['p50_ms']} | {r['p95_ms']} | {r['mean_ms']} |"
        for r in rows
    ]
    (RESULTS_DIR / f"{args.out}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
