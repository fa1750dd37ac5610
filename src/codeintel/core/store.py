"""The on-disk index store: immutable generations, published by an atomic ``CURRENT`` swap.

This is the contract between the indexer (the only writer) and the searchers
(many readers, possibly on other machines sharing a volume; docs/architecture.md,
"Writing a generation"). A writer builds a generation in a temp directory under
``generations/``, fsyncs it, records a sha256 of every file in its manifest,
renames the directory to its final name and only then replaces ``CURRENT``. A
crash at any point before that last rename leaves ``CURRENT`` on the previous
generation, so a reader never sees a half-written one, and a reader that
verifies checksums never serves a corrupted one. Old generations are deleted
only after a grace period, because searchers may still be serving them.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import socket
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import msgspec
import numpy as np

from codeintel.core import errors
from codeintel.core.chunks import ChunkDB
from codeintel.core.manifest import (
    CHUNKS_DB,
    CURRENT,
    FORMAT_VERSION,
    INDEX_TYPES,
    MANIFEST,
    MIN_READER_VERSION,
    PRIMARY,
    SECONDARY,
    TOMBSTONES,
    VECTORS_DIR,
    Counts,
    EmbeddingInfo,
    IndexInfo,
    Manifest,
    ManifestPeek,
    SkippedFile,
    decode_manifest,
    encode_manifest,
    peek_manifest,
)
from codeintel.core.vectors import VectorStore

logger = logging.getLogger(__name__)

__all__ = [
    "CHUNKS_DB",
    "CURRENT",
    "FORMAT_VERSION",
    "INDEX_TYPES",
    "MANIFEST",
    "MIN_READER_VERSION",
    "PRIMARY",
    "SECONDARY",
    "TOMBSTONES",
    "VECTORS_DIR",
    "Counts",
    "EmbeddingInfo",
    "Generation",
    "GenerationWriter",
    "IndexInfo",
    "Manifest",
    "SkippedFile",
    "Store",
    "decode_manifest",
    "encode_manifest",
    "file_checksum",
]


_LOCK = ".lock"
_TMP_PREFIX = ".tmp-"  # a build in progress, or one that crashed
_DEL_PREFIX = ".del-"  # a generation gc has decided to delete
_NAME = re.compile(r"g(\d{6,})")
_BLOCK = 1 << 20  # checksum read size
# Searchers may run as another uid on the same volume: every published file must be
# readable, and every directory listable, by all (whatever the writer's umask).
_FILE_READ = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_DIR_READ = _FILE_READ | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


def file_checksum(path: Path, *, fsync: bool = False) -> str:
    """``sha256:<hex>`` of a file, read in 1 MiB blocks; ``fsync`` also flushes it to disk."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
        if fsync:
            os.fsync(f.fileno())
    return f"sha256:{digest.hexdigest()}"


class Generation:
    """Read view of one published generation; ``verify`` checks every file's checksum."""

    def __init__(self, path: Path, *, verify: bool = True) -> None:
        self.path = Path(path)
        self.name = self.path.name
        manifest_path = self.path / MANIFEST
        try:
            data = manifest_path.read_bytes()
        except FileNotFoundError as e:
            raise errors.IndexFormatError(f"generation {self.name} has no {MANIFEST}") from e
        self.manifest = decode_manifest(data, source=str(manifest_path))
        if self.manifest.generation != self.name:
            raise errors.IndexFormatError(
                f"{manifest_path} names generation {self.manifest.generation!r}, not {self.name!r}"
            )
        self._tombstones: np.ndarray | None = None
        if verify:
            self.verify()

    def __repr__(self) -> str:
        return f"Generation({self.name!r}, commit={self.manifest.commit[:12]!r})"

    def verify(self) -> None:
        """Every file named in the manifest exists and has the recorded sha256."""
        for rel, expected in sorted(self.manifest.checksums.items()):
            path = self.path / _relpath(rel)
            if not path.is_file():
                raise errors.IndexFormatError(f"generation {self.name} is missing {rel}")
            actual = file_checksum(path)
            if actual != expected:
                raise errors.IndexFormatError(
                    f"checksum mismatch in generation {self.name}: {rel} "
                    f"has {actual}, the manifest records {expected}"
                )

    @property
    def primary_path(self) -> Path:
        return self.path / PRIMARY

    @property
    def secondary_path(self) -> Path:
        return self.path / SECONDARY

    def tombstones(self) -> np.ndarray:
        """Sorted int64 ids deleted since the base generation (empty when there is no file)."""
        if self._tombstones is None:
            path = self.path / TOMBSTONES
            if not path.exists():
                ids = np.empty(0, dtype=np.int64)
            else:
                try:
                    ids = np.load(path, allow_pickle=False)
                except (OSError, ValueError) as e:
                    raise errors.IndexFormatError(f"corrupt {path}: {e}") from e
                if ids.ndim != 1 or ids.dtype != np.int64:
                    raise errors.IndexFormatError(f"{path} is not a 1-d int64 array")
                ids = np.sort(ids)
            ids.flags.writeable = False
            self._tombstones = ids
        return self._tombstones

    def vectors(self) -> VectorStore:
        return VectorStore.open(self.path / VECTORS_DIR)

    def chunks(self, readonly: bool = True) -> ChunkDB:
        """The chunk database; ``readonly=False`` is for repair tools only (it breaks checksums)."""
        return ChunkDB.open(self.path / CHUNKS_DB, readonly=readonly)


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
        self.path = store.generations_dir / f"{_TMP_PREFIX}{name}-{tag}"
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
        rel = _relpath(relpath)
        src = self.parent.path / rel
        if not src.exists():
            raise errors.IndexFormatError(f"parent generation {self.parent.name} has no {relpath}")
        files = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else [src]
        for file in files:
            dst = self.path / rel / file.relative_to(src) if src.is_dir() else self.path / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(file, dst)
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP):
                    raise
                shutil.copy2(file, dst)

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
            _share(path, _DIR_READ if path.is_dir() else _FILE_READ)
        parent_sums = self.parent.manifest.checksums if self.parent else {}
        checksums: dict[str, str] = {}
        for path in sorted(p for p in self.path.rglob("*") if p.is_file()):
            rel = path.relative_to(self.path).as_posix()
            if rel == MANIFEST:
                continue
            checksums[rel] = self._reused_checksum(path, rel, parent_sums) or file_checksum(
                path, fsync=True
            )
        for directory in [self.path, *(p for p in self.path.rglob("*") if p.is_dir())]:
            _fsync_dir(directory)
        manifest = msgspec.structs.replace(
            manifest,
            format_version=FORMAT_VERSION,
            min_reader_version=MIN_READER_VERSION,
            generation=self.name,
            parent=self.parent.name if self.parent else None,
            base_generation=manifest.base_generation or self.name,
            checksums=checksums,
            created_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        )
        _write_atomic(self.path / MANIFEST, encode_manifest(manifest))
        _share(self.store.generations_dir, _DIR_READ)
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
        _fsync_dir(self.store.generations_dir)
        _write_atomic(self.store.root / CURRENT, f"{self.name}\n".encode())
        logger.info("published generation %s (commit %s)", self.name, manifest.commit[:12])
        return Generation(final, verify=False)

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


class Store:
    """A store root: ``CURRENT``, ``mirror.git/`` and ``generations/``."""

    def __init__(self, root: Path) -> None:
        self._root = Path(root)
        for path in (self._root, *self._root.parents):
            if path.exists() or path.is_symlink():
                if not path.is_dir():
                    what = "a file" if path.is_file() else "no directory"
                    where = "" if path == self._root else f" ({path} is {what})"
                    raise errors.ConfigError(f"store path {self._root} is not a directory{where}")
                break
        self._active: set[Path] = set()  # temp dirs of this process's open writers
        self._locked = False  # this instance holds the writer lock

    def __repr__(self) -> str:
        return f"Store({str(self._root)!r})"

    @property
    def root(self) -> Path:
        return self._root

    @property
    def mirror_path(self) -> Path:
        return self._root / "mirror.git"

    @property
    def generations_dir(self) -> Path:
        return self._root / "generations"

    def current_name(self) -> str | None:
        """The live generation's name, or ``None`` before the first publish."""
        try:
            name = (self._root / CURRENT).read_text().strip()
        except FileNotFoundError:
            return None
        if not _NAME.fullmatch(name):
            raise errors.IndexFormatError(f"{self._root / CURRENT} names no generation: {name!r}")
        return name

    def current(self) -> Generation:
        """The live generation, verified."""
        name = self.current_name()
        if name is None:
            raise errors.NoGenerationError(
                f"store {self._root} has no published generation yet (no {CURRENT} file); "
                "run `codeintel index build` first"
            )
        return self.open_generation(name)

    def open_generation(self, name: str, *, verify: bool = True) -> Generation:
        if not _NAME.fullmatch(name):
            raise errors.IndexFormatError(f"not a generation name: {name!r}")
        path = self.generations_dir / name
        if not path.is_dir():
            raise errors.IndexFormatError(f"generation {name} not found in store {self._root}")
        return Generation(path, verify=verify)

    def older_than(self, name: str | None) -> list[str]:
        """Published generations older than ``name``, newest first (all of them for ``None``)."""
        names = self.list_generations()
        if name is not None and _NAME.fullmatch(name):
            names = [n for n in names if _number(n) < _number(name)]
        return names[::-1]

    def peek(self, name: str) -> ManifestPeek | None:
        """``next_id`` and ``repo_url`` of a generation's manifest, unverified; None if unreadable."""
        try:
            return peek_manifest((self.generations_dir / name / MANIFEST).read_bytes())
        except OSError:
            return None

    def max_next_id(self) -> int:
        """The highest ``next_id`` any published manifest records, readable or not (1 if none).

        A build over an unreadable generation starts its ids here, so an id never
        names two different chunks in one store.
        """
        peeks = (self.peek(name) for name in self.list_generations())
        return max((p.next_id for p in peeks if p is not None), default=1)

    def rollback(self, to: str | None = None) -> tuple[str | None, Generation]:
        """Point ``CURRENT`` at an intact older generation: ``to``, else the newest one.

        Takes the writer lock, verifies every checksum of the target (skipping
        damaged or too-new candidates when choosing), then replaces ``CURRENT``
        atomically. Returns the name ``CURRENT`` held before (``None`` when it
        named nothing readable) and the generation it names now.
        """
        with self.lock():
            try:
                previous = self.current_name()
            except errors.IndexFormatError as e:
                logger.warning("%s", e)
                previous = None
            if to is not None:
                target = self.open_generation(to, verify=True)
            else:
                problems: list[str] = []
                for name in self.older_than(previous):
                    try:
                        target = self.open_generation(name, verify=True)
                        break
                    except errors.IndexFormatError as e:
                        logger.warning("cannot roll back to %s: %s", name, e)
                        problems.append(str(e))
                else:
                    older = f" older than {previous}" if previous else ""
                    why = f" ({'; '.join(problems)})" if problems else ""
                    raise errors.IndexFormatError(
                        f"store {self._root} has no intact generation{older} to roll back to{why}"
                    )
            _write_atomic(self._root / CURRENT, f"{target.name}\n".encode())
            logger.info(
                "CURRENT now names %s (commit %s), was %s",
                target.name,
                target.manifest.commit[:12],
                previous or "unreadable",
            )
            return previous, target

    def list_generations(self) -> list[str]:
        """Published generation names, oldest first."""
        if not self.generations_dir.is_dir():
            return []
        names = [p.name for p in self.generations_dir.iterdir() if _NAME.fullmatch(p.name)]
        return sorted(names, key=_number)

    @contextlib.contextmanager
    def lock(self, timeout: float | None = 0.0) -> Iterator[None]:
        """Hold the store's writer lock (``flock`` on ``.lock``); ``timeout=None`` waits forever.

        Raises ``ConfigError`` when another writer still holds it after ``timeout`` seconds.
        """
        self._root.mkdir(parents=True, exist_ok=True)
        path = self._root / _LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        holder = path.read_text(errors="replace").strip() or "unknown"
                        raise errors.ConfigError(
                            f"store {self._root} is locked by another writer ({holder})"
                        ) from None
                    time.sleep(0.05)
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
            self._locked = True
            try:
                yield
            finally:
                self._locked = False
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def begin(self, parent: Generation | None) -> GenerationWriter:
        """Start the next generation (hold :meth:`lock` while building and publishing)."""
        self.generations_dir.mkdir(parents=True, exist_ok=True)
        names = self.list_generations()
        number = _number(names[-1]) + 1 if names else 1
        return GenerationWriter(self, f"g{number:06d}", parent)

    def gc(self, keep: int, grace_seconds: float) -> list[str]:
        """Delete old generations and crashed builds; returns the generation names deleted.

        Keeps the newest ``keep`` generations and ``CURRENT``; deletes an older one
        only ``grace_seconds`` after its successor went live (searchers may still
        be serving it). Temp dirs of crashed builds go at once while this instance
        holds the writer lock, otherwise once untouched for the grace.
        """
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        now = time.time()
        names = self.list_generations()
        current = self.current_name()
        removed: list[str] = []
        for i, name in enumerate(names[: len(names) - keep]):
            if name == current:
                continue
            successor = names[i + 1] if i + 1 < len(names) else None
            live_since = (
                self._published_at(successor) if successor else _mtime(self._root / CURRENT)
            )
            if now - live_since < grace_seconds:
                continue
            self._remove(self.generations_dir / name)
            removed.append(name)
        if self.generations_dir.is_dir():
            for path in self.generations_dir.iterdir():
                stale = path.name.startswith(_TMP_PREFIX) and path not in self._active
                # Under the writer lock no other build can be running: any temp dir that
                # is not ours was left by a crashed one and goes now, not after the grace.
                if stale and (self._locked or now - _newest_mtime(path) >= grace_seconds):
                    logger.info("removing leftover build directory %s", path)
                    self._remove(path)
                elif path.name.startswith(_DEL_PREFIX):
                    shutil.rmtree(path, ignore_errors=True)
        if removed:
            logger.info("garbage-collected generations %s", ", ".join(removed))
        return removed

    def _published_at(self, name: str) -> float:
        """Publication time from the manifest, else the directory's mtime."""
        path = self.generations_dir / name
        try:
            manifest = decode_manifest((path / MANIFEST).read_bytes())
            return datetime.datetime.fromisoformat(manifest.created_at).timestamp()
        except (OSError, ValueError, errors.IndexFormatError):
            return _mtime(path)

    def _remove(self, path: Path) -> None:
        """Rename out of sight first, so no reader opens a half-deleted directory."""
        doomed = path.with_name(f"{_DEL_PREFIX}{path.name}-{uuid.uuid4().hex[:6]}")
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)


def _number(name: str) -> int:
    match = _NAME.fullmatch(name)
    return int(match.group(1)) if match else -1


def _relpath(rel: str) -> PurePosixPath:
    """A manifest-relative path that stays inside the generation directory."""
    path = PurePosixPath(rel)
    if not rel or path.is_absolute() or ".." in path.parts:
        raise errors.IndexFormatError(f"bad relative path in generation: {rel!r}")
    return path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _share(path: Path, bits: int) -> None:
    """Add read (and, for directories, list) permission for everyone if it is missing."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & bits == bits:
        return
    try:
        os.chmod(path, mode | bits)
    except PermissionError:
        logger.warning("cannot make %s readable by other users: not its owner", path)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``path.tmp``, fsync, ``os.replace`` onto ``path``, fsync the directory."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    _share(tmp, _FILE_READ)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _newest_mtime(path: Path) -> float:
    """Latest mtime of a directory or anything in it (a live build keeps touching files)."""
    newest = _mtime(path)
    for p in path.rglob("*"):
        newest = max(newest, _mtime(p))
    return newest
