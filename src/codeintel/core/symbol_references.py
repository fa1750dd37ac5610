"""find_references over a generation's ``symbols.sqlite``: an identifier's occurrences.

By identifier name, as Sourcegraph's search-based navigation is: every identifier
spelling the name in code (never in a comment or a string), the definitions' own
names excluded and listed separately in ``definitions``. ``total`` and the per-file
counts come from one posting per (name, file) (a row of schema 1, a slice of the
mapped ``symbols.postings`` in schema 2); a page unpacks only the files it
shows, so a name with 10,000 occurrences costs what a rare one does. Each page's
occurrences are grouped by enclosing definition with their line text (from
``chunks.sqlite``); ``cursor`` continues a page.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Protocol

import numpy as np

from codeintel.core import errors, globs
from codeintel.core import symbol_records as records
from codeintel.core.store import symbols as store


class Postings(Protocol):
    """A generation's postings, in either schema (:mod:`codeintel.core.store.symbols`)."""

    def file_counts(
        self, conn: sqlite3.Connection, name_id: int
    ) -> list[tuple[int, str, int, int]]: ...

    def occurrences(
        self, conn: sqlite3.Connection, name_id: int, file_id: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...


class Reader(Protocol):
    """What the queries need of :class:`codeintel.core.symbols.SymbolIndex`."""

    @property
    def postings(self) -> Postings: ...

    def rows(self, sql: str, params: dict[str, Any]) -> list[Any]: ...

    def connection(self) -> sqlite3.Connection: ...

    def chunks_connection(self) -> sqlite3.Connection | None:
        """``chunks.sqlite`` (the line texts), ``None`` when the generation has none."""


def references(
    index: Reader,
    target: str | records.Symbol,
    *,
    path_glob: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    max_files: int = 50,
    max_definitions: int = 20,
) -> records.References:
    """Occurrences of an identifier, grouped by enclosing definition (module docstring).

    ``target`` is a name (a qualified one is looked up by its last part) or a
    :class:`~codeintel.core.symbol_records.Symbol`, whose name is used. Files are read
    source first, then tests, then vendored code, each by path.
    """
    name = target.name if isinstance(target, records.Symbol) else target.strip()
    name = name.replace("::", ".").rsplit(".", 1)[-1]
    if not name:
        raise errors.QueryError("name must not be empty", field="name")
    records.check_limit(limit)
    conn = index.connection()
    definitions = [
        records.symbol(r)
        for r in index.rows(
            f"{records.SELECT} WHERE lower(s.name) = :lower AND +s.name = :name "
            f"{records.ORDER} LIMIT :limit",
            {"name": name, "lower": records.lower(name), "limit": max_definitions},
        )
    ]
    row = conn.execute("SELECT id FROM names WHERE name = ?", (name,)).fetchone()
    name_id = int(row[0]) if row is not None else 0
    matcher = globs.compile_one(path_glob) if path_glob is not None else None
    postings = index.postings
    counted = postings.file_counts(conn, name_id)
    counted.sort(key=lambda r: (r[2], r[1]))
    files = [
        (int(file_id), str(path), int(count))
        for file_id, path, _, count in counted
        if matcher is None or matcher.match(path)
    ]
    total = sum(count for _, _, count in files)
    per_file = [
        records.FileCount(path, count)
        for _, path, count in sorted(files, key=lambda f: (-f[2], f[1]))[:max_files]
    ]
    start, after = _decode_cursor(cursor, [f[0] for f in files])
    page: list[tuple[int, str, int, int, int, int]] = []  # file, path, line, col, kind, sym
    for file_id, path, _ in files[start:]:
        lines, columns, kinds, symbols = postings.occurrences(conn, name_id, file_id)
        count = len(lines)
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
    return records.References(
        name=name,
        total=total,
        files=len(files),
        per_file=per_file,
        definitions=definitions,
        groups=_groups(index, page),
        has_more=has_more,
        cursor=next_cursor,
    )


def _groups(
    index: Reader, page: list[tuple[int, str, int, int, int, int]]
) -> list[records.ReferenceGroup]:
    conn = index.connection()
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
    texts = _line_texts(index, page)
    groups: list[records.ReferenceGroup] = []
    for file_id, path, line, column, kind, sid in page:
        occurrence = records.Occurrence(
            line, column, store.OCCURRENCE_KINDS[kind], texts.get((file_id, line), "")
        )
        last = groups[-1] if groups else None
        key_id = store.format_id(sid) if sid in enclosing else None
        if last is not None and last.path == path and last.symbol_id == key_id:
            last.occurrences.append(occurrence)
            continue
        qualname, start, end = enclosing.get(sid, ("", None, None))
        groups.append(records.ReferenceGroup(path, qualname, key_id, start, end, [occurrence]))
    return groups


def _line_texts(
    index: Reader, page: list[tuple[int, str, int, int, int, int]]
) -> dict[tuple[int, int], str]:
    """Line text of each occurrence on the page, from the chunks covering it."""
    chunks = index.chunks_connection()
    if not page or chunks is None:
        return {}
    wanted: dict[tuple[int, str], set[int]] = {}
    for file_id, path, line, *_ in page:
        wanted.setdefault((file_id, path), set()).add(line)
    out: dict[tuple[int, int], str] = {}
    for (file_id, path), lines in wanted.items():
        for start, end, text in chunks.execute(
            "SELECT start_line, end_line, text FROM chunks WHERE path = ? "
            "AND start_line <= ? AND end_line >= ? ORDER BY start_line",
            (path, max(lines), min(lines)),
        ):
            for line in lines:
                if start <= line <= end and (file_id, line) not in out:
                    body = text.split("\n", line - start + 1)
                    out[file_id, line] = body[line - start].strip()[: records.LINE_CHARS]
    return out


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
