"""Asking the shards of a search pool: addresses, replicas, ejection, relayed errors.

:class:`ShardFanout` sends one request to some or all shards at once and returns
the answers it got and the shards that are missing; :mod:`router` merges them into
the catalogue's answers. Each shard may have replicas: a replica that refuses the
connection is skipped for the next one, and a replica that times out is left out
of queries (:mod:`ejection`) until it answers a ``/healthz`` probe. A shard's 4xx
is relayed as the same error, so the router answers what a searcher would.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import httpx
import msgspec

from codeintel.core import errors
from codeintel.core import settings as settings_mod
from codeintel.searcher import access
from codeintel.searcher import ejection as ejection_mod
from codeintel.searcher import metrics as metrics_mod

logger = logging.getLogger(__name__)


def shard_urls(settings: settings_mod.FleetSettings) -> list[list[str]]:
    """Replica base URLs of each shard, from ``shard_urls``: a list (one URL per shard, in
    shard order), or one template where ``{i}`` is the shard and ``{r}`` the replica
    (``http://pool-r{r}-{i}.pool-shards.ns.svc.cluster.local:8080``, the operator's
    layout); a template without ``{r}`` numbers replicas as pods i, i+N, i+2N, ..."""
    urls = [u.rstrip("/") for u in settings.shard_urls]
    if len(urls) == 1 and "{i}" in urls[0]:
        n = max(1, settings.shards)
        replicas = max(1, settings.shard_replicas)
        template = urls[0]
        if "{r}" in template:
            return [[template.format(i=i, r=r) for r in range(replicas)] for i in range(n)]
        return [[template.format(i=i + r * n) for r in range(replicas)] for i in range(n)]
    if not urls:
        raise errors.ConfigError("the router needs shard URLs (--shard-url)")
    return [[u] for u in urls]


class _ShardUnavailableError(Exception):
    """A shard did not answer usefully: down, slow, or a server error."""


class ShardFanout:
    """One request to many shards at once, each tried replica by replica."""

    def __init__(self, settings: settings_mod.Settings, metrics: metrics_mod.RouterMetrics) -> None:
        self.shards = shard_urls(settings.fleet)
        self.timeout = settings.fleet.shard_timeout_seconds
        self.metrics = metrics
        headers = {"content-type": "application/json"}
        # The shards of a pool share the router's token (one Secret) unless told otherwise.
        token = settings.fleet.shard_token or settings.server.api_token
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(self.timeout, connect=min(2.0, self.timeout)),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=64),
        )
        self.ejections = ejection_mod.Ejections()

    def name(self, shard: int) -> str:
        return f"shard-{shard}"

    async def _ask(
        self, shard: int, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """One shard's answer (trying its replicas in turn), or an error from the tree.

        _ShardUnavailableError when no replica answered in time or one failed with a 5xx."""
        label = self.name(shard)
        start = time.perf_counter()
        last: Exception | None = None
        replicas = [u for u in self.shards[shard] if not self.ejections.is_out(u)]
        if not replicas:  # every replica timed out recently: do not wait for it again
            raise _ShardUnavailableError(
                f"{label} timed out recently and is left out until it answers a probe"
            )
        for url in replicas:
            try:
                # One deadline for connect, write and read together (httpx times each apart).
                async with asyncio.timeout(self.timeout):
                    response = await self.client.post(f"{url}{path}", content=body, headers=headers)
            except asyncio.CancelledError:
                # The caller's own deadline (``fan``) ran out first, e.g. on a busy loop:
                # this replica did not answer in time either.
                self._eject(shard, url)
                raise
            except (httpx.TimeoutException, TimeoutError) as e:
                self.metrics.shard_failures.labels(shard=label, reason="timeout").inc()
                self._eject(shard, url)
                raise _ShardUnavailableError(f"{label} timed out after {self.timeout:g}s") from e
            except httpx.TransportError as e:
                self.metrics.shard_failures.labels(shard=label, reason="connect").inc()
                last = e
                continue
            self.metrics.shard_seconds.labels(shard=label).observe(time.perf_counter() - start)
            if response.status_code == 200:
                answer: dict[str, Any] = response.json()
                return answer
            if response.status_code >= 500 or response.status_code in (401, 403):
                # 401/403: the router's shard token is wrong, a configuration fault that
                # the caller cannot fix; report the shard missing and log why.
                self.metrics.shard_failures.labels(shard=label, reason="status").inc()
                raise _ShardUnavailableError(f"{label} answered {response.status_code}")
            raise _relayed(response)
        raise _ShardUnavailableError(f"{label} is unreachable: {last}")

    def _eject(self, shard: int, url: str) -> None:
        backoff = self.ejections.eject(url)
        if backoff is None:
            return
        self.metrics.shard_ejections.labels(shard=self.name(shard)).inc()
        self.metrics.replicas_ejected.set(len(self.ejections.ejected()))
        logger.warning(
            "%s replica %s timed out: left out of queries, probed again in %.0f s",
            self.name(shard),
            url,
            backoff,
        )

    async def probe_ejected(self, interval: float = 0.5) -> None:
        """Forever (cancel to stop): probe ejected replicas whose back-off has passed,
        taking back the ones that answer ``/healthz`` and ejecting the others for longer."""
        probe_timeout = httpx.Timeout(min(2.0, self.timeout))
        while True:
            await asyncio.sleep(interval)
            for url in self.ejections.due():
                shard = next(i for i, urls in enumerate(self.shards) if url in urls)
                try:
                    r = await self.client.get(f"{url}/healthz", timeout=probe_timeout)
                    healthy = r.status_code == 200
                except httpx.HTTPError:
                    healthy = False
                if healthy:
                    self.ejections.restore(url)
                    logger.warning("%s replica %s answers again: back in", self.name(shard), url)
                else:
                    self.ejections.probe_failed(url)
                self.metrics.replicas_ejected.set(len(self.ejections.ejected()))

    async def fan(
        self,
        tool: str,
        request: Any,
        shards: Sequence[int] | None = None,
        *,
        path: str | None = None,
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Ask ``shards`` (default all) at once: (answers, missing shard names).

        A RepoNotFoundError from a shard means it holds none of the selection; it is
        re-raised only when no shard answered and none is missing."""
        targets = list(range(len(self.shards))) if shards is None else list(shards)
        data = request if isinstance(request, dict) else request.model_dump(exclude_none=True)
        body = msgspec.json.encode(data)
        path = path or f"/v1/{tool}"
        # The shards trust the router's credential and apply the caller's scope it forwards.
        scope = access.current()
        forwarded = access.encode(scope)
        headers = {access.SCOPE_HEADER: forwarded} if forwarded is not None else None
        results = await asyncio.gather(
            *(
                asyncio.wait_for(self._ask(i, path, body, headers), self.timeout + 1)
                for i in targets
            ),
            return_exceptions=True,
        )
        answers: list[dict[str, Any]] = []
        missing: list[str] = []
        not_found: errors.QueryError | None = None
        for shard, result in zip(targets, results, strict=True):
            if isinstance(result, errors.RepoNotFoundError | errors.NotIndexedError):
                # "none of mine" from one shard; "not indexed" names what the caller asked for
                if not isinstance(not_found, errors.NotIndexedError):
                    not_found = result
            elif isinstance(result, _ShardUnavailableError | TimeoutError):
                logger.warning("%s: %s", self.name(shard), result or "timed out")
                missing.append(self.name(shard))
            elif isinstance(result, BaseException):
                raise result
            else:
                answers.append(_within(scope, tool, result))
        if not answers and not missing and not_found is not None:
            raise not_found
        if missing:
            self.metrics.partial_answers.inc()
        return answers, missing

    async def aclose(self) -> None:
        await self.client.aclose()


def _within(scope: access.Scope, tool: str, answer: dict[str, Any]) -> dict[str, Any]:
    """A shard's answer with anything outside ``scope`` dropped: the shards already apply
    the forwarded scope; this holds even against a shard that does not."""
    if scope.everything:
        return answer
    key = "name" if tool == "list_repos" else "repo"
    rows = answer.get("results")
    if isinstance(rows, list):
        answer["results"] = [
            r for r in rows if not (isinstance(r, dict) and key in r) or scope.allows(str(r[key]))
        ]
    for field in ("repos", "skipped"):
        mapping = answer.get(field)
        if isinstance(mapping, dict):
            answer[field] = {k: v for k, v in mapping.items() if scope.allows(str(k))}
    return answer


class _RelayedError(errors.QueryError):
    """A shard's 4xx, relayed with its type, message and field."""

    type_name = "QueryError"


class _RelayedNotFound(errors.RepoNotFoundError):
    type_name = "RepoNotFoundError"


class _RelayedPathNotFound(errors.PathNotFoundError):
    type_name = "PathNotFoundError"

    def __init__(self, message: str) -> None:
        errors.GitError.__init__(self, message)
        self.path = ""
        self.commit = None


def _relayed(response: httpx.Response) -> errors.CodeIntelError:
    """A shard's error answer as the error the router raises (same status, same body)."""
    try:
        body = response.json()["error"]
        message, field, kind = str(body["message"]), body.get("field"), str(body["type"])
    except (ValueError, KeyError, TypeError):
        message, field, kind = response.text[:500], None, ""
    relayed: errors.CodeIntelError
    if response.status_code == 404 and kind == "PathNotFoundError":
        relayed = _RelayedPathNotFound(message)
    elif response.status_code == 404:
        relayed = _RelayedNotFound(message, field=field or "repos")
    elif response.status_code == 409 and kind == "NotIndexedError":
        relayed = errors.NotIndexedError([message])
        relayed.args = (message,)
    elif response.status_code == 410:
        relayed = errors.CursorExpiredError(message)
    elif response.status_code == 400 and kind == "ModelMixError":
        relayed = errors.ModelMixError(dict(body.get("groups") or {}))
    else:
        relayed = _RelayedError(message, field=field)
    if kind:
        relayed.type_name = kind  # type: ignore[union-attr]
    return relayed
