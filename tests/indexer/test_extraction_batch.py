"""Occurrences found many files at a time (``extraction.Batch``, what the build does) are
exactly those of each file found alone (``extraction.extract``)."""

from __future__ import annotations

from pathlib import Path

import pytest

import codeintel
from codeintel.core.store import symbols as symbols_store
from codeintel.indexer import extraction, languages
from tests.indexer.test_symbols import SNIPPETS

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
        prepared = extraction.prepare(path, language, tree, source)
        batch.add(prepared)
        batched.append(prepared.out)
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
    names, index, lines, columns, kinds, enclosing = batched[1][2:]
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
        prepared = extraction.prepare(path, "python", tree, source)
        batch.add(prepared)
        outs.append(prepared.out)
    batch.flush()
    good, bad = outs
    assert [s.name for s in good.symbols] == ["a"] and good.names == ["b"]
    assert bad.symbols == [] and bad.names == [] and len(bad.lines) == 0
