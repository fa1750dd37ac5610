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
* Occurrences are stored as *postings*, one per (name, file): the count and the
  file's occurrences of that name in source order. Schema 2 keeps them as flat
  columns in ``symbols.postings`` beside the database
  (:mod:`~codeintel.core.store.symbols_postings`), tied to it by a token in the
  ``meta`` table; schema 1 (store formats 6-7) kept a row per posting in a
  ``WITHOUT ROWID`` table clustered on ``(name, file)``, its occurrences packed in a
  blob (:func:`unpack`). Both are read through the same two calls
  (:class:`SqlitePostings`, :class:`~codeintel.core.store.symbols_postings.Postings`):
  ``total`` and the per-file counts of a name, then a page of references unpacks
  only the files it shows. An update keeps its parent's schema (an old store stays
  readable by the codeintel that wrote it). Definition name nodes are not stored as
  occurrences; the symbols table holds their position.
* Written like ``chunks.sqlite``: the rollback journal in memory and sync off
  in the temp directory (the store fsyncs at publish), opened ``immutable`` by
  readers.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import logging
import operator
import posixpath
import re
import shutil
import sqlite3
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import msgspec
import numpy as np

from codeintel.core import errors
from codeintel.core.store import manifest, symbols_postings
from codeintel.core.store.symbols_postings import Occurrences

logger = logging.getLogger(__name__)

SYMBOLS_DB = manifest.SYMBOLS_DB
SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of new databases; readers refuse a newer one.

Changelog: 1 postings as rows of the ``postings`` table (store formats 6-7); 2 postings
in ``symbols.postings`` (store format 8), the ``postings`` table left empty so that a
reader of 1 refuses the database by its version."""
FLAT_POSTINGS = 2
"""The first schema whose postings are a flat file."""

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
    category INTEGER NOT NULL,
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
CREATE TABLE names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE postings (
    name_id INTEGER NOT NULL,
    file_id INTEGER NOT NULL,
    count INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (name_id, file_id)
) WITHOUT ROWID;
"""
_META = "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
# Built after the rows of a new database (one sorted build each, not a B-tree insert per
# row); present already in a copy.
_INDEXES = """
CREATE INDEX IF NOT EXISTS symbols_name ON symbols(lower(name));
CREATE INDEX IF NOT EXISTS symbols_qualname ON symbols(lower(qualname));
CREATE INDEX IF NOT EXISTS symbols_file ON symbols(file_id, start_line);
CREATE INDEX IF NOT EXISTS symbols_category_name ON symbols(category, lower(name));
CREATE INDEX IF NOT EXISTS symbols_category_qualname ON symbols(category, lower(qualname));
CREATE INDEX IF NOT EXISTS postings_file ON postings(file_id);
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

    Occurrences are kept as parallel numpy columns in source (line, column) order,
    their names as an index into the file's distinct names (a large repository has
    millions of occurrences, held until the generation's database is written).
    """

    __slots__ = (
        "columns",
        "enclosing",
        "imports",
        "kinds",
        "language",
        "lines",
        "name_index",
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
        """The distinct identifiers of the file's occurrences."""
        self.name_index: np.ndarray = np.zeros(0, dtype=np.int32)
        """Per occurrence, its identifier's position in ``names``."""
        self.lines: np.ndarray = np.zeros(0, dtype=np.uint32)
        self.columns: np.ndarray = np.zeros(0, dtype=np.uint32)
        """0-based, in bytes."""
        self.kinds: np.ndarray = np.zeros(0, dtype=np.uint8)
        self.enclosing: np.ndarray = np.zeros(0, dtype=np.int32)
        """Index of the innermost enclosing definition, -1 at top level."""

    def occurrence_names(self) -> list[str]:
        """The identifier of each occurrence, in order."""
        names = self.names
        return [names[i] for i in self.name_index.tolist()]

    def __len__(self) -> int:
        return len(self.name_index)


_ITEM = 4 + 4 + 1 + 8  # line u32, column u32, kind u8, enclosing symbol id i64


def unpack(data: bytes, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(lines, columns, kinds, enclosing symbol ids) of a posting; ids are 0 at module level."""
    if len(data) != count * _ITEM:
        raise errors.IndexFormatError(f"a posting of {count} occurrences has {len(data)} bytes")
    lines = np.frombuffer(data, dtype="<u4", count=count)
    columns = np.frombuffer(data, dtype="<u4", count=count, offset=4 * count)
    kinds = np.frombuffer(data, dtype="u1", count=count, offset=8 * count)
    symbols = np.frombuffer(data, dtype="<i8", count=count, offset=9 * count)
    return lines, columns, kinds, symbols


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
    parts = _module_parts(path)
    if len(parts) > 1 and parts[0] in _SOURCE_ROOTS:
        parts = parts[1:]
    return ".".join(parts)


def module_names(path: str) -> tuple[str, ...]:
    """Every dotted name a query may give the module of a path: :func:`module_name`, and
    the path itself dotted when it starts at a source root (``src.pkg.mod``)."""
    named, dotted = module_name(path), ".".join(_module_parts(path))
    return (named,) if named == dotted else (named, dotted)


def _module_parts(path: str) -> list[str]:
    stem, _ = posixpath.splitext(path)
    parts = [p for p in stem.split("/") if p]
    if parts and parts[-1] in ("__init__", "index", "mod"):
        parts = parts[:-1]
    return parts


class SymbolWriter:
    """Writes a generation's ``symbols.sqlite``: a new one, or a copy of the parent's to edit."""

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        *,
        fresh: bool = False,
        flat: bool = True,
        parent: symbols_postings.Postings | None = None,
    ) -> None:
        self.path = path
        self._conn = conn
        self._fresh = fresh
        """A new database: every name is in ``_names``, none needs looking up."""
        self._flat = flat
        """Postings go to ``symbols.postings`` (schema 2), not the ``postings`` table."""
        self._parent = parent
        """The postings of the database this one copies (schema 2)."""
        self._dropped: list[int] = []
        """File ids whose parent postings are left out."""
        self._names: dict[str, int] = (
            collections.defaultdict(itertools.count(1).__next__) if fresh else {}
        )
        """Name ids; a new database's count up in order of first sight, given in C
        (``defaultdict``) as each name first comes."""
        self._symbol_rows: list[tuple[object, ...]] = []
        """Rows of the symbols table, inserted at close in id order (the ids are hashes:
        inserted as they come, each row went to a random page of the table)."""
        # Occurrences arrive file by file; they are cut into postings and go to the
        # clustered table in key order at close, one sorted insert instead of a random
        # B-tree write per row.
        self._staged: list[_Staged] = []

    @classmethod
    def create(cls, path: Path, schema: int = SCHEMA_VERSION) -> SymbolWriter:
        """A new database; ``schema`` 1 writes the layout of store formats 6-7 (kept for
        the updates of such stores, and to test that their readers still read them)."""
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"symbol database already exists: {path}")
        if schema not in (1, SCHEMA_VERSION):
            raise ValueError(f"no symbol schema {schema}")
        conn = _connect_writer(path)
        conn.executescript(_SCHEMA + (_META if schema >= FLAT_POSTINGS else ""))
        conn.execute(f"PRAGMA user_version = {schema}")
        return cls(path, conn, fresh=True, flat=schema >= FLAT_POSTINGS)

    @classmethod
    def copy(cls, source: Path, path: Path) -> SymbolWriter:
        """A writable copy of a published database (an update edits the copy), in its schema."""
        schema = check_schema(source)
        parent = open_postings(source) if schema >= FLAT_POSTINGS else None
        shutil.copyfile(source, path)
        return cls(path, _connect_writer(path), flat=parent is not None, parent=parent)

    def delete_paths(self, paths: Iterable[str]) -> int:
        """Drop every row of these files; returns how many files were there."""
        conn = self._conn
        dropped = 0
        for path in paths:
            row = conn.execute("SELECT id FROM files WHERE path = ?", (path,)).fetchone()
            if row is None:
                continue
            (file_id,) = row
            if self._flat:
                self._dropped.append(int(file_id))
            else:
                conn.execute("DELETE FROM postings WHERE file_id = ?", (file_id,))
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
        file_category = category(file.path)
        cursor = conn.execute(
            "INSERT INTO files (path, language, category, imports_start, imports_end) "
            "VALUES (?,?,?,?,?)",
            (file.path, file.language, file_category, *file.imports),
        )
        file_id = int(cursor.lastrowid or 0)
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
                    file_category,
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
        self._symbol_rows += rows
        if not len(file):
            return
        if self._fresh:  # ids in order of first sight; the names table is written at close
            table = np.fromiter(map(self._names.__getitem__, file.names), np.int64, len(file.names))
        else:
            table = np.fromiter(map(self._name_id, file.names), np.int64, len(file.names))
        symbols = np.array([*ids, 0], dtype=np.int64)  # index -1 (module level) → 0
        self._staged.append(
            _Staged(
                table[file.name_index],
                file_id,
                file.lines,
                file.columns,
                file.kinds,
                symbols[file.enclosing],
            )
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
        """Write the staged postings, commit and close; the files are complete."""
        conn = self._conn
        rows = sorted(self._symbol_rows, key=operator.itemgetter(0))
        self._symbol_rows = []
        before = conn.total_changes
        conn.executemany("INSERT OR IGNORE INTO symbols VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        if conn.total_changes - before != len(rows):  # a 63-bit hash collision: vanishingly rare
            logger.warning(
                "%s: %d symbol id collisions", self.path, len(rows) - (conn.total_changes - before)
            )
        if self._fresh:
            conn.executemany("INSERT INTO names VALUES (?,?)", _numbered(self._names))
        if self._flat:
            token = uuid.uuid4().hex
            parts = [
                Occurrences(
                    part.name_ids,
                    np.full(len(part.name_ids), part.file_id, dtype=np.int64),
                    part.lines,
                    part.columns,
                    part.kinds,
                    part.enclosing,
                )
                for part in self._staged
            ]
            self._staged = []
            (names,) = conn.execute("SELECT coalesce(max(id), 0) FROM names").fetchone()
            added, target = Occurrences.concatenate(parts), postings_path(self.path)
            if self._parent is None:
                symbols_postings.save(target, added, int(names), token)
            else:
                symbols_postings.save_update(
                    target, self._parent, self._dropped, added, int(names), token
                )
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('postings', ?)", (token,))
        else:
            conn.executemany("INSERT INTO postings VALUES (?,?,?,?)", _postings(self._staged))
            self._staged = []
        conn.executescript(_INDEXES)
        conn.commit()
        conn.close()


def _numbered(names: dict[str, int]) -> Iterable[tuple[int, str]]:
    return ((name_id, name) for name, name_id in names.items())


class _Staged(NamedTuple):
    """The occurrences of one added file, as columns in source order."""

    name_ids: np.ndarray
    file_id: int
    lines: np.ndarray
    columns: np.ndarray
    kinds: np.ndarray
    enclosing: np.ndarray
    """Symbol ids, 0 at module level."""


def _postings(staged: list[_Staged]) -> list[tuple[int, int, int, bytes]]:
    """The posting rows of the staged files in ``(name, file)`` order.

    Every occurrence of the batch is sorted at once (a stable sort by name then file:
    each posting keeps its source order) and each posting is cut from four sorted byte
    columns, in the layout :func:`unpack` reads.
    """
    if not staged:
        return []
    names = np.concatenate([part.name_ids for part in staged])
    files = np.repeat(
        np.array([part.file_id for part in staged], dtype=np.int64),
        [len(part.name_ids) for part in staged],
    )
    span = int(files.max()) + 1
    if int(names.max()) < (1 << 62) // span:
        order = np.argsort(names * span + files, kind="stable")
    else:  # keys beyond 63 bits
        order = np.lexsort((files, names))
    names, files = names[order], files[order]
    firsts = np.flatnonzero((np.diff(names, prepend=-1) != 0) | (np.diff(files, prepend=-1) != 0))
    bounds = [*firsts.tolist(), len(order)]
    lines = np.concatenate([p.lines for p in staged])[order].astype("<u4").tobytes()
    columns = np.concatenate([p.columns for p in staged])[order].astype("<u4").tobytes()
    kinds = np.concatenate([p.kinds for p in staged])[order].astype("u1").tobytes()
    enclosing = np.concatenate([p.enclosing for p in staged])[order].astype("<i8").tobytes()
    # A numpy scatter into one buffer cut into postings measured slower than this join.
    data = [
        b"".join(
            (lines[4 * a : 4 * b], columns[4 * a : 4 * b], kinds[a:b], enclosing[8 * a : 8 * b])
        )
        for a, b in itertools.pairwise(bounds)
    ]
    counts = np.diff(bounds).tolist()
    return list(zip(names[firsts].tolist(), files[firsts].tolist(), counts, data, strict=True))


def write(path: Path, files: Iterable[FileSymbols], schema: int = SCHEMA_VERSION) -> None:
    """A new ``symbols.sqlite`` at ``path`` holding ``files``, and its postings file
    (:func:`postings_path`) in schema 2."""
    writer = SymbolWriter.create(path, schema)
    try:
        writer.add(files)
    finally:
        writer.close()


def update(source: Path, path: Path, removed: Iterable[str], added: Iterable[FileSymbols]) -> None:
    """``path`` becomes ``source`` without the rows of ``removed`` paths, plus ``added``,
    in ``source``'s schema (with its postings file in schema 2)."""
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
            conn.execute("SELECT 1 FROM postings LIMIT 0")
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise errors.IndexFormatError(f"corrupt symbol database {path}: {e}") from e
    if version > SCHEMA_VERSION:
        raise errors.IndexFormatError(
            f"{path} has symbol schema {version}; this codeintel reads up to {SCHEMA_VERSION}"
        )
    return int(version)


def postings_path(path: Path) -> Path:
    """The postings file of a schema-2 database: ``symbols.sqlite`` → ``symbols.postings``."""
    return Path(path).with_suffix(".postings")


def open_postings(path: Path) -> symbols_postings.Postings:
    """The postings of a schema-2 database at ``path``, checked to be its own."""
    try:
        conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro&immutable=1", uri=True)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'postings'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise errors.IndexFormatError(f"corrupt symbol database {path}: {e}") from e
    if row is None:
        raise errors.IndexFormatError(f"{path} records no postings file")
    return symbols_postings.Postings.load(postings_path(path), str(row[0]))


class SqlitePostings:
    """The postings of a schema-1 database: rows of its ``postings`` table."""

    def file_counts(
        self, conn: sqlite3.Connection, name_id: int
    ) -> list[tuple[int, str, int, int]]:
        """(file id, path, category, count) of every file where the name occurs."""
        return conn.execute(
            "SELECT c.file_id, f.path, f.category, c.count FROM postings AS c "
            "JOIN files AS f ON f.id = c.file_id WHERE c.name_id = ?",
            (name_id,),
        ).fetchall()

    def occurrences(
        self, conn: sqlite3.Connection, name_id: int, file_id: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(lines, columns, kinds, enclosing symbol ids) of a name in one file."""
        row = conn.execute(
            "SELECT data, count FROM postings WHERE name_id = ? AND file_id = ?",
            (name_id, file_id),
        ).fetchone()
        return unpack(row[0], row[1]) if row is not None else unpack(b"", 0)


def _connect_writer(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = MEMORY")
    conn.execute("PRAGMA synchronous = OFF")
    return conn
