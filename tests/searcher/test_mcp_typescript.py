"""The TypeScript MCP SDK (npm ``@modelcontextprotocol/sdk``) against ``codeintel mcp``.

Its client validates every tool's structured content against the tool's output
schema (``Client.callTool``), so a call that comes back is a structured answer
that matches the published schema. The SDK is installed by this test into a
cache directory with npm; without node/npm or the registry the test is skipped
and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from searcher_helpers import NON_ASCII_PATH

from codeintel.core.settings import Settings

pytestmark = pytest.mark.slow

SDK = "@modelcontextprotocol/sdk@1"

CLIENT = r"""
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [python, store, calls] = process.argv.slice(2);
const transport = new StdioClientTransport({
  command: python,
  args: ["-m", "codeintel.cli", "mcp", "--store", store],
  env: process.env,
  stderr: "ignore",
});
const client = new Client({ name: "ts-check", version: "1.0.0" });
await client.connect(transport, { timeout: 280000 });
const { tools } = await client.listTools();
const out = { schemas: Object.fromEntries(tools.map((t) => [t.name, !!t.outputSchema])), answers: {} };
for (const [name, args] of Object.entries(JSON.parse(calls))) {
  // callTool throws when structuredContent does not validate against the outputSchema.
  // (The first semantic call loads the embedding model: allow for a busy machine.)
  const result = await client.callTool({ name, arguments: args }, undefined, { timeout: 280000 });
  out.answers[name] = {
    isError: !!result.isError,
    structured: result.structuredContent,
    text: result.content[0].text,
  };
}
await client.close();
console.log(JSON.stringify(out));
"""

CALLS = {
    "semantic_search": {"query": "send an email over SMTP", "k": 2},
    "search_text": {"pattern": "TaxCalculator", "max_results": 1},
    "list_paths": {"path": "billing"},
    "blame_range": {"path": NON_ASCII_PATH, "start_line": 1, "end_line": 4},
    "file_history": {"path": "mail/sender.py", "limit": 2},
    "list_repos": {},
}


def _sdk_dir() -> Path:
    """The SDK installed once into a cache directory (skip when npm cannot get it)."""
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        pytest.skip("node/npm not installed: cannot run the TypeScript SDK")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    where = cache / "codeintel-tests" / "mcp-ts-sdk"
    if not (where / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        where.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--prefix", str(where), SDK],
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.TimeoutExpired:
            pytest.skip("npm install of the TypeScript SDK timed out (registry unreachable?)")
        if done.returncode != 0:
            pytest.skip(f"npm could not install {SDK}: {done.stderr.strip()[-300:]}")
    return where


def test_typescript_sdk_validates_structured_content(store_settings: Settings) -> None:
    where = _sdk_dir()
    script = where / "check.mjs"
    script.write_text(CLIENT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        ["node", str(script), sys.executable, str(store_settings.store.path), json.dumps(CALLS)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=where,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(out["schemas"].values()), out["schemas"]  # every tool publishes one
    for name, answer in out["answers"].items():
        assert not answer["isError"], (name, answer["text"])
        assert answer["structured"]["results"], name
        assert answer["text"] and not answer["text"].lstrip().startswith("{"), name
    blame = out["answers"]["blame_range"]["structured"]
    assert sorted({r[1] for r in blame["results"]}) == list(range(len(blame["commits"]["sha"])))
    assert (
        sum(r[0] for r in blame["results"])
        == 4
        == len("\n".join(r[2] for r in blame["results"]).split("\n"))
    )
    text = out["answers"]["search_text"]["structured"]
    assert (text["has_more"] is False and text["total"] == 1) or text["cursor"]
