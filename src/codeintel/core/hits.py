"""Ranking one query in one generation, from query text to hydrated hits: the one path.

The CLI's ``codeintel search`` and the searcher's ``semantic_search`` both call
:func:`rank` (mode, filters, fusion) and answer with :class:`Hit` rows: the engine
returns ids and scores, BM25 comes from the chunk database, ``hybrid`` fuses the
two (:func:`fuse`), and the chunk store turns ids into paths, line ranges and
snippets. Filters (path glob, language) apply while hydrating, so the engine
over-fetches for them.

Fusion depends on what the query looks like (:func:`codeintel.core.lexical.query_kind`):
code (``parse_args``, ``a.b``, ``f(``) and a name in words lean on BM25, a question
weighs both equally. Each ranking's scores are scaled to [0, 1] and summed with those
weights: plain reciprocal rank fusion made hybrid worse than semantic alone on real
repositories and buried exact name matches; the choice and the weights are measured in
``docs/performance.md`` (*Lexical and hybrid tuning*).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, overload

import msgspec
import numpy as np

from codeintel.core import embed as embedding_mod
from codeintel.core import errors, globs, lexical
from codeintel.core import search as search_mod
from codeintel.core import settings as settings_mod
from codeintel.core import store as store_mod
from codeintel.core.store import chunks as chunks_mod

SNIPPET_LINES = 12
"""Lines of chunk text returned as the snippet: enough to recognise the code, small for an agent's context."""

FILTER_OVERFETCH = 5
"""Candidates fetched per wanted result when a path or language filter applies."""

MAX_FETCH = 1000
"""Most candidates fetched for one query, whatever k and the filters ask."""


class Hit(msgspec.Struct, frozen=True):
    path: str
    start_line: int
    end_line: int
    score: float
    symbol: str | None
    language: str | None
    snippet: str


def open_engine(generation: store_mod.Generation, nprobe: int = 0) -> search_mod.SearchEngine:
    """A search engine over a generation's primary, secondary, tombstones and vectors."""
    m = generation.manifest
    return search_mod.SearchEngine.load(
        generation.primary_path,
        generation.secondary_path,
        generation.tombstones(),
        generation.vectors(),
        m.index.type,
        m.index.params,
        nprobe=nprobe,
    )


def snippet(text: str, lines: int = SNIPPET_LINES) -> str:
    """The first ``lines`` lines of a chunk."""
    return "\n".join(text.split("\n", lines)[:lines])


def fetch_size(k: int, filtered: bool) -> int:
    """Candidates to ask the engine for, so that ``k`` survive a path/language filter."""
    return min(MAX_FETCH, k * FILTER_OVERFETCH) if filtered else k


def ranked_pairs(D: np.ndarray, I: np.ndarray) -> list[tuple[int, float]]:
    """One query's FAISS row as best-first (id, score) pairs, padding dropped."""
    return [(int(i), float(d)) for d, i in zip(D, I, strict=True) if i >= 0]


def hydrate(
    db: chunks_mod.ChunkDB,
    ranked: Sequence[tuple[int, float]],
    k: int,
    *,
    path_glob: str | None = None,
    language: str | None = None,
) -> list[Hit]:
    """Best-first (id, score) pairs as hits, filtered, at most ``k``. Blocking (sqlite).

    Chunks are read a slice at a time (``k`` unfiltered, ``k *`` :data:`FILTER_OVERFETCH`
    filtered): hybrid ranks twice as many candidates as it returns, and reading their
    texts was a tenth of its time."""
    filtered = bool(path_glob or language)
    step = fetch_size(k, filtered)
    out: list[Hit] = []
    for start in range(0, len(ranked), step):
        part = ranked[start : start + step]
        found = db.get([chunk_id for chunk_id, _ in part])
        for chunk_id, score in part:
            chunk = found.get(chunk_id)
            if chunk is None:
                continue
            if path_glob and not globs.matches(chunk.path, path_glob):
                continue
            if language and chunk.language != language:
                continue
            out.append(
                Hit(
                    path=chunk.path,
                    start_line=chunk.start_line,
                    end_line=chunk.end_line,
                    score=round(score, 6),
                    symbol=chunk.symbol or None,
                    language=chunk.language or None,
                    snippet=snippet(chunk.text),
                )
            )
            if len(out) == k:
                return out
    return out


Mode = Literal["semantic", "hybrid", "lexical"]
MODES: tuple[Mode, ...] = ("semantic", "hybrid", "lexical")

RRF_K = 60
"""Rank constant of reciprocal rank fusion (Cormack et al.); damps the weight of the top ranks."""


class Fusion(msgspec.Struct, frozen=True):
    """How hybrid fuses the dense and the BM25 ranking of one kind of query."""

    method: Literal["rrf", "minmax", "calibrated"]
    """``rrf``: weighted reciprocal rank fusion; ``minmax``: scores scaled to [0, 1] per
    ranking, then a weighted sum (uses how far apart the scores are, not just the order);
    ``calibrated``: the same sum with cosines scaled on a fixed span below the best one
    (:data:`DENSE_SPAN`) and BM25 as a share of the best score, so a short list's
    last entry is not pushed to 0."""
    lexical_weight: float
    """rrf: BM25's weight against the dense ranking's 1.0; otherwise BM25's share (0..1)."""
    rrf_k: int = RRF_K


FUSION: dict[lexical.QueryKind, Fusion] = {
    "code": Fusion("minmax", 0.6),
    "keywords": Fusion("minmax", 0.7),
    "prose": Fusion("minmax", 0.5),
}
"""Per query kind, the fusion chosen on the retrieval benchmark's kopf and web corpora
(``benchmarks/lexical_ablation.py``; docs/performance.md, *Lexical and hybrid tuning*)."""

LONE_NAME_FUSION = Fusion("minmax", 0.8)
"""A query that is one identifier and nothing else leans further on BM25: on the 38K-chunk
sympy corpus its MRR@10 went 0.947 -> 0.965 (BM25 alone 0.969) with no change on the
other corpora's name queries (docs/performance.md, *Retrieval quality*)."""

DENSE_SPAN = 0.3
"""``calibrated`` fusion: a cosine this far below the query's best scales to 0."""

DENSE_MARGIN = 0.15
"""A clear dense answer: for a question (a ``prose`` query), the dense ranking's first chunk
ends first in hybrid when every chunk fused above it is at least this much lower in cosine
(0 turns the rule off). The query-to-code cosines of the local model sit in about
[-0.1, 0.7]. Code and keyword queries are exempt: they name what they want, and its
definition has the named tier (:data:`SYMBOL_BOOST`)."""

SYMBOL_BOOST = 2.0
"""Added to the fused score of chunks whose symbol is what the query names (the named
tier of :meth:`~codeintel.core.store.chunks.ChunkDB.lexical_tiers`), which puts them
strictly above every fused score (at most 1): a definition the query names comes first
(Zoekt's full symbol match); several definitions of one name keep their fused order."""


def plan(k: int, mode: Mode, filtered: bool) -> tuple[int, int]:
    """(dense, lexical) candidates to fetch for ``k`` hits in ``mode``; 0 where not used.

    hybrid fetches deeper on both sides, so fusion sees what one ranking alone would cut."""
    dense = fetch_size(k, filtered)
    lexical_ = fetch_size(k, False)
    if mode == "hybrid":
        dense, lexical_ = max(dense, min(MAX_FETCH, 2 * k)), 2 * lexical_
    return (0 if mode == "lexical" else dense, 0 if mode == "semantic" else lexical_)


def rrf(
    *rankings: Sequence[tuple[int, float]],
    weights: Sequence[float] | None = None,
    k: int = RRF_K,
) -> list[tuple[int, float]]:
    """Weighted reciprocal rank fusion of best-first rankings into one, best first.

    Each ranking adds ``weight / (k + rank)`` to the score of its ids; weights default to 1."""
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings), strict=True):
        for rank_, (chunk_id, _) in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (k + rank_)
    return _best_first(fused)


def minmax(
    dense: Sequence[tuple[int, float]], bm25: Sequence[tuple[int, float]], share: float
) -> list[tuple[int, float]]:
    """Score fusion: each ranking's scores scaled to [0, 1], then ``(1 - share) * dense + share * bm25``."""
    fused: dict[int, float] = {}
    for ranking, weight in ((dense, 1.0 - share), (bm25, share)):
        if not ranking:
            continue
        hi = max(score for _, score in ranking)
        lo = min(score for _, score in ranking)
        span = hi - lo
        for chunk_id, score in ranking:
            scaled = (score - lo) / span if span > 0 else 1.0
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight * scaled
    return _best_first(fused)


def calibrated(
    dense: Sequence[tuple[int, float]],
    bm25: Sequence[tuple[int, float]],
    share: float,
    span: float = DENSE_SPAN,
) -> list[tuple[int, float]]:
    """Score fusion on fixed scales: a cosine as ``1 - (best - cos) / span`` (at least 0),
    BM25 as a share of the best BM25 score; then ``(1 - share) * dense + share * bm25``."""
    fused: dict[int, float] = {}
    if dense:
        hi = max(score for _, score in dense)
        for chunk_id, score in dense:
            fused[chunk_id] = (1.0 - share) * max(0.0, 1.0 - (hi - score) / span)
    if bm25:
        top = max(score for _, score in bm25)
        for chunk_id, score in bm25:
            scaled = score / top if top > 0 else 1.0
            fused[chunk_id] = fused.get(chunk_id, 0.0) + share * scaled
    return _best_first(fused)


def boost_named(
    fused: Sequence[tuple[int, float]], named: Sequence[tuple[int, float]], boost: float
) -> list[tuple[int, float]]:
    """``fused`` with ``boost`` added to the score of every chunk in ``named``; named
    chunks the fusion did not see enter with the boost alone."""
    scores = dict(fused)
    for chunk_id, _ in named:
        scores[chunk_id] = scores.get(chunk_id, 0.0) + boost
    return _best_first(scores)


def keep_dense_top(
    fused: Sequence[tuple[int, float]],
    dense: Sequence[tuple[int, float]],
    margin: float,
    named: frozenset[int] = frozenset(),
) -> list[tuple[int, float]]:
    """``fused`` with the dense ranking's first chunk moved up past every chunk whose cosine
    is at least ``margin`` lower (a chunk the dense ranking did not return counts as its
    last cosine), when all chunks above it are such chunks or in ``named``. It then
    ranks right after the named ones and takes the score of the chunk it passes."""
    fused = list(fused)
    if margin <= 0 or not dense or len(fused) < 2:
        return fused
    top_id, top_cos = dense[0]
    cosine = dict(dense)
    floor = dense[-1][1]
    pos = next((i for i, (chunk_id, _) in enumerate(fused) if chunk_id == top_id), None)
    if not pos:
        return fused  # first already, or not fused at all
    above = [chunk_id for chunk_id, _ in fused[:pos] if chunk_id not in named]
    if not above or any(top_cos - cosine.get(c, floor) < margin for c in above):
        return fused
    to = pos - len(above)
    moved = (top_id, max(fused[pos][1], fused[to][1]))
    return [*fused[:to], moved, *fused[to:pos], *fused[pos + 1 :]]


def _best_first(scores: dict[int, float]) -> list[tuple[int, float]]:
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def fusion_for(query: str) -> Fusion:
    """The fusion of :data:`FUSION` for the query's kind (:data:`LONE_NAME_FUSION` for a
    query that is a symbol's name alone)."""
    if lexical.is_lone_name(query):
        return LONE_NAME_FUSION
    return FUSION[lexical.query_kind(query)]


def fuse(
    query: str,
    dense: Sequence[tuple[int, float]],
    bm25: Sequence[tuple[int, float]],
    fusion: Fusion | None = None,
    *,
    named: Sequence[tuple[int, float]] = (),
    margin: float | None = None,
    boost: float | None = None,
) -> list[tuple[int, float]]:
    """The hybrid ranking of one query, best first.

    Dense and BM25 are fused as :func:`fusion_for` says for the query's kind; chunks
    whose symbol the query names (``named``, see :data:`SYMBOL_BOOST`) go first; then
    a clear dense answer to a question is not left below chunks it beats by
    :data:`DENSE_MARGIN` in cosine (:func:`keep_dense_top`)."""
    f = fusion or fusion_for(query)
    margin = DENSE_MARGIN if margin is None else margin
    boost = SYMBOL_BOOST if boost is None else boost
    if f.method == "minmax":
        fused = minmax(dense, bm25, f.lexical_weight)
    elif f.method == "calibrated":
        fused = calibrated(dense, bm25, f.lexical_weight)
    else:
        fused = rrf(dense, bm25, weights=(1.0, f.lexical_weight), k=f.rrf_k)
    if named and boost:
        fused = boost_named(fused, named, boost)
    if lexical.query_kind(query) != "prose":
        return fused
    return keep_dense_top(
        fused, dense, margin, frozenset(i for i, _ in named) if boost else frozenset()
    )


Tiers = tuple[list[tuple[int, float]], list[tuple[int, float]]]
"""The lexical ranking in two tiers: chunks the query names, then BM25 (``ChunkDB.lexical_tiers``)."""


def bm25_tiers(
    db: chunks_mod.ChunkDB,
    query: str,
    mode: Mode,
    k: int,
    *,
    path_glob: str | None = None,
    language: str | None = None,
) -> Tiers:
    """The BM25 side of :func:`rank` (empty in semantic mode). Blocking (sqlite); it needs no
    vector, so a searcher runs it while the query is being embedded."""
    _, lexical_fetch = plan(k, mode, bool(path_glob or language))
    if not lexical_fetch:
        return [], []
    return db.lexical_tiers(query, lexical_fetch, path_glob=path_glob, language=language)


def rank(
    db: chunks_mod.ChunkDB,
    query: str,
    mode: Mode,
    k: int,
    dense: Sequence[tuple[int, float]] = (),
    *,
    path_glob: str | None = None,
    language: str | None = None,
    tiers: Tiers | None = None,
) -> list[Hit]:
    """The ranking of one query in one generation, the CLI's and the searcher's alike.

    ``dense`` is the query's nearest chunks (best first, fetched as :func:`plan` says;
    empty in lexical mode): the caller embeds and searches, so a searcher can batch
    those calls across queries. BM25 comes from the chunk database (or ``tiers``, the
    :func:`bm25_tiers` answer a caller computed while the query was being embedded); hybrid
    fuses both (:func:`fuse`); filters apply while hydrating. Blocking (sqlite)."""
    if tiers is None:
        tiers = bm25_tiers(db, query, mode, k, path_glob=path_glob, language=language)
    named, rest = tiers
    _, lexical_fetch = plan(k, mode, bool(path_glob or language))
    bm25 = chunks_mod.merge_tiers(named, rest, lexical_fetch)
    if mode == "semantic":
        ranked = list(dense)
    elif mode == "lexical":
        ranked = bm25
    else:
        ranked = fuse(query, dense, bm25, named=named)
    return hydrate(db, ranked, k, path_glob=path_glob, language=language)


PREPARE_BATCH = 32
"""Queries in one :func:`search_store` call from which BM25 is scored in numpy
(:meth:`~codeintel.core.store.chunks.ChunkDB.prepare_lexical`, the searcher's ranking)
when the generation has no stored impact index: reading the index costs about as much as
30 slow FTS5 queries on a large repository. A stored one is always used."""


@overload
def search_store(  # type: ignore[overload-overlap]  # a str is also a Sequence[str]
    settings: settings_mod.Settings,
    embedder: embedding_mod.Embedder | None,
    queries: str,
    k: int,
    mode: Mode = "semantic",
) -> list[Hit]: ...
@overload
def search_store(
    settings: settings_mod.Settings,
    embedder: embedding_mod.Embedder | None,
    queries: Sequence[str],
    k: int,
    mode: Mode = "semantic",
) -> list[list[Hit]]: ...
def search_store(
    settings: settings_mod.Settings,
    embedder: embedding_mod.Embedder | None,
    queries: str | Sequence[str],
    k: int,
    mode: Mode = "semantic",
) -> list[Hit] | list[list[Hit]]:
    """One-shot search of the store's live generation (the CLI path).

    One query text gives its hits; a sequence of texts gives one list of hits per text.
    Lexical mode needs no embedder (``None``)."""
    store = store_mod.Store(settings.store.path)
    generation = store.current()
    text = [queries] if isinstance(queries, str) else list(queries)
    dense: list[list[tuple[int, float]]] = [[] for _ in text]
    dense_fetch, _ = plan(k, mode, False)
    if dense_fetch:
        if embedder is None:
            raise errors.ConfigError(f"{mode} search needs an embedder")
        embedding_mod.check_model(
            embedder.model, generation.manifest.embedding.model, generation.name
        )
        xq = embedder.embed(text)
        embedding_mod.check_dimension(
            int(xq.shape[1]), generation.manifest.embedding.dim, embedder.model
        )
        engine = open_engine(generation, settings.index.nprobe)
        try:
            D, I = engine.search(xq, dense_fetch)
        finally:
            engine.close()
        dense = [ranked_pairs(D[q], I[q]) for q in range(len(text))]
    db = generation.chunks()
    try:
        if mode != "semantic":  # a stored index is mapped; else read for a large batch
            db.prepare_lexical(build=len(text) >= PREPARE_BATCH)
        found = [rank(db, t, mode, k, d) for t, d in zip(text, dense, strict=True)]
    finally:
        db.close()
    return found[0] if isinstance(queries, str) else found
