"""A SearchPool spec read into typed values, with the CRD's defaults applied.

As for CodeIndex (:mod:`codeintel.operator.spec`), the operator applies the
defaults itself rather than trusting the API server to have done it, and every
default here matches ``crds/searchpool.yaml`` (a test compares them). A spec
this module refuses raises :class:`~codeintel.core.errors.ConfigError` naming
the field.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from codeintel.core import errors
from codeintel.operator import spec as spec_mod

DEFAULT_POOL_SIZE = "100Gi"
ACCESS_MODES = ("token", "tokensFile", "kubernetes")
"""spec.access.mode: the shared token only; a tokens file (Secret) of scoped tokens;
TokenReview + SubjectAccessReview against the API server."""
DEFAULT_TOKENS_KEY = "tokens.json"
MAX_SHARDS = 256
_HOST = re.compile(r"^[A-Za-z0-9*]([A-Za-z0-9.*-]*[A-Za-z0-9])?(:[0-9]+)?$")


@dataclasses.dataclass(frozen=True, slots=True)
class SearchPoolSpec:
    """``spec`` of one SearchPool with every default filled in."""

    shards: int = 1
    replicas: int = 2
    searcher: spec_mod.PodPlacement = dataclasses.field(default_factory=spec_mod.PodPlacement)
    service_type: str = "ClusterIP"
    api_token: spec_mod.SecretKey | None = None
    access_mode: str = "token"
    tokens_secret: spec_mod.SecretKey | None = None
    router_service_account: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    embed_url: str = spec_mod.DEFAULT_EMBED_URL
    embed_api_key: spec_mod.SecretKey | None = None
    router_replicas: int = 2
    router_resources: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    storage_size: str = DEFAULT_POOL_SIZE
    storage_class: str | None = None
    existing_claim: str | None = None
    delete_with_pool: bool = False

    @property
    def sharded(self) -> bool:
        """More than one shard: StatefulSets, a headless Service and a router."""
        return self.shards > 1


def parse(spec: Mapping[str, Any]) -> SearchPoolSpec:
    """Read ``spec`` (a SearchPool's ``.spec``) or raise ``ConfigError`` naming the field."""
    embedding = _section(spec, "embedding")
    router = _section(spec, "router")
    storage = _section(spec, "storage")
    service_type = str(spec.get("serviceType") or "ClusterIP")
    if service_type not in spec_mod.SERVICE_TYPES:
        raise errors.ConfigError(
            f"spec.serviceType must be one of {', '.join(spec_mod.SERVICE_TYPES)}"
        )
    access = _section(spec, "access")
    access_mode = str(access.get("mode") or "token")
    if access_mode not in ACCESS_MODES:
        raise errors.ConfigError(f"spec.access.mode must be one of {', '.join(ACCESS_MODES)}")
    tokens_secret = _secret(access, "tokensSecret", DEFAULT_TOKENS_KEY, "spec.access.")
    if access_mode == "tokensFile" and tokens_secret is None:
        raise errors.ConfigError("spec.access.tokensSecret is required with mode tokensFile")
    shards = _int(spec, "shards", 1, 1, MAX_SHARDS)
    if access_mode != "token" and shards > 1 and not spec.get("apiTokenSecret"):
        # Otherwise the shards answer anyone who reaches them past the router.
        raise errors.ConfigError(
            "spec.apiTokenSecret is required with spec.access.mode "
            f"{access_mode} on a sharded pool: it is the router's credential to its shards"
        )
    router_resources = router.get("resources") or {}
    if not isinstance(router_resources, Mapping):
        raise errors.ConfigError("spec.router.resources must be an object")
    return SearchPoolSpec(
        shards=shards,
        replicas=_int(spec, "replicas", 2, 0, 100),
        searcher=_placement(spec),
        service_type=service_type,
        api_token=_secret(spec, "apiTokenSecret", "token"),
        access_mode=access_mode,
        tokens_secret=tokens_secret,
        router_service_account=_optional_str(access, "serviceAccountName"),
        allowed_hosts=_hosts(spec.get("allowedHosts")),
        embed_url=str(embedding.get("endpoint") or spec_mod.DEFAULT_EMBED_URL).rstrip("/"),
        embed_api_key=_secret(embedding, "apiKeySecret", "api-key", "spec.embedding."),
        router_replicas=_int(router, "replicas", 2, 0, 100, "spec.router."),
        router_resources={
            k: dict(v) for k, v in router_resources.items() if isinstance(v, Mapping)
        },
        storage_size=str(storage.get("size") or DEFAULT_POOL_SIZE),
        storage_class=_optional_str(storage, "storageClassName"),
        existing_claim=_optional_str(storage, "existingClaim"),
        delete_with_pool=bool(storage.get("deleteWithPool", False)),
    )


def _section(spec: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = spec.get(name) or {}
    if not isinstance(value, Mapping):
        raise errors.ConfigError(f"spec.{name} must be an object")
    return value


def _optional_str(section: Mapping[str, Any], key: str) -> str | None:
    value = section.get(key)
    return str(value) if value else None


def _int(
    section: Mapping[str, Any],
    key: str,
    default: int,
    minimum: int,
    maximum: int,
    where: str = "spec.",
) -> int:
    raw = section.get(key)
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise errors.ConfigError(f"{where}{key} must be an integer, not {raw!r}")
    if not minimum <= raw <= maximum:
        raise errors.ConfigError(f"{where}{key} must be between {minimum} and {maximum}, not {raw}")
    return raw


def _secret(
    section: Mapping[str, Any], key: str, default_key: str, where: str = "spec."
) -> spec_mod.SecretKey | None:
    ref = section.get(key)
    if not ref:
        return None
    if not isinstance(ref, Mapping) or not ref.get("name"):
        raise errors.ConfigError(f"{where}{key} needs a Secret name")
    return spec_mod.SecretKey(name=str(ref["name"]), key=str(ref.get("key") or default_key))


def _hosts(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise errors.ConfigError("spec.allowedHosts must be a list of host names")
    for host in raw:
        if not isinstance(host, str) or not _HOST.match(host):
            raise errors.ConfigError(f"spec.allowedHosts: {host!r} is not a host name")
    return tuple(raw)


def _placement(spec: Mapping[str, Any]) -> spec_mod.PodPlacement:
    resources = spec.get("resources") or {}
    node_selector = spec.get("nodeSelector") or {}
    tolerations = spec.get("tolerations") or []
    if not isinstance(resources, Mapping) or not isinstance(node_selector, Mapping):
        raise errors.ConfigError("spec.resources and spec.nodeSelector must be objects")
    if not isinstance(tolerations, list) or not all(isinstance(t, Mapping) for t in tolerations):
        raise errors.ConfigError("spec.tolerations must be a list of objects")
    return spec_mod.PodPlacement(
        gpu=bool(spec.get("gpu", False)),
        resources={k: dict(v) for k, v in resources.items() if isinstance(v, Mapping)},
        node_selector={str(k): str(v) for k, v in node_selector.items()},
        tolerations=tuple(dict(t) for t in tolerations),
    )
