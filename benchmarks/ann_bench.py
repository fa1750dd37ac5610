"""ANN benchmark: the adaptive primary against the seed's fixed IVF8192,PQ64, on one core.

    python -m benchmarks.ann_bench [--sizes 5000,50000,200000] [--dim 384] [--quick]
    python -m benchmarks.ann_bench --real sympy,kopf   # real text queries: see ann_real

For each size of synthetic 384-d vectors (normalised gaussian mixture, n/40
clusters, noise 0.8 x the centre norm; the tests use the same mixture) it measures:

* the adaptive build (``indexer.ann.build_primary``): type, nlist, nprobe,
  train and add seconds, recall@20 against exact ``IndexFlatIP`` through
  ``SearchEngine`` (IVF-PQ re-ranked with the stored float16 vectors);
* the seed's fixed ``IVF8192,PQ64`` trained on the same data: train seconds,
  our/seed train-time ratio, recall@20 at nprobe 64 (the seed had no re-ranking);
* at 50K, IVF-PQ with and without OPQ, to show whether OPQ pays for itself;
* adding 1K and 10K vectors to the secondary flat index and writing it
  (embedding excluded; seed targets < 60 s and < 5 min);
* single-query search latency p50/p95, primary only vs primary + 10K secondary
  (seed target: < 50% more).

FAISS runs on ``--threads`` OpenMP threads (default 1: the issue's numbers are
one-core numbers, and the machine is shared). Results: ``benchmarks/results/ann.{json,md}``.
Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from benchmarks.common import write_results
from codeintel.core.search import SearchEngine
from codeintel.core.settings import IndexSettings
from codeintel.indexer import ann

K = 20
SEED_FACTORY = "IVF8192,PQ64"
SEED_NPROBE = 64

logger = logging.getLogger("benchmarks.ann")


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Normalised gaussian-mixture vectors: n/40 clusters, noise 0.8 x the centre norm."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(16, n // 40), d)).astype(np.float32)
    xb = centres[rng.integers(len(centres), size=n)]
    xb += 0.8 * rng.standard_normal((n, d)).astype(np.float32)
    faiss.normalize_L2(xb)
    return xb


class ArrayVectors:
    """Stored vectors for ids 0..n-1, float16 like the store's VectorStore."""

    def __init__(self, xb: np.ndarray) -> None:
        self.x16 = xb.astype(np.float16)

    def get(self, ids: np.ndarray) -> np.ndarray:
        rows: np.ndarray = self.x16[ids].astype(np.float32)
        return rows


def recall_at(I: np.ndarray, gt: np.ndarray, k: int = K) -> float:
    hits = [len(set(a[:k].tolist()) & set(b[:k].tolist())) for a, b in zip(I, gt, strict=True)]
    return round(float(np.mean(hits)) / k, 4)


def engine_for(index: faiss.Index, plan: ann.IndexPlan, xb: np.ndarray) -> SearchEngine:
    return SearchEngine(
        index,
        None,
        np.zeros(0, np.int64),
        ArrayVectors(xb),
        index_type=plan.type,
        nprobe=plan.nprobe,
        rerank_factor=plan.rerank_factor,
    )


def bench_adaptive(
    xb: np.ndarray, xq: np.ndarray, gt: np.ndarray, settings: IndexSettings, what: str
) -> tuple[dict[str, Any], faiss.Index, ann.IndexPlan]:
    ids = np.arange(len(xb), dtype=np.int64)
    index, plan, timings = ann.build_primary(xb, ids, settings)
    engine = engine_for(index, plan, xb)
    row = {
        "n": len(xb),
        "what": what,
        "type": plan.type,
        "factory": plan.factory,
        "nlist": plan.nlist,
        "nprobe": plan.nprobe,
        "train_s": round(timings["train"], 2),
        "add_s": round(timings["add"], 2),
        "recall@20": recall_at(engine.search(xq, K)[1], gt),
    }
    if plan.type == "ivf_pq":
        bare = SearchEngine(
            index, None, np.zeros(0), None, index_type="ivf_pq", nprobe=plan.nprobe, rerank_factor=1
        )
        row["recall@20_no_rerank"] = recall_at(bare.search(xq, K)[1], gt)
    return row, index, plan


def bench_seed(xb: np.ndarray, xq: np.ndarray, gt: np.ndarray) -> dict[str, Any]:
    """The seed's fixed index, trained on all the data as the seed did."""
    row: dict[str, Any] = {"n": len(xb), "what": "seed", "factory": SEED_FACTORY}
    if len(xb) < 8192:
        row["note"] = "cannot train: fewer vectors than its 8192 lists"
        return row
    index = faiss.index_factory(xb.shape[1], SEED_FACTORY, faiss.METRIC_INNER_PRODUCT)
    t0 = time.perf_counter()
    index.train(xb)
    row["train_s"] = round(time.perf_counter() - t0, 2)
    t1 = time.perf_counter()
    index.add(xb)
    row["add_s"] = round(time.perf_counter() - t1, 2)
    faiss.extract_index_ivf(index).nprobe = SEED_NPROBE
    row["nlist"], row["nprobe"] = 8192, SEED_NPROBE
    row["recall@20"] = recall_at(index.search(xq, K)[1], gt)
    return row


def bench_secondary(d: int, workdir: Path) -> list[dict[str, Any]]:
    rows = []
    for n in (1_000, 10_000):
        xb = clustered(n, d, seed=7)
        t0 = time.perf_counter()
        index = ann.new_secondary(d)
        ann.add_vectors(index, xb, np.arange(n, dtype=np.int64) + 10_000_000)
        add_s = time.perf_counter() - t0
        ann.write_index(index, workdir / "secondary.faiss")
        total = time.perf_counter() - t0
        rows.append(
            {
                "n": n,
                "what": "secondary add + write",
                "type": "flat",
                "add_s": round(add_s, 4),
                "total_s": round(total, 4),
                "note": f"seed target < {'60 s' if n == 1_000 else '5 min'} (embedding excluded)",
            }
        )
    return rows


def bench_latency(
    index: faiss.Index, plan: ann.IndexPlan, xb: np.ndarray, xq: np.ndarray
) -> list[dict[str, Any]]:
    """Single-query latency, primary only vs primary + a 10K-vector secondary."""
    secondary = ann.new_secondary(xb.shape[1])
    ann.add_vectors(secondary, clustered(10_000, xb.shape[1], seed=8), np.arange(10_000) + 10**9)
    engines = {"primary only": engine_for(index, plan, xb)}
    engines["primary + 10K secondary"] = SearchEngine(
        index,
        secondary,
        np.zeros(0, np.int64),
        ArrayVectors(xb),
        index_type=plan.type,
        nprobe=plan.nprobe,
        rerank_factor=plan.rerank_factor,
    )
    rows: list[dict[str, Any]] = []
    for what, engine in engines.items():
        engine.search(xq[:5], K)  # warm-up
        times = []
        for q in range(len(xq)):
            t0 = time.perf_counter()
            engine.search(xq[q : q + 1], K)
            times.append(time.perf_counter() - t0)
        ms = np.array(times) * 1e3
        rows.append(
            {
                "n": len(xb),
                "what": f"latency {what}",
                "type": plan.type,
                "p50_ms": round(float(np.percentile(ms, 50)), 3),
                "p95_ms": round(float(np.percentile(ms, 95)), 3),
            }
        )
    rows[1]["ratio_p50"] = round(float(rows[1]["p50_ms"]) / float(rows[0]["p50_ms"]), 2)
    rows[1]["note"] = "seed target: < 1.5x"
    return rows


def run(
    sizes: list[int], d: int, nq: int, opq: bool, seed: bool, meta: dict[str, Any]
) -> list[dict[str, Any]]:
    """All measurements; results are rewritten after each size so a long run that is
    stopped (200K with the seed baseline takes many minutes on one core) keeps what it has."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            x = clustered(n + nq, d)
            xb, xq = x[:n], x[n:]
            gt = faiss.knn(xq, xb, K, faiss.METRIC_INNER_PRODUCT)[1]
            ours, index, plan = bench_adaptive(xb, xq, gt, IndexSettings(), "adaptive")
            rows.append(ours)
            _print(rows[-1])
            if seed:
                rows.append(bench_seed(xb, xq, gt))
                if "train_s" in rows[-1]:
                    rows[-1]["train_ratio_seed/ours"] = round(
                        rows[-1]["train_s"] / max(ours["train_s"], 1e-3), 1
                    )
                _print(rows[-1])
            if opq and n == 50_000:
                forced = IndexSettings(exact_budget_ms=0.0, ivf_flat_max_bytes=0)
                for use_opq in (False, True):
                    settings = dataclasses.replace(forced, use_opq=use_opq)
                    label = "IVF-PQ + OPQ" if use_opq else "IVF-PQ"
                    rows.append(bench_adaptive(xb, xq, gt, settings, label)[0])
                    _print(rows[-1])
            rows.extend(bench_latency(index, plan, xb, xq[: min(nq, 200)]))
            _print(rows[-2], rows[-1])
            write_results("ann", rows, {**meta, "complete": False})
        rows.extend(bench_secondary(d, Path(tmp)))
        _print(rows[-2], rows[-1])
    return rows


def _print(*rows: dict[str, Any]) -> None:
    for row in rows:
        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="5000,50000,200000", help="comma-separated n")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="FAISS OpenMP threads")
    parser.add_argument("--quick", action="store_true", help="5K and 20K, no seed baseline")
    parser.add_argument("--no-seed", action="store_true", help=f"skip the {SEED_FACTORY} baseline")
    parser.add_argument("--no-opq", action="store_true", help="skip the OPQ comparison at 50K")
    parser.add_argument(
        "--real",
        default="",
        help="comma-separated retrieval corpora: real text queries vs code vectors (ann_real)",
    )
    parser.add_argument("--max-queries", type=int, default=300, help="per query set, --real")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.real:
        from benchmarks import ann_real

        ann_real.run(args.real.split(","), args.max_queries)
        return
    faiss.omp_set_num_threads(args.threads)
    sizes = [5_000, 20_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    seed = not (args.quick or args.no_seed)
    meta: dict[str, Any] = {
        "what": "adaptive primary vs the seed's fixed index; recall@20 vs exact IndexFlatIP",
        "data": "normalised gaussian mixture, n/40 clusters, noise 0.8 x centre norm",
        "dim": args.dim,
        "queries": args.queries,
        "faiss": faiss.__version__,
        "faiss_threads": args.threads,
        "quick": args.quick,
        "seed_factory": SEED_FACTORY if seed else "skipped",
    }
    t0 = time.perf_counter()
    rows = run(sizes, args.dim, args.queries, opq=not args.no_opq, seed=seed, meta=meta)
    write_results(
        "ann", rows, {**meta, "complete": True, "wall_s": round(time.perf_counter() - t0, 1)}
    )


if __name__ == "__main__":
    main()
