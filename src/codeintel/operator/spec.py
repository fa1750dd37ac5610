"""A CodeIndex spec read into typed values, with the CRD's defaults applied.

The API server applies the CRD's schema defaults, but the operator does not rely
on it: an object created before a default was added, or served by a test
emulator, still reads the same here. Every default below matches the one in
``crds/codeindex.yaml`` (a test compares them). A spec this module refuses raises
:class:`~codeintel.core.errors.ConfigError`, which the handlers turn into a
permanent failure with the message in the ``Degraded`` condition.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Mapping
from typing import Any

from codeintel.core import errors
from codeintel.core import settings as core_settings
from codeintel.operator import settings as settings_mod

DEFAULT_EMBED_URL = "http://codeintel-embed:8000/v1"
DEFAULT_EMBED_MODEL = core_settings.DEFAULT_MODEL
HOST_NAME = settings_mod.HOST_NAME
MAX_ALLOWED_HOSTS = 32
ACCESS_MODES = ("ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
MAX_POOL_NAME = 40
POOL_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")


@dataclasses.dataclass(frozen=True, slots=True)
class SecretKey:
    """A key of a Secret in the CodeIndex's namespace."""

    name: str
    key: str


@dataclasses.dataclass(frozen=True, slots=True)
class PodPlacement:
    """What a CodeIndex says about one kind of pod (indexer or searcher)."""

    gpu: bool = False
    resources: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class CodeIndexSpec:
    """``spec`` of one CodeIndex with every default filled in."""

    repo_url: str
    ref: str = "main"
    credentials_secret: str | None = None
    embed_url: str = DEFAULT_EMBED_URL
    embed_model: str = DEFAULT_EMBED_MODEL
    embed_dim: int | None = None
    embed_api_key: SecretKey | None = None
    nprobe: int = 0
    merge_threshold: int = 10_000
    history: bool = True
    updates_enabled: bool = True
    update_interval_seconds: float = 900.0
    indexer: PodPlacement = dataclasses.field(default_factory=PodPlacement)
    indexer_backoff_limit: int | None = None
    indexer_active_deadline_seconds: int | None = None
    searcher: PodPlacement = dataclasses.field(default_factory=PodPlacement)
    pool: str | None = None
    """A SearchPool in the same namespace that holds the store and serves it; ``None``: own searchers."""
    replicas: int = 2
    service_type: str = "ClusterIP"
    api_token: SecretKey | None = None
    allowed_hosts: tuple[str, ...] = ()
    storage_size: str = "10Gi"
    storage_class: str | None = None
    access_mode: str = "ReadWriteMany"
    existing_claim: str | None = None
    delete_with_index: bool = False

    @property
    def embedding_fingerprint(self) -> dict[str, Any]:
        """What the vectors depend on: a change here makes every stored vector useless."""
        return {"model": self.embed_model, "dimension": self.embed_dim or 0}


def parse(spec: Mapping[str, Any], defaults: settings_mod.OperatorSettings) -> CodeIndexSpec:
    """Read ``spec`` (a CodeIndex's ``.spec``) or raise ``ConfigError`` naming the field."""
    repo = section(spec, "repo")
    url = repo.get("url")
    if not isinstance(url, str) or not url.strip():
        raise errors.ConfigError("spec.repo.url is required")
    embedding = section(spec, "embedding")
    index = section(spec, "index")
    updates = section(spec, "updates")
    indexer = section(spec, "indexer")
    searcher = section(spec, "searcher")
    storage = section(spec, "storage")

    interval = str(updates.get("interval") or defaults.default_update_interval)
    try:
        interval_seconds = settings_mod.parse_duration(interval)
    except errors.ConfigError as e:
        raise errors.ConfigError(f"spec.updates.interval: {e}") from e
    if interval_seconds <= 0:
        raise errors.ConfigError("spec.updates.interval must be longer than 0s")

    access_mode = str(storage.get("accessMode", "ReadWriteMany"))
    if access_mode not in ACCESS_MODES:
        raise errors.ConfigError(
            f"spec.storage.accessMode must be one of {', '.join(ACCESS_MODES)}"
        )
    service_type = str(searcher.get("serviceType", "ClusterIP"))
    if service_type not in SERVICE_TYPES:
        raise errors.ConfigError(
            f"spec.searcher.serviceType must be one of {', '.join(SERVICE_TYPES)}"
        )

    return CodeIndexSpec(
        repo_url=url.strip(),
        ref=str(repo.get("ref") or "main"),
        credentials_secret=optional_str(repo, "credentialsSecret"),
        embed_url=str(embedding.get("endpoint") or DEFAULT_EMBED_URL).rstrip("/"),
        embed_model=str(embedding.get("model") or DEFAULT_EMBED_MODEL),
        embed_dim=integer(embedding, "embedding.dimension", None, minimum=1),
        embed_api_key=secret_key(embedding, "embedding.apiKeySecret", "api-key"),
        nprobe=integer(index, "index.nprobe", 0, minimum=0),
        merge_threshold=integer(index, "index.mergeThreshold", 10_000, minimum=0),
        history=_bool(index, "index.history", True),
        updates_enabled=bool(updates.get("enabled", True)),
        update_interval_seconds=interval_seconds,
        indexer=placement(indexer, "indexer"),
        indexer_backoff_limit=integer(indexer, "indexer.backoffLimit", None, minimum=0),
        indexer_active_deadline_seconds=integer(
            indexer, "indexer.activeDeadlineSeconds", None, minimum=1
        ),
        searcher=placement(searcher, "searcher"),
        pool=parse_pool_name(searcher.get("pool"), "spec.searcher.pool"),
        replicas=integer(searcher, "searcher.replicas", 2, minimum=0),
        service_type=service_type,
        api_token=secret_key(searcher, "searcher.apiTokenSecret", "token"),
        allowed_hosts=parse_allowed_hosts(searcher, "searcher.allowedHosts"),
        storage_size=str(storage.get("size") or "10Gi"),
        storage_class=optional_str(storage, "storageClassName"),
        access_mode=access_mode,
        existing_claim=optional_str(storage, "existingClaim"),
        delete_with_index=bool(storage.get("deleteWithIndex", False)),
    )


def parse_pool_name(raw: Any, field: str) -> str | None:
    """A SearchPool name: a DNS label of at most 40 characters starting with a letter, so
    every object the pool renders keeps a predictable name (its router finds shards by it)."""
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or not POOL_NAME.match(raw):
        raise errors.ConfigError(
            f"{field} must be a DNS label of at most {MAX_POOL_NAME} characters "
            f"(a-z, 0-9, '-', starting with a letter), not {raw!r}"
        )
    return raw


def section(spec: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """``spec.<name>``, an object (empty when absent)."""
    value = spec.get(name) or {}
    if not isinstance(value, Mapping):
        raise errors.ConfigError(f"spec.{name} must be an object")
    return value


def optional_str(section: Mapping[str, Any], key: str) -> str | None:
    """A string field, None when absent or empty."""
    value = section.get(key)
    return str(value) if value else None


_Default = typing.TypeVar("_Default", int, None)
"""``integer``'s default: an int makes the field always an int; None keeps it optional."""


def integer(
    section: Mapping[str, Any],
    field: str,
    default: _Default,
    *,
    minimum: int,
    maximum: int | None = None,
) -> int | _Default:
    """An integer field (``field`` is its path under spec, for the error message)."""
    raw = section.get(field.rsplit(".", 1)[-1])
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise errors.ConfigError(f"spec.{field} must be an integer, not {raw!r}")
    if raw < minimum or (maximum is not None and raw > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise errors.ConfigError(f"spec.{field} must be {bound}, not {raw}")
    return raw


def _bool(section: Mapping[str, Any], field: str, default: bool) -> bool:
    """A boolean field (``field`` is its path under spec, for the error message)."""
    raw = section.get(field.rsplit(".", 1)[-1])
    if raw is None:
        return default
    if not isinstance(raw, bool):
        raise errors.ConfigError(f"spec.{field} must be true or false, not {raw!r}")
    return raw


def parse_allowed_hosts(section: Mapping[str, Any], field: str) -> tuple[str, ...]:
    """Extra Host names for MCP at ``spec.<field>``, lowercased, each checked like the CRD does."""
    raw = section.get(field.rsplit(".", 1)[-1]) or []
    if not isinstance(raw, list):
        raise errors.ConfigError(f"spec.{field} must be a list of host names")
    if len(raw) > MAX_ALLOWED_HOSTS:
        raise errors.ConfigError(f"spec.{field} holds at most {MAX_ALLOWED_HOSTS} names")
    names: list[str] = []
    for i, name in enumerate(raw):
        if not isinstance(name, str) or len(name) > 253 or not HOST_NAME.fullmatch(name):
            raise errors.ConfigError(
                f"spec.{field}[{i}] must be a DNS name or IPv4 address without port, not {name!r}"
            )
        if name.lower() not in names:
            names.append(name.lower())
    return tuple(names)


def secret_key(section: Mapping[str, Any], field: str, default_key: str) -> SecretKey | None:
    """A ``{name, key}`` Secret reference at ``spec.<field>``, None when absent."""
    ref = section.get(field.rsplit(".", 1)[-1])
    if not ref:
        return None
    if not isinstance(ref, Mapping) or not ref.get("name"):
        raise errors.ConfigError(f"spec.{field} needs a Secret name")
    return SecretKey(name=str(ref["name"]), key=str(ref.get("key") or default_key))


def placement(section: Mapping[str, Any], name: str = "") -> PodPlacement:
    """Pod placement (gpu, resources, nodeSelector, tolerations) of ``spec.<name>``, or of
    ``spec`` itself when ``name`` is empty (a SearchPool's searchers)."""
    where = f"spec.{name}." if name else "spec."
    resources = section.get("resources") or {}
    node_selector = section.get("nodeSelector") or {}
    tolerations = section.get("tolerations") or []
    if not isinstance(resources, Mapping) or not isinstance(node_selector, Mapping):
        raise errors.ConfigError(f"{where}resources and {where}nodeSelector must be objects")
    if not isinstance(tolerations, list) or not all(isinstance(t, Mapping) for t in tolerations):
        raise errors.ConfigError(f"{where}tolerations must be a list of objects")
    return PodPlacement(
        gpu=bool(section.get("gpu", False)),
        resources={k: dict(v) for k, v in resources.items() if isinstance(v, Mapping)},
        node_selector={str(k): str(v) for k, v in node_selector.items()},
        tolerations=tuple(dict(t) for t in tolerations),
    )
