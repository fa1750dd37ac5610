"""read_file, find_symbol, file_outline and find_references over REST on loopback (issue 18).

One small multi-language repository (``nav_helpers``) is indexed once by the
real pipeline with the real model and served by a real server; every answer
is checked against what the fixture's files say.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from nav_helpers import BIG_LINES, SHAPES, make_nav_repo
from searcher_helpers import Served, build_store

from codeintel.searcher import budget, create_app, models, navigation
from gitrepo import GitRepo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nav_repo(tmp_path_factory: pytest.TempPathFactory) -> GitRepo:
    return make_nav_repo(tmp_path_factory.mktemp("nav") / "repo")


@pytest.fixture(scope="module")
def nav_server(
    nav_repo: GitRepo, local_embedder: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    settings = build_store(nav_repo, tmp_path_factory.mktemp("nav-store") / "store", local_embedder)
    with Served(create_app(settings, embedder=local_embedder)) as served:
        served.wait_ready()
        yield served


def post(server: Served, tool: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/{tool}", json=body, timeout=60)


def ok(server: Served, tool: str, body: dict[str, Any]) -> dict[str, Any]:
    r = post(server, tool, body)
    assert r.status_code == 200, r.text
    return dict(r.json())


def refused(server: Served, tool: str, body: dict[str, Any], status: int, field: str) -> str:
    r = post(server, tool, body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["field"] == field, error
    return str(error["message"])


# -- read_file --------------------------------------------------------------------------------


def test_read_file_numbers_the_lines_at_the_indexed_commit(
    nav_server: Served, nav_repo: GitRepo
) -> None:
    answer = ok(
        nav_server, "read_file", {"path": "pkg/shapes.py", "start_line": 11, "end_line": 13}
    )
    expected = SHAPES.split("\n")[10:13]
    assert [r["line"] for r in answer["results"]] == [11, 12, 13]
    assert [r["text"] for r in answer["results"]] == expected
    assert answer["results"][0]["text"] == "class Circle:"
    assert answer["total_lines"] == len(SHAPES.splitlines())
    assert answer["truncated"] is False and answer["next_start_line"] is None
    assert answer["commit"] == nav_repo.head()
    assert 0 < answer["tokens"] < 200


def test_read_file_changes_in_the_worktree_are_not_served(
    nav_server: Served, nav_repo: GitRepo
) -> None:
    # The answer is the commit's blob, not whatever the checkout holds now.
    (nav_repo.path / "pkg" / "shapes.py").write_text("rewritten\n")
    try:
        answer = ok(nav_server, "read_file", {"path": "pkg/shapes.py", "end_line": 1})
        assert answer["results"][0]["text"] == '"""Shapes and their areas."""'
    finally:
        nav_repo.git("checkout", "--", "pkg/shapes.py")


def test_read_file_whole_small_file_and_a_last_line_without_newline(nav_server: Served) -> None:
    answer = ok(nav_server, "read_file", {"path": "docs/no-newline.txt"})
    assert [r["text"] for r in answer["results"]] == ["first", "second"]
    assert answer["end_line"] == answer["total_lines"] == 2


def test_read_file_pages_a_long_file_with_next_start_line(nav_server: Served) -> None:
    first = ok(nav_server, "read_file", {"path": "data/big.txt"})
    assert first["start_line"] == 1
    assert first["end_line"] == navigation.DEFAULT_READ_LINES
    assert first["truncated"] is True
    assert first["next_start_line"] == navigation.DEFAULT_READ_LINES + 1
    assert first["total_lines"] == BIG_LINES
    seen = [r["text"] for r in first["results"]]
    cursor = first["next_start_line"]
    while cursor is not None:
        page = ok(nav_server, "read_file", {"path": "data/big.txt", "start_line": cursor})
        assert page["results"][0]["line"] == cursor
        seen += [r["text"] for r in page["results"]]
        cursor = page["next_start_line"]
    assert seen == [f"line {i}" for i in range(1, BIG_LINES + 1)]


def test_read_file_caps_the_range_and_the_tokens(nav_server: Served) -> None:
    wide = ok(
        nav_server,
        "read_file",
        {"path": "data/big.txt", "end_line": BIG_LINES, "max_tokens": budget.MAX_MAX_TOKENS},
    )
    assert wide["end_line"] == models.MAX_READ_LINES
    assert wide["next_start_line"] == models.MAX_READ_LINES + 1
    small = ok(
        nav_server, "read_file", {"path": "data/big.txt", "end_line": 1000, "max_tokens": 300}
    )
    assert small["truncated"] is True
    assert small["tokens"] <= 300
    assert small["next_start_line"] == small["end_line"] + 1 < 100
    default = ok(nav_server, "read_file", {"path": "data/big.txt", "end_line": 2000})
    assert default["tokens"] <= budget.DEFAULT_MAX_TOKENS
    assert navigation.DEFAULT_READ_LINES < default["end_line"] < 2000


def test_read_file_cuts_long_lines(nav_server: Served) -> None:
    answer = ok(nav_server, "read_file", {"path": "web/min.js"})
    (row,) = answer["results"]
    assert len(row["text"]) == models.MAX_LINE_CHARS and row["truncated"] is True
    assert answer["truncated"] is True and answer["next_start_line"] is None


def test_read_file_follows_a_symlink_inside_the_tree(nav_server: Served) -> None:
    answer = ok(nav_server, "read_file", {"path": "shapes_link.py", "end_line": 1})
    assert answer["resolved_path"] == "pkg/shapes.py"
    assert answer["path"] == "shapes_link.py"
    assert answer["results"][0]["text"] == '"""Shapes and their areas."""'


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        ({"path": "assets/logo.png"}, 422, "path", "binary"),
        ({"path": "pkg/escape_link"}, 422, "path", "outside the repository"),
        ({"path": "abs_link"}, 422, "path", "outside the repository"),
        ({"path": "pkg/updir/etc/passwd"}, 422, "path", "outside the repository"),
        ({"path": "dangling_link"}, 422, "path", "not in the tree"),
        ({"path": "../etc/passwd"}, 422, "path", ".."),
        ({"path": "/etc/passwd"}, 422, "path", "absolute"),
        ({"path": "pkg"}, 422, "path", "directory"),
        ({"path": "third_party/sub"}, 422, "path", "submodule"),
        ({"path": "pkg/nope.py"}, 404, "path", "not found"),
        ({"path": "pkg/shapes.py", "start_line": 500}, 422, "start_line", "past the end"),
        ({"path": "pkg/shapes.py", "start_line": 5, "end_line": 4}, 422, "end_line", ">="),
        ({"path": "pkg/shapes.py", "start_line": 0}, 422, "start_line", ""),
        ({"path": "pkg/shapes.py", "max_tokens": 10}, 422, "max_tokens", ""),
        ({"path": "pkg/shapes.py", "repo": "someone/else"}, 404, "repo", "someone/else"),
    ],
)
def test_read_file_refuses_what_it_cannot_read(
    nav_server: Served, body: dict[str, Any], status: int, field: str, words: str
) -> None:
    message = refused(nav_server, "read_file", body, status, field)
    assert words in message
