"""Re-checksumming the live generations in the background, at a bounded read rate.

Checksums are verified when a generation loads, and sizes and mtimes on every
poll and request (:mod:`generations`); damage that keeps both — a flipped bit on
disk, a file restored from a backup with its old mtime — would otherwise be
served until the next load. The scrubber reads every file the manifest
checksums (FAISS indexes, vectors, ``chunks.sqlite``, …) of every live
generation in turn, 1 MiB per worker-thread call, and sleeps between calls so
the process never reads faster than ``server.scrub_mb_per_second`` (one budget
for all its stores: the disk is shared). A mismatch makes the generation
suspect; the next poll re-verifies it in full and refuses it, falling back to
the newest intact generation or answering 503 naming it, exactly as a damaged
file found at load (``codeintel_generation_loads_total{result="damaged"}``).

Reads go through ``read()``, never a mapping, so even a truncated file is a
short read here, not a SIGBUS.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

from codeintel.searcher import generations as generations_mod

logger = logging.getLogger(__name__)

BLOCK = 1 << 20
"""Bytes read and hashed per worker-thread call (the store's checksum block)."""

IDLE_SECONDS = 2.0
"""Pause between passes, and while nothing is live: a tiny store is not re-read in a loop."""


class Pacer:
    """Sleeps so that the bytes counted never exceed ``rate`` bytes a second on average."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._start = time.monotonic()
        self._done = 0

    async def spend(self, n: int) -> None:
        """Count ``n`` bytes just read, and sleep until the average is back under the rate."""
        now = time.monotonic()
        if self._done / self.rate < now - self._start - 1.0:
            self._start, self._done = now, 0  # idle time is no credit for a burst later
        self._done += n
        ahead = self._done / self.rate - (now - self._start)
        if ahead > 0:
            await asyncio.sleep(ahead)


def _read_into(f: BinaryIO, digest: Any) -> int:
    block = f.read(BLOCK)
    digest.update(block)
    return len(block)


async def file_checksum(
    path: Path, run: Callable[..., Awaitable[Any]], pacer: Pacer, still_wanted: Callable[[], bool]
) -> str | None:
    """``sha256:<hex>`` of ``path``, read at the pacer's rate off the event loop; None when
    ``still_wanted`` turns false midway (the generation was swapped out)."""
    digest = hashlib.sha256()
    f = await run(open, path, "rb")
    try:
        while True:
            if not still_wanted():
                return None
            n = await run(_read_into, f, digest)
            if n == 0:
                return f"sha256:{digest.hexdigest()}"
            await pacer.spend(n)
    finally:
        await run(f.close)


async def scrub(
    manager: generations_mod.GenerationManager,
    gen: generations_mod.LoadedGeneration,
    run: Callable[..., Awaitable[Any]],
    pacer: Pacer,
) -> str | None:
    """Checksum every file of ``gen`` while it is ``manager``'s live generation; on a
    mismatch mark it suspect and return why (None: intact, or no longer live)."""

    def still_live() -> bool:
        return manager.live is gen

    for path, expected in gen.checksums.items():
        try:
            actual = await file_checksum(path, run, pacer, still_live)
        except OSError as e:
            actual = f"unreadable ({e.strerror or e})"
        if actual is None or not still_live():
            return None
        if actual != expected:
            why = f"checksum mismatch in {path.name}: {actual}, the manifest records {expected}"
            manager.suspect(gen, f"background scrub: {why}")
            return why
    return None


async def scrub_forever(
    managers: Callable[[], Iterable[generations_mod.GenerationManager]],
    rate_mb_per_second: float,
    run: Callable[..., Awaitable[Any]],
) -> None:
    """Scrub each live generation of ``managers()`` in turn, forever (cancel to stop);
    returns at once when the rate is 0 (off). Errors are logged, never fatal."""
    if rate_mb_per_second <= 0:
        return
    pacer = Pacer(rate_mb_per_second * 1e6)
    while True:
        started = time.monotonic()
        for manager in list(managers()):
            gen = manager.live
            if gen is None:
                continue
            try:
                await scrub(manager, gen, run, pacer)
            except Exception:
                logger.exception("background checksum of generation %s failed", gen.name)
        await asyncio.sleep(max(0.0, IDLE_SECONDS - (time.monotonic() - started)))
