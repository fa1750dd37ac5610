"""The operator's own typed configuration, read once at startup.

The operator does not use :class:`codeintel.core.settings.Settings`: that object
configures one store and one embedder, while the operator renders pods for many
CodeIndexes. What it needs instead — images, default resources, Job limits, the
update schedule — is here, fed by ``CODEINTEL_OPERATOR_*`` environment variables
that the Helm chart sets. :func:`OperatorSettings.from_env` runs in ``run()``
and the object is kept in kopf's ``memo``; nothing here runs at import time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from codeintel.core import errors

HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
"""A Host name a searcher may accept (no scheme, no port); the CRDs' pattern for allowedHosts."""

ENV_PREFIX = "CODEINTEL_OPERATOR_"

_DURATION = re.compile(r"(\d+)([smhd])")
_DURATION_FULL = re.compile(r"^(\d+[smhd])+$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30s``, ``15m``, ``1h30m`` or ``1d`` (the CRD's pattern)."""
    value = text.strip()
    if not _DURATION_FULL.match(value):
        raise errors.ConfigError(f"not a duration like 15m or 1h30m: {text!r}")
    return float(sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION.findall(value)))


@dataclasses.dataclass(frozen=True, slots=True)
class OperatorSettings:
    indexer_image: str = "ghcr.io/codeintel/indexer:0.1.0"
    """Image of indexer Job pods (CUDA + faiss-gpu; it runs ``codeintel index …``)."""

    searcher_image: str = "ghcr.io/codeintel/searcher:0.1.0"
    """Image of searcher pods (it runs ``codeintel serve``)."""

    image_pull_policy: str = "IfNotPresent"
    """Pull policy of both images; ``Always`` suits moving tags in development."""

    indexer_resources: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {
            "requests": {"cpu": "1", "memory": "4Gi"},
            "limits": {"memory": "16Gi"},
        }
    )
    """Resources of an indexer pod when the CodeIndex sets none. Chunking, git and
    FAISS training of ~1M vectors fit in 16Gi; the CPU limit is left off so a build
    uses idle cores."""

    searcher_resources: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {
            "requests": {"cpu": "250m", "memory": "1Gi"},
            "limits": {"memory": "4Gi"},
        }
    )
    """Resources of a searcher pod when the CodeIndex sets none. A searcher maps
    the index into memory: size it with ``estimate_memory_usage`` (docs/operations.md)."""

    router_resources: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"memory": "1Gi"},
        }
    )
    """Resources of a SearchPool's router pod when the pool sets none. It holds no index,
    only the answers of one request's shards while it merges them."""

    job_backoff_limit: int = 2
    """Pod retries inside one indexer Job before the Job fails (then the operator's own backoff)."""

    job_active_deadline_seconds: int = 6 * 3600
    """Wall-clock limit of one indexer Job; six hours covers a full GPU build of a large monorepo."""

    job_ttl_seconds_after_finished: int = 86400
    """How long finished Jobs (and their pods' logs) stay for inspection. The operator
    reads the result well before; a Job it never saw finish is counted as lost and retried."""

    default_update_interval: str = "15m"
    """Update interval of a CodeIndex that sets none (``spec.updates.interval``)."""

    poll_interval_seconds: float = 30.0
    """Period of each CodeIndex's timer, which starts scheduled updates and retries and
    catches Jobs whose events were missed. Job events trigger the same check at once."""

    progress_interval_seconds: float = 20.0
    """Least seconds between two ``status.progress`` writes for one running Job (read from
    its pod's log at each check, so at most every ``poll_interval_seconds`` as well):
    a ``kubectl get -w`` stays alive without a status write per log line."""

    retry_base_seconds: float = 30.0
    """Delay before retrying after the first failed Job; it doubles with each failure."""

    retry_max_seconds: float = 3600.0
    """Longest delay between retries of failed Jobs."""

    store_mount_path: str = "/store"
    """Where the store volume is mounted in indexer and searcher pods."""

    pool_mount_path: str = "/pool"
    """Where a SearchPool's volume is mounted; member stores are ``<it>/<namespace>/<name>``."""

    cluster_domain: str = "cluster.local"
    """The cluster's DNS domain, in the headless Service name a SearchPool's router resolves."""

    allowed_hosts: tuple[str, ...] = ()
    """Host names every searcher and router the operator renders answers to, REST and MCP
    alike, besides its Service's own names and a resource's ``allowedHosts`` (the chart's
    ``searcher.allowedHosts``: an Ingress or gateway name in front of all of them).
    Comma-separated in ``CODEINTEL_OPERATOR_ALLOWED_HOSTS``; lowercased."""

    searcher_port: int = 8080
    """Container and Service port of the searchers (REST, MCP, probes; token-guarded)."""

    searcher_metrics_port: int = 9090
    """Container and Service port ``metrics`` of the searchers: ``/metrics`` without the
    API token, which the chart's ServiceMonitor scrapes; 0 renders no metrics port."""

    run_as_user: int = 10001
    """UID of indexer and searcher pods; the images create this user."""

    fs_group: int = 10001
    """Group that owns the store volume, so the non-root indexer can write it."""

    log_format: str = "json"
    """``json`` (one object per line, for log collectors in the cluster) or ``plain``."""

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> OperatorSettings:
        """Defaults, then ``CODEINTEL_OPERATOR_<FIELD>`` variables, then ``overrides``.

        Resources are JSON objects (``{"requests": {"cpu": "1"}}``).
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            var = f"{ENV_PREFIX}{field.name.upper()}"
            if var in env:
                values[field.name] = _parse(var, env[var], field.type)
        known = {f.name for f in dataclasses.fields(cls)}
        for key, value in overrides.items():
            if key not in known:
                raise errors.ConfigError(f"unknown operator setting {key}")
            if value is not None:
                values[key] = value
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse values that cannot work, naming the field."""
        parse_duration(self.default_update_interval)
        if self.poll_interval_seconds <= 0:
            raise errors.ConfigError("poll_interval_seconds must be positive")
        if self.progress_interval_seconds <= 0:
            raise errors.ConfigError("progress_interval_seconds must be positive")
        if self.retry_base_seconds <= 0 or self.retry_max_seconds < self.retry_base_seconds:
            raise errors.ConfigError("retry_base_seconds must be > 0 and <= retry_max_seconds")
        if self.image_pull_policy not in {"Always", "IfNotPresent", "Never"}:
            raise errors.ConfigError(f"image_pull_policy {self.image_pull_policy!r} is not valid")
        if self.log_format not in {"json", "plain"}:
            raise errors.ConfigError(f"log_format must be json or plain, not {self.log_format!r}")
        for host in self.allowed_hosts:
            if len(host) > 253 or not HOST_NAME.fullmatch(host):
                raise errors.ConfigError(
                    f"allowed_hosts: {host!r} is not a DNS name or IPv4 address without port"
                )
        for name in (
            "job_backoff_limit",
            "job_active_deadline_seconds",
            "searcher_port",
            "searcher_metrics_port",
        ):
            if getattr(self, name) < 0:
                raise errors.ConfigError(f"{name} must not be negative")

    def retry_delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failed Jobs (exponential, capped)."""
        if failures <= 0:
            return 0.0
        return float(min(self.retry_max_seconds, self.retry_base_seconds * 2 ** (failures - 1)))


def _parse(var: str, raw: str, annotation: Any) -> Any:
    """Convert one environment string to the field's type, naming the variable on failure."""
    kind = str(annotation)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind.startswith("tuple"):
            return tuple(dict.fromkeys(h.strip().lower() for h in raw.split(",") if h.strip()))
        if kind.startswith("Mapping"):
            value = json.loads(raw)
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
            return value
    except ValueError as e:
        raise errors.ConfigError(f"{var}={raw!r} is not a valid {kind}") from e
    return raw
