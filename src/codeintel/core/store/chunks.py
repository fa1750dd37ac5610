"""The chunk table of a generation: ids to source locations, plus lexical (BM25) search.

Every vector in a generation is a *chunk*: a span of lines in one file at the
generation's commit. ``chunks.sqlite`` maps a chunk id to that span (path, lines,
language, symbol, content hash, text) and holds an FTS5 index over the text so
``semantic_search`` can rank lexically (mode ``lexical``) or blend both (``hybrid``).

Choices:

* Two layouts, told apart by ``PRAGMA user_version`` (docs/architecture.md,
  *Lexical search and hybrid ranking*). Schema 2 (written now) indexes text analysed by
  :mod:`codeintel.core.lexical` (identifiers split into their words and kept
  whole, Porter stemming) into a *contentless* FTS5 table, and records the
  :class:`~codeintel.core.lexical.Lexicon` in a ``meta`` table so every later
  writer (an update copies its parent's database) and every query analyse text
  the same way. Schema 1 (stores written before) keeps ``unicode61`` with ``_``
  as a token character over external content kept in sync by triggers; it is
  still read, searched and updated in its own layout.
* Contentless (schema 2) because the indexed terms differ from the stored text:
  each chunk's text is stored once, in ``chunks``, and a delete hands FTS5 the
  re-analysed terms (the lexicon is fixed per database, so they are the same).
* Published databases never change, so readers open them with ``mode=ro`` and
  ``immutable=1`` (no locking, no journal checks) and keep one connection per
  thread: the searcher calls :meth:`ChunkDB.lexical` and :meth:`ChunkDB.get` from
  a thread pool, and sqlite connections must not be shared between threads.
* Writers build into a generation's temp directory, which is thrown away on a
  crash, so the rollback journal lives in memory and sync is off; the store
  fsyncs the finished file when it publishes the generation.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypedDict, Unpack

import msgspec
import numpy as np

from codeintel.core import errors, globs, lexical, malloc
from codeintel.core.store import chunk_sql as statements
from codeintel.core.store import impact as impact_mod
from codeintel.core.store import impact_file
from codeintel.core.store.manifest import CHUNKS_DB, IMPACT

logger = logging.getLogger(__name__)

# chunks.sqlite schemas (PRAGMA user_version); the store's format version covers them.
#   1  FTS5 unicode61 with tokenchars "_", external content synced by triggers.
#   2  text analysed by core/lexical.py into a contentless FTS5 table whose tokenizer
#      follows the Lexicon recorded in the meta table (store format 3).
SCHEMA_VERSION = 2
"""The schema new databases get."""
LEGACY_SCHEMA = 1
READER_VERSIONS = {1: 1, 2: 5}
"""Oldest store format version whose reader reads each chunks.sqlite schema."""

_BATCH = 500  # ids per ``IN (...)`` query; well under sqlite's bound on host parameters
_MAX_QUERY_TERMS = 64  # bounds the cost of one lexical query
_LEGACY_WEIGHTS = (1.0, 4.0, 2.0)  # bm25 column weights of schema 1: text, symbol, path
WEIGHTS = (1.0, 4.0, 2.0)
"""bm25 column weights (text, symbol, path) of schema 2: a symbol or path hit says more than body text."""
_TERM = re.compile(r"\w+")

IMPACT_SUFFIX = IMPACT.removeprefix(CHUNKS_DB.removesuffix(".sqlite"))
"""``chunks.sqlite`` -> ``chunks.impact``: the stored impact index of a database is beside it."""

_DF_CACHE_TERMS = 50_000
"""Document frequencies kept per database (a published one never changes)."""


class LexicalOptions(TypedDict, total=False):
    """The keyword options of :meth:`ChunkDB.lexical_tiers`, which :meth:`ChunkDB.lexical` passes on."""

    path_glob: str | None
    language: str | None
    weights: Sequence[float] | None
    stopwords: bool
    exact_first: bool


class Chunk(msgspec.Struct, frozen=True):
    """A span of lines in one file: the unit that is embedded, ranked and returned."""

    id: int
    path: str
    start_line: int
    """First line, 1-based."""
    end_line: int
    """Last line, 1-based, inclusive."""
    language: str
    symbol: str
    """Enclosing function/class name, or ``""`` for a plain line window."""
    content_hash: str
    text: str


def fts_query(query: str) -> str:
    """Plain words to a safe FTS5 expression for schema 1: each term quoted, any may match (OR).

    Returns ``""`` when the query holds no word characters. Quoting makes FTS5
    operators (``AND``, ``NEAR``, ``*``, ``"``, parentheses) plain text, so user
    input can never be a syntax error; OR lets BM25 rank natural-language
    questions in which not every word occurs.
    """
    terms = list(dict.fromkeys(t.lower() for t in _TERM.findall(query)))[:_MAX_QUERY_TERMS]
    return " OR ".join(f'"{t}"' for t in terms)


class ChunkDB:
    """``chunks.sqlite`` of one generation; writable while building, read-only once published."""

    def __init__(
        self,
        path: Path,
        *,
        readonly: bool,
        _new: bool = False,
        _lexicon: lexical.Lexicon | None = lexical.DEFAULT,
    ) -> None:
        self._path = Path(path)
        self._readonly = readonly
        self._lock = threading.Lock()
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._writer: sqlite3.Connection | None = None
        self._closed = False
        self._optimize = _new  # a fresh build merges its FTS segments once, on close
        self._df: dict[str, int] = {}  # read-only databases: term -> chunks holding it
        self._rows = -1
        self._impact: impact_mod.ImpactIndex | None = None
        if not _new and not self._path.is_file():
            raise errors.IndexFormatError(f"chunk database not found: {self._path}")
        self._schema: int
        self._lexicon: lexical.Lexicon | None
        conn = self._conn()
        if _new:
            with self._lock:
                if _lexicon is None:
                    conn.executescript(statements.SCHEMA_1)
                    conn.execute(f"PRAGMA user_version = {LEGACY_SCHEMA}")
                else:
                    tokenize = "'" + _lexicon.tokenizer().replace("'", "''") + "'"
                    conn.executescript(statements.SCHEMA_2.format(tokenize=tokenize))
                    conn.execute(
                        "INSERT INTO meta VALUES ('lexicon', ?)",
                        (msgspec.json.encode(_lexicon).decode(),),
                    )
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.commit()
            self._schema, self._lexicon = (
                (LEGACY_SCHEMA, None) if _lexicon is None else (SCHEMA_VERSION, _lexicon)
            )
        else:
            self._schema, self._lexicon = self._check_schema(conn)

    @classmethod
    def create(cls, path: Path, lexicon: lexical.Lexicon | None = lexical.DEFAULT) -> ChunkDB:
        """A new, empty, writable database at ``path`` (which must not exist).

        ``lexicon=None`` writes the schema-1 layout of older stores (for tests and the
        lexical ablation benchmark)."""
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"chunk database already exists: {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(path, readonly=False, _new=True, _lexicon=lexicon)

    @classmethod
    def open(cls, path: Path, readonly: bool = True) -> ChunkDB:
        """An existing database; read-only opens are immutable and safe from many threads."""
        return cls(Path(path), readonly=readonly)

    @property
    def schema(self) -> int:
        """``PRAGMA user_version``: 1 (words, ``_`` kept) or 2 (analysed, see :attr:`lexicon`)."""
        return self._schema

    @property
    def lexicon(self) -> lexical.Lexicon | None:
        """How text and queries are analysed (schema 2); ``None`` for schema 1."""
        return self._lexicon

    @property
    def path(self) -> Path:
        return self._path

    # -- connections -------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (readers), or the single shared one (writers)."""
        if self._closed:
            raise errors.IndexFormatError(f"chunk database is closed: {self._path}")
        conn: sqlite3.Connection | None = (
            getattr(self._local, "conn", None) if self._readonly else self._writer
        )
        if conn is not None:
            return conn
        try:
            if self._readonly:
                uri = self._path.resolve().as_uri() + "?mode=ro&immutable=1"
                conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            else:
                conn = sqlite3.connect(self._path, check_same_thread=False)
                conn.execute("PRAGMA journal_mode = MEMORY")
                conn.execute("PRAGMA synchronous = OFF")
        except sqlite3.Error as e:
            raise errors.IndexFormatError(f"cannot open chunk database {self._path}: {e}") from e
        conn.create_function("glob_match", 2, globs.matches, deterministic=True)
        if self._readonly:
            self._local.conn = conn
        else:
            self._writer = conn
        with self._lock:
            self._conns.append(conn)
        return conn

    def _check_schema(self, conn: sqlite3.Connection) -> tuple[int, lexical.Lexicon | None]:
        try:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            conn.execute("SELECT 1 FROM chunks_fts LIMIT 0")
            if version > SCHEMA_VERSION:
                raise errors.IndexFormatError(
                    f"chunk database {self._path} has schema {version}; "
                    f"this codeintel reads up to {SCHEMA_VERSION}"
                )
            if version < SCHEMA_VERSION:
                return LEGACY_SCHEMA, None
            row = conn.execute("SELECT value FROM meta WHERE key = 'lexicon'").fetchone()
        except sqlite3.DatabaseError as e:
            raise errors.IndexFormatError(f"corrupt chunk database {self._path}: {e}") from e
        if row is None:
            raise errors.IndexFormatError(f"chunk database {self._path} records no lexicon")
        try:
            lexicon = msgspec.json.decode(row[0], type=lexical.Lexicon)
        except msgspec.MsgspecError as e:
            raise errors.IndexFormatError(f"bad lexicon in {self._path}: {e}") from e
        if lexicon.analyzer != lexical.ANALYZER:
            raise errors.IndexFormatError(
                f"chunk database {self._path} was analysed by lexical analyzer "
                f"{lexicon.analyzer}; this codeintel implements {lexical.ANALYZER}"
            )
        return version, lexicon

    def _write(self) -> sqlite3.Connection:
        if self._readonly:
            raise errors.IndexFormatError(f"chunk database opened read-only: {self._path}")
        return self._conn()

    # -- writing -------------------------------------------------------------

    def add(self, chunks: Iterable[Chunk]) -> None:
        """Insert chunks; an id already present is a ``ValueError``."""
        batch = list(chunks)
        rows = [
            (c.id, c.path, c.start_line, c.end_line, c.language, c.symbol, c.content_hash, c.text)
            for c in batch
        ]
        terms = (
            []
            if self._lexicon is None
            else [self._terms(c.id, c.text, c.symbol, c.path) for c in batch]
        )
        conn = self._write()
        with self._lock:
            try:
                conn.executemany(
                    statements.INSERT, rows
                )  # schema 1: its trigger fills the FTS index
            except sqlite3.IntegrityError as e:
                raise ValueError(f"duplicate chunk id in {self._path}: {e}") from e
            conn.executemany(statements.FTS_INSERT, terms)

    def delete(self, ids: Iterable[int]) -> None:
        """Remove chunks by id (ids not present are ignored)."""
        wanted = [int(i) for i in ids]
        conn = self._write()
        with self._lock:
            if self._lexicon is not None:
                for batch in _batches(wanted):
                    marks = ",".join("?" * len(batch))
                    sql = f"SELECT id, text, symbol, path FROM chunks WHERE id IN ({marks})"  # noqa: S608
                    old = conn.execute(sql, batch).fetchall()
                    conn.executemany(statements.FTS_DELETE, [self._terms(*row) for row in old])
            conn.executemany("DELETE FROM chunks WHERE id = ?", ((i,) for i in wanted))

    def _terms(self, chunk_id: int, text: str, symbol: str, path: str) -> tuple[int, str, str, str]:
        """One FTS row of schema 2: the analysed text, symbol and path."""
        lex = self._lexicon or lexical.DEFAULT
        return (
            chunk_id,
            lexical.analyze(text, lex),
            lexical.analyze(symbol, lex, exact=lex.exact),
            lexical.analyze(path, lex),
        )

    def commit(self) -> None:
        if not self._readonly:
            with self._lock:
                self._conn().commit()

    def copy_to(self, dest_path: Path) -> None:
        """Copy the whole database to ``dest_path`` (sqlite backup API), e.g. into a new generation."""
        dest_path = Path(dest_path)
        if dest_path.exists():
            raise FileExistsError(f"chunk database already exists: {dest_path}")
        dest_path.parent.mkdir(parents=True, exist_ok=True)
        dest = sqlite3.connect(dest_path)
        try:
            with self._lock:
                self._conn().backup(dest)
        finally:
            dest.close()

    def close(self) -> None:
        """Commit (writers) and close. A database made by :meth:`create` has its FTS index
        optimised (merged into one b-tree) first; updates rely on FTS5's incremental automerge."""
        if self._closed:
            return
        if not self._readonly:
            conn = self._conn()
            with self._lock:
                if self._optimize:
                    conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")
                conn.commit()
        with self._lock:
            self._closed = True
            self._impact = None  # unmaps a stored one once no query holds it
            for conn in self._conns:
                conn.close()
            self._conns.clear()

    def __enter__(self) -> ChunkDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        conn = self._conn()
        if self._readonly:
            return conn.execute(sql, params).fetchall()
        with self._lock:
            return conn.execute(sql, params).fetchall()

    def get(self, ids: Sequence[int]) -> dict[int, Chunk]:
        """The chunks with these ids; ids not present are left out of the result."""
        out: dict[int, Chunk] = {}
        for batch in _batches([int(i) for i in ids]):
            marks = ",".join("?" * len(batch))
            query = f"SELECT {statements.COLUMNS} FROM chunks WHERE id IN ({marks})"  # noqa: S608
            for row in self._read(query, batch):
                out[row[0]] = Chunk(*row)
        return out

    def ids_for_paths(self, paths: Iterable[str]) -> np.ndarray:
        """Sorted int64 ids of every chunk of these files (e.g. files changed since the parent)."""
        found: list[int] = []
        for batch in _batches(list(dict.fromkeys(paths))):
            marks = ",".join("?" * len(batch))
            sql = f"SELECT id FROM chunks WHERE path IN ({marks})"  # noqa: S608
            rows = self._read(sql, batch)
            found.extend(r[0] for r in rows)
        return np.sort(np.asarray(found, dtype=np.int64))

    def all_ids(self) -> np.ndarray:
        """Sorted int64 ids of every chunk."""
        rows = self._read("SELECT id FROM chunks ORDER BY id")
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def count(self) -> int:
        return int(self._read("SELECT count(*) FROM chunks")[0][0])

    def paths(self) -> list[str]:
        """Distinct file paths, sorted."""
        return [r[0] for r in self._read("SELECT DISTINCT path FROM chunks ORDER BY path")]

    @property
    def impact_path(self) -> Path:
        """Where the stored impact index of this database is (``chunks.impact`` beside it)."""
        return self._path.with_suffix(IMPACT_SUFFIX)

    def prepare_lexical(self, *, build: bool = True) -> bool:
        """Make BM25 with the default weights scored in numpy (the same ranking as FTS5's,
        a fraction of the time) from an :class:`~codeintel.core.store.impact.ImpactIndex`:
        the stored one (:attr:`impact_path`, mapped read-only: a header read), else, when
        ``build``, one read from the FTS index now (about 1-3 s and 19 MB for 38K chunks).
        For long-lived readers of a published schema-2 database (the searcher); whether
        it is ready. A refused file or a failed read is logged and leaves FTS5 serving."""
        if self._impact is not None:
            return True
        if not self._readonly or self._lexicon is None:
            return False
        stored = self.impact_path
        try:
            if stored.is_file():
                rows, total = impact_mod.totals(self._conn())
                self._impact = impact_file.load(
                    stored,
                    tokenizer=self._lexicon.tokenizer(),
                    weights=WEIGHTS,
                    rows=rows,
                    total=total,
                )
                return True
            if build:
                logger.info("%s has no stored impact index: reading its FTS index", self._path)
        except errors.IndexFormatError as e:
            logger.warning("%s; reading the FTS index instead", e)
        except sqlite3.Error:
            logger.exception("cannot read the FTS index of %s; BM25 stays on FTS5", self._path)
            return False
        return self._build_impact() if build else False

    def read_impact(self) -> impact_mod.ImpactIndex | None:
        """The impact index of this database read from its FTS index now, not the stored
        one: what :func:`write_impact` stores, and what a reader builds when none is
        stored; ``None`` for a schema-1 database, which has none. Raises
        ``sqlite3.Error`` when the FTS index cannot be read."""
        if self._lexicon is None:
            return None
        return impact_mod.ImpactIndex.build(self._conn(), self._lexicon.tokenizer(), WEIGHTS)

    def _build_impact(self) -> bool:
        try:
            self._impact = self.read_impact()
        except (sqlite3.Error, ValueError, IndexError):
            logger.exception("cannot read the FTS index of %s; BM25 stays on FTS5", self._path)
            return False
        finally:
            malloc.trim()  # the build's transient arrays: ~17 MB of RSS on sympy otherwise
        return self._impact is not None

    def lexical(
        self, query: str, k: int, **options: Unpack[LexicalOptions]
    ) -> list[tuple[int, float]]:
        """Top ``k`` ``(id, score)``, higher is better: the two tiers of
        :meth:`lexical_tiers` (which says what the arguments mean) merged, the chunks
        whose symbol the query names first: a query that names a symbol wants its
        definition before its words."""
        named, rest = self.lexical_tiers(query, k, **options)
        return merge_tiers(named, rest, k)

    def lexical_tiers(
        self,
        query: str,
        k: int,
        *,
        path_glob: str | None = None,
        language: str | None = None,
        weights: Sequence[float] | None = None,
        stopwords: bool = True,
        exact_first: bool = True,
    ) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """The lexical ranking in two tiers: the chunks whose symbol is what the query
        names (best first, by their own BM25; empty when it names nothing), and the BM25
        ranking of its terms over text, symbol and path (which may hold the same chunks).
        :meth:`lexical` merges them; hybrid ranking boosts the first tier.

        ``query`` is plain words or code, analysed as the database's lexicon says
        (schema 1: see :func:`fts_query`, and no first tier); ``path_glob`` follows
        :func:`codeintel.core.globs.matches`; ``language`` must equal the chunk's
        language. The first tier is found by the exact markers of the names
        (:func:`~codeintel.core.lexical.exact_terms`: ``make_keys``, not ``make_key``;
        ``parse args`` as ``parse_args``) and kept when the whole symbol matches
        (:func:`~codeintel.core.lexical.names`): for ``Manifest.parse``,
        ``Manifest.parse`` and ``pkg.Manifest.parse``, not another class's ``parse`` nor
        the class ``Manifest``. ``weights`` (text, symbol, path), ``stopwords`` and
        ``exact_first`` override the tuned defaults (for the ablation benchmark)."""
        if k <= 0:
            return [], []
        if self._lexicon is None:
            legacy = self._bm25(
                fts_query(query), k, weights or _LEGACY_WEIGHTS, path_glob, language
            )
            return [], legacy
        weights = weights or WEIGHTS
        terms = self._informative(lexical.query_terms(query, self._lexicon, stopwords=stopwords))
        exact = lexical.exact_terms(query, self._lexicon) if exact_first else []
        named = self._ranked(exact, k, weights, path_glob, language)
        if named:
            wanted = lexical.named_symbol(query, self._lexicon)
            symbols = self._symbols([i for i, _ in named])
            named = [(i, s) for i, s in named if lexical.names(wanted, symbols.get(i, ""))]
        rest = self._ranked(terms, k, weights, path_glob, language)
        return named, rest

    def _ranked(
        self,
        terms: list[str],
        k: int,
        weights: Sequence[float],
        path_glob: str | None,
        language: str | None,
    ) -> list[tuple[int, float]]:
        """FTS5's BM25 top ``k`` of any of ``terms``: from the impact index when it is
        ready and can (default weights, every term one token), else from FTS5."""
        index = self._impact
        if index is not None and terms and tuple(weights) == WEIGHTS:
            tokens = [index.token(t) for t in terms]
            if all(tokens):
                keep = None
                if path_glob is not None or language is not None:
                    keep = index.mask(path_glob, language, self._filter_rows, globs.matches)
                return index.top([t for t in tokens if t], k, keep)
        return self._bm25(lexical.fts_match(terms), k, weights, path_glob, language)

    def _filter_rows(self) -> list[tuple[int, str, str]]:
        return [
            (int(i), str(p), str(lang))
            for i, p, lang in self._read("SELECT id, path, language FROM chunks")
        ]

    def _symbols(self, ids: Sequence[int]) -> dict[int, str]:
        marks = ",".join("?" * len(ids))
        sql = f"SELECT id, symbol FROM chunks WHERE id IN ({marks})"  # noqa: S608
        return {int(i): str(s) for i, s in self._read(sql, list(ids))}

    def _informative(self, terms: list[str]) -> list[str]:
        """``terms`` without those in half the chunks or more (all of them if that is every one).

        FTS5's bm25 gives such a term an IDF of 1e-6 (``log((N - n + .5) / (n + .5)) <= 0``
        is clamped), so it moves no score that another term sets, yet every chunk holding it
        is scored: in a question ``return`` (52% of sympy's chunks) or a path word found in
        every path. Dropping them leaves the top 20 of 300 sympy queries unchanged at 0.70x the
        time. Only for published (read-only) databases, whose counts never change."""
        if not self._readonly or len(terms) < 2:
            return terms
        if self._rows < 0:
            self._rows = int(self._read("SELECT count(*) FROM chunks")[0][0])
        kept = [t for t in terms if 2 * self._frequency(t) < self._rows]
        return kept or terms

    def _frequency(self, term: str) -> int:
        """Chunks holding ``term`` (analysed; FTS5 stems it as it stems the index), cached."""
        found = self._df.get(term)
        index = self._impact
        if found is None and index is not None and (token := index.token(term)):
            return index.frequency(token)
        if found is None:
            match = lexical.fts_match([term])
            found = int(
                self._read("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (match,))[0][
                    0
                ]
            )
            if len(self._df) >= _DF_CACHE_TERMS:
                self._df.clear()
            self._df[term] = found
        return found

    def _bm25(
        self,
        match: str,
        k: int,
        weights: Sequence[float],
        path_glob: str | None,
        language: str | None,
    ) -> list[tuple[int, float]]:
        if not match:
            return []
        w = ", ".join(str(float(w)) for w in weights)
        try:
            if path_glob is None and language is None:
                rows = self._read(statements.LEXICAL_UNFILTERED.format(w=w), (match, int(k)))
            else:
                rows = self._read(
                    statements.LEXICAL.format(w=w), (match, language, path_glob, int(k))
                )
        except sqlite3.OperationalError as e:
            raise errors.QueryError(f"lexical query failed: {e}", field="query") from e
        return [(int(i), float(s)) for i, s in rows]


def merge_tiers(
    named: Sequence[tuple[int, float]], rest: Sequence[tuple[int, float]], k: int
) -> list[tuple[int, float]]:
    """The lexical ranking: the named tier first, lifted above the rest so that scores
    still fall with rank, then the rest without the chunks already listed; at most ``k``."""
    if not named:
        return list(rest[:k])
    lift = max((score for _, score in rest), default=0.0)
    seen = {i for i, _ in named}
    merged = [(i, s + lift) for i, s in named] + [(i, s) for i, s in rest if i not in seen]
    return merged[:k]


def write_impact(path: Path) -> bool:
    """Store the impact index of the finished (closed) chunk database at ``path`` beside it
    (``chunks.impact``), for every reader to map; False for a schema-1 database, which has
    none. Written by the indexer before the generation is published, so its checksum is
    in the manifest like every file's."""
    with ChunkDB.open(path) as db:
        index = db.read_impact()
        if index is None:
            return False
        impact_file.save(index, db.impact_path, WEIGHTS)
    malloc.trim()
    return True


def reader_version(path: Path) -> int:
    """The oldest store format version whose reader reads the chunk database at ``path``."""
    with ChunkDB.open(path) as db:
        return READER_VERSIONS[db.schema]


def _batches(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]
