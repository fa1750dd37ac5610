"""Which lexical analysis and which hybrid fusion pay: an ablation on the retrieval benchmark.

    nice -n 10 python -m benchmarks.lexical_ablation [--tune kopf,web] [--check rich,sympy]
        [--max-queries 300] [--out lexical_ablation]

Each corpus's store is built by the product (``retrieval_bench.build_store``,
cached vectors); the dense ranking of every query is computed once. The chunks
are then re-indexed into one ``chunks.sqlite`` per lexical variant (schema 1 of
older stores; schema 2 with or without identifier splitting and stemming) and
each variant is scored alone (recall@10, MRR@10 per query set) with column
weights and stop words varied. Fusion is tuned on the ``--tune`` corpora only:
for each query kind (``lexical.query_kind``) the lexical weight of weighted RRF
that maximises recall@10 + MRR@10 over those corpora's queries of that kind, and
min-max score fusion for comparison; the ``--check`` corpora are reported with
the weights chosen elsewhere. Results: ``benchmarks/results/<out>.{json,md}``.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import retrieval_bench as rb
from benchmarks.common import write_results
from codeintel.core import hits as hits_mod
from codeintel.core import lexical
from codeintel.core import store as store_mod
from codeintel.core.store.chunks import ChunkDB

K = rb.K
SETS = ("nl", "ident", "words")
Ranking = list[tuple[int, float]]

VARIANTS: dict[str, lexical.Lexicon | None] = {
    "schema1 (before)": None,
    "whole, no stem": lexical.Lexicon(split=False, stem=False, exact=False),
    "whole + stem": lexical.Lexicon(split=False, stem=True, exact=False),
    "split, no stem": lexical.Lexicon(split=True, stem=False),
    "split + stem, no exact": lexical.Lexicon(split=True, stem=True, exact=False),
    "split + stem": lexical.Lexicon(split=True, stem=True),
}
WEIGHTS = {
    "1/1/1": (1.0, 1.0, 1.0),
    "1/4/2": (1.0, 4.0, 2.0),
    "1/8/4": (1.0, 8.0, 4.0),
    "1/16/8": (1.0, 16.0, 8.0),
    "1/8/8": (1.0, 8.0, 8.0),
}
GRID = (0.0, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
RRF_KS = (5, 10, 20, 60)
"""Rank constants tried for RRF."""
"""Lexical weights tried for weighted RRF (dense weight 1)."""
ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
"""Lexical share tried for min-max score fusion."""


class Bench:
    """One corpus: its built store, queries, dense rankings and lexical databases."""

    def __init__(self, name: str, cache: Path, embedder: Any, max_queries: int, work: Path) -> None:
        self.name = name
        corpus = rb.prepare(name, cache)
        self.queries = {s: corpus.queries[s][:max_queries] for s in SETS}
        self.settings = rb.build_store(corpus, cache / "stores" / f"{name}-lexical", embedder)
        self.generation = store_mod.Store(self.settings.store.path).current()
        self.db = self.generation.chunks()
        self.chunks = list(self.db.get(self.db.all_ids().tolist()).values())
        self.work = work
        self.dense: dict[str, list[Ranking]] = {}
        depth = hits_mod.plan(K, "hybrid", False)[0]
        engine = hits_mod.open_engine(self.generation, self.settings.index.nprobe)
        try:
            for s, qs in self.queries.items():
                D, I = engine.search(embedder.embed([q.text for q in qs]), depth)
                self.dense[s] = [hits_mod.ranked_pairs(D[i], I[i]) for i in range(len(qs))]
        finally:
            engine.close()
        self._dbs: dict[str, ChunkDB] = {}

    def variant(self, label: str) -> tuple[ChunkDB, float]:
        """The chunk database of one lexical variant (built on first use) and its build seconds."""
        t0 = time.perf_counter()
        if label not in self._dbs:
            path = self.work / f"{self.name}-{label.replace(' ', '_').replace('/', '_')}.sqlite"
            with ChunkDB.create(path, VARIANTS[label]) as db:
                db.add(self.chunks)
            self._dbs[label] = ChunkDB.open(path)
        return self._dbs[label], time.perf_counter() - t0

    def score(self, s: str, ranked: Sequence[Ranking]) -> rb.Metrics:
        ranks = [
            rb.first_hit(hits_mod.hydrate(self.db, r, K), q.gold)
            for r, q in zip(ranked, self.queries[s], strict=True)
        ]
        return rb.score(ranks, K)

    def lexical(self, db: ChunkDB, s: str, **kw: Any) -> tuple[list[Ranking], float]:
        depth = hits_mod.plan(K, "hybrid", False)[1]
        t0 = time.perf_counter()
        out = [db.lexical(q.text, depth, **kw) for q in self.queries[s]]
        return out, (time.perf_counter() - t0) * 1e3 / max(len(out), 1)

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()
        self.db.close()


def minmax(dense: Ranking, bm25: Ranking, alpha: float) -> Ranking:
    """Min-max normalised score fusion: (1 - alpha) * cosine' + alpha * bm25'."""
    fused: dict[int, float] = {}
    for ranking, w in ((dense, 1.0 - alpha), (bm25, alpha)):
        if not ranking:
            continue
        hi, lo = ranking[0][1], ranking[-1][1]
        span = (hi - lo) or 1.0
        for i, sc in ranking:
            fused[i] = fused.get(i, 0.0) + w * (sc - lo) / span
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


def row(bench: Bench, s: str, what: str, m: rb.Metrics, **extra: Any) -> dict[str, Any]:
    return {
        "corpus": bench.name,
        "queries": s,
        "n": m.queries,
        "what": what,
        "recall@10": m.recall,
        "mrr@10": m.mrr,
        **extra,
    }


def lexical_rows(bench: Bench) -> list[dict[str, Any]]:
    """Every lexical variant alone; then column weights and stop words on the default lexicon."""
    rows = []
    for label in VARIANTS:
        db, build_s = bench.variant(label)
        for s in SETS:
            ranked, ms = bench.lexical(db, s)
            rows.append(
                row(
                    bench,
                    s,
                    f"lexical {label}",
                    bench.score(s, ranked),
                    ms_per_query=round(ms, 2),
                    build_s=round(build_s, 1),
                )
            )
    for label in ("split, no stem", "split + stem"):
        db, _ = bench.variant(label)
        for s in SETS:
            ranked, ms = bench.lexical(db, s, exact_first=False)
            rows.append(
                row(
                    bench,
                    s,
                    f"lexical {label}, exact-first off",
                    bench.score(s, ranked),
                    ms_per_query=round(ms, 2),
                )
            )
    db, _ = bench.variant("split + stem")
    for (wl, w), stop in itertools.product(WEIGHTS.items(), (True, False)):
        for s in SETS:
            ranked, ms = bench.lexical(db, s, weights=w, stopwords=stop)
            rows.append(
                row(
                    bench,
                    s,
                    f"split + stem, weights {wl}, stop words {'off' if not stop else 'on'}",
                    bench.score(s, ranked),
                    ms_per_query=round(ms, 2),
                )
            )
    return rows


def fused(
    bench: Bench, s: str, bm25: list[Ranking], fuse: Callable[[str, Ranking, Ranking], Ranking]
) -> rb.Metrics:
    return bench.score(
        s,
        [
            fuse(q.text, d, b)
            for q, d, b in zip(bench.queries[s], bench.dense[s], bm25, strict=True)
        ],
    )


def kind_rrf(fusion: dict[str, tuple[int, float]]) -> Callable[[str, Ranking, Ranking], Ranking]:
    def fuse(q: str, d: Ranking, b: Ranking) -> Ranking:
        k, w = fusion[lexical.query_kind(q)]
        return hits_mod.rrf(d, b, weights=(1.0, w), k=k)

    return fuse


def tune(
    benches: Sequence[Bench], bm25: dict[tuple[str, str], list[Ranking]]
) -> tuple[dict[str, tuple[int, float]], float]:
    """Per query kind, the RRF rank constant and lexical weight maximising recall@10 +
    MRR@10 over ``benches``' queries of that kind; and the min-max alpha doing the same."""
    chosen: dict[str, tuple[int, float]] = {}
    for kind in ("code", "keywords", "prose"):
        picks = {
            (b.name, s): [
                i for i, q in enumerate(b.queries[s]) if lexical.query_kind(q.text) == kind
            ]
            for b in benches
            for s in SETS
        }
        top = (-1.0, (hits_mod.RRF_K, 1.0))
        for k, w in itertools.product(RRF_KS, GRID):
            total = 0.0
            for b in benches:
                for s in SETS:
                    pick = picks[b.name, s]
                    ranks = [
                        rb.first_hit(
                            hits_mod.hydrate(
                                b.db,
                                hits_mod.rrf(
                                    b.dense[s][i], bm25[b.name, s][i], weights=(1.0, w), k=k
                                ),
                                K,
                            ),
                            b.queries[s][i].gold,
                        )
                        for i in pick
                    ]
                    m = rb.score(ranks, K)
                    total += (m.recall + m.mrr) * len(pick)
            if total > top[0] + 1e-9:
                top = (total, (k, w))
        chosen[kind] = top[1]
        print(
            "kind",
            kind,
            "n",
            sum(len(p) for p in picks.values()),
            "chosen",
            top[1],
            round(top[0], 2),
            flush=True,
        )
    best_alpha = (-1.0, 0.0)
    for a in ALPHAS:
        total = 0.0
        for b in benches:
            for s in SETS:
                m = fused(b, s, bm25[b.name, s], lambda q, d, x, a=a: minmax(d, x, a))
                total += (m.recall + m.mrr) * m.queries
        if total > best_alpha[0]:
            best_alpha = (total, a)
    return chosen, best_alpha[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--tune", default="kopf,web", help="corpora the fusion weights are chosen on"
    )
    parser.add_argument("--check", default="rich,sympy", help="corpora only reported")
    parser.add_argument("--max-queries", type=int, default=300)
    parser.add_argument("--cache", type=Path, default=rb.DEFAULT_CACHE)
    parser.add_argument("--out", default="lexical_ablation")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    embedder = rb.cached_embedder(args.cache)
    tune_names = [n for n in args.tune.split(",") if n]
    check_names = [n for n in args.check.split(",") if n]
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lexical-ablation-") as tmp:
        benches = [
            Bench(n, args.cache, embedder, args.max_queries, Path(tmp))
            for n in tune_names + check_names
        ]
        embedder.close()
        bm25: dict[tuple[str, str], list[Ranking]] = {}
        for b in benches:
            rows += lexical_rows(b)
            db, _ = b.variant("split + stem")
            for s in SETS:
                bm25[b.name, s] = b.lexical(db, s)[0]
            for r in rows[-len(SETS) :]:
                _print(r)
        fusion, alpha = tune([b for b in benches if b.name in tune_names], bm25)
        for b in benches:
            for s in SETS:
                rows.append(row(b, s, "semantic", b.score(s, b.dense[s])))
                rows.append(row(b, s, "lexical (split + stem)", b.score(s, bm25[b.name, s])))
                rows.append(
                    row(
                        b,
                        s,
                        "hybrid RRF equal (before)",
                        fused(b, s, bm25[b.name, s], lambda q, d, x: hits_mod.rrf(d, x)),
                    )
                )
                rows.append(
                    row(
                        b,
                        s,
                        f"hybrid minmax alpha {alpha}",
                        fused(b, s, bm25[b.name, s], lambda q, d, x: minmax(d, x, alpha)),
                    )
                )
                rows.append(
                    row(
                        b,
                        s,
                        "hybrid RRF by kind (tuned)",
                        fused(b, s, bm25[b.name, s], kind_rrf(fusion)),
                    )
                )
                for r in rows[-6:]:
                    _print(r)
        for b in benches:
            b.close()
    meta = {
        "what": "lexical variants alone, then fusion; recall@10 / MRR@10, a hit is the right file with overlapping lines",
        "tuned_on": tune_names,
        "checked_on": check_names,
        "chosen_rrf_k_and_lexical_weight": fusion,
        "chosen_minmax_alpha": alpha,
        "max_queries": args.max_queries,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    write_results(args.out, rows, meta)


def _print(r: dict[str, Any]) -> None:
    print(" ".join(f"{k}={v}" for k, v in r.items()), flush=True)


if __name__ == "__main__":
    main()
