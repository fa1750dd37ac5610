"""Query vectors for a searcher or router whose stores may use several embedding models.

:class:`QueryEmbedders` holds one embedder and micro-batcher per model served,
so stores of one model share the query vector. The batchers that
:class:`~tools.Tools` takes over one store of a fleet are here too:
:class:`LazyBatcher` resolves its model's batcher on first use (a store whose
model cannot be served answers 503 only for dense queries), and
:class:`VectorBatcher` searches with a vector the router embedded once for every shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from codeintel.core import embed as embedding_mod
from codeintel.core import errors, malloc
from codeintel.core import settings as settings_mod
from codeintel.searcher import context as context_mod
from codeintel.searcher import semantic

logger = logging.getLogger(__name__)


class QueryEmbedders:
    """The query embedder and its micro-batcher for each embedding model served.

    The configured embedder serves its own model. With an OpenAI-compatible server
    another model is one more client to the same URL; a local model cannot be
    swapped, so its stores answer lexical queries only (503 naming both models)."""

    def __init__(
        self,
        settings: settings_mod.Settings,
        run: Any,
        on_batch: Any,
        embedder: embedding_mod.Embedder | None = None,
    ) -> None:
        self._settings = settings
        self._run = run
        self._on_batch = on_batch
        self._default = embedder
        self._owned: list[embedding_mod.Embedder] = []
        self._error: str | None = None
        self._by_model: dict[str, tuple[embedding_mod.Embedder, semantic.QueryBatcher]] = {}
        self.ready = asyncio.Event()
        if embedder is not None:
            self.ready.set()

    async def start(self) -> None:
        """Load the configured embedder (and warm it) in the background of start-up."""
        if self._default is not None:
            return
        try:
            emb = await self._run(embedding_mod.make_embedder, self._settings.embedder)
            self._owned.append(emb)
            self._default = emb
            with contextlib.suppress(errors.EmbeddingError):
                await self._run(emb.embed, ["codeintel warm-up"])
            await self._run(malloc.trim)  # the model's load leaves freed buffers in the heap
            logger.info("query embedder ready: %s", emb.model)
        except Exception as e:
            self._error = f"embedding model unavailable: {e}"
            logger.exception("cannot load the query embedder")
        finally:
            self.ready.set()

    def batcher(self, model: str) -> tuple[embedding_mod.Embedder, semantic.QueryBatcher]:
        """(embedder, batcher) for queries against an index built with ``model``."""
        found = self._by_model.get(model)
        if found is not None:
            return found
        if self._default is None:
            raise errors.EmbeddingError(self._error or "the embedding model is still loading")
        if model in (self._default.model, self._settings.embedder.model):
            emb = self._default
        elif self._settings.embedder.kind == "openai":
            emb = embedding_mod.make_embedder(
                dataclasses.replace(self._settings.embedder, model=model, dim=0)
            )
            self._owned.append(emb)
        else:
            raise errors.EmbeddingError(
                f"the index was built with embedding model {model!r}, but this searcher "
                f"embeds queries with {self._default.model!r}; lexical mode still answers"
            )

        async def embed(texts: Sequence[str]) -> np.ndarray:
            xq: np.ndarray = await emb.aembed(list(texts))
            return xq

        batcher = semantic.QueryBatcher(
            embed,
            self._run,
            window=self._settings.server.batch_window_seconds,
            max_batch=self._settings.server.max_batch,
            max_inflight=context_mod.MAX_INFLIGHT_BATCHES,
            on_batch=self._on_batch,
        )
        self._by_model[model] = (emb, batcher)
        return emb, batcher

    async def aclose(self) -> None:
        for _, batcher in self._by_model.values():
            await batcher.aclose()
        for emb in self._owned:
            with contextlib.suppress(Exception):
                await emb.aclose()


class LazyBatcher:
    """A Tools batcher that resolves the model's batcher on first use (503 if unservable)."""

    def __init__(self, embedders: QueryEmbedders, model: str) -> None:
        self._embedders = embedders
        self._model = model

    async def search(self, engine: Any, query: str, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        return await self._embedders.batcher(self._model)[1].search(engine, query, fetch)


class VectorBatcher:
    """A Tools batcher for a query vector that arrived with the request: search only."""

    def __init__(self, vector: np.ndarray, run: Any) -> None:
        self._xq = np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32)
        self._run = run

    async def search(self, engine: Any, query: str, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        D, I = await self._run(engine.search, self._xq, fetch)
        return D[0], I[0]


@dataclasses.dataclass(frozen=True)
class GivenEmbedder:
    """Stands in for the embedder when the vector was given: its model and dimension."""

    model: str
    dim: int
