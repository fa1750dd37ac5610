"""Micro-batching of semantic queries: one embed call and one FAISS search per batch.

Embedding a query costs far more than searching it, and both a transformer
and FAISS amortise their per-call overhead over a batch. :class:`QueryBatcher`
therefore gathers the queries that arrive within ``window`` seconds (or while
every batch slot is busy) into one ``aembed`` call and one ``engine.search``
per generation, then hands each caller its own row. At low load a query waits
at most ``window``; under load batches grow on their own, up to ``max_batch``.
A batch that fails is retried query by query, so one query the model refuses
fails alone instead of failing its neighbours.
The gain is measured by ``benchmarks/searcher_bench.py`` (``docs/performance.md``).

Ranking itself (BM25, fusion, filters) is :func:`codeintel.core.hits.rank`, the
same function the CLI's ``codeintel search`` calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import numpy as np

from codeintel.core import errors

logger = logging.getLogger(__name__)


class Engine(Protocol):
    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclasses.dataclass
class _Pending:
    engine: Engine
    query: str
    fetch: int
    future: asyncio.Future[tuple[np.ndarray, np.ndarray]]


class QueryBatcher:
    """Coalesces concurrent queries into one embed call and one FAISS search per generation."""

    def __init__(
        self,
        embed: Callable[[Sequence[str]], Awaitable[np.ndarray]],
        run_blocking: Callable[..., Awaitable[Any]],
        *,
        window: float = 0.002,
        max_batch: int = 64,
        max_inflight: int = 2,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._embed = embed
        self._run = run_blocking
        self.window = window
        self.max_batch = max(1, max_batch)
        self.max_inflight = max(1, max_inflight)
        self._on_batch = on_batch
        self._pending: list[_Pending] = []
        self._inflight = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def search(self, engine: Engine, query: str, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of ``query``'s ``fetch`` nearest chunks in ``engine``, -1 padded."""
        loop = asyncio.get_running_loop()
        item = _Pending(engine, query, fetch, loop.create_future())
        self._pending.append(item)
        if self.window <= 0 or len(self._pending) >= self.max_batch:
            self._dispatch()
        elif self._timer is None:
            self._timer = loop.call_later(self.window, self._on_timer)
        return await item.future

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _dispatch(self) -> None:
        """Start batches while slots are free; the rest waits for a batch to finish."""
        while self._pending and self._inflight < self.max_inflight:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(self._process(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if not self._pending and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _process(self, batch: list[_Pending]) -> None:
        try:
            live = [p for p in batch if not p.future.done()]
            if self._on_batch is not None:
                self._on_batch(len(live))
            if live:
                await self._answer(live)
        except BaseException as e:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(e if isinstance(e, Exception) else RuntimeError(str(e)))
            if not isinstance(e, Exception):
                raise
        finally:
            self._inflight -= 1
            self._dispatch()

    async def _answer(self, live: list[_Pending]) -> None:
        """Embed and search ``live`` as one batch; if that fails, each query on its own.

        One bad query (text the tokenizer refuses, say) must not fail its neighbours:
        after a batch error every query is retried alone, so only the ones that fail
        alone fail, each with its own error.
        """
        try:
            results = await self._embed_and_search(live)
        except Exception as e:
            if len(live) == 1 or not _may_be_one_query(e):
                raise
            logger.warning("a batch of %d queries failed; retrying them one by one", len(live))
            for p in live:
                if p.future.done():
                    continue
                try:
                    [result] = await self._embed_and_search([p])
                except Exception as e:
                    if not p.future.done():
                        p.future.set_exception(e)
                else:
                    if not p.future.done():
                        p.future.set_result(result)
            return
        for p, result in zip(live, results, strict=True):
            if not p.future.done():
                p.future.set_result(result)

    async def _embed_and_search(self, live: list[_Pending]) -> list[tuple[np.ndarray, np.ndarray]]:
        """One embed call for the batch's distinct texts and one executor call that searches
        every engine; the (scores, ids) row of each query.

        A query over many stores arrives as one pending item per store with the same text:
        it is embedded once, and the stores' FAISS searches run in one hop off the loop
        instead of one hop each."""
        texts = list(dict.fromkeys(p.query for p in live))
        where = {text: i for i, text in enumerate(texts)}
        xq = (await self._embed(texts))[[where[p.query] for p in live]]
        groups: dict[int, list[int]] = {}
        for row, p in enumerate(live):
            groups.setdefault(id(p.engine), []).append(row)
        jobs = [
            (live[rows[0]].engine, np.ascontiguousarray(xq[rows]), max(live[r].fetch for r in rows))
            for rows in groups.values()
        ]
        found = await self._run(_search_each, jobs)
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(live)
        for rows, (D, I) in zip(groups.values(), found, strict=True):
            for j, r in enumerate(rows):
                out[r] = (D[j], I[j])
        return [row for row in out if row is not None]

    async def aclose(self) -> None:
        """Fail queries still waiting and let running batches finish."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for p in self._pending:
            if not p.future.done():
                p.future.cancel()
        self._pending.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _search_each(
    jobs: Sequence[tuple[Engine, np.ndarray, int]],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """FAISS search of each (engine, queries, k); blocking, one executor hop for them all."""
    return [engine.search(xq, k) for engine, xq, k in jobs]


def _may_be_one_query(exc: Exception) -> bool:
    """Whether a batch error may come from one query's text, so retrying alone can help.

    An embedder that is down, slow, overloaded or loading fails every query the same
    way: retrying each would multiply the load on it for nothing.
    """
    if isinstance(exc, errors.EmbeddingHTTPError):
        status = exc.status_code or 500
        return 400 <= status < 500 and status != 429
    return not isinstance(exc, errors.EmbeddingError)
