"""Each tool over REST against a real store and a real server: shapes, answers, commit pinning."""

from __future__ import annotations

import httpx
import pytest
from searcher_helpers import AUTHORS, NON_ASCII_PATH, Repo, blame_lines

pytestmark = pytest.mark.slow


def _pinned(body: dict[str, object], repo: Repo) -> None:
    assert body["generation"] == "g000001"
    assert body["commit"] == repo.git("rev-parse", "HEAD")


class TestSemanticSearch:
    async def test_finds_code_by_meaning(self, client: httpx.AsyncClient, repo: Repo) -> None:
        r = await client.post(
            "/v1/semantic_search", json={"query": "deliver a message by SMTP", "k": 3}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        _pinned(body, repo)
        top = body["results"][0]
        assert top["path"] == "mail/sender.py" and top["symbol"] == "send_email"
        assert set(top) == {
            "path",
            "start_line",
            "end_line",
            "score",
            "symbol",
            "language",
            "snippet",
        }
        assert len(body["results"]) <= 3

    @pytest.mark.parametrize("mode", ["lexical", "hybrid"])
    async def test_lexical_and_hybrid_rank_identifiers(
        self, client: httpx.AsyncClient, mode: str
    ) -> None:
        r = await client.post(
            "/v1/semantic_search", json={"query": "TaxCalculator tax_for", "mode": mode}
        )
        assert r.status_code == 200, r.text
        assert r.json()["mode"] == mode
        assert r.json()["results"][0]["path"] == "billing/invoice.py"

    async def test_filters_by_glob_and_language(self, client: httpx.AsyncClient) -> None:
        r = await client.post(
            "/v1/semantic_search", json={"query": "health check", "path_glob": "*.py", "k": 10}
        )
        assert r.status_code == 200
        assert r.json()["results"] and all(h["path"].endswith(".py") for h in r.json()["results"])
        r = await client.post("/v1/semantic_search", json={"query": "handler", "language": "go"})
        assert {h["language"] for h in r.json()["results"]} == {"go"}


class TestSearchText:
    async def test_literal(self, client: httpx.AsyncClient, repo: Repo) -> None:
        r = await client.post("/v1/search_text", json={"pattern": "def send_email("})
        assert r.status_code == 200, r.text
        body = r.json()
        _pinned(body, repo)
        assert body["results"] == [
            {
                "path": "mail/sender.py",
                "line": 4,
                "column": 1,
                "text": "def send_email(host, recipient, subject, body):",
            }
        ]
        assert body["truncated"] is False

    async def test_regex_case_and_glob(self, client: httpx.AsyncClient) -> None:
        r = await client.post(
            "/v1/search_text",
            json={
                "pattern": r"crème \w+",
                "regex": True,
                "case_sensitive": False,
                "path_glob": "*.md",
            },
        )
        assert r.status_code == 200, r.text
        [hit] = r.json()["results"]
        assert (
            hit["path"] == NON_ASCII_PATH and hit["column"] == 1 and hit["text"].startswith("Crème")
        )

    async def test_truncates_at_max_results(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/v1/search_text", json={"pattern": "e", "max_results": 2})
        assert len(r.json()["results"]) == 2 and r.json()["truncated"] is True

    async def test_pattern_starting_with_dash_is_a_pattern(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/v1/search_text", json={"pattern": "--version"})
        assert r.status_code == 200 and r.json()["results"] == []

    async def test_bad_regex_is_422_naming_pattern(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/v1/search_text", json={"pattern": "(unclosed", "regex": True})
        assert r.status_code == 422
        assert r.json()["error"]["field"] == "pattern"


class TestListPaths:
    async def test_whole_tree(self, client: httpx.AsyncClient, repo: Repo) -> None:
        r = await client.post("/v1/list_paths", json={})
        body = r.json()
        _pinned(body, repo)
        paths = [e["path"] for e in body["results"]]
        assert paths == sorted(paths)
        assert {"README.md", "billing/invoice.py", NON_ASCII_PATH, "alias.py"} <= set(paths)
        assert body["total"] == len(paths) and body["truncated"] is False

    async def test_prefix_globs_and_truncation(self, client: httpx.AsyncClient) -> None:
        r = await client.post(
            "/v1/list_paths", json={"path": "./billing/", "include_globs": ["*.py"]}
        )
        assert [e["path"] for e in r.json()["results"]] == ["billing/invoice.py"]
        r = await client.post(
            "/v1/list_paths", json={"exclude_globs": ["*.md", "*.py"], "max_results": 1}
        )
        body = r.json()
        assert body["total"] == 3 and len(body["results"]) == 1 and body["truncated"] is True

    async def test_missing_directory_is_404(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/v1/list_paths", json={"path": "nope"})
        assert r.status_code == 404 and "nope" in r.json()["error"]["message"]


class TestBlameRange:
    async def test_non_ascii_path_and_author(self, client: httpx.AsyncClient, repo: Repo) -> None:
        r = await client.post(
            "/v1/blame_range", json={"path": NON_ASCII_PATH, "start_line": 1, "end_line": 99}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        _pinned(body, repo)
        assert body["path"] == NON_ASCII_PATH
        lines = blame_lines(body)
        assert [e["line"] for e in lines] == [1, 2, 3, 4]
        last = lines[-1]
        assert last["author"] == AUTHORS["zoe"][0] and last["email"] == AUTHORS["zoe"][1]
        assert last["summary"] == "café: more recipes" and last["text"] == "Tarte Tatin."
        assert last["date"] == "2024-01-03T12:00:00+02:00"
        assert len(last["sha"]) == 12
        assert repo.git("log", "-1", "--format=%s", last["sha"]).strip() == last["summary"]

    async def test_missing_file_is_404_naming_it(self, client: httpx.AsyncClient) -> None:
        r = await client.post(
            "/v1/blame_range", json={"path": "no/such.py", "start_line": 1, "end_line": 2}
        )
        assert r.status_code == 404
        assert r.json()["error"]["field"] == "path" and "no/such.py" in r.json()["error"]["message"]

    async def test_directory_and_past_end(self, client: httpx.AsyncClient) -> None:
        r = await client.post(
            "/v1/blame_range", json={"path": "billing", "start_line": 1, "end_line": 2}
        )
        assert r.status_code == 422 and r.json()["error"]["field"] == "path"
        r = await client.post(
            "/v1/blame_range", json={"path": "README.md", "start_line": 50, "end_line": 60}
        )
        assert r.status_code == 422 and r.json()["error"]["field"] == "start_line"


class TestFileHistory:
    async def test_newest_first_with_limit(self, client: httpx.AsyncClient, repo: Repo) -> None:
        r = await client.post("/v1/file_history", json={"path": "mail/sender.py", "limit": 3})
        body = r.json()
        _pinned(body, repo)
        assert [e["summary"] for e in body["results"]] == [
            "mail: tweak 11",
            "mail: tweak 10",
            "mail: tweak 9",
        ]

    async def test_non_ascii(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/v1/file_history", json={"path": NON_ASCII_PATH})
        assert [e["author"] for e in r.json()["results"]] == [AUTHORS["zoe"][0], AUTHORS["ada"][0]]

    async def test_missing_file_is_404(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/v1/file_history", json={"path": "gone.txt"})
        assert r.status_code == 404 and "gone.txt" in r.json()["error"]["message"]


class TestService:
    async def test_probes_metrics_and_index(self, client: httpx.AsyncClient, repo: Repo) -> None:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = (await client.get("/readyz")).json()
        assert ready["generation"] == "g000001"
        manifest = (await client.get("/v1/index")).json()
        assert (
            manifest["commit"] == repo.git("rev-parse", "HEAD")
            and manifest["generation"] == "g000001"
        )
        await client.post("/v1/list_paths", json={})
        text = (await client.get("/metrics")).text
        for name in (
            'codeintel_request_seconds_bucket{le="0.001",tool="list_paths"}',
            'codeintel_requests_total{status="ok",tool="list_paths"}',
            "codeintel_inflight_requests",
            'codeintel_index_vectors{kind="primary"}',
            'codeintel_index_generation_info{commit="',
            "codeintel_embed_seconds",
        ):
            assert name in text, name
