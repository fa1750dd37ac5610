"""The official MCP client lists the catalogue's tools and calls each, over streamable HTTP and stdio."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from searcher_helpers import NON_ASCII_PATH, Repo, Served

from codeintel.core.settings import Settings
from codeintel.searcher import catalog

pytestmark = pytest.mark.slow

CALLS: dict[str, dict[str, Any]] = {
    "semantic_search": {"query": "send an email over SMTP", "k": 2, "mode": "hybrid"},
    "search_text": {"pattern": "TaxCalculator"},
    "list_paths": {"path": "billing"},
    "blame_range": {"path": NON_ASCII_PATH, "start_line": 1, "end_line": 2},
    "file_history": {"path": "mail/sender.py", "limit": 2},
    "read_file": {"path": "billing/invoice.py", "start_line": 4, "end_line": 6},
}


def _payload(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    if result.structured_content:
        data = result.structured_content
        return dict(data.get("result", data))
    return dict(json.loads(result.content[0].text))


async def _exercise(session: ClientSession, repo: Repo) -> None:
    await session.initialize()
    listed = await session.list_tools()
    tools = {t.name: t for t in listed.tools}
    assert set(tools) == {tool.name for tool in catalog.CATALOG} == {*CALLS, "list_repos"}
    for tool in tools.values():
        assert len(tool.description or "") > 80
        assert tool.input_schema["type"] == "object"
    assert tools["semantic_search"].input_schema["properties"]["k"]["maximum"] == 100
    assert tools["blame_range"].input_schema["required"] == ["path", "start_line", "end_line"]
    head = repo.git("rev-parse", "HEAD")
    for name, arguments in CALLS.items():
        body = _payload(await session.call_tool(name, arguments))
        assert body["commit"] == head, name
        assert body["generation"] == "g000001"
        assert body["results"], name
    (row,) = _payload(await session.call_tool("list_repos", {}))["results"]
    assert (row["commit"], row["generation"]) == (head, "g000001")
    assert row["embedding_model"] and row["vectors"]["primary"] > 0
    body = _payload(await session.call_tool("search_text", {"pattern": "TaxCalculator"}))
    assert body["results"][0]["path"] == "billing/invoice.py"
    missing = await session.call_tool("file_history", {"path": "gone.txt"})
    assert missing.is_error
    assert "404" in missing.content[0].text
    assert "gone.txt" in missing.content[0].text
    invalid = await session.call_tool("semantic_search", {"query": "x", "k": 1000})
    assert invalid.is_error
    assert "k" in invalid.content[0].text


async def test_streamable_http(server: Served, repo: Repo) -> None:
    async with (
        streamable_http_client(f"{server.url}/mcp") as (read, write),
        ClientSession(read, write) as session,
    ):
        await _exercise(session, repo)


async def test_stdio(store_settings: Settings, repo: Repo) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "codeintel.cli", "mcp", "--store", str(store_settings.store.path)],
        env={
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PATH": os.environ["PATH"],
            **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
        },
    )
    with open(os.devnull, "w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, read_timeout_seconds=180) as session,
        ):
            await _exercise(session, repo)
