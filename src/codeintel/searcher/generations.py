"""The live generation and its hot swap: load in the background, swap atomically.

A searcher serves exactly one generation at a time, and every answer names it.
:class:`GenerationManager` polls ``CURRENT``; when it names a new generation
the manager loads everything a tool needs (FAISS indexes, the chunk database,
the commit's tree listing, the materialised worktree for ripgrep) on a worker
thread, *then* swaps one reference. Requests hold the generation they started
with through :meth:`GenerationManager.use`, so in-flight requests finish on the
old one. The generation swapped out stays open for :data:`CURSOR_GRACE_SECONDS`
(the newest retired one only), so a page cursor that read it still gets its
next pages from the same commit (``use(generation=...)``); then it is closed (and
its worktree removed) once its last user leaves.

A generation that is newer than this reader or fails its checksums raises
:class:`~codeintel.core.errors.IndexFormatError`; it is refused for good
(generations are immutable), ``codeintel_generation_loads_total{result="refused_format"}``
counts it and one error line says why. The searcher then keeps serving what it
serves, or, with nothing live yet, falls back to the newest intact generation
older than the refused one (``result="fallback"``). Either way
``codeintel_generation_fallback`` is 1 and :meth:`GenerationManager.serving`
(``/v1/index``) says which generation CURRENT names and why it is not served;
with nothing to fall back to, tools and ``/readyz`` answer 503 with that reason.

A request that hits a damaged file of the live generation (SQLite reports a
malformed ``chunks.sqlite``) gets :class:`~codeintel.core.errors.GenerationCorruptError`
(503, naming the generation) and marks it suspect; the next poll re-verifies
its checksums and reopens it if they hold, or refuses it and falls back.

Mapped files (FAISS lists, ``.f16.npy`` vectors) cannot report damage: a file
truncated under the server is a SIGBUS at the next read (issue 22). So every
file's size and mtime are recorded at load, right after the checksums, and
compared (a few ``stat`` calls) before every request and on every poll; a change
makes the generation suspect *before* a read can fault, and small files are read
into memory rather than mapped in the first place (``COPY_BELOW_BYTES``). A
damaged generation with nothing to fall back to is no longer served at all:
``/readyz`` turns 503 and the tools answer 503 saying there is nothing to fall
back to, until CURRENT names something intact. Checksum mismatches count as
``result="damaged"``; ``refused_format`` is kept for generations this reader
cannot read (a newer format). Damage that keeps size and mtime is found by the
background scrub (:mod:`scrubbing`), which calls :meth:`GenerationManager.suspect`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from codeintel.core import embed as embedding_mod
from codeintel.core import errors, history_index, malloc
from codeintel.core import git as git_mod
from codeintel.core import history as history_mod
from codeintel.core import settings as settings_mod
from codeintel.core import symbols as symbols_mod
from codeintel.core.store import chunks as chunks_mod
from codeintel.searcher import cursors
from codeintel.searcher import metrics as metrics_mod
from codeintel.searcher import worktree as worktree_mod

logger = logging.getLogger(__name__)

CURSOR_GRACE_SECONDS = 300.0
"""How long a swapped-out generation stays open for page cursors that read it. Less
than the store's GC grace (600 s by default), so its files are still there; it costs
the old generation's memory for that long after each publish (one kept at a time)."""


@dataclasses.dataclass(eq=False)
class LoadedGeneration:
    """Everything the tools read, for one generation, opened once."""

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
    files: dict[Path, tuple[int, int]] = dataclasses.field(default_factory=dict)
    """Every file of the generation -> (size, mtime_ns) when it was verified and opened."""
    checksums: dict[Path, str] = dataclasses.field(default_factory=dict)
    """Every file of the generation -> its manifest checksum (:mod:`scrubbing` re-reads them)."""

    def changed_file(self) -> str | None:
        """The first file whose size or mtime changed since loading (generations are
        immutable, so that is damage), or None; a few ``stat`` calls, cheap per request."""
        for path, (size, mtime) in self.files.items():
            try:
                st = path.stat()
            except OSError as e:
                return f"{path.name} is gone ({e.strerror})"
            if st.st_size != size:
                return f"{path.name} changed size from {size} to {st.st_size} bytes"
            if st.st_mtime_ns != mtime:
                return f"{path.name} was modified"
        return None

    symbols: Any = None
    """The generation's :class:`~codeintel.core.symbols.SymbolIndex`; None in older stores."""

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
        if self.symbols is not None:
            with contextlib.suppress(Exception):
                self.symbols.close()


def load(
    store: Any, name: str, settings: settings_mod.Settings, cache_dir: Path, executor: Any
) -> LoadedGeneration:
    """Open generation ``name`` fully (blocking); IndexFormatError if it must be refused."""
    from codeintel.core import hits as hits_mod

    generation = store.open_generation(name, verify=True)
    m = generation.manifest
    # Stat after verifying: a change from here on is damage (checked per request and poll).
    stats = {(p := generation.path / rel): p.stat() for rel in m.checksums}
    fingerprints = {path: (st.st_size, st.st_mtime_ns) for path, st in stats.items()}
    commit = str(m.commit)
    mirror = Path(store.mirror_path)
    with git_mod.GitClient(mirror) as git:
        tree = sorted(git.list_files(commit), key=lambda e: e.path)
    worktree = worktree_mod.materialise(mirror, commit, cache_dir)
    engine = hits_mod.open_engine(generation, settings.index.nprobe)
    try:
        chunks = generation.chunks()
        chunks.prepare_lexical()  # BM25 in numpy: the hybrid tail on large repositories
    except BaseException:
        engine.close()
        raise
    loaded = LoadedGeneration(
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
        files=fingerprints,
        checksums={generation.path / rel: str(sum_) for rel, sum_ in m.checksums.items()},
        symbols=_open_symbols(generation.path),
    )
    # The load's transient buffers (the tree listing, checksum and index reads): with the
    # impact index mapped, no build's trim returns them any more (+10 MB of RSS on sympy).
    malloc.trim()
    return loaded


def _refusal(e: errors.IndexFormatError) -> str:
    """The ``generation_loads`` result for a refused load: damage, or a format it cannot read."""
    return (
        "damaged" if "checksum mismatch" in str(e) or " is missing " in str(e) else "refused_format"
    )


def _open_symbols(path: Path) -> symbols_mod.SymbolIndex | None:
    """The generation's symbol index; None when it has none or it cannot be read (the
    symbol tools then answer "not indexed: rebuild", and every other tool still works)."""
    try:
        return symbols_mod.SymbolIndex.open(path)
    except errors.IndexFormatError:
        logger.exception("symbol index of %s is unreadable; symbol tools are off for it", path)
        return None


_CORRUPT_CODES = frozenset({10, 11, 26})
"""SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_NOTADB: the file, not the query, is at fault."""


def damage_of(exc: BaseException) -> sqlite3.DatabaseError | None:
    """The SQLite error in ``exc``'s chain that says a database file is damaged, if any."""
    seen: BaseException | None = exc
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:
        visited.add(id(seen))
        if isinstance(seen, sqlite3.DatabaseError):
            code = getattr(seen, "sqlite_errorcode", None)
            if type(seen) is sqlite3.DatabaseError or (
                code is not None and code & 0xFF in _CORRUPT_CODES
            ):
                return seen
        seen = seen.__cause__ or seen.__context__
    return None


class GenerationManager:
    """Holds the live generation, swaps in new ones, retires old ones when idle.

    Only :meth:`refresh` (the watcher task) changes which generation is live;
    requests read it through :meth:`use`.
    """

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
        self._refused: dict[str, str] = {}
        """Generation name -> why it cannot be served; generations are immutable, so for good."""
        self._suspect: set[str] = set()
        """Live generations a request found damaged, re-verified at the next poll."""
        self._current: str | None = None
        self._fallback: str | None = None
        """Why the live generation is not the one CURRENT names (None: it is)."""
        self._problem: str | None = None
        """Why nothing is live, once that is known to be more than a build in progress."""
        self._logged: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self._store: Any = None
        self.loaded = asyncio.Event()
        self._kept: dict[str, tuple[LoadedGeneration, float]] = {}
        """Retired generations kept open for cursors, with the monotonic time they go."""

    @property
    def live(self) -> LoadedGeneration | None:
        return self._live

    def serving(self) -> dict[str, Any]:
        """What is served and why (``/v1/index``): a fallback names CURRENT's generation and the reason."""
        live = self._live
        return {
            "generation": live.name if live else None,
            "current": self._current,
            "fallback": self._fallback is not None,
            "reason": self._fallback if live else self.not_ready_reason(),
        }

    def not_ready_reason(self) -> str:
        """Why no generation is live (``/readyz`` and the tools' 503)."""
        if self._problem:
            return f"no generation can be served from {self.root}: {self._problem}"
        if self._current:
            return f"generation {self._current} is loading"
        return f"no generation published in {self.root} yet; the index is still being built"

    @contextlib.contextmanager
    def use(self, generation: str | None = None) -> Iterator[LoadedGeneration]:
        """The live generation (or ``generation``, for a cursor), kept open until the caller is done.

        A ``generation`` that is neither live nor kept (:data:`CURSOR_GRACE_SECONDS`)
        is a 410 (:class:`~codeintel.core.errors.CursorExpiredError`). A damaged database
        file met on the way becomes a 503 naming the generation, and the generation is
        re-verified at the next poll.
        """
        with self._lock:
            gen = self._live
            if gen is None:
                reason = self.not_ready_reason()
                if self._problem:
                    raise errors.IndexFormatError(reason)
                raise errors.NoGenerationError(reason)
            if generation is not None and generation != gen.name:
                kept = self._kept.get(generation)
                if kept is None or kept[1] < time.monotonic():
                    raise cursors.expired(generation, now=gen.name)
                gen = kept[0]
            gen.users += 1
        try:
            changed = gen.changed_file()
            if changed is not None:  # before a mapped read could fault on it
                raise errors.GenerationCorruptError(f"generation {gen.name}: {changed}", gen.name)
            yield gen
        except Exception as e:
            damage = damage_of(e) or (
                changed if isinstance(e, errors.GenerationCorruptError) else None
            )
            if damage is None or (isinstance(e, errors.GenerationCorruptError) and not changed):
                raise
            self._metrics.generation_corruptions.labels(generation=gen.name).inc()
            if gen.name not in self._refused:  # already re-verified and found damaged
                self._suspect.add(gen.name)
            self._log_change(
                f"damaged {gen.name}",
                f"generation {gen.name} is damaged ({damage}); re-verifying its checksums",
                logging.ERROR,
            )
            raise errors.GenerationCorruptError(
                f"generation {gen.name} is damaged ({damage}); the searcher is re-verifying its "
                "checksums: it reopens it if they hold, else serves an older intact generation "
                "if there is one",
                gen.name,
            ) from e
        finally:
            with self._lock:
                gen.users -= 1
                done = gen.retired and gen.users == 0 and gen.name not in self._kept
            if done:
                self._close(gen)

    def suspect(self, gen: LoadedGeneration, why: str) -> None:
        """``gen`` failed a background checksum: the next poll re-verifies it in full and
        refuses it (falling back, or 503 naming it) as a damaged file found at load."""
        if self._live is not gen or gen.name in self._refused:
            return
        self._metrics.generation_corruptions.labels(generation=gen.name).inc()
        self._suspect.add(gen.name)
        self._log_change(
            f"damaged {gen.name}",
            f"generation {gen.name} is damaged ({why}); re-verifying its checksums",
            logging.ERROR,
        )

    async def wait_usable(self) -> None:
        """Wait, within a bound, until :meth:`use` can answer (``serve PATH``'s first tree)."""

    def check_dense(self, gen: LoadedGeneration) -> None:
        """Refuse dense search on ``gen`` when it has no vectors yet (the embedded default's
        first build, ``searcher/early.py``); every published generation has them."""

    def check_embedder(self, gen: LoadedGeneration, embedder: Any) -> None:
        """Refuse dense search when the query embedder is not the one that built ``gen``
        (:func:`codeintel.core.embed.check_model`), counted and logged once."""
        want = gen.manifest.embedding
        try:
            embedding_mod.check_model(embedder.model, want.model, gen.name)
        except errors.ModelMismatchError as e:
            self._metrics.dense_refusals.labels(reason="model_mismatch").inc()
            self._log_change(f"model {gen.name}", str(e), logging.ERROR)
            raise
        if embedder.dim and want.dim and embedder.dim != want.dim:
            self._metrics.dense_refusals.labels(reason="dimension_mismatch").inc()
            embedding_mod.check_dimension(embedder.dim, want.dim, embedder.model)

    def _log_change(self, topic: str, message: str | None, level: int = logging.WARNING) -> None:
        """Log ``message`` once, and again only after it changed (a poll repeats every 2 s)."""
        if self._logged.get(topic) == message:
            return
        self._logged[topic] = message
        if message is not None:
            logger.log(level, "%s", message)

    def _store_or_none(self) -> Any:
        from codeintel.core import store as store_mod

        if self._store is None:
            try:
                self._store = store_mod.Store(self.root)
            except errors.CodeIntelError as e:
                self._problem = str(e)
                self._log_change("store", str(e), logging.ERROR)
                return None
            self._problem = None
            self._log_change("store", None)
        return self._store

    def _expire_kept(self, keep: str | None = None) -> None:
        """Close kept generations past their grace (all but ``keep`` when one is named)."""
        now = time.monotonic()
        with self._lock:
            gone = [
                g
                for name, (g, until) in self._kept.items()
                if name != keep and (keep or until < now)
            ]
            for g in gone:
                del self._kept[g.name]
            close = [g for g in gone if g.users == 0]
        for g in close:
            self._close(g)

    async def refresh(self) -> bool:
        """Serve the generation CURRENT names, or the best fallback; True if one was swapped in."""
        self._expire_kept()
        store = await self._run(self._store_or_none)
        if store is None:
            return False
        try:
            name = await self._run(store.current_name)
            unreadable = None
        except errors.CodeIntelError as e:
            name, unreadable = None, f"cannot read CURRENT: {e}"
        self._current = name
        live = self._live
        if live is not None and live.name not in self._suspect:
            changed = await self._run(live.changed_file)
            if changed is not None:
                self._log_change(f"damaged {live.name}", f"generation {live.name}: {changed}")
                self._suspect.add(live.name)
        if live is not None and live.name in self._suspect:
            return await self._recheck(store, live)
        if live is not None and name == live.name:
            self._set_fallback(self._refused.get(name))  # None unless it is damaged
            return False
        if name is not None and name not in self._refused:
            gen = await self._try_load(store, name)
            if gen is not None:
                self._swap(gen, fallback=None)
                return True
        if name is None and unreadable is None:
            self._problem = None
            return False  # nothing published yet
        why = unreadable or f"generation {name} was refused: {self._refused[str(name)]}"
        if live is not None:
            self._set_fallback(why)
            return False
        return await self._fall_back(store, name, why)

    async def _try_load(self, store: Any, name: str) -> LoadedGeneration | None:
        """Load ``name`` fully, or record why it cannot be served (once) and return None."""
        try:
            gen: LoadedGeneration = await self._run(
                load, store, name, self.settings, self.cache_dir, self._executor
            )
            return gen
        except errors.IndexFormatError as e:
            self._refused[name] = str(e)
            self._metrics.generation_loads.labels(result=_refusal(e)).inc()
            kept = self._live.name if self._live else "none"
            logger.error("refused generation %s (keeping %s): %s", name, kept, e)
        except Exception as e:
            self._refused[name] = f"failed to load: {e}"
            self._metrics.generation_loads.labels(result="failed").inc()
            logger.exception("failed to load generation %s: %s", name, e)
        return None

    async def _fall_back(
        self, store: Any, newer_than: str | None, why: str, *, retire_live: bool = False
    ) -> bool:
        """Swap in the newest loadable generation older than ``newer_than`` (any, for None);
        with none, stop serving the live one too when ``retire_live`` says it is broken."""
        for name in await self._run(store.older_than, newer_than):
            if name in self._refused:
                continue
            gen = await self._try_load(store, name)
            if gen is not None:
                self._swap(gen, fallback=why, result="fallback")
                return True
        if retire_live:
            # Stop serving it, so /readyz turns false and every tool answers 503 saying
            # so, instead of ready-but-failing.
            self._retire_live()
        older = f" older than {newer_than}" if newer_than else ""
        self._problem = f"{why}; no intact generation{older} to fall back to"
        self._log_change("problem", self._problem, logging.ERROR)
        return False

    async def _recheck(self, store: Any, live: LoadedGeneration) -> bool:
        """After a read error: reopen ``live`` if its checksums hold, else refuse it and fall back."""
        self._suspect.discard(live.name)
        try:
            await self._run(store.open_generation, live.name, verify=True)
            changed = await self._run(live.changed_file)
            if changed is not None:  # intact on disk again (e.g. restored): reopen it fresh
                logger.warning("generation %s: %s; its checksums hold", live.name, changed)
        except errors.IndexFormatError as e:
            why = f"generation {live.name} was damaged while served: {e}"
            self._refused[live.name] = why
            self._metrics.generation_loads.labels(result="damaged").inc()
            logger.error("%s", why)
            return await self._fall_back(store, live.name, why, retire_live=True)
        gen = await self._try_load(store, live.name)
        if gen is None:
            self._retire_live()
            self._problem = f"generation {live.name} cannot be reopened: {self._refused[live.name]}"
            return False
        logger.warning("generation %s verified intact after a read error; reopened it", live.name)
        self._swap(gen, fallback=self._fallback, result="reloaded")
        return True

    def _set_fallback(self, why: str | None) -> None:
        self._fallback = why
        self._metrics.generation_fallback.set(1 if why else 0)
        live = self._live.name if self._live else "none"
        if why:
            self._log_change(
                "fallback", f"serving generation {live}, not CURRENT's: {why}", logging.ERROR
            )
        else:
            self._log_change("fallback", None)

    def _swap(self, gen: LoadedGeneration, *, fallback: str | None, result: str = "ok") -> None:
        with self._lock:
            old = self._live
            self._live = gen
            self._open.add(gen)
            close_now = False
            if old is not None:
                old.retired = True
                if old.name != gen.name:
                    self._kept[old.name] = (old, time.monotonic() + CURSOR_GRACE_SECONDS)
                close_now = old.users == 0 and old.name not in self._kept
        if old is not None and close_now:
            self._close(old)
        if old is not None:
            self._expire_kept(keep=old.name)
        self._problem = None
        self._log_change("problem", None)
        self._set_fallback(fallback)
        self._metrics.generation_loads.labels(result=result).inc()
        self._metrics.set_generation(gen.name, gen.commit, gen.index_type, gen.counts())
        logger.info("serving generation %s at commit %s", gen.name, gen.commit[:12])
        self.loaded.set()

    def _retire_live(self) -> None:
        """Serve nothing: the live generation is closed once its last request ends."""
        with self._lock:
            old, self._live = self._live, None
            if old is None:
                return
            old.retired = True
            close_now = old.users == 0
        if close_now:
            self._close(old)
        self._metrics.generation_fallback.set(0)

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
            self._kept.clear()
            self._live = None
        for gen in gens:
            gen.close()
