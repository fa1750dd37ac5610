"""The live generation and its hot swap: load in the background, swap atomically.

A searcher serves exactly one generation at a time, and every answer names it.
:class:`GenerationManager` polls ``CURRENT``; when it names a new generation
the manager loads everything a tool needs (FAISS indexes, the chunk database,
the commit's tree listing, the materialised worktree for ripgrep) on a worker
thread, *then* swaps one reference. Requests hold the generation they started
with through :meth:`GenerationManager.use`, so in-flight requests finish on the
old one, which is closed (and its worktree removed) when its last user leaves.

A generation that is newer than this reader or fails its checksums raises
:class:`~codeintel.core.errors.IndexFormatError`; it is refused, the old one is
kept, ``codeintel_generation_loads_total{result="refused_format"}`` counts it
and one log line says why. It is not retried until ``CURRENT`` changes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from codeintel.core import chunks as chunks_mod
from codeintel.core import errors, history_index
from codeintel.core import git as git_mod
from codeintel.core import history as history_mod
from codeintel.core import settings as settings_mod
from codeintel.searcher import metrics as metrics_mod
from codeintel.searcher import worktree as worktree_mod

logger = logging.getLogger(__name__)


@dataclasses.dataclass(eq=False)
class LoadedGeneration:
    """Everything the five tools read, for one generation, opened once."""

    name: str
    commit: str
    manifest: Any
    engine: Any
    chunks: chunks_mod.ChunkDB
    tree: list[git_mod.TreeEntry]
    worktree: Path
    git: history_mod.AsyncGitClient
    tree_paths: list[str] = dataclasses.field(default_factory=list)
    """Paths of ``tree``, same order, for bisecting a prefix or an exact path."""
    users: int = 0
    retired: bool = False

    @property
    def index_type(self) -> str:
        return str(self.manifest.index.type)

    def counts(self) -> dict[str, int]:
        c = self.manifest.counts
        return {"primary": c.primary, "secondary": c.secondary, "tombstones": c.tombstones}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.engine.close()
        with contextlib.suppress(Exception):
            self.chunks.close()


def load(
    store: Any, name: str, settings: settings_mod.Settings, cache_dir: Path, executor: Any
) -> LoadedGeneration:
    """Open generation ``name`` fully (blocking); IndexFormatError if it must be refused."""
    from codeintel.core import hits as hits_mod

    generation = store.open_generation(name, verify=True)
    m = generation.manifest
    commit = str(m.commit)
    mirror = Path(store.mirror_path)
    with git_mod.GitClient(mirror) as git:
        tree = sorted(git.list_files(commit), key=lambda e: e.path)
    worktree = worktree_mod.materialise(mirror, commit, cache_dir)
    engine = hits_mod.open_engine(generation, settings.index.nprobe)
    try:
        chunks = generation.chunks()
    except BaseException:
        engine.close()
        raise
    return LoadedGeneration(
        name=str(generation.name),
        commit=commit,
        manifest=m,
        engine=engine,
        chunks=chunks,
        tree=tree,
        worktree=worktree,
        git=history_mod.AsyncGitClient(
            mirror,
            executor,
            index=history_index.HistoryIndex.open(generation.path, commit),
            worktree=worktree,
        ),
        tree_paths=[e.path for e in tree],
    )


class GenerationManager:
    """Holds the live generation, swaps in new ones, retires old ones when idle."""

    def __init__(
        self,
        settings: settings_mod.Settings,
        run_blocking: Callable[..., Awaitable[Any]],
        executor: Any,
        metrics: metrics_mod.Metrics,
        cache_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.root = Path(settings.store.path)
        configured = settings.server.worktree_dir
        self.cache_dir = cache_dir or (
            Path(configured) if configured else worktree_mod.default_cache_dir(self.root)
        )
        self._run = run_blocking
        self._executor = executor
        self._metrics = metrics
        self._live: LoadedGeneration | None = None
        self._open: set[LoadedGeneration] = set()
        self._refused: set[str] = set()
        self._lock = threading.Lock()
        self._store: Any = None
        self.loaded = asyncio.Event()

    @property
    def live(self) -> LoadedGeneration | None:
        return self._live

    @contextlib.contextmanager
    def use(self) -> Iterator[LoadedGeneration]:
        """The live generation, kept open until the caller is done with it."""
        with self._lock:
            gen = self._live
            if gen is None:
                raise errors.NoGenerationError(
                    f"no generation loaded yet from {self.root}; the index is still being built"
                )
            gen.users += 1
        try:
            yield gen
        finally:
            with self._lock:
                gen.users -= 1
                done = gen.retired and gen.users == 0
            if done:
                self._close(gen)

    def _store_or_none(self) -> Any:
        from codeintel.core import store as store_mod

        if self._store is None:
            try:
                self._store = store_mod.Store(self.root)
            except errors.CodeIntelError as e:
                logger.debug("store %s not usable yet: %s", self.root, e)
                return None
        return self._store

    async def refresh(self) -> bool:
        """Load and swap in the generation CURRENT names, if it is new. True if swapped."""
        store = await self._run(self._store_or_none)
        if store is None:
            return False
        try:
            name = await self._run(store.current_name)
        except errors.CodeIntelError as e:
            logger.warning("cannot read CURRENT in %s: %s", self.root, e)
            return False
        live = self._live
        if name is None or (live is not None and name == live.name) or name in self._refused:
            return False
        try:
            gen = await self._run(load, store, name, self.settings, self.cache_dir, self._executor)
        except errors.IndexFormatError as e:
            self._refused.add(name)
            self._metrics.generation_loads.labels(result="refused_format").inc()
            kept = live.name if live else "none"
            logger.error("refused generation %s (keeping %s): %s", name, kept, e)
            return False
        except Exception as e:
            self._refused.add(name)
            self._metrics.generation_loads.labels(result="failed").inc()
            logger.exception("failed to load generation %s: %s", name, e)
            return False
        self._swap(gen)
        self._metrics.generation_loads.labels(result="ok").inc()
        self._metrics.set_generation(gen.name, gen.commit, gen.index_type, gen.counts())
        logger.info("serving generation %s at commit %s", gen.name, gen.commit[:12])
        self.loaded.set()
        return True

    def _swap(self, gen: LoadedGeneration) -> None:
        with self._lock:
            old = self._live
            self._live = gen
            self._open.add(gen)
            close_now = False
            if old is not None:
                old.retired = True
                close_now = old.users == 0
        if old is not None and close_now:
            self._close(old)

    def _close(self, gen: LoadedGeneration) -> None:
        with self._lock:
            self._open.discard(gen)
            keep = {g.commit for g in self._open}
        gen.close()
        if gen.commit not in keep:
            worktree_mod.prune(self.cache_dir, keep)

    async def watch(self) -> None:
        """Poll CURRENT forever (cancel to stop); errors are logged, never fatal."""
        interval = max(0.05, self.settings.server.reload_interval_seconds)
        while True:
            try:
                await self.refresh()
            except Exception:
                logger.exception("generation refresh failed")
            await asyncio.sleep(interval)

    def close(self) -> None:
        """Close every generation still open (shutdown: no requests remain)."""
        with self._lock:
            gens = list(self._open)
            self._open.clear()
            self._live = None
        for gen in gens:
            gen.close()
