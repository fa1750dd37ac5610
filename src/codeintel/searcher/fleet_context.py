"""The long-lived state of a searcher serving many stores: the stores root watched
(:mod:`storeset`), the query embedders (:mod:`query_embedders`), the scrub, readiness
and ``/v1/index``; its :class:`~fleet.FleetTools` answers the catalogue across them."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from codeintel.core import embed as embedding_mod
from codeintel.core import settings as settings_mod
from codeintel.searcher import context as context_mod
from codeintel.searcher import generations as generations_mod
from codeintel.searcher import metrics as metrics_mod
from codeintel.searcher import query_embedders as query_embedders_mod
from codeintel.searcher import scrubbing
from codeintel.searcher import storeset as storeset_mod
from codeintel.searcher.fleet import FleetTools


class FleetContext(context_mod.Runtime):
    """The long-lived state of a searcher serving many stores (the app's lifespan owns it)."""

    def __init__(
        self,
        settings: settings_mod.Settings,
        *,
        embedder: embedding_mod.Embedder | None = None,
    ) -> None:
        self.fleet_metrics = metrics_mod.FleetMetrics.create()
        super().__init__(settings, self.fleet_metrics.base)
        self.embedders = query_embedders_mod.QueryEmbedders(
            settings, self.run, self.metrics.batch_size.observe, embedder
        )
        self.stores = storeset_mod.StoreSet(settings, self.run, self.executor, self.fleet_metrics)
        self.tools = FleetTools(self)

    @property
    def service(self) -> FleetTools:
        return self.tools

    def known_repos(self) -> list[str]:
        """Every repository served here, for a Kubernetes reviewer (an unsharded pool)."""
        return sorted(self.stores.entries)

    def _loaded_managers(self) -> list[generations_mod.GenerationManager]:
        return [e.manager for e in self.stores.entries.values() if e.manager is not None]

    async def start(self) -> None:
        self.spawn(self.embedders.start())
        self.spawn(self.stores.watch())
        rate = self.settings.server.scrub_mb_per_second
        self.spawn(scrubbing.scrub_forever(self._loaded_managers, rate, self.run))

    async def wait_ready(self, timeout: float | None = None) -> None:
        async with asyncio.timeout(timeout):
            await self.stores.scanned.wait()
            await self.embedders.ready.wait()

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready once the stores root is listed and the query embedder has loaded (or
        failed: lexical still answers). An empty pool is ready too. Waiting for the model
        keeps a router from sending semantic queries to a shard that would stall on it."""
        if not self.stores.scanned.is_set():
            return False, {"reason": f"listing stores under {self.stores.root}"}
        if not self.embedders.ready.is_set():
            return False, {"reason": "loading the query embedding model"}
        return True, {"repos": len(self.stores.entries)}

    async def index_document(self) -> bytes:
        """``/v1/index``: every served repository's manifest summary (list_repos rows)."""
        rows = await self.run(self.tools._rows, self.stores.select(None))
        return msgspec.json.encode({"repos": rows, "shard": self.settings.fleet.shard_index})

    async def aclose(self) -> None:
        await self.stop()
        await self.embedders.aclose()
        await self.stores.close()
        self.shutdown()
