"""The searcher's Prometheus metrics (docs/architecture.md, *Searcher*), one registry per app.

Every series a searcher process exposes is declared here, side by side: the request
and generation metrics of :class:`Metrics` that every app has, the per-store series a
searcher serving many stores adds (:class:`FleetMetrics`; each store's
:class:`~generations.GenerationManager` reports through a :class:`StoreMetrics` that
folds its load outcomes into the shared metrics and keeps one
``codeintel_fleet_generation_info`` series per loaded repository, dropped again when the
store is unloaded or gone), and the router's per-shard series (:class:`RouterMetrics`).

A registry per app, not the process-wide default, so tests and benchmarks can
run several apps in one process without duplicate-series errors; ``/metrics``
exposes this registry followed by the default one, where core modules register
theirs (``codeintel_embed_seconds``, the OpenAI client's ``vllm_http_connections_open``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import prometheus_client as prom

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclasses.dataclass
class Metrics:
    registry: prom.CollectorRegistry
    request_seconds: prom.Histogram
    requests_total: prom.Counter
    inflight_requests: prom.Gauge
    index_vectors: prom.Gauge
    generation_info: prom.Gauge
    batch_size: prom.Histogram
    generation_loads: prom.Counter
    generation_fallback: prom.Gauge
    generation_corruptions: prom.Counter
    dense_refusals: prom.Counter

    @classmethod
    def create(cls) -> Metrics:
        r = prom.CollectorRegistry(auto_describe=True)
        return cls(
            registry=r,
            request_seconds=prom.Histogram(
                "codeintel_request_seconds",
                "Time to answer one tool call, by tool.",
                ["tool"],
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            requests_total=prom.Counter(
                "codeintel_requests",
                "Tool calls by tool and outcome (ok, or the HTTP status of the error).",
                ["tool", "status"],
                registry=r,
            ),
            inflight_requests=prom.Gauge(
                "codeintel_inflight_requests", "Tool calls being answered now.", registry=r
            ),
            index_vectors=prom.Gauge(
                "codeintel_index_vectors",
                "Vectors in the live generation by kind (primary, secondary, tombstones).",
                ["kind"],
                registry=r,
            ),
            generation_info=prom.Gauge(
                "codeintel_index_generation_info",
                "The live generation (value 1), labelled with its commit and index type.",
                ["generation", "commit", "index_type"],
                registry=r,
            ),
            batch_size=prom.Histogram(
                "codeintel_query_batch_size",
                "Queries embedded and searched together by micro-batching.",
                buckets=(1, 2, 4, 8, 16, 32, 64, 128),
                registry=r,
            ),
            generation_loads=prom.Counter(
                "codeintel_generation_loads",
                "Attempts to load a generation, by result: ok, refused_format, damaged, failed, "
                "fallback (an older generation loaded because the current one cannot be "
                "served) or reloaded (reopened after a read error, its checksums intact).",
                ["result"],
                registry=r,
            ),
            generation_fallback=prom.Gauge(
                "codeintel_generation_fallback",
                "1 while the served generation is not the one CURRENT names (CURRENT is "
                "unreadable, or its generation was refused or found damaged); see /v1/index.",
                registry=r,
            ),
            generation_corruptions=prom.Counter(
                "codeintel_generation_corruptions",
                "Requests that hit a damaged file of the served generation (e.g. chunks.sqlite).",
                ["generation"],
                registry=r,
            ),
            dense_refusals=prom.Counter(
                "codeintel_dense_refusals",
                "Semantic/hybrid queries refused because the query embedder does not match "
                "the generation (reason: model_mismatch, dimension_mismatch).",
                ["reason"],
                registry=r,
            ),
        )

    def set_generation(
        self, name: str, commit: str, index_type: str, counts: dict[str, int]
    ) -> None:
        """Point the info gauge at the live generation only, and publish its vector counts."""
        self.generation_info.clear()
        self.generation_info.labels(generation=name, commit=commit, index_type=index_type).set(1)
        for kind, value in counts.items():
            self.index_vectors.labels(kind=kind).set(value)

    def exposition(self) -> bytes:
        """Text format of this registry, then the process-wide one."""
        return prom.generate_latest(self.registry) + prom.generate_latest(prom.REGISTRY)


# -- a searcher serving many stores (searcher/fleet.py) ------------------------------------


class StoreMetrics:
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
    base: Metrics
    stores: prom.Gauge
    generation_info: prom.Gauge
    vectors: prom.Gauge
    store_errors: prom.Counter

    @classmethod
    def create(cls) -> FleetMetrics:
        base = Metrics.create()
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


# -- the router (searcher/router.py, searcher/shard_fanout.py) -----------------------------


@dataclasses.dataclass
class RouterMetrics:
    base: Metrics
    shard_seconds: prom.Histogram
    shard_failures: prom.Counter
    partial_answers: prom.Counter
    shard_ejections: prom.Counter
    replicas_ejected: prom.Gauge

    @classmethod
    def create(cls) -> RouterMetrics:
        base = Metrics.create()
        r = base.registry
        return cls(
            base=base,
            shard_seconds=prom.Histogram(
                "codeintel_router_shard_seconds",
                "Time one shard took to answer one fanned-out request.",
                ["shard"],
                registry=r,
            ),
            shard_failures=prom.Counter(
                "codeintel_router_shard_failures",
                "Shard requests that failed, by shard and reason (timeout, connect, status).",
                ["shard", "reason"],
                registry=r,
            ),
            partial_answers=prom.Counter(
                "codeintel_router_partial_answers",
                "Answers sent without every shard (partial: true).",
                registry=r,
            ),
            shard_ejections=prom.Counter(
                "codeintel_router_shard_ejections",
                "Shard replicas left out of queries after a timeout (searcher/ejection.py).",
                ["shard"],
                registry=r,
            ),
            replicas_ejected=prom.Gauge(
                "codeintel_router_replicas_ejected",
                "Shard replicas out of queries right now, waiting for a probe to answer.",
                registry=r,
            ),
        )
