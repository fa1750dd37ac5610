"""The application context: everything a searcher process holds open, made and closed once.

One :class:`AppContext` per process (per app in tests) owns the executor that
bounds blocking work, the metrics registry, the embedder, the generation
manager with its hot-swap watcher, the query batcher and the :class:`Tools`.
The FastAPI lifespan and ``codeintel mcp`` (stdio) both start one with
:meth:`AppContext.start` and close it with :meth:`AppContext.aclose`, which
closes every client the context created (an injected embedder belongs to its
caller and is left open).

Startup never waits for the index: the embedder and the first generation load
in the background, ``/readyz`` turns true once a generation is live, and tools
answer 503 until then.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from codeintel.core import embedding as embedding_mod
from codeintel.core import errors
from codeintel.core import settings as settings_mod
from codeintel.searcher import generations as generations_mod
from codeintel.searcher import metrics as metrics_mod
from codeintel.searcher import semantic
from codeintel.searcher import tools as tools_mod

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_INFLIGHT_BATCHES = 2
"""Batches embedded/searched at once; more only contend for the same cores."""


class AppContext:
    """The searcher's long-lived state, shared by REST, MCP over HTTP and MCP over stdio."""

    def __init__(
        self,
        settings: settings_mod.Settings,
        *,
        embedder: embedding_mod.Embedder | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics_mod.Metrics.create()
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, settings.server.workers), thread_name_prefix="codeintel-search"
        )
        self._embedder = embedder
        self._owns_embedder = embedder is None
        self._embedder_error: str | None = None
        self.manager = generations_mod.GenerationManager(
            settings, self.run, self.executor, self.metrics
        )
        self.batcher = semantic.QueryBatcher(
            self._embed,
            self.run,
            window=settings.server.batch_window_seconds,
            max_batch=settings.server.max_batch,
            max_inflight=MAX_INFLIGHT_BATCHES,
            on_batch=self.metrics.batch_size.observe,
        )
        self.tools = tools_mod.Tools(
            settings, self.manager, self.batcher, self.embedder, self.run, self.metrics
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._embedder_task: asyncio.Task[None] | None = None

    async def run(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Run blocking ``fn`` on the bounded executor and await its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def embedder(self) -> embedding_mod.Embedder:
        """The query embedder, or EmbeddingError (503) while it loads or if it failed."""
        if self._embedder is None:
            detail = self._embedder_error or "the embedding model is still loading"
            raise errors.EmbeddingError(detail)
        return self._embedder

    async def _embed(self, texts: Sequence[str]) -> np.ndarray:
        xq: np.ndarray = await self.embedder().aembed(list(texts))
        return xq

    @property
    def ready(self) -> bool:
        """A generation is live and the embedder is made (or failed), as :meth:`wait_ready`:
        a ready pod gets traffic, and semantic queries must not meet 'still loading'."""
        embedder_settled = self._embedder_task is None or self._embedder_task.done()
        return self.manager.live is not None and embedder_settled

    async def start(self) -> None:
        """Begin loading the embedder and watching CURRENT; returns at once."""
        loop = asyncio.get_running_loop()
        if self._embedder is None:
            self._embedder_task = loop.create_task(self._load_embedder())
            self._tasks.append(self._embedder_task)
        self._tasks.append(loop.create_task(self.manager.watch()))

    async def _load_embedder(self) -> None:
        try:
            embedder = await self.run(embedding_mod.make_embedder, self.settings.embedder)
            self._embedder = embedder
            # Load the weights (or open the connection) now, not inside the first request:
            # a local model takes seconds to load, and the first agent query would pay it.
            try:
                await self.run(embedder.embed, ["codeintel warm-up"])
            except errors.EmbeddingError as e:  # a remote server may come up later
                logger.warning("embedder warm-up failed (queries will retry): %s", e)
            logger.info("query embedder ready: %s", embedder.model)
        except Exception as e:
            self._embedder = None
            self._embedder_error = f"embedding model unavailable: {e}"
            logger.exception("cannot load the query embedder")

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Until a generation is live and the embedder has loaded (or failed); TimeoutError."""
        async with asyncio.timeout(timeout):
            await self.manager.loaded.wait()
            if self._embedder_task is not None:
                await asyncio.shield(self._embedder_task)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.batcher.aclose()
        self.manager.close()
        if self._owns_embedder and self._embedder is not None:
            with contextlib.suppress(Exception):
                await self._embedder.aclose()
        self.executor.shutdown(wait=False, cancel_futures=True)
