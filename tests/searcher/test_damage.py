"""Which SQLite errors mean a damaged generation file (503, re-verify), and which do not."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from codeintel.core import errors
from codeintel.core.store.chunks import ChunkDB
from codeintel.searcher.generations import damage_of


def _raised(fn: Callable[[], object]) -> BaseException:
    """The exception ``fn`` raises (whichever it is: that is what the test examines)."""
    try:
        fn()
    except Exception as e:
        return e
    raise AssertionError("nothing was raised")


def test_a_file_that_is_not_a_database_is_damage(tmp_path: Path) -> None:
    path = tmp_path / "chunks.sqlite"
    path.write_bytes(b"\x5a" * 8192)
    e = _raised(lambda: sqlite3.connect(path).execute("SELECT * FROM chunks").fetchall())
    assert damage_of(e) is e


def test_a_wrapped_sqlite_error_is_found_through_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "chunks.sqlite"
    path.write_bytes(b"\x5a" * 8192)
    e = _raised(lambda: ChunkDB.open(path))
    assert isinstance(e, errors.IndexFormatError)
    assert isinstance(damage_of(e), sqlite3.DatabaseError)


def test_query_mistakes_and_other_errors_are_not_damage(tmp_path: Path) -> None:
    syntax = _raised(lambda: sqlite3.connect(":memory:").execute("SELEC 1"))
    assert isinstance(syntax, sqlite3.OperationalError) and damage_of(syntax) is None
    wrapped = errors.QueryError("lexical query failed", field="query")
    wrapped.__cause__ = syntax
    assert damage_of(wrapped) is None
    assert damage_of(ValueError("no")) is None
    conn = sqlite3.connect(":memory:")
    conn.close()
    closed = _raised(lambda: conn.execute("SELECT 1"))
    assert isinstance(closed, sqlite3.ProgrammingError) and damage_of(closed) is None
