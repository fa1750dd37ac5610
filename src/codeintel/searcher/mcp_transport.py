"""MCP over streamable HTTP: which Host names ``/mcp`` answers, and how many sessions it keeps.

Hosts. DNS rebinding works by making a browser send the attacker's DNS *name*
to a server that trusts its network position, so ``/mcp`` answers only names it
was told about (:class:`HostPolicy`): loopback always, the configured names,
and a Service's ``.svc`` names also under the cluster domain. An IP-literal
Host cannot be rebound; it is accepted once the server is configured for a
cluster (allowed hosts given, or bound beyond loopback), so pod IPs and the
ClusterIP work, while the embedded localhost default keeps the SDK's strict list.

Sessions. The SDK refuses every new session with 503 once ``max_sessions`` are
open and reclaims one only after its idle timeout (10 000 and 30 minutes by
default): 10 200 abandoned ``initialize`` calls took RSS +384 MB and locked new
clients out for half an hour. :class:`BoundedSessionManager` evicts the oldest
idle session instead, caps sessions per client address, and uses a shorter idle
timeout (docs/architecture.md, "Searcher").
"""

from __future__ import annotations

import contextvars
import ipaddress
import logging
import math
import urllib.parse
from collections import Counter
from typing import Any, NamedTuple

import msgspec
import prometheus_client as prom
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import INVALID_REQUEST
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from codeintel.core import errors
from codeintel.core import settings as settings_mod

logger = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARD_BINDS = frozenset({"0.0.0.0", "::"})  # noqa: S104 - names, not a bind
_client: contextvars.ContextVar[str] = contextvars.ContextVar("mcp_client", default="")


def _split_host(value: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of a Host header or origin authority, lowercased; None if malformed."""
    try:
        parts = urllib.parse.urlsplit(f"//{value}")
        name, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not name or parts.username is not None or parts.path or parts.query:
        return None
    return name.rstrip("."), port


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostPolicy:
    """The Host (and Origin) values ``/mcp`` accepts."""

    def __init__(self, names: frozenset[str], *, accept_ip_literals: bool) -> None:
        self.names = names
        self.accept_ip_literals = accept_ip_literals

    @classmethod
    def from_settings(cls, server: settings_mod.ServerSettings) -> HostPolicy:
        """Loopback, ``allowed_hosts`` (``.svc`` names also under the cluster domain), a named bind."""
        domain = server.cluster_domain.strip().strip(".").lower()
        names = set(LOOPBACK_NAMES)
        for raw in server.allowed_hosts:
            split = _split_host(raw.strip())
            if split is None:
                raise errors.ConfigError(
                    f"CODEINTEL_SERVER_ALLOWED_HOSTS: {raw!r} is not a host name or address"
                )
            name = split[0]
            names.add(name)
            if name.endswith(".svc") and domain:
                names.add(f"{name}.{domain}")
        bind = server.host.strip().lower()
        if bind not in LOOPBACK_NAMES | _WILDCARD_BINDS:
            names.add(bind.strip("[]"))
        in_cluster = bool(server.allowed_hosts) or bind not in LOOPBACK_NAMES
        return cls(frozenset(names), accept_ip_literals=in_cluster)

    def allows_host(self, host: str) -> bool:
        split = _split_host(host)
        if split is None:
            return False
        name = split[0]
        return name in self.names or (self.accept_ip_literals and _is_ip(name))

    def allows_origin(self, origin: str, host: str) -> bool:
        """A browser's Origin: one of our names, or the very Host it was sent to (same origin)."""
        parts = urllib.parse.urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return False
        split = _split_host(parts.netloc)
        if split is None:
            return False
        return split[0] in self.names or parts.netloc.lower() == host.lower()

    def refusal(self, host: str, origin: str | None, what: str) -> Refusal | None:
        """Why a request to ``what`` with this Host and Origin is refused (DNS rebinding), or
        None: 421 for a Host this server does not answer to, 403 for a foreign Origin."""
        if not self.allows_host(host):
            logger.warning("request to %s refused: Host %r is not served here", what, host[:200])
            return Refusal(
                421,
                "MisdirectedRequest",
                f"Host {host[:200]!r} is not served here; add it to"
                " CODEINTEL_SERVER_ALLOWED_HOSTS (the chart's allowedHosts,"
                " a SearchPool's spec.searcher.allowedHosts)",
                "host",
            )
        if origin is not None and not self.allows_origin(origin, host):
            logger.warning("request to %s refused: Origin %r", what, origin[:200])
            return Refusal(
                403, "Forbidden", f"Origin {origin[:200]!r} may not call {what}", "origin"
            )
        return None


class Refusal(NamedTuple):
    """A refused request's status, error type, message and the header it names."""

    status: int
    type: str
    message: str
    field: str


class HostCheck:
    """ASGI guard in front of ``/mcp``: 421 for an unknown Host, 403 for a foreign Origin."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            refused = self.policy.refusal(headers.get("host", ""), headers.get("origin"), "/mcp")
            if refused is not None:
                await _refuse(*refused)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _refuse(
    status: int, type_: str, message: str, field: str | None, headers: dict[str, str] | None = None
) -> Response:
    """A JSON-RPC error (what MCP clients read) whose ``data`` names the type and field."""
    body = {
        "jsonrpc": "2.0",
        "id": None,
        "error": {
            "code": INVALID_REQUEST,
            "message": message,
            "data": {"type": type_, "field": field},
        },
    }
    return Response(
        msgspec.json.encode(body),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


class _RefusedError(Exception):
    """No room for a new session; raised under the SDK's creation lock, answered outside it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        retry = {"retry-after": "1"}
        type_ = "TooManySessions" if status == 429 else "SessionsBusy"
        self.response = _refuse(status, type_, message, None, retry)


class BoundedSessionManager(StreamableHTTPSessionManager):
    """The SDK's session manager, making room for a new session by evicting the oldest idle one.

    A session is idle when no request of it is in flight: the SDK then sets its
    ``idle_scope`` deadline to last activity + idle timeout, so the smallest
    deadline is the oldest idle session. Eviction forgets the session at once
    (its id answers 404) and cancels that scope, which ends the session the way
    the SDK's own idle timeout does. Admission runs under the SDK's creation
    lock, so the count never exceeds the limit.
    """

    def __init__(
        self,
        server: MCPServer[Any],
        settings: settings_mod.ServerSettings,
        *,
        max_request_body_size: int,
    ) -> None:
        for field, minimum in (
            ("mcp_max_sessions", 1),
            ("mcp_max_sessions_per_client", 0),
        ):
            value = getattr(settings, field)
            if value < minimum:
                raise errors.ConfigError(
                    f"CODEINTEL_SERVER_{field.upper()} must be >= {minimum}, not {value}"
                )
        idle = settings.mcp_session_idle_seconds
        if not (math.isfinite(idle) and idle > 0):
            raise errors.ConfigError(
                f"CODEINTEL_SERVER_MCP_SESSION_IDLE_SECONDS must be > 0, not {idle}"
            )
        super().__init__(
            # MCPServer has no public hook for the session manager's class.
            server._lowlevel_server,
            security_settings=TransportSecuritySettings(
                # Host and Origin are checked by HostCheck; the SDK still checks Content-Type.
                enable_dns_rebinding_protection=False
            ),
            session_idle_timeout=idle,
            max_sessions=settings.mcp_max_sessions,
            max_request_body_size=max_request_body_size,
        )
        self.max_per_client = settings.mcp_max_sessions_per_client
        self._clients: dict[str, str] = {}
        self._per_client: Counter[str] = Counter()
        self.evicted: Counter[str] = Counter()
        """Sessions evicted to make room, by reason: ``full`` or ``per_client``."""
        self.refused: Counter[str] = Counter()
        """New sessions refused because none was idle: ``per_client`` (429), ``full`` (503)."""

    @property
    def open_sessions(self) -> int:
        return len(self._server_instances)

    @property
    def idle_sessions(self) -> int:
        """Open sessions with no request in flight (an open GET stream is one)."""
        transports = list(self._server_instances.values())
        return sum(1 for t in transports if _idle_since(t) is not None)

    def sessions_of(self, client: str) -> int:
        return self._per_client[client]

    async def _handle_stateful_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        peer = scope.get("client")
        token = _client.set(str(peer[0]) if peer else "")
        try:
            await super()._handle_stateful_request(scope, receive, send)
        except _RefusedError as e:
            await e.response(scope, receive, send)
        finally:
            _client.reset(token)

    def export_metrics(self, registry: prom.CollectorRegistry) -> None:
        """``codeintel_mcp_sessions{state}`` in ``registry``: sessions open, and of those idle
        (the ones a new session may evict), read at scrape time."""
        gauge = prom.Gauge(
            "codeintel_mcp_sessions",
            "MCP sessions held by this process: open, and idle (evictable) among them.",
            ["state"],
            registry=registry,
        )
        gauge.labels(state="open").set_function(lambda: self.open_sessions)
        gauge.labels(state="idle").set_function(lambda: self.idle_sessions)

    def _admit_session(
        self, requestor: AuthorizationContext | None
    ) -> StreamableHTTPServerTransport | None:
        client = _client.get()
        mine = self.max_per_client and self.sessions_of(client) >= self.max_per_client
        if mine and not self._evict_oldest_idle("per_client", client):
            raise _RefusedError(
                429,
                f"client {client} already holds {self.max_per_client} MCP sessions, all busy;"
                " close one (DELETE /mcp) or raise CODEINTEL_SERVER_MCP_MAX_SESSIONS_PER_CLIENT",
            )
        full = self.max_sessions is not None and self.open_sessions >= self.max_sessions
        if full and not self._evict_oldest_idle("full", None):
            raise _RefusedError(
                503,
                f"all {self.max_sessions} MCP sessions are busy; retry shortly"
                " or raise CODEINTEL_SERVER_MCP_MAX_SESSIONS",
            )
        transport = super()._admit_session(requestor)
        if transport is not None and transport.mcp_session_id is not None:
            self._clients[transport.mcp_session_id] = client
            self._per_client[client] += 1
        return transport

    def _evict_oldest_idle(self, reason: str, client: str | None) -> bool:
        """Evict the session (of ``client``, or any) idle the longest; False if none is idle."""
        oldest: tuple[float, str, StreamableHTTPServerTransport] | None = None
        for sid, transport in self._server_instances.items():
            deadline = _idle_since(transport)
            if deadline is None or (client is not None and self._clients.get(sid) != client):
                continue
            if oldest is None or deadline < oldest[0]:
                oldest = (deadline, sid, transport)
        if oldest is None:
            self.refused[reason] += 1
            logger.warning(
                "new MCP session refused (%s): %d open, none of them idle",
                reason,
                self.open_sessions,
            )
            return False
        _, sid, transport = oldest
        self._server_instances.pop(sid, None)
        self._session_owners.pop(sid, None)
        self._forget(sid)
        if transport.idle_scope is not None:
            transport.idle_scope.cancel()
        self.evicted[reason] += 1
        logger.debug("MCP session %s evicted (%s)", sid, reason)
        return True

    def _forget(self, session_id: str) -> None:
        client = self._clients.pop(session_id, None)
        if client is not None:
            self._per_client[client] -= 1
            if self._per_client[client] <= 0:
                del self._per_client[client]

    async def _discard_session(
        self, session_id: str, transport: StreamableHTTPServerTransport
    ) -> None:
        self._forget(session_id)
        await super()._discard_session(session_id, transport)


def _idle_since(transport: StreamableHTTPServerTransport) -> float | None:
    """The idle deadline (last activity + timeout) of an idle session; None while one is busy.

    The SDK keeps the deadline at infinity while a request (a GET stream too) is
    in flight, and has no scope before the session's task has started.
    """
    scope = transport.idle_scope
    if scope is None or not math.isfinite(scope.deadline):
        return None
    return float(scope.deadline)


def route(sessions: BoundedSessionManager, policy: HostPolicy, path: str = "/mcp") -> Route:
    """The ``/mcp`` route: the host guard, then the SDK's body limit and session handling."""
    return Route(path, endpoint=HostCheck(StreamableHTTPASGIApp(sessions), policy))
