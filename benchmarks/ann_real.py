"""ANN recall and latency with real text queries against real code vectors.

    python -m benchmarks.ann_bench --real sympy,kopf [--max-queries 300]

The synthetic table (``ann_bench``) draws its queries from the data's own
distribution; real queries are short English sentences and the data is code. For
each retrieval-benchmark corpus (``retrieval_corpus``: an installed package's
sources with docstrings blanked, its docstring first sentences as ``nl`` queries,
vectors from the shared on-disk cache) this builds the store with the product's
defaults and then, over the stored vectors, on one FAISS thread:

* ``flat``: the exact scan's single-query cost (``calibration.flat_cost_ms``, what
  the build compares with ``exact_budget_ms``) and its p50 through ``SearchEngine``;
* ``ivf_flat`` and ``ivf_pq`` as ``ann.build_primary`` makes them when forced
  (budget 0; memory 0 for PQ), calibrated on the corpus's own text queries as a
  build would; then recall@10 against exact for every nprobe of a ladder, for three
  query sets: ``nl`` (the benchmark's real questions), ``calib`` (the build's
  calibration sentences) and ``data`` (stored vectors, what the synthetic table
  measures), with the single-query p50 latency.

Results: ``benchmarks/results/ann-real.{json,md}``. Nothing asserts on time.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from benchmarks import retrieval_bench, retrieval_cache
from benchmarks.common import write_results
from codeintel.core import store as store_mod
from codeintel.core.search import SearchEngine
from codeintel.core.settings import IndexSettings
from codeintel.indexer import ann, calibration

K = 10
LADDER = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
LATENCY_QUERIES = 100
FLAT_SIZES = (10_000, 35_000, 50_000, 75_000, 100_000, 200_000)
"""Where the exact scan crosses the budget: its cost depends on n and d, not on the data."""


class _Rows:
    """Stored vectors by chunk id, for the IVF-PQ re-rank."""

    def __init__(self, ids: np.ndarray, xb: np.ndarray) -> None:
        self._order = np.argsort(ids)
        self._ids = ids
        self._xb = xb

    def get(self, ids: np.ndarray) -> np.ndarray:
        pos = self._order[np.searchsorted(self._ids, ids, sorter=self._order)]
        return self._xb[pos]


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return round(hits / truth.size, 4)


def _p50_ms(engine: SearchEngine, xq: np.ndarray) -> float:
    engine.search(xq[:2], K)
    times = []
    for q in range(len(xq)):
        t0 = time.perf_counter()
        engine.search(xq[q : q + 1], K)
        times.append(time.perf_counter() - t0)
    return round(float(np.median(times)) * 1e3, 3)


def _engine(index: faiss.Index, plan: ann.IndexPlan, nprobe: int, rows: _Rows) -> SearchEngine:
    return SearchEngine(
        index,
        None,
        np.zeros(0, np.int64),
        rows,
        index_type=plan.type,
        nprobe=nprobe,
        rerank_factor=plan.rerank_factor,
    )


def _queries_of(generation: store_mod.Generation) -> list[calibration.QuerySource]:
    db = generation.chunks()
    try:
        chunks = db.get([int(i) for i in db.all_ids()])
    finally:
        db.close()
    return [calibration.QuerySource(c.path, c.text) for c in chunks.values()]


def bench_corpus(
    corpus: retrieval_bench.Corpus, embedder: Any, max_queries: int, store_root: Path
) -> list[dict[str, Any]]:
    """The rows of one corpus: flat, then each IVF type at every nprobe of the ladder."""
    name = corpus.name
    settings = retrieval_bench.build_store(corpus, store_root / name, embedder)
    generation = store_mod.Store(settings.store.path).current()
    chosen = generation.manifest.index
    ids, xb = retrieval_bench._stored(generation)
    n = len(ids)
    sets = {
        "nl": np.asarray(embedder.embed([q.text for q in corpus.nl_queries[:max_queries]])),
        "calib": np.asarray(
            embedder.embed(calibration.extract_queries(_queries_of(generation), max_queries))
        ),
        "data": np.ascontiguousarray(
            xb[np.random.default_rng(0).choice(n, size=min(max_queries, n), replace=False)]
        ),
    }
    truth = {s: calibration.exact_top_ids(xq, xb, ids, K) for s, xq in sets.items()}
    rows_by_id = _Rows(ids, xb)
    cal = chosen.calibration
    out: list[dict[str, Any]] = []
    flat_plan = ann.IndexPlan("flat", 0, 0, False, 0, 1, "Flat")
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(xb.shape[1]))
    flat.add_with_ids(xb, ids)
    out.append(
        {
            "corpus": name,
            "n": n,
            "index": "flat",
            "nprobe": "",
            "recall_nl": 1.0,
            "recall_calib": 1.0,
            "recall_data": 1.0,
            "p50_ms": _p50_ms(
                _engine(flat, flat_plan, 0, rows_by_id), sets["nl"][:LATENCY_QUERIES]
            ),
            "note": (
                f"build chose {chosen.type}: exact scan {cal.flat_ms:.2f} ms/query on one core, "
                f"budget {cal.budget_ms:g} ms"
                if cal
                else f"build chose {chosen.type}"
            ),
        }
    )
    forced = {
        "ivf_flat": IndexSettings(exact_budget_ms=0.0),
        "ivf_pq": IndexSettings(exact_budget_ms=0.0, ivf_flat_max_bytes=0),
    }
    for kind, index_settings in forced.items():
        t0 = time.perf_counter()
        index, plan, timings = ann.build_primary(
            xb, ids, index_settings, queries=lambda: sets["calib"]
        )
        build_s = time.perf_counter() - t0
        if plan.type != kind:  # too few vectors for PQ codebooks: it stayed IVF-Flat
            continue
        pc = plan.calibration
        if pc is None:
            raise RuntimeError("build_primary recorded no calibration")
        ladder = sorted({p for p in LADDER if p <= plan.nlist} | {pc.nprobe, plan.nlist})
        for p in ladder:
            engine = _engine(index, plan, p, rows_by_id)
            row: dict[str, Any] = {"corpus": name, "n": n, "index": f"{kind} nlist={plan.nlist}"}
            row["nprobe"] = p
            for s, xq in sets.items():
                row[f"recall_{s}"] = _recall(engine.search(xq, K)[1], truth[s])
            row["p50_ms"] = _p50_ms(engine, sets["nl"][:LATENCY_QUERIES])
            if p == pc.nprobe:
                row["note"] = (
                    f"calibrated: {pc.queries} text queries, target {pc.target}, "
                    f"{'reached' if pc.reached else 'not reached'}; build {build_s:.1f} s "
                    f"(measure+calibrate {timings['measure'] + timings['calibrate']:.2f} s)"
                )
            out.append(row)
            print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return out


def flat_costs(sizes: Sequence[int], d: int) -> list[dict[str, Any]]:
    """What the build measures (``calibration.flat_cost_ms``) at each size, d dimensions."""
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((max(sizes), d), dtype=np.float32)
    faiss.normalize_L2(xb)
    rows = []
    for n in sizes:
        ms = calibration.flat_cost_ms(xb[:n])
        rows.append(
            {
                "corpus": f"(any {d}-d)",
                "n": n,
                "index": "flat scan cost",
                "p50_ms": round(ms, 3),
                "note": "best of 16 single-query scans, one core: the build's measurement",
            }
        )
        print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    return rows


def run(corpora: Sequence[str], max_queries: int) -> None:
    faiss.omp_set_num_threads(1)
    embedder = retrieval_cache.cached_embedder()
    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] = {
        "what": "recall@10 vs exact and single-query p50, real text queries vs code vectors",
        "model": embedder.model,
        "faiss": faiss.__version__,
        "faiss_threads": 1,
        "k": K,
        "max_queries": max_queries,
        "index_settings": {
            f: getattr(IndexSettings(), f)
            for f in (
                "exact_budget_ms",
                "ivf_flat_max_bytes",
                "calibration_recall",
                "calibration_queries",
                "pq_m",
                "rerank_factor",
                "train_sample_max",
            )
        },
    }
    t0 = time.perf_counter()
    rows.extend(flat_costs(FLAT_SIZES, embedder.dim or 384))
    with tempfile.TemporaryDirectory(prefix="ann-real-") as tmp:
        for name in corpora:
            corpus = retrieval_bench.prepare(name)
            rows.extend(bench_corpus(corpus, embedder, max_queries, Path(tmp)))
            write_results("ann-real", rows, {**meta, "complete": False})
    write_results(
        "ann-real", rows, {**meta, "complete": True, "wall_s": round(time.perf_counter() - t0, 1)}
    )
