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


# -- find_symbol --------------------------------------------------------------------------------


def test_find_symbol_ambiguous_name_lists_candidates_with_ids(nav_server: Served) -> None:
    answer = ok(nav_server, "find_symbol", {"name": "parse"})
    assert answer["ambiguous"] is True
    assert "symbol_id" in answer["notice"]
    rows = answer["results"]
    assert 1 < len(rows) <= 10 and all(len(r["symbol_id"]) == 16 for r in rows)
    assert all("body" not in r for r in rows)
    # Source above tests above vendored code.
    exact = [r for r in rows if r["name"] == "parse"]
    assert [r["path"] for r in exact] == [
        "cmd/main.go",
        "pkg/shapes.py",
        "web/app.ts",
        "tests/helpers.py",
        "pkg/parse_generated.py",
    ]
    assert rows[: len(exact)] == exact  # exact matches before prefix matches (parse_fixture)
    assert [r.get("category", "source") for r in exact][-2:] == ["test", "vendored"]
    shapes = rows[1]
    assert shapes["signature"].startswith("def parse(text: str) -> Shape")
    assert shapes["doc"] == "Parse 'circle 2' or 'square 3' into a shape."
    # Asking again by id gives exactly that one, with its body.
    go = next(r for r in rows if r["path"] == "cmd/main.go")
    again = ok(nav_server, "find_symbol", {"symbol_id": go["symbol_id"], "include_body": True})
    (row,) = again["results"]
    assert again["ambiguous"] is False
    assert row["body"].splitlines()[0] == "func parse(s string) int {"
    assert row["body"].splitlines()[-1] == "}"


def test_find_symbol_same_method_in_two_classes(nav_server: Served) -> None:
    both = ok(nav_server, "find_symbol", {"name": "area", "kind": "method"})
    qualnames = {r["qualname"] for r in both["results"]}
    assert {"Circle.area", "Square.area"} <= qualnames
    assert both["ambiguous"] is True
    one = ok(nav_server, "find_symbol", {"name": "Square.area", "include_body": True})
    (row,) = one["results"]
    assert one["ambiguous"] is False
    assert row["parent"] == "Square"
    assert row["start_line"] == SHAPES.split("\n").index("    def area(self) -> float:", 30) + 1
    assert row["body"] == (
        "    def area(self) -> float:\n"
        '        """The area of the square."""\n'
        "        return self.s * self.s"
    )
    context = row["context"]
    assert context["parent"]["signature"].startswith("class Square")
    assert [s["name"] for s in context["siblings"]] == ["__init__"]
    qualified = ok(nav_server, "find_symbol", {"name": "Circle.area"})
    assert [r["qualname"] for r in qualified["results"]] == ["Circle.area"]


def test_find_symbol_glob_and_filters(nav_server: Served) -> None:
    answer = ok(nav_server, "find_symbol", {"name": "parse*", "language": "python"})
    names = [r["name"] for r in answer["results"]]
    assert "parse_fixture" in names and "parse" in names
    assert all(r["language"] == "python" for r in answer["results"])
    scoped = ok(nav_server, "find_symbol", {"name": "parse", "path_glob": "web/**"})
    assert [r["path"] for r in scoped["results"]] == ["web/app.ts"]
    assert scoped["ambiguous"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "parse", "symbol_id": "0123456789abcdef"}, "name"),
        ({"symbol_id": "nothex"}, "symbol_id"),
        ({"name": "parse", "limit": 0}, "limit"),
        ({"name": "parse", "include_body": "yes"}, "include_body"),
        ({"name": "parse", "kind": "x" * 33}, "kind"),
    ],
)
def test_find_symbol_refuses_bad_requests(
    nav_server: Served, body: dict[str, Any], field: str
) -> None:
    refused(nav_server, "find_symbol", body, 422, field)


# -- file_outline -------------------------------------------------------------------------------


def test_file_outline_nests_classes_and_methods(nav_server: Served) -> None:
    answer = ok(nav_server, "file_outline", {"path": "pkg/shapes.py"})
    top = {r["name"]: r for r in answer["results"]}
    assert list(top) == ["Shape", "Circle", "Square", "parse", "total_area"]
    circle = top["Circle"]
    assert [c["name"] for c in circle["children"]] == ["__init__", "area", "grow"]
    assert circle["kind"] == "class" and circle["doc"] == "A circle of radius r."
    assert all("body" not in c for c in circle["children"])
    assert answer["imports"] == {"start_line": 3, "end_line": 4}
    assert answer["language"] == "python"
    assert answer["total"] == 5 + 1 + 3 + 2


def test_file_outline_errors_match_read_file(nav_server: Served) -> None:
    assert "binary" in refused(nav_server, "file_outline", {"path": "assets/logo.png"}, 422, "path")
    refused(nav_server, "file_outline", {"path": "pkg/escape_link"}, 422, "path")
    refused(nav_server, "file_outline", {"path": "pkg/missing.py"}, 404, "path")
    refused(nav_server, "file_outline", {"path": "pkg"}, 422, "path")


# -- find_references ----------------------------------------------------------------------------


def test_find_references_groups_by_enclosing_symbol(nav_server: Served) -> None:
    answer = ok(nav_server, "find_references", {"name": "parse", "path_glob": "**/*.py"})
    where = {(g["path"], g["symbol"]): g for g in answer["results"]}
    report = where[("pkg/uses.py", "report")]
    assert [o["line"] for o in report["occurrences"]] == [5]
    assert report["occurrences"][0]["kind"] == "call"
    assert report["occurrences"][0]["text"] == "shape = parse(text)"
    imports = where[("pkg/uses.py", "")]
    assert imports["occurrences"][0]["kind"] == "import"
    # Definitions are named apart, never listed as references.
    defs = {(d["path"], d["start_line"]) for d in answer["definitions"]}
    parse_line = SHAPES.split("\n").index("def parse(text: str) -> Shape:") + 1
    assert ("pkg/shapes.py", parse_line) in defs
    lines = {(g["path"], o["line"]) for g in answer["results"] for o in g["occurrences"]}
    assert not any(p == "pkg/shapes.py" for p, _ in lines)  # the comment and the def only
    assert ("pkg/uses.py", 6) not in lines  # "parse" in a string
    assert answer["total"] == sum(len(g["occurrences"]) for g in answer["results"])
    assert answer["has_more"] is False and answer["cursor"] is None


def test_find_references_pages_with_a_cursor(nav_server: Served) -> None:
    whole = ok(nav_server, "find_references", {"name": "parse"})
    everything = [(g["path"], o["line"]) for g in whole["results"] for o in g["occurrences"]]
    seen: list[tuple[str, int]] = []
    body: dict[str, Any] = {"name": "parse", "limit": 2}
    while True:
        page = ok(nav_server, "find_references", body)
        assert page["total"] == whole["total"]
        seen += [(g["path"], o["line"]) for g in page["results"] for o in g["occurrences"]]
        if not page["has_more"]:
            break
        body = {**body, "cursor": page["cursor"]}
    assert seen == everything
    other = post(nav_server, "find_references", {"name": "area", "cursor": body.get("cursor")})
    assert other.status_code == 422


def test_find_references_by_symbol_id_and_budget(nav_server: Served) -> None:
    (circle,) = ok(nav_server, "find_symbol", {"name": "Circle"})["results"]
    answer = ok(nav_server, "find_references", {"symbol_id": circle["symbol_id"]})
    assert answer["name"] == "Circle"
    assert answer["total"] >= 3
    tiny = ok(nav_server, "find_references", {"name": "parse", "max_tokens": 200})
    assert tiny["tokens"] <= 200
    assert tiny["degraded"]["step"] in ("counts_per_file", "count")
