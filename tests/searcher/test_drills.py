"""What the drills of issue 22 found, each replayed against a real server on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fleet_helpers import build, fleet_settings, make_repo
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from searcher_helpers import Served

from codeintel.searcher import create_app, discovery

pytestmark = pytest.mark.slow

HOSTILE = ["*?" * 40 + "Z", "*a" * 300 + "Z", "**/" * 100 + "Z"]


@pytest.mark.timeout(120)  # the backtracking regex took 8 s for 12 pairs, x4 per pair
async def test_hostile_globs_answer_while_healthz_keeps_answering(
    client: httpx.AsyncClient,
) -> None:
    body = {"include_globs": (HOSTILE * 22)[:64], "max_results": 10}
    stop = asyncio.Event()
    probes: list[int] = []

    async def probe() -> None:
        while not stop.is_set():
            probes.append((await client.get("/healthz")).status_code)
            await asyncio.sleep(0.01)

    prober = asyncio.create_task(probe())
    answers = await asyncio.gather(*(client.post("/v1/list_paths", json=body) for _ in range(4)))
    stop.set()
    await prober
    for r in answers:
        assert r.status_code == 200, r.text
        assert r.json()["results"] == []
    assert probes and set(probes) == {200}
    exclude = await client.post("/v1/list_paths", json={"exclude_globs": HOSTILE})
    assert exclude.status_code == 200
    assert exclude.json()["results"]  # nothing is excluded, every path is listed


@pytest.mark.parametrize("query", [" ", "\t\n  ", "\u3000"])
async def test_whitespace_only_query_is_a_422(client: httpx.AsyncClient, query: str) -> None:
    r = await client.post("/v1/semantic_search", json={"query": query})
    assert r.status_code == 422, r.text
    assert "query" in r.text


async def test_unknown_arguments_are_refused_over_mcp_as_over_rest(server: Served) -> None:
    rest = httpx.post(f"{server.url}/v1/semantic_search", json={"query": "x", "evil": 1})
    assert rest.status_code == 422
    async with (
        streamable_http_client(f"{server.url}/mcp") as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert all(t.input_schema.get("additionalProperties") is False for t in tools.values())
        refused = await session.call_tool("semantic_search", {"query": "x", "evil": 1})
        assert refused.is_error
        text = refused.content[0].text  # type: ignore[union-attr]
        assert "422" in text and "evil" in text
        blank = await session.call_tool("semantic_search", {"query": "  "})
        assert blank.is_error and "422" in blank.content[0].text  # type: ignore[union-attr]
        fine = await session.call_tool("list_paths", {"path": "billing"})
        assert not fine.is_error


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, local_embedder: Any) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("drills-fleet")
    repo = make_repo(base / "src", {"a.py": "def send_email(to):\n    return to\n"})
    build(base / "stores", "ns/a", repo, local_embedder)
    with Served(create_app(fleet_settings(base / "stores"), embedder=local_embedder)) as served:
        served.wait_ready()
        yield served


def test_a_vector_of_the_wrong_dimension_is_a_422(fleet: Served) -> None:
    vector = base64.b64encode(np.ones(4, dtype="<f4").tobytes()).decode()
    body = {"request": {"query": "send"}, "vector": vector, "model": "any"}
    r = httpx.post(f"{fleet.url}/internal/v1/semantic_search", json=body, timeout=60)
    assert r.status_code == 422, r.text
    assert "4 dimensions" in r.text and "vector" in r.text


def test_a_directory_without_current_is_skipped_with_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "ns" / "store" / "generations").mkdir(parents=True)
    (tmp_path / "ns" / "half-copied").mkdir()
    with caplog.at_level(logging.WARNING, logger="codeintel.searcher.discovery"):
        assert list(discovery.discover(tmp_path)) == ["ns/store"]
        discovery.discover(tmp_path)  # a rescan does not repeat the line
    skipped = [r.getMessage() for r in caplog.records if "half-copied" in r.getMessage()]
    assert len(skipped) == 1
    assert "no CURRENT" in skipped[0]


def test_stdio_answers_lines_it_cannot_parse_and_goes_on(store_settings: Any) -> None:
    env = {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PATH": os.environ["PATH"],
        **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
    }
    lines = [
        '{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"\\ud800"}}',
        '{"jsonrpc":"2.0","id":2,"meth',
        '{"hello": "world"}',
        json.dumps({"jsonrpc": "2.0", "id": 3, "method": "ping"}),
    ]
    # A client keeps stdin open while it waits for its replies (closing it shuts the
    # server down, and a reply still in flight may then be dropped), so read first.
    proc = subprocess.Popen(
        [sys.executable, "-m", "codeintel.cli", "mcp", "--store", str(store_settings.store.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write("\n".join(lines) + "\n")
        proc.stdin.flush()
        replies = [json.loads(proc.stdout.readline()) for _ in lines]
    finally:
        proc.stdin.close()
        proc.wait(60)
    assert [r.get("error", {}).get("code") for r in replies] == [-32700, -32700, -32600, None]
    assert all(r["id"] is None for r in replies[:3])
    assert replies[3] == {"jsonrpc": "2.0", "id": 3, "result": {}}
