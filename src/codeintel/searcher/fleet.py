"""Many stores in one searcher process: discovery, lazy loading, cross-repository tools.

``codeintel serve --stores-root DIR`` serves every store at
``DIR/<namespace>/<name>/`` (a SearchPool's volume), named ``namespace/name`` in
the API. :class:`StoreSet` lists the root every ``scan_interval_seconds`` and
keeps one :class:`~generations.GenerationManager` per store, opened on the
store's first query (FAISS memory-mapped, sqlite, tree listing, worktree) and
closed again after ``idle_unload_seconds`` or when more than
``max_loaded_stores`` are open, least recently used first. A store that cannot
be loaded is logged, counted and skipped; it never fails a query over the others.

With ``shards > 1`` a process serves only the stores that rendezvous-hash to its
``shard_index`` (highest random weight of ``blake2b(shard, name)``), so adding a
shard moves about 1/N of the stores and every router computes the same map.

:class:`FleetTools` answers the catalogue across the selected stores by running
the single-store :class:`~tools.Tools` on each and merging with
:mod:`merging`, which the router uses too. Semantic queries embed once per
embedding model (stores of one model share the query vector through the
batcher) and refuse a selection that mixes models (HTTP 400 naming the groups).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import numpy as np
import prometheus_client as prom

from codeintel.core import embed as embedding_mod
from codeintel.core import errors
from codeintel.core import settings as settings_mod
from codeintel.core.store import manifest as manifest_mod
from codeintel.searcher import access, merging, models, semantic
from codeintel.searcher import context as context_mod
from codeintel.searcher import generations as generations_mod
from codeintel.searcher import metrics as metrics_mod
from codeintel.searcher import tools as tools_mod
from codeintel.searcher import worktree as worktree_mod

logger = logging.getLogger(__name__)

T = TypeVar("T")

CURRENT = "CURRENT"
MAX_INFLIGHT_BATCHES = 2
"""Batches embedded/searched at once per model; more only contend for the same cores."""


def shard_of(name: str, shards: int) -> int:
    """The shard (0..shards-1) that serves repository ``name``: rendezvous hashing."""
    if shards <= 1:
        return 0

    def weight(shard: int) -> bytes:
        return hashlib.blake2b(f"{shard}\x00{name}".encode(), digest_size=8).digest()

    return max(range(shards), key=weight)


def check_settings(fleet: settings_mod.FleetSettings) -> None:
    """ConfigError for a fleet configuration that cannot work, before anything starts."""
    if fleet.shards < 1:
        raise errors.ConfigError(f"shards must be at least 1, not {fleet.shards}")
    if not 0 <= fleet.shard_index < fleet.shards:
        raise errors.ConfigError(
            f"shard index {fleet.shard_index} is outside 0..{fleet.shards - 1}"
        )
    root = Path(fleet.stores_root)
    if root.exists() and not root.is_dir():
        raise errors.ConfigError(f"--stores-root {root} is not a directory")


def discover(root: Path) -> dict[str, Path]:
    """``namespace/name`` -> store root for every store directory under ``root``.

    A store is a directory two levels down holding ``CURRENT`` or ``generations/``
    (a first build in progress has the latter only)."""
    found: dict[str, Path] = {}
    try:
        namespaces = sorted(p for p in root.iterdir() if p.is_dir())
    except FileNotFoundError:
        return found
    for ns in namespaces:
        if ns.name.startswith("."):
            continue
        with contextlib.suppress(OSError):
            for store in sorted(ns.iterdir()):
                if store.name.startswith(".") or not store.is_dir():
                    continue
                if (store / CURRENT).exists() or (store / "generations").is_dir():
                    found[f"{ns.name}/{store.name}"] = store
    return found


def read_manifest(root: Path) -> manifest_mod.Manifest | None:
    """The manifest CURRENT names, read without opening the index (None before a publish)."""
    try:
        name = (root / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    path = root / "generations" / name / manifest_mod.MANIFEST
    try:
        return manifest_mod.decode_manifest(path.read_bytes(), source=str(path))
    except FileNotFoundError as e:
        raise errors.IndexFormatError(f"{root / CURRENT} names {name!r}, which is missing") from e


class _StoreMetrics:
    """What a per-store GenerationManager reports, folded into the fleet's metrics.

    Load outcomes add up across stores; the live generation is one series per
    repository (``codeintel_fleet_generation_info{repo, generation, commit}``)."""

    def __init__(self, fleet: FleetMetrics, repo: str) -> None:
        self._fleet = fleet
        self._repo = repo

    def set_generation(
        self, name: str, commit: str, index_type: str, counts: dict[str, int]
    ) -> None:
        self._fleet.forget(self._repo)
        self._fleet.generation_info.labels(
            repo=self._repo, generation=name, commit=commit, index_type=index_type
        ).set(1)
        self._fleet.vectors.labels(repo=self._repo).set(sum(counts.values()))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fleet.base, name)


@dataclasses.dataclass
class FleetMetrics:
    base: metrics_mod.Metrics
    stores: prom.Gauge
    generation_info: prom.Gauge
    vectors: prom.Gauge
    store_errors: prom.Counter

    @classmethod
    def create(cls) -> FleetMetrics:
        base = metrics_mod.Metrics.create()
        r = base.registry
        return cls(
            base=base,
            stores=prom.Gauge(
                "codeintel_fleet_stores",
                "Stores this process serves, by state (discovered, loaded, refused).",
                ["state"],
                registry=r,
            ),
            generation_info=prom.Gauge(
                "codeintel_fleet_generation_info",
                "The live generation of each loaded repository (value 1).",
                ["repo", "generation", "commit", "index_type"],
                registry=r,
            ),
            vectors=prom.Gauge(
                "codeintel_fleet_vectors",
                "Vectors (primary + secondary + tombstones) of each loaded repository.",
                ["repo"],
                registry=r,
            ),
            store_errors=prom.Counter(
                "codeintel_fleet_store_errors",
                "Stores refused or failing, by reason (load, manifest).",
                ["reason"],
                registry=r,
            ),
        )

    def forget(self, repo: str) -> None:
        """Drop a repository's per-repo series (unloaded, swapped or gone)."""
        for labels in list(self.generation_info._metrics):
            if labels[0] == repo:
                self.generation_info.remove(*labels)
        with contextlib.suppress(KeyError):
            self.vectors.remove(repo)


@dataclasses.dataclass(eq=False)
class StoreEntry:
    """One served store: where it is, and its generation manager while loaded."""

    name: str
    root: Path
    cache_dir: Path
    manager: generations_mod.GenerationManager | None = None
    last_used: float = 0.0
    busy: int = 0
    error: str | None = None
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)


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
            max_inflight=MAX_INFLIGHT_BATCHES,
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


class StoreSet:
    """The stores under a root that this shard serves, loaded on demand."""

    def __init__(
        self,
        settings: settings_mod.Settings,
        run: Any,
        executor: concurrent.futures.Executor,
        metrics: FleetMetrics,
    ) -> None:
        self.settings = settings
        self.fleet = settings.fleet
        self.root = Path(self.fleet.stores_root)
        base = settings.server.worktree_dir
        self._cache_base = Path(base) if base else Path(tempfile.gettempdir())
        self._cache_base = self._cache_base / "codeintel-worktrees"
        self._run = run
        self._executor = executor
        self.metrics = metrics
        self.entries: dict[str, StoreEntry] = {}
        self.scanned = asyncio.Event()
        # At most this many stores are in use at once, across all requests, so the
        # loaded set can always be cut back to max_loaded_stores (and the executor is
        # not flooded by one query over a thousand stores).
        self._slots = asyncio.Semaphore(self.fleet.max_loaded_stores or 64)

    # -- discovery -------------------------------------------------------------------------

    async def scan(self) -> None:
        """Pick up stores that appeared and drop those that disappeared."""
        found = await self._run(discover, self.root)
        mine = {
            name: root
            for name, root in found.items()
            if shard_of(name, self.fleet.shards) == self.fleet.shard_index
        }
        for name in sorted(set(self.entries) - set(mine)):
            entry = self.entries.pop(name)
            logger.info("store %s is gone; no longer served", name)
            await self._unload(entry)
        for name in sorted(set(mine) - set(self.entries)):
            key = hashlib.sha256(str(mine[name].resolve()).encode()).hexdigest()[:16]
            self.entries[name] = StoreEntry(name, mine[name], self._cache_base / key)
            logger.info("store %s discovered", name)
        self.metrics.stores.labels(state="discovered").set(len(self.entries))
        self.scanned.set()

    async def watch(self) -> None:
        """Rescan the root, refresh loaded stores' CURRENT, unload idle ones (cancel to stop)."""
        last_scan = 0.0
        while True:
            now = time.monotonic()
            try:
                if now - last_scan >= self.fleet.scan_interval_seconds:
                    await self.scan()
                    last_scan = now
                await self._refresh_loaded()
                await self._unload_idle()
            except Exception:
                logger.exception("store scan failed")
            await asyncio.sleep(max(0.05, self.settings.server.reload_interval_seconds))

    async def _refresh_loaded(self) -> None:
        for entry in list(self.entries.values()):
            if entry.manager is not None:
                await entry.manager.refresh()

    # -- loading and unloading ---------------------------------------------------------------

    def select(self, patterns: Sequence[str] | None, field: str = "repos") -> list[str]:
        """The served stores ``patterns`` select within the caller's scope (tools.select)."""
        return tools_mod.select(self.entries, patterns, field, audit=True)

    @contextlib.asynccontextmanager
    async def open(self, name: str) -> Any:
        """The store's generation manager, loading it first if needed; marks it in use.

        Checks the caller's scope again, so a path that forgot ``select`` still cannot
        open a hidden store."""
        entry = self.entries.get(name)
        if entry is None or not access.current().allows(name):
            raise errors.RepoNotFoundError(f"repository {name!r} is not served here", "repo")
        async with self._slots:
            entry.busy += 1
            try:
                manager = await self._load(entry)
                entry.last_used = time.monotonic()
                yield manager
            finally:
                entry.busy -= 1
                entry.last_used = time.monotonic()

    async def _load(self, entry: StoreEntry) -> generations_mod.GenerationManager:
        async with entry.lock:
            if entry.manager is not None and entry.manager.live is not None:
                return entry.manager
            manager = entry.manager or generations_mod.GenerationManager(
                self.settings.replace(store={"path": entry.root}),
                self._run,
                self._executor,
                _StoreMetrics(self.metrics, entry.name),  # type: ignore[arg-type]
                cache_dir=entry.cache_dir,
            )
            entry.manager = manager
            await manager.refresh()
            if manager.live is None:
                entry.error = manager.not_ready_reason()
                self.metrics.store_errors.labels(reason="load").inc()
                raise errors.NoGenerationError(f"repository {entry.name}: {entry.error}")
            entry.error = None
            self._count_loaded()
        await self._evict_over_limit(keep=entry)
        return manager

    async def _unload(self, entry: StoreEntry) -> None:
        async with entry.lock:
            manager, entry.manager = entry.manager, None
        if manager is not None:
            await self._run(manager.close)
            await self._run(worktree_mod.prune, entry.cache_dir, set())
            self.metrics.forget(entry.name)
            logger.info("store %s unloaded", entry.name)
        self._count_loaded()

    def _count_loaded(self) -> None:
        loaded = sum(1 for e in self.entries.values() if e.manager is not None)
        self.metrics.stores.labels(state="loaded").set(loaded)
        refused = sum(1 for e in self.entries.values() if e.error)
        self.metrics.stores.labels(state="refused").set(refused)

    async def _unload_idle(self) -> None:
        idle = self.fleet.idle_unload_seconds
        if idle <= 0:
            return
        now = time.monotonic()
        for entry in list(self.entries.values()):
            if entry.manager is not None and entry.busy == 0 and now - entry.last_used > idle:
                await self._unload(entry)

    async def _evict_over_limit(self, keep: StoreEntry) -> None:
        limit = self.fleet.max_loaded_stores
        loaded = [e for e in self.entries.values() if e.manager is not None and e is not keep]
        excess = len(loaded) + 1 - limit if limit > 0 else 0
        for entry in sorted(loaded, key=lambda e: e.last_used):
            if excess <= 0:
                break
            if entry.busy == 0:
                await self._unload(entry)
                excess -= 1

    def manifest(self, name: str) -> manifest_mod.Manifest | None:
        """The served (or, before the first load, the published) manifest of a store."""
        entry = self.entries[name]
        live = entry.manager.live if entry.manager is not None else None
        if live is not None:
            return live.manifest  # type: ignore[no-any-return]
        return read_manifest(entry.root)

    async def close(self) -> None:
        for entry in list(self.entries.values()):
            await self._unload(entry)


class FleetTools:
    """The catalogue over many stores: per-store Tools, merged."""

    def __init__(self, context: FleetContext) -> None:
        self._ctx = context
        self.stores = context.stores

    async def call(self, name: str, request: Any) -> dict[str, Any]:
        result: dict[str, Any] = await tools_mod.metered(
            self._ctx.metrics, name, getattr(self, name), request
        )
        return result

    def _tools(
        self, manager: generations_mod.GenerationManager, vector: np.ndarray | None = None
    ) -> tools_mod.Tools:
        """Single-store tools over one loaded store, with the batcher of its model (or,
        when the router sent the query vector, a batcher that searches with it)."""
        live = manager.live
        model = str(live.manifest.embedding.model) if live is not None else ""
        embedders = self._ctx.embedders

        def batcher_embedder() -> embedding_mod.Embedder:
            if vector is not None:
                return _Given(model, int(vector.shape[0]))  # type: ignore[return-value]
            return embedders.batcher(model)[0]

        batcher: Any = (
            _LazyBatcher(embedders, model)
            if vector is None
            else _VectorBatcher(vector, self._ctx.run)
        )
        return tools_mod.Tools(
            self._ctx.settings,
            manager,
            batcher,
            batcher_embedder,
            self._ctx.run,
            self._ctx.metrics,
        )

    async def _each(
        self, names: Sequence[str], tool: str, request: Any, vector: np.ndarray | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """Run ``tool`` on every named store at once: (tagged answers, skipped repo -> reason)."""
        single = request.model_copy(update={"repos": None})

        async def one(name: str) -> dict[str, Any]:
            async with self.stores.open(name) as manager:
                handler = getattr(self._tools(manager, vector), tool)
                answer: dict[str, Any] = await handler(single)
                return answer

        results = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
        answers: list[dict[str, Any]] = []
        skipped: dict[str, str] = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, errors.IndexFormatError | errors.EmbeddingError):
                skipped[name] = str(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                answers.append(merging.tag(name, result))
        if not answers and skipped:
            name, reason = next(iter(skipped.items()))
            raise errors.NoGenerationError(f"no selected repository can answer: {name}: {reason}")
        return answers, skipped

    def _check_models(self, names: Sequence[str]) -> dict[str, list[str]]:
        """One embedding model across the selection, or ModelMixError naming the groups."""
        groups: dict[str, list[str]] = {}
        for name in names:
            try:
                m = self.stores.manifest(name)
            except errors.CodeIntelError:
                continue
            if m is not None:
                groups.setdefault(str(m.embedding.model), []).append(name)
        if len(groups) > 1:
            raise errors.ModelMixError(groups)
        return groups

    async def semantic_search(self, req: models.SemanticSearchRequest) -> dict[str, Any]:
        names = self.stores.select(req.repos)
        if req.mode != "lexical":
            self._check_models(names)
        answers, skipped = await self._each(names, "semantic_search", req)
        return merging.semantic(answers, req.k, req.mode, skipped)

    async def semantic_search_vector(self, req: models.VectorSearchRequest) -> dict[str, Any]:
        """semantic_search with the query vector the router embedded once for all shards."""
        names = self.stores.select(req.request.repos)
        vector = req.vector_array()
        groups = self._check_models(names)
        if groups and req.model not in groups:
            raise errors.ModelMixError({req.model: ["(the router's query)"], **groups})
        inner = req.request
        answers, skipped = await self._each(names, "semantic_search", inner, vector)
        return merging.semantic(answers, inner.k, inner.mode, skipped)

    async def search_text(self, req: models.SearchTextRequest) -> dict[str, Any]:
        names = self.stores.select(req.repos)
        answers, skipped = await self._each(names, "search_text", req)
        return merging.text(answers, req.max_results, skipped)

    async def list_paths(self, req: models.ListPathsRequest) -> dict[str, Any]:
        names = self.stores.select(req.repos)
        answers, skipped = await self._each(names, "list_paths", req)
        return merging.paths(answers, req.max_results, skipped)

    def _one(self, req: Any) -> str:
        if req.repo is not None:
            return self.stores.select([req.repo], field="repo")[0]
        visible = self.stores.select(None)
        if len(visible) == 1:
            return visible[0]
        raise errors.QueryError(
            f"{len(visible)} repositories are served; name one in `repo` (list_repos shows them)",
            field="repo",
        )

    async def blame_range(self, req: models.BlameRangeRequest) -> dict[str, Any]:
        req.check()
        name = self._one(req)
        async with self.stores.open(name) as manager:
            answer = await self._tools(manager).blame_range(req.model_copy(update={"repo": None}))
        return merging.one(name, answer)

    async def file_history(self, req: models.FileHistoryRequest) -> dict[str, Any]:
        name = self._one(req)
        async with self.stores.open(name) as manager:
            answer = await self._tools(manager).file_history(req.model_copy(update={"repo": None}))
        return merging.one(name, answer)

    async def list_repos(self, req: models.ListReposRequest) -> dict[str, Any]:
        names = self.stores.select(req.repos)
        rows = await self._ctx.run(self._rows, names)
        return {"results": rows}

    def _rows(self, names: Sequence[str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for name in names:
            try:
                m = self.stores.manifest(name)
            except errors.CodeIntelError as e:
                rows.append(_unavailable(name, str(e)))
                continue
            if m is None:
                rows.append(_unavailable(name, "no generation published yet"))
                continue
            row = tools_mod.repo_info(name, m)
            error = self.stores.entries[name].error
            if error:
                row["error"] = error
            rows.append(row)
        return rows


class _LazyBatcher:
    """A Tools batcher that resolves the model's batcher on first use (503 if unservable)."""

    def __init__(self, embedders: QueryEmbedders, model: str) -> None:
        self._embedders = embedders
        self._model = model

    async def search(self, engine: Any, query: str, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        return await self._embedders.batcher(self._model)[1].search(engine, query, fetch)


class _VectorBatcher:
    """A Tools batcher for a query vector that arrived with the request: search only."""

    def __init__(self, vector: np.ndarray, run: Any) -> None:
        self._xq = np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32)
        self._run = run

    async def search(self, engine: Any, query: str, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        D, I = await self._run(engine.search, self._xq, fetch)
        return D[0], I[0]


@dataclasses.dataclass(frozen=True)
class _Given:
    """Stands in for the embedder when the vector was given: its model and dimension."""

    model: str
    dim: int


def _unavailable(name: str, reason: str) -> dict[str, Any]:
    return {
        "name": name,
        "url": "",
        "ref": "",
        "commit": "",
        "generation": "",
        "vectors": {},
        "index_type": "",
        "updated_at": "",
        "embedding_model": "",
        "embedding_dim": 0,
        "calibration": None,
        "error": reason,
    }


class FleetContext(context_mod.Runtime):
    """The long-lived state of a searcher serving many stores (the app's lifespan owns it)."""

    def __init__(
        self,
        settings: settings_mod.Settings,
        *,
        embedder: embedding_mod.Embedder | None = None,
    ) -> None:
        super().__init__(settings.server.workers, "codeintel-search")
        self.settings = settings
        self.fleet_metrics = FleetMetrics.create()
        self.metrics = self.fleet_metrics.base
        self.embedders = QueryEmbedders(
            settings, self.run, self.metrics.batch_size.observe, embedder
        )
        self.stores = StoreSet(settings, self.run, self.executor, self.fleet_metrics)
        self.tools = FleetTools(self)

    @property
    def service(self) -> FleetTools:
        return self.tools

    def known_repos(self) -> list[str]:
        """Every repository served here, for a Kubernetes reviewer (an unsharded pool)."""
        return sorted(self.stores.entries)

    async def start(self) -> None:
        self.spawn(self.embedders.start())
        self.spawn(self.stores.watch())

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
