"""The SQL of ``chunks.sqlite``: its tables in schemas 1 and 2, and the statements
:class:`~codeintel.core.store.chunks.ChunkDB` runs (the layouts are described there and in
docs/architecture.md, *Lexical search and hybrid ranking*).

Only constants and ``?`` placeholders are formatted into these statements (hence the
S608 noqa's).
"""

TABLE = """
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    language TEXT NOT NULL,
    symbol TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX chunks_path ON chunks(path);
"""

SCHEMA_1 = (
    TABLE  # noqa: S608 - constants
    + """
CREATE VIRTUAL TABLE chunks_fts USING fts5(
    text, symbol, path,
    content='chunks', content_rowid='id',
    tokenize="unicode61 tokenchars '_'"
);
CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text, symbol, path)
    VALUES (new.id, new.text, new.symbol, new.path);
END;
CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text, symbol, path)
    VALUES ('delete', old.id, old.text, old.symbol, old.path);
END;
"""
)

SCHEMA_2 = (
    TABLE
    + """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE VIRTUAL TABLE chunks_fts USING fts5(text, symbol, path, content='', tokenize={tokenize});
"""
)

COLUMNS = "id, path, start_line, end_line, language, symbol, content_hash, text"
INSERT = f"INSERT INTO chunks ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?)"  # noqa: S608 - constants
FTS_INSERT = "INSERT INTO chunks_fts(rowid, text, symbol, path) VALUES (?,?,?,?)"
FTS_DELETE = (
    "INSERT INTO chunks_fts(chunks_fts, rowid, text, symbol, path) VALUES ('delete',?,?,?,?)"
)
# Only constants and "?" placeholders are formatted into SQL below (hence the S608 noqa's).
LEXICAL = (
    "SELECT c.id, -bm25(chunks_fts, {w}) AS score "
    "FROM chunks_fts JOIN chunks AS c ON c.id = chunks_fts.rowid "
    "WHERE chunks_fts MATCH ?1 "
    "AND (?2 IS NULL OR c.language = ?2) "
    "AND (?3 IS NULL OR glob_match(c.path, ?3)) "
    "ORDER BY score DESC, c.id LIMIT ?4"
)
# Without filters the join only slowed the query down: one chunks lookup per matching row
# (0.66x the time on the 38K-chunk sympy corpus, same rows).
LEXICAL_UNFILTERED = (
    "SELECT rowid, -bm25(chunks_fts, {w}) AS score FROM chunks_fts "
    "WHERE chunks_fts MATCH ?1 ORDER BY score DESC, rowid LIMIT ?2"
)
