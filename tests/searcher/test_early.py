"""The embedded default answers before its first generation: from the tree, then the chunks.

A real repository is indexed by ``indexer/serving.keep_indexed`` on a thread, as
``codeintel serve PATH`` runs it, with the real local model held at its embed call
(or failing there); the searcher answers over real HTTP and the official MCP client.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import httpx2
import numpy as np
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from searcher_helpers import Repo, Served, blame_lines, make_repo, settings_for

import servers
from codeintel.core import errors
from codeintel.core.settings import Settings
from codeintel.indexer import serving
from codeintel.searcher import create_app
from codeintel.searcher import early as early_mod
from embedders import PassThrough

pytestmark = pytest.mark.slow


class HeldEmbedder(PassThrough):
    """The real local model, whose indexing calls wait at a gate (or fail) until released."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.gate = threading.Event()
        self.waiting = threading.Event()
        self.fail_with: Exception | None = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.waiting.set()
        if self.fail_with is not None:
            raise self.fail_with
        assert self.gate.wait(120), "the test never opened the gate"
        return super().embed(texts)


class Indexing:
    """``keep_indexed`` on a thread, and the searcher app over its :class:`EarlyIndex`."""

    def __init__(self, tmp_path: Path, embedder: HeldEmbedder, reindex: float) -> None:
        self.repo: Repo = make_repo(tmp_path / "repo")
        self.settings: Settings = settings_for(tmp_path / "store", reindex_interval_seconds=reindex)
        self.early = early_mod.EarlyIndex(str(self.repo.path), retry_seconds=reindex)
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=serving.keep_indexed,
            args=(self.settings, str(self.repo.path), embedder, self.stop, self.early),
            daemon=True,
        )

    @property
    def head(self) -> str:
        return self.repo.head()


@pytest.fixture
def held(local_embedder: Any) -> HeldEmbedder:
    return HeldEmbedder(local_embedder)


@pytest.fixture
def indexing(
    tmp_path: Path, held: HeldEmbedder, local_embedder: Any
) -> Iterator[tuple[Indexing, str]]:
    run = Indexing(tmp_path, held, reindex=0.5)
    app = create_app(run.settings, embedder=local_embedder, early=run.early)
    with Served(app) as served:
        run.thread.start()
        try:
            yield run, served.url
        finally:
            run.stop.set()
            held.gate.set()
            run.thread.join(timeout=60)


def _until(check: Any, timeout: float = 240.0) -> Any:
    """``check()``'s first truthy value; the bound is generous: on a loaded machine the real
    model embeds even a few chunks slowly."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


def _post(url: str, tool: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/{tool}", json=body, timeout=60)


def _lexical_answers(url: str) -> bool:
    return _post(url, "semantic_search", query="invoice", mode="lexical").status_code == 200


async def _mcp_call(url: str, tool: str, arguments: dict[str, Any]) -> Any:
    async with (
        httpx2.AsyncClient(timeout=60) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return await session.call_tool(tool, arguments)


async def test_tools_answer_while_embedding_is_held(
    indexing: tuple[Indexing, str], held: HeldEmbedder
) -> None:
    run, url = indexing
    assert held.waiting.wait(60), "the build never reached its embed stage"
    _until(lambda: _lexical_answers(url))
    head = run.head
    # BM25 is scored as the published generation will score it: from the impact index the
    # build stored beside chunks.sqlite before announcing it, mapped, never read from FTS5.
    at = run.early.chunks_at()
    assert at is not None and at[0].with_suffix(".impact").is_file()
    db = early_mod._mapped(at[0])
    try:
        assert db._impact is not None and not db._impact.arrays()["positions"].flags.writeable
    finally:
        db.close()

    text = _post(url, "search_text", pattern="parse_invoice").json()
    assert (text["commit"], text["generation"]) == (head, "indexing")
    assert {r["path"] for r in text["results"]} == {"billing/invoice.py"}
    paths = _post(url, "list_paths").json()
    assert "README.md" in {r["path"] for r in paths["results"]}
    assert paths["commit"] == head
    blame = _post(url, "blame_range", path="billing/invoice.py", start_line=1, end_line=4).json()
    assert blame["commit"] == head and len(blame_lines(blame)) == 4
    history = _post(url, "file_history", path="mail/sender.py").json()
    assert history["commit"] == head and len(history["results"]) == 9
    lexical = _post(url, "semantic_search", query="invoice", mode="lexical").json()
    assert (lexical["commit"], lexical["generation"]) == (head, "indexing")
    # Navigation answers from the commit too: lines at once, symbols after the chunk pass.
    read = _post(url, "read_file", path="billing/invoice.py", start_line=4, end_line=4).json()
    assert read["results"] == [{"line": 4, "text": "def parse_invoice(text):"}]
    assert (read["commit"], read["generation"]) == (head, "indexing")
    found = _post(url, "find_symbol", name="parse_invoice").json()
    assert [(r["path"], r["start_line"]) for r in found["results"]] == [("billing/invoice.py", 4)]
    outline = _post(url, "file_outline", path="billing/invoice.py").json()
    assert "TaxCalculator" in {r["name"] for r in outline["results"]}
    assert lexical["results"][0]["path"] == "billing/invoice.py"

    refused = _post(url, "semantic_search", query="parse an invoice", mode="semantic")
    assert refused.status_code == 503, refused.text
    assert 5 <= int(refused.headers["retry-after"]) <= 120
    body = refused.json()
    assert body["error"]["type"] == "IndexingError"
    assert "mode=lexical" in body["error"]["message"]
    assert (body["phase"], body["done"], body["commit"]) == ("embed", 0, head)
    assert body["total"] > 0 and body["last_error"] is None
    # The default mode answers from BM25 meanwhile, and says so.
    hybrid = _post(url, "semantic_search", query="parse an invoice").json()
    assert (hybrid["mode"], hybrid["generation"]) == ("lexical", "indexing")
    assert hybrid["results"][0]["path"] == "billing/invoice.py"
    assert "embeddings are being built (0/" in hybrid["notice"]

    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 503  # /readyz still means a published generation
    index = httpx.get(f"{url}/v1/index").json()
    assert index["generation"] is None and index["commit"] == head
    assert index["indexing"]["phase"] == "embed" and index["indexing"]["total"] > 0

    result = await _mcp_call(url, "semantic_search", {"query": "invoice", "mode": "semantic"})
    assert result.is_error
    message = result.content[0].text
    assert "503 IndexingError: the first index is being built" in message
    detail = json.loads(message[message.index("{") :])
    assert (detail["phase"], detail["commit"]) == ("embed", head)
    answered = await _mcp_call(url, "search_text", {"pattern": "TaxCalculator"})
    assert not answered.is_error
    hybrid = await _mcp_call(url, "semantic_search", {"query": "parse an invoice"})
    assert not hybrid.is_error and "notice: lexical (BM25) results" in hybrid.content[0].text

    held.gate.set()
    _until(lambda: _post(url, "search_text", pattern="x").json()["generation"] == "g000001")
    dense = _post(url, "semantic_search", query="parse an invoice", mode="semantic").json()
    assert (dense["generation"], dense["commit"]) == ("g000001", head)
    assert dense["results"][0]["path"] == "billing/invoice.py"
    assert httpx.get(f"{url}/readyz").status_code == 200
    index = httpx.get(f"{url}/v1/index").json()
    assert index["generation"] == "g000001" and index["indexing"]["phase"] == "ready"

    # Then it follows the repository: a new commit is answered without a restart.
    new_head = run.repo.commit("refunds", {"billing/refund.py": "def refund_order():\n    pass\n"})
    found = _until(lambda: _post(url, "search_text", pattern="refund_order").json()["results"])
    assert found[0]["path"] == "billing/refund.py"
    assert _post(url, "search_text", pattern="refund_order").json()["commit"] == new_head


def test_a_failed_first_build_keeps_the_tree_and_says_why(
    indexing: tuple[Indexing, str], held: HeldEmbedder
) -> None:
    held.fail_with = errors.EmbeddingError("scripted: the model ran out of memory")
    run, url = indexing
    _until(lambda: run.early.status()["phase"] == "failed")
    _until(lambda: _post(url, "search_text", pattern="send_email").status_code == 200)
    text = _post(url, "search_text", pattern="send_email").json()
    assert (text["commit"], text["generation"]) == (run.head, "indexing")
    # The failed build's chunks went with its temp directory: lexical waits for the retry.
    refused = _post(url, "semantic_search", query="email", mode="semantic")
    assert refused.status_code == 503
    body = refused.json()
    assert "ran out of memory" in body["error"]["message"]
    assert "ran out of memory" in str(httpx.get(f"{url}/v1/index").json()["indexing"]["last_error"])

    held.fail_with = None
    held.gate.set()  # the next round (0.5 s later) builds and publishes
    _until(lambda: _post(url, "search_text", pattern="x").json()["generation"] == "g000001")
    dense = _post(url, "semantic_search", query="send an email", mode="semantic").json()
    assert dense["results"][0]["path"] == "mail/sender.py"


async def test_mcp_path_over_stdio_answers_before_and_after_publication(tmp_path: Path) -> None:
    """``codeintel mcp PATH`` (the real CLI, spawned) with the official stdio client; the
    OpenAI-compatible embeddings server holds every request until the test releases it."""
    repo = make_repo(tmp_path / "repo")
    head = repo.head()
    fake = servers.FakeEmbeddingsServer(dim=8, hang_after=0)
    with fake.running() as embed_url:
        env = {
            "PATH": os.environ["PATH"],
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "HF_HUB_OFFLINE": "1",
            "CODEINTEL_SERVER_RELOAD_INTERVAL_SECONDS": "0.2",
        }
        if "PYTHONPATH" in os.environ:  # a worktree's sources over the editable install
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        args = ["-m", "codeintel.cli", "mcp", str(repo.path), "--embedder", "openai"]
        args += ["--embed-url", embed_url, "--embed-model", "fake-model", "--embed-dim", "8"]
        params = StdioServerParameters(command=sys.executable, args=args, env=env)
        with (tmp_path / "stderr.log").open("w") as errlog:
            async with (
                stdio_client(params, errlog=errlog) as (read, write),
                ClientSession(read, write, read_timeout_seconds=120) as session,
            ):
                await session.initialize()

                async def call(tool: str, **arguments: Any) -> Any:
                    return await session.call_tool(tool, arguments)

                # Straight after initialize, every tool answers (waiting for the tree),
                # none fails: the default semantic mode answers from BM25 with a notice.
                first = {
                    "search_text": {"pattern": "TaxCalculator"},
                    "list_paths": {},
                    "blame_range": {"path": "mail/sender.py", "start_line": 1, "end_line": 3},
                    "file_history": {"path": "mail/sender.py"},
                    "semantic_search": {"query": "parse an invoice"},
                    "list_repos": {},
                }
                for tool, arguments in first.items():
                    answer = await call(tool, **arguments)
                    assert not answer.is_error, (tool, answer.content[0].text)
                    body = _payload(answer)
                    assert body["results"] or tool == "semantic_search", tool
                    if tool != "list_repos":
                        assert (body["commit"], body["generation"]) == (head, "indexing"), tool
                assert body["results"][0]["commit"] == head
                assert fake.hanging.wait(60), "the build never asked for embeddings"
                hybrid = _payload(await call("semantic_search", query="parse an invoice"))
                assert hybrid["mode"] == "lexical" and "embeddings" in hybrid["notice"]
                refused = await call("semantic_search", query="parse an invoice", mode="semantic")
                assert refused.is_error
                assert "503 IndexingError" in refused.content[0].text
                assert f'"commit": "{head}"' in refused.content[0].text

                fake.release.set()
                deadline = time.monotonic() + 120
                while (found := _payload(await call("semantic_search", query="invoice")))[
                    "generation"
                ] != "g000001":
                    assert time.monotonic() < deadline, found
                    await asyncio.sleep(0.2)
                assert (found["commit"], found["mode"]) == (head, "hybrid")
                assert found["results"] and "notice" not in found
    assert "index store:" in (tmp_path / "stderr.log").read_text()


def _payload(result: Any) -> dict[str, Any]:
    if result.structured_content:
        return dict(result.structured_content.get("result", result.structured_content))
    return dict(json.loads(result.content[0].text))
