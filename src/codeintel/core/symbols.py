"""Navigation queries over a generation's symbols: find, get, outline and references.

The read side of ``symbols.sqlite`` (layout and writer: :mod:`codeintel.core.store.symbols`).
The navigation tools (find_symbol, file_outline, find_references) call this API;
it knows nothing of HTTP, repositories or token budgets.

API::

    index = SymbolIndex.open(generation_dir)   # None: no symbols here ("not indexed: rebuild")
    index.find(name, kind=None, path_glob=None, language=None, limit=20) -> list[Symbol]
    index.get(symbol_id) -> Symbol | None
    index.outline(path) -> Outline | None      # None: the path is not in the index
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
* ``references`` is by identifier name, as Sourcegraph's search-based
  navigation is: every identifier node spelling the name (never in a comment or
  a string), the definitions' own name nodes excluded and listed separately in
  ``definitions``. ``total`` and the per-file counts come from one posting row
  per (name, file); a page unpacks only the files it shows, so a name with
  10,000 occurrences costs what a rare one does. ``cursor`` continues a page.
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

import msgspec
import numpy as np

from codeintel.core import errors, globs
from codeintel.core.store import symbols as store
from codeintel.core.store.manifest import CHUNKS_DB

MAX_LIMIT = 1000
"""Largest ``limit`` accepted by :meth:`SymbolIndex.find` and :meth:`SymbolIndex.references`."""
LINE_CHARS = 240
"""Reference line text is cut to this many characters."""
_CANDIDATES = 5000  # rows one name lookup may read before ranking (bounds a query's cost)
_GLOB_CHARS = frozenset("*?[")
_TOP = "\U0010ffff"  # above every character: the end of a prefix range


class Symbol(msgspec.Struct, frozen=True):
    """One definition at the generation's commit."""

    id: str
    name: str
    qualname: str
    """``Class.method``; the module is :func:`module_name` of ``path``."""
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
    signature: str
    """The declaration line(s) up to the body, bounded."""
    doc: str
    """First line of the docstring or leading comment; ``""`` when none."""
    parent: str | None
    """Qualified name of the enclosing definition."""
    parent_id: str | None
    category: str
    """``source``, ``test`` or ``vendored`` (vendored trees and generated files)."""


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


class FileCount(msgspec.Struct, frozen=True):
    path: str
    count: int


class Occurrence(msgspec.Struct, frozen=True):
    line: int
    column: int
    """0-based, in bytes of the line's UTF-8."""
    kind: str
    """``call``, ``import`` or ``other``."""
    text: str
    """The line, stripped and cut to :data:`LINE_CHARS`."""


class ReferenceGroup(msgspec.Struct, frozen=True):
    """Consecutive occurrences in one file under one enclosing definition."""

    path: str
    symbol: str
    """Qualified name of the enclosing definition; ``""`` at module level."""
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


_COLUMNS = (
    "s.id, s.name, s.qualname, s.kind, f.language, f.path, s.start_line, s.end_line, s.line, "
    "s.signature, s.doc, s.parent_id, f.category, "
    "(SELECT p.qualname FROM symbols AS p WHERE p.id = s.parent_id)"
)
_FILTERS = (
    "(:kind IS NULL OR s.kind = :kind) AND (:language IS NULL OR f.language = :language) "
    "AND (:glob IS NULL OR glob_match(f.path, :glob))"
)
_SELECT = f"SELECT {_COLUMNS} FROM symbols AS s JOIN files AS f ON f.id = s.file_id"  # noqa: S608
_ORDER = "ORDER BY f.category, f.path, s.start_line, s.id"
_KEYS = (
    "SELECT s.id, s.name, s.qualname, f.path, f.category, s.start_line "
    "FROM symbols AS s JOIN files AS f ON f.id = s.file_id"
)


class SymbolIndex:
    """Read-only view of one generation's ``symbols.sqlite`` (see the module docstring)."""

    def __init__(self, path: Path, chunks_path: Path | None, moved_to: Path | None = None) -> None:
        self.path = Path(path)
        self._chunks_path = chunks_path
        self._moved_to = moved_to
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        self._closed = False
        store.check_schema(self.path)

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
        _check_limit(limit)
        if path_glob is not None:
            globs.compile_one(path_glob)  # a bad glob is a QueryError/ConfigError now
        params: dict[str, Any] = {"kind": kind, "language": language, "glob": path_glob}
        # Candidates are narrow rows (id, name, qualname, path, category, line), ranked, and
        # only the final ``limit`` are read in full: a common name costs little.
        ranked: list[tuple[int, int, Any]] = []  # (rank, order within rank, row)
        if _GLOB_CHARS & set(query):
            column = "qualname" if "." in query else "name"
            prefix = query[: min(query.index(c) for c in _GLOB_CHARS if c in query)]
            rows = self._ranged(column, _lower(prefix), _lower(query), params, limit)
            ranked = [
                (0 if (r[2] if column == "qualname" else r[1]) == query else 1, i, r)
                for i, r in enumerate(rows)
            ]
        elif "." not in query:
            rows = self._rows(
                f"{_KEYS} WHERE lower(s.name) = :lower AND {_FILTERS} "
                "ORDER BY s.name = :name DESC, f.category, f.path, s.start_line, s.id LIMIT :limit",
                {**params, "name": query, "lower": _lower(query), "limit": limit},
            )
            ranked = [(0 if r[1] == query else 1, i, r) for i, r in enumerate(rows)]
            if len(ranked) < limit:
                seen = {r[0] for r in rows}
                more = self._ranged("name", _lower(query), None, params, limit + len(rows))
                fill = [r for r in more if r[0] not in seen][: limit - len(ranked)]
                ranked.extend((4, i, row) for i, row in enumerate(fill))
        else:
            # The qualified name itself, a nested one ending with it, or one the query
            # qualifies with its module (checked against the path below).
            rows = self._rows(
                f"{_KEYS} WHERE lower(s.name) = :name AND (lower(s.qualname) = :q "
                "OR lower(s.qualname) LIKE '%.' || :q OR :q LIKE '%.' || lower(s.qualname)) "
                f"AND {_FILTERS} LIMIT :limit",
                {
                    **params,
                    "name": _lower(query.rsplit(".", 1)[-1]),
                    "q": _lower(query),
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
        sql = f"{_KEYS} WHERE {where} AND {_FILTERS} ORDER BY lower(s.{column}), s.id LIMIT :limit"
        for category in range(len(store.CATEGORIES)):
            out += self._rows(
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
        rows = self._conn().execute(f"{_SELECT} WHERE s.id IN ({marks})", ids).fetchall()
        by_id = {row[0]: row for row in rows}
        return [_symbol(by_id[i]) for i in ids if i in by_id]

    def get(self, symbol_id: str) -> Symbol | None:
        """The definition with this id in this generation, or ``None``."""
        value = store.parse_id(symbol_id)
        if value is None:
            return None
        rows = self._rows(f"{_SELECT} WHERE s.id = :id", {"id": value})
        return _symbol(rows[0]) if rows else None

    def outline(self, path: str) -> Outline | None:
        """The definitions of ``path`` in source order; ``None`` when the path is not indexed."""
        row = (
            self._conn()
            .execute(
                "SELECT id, language, imports_start, imports_end FROM files WHERE path = ?",
                (path,),
            )
            .fetchone()
        )
        if row is None:
            return None
        file_id, language, imports_start, imports_end = row
        rows = self._rows(
            f"{_SELECT} WHERE s.file_id = :file ORDER BY s.start_line, s.line, s.id",
            {"file": file_id},
        )
        imports = LineSpan(imports_start, imports_end) if imports_start else None
        return Outline(path, language, imports, [_symbol(r) for r in rows])

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
        """Occurrences of an identifier, grouped by enclosing definition (module docstring).

        ``target`` is a name (a qualified one is looked up by its last part) or a
        :class:`Symbol`, whose name is used. Files are read source first, then
        tests, then vendored code, each by path.
        """
        name = target.name if isinstance(target, Symbol) else target.strip()
        name = name.replace("::", ".").rsplit(".", 1)[-1]
        if not name:
            raise errors.QueryError("name must not be empty", field="name")
        _check_limit(limit)
        conn = self._conn()
        definitions = [
            _symbol(r)
            for r in self._rows(
                f"{_SELECT} WHERE lower(s.name) = :lower AND +s.name = :name {_ORDER} LIMIT :limit",
                {"name": name, "lower": _lower(name), "limit": max_definitions},
            )
        ]
        row = conn.execute("SELECT id FROM names WHERE name = ?", (name,)).fetchone()
        name_id = int(row[0]) if row is not None else 0
        matcher = globs.compile_one(path_glob) if path_glob is not None else None
        counted = conn.execute(
            "SELECT c.file_id, f.path, f.category, c.count FROM postings AS c "
            "JOIN files AS f ON f.id = c.file_id WHERE c.name_id = ?",
            (name_id,),
        ).fetchall()
        counted.sort(key=lambda r: (r[2], r[1]))
        files = [
            (int(file_id), str(path), int(count))
            for file_id, path, _, count in counted
            if matcher is None or matcher.match(path)
        ]
        total = sum(count for _, _, count in files)
        per_file = [
            FileCount(path, count)
            for _, path, count in sorted(files, key=lambda f: (-f[2], f[1]))[:max_files]
        ]
        start, after = _decode_cursor(cursor, [f[0] for f in files])
        page: list[tuple[int, str, int, int, int, int]] = []  # file, path, line, col, kind, sym
        for file_id, path, _ in files[start:]:
            data, count = conn.execute(
                "SELECT data, count FROM postings WHERE name_id = ? AND file_id = ?",
                (name_id, file_id),
            ).fetchone()
            lines, columns, kinds, symbols = store.unpack(data, count)
            first = 0
            if after is not None and file_id == files[start][0]:
                keys = lines.astype(np.int64) << 32 | columns
                first = int(np.searchsorted(keys, after[0] << 32 | after[1], side="right"))
            for i in range(first, min(count, first + limit + 1 - len(page))):
                page.append(
                    (file_id, path, int(lines[i]), int(columns[i]), int(kinds[i]), int(symbols[i]))
                )
            if len(page) > limit:
                break
        has_more = len(page) > limit
        page = page[:limit]
        next_cursor = f"{page[-1][0]}:{page[-1][2]}:{page[-1][3]}" if has_more else None
        return References(
            name=name,
            total=total,
            files=len(files),
            per_file=per_file,
            definitions=definitions,
            groups=self._groups(page),
            has_more=has_more,
            cursor=next_cursor,
        )

    # -- helpers ---------------------------------------------------------------------------

    def _groups(self, page: list[tuple[int, str, int, int, int, int]]) -> list[ReferenceGroup]:
        conn = self._conn()
        enclosing: dict[int, tuple[str, int, int]] = {}
        ids = sorted({occ[5] for occ in page if occ[5]})
        for chunk in range(0, len(ids), 500):
            part = ids[chunk : chunk + 500]
            marks = ",".join("?" * len(part))
            for sid, qualname, start, end in conn.execute(
                f"SELECT id, qualname, start_line, end_line FROM symbols WHERE id IN ({marks})",  # noqa: S608
                part,
            ):
                enclosing[sid] = (qualname, start, end)
        texts = self._line_texts(page)
        groups: list[ReferenceGroup] = []
        for file_id, path, line, column, kind, sid in page:
            occurrence = Occurrence(
                line, column, store.OCCURRENCE_KINDS[kind], texts.get((file_id, line), "")
            )
            last = groups[-1] if groups else None
            key_id = store.format_id(sid) if sid in enclosing else None
            if last is not None and last.path == path and last.symbol_id == key_id:
                last.occurrences.append(occurrence)
                continue
            qualname, start, end = enclosing.get(sid, ("", None, None))
            groups.append(ReferenceGroup(path, qualname, key_id, start, end, [occurrence]))
        return groups

    def _line_texts(
        self, page: list[tuple[int, str, int, int, int, int]]
    ) -> dict[tuple[int, int], str]:
        """Line text of each occurrence on the page, from the chunks covering it."""
        if not page or self._chunks_path is None:
            return {}
        wanted: dict[tuple[int, str], set[int]] = {}
        for file_id, path, line, *_ in page:
            wanted.setdefault((file_id, path), set()).add(line)
        conn = self._chunks_conn()
        out: dict[tuple[int, int], str] = {}
        for (file_id, path), lines in wanted.items():
            for start, end, text in conn.execute(
                "SELECT start_line, end_line, text FROM chunks WHERE path = ? "
                "AND start_line <= ? AND end_line >= ? ORDER BY start_line",
                (path, max(lines), min(lines)),
            ):
                for line in lines:
                    if start <= line <= end and (file_id, line) not in out:
                        body = text.split("\n", line - start + 1)
                        out[file_id, line] = body[line - start].strip()[:LINE_CHARS]
        return out

    def _rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise errors.IndexFormatError(f"cannot read {self.path}: {e}") from e

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect(self.path)
            conn.create_function("glob_match", 2, globs.matches, deterministic=True)
        return conn

    def _chunks_conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "chunks", None)
        if conn is None:
            assert self._chunks_path is not None
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


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _lower(text: str) -> str:
    """SQLite's ``lower()`` (ASCII only), so a lowered parameter meets the expression index."""
    return text.translate(_ASCII_LOWER)


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


def _decode_cursor(cursor: str | None, file_ids: list[int]) -> tuple[int, tuple[int, int] | None]:
    """Index of the cursor's file in the ordered files, and the (line, column) to pass."""
    if cursor is None:
        return 0, None
    try:
        file_id, line, column = (int(part) for part in cursor.split(":"))
        return file_ids.index(file_id), (line, column)
    except ValueError as e:
        raise errors.QueryError(
            f"cursor {cursor!r} is not one this generation gave for this query", field="cursor"
        ) from e


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise errors.QueryError(f"limit must be between 1 and {MAX_LIMIT}", field="limit")


def _symbol(row: Sequence[Any]) -> Symbol:
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
