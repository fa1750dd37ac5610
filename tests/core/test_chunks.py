"""chunks.sqlite: CRUD by id and path, BM25 lexical search, glob semantics, threaded readers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from codeintel.core import errors
from codeintel.core.globs import matches as glob_match
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


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "chunks.sqlite"
    db = ChunkDB.create(path)
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

    def test_copy_to_starts_an_update_from_the_parent(self, db: ChunkDB, tmp_path: Path) -> None:
        dest = tmp_path / "next" / "chunks.sqlite"
        db.copy_to(dest)
        with ChunkDB.open(dest, readonly=False) as child:
            child.delete([1])
            child.add([make_chunk(8, "src/app/cli.py", "def parse_args(): pass")])
            child.commit()
        with ChunkDB.open(dest) as child:
            assert 1 not in child.get([1])
            assert 8 in child.get([8])
            assert {i for i, _ in child.lexical("parse_args", 10)} == {5, 8}
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
            assert db.lexical("parse_args", 10) == []


class TestLexical:
    def test_bm25_ranks_higher_term_frequency_first(self, db: ChunkDB) -> None:
        hits = db.lexical("retry connection", 10)
        assert [i for i, _ in hits] == [6, 7]
        assert hits[0][1] > hits[1][1] > 0

    def test_identifiers_stay_whole(self, db: ChunkDB) -> None:
        assert {i for i, _ in db.lexical("parse_args", 10)} == {1, 5}
        assert {i for i, _ in db.lexical("parseargs", 10)} == {4}  # case folded

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
