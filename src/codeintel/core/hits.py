"""Semantic search over one generation, from query text to hydrated hits.

The CLI's ``codeintel search`` and the searcher's ``semantic_search`` both
answer with :class:`Hit` rows: the engine returns ids and scores, and the chunk
store turns them into paths, line ranges and snippets. Filters (path glob,
language) are applied after hydration, so the engine over-fetches for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import msgspec
import numpy as np

from codeintel.core import chunks as chunks_mod
from codeintel.core import embed as embedding_mod
from codeintel.core import globs
from codeintel.core import search as search_mod
from codeintel.core import settings as settings_mod
from codeintel.core import store as store_mod

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
    """Best-first (id, score) pairs as hits, filtered, at most ``k``. Blocking (sqlite)."""
    found = db.get([chunk_id for chunk_id, _ in ranked])
    out: list[Hit] = []
    for chunk_id, score in ranked:
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
            break
    return out


def search_generation(
    generation: store_mod.Generation,
    engine: search_mod.SearchEngine,
    xq: np.ndarray,
    k: int,
    *,
    path_glob: str | None = None,
    language: str | None = None,
) -> list[list[Hit]]:
    """Hits for each query row of ``xq`` (float32 (nq, d))."""
    D, I = engine.search(xq, fetch_size(k, bool(path_glob or language)))
    db = generation.chunks()
    try:
        return [
            hydrate(db, ranked_pairs(D[q], I[q]), k, path_glob=path_glob, language=language)
            for q in range(len(xq))
        ]
    finally:
        db.close()


@overload
def search_store(  # type: ignore[overload-overlap]  # a str is also a Sequence[str]
    settings: settings_mod.Settings, embedder: embedding_mod.Embedder, queries: str, k: int
) -> list[Hit]: ...
@overload
def search_store(
    settings: settings_mod.Settings,
    embedder: embedding_mod.Embedder,
    queries: Sequence[str],
    k: int,
) -> list[list[Hit]]: ...
def search_store(
    settings: settings_mod.Settings,
    embedder: embedding_mod.Embedder,
    queries: str | Sequence[str],
    k: int,
) -> list[Hit] | list[list[Hit]]:
    """One-shot search of the store's live generation (the CLI path).

    One query text gives its hits; a sequence of texts gives one list of hits per text.
    """
    store = store_mod.Store(settings.store.path)
    generation = store.current()
    text = [queries] if isinstance(queries, str) else list(queries)
    xq = embedder.embed(text)
    embedding_mod.check_dimension(
        int(xq.shape[1]), generation.manifest.embedding.dim, embedder.model
    )
    engine = open_engine(generation, settings.index.nprobe)
    try:
        found = search_generation(generation, engine, xq, k)
    finally:
        engine.close()
    return found[0] if isinstance(queries, str) else found
