"""blame_range's packed answer (``searcher/blame.py``) on a file of many interleaved ranges.

Twelve commits by two authors each rewrite every twelfth line of a 60-line file, so a
whole-file blame is 60 one-line ranges over 12 commits: what the packing has to state
once (each commit, each author) and what the budget cuts into pages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest
from searcher_helpers import AUTHORS, ReadyServer, Repo, Served, blame_lines, build_store

from codeintel.core.settings import Settings
from codeintel.searcher import budget, mcp_tools, render

PATH = "ledger.py"
LINES = 60
COMMITS = 12
BODY = {"path": PATH, "start_line": 1, "end_line": LINES}


def _ledger(rev: int) -> str:
    """The file after commit ``rev``: line i last changed by commit i % COMMITS (once rev >= it)."""
    return "".join(
        f'entry_{i} = {min(rev, i % COMMITS)}  # "quoted" \\ row\n' for i in range(LINES)
    )


@pytest.fixture(scope="module")
def ledger_repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    repo = Repo(tmp_path_factory.mktemp("blame") / "repo")
    for rev in range(COMMITS):
        repo.commit(f"ledger rev {rev}", {PATH: _ledger(rev)}, ("ada", "zoe")[rev % 2], rev)
    return repo


@pytest.fixture(scope="module")
def ledger_store(
    ledger_repo: Repo, local_embedder: Any, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return build_store(ledger_repo, tmp_path_factory.mktemp("blame-store") / "s", local_embedder)


@pytest.fixture(scope="module")
def server(ledger_store: Settings, ready_server: ReadyServer) -> Iterator[Served]:
    """This module serves the ledger store: conftest's ``client`` talks to it."""
    with ready_server(ledger_store) as served:
        yield served


async def _blame(client: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    r = await client.post("/v1/blame_range", json={**BODY, **extra})
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def _estimate(answer: dict[str, Any]) -> int:
    """The house rule for blame: the ranges' text at ``TEXT_BYTES_PER_TOKEN``, the rest at 1.7."""
    texts = [r[2] for r in answer["results"] if len(r) > 2]
    return budget.estimate(answer, texts, budget.TEXT_BYTES_PER_TOKEN)


def _porcelain(repo: Repo) -> list[dict[str, Any]]:
    """``git blame --porcelain`` of the whole file, one dict per line."""
    out = repo.git("blame", "--porcelain", "HEAD", "--", PATH)
    meta: dict[str, dict[str, str]] = {}
    rows, sha = [], ""
    for line in out.split("\n"):
        head = re.match(r"^([0-9a-f]{40}) \d+ (\d+)", line)
        if head:
            sha, number = head.group(1), int(head.group(2))
            meta.setdefault(sha, {})
        elif line.startswith("\t"):
            rows.append({"line": number, "sha": sha, "text": line[1:], **meta[sha]})
        elif " " in line:
            key, _, value = line.partition(" ")
            if key in ("author", "author-mail", "summary") and sha:
                meta[sha][key] = value
    return rows


async def test_every_line_keeps_its_commit_author_and_text(
    client: httpx.AsyncClient, ledger_repo: Repo
) -> None:
    a = await _blame(client, max_tokens=400_000)
    assert (a["start_line"], a["end_line"], a["total"]) == (1, LINES, LINES)
    got = blame_lines(a)
    want = _porcelain(ledger_repo)
    assert [(x["line"], x["sha"], x["text"]) for x in got] == [
        (w["line"], w["sha"][:12], w["text"]) for w in want
    ]
    assert [(x["author"], f"<{x['email']}>", x["summary"]) for x in got] == [
        (w["author"], w["author-mail"], w["summary"]) for w in want
    ]
    assert got[-1]["date"] == "2024-01-12T12:00:00+02:00"  # line 59: rev 11, day 1 + 11


async def test_each_commit_and_author_is_stated_once(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/blame_range", json={**BODY, "max_tokens": 400_000})
    a = r.json()
    assert len(a["results"]) == LINES and len(a["commits"]["sha"]) == COMMITS
    for short in a["commits"]["sha"]:
        assert r.text.count(f'"{short}"') == 1, short  # not once per range
    for name, email in AUTHORS.values():
        assert r.text.count(email) == 1 and name in a["authors"]["name"]
    assert sorted(set(a["commits"]["author"])) == [0, 1]


async def test_budget_measures_the_published_answer_and_pages_tile_the_file(
    client: httpx.AsyncClient,
) -> None:
    full = await _blame(client, max_tokens=400_000)
    assert "degraded" not in full and full["tokens"] == _estimate(full)
    want = [(x["line"], x["sha"]) for x in blame_lines(full)]
    steps = []
    for max_tokens in sorted({full["tokens"] - 1, full["tokens"] // 2, 1_200, 700}, reverse=True):
        pages, cursor = [], None
        for _ in range(LINES + 1):
            a = await _blame(client, max_tokens=max_tokens, cursor=cursor)
            assert a["tokens"] == _estimate(a) <= max_tokens, (max_tokens, a["tokens"])
            pages.append(a)
            cursor = a["cursor"]
            if not a["has_more"] or not a["results"]:
                break
        steps.append((pages[0]["degraded"]["step"], len(pages)))
        # Each page's commits table holds the commits its ranges name, from index 0.
        for page in pages:
            used = sorted({r[1] for r in page["results"]})
            assert used == list(range(len(page["commits"]["sha"])))
        assert [(x["line"], x["sha"]) for p in pages for x in blame_lines(p)] == want
    # One-line ranges: short snippets save nothing, so the step kept is no text; then
    # the smaller budgets cut the ranges into more pages (one range always fits in 500).
    assert [step for step, _ in steps] == ["no_snippets"] * 4
    assert [n for _, n in steps] == sorted(n for _, n in steps) and steps[-1][1] > 2, steps


async def test_the_published_schema_describes_and_checks_the_rows(
    client: httpx.AsyncClient,
) -> None:
    def never() -> Any:
        raise AssertionError("listing tools calls no service")

    tools = {t.name: t for t in await mcp_tools.build_server(never).list_tools()}
    schema = tools["blame_range"].output_schema
    validator = jsonschema.Draft202012Validator(schema)
    for extra in ({"max_tokens": 400_000}, {"fields": ["date"]}, {"max_tokens": 700}):
        validator.validate(await _blame(client, **extra))
    good = await _blame(client, max_tokens=400_000)
    for bad in ([0, 0], [1, "c0"], [1, 0, "x", True, "y"], [1]):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate({**good, "results": [bad]})
    positions = schema["properties"]["results"]["items"]["prefixItems"]
    assert [p["title"] for p in positions] == ["lines", "commit", "text", "truncated"]


async def test_text_states_commits_once_then_lines_in_order(client: httpx.AsyncClient) -> None:
    a = await _blame(client, max_tokens=400_000)
    text = render.render("blame_range", a)
    commit_lines = [x for x in text.splitlines() if re.match(r"^c\d+ [0-9a-f]{12} ", x)]
    assert len(commit_lines) == COMMITS
    assert "2024-01-12 Zoë Ürban-Ñúñez <zoe@example.org> ledger rev 11" in text
    numbered = [x.split("\t", 1) for x in text.splitlines() if "\t" in x]
    assert numbered == [[str(x["line"]), x["text"]] for x in blame_lines(a)]

    # Without text: one line per commit with the lines it last changed.
    b = await _blame(client, fields=["author", "summary"])
    text = render.render("blame_range", b)
    body = text.splitlines()[1:]
    assert len(body) == COMMITS and all(" · lines " in x for x in body)
    assert body[1].startswith(f"{b['commits']['sha'][1]} Zoë Ürban-Ñúñez ledger rev 1 · lines ")
    spans = [s for x in body for s in x.split(" · lines ")[1].split(", ")]
    assert sorted(int(s) for s in spans) == list(range(1, LINES + 1))
