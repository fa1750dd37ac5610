"""Every MCP client configuration in examples/mcp connects and lists the five tools."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from searcher_helpers import Repo, Served

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


def _spawn(entry: dict[str, Any], args: list[str], **extra: Any) -> StdioServerParameters:
    """The configured command, run as this interpreter's ``codeintel`` (``-m codeintel.cli``),
    which works whatever the venv's console-script shebang says."""
    assert entry["command"] == "codeintel"
    env = {**entry.get("env", {}), "PATH": os.environ["PATH"], **extra.pop("env", {})}
    if "PYTHONPATH" in os.environ:  # a worktree's sources over the editable install
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    command = [sys.executable, "-m", "codeintel.cli", *args]
    return StdioServerParameters(command=command[0], args=command[1:], env=env, **extra)


async def test_stdio_config_indexes_the_project(repo: Repo, tmp_path: Path) -> None:
    """``codeintel mcp .`` in the project directory: the tools list at once, and search_text
    answers from the repository's HEAD while (or after) it is indexed."""
    entry = _entry("stdio.mcp.json")
    assert entry["args"] == ["mcp", "."]
    params = _spawn(
        entry, entry["args"], cwd=repo.path, env={"XDG_CACHE_HOME": str(tmp_path / "cache")}
    )
    with open(os.devnull, "w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write, read_timeout_seconds=180) as session,
        ):
            await session.initialize()
            assert {t.name for t in (await session.list_tools()).tools} == TOOLS
            deadline = time.monotonic() + 120
            while (
                found := await session.call_tool("search_text", {"pattern": "smtplib"})
            ).is_error:
                assert time.monotonic() < deadline, found.content[0].text
                await asyncio.sleep(0.2)
            body = dict(found.structured_content or {})
            assert found.content[0].text.splitlines()[1].startswith("mail/sender.py:")
            assert body["commit"] == repo.head()
            assert body["results"][0]["path"] == "mail/sender.py"


async def test_stdio_store_config(store_settings: Settings) -> None:
    entry = _entry("stdio-store.mcp.json")
    args = [str(store_settings.store.path) if a == ".codeintel" else a for a in entry["args"]]
    with open(os.devnull, "w") as errlog:
        async with stdio_client(_spawn(entry, args), errlog=errlog) as (read, write):
            assert await _list_tools(read, write) == TOOLS
