"""Answers sized for agents (issue 19): budgets, pages bound to a generation, compact MCP text.

Real store, real server on loopback, the official MCP client; the budget and
page rules are checked on the tools' real answers.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from searcher_helpers import Repo, Served, blame_lines, build_store, make_repo

from codeintel.indexer import pipeline
from codeintel.searcher import budget, create_app

pytestmark = pytest.mark.slow


def _ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _all_pages(
    client: httpx.AsyncClient, tool: str, body: dict[str, Any], rows: str = "results"
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Every row of every page of ``tool``, following cursors; and the answers."""
    got: list[Any] = []
    answers = []
    cursor = None
    for _ in range(200):
        answer = _ok(await client.post(f"/v1/{tool}", json={**body, "cursor": cursor}))
        answers.append(answer)
        got.extend(answer[rows])
        if not answer["has_more"]:
            assert answer["cursor"] is None
            return got, answers
        cursor = answer["cursor"]
    raise AssertionError("pages never ended")


class TestPages:
    async def test_list_paths_pages_tile_the_list(self, client: httpx.AsyncClient) -> None:
        full = _ok(await client.post("/v1/list_paths", json={}))
        assert full["total"] == len(full["results"]) and not full["has_more"]
        rows, answers = await _all_pages(client, "list_paths", {"max_results": 2})
        assert rows == full["results"]
        assert all(a["total"] == full["total"] and a["total_exact"] for a in answers)
        assert len(answers) == -(-full["total"] // 2)

    async def test_search_text_pages_in_stable_order(self, client: httpx.AsyncClient) -> None:
        body = {"pattern": "e", "path_glob": "**/*.py"}
        full = _ok(await client.post("/v1/search_text", json={**body, "max_tokens": 400_000}))
        rows, answers = await _all_pages(
            client, "search_text", {**body, "max_results": 3, "max_tokens": 400_000}
        )
        assert rows == full["results"] and len(rows) == full["total"] > 6
        keys = [(r["path"].split("/"), r["line"]) for r in rows]
        assert keys == sorted(keys)
        assert answers[0]["has_more"] and answers[0]["truncated"]

    async def test_file_history_and_blame_pages(self, client: httpx.AsyncClient) -> None:
        body = {"path": "mail/sender.py"}
        full = _ok(await client.post("/v1/file_history", json=body))
        rows, answers = await _all_pages(client, "file_history", {**body, "limit": 4})
        assert rows == full["results"] and len(rows) == 9
        assert answers[0]["total_exact"] is False and answers[0]["total"] >= 5
        assert answers[-1]["total_exact"] is True and answers[-1]["total"] == 9

        blame = {"path": "billing/invoice.py", "start_line": 1, "end_line": 16}
        whole = _ok(await client.post("/v1/blame_range", json=blame))
        _, pages = await _all_pages(client, "blame_range", {**blame, "max_results": 1})
        assert len(pages) == whole["total"] == 2
        assert [x for p in pages for x in blame_lines(p)] == blame_lines(whole)
        # Each page names exactly the commits its ranges point at, from index 0.
        for page in pages:
            assert [r[1] for r in page["results"]] == [0]
            assert len(page["commits"]["sha"]) == 1

    async def test_semantic_search_beyond_k(self, client: httpx.AsyncClient) -> None:
        body = {"query": "invoice tax email", "mode": "lexical"}
        full = _ok(await client.post("/v1/semantic_search", json={**body, "k": 50}))
        rows, _ = await _all_pages(client, "semantic_search", {**body, "k": 2})
        assert [(r["path"], r["start_line"]) for r in rows] == [
            (r["path"], r["start_line"]) for r in full["results"]
        ]

    async def test_a_cursor_is_for_its_own_question(self, client: httpx.AsyncClient) -> None:
        first = _ok(await client.post("/v1/list_paths", json={"max_results": 1}))
        r = await client.post(
            "/v1/list_paths", json={"max_results": 1, "path": "billing", "cursor": first["cursor"]}
        )
        assert r.status_code == 422 and r.json()["error"]["field"] == "cursor"
        r = await client.post("/v1/search_text", json={"pattern": "x", "cursor": first["cursor"]})
        assert r.status_code == 422 and "another tool" in r.json()["error"]["message"]
        r = await client.post("/v1/list_paths", json={"cursor": "not a cursor!"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "cursor"


class TestBudget:
    async def test_steps_in_order_each_within_budget(self, client: httpx.AsyncClient) -> None:
        body = {"pattern": "e", "max_results": 10_000}
        full = _ok(await client.post("/v1/search_text", json={**body, "max_tokens": 400_000}))
        assert "degraded" not in full
        assert full["tokens"] == budget.estimate(full)
        steps = []
        budgets = {full["tokens"] - 1, full["tokens"] // 2, full["tokens"] // 3, 700, 500}
        for max_tokens in sorted({b for b in budgets if b >= 500}, reverse=True):
            a = _ok(await client.post("/v1/search_text", json={**body, "max_tokens": max_tokens}))
            assert a["tokens"] <= max_tokens, (max_tokens, a["tokens"])
            assert a["tokens"] == budget.estimate(a)
            steps.append(a["degraded"]["step"])
            assert a["total"] == full["total"]
            assert "max_tokens=" in a["degraded"]["hint"]
            if a["degraded"]["step"] == "counts_per_file":
                assert sum(a["counts"].values()) == full["total"] and a["results"] == []
            if a["degraded"]["step"] == "count":
                assert a["results"] == [] and "counts" not in a
        assert steps == sorted(steps, key=budget.STEPS.index) and steps[-1] in (
            "counts_per_file",
            "count",
        )
        assert steps[0] in ("short_snippets", "no_snippets")

    async def test_no_snippets_keeps_every_location(self, client: httpx.AsyncClient) -> None:
        body = {"query": "invoice email tax", "k": 20, "mode": "lexical"}
        full = _ok(await client.post("/v1/semantic_search", json=body))
        for max_tokens in range(500, full["tokens"], 50):
            a = _ok(
                await client.post("/v1/semantic_search", json={**body, "max_tokens": max_tokens})
            )
            if a.get("degraded", {}).get("step") == "no_snippets":
                break
        else:
            pytest.fail("no budget gave the no_snippets step: the degradation skipped it")
        assert [(r["path"], r["start_line"]) for r in a["results"]] == [
            (r["path"], r["start_line"]) for r in full["results"]
        ]
        assert all("snippet" not in r for r in a["results"])

    async def test_fields_leave_out_what_is_not_asked(self, client: httpx.AsyncClient) -> None:
        a = _ok(await client.post("/v1/list_paths", json={"fields": []}))
        assert a["results"] and all(set(r) == {"path"} for r in a["results"])
        full = _ok(
            await client.post(
                "/v1/blame_range", json={"path": "mail/sender.py", "start_line": 1, "end_line": 9}
            )
        )
        b = _ok(
            await client.post(
                "/v1/blame_range",
                json={"path": "mail/sender.py", "start_line": 1, "end_line": 9, "fields": ["date"]},
            )
        )
        assert b["results"] and all(len(r) == 2 for r in b["results"])
        assert set(b["commits"]) == {"sha", "date"} and "authors" not in b
        c = _ok(
            await client.post(
                "/v1/blame_range",
                json={
                    "path": "mail/sender.py",
                    "start_line": 1,
                    "end_line": 9,
                    "fields": ["email"],
                },
            )
        )
        assert set(c["commits"]) == {"sha", "author"} and set(c["authors"]) == {"email"}
        assert [x["email"] for x in blame_lines(c)] == [x["email"] for x in blame_lines(full)]
        r = await client.post("/v1/search_text", json={"pattern": "x", "fields": ["size"]})
        assert r.status_code == 422 and "fields" in r.json()["error"]["field"]


async def test_blame_groups_each_commit_once(client: httpx.AsyncClient, repo: Repo) -> None:
    body = {"path": "mail/sender.py", "start_line": 1, "end_line": 8}
    a = _ok(await client.post("/v1/blame_range", json=body))
    lines = blame_lines(a)
    assert [x["line"] for x in lines] == list(range(1, 9))
    assert len(a["commits"]["sha"]) == 2  # "initial import" and the last tweak
    assert len(a["results"]) == 2 and (a["start_line"], a["end_line"]) == (1, 8)
    assert len(a["authors"]["name"]) == len(set(a["commits"]["author"]))
    flat = repo.git("blame", "--porcelain", "-L", "1,8", "HEAD", "--", "mail/sender.py")
    per_line = re.findall(r"^([0-9a-f]{40}) \d+ (\d+)", flat, re.M)
    assert [(sha[:12], int(n)) for sha, n in per_line] == [(x["sha"], x["line"]) for x in lines]
    assert [x["text"] for x in lines] == re.findall(r"^\t(.*)$", flat, re.M)


async def test_mcp_text_is_for_reading_and_structured_content_keeps_the_json(
    server: Served, repo: Repo
) -> None:
    async with (
        streamable_http_client(f"{server.url}/mcp") as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert tools["blame_range"].output_schema is not None
        assert "commits" in tools["blame_range"].output_schema["properties"]

        async def call(tool: str, **arguments: Any) -> tuple[str, dict[str, Any]]:
            result = await session.call_tool(tool, arguments)
            assert not result.is_error, result.content
            assert result.structured_content is not None
            return result.content[0].text, result.structured_content

        text, data = await call("search_text", pattern="TaxCalculator")
        assert text.splitlines()[1] == "billing/invoice.py:11: class TaxCalculator:"
        assert data["results"][0]["line"] == 11
        text, data = await call("semantic_search", query="parse an invoice", mode="lexical", k=1)
        hit = data["results"][0]
        assert text.splitlines()[1] == (
            f"{hit['path']}:{hit['start_line']}-{hit['end_line']} {hit['symbol']} ({hit['score']:.3f})"
        )
        text, data = await call("blame_range", path="mail/sender.py", start_line=1, end_line=8)
        commits = data["commits"]
        for i, (short, summary) in enumerate(zip(commits["sha"], commits["summary"], strict=True)):
            assert sum(line.startswith(f"c{i} {short} ") for line in text.splitlines()) == 1
            assert summary in text
        numbered = [x.split("\t", 1) for x in text.splitlines() if "\t" in x]
        assert numbered == [[str(x["line"]), x["text"]] for x in blame_lines(data)]
        assert len(text) < len(msgspec.json.encode(data))
        text, data = await call("file_history", path="mail/sender.py")
        assert len(text.splitlines()) == 1 + len(data["results"])
        text, data = await call("list_paths", path="billing")
        assert text.splitlines()[1:] == [r["path"] for r in data["results"]]
        text, data = await call("search_text", pattern="e", max_results=2)
        assert f"cursor={data['cursor']}" in text and f"2 of {data['total']}" in text


async def test_a_cursor_reads_its_generation_until_it_is_gone(
    tmp_path: Path, local_embedder: Any
) -> None:
    repo = make_repo(tmp_path / "repo")
    settings = build_store(repo, tmp_path / "store", local_embedder)
    with Served(create_app(settings, embedder=local_embedder)) as served:
        served.wait_ready()
        async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:
            first = _ok(await client.post("/v1/list_paths", json={"max_results": 2}))
            assert first["generation"] == "g000001"

            async def publish(n: int) -> None:
                repo.commit(f"add new{n}", {f"0new{n}.py": f"x = {n}\n"}, "ada", 20 + n)
                await asyncio.to_thread(pipeline.update, settings, local_embedder)
                deadline = time.monotonic() + 60
                while (
                    _ok(await client.post("/v1/list_paths", json={"max_results": 1}))["generation"]
                    != f"g00000{n}"
                ):
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)

            await publish(2)
            second = _ok(
                await client.post(
                    "/v1/list_paths", json={"max_results": 2, "cursor": first["cursor"]}
                )
            )
            # Still the first commit: the new file (sorted first) is not there.
            assert (second["generation"], second["commit"]) == ("g000001", first["commit"])
            assert second["total"] == first["total"]
            assert all(not r["path"].startswith("0new") for r in second["results"])
            fresh = _ok(await client.post("/v1/list_paths", json={"max_results": 2}))
            assert fresh["results"][0]["path"] == "0new2.py"

            await publish(3)  # g000001 is now two publishes old: no longer kept
            gone = await client.post(
                "/v1/list_paths", json={"max_results": 2, "cursor": second["cursor"]}
            )
            assert gone.status_code == 410, gone.text
            assert gone.json()["error"]["field"] == "cursor"
            assert "start again" in gone.json()["error"]["message"]


async def test_a_list_over_budget_becomes_a_shorter_page(client: httpx.AsyncClient) -> None:
    body = {"path": "mail/sender.py", "limit": 500}
    whole = _ok(await client.post("/v1/file_history", json=body))
    small = max(500, whole["tokens"] // 3)
    rows, answers = await _all_pages(client, "file_history", {**body, "max_tokens": small})
    assert len(answers) > 1 and all(a["tokens"] <= small for a in answers)
    assert [r["sha"] for r in rows] == [r["sha"] for r in whole["results"]]
    assert all(a.get("degraded", {}).get("step") != "count" for a in answers)
