"""Regexes read in-process, and later pages read from a search's layout: ripgrep's answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeintel.searcher import regexscan, textsearch

FILES: dict[str, bytes] = {
    "ascii/a.c": b"int cJSON_Parse(x);\nreturn cJSON_Print(y) + cJSON_x(z);\nfoo  bar\n"
    b"if (a) { b(); }\nx123 = 4567;\nfoo\tbar foobar\n",
    "ascii/b.c": b"cJSON_Delete(item);\r\nfoo bar\r\nno match here\n" * 3,
    # non-ASCII lines: each character's class decides whether a pattern matches
    "uni/letters.txt": "cJSON_caf\u00e9(1);\ncJSON_\u732b(2);\ne\u0301cJSON_m(3);\n"
    "\u00e9foo bar\nfoo\u00a0bar\nx\u0663\u0664 = 1\nfoo\u203fbar(\n".encode(),
    "uni/symbols.txt": "cJSON_\u00b2(4);\ncJSON_a\U0001f431(5);\ncJSON_\u24b6(6);\n"
    "foo\u2003bar \u20ac\nfoo\u200dbar(\n".encode(),
    "uni/upper.txt": b"CJSON_X(7);\nFOO BAR\n",
}
for i in range(12):  # files no candidate list names, so the index prunes
    FILES[f"other/o{i:02d}.txt"] = b"nothing to see\n"

SEARCHES = [
    (r"cJSON_\w+\(", True),
    (r"cJSON_\w+\(", False),
    (r"\bfoo\b", True),
    (r"foo\s+bar", True),
    (r"foo\s+bar", False),
    (r"foo.bar", True),
    (r"x\d+", True),
    (r"cJSON_[A-Z]\w*", True),
    (r"\w+bar\(", True),
    (r"^foo", True),
    (r"\);$", True),
    (r"(?:cJSON|foo)_?\w{2,3}", True),
    (r"if \(.*?\)", True),
    (r"if \(.*?\)", False),
    (r"cJSON_[^P]\w+", True),  # negated: ripgrep answers
    (r"(?i)cjson_x", True),  # inline flags: ripgrep answers
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("regexscan")
    for name, data in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    assert textsearch.TREES.wait(root)
    return root


@pytest.mark.parametrize(("pattern", "case_sensitive"), SEARCHES)
async def test_regexes_read_in_process_are_ripgreps_answers(
    tree: Path, pattern: str, case_sensitive: bool
) -> None:
    """Every page, from the first and from a layout, is the page of ripgrep's whole-tree run."""
    flags = {"regex": True, "case_sensitive": case_sensitive}
    whole = await textsearch.search(tree, pattern, max_results=1000, prune=False, **flags)
    assert whole.exact and whole.total > 0
    textsearch.LAYOUTS.clear()
    for offset in range(0, whole.total + 3, 3):
        page = await textsearch.search(tree, pattern, max_results=3, offset=offset, **flags)
        fresh = await textsearch.search(
            tree, pattern, max_results=3, offset=offset, prune=False, **flags
        )
        assert page.matches == fresh.matches == whole.matches[offset : offset + 3]
        assert (page.total, page.exact, page.per_file) == (whole.total, True, whole.per_file)


async def test_which_regexes_are_read_in_process(tree: Path) -> None:
    """A layout is kept only by a search read here: the ASCII-provable regexes, and those
    whose non-ASCII characters have a known class."""
    read_here = []
    for pattern, case_sensitive in SEARCHES:
        textsearch.LAYOUTS.clear()
        await textsearch.search(
            tree, pattern, regex=True, case_sensitive=case_sensitive, max_results=3
        )
        key = (str(tree), pattern, True, case_sensitive, None)
        read_here.append(textsearch.LAYOUTS.get(key) is not None)
    assert read_here == [
        True,
        False,  # no needle: ignoring case, "cJSON_" may hold a long s (U+017F)
        True,
        True,
        False,  # ignoring case, a non-ASCII line could fold to ASCII: ripgrep
        True,
        False,  # no needle of three bytes: the whole tree
        True,  # every letter named: a digit stands in for the non-ASCII letters
        True,
        True,
        False,
        False,
        True,
        True,  # ignoring case over ASCII files
        False,  # negated class
        False,  # inline flags
    ]


async def test_unknown_characters_and_other_encodings_go_to_ripgrep(tmp_path: Path) -> None:
    files = {
        "a.txt": "cJSON_a\u0378(1);\n".encode(),  # an unassigned code point
        "b.txt": b"cJSON_caf\xe9(2);\n",  # Latin-1, not UTF-8
        "c.txt": "x\u0663 = 1\n".encode(),  # an Arabic-Indic digit, for \d
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert textsearch.TREES.wait(tmp_path)
    for pattern in (r"cJSON_\w+\(", r"x\d"):
        textsearch.LAYOUTS.clear()
        found = await textsearch.search(tmp_path, pattern, regex=True)
        whole = await textsearch.search(tmp_path, pattern, regex=True, prune=False)
        assert found.matches == whole.matches
        assert textsearch.LAYOUTS.get((str(tmp_path), pattern, True, True, None)) is None


def test_translation_refuses_what_either_engine_reads_otherwise() -> None:
    refused = [
        "(?i)abc",
        "a(?=bc)",
        r"(ab)\1",
        r"\<foo",
        r"\b{start}foo",
        "[[:alpha:]]x",
        "ab{,3}",
        "ab{",
        "ab}",
        "a*",
        "abc|",
        r"\pLabc",
        r"[^)]+\)",
        r"\Sfoo",
        r"\x{41}bc",
        r"foo\nbar",
        "caf\u00e9",
        "ab*+",
        r"\Afoo",
        r"\_x",
        "[a[]bc",
        "(?:ab)+c",
        r"abc\w{101}",
        r"a+b\w*c+",
    ]
    assert [p for p in refused if regexscan.translate(p, True) is not None] == []
    kept = {
        r"cJSON_\w+\(": rb"cJSON_\w+\(",
        "TODO|FIXME": b"(?:TODO|FIXME)",
        r"a\s+b": rb"a[ \t\x0b\x0c\r]+b",
        r"x{2,3}y": b"x{2,3}y",
        r"[]a-c]+\d?": rb"[\]a\-c]+[0-9]?".replace(rb"\-", b"-"),
    }
    for pattern, regex in kept.items():
        translated = regexscan.translate(pattern, True)
        assert translated is not None and translated.regex.pattern == regex, pattern


async def test_a_layout_never_serves_another_tree(tmp_path: Path) -> None:
    """Two commits' trees (two generations), the same search: each page is its own tree's."""
    trees = []
    for n, body in enumerate((b"needle one\n", b"needle two\nneedle three\n")):
        root = tmp_path / f"gen{n}"
        root.mkdir()
        for i in range(6):
            (root / f"f{i}.txt").write_bytes(body * (i + 1))
        for i in range(10):
            (root / f"x{i}.txt").write_bytes(b"hay\n")
        assert textsearch.TREES.wait(root)
        trees.append(root)
    textsearch.LAYOUTS.clear()
    first = await textsearch.search(trees[0], "needle", max_results=4)
    assert first.total == 21
    for root in trees:
        for offset in (4, 8, 12, 30):
            page = await textsearch.search(root, "needle", max_results=4, offset=offset)
            fresh = await textsearch.search(
                root, "needle", max_results=4, offset=offset, prune=False
            )
            assert (page.matches, page.total) == (fresh.matches, fresh.total)


async def test_long_lines_and_slow_scans_go_to_ripgrep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python's engine backtracks: a line longer than the pattern's runs allow, or a scan
    past its budget, is left to ripgrep (linear in the line), with the same answer."""
    (tmp_path / "long.txt").write_bytes(b"cJSON_" + b"w" * 5000 + b"(\ncJSON_a(\n")
    (tmp_path / "short.txt").write_bytes(b"cJSON_b( cJSON_c(\n")
    for i in range(6):
        (tmp_path / f"o{i}.txt").write_bytes(b"nothing\n")
    assert textsearch.TREES.wait(tmp_path)
    key = (str(tmp_path), r"cJSON_\w+\(", True, True, None)
    whole = await textsearch.search(tmp_path, r"cJSON_\w+\(", regex=True, prune=False)
    assert whole.total == 3
    textsearch.LAYOUTS.clear()
    found = await textsearch.search(tmp_path, r"cJSON_\w+\(", regex=True)
    assert found.matches == whole.matches and textsearch.LAYOUTS.get(key) is None
    (tmp_path / "long.txt").unlink()  # the index still names it: a fresh tree instead
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "short.txt").write_bytes(b"cJSON_b( cJSON_c(\n")
    for i in range(6):
        (tree / f"o{i}.txt").write_bytes(b"nothing\n")
    assert textsearch.TREES.wait(tree)
    key = (str(tree), r"cJSON_\w+\(", True, True, None)
    monkeypatch.setattr(regexscan, "BUDGET_SECONDS", -1.0)
    found = await textsearch.search(tree, r"cJSON_\w+\(", regex=True)
    assert [m.column for m in found.matches] == [1] and textsearch.LAYOUTS.get(key) is None
    monkeypatch.undo()
    found = await textsearch.search(tree, r"cJSON_\w+\(", regex=True)
    assert [m.column for m in found.matches] == [1] and textsearch.LAYOUTS.get(key) is not None


async def test_columns_count_characters(tree: Path) -> None:
    """ripgrep gives byte columns; answers count characters (a combining accent is one)."""
    found = await textsearch.search(tree, r"cJSON_\w+\(", regex=True, path_glob="uni/*")
    where = {(m.path, m.line): m.column for m in found.matches}
    assert where[("uni/letters.txt", 3)] == 3  # after "e" and U+0301: 3 bytes, 2 characters
    assert where[("uni/letters.txt", 1)] == 1
    pruned = await textsearch.search(tree, r"cJSON_\w+\(", regex=True)
    assert {
        (m.path, m.line): m.column for m in pruned.matches if m.path.startswith("uni/")
    } == where
