"""Navigation queries over a generation's symbols: find, get, outline and references.

The read side of ``symbols.sqlite`` (layout and writer: :mod:`codeintel.core.store.symbols`).
The navigation tools (find_symbol, file_outline, find_references) call this API;
it knows nothing of HTTP, repositories or token budgets.

API::

    index = SymbolIndex.open(generation_dir)   # None: no symbols here ("not indexed: rebuild")
    index.find(name, kind=None, path_glob=None, language=None, limit=20) -> list[Symbol]
    index.get(symbol_id) -> Symbol | None
    index.outline(path) -> Outline | None      # None: the path is not in the index
    index.siblings(symbol, limit) -> (list[Sibling], count)  # same file and parent
    index.references(name_or_symbol, path_glob=None, limit=50, cursor=None) -> References
    index.close()

* ``find`` takes a plain name (``parse``), a qualified one (``Class.method``,
  ``module.Class.method``, C++ ``Class::method``) or a glob (``parse_*``,
  ``Foo.*``). Order: exact matches (case-sensitive, then case-insensitive; for a
  qualified name, the qualified name, then a nested or module-qualified match),
  then glob or prefix matches; within each, definitions in source before tests
  before vendored or generated code, then path and line. Deterministic.
* ``Symbol.id`` is 16 hex digits, stable across generations while the
  definition keeps its path, qualified name, kind and rank among same-named
  definitions of the file (editing its body or the lines above keeps it).
* ``references`` is by identifier name (:mod:`codeintel.core.symbol_references`);
  the records all these return are :mod:`codeintel.core.symbol_records`.
* Bodies are not stored: a symbol carries its span, and callers read the lines
  at the generation's commit. Reference line text comes from ``chunks.sqlite``.
* Thread-safe: one read-only (``immutable``) sqlite connection per thread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codeintel.core import errors, globs, symbol_references
from codeintel.core import symbol_records as records
from codeintel.core.store import symbols as store
from codeintel.core.store.manifest import CHUNKS_DB
from codeintel.core.symbol_records import (
    LINE_CHARS,
    MAX_LIMIT,
    FileCount,
    LineSpan,
    Occurrence,
    Outline,
    ReferenceGroup,
    References,
    Sibling,
    Symbol,
    module_name,
)

__all__ = [
    "LINE_CHARS",
    "MAX_LIMIT",
    "FileCount",
    "LineSpan",
    "Occurrence",
    "Outline",
    "ReferenceGroup",
    "References",
    "Sibling",
    "Symbol",
    "SymbolIndex",
    "module_name",
]

_CANDIDATES = 5000  # rows one name lookup may read before ranking (bounds a query's cost)
_GLOB_CHARS = frozenset("*?[")
_TOP = "\U0010ffff"  # above every character: the end of a prefix range


class SymbolIndex:
    """Read-only view of one generation's ``symbols.sqlite`` and, from schema 2, its
    ``symbols.postings`` (see the module docstring)."""

    def __init__(self, path: Path, chunks_path: Path | None, moved_to: Path | None = None) -> None:
        self.path = Path(path)
        self._chunks_path = chunks_path
        self._moved_to = moved_to
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._closed = False
        schema = store.check_schema(self.path)
        self.postings: symbol_references.Postings = (
            store.open_postings(self.path)
            if schema >= store.FLAT_POSTINGS
            else store.SqlitePostings()
        )
        """Mapped now, so that an unpublished generation's file is read after its rename."""

    @classmethod
    def open(cls, generation_dir: Path, *, moved_to: Path | None = None) -> SymbolIndex | None:
        """The index of a generation directory; ``None`` when it has none (an older store).

        ``moved_to`` is where an unpublished generation's directory will be renamed
        (the early index): threads that connect after the rename read from there.
        Raises :class:`~codeintel.core.errors.IndexFormatError` for a corrupt file or
        a newer schema than this reader knows.
        """
        path = Path(generation_dir) / store.SYMBOLS_DB
        if not path.is_file():
            return None
        chunks = Path(generation_dir) / CHUNKS_DB
        return cls(path, chunks if chunks.is_file() else None, moved_to)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for conn in self._conns:
                conn.close()
            self._conns.clear()

    def __enter__(self) -> SymbolIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queries ---------------------------------------------------------------------------

    def find(
        self,
        name: str,
        *,
        kind: str | None = None,
        path_glob: str | None = None,
        language: str | None = None,
        limit: int = 20,
    ) -> list[Symbol]:
        """Definitions matching ``name`` (plain, qualified or glob), best first."""
        query = name.strip().replace("::", ".")
        if not query:
            raise errors.QueryError("name must not be empty", field="name")
        records.check_limit(limit)
        if path_glob is not None:
            globs.compile_one(path_glob)  # a bad glob is a QueryError/ConfigError now
        params: dict[str, Any] = {"kind": kind, "language": language, "glob": path_glob}
        # Candidates are narrow rows (id, name, qualname, path, category, line), ranked, and
        # only the final ``limit`` are read in full: a common name costs little.
        ranked: list[tuple[int, int, Any]] = []  # (rank, order within rank, row)
        if _GLOB_CHARS & set(query):
            column = "qualname" if "." in query else "name"
            prefix = query[: min(query.index(c) for c in _GLOB_CHARS if c in query)]
            rows = self._ranged(column, records.lower(prefix), records.lower(query), params, limit)
            ranked = [
                (0 if (r[2] if column == "qualname" else r[1]) == query else 1, i, r)
                for i, r in enumerate(rows)
            ]
        elif "." not in query:
            rows = self.rows(
                f"{records.KEYS} WHERE lower(s.name) = :lower AND {records.FILTERS} "
                "ORDER BY s.name = :name DESC, f.category, f.path, s.start_line, s.id LIMIT :limit",
                {**params, "name": query, "lower": records.lower(query), "limit": limit},
            )
            ranked = [(0 if r[1] == query else 1, i, r) for i, r in enumerate(rows)]
            if len(ranked) < limit:
                seen = {r[0] for r in rows}
                more = self._ranged("name", records.lower(query), None, params, limit + len(rows))
                fill = [r for r in more if r[0] not in seen][: limit - len(ranked)]
                ranked.extend((4, i, row) for i, row in enumerate(fill))
        else:
            # The qualified name itself, a nested one ending with it, or one the query
            # qualifies with its module (checked against the path below).
            rows = self.rows(
                f"{records.KEYS} WHERE lower(s.name) = :name AND (lower(s.qualname) = :q "
                "OR lower(s.qualname) LIKE '%.' || :q OR :q LIKE '%.' || lower(s.qualname)) "
                f"AND {records.FILTERS} LIMIT :limit",
                {
                    **params,
                    "name": records.lower(query.rsplit(".", 1)[-1]),
                    "q": records.lower(query),
                    "limit": _CANDIDATES,
                },
            )
            for row in rows:
                rank = _rank(query, row)
                if rank is not None:
                    ranked.append((rank, 0, row))
            ranked.sort(key=lambda item: (item[0], item[2][4], item[2][3], item[2][5], item[2][0]))
            ranked = [(rank, i, row) for i, (rank, _, row) in enumerate(ranked)]
        ranked.sort(key=lambda item: (item[0], item[2][4], item[1]))
        return self._full([row[0] for _, _, row in ranked[:limit]])

    def _ranged(
        self, column: str, prefix: str, pattern: str | None, params: dict[str, Any], limit: int
    ) -> list[Any]:
        """Up to ``limit`` definitions whose lowered ``column`` starts with ``prefix`` (and
        GLOB-matches ``pattern``), source first, each category in name order: one range scan
        of the ``(category, lower(column))`` index per category, stopping at ``limit``."""
        out: list[Any] = []
        where = f"s.category = :category AND lower(s.{column}) >= :low"
        if prefix:
            where += f" AND lower(s.{column}) < :high"
        if pattern is not None:
            where += f" AND lower(s.{column}) GLOB :pattern"
        sql = (
            f"{records.KEYS} WHERE {where} AND {records.FILTERS} "
            f"ORDER BY lower(s.{column}), s.id LIMIT :limit"
        )
        for category in range(len(store.CATEGORIES)):
            out += self.rows(
                sql,
                {
                    **params,
                    "category": category,
                    "low": prefix,
                    "high": prefix + _TOP,
                    "pattern": pattern,
                    "limit": limit - len(out),
                },
            )
            if len(out) >= limit:
                break
        return out

    def _full(self, ids: list[int]) -> list[Symbol]:
        """The symbols of ``ids``, in that order."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = (
            self.connection().execute(f"{records.SELECT} WHERE s.id IN ({marks})", ids).fetchall()
        )
        by_id = {row[0]: row for row in rows}
        return [records.symbol(by_id[i]) for i in ids if i in by_id]

    def get(self, symbol_id: str) -> Symbol | None:
        """The definition with this id in this generation, or ``None``."""
        value = store.parse_id(symbol_id)
        if value is None:
            return None
        rows = self.rows(f"{records.SELECT} WHERE s.id = :id", {"id": value})
        return records.symbol(rows[0]) if rows else None

    def outline(self, path: str) -> Outline | None:
        """The definitions of ``path`` in source order; ``None`` when the path is not indexed."""
        row = (
            self.connection()
            .execute(
                "SELECT id, language, imports_start, imports_end FROM files WHERE path = ?",
                (path,),
            )
            .fetchone()
        )
        if row is None:
            return None
        file_id, language, imports_start, imports_end = row
        rows = self.rows(
            f"{records.SELECT} WHERE s.file_id = :file ORDER BY s.start_line, s.line, s.id",
            {"file": file_id},
        )
        imports = LineSpan(imports_start, imports_end) if imports_start else None
        return Outline(path, language, imports, [records.symbol(r) for r in rows])

    def siblings(self, symbol: Symbol, limit: int) -> tuple[list[Sibling], int]:
        """Up to ``limit`` other definitions of ``symbol``'s file with its parent, those
        nearest it (half before, the rest after), in source order; and how many there are.

        Narrow columns only, read from the ``(file, start line)`` index outwards from the
        symbol: a file of thousands of definitions costs what a small one does, but for
        the count (measured: reading every sibling of sympy's ``test_args.py``, 6 ms)."""
        params = {
            "id": store.parse_id(symbol.id),
            "parent": store.parse_id(symbol.parent_id) if symbol.parent_id is not None else None,
            "start": symbol.start_line,
        }
        same = (
            "SELECT s.id, s.name, s.kind, s.start_line, s.end_line FROM symbols AS s "
            "WHERE s.file_id = (SELECT file_id FROM symbols WHERE id = :id) "
            "AND s.parent_id IS :parent AND s.id != :id"
        )
        before = self.rows(
            f"{same} AND s.start_line <= :start "
            "ORDER BY s.start_line DESC, s.line DESC, s.id DESC LIMIT :limit",
            {**params, "limit": limit},
        )
        after = self.rows(
            f"{same} AND s.start_line >= :start ORDER BY s.start_line, s.line, s.id LIMIT :limit",
            {**params, "limit": limit},
        )
        seen = {row[0] for row in before}
        after = [row for row in after if row[0] not in seen]
        keep_before = min(len(before), max(limit // 2, limit - len(after)))
        chosen = before[:keep_before][::-1] + after[: limit - keep_before]
        (count,) = self.rows(
            "SELECT COUNT(*) FROM symbols WHERE file_id = (SELECT file_id FROM symbols "
            "WHERE id = :id) AND parent_id IS :parent AND id != :id",
            params,
        )[0]
        return [Sibling(*row[1:]) for row in chosen], int(count)

    def references(
        self,
        target: str | Symbol,
        *,
        path_glob: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        max_files: int = 50,
        max_definitions: int = 20,
    ) -> References:
        """Occurrences of an identifier, grouped by enclosing definition
        (:func:`codeintel.core.symbol_references.references`)."""
        return symbol_references.references(
            self,
            target,
            path_glob=path_glob,
            limit=limit,
            cursor=cursor,
            max_files=max_files,
            max_definitions=max_definitions,
        )

    # -- connections -----------------------------------------------------------------------

    def rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        try:
            return self.connection().execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise errors.IndexFormatError(f"cannot read {self.path}: {e}") from e

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect(self.path)
            conn.create_function("glob_match", 2, globs.matches, deterministic=True)
        return conn

    def chunks_connection(self) -> sqlite3.Connection | None:
        if self._chunks_path is None:
            return None
        conn: sqlite3.Connection | None = getattr(self._local, "chunks", None)
        if conn is None:
            conn = self._local.chunks = self._connect(self._chunks_path)
        return conn

    def _connect(self, path: Path) -> sqlite3.Connection:
        if self._closed:
            raise errors.IndexFormatError(f"symbol index is closed: {self.path}")
        if self._moved_to is not None and not path.exists():  # published meanwhile
            path = self._moved_to / path.name
        try:
            uri = path.resolve().as_uri() + "?mode=ro&immutable=1"
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        except sqlite3.Error as e:
            raise errors.IndexFormatError(f"cannot open {path}: {e}") from e
        with self._lock:
            self._conns.append(conn)
        return conn


def _rank(query: str, row: Sequence[Any]) -> int | None:
    """How well a candidate (id, name, qualname, path, …) matches a dotted ``query``."""
    qualname, path = row[2], row[3]
    if qualname == query:
        return 0
    lowered = query.lower()
    if qualname.lower() == lowered:
        return 1
    if qualname.lower().endswith("." + lowered):
        return 2
    for module in store.module_names(path):
        full = f"{module}.{qualname}".lower()
        if full == lowered or full.endswith("." + lowered):
            return 2
    return None
