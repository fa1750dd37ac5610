"""Every MCP client configuration in examples/mcp connects and lists the five tools."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from searcher_helpers import Served

from codeintel.core.settings import Settings
from codeintel.searcher import create_app

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "mcp"
TOOLS = {
    "semantic_search",
    "search_text",
    "list_paths",
    "blame_range",
    "file_history",
    "list_repos",
}


def _entry(name: str) -> dict[str, Any]:
    return dict(json.loads((EXAMPLES / name).read_text())["mcpServers"]["codeintel"])


async def _list_tools(read: Any, write: Any) -> set[str]:
    async with ClientSession(read, write, read_timeout_seconds=180) as session:
        await session.initialize()
        return {t.name for t in (await session.list_tools()).tools}


@pytest.mark.parametrize("name", ["claude-code.mcp.json", "cursor.mcp.json"])
async def test_http_configs(
    name: str, store_settings: Settings, local_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = _entry(name)
    assert entry["url"] == "http://127.0.0.1:8080/mcp"
    monkeypatch.setenv("CODEINTEL_API_TOKEN", "tok")
    headers = {
        k: v.replace("${env:CODEINTEL_API_TOKEN}", "tok")
        for k, v in entry.get("headers", {}).items()
    }
    with Served(create_app(store_settings, embedder=local_embedder)) as served:
        url = entry["url"].replace("http://127.0.0.1:8080", served.url)
        if not headers:
            headers = {"Authorization": "Bearer tok"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            streamable_http_client(url, http_client=http) as (read, write),
        ):
            assert await _list_tools(read, write) == TOOLS


async def test_stdio_config(store_settings: Settings) -> None:
    entry = _entry("stdio.mcp.json")
    assert entry["command"] == "codeintel"
    args = [str(store_settings.store.path) if a == ".codeintel" else a for a in entry["args"]]
    command = str(Path(sys.executable).parent / entry["command"])
    env = {**entry.get("env", {}), "PATH": os.environ["PATH"]}
    if "PYTHONPATH" in os.environ:  # a worktree's sources over the editable install
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    params = StdioServerParameters(command=command, args=args, env=env)
    with open(os.devnull, "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            assert await _list_tools(read, write) == TOOLS
