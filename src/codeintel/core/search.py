"""Nearest-neighbour search over one generation: primary + secondary, tombstones, exact re-rank.

A generation holds two indexes (docs/architecture.md, *Build, update, merge*): the primary built by the last full
build or merge, and a flat secondary of chunks added by incremental updates,
plus tombstones: ids of chunks deleted or changed since the primary was built.
:class:`SearchEngine` answers a batch of queries from both as if they were one
exact index:

* each index is over-fetched so that dropping tombstoned ids still leaves k
  results; rows that come up short are searched again with twice the depth
  (only those rows, until the index is exhausted), so results stay k long
  whatever the tombstones hit;
* IVF-PQ candidates (``k * rerank_factor``) are re-scored exactly against the
  stored vectors, because PQ scores alone cap recall@20 at ~0.4 on 384-d
  embeddings;
* the two lists are merged by score;
* a long chunk may have several vectors (its windows, ids from
  :mod:`codeintel.core.windows`): ids are mapped back to chunks and each chunk
  counts once, with its best window's score.

The engine is read-only and shares nothing mutable between calls: nprobe is set
once at construction, so any number of threads may call :meth:`search`
(FAISS CPU search is thread-safe), and each call is one FAISS call per index
for the whole batch. This module reads FAISS files; only the indexer writes them.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np

from codeintel.core import errors
from codeintel.core import windows as windows_mod

logger = logging.getLogger(__name__)

MAX_INITIAL_TOMBSTONE_OVERFETCH = 256
"""Extra results fetched per query on the first try when there are tombstones
(at most this many, at most one per tombstone); short rows are re-queried deeper."""

_RERANK_BLOCK_FLOATS = 1 << 22
"""Float32 values gathered per re-rank block (16 MiB), which bounds memory for big batches."""

# IO_FLAG_MMAP_IFC (faiss >= 1.11) maps flat codes and IVF lists straight from the file.
# Measured on 300K x 128: resident memory after loading 161 MB -> 17 MB for both
# IDMap2,Flat and IDMap2,IVF128,Flat (what stays is the id maps). Pages then live in the
# page cache, shared by every searcher process on the node. Older builds only map IVF lists.
_MMAP_IFC: int | None = getattr(faiss, "IO_FLAG_MMAP_IFC", None)
COPY_BELOW_BYTES = 64 * 1024 * 1024
"""Index files up to this size are read into memory, not mapped: damage to a small file
after opening must not reach a page fault; larger ones are stat-checked per request."""


SECONDARY_IVF_MIN = 4_096
"""From this many vectors the flat secondary is searched through an in-memory IVF copy.

A lone query scans a flat index end to end: 10K x 384 float32 is 15 MB of memory
traffic, ~0.6 ms here, which made primary + 10K secondary 1.75-1.85x the primary
alone at 50K (the bar is 1.5x). The file on disk stays the exact
``IndexIDMap2(IndexFlatIP)`` the store format fixes; searchers train sqrt(n) lists over it
when they load a generation (~0.1-0.3 s at 10K, off the request path) and probe
a quarter of them, the same recall bar (recall@20 >= 0.95) as the primary's IVF."""


class VectorLookup(Protocol):
    """Stored vectors by chunk id (the store's ``VectorStore`` satisfies it)."""

    def get(self, ids: np.ndarray) -> np.ndarray:
        """float32 rows of shape (len(ids), d), in the order of ``ids``."""
        ...


class SearchEngine:
    """k-NN over a generation's primary and secondary indexes, minus its tombstones."""

    def __init__(
        self,
        primary: faiss.Index | None,
        secondary: faiss.Index | None,
        tombstones: np.ndarray,
        vectors: VectorLookup | None,
        *,
        index_type: str,
        nprobe: int,
        rerank_factor: int,
    ) -> None:
        dims = {ix.d for ix in (primary, secondary) if ix is not None}
        if len(dims) > 1:
            raise errors.IndexFormatError(f"primary and secondary dimensions differ: {dims}")
        self._dim = dims.pop() if dims else 0
        self._primary = primary
        if secondary is not None and secondary.ntotal >= SECONDARY_IVF_MIN:
            secondary = ivf_copy(secondary)
        self._secondary = secondary
        self._tombstones = np.unique(np.asarray(tombstones, dtype=np.int64).ravel())
        self._vectors = vectors
        # Whether some chunk has several vectors: stored ids are sorted, so the last is
        # the largest, and window ids lie above every chunk id.
        ids = getattr(vectors, "ids", None)
        self._windows = windows_mod.has_windows(ids()[-1:]) if callable(ids) else False
        self.index_type = index_type
        self.nprobe = nprobe
        self._rerank = index_type == "ivf_pq" and rerank_factor > 1
        self.rerank_factor = max(1, rerank_factor) if self._rerank else 1
        if self._rerank and vectors is None:
            logger.warning("ivf_pq index without stored vectors: results use approximate PQ scores")
            self._rerank = False
        if primary is not None and nprobe > 0:
            try:
                ivf = faiss.extract_index_ivf(primary)
            except RuntimeError:
                ivf = None  # a flat primary has no lists to probe
            if ivf is not None:
                ivf.nprobe = int(nprobe)

    @classmethod
    def load(
        cls,
        primary_path: Path,
        secondary_path: Path,
        tombstones: np.ndarray,
        vectors: VectorLookup | None,
        index_type: str,
        params: dict[str, Any],
        nprobe: int = 0,
    ) -> SearchEngine:
        """Read a generation's index files, memory-mapped (see ``_MMAP_IFC``).

        ``nprobe`` 0 uses ``params["nprobe"]`` (the build's, calibrated for recall@10
        >= 0.99 on text queries from the corpus: docs/architecture.md, *Vector indexes*). A missing secondary file means an empty secondary.
        """
        primary = _read(primary_path, index_type)
        secondary = _read(secondary_path, "flat") if Path(secondary_path).exists() else None
        return cls(
            primary,
            secondary,
            tombstones,
            vectors,
            index_type=index_type,
            nprobe=nprobe or int(params.get("nprobe", 0)),
            rerank_factor=int(params.get("rerank_factor", 1)),
        )

    @property
    def ntotal(self) -> int:
        """Vectors in both indexes, tombstoned ones included."""
        return sum(ix.ntotal for ix in (self._primary, self._secondary) if ix is not None)

    @property
    def dim(self) -> int:
        return self._dim

    def close(self) -> None:
        """Release the indexes (and their mappings once no search holds them)."""
        self._primary = None
        self._secondary = None
        self._vectors = None

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k live chunks for each of nq queries: (D, I), both (nq, k).

        D is float32 inner product, descending; I is int64 chunk ids. Rows with
        fewer than k live vectors are padded with -inf / -1.
        """
        if k < 1:
            raise errors.QueryError(f"k must be >= 1, got {k}", field="k")
        if xq.ndim != 2:
            raise errors.QueryError(f"queries must be 2-D (nq, d), got shape {xq.shape}")
        nq, d = xq.shape
        if self._dim and d != self._dim:
            raise errors.DimensionMismatchError(
                f"query vectors have dimension {d}, the index has {self._dim}"
            )
        xq = np.ascontiguousarray(xq, dtype=np.float32)
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        primary, secondary = self._primary, self._secondary
        if primary is not None and primary.ntotal:
            if self._rerank:
                _, I = self._search_live(primary, xq, k * self.rerank_factor, by_chunk=False)
                D, I = self._rerank_exact(xq, I, I.shape[1])
                if self._windows:
                    D, I = windows_mod.best_per_chunk(D, I)
                parts.append(_top_k(D, I, k))
            else:
                parts.append(self._search_live(primary, xq, k))
        if secondary is not None and secondary.ntotal:
            parts.append(self._search_live(secondary, xq, k))
        if not parts:
            return np.full((nq, k), -np.inf, dtype=np.float32), np.full((nq, k), -1, np.int64)
        return _merge(parts, k)

    def _search_live(
        self, index: faiss.Index, xq: np.ndarray, k: int, *, by_chunk: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k non-tombstoned results of one index, re-querying short rows deeper.

        ``by_chunk``: ids are chunk ids, each chunk once (its best window); else
        vector ids, a chunk's windows side by side (for the exact re-rank)."""
        nq = xq.shape[0]
        extra = min(self._tombstones.size, MAX_INITIAL_TOMBSTONE_OVERFETCH)
        # A chunk's windows often sit next to each other in a ranking: fetch twice as deep.
        k_fetch = min((2 * k if self._windows and by_chunk else k) + extra, index.ntotal)
        D_out = np.full((nq, k), -np.inf, dtype=np.float32)
        I_out = np.full((nq, k), -1, dtype=np.int64)
        rows = np.arange(nq)
        while True:
            D, I = index.search(xq[rows], k_fetch)
            exhausted = (I < 0).any(axis=1) | (k_fetch >= index.ntotal)
            if self._tombstones.size:
                # Tombstones name chunks: every window of a dead chunk goes with it.
                dead = np.isin(windows_mod.chunk_ids(I) if self._windows else I, self._tombstones)
                I[dead] = -1
                D[dead] = -np.inf
            if self._windows and by_chunk:
                D, I = windows_mod.best_per_chunk(D, I)
            D, I = _top_k(D, I, k)
            D_out[rows], I_out[rows] = D, I
            short = ((I < 0).any(axis=1)) & ~exhausted
            if not short.any():
                return D_out, I_out
            rows = rows[short]
            k_fetch = min(2 * k_fetch, index.ntotal)

    def _rerank_exact(self, xq: np.ndarray, I: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Re-score candidate ids I (nq, kc) by exact inner product with stored vectors."""
        vectors = self._vectors
        assert vectors is not None  # _rerank is only set with vectors
        nq, kc = I.shape
        D = np.full((nq, kc), -np.inf, dtype=np.float32)
        uniq = np.unique(I[I >= 0])
        if uniq.size:
            xb = np.asarray(vectors.get(uniq), dtype=np.float32)
            if xb.shape != (uniq.size, xq.shape[1]):
                raise errors.IndexFormatError(
                    f"stored vectors returned shape {xb.shape} for {uniq.size} ids"
                )
            pos = np.searchsorted(uniq, np.maximum(I, 0))
            block = max(1, _RERANK_BLOCK_FLOATS // max(1, kc * xq.shape[1]))
            for q0 in range(0, nq, block):
                q1 = min(nq, q0 + block)
                D[q0:q1] = np.einsum("qd,qkd->qk", xq[q0:q1], xb[pos[q0:q1]])
            D[I < 0] = -np.inf
        return _top_k(D, I, k)


def _read(path: Path, index_type: str) -> faiss.Index:
    """Read one index file memory-mapped where the build and the type allow it."""
    path = Path(path)
    if not path.exists():
        raise errors.IndexFormatError(f"index file missing: {path}")
    if path.stat().st_size <= COPY_BELOW_BYTES:
        flags = 0  # read into memory: a later truncation cannot become SIGBUS (issue 22)
    elif _MMAP_IFC is not None:
        flags = _MMAP_IFC
    elif index_type in ("ivf_flat", "ivf_pq"):
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY  # lists only
    else:
        flags = 0
    try:
        return faiss.read_index(str(path), flags)
    except RuntimeError as e:
        raise errors.IndexFormatError(f"cannot read index {path}: {e}") from e


def ivf_copy(index: faiss.Index) -> faiss.Index:
    """An in-memory ``IVF{sqrt n},Flat`` holding the same vectors and ids as ``index``
    (an ``IndexIDMap2`` over a flat index), with nprobe = nlist / 4."""
    n, d = index.ntotal, index.d
    idmap = faiss.downcast_index(index)
    if not isinstance(idmap, faiss.IndexIDMap2):
        raise errors.IndexFormatError(f"secondary index is {type(idmap).__name__}, not IndexIDMap2")
    xb = faiss.downcast_index(idmap.index).reconstruct_n(0, n)
    ids = faiss.vector_to_array(idmap.id_map).astype(np.int64)
    nlist = max(16, round(math.sqrt(n)))
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(xb)
    ivf.add_with_ids(xb, ids)
    ivf.nprobe = max(1, nlist // 4)
    return ivf


def _top_k(D: np.ndarray, I: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best columns of each row by descending D (stable), padded to k with -inf / -1."""
    nq = D.shape[0]
    if D.shape[1] < k:
        D = np.hstack([D, np.full((nq, k - D.shape[1]), -np.inf, dtype=np.float32)])
        I = np.hstack([I, np.full((nq, k - I.shape[1]), -1, dtype=np.int64)])
    order = np.argsort(-D, axis=1, kind="stable")[:, :k]
    D = np.take_along_axis(D, order, axis=1).astype(np.float32, copy=False)
    I = np.take_along_axis(I, order, axis=1)
    I[~np.isfinite(D)] = -1
    return D, I


def _merge(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-index (D, I) lists by score into one top-k list."""
    if len(parts) == 1:
        return parts[0]
    D = np.hstack([p[0] for p in parts])
    I = np.hstack([p[1] for p in parts])
    return _top_k(D, I, k)
