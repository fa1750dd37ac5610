"""Writing one generation: a temp directory, fsynced files, checksums, then publish."""

from __future__ import annotations

import datetime
import errno
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import numpy as np

from codeintel.core import errors
from codeintel.core.store import chunks, files
from codeintel.core.store.generation import Generation
from codeintel.core.store.manifest import (
    CHUNKS_DB,
    CURRENT,
    FORMAT_VERSION,
    IMPACT,
    MANIFEST,
    MIN_READER_VERSION,
    TOMBSTONES,
    VECTORS_DIR,
    WINDOWS_READER_VERSION,
    Manifest,
    encode_manifest,
)
from codeintel.core.store.vectors import VectorStore

if TYPE_CHECKING:
    from codeintel.core.store.root import Store

logger = logging.getLogger(__name__)


class GenerationWriter:
    """Builds the next generation in a temp directory; :meth:`publish` makes it live.

    Used as a context manager: an exception (or leaving without publishing)
    removes the temp directory. ``CURRENT`` is touched only by :meth:`publish`.
    Files written here must be complete and closed (e.g. ``ChunkDB.close()``)
    before publishing. Never modify a file made by :meth:`link_from_parent`: it
    shares its inode with the parent's (copy ``chunks.sqlite`` with
    ``ChunkDB.copy_to`` instead).
    """

    def __init__(self, store: Store, name: str, parent: Generation | None) -> None:
        self.store = store
        self.name = name
        self.parent = parent
        tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.path = store.generations_dir / f"{files.TMP_PREFIX}{name}-{tag}"
        self.path.mkdir(parents=True)
        self._done = False
        store._active.add(self.path)

    def __enter__(self) -> GenerationWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if not self._done:
            if exc_type is None:
                logger.warning(
                    "generation %s left unpublished; discarding %s", self.name, self.path
                )
            self.abort()

    def abort(self) -> None:
        """Remove the temp directory; the store is as before :meth:`Store.begin`."""
        self._done = True
        self.store._active.discard(self.path)
        shutil.rmtree(self.path, ignore_errors=True)

    def link_from_parent(self, relpath: str) -> None:
        """Reuse a parent's file (or every file of a directory) by hard link; copy across devices."""
        if self.parent is None:
            raise ValueError(f"generation {self.name} has no parent to link {relpath!r} from")
        rel = files.relpath(relpath)
        src = self.parent.path / rel
        if not src.exists():
            raise errors.IndexFormatError(f"parent generation {self.parent.name} has no {relpath}")
        sources = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else [src]
        for file in sources:
            dst = self.path / rel / file.relative_to(src) if src.is_dir() else self.path / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(file, dst)
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP):
                    raise
                shutil.copy2(file, dst)

    def write_impact(self) -> None:
        """``chunks.impact`` of this generation's finished ``chunks.sqlite``
        (:mod:`~codeintel.core.store.impact_file`): the parent's, linked, when
        ``chunks.sqlite`` is the parent's file (a merge, a progressive build's full
        generation), else read from the database (about 1-3 s for 38K chunks)."""
        db = self.path / CHUNKS_DB
        if self.parent is not None and (self.parent.path / IMPACT).is_file():
            mine, theirs = db.stat(), (self.parent.path / CHUNKS_DB).stat()
            if (mine.st_ino, mine.st_dev) == (theirs.st_ino, theirs.st_dev):
                self.link_from_parent(IMPACT)
                return
        chunks.write_impact(db)

    def write_tombstones(self, ids: np.ndarray) -> None:
        """Store the deleted ids (deduplicated, sorted int64)."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(f"tombstones must be a 1-d integer array, got {ids.dtype} {ids.shape}")
        with open(self.path / TOMBSTONES, "wb") as f:
            np.save(f, np.unique(ids.astype(np.int64)), allow_pickle=False)

    def publish(self, manifest: Manifest) -> Generation:
        """Seal the temp directory as ``generations/<name>`` and point ``CURRENT`` at it."""
        if self._done:
            raise RuntimeError(f"generation {self.name} was already published or aborted")
        for path in [self.path, *self.path.rglob("*")]:
            files.share(path, files.DIR_READ if path.is_dir() else files.FILE_READ)
        parent_sums = self.parent.manifest.checksums if self.parent else {}
        checksums: dict[str, str] = {}
        for path in sorted(p for p in self.path.rglob("*") if p.is_file()):
            rel = path.relative_to(self.path).as_posix()
            if rel == MANIFEST:
                continue
            checksums[rel] = self._reused_checksum(path, rel, parent_sums) or files.file_checksum(
                path, fsync=True
            )
        for directory in [self.path, *(p for p in self.path.rglob("*") if p.is_dir())]:
            files.fsync_dir(directory)
        manifest = msgspec.structs.replace(
            manifest,
            format_version=FORMAT_VERSION,
            min_reader_version=self._min_reader_version(),
            generation=self.name,
            parent=self.parent.name if self.parent else None,
            base_generation=manifest.base_generation or self.name,
            checksums=checksums,
            created_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        )
        files.write_atomic(self.path / MANIFEST, encode_manifest(manifest))
        files.share(self.store.generations_dir, files.DIR_READ)
        final = self.store.generations_dir / self.name
        try:
            os.rename(self.path, final)
        except OSError as e:
            raise errors.IndexFormatError(
                f"cannot publish {final}: {e.strerror}; is another writer running "
                "without the store lock?"
            ) from e
        self._done = True
        self.store._active.discard(self.path)
        self.path = final
        files.fsync_dir(self.store.generations_dir)
        files.write_atomic(self.store.root / CURRENT, f"{self.name}\n".encode())
        logger.info("published generation %s (commit %s)", self.name, manifest.commit[:12])
        return Generation(final, verify=False)

    def _min_reader_version(self) -> int:
        """MIN_READER_VERSION, raised to what the chunk database's schema needs and, when
        the vectors include windows, to what reads them (an older reader would take
        window ids for chunk ids)."""
        db = self.path / CHUNKS_DB
        needed = [MIN_READER_VERSION, chunks.reader_version(db) if db.is_file() else 0]
        if VectorStore.open(self.path / VECTORS_DIR).has_windows:
            needed.append(WINDOWS_READER_VERSION)
        return max(needed)

    def _reused_checksum(self, path: Path, rel: str, parent_sums: dict[str, str]) -> str | None:
        """The parent's recorded checksum when ``path`` is a hard link to the parent's file."""
        if self.parent is None or rel not in parent_sums:
            return None
        try:
            mine, theirs = path.stat(), (self.parent.path / rel).stat()
        except FileNotFoundError:
            return None
        same = (mine.st_ino, mine.st_dev) == (theirs.st_ino, theirs.st_dev)
        return parent_sums[rel] if same else None
