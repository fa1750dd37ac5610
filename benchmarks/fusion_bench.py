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
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks import retrieval_bench as rb
from benchmarks import retrieval_corpus
from benchmarks.common import RESULTS_DIR, write_results
from codeintel.core import hits as hits_mod
from codeintel.core import lexical
from codeintel.core import store as store_mod
from codeintel.core import windows as windows_mod
from codeintel.core.store import chunks as chunks_mod

logger = logging.getLogger("benchmarks.fusion")

K = rb.K
Ranking = list[tuple[int, float]]
Fuser = Callable[[str, Ranking, Ranking], Ranking]


Tiers = tuple[Ranking, Ranking]
"""``ChunkDB.lexical_tiers``: (chunks whose symbol the query names, BM25 of its terms)."""
Fuser = Callable[[str, Ranking, Tiers], Ranking]

_MAIN_SHARES = {"code": 0.6, "keywords": 0.7, "prose": 0.5}


def _main(query: str, dense: Ranking, tiers: Tiers) -> Ranking:
    """main e6092f9's fusion: the named tier only for code and keyword queries, merged
    into BM25; min-max per ranking, BM25's share by query kind (0.8 for a lone name); no
    boost, no margin. The tier itself is today's (whole-symbol matches), so main's own
    end-to-end figures are ``retrieval_bench``'s before run, not this row."""
    kind = lexical.query_kind(query)
    named = tiers[0] if kind in ("code", "keywords") else []
    bm25 = chunks_mod.merge_tiers(named, tiers[1], len(tiers[1]) or 1)
    share = 0.8 if lexical.is_lone_name(query) else _MAIN_SHARES[kind]
    return hits_mod.minmax(dense, bm25, share)


def _product(
    method: str = "minmax",
    margin: float | None = None,
    boost: float | None = None,
    weights: dict[str, float] | None = None,
    rrf_k: int = hits_mod.RRF_K,
) -> Fuser:
    """``hits.fuse`` with one knob changed: the method (weights per kind and lone name as
    ``weights`` says, else the product's), the dense margin or the symbol boost."""

    def fuse(query: str, dense: Ranking, tiers: Tiers) -> Ranking:
        named, rest = tiers
        bm25 = chunks_mod.merge_tiers(named, rest, max(len(rest), len(named), 1))
        f = hits_mod.fusion_for(query)
        if weights is not None:
            kind = "lone" if lexical.is_lone_name(query) else lexical.query_kind(query)
            f = hits_mod.Fusion(method, weights[kind], rrf_k)  # type: ignore[arg-type]
        elif method != f.method:
            f = hits_mod.Fusion(method, f.lexical_weight, rrf_k)  # type: ignore[arg-type]
        return hits_mod.fuse(query, dense, bm25, f, named=named, margin=margin, boost=boost)

    return fuse


_RRF_WEIGHTS = {"code": 1.5, "keywords": 2.0, "prose": 1.0, "lone": 3.0}

CANDIDATES: dict[str, Callable[[], Fuser]] = {
    "main fusion": lambda: _main,
    "minmax tiers": lambda: _product(margin=0, boost=0),
    "minmax boost": lambda: _product(margin=0),
    "minmax boost m.10": lambda: _product(margin=0.10),
    "minmax boost m.15": lambda: _product(margin=0.15),
    "minmax boost m.20": lambda: _product(margin=0.20),
    "calibrated boost": lambda: _product("calibrated", margin=0),
    "calibrated boost m.15": lambda: _product("calibrated", margin=0.15),
    "rrf k60 w1 boost": lambda: _product("rrf", margin=0, weights=dict.fromkeys(_RRF_WEIGHTS, 1.0)),
    "rrf k60 kind boost": lambda: _product("rrf", margin=0, weights=_RRF_WEIGHTS),
    "rrf k20 kind boost m.15": lambda: _product("rrf", margin=0.15, weights=_RRF_WEIGHTS, rrf_k=20),
}
"""Fusion candidates by name; each makes a function (query, dense, tiers) -> fused ranking."""


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


QUERY_SETS = (*retrieval_corpus.QUERY_SETS, "qual")
"""The benchmark's sets, and ``qual``: the ``ident`` queries of methods and nested
functions asked by their qualified name (``Parser.parse_for``)."""


def query_set_of(corpus: rb.Corpus, name: str) -> list[rb.Query]:
    if name != "qual":
        return corpus.queries[name]
    return [
        rb.Query(q.symbol, q.gold, q.symbol) for q in corpus.queries["ident"] if "." in q.symbol
    ]


def first_rank(
    ranked: Ranking, spans: dict[int, tuple[str, int, int]], gold: Sequence[Any]
) -> int | None:
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
    spans = {
        c.id: (c.path, c.start_line, c.end_line) for c in db.get(db.all_ids().tolist()).values()
    }
    dense_fetch, lexical_fetch = hits_mod.plan(K, "hybrid", False)
    rows: list[dict[str, Any]] = []
    try:
        for query_set in QUERY_SETS:
            queries = query_set_of(corpus, query_set)[:max_queries]
            texts = [q.text for q in queries]
            xq = embedder.embed(texts)
            heads, best = dense_rankings(generation, xq, dense_fetch)
            tiers = [db.lexical_tiers(t, lexical_fetch) for t in texts]
            bm25 = [chunks_mod.merge_tiers(n, r, lexical_fetch) for n, r in tiers]
            lists: dict[str, list[Ranking]] = {
                "semantic head": heads,
                "semantic window": best,
                "lexical": bm25,
            }
            for fname, make in CANDIDATES.items():
                fuse = make()
                for dname, dense in (("head", heads), ("window", best)):
                    lists[f"{fname} +{dname}"] = [
                        fuse(t, d, b) for t, d, b in zip(texts, dense, tiers, strict=True)
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
    corpora = list(dict.fromkeys(r["corpus"] for r in rows))
    lines = [f"# {meta['benchmark']}", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items() if k != "benchmark"]
    lines += ["", "recall@10 / MRR@10; `*` an untuned corpus (held out: choices are made on these)"]
    for query_set in QUERY_SETS:
        cells = {(r["method"], r["corpus"]): r for r in rows if r["queries"] == query_set}
        if not cells:
            continue
        n = {r["corpus"]: r["n"] for r in rows if r["queries"] == query_set}
        lines += ["", f"`{query_set}`", ""]
        lines.append(
            "| method | "
            + " | ".join(
                f"{c}{'' if c in retrieval_corpus.TUNED else '*'} ({n.get(c, 0)})" for c in corpora
            )
            + " |"
        )
        lines.append("|---|" + "---:|" * len(corpora))
        for method in methods:
            lines.append(
                f"| {method} | "
                + " | ".join(
                    f"{cells[(method, c)]['recall@10']:.3f} / {cells[(method, c)]['mrr@10']:.3f}"
                    if (method, c) in cells
                    else ""
                    for c in corpora
                )
                + " |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpora", default="jinja2,click,werkzeug,kopf,web,rich")
    parser.add_argument(
        "--stores", default="retrieval-before-21", help="retrieval_bench --out of the built stores"
    )
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
    meta = {
        "what": "fusion candidates x dense (head-only / best window), exact scan, same lists",
        "k": K,
        "stores": args.stores,
    }
    write_results(args.out, rows, meta)
    path = RESULTS_DIR / f"{args.out}.md"
    path.write_text(markdown(rows, {"benchmark": args.out, **meta}), encoding="utf-8")
    print(path.read_text())


if __name__ == "__main__":
    main()
