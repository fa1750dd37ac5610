"""Entry points the CLI calls: ``codeintel serve`` (HTTP) and ``codeintel mcp`` (stdio).

``serve`` prints where to point an agent before it blocks in uvicorn: the REST
and MCP URLs and a ready-to-paste MCP client configuration (the same shape as
``examples/mcp/``). ``run_stdio`` speaks MCP on stdin/stdout for editors that
spawn their tools; it must never print to stdout, so everything it reports
goes to the log (stderr).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
from typing import Any, TextIO

import uvicorn

from codeintel.core import settings as settings_mod
from codeintel.searcher import app as app_mod
from codeintel.searcher import context as context_mod
from codeintel.searcher import mcp_stdio, mcp_tools

logger = logging.getLogger(__name__)

STDIO_READY_TIMEOUT_SECONDS = 120.0
"""How long ``codeintel mcp`` waits for the index and model before answering anyway (503s)."""


def base_url(settings: settings_mod.Settings) -> str:
    host = settings.server.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.server.port}"


def client_config(settings: settings_mod.Settings) -> dict[str, Any]:
    """An ``mcpServers`` entry for Claude Code, Cursor and most MCP clients."""
    entry: dict[str, Any] = {"type": "http", "url": f"{base_url(settings)}/mcp"}
    if app_mod.api_token(settings):
        entry["headers"] = {"Authorization": "Bearer ${CODEINTEL_API_TOKEN}"}
    return {"mcpServers": {"codeintel": entry}}


def print_banner(settings: settings_mod.Settings, out: TextIO = sys.stdout) -> None:
    url = base_url(settings)
    print(f"codeintel searcher on {url}", file=out)
    print(f"  REST  POST {url}/v1/<tool>   (docs: {url}/docs)", file=out)
    print(f"  MCP   {url}/mcp   (streamable HTTP)", file=out)
    if settings.server.metrics_port:
        metrics = url.rsplit(":", 1)[0] + f":{settings.server.metrics_port}/metrics"
        print(f"  Prometheus  {metrics}   (no token)", file=out)
    print("MCP client config (Claude Code .mcp.json, Cursor ~/.cursor/mcp.json):", file=out)
    print(json.dumps(client_config(settings), indent=2), file=out, flush=True)


def serve(settings: settings_mod.Settings, *, router: bool = False, early: Any = None) -> None:
    """Serve REST + MCP on ``settings.server.host:port`` until interrupted (blocking):
    one store, every store under ``fleet.stores_root``, or (``router``) the pool's shards.
    ``early`` (``serve PATH``): answer from the commit being indexed until it is published."""
    if router:
        app = app_mod.create_router_app(settings)
    else:
        app = app_mod.create_app(settings, early=early)
    server = make_server(settings, app)
    sockets = bind(server.config, settings)
    print_banner(settings)
    server.run(sockets=sockets)


def make_server(settings: settings_mod.Settings, app: Any) -> uvicorn.Server:
    """The uvicorn server of ``app`` as ``codeintel serve`` runs it."""
    level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.port,
        # uvicorn's lines go through the root handler the CLI configured (JSON in the
        # cluster, readable on a terminal) at the level the CLI was given.
        log_config=None,
        log_level=level,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(config)


def bind(config: uvicorn.Config, settings: settings_mod.Settings) -> list[socket.socket]:
    """The API socket, and the metrics socket when ``server.metrics_port`` is set."""
    sockets = [config.bind_socket()]
    if settings.server.metrics_port:
        metrics = uvicorn.Config(
            config.app, host=config.host, port=settings.server.metrics_port, log_config=None
        )
        sockets.append(metrics.bind_socket())
    return sockets


def run_stdio(settings: settings_mod.Settings, *, early: Any = None) -> None:
    """Serve the five tools over MCP stdio, blocking: a prepared store (``codeintel mcp
    --store DIR``), or with ``early`` (``codeintel mcp PATH``) at once, from the commit
    being indexed until its first generation is published."""
    asyncio.run(_stdio(settings, early))


async def _stdio(settings: settings_mod.Settings, early: Any) -> None:
    context: context_mod.AppContext
    if early is not None:
        from codeintel.searcher import early as early_mod

        context = early_mod.EarlyContext(settings, early)
    else:
        context = context_mod.AppContext(settings)
    server = mcp_tools.build_server(lambda: context.tools)
    try:
        await context.start()
        if early is None:
            try:
                await context.wait_ready(STDIO_READY_TIMEOUT_SECONDS)
            except TimeoutError:
                logger.warning(
                    "no generation ready in %s yet; tools answer 503", settings.store.path
                )
        await mcp_stdio.serve(server)
    finally:
        await context.aclose()
