"""The metrics of a searcher serving many stores: the request metrics plus per-store series.

Each store's :class:`~generations.GenerationManager` reports through a
:class:`StoreMetrics` that folds its load outcomes into the shared request
metrics and keeps one ``codeintel_fleet_generation_info`` series per loaded
repository, dropped again when the store is unloaded or gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import prometheus_client as prom

from codeintel.searcher import metrics as metrics_mod


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
