"""``symbols.sqlite``: the definitions and identifier occurrences of one generation.

The indexer extracts them in the tree-sitter pass that cuts the chunks
(:mod:`codeintel.indexer.extraction`) and writes them here; the searcher reads
them through :class:`codeintel.core.symbols.SymbolIndex`. This module owns the
file's layout and its writer.

Choices (docs/architecture.md, *Navigation index*):

* A file of its own beside ``chunks.sqlite``, not tables inside it: a store
  written before it simply lacks the file (its navigation tools answer "not
  indexed: rebuild") and older readers never open it, so the store format rises
  without raising ``min_reader_version``; an update copies and edits it without
  touching the FTS5 index, and a merge hard-links it.
* Symbol ids are stable across generations: a 63-bit BLAKE2b hash of path,
  qualified name, kind and the ordinal among same-named definitions of that
  kind in the file, printed as 16 hex digits.
* Occurrences are a ``WITHOUT ROWID`` table clustered on ``(name, file, line,
  column)``: a page of references is one range scan, whatever the corpus size.
  ``occurrence_counts`` holds one row per (name, file), so ``total`` and the
  per-file counts of a name cost one row per file, never one per occurrence.
  Definition name nodes are not stored as occurrences; the symbols table holds
  their position.
* Written like ``chunks.sqlite``: the rollback journal in memory and sync off
  in the temp directory (the store fsyncs at publish), opened ``immutable`` by
  readers.
"""

from __future__ import annotations

import array
import hashlib
import logging
import posixpath
import re
import shutil
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import msgspec

from codeintel.core import errors
from codeintel.core.store import manifest

logger = logging.getLogger(__name__)

SYMBOLS_DB = manifest.SYMBOLS_DB
SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of new databases; readers refuse a newer one."""

OTHER, CALL, IMPORT = 0, 1, 2
OCCURRENCE_KINDS = ("other", "call", "import")
"""Occurrence kind codes as stored, by index."""

SOURCE, TEST, VENDORED = 0, 1, 2
CATEGORIES = ("source", "test", "vendored")
"""File categories as stored: definitions in source rank above tests, tests above vendored
or generated code."""

_SCHEMA = """
CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    language TEXT NOT NULL,
    category INTEGER NOT NULL,
    imports_start INTEGER NOT NULL,
    imports_end INTEGER NOT NULL
);
CREATE TABLE symbols (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    qualname TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    line INTEGER NOT NULL,
    column INTEGER NOT NULL,
    signature TEXT NOT NULL,
    doc TEXT NOT NULL,
    parent_id INTEGER
);
CREATE INDEX symbols_name ON symbols(lower(name));
CREATE INDEX symbols_qualname ON symbols(lower(qualname));
CREATE INDEX symbols_file ON symbols(file_id, start_line);
CREATE TABLE names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE occurrences (
    name_id INTEGER NOT NULL,
    file_id INTEGER NOT NULL,
    line INTEGER NOT NULL,
    column INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    symbol_id INTEGER NOT NULL,
    PRIMARY KEY (name_id, file_id, line, column)
) WITHOUT ROWID;
CREATE TABLE occurrence_counts (
    name_id INTEGER NOT NULL,
    file_id INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (name_id, file_id)
) WITHOUT ROWID;
CREATE INDEX occurrence_counts_file ON occurrence_counts(file_id);
"""


class SymbolDraft(msgspec.Struct, frozen=True):
    """One definition of one file, as extracted (lines 1-based, inclusive)."""

    name: str
    qualname: str
    """Dotted from the enclosing definitions: ``Class.method``, ``outer.inner``."""
    kind: str
    start_line: int
    """First line, decorators and ``export`` included."""
    end_line: int
    line: int
    """The line of the name itself (what ctags reports)."""
    column: int
    """0-based column of the name, in bytes."""
    signature: str
    doc: str
    parent: int
    """Index of the enclosing definition in the file's list, -1 at top level."""


class FileSymbols:
    """The definitions, import span and occurrences of one parsed file.

    Occurrences are kept as parallel compact columns (a large repository has
    millions of them, held until the generation's database is written).
    """

    __slots__ = (
        "columns",
        "enclosing",
        "imports",
        "kinds",
        "language",
        "lines",
        "names",
        "path",
        "symbols",
    )

    def __init__(self, path: str, language: str) -> None:
        self.path = path
        self.language = language
        self.symbols: list[SymbolDraft] = []
        self.imports: tuple[int, int] = (0, 0)
        """First and last line of the file's top-level imports; (0, 0) when none."""
        self.names: list[str] = []
        self.lines = array.array("I")
        self.columns = array.array("I")
        self.kinds = array.array("B")
        self.enclosing = array.array("i")
        """Index of the innermost enclosing definition, -1 at top level."""

    def add(self, name: str, line: int, column: int, kind: int, enclosing: int) -> None:
        self.names.append(name)
        self.lines.append(line)
        self.columns.append(column)
        self.kinds.append(kind)
        self.enclosing.append(enclosing)

    def __len__(self) -> int:
        return len(self.names)


def symbol_id(path: str, qualname: str, kind: str, ordinal: int) -> int:
    """The stable 63-bit id of a definition (see the module docstring)."""
    key = f"{path}\0{qualname}\0{kind}\0{ordinal}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") >> 1


def format_id(value: int) -> str:
    """The printable form of a symbol id: 16 hex digits."""
    return f"{value:016x}"


_ID = re.compile(r"[0-9a-f]{16}")


def parse_id(text: str) -> int | None:
    """The stored id of a printable one; ``None`` when ``text`` is not one."""
    text = text.strip().lower()
    if not _ID.fullmatch(text):
        return None
    value = int(text, 16)
    return value if value < 2**63 else None


_TEST_DIRS = frozenset({"test", "tests", "testing", "__tests__", "spec", "specs", "testdata"})
_VENDOR_DIRS = frozenset(
    {"vendor", "vendored", "third_party", "thirdparty", "node_modules", "external", "_vendor"}
)
_GENERATED = re.compile(
    r"(_pb2(_grpc)?\.pyi?|\.pb\.go|\.pb\.(cc|h)|_generated\.\w+|\.generated\.\w+|\.min\.js)$"
)
_TEST_FILE = re.compile(
    r"(^test_.*\.py$|_test\.(py|go|rs|c|cc|cpp)$|^tests?\.py$|^conftest\.py$"
    r"|\.(test|spec)\.[jt]sx?$|Tests?\.java$)"
)


def category(path: str) -> int:
    """SOURCE, TEST or VENDORED (vendored trees and generated files) for a path."""
    parts = path.split("/")
    base = parts[-1]
    directories = {p.lower() for p in parts[:-1]}
    if directories & _VENDOR_DIRS or _GENERATED.search(base) or "generated" in directories:
        return VENDORED
    if directories & _TEST_DIRS or _TEST_FILE.search(base):
        return TEST
    return SOURCE


_SOURCE_ROOTS = frozenset({"src", "lib", "pkg"})


def module_name(path: str) -> str:
    """The dotted module a path holds: ``src/pkg/mod.py`` → ``pkg.mod``, ``a/__init__.py`` → ``a``."""
    stem, _ = posixpath.splitext(path)
    parts = [p for p in stem.split("/") if p]
    if parts and parts[-1] in ("__init__", "index", "mod"):
        parts = parts[:-1]
    if len(parts) > 1 and parts[0] in _SOURCE_ROOTS:
        parts = parts[1:]
    return ".".join(parts)


class SymbolWriter:
    """Writes a generation's ``symbols.sqlite``: a new one, or a copy of the parent's to edit."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._names: dict[str, int] = {}

    @classmethod
    def create(cls, path: Path) -> SymbolWriter:
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"symbol database already exists: {path}")
        conn = _connect_writer(path)
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return cls(path, conn)

    @classmethod
    def copy(cls, source: Path, path: Path) -> SymbolWriter:
        """A writable copy of a published database (an update edits the copy)."""
        check_schema(source)
        shutil.copyfile(source, path)
        return cls(path, _connect_writer(path))

    def delete_paths(self, paths: Iterable[str]) -> int:
        """Drop every row of these files; returns how many files were there."""
        conn = self._conn
        dropped = 0
        for path in paths:
            row = conn.execute("SELECT id FROM files WHERE path = ?", (path,)).fetchone()
            if row is None:
                continue
            (file_id,) = row
            name_ids = [
                n
                for (n,) in conn.execute(
                    "SELECT name_id FROM occurrence_counts WHERE file_id = ?", (file_id,)
                )
            ]
            conn.executemany(
                "DELETE FROM occurrences WHERE name_id = ? AND file_id = ?",
                [(n, file_id) for n in name_ids],
            )
            conn.execute("DELETE FROM occurrence_counts WHERE file_id = ?", (file_id,))
            conn.execute("DELETE FROM symbols WHERE file_id = ?", (file_id,))
            conn.execute("DELETE FROM files WHERE id = ?", (file_id,))
            dropped += 1
        return dropped

    def add(self, files: Iterable[FileSymbols]) -> None:
        """Insert the rows of parsed files (none of them may be present already)."""
        for file in files:
            self._add_file(file)

    def _add_file(self, file: FileSymbols) -> None:
        conn = self._conn
        cursor = conn.execute(
            "INSERT INTO files (path, language, category, imports_start, imports_end) "
            "VALUES (?,?,?,?,?)",
            (file.path, file.language, category(file.path), *file.imports),
        )
        file_id = cursor.lastrowid
        ids: list[int] = []
        ordinals: dict[tuple[str, str], int] = {}
        rows = []
        for draft in file.symbols:
            key = (draft.qualname, draft.kind)
            ordinal = ordinals.get(key, 0)
            ordinals[key] = ordinal + 1
            sid = symbol_id(file.path, draft.qualname, draft.kind, ordinal)
            ids.append(sid)
            parent = ids[draft.parent] if draft.parent >= 0 else None
            rows.append(
                (
                    sid,
                    file_id,
                    draft.name,
                    draft.qualname,
                    draft.kind,
                    draft.start_line,
                    draft.end_line,
                    draft.line,
                    draft.column,
                    draft.signature,
                    draft.doc,
                    parent,
                )
            )
        before = conn.total_changes
        conn.executemany("INSERT OR IGNORE INTO symbols VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        if conn.total_changes - before != len(rows):  # a 63-bit hash collision: vanishingly rare
            logger.warning(
                "%s: %d symbol id collisions", file.path, len(rows) - (conn.total_changes - before)
            )
        counts: dict[int, int] = {}
        occurrence_rows = []
        for name, line, column, kind, enclosing in zip(
            file.names, file.lines, file.columns, file.kinds, file.enclosing, strict=True
        ):
            name_id = self._name_id(name)
            counts[name_id] = counts.get(name_id, 0) + 1
            occurrence_rows.append(
                (name_id, file_id, line, column, kind, ids[enclosing] if enclosing >= 0 else 0)
            )
        conn.executemany("INSERT OR IGNORE INTO occurrences VALUES (?,?,?,?,?,?)", occurrence_rows)
        conn.executemany(
            "INSERT INTO occurrence_counts VALUES (?,?,?)",
            [(name_id, file_id, n) for name_id, n in counts.items()],
        )

    def _name_id(self, name: str) -> int:
        name_id = self._names.get(name)
        if name_id is None:
            row = self._conn.execute("SELECT id FROM names WHERE name = ?", (name,)).fetchone()
            if row is None:
                cursor = self._conn.execute("INSERT INTO names (name) VALUES (?)", (name,))
                name_id = int(cursor.lastrowid or 0)
            else:
                name_id = int(row[0])
            self._names[name] = name_id
        return name_id

    def close(self) -> None:
        """Commit and close; the file is complete after this."""
        self._conn.commit()
        self._conn.close()


def write(path: Path, files: Iterable[FileSymbols]) -> None:
    """A new ``symbols.sqlite`` at ``path`` holding ``files``."""
    writer = SymbolWriter.create(path)
    try:
        writer.add(files)
    finally:
        writer.close()


def update(source: Path, path: Path, removed: Iterable[str], added: Iterable[FileSymbols]) -> None:
    """``path`` becomes ``source`` without the rows of ``removed`` paths, plus ``added``."""
    writer = SymbolWriter.copy(source, path)
    try:
        added = list(added)
        writer.delete_paths(set(removed) | {f.path for f in added})
        writer.add(added)
    finally:
        writer.close()


def check_schema(path: Path) -> int:
    """The schema version of a database, refusing a newer one than this reader knows."""
    try:
        conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro&immutable=1", uri=True)
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            conn.execute("SELECT 1 FROM occurrences LIMIT 0")
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise errors.IndexFormatError(f"corrupt symbol database {path}: {e}") from e
    if version > SCHEMA_VERSION:
        raise errors.IndexFormatError(
            f"{path} has symbol schema {version}; this codeintel reads up to {SCHEMA_VERSION}"
        )
    return int(version)


def _connect_writer(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = MEMORY")
    conn.execute("PRAGMA synchronous = OFF")
    return conn
