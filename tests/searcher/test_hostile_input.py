"""Hostile input over real HTTP: invalid Unicode, lax types, odd bodies and headers, huge lines.

Every string field of every request model is tried with a lone surrogate (JSON
lets ``"\\ud800"`` through; the tokenizer, ripgrep and git do not), and a bad
query sent among valid concurrent ones must fail alone. The answer-size limits
are checked on a store holding a one-line 1,000,000-character file.
"""

from __future__ import annotations

import asyncio
import json
import typing
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from searcher_helpers import Repo, Served, blame_lines, build_store

from codeintel.core.settings import Settings
from codeintel.searcher import catalog, create_app, models

pytestmark = pytest.mark.slow

BAD = "\ud800 abc"
VALID: dict[str, dict[str, Any]] = {
    "semantic_search": {"query": "send an email"},
    "search_text": {"pattern": "def"},
    "list_paths": {},
    "blame_range": {"path": "README.md", "start_line": 1, "end_line": 1},
    "file_history": {"path": "README.md"},
    "read_file": {"path": "README.md"},
    "find_symbol": {"name": "parse_invoice"},
    "file_outline": {"path": "billing/invoice.py"},
    "find_references": {"name": "decimal"},
}
MODELS: dict[str, type[models._Request]] = {
    tool.name: tool.request  # type: ignore[misc]
    for tool in catalog.CATALOG
    if tool.name != "list_repos"
}


def _raw(body: dict[str, Any]) -> bytes:
    """JSON with lone surrogates written as ``\\ud800`` escapes, as a hostile client sends them."""
    return json.dumps(body, ensure_ascii=True).encode()


def _shapes(annotation: Any) -> set[Any]:
    """The plain types an annotation admits: ``str``, ``list`` (of anything), ``int``..."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _shapes(typing.get_args(annotation)[0])
    if origin is list:
        return {list}
    if origin is None:
        return {annotation}
    return set().union(*(_shapes(a) for a in typing.get_args(annotation)))


def _string_fields() -> Iterator[tuple[str, str, Any]]:
    """(tool, field, a value of the field's shape carrying a lone surrogate), for every str field."""
    for tool, model in MODELS.items():
        for name, field in model.model_fields.items():
            shapes = _shapes(field.annotation)
            if str in shapes:
                yield tool, name, BAD
            elif list in shapes:
                yield tool, name, ["ok/**", BAD]


STRING_FIELDS = list(_string_fields())


def test_every_string_field_is_covered() -> None:
    # A new string field joins the table below by itself; this keeps the table honest.
    assert {(t, f) for t, f, _ in STRING_FIELDS} >= {
        ("semantic_search", "query"),
        ("semantic_search", "path_glob"),
        ("semantic_search", "language"),
        ("search_text", "pattern"),
        ("search_text", "path_glob"),
        ("list_paths", "path"),
        ("list_paths", "include_globs"),
        ("list_paths", "exclude_globs"),
        ("blame_range", "path"),
        ("file_history", "path"),
    }


class TestInvalidUnicode:
    @pytest.mark.parametrize(("tool", "field", "value"), STRING_FIELDS)
    async def test_lone_surrogate_is_422_naming_the_field(
        self, client: httpx.AsyncClient, tool: str, field: str, value: Any
    ) -> None:
        body = {**VALID[tool], field: value}
        r = await client.post(
            f"/v1/{tool}", content=_raw(body), headers={"content-type": "application/json"}
        )
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["field"] == field
        assert "surrogate" in error["message"]

    async def test_lone_surrogate_in_an_unknown_key_is_422(self, client: httpx.AsyncClient) -> None:
        r = await client.post(
            "/v1/search_text",
            content=_raw({"pattern": "x", BAD: 1}),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422, r.text
        assert r.headers["content-type"] == "application/json"

    async def test_one_bad_query_never_fails_its_neighbours(
        self, client: httpx.AsyncClient
    ) -> None:
        async def valid(i: int) -> int:
            r = await client.post(
                "/v1/semantic_search", json={"query": f"parse an invoice {i}", "k": 3}
            )
            return r.status_code

        async def bad() -> int:
            r = await client.post(
                "/v1/semantic_search",
                content=_raw({"query": BAD}),
                headers={"content-type": "application/json"},
            )
            return r.status_code

        for _ in range(10):
            statuses = await asyncio.gather(bad(), *(valid(i) for i in range(15)))
            assert statuses[0] == 422
            assert statuses[1:] == [200] * 15


class TestStrictTypes:
    @pytest.mark.parametrize(
        ("tool", "body", "field"),
        [
            ("semantic_search", {"query": "x", "k": True}, "k"),
            ("semantic_search", {"query": "x", "k": 1.0}, "k"),
            ("semantic_search", {"query": "x", "k": "3"}, "k"),
            ("search_text", {"pattern": "x", "max_results": False}, "max_results"),
            ("search_text", {"pattern": "x", "regex": 1}, "regex"),
            ("search_text", {"pattern": "x", "case_sensitive": "false"}, "case_sensitive"),
            ("blame_range", {"path": "README.md", "start_line": True, "end_line": 1}, "start_line"),
            ("file_history", {"path": "README.md", "limit": True}, "limit"),
        ],
    )
    async def test_bools_and_strings_are_not_numbers(
        self, client: httpx.AsyncClient, tool: str, body: dict[str, Any], field: str
    ) -> None:
        r = await client.post(f"/v1/{tool}", json=body)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == field


class TestBodies:
    async def test_invalid_json_names_the_body_and_the_position(
        self, client: httpx.AsyncClient
    ) -> None:
        r = await client.post(
            "/v1/list_paths",
            content=b'{"path": "a",\n "max_results": }',
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422
        error = r.json()["error"]
        assert error["field"] == "body"
        assert "byte 30" in error["message"], error

    async def test_chunked_body_over_one_mib_is_413(self, client: httpx.AsyncClient) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"pattern": "x", "pad": "'
            for _ in range(70):
                yield b"y" * (16 << 10)
            yield b'"}'

        r = await client.post(
            "/v1/search_text", content=chunks(), headers={"content-type": "application/json"}
        )
        assert "content-length" not in r.request.headers
        assert r.status_code == 413, r.text
        assert r.json()["error"]["field"] == "body"

    async def test_small_chunked_body_is_answered(self, client: httpx.AsyncClient) -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"pattern": '
            yield b'"def send_email"}'

        r = await client.post(
            "/v1/search_text", content=chunks(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["path"] == "mail/sender.py"

    async def test_unknown_route_and_method_answer_in_the_error_shape(
        self, client: httpx.AsyncClient
    ) -> None:
        r = await client.post("/v1/no_such_tool", json={})
        assert r.status_code == 404 and r.json()["error"]["type"] == "HTTPError"
        r = await client.get("/v1/search_text")
        assert r.status_code == 405 and r.json()["error"]["type"] == "HTTPError"
        assert "POST" in r.headers["allow"]


class TestSearchTextGlobs:
    async def test_glob_matching_no_file_is_an_empty_answer(
        self, client: httpx.AsyncClient
    ) -> None:
        r = await client.post("/v1/search_text", json={"pattern": "def", "path_glob": "*.rs"})
        assert r.status_code == 200, r.text
        assert r.json()["results"] == [] and r.json()["truncated"] is False

    async def test_bad_regex_with_an_empty_glob_is_still_422(
        self, client: httpx.AsyncClient
    ) -> None:
        r = await client.post(
            "/v1/search_text", json={"pattern": "(", "regex": True, "path_glob": "*.rs"}
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == "pattern"


class TestBearerScheme:
    def test_scheme_is_case_insensitive(
        self, store_settings: Settings, local_embedder: Any
    ) -> None:
        settings = store_settings.replace(server={"api_token": "s3cret"})
        body = {"path": "README.md", "limit": 1}
        with Served(create_app(settings, embedder=local_embedder)) as served:
            served.wait_ready()
            for header, status in (
                ("bearer s3cret", 200),
                ("BEARER s3cret", 200),
                ("Bearer  s3cret", 200),
                ("Basic s3cret", 401),
                ("Bearers3cret", 401),
                ("bearer S3cret", 401),
                ("s3cret", 401),
            ):
                r = httpx.post(
                    f"{served.url}/v1/file_history", json=body, headers={"authorization": header}
                )
                assert r.status_code == status, (header, r.text)


# -- answer size ---------------------------------------------------------------------------

LONG_LINE_CHARS = 1_000_000
WIDE_LINES = 1_500
"""Lines of 600 characters: 900 KB, under the indexer's 1 MiB file limit."""


@pytest.fixture(scope="module")
def huge_lines(tmp_path_factory: pytest.TempPathFactory, local_embedder: Any) -> Iterator[Served]:
    """A store whose repository has a one-line 1,000,000-character file and three wide files."""
    root = tmp_path_factory.mktemp("huge-lines")
    repo = Repo(root / "repo")
    unit = "total_amount = compute_invoice_total(items, tax_rate); "
    long_line = (unit * (LONG_LINE_CHARS // len(unit) + 1))[:LONG_LINE_CHARS]
    wide = "".join(f"# {i:05d} " + "invoice line item " * 33 + "\n" for i in range(WIDE_LINES))
    repo.commit(
        "huge lines",
        {
            "generated/table.py": long_line + "\n",
            "data/wide.py": wide,
            "data/wide_copy.py": wide,
            "data/wide_copy2.py": wide,
            "README.md": "# Invoices\n",
        },
    )
    settings = build_store(repo, root / "store", local_embedder)
    with Served(create_app(settings, embedder=local_embedder)) as served:
        served.wait_ready()
        yield served


class TestAnswerSize:
    def test_one_huge_line_is_cut_in_semantic_search(self, huge_lines: Served) -> None:
        r = httpx.post(
            f"{huge_lines.url}/v1/semantic_search",
            # The hard cap behind the token budget: a budget large enough not to cut first.
            json={"query": "compute the invoice total with tax", "k": 10, "max_tokens": 400_000},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        assert len(r.content) < 10 * 12 * models.MAX_LINE_CHARS + 10_000  # was 1,001,395 bytes
        body = r.json()
        hits = {h["path"]: h for h in body["results"]}
        long_hit = hits["generated/table.py"]
        assert len(long_hit["snippet"].rstrip("\n")) == models.MAX_LINE_CHARS
        assert long_hit["truncated"] is True
        assert body["truncated"] is True
        assert all(
            "truncated" not in h or max(map(len, h["snippet"].split("\n"))) <= 500
            for h in body["results"]
        )

    def test_one_huge_line_is_cut_in_blame(self, huge_lines: Served) -> None:
        r = httpx.post(
            f"{huge_lines.url}/v1/blame_range",
            json={"path": "generated/table.py", "start_line": 1, "end_line": 1},
        )
        assert r.status_code == 200, r.text
        assert len(r.content) < 2_000
        [[lines, _, text, cut]] = r.json()["results"]
        assert lines == 1 and text.startswith("total_amount = compute_invoice_total")
        assert len(text) == models.MAX_LINE_CHARS and cut is True
        assert r.json()["truncated"] is True

    def test_blame_answer_is_bounded_and_says_so(self, huge_lines: Served) -> None:
        r = httpx.post(
            f"{huge_lines.url}/v1/blame_range",
            json={
                "path": "data/wide.py",
                "start_line": 1,
                "end_line": WIDE_LINES,
                "max_tokens": 400_000,
            },
        )
        assert r.status_code == 200, r.text
        body = r.json()
        rows = blame_lines(body)
        assert len(rows) == WIDE_LINES  # every line keeps its authorship
        assert sum(len(row["text"]) for row in rows) <= models.MAX_ANSWER_TEXT_CHARS
        assert body["truncated"] is True
        assert rows[0]["text"].startswith("# 00000 invoice")
        assert body["results"][-1][3] is True

    def test_semantic_answer_is_bounded(self, huge_lines: Served) -> None:
        r = httpx.post(
            f"{huge_lines.url}/v1/semantic_search",
            json={"query": "invoice line item", "k": 100, "mode": "lexical", "max_tokens": 400_000},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert sum(len(h["snippet"]) for h in body["results"]) <= models.MAX_ANSWER_TEXT_CHARS
        assert len(body["results"]) >= 50
        assert body["truncated"] is True

    def test_search_text_marks_a_cut_line(self, huge_lines: Served) -> None:
        r = httpx.post(
            f"{huge_lines.url}/v1/search_text",
            json={"pattern": "compute_invoice_total", "path_glob": "generated/**"},
        )
        assert r.status_code == 200, r.text
        [row] = r.json()["results"]
        assert len(row["text"]) == models.MAX_LINE_CHARS and row["truncated"] is True
        assert r.json()["truncated"] is True

    def test_short_answers_are_not_marked(self, huge_lines: Served) -> None:
        r = httpx.post(
            f"{huge_lines.url}/v1/blame_range",
            json={"path": "README.md", "start_line": 1, "end_line": 1},
        )
        body = r.json()
        assert body["truncated"] is False and len(body["results"][0]) == 3  # no truncated flag
