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
    embedding = spec_mod.section(spec, "embedding")
    router = spec_mod.section(spec, "router")
    storage = spec_mod.section(spec, "storage")
    service_type = str(spec.get("serviceType") or "ClusterIP")
    if service_type not in spec_mod.SERVICE_TYPES:
        raise errors.ConfigError(
            f"spec.serviceType must be one of {', '.join(spec_mod.SERVICE_TYPES)}"
        )
    access = spec_mod.section(spec, "access")
    access_mode = str(access.get("mode") or "token")
    if access_mode not in ACCESS_MODES:
        raise errors.ConfigError(f"spec.access.mode must be one of {', '.join(ACCESS_MODES)}")
    tokens_secret = spec_mod.secret_key(access, "access.tokensSecret", DEFAULT_TOKENS_KEY)
    if access_mode == "tokensFile" and tokens_secret is None:
        raise errors.ConfigError("spec.access.tokensSecret is required with mode tokensFile")
    shards = spec_mod.integer(spec, "shards", 1, minimum=1, maximum=MAX_SHARDS)
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
        replicas=spec_mod.integer(spec, "replicas", 2, minimum=0, maximum=100),
        searcher=spec_mod.placement(spec),
        service_type=service_type,
        api_token=spec_mod.secret_key(spec, "apiTokenSecret", "token"),
        access_mode=access_mode,
        tokens_secret=tokens_secret,
        router_service_account=spec_mod.optional_str(access, "serviceAccountName"),
        allowed_hosts=_hosts(spec.get("allowedHosts")),
        embed_url=str(embedding.get("endpoint") or spec_mod.DEFAULT_EMBED_URL).rstrip("/"),
        embed_api_key=spec_mod.secret_key(embedding, "embedding.apiKeySecret", "api-key"),
        router_replicas=spec_mod.integer(router, "router.replicas", 2, minimum=0, maximum=100),
        router_resources={
            k: dict(v) for k, v in router_resources.items() if isinstance(v, Mapping)
        },
        storage_size=str(storage.get("size") or DEFAULT_POOL_SIZE),
        storage_class=spec_mod.optional_str(storage, "storageClassName"),
        existing_claim=spec_mod.optional_str(storage, "existingClaim"),
        delete_with_pool=bool(storage.get("deleteWithPool", False)),
    )


def _hosts(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise errors.ConfigError("spec.allowedHosts must be a list of host names")
    for host in raw:
        if not isinstance(host, str) or not _HOST.match(host):
            raise errors.ConfigError(f"spec.allowedHosts: {host!r} is not a host name")
    return tuple(raw)
