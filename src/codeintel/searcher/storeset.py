"""The stores under a root that one fleet shard serves, opened on demand, least recently used out.

:class:`StoreSet` lists the root every ``scan_interval_seconds`` (see
:mod:`discovery`) and keeps one :class:`~generations.GenerationManager` per
store, opened on the store's first query (FAISS memory-mapped, sqlite, tree
listing, worktree) and closed again after ``idle_unload_seconds`` or when more
than ``max_loaded_stores`` are open, least recently used first. A store that
cannot be loaded is logged, counted and skipped; it never fails a query over the others.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codeintel.core import errors
from codeintel.core import settings as settings_mod
from codeintel.core.store import manifest as manifest_mod
from codeintel.searcher import access, discovery
from codeintel.searcher import generations as generations_mod
from codeintel.searcher import metrics as metrics_mod
from codeintel.searcher import tools as tools_mod
from codeintel.searcher import worktree as worktree_mod

logger = logging.getLogger(__name__)


@dataclasses.dataclass(eq=False)
class StoreEntry:
    """One served store: where it is, and its generation manager while loaded."""

    name: str
    root: Path
    cache_dir: Path
    manager: generations_mod.GenerationManager | None = None
    last_used: float = 0.0
    busy: int = 0
    error: str | None = None
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)


class StoreSet:
    """The stores under a root that this shard serves, loaded on demand."""

    def __init__(
        self,
        settings: settings_mod.Settings,
        run: Any,
        executor: concurrent.futures.Executor,
        metrics: metrics_mod.FleetMetrics,
    ) -> None:
        self.settings = settings
        self.fleet = settings.fleet
        self.root = Path(self.fleet.stores_root)
        base = settings.server.worktree_dir
        self._cache_base = Path(base) if base else Path(tempfile.gettempdir())
        self._cache_base = self._cache_base / "codeintel-worktrees"
        self._run = run
        self._executor = executor
        self.metrics = metrics
        self.entries: dict[str, StoreEntry] = {}
        self.scanned = asyncio.Event()
        # At most this many stores are in use at once, across all requests, so the
        # loaded set can always be cut back to max_loaded_stores (and the executor is
        # not flooded by one query over a thousand stores).
        self._slots = asyncio.Semaphore(self.fleet.max_loaded_stores or 64)

    # -- discovery -------------------------------------------------------------------------

    async def scan(self) -> None:
        """Pick up stores that appeared and drop those that disappeared."""
        found = await self._run(discovery.discover, self.root)
        mine = {
            name: root
            for name, root in found.items()
            if discovery.shard_of(name, self.fleet.shards) == self.fleet.shard_index
        }
        for name in sorted(set(self.entries) - set(mine)):
            entry = self.entries.pop(name)
            logger.info("store %s is gone; no longer served", name)
            await self._unload(entry)
        for name in sorted(set(mine) - set(self.entries)):
            key = hashlib.sha256(str(mine[name].resolve()).encode()).hexdigest()[:16]
            self.entries[name] = StoreEntry(name, mine[name], self._cache_base / key)
            logger.info("store %s discovered", name)
        self.metrics.stores.labels(state="discovered").set(len(self.entries))
        self.scanned.set()

    async def watch(self) -> None:
        """Rescan the root, refresh loaded stores' CURRENT, unload idle ones (cancel to stop)."""
        last_scan = 0.0
        while True:
            now = time.monotonic()
            try:
                if now - last_scan >= self.fleet.scan_interval_seconds:
                    await self.scan()
                    last_scan = now
                await self._refresh_loaded()
                await self._unload_idle()
            except Exception:
                logger.exception("store scan failed")
            await asyncio.sleep(max(0.05, self.settings.server.reload_interval_seconds))

    async def _refresh_loaded(self) -> None:
        for entry in list(self.entries.values()):
            if entry.manager is not None:
                await entry.manager.refresh()

    # -- loading and unloading ---------------------------------------------------------------

    def select(self, patterns: Sequence[str] | None, field: str = "repos") -> list[str]:
        """The served stores ``patterns`` select within the caller's scope (tools.select)."""
        return tools_mod.select(self.entries, patterns, field, audit=True)

    @contextlib.asynccontextmanager
    async def open(self, name: str) -> Any:
        """The store's generation manager, loading it first if needed; marks it in use.

        Checks the caller's scope again, so a path that forgot ``select`` still cannot
        open a hidden store."""
        entry = self.entries.get(name)
        if entry is None or not access.current().allows(name):
            raise errors.RepoNotFoundError(f"repository {name!r} is not served here", "repo")
        async with self._slots:
            entry.busy += 1
            try:
                manager = await self._load(entry)
                entry.last_used = time.monotonic()
                yield manager
            finally:
                entry.busy -= 1
                entry.last_used = time.monotonic()

    async def _load(self, entry: StoreEntry) -> generations_mod.GenerationManager:
        async with entry.lock:
            if entry.manager is not None and entry.manager.live is not None:
                return entry.manager
            manager = entry.manager or generations_mod.GenerationManager(
                self.settings.replace(store={"path": entry.root}),
                self._run,
                self._executor,
                metrics_mod.StoreMetrics(self.metrics, entry.name),  # type: ignore[arg-type]
                cache_dir=entry.cache_dir,
            )
            entry.manager = manager
            await manager.refresh()
            if manager.live is None:
                entry.error = manager.not_ready_reason()
                self.metrics.store_errors.labels(reason="load").inc()
                raise errors.NoGenerationError(f"repository {entry.name}: {entry.error}")
            entry.error = None
            self._count_loaded()
        await self._evict_over_limit(keep=entry)
        return manager

    async def _unload(self, entry: StoreEntry) -> None:
        async with entry.lock:
            manager, entry.manager = entry.manager, None
        if manager is not None:
            await self._run(manager.close)
            await self._run(worktree_mod.prune, entry.cache_dir, set())
            self.metrics.forget(entry.name)
            logger.info("store %s unloaded", entry.name)
        self._count_loaded()

    def _count_loaded(self) -> None:
        loaded = sum(1 for e in self.entries.values() if e.manager is not None)
        self.metrics.stores.labels(state="loaded").set(loaded)
        refused = sum(1 for e in self.entries.values() if e.error)
        self.metrics.stores.labels(state="refused").set(refused)

    async def _unload_idle(self) -> None:
        idle = self.fleet.idle_unload_seconds
        if idle <= 0:
            return
        now = time.monotonic()
        for entry in list(self.entries.values()):
            if entry.manager is not None and entry.busy == 0 and now - entry.last_used > idle:
                await self._unload(entry)

    async def _evict_over_limit(self, keep: StoreEntry) -> None:
        limit = self.fleet.max_loaded_stores
        loaded = [e for e in self.entries.values() if e.manager is not None and e is not keep]
        excess = len(loaded) + 1 - limit if limit > 0 else 0
        for entry in sorted(loaded, key=lambda e: e.last_used):
            if excess <= 0:
                break
            if entry.busy == 0:
                await self._unload(entry)
                excess -= 1

    def manifest(self, name: str) -> manifest_mod.Manifest | None:
        """The served (or, before the first load, the published) manifest of a store."""
        entry = self.entries[name]
        live = entry.manager.live if entry.manager is not None else None
        if live is not None:
            return live.manifest  # type: ignore[no-any-return]
        return discovery.read_manifest(entry.root)

    async def close(self) -> None:
        for entry in list(self.entries.values()):
            await self._unload(entry)
