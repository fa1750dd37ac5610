"""Kubernetes-native access for a pool's router: TokenReview, then SubjectAccessReview.

kube-rbac-proxy's pattern. The caller presents a ServiceAccount or user token;
a TokenReview asks the API server who that is (username, uid, groups, extra);
for each repository ``namespace/name`` a SubjectAccessReview asks whether that
identity may ``get`` the CodeIndex ``name`` in ``namespace`` (group
``codeintel.io``, resource ``codeindexes``). The allowed repositories become the
caller's :class:`~access.Scope`, which the router forwards to its shards.

Decisions are cached: an identity by the sha256 of its token, a permission by
(identity, repository); allowals for ``allow_ttl``, denials and unknown tokens
for ``deny_ttl`` (never longer than an allowal, so a new RoleBinding shows
quickly), at most ``max_entries`` of each, least recently used first. The hit
rate is exported (``codeintel_access_review_cache_hit_ratio``). A review that fails
(API server down, 5xx) is not cached and answers 401 for the token, or leaves
the repository out: access fails closed.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import logging
import os
import ssl
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
import prometheus_client as prom

from codeintel.core import errors
from codeintel.core import settings as settings_mod
from codeintel.searcher import access

logger = logging.getLogger(__name__)

GROUP = "codeintel.io"
RESOURCE = "codeindexes"
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"  # noqa: S105 - a path
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
MAX_CONCURRENT_REVIEWS = 16
"""SubjectAccessReviews in flight at once for one caller's first request."""

V = TypeVar("V")


class TTLCache(Generic[V]):
    """A bounded LRU map whose entries expire, each with its own time to live."""

    def __init__(self, max_entries: int, clock: Callable[[], float]) -> None:
        self.max_entries = max(1, max_entries)
        self._clock = clock
        self._items: collections.OrderedDict[Any, tuple[float, V]] = collections.OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Any) -> V | None:
        found = self._items.get(key)
        if found is None or found[0] <= self._clock():
            if found is not None:
                del self._items[key]
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return found[1]

    def put(self, key: Any, value: V, ttl: float) -> None:
        if ttl <= 0:
            return
        self._items[key] = (self._clock() + ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


@dataclasses.dataclass(frozen=True, slots=True)
class User:
    """Who a TokenReview said the token belongs to (what a SubjectAccessReview asks about)."""

    username: str
    uid: str
    groups: tuple[str, ...]
    extra: tuple[tuple[str, tuple[str, ...]], ...]

    def spec(self) -> dict[str, Any]:
        return {
            "user": self.username,
            "uid": self.uid,
            "groups": list(self.groups),
            "extra": {k: list(v) for k, v in self.extra},
        }


class KubeReviewer:
    """Bearer token -> scope, by asking the API server (see the module docstring)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        token_file: Path | None,
        *,
        allow_ttl: float = 30.0,
        deny_ttl: float = 5.0,
        max_entries: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if deny_ttl > allow_ttl:
            raise errors.ConfigError(
                f"kube_deny_ttl_seconds ({deny_ttl:g}) may not exceed "
                f"kube_allow_ttl_seconds ({allow_ttl:g})"
            )
        self.client = client
        self.token_file = token_file
        self.allow_ttl = allow_ttl
        self.deny_ttl = deny_ttl
        self.users: TTLCache[User | bool] = TTLCache(max_entries, clock)
        """sha256(token) -> the user, or False for a token that does not authenticate."""
        self.decisions: TTLCache[bool] = TTLCache(max_entries, clock)
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_REVIEWS)

    @classmethod
    def from_settings(cls, server: settings_mod.ServerSettings) -> KubeReviewer:
        url = server.kube_api_url
        if not url:
            host = os.environ.get("KUBERNETES_SERVICE_HOST")
            port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
            if not host:
                raise errors.ConfigError(
                    "kube_auth needs the API server: run in a pod or set CODEINTEL_SERVER_KUBE_API_URL"
                )
            url = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        verify: ssl.SSLContext | bool = True
        if Path(server.kube_ca_file).is_file():
            verify = ssl.create_default_context(cafile=server.kube_ca_file)
        client = httpx.AsyncClient(base_url=url, verify=verify, timeout=httpx.Timeout(5.0))
        token = Path(server.kube_token_file) if server.kube_token_file else None
        return cls(
            client,
            token,
            allow_ttl=server.kube_allow_ttl_seconds,
            deny_ttl=server.kube_deny_ttl_seconds,
            max_entries=server.kube_cache_entries,
        )

    def register(self, registry: prom.CollectorRegistry) -> None:
        """Export the cache's hit ratio into the app's registry."""
        gauge = prom.Gauge(
            "codeintel_access_review_cache_hit_ratio",
            "Share of TokenReview and SubjectAccessReview decisions answered from the cache.",
            registry=registry,
        )
        gauge.set_function(lambda: self.hit_rate)

    @property
    def hit_rate(self) -> float:
        hits = self.users.hits + self.decisions.hits
        total = hits + self.users.misses + self.decisions.misses
        return hits / total if total else 0.0

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.token_file is not None:
            try:  # projected tokens rotate: read it each time (a small file, page-cached)
                headers["authorization"] = f"Bearer {self.token_file.read_text().strip()}"
            except OSError as e:
                logger.warning("cannot read the service-account token %s: %s", self.token_file, e)
        return headers

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The API server's answer, or None when it gave none (logged, never cached)."""
        try:
            response = await self.client.post(path, json=body, headers=self._headers())
        except httpx.HTTPError as e:
            logger.warning("access review %s failed: %s", path.rsplit("/", 1)[-1], e)
            return None
        if response.status_code != 201 and response.status_code != 200:
            logger.warning(
                "access review %s answered %d: %s",
                path.rsplit("/", 1)[-1],
                response.status_code,
                response.text[:200],
            )
            return None
        answer: dict[str, Any] = response.json()
        return answer

    async def user(self, token: bytes) -> User | None:
        """Who ``token`` is (TokenReview), or None for an unknown or expired token."""
        key = hashlib.sha256(token).digest()
        cached = self.users.get(key)
        if cached is not None:
            return cached if isinstance(cached, User) else None
        answer = await self._post(
            TOKEN_REVIEWS,
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "spec": {"token": token.decode("utf-8", "replace")},
            },
        )
        if answer is None:
            return None
        status = answer.get("status") or {}
        info = status.get("user") or {}
        if not status.get("authenticated") or not info.get("username"):
            self.users.put(key, False, self.deny_ttl)
            return None
        found = User(
            username=str(info["username"]),
            uid=str(info.get("uid") or ""),
            groups=tuple(str(g) for g in info.get("groups") or ()),
            extra=tuple(
                sorted(
                    (str(k), tuple(str(x) for x in v)) for k, v in (info.get("extra") or {}).items()
                )
            ),
        )
        self.users.put(key, found, self.allow_ttl)
        return found

    async def may_get(self, user: User, repo: str) -> bool:
        """Whether ``user`` may ``get`` the CodeIndex behind ``repo`` (SubjectAccessReview)."""
        key = (user, repo)
        cached = self.decisions.get(key)
        if cached is not None:
            return cached
        namespace, _, name = repo.partition("/")
        if not namespace or not name:
            return False
        async with self._slots:
            answer = await self._post(
                ACCESS_REVIEWS,
                {
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SubjectAccessReview",
                    "spec": {
                        **user.spec(),
                        "resourceAttributes": {
                            "namespace": namespace,
                            "verb": "get",
                            "group": GROUP,
                            "resource": RESOURCE,
                            "name": name,
                        },
                    },
                },
            )
        if answer is None:
            return False
        allowed = bool((answer.get("status") or {}).get("allowed"))
        self.decisions.put(key, allowed, self.allow_ttl if allowed else self.deny_ttl)
        return allowed

    async def scope(self, token: bytes, names: Iterable[str]) -> access.Scope | None:
        """The caller's scope: the repositories among ``names`` it may get; None (401) for
        a token the API server does not authenticate."""
        user = await self.user(token)
        if user is None:
            return None
        repos = sorted(names)
        decisions = await asyncio.gather(*(self.may_get(user, r) for r in repos))
        allowed = tuple(r for r, ok in zip(repos, decisions, strict=True) if ok)
        return access.Scope(user.username, allowed)

    async def aclose(self) -> None:
        await self.client.aclose()
