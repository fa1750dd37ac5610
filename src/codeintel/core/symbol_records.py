"""The records of the symbol index and the SQL that reads them.

What :mod:`codeintel.core.symbols` (definitions: find, get, outline) and
:mod:`codeintel.core.symbol_references` (occurrences) return, and the pieces of SQL
and row conversion both use. The layout of ``symbols.sqlite`` itself is
:mod:`codeintel.core.store.symbols`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import msgspec

from codeintel.core import errors
from codeintel.core.store import symbols as store

MAX_LIMIT = 1000
"""Largest ``limit`` accepted by :meth:`SymbolIndex.find` and :meth:`SymbolIndex.references`."""
LINE_CHARS = 240
"""Reference line text is cut to this many characters."""


class Symbol(msgspec.Struct, frozen=True):
    """One definition at the generation's commit."""

    id: str
    name: str
    qualname: Annotated[
        str, msgspec.Meta(description="Qualified name within its file, e.g. 'Circle.area'.")
    ]
    """The module is :func:`module_name` of ``path``."""
    kind: str
    """class, function, method, interface, struct, enum, type, trait, impl, …"""
    language: str
    path: str
    start_line: int
    """First line (1-based), decorators included."""
    end_line: int
    """Last line, inclusive."""
    line: int
    """The line of the name."""
    signature: Annotated[str, msgspec.Meta(description="The declaration line(s), up to the body.")]
    """Bounded."""
    doc: Annotated[str, msgspec.Meta(description="First line of its docstring or comment.")]
    """``""`` when none (left out of answers)."""
    parent: Annotated[
        str | None, msgspec.Meta(description="Qualified name of the enclosing definition.")
    ]
    parent_id: str | None
    category: Annotated[str, msgspec.Meta(description="'source', 'test' or 'vendored'.")]
    """Vendored: vendored trees and generated files."""


class LineSpan(msgspec.Struct, frozen=True):
    start_line: int
    end_line: int


class Outline(msgspec.Struct, frozen=True):
    """The definitions of one file in source order; nest them by ``parent_id``."""

    path: str
    language: str
    imports: LineSpan | None
    """First to last line of the top-level imports, where the grammar shows them."""
    symbols: list[Symbol]


class Sibling(msgspec.Struct, frozen=True):
    """A definition beside another (same file, same parent), without its text."""

    name: str
    kind: str
    start_line: int
    end_line: int


class FileCount(msgspec.Struct, frozen=True):
    path: str
    count: int


class Occurrence(msgspec.Struct, frozen=True):
    line: int
    column: int
    """0-based, in bytes of the line's UTF-8."""
    kind: Annotated[str, msgspec.Meta(description="'call', 'import' or 'other'.")]
    text: Annotated[str, msgspec.Meta(description="The line, stripped and cut.")]
    """Cut to :data:`LINE_CHARS`."""


class ReferenceGroup(msgspec.Struct, frozen=True):
    """Consecutive occurrences in one file under one enclosing definition."""

    path: str
    symbol: Annotated[
        str,
        msgspec.Meta(description="Qualified name of the enclosing definition ('' at top)."),
    ]
    """``""`` at module level."""
    symbol_id: str | None
    start_line: int | None
    end_line: int | None
    occurrences: list[Occurrence]


class References(msgspec.Struct, frozen=True):
    name: str
    total: int
    """Occurrences of the name (definitions excluded) in the files ``path_glob`` selects."""
    files: int
    per_file: list[FileCount]
    """The files with the most occurrences (at most ``max_files``), most first."""
    definitions: list[Symbol]
    groups: list[ReferenceGroup]
    has_more: bool
    cursor: str | None
    """Pass back as ``cursor`` for the next page; ``None`` on the last page."""


def module_name(path: str) -> str:
    """The dotted module of a path: ``src/pkg/mod.py`` → ``pkg.mod``."""
    return store.module_name(path)


COLUMNS = (
    "s.id, s.name, s.qualname, s.kind, f.language, f.path, s.start_line, s.end_line, s.line, "
    "s.signature, s.doc, s.parent_id, f.category, "
    "(SELECT p.qualname FROM symbols AS p WHERE p.id = s.parent_id)"
)
FILTERS = (
    "(:kind IS NULL OR s.kind = :kind) AND (:language IS NULL OR f.language = :language) "
    "AND (:glob IS NULL OR glob_match(f.path, :glob))"
)
SELECT = f"SELECT {COLUMNS} FROM symbols AS s JOIN files AS f ON f.id = s.file_id"  # noqa: S608
ORDER = "ORDER BY f.category, f.path, s.start_line, s.id"
KEYS = (
    "SELECT s.id, s.name, s.qualname, f.path, f.category, s.start_line "
    "FROM symbols AS s JOIN files AS f ON f.id = s.file_id"
)


ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def lower(text: str) -> str:
    """SQLite's ``lower()`` (ASCII only), so a lowered parameter meets the expression index."""
    return text.translate(ASCII_LOWER)


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise errors.QueryError(f"limit must be between 1 and {MAX_LIMIT}", field="limit")


def symbol(row: Sequence[Any]) -> Symbol:
    (sid, name, qualname, kind, language, path, start, end, line, signature, doc, parent_id,
     category, parent) = row  # fmt: skip
    return Symbol(
        id=store.format_id(sid),
        name=name,
        qualname=qualname,
        kind=kind,
        language=language,
        path=path,
        start_line=start,
        end_line=end,
        line=line,
        signature=signature,
        doc=doc,
        parent=parent,
        parent_id=store.format_id(parent_id) if parent_id is not None else None,
        category=store.CATEGORIES[category],
    )
