"""The embedded default's indexing: make the store follow the repository.

``codeintel serve PATH`` calls :func:`ensure_index` before it serves: a missing
store is built, a store behind the source's ref is updated incrementally, a
store already at that commit is left alone, and a store of another repository
or another embedding model is rebuilt rather than mixed. While it serves,
:func:`follow` repeats that every few seconds on a background thread, so an
agent that commits sees its new code in answers without a restart (the
searcher picks up each new ``CURRENT`` by itself).
"""

from __future__ import annotations

import logging
import threading

from codeintel.core import embed as embedding_mod
from codeintel.core import errors
from codeintel.core import git as git_mod
from codeintel.core import settings as settings_mod
from codeintel.core import store as store_mod
from codeintel.core.indexresult import IndexResult
from codeintel.indexer import pipeline
from codeintel.indexer import progress as progress_mod

logger = logging.getLogger(__name__)


def ensure_index(
    settings: settings_mod.Settings,
    source: str,
    embedder: embedding_mod.Embedder,
    *,
    ref: str = "HEAD",
    reporter: progress_mod.Reporter | None = None,
    log_unchanged: int = logging.INFO,
    rebuild: bool = False,
) -> IndexResult:
    """Build or update the store so its live generation is ``source`` at ``ref``.

    ``log_unchanged`` is the level of the "up to date" line (DEBUG when polling);
    ``rebuild`` builds from scratch whatever the store holds (``serve --rebuild``).
    """
    reporter = reporter or progress_mod.Reporter()
    store = store_mod.Store(settings.store.path)
    try:
        if rebuild:
            logger.info("rebuilding %s from scratch (--rebuild)", store.root)
            return pipeline.build(settings, source, embedder, ref=ref, reporter=reporter)
        try:
            current = store.current()
        except errors.NoGenerationError:
            logger.info("no index at %s yet: building", store.root)
            return pipeline.build(settings, source, embedder, ref=ref, reporter=reporter)
        except errors.IndexFormatError as e:
            logger.warning("the current generation cannot be read (%s): rebuilding", e)
            return pipeline.build(settings, source, embedder, ref=ref, reporter=reporter)
        m = current.manifest
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
            return pipeline.build(settings, source, embedder, ref=ref, reporter=reporter)
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
