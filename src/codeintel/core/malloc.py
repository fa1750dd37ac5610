"""Give freed heap memory back to the system (glibc), so a long-running process's RSS
follows what it holds rather than its worst moment.

A ``serve PATH`` process embedding a 38K-chunk repository held 1.7 GB of RSS of which
about 550 MB were a dozen per-thread malloc arenas of ~64 MB (the executor's, the
model's and the build's threads each get one) and most of the rest freed heap that
glibc had not returned (``/proc/PID/smaps``; docs/performance.md, *First dense answer
and memory*). :func:`limit_arenas` caps the arenas; :func:`trim` returns free pages
after a stage that allocated and freed a lot. Both do nothing off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

logger = logging.getLogger(__name__)

_M_ARENA_MAX = -8
"""``mallopt`` parameter number of ``M_ARENA_MAX`` in glibc's ``malloc.h``."""


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018  (glibc only: musl and macOS have none)
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(count: int = 2) -> None:
    """At most ``count`` malloc arenas for threads created from now on (call it early)."""
    libc = _libc()
    if libc is not None and not libc.mallopt(_M_ARENA_MAX, count):
        logger.debug("mallopt(M_ARENA_MAX, %d) refused", count)


def trim() -> None:
    """Return the free memory at the top of every arena to the system."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
