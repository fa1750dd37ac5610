"""The searcher's FastAPI application: REST, MCP over streamable HTTP, probes, metrics.

:func:`create_app` wires one :class:`~context.AppContext` (built in the
lifespan, never at import) to ``POST /v1/<tool>``, to the MCP
server mounted at ``/mcp`` (its session manager runs inside the same
lifespan), and to ``/healthz``, ``/readyz``, ``/metrics`` and ``/v1/index``.

Guard rails live here, at the edge (docs/architecture.md, Searcher): an
optional bearer token (constant-time compare, case-insensitive scheme; probes
stay open), a metrics-only port without the token, a 1 MiB body limit counted
on the bytes received, and exception handlers that turn the error tree and
FastAPI's own 4xx into JSON ``{"error": {type, message, field}}``. The MCP transport
accepts the Host names of a Kubernetes Service besides localhost
(``ServerSettings.allowed_hosts``), since in a cluster agents reach the pod
as ``codeintel.<namespace>.svc``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from codeintel.core import embed as embedding_mod
from codeintel.core import errors
from codeintel.core import settings as settings_mod
from codeintel.searcher import (
    access,
    catalog,
    credentials,
    mcp_tools,
    mcp_transport,
    models,
    responses,
)
from codeintel.searcher import context as context_mod
from codeintel.searcher import errors as errors_mod
from codeintel.searcher import metrics as metrics_mod

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
MCP_PATH = "/mcp"
METRICS_PORT_PATHS = OPEN_PATHS | {"/metrics"}
"""All the metrics port serves, without the token."""
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": responses.ErrorResponse, "description": text}
    for code, text in (
        (400, "The selected repositories mix embedding models; `error.groups` lists them."),
        (401, "Missing or wrong bearer token."),
        (404, "The path does not exist at the indexed commit, or no served repository matches."),
        (413, "Request body larger than 1 MiB."),
        (422, "A parameter is invalid; `error.field` names it."),
        (
            503,
            "No generation can be served yet (the message says why; while `serve PATH` "
            "builds its first index, an `IndexingError` with phase, done, total and "
            "eta_seconds, and `Retry-After`), the served one is damaged, or the embedding "
            "model is unavailable or not the index's model.",
        ),
    )
}
_encoder = msgspec.json.Encoder()


def api_token(settings: settings_mod.Settings) -> str:
    """The shared bearer token: ``ServerSettings.api_token`` (``CODEINTEL_SERVER_API_TOKEN``,
    or its older name ``CODEINTEL_API_TOKEN``, both read by :class:`Settings`)."""
    return settings.server.api_token


def _json(status: int, body: Any) -> Response:
    try:
        content = _encoder.encode(body)
    except UnicodeEncodeError:  # an error echoing a lone surrogate from the request
        content = _encoder.encode(_scrub(body))
    return Response(content, status_code=status, media_type="application/json")


def _scrub(value: Any) -> Any:
    """``value`` with every string made UTF-8-safe (lone surrogates as ``\\udxxx`` escapes)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def _error(status: int, type_: str, message: str, field: str | None = None) -> Response:
    return _json(status, {"error": {"type": type_, "message": message, "field": field}})


def _bearer(header: bytes) -> bytes | None:
    """The credentials of a ``Bearer`` Authorization header; the scheme is case-insensitive."""
    scheme, _, credentials = header.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return credentials.strip()


class GuardMiddleware:
    """Host and Origin, credentials and scope (all but the probes), the metrics port, and
    the body limit, before any route.

    A connection to ``metrics_port`` reaches ``/metrics`` and the probes only, with no
    token: Prometheus scrapes every searcher through one ServiceMonitor, whose
    credentials could name only one secret of its own namespace.

    Host and Origin follow ``/mcp``'s :class:`~mcp_transport.HostPolicy` (which checks
    ``/mcp`` itself, answering in JSON-RPC): a browser tricked by DNS rebinding sends
    the attacker's name as Host, and a foreign page its own Origin. Probes and
    ``/metrics`` answer any Host: kubelet and Prometheus send the pod IP.

    The caller (:class:`~access.Caller`: identity, scope, tool) is put in the ASGI
    scope for MCP, whose tools run in the session's task, and in :mod:`access`'s
    context variable for REST, around the rest of the request.

    The body is read here, whole, before the app sees it: a chunked upload has no
    Content-Length to refuse up front, and an error raised while FastAPI reads the
    body would come out as its generic 400. 1 MiB is small enough to buffer.
    """

    def __init__(
        self,
        app: ASGIApp,
        gate: credentials.Gate,
        hosts: mcp_transport.HostPolicy,
        max_body: int = models.MAX_BODY_BYTES,
        metrics_port: int = 0,
    ) -> None:
        self.app = app
        self._gate = gate
        self._hosts = hosts
        self._max_body = max_body
        self._metrics_port = metrics_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        server = scope.get("server") or (None, None)
        path = scope["path"]
        if self._metrics_port and server[1] == self._metrics_port:
            if path in METRICS_PORT_PATHS and scope["method"] == "GET":
                await self.app(scope, receive, send)
            else:
                only = "the metrics port serves GET /metrics, /healthz and /readyz only"
                await _error(404, "NotFound", only)(scope, receive, send)
            return
        if path not in METRICS_PORT_PATHS and path != MCP_PATH:
            refused = self._foreign(headers)
            if refused is not None:
                await refused(scope, receive, send)
                return
        tool = path.removeprefix("/v1/") if path.startswith("/v1/") else ""
        given = _bearer(headers.get(b"authorization", b""))
        found: access.Scope | None = None
        # A reviewer decides per repository, so it needs the body first; otherwise an
        # unknown caller is refused before a byte of the body is read.
        reviewing = self._gate.reviewer is not None and path not in OPEN_PATHS
        if path not in OPEN_PATHS and not reviewing:
            found = await self._gate.authenticate(given)
            if found is None:
                await self._unauthorized(scope, receive, send, tool)
                return
        body = await self._read(scope, receive, send, headers)
        if body is None:  # answered (413), or the client went away
            return
        if path in OPEN_PATHS:
            await self._forward(scope, receive, send, body)
            return
        if reviewing:
            found = await self._gate.authenticate(given, _wanted(path, body))
        if found is None:
            await self._unauthorized(scope, receive, send, tool)
            return
        forwarded = headers.get(access.SCOPE_HEADER.encode())
        if forwarded is not None:
            try:
                found = found.narrowed(access.decode(forwarded.decode("latin-1")))
            except errors.QueryError as e:
                await _error(400, "QueryError", str(e), access.SCOPE_HEADER)(scope, receive, send)
                return
        caller = access.Caller(found, tool, self._gate.audit)
        scope[access.CALLER_KEY] = caller
        with access.acting_as(caller):
            await self._forward(scope, receive, send, body)

    async def _unauthorized(self, scope: Scope, receive: Receive, send: Send, tool: str) -> None:
        self._gate.audit.deny("unauthenticated", "-", tool, "")
        response = _error(401, "Unauthorized", "missing or wrong bearer token", "authorization")
        response.headers["www-authenticate"] = "Bearer"
        await response(scope, receive, send)

    def _foreign(self, headers: dict[bytes, bytes]) -> Response | None:
        """403/421 for a Host or Origin this server does not answer to (DNS rebinding)."""
        origin = headers.get(b"origin")
        refused = self._hosts.refusal(
            headers.get(b"host", b"").decode("latin-1"),
            origin.decode("latin-1") if origin is not None else None,
            "this API",
        )
        return _error(*refused) if refused is not None else None

    async def _read(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]
    ) -> bytes | None:
        """The whole body (at most ``max_body``), or None once 413 is sent or the client left."""
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self._max_body):
            await self._too_large(scope, receive, send)
            return None
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self._max_body:
                await self._too_large(scope, receive, send)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _forward(self, scope: Scope, receive: Receive, send: Send, body: bytes) -> None:
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"request body exceeds {self._max_body} bytes (1 MiB)"
        await _error(413, "PayloadTooLarge", message, "body")(scope, receive, send)


def _wanted(path: str, body: bytes) -> list[str] | None:
    """The ``repo``/``repos`` a request names (a REST body, or the arguments of an MCP
    ``tools/call``): what a Kubernetes reviewer needs to decide on. None: every repository
    (none named, or a body this cannot read); []: none (an MCP message that calls no tool)."""
    try:
        data: Any = msgspec.json.decode(body) if body else None
    except msgspec.DecodeError:
        return None
    if path == MCP_PATH:
        if isinstance(data, dict) and data.get("method") != "tools/call":
            return []
        params = data.get("params") if isinstance(data, dict) else None
        data = params.get("arguments") if isinstance(params, dict) else None
    if not isinstance(data, dict):
        return None
    repos, repo = data.get("repos"), data.get("repo")
    out = [p for p in repos if isinstance(p, str)] if isinstance(repos, list) else []
    if isinstance(repo, str):
        out.append(repo)
    return out or None


class Serving(Protocol):
    """What the app serves from: a single store, many stores, or shards (the router)."""

    metrics: metrics_mod.Metrics

    @property
    def service(self) -> catalog.Service: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    def readiness(self) -> tuple[bool, dict[str, Any]]: ...

    async def index_document(self) -> bytes: ...


def create_app(
    settings: settings_mod.Settings,
    *,
    embedder: embedding_mod.Embedder | None = None,
    early: Any = None,
) -> FastAPI:
    """The searcher app: one store (``settings.store.path``) or every store under
    ``settings.fleet.stores_root``; ``embedder`` overrides the configured one.

    ``early`` (an ``early.EarlyIndex``, ``serve PATH``) answers from the commit being
    indexed until its first generation is published."""
    if settings.server.tokens_file and not settings.fleet.stores_root:
        raise errors.ConfigError(
            "--tokens-file scopes repositories: it needs --stores-root (or the router); "
            "a single-store searcher takes one CODEINTEL_SERVER_API_TOKEN"
        )
    if settings.fleet.stores_root:
        from codeintel.searcher import discovery, fleet_context

        discovery.check_settings(settings.fleet)
        return build_app(settings, lambda: fleet_context.FleetContext(settings, embedder=embedder))
    if early is not None:
        from codeintel.searcher import early as early_mod

        return build_app(
            settings, lambda: early_mod.EarlyContext(settings, early, embedder=embedder)
        )
    return build_app(settings, lambda: context_mod.AppContext(settings, embedder=embedder))


def create_router_app(settings: settings_mod.Settings) -> FastAPI:
    """The router: the same API, answered by the shards in ``settings.fleet.shard_urls``."""
    from codeintel.searcher import router, shard_fanout

    shard_fanout.shard_urls(settings.fleet)  # ConfigError now, not inside the lifespan
    return build_app(settings, lambda: router.RouterContext(settings))


def build_app(settings: settings_mod.Settings, make: Callable[[], Serving]) -> FastAPI:
    """REST, MCP, probes and metrics over whatever ``make`` builds in the lifespan."""
    holder: dict[str, Serving] = {}

    def ctx() -> Serving:
        found = holder.get("ctx")
        if found is None:
            raise errors.NoGenerationError("the searcher is starting")
        return found

    gate = credentials.Gate.from_settings(settings.server)
    mcp = mcp_tools.build_server(lambda: ctx().service)
    sessions = mcp_transport.BoundedSessionManager(
        mcp, settings.server, max_request_body_size=models.MAX_BODY_BYTES
    )
    hosts = mcp_transport.HostPolicy.from_settings(settings.server)
    mcp_route = mcp_transport.route(sessions, hosts, MCP_PATH)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = make()
        sessions.export_metrics(context.metrics.registry)
        holder["ctx"] = context
        gate.register(context.metrics.registry)
        known = getattr(context, "known_repos", None)
        if known is not None:
            gate.names = known
        try:
            await context.start()
            async with sessions.run():
                yield
        finally:
            await context.aclose()
            await gate.aclose()
            holder.pop("ctx", None)

    app = FastAPI(
        title="codeintel searcher",
        version="1",
        description=catalog.INSTRUCTIONS,
        lifespan=lifespan,
    )
    app.add_middleware(
        GuardMiddleware, gate=gate, hosts=hosts, metrics_port=settings.server.metrics_port
    )
    # A plain route, not a mount, so "/mcp" needs no trailing slash.
    app.router.routes.append(mcp_route)
    app.state.mcp_sessions = sessions

    @app.exception_handler(errors.CodeIntelError)
    async def _codeintel_error(request: Request, exc: errors.CodeIntelError) -> Response:
        status = errors_mod.status_for(exc)
        if status >= 500 and status != 503:
            logger.error("request failed: %s", exc)
        response = _json(status, errors_mod.error_body(exc))
        retry = errors_mod.retry_after(exc)
        if retry is not None:
            response.headers["Retry-After"] = str(retry)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = exc.errors()
        first: dict[str, Any] = dict(problems[0]) if problems else {"msg": "invalid request"}
        if first.get("type") == "json_invalid":
            # FastAPI puts the byte offset in the location; it is no field.
            pos = next((p for p in first.get("loc", ()) if isinstance(p, int)), None)
            detail = (first.get("ctx") or {}).get("error", "invalid JSON")
            where = f" at byte {pos}" if pos is not None else ""
            return _error(422, "ValidationError", f"body: invalid JSON{where}: {detail}", "body")
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        field = ".".join(loc) or "body"
        message = f"{field}: {first.get('msg', 'invalid')}"
        return _error(422, "ValidationError", message, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI's own 4xx (unknown route, wrong method, unreadable body) in the one error shape.
        field = "body" if exc.status_code == 400 else None
        response = _error(exc.status_code, "HTTPError", str(exc.detail), field)
        response.headers.update(exc.headers or {})
        return response

    @app.get("/healthz", tags=["probes"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"], responses={503: {"model": responses.ErrorResponse}})
    async def readyz() -> Response:
        """Readiness: a generation is loaded and queries can be answered."""
        context = holder.get("ctx")
        if context is None:
            return _error(503, "NotReady", "the searcher is starting")
        ready, body = context.readiness()
        if not ready:
            return _error(503, "NotReady", str(body.get("reason", "not ready")))
        return _json(200, {"status": "ready", **body})

    @app.get("/metrics", tags=["probes"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus exposition (docs/architecture.md, Searcher, metrics port). Series name
        repositories, so on the main port only an all-repositories credential reads them."""
        if not access.current().everything:
            return _error(403, "Forbidden", "metrics need the all-repositories token")
        return Response(ctx().metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/index", tags=["index"], responses=_ERRORS)
    async def index() -> Response:
        """The live generation's manifest (with ``serving``: whether it is a fallback and why),
        or every served repository's summary when several are served."""
        return Response(await ctx().index_document(), media_type="application/json")

    def tool_route(tool: catalog.Tool) -> None:
        async def endpoint(request: Any) -> Response:
            return _json(200, await ctx().service.call(tool.name, request))

        endpoint.__annotations__ = {"request": tool.request, "return": Response}
        app.add_api_route(
            f"/v1/{tool.name}",
            endpoint,
            methods=["POST"],
            name=tool.name,
            summary=tool.title,
            description=tool.description,
            response_class=JSONResponse,
            responses={200: {"model": tool.response}, **_ERRORS},
            tags=["tools"],
        )

    for tool in catalog.CATALOG:
        tool_route(tool)

    async def vector_search(request: models.VectorSearchRequest) -> Response:
        """The router's semantic_search with a query vector embedded once for all shards."""
        service: Any = ctx().service
        if not hasattr(service, "semantic_search_vector"):
            raise errors.QueryError("this searcher takes no query vectors", field="vector")
        return _json(200, await service.call("semantic_search_vector", request))

    app.add_api_route(
        "/internal/v1/semantic_search",
        vector_search,
        methods=["POST"],
        include_in_schema=False,
        response_class=JSONResponse,
    )
    return app
