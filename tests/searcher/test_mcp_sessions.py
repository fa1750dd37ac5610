"""Abandoned MCP sessions never lock MCP out: count bounded, oldest idle evicted, per-client cap.

Real HTTP on loopback: raw ``initialize`` POSTs that never close their session,
as a flood does, and the official MCP client as the newcomer that must still get in.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from searcher_helpers import Served

from codeintel.core import errors
from codeintel.core.settings import Settings
from codeintel.searcher import create_app
from codeintel.searcher.mcp_transport import BoundedSessionManager

pytestmark = pytest.mark.slow

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "flood", "version": "1"},
    },
}
ACCEPT = {"accept": "application/json, text/event-stream"}


def _sessions(served: Served) -> BoundedSessionManager:
    manager: BoundedSessionManager = served.app.state.mcp_sessions
    return manager


async def _wait(condition: Callable[[], bool], timeout: float = 20.0, steady: float = 0.0) -> None:
    """Poll (without blocking the loop the MCP client's tasks run on) until ``condition``
    has held for ``steady`` seconds."""
    deadline = time.monotonic() + timeout
    held_since: float | None = None
    while True:
        now = time.monotonic()
        if condition():
            held_since = now if held_since is None else held_since
            if now - held_since >= steady:
                return
        else:
            held_since = None
        if now > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


def _agents_streaming(sessions: BoundedSessionManager, agents: int) -> Callable[[], bool]:
    """True once ``agents`` sessions are busy. A new agent is briefly idle between its
    ``notifications/initialized`` POST and its GET stream, hence the steady wait."""
    return lambda: sessions.open_sessions - sessions.idle_sessions == agents


async def _flood(
    url: str,
    n: int,
    *,
    workers: int = 16,
    local_address: str = "127.0.0.1",
    watch: Callable[[], None] | None = None,
) -> tuple[Counter[int], list[str]]:
    """``n`` initialize calls whose sessions are never used again nor deleted."""
    statuses: Counter[int] = Counter()
    ids: list[str] = []
    todo = iter(range(n))
    transport = httpx.AsyncHTTPTransport(local_address=local_address)
    async with httpx.AsyncClient(transport=transport, timeout=30) as client:

        async def worker() -> None:
            for _ in todo:
                r = await client.post(f"{url}/mcp", json=INIT, headers=ACCEPT)
                statuses[r.status_code] += 1
                if sid := r.headers.get("mcp-session-id"):
                    ids.append(sid)
                if watch is not None:
                    watch()

        await asyncio.gather(*(worker() for _ in range(workers)))
    return statuses, ids


def _ping(url: str, session_id: str, local_address: str = "127.0.0.1") -> int:
    headers = {**ACCEPT, "mcp-session-id": session_id, "mcp-protocol-version": "2025-06-18"}
    with httpx.Client(transport=httpx.HTTPTransport(local_address=local_address)) as client:
        r = client.post(
            f"{url}/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "ping"}, headers=headers
        )
    return r.status_code


def _app(store_settings: Settings, local_embedder: Any, **server: Any) -> Any:
    return create_app(store_settings.replace(server=server), embedder=local_embedder)


async def test_flood_of_abandoned_sessions_never_locks_out_new_clients(
    store_settings: Settings, local_embedder: Any
) -> None:
    app = _app(
        store_settings,
        local_embedder,
        mcp_max_sessions=100,
        mcp_max_sessions_per_client=0,
        mcp_session_idle_seconds=600.0,  # far longer than the test: eviction, not expiry
    )
    with Served(app) as served:
        served.wait_ready()
        sessions = _sessions(served)
        peak = 0

        def watch() -> None:
            nonlocal peak
            peak = max(peak, sessions.open_sessions)

        statuses, ids = await _flood(served.url, 1500, watch=watch)
        assert statuses == Counter({200: 1500})
        assert peak <= 100
        assert sessions.open_sessions == 100
        assert sessions.evicted["full"] == 1400
        scraped = httpx.get(f"{served.url}/metrics").text  # every flood session is idle now
        assert 'codeintel_mcp_sessions{state="open"} 100.0' in scraped
        assert 'codeintel_mcp_sessions{state="idle"} 100.0' in scraped
        assert _ping(served.url, ids[-1]) == 200  # the newest flood sessions stay usable
        assert _ping(served.url, ids[0]) == 404  # the oldest idle went first

        async with (
            streamable_http_client(f"{served.url}/mcp") as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            first = await session.call_tool("search_text", {"pattern": "TaxCalculator"})
            assert not first.is_error, first.content
            # Its GET stream keeps the agent's session busy, so the next flood evicts
            # the idle sessions around it and never the agent.
            await _wait(_agents_streaming(sessions, 1), steady=1.0)
            statuses, _ = await _flood(served.url, 300, watch=watch)
            assert statuses == Counter({200: 300})
            again = await session.call_tool("search_text", {"pattern": "TaxCalculator"})
            assert not again.is_error, again.content
        assert peak <= 100


async def test_per_client_cap_evicts_the_clients_own_sessions(
    store_settings: Settings, local_embedder: Any
) -> None:
    app = _app(store_settings, local_embedder, mcp_max_sessions=100, mcp_max_sessions_per_client=20)
    with Served(app) as served:
        sessions = _sessions(served)
        _, neighbour = await _flood(served.url, 3, workers=1, local_address="127.0.0.2")
        statuses, _ = await _flood(served.url, 300, workers=8)
        assert statuses == Counter({200: 300})
        assert sessions.sessions_of("127.0.0.1") == 20
        assert sessions.sessions_of("127.0.0.2") == 3
        assert sessions.evicted["per_client"] == 280
        assert sessions.evicted["full"] == 0
        for sid in neighbour:
            assert _ping(served.url, sid, "127.0.0.2") == 200


async def test_per_client_cap_refuses_only_that_client_when_its_sessions_are_busy(
    store_settings: Settings, local_embedder: Any
) -> None:
    app = _app(store_settings, local_embedder, mcp_max_sessions_per_client=1)
    with Served(app) as served:
        sessions = _sessions(served)
        async with (
            streamable_http_client(f"{served.url}/mcp") as (read, write),
            ClientSession(read, write) as agent,
        ):
            await agent.initialize()
            await _wait(_agents_streaming(sessions, 1), steady=1.0)
            assert sessions.open_sessions == 1
            r = httpx.post(f"{served.url}/mcp", json=INIT, headers=ACCEPT)
            assert r.status_code == 429
            assert r.headers["retry-after"] == "1"
            assert "CODEINTEL_SERVER_MCP_MAX_SESSIONS_PER_CLIENT" in r.json()["error"]["message"]
            statuses, _ = await _flood(served.url, 1, workers=1, local_address="127.0.0.2")
            assert statuses == Counter({200: 1})
            assert sessions.refused == Counter({"per_client": 1})
            await agent.list_tools()


async def test_refused_only_when_every_session_is_busy(
    store_settings: Settings, local_embedder: Any
) -> None:
    app = _app(store_settings, local_embedder, mcp_max_sessions=2)
    with Served(app) as served:
        sessions = _sessions(served)
        async with (
            streamable_http_client(f"{served.url}/mcp") as (r1, w1),
            ClientSession(r1, w1) as one,
        ):
            await one.initialize()
            async with (
                streamable_http_client(f"{served.url}/mcp") as (r2, w2),
                ClientSession(r2, w2) as two,
            ):
                await two.initialize()
                await _wait(_agents_streaming(sessions, 2), steady=1.0)
                assert sessions.open_sessions == 2
                r = httpx.post(f"{served.url}/mcp", json=INIT, headers=ACCEPT)
                assert r.status_code == 503
                assert r.json()["error"]["data"]["type"] == "SessionsBusy"
                assert sessions.refused == Counter({"full": 1})
                await one.list_tools()
            # The second client closed (DELETE): room again.
            await _wait(lambda: sessions.open_sessions == 1)
            statuses, _ = await _flood(served.url, 1, workers=1)
            assert statuses == Counter({200: 1})


async def test_idle_sessions_expire_after_the_setting(
    store_settings: Settings, local_embedder: Any
) -> None:
    app = _app(store_settings, local_embedder, mcp_session_idle_seconds=0.5)
    with Served(app) as served:
        sessions = _sessions(served)
        statuses, ids = await _flood(served.url, 20, workers=4)
        assert statuses == Counter({200: 20})
        await _wait(lambda: sessions.open_sessions == 0, timeout=10)
        assert _ping(served.url, ids[0]) == 404
        assert sessions.evicted.total() == 0  # expired, not evicted


@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("mcp_max_sessions", 0, "CODEINTEL_SERVER_MCP_MAX_SESSIONS"),
        ("mcp_max_sessions_per_client", -1, "CODEINTEL_SERVER_MCP_MAX_SESSIONS_PER_CLIENT"),
        ("mcp_session_idle_seconds", 0.0, "CODEINTEL_SERVER_MCP_SESSION_IDLE_SECONDS"),
    ],
)
def test_bad_limits_name_the_variable(
    store_settings: Settings, local_embedder: Any, field: str, value: Any, variable: str
) -> None:
    with pytest.raises(errors.ConfigError, match=variable):
        _app(store_settings, local_embedder, **{field: value})
