"""Several servers of different code answering the same REST request, one after another.

``text_search_bench`` times search_text against ripgrep; this isolates one change:
a ``codeintel serve --store`` per source tree (``--srcs``, e.g. main's, a commit's
and this branch's), all on the same store, each asked the same search_text page over
its own keep-alive connection, the servers in a new (seeded) order each round, so
every one meets the same load. Wall time per request, p25/p50/p75, and p50 over the
first server's.

    python -m benchmarks.rest_ab_bench --store S --srcs A/src B/src [--pattern return] [--page 2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks import serverproc
from benchmarks.common import write_results

BUILD_WAIT = 12.0
"""Seconds the servers are given to build their trigram indexes after a first search."""


def measure(
    store: Path, srcs: list[str], body: dict[str, Any], page: int, requests: int
) -> list[dict[str, Any]]:
    """Rows of p25/p50/p75 ms per source tree, ``requests`` requests each."""
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(
                serverproc.ServerProcess.codeintel(
                    "serve",
                    "--store",
                    str(store),
                    env={"PYTHONPATH": src},
                    stderr=subprocess.DEVNULL,
                )
            )
            for src in srcs
        ]
        clients = [httpx.Client(base_url=s.url, timeout=60) for s in servers]
        for client in clients:
            client.post("/v1/search_text", json=body)
        time.sleep(BUILD_WAIT)
        bodies = []
        for client in clients:  # page 2 by each server's own cursor
            cursor = client.post("/v1/search_text", json=body).json().get("cursor")
            bodies.append({**body, "cursor": cursor} if page == 2 and cursor else body)
        for _ in range(20):  # warm
            for client, b in zip(clients, bodies, strict=True):
                client.post("/v1/search_text", json=b)
        times: list[list[float]] = [[] for _ in servers]
        order = random.Random(1)
        load_before = os.getloadavg()[0]
        for _ in range(requests):
            for i in order.sample(range(len(servers)), len(servers)):
                start = time.perf_counter()
                clients[i].post("/v1/search_text", json=bodies[i])
                times[i].append(time.perf_counter() - start)
        first = statistics.median(times[0])
        rows = []
        for src, xs in zip(srcs, times, strict=True):
            q = statistics.quantiles(xs, n=4)
            row = {"src": src, "pattern": body["pattern"], "page": page}
            row |= {"p25_ms": round(q[0] * 1e3, 2), "p50_ms": round(q[1] * 1e3, 2)}
            row |= {"p75_ms": round(q[2] * 1e3, 2), "p50/first": round(q[1] / first, 3)}
            row |= {"load": f"{load_before:.2f}-{os.getloadavg()[0]:.2f}"}
            print(row, flush=True)
            rows.append(row)
        return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--srcs", nargs="+", required=True, help="PYTHONPATH of each server")
    p.add_argument("--pattern", nargs="+", default=["return", "item"])
    p.add_argument("--page", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--name", default="rest_ab")
    a = p.parse_args(argv)
    rows = []
    for pattern in a.pattern:
        for page in a.page:
            body = {"pattern": pattern, "max_results": 200}
            rows += measure(a.store, a.srcs, body, page, a.requests)
    write_results(a.name, rows, {"requests": a.requests, "store": str(a.store)})


if __name__ == "__main__":
    main()
