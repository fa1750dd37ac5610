"""Retrieval quality on real code and real questions: recall@10 and MRR@10 per mode.

    python -m benchmarks.retrieval_bench [--corpora web,kopf,rich,sympy]
        [--modes semantic,lexical,hybrid] [--max-queries 300] [--exact] [--out retrieval]
        [--set index.nprobe=16 ...] [--nprobe-sweep 1,2,4,8,16,32,64] [--details FILE]

Each corpus (see ``retrieval_corpus``) is a git repository of an installed
package's sources with docstrings blanked; its queries are docstring first
sentences (``nl``), function names (``ident``) and their words (``words``).
The store is built by the product (``indexer.pipeline.build``, default
settings, the local model) and queried through the one ranking path
(``core.hits.search_store``). A query scores when a result in its gold file
overlaps the gold lines: recall@10 is the share of queries with such a
result in the top 10, MRR@10 the mean of 1/rank of the first one.

``--exact`` adds ``semantic-exact``: the same ranking with the ANN replaced by
an exact inner-product scan of the store's stored vectors. The ANN rows give,
for the same ``nl`` queries, the share of the exact top-10 chunk ids the
primary index returns (its type, nlist and nprobe as built), with one-query
latencies of both; ``--nprobe-sweep`` repeats that, and the semantic end task,
at each nprobe. ``--set`` changes the settings the stores are built and
searched with (``index.exact_budget_ms=0`` forces IVF on a small corpus).

Vectors are cached on disk by model and text (``retrieval_cache``), so only
the first run on a corpus embeds anything; later runs rebuild its store from
the cache (under 2 s for the small corpora). Results:
``benchmarks/results/<out>.{json,md}``.

Other benchmarks and helpers use the API::

    corpus = prepare("kopf")
    embedder = retrieval_cache.cached_embedder()
    settings = build_store(corpus, Path("/tmp/kopf-store"), embedder, {"index.nprobe": 8})
    metrics = evaluate(settings, embedder, corpus.queries["nl"], "hybrid")
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import time
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from benchmarks import retrieval_cache, retrieval_corpus
from benchmarks.common import RESULTS_DIR, write_results
from benchmarks.retrieval_corpus import DEFAULT_CACHE, Corpus, Query, Span, prepare
from codeintel.core import embed as embedding_mod
from codeintel.core import hits as hits_mod
from codeintel.core import settings as settings_mod
from codeintel.core import store as store_mod
from codeintel.core import windows as windows_mod
from codeintel.indexer import pipeline

K = 10
DEFAULT_CORPORA = ("web", "kopf", "rich", "sympy")
EXACT = "semantic-exact"

logger = logging.getLogger("benchmarks.retrieval")

__all__ = [
    "Corpus",
    "Metrics",
    "Query",
    "Span",
    "ann_recall",
    "ann_sweep",
    "build_store",
    "evaluate",
    "first_hit",
    "prepare",
]


@dataclasses.dataclass(frozen=True)
class Metrics:
    queries: int
    recall: float
    """Share of queries with a hit in the top k."""
    mrr: float
    """Mean of 1/rank of the first hit (0 when none in the top k)."""
    ranks: tuple[int | None, ...]
    """1-based rank of each query's first hit, None for a miss."""
    seconds: float = 0.0


def store_settings(
    out_dir: Path, overrides: Mapping[str, Any] | None = None
) -> settings_mod.Settings:
    """The product's default settings (environment ignored) for a store at ``out_dir``.

    ``overrides`` maps ``group.field`` to a value, e.g. ``{"index.nprobe": 16}``.
    History indexing is off: retrieval never reads it and it costs minutes."""
    groups: dict[str, dict[str, Any]] = {"store": {"path": out_dir}, "index": {"history": False}}
    for key, value in (overrides or {}).items():
        group, _, name = key.partition(".")
        groups.setdefault(group, {})[name] = value
    return settings_mod.Settings.from_env({}, **groups)


def build_store(
    corpus: Corpus,
    out_dir: Path,
    embedder: embedding_mod.Embedder,
    overrides: Mapping[str, Any] | None = None,
) -> settings_mod.Settings:
    """A fresh store of ``corpus`` at ``out_dir`` built by the product; its settings.

    An existing ``out_dir`` is deleted first, so it must be empty or hold a store."""
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "generations").is_dir():
        raise ValueError(f"{out_dir} is neither empty nor a codeintel store; not deleting it")
    shutil.rmtree(out_dir, ignore_errors=True)
    settings = store_settings(out_dir, overrides)
    pipeline.build(settings, str(corpus.repo_path), embedder)
    return settings


def first_hit(hits: Sequence[hits_mod.Hit], gold: Sequence[Span]) -> int | None:
    """1-based rank of the first hit in a gold file overlapping gold lines, else None."""
    for rank, hit in enumerate(hits, start=1):
        for g in gold:
            if hit.path == g.path and hit.start_line <= g.end and hit.end_line >= g.start:
                return rank
    return None


def score(ranks: Sequence[int | None], k: int = K, seconds: float = 0.0) -> Metrics:
    """recall@k and MRR@k of first-hit ranks."""
    n = len(ranks)
    found = [r for r in ranks if r is not None and r <= k]
    return Metrics(
        queries=n,
        recall=round(len(found) / n, 4) if n else 0.0,
        mrr=round(sum(1.0 / r for r in found) / n, 4) if n else 0.0,
        ranks=tuple(ranks),
        seconds=round(seconds, 3),
    )


def evaluate(
    settings: settings_mod.Settings,
    embedder: embedding_mod.Embedder | None,
    queries: Sequence[Query],
    mode: str,
    k: int = K,
) -> Metrics:
    """recall@k and MRR@k of ``queries`` against the store of ``settings`` in ``mode``.

    ``mode`` is a product mode (through ``hits.search_store``) or ``semantic-exact``."""
    t0 = time.perf_counter()
    texts = [q.text for q in queries]
    if mode == EXACT:
        if embedder is None:
            raise ValueError(f"{EXACT} needs an embedder")
        found = exact_search(settings, embedder, texts, k)
    elif mode in hits_mod.MODES:
        query_embedder = None if mode == "lexical" else embedder
        found = hits_mod.search_store(settings, query_embedder, texts, k, mode)
    else:
        raise ValueError(f"unknown mode {mode!r}; use one of {(*hits_mod.MODES, EXACT)}")
    ranks = [first_hit(hits, q.gold) for hits, q in zip(found, queries, strict=True)]
    return score(ranks, k, time.perf_counter() - t0)


def _stored(generation: store_mod.Generation) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 rows) of every live stored vector of a generation."""
    vectors = generation.vectors()
    ids = np.setdiff1d(vectors.ids(), generation.tombstones())
    return ids, vectors.get(ids)


def exact_top(
    xq: np.ndarray, ids: np.ndarray, xb: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, scores) of the ``k`` best inner products of each query row, best first."""
    D, I = faiss.knn(
        np.ascontiguousarray(xq, np.float32), xb, min(k, len(ids)), faiss.METRIC_INNER_PRODUCT
    )
    return ids[I], D


def exact_chunks(xq: np.ndarray, ids: np.ndarray, xb: np.ndarray, k: int) -> np.ndarray:
    """Chunk ids of the exact top ``k`` of each query, a chunk scored by its best vector
    (what the search engine returns when long chunks have window vectors)."""
    wide = 2 * k if windows_mod.has_windows(ids) else k
    I, D = exact_top(xq, ids, xb, wide)
    _, C = windows_mod.best_per_chunk(D, I)
    return np.array([row[row >= 0][:k] for row in C], dtype=object) if wide > k else C


def exact_search(
    settings: settings_mod.Settings,
    embedder: embedding_mod.Embedder,
    texts: Sequence[str],
    k: int,
) -> list[list[hits_mod.Hit]]:
    """Semantic ranking as ``search_store`` does it, with an exact scan instead of the ANN."""
    generation = store_mod.Store(settings.store.path).current()
    ids, xb = _stored(generation)
    xq = embedder.embed(list(texts))
    fetch = hits_mod.plan(k, "semantic", False)[0]
    # Long chunks have window vectors (core/windows.py): fetch deeper, keep each chunk's best.
    I, D = exact_top(xq, ids, xb, fetch * (2 if windows_mod.has_windows(ids) else 1))
    D, I = windows_mod.best_per_chunk(D, I)
    db = generation.chunks()
    try:
        return [
            hits_mod.rank(db, t, "semantic", k, hits_mod.ranked_pairs(D[q], I[q]))
            for q, t in enumerate(texts)
        ]
    finally:
        db.close()


def _overlap(I: np.ndarray, gt: np.ndarray) -> float:
    """Mean share of each exact top-k row (fewer than k when the store is smaller) found in I."""
    got = [len(set(a.tolist()) & set(b.tolist())) / len(b) for a, b in zip(I, gt, strict=True)]
    return round(float(np.mean(got)), 4) if got else 0.0


def _per_query_ms(search: typing.Callable[[np.ndarray], object], xq: np.ndarray) -> float:
    """Mean wall time of ``search`` on one query row at a time (how a server asks)."""
    t0 = time.perf_counter()
    for q in range(len(xq)):
        search(xq[q : q + 1])
    return round((time.perf_counter() - t0) * 1e3 / max(len(xq), 1), 3)


def ann_recall(
    settings: settings_mod.Settings,
    embedder: embedding_mod.Embedder,
    texts: Sequence[str],
    k: int = K,
    nprobe: int | None = None,
) -> dict[str, Any]:
    """How much of the exact top-k (chunk ids) the store's ANN returns for real queries.

    ``nprobe`` None searches as the settings say (0: the nprobe stored at build time).
    Times are per query, one query at a time, on FAISS's current thread count."""
    generation = store_mod.Store(settings.store.path).current()
    ids, xb = _stored(generation)
    xq = embedder.embed(list(texts))
    gt = exact_chunks(xq, ids, xb, k)
    probe = settings.index.nprobe if nprobe is None else nprobe
    engine = hits_mod.open_engine(generation, probe)
    try:
        _, I = engine.search(xq, k)
        ms = _per_query_ms(lambda x: engine.search(x, k), xq)
    finally:
        engine.close()
    exact_ms = _per_query_ms(lambda x: faiss.knn(x, xb, k, faiss.METRIC_INNER_PRODUCT), xq)
    params = generation.manifest.index.params
    return {
        "index": generation.manifest.index.type,
        "nlist": params.get("nlist", ""),
        "nprobe": probe or params.get("nprobe", ""),
        "ann_recall@10": _overlap(I, gt),
        "ann_ms_per_query": ms,
        "exact_ms_per_query": exact_ms,
    }


def ann_sweep(
    settings: settings_mod.Settings,
    embedder: embedding_mod.Embedder,
    queries: Sequence[Query],
    nprobes: Sequence[int],
) -> list[dict[str, Any]]:
    """ANN recall against exact, and the end task (semantic recall/MRR), at each nprobe."""
    rows = []
    for nprobe in nprobes:
        row = ann_recall(settings, embedder, [q.text for q in queries], nprobe=nprobe)
        m = evaluate(settings.replace(index={"nprobe": nprobe}), embedder, queries, "semantic")
        rows.append({**row, "nprobe": nprobe, "recall@10": m.recall, "mrr@10": m.mrr})
    return rows


def run_corpus(
    corpus: Corpus,
    embedder: retrieval_cache.CachingEmbedder,
    modes: Sequence[str],
    query_sets: Sequence[str],
    max_queries: int,
    store_dir: Path,
    overrides: Mapping[str, Any] | None = None,
    details: dict[str, Any] | None = None,
    nprobes: Sequence[int] = (),
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Build ``corpus``'s store and measure every query set in every mode.

    ``details``, when given, receives each query's first-hit rank per mode:
    ``details[corpus][query_set] = [{"text", "symbol", mode: rank, ...}, ...]``."""
    t0 = time.perf_counter()
    misses = embedder.misses
    settings = build_store(corpus, store_dir, embedder, overrides)
    generation = store_mod.Store(settings.store.path).current()
    info: dict[str, Any] = {
        "corpus": corpus.name,
        "files": corpus.files,
        "chunks": generation.manifest.counts.primary,
        "build_s": round(time.perf_counter() - t0, 1),
        "embedded": embedder.misses - misses,
    }
    rows: list[dict[str, Any]] = []
    for query_set in query_sets:
        queries = corpus.queries[query_set][:max_queries]
        per_query: list[dict[str, Any]] = [{"text": q.text, "symbol": q.symbol} for q in queries]
        if details is not None:
            details.setdefault(corpus.name, {})[query_set] = per_query
        for mode in modes:
            m = evaluate(settings, embedder, queries, mode)
            for row, rank in zip(per_query, m.ranks, strict=True):
                row[mode] = rank
            rows.append(
                {
                    "corpus": corpus.name,
                    "queries": query_set,
                    "n": m.queries,
                    "mode": mode,
                    "recall@10": m.recall,
                    "mrr@10": m.mrr,
                    "seconds": m.seconds,
                }
            )
            _print(rows[-1])
    nl = corpus.queries["nl"][:max_queries]
    info.update(ann_recall(settings, embedder, [q.text for q in nl]))
    if nprobes and info["nlist"]:
        info["sweep"] = ann_sweep(
            settings, embedder, nl, [p for p in nprobes if p <= info["nlist"]]
        )
    _print(info)
    return rows, info


def markdown(
    rows: list[dict[str, Any]], corpora: list[dict[str, Any]], meta: dict[str, Any]
) -> str:
    modes = list(dict.fromkeys(r["mode"] for r in rows))
    lines = [f"# {meta['benchmark']}", ""]
    lines += [f"- {key}: {value}" for key, value in meta.items() if key != "benchmark"]
    lines += ["", "recall@10 / MRR@10 (a hit: right file, overlapping lines)", ""]
    lines.append("| corpus | chunks | queries | n | " + " | ".join(modes) + " |")
    lines.append("|---|---:|---|---:|" + "---:|" * len(modes))
    chunks = {c["corpus"]: c["chunks"] for c in corpora}
    keys = list(dict.fromkeys((r["corpus"], r["queries"]) for r in rows))
    for corpus, query_set in keys:
        cells = {r["mode"]: r for r in rows if (r["corpus"], r["queries"]) == (corpus, query_set)}
        n = next(iter(cells.values()))["n"]
        lines.append(
            f"| {corpus} | {chunks.get(corpus, '')} | {query_set} | {n} | "
            + " | ".join(
                f"{cells[m]['recall@10']:.3f} / {cells[m]['mrr@10']:.3f}" if m in cells else ""
                for m in modes
            )
            + " |"
        )
    lines += ["", "ANN against an exact scan of the stored vectors, same `nl` queries", ""]
    columns = [
        "corpus",
        "files",
        "chunks",
        "index",
        "nlist",
        "nprobe",
        "ann_recall@10",
        "ann_ms_per_query",
        "exact_ms_per_query",
        "build_s",
        "embedded",
    ]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|---|" + "---:|" * (len(columns) - 1))
    lines += ["| " + " | ".join(str(c.get(col, "")) for col in columns) + " |" for c in corpora]
    sweep = ["corpus", "nprobe", "ann_recall@10", "ann_ms_per_query", "recall@10", "mrr@10"]
    swept = [{"corpus": c["corpus"], **row} for c in corpora for row in c.get("sweep", [])]
    if swept:
        lines += [
            "",
            "nprobe sweep: ANN recall against exact, and semantic `nl` recall@10 / MRR@10",
            "",
        ]
        lines.append("| " + " | ".join(sweep) + " |")
        lines.append("|---|" + "---:|" * (len(sweep) - 1))
        lines += ["| " + " | ".join(str(r.get(col, "")) for col in sweep) + " |" for r in swept]
    return "\n".join(lines) + "\n"


def write(
    name: str, rows: list[dict[str, Any]], corpora: list[dict[str, Any]], meta: dict[str, Any]
) -> None:
    write_results(name, rows, {**meta, "corpora": corpora})
    meta = {"benchmark": name, **meta}
    path = RESULTS_DIR / f"{name}.md"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(markdown(rows, corpora, meta), encoding="utf-8")
    os.replace(tmp, path)


def _print(row: dict[str, Any]) -> None:
    print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--corpora",
        default=",".join(DEFAULT_CORPORA),
        help=f"comma-separated, of {','.join(retrieval_corpus.CORPORA)}",
    )
    parser.add_argument("--modes", default=",".join(hits_mod.MODES))
    parser.add_argument("--query-sets", default=",".join(retrieval_corpus.QUERY_SETS))
    parser.add_argument("--max-queries", type=int, default=300, help="per corpus and query set")
    parser.add_argument("--exact", action="store_true", help="add semantic over an exact scan")
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="corpora, cached vectors and stores"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="GROUP.FIELD=VALUE",
        help="settings override for the built stores, e.g. index.nprobe=16",
    )
    parser.add_argument("--variant", default="", help="embedding cache variant tag")
    parser.add_argument("--out", default="retrieval", help="results/<OUT>.{json,md}")
    parser.add_argument(
        "--nprobe-sweep",
        default="",
        metavar="1,2,4,...",
        help="for IVF stores, also measure ANN and semantic recall at each of these nprobe",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="FAISS OpenMP threads (timings are one-core)"
    )
    parser.add_argument(
        "--details", type=Path, help="also write every query's first-hit rank per mode here (JSON)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    faiss.omp_set_num_threads(args.threads)
    nprobes = [int(p) for p in args.nprobe_sweep.split(",") if p]
    modes = args.modes.split(",") + ([EXACT] if args.exact else [])
    overrides = {k: _value(v) for k, _, v in (s.partition("=") for s in args.set)}
    embedder = retrieval_cache.cached_embedder(args.cache, variant=args.variant)
    meta: dict[str, Any] = {
        "what": "recall@10 / MRR@10 of docstring (nl), name (ident) and name-words (words) "
        "queries; product build + hits.search_store",
        "model": embedder.model,
        "k": K,
        "max_queries": args.max_queries,
        "faiss_threads": args.threads,
        "overrides": overrides,
        "corpus_format": f"repo {retrieval_corpus.REPO_FORMAT}, "
        f"queries {retrieval_corpus.QUERY_FORMAT}",
    }
    rows: list[dict[str, Any]] = []
    corpora: list[dict[str, Any]] = []
    details: dict[str, Any] | None = {} if args.details else None
    t0 = time.perf_counter()
    try:
        for name in args.corpora.split(","):
            corpus = prepare(name, args.cache)
            store_dir = args.cache / "stores" / f"{name}-{args.out}"
            r, info = run_corpus(
                corpus,
                embedder,
                modes,
                args.query_sets.split(","),
                args.max_queries,
                store_dir,
                overrides,
                details,
                nprobes,
            )
            rows += r
            corpora.append(info)
            write(args.out, rows, corpora, {**meta, "complete": False})
            if args.details:
                args.details.write_text(json.dumps(details, indent=1), encoding="utf-8")
        write(
            args.out,
            rows,
            corpora,
            {**meta, "complete": True, "wall_s": round(time.perf_counter() - t0, 1)},
        )
    finally:
        embedder.close()


def _value(raw: str) -> Any:
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(raw.lower(), raw)


if __name__ == "__main__":
    main()
