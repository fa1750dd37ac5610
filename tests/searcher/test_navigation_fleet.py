"""The navigation tools across repositories: one process over many stores, and the router.

Three small repositories are indexed for real; one is turned into an older store
(its symbol index removed, as a store built before format 6 has none). The router
in front of two shards must answer exactly like the single process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fleet_helpers import build_fleet, fleet_settings
from searcher_helpers import ReadyServer, Served

from codeintel.core.settings import Settings
from codeintel.searcher import create_app
from codeintel.searcher.app import create_router_app

pytestmark = pytest.mark.slow

PARSER = '''\
class Parser:
    def parse(self, text):
        return text.split()


def parse(text):
    """Parse text with a fresh Parser."""
    return Parser().parse(text)
'''
USER = """\
from lib.parser import parse


def main(argv):
    for arg in argv:
        print(parse(arg))
    return parse(" ".join(argv))
"""
REPOS: dict[str, dict[str, str]] = {
    "team-a/lib": {"lib/parser.py": PARSER, "lib/__init__.py": ""},
    "team-a/app": {"app/main.py": USER, "app/util.py": "def parse(x):\n    return x\n"},
    "team-b/old": {"old/legacy.py": "def parse(y):\n    return parse(y)\n"},
}


def make_older(store: Path) -> None:
    """Drop the symbol index from the published generation, as an older build has none."""
    generation = store / "generations" / (store / "CURRENT").read_text().strip()
    manifest_path = generation / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["checksums"] = {k: v for k, v in manifest["checksums"].items() if "symbols" not in k}
    manifest_path.write_text(json.dumps(manifest))
    (generation / "symbols.sqlite").unlink()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, local_embedder: Any) -> Path:
    root = build_fleet(tmp_path_factory.mktemp("navfleet"), REPOS, local_embedder)
    make_older(root / "team-b" / "old")
    return root


@pytest.fixture(scope="module")
def single(root: Path, ready_server: ReadyServer) -> Iterator[Served]:
    with ready_server(fleet_settings(root)) as server:
        yield server


@pytest.fixture(scope="module")
def router(root: Path, local_embedder: Any) -> Iterator[Served]:
    shard_servers = [
        Served(create_app(fleet_settings(root, shards=2, shard_index=i), embedder=local_embedder))
        for i in range(2)
    ]
    for s in shard_servers:
        s.__enter__()
        s.wait_ready()
    settings = Settings.from_env(
        {},
        fleet={"shard_urls": tuple(s.url for s in shard_servers), "shard_timeout_seconds": 10.0},
    )
    try:
        with Served(create_router_app(settings)) as served:
            served.wait_ready()
            ok(served, "list_repos", {})  # the router learns the repositories
            yield served
    finally:
        for s in shard_servers:
            s.__exit__(None, None, None)


def post(server: Served, tool: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/{tool}", json=body, timeout=60)


def ok(server: Served, tool: str, body: dict[str, Any]) -> dict[str, Any]:
    r = post(server, tool, body)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _stable(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k not in ("tokens", "cursor")}


def test_find_symbol_merges_repositories_and_skips_the_older_store(single: Served) -> None:
    answer = ok(single, "find_symbol", {"name": "parse"})
    assert answer["ambiguous"] is True
    where = [(r["repo"], r["path"], r["qualname"]) for r in answer["results"]]
    # Exact name matches (functions and methods) first, by repository; then prefix matches.
    assert where == [
        ("team-a/app", "app/util.py", "parse"),
        ("team-a/lib", "lib/parser.py", "Parser.parse"),
        ("team-a/lib", "lib/parser.py", "parse"),
        ("team-a/lib", "lib/parser.py", "Parser"),
    ]
    assert "not indexed: rebuild" in answer["skipped"]["team-b/old"]
    assert set(answer["repos"]) == {"team-a/lib", "team-a/app"}
    lib = ok(single, "find_symbol", {"name": "parse", "repos": ["team-a/lib"], "kind": "function"})
    ((row),) = lib["results"]
    assert (row["repo"], row["doc"]) == ("team-a/lib", "Parse text with a fresh Parser.")
    assert lib["generation"] and lib["commit"]


def test_the_older_store_answers_409_for_symbols_and_still_reads_files(single: Served) -> None:
    for tool, body in [
        ("find_symbol", {"name": "parse", "repos": ["team-b/old"]}),
        ("find_references", {"name": "parse", "repos": ["team-b/old"]}),
        ("file_outline", {"path": "old/legacy.py", "repo": "team-b/old"}),
    ]:
        r = post(single, tool, body)
        assert r.status_code == 409, (tool, r.text)
        error = r.json()["error"]
        assert "not indexed" in error["message"] and "team-b/old" in error["message"]
        assert "rebuild" in error["message"]
    read = ok(single, "read_file", {"path": "old/legacy.py", "repo": "team-b/old"})
    assert read["results"][0]["text"] == "def parse(y):"
    assert read["repo"] == "team-b/old" and "team-b/old" in read["repos"]


def test_one_repository_tools_need_repo_when_several_are_served(single: Served) -> None:
    for tool in ("read_file", "file_outline"):
        r = post(single, tool, {"path": "lib/parser.py"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "repo", r.text
    outline = ok(single, "file_outline", {"path": "lib/parser.py", "repo": "team-a/lib"})
    assert [
        (r["name"], [c["name"] for c in r.get("children", [])]) for r in outline["results"]
    ] == [
        ("Parser", ["parse"]),
        ("parse", []),
    ]
    missing = post(single, "file_outline", {"path": "lib/parser.py", "repo": "team-a/app"})
    assert missing.status_code == 404


def test_find_references_pages_across_repositories(single: Served) -> None:
    whole = ok(single, "find_references", {"name": "parse", "limit": 1000})
    everything = sorted(
        (g["repo"], g["path"], o["line"]) for g in whole["results"] for o in g["occurrences"]
    )
    assert ("team-a/app", "app/main.py", 6) in everything
    assert all(repo != "team-b/old" for repo, _, _ in everything)
    seen: list[tuple[str, str, int]] = []
    body: dict[str, Any] = {"name": "parse", "limit": 1}
    for _ in range(50):
        page = ok(single, "find_references", body)
        assert page["total"] == whole["total"]
        rows = [
            (g["repo"], g["path"], o["line"]) for g in page["results"] for o in g["occurrences"]
        ]
        assert len({repo for repo, _, _ in rows}) == len(rows)  # limit is per repository
        seen += rows
        if not page["has_more"]:
            break
        body = {**body, "cursor": page["cursor"]}
    assert sorted(seen) == everything


@pytest.mark.parametrize(
    ("tool", "body"),
    [
        ("find_symbol", {"name": "parse"}),
        ("find_symbol", {"name": "Parser.parse", "include_body": True}),
        ("find_symbol", {"name": "pars*", "repos": ["team-a/*"]}),
        ("file_outline", {"path": "app/main.py", "repo": "team-a/app"}),
        ("read_file", {"path": "lib/parser.py", "repo": "team-a/lib", "start_line": 2}),
        ("find_references", {"name": "parse", "repos": ["team-a/*"], "limit": 1000}),
    ],
)
def test_router_answers_like_one_process(
    single: Served, router: Served, tool: str, body: dict[str, Any]
) -> None:
    assert _stable(ok(router, tool, body)) == _stable(ok(single, tool, body))


def test_router_pages_find_references_with_its_own_cursor(single: Served, router: Served) -> None:
    whole = ok(single, "find_references", {"name": "parse", "limit": 1000})
    everything = sorted(
        (g["repo"], g["path"], o["line"]) for g in whole["results"] for o in g["occurrences"]
    )
    seen: list[tuple[str, str, int]] = []
    body: dict[str, Any] = {"name": "parse", "limit": 1}
    for _ in range(50):
        page = ok(router, "find_references", body)
        assert page["total"] == whole["total"]
        seen += [
            (g["repo"], g["path"], o["line"]) for g in page["results"] for o in g["occurrences"]
        ]
        if not page["has_more"]:
            break
        body = {**body, "cursor": page["cursor"]}
    assert sorted(seen) == everything
    bad = post(router, "find_references", {"name": "parse", "cursor": "r1.bm9wZQ"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "cursor"
    old = post(router, "find_symbol", {"name": "parse", "repos": ["team-b/old"]})
    assert old.status_code == 409 and "team-b/old" in old.json()["error"]["message"]
