"""``serve PATH`` and ``mcp PATH`` index beside the searcher: a thread that builds, then follows.

The searcher answers from the commit being indexed meanwhile (``searcher.EarlyIndex``,
docs/architecture.md, "The embedded default answers at once").
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codeintel.core import errors
from codeintel.core.settings import Settings

logger = logging.getLogger("codeintel")


@contextlib.contextmanager
def indexing(settings: Settings, source: str, ref: str, *, rebuild: bool = False) -> Iterator[Any]:
    """Index ``source`` on a background thread (build now — from scratch with ``rebuild`` —
    then follow the ref) while the caller serves; yields the ``EarlyIndex`` the searcher
    answers from meanwhile."""
    from codeintel import indexer, searcher
    from codeintel.core import git as git_mod

    if not git_mod.is_url(source) and not Path(source).expanduser().is_dir():
        raise errors.ConfigError(f"not a directory or URL: {source!r}")
    early = searcher.EarlyIndex(
        indexer.repo_url(source), retry_seconds=settings.server.reindex_interval_seconds
    )
    stop = threading.Event()
    thread = threading.Thread(
        target=_index_in_background,
        args=(settings, source, ref, early, stop, rebuild),
        name="codeintel-index",
        daemon=True,
    )
    thread.start()
    try:
        yield early
    finally:
        stop.set()
        thread.join(timeout=5)
        if thread.is_alive():
            # A build is inside the model (native threads): finalising the interpreter under
            # it aborts the process (SIGABRT). Leave at once; the writer lock is an flock,
            # released with the process, and the next run removes the temp directory.
            logger.warning("stopped while indexing; the next run starts that build again")
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)


def _index_in_background(
    settings: Settings, source: str, ref: str, early: Any, stop: threading.Event, rebuild: bool
) -> None:
    from codeintel import indexer
    from codeintel.core import embed as embedding

    try:
        embedder = embedding.make_embedder(settings.embedder)
    except Exception as e:  # the searcher keeps answering from the tree and shows why
        logger.exception("cannot load the embedding model for indexing")
        early.round_failed(f"cannot load the embedding model: {e}")
        return
    try:
        indexer.keep_indexed(
            settings,
            source,
            embedder,
            stop,
            early,
            ref=ref,
            make_reporter=lambda: indexer.make_reporter(
                interval=settings.log.progress_interval_seconds
            ),
            rebuild=rebuild,
        )
    finally:
        embedder.close()
