"""The searcher's FastAPI application: REST, MCP over streamable HTTP, probes, metrics.

:func:`create_app` wires one :class:`~context.AppContext` (built in the
lifespan, never at import) to ``POST /v1/<tool>`` (DESIGN §5), to the MCP
server mounted at ``/mcp`` (its session manager runs inside the same
lifespan), and to ``/healthz``, ``/readyz``, ``/metrics`` and ``/v1/index``.

Guard rails live here, at the edge: an optional bearer token (compared in
constant time; probes stay open), a 1 MiB body limit, and one exception
handler that turns the error tree into JSON ``{"error": {type, message,
field}}`` with a 4xx for anything a caller can cause. The MCP transport
accepts the Host names of a Kubernetes Service besides localhost
(``ServerSettings.allowed_hosts``), since in a cluster agents reach the pod
as ``codeintel.<namespace>.svc``.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from codeintel.core import embedding as embedding_mod
from codeintel.core import errors
from codeintel.core import settings as settings_mod
from codeintel.searcher import context as context_mod
from codeintel.searcher import mcp_tools, models
from codeintel.searcher import tools as tools_mod

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": models.ErrorResponse, "description": text}
    for code, text in (
        (401, "Missing or wrong bearer token."),
        (404, "The path does not exist at the indexed commit."),
        (413, "Request body larger than 1 MiB."),
        (422, "A parameter is invalid; `error.field` names it."),
        (503, "No generation loaded yet, or the embedding model is unavailable."),
    )
}
_encoder = msgspec.json.Encoder()


def api_token(settings: settings_mod.Settings) -> str:
    """``ServerSettings.api_token`` (``CODEINTEL_SERVER_API_TOKEN``), else ``CODEINTEL_API_TOKEN``."""
    return settings.server.api_token or os.environ.get("CODEINTEL_API_TOKEN", "")


def _json(status: int, body: Any) -> Response:
    return Response(_encoder.encode(body), status_code=status, media_type="application/json")


def _error(status: int, type_: str, message: str, field: str | None = None) -> Response:
    return _json(status, {"error": {"type": type_, "message": message, "field": field}})


class GuardMiddleware:
    """Bearer token (all but the probes) and the request body limit, before any route runs."""

    def __init__(self, app: ASGIApp, token: str, max_body: int = models.MAX_BODY_BYTES) -> None:
        self.app = app
        self._token = f"Bearer {token}".encode() if token else b""
        self._max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self._token and scope["path"] not in OPEN_PATHS:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self._token):
                response = _error(
                    401, "Unauthorized", "missing or wrong bearer token", "authorization"
                )
                response.headers["www-authenticate"] = "Bearer"
                await response(scope, receive, send)
                return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self._max_body):
            await _error(413, "PayloadTooLarge", "request body exceeds 1 MiB", "body")(
                scope, receive, send
            )
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._max_body:
                    raise _BodyTooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLargeError:
            if not started:
                await _error(413, "PayloadTooLarge", "request body exceeds 1 MiB", "body")(
                    scope, receive, send
                )


class _BodyTooLargeError(Exception):
    pass


def create_app(
    settings: settings_mod.Settings,
    *,
    embedder: embedding_mod.Embedder | None = None,
) -> FastAPI:
    """The searcher app over ``settings.store.path``; ``embedder`` overrides the configured one."""
    holder: dict[str, context_mod.AppContext] = {}

    def ctx() -> context_mod.AppContext:
        found = holder.get("ctx")
        if found is None:
            raise errors.NoGenerationError("the searcher is starting")
        return found

    mcp = mcp_tools.build_server(lambda: ctx().tools)
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
    for host in settings.server.allowed_hosts:
        hosts += [host, f"{host}:*"]
    if settings.server.host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"):  # noqa: S104
        hosts += [settings.server.host, f"{settings.server.host}:*"]
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts,
        allowed_origins=[f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts],
    )
    mcp_http = mcp.streamable_http_app(
        streamable_http_path="/mcp",
        transport_security=security,
        max_request_body_size=models.MAX_BODY_BYTES,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = context_mod.AppContext(settings, embedder=embedder)
        holder["ctx"] = context
        app.state.context = context
        try:
            await context.start()
            async with mcp.session_manager.run():
                yield
        finally:
            await context.aclose()
            holder.pop("ctx", None)

    app = FastAPI(
        title="codeintel searcher",
        version="1",
        description=mcp_tools.INSTRUCTIONS,
        lifespan=lifespan,
    )
    app.add_middleware(GuardMiddleware, token=api_token(settings))
    # The MCP routes' ASGI endpoint, added as a plain route so "/mcp" needs no trailing slash.
    for route in mcp_http.routes:
        if isinstance(route, Route):
            app.router.routes.append(route)

    @app.exception_handler(errors.CodeIntelError)
    async def _codeintel_error(request: Request, exc: errors.CodeIntelError) -> Response:
        status = tools_mod.status_for(exc)
        if status >= 500 and status != 503:
            logger.error("request failed: %s", exc)
        return _json(status, tools_mod.error_body(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = exc.errors()
        first = problems[0] if problems else {"loc": ("body",), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        field = ".".join(loc) or "body"
        message = f"{field}: {first.get('msg', 'invalid')}"
        return _error(422, "ValidationError", message, field)

    @app.get("/healthz", tags=["probes"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"], responses={503: {"model": models.ErrorResponse}})
    async def readyz() -> Response:
        """Readiness: a generation is loaded and queries can be answered."""
        context = holder.get("ctx")
        gen = context.manager.live if context else None
        if context is None or gen is None:
            return _error(503, "NotReady", "no generation loaded yet")
        if not context.ready:
            return _error(503, "NotReady", "the query embedder is still loading")
        return _json(200, {"status": "ready", "generation": gen.name, "commit": gen.commit})

    @app.get("/metrics", tags=["probes"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus exposition (DESIGN §7)."""
        return Response(ctx().metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/index", tags=["index"], responses=_ERRORS)
    async def index() -> Response:
        """The live generation's manifest."""
        with ctx().manager.use() as gen:
            from codeintel.core import store as store_mod

            return Response(store_mod.encode_manifest(gen.manifest), media_type="application/json")

    def tool_route(name: str, model: type[Any], answer: type[Any]) -> None:
        async def endpoint(request: Any) -> Response:
            tools = ctx().tools
            result = await tools.call(name, getattr(tools, name), request)
            return _json(200, result)

        endpoint.__annotations__ = {"request": model, "return": Response}
        app.add_api_route(
            f"/v1/{name}",
            endpoint,
            methods=["POST"],
            name=name,
            summary=mcp_tools.TITLES[name],
            description=mcp_tools.DESCRIPTIONS[name],
            response_class=JSONResponse,
            responses={200: {"model": answer}, **_ERRORS},
            tags=["tools"],
        )

    tool_route("semantic_search", models.SemanticSearchRequest, models.SemanticSearchResponse)
    tool_route("search_text", models.SearchTextRequest, models.SearchTextResponse)
    tool_route("list_paths", models.ListPathsRequest, models.ListPathsResponse)
    tool_route("blame_range", models.BlameRangeRequest, models.BlameRangeResponse)
    tool_route("file_history", models.FileHistoryRequest, models.FileHistoryResponse)
    return app
