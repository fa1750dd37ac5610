"""The published schemas, byte for byte: the REST OpenAPI document and every MCP tool's
input and output schema, taken from the real FastAPI app and the real MCP server.

A change to a parameter, a row shape, a limit or a description changes what agents
read; this test makes that change deliberate. After an intended change, rewrite the
fixture with ``CODEINTEL_UPDATE_SCHEMAS=1`` and review its diff in the commit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from codeintel.core.settings import Settings
from codeintel.searcher import catalog, create_app, mcp_tools
from codeintel.searcher.app import create_router_app

FIXTURE = Path(__file__).parent / "fixtures" / "schemas.json"


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _never_called() -> catalog.Service:
    raise AssertionError("listing tools calls no service")


async def _schemas(tmp_path: Path) -> dict[str, Any]:
    settings = Settings.from_env({}, store={"path": str(tmp_path / "store")})
    router = Settings.from_env({}, fleet={"shard_urls": ("http://127.0.0.1:9",)})
    server = mcp_tools.build_server(_never_called)
    tools = {
        tool.name: {"input": tool.input_schema, "output": tool.output_schema}
        for tool in await server.list_tools()
    }
    openapi = create_app(settings).openapi()
    assert create_router_app(router).openapi() == openapi  # one API, however answered
    return {"openapi": openapi, "mcp_tools": tools}


async def test_published_schemas_are_unchanged(tmp_path: Path) -> None:
    text = _dump(await _schemas(tmp_path))
    if os.environ.get("CODEINTEL_UPDATE_SCHEMAS") == "1":
        FIXTURE.write_text(text, encoding="utf-8")
    expected = FIXTURE.read_text(encoding="utf-8")
    if text != expected:
        got, want = json.loads(text), json.loads(expected)
        differing = sorted(
            f"{part}.{key}"
            for part in want
            for key in {*want[part], *got.get(part, {})}
            if want[part].get(key) != got.get(part, {}).get(key)
        )
        pytest.fail(f"published schemas changed: {differing[:20]}")


async def test_every_tool_publishes_both_schemas(tmp_path: Path) -> None:
    tools = (await _schemas(tmp_path))["mcp_tools"]
    assert sorted(tools) == sorted(t.name for t in catalog.CATALOG)
    for name, schemas in tools.items():
        assert schemas["input"]["additionalProperties"] is False, name
        assert "results" in schemas["output"]["properties"], name
