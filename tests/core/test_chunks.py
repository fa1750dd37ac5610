"""chunks.sqlite: CRUD by id and path, BM25 lexical search, glob semantics, threaded readers.

Behaviour common to both layouts runs against each (schema 2, written now, and
schema 1 of older stores); what differs is tested per layout."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from codeintel.core import errors, lexical
from codeintel.core.globs import matches as glob_match
from codeintel.core.store import chunks as chunks_mod
from codeintel.core.store.chunks import Chunk, ChunkDB, fts_query


def make_chunk(
    id: int, path: str, text: str, *, symbol: str = "", language: str = "python"
) -> Chunk:
    lines = text.count("\n") + 1
    return Chunk(
        id=id,
        path=path,
        start_line=1,
        end_line=lines,
        language=language,
        symbol=symbol,
        content_hash=f"h{id}",
        text=text,
    )


CORPUS = [
    make_chunk(
        1,
        "src/app/cli.py",
        "def parse_args(argv):\n    return parser.parse(argv)",
        symbol="parse_args",
    ),
    make_chunk(
        2,
        "src/app/server.py",
        "def serve(host, port):\n    uvicorn.run(app, host=host)",
        symbol="serve",
    ),
    make_chunk(3, "src/app/util/strings.py", "def slugify(text):\n    return text.lower()"),
    make_chunk(
        4, "web/main.ts", "function parseArgs(argv) { return argv.slice(2) }", language="typescript"
    ),
    make_chunk(
        5, "README.md", "Run the server with serve; parse_args reads flags.", language="markdown"
    ),
    make_chunk(6, "src/app/db.py", "retry retry retry connection pool retry", symbol="connect"),
    make_chunk(7, "src/app/net.py", "open a connection and retry once", symbol="dial"),
]


LAYOUTS = {"schema2": lexical.DEFAULT, "schema1": None}


@pytest.fixture(params=list(LAYOUTS))
def layout(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_path(tmp_path: Path, layout: str) -> Path:
    path = tmp_path / "chunks.sqlite"
    db = ChunkDB.create(path, LAYOUTS[layout])
    db.add(CORPUS)
    db.close()
    return path


@pytest.fixture
def db(db_path: Path) -> Iterator[ChunkDB]:
    reader = ChunkDB.open(db_path)
    yield reader
    reader.close()


class TestCreateAndOpen:
    def test_round_trip_through_a_real_file(self, db: ChunkDB) -> None:
        assert db.count() == len(CORPUS)
        assert db.get([1])[1] == CORPUS[0]

    def test_missing_file_is_an_index_format_error(self, tmp_path: Path) -> None:
        with pytest.raises(errors.IndexFormatError, match="not found"):
            ChunkDB.open(tmp_path / "nope.sqlite")

    def test_not_a_database_is_an_index_format_error(self, tmp_path: Path) -> None:
        bad = tmp_path / "chunks.sqlite"
        bad.write_bytes(b"garbage" * 1000)
        with pytest.raises(errors.IndexFormatError, match=r"chunks\.sqlite"):
            ChunkDB.open(bad)

    def test_create_refuses_an_existing_file(self, db_path: Path) -> None:
        with pytest.raises(FileExistsError):
            ChunkDB.create(db_path)

    def test_readonly_refuses_writes(self, db: ChunkDB) -> None:
        with pytest.raises(errors.IndexFormatError, match="read-only"):
            db.delete([1])

    def test_copy_to_starts_an_update_from_the_parent(
        self, db: ChunkDB, tmp_path: Path, layout: str
    ) -> None:
        dest = tmp_path / "next" / "chunks.sqlite"
        db.copy_to(dest)
        with ChunkDB.open(dest, readonly=False) as child:
            assert (child.schema, child.lexicon) == (db.schema, db.lexicon)  # the layout is kept
            child.delete([1])
            child.add([make_chunk(8, "src/app/cli.py", "def parse_args(): pass")])
            child.commit()
        with ChunkDB.open(dest) as child:
            assert 1 not in child.get([1])
            assert 8 in child.get([8])
            found = {i for i, _ in child.lexical("parse_args", 10)}
            # schema 2 also finds the parseArgs of chunk 4; schema 1 keeps parse_args whole
            assert found == ({5, 8} if layout == "schema1" else {4, 5, 8})
            assert child.lexical("parseargs argv", 10)  # added rows are in the FTS index
        assert 1 in db.get([1])  # the parent is untouched

    def test_duplicate_id_is_a_value_error(self, tmp_path: Path) -> None:
        with (
            ChunkDB.create(tmp_path / "c.sqlite") as db,
            pytest.raises(ValueError, match="duplicate"),
        ):
            db.add([CORPUS[0], CORPUS[0]])


class TestLookups:
    def test_get_returns_present_ids_only(self, db: ChunkDB) -> None:
        got = db.get([3, 99, 1])
        assert sorted(got) == [1, 3]
        assert got[3].path == "src/app/util/strings.py"

    def test_get_many_ids_crosses_batches(self, tmp_path: Path) -> None:
        with ChunkDB.create(tmp_path / "c.sqlite") as db:
            db.add(make_chunk(i, f"f{i % 7}.py", f"word{i}") for i in range(1200))
            assert len(db.get(list(range(0, 1200, 1)))) == 1200
            assert db.ids_for_paths(["f0.py"]).tolist() == list(range(0, 1200, 7))

    def test_ids_for_paths_sorted_int64(self, db: ChunkDB) -> None:
        ids = db.ids_for_paths(["src/app/db.py", "README.md", "missing.py"])
        assert ids.dtype == np.int64
        assert ids.tolist() == [5, 6]

    def test_all_ids_count_and_paths(self, db: ChunkDB) -> None:
        assert db.all_ids().tolist() == [1, 2, 3, 4, 5, 6, 7]
        assert db.count() == 7
        assert db.paths() == sorted({c.path for c in CORPUS})

    def test_delete_removes_from_table_and_fts(self, db_path: Path) -> None:
        with ChunkDB.open(db_path, readonly=False) as db:
            db.delete([1, 5, 1000])
            db.commit()
            assert db.count() == 5
            assert not {i for i, _ in db.lexical("parse_args", 10)} & {1, 5}
            assert db.lexical("flags readme", 10) == []  # only chunk 5 had them


class TestLexical:
    def test_bm25_ranks_higher_term_frequency_first(self, db: ChunkDB) -> None:
        hits = db.lexical("retry connection", 10)
        assert [i for i, _ in hits] == [6, 7]
        assert hits[0][1] > hits[1][1] > 0

    def test_identifiers(self, db: ChunkDB, layout: str) -> None:
        if layout == "schema1":  # identifiers stay whole
            assert {i for i, _ in db.lexical("parse_args", 10)} == {1, 5}
            assert {i for i, _ in db.lexical("parseargs", 10)} == {4}  # case folded
        else:  # identifiers are their words too; either spelling finds the other
            assert {i for i, _ in db.lexical("parse_args", 10)} == {1, 4, 5}
            assert {i for i, _ in db.lexical("parseArgs", 10)} == {1, 4, 5}

    def test_symbol_and_path_are_searched(self, db: ChunkDB) -> None:
        assert [i for i, _ in db.lexical("dial", 10)] == [7]
        assert [i for i, _ in db.lexical("strings", 10)] == [3]

    def test_any_term_may_match(self, db: ChunkDB) -> None:
        ids = {i for i, _ in db.lexical("where is slugify or uvicorn", 10)}
        assert ids == {2, 3}

    def test_k_limits_results(self, db: ChunkDB) -> None:
        assert len(db.lexical("retry", 1)) == 1
        assert db.lexical("retry", 0) == []

    def test_language_filter(self, db: ChunkDB) -> None:
        assert [i for i, _ in db.lexical("parse_args serve", 10, language="markdown")] == [5]

    def test_path_glob_filter(self, db: ChunkDB) -> None:
        ids = {i for i, _ in db.lexical("def", 10, path_glob="src/**/*.py")}
        assert ids == {1, 2, 3}
        ids = {i for i, _ in db.lexical("def", 10, path_glob="src/app/*.py")}
        assert ids == {1, 2}
        assert {i for i, _ in db.lexical("argv", 10, path_glob="*.ts")} == {4}

    @pytest.mark.parametrize(
        "query", ['"', "AND OR", "*", "foo(", "NEAR(a b)", "col:term", "a - b", "'", "^x", "{}"]
    )
    def test_fts_syntax_in_user_input_never_raises(self, db: ChunkDB, query: str) -> None:
        assert isinstance(db.lexical(query, 5), list)

    @pytest.mark.parametrize("query", ["", "   ", "!!! ??? ()", '"*"'])
    def test_empty_or_punctuation_query_returns_nothing(self, db: ChunkDB, query: str) -> None:
        assert db.lexical(query, 5) == []

    def test_fts_query_quotes_every_term(self) -> None:
        assert fts_query('foo( AND "bar') == '"foo" OR "and" OR "bar"'


CODE = [
    make_chunk(
        1,
        "src/net/http_server.py",
        "class HTTPServer:\n    def serve_forever(self):\n        self.handle_requests()",
        symbol="HTTPServer.serve_forever",
    ),
    make_chunk(
        2,
        "src/net/retry.py",
        "def retry(fn, attempts):\n    for attempt in range(attempts):\n        fn()",
        symbol="retry",
    ),
    make_chunk(3, "src/util/strings.py", "def slugify(text):\n    return text.lower()"),
    make_chunk(
        4,
        "src/i18n/maße.py",
        "def größe_berechnen(maß):\n    return maß * 2  # café crème",
        symbol="größe_berechnen",
    ),
    make_chunk(5, "docs/guide.md", "The server handles requests", language="markdown"),
    make_chunk(6, "src/cn/数据.py", "def 数据_处理(x): return x", symbol="数据_处理"),
]


@pytest.fixture
def code_db(tmp_path: Path) -> Iterator[ChunkDB]:
    with ChunkDB.create(tmp_path / "c.sqlite") as db:
        db.add(CODE)
    reader = ChunkDB.open(tmp_path / "c.sqlite")
    yield reader
    reader.close()


class TestCodeAwareLexical:
    """Schema 2: questions in words meet identifiers; symbol and path outrank body text."""

    def test_words_find_identifiers(self, code_db: ChunkDB) -> None:
        assert [i for i, _ in code_db.lexical("serve forever", 10)] == [1]
        assert code_db.lexical("http server", 10)[0][0] == 1

    def test_stemming_meets_other_forms(self, code_db: ChunkDB) -> None:
        found = [i for i, _ in code_db.lexical("retried attempt", 10)]
        assert found[0] == 2
        assert 1 in {i for i, _ in code_db.lexical("handling a request", 10)}

    def test_symbol_and_path_outrank_body_text(self, code_db: ChunkDB) -> None:
        # "server" is body text of the guide, the path and symbol of chunk 1
        assert [i for i, _ in code_db.lexical("server", 10)] == [1, 5]
        assert [i for i, _ in code_db.lexical("strings", 10)] == [3]

    def test_non_ascii_identifiers_and_accents(self, code_db: ChunkDB) -> None:
        assert [i for i, _ in code_db.lexical("Größe", 10)] == [4]
        assert [i for i, _ in code_db.lexical("grosse", 10)] == []  # ß is a letter, not ss
        assert [i for i, _ in code_db.lexical("cafe creme", 10)] == [4]  # diacritics folded
        assert [i for i, _ in code_db.lexical("berechnen", 10)] == [4]
        assert [i for i, _ in code_db.lexical("处理", 10)] == [6]
        assert [i for i, _ in code_db.lexical("maße", 10)] == [4]  # the path

    def test_a_named_symbol_comes_before_stemmed_look_alikes(self, tmp_path: Path) -> None:
        with ChunkDB.create(tmp_path / "c.sqlite") as db:
            db.add(
                [
                    make_chunk(1, "a.py", "def make_key(k):\n    return keys", symbol="make_key"),
                    make_chunk(2, "b.py", "def make_keys(ks): ...", symbol="Store.make_keys"),
                    make_chunk(3, "c.py", "labels = label(labels, labels)", symbol="labels"),
                    make_chunk(4, "d.py", "def label(x): ...", symbol="label"),
                    make_chunk(5, "e.py", "def _read_version(): ...", symbol="_read_version"),
                    make_chunk(6, "f.py", "def read_version(): ...", symbol="read_version"),
                ]
            )
        with ChunkDB.open(tmp_path / "c.sqlite") as db:
            assert db.lexical("make_keys", 10)[0][0] == 2
            assert db.lexical("make_key", 10)[0][0] == 1
            assert db.lexical("label", 10)[0][0] == 4  # one word names a symbol too
            assert db.lexical("_read_version", 10)[0][0] == 5
            assert db.lexical("read_version", 10)[0][0] == 6
            assert db.lexical("make keys", 10)[0][0] == 2  # a name in words
            scores = [s for _, s in db.lexical("make_keys", 10)]
            assert scores == sorted(scores, reverse=True)  # tiers keep scores falling
            # without the exact tier the stemmer conflates them
            assert {i for i, _ in db.lexical("make_keys", 2, exact_first=False)} == {1, 2}

    def test_weights_and_stop_words_can_be_overridden(self, code_db: ChunkDB) -> None:
        # body text weighted above the symbol and path: the guide wins
        assert code_db.lexical("server", 10, weights=(10.0, 1.0, 1.0))[0][0] == 5
        assert code_db.lexical("the", 10) == code_db.lexical("the", 10, stopwords=False)

    def test_delete_removes_the_analysed_terms(self, tmp_path: Path) -> None:
        path = tmp_path / "c.sqlite"
        with ChunkDB.create(path) as db:
            db.add(CODE)
        with ChunkDB.open(path, readonly=False) as db:
            db.delete([1, 4])
            db.commit()
            assert db.lexical("serve forever", 10) == []
            assert db.lexical("größe", 10) == []
            # FTS5's own check: the contentless index holds exactly the live rows' terms
            conn = db._conn()
            conn.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('integrity-check', 0)")
            assert conn.execute("SELECT count(*) FROM chunks_fts").fetchone() == (4,)


class TestLayouts:
    def test_the_lexicon_is_recorded_and_read_back(self, tmp_path: Path) -> None:
        plain = lexical.Lexicon(split=False, stem=False, exact=False)
        with ChunkDB.create(tmp_path / "c.sqlite", plain) as db:
            db.add(CODE)
        with ChunkDB.open(tmp_path / "c.sqlite") as db:
            assert (db.schema, db.lexicon) == (2, plain)
            assert db.lexical("serve forever", 10) == []  # not split: only serve_forever
            assert [i for i, _ in db.lexical("serve_forever", 10)] == [1]

    def test_schema_1_is_what_older_stores_hold(self, tmp_path: Path) -> None:
        with ChunkDB.create(tmp_path / "c.sqlite", None) as db:
            db.add(CODE)
        with ChunkDB.open(tmp_path / "c.sqlite") as db:
            assert (db.schema, db.lexicon) == (1, None)
            assert chunks_mod.reader_version(tmp_path / "c.sqlite") == 1
        assert chunks_mod.reader_version(tmp_path / "c.sqlite") == 1

    def test_schema_2_needs_a_format_5_reader(self, tmp_path: Path) -> None:
        ChunkDB.create(tmp_path / "c.sqlite").close()
        assert chunks_mod.reader_version(tmp_path / "c.sqlite") == 5

    def test_a_newer_schema_is_refused(self, tmp_path: Path) -> None:
        ChunkDB.create(tmp_path / "c.sqlite").close()
        conn = sqlite3.connect(tmp_path / "c.sqlite")
        conn.execute("PRAGMA user_version = 9")
        conn.close()
        with pytest.raises(errors.IndexFormatError, match="schema 9; this codeintel reads up to 2"):
            ChunkDB.open(tmp_path / "c.sqlite")

    def test_a_missing_or_bad_lexicon_is_refused(self, tmp_path: Path) -> None:
        ChunkDB.create(tmp_path / "c.sqlite").close()
        conn = sqlite3.connect(tmp_path / "c.sqlite")
        conn.execute("UPDATE meta SET value = '[1]'")
        conn.commit()
        with pytest.raises(errors.IndexFormatError, match="bad lexicon"):
            ChunkDB.open(tmp_path / "c.sqlite")
        conn.execute("UPDATE meta SET value = '{\"analyzer\": 99}'")
        conn.commit()
        with pytest.raises(errors.IndexFormatError, match="lexical analyzer 99; this codeintel"):
            ChunkDB.open(tmp_path / "c.sqlite")
        conn.execute("DELETE FROM meta")
        conn.commit()
        conn.close()
        with pytest.raises(errors.IndexFormatError, match="records no lexicon"):
            ChunkDB.open(tmp_path / "c.sqlite")


class TestGlobMatch:
    @pytest.mark.parametrize(
        ("path", "pattern", "expected"),
        [
            ("a/b/c.py", "*.py", True),  # no "/": basename in any directory
            ("c.py", "*.py", True),
            ("a/b/c.pyc", "*.py", False),
            ("src/a.py", "src/*.py", True),
            ("src/x/a.py", "src/*.py", False),  # "*" does not cross "/"
            ("src/a.py", "src/**/*.py", True),  # "**/" matches zero directories
            ("src/x/y/a.py", "src/**/*.py", True),
            ("lib/src/a.py", "src/**/*.py", False),  # anchored at the root
            ("lib/src/a.py", "**/src/*.py", True),
            ("vendor/a.go", "**/vendor/**", True),
            ("x/vendor/y/z.go", "**/vendor/**", True),
            ("x/vendors/z.go", "**/vendor/**", False),
            ("docs/a/b.md", "docs/", True),  # trailing "/" is everything below
            ("docs/a/b.md", "/docs/**", True),
            ("src/a1.py", "src/a?.py", True),
            ("src/a.py", "src/[ab].py", True),
            ("src/c.py", "src/[!ab].py", True),
            ("src/a.py", "src/[!ab].py", False),
            ("a+b/c(1).py", "a+b/c(1).py", True),  # regex characters are literal
        ],
    )
    def test_semantics(self, path: str, pattern: str, expected: bool) -> None:
        assert glob_match(path, pattern) is expected


class TestThreadedReaders:
    def test_many_threads_share_one_reader(self, db: ChunkDB) -> None:
        barrier = threading.Barrier(8)

        def work(n: int) -> tuple[list[int], int]:
            barrier.wait()
            ids = [i for i, _ in db.lexical("retry", 10)]
            return ids, len(db.get([1, 2, 3]))

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(work, range(8)))
        assert results == [([6, 7], 3)] * 8

    def test_closed_db_refuses_queries(self, db_path: Path) -> None:
        reader = ChunkDB.open(db_path)
        reader.close()
        with pytest.raises(errors.IndexFormatError, match="closed"):
            reader.count()
