"""What every indexing run shares at its two ends: the live generation it starts
from, and the garbage collection and :class:`IndexResult` it ends with."""

from __future__ import annotations

import logging
import time

from codeintel.core import errors
from codeintel.core import settings as settings_mod
from codeintel.core import store as store_mod
from codeintel.core.indexresult import IndexResult
from codeintel.indexer import embed_cache

logger = logging.getLogger(__name__)


def readable_current(store: store_mod.Store) -> store_mod.Generation | None:
    """The live generation, or None when there is none or it cannot be read.

    A full build needs nothing from its parent, so a corrupt or too-new current
    generation must not stop the build that replaces it.
    """
    try:
        return store.current()
    except errors.NoGenerationError:
        return None
    except errors.IndexFormatError as e:
        logger.warning("the current generation cannot be read, building over it: %s", e)
        return None


def current_for(store: store_mod.Store, action: str) -> store_mod.Generation:
    """The live generation an update or merge starts from; a bad one names the way out."""
    try:
        return store.current()
    except errors.NoGenerationError:
        raise
    except errors.IndexFormatError as e:
        name = current_name_or_none(store)
        peek = store.peek(name) if name else None
        source = peek.repo_url if peek and peek.repo_url else "SOURCE"
        root = store.root
        raise errors.CurrentUnreadableError(
            f"cannot {action}: {e}. To recover, serve the newest intact older generation "
            f"again with `codeintel index rollback --store {root}`, or write a fresh one with "
            f"`codeintel index build {source} --store {root}`"
        ) from e


def current_name_or_none(store: store_mod.Store) -> str | None:
    try:
        return store.current_name()
    except errors.IndexFormatError:
        return None


def index_result(
    action: str,
    generation: store_mod.Generation,
    *,
    changed: bool = True,
    files: int | None = None,
    chunks: int = 0,
    skipped: int | None = None,
    merged: bool = False,
    cache: embed_cache.CacheStats | None = None,
    texts: int | None = None,
) -> IndexResult:
    """``texts``: what was embedded without a cache (chunks plus their windows)."""
    m = generation.manifest
    return IndexResult(
        action=action,
        changed=changed,
        generation=generation.name,
        commit=m.commit,
        index_type=m.index.type,
        vectors=m.counts,
        files=m.files_indexed if files is None else files,
        chunks=chunks,
        skipped=len(m.skipped) if skipped is None else skipped,
        merged=merged,
        embedded=cache.embedded if cache else (chunks if texts is None else texts),
        embed_cache_hits=cache.hits if cache else 0,
    )


def collect_garbage(store: store_mod.Store, settings: settings_mod.Settings) -> None:
    started = time.perf_counter()
    removed = store.gc(
        settings.store.keep_generations,
        settings.store.gc_grace_seconds,
        embedding_cache_bytes=settings.store.embedding_cache_bytes,
    )
    if removed:
        logger.info("gc removed %s in %.2f s", ", ".join(removed), time.perf_counter() - started)
