"""A store root: ``CURRENT``, ``mirror.git/`` and ``generations/``; lock, rollback, GC."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from codeintel.core import errors
from codeintel.core.store import embcache, files
from codeintel.core.store.generation import Generation
from codeintel.core.store.manifest import (
    CURRENT,
    MANIFEST,
    ManifestPeek,
    decode_manifest,
    peek_manifest,
)
from codeintel.core.store.writer import GenerationWriter

logger = logging.getLogger(__name__)


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
        if not files.NAME.fullmatch(name):
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
        if not files.NAME.fullmatch(name):
            raise errors.IndexFormatError(f"not a generation name: {name!r}")
        path = self.generations_dir / name
        if not path.is_dir():
            raise errors.IndexFormatError(f"generation {name} not found in store {self._root}")
        return Generation(path, verify=verify)

    def older_than(self, name: str | None) -> list[str]:
        """Published generations older than ``name``, newest first (all of them for ``None``)."""
        names = self.list_generations()
        if name is not None and files.NAME.fullmatch(name):
            names = [n for n in names if files.number(n) < files.number(name)]
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
            files.write_atomic(self._root / CURRENT, f"{target.name}\n".encode())
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
        names = [p.name for p in self.generations_dir.iterdir() if files.NAME.fullmatch(p.name)]
        return sorted(names, key=files.number)

    @contextlib.contextmanager
    def lock(self, timeout: float | None = 0.0) -> Iterator[None]:
        """Hold the store's writer lock (``flock`` on ``.lock``); ``timeout=None`` waits forever.

        Raises ``ConfigError`` when another writer still holds it after ``timeout`` seconds.
        """
        self._root.mkdir(parents=True, exist_ok=True)
        path = self._root / files.LOCK
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
        number = files.number(names[-1]) + 1 if names else 1
        return GenerationWriter(self, f"g{number:06d}", parent)

    def gc(
        self, keep: int, grace_seconds: float, *, embedding_cache_bytes: int | None = None
    ) -> list[str]:
        """Delete old generations and crashed builds; returns the generation names deleted.

        Keeps the newest ``keep`` generations and ``CURRENT``; deletes an older one
        only ``grace_seconds`` after its successor went live (searchers may still
        be serving it). Temp dirs of crashed builds go at once while this instance
        holds the writer lock, otherwise once untouched for the grace. With
        ``embedding_cache_bytes`` the embedding cache is bounded to it too (0 deletes it).
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
                self._published_at(successor) if successor else files.mtime(self._root / CURRENT)
            )
            if now - live_since < grace_seconds:
                continue
            self._remove(self.generations_dir / name)
            removed.append(name)
        if self.generations_dir.is_dir():
            for path in self.generations_dir.iterdir():
                stale = path.name.startswith(files.TMP_PREFIX) and path not in self._active
                # Under the writer lock no other build can be running: any temp dir that
                # is not ours was left by a crashed one and goes now, not after the grace.
                if stale and (self._locked or now - files.newest_mtime(path) >= grace_seconds):
                    logger.info("removing leftover build directory %s", path)
                    self._remove(path)
                elif path.name.startswith(files.DEL_PREFIX):
                    shutil.rmtree(path, ignore_errors=True)
        if removed:
            logger.info("garbage-collected generations %s", ", ".join(removed))
        if embedding_cache_bytes is not None:
            embcache.trim(self._root, embedding_cache_bytes)
        return removed

    def _published_at(self, name: str) -> float:
        """Publication time from the manifest, else the directory's mtime."""
        path = self.generations_dir / name
        try:
            manifest = decode_manifest((path / MANIFEST).read_bytes())
            return datetime.datetime.fromisoformat(manifest.created_at).timestamp()
        except (OSError, ValueError, errors.IndexFormatError):
            return files.mtime(path)

    def _remove(self, path: Path) -> None:
        """Rename out of sight first, so no reader opens a half-deleted directory."""
        doomed = path.with_name(f"{files.DEL_PREFIX}{path.name}-{uuid.uuid4().hex[:6]}")
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
