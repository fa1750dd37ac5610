"""The symbol pass's fast paths against their oracles: occurrences found many files at a
time (``extraction.Batch``, what the build does) are exactly those of each file found
alone (``extraction.extract``), and Python's definitions (``_python_definitions``) are
exactly what the general ``_definitions`` makes of the same nodes."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_symbols import SNIPPETS

import codeintel
from codeintel.core.store import symbols as symbols_store
from codeintel.indexer import extraction, languages, python_lexing, symbol_rules

_SRC = Path(codeintel.__file__).parent
REAL = sorted(_SRC.rglob("*.py"))[::5]
"""Every fifth module of codeintel itself: real Python, tens of files."""


def _facts(found: symbols_store.FileSymbols) -> tuple[object, ...]:
    return (
        found.symbols,
        found.imports,
        found.names,
        found.name_index.tolist(),
        found.lines.tolist(),
        found.columns.tolist(),
        found.kinds.tolist(),
        found.enclosing.tolist(),
    )


def _alone_and_batched(
    files: list[tuple[str, bytes]], limit: int | None = None
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    alone, batched = [], []
    batch = extraction.Batch(limit)
    for path, source in files:
        language = languages.language_for(path)
        parser = languages.parser_for(language)
        assert parser is not None, path
        tree = parser.parse(source)
        alone.append(_facts(extraction.extract(path, language, tree, source)))
        batched.append(batch.add(path, language, tree, source))
    batch.flush()
    return alone, [_facts(found) for found in batched]


def test_a_batch_of_real_sources_in_every_language_finds_what_each_file_finds_alone():
    files = [(p.name, p.read_bytes()) for p in REAL]
    files += [(path, text.encode()) for path, (text, _) in SNIPPETS.items()]
    assert len(files) > 30
    alone, batched = _alone_and_batched(files)
    assert batched == alone
    assert sum(len(facts[3]) for facts in alone) > 5000  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", [1, 200, 1 << 30])
def test_lines_brackets_and_definitions_start_again_at_each_file(limit):
    """A file's unclosed bracket, last line without a newline and open definition end
    with it: in the next file `g` on its own line before `(` is no call, its first
    word is on line 1, column 0, and at top level."""
    files = [
        ("a.py", b"def f(x):\n    return h(x,\n"),  # unclosed: the rest would be inside
        ("b.py", b"g\n(1)\ny = g(2)"),  # no newline at the end
        ("c.py", b"zz = 1\nclass C:\n    def m(self):\n        return zz\n"),
    ]
    alone, batched = _alone_and_batched(files, limit)
    assert batched == alone
    names, _, lines, columns, kinds, enclosing = batched[1][2:]
    assert names == ["g", "y"]
    assert lines[0] == 1 and columns[0] == 0 and kinds[0] == symbols_store.OTHER
    assert kinds[-1] == symbols_store.CALL and enclosing == [-1, -1, -1]
    assert batched[2][7] == [-1, 1, 1]  # zz at top level, then self and zz inside C.m


def test_a_word_too_long_to_hash_sends_its_batch_back_a_file_at_a_time():
    long = "w" * (extraction._HASHED_WORD + 1)
    files = [
        ("a.py", b"alpha = beta(gamma)\n"),
        ("long.py", f"{long} = a + b\nc = {long}(a)\n".encode()),
        ("b.py", b"delta.epsilon = alpha\n"),
    ]
    alone, batched = _alone_and_batched(files)
    assert batched == alone
    assert batched[1][2] == [long, "a", "b", "c"]


def test_a_file_whose_occurrences_fail_is_emptied_and_its_batch_kept(monkeypatch):
    """A fault no real source is known to cause (the finder raising) costs that file
    its symbols, never the batch nor the build."""
    real = extraction._occurrences

    def failing(files: list[extraction.Prepared]) -> bool:
        if any(f.out.path == "bad.py" for f in files):
            raise RecursionError("deep")
        return real(files)

    monkeypatch.setattr(extraction, "_occurrences", failing)
    files = [("a.py", b"def a():\n    return b\n"), ("bad.py", b"def c(): pass\n")]
    batch = extraction.Batch()
    outs = []
    for path, source in files:
        tree = languages.parser_for("python").parse(source)
        outs.append(batch.add(path, "python", tree, source))
    batch.flush()
    good, bad = outs
    assert [s.name for s in good.symbols] == ["a"] and good.names == ["b"]
    assert bad.symbols == [] and bad.names == [] and len(bad.lines) == 0


EDGES = (
    b"x = 1\n# Doc from the comment above.\ndef g(\n    a,\n    b,\n):\n    pass\n"
    b"@a.b(1)\n@c\nasync def f(x: int = 1) -> 'T':  # trailing\n"
    b'    """Doc line.\n\n    More."""\n'
    b'class C(Base, metaclass=M):\n    r"""Raw doc."""\n    class D:\n        def m(self): pass\n'
    b"    @property\n    def p(self):\n        # not a doc\n        return 1\n"
    b"def h(): 'one line'\n"
    b"def undocumented():\n    x = 'not a doc' + y\n"
)


def _both_ways(source: bytes) -> tuple[list[object], list[object]]:
    rules = symbol_rules.RULES["python"]
    spec = languages.grammar_for("python")
    assert spec is not None
    tree = languages.parser_for("python").parse(source)
    code, nodes, _ = python_lexing.scan(tree, source, rules)
    results = []
    for make in (extraction._python_definitions, extraction._definitions):
        out = symbols_store.FileSymbols("x.py", "python")
        ranges = make(out, rules, spec, nodes, source, code)
        results.append([out.symbols, [(d.start, d.end, d.index, d.name_start) for d in ranges]])
    return results[0], results[1]


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_python_definitions_are_the_general_definitions_on_real_sources(path):
    fast, general = _both_ways(path.read_bytes())
    assert fast == general


def test_python_definitions_are_the_general_definitions_at_the_edges():
    fast, general = _both_ways(EDGES)
    assert fast == general
    by_name = {s.qualname: s for s in fast[0]}  # type: ignore[attr-defined]
    assert by_name["f"].doc == "Doc line." and by_name["f"].start_line == 8
    assert by_name["f"].signature == "async def f(x: int = 1) -> 'T':"
    assert by_name["C"].doc == "Raw doc." and by_name["C.D.m"].kind == "method"
    assert by_name["C.p"].doc == "" and by_name["g"].doc == "Doc from the comment above."
    assert by_name["g"].signature == "def g(\n    a,\n    b,\n):"
    assert by_name["h"].doc == "one line" and by_name["undocumented"].doc == ""


def test_a_name_cut_short_by_a_byte_that_is_not_utf8_is_named_alike():
    """tree-sitter ends the identifier at the stray byte; both paths name it so."""
    source = b"def ok(): pass\ndef caf\xe9(): pass\n"
    fast, general = _both_ways(source)
    assert fast == general
    assert [s.name for s in fast[0]] == ["ok", "caf"]  # type: ignore[attr-defined]


def test_a_word_in_many_files_of_a_batch_is_one_string():
    batch = extraction.Batch()
    parser = languages.parser_for("python")
    sources = [b"shared_name = 1\n", b"x = shared_name + other\n", b"shared_name()\n"]
    outs = [batch.add(f"{i}.py", "python", parser.parse(s), s) for i, s in enumerate(sources)]
    batch.flush()
    shared = [next(n for n in out.names if n == "shared_name") for out in outs]
    assert shared[0] is shared[1] is shared[2]
    assert outs[1].names == ["x", "shared_name", "other"]
