"""Hybrid fusion and long-chunk windows, compared offline on the retrieval corpora.

    python -m benchmarks.fusion_bench [--corpora jinja2,click,werkzeug,kopf,web,rich]
        [--stores retrieval-before-21] [--out fusion]

For each corpus, the store that ``retrieval_bench`` built (default settings, so
with window vectors) gives, per query: the dense ranking from an exact scan of
the stored vectors, once over head vectors only and once with each chunk scored
by its best window, and the BM25 ranking from ``ChunkDB.lexical``, each as deep
as ``hits.plan`` fetches them for hybrid. Every fusion candidate of
:data:`CANDIDATES` then ranks those same lists, so the comparison costs no
embedding and no rebuild. A query scores as in ``retrieval_bench`` (right
file, overlapping lines). Corpora are marked tuned or untuned
(``retrieval_corpus.TUNED`` / ``UNTUNED``): choices are made on the untuned ones.

Results: ``benchmarks/results/<out>.{json,md}``.
"""

from __future__ import annotations

import argparse
import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import retrieval_bench as rb
from benchmarks import retrieval_corpus
from benchmarks.common import RESULTS_DIR, write_results
from codeintel.core import hits as hits_mod
from codeintel.core import lexical
from codeintel.core import store as store_mod
from codeintel.core import windows as windows_mod

logger = logging.getLogger("benchmarks.fusion")

K = rb.K
Ranking = list[tuple[int, float]]
Fuser = Callable[[str, Ranking, Ranking], Ranking]


def _minmax_main(query: str, dense: Ranking, bm25: Ranking) -> Ranking:
    """main e6092f9: min-max per ranking, BM25 share by query kind (0.8 for a lone name)."""
    shares = {"code": 0.6, "keywords": 0.7, "prose": 0.5}
    share = 0.8 if lexical.is_lone_name(query) else shares[lexical.query_kind(query)]
    return hits_mod.minmax(dense, bm25, share)


def _rrf(weights: dict[str, float], k: int, lone: float) -> Fuser:
    def fuse(query: str, dense: Ranking, bm25: Ranking) -> Ranking:
        w = lone if lexical.is_lone_name(query) else weights[lexical.query_kind(query)]
        return hits_mod.rrf(dense, bm25, weights=(1.0, w), k=k)

    return fuse


def _product() -> Fuser:
    return hits_mod.fuse


CANDIDATES: dict[str, Callable[[], Fuser]] = {
    "minmax(main)": lambda: _minmax_main,
    "rrf k60 w1": lambda: _rrf(dict.fromkeys(("code", "keywords", "prose"), 1.0), 60, 1.0),
    "rrf k60 kind": lambda: _rrf({"code": 1.5, "keywords": 2.0, "prose": 1.0}, 60, 3.0),
    "rrf k10 kind": lambda: _rrf({"code": 1.5, "keywords": 2.0, "prose": 1.0}, 10, 3.0),
    "product": _product,
}
"""Fusion candidates by name; each makes a function (query, dense, bm25) -> fused ranking."""


def dense_rankings(
    generation: store_mod.Generation, xq: np.ndarray, fetch: int
) -> tuple[list[Ranking], list[Ranking]]:
    """Per query, the exact dense ranking over head vectors only and with best windows."""
    ids, xb = rb._stored(generation)
    head = ids < (1 << windows_mod.WINDOW_SHIFT)
    I, D = rb.exact_top(xq, ids[head], xb[head], fetch)
    heads = [hits_mod.ranked_pairs(D[q], I[q]) for q in range(len(xq))]
    I, D = rb.exact_top(xq, ids, xb, 2 * fetch)
    D, I = windows_mod.best_per_chunk(D, I)
    best = [hits_mod.ranked_pairs(D[q], I[q])[:fetch] for q in range(len(xq))]
    return heads, best


def first_rank(ranked: Ranking, spans: dict[int, tuple[str, int, int]], gold: Sequence[Any]) -> int | None:
    """1-based rank of the first gold-overlapping chunk in the top ``K``."""
    for rank, (chunk_id, _) in enumerate(ranked[:K], start=1):
        path, start, end = spans[chunk_id]
        if any(g.path == path and start <= g.end and end >= g.start for g in gold):
            return rank
    return None


def run_corpus(name: str, stores: str, embedder: Any, max_queries: int) -> list[dict[str, Any]]:
    corpus = rb.prepare(name)
    generation = store_mod.Store(rb.DEFAULT_CACHE / "stores" / f"{name}-{stores}").current()
    db = generation.chunks()
    spans = {c.id: (c.path, c.start_line, c.end_line) for c in db.get(db.all_ids().tolist()).values()}
    dense_fetch, lexical_fetch = hits_mod.plan(K, "hybrid", False)
    rows: list[dict[str, Any]] = []
    try:
        for query_set in retrieval_corpus.QUERY_SETS:
            queries = corpus.queries[query_set][:max_queries]
            texts = [q.text for q in queries]
            xq = embedder.embed(texts)
            heads, best = dense_rankings(generation, xq, dense_fetch)
            bm25 = [db.lexical(t, lexical_fetch) for t in texts]
            lists: dict[str, list[Ranking]] = {
                "semantic head": heads,
                "semantic window": best,
                "lexical": bm25,
            }
            for fname, make in CANDIDATES.items():
                fuse = make()
                for dname, dense in (("head", heads), ("window", best)):
                    lists[f"{fname} +{dname}"] = [
                        fuse(t, d, b) for t, d, b in zip(texts, dense, bm25, strict=True)
                    ]
            for method, ranked in lists.items():
                ranks = [first_rank(r, spans, q.gold) for r, q in zip(ranked, queries, strict=True)]
                m = rb.score(ranks)
                rows.append(
                    {
                        "corpus": name,
                        "tuned": name in retrieval_corpus.TUNED,
                        "queries": query_set,
                        "n": m.queries,
                        "method": method,
                        "recall@10": m.recall,
                        "mrr@10": m.mrr,
                    }
                )
    finally:
        db.close()
    return rows


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    keys = list(dict.fromkeys((r["corpus"], r["queries"]) for r in rows))
    lines = [f"# {meta['benchmark']}", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items() if k != "benchmark"]
    lines += ["", "recall@10 / MRR@10", ""]
    lines.append("| method | " + " | ".join(f"{c}{'' if c in retrieval_corpus.TUNED else '*'} {q}" for c, q in keys) + " |")
    lines.append("|---|" + "---:|" * len(keys))
    for method in methods:
        cells = {(r["corpus"], r["queries"]): r for r in rows if r["method"] == method}
        lines.append(
            f"| {method} | "
            + " | ".join(f"{cells[k]['recall@10']:.3f} / {cells[k]['mrr@10']:.3f}" for k in keys)
            + " |"
        )
    lines += ["", "`*`: untuned corpus (held out; choices are made on these)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpora", default="jinja2,click,werkzeug,kopf,web,rich")
    parser.add_argument("--stores", default="retrieval-before-21", help="retrieval_bench --out of the built stores")
    parser.add_argument("--max-queries", type=int, default=300)
    parser.add_argument("--out", default="fusion")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    embedder = rb.cached_embedder()
    rows: list[dict[str, Any]] = []
    try:
        for name in args.corpora.split(","):
            rows += run_corpus(name, args.stores, embedder, args.max_queries)
    finally:
        embedder.close()
    meta = {"what": "fusion candidates x dense (head-only / best window), exact scan, same lists", "k": K, "stores": args.stores}
    write_results(args.out, rows, meta)
    path = RESULTS_DIR / f"{args.out}.md"
    path.write_text(markdown(rows, {"benchmark": args.out, **meta}), encoding="utf-8")
    print(path.read_text())


if __name__ == "__main__":
    main()
