"""The embedded default answers at once: tools from the commit being indexed, before its index.

``codeintel serve PATH`` and ``codeintel mcp PATH`` index beside the searcher
instead of before it (a 35K-chunk repository took 18 minutes to embed on CPU, and
only dense and hybrid semantic_search need vectors). :class:`EarlyIndex` is what the indexing
thread has produced so far; :class:`EarlyManager` serves from it until ``CURRENT``
names a generation:

* once the build has mirrored the source and resolved its commit, ``search_text``,
  ``list_paths``, ``blame_range`` and ``file_history`` answer from that commit's
  tree (listed and materialised as a published generation's would be; blame and
  history by git, as for a generation without history);
* once the build has written ``chunks.sqlite`` (still in its temp directory),
  ``semantic_search`` with ``mode=lexical`` answers from it, read-only, and the
  symbol index written beside it (:meth:`EarlyIndex.symbols`) serves navigation;
* ``mode=hybrid`` (the default) answers from BM25 with ``mode: "lexical"`` and a
  ``notice`` giving the progress and ETA; only an explicit ``mode=semantic`` raises
  :class:`~codeintel.core.errors.IndexingError`: 503 with the phase, done, total and
  ETA, and ``Retry-After``;
* a tool called before the tree is read waits for it up to :data:`TREE_WAIT_SECONDS`
  (``wait_usable``), and only then answers 503 with the phase.

Such answers name the commit and the generation ``"indexing"``. When ``CURRENT``
names a generation the manager serves it like any searcher and drops this view;
``/readyz`` means what it means in the cluster (a published generation). Searchers
of the cluster never build an :class:`EarlyManager`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import msgspec

from codeintel.core import embed as embedding_mod
from codeintel.core import errors
from codeintel.core import git as git_mod
from codeintel.core import history as history_mod
from codeintel.core import settings as settings_mod
from codeintel.core import store as store_mod
from codeintel.core import symbols as symbols_mod
from codeintel.core.store import chunks as chunks_mod
from codeintel.searcher import context as context_mod
from codeintel.searcher import cursors
from codeintel.searcher import generations as generations_mod
from codeintel.searcher import worktree as worktree_mod

logger = logging.getLogger(__name__)

GENERATION = "indexing"
"""The ``generation`` of answers given before the first generation is published."""

TREE_WAIT_SECONDS = 30.0
"""How long a tool call waits for the first commit's tree before answering 503 with the phase."""

_TOOLS_NOW = "search_text, list_paths, read_file, blame_range and file_history"


class EarlyIndex:
    """What the indexing rounds have produced so far, shared by the indexer thread and the
    searcher. The indexer calls the observer methods (``indexer/serving.IndexingObserver``);
    the searcher reads :meth:`tree`, :meth:`chunks_at` and :meth:`status`."""

    def __init__(self, source: str, *, retry_seconds: float = 30.0) -> None:
        self.source = source
        self.retry_seconds = retry_seconds
        """How long a failed round waits for the next (the reindex interval)."""
        self._lock = threading.Lock()
        self._mirror: Path | None = None
        self._commit: str | None = None
        self._chunks: tuple[Path, str] | None = None
        self._symbols: tuple[tuple[Path, str], symbols_mod.SymbolIndex | None] | None = None
        self._progress: Callable[[], dict[str, Any]] | None = None
        self._error: str | None = None
        self._failed = False
        self._started = time.monotonic()
        self._wake: Callable[[], None] | None = None

    # -- the indexer's side ----------------------------------------------------------------

    def round_started(self, progress: Callable[[], dict[str, Any]]) -> None:
        with self._lock:
            self._progress = progress
            self._failed = False

    def commit_resolved(self, mirror: Path, commit: str) -> None:
        with self._lock:
            if commit != self._commit:
                self._chunks = None
            self._mirror, self._commit = Path(mirror), commit
        logger.info("commit %s resolved: text tools answer from its tree", commit[:12])
        self._notify()

    def chunks_written(self, path: Path, generation: str) -> None:
        with self._lock:
            self._chunks = (Path(path), generation)
        logger.info("chunks written: semantic_search mode=lexical answers")
        self._notify()

    def round_failed(self, error: str) -> None:
        with self._lock:
            self._error, self._failed = error, True
            self._chunks = None  # they went with the build's temp directory
        self._notify()

    # -- the searcher's side ---------------------------------------------------------------

    def on_change(self, wake: Callable[[], None] | None) -> None:
        """Call ``wake`` (from the indexer's thread) whenever something new can be served."""
        self._wake = wake

    def _notify(self) -> None:
        wake = self._wake
        if wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                wake()

    def tree(self) -> tuple[Path, str] | None:
        """(mirror, commit) of the build in progress, once its commit is known."""
        with self._lock:
            if self._mirror is None or self._commit is None:
                return None
            return self._mirror, self._commit

    def chunks_at(self) -> tuple[Path, str] | None:
        """(temp path of ``chunks.sqlite``, generation name) once the build wrote it."""
        with self._lock:
            return self._chunks

    def symbols(self, generations_dir: Path) -> symbols_mod.SymbolIndex | None:
        """The symbol index of the build in progress, once its chunk pass is done (it is
        written beside ``chunks.sqlite`` before :meth:`chunks_written`); ``None`` before.
        Shared and owned here: callers do not close it."""
        at = self.chunks_at()
        if at is None:
            return None
        with self._lock:
            if self._symbols is None or self._symbols[0] != at:
                if self._symbols is not None and self._symbols[1] is not None:
                    self._symbols[1].close()
                path, generation = at
                published = Path(generations_dir) / generation
                directory = path.parent if path.parent.exists() else published
                index = symbols_mod.SymbolIndex.open(directory, moved_to=published)
                self._symbols = (at, index)
            return self._symbols[1]

    def status(self) -> dict[str, Any]:
        """Phase and progress of the indexing (``/v1/index``'s ``indexing`` and the 503 body)."""
        progress = self._progress
        snapshot = dict(progress()) if progress else {}
        with self._lock:
            phase = "failed" if self._failed else snapshot.get("phase", "starting")
            return {
                "phase": phase,
                "done": snapshot.get("done", 0),
                "total": snapshot.get("total"),
                "rate": snapshot.get("rate"),
                "eta_seconds": snapshot.get("eta_seconds"),
                "commit": self._commit,
                "last_error": self._error,
                "elapsed_seconds": round(time.monotonic() - self._started, 1),
            }

    def retry_after(self, status: dict[str, Any]) -> int:
        """Seconds to suggest in ``Retry-After``: the ETA, clamped to [5, 120]."""
        if status["phase"] == "failed":
            return max(1, round(self.retry_seconds))
        eta = status.get("eta_seconds")
        return 10 if eta is None else int(min(max(eta, 5), 120))

    def error(self, message: str) -> errors.IndexingError:
        """An IndexingError with ``message``, the progress and the last failure."""
        status = self.status()
        detail = f"{message} (phase {status['phase']}"
        if status["total"]:
            detail += f": {status['done']}/{status['total']}"
        if status["eta_seconds"] is not None:
            detail += f", about {round(status['eta_seconds'])} s left in this phase"
        detail += ")"
        if status["last_error"]:
            detail += f"; the last indexing attempt failed: {status['last_error']}"
        return errors.IndexingError(detail, status, self.retry_after(status))


class _EarlyChunks:
    """``chunks.sqlite`` of the build in progress, read-only: in its temp directory, and
    once that is renamed at publication, at the generation's published path."""

    def __init__(self, early: EarlyIndex, generations_dir: Path) -> None:
        self._early = early
        self._generations_dir = generations_dir
        self._lock = threading.Lock()
        self._db: chunks_mod.ChunkDB | None = None
        self._at: tuple[Path, str] | None = None

    def _open(self) -> chunks_mod.ChunkDB:
        at = self._early.chunks_at()
        if at is None:
            raise self._early.error(
                "the chunks of the commit are not written yet; semantic_search mode=lexical "
                f"answers once they are, and {_TOOLS_NOW} answer now"
            )
        with self._lock:
            if self._db is None or self._at != at:
                if self._db is not None:
                    self._db.close()
                self._db, self._at = self._connect(*at), at
            return self._db

    def _connect(self, path: Path, generation: str) -> chunks_mod.ChunkDB:
        published = self._generations_dir / generation / store_mod.CHUNKS_DB
        return _mapped(path if path.exists() else published)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        db = self._open()
        try:
            return getattr(db, method)(*args, **kwargs)
        except errors.IndexFormatError:
            # A new reader thread after the temp directory was published under its final name.
            at = self._at
            if at is None:
                raise
            with self._lock:
                if self._db is db:
                    db.close()
                    published = self._generations_dir / at[1] / store_mod.CHUNKS_DB
                    self._db = _mapped(published)
                db = self._db or db
            return getattr(db, method)(*args, **kwargs)

    def lexical(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("lexical", *args, **kwargs)

    def lexical_tiers(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("lexical_tiers", *args, **kwargs)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get", *args, **kwargs)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
            self._db = None


def _mapped(path: Path) -> chunks_mod.ChunkDB:
    """The chunk database at ``path`` with the impact index the build stored beside it
    (``chunks.impact``, written before the chunks are announced) mapped: BM25 in numpy,
    as the published generation will score it. Never read from FTS5 here: that would
    cost the first lexical answer seconds."""
    db = chunks_mod.ChunkDB.open(path)
    db.prepare_lexical(build=False)
    return db


class _EarlySymbols:
    """The symbol index of the build in progress (:meth:`EarlyIndex.symbols`), for the
    navigation tools: a 503 with progress until the chunk pass has written it."""

    def __init__(self, early: EarlyIndex, generations_dir: Path) -> None:
        self._early = early
        self._generations_dir = generations_dir

    def __getattr__(self, name: str) -> Any:
        index = self._early.symbols(self._generations_dir)
        if index is None:
            raise self._early.error(
                "the symbols of the commit are not written yet; find_symbol, file_outline and "
                f"find_references answer once the chunk pass is done, and {_TOOLS_NOW} answer now"
            )
        return getattr(index, name)

    def close(self) -> None:
        """The index is the EarlyIndex's, shared and closed by it."""


class EarlyManager(generations_mod.GenerationManager):
    """A :class:`GenerationManager` that, until a generation is live, serves the commit the
    first build is indexing (:class:`EarlyIndex`), and refuses dense search meanwhile."""

    def __init__(self, early: EarlyIndex, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.early = early
        self._provisional: generations_mod.LoadedGeneration | None = None
        self._wake = asyncio.Event()

    @property
    def provisional(self) -> generations_mod.LoadedGeneration | None:
        return self._provisional

    def _usable(self) -> bool:
        return (
            self._live is not None
            or self._provisional is not None
            or bool(self._problem)
            or self._current is not None
        )

    async def wait_usable(self) -> None:
        """Wait up to :data:`TREE_WAIT_SECONDS` for the commit's tree (or a generation), so an
        agent's first calls get answers, not a 503, while the source is mirrored and read."""
        deadline = time.monotonic() + TREE_WAIT_SECONDS
        while not self._usable() and time.monotonic() < deadline:
            if self.early.status()["phase"] == "failed":
                return
            await asyncio.sleep(0.05)

    @contextlib.contextmanager
    def use(self, generation: str | None = None) -> Iterator[generations_mod.LoadedGeneration]:
        with self._lock:
            gen = self._provisional if self._live is None else None
            if gen is not None and generation not in (None, gen.name):
                raise cursors.expired(generation)
            if gen is not None:
                gen.users += 1
        if gen is None:
            if self._live is None and not self._problem and self._current is None:
                raise self.early.error(
                    f"the repository is still being mirrored after {TREE_WAIT_SECONDS:.0f} s; "
                    f"{_TOOLS_NOW} answer once the commit's tree is read"
                )
            with super().use(None if generation == GENERATION else generation) as live:
                yield live
            return
        try:
            yield gen
        finally:
            with self._lock:
                gen.users -= 1
                done = gen.retired and gen.users == 0
            if done:
                gen.close()

    def check_dense(self, gen: generations_mod.LoadedGeneration) -> None:
        if gen is self._provisional:
            raise self.early.error(
                "the first index is being built; semantic and hybrid search answer once it is "
                f"published, semantic_search mode=lexical and {_TOOLS_NOW} answer now"
            )

    def indexing(self) -> dict[str, Any]:
        """``/v1/index``'s ``indexing``: the build's phase and progress, or ``ready``."""
        status = self.early.status()
        live = self._live
        if live is not None and getattr(live.manifest, "dense_coverage", None) is None:
            status.update(phase="ready", commit=live.commit, eta_seconds=None)
        return status

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()

        def wake() -> None:
            loop.call_soon_threadsafe(self._wake.set)

        self.early.on_change(wake)
        interval = max(0.05, self.settings.server.reload_interval_seconds)
        try:
            while True:
                self._wake.clear()
                try:
                    await self.refresh()
                    await self._refresh_provisional()
                except Exception:
                    logger.exception("generation refresh failed")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):
                        await self._wake.wait()
        finally:
            self.early.on_change(None)

    async def _refresh_provisional(self) -> None:
        """Serve the tree of the commit being indexed while nothing is live; retire it after."""
        if self._live is not None:
            self._retire_provisional()
            return
        tree = self.early.tree()
        current = self._provisional
        if tree is None or (current is not None and current.commit == tree[1]):
            return
        mirror, commit = tree
        try:
            gen = await self._run(self._load_provisional, mirror, commit)
        except errors.CodeIntelError as e:
            self._log_change("provisional", f"cannot read commit {commit[:12]} yet: {e}")
            return
        self._log_change("provisional", None)
        old = self._retire_provisional(replace=gen)
        logger.info("answering from commit %s while it is indexed", commit[:12])
        if old is not None and old.commit != commit:
            worktree_mod.prune(self.cache_dir, {commit} | {g.commit for g in self._open})

    def _retire_provisional(
        self, replace: generations_mod.LoadedGeneration | None = None
    ) -> generations_mod.LoadedGeneration | None:
        with self._lock:
            old, self._provisional = self._provisional, replace
            if old is None:
                return None
            old.retired = True
            close_now = old.users == 0
        if close_now:
            old.close()
        return old

    def _load_provisional(self, mirror: Path, commit: str) -> generations_mod.LoadedGeneration:
        with git_mod.GitClient(mirror) as git:
            tree = sorted(git.list_files(commit), key=lambda e: e.path)
        worktree = worktree_mod.materialise(mirror, commit, self.cache_dir)
        chunks = _EarlyChunks(self.early, store_mod.Store(self.root).generations_dir)
        return generations_mod.LoadedGeneration(
            name=GENERATION,
            commit=commit,
            manifest=_manifest(self.early.source, commit),
            engine=None,
            # Only what ``hits.rank`` calls (lexical, get, close), answered by the unpublished file.
            chunks=cast(chunks_mod.ChunkDB, chunks),
            tree=tree,
            worktree=worktree,
            git=history_mod.AsyncGitClient(mirror, self._executor, worktree=worktree),
            tree_paths=[e.path for e in tree],
            symbols=_EarlySymbols(self.early, store_mod.Store(self.root).generations_dir),
        )

    def close(self) -> None:
        self._retire_provisional()
        super().close()


def _manifest(source: str, commit: str) -> Any:
    """What ``list_repos`` reads of a manifest, for a commit with no generation yet."""
    return types.SimpleNamespace(
        repo_url=source,
        ref="",
        commit=commit,
        generation=GENERATION,
        counts=types.SimpleNamespace(primary=0, secondary=0, tombstones=0),
        index=types.SimpleNamespace(type="none", calibration=None),
        created_at="",
        embedding=types.SimpleNamespace(model="", dim=0),
    )


class EarlyContext(context_mod.AppContext):
    """The single-store context of ``serve PATH`` / ``mcp PATH``: an :class:`EarlyManager`,
    and ``/v1/index`` with the indexing phase and progress under ``indexing``."""

    def __init__(
        self,
        settings: settings_mod.Settings,
        early: EarlyIndex,
        *,
        embedder: embedding_mod.Embedder | None = None,
    ) -> None:
        self.early = early
        super().__init__(settings, embedder=embedder)

    def _make_manager(self) -> generations_mod.GenerationManager:
        return EarlyManager(self.early, self.settings, self.run, self.executor, self.metrics)

    async def index_document(self) -> bytes:
        manager = cast(EarlyManager, self.manager)
        if manager.live is None:
            tree = manager.early.tree()
            body: dict[str, Any] = {
                "generation": None,
                "commit": tree[1] if tree else None,
                "serving": manager.serving(),
            }
        else:
            body = msgspec.json.decode(await super().index_document())
        body["indexing"] = manager.indexing()
        return msgspec.json.encode(body)
