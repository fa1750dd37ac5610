"""Vector ids of long chunks: a chunk's extra windows are vectors of their own.

The local model reads 256 tokens, and a quarter of real chunks are longer; a
chunk longer than that also gets one vector per further window of its text
(docs/architecture.md, *Long chunks*). Every vector keeps a unique id, so
FAISS's ``IndexIDMap2`` and the stored vector segments stay as they are: the
head is the chunk id itself, window ``w`` (1, 2, …) is ``chunk id + w << 48``.
Chunk ids come from a counter and stay far below 2**48. Readers map ids back
with :func:`chunk_ids` and keep each chunk's best-scoring vector
(:func:`best_per_chunk`); tombstones name chunks, so they drop every window.
"""

from __future__ import annotations

import numpy as np

WINDOW_SHIFT = 48
CHUNK_MASK = (1 << WINDOW_SHIFT) - 1
"""Low bits of a vector id: the chunk id."""

MAX_WINDOWS = (1 << (63 - WINDOW_SHIFT)) - 1
"""Most extra windows one chunk can have (the id must stay a positive int64)."""


def window_ids(chunks: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """Vector ids of windows ``numbers`` (1-based) of chunk ids ``chunks``."""
    chunks = np.asarray(chunks, dtype=np.int64)
    numbers = np.asarray(numbers, dtype=np.int64)
    if chunks.size and (chunks.min() < 0 or chunks.max() > CHUNK_MASK):
        raise ValueError(f"chunk ids must lie in [0, 2**{WINDOW_SHIFT}) to carry windows")
    if numbers.size and (numbers.min() < 1 or numbers.max() > MAX_WINDOWS):
        raise ValueError(f"window numbers must lie in [1, {MAX_WINDOWS}]")
    return np.asarray(chunks + (numbers << WINDOW_SHIFT), dtype=np.int64)


def chunk_ids(ids: np.ndarray) -> np.ndarray:
    """The chunk each vector id belongs to; negative ids (FAISS padding) stay as they are."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.where(ids >= 0, ids & CHUNK_MASK, ids)


def has_windows(ids: np.ndarray) -> bool:
    """Whether any of ``ids`` is a window (not a chunk's head)."""
    ids = np.asarray(ids, dtype=np.int64)
    return bool(ids.size) and bool((ids > CHUNK_MASK).any())


def best_per_chunk(D: np.ndarray, I: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of (D, I) with vector ids mapped to chunk ids, each chunk kept once.

    ``D`` (nq, k) scores and ``I`` vector ids, each row best first (as FAISS
    returns them). A chunk's later entries (its weaker windows) become
    ``-inf`` / ``-1``, so the row keeps its order and callers re-sort or
    re-query as they do for tombstones.
    """
    C = chunk_ids(I)
    D = np.array(D, dtype=np.float32, copy=True)
    if C.size == 0:
        return D, C
    order = np.argsort(C, axis=1, kind="stable")  # stable: the best entry of an id stays first
    sorted_ids = np.take_along_axis(C, order, axis=1)
    repeat = np.zeros(C.shape, dtype=bool)
    repeat[:, 1:] = (sorted_ids[:, 1:] == sorted_ids[:, :-1]) & (sorted_ids[:, 1:] >= 0)
    dup = np.empty_like(repeat)
    np.put_along_axis(dup, order, repeat, axis=1)
    C[dup] = -1
    D[dup] = -np.inf
    return D, C
