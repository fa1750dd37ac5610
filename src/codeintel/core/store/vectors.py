"""Raw float16 vectors by vector id (a chunk id, or one of its windows), kept beside the FAISS indexes of a generation.

FAISS indexes are lossy (IVF-PQ codes) or hard to edit (deleting from IVF), so
each generation also keeps every embedded vector in ``vectors/``. That serves
two needs without re-embedding anything:

* exact re-ranking of IVF-PQ candidates: a few thousand rows per query, looked
  up by id;
* merges: the primary is rebuilt from all live vectors, streamed in batches.

The directory holds *segments*, one per build or update: ``<name>.ids.npy``
(int64, sorted ascending) and ``<name>.f16.npy`` (float16, shape ``(n, dim)``).
Segments never change once written, so an update hard-links its parent's
segments and writes only what it adds. Readers memory-map the float16 rows;
only the ids (8 bytes per vector) and a lookup table are held in memory.
float16 keeps 3 significant digits, far below the ranking noise of the models
(inner products of unit vectors move by < 1e-3).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from codeintel.core import errors
from codeintel.core import windows as windows_mod

logger = logging.getLogger(__name__)

IDS_SUFFIX = ".ids.npy"
VECTORS_SUFFIX = ".f16.npy"
COPY_BELOW_BYTES = 64 * 1024 * 1024
"""Vector segments up to this size are read into memory rather than mapped (damage-proof)."""


class _Segment:
    """One segment's sorted ids (in memory) and float16 rows (memory-mapped)."""

    def __init__(self, name: str, ids: np.ndarray, rows: np.ndarray) -> None:
        self.name = name
        self.ids = ids
        self.rows = rows


class VectorStore:
    """Read view over the segments of one ``vectors/`` directory."""

    def __init__(self, directory: Path, segments: list[_Segment], dim: int) -> None:
        self._directory = directory
        self._segments = segments
        self._dim = dim
        if len(segments) == 1:
            self._ids = segments[0].ids
            self._seg = np.zeros(len(self._ids), dtype=np.int32)
            self._row = np.arange(len(self._ids), dtype=np.int64)
        else:
            ids = np.concatenate([s.ids for s in segments]) if segments else np.empty(0, np.int64)
            seg = np.concatenate(
                [np.full(len(s.ids), i, dtype=np.int32) for i, s in enumerate(segments)]
                or [np.empty(0, np.int32)]
            )
            row = np.concatenate(
                [np.arange(len(s.ids), dtype=np.int64) for s in segments] or [np.empty(0, np.int64)]
            )
            order = np.argsort(ids, kind="stable")
            self._ids, self._seg, self._row = ids[order], seg[order], row[order]
        if len(self._ids) > 1 and bool(np.any(self._ids[1:] == self._ids[:-1])):
            dup = int(self._ids[1:][self._ids[1:] == self._ids[:-1]][0])
            raise errors.IndexFormatError(f"chunk id {dup} is stored twice in {directory}")
        self._ids.flags.writeable = False

    # -- writing ---------------------------------------------------------------

    @staticmethod
    def write_segment(directory: Path, name: str, ids: np.ndarray, xb: np.ndarray) -> list[str]:
        """Write one segment (sorted by id) and return its file names, relative to ``directory``.

        An empty ``xb`` without a dimension writes nothing and returns ``[]``.

        ``xb`` is ``(n, dim)`` float; it is stored as float16. The dimension must
        match the segments already in ``directory`` (``DimensionMismatchError``);
        ids and vectors that cannot make a segment raise ``IndexFormatError``.
        """
        directory = Path(directory)
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad segment name {name!r}")
        ids = np.asarray(ids)
        xb = np.asarray(xb)
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise errors.IndexFormatError(
                f"ids must be a 1-d integer array, got {ids.dtype} {ids.shape}"
            )
        if ids.size == 0 and xb.size == 0 and (xb.ndim != 2 or xb.shape[1] == 0):
            return []  # nothing embedded (an empty repository): no dimension to record
        if xb.ndim != 2 or xb.shape[1] == 0:
            raise errors.IndexFormatError(
                f"vectors must be a 2-d (n, dim) array, got shape {xb.shape}"
            )
        if xb.shape[0] != ids.shape[0]:
            raise errors.IndexFormatError(f"{ids.shape[0]} ids for {xb.shape[0]} vectors")
        existing = _existing_dim(directory)
        if existing is not None and existing != xb.shape[1]:
            raise errors.DimensionMismatchError(
                f"vectors of dimension {xb.shape[1]} for a store of dimension {existing}"
            )
        ids = ids.astype(np.int64)
        with np.errstate(over="ignore"):  # overflow shows as inf, refused just below
            # Half the bytes before any reordering copy; float16 rows are not copied.
            rows = xb.astype(np.float16, copy=False)
        if len(ids) > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            order = np.argsort(ids, kind="stable")
            ids, rows = ids[order], rows[order]
            if bool(np.any(ids[1:] == ids[:-1])):
                raise errors.IndexFormatError(f"duplicate ids in segment {name!r}")
        if not bool(np.isfinite(rows).all()):
            raise errors.IndexFormatError(
                f"segment {name!r} has vectors that are not finite in float16"
            )
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for suffix, array in ((IDS_SUFFIX, ids), (VECTORS_SUFFIX, rows)):
            final = directory / f"{name}{suffix}"
            if final.exists():
                raise FileExistsError(f"segment file already exists: {final}")
            tmp = directory / f".{name}{suffix}.tmp"
            with open(tmp, "wb") as f:
                np.save(f, array, allow_pickle=False)
            os.replace(tmp, final)
            written.append(final.name)
        return written

    # -- reading ---------------------------------------------------------------

    @classmethod
    def open(cls, directory: Path) -> VectorStore:
        """All segments of ``directory``; a missing directory is an empty store (dim 0)."""
        directory = Path(directory)
        names = _segment_names(directory)
        segments: list[_Segment] = []
        dim = 0
        for name in names:
            ids_path = directory / f"{name}{IDS_SUFFIX}"
            rows_path = directory / f"{name}{VECTORS_SUFFIX}"
            if not rows_path.is_file():
                raise errors.IndexFormatError(f"vector segment {name!r} has no {rows_path.name}")
            try:
                ids = np.load(ids_path, allow_pickle=False)
                # A mapped file truncated under a running searcher turns the next read into
                # SIGBUS (issue 22); a small segment is copied into memory instead, so damage
                # after opening cannot reach a page fault. Large ones stay mapped; the
                # searcher stats them on every request and poll (searcher/generations.py).
                small = rows_path.stat().st_size <= COPY_BELOW_BYTES
                rows = np.load(rows_path, mmap_mode=None if small else "r", allow_pickle=False)
            except (OSError, ValueError, EOFError) as e:
                raise errors.IndexFormatError(f"corrupt vector segment {ids_path}: {e}") from e
            if ids.ndim != 1 or ids.dtype != np.int64:
                raise errors.IndexFormatError(f"{ids_path} is not a 1-d int64 array")
            if rows.ndim != 2 or rows.dtype != np.float16 or rows.shape[0] != ids.shape[0]:
                raise errors.IndexFormatError(
                    f"{rows_path} is not a float16 ({ids.shape[0]}, dim) array: "
                    f"{rows.dtype} {rows.shape}"
                )
            if dim and rows.shape[1] != dim:
                raise errors.IndexFormatError(
                    f"segment {name!r} has dimension {rows.shape[1]}, others {dim}"
                )
            dim = int(rows.shape[1])
            if len(ids) > 1 and not bool(np.all(ids[1:] > ids[:-1])):
                raise errors.IndexFormatError(f"{ids_path} is not sorted by id")
            segments.append(_Segment(name, ids, rows))
        return cls(directory, segments, dim)

    @property
    def dim(self) -> int:
        """Vector dimension (0 for an empty store)."""
        return self._dim

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self) -> np.ndarray:
        """Every stored id, sorted ascending (read-only view)."""
        return self._ids

    @property
    def has_windows(self) -> bool:
        """Whether some chunk has several vectors (window ids sort after every chunk id)."""
        return windows_mod.has_windows(self._ids[-1:])

    def get(self, ids: np.ndarray) -> np.ndarray:
        """float32 ``(len(ids), dim)`` rows in the order asked; ``KeyError`` names a missing id."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        out = np.empty((len(ids), self._dim), dtype=np.float32)
        if len(ids) == 0:
            return out
        if len(self._ids) == 0:
            raise KeyError(f"chunk id {int(ids[0])} has no stored vector in {self._directory}")
        pos = np.minimum(np.searchsorted(self._ids, ids), len(self._ids) - 1)
        found = self._ids[pos] == ids
        if not bool(np.all(found)):
            missing = int(ids[~found][0])
            raise KeyError(f"chunk id {missing} has no stored vector in {self._directory}")
        seg, row = self._seg[pos], self._row[pos]
        for s, segment in enumerate(self._segments):
            mask = seg == s
            if not bool(mask.any()):
                continue
            rows = row[mask]
            order = np.argsort(rows)  # read the mmap in file order
            picked = np.empty((len(rows), self._dim), dtype=np.float32)
            picked[order] = segment.rows[rows[order]]
            out[mask] = picked
        return out

    def iter_batches(
        self,
        batch: int,
        exclude: np.ndarray | None = None,
        *,
        dtype: npt.DTypeLike = np.float32,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(ids, vectors)`` over every stored id whose chunk is not in ``exclude``; the
        vectors are float32, or ``dtype`` (float16 is the stored rows, copied).

        Segment by segment; ``exclude`` holds chunk ids (tombstones), so a dead
        chunk's windows (:mod:`codeintel.core.windows`) go with it. Batches hold at
        most ``batch`` rows (fewer where ids were excluded; empty batches are
        skipped). Used by merges to rebuild the primary from live vectors.
        """
        if batch <= 0:
            raise ValueError(f"batch must be positive, got {batch}")
        dead = None if exclude is None else np.unique(np.asarray(exclude, dtype=np.int64))
        for segment in self._segments:
            for start in range(0, len(segment.ids), batch):
                ids = segment.ids[start : start + batch]
                rows = segment.rows[start : start + batch]
                if dead is not None and len(dead):
                    keep = ~np.isin(windows_mod.chunk_ids(ids), dead)
                    ids, rows = ids[keep], rows[keep]
                if len(ids):
                    yield ids.copy(), np.array(rows, dtype=dtype)


def _segment_names(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(
        p.name[: -len(IDS_SUFFIX)]
        for p in directory.iterdir()
        if p.name.endswith(IDS_SUFFIX) and not p.name.startswith(".")
    )


def _existing_dim(directory: Path) -> int | None:
    """Dimension of the segments already in ``directory`` (read from one header), if any."""
    for name in _segment_names(directory):
        rows = np.load(directory / f"{name}{VECTORS_SUFFIX}", mmap_mode="r", allow_pickle=False)
        return int(rows.shape[1])
    return None
