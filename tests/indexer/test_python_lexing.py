"""Python's symbol pass from the bytes (``python_lexing``) against the query walk it replaces.

Both paths stay in the code (``SymbolRules.lexer``): every other language walks its
query, so the query path is the oracle here, on sources chosen for what a lexer gets
wrong: prefixes, nested quotes, f-strings (PEP 701 included), comments between a
callee and its ``(``, statements the keywords begin.
"""

from __future__ import annotations

import sqlite3

import msgspec
import pytest

from codeintel.core.store import symbols as symbols_store
from codeintel.indexer import extraction, languages, python_lexing, symbol_rules

SOURCES = {
    "prefixes": (
        'a = rb"x" + Rb\'y\' + br"""z""" + u"w" + B"v" + f"{q}" + F\'{r!r:>{width}}\'\n'
        "b = call (1) + obj.meth(2) + (not_called)\n"
        "c = {'k': d['k'], \"j\": '''it's''' + \"\"\"say \"hi\" \"\"\"}\n"
    ),
    "fstrings": (
        "x = f\"lit {a} {b!s} {c:{d}.{e}f} {{not}} {g['k']} {h('s')}\"\n"
        "y = f'''multi\n{line} {z} # not a comment\n'''\n"
        "w = f\"{f'{inner}'}\"\n"
        "v = rf'\\d{pat}' + fr\"{other}\" + t\n"
    ),
    "pep701": 'x = f"{d["key"]} and {f"{deep["k"]}"}" + after("s")\ny = last\n',
    "keywords": (
        "def first(): pass\n"
        "async def second():\n    import os; import sys as system\n"
        "try: import json\nexcept ImportError: json = None\n"
        "if x:\n    class Inner:\n        def method(self): return self\n"
        "from . import sibling\nfrom __future__ import annotations\n"
        "importlib.import_module('m')\nz = q.def_ + class_\n"
    ),
    "calls": (
        "total = compute(\n    a)\n"
        "result = (factorial\n    (n))\n"
        "name = value\n(x, y) = pair\n"
        "fn(  # why\n  1)\n"
        "obj . attr (3)\n"
        "print \\\n  (4)\n"
    ),
}


def _extract(source: bytes, *, lexer: bool) -> symbols_store.FileSymbols:
    rules = symbol_rules.RULES["python"]
    tree = languages.parser_for("python").parse(source)
    patched = msgspec.structs.replace(rules, lexer=lexer)
    symbol_rules.RULES["python"] = patched
    try:
        return extraction.extract("m.py", "python", tree, source)
    finally:
        symbol_rules.RULES["python"] = rules


def _facts(found: symbols_store.FileSymbols) -> tuple[object, ...]:
    return (
        found.symbols,
        found.imports,
        list(
            zip(
                found.lines.tolist(),
                found.columns.tolist(),
                found.occurrence_names(),
                found.kinds.tolist(),
                found.enclosing.tolist(),
                strict=True,
            )
        ),
    )


def test_python_uses_the_lexer():
    assert symbol_rules.RULES["python"].lexer
    assert not any(rules.lexer for name, rules in symbol_rules.RULES.items() if name != "python")


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_lexer_gives_what_the_query_gives(name):
    source = SOURCES[name].encode()
    by_lexer, by_query = _extract(source, lexer=True), _extract(source, lexer=False)
    assert len(by_lexer) > 0
    assert _facts(by_lexer) == _facts(by_query)


def test_comments_and_string_bodies_are_zeroed_interpolations_kept():
    source = SOURCES["fstrings"].encode()
    tree = languages.parser_for("python").parse(source)
    code, _, _ = python_lexing.scan(tree, source, symbol_rules.RULES["python"])
    assert len(code) == len(source)
    words = set(code.replace(b"\0", b" ").split())
    assert b"lit" not in words and b"multi" not in words and b"comment" not in words
    for kept in (b"{a}", b"{line}", b"{inner}", b"{pat}", b"{other}"):
        assert kept in code


def test_a_pep_701_fstring_ends_where_the_tree_ends_it():
    found = _extract(SOURCES["pep701"].encode(), lexer=True)
    names = found.occurrence_names()
    assert {"d", "deep", "after", "y", "last"} <= set(names)
    assert "key" not in names and "k" not in names and "s" not in names
    calls = {n for n, k in zip(names, found.kinds.tolist(), strict=True) if k == symbols_store.CALL}
    assert calls == {"after"}


def test_callees_across_lines_only_inside_brackets():
    found = _extract(SOURCES["calls"].encode(), lexer=True)
    kinds = dict(zip(found.occurrence_names(), found.kinds.tolist(), strict=True))
    for called in ("compute", "factorial", "fn", "attr", "print"):
        assert kinds[called] == symbols_store.CALL, called
    assert kinds["value"] == symbols_store.OTHER  # `(x, y) = pair` begins the next statement


def test_broken_strings_end_at_the_line():
    found = _extract(b"x = 'open\ny = ok\n# last", lexer=True)
    assert found.occurrence_names() == ["x", "y", "ok"]


def _stored(path):
    """(name id, file id, count, (lines, columns, kinds, enclosing)) of every posting of a
    database of either schema, as its reader gives them, in key order."""
    conn = sqlite3.connect(path)
    if symbols_store.check_schema(path) >= symbols_store.FLAT_POSTINGS:
        reader = symbols_store.open_postings(path)
        keys = [
            (name_id, int(reader.files[at]))
            for name_id in range(len(reader.name_starts) - 1)
            for at in range(int(reader.name_starts[name_id]), int(reader.name_starts[name_id + 1]))
        ]
        assert conn.execute("SELECT count(*) FROM postings").fetchone() == (0,)
    else:
        reader = symbols_store.SqlitePostings()
        keys = conn.execute("SELECT name_id, file_id FROM postings ORDER BY 1, 2").fetchall()
    rows = []
    for name_id, file_id in keys:
        columns = reader.occurrences(conn, name_id, file_id)
        rows.append((name_id, file_id, len(columns[0]), columns))
    conn.close()
    return rows


@pytest.mark.parametrize("schema", [1, symbols_store.SCHEMA_VERSION])
def test_postings_round_trip_every_occurrence(tmp_path, schema):
    """The writer cuts postings from numpy columns: every occurrence comes back under
    its name, in source order, with kind and enclosing id, from either layout."""
    source = SOURCES["keywords"] + SOURCES["calls"] + "def g(a):\n    return a(a, g) + a\n"
    found = _extract(source.encode(), lexer=True)
    path = tmp_path / "symbols.sqlite"
    symbols_store.write(path, [found], schema)

    conn = sqlite3.connect(path)
    names = dict(conn.execute("SELECT id, name FROM names"))
    qualnames = dict(conn.execute("SELECT id, qualname FROM symbols"))
    conn.close()
    back = []
    for name_id, _, _, (lines, columns, kinds, enclosing) in _stored(path):
        back += [
            (line, column, names[name_id], kind, qualnames.get(sid, ""))
            for line, column, kind, sid in zip(
                lines.tolist(), columns.tolist(), kinds.tolist(), enclosing.tolist(), strict=True
            )
        ]
    expected = [
        (line, column, name, kind, found.symbols[e].qualname if e >= 0 else "")
        for line, column, name, kind, e in _facts(found)[2]  # type: ignore[misc]
    ]
    assert sorted(back) == sorted(expected) and len(back) == len(found) > 20
    assert {("a", symbols_store.CALL), ("g", symbols_store.OTHER)} <= {
        (n, k) for _, _, n, k, _ in back
    }


@pytest.mark.parametrize("schema", [1, symbols_store.SCHEMA_VERSION])
def test_postings_of_many_files_sorted_at_once(tmp_path, schema):
    """The writer sorts every file's occurrences in one batch: one posting per (name,
    file), in key order, each in its file's source order, under its own file."""
    sources = {
        "b.py": "def g(a):\n    return a(a, g) + a\nx = a\n",
        "a.py": SOURCES["calls"],
        "c.py": "a = 1\nfor a in a: g(a)\n",
    }
    found = {path: _extract(text.encode(), lexer=True) for path, text in sources.items()}
    for path, item in found.items():
        item.path = path
    path = tmp_path / "symbols.sqlite"
    symbols_store.write(path, list(found.values()), schema)

    conn = sqlite3.connect(path)
    names = dict(conn.execute("SELECT id, name FROM names"))
    paths = dict(conn.execute("SELECT id, path FROM files"))
    conn.close()
    rows = _stored(path)
    assert [r[:2] for r in rows] == sorted({r[:2] for r in rows})
    for file, item in found.items():
        expected: dict[str, list[tuple[int, int]]] = {}
        for line, column, name, _, _ in _facts(item)[2]:  # type: ignore[misc]
            expected.setdefault(name, []).append((line, column))
        back = {}
        for name_id, file_id, _, (lines, columns, _, _) in rows:
            if paths[file_id] == file:
                back[names[name_id]] = list(zip(lines.tolist(), columns.tolist(), strict=True))
        assert back == expected, file


def test_the_code_bytes_of_many_files_are_each_files_alone():
    """``codes`` scans files joined: each file's bytes are its own, whatever its
    neighbours hold (a PEP 701 f-string, an unterminated string that would run on)."""
    rules = symbol_rules.RULES["python"]
    parser = languages.parser_for("python")
    sources = [s.encode() for s in SOURCES.values()]
    unterminated = b'x = 1\ns = """never closed\n'
    for files in (sources, [*sources[:2], unterminated, *sources[2:]], [unterminated]):
        roots = [parser.parse(s).root_node for s in files]
        alone = [python_lexing.codes([r], [s], rules)[0] for r, s in zip(roots, files, strict=True)]
        together = python_lexing.codes(roots, files, rules)
        assert together == alone
        assert [len(c) for c in together] == [len(s) for s in files]
    assert b"never" not in python_lexing.codes([roots[0]], [unterminated], rules)[0]
