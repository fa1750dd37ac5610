"""The impact index stored beside chunks.sqlite (core/store/impact_file.py).

A stored index is mapped, not rebuilt, and ranks exactly as FTS5 and as an index read
into memory; a file that is short, garbled, newer or written for another database is
refused with a log line, and the database answers all the same (from an index read into
memory, or from FTS5)."""

from __future__ import annotations

import json
import logging
import mmap
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from codeintel.core import errors
from codeintel.core.store import array_file, impact_file
from codeintel.core.store import impact as impact_mod
from codeintel.core.store.chunks import WEIGHTS, ChunkDB, write_impact
from lexical_ranking import FILTERS, QUERIES, assert_same_ranking, source_chunks, write_source_db


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database and the impact index the indexer writes beside it."""
    path = write_source_db(tmp_path_factory.mktemp("stored") / "chunks.sqlite")
    assert write_impact(path)
    assert (path.parent / "chunks.impact").is_file()
    return path


@pytest.fixture
def copy(stored: Path, tmp_path: Path) -> Path:
    for name in ("chunks.sqlite", "chunks.impact"):
        shutil.copyfile(stored.parent / name, tmp_path / name)
    return tmp_path / "chunks.sqlite"


def _is_mapped(db: ChunkDB) -> bool:
    index = db._impact
    assert index is not None
    return all(not a.flags.writeable for a in index.arrays().values())


def test_a_stored_index_is_mapped_and_ranks_as_fts5_and_as_one_read_now(stored: Path) -> None:
    with (
        ChunkDB.open(stored) as plain,
        ChunkDB.open(stored) as mapped,
        ChunkDB.open(stored) as built,
    ):
        assert mapped.prepare_lexical() and _is_mapped(mapped)
        built._impact = built.read_impact()  # read from the FTS index now
        assert not _is_mapped(built)
        compared = 0
        for query in QUERIES:
            for filters in FILTERS:
                for k in (1, 10, 200):
                    assert_same_ranking(plain, mapped, query, k, **filters)
                    assert mapped.lexical_tiers(query, k, **filters) == built.lexical_tiers(  # type: ignore[arg-type]
                        query, k, **filters
                    )
                    compared += 1
        assert compared == len(QUERIES) * len(FILTERS) * 3
        assert mapped._impact is not None and mapped._impact.frequency("self") > 0
        for name, array in mapped._impact.arrays().items():
            assert np.array_equal(array, built._impact.arrays()[name]), name  # type: ignore[union-attr]


def test_only_a_stored_index_when_asked_not_to_build(stored: Path, tmp_path: Path) -> None:
    with ChunkDB.open(stored) as db:
        assert db.prepare_lexical(build=False) and _is_mapped(db)
    bare = tmp_path / "chunks.sqlite"
    shutil.copyfile(stored, bare)
    with ChunkDB.open(bare) as db:  # a generation written before format 7
        assert not db.prepare_lexical(build=False) and db._impact is None
        assert db.prepare_lexical() and not _is_mapped(db)


def _refused(path: Path, caplog: pytest.LogCaptureFixture, reason: str) -> None:
    """``path``'s stored index is refused for ``reason``, and the database ranks as FTS5."""
    with ChunkDB.open(path) as plain, ChunkDB.open(path) as db:
        with caplog.at_level(logging.WARNING):
            assert not db.prepare_lexical(build=False)
        assert reason in caplog.text and "reading the FTS index instead" in caplog.text
        assert db._impact is None
        assert_same_ranking(plain, db, "return the value", 10)  # FTS5 answers
        assert db.prepare_lexical() and not _is_mapped(db)  # read into memory instead
        for query in QUERIES:
            assert_same_ranking(plain, db, query, 20)


def test_a_short_file_is_refused(copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    impact = copy.with_suffix(".impact")
    data = impact.read_bytes()
    impact.write_bytes(data[: len(data) - 100])
    _refused(copy, caplog, "its header says")
    impact.write_bytes(data[:10])
    _refused(copy, caplog, "too short")
    impact.write_bytes(b"")
    _refused(copy, caplog, "too short")


def test_a_garbled_or_newer_file_is_refused(copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    impact = copy.with_suffix(".impact")
    data = bytearray(impact.read_bytes())
    impact.write_bytes(b"NOTANIDX" + data[8:])
    _refused(copy, caplog, "is not an impact index")
    newer = bytearray(data)
    struct.pack_into("<I", newer, 8, impact_file.VERSION + 1)
    impact.write_bytes(bytes(newer))
    _refused(copy, caplog, f"impact index version {impact_file.VERSION + 1}")
    garbled = bytearray(data)
    garbled[20:30] = b"\xff" * 10  # inside the JSON header
    impact.write_bytes(bytes(garbled))
    _refused(copy, caplog, "corrupt header")


def test_a_header_that_lies_about_its_arrays_is_refused(copy: Path) -> None:
    impact = copy.with_suffix(".impact")
    data = impact.read_bytes()
    _, _, length = struct.unpack_from("<8sII", data)
    header = json.loads(data[16 : 16 + length])
    for array in header["arrays"]:
        if array[0] == "positions":
            array[3] -= 1  # one posting fewer than the term offsets say
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= length
    impact.write_bytes(data[:12] + struct.pack("<I", len(text)) + text + data[16 + len(text) :])
    with ChunkDB.open(copy) as db, pytest.raises(errors.IndexFormatError, match="disagree"):
        _load(db)


def _load(db: ChunkDB) -> None:
    rows, total = impact_mod.totals(db._conn())
    assert db.lexicon is not None
    impact_file.load(
        db.impact_path, tokenizer=db.lexicon.tokenizer(), weights=WEIGHTS, rows=rows, total=total
    )


def test_a_file_written_for_another_database_is_refused(
    stored: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = write_source_db(tmp_path / "chunks.sqlite", rows=120)
    shutil.copyfile(stored.with_suffix(".impact"), other.with_suffix(".impact"))
    _refused(other, caplog, "written for another database")


def test_an_empty_database_stores_an_empty_index(tmp_path: Path) -> None:
    path = tmp_path / "chunks.sqlite"
    with ChunkDB.create(path):
        pass
    assert write_impact(path)
    with ChunkDB.open(path) as db:
        assert db.prepare_lexical(build=False) and _is_mapped(db)
        assert db.lexical("anything at all", 10) == []


def test_a_schema_1_database_has_none(tmp_path: Path) -> None:
    path = tmp_path / "chunks.sqlite"
    with ChunkDB.create(path, None) as db:
        db.add(source_chunks()[:20])
    assert not write_impact(path)
    assert not path.with_suffix(".impact").exists()
    with ChunkDB.open(path) as db:
        assert db.read_impact() is None


def _buffer_of(db: ChunkDB) -> object:
    assert db._impact is not None
    base = db._impact.arrays()["positions"].base
    return base.obj if isinstance(base, memoryview) else base


def test_a_large_file_is_mapped_and_a_small_one_read(
    stored: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large files are mapped (shared pages); small ones read (no descriptor held open)."""
    with ChunkDB.open(stored) as plain:
        monkeypatch.setattr(array_file, "MAP_MIN_BYTES", 0)
        with ChunkDB.open(stored) as mapped:
            assert mapped.prepare_lexical(build=False)
            assert isinstance(_buffer_of(mapped), mmap.mmap)
            for query in QUERIES:
                assert_same_ranking(plain, mapped, query, 20)
        monkeypatch.setattr(array_file, "MAP_MIN_BYTES", 1 << 40)
        with ChunkDB.open(stored) as read:
            assert read.prepare_lexical(build=False)
            assert isinstance(_buffer_of(read), bytes)
            for query in QUERIES:
                assert_same_ranking(plain, read, query, 20)
