"""The embedded default's indexing: make the store follow the repository.

``codeintel serve PATH`` and ``codeintel mcp PATH`` run :func:`ensure_index`
beside the searcher: a missing store is built, a store behind the source's ref is updated incrementally, a
store already at that commit is left alone, and a store of another repository
or another embedding model is rebuilt rather than mixed. While it serves,
:func:`follow` repeats that every few seconds on a background thread, so an
agent that commits sees its new code in answers without a restart (the
searcher picks up each new ``CURRENT`` by itself).

:func:`keep_indexed` is what the CLI runs beside the searcher: the first round at
once (the searcher already answers from the commit's tree meanwhile), then
:func:`follow`'s rounds, telling an :class:`IndexingObserver` about each round's
progress and failures (docs/architecture.md, *The embedded default answers at once*).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from codeintel.core import embed as embedding_mod
from codeintel.core import errors
from codeintel.core import git as git_mod
from codeintel.core import settings as settings_mod
from codeintel.core import store as store_mod
from codeintel.core.indexresult import IndexResult
from codeintel.indexer import pipeline
from codeintel.indexer import progress as progress_mod

logger = logging.getLogger(__name__)


class IndexingObserver(pipeline.BuildObserver, Protocol):
    """What the serving side learns from the indexing rounds besides a build's products."""

    def round_started(self, progress: Callable[[], dict[str, Any]]) -> None:
        """A round began; ``progress()`` reads its stage, done, total and ETA at any time."""

    def round_failed(self, error: str) -> None:
        """The round ended with ``error``; the next one retries."""


def progress_of(reporter: progress_mod.Reporter) -> Callable[[], dict[str, Any]]:
    """``{phase, done, total, rate, eta_seconds}`` of ``reporter``'s build, read at call time:
    the stage running now, else the last one that ran (``starting`` before any)."""

    def read() -> dict[str, Any]:
        p = reporter.snapshot()
        phase = p.stage or (p.stages[-1].name if p.stages else "starting")
        rate, eta = p.rate, p.eta_seconds
        if rate is None and p.done and p.elapsed_seconds > 0:
            # No advance within the reporter's rate window (a CPU model can take minutes
            # per group of long chunks): the stage's average rate still gives an ETA.
            rate = round(p.done / p.elapsed_seconds, 2)
            if p.total is not None:
                eta = round(max(0, p.total - p.done) / rate, 1)
        return {"phase": phase, "done": p.done, "total": p.total, "rate": rate, "eta_seconds": eta}

    return read


def ensure_index(
    settings: settings_mod.Settings,
    source: str,
    embedder: embedding_mod.Embedder,
    *,
    ref: str = "HEAD",
    reporter: progress_mod.Reporter | None = None,
    log_unchanged: int = logging.INFO,
    observer: pipeline.BuildObserver | None = None,
    rebuild: bool = False,
) -> IndexResult:
    """Build or update the store so its live generation is ``source`` at ``ref``.

    ``log_unchanged`` is the level of the "up to date" line (DEBUG when polling);
    ``observer`` is told when a build has resolved its commit and written its chunks.
    ``rebuild`` builds from scratch whatever the store holds (``serve --rebuild``).
    Builds are progressive (``pipeline.build``): a first generation with vectors for
    the chunks embedded first, then the full one. A live first generation whose build
    stopped (the process ended) is built again; the embedding cache keeps what it had.
    """
    reporter = reporter or progress_mod.Reporter()
    store = store_mod.Store(settings.store.path)

    def build() -> IndexResult:
        return pipeline.build(
            settings,
            source,
            embedder,
            ref=ref,
            reporter=reporter,
            observer=observer,
            progressive=True,
        )

    try:
        if rebuild:
            logger.info("rebuilding %s from scratch (--rebuild)", store.root)
            return build()
        try:
            current = store.current()
        except errors.NoGenerationError:
            logger.info("no index at %s yet: building", store.root)
            return build()
        except errors.IndexFormatError as e:
            logger.warning("the current generation cannot be read (%s): rebuilding", e)
            return build()
        m = current.manifest
        if m.dense_coverage is not None:
            logger.info(
                "%s has vectors for %d of %d chunks (its build stopped): building the rest",
                current.name,
                m.dense_coverage.chunks,
                m.dense_coverage.total,
            )
            return build()
        wanted = pipeline.repo_url(source)
        if m.repo_url != wanted or m.embedding.model != embedder.model or m.ref != ref:
            logger.info(
                "store holds %s (%s, model %s); rebuilding for %s (%s, model %s)",
                m.repo_url,
                m.ref,
                m.embedding.model,
                wanted,
                ref,
                embedder.model,
            )
            return build()
        with git_mod.GitClient(store.mirror_path) as git:
            git.set_origin(wanted)
        result = pipeline.update(settings, embedder, ref=ref, reporter=reporter)
        if not result.changed:
            logger.log(
                log_unchanged,
                "index is up to date at %s (%s)",
                result.commit[:12],
                result.generation,
            )
        return result
    finally:
        reporter.close()


def follow(
    settings: settings_mod.Settings,
    source: str,
    embedder: embedding_mod.Embedder,
    stop: threading.Event,
    *,
    ref: str = "HEAD",
    interval: float | None = None,
) -> None:
    """Until ``stop`` is set: every ``interval`` seconds, :func:`ensure_index`.

    A failed round (repository briefly unreadable, store locked by a manual
    ``index update``) is logged and retried next round; the served generation is
    never touched by a failure.
    """
    every = settings.server.reindex_interval_seconds if interval is None else interval
    if every <= 0:
        return
    while not stop.wait(every):
        try:
            result = ensure_index(settings, source, embedder, ref=ref, log_unchanged=logging.DEBUG)
        except errors.CodeIntelError as e:
            logger.warning("background index update failed (retrying in %.0f s): %s", every, e)
            continue
        if result.changed:
            logger.info("indexed %s: %s at %s", source, result.generation, result.commit[:12])


def keep_indexed(
    settings: settings_mod.Settings,
    source: str,
    embedder: embedding_mod.Embedder,
    stop: threading.Event,
    observer: IndexingObserver,
    *,
    ref: str = "HEAD",
    make_reporter: Callable[[], progress_mod.Reporter] = progress_mod.Reporter,
    interval: float | None = None,
    rebuild: bool = False,
) -> None:
    """Index now (from scratch with ``rebuild``), then every ``interval`` seconds until
    ``stop`` is set (a thread's target).

    Unlike :func:`follow`, a failure of any kind (a bad first build included) is
    reported to ``observer`` and retried next round, never raised: the process
    keeps serving what it can.
    """
    every = settings.server.reindex_interval_seconds if interval is None else interval
    first = True
    while first or (every > 0 and not stop.wait(every)):
        reporter = make_reporter() if first else progress_mod.Reporter()
        observer.round_started(progress_of(reporter))
        try:
            result = ensure_index(
                settings,
                source,
                embedder,
                ref=ref,
                reporter=reporter,
                log_unchanged=logging.INFO if first else logging.DEBUG,
                observer=observer,
                rebuild=rebuild and first,
            )
        except errors.CodeIntelError as e:
            logger.error("indexing %s failed (retrying in %.0f s): %s", source, every, e)
            observer.round_failed(str(e))
        except Exception as e:  # a bug or an embedder crash: keep serving the tree, say why
            logger.exception("indexing %s failed (retrying in %.0f s)", source, every)
            observer.round_failed(f"{type(e).__name__}: {e}")
        else:
            if result.changed and not first:
                logger.info("indexed %s: %s at %s", source, result.generation, result.commit[:12])
        first = False
