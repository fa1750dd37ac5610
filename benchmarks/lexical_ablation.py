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
min-max score fusion; the ``--check`` corpora are reported with
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
from benchmarks import retrieval_cache, retrieval_corpus
from benchmarks.common import RESULTS_DIR, write_results
from codeintel.core import git as git_mod
from codeintel.core import hits as hits_mod
from codeintel.core import lexical
from codeintel.core import store as store_mod
from codeintel.core.store.chunks import Chunk, ChunkDB
from codeintel.indexer import corpus as corpus_mod
from codeintel.indexer import progress as progress_mod

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
ALPHAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Lexical share tried for min-max score fusion."""


FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "fusion-corpus"


def load_corpus(name: str, cache: Path, work: Path) -> rb.Corpus:
    """A retrieval-benchmark corpus, or ``codeintel``: the frozen modules of the fusion test."""
    if name != "codeintel":
        return rb.prepare(name, cache)
    files = [
        (p.relative_to(FIXTURE).as_posix().removesuffix(".txt"), p.read_text(encoding="utf-8"))
        for p in sorted(FIXTURE.rglob("*.py.txt"))
    ]
    return retrieval_corpus.make_corpus(name, files, work / "codeintel-repo")


def chunk_corpus(repo: Path, mirror: Path) -> list[Chunk]:
    """The chunks the product's build would index for ``repo`` (ids from 1), without embedding."""
    settings = rb.store_settings(mirror.parent / "unused-store")
    with git_mod.GitClient.mirror(str(repo), mirror, settings.git.credentials) as git:
        found = corpus_mod.read_corpus(
            git, git.resolve("HEAD"), settings.index, progress_mod.Reporter()
        )
    return [
        Chunk(i, d.path, d.start_line, d.end_line, d.language, d.symbol, d.content_hash, d.text)
        for i, d in enumerate(found.drafts, start=1)
    ]


class Bench:
    """One corpus: its built store, queries, dense rankings and lexical databases."""

    def __init__(self, name: str, cache: Path, embedder: Any, max_queries: int, work: Path) -> None:
        self.name = name
        self.work = work
        self._dbs: dict[str, ChunkDB] = {}
        corpus = load_corpus(name, cache, work)
        self.queries = {s: corpus.queries[s][:max_queries] for s in SETS}
        self.dense: dict[str, list[Ranking]] = {}
        if embedder is None:  # lexical only: chunk the corpus as the product does, embed nothing
            self.chunks = chunk_corpus(corpus.repo_path, work / f"{name}-mirror.git")
            self.db, _ = self.variant("split + stem")
            return
        self.settings = rb.build_store(corpus, cache / "stores" / f"{name}-lexical", embedder)
        self.generation = store_mod.Store(self.settings.store.path).current()
        self.db = self.generation.chunks()
        self.chunks = list(self.db.get(self.db.all_ids().tolist()).values())
        depth = hits_mod.plan(K, "hybrid", False)[0]
        engine = hits_mod.open_engine(self.generation, self.settings.index.nprobe)
        try:
            for s, qs in self.queries.items():
                D, I = engine.search(embedder.embed([q.text for q in qs]), depth)
                self.dense[s] = [hits_mod.ranked_pairs(D[i], I[i]) for i in range(len(qs))]
        finally:
            engine.close()

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
                    db_mb=round(db.path.stat().st_size / 2**20, 1),
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


def by_kind(fusion: dict[str, hits_mod.Fusion]) -> Callable[[str, Ranking, Ranking], Ranking]:
    return lambda q, d, b: hits_mod.fuse(q, d, b, fusion[lexical.query_kind(q)])


CANDIDATES = [hits_mod.Fusion("rrf", w, k) for k, w in itertools.product(RRF_KS, GRID)] + [
    hits_mod.Fusion("minmax", a) for a in ALPHAS
]


def tune(
    benches: Sequence[Bench], bm25: dict[tuple[str, str], list[Ranking]]
) -> dict[str, hits_mod.Fusion]:
    """Per query kind, the fusion (RRF rank constant and weight, or min-max share) that
    maximises recall@10 + MRR@10 over ``benches``' queries of that kind."""
    chosen: dict[str, hits_mod.Fusion] = {}
    for kind in ("code", "keywords", "prose"):
        picks = {
            (b.name, s): [
                i for i, q in enumerate(b.queries[s]) if lexical.query_kind(q.text) == kind
            ]
            for b in benches
            for s in SETS
        }
        top: tuple[float, hits_mod.Fusion] = (-1.0, CANDIDATES[0])
        for f in CANDIDATES:
            total = 0.0
            for b in benches:
                for s in SETS:
                    ranks = [
                        rb.first_hit(
                            hits_mod.hydrate(
                                b.db, hits_mod.fuse("", b.dense[s][i], bm25[b.name, s][i], f), K
                            ),
                            b.queries[s][i].gold,
                        )
                        for i in picks[b.name, s]
                    ]
                    m = rb.score(ranks, K)
                    total += (m.recall + m.mrr) * m.queries
            if total > top[0] + 1e-9:
                top = (total, f)
        chosen[kind] = top[1]
        n = sum(len(p) for p in picks.values())
        print("kind", kind, "n", n, "chosen", top[1], round(top[0] / max(n, 1), 4), flush=True)
    return chosen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--tune", default="kopf,web", help="corpora the fusion weights are chosen on"
    )
    parser.add_argument("--check", default="rich,sympy", help="corpora only reported")
    parser.add_argument(
        "--lexical-only", default="", help="corpora measured for BM25 alone (no vectors needed)"
    )
    parser.add_argument("--max-queries", type=int, default=300)
    parser.add_argument("--cache", type=Path, default=rb.DEFAULT_CACHE)
    parser.add_argument("--out", default="lexical_ablation")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    embedder = retrieval_cache.cached_embedder(args.cache)
    tune_names = [n for n in args.tune.split(",") if n]
    check_names = [n for n in args.check.split(",") if n]
    lexical_names = [n for n in args.lexical_only.split(",") if n]
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lexical-ablation-") as tmp:
        benches = [
            Bench(n, args.cache, embedder, args.max_queries, Path(tmp))
            for n in tune_names + check_names
        ]
        embedder.close()
        only = [Bench(n, args.cache, None, args.max_queries, Path(tmp)) for n in lexical_names]
        bm25: dict[tuple[str, str], list[Ranking]] = {}
        before: dict[tuple[str, str], list[Ranking]] = {}
        for b in benches:
            rows += lexical_rows(b)
            db, _ = b.variant("split + stem")
            old, _ = b.variant("schema1 (before)")
            for s in SETS:
                bm25[b.name, s] = b.lexical(db, s)[0]
                before[b.name, s] = b.lexical(old, s)[0]
            for r in rows[-len(SETS) :]:
                _print(r)
        for b in only:
            rows += lexical_rows(b)
            b.close()
        fusion = tune([b for b in benches if b.name in tune_names], bm25)
        for b in benches:
            for s in SETS:
                rows.append(row(b, s, "semantic", b.score(s, b.dense[s])))
                rows.append(row(b, s, "lexical schema 1 (before)", b.score(s, before[b.name, s])))
                rows.append(row(b, s, "lexical (split + stem)", b.score(s, bm25[b.name, s])))
                rows.append(
                    row(
                        b,
                        s,
                        "hybrid before (schema 1 + RRF)",
                        fused(b, s, before[b.name, s], lambda q, d, x: hits_mod.rrf(d, x)),
                    )
                )
                rows.append(
                    row(
                        b,
                        s,
                        "hybrid RRF equal",
                        fused(b, s, bm25[b.name, s], lambda q, d, x: hits_mod.rrf(d, x)),
                    )
                )
                rows.append(
                    row(
                        b,
                        s,
                        "hybrid product (hits.FUSION)",
                        fused(b, s, bm25[b.name, s], hits_mod.fuse),
                    )
                )
                rows.append(
                    row(
                        b,
                        s,
                        "hybrid by kind (tuned here)",
                        fused(b, s, bm25[b.name, s], by_kind(fusion)),
                    )
                )
                for r in rows[-7:]:
                    _print(r)
        for b in benches:
            b.close()
    meta = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "what": "lexical variants alone, then fusion; recall@10 / MRR@10, a hit is the right file with overlapping lines",
        "tuned_on": tune_names,
        "checked_on": check_names,
        "lexical_only": lexical_names,
        "chosen_fusion": {k: str(v) for k, v in fusion.items()} if tune_names else {},
        "product_fusion": {k: str(v) for k, v in hits_mod.FUSION.items()},
        "max_queries": args.max_queries,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    write_results(args.out, rows, meta)
    path = RESULTS_DIR / f"{args.out}.md"
    path.write_text(pivot(args.out, rows, meta), encoding="utf-8")


def pivot(name: str, rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """Rows = what was measured, columns = corpus x query set, cells = recall@10 / MRR@10."""
    cols = list(dict.fromkeys((r["corpus"], r["queries"]) for r in rows))
    cell = {(r["what"], r["corpus"], r["queries"]): r for r in rows}
    lines = [f"# {name}", ""] + [f"- {k}: {v}" for k, v in meta.items()] + [""]
    lines.append(
        "recall@10 / MRR@10; ms = mean lexical query time (first query set), MB = chunks.sqlite"
    )
    lines.append("")
    lines.append(
        "| what | "
        + " | ".join(f"{c} {s} (n={cell_n(rows, c, s)})" for c, s in cols)
        + " | ms | MB |"
    )
    lines.append("|---|" + "---:|" * (len(cols) + 2))
    for what in dict.fromkeys(r["what"] for r in rows):
        cells = [cell.get((what, c, s)) for c, s in cols]
        first = next(x for x in cells if x)
        lines.append(
            f"| {what} | "
            + " | ".join(f"{x['recall@10']:.3f} / {x['mrr@10']:.3f}" if x else "" for x in cells)
            + f" | {first.get('ms_per_query', '')} | {first.get('db_mb', '')} |"
        )
    return "\n".join(lines) + "\n"


def cell_n(rows: list[dict[str, Any]], corpus: str, s: str) -> int:
    return next(int(r["n"]) for r in rows if r["corpus"] == corpus and r["queries"] == s)


def _print(r: dict[str, Any]) -> None:
    print(" ".join(f"{k}={v}" for k, v in r.items()), flush=True)


if __name__ == "__main__":
    main()
