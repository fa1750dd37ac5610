"""The store's embedding cache: float16 vectors by (model, dimension, sha256 of the text).

It lives in the store root (``STORE/embcache.sqlite``), outside every generation,
so a rebuild from scratch (new chunking, a new URL for the same content, a format
upgrade) embeds only texts the store has never embedded with that model. One
SQLite file in rollback-journal mode: a crash mid-write leaves the last committed
state (SQLite rolls the hot journal back on the next open), readers are safe
while a writer commits, and it needs no shared memory, so it works on the NFS
volumes the cluster mounts (WAL does not). Only the store's writer (build,
update, GC, all under the store lock) opens it. Each row carries a CRC32 of its
key and vector, so a flipped bit is a miss, never a wrong vector. A damaged file
is discarded with a warning; the cache never fails a build. Size is bounded by
``store.embedding_cache_bytes`` (the file's live pages), evicting the least
recently used rows (docs/architecture.md, "The embedding cache").
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

logger = logging.getLogger(__name__)

T = TypeVar("T")

FILE = "embcache.sqlite"

# Format versions (PRAGMA user_version); a reader refuses (ignores) newer ones.
#   1: models(model, dim), vectors(model, hash, vec float16 LE, crc), usage(id, used).
FORMAT_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY,
    model TEXT NOT NULL,
    dim INTEGER NOT NULL,
    UNIQUE (model, dim)
);
CREATE TABLE IF NOT EXISTS vectors (
    id INTEGER PRIMARY KEY,
    model INTEGER NOT NULL,
    hash BLOB NOT NULL,
    vec BLOB NOT NULL,
    crc INTEGER NOT NULL,
    UNIQUE (model, hash)
);
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY,
    used INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_used ON usage (used, id);
"""
# The LRU stamp lives in its own small table: stamping the 35K rows a rebuild reused
# rewrites ~1 MB of pages there, where a column beside each 768-byte vector made the
# journal copy the whole table (measured 0.7-1 s at close on 35K rows).

# SQLite's default limit on bound parameters is 32766 since 3.32; 900 keeps each
# statement small and well under any build's limit.
_CHUNK = 900
_CORRUPT = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


class CacheUnavailableError(Exception):
    """The cache cannot be used this run (locked, newer format, unwritable); never fatal."""


def text_key(text: str) -> bytes:
    """The cache key of one embedded text: sha256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _marks(part: Sequence[object]) -> str:
    """``?,?,…`` for an ``IN (…)`` list: only placeholders are formatted into SQL here."""
    return ",".join("?" * len(part))


def _crc(key: bytes, vec: bytes) -> int:
    return zlib.crc32(vec, zlib.crc32(key))


class EmbeddingCache:
    """One open cache file. Not thread-safe; one writer process at a time (the store lock).

    Every method turns SQLite trouble into a warning: a damaged file is deleted
    and started afresh, any other failure (locked, unwritable) disables the
    cache for the rest of this run. Callers never see an exception.
    """

    def __init__(self, path: Path, max_bytes: int, *, timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._timeout = timeout
        self._db: sqlite3.Connection | None = None
        self._models: dict[tuple[str, int], int] = {}
        self._touched: set[int] = set()
        self._stamp = 0
        self.disabled = max_bytes <= 0
        if not self.disabled:
            self._guard("open", self._open, None)

    # -- public ---------------------------------------------------------------------------

    def dims(self, model: str) -> list[int]:
        """Dimensions this cache holds vectors of for ``model``."""
        known: dict[tuple[str, int], int] = self._guard("read", self._all_models, {})
        return sorted(d for m, d in known if m == model)

    def get(self, model: str, dim: int, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """float16 vectors of the ``keys`` present (and intact) for ``(model, dim)``."""
        if not keys:
            return {}
        return self._guard("read", lambda: self._get(model, dim, keys), {})

    def put(self, model: str, dim: int, keys: Sequence[bytes], xb: np.ndarray) -> None:
        """Store float16 rows ``xb`` under ``keys`` (one committed transaction), then bound the size."""
        if len(keys) != len(xb) or (len(xb) and xb.shape[1] != dim):
            raise ValueError(f"put: {len(keys)} keys for vectors of shape {xb.shape}, dim {dim}")
        if keys:
            self._guard("write", lambda: self._put(model, dim, keys, xb), None)

    def trim(self, max_bytes: int | None = None) -> int:
        """Evict least recently used rows until the file's live pages fit; returns rows evicted."""
        if max_bytes is not None:
            self.max_bytes = max_bytes
        return self._guard("trim", self._trim, 0)

    def live_bytes(self) -> int:
        """Bytes of the file in use (pages minus free pages)."""
        return self._guard("read", self._live_bytes, 0)

    def __len__(self) -> int:
        return self._guard("read", self._count, 0)

    def close(self) -> None:
        """Record which rows this run used (for LRU), then close."""
        with contextlib.suppress(CacheUnavailableError):
            self._guard("write", self._flush_touched, None)
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- SQLite ---------------------------------------------------------------------------

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One run may embed on another thread than the one that opened it; calls never overlap.
        db = sqlite3.connect(
            self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > FORMAT_VERSION:
                raise CacheUnavailableError(
                    f"{self.path} has format {version}, newer than this codeintel's "
                    f"{FORMAT_VERSION}; not using it"
                )
            # Rollback journal, fsync at each commit: crash-safe and NFS-safe (no -shm).
            db.execute("PRAGMA journal_mode=DELETE")
            db.execute("PRAGMA synchronous=FULL")
            if version < FORMAT_VERSION:
                db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes effect on a new file
                db.execute("BEGIN IMMEDIATE")
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)  # executescript would commit the transaction
                db.execute(f"PRAGMA user_version={FORMAT_VERSION}")
                db.execute("COMMIT")
            self._stamp = (
                int(db.execute("SELECT COALESCE(MAX(used), 0) FROM usage").fetchone()[0]) + 1
            )
        except BaseException:
            db.close()
            raise
        self._db = db
        self._models = {}

    def _conn(self) -> sqlite3.Connection:
        if self._db is None or self.disabled:
            raise CacheUnavailableError("closed")
        return self._db

    def _count(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def _all_models(self) -> dict[tuple[str, int], int]:
        rows = self._conn().execute("SELECT model, dim, id FROM models").fetchall()
        return {(m, d): i for m, d, i in rows}

    def _model_id(self, model: str, dim: int, *, create: bool) -> int | None:
        mid = self._models.get((model, dim))
        if mid is None:
            db = self._conn()
            row = db.execute(
                "SELECT id FROM models WHERE model = ? AND dim = ?", (model, dim)
            ).fetchone()
            if row is None and create:
                row = db.execute(
                    "INSERT INTO models (model, dim) VALUES (?, ?) RETURNING id", (model, dim)
                ).fetchone()
            if row is None:
                return None
            mid = self._models[(model, dim)] = int(row[0])
        return mid

    def _get(self, model: str, dim: int, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        mid = self._model_id(model, dim, create=False)
        if mid is None:
            return {}
        db = self._conn()
        found: dict[bytes, np.ndarray] = {}
        bad: list[int] = []
        for start in range(0, len(keys), _CHUNK):
            part = keys[start : start + _CHUNK]
            rows = db.execute(
                f"SELECT id, hash, vec, crc FROM vectors WHERE model = ? AND hash IN ({_marks(part)})",  # noqa: S608
                (mid, *part),
            )
            good: list[bytes] = []
            blobs: list[bytes] = []
            for rid, key, vec, crc in rows:
                if len(vec) != 2 * dim or _crc(key, vec) != crc:
                    bad.append(rid)
                    continue
                good.append(key)
                blobs.append(vec)
                self._touched.add(rid)
            if good:  # one array per statement, rows as views of it
                xb = np.frombuffer(b"".join(blobs), dtype="<f2").reshape(len(good), dim)
                found.update(zip(good, xb, strict=True))
        if bad:
            logger.warning(
                "embedding cache %s: %d damaged entries ignored and removed", self.path, len(bad)
            )
            self._delete(bad)
        return found

    def _put(self, model: str, dim: int, keys: Sequence[bytes], xb: np.ndarray) -> None:
        db = self._conn()
        rows = np.ascontiguousarray(xb, dtype="<f2")
        db.execute("BEGIN IMMEDIATE")
        try:
            mid = self._model_id(model, dim, create=True)
            db.executemany(
                "INSERT INTO vectors (model, hash, vec, crc) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (model, hash) DO UPDATE SET vec = excluded.vec, crc = excluded.crc",
                (
                    (mid, key, (blob := row.tobytes()), _crc(key, blob))
                    for key, row in zip(keys, rows, strict=True)
                ),
            )
            db.executemany(
                "INSERT OR REPLACE INTO usage (id, used) "
                "VALUES ((SELECT id FROM vectors WHERE model = ? AND hash = ?), ?)",
                ((mid, key, self._stamp) for key in keys),
            )
            db.execute("COMMIT")
        except BaseException:
            self._models.pop((model, dim), None)  # its row may have been rolled back
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        if self._live_bytes() > self.max_bytes:
            self._trim()

    def _flush_touched(self) -> None:
        if not self._touched or self._db is None:
            return
        ids = sorted(self._touched)
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            for start in range(0, len(ids), _CHUNK):
                part = ids[start : start + _CHUNK]
                db.execute(
                    f"UPDATE usage SET used = ? WHERE id IN ({_marks(part)})",  # noqa: S608
                    (self._stamp, *part),
                )
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        self._touched.clear()

    def _live_bytes(self) -> int:
        db = self._conn()
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def _trim(self) -> int:
        # Rows this run used must carry this run's stamp before anything is evicted.
        self._flush_touched()
        db = self._conn()
        evicted = 0
        while (live := self._live_bytes()) > self.max_bytes:
            count = db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
            if count == 0:
                break
            # Rows to drop, from the average row's share of the file; a half-emptied page
            # frees nothing, so the loop goes on in smaller steps until the pages fit.
            n = min(count, max(1, int((live - self.max_bytes) / (live / count)) + 1))
            oldest = [
                r[0] for r in db.execute("SELECT id FROM usage ORDER BY used, id LIMIT ?", (n,))
            ]
            self._delete(oldest)
            self._models.clear()
            evicted += n
        if evicted:
            # Hand the freed pages back to the filesystem. Each step of this pragma frees
            # one page and it has no result columns, so only executescript runs it to the end.
            db.executescript("PRAGMA incremental_vacuum;")
            logger.info(
                "embedding cache %s: evicted %d least recently used entries (bound %d bytes)",
                self.path,
                evicted,
                self.max_bytes,
            )
        return evicted

    def _delete(self, ids: Iterable[int]) -> None:
        db = self._conn()
        ids = list(ids)
        db.execute("BEGIN IMMEDIATE")
        try:
            for start in range(0, len(ids), _CHUNK):
                part = ids[start : start + _CHUNK]
                db.execute(f"DELETE FROM vectors WHERE id IN ({_marks(part)})", part)  # noqa: S608
                db.execute(f"DELETE FROM usage WHERE id IN ({_marks(part)})", part)  # noqa: S608
            db.execute("DELETE FROM models WHERE id NOT IN (SELECT DISTINCT model FROM vectors)")
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    # -- failure handling -----------------------------------------------------------------

    def _guard(self, what: str, fn: Callable[[], T], default: T) -> T:
        """Run ``fn``; a damaged file is replaced by an empty one, anything else disables the cache."""
        if self.disabled:
            return default
        try:
            return fn()
        except CacheUnavailableError as e:
            if str(e) != "closed":
                logger.warning("embedding cache disabled for this run: %s", e)
            self._disable()
            return default
        except sqlite3.DatabaseError as e:
            if getattr(e, "sqlite_errorcode", None) in _CORRUPT:
                logger.warning(
                    "embedding cache %s is damaged (%s); discarding it and starting an empty one",
                    self.path,
                    e,
                )
                self._discard()
                try:
                    self._open()
                    return default if what == "open" else fn()
                except (sqlite3.Error, CacheUnavailableError) as again:
                    logger.warning("embedding cache disabled for this run: %s", again)
                    self._disable()
                    return default
            logger.warning("embedding cache disabled for this run (%s failed): %s", what, e)
            self._disable()
            return default
        except (sqlite3.Error, OSError) as e:
            logger.warning("embedding cache disabled for this run: %s", e)
            self._disable()
            return default

    def _disable(self) -> None:
        self.disabled = True
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def _discard(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        self._touched.clear()
        self._models.clear()
        for path in _files(self.path):
            path.unlink(missing_ok=True)


def _files(path: Path) -> Iterator[Path]:
    """The cache file and the journal SQLite may have left beside it."""
    yield path
    yield path.with_name(path.name + "-journal")


def remove(root: Path) -> bool:
    """Delete a store's cache (the setting is 0); True when there was one."""
    path = Path(root) / FILE
    existed = path.exists()
    for p in _files(path):
        p.unlink(missing_ok=True)
    return existed


def trim(root: Path, max_bytes: int) -> int:
    """Bound a store's cache to ``max_bytes`` (0 deletes it); returns entries evicted. For GC."""
    path = Path(root) / FILE
    if max_bytes <= 0:
        if remove(root):
            logger.info("embedding cache disabled: removed %s", path)
        return 0
    if not path.exists():
        return 0
    with EmbeddingCache(path, max_bytes) as cache:
        return cache.trim()
