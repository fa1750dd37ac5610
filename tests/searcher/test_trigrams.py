"""search_text through the trigram index: the same answers as ripgrep over the whole tree."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from codeintel.searcher import textsearch, trigrams


def _git_tree(root: Path) -> Path:
    """A real repository's files, as ``git archive`` materialises a generation."""
    repo = root / "repo"
    repo.mkdir()
    files: dict[str, bytes] = {
        "src/solver.py": b"def solve_linear_system(m):\n    return m  # TODO\n",
        "src/other.py": b"def other():\n    return None\n",
        "-dash.py": b"solve_linear_system = 1\n",
        "a[1].py": b"solve_linear_system()\n",
        ".hidden/h.py": b"x = solve_linear_system\n",
        "docs/readme.md": b"Call Solve_Linear_System or FIXME\n",
        # binary: a match in the first buffer before the NUL is skipped by ripgrep,
        # one in a later buffer before the NUL is reported
        "bin/early.dat": b"solve_linear_system\n\0rest\n",
        "bin/late.dat": b"solve_linear_system\n" + b"x\n" * 80_000 + b"\0" + b"tail\n",
        "bin/after.dat": b"\0" + b"solve_linear_system\n",
        "utf16.txt": "solve_linear_system\n".encode("utf-16"),
        "bom8.txt": b"\xef\xbb\xbfsolve_linear_system todo\n",
        "crlf.txt": b"a todo\r\nTODO todo ToDo\r\n\xff\xfe caf\xe9 todo\r\nend todo",
        "nested/deep/solver2.py": b"x = 1\n" * 50
        + b"y = solve_linear_system; solve_linear_system\n",
    }
    for i in range(40):
        files[f"pkg/m{i:02d}.py"] = f"def f{i}():\n    return {i}  # common\n".encode()
    for name, data in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    os.symlink("src/solver.py", repo / "link.py")
    run = ["git", "-C", str(repo)]
    subprocess.run([*run, "init", "-q"], check=True)
    subprocess.run([*run, "add", "-A"], check=True)
    subprocess.run(
        [*run, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "c"], check=True
    )
    tree = root / "tree"
    tree.mkdir()
    archive = subprocess.run([*run, "archive", "HEAD"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = _git_tree(tmp_path_factory.mktemp("trigrams"))
    assert textsearch.TREES.wait(root)
    return root


SEARCHES = [
    ("solve_linear_system", {}),
    ("Solve_Linear_System", {}),
    ("solve_linear_system", {"case_sensitive": False}),
    ("todo", {}),
    ("todo", {"case_sensitive": False}),
    ("caf\u00e9", {}),
    ("end todo", {}),
    ("TODO TODO", {"case_sensitive": False}),
    ("solve_linear_system;", {}),
    ("common", {}),
    ("zzz_nowhere", {}),
    (r"def \w+_linear_\w+\(", {"regex": True}),
    ("TODO|FIXME", {"regex": True}),
    ("(?:solve|other)_", {"regex": True}),
    (r"[[:alpha:]]olve_linear", {"regex": True}),
    ("(?i)SOLVE_linear", {"regex": True}),
    ("def f1", {"path_glob": "pkg/*"}),
]


@pytest.mark.parametrize(("pattern", "flags"), SEARCHES)
async def test_pruned_answers_are_the_whole_tree_answers(
    tree: Path, pattern: str, flags: dict[str, object]
) -> None:
    pruned = await textsearch.search(tree, pattern, max_results=10_000, **flags)  # type: ignore[arg-type]
    whole = await textsearch.search(tree, pattern, max_results=10_000, prune=False, **flags)  # type: ignore[arg-type]
    assert whole.exact
    assert (pruned.matches, pruned.total, pruned.per_file) == (
        whole.matches,
        whole.total,
        whole.per_file,
    )


async def test_binary_and_transcoded_files_follow_ripgreps_rules(tree: Path) -> None:
    found = await textsearch.search(tree, "solve_linear_system", max_results=100)
    paths = {m.path for m in found.matches}
    assert {"src/solver.py", "-dash.py", "a[1].py", ".hidden/h.py", "utf16.txt"} <= paths
    assert "bom8.txt" in paths
    assert "link.py" not in paths  # ripgrep does not follow links
    assert "bin/early.dat" not in paths and "bin/after.dat" not in paths
    assert "bin/late.dat" in paths  # reported before the NUL, then a warning line skipped
    # the candidates were narrowed: the 40 files of pkg/ were never handed to ripgrep
    wanted = trigrams.needles(
        "solve_linear_system", regex=False, case_sensitive=True, path_glob=None
    )
    assert wanted is not None
    only = textsearch.TREES.candidates(tree, wanted)
    assert only is None or not any(p.startswith("pkg/") for p in only.paths)


async def test_few_small_candidates_are_read_in_process(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    scan = textsearch._scan_files

    def spy(root: Path, paths: list[bytes], *args: object, **kwargs: object) -> object:
        calls.append(paths)
        return scan(root, paths, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(textsearch, "_scan_files", spy)
    found = await textsearch.search(tree, "solve_linear_system;")
    assert calls == [[b"nested/deep/solver2.py"]]
    (row,) = found.matches  # two on the line: one row, the first one's column
    assert (row.path, row.line, row.column) == ("nested/deep/solver2.py", 51, 5)
    crlf = await textsearch.search(tree, "TODO TODO", case_sensitive=False)
    assert [(m.line, m.text) for m in crlf.matches] == [(2, "TODO todo ToDo")]
    assert len(calls) == 2


async def test_a_common_word_gives_its_pages_in_order_and_a_lower_bound(tree: Path) -> None:
    whole = await textsearch.search(tree, "return", max_results=10_000, prune=False)
    assert whole.exact and whole.total == 42
    first = await textsearch.search(tree, "return", max_results=10)
    assert not first.exact and first.total == 11  # at least one past the page
    assert first.matches == whole.matches[:10]
    pages = []
    for offset in range(0, whole.total, 10):
        page = await textsearch.search(tree, "return", max_results=10, offset=offset)
        pages.extend(page.matches)
    assert pages == whole.matches
    last = await textsearch.search(tree, "return", max_results=10, offset=40)
    assert last.exact and last.total == 42


async def test_a_literal_no_file_holds_answers_at_once(tree: Path) -> None:
    found = await textsearch.search(tree, "zzz_nowhere")
    assert found.exact and found.total == 0 and found.matches == []


def test_needles_of_literals_and_regexes() -> None:
    def needles(pattern: str, regex: bool = True, case: bool = True) -> object:
        return trigrams.needles(pattern, regex=regex, case_sensitive=case, path_glob=None)

    assert needles("foo.bar(", regex=False) == [[b"foo.bar("]]
    assert needles("ab", regex=False) is None  # under three bytes: any file
    assert needles(r"def \w+_eval\(self\)") == [[b"def ", b"_eval(self)"]]
    assert needles("TODO|FIXME") == [[b"TODO"], [b"FIXME"]]
    assert needles("TODO|x") is None  # one alternative any file might hold
    assert needles("(?:abc)+def") == [[b"abc", b"def"]]
    assert needles("(abc)?def") == [[b"def"]]
    assert needles("[[:alpha:]]foo") is None  # Rust reads the class otherwise
    assert needles("(?i)abc") is None
    assert needles(r"\p{L}abc") is None
    assert needles("todo", regex=False, case=False) == [[b"todo"]]
    assert needles("task", regex=False, case=False) is None  # k and s fold beyond ASCII
    assert needles("a\nbcd", regex=False) is None
