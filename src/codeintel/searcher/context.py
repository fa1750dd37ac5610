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

import msgspec
import numpy as np

from codeintel.core import embed as embedding_mod
from codeintel.core import errors, malloc
from codeintel.core import settings as settings_mod
from codeintel.searcher import generations as generations_mod
from codeintel.searcher import metrics as metrics_mod
from codeintel.searcher import scrubbing, semantic
from codeintel.searcher import tools as tools_mod

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_INFLIGHT_BATCHES = 2
"""Batches embedded/searched at once; more only contend for the same cores."""


class Runtime:
    """What every serving context (single store, many stores, router) holds: its settings,
    its request metrics, a bounded executor for blocking work (``settings.server.workers``
    threads unless told) and the background tasks started in ``start`` and stopped in
    ``aclose``."""

    def __init__(
        self,
        settings: settings_mod.Settings,
        metrics: metrics_mod.Metrics,
        *,
        workers: int | None = None,
        name: str = "codeintel-search",
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        threads = settings.server.workers if workers is None else workers
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, threads), thread_name_prefix=name
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def run(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        """Run blocking ``fn`` on the bounded executor and await its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def spawn(self, coro: Any) -> asyncio.Task[None]:
        """Start a background task that ``stop`` cancels."""
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        return task

    async def stop(self) -> None:
        """Cancel the background tasks and wait for them to end."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class AppContext(Runtime):
    """The searcher's long-lived state, shared by REST, MCP over HTTP and MCP over stdio."""

    def __init__(
        self,
        settings: settings_mod.Settings,
        *,
        embedder: embedding_mod.Embedder | None = None,
    ) -> None:
        super().__init__(settings, metrics_mod.Metrics.create())
        self._embedder = embedder
        self._owns_embedder = embedder is None
        self._embedder_error: str | None = None
        self.manager = self._make_manager()
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
        self._embedder_task: asyncio.Task[None] | None = None

    def _make_manager(self) -> generations_mod.GenerationManager:
        return generations_mod.GenerationManager(
            self.settings, self.run, self.executor, self.metrics
        )

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
    def service(self) -> tools_mod.Tools:
        return self.tools

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body) for ``/readyz``: ready once a generation is live, else the reason."""
        gen = self.manager.live
        if gen is None:
            return False, {"reason": self.manager.not_ready_reason()}
        if self._embedder_task is not None and not self._embedder_task.done():
            # A ready pod gets traffic: semantic queries must not meet "still loading".
            # A failed embedder settles too (lexical and the other tools still answer).
            return False, {"reason": "the query embedder is still loading"}
        return True, {"generation": gen.name, "commit": gen.commit}

    async def index_document(self) -> bytes:
        """``/v1/index``: the live manifest, and under ``serving`` whether it is a fallback and why.

        Only the manifest held in memory is read, so this answers (and says what is
        served) even while a damaged file of the live generation is being re-verified,
        when every tool answers 503; with nothing live it is the tools' 503."""
        gen = self.manager.live
        if gen is None:
            with self.manager.use() as gen:  # the 503 that says why nothing is live
                pass
        body = msgspec.to_builtins(gen.manifest)
        body["serving"] = self.manager.serving()
        return msgspec.json.encode(body)

    async def start(self) -> None:
        """Begin loading the embedder and watching CURRENT; returns at once."""
        if self._embedder is None:
            self._embedder_task = self.spawn(self._load_embedder())
        self.spawn(self.manager.watch())
        rate = self.settings.server.scrub_mb_per_second
        self.spawn(scrubbing.scrub_forever(lambda: [self.manager], rate, self.run))

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
            # The model's load leaves freed buffers in the heap (~20 MB for the local model);
            # a generation load's trim used to return them only if it happened to end later.
            await self.run(malloc.trim)
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
        await self.stop()
        await self.batcher.aclose()
        self.manager.close()
        if self._owns_embedder and self._embedder is not None:
            with contextlib.suppress(Exception):
                await self._embedder.aclose()
        self.shutdown()
