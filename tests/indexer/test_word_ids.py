"""The symbol pass tells words apart by a hash of their bytes (``extraction._word_ids``);
the exact path (a ``bytes`` object per word and a dict) is its oracle, on real sources."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import codeintel
from codeintel.core.store import symbols as symbols_store
from codeintel.indexer import extraction, languages

_SRC = Path(codeintel.__file__).parent
REAL = sorted(_SRC.rglob("*.py"))[::7]
"""Every seventh module of codeintel itself: real Python, tens of files."""


def _both(path: str, source: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    tree = languages.parser_for("python").parse(source)
    hashed = extraction.extract(path, "python", tree, source)
    with monkeypatch.context() as patched:
        patched.setattr(extraction, "_HASHED_WORD", -1)  # every file takes the exact path
        exact = extraction.extract(path, "python", tree, source)
    return _facts(hashed), _facts(exact)


def _facts(found: symbols_store.FileSymbols) -> tuple[object, ...]:
    return (
        found.names,
        found.name_index.tolist(),
        found.lines.tolist(),
        found.columns.tolist(),
        found.kinds.tolist(),
        found.enclosing.tolist(),
        found.symbols,
    )


def test_hashed_word_ids_give_the_exact_paths_output_on_real_sources(monkeypatch):
    assert len(REAL) > 10
    occurrences = 0
    for file in REAL:
        hashed, exact = _both(file.name, file.read_bytes(), monkeypatch)
        assert hashed == exact, file
        occurrences += len(hashed[1])  # type: ignore[arg-type]
    assert occurrences > 5000


def test_unicode_numbers_keywords_and_repeats():
    source = (
        "é = café + naïve.x\nif é: y = 1.e-6 + 0x1F + é.if_\nclass C:\n    def m(s): return C.m\n"
    )
    found = extraction.extract(
        "u.py", "python", languages.parser_for("python").parse(source.encode()), source.encode()
    )
    names = found.occurrence_names()
    assert names[:4] == ["é", "café", "naïve", "x"]
    assert names.count("é") == 3 and "e" not in names and "x1F" not in names
    assert "if" not in names and "if_" in names  # a keyword is no identifier, `if_` is one
    assert len(found.names) == len(set(found.names))


def test_a_word_longer_than_the_hashed_bound_takes_the_exact_path(monkeypatch):
    long = "w" * (extraction._HASHED_WORD + 1)
    source = f"{long} = a + b\nc = {long} + a\n".encode()
    hashed, exact = _both("long.py", source, monkeypatch)
    assert hashed == exact
    assert hashed[0] == [long, "a", "b", "c"]  # type: ignore[index]


def test_words_of_one_hash_but_two_lengths_take_the_exact_path(monkeypatch):
    """A collision the length check sees (every hash made 0) falls back, same output."""
    source = b"alpha = beta + alpha\ngamma(beta)\n"
    tree = languages.parser_for("python").parse(source)
    expected = _facts(extraction.extract("c.py", "python", tree, source))
    monkeypatch.setattr(
        extraction, "_powers", lambda size: (np.zeros(size, np.uint64), np.zeros(size, np.uint64))
    )  # every word hashes to 0: `beta` has another length than `alpha` and `gamma`
    assert _facts(extraction.extract("c.py", "python", tree, source)) == expected


def test_the_power_tables_are_the_base_s_powers_and_their_inverses():
    powers, inverses = extraction._powers(70_000)  # past the first table: grown once
    expected = [1]
    for _ in range(69_999):
        expected.append(expected[-1] * extraction._BASE % 2**64)
    assert powers.tolist() == expected
    assert (powers * inverses == 1).all()
