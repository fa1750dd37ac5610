"""MCP session flood: RSS and admission of a new client after N abandoned ``initialize`` calls.

Reproduces the lock-out: ``codeintel serve --store EMPTY`` in its own process
(as a pod runs it), then N ``initialize`` POSTs (default 10 200) whose sessions
are never used or deleted. Measured per configuration of the session limits:
the server's RSS before and after (``/proc/<pid>/status`` VmRSS, and VmHWM for
the peak), how many flood calls were refused, how many flood sessions are still
open (each id pinged once afterwards: 200 open, 404 evicted), and whether the
official MCP client can then open a session and list the tools.

Writes ``results/mcp_sessions.json`` and ``.md``. Never asserts on time.
Usage: ``python -m benchmarks.mcp_sessions_bench [--calls 10200] [--workers 32]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from benchmarks import serverproc
from benchmarks.common import write_results

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
PING = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
ACCEPT = {"accept": "application/json, text/event-stream"}
CONFIGS: dict[str, dict[str, str]] = {
    "defaults (1000, 256 per client, 600 s)": {},
    "no per-client cap (1000, 600 s)": {"CODEINTEL_SERVER_MCP_MAX_SESSIONS_PER_CLIENT": "0"},
    "SDK's own bounds (10000, 1800 s)": {
        "CODEINTEL_SERVER_MCP_MAX_SESSIONS": "10000",
        "CODEINTEL_SERVER_MCP_MAX_SESSIONS_PER_CLIENT": "0",
        "CODEINTEL_SERVER_MCP_SESSION_IDLE_SECONDS": "1800",
    },
}


def _memory_kb(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def _settled_kb(pid: int, quiet_seconds: float = 6.0, timeout: float = 300.0) -> dict[str, int]:
    """Memory once RSS has stopped moving: the searcher loads its query model in the
    background after ``/healthz`` answers (measured: +470 MB over ~30 s, no request needed)."""
    deadline = time.monotonic() + timeout
    last, since = _memory_kb(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1)
        now = _memory_kb(pid)
        if abs(now["VmRSS"] - last["VmRSS"]) > 1024:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_seconds:
            return now
    return _memory_kb(pid)


def searcher(store: Path, env: dict[str, str]) -> serverproc.ServerProcess:
    """``codeintel serve --store`` over an empty store, in its own process."""
    return serverproc.ServerProcess.codeintel(
        "serve", "--store", str(store), log_level="error", env=env, ready_path="/healthz"
    )


async def _requests(
    url: str, bodies: list[tuple[dict[str, Any], dict[str, str]]], workers: int
) -> tuple[Counter[int], list[str]]:
    statuses: Counter[int] = Counter()
    ids: list[str] = []
    todo = iter(bodies)
    async with httpx.AsyncClient(timeout=60) as client:

        async def worker() -> None:
            for body, headers in todo:
                try:
                    r = await client.post(f"{url}/mcp", json=body, headers={**ACCEPT, **headers})
                except httpx.TransportError:  # counted, as a client would see it
                    statuses[0] += 1
                    continue
                statuses[r.status_code] += 1
                if sid := r.headers.get("mcp-session-id"):
                    ids.append(sid)

        await asyncio.gather(*(worker() for _ in range(workers)))
    return statuses, ids


async def _new_client(url: str) -> str:
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    try:
        async with (
            streamable_http_client(f"{url}/mcp") as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            tools = await session.list_tools()
            return f"ok ({len(tools.tools)} tools)"
    except Exception as e:  # a benchmark reports, it does not stop
        return f"failed: {type(e).__name__}: {e}"[:200]


def run(name: str, env: dict[str, str], calls: int, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, searcher(Path(tmp) / "store", env) as served:
        pid = served.pid
        warm = asyncio.run(_new_client(served.url))  # imports and first session paid for
        before = _settled_kb(pid)
        start = time.perf_counter()
        statuses, ids = asyncio.run(_requests(served.url, [(INIT, {})] * calls, workers))
        seconds = time.perf_counter() - start
        after = _settled_kb(pid)
        newcomer = asyncio.run(_new_client(served.url))
        pings = [(PING, {"mcp-session-id": s, "mcp-protocol-version": "2025-06-18"}) for s in ids]
        alive, _ = asyncio.run(_requests(served.url, pings, workers))
        return {
            "config": name,
            "flood_calls": calls,
            "flood_seconds": round(seconds, 1),
            "flood_200": statuses[200],
            "flood_refused": sum(n for code, n in statuses.items() if code >= 400),
            "flood_transport_errors": statuses[0],
            "flood_sessions_still_open": alive[200],
            "ping_transport_errors": alive[0],
            "rss_before_mb": round(before["VmRSS"] / 1024, 1),
            "rss_after_mb": round(after["VmRSS"] / 1024, 1),
            "rss_growth_mb": round((after["VmRSS"] - before["VmRSS"]) / 1024, 1),
            "rss_peak_mb": round(after["VmHWM"] / 1024, 1),
            "warm_client": warm,
            "new_client_after_flood": newcomer,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_200, help="abandoned initialize calls")
    parser.add_argument("--workers", type=int, default=32, help="concurrent flood connections")
    parser.add_argument("--only", default="", help="run only configs whose name contains this")
    args = parser.parse_args(argv)
    rows = []
    for name, env in CONFIGS.items():
        if args.only in name:
            rows.append(run(name, env, args.calls, args.workers))
            print(rows[-1], flush=True)
    meta = {
        "calls": args.calls,
        "workers": args.workers,
        "how": "codeintel serve --store EMPTY in its own process; N initialize POSTs never "
        "closed; VmRSS from /proc; then each flood session pinged (200 = still open) and the "
        "official MCP client opens a session and lists tools",
    }
    write_results("mcp_sessions", rows, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
