"""BM25 scored in numpy (core/store/impact.py) ranks exactly as FTS5 does.

Every comparison runs the same query through two readers of one real database: one
left on FTS5, one after :meth:`ChunkDB.prepare_lexical`. Ids must be equal in order
(ties break by id in both) and scores equal to float rounding."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from codeintel.core.store import impact as impact_mod
from codeintel.core.store.chunks import WEIGHTS, ChunkDB
from lexical_ranking import FILTERS, QUERIES, assert_same_ranking, source_chunks, write_source_db


@pytest.fixture(scope="module")
def source_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_source_db(tmp_path_factory.mktemp("impact") / "chunks.sqlite")


def _vocabulary_queries(db: ChunkDB) -> list[str]:
    """Queries made of the indexed text: symbols, pairs of words, words in every column."""
    chunks = list(db.get(db.all_ids().tolist()).values())
    made = [c.symbol for c in chunks[::9] if c.symbol]
    words = [w for c in chunks[::13] for w in re.findall(r"[A-Za-z_]\w+", c.text)[:6]]
    made += [" ".join(words[i : i + 3]) for i in range(0, len(words), 5)]
    return made


def test_numpy_bm25_ranks_as_fts5_with_filters_and_stopwords(source_db: Path) -> None:
    with ChunkDB.open(source_db) as plain, ChunkDB.open(source_db) as fast:
        assert fast.prepare_lexical()
        assert fast._impact is not None and plain._impact is None
        queries = QUERIES + _vocabulary_queries(plain)
        assert len(queries) > 100
        compared = 0
        for n, query in enumerate(queries):
            for filters in FILTERS if n % 4 == 0 else FILTERS[:1]:
                for k in (1, 5, 20, 200):
                    assert_same_ranking(plain, fast, query, k, **filters)
                    compared += 1
            assert_same_ranking(plain, fast, query, 10, stopwords=False)  # type: ignore[arg-type]
        assert compared > 400
        # The shortcut was taken, not FTS5 again: a term's postings give its frequency.
        assert fast._impact.frequency("self") == plain._frequency("self") > 0


def test_an_index_read_in_many_batches_is_the_same(source_db: Path) -> None:
    with ChunkDB.open(source_db) as plain, ChunkDB.open(source_db) as fast:
        assert fast.lexicon is not None
        whole = impact_mod.ImpactIndex.build(plain._conn(), fast.lexicon.tokenizer(), WEIGHTS)
        fast._impact = impact_mod.ImpactIndex.build(
            fast._conn(), fast.lexicon.tokenizer(), WEIGHTS, batch=97
        )
        assert fast._impact.frequency("self") == whole.frequency("self") > 0
        for query in QUERIES:
            assert_same_ranking(plain, fast, query, 30)


def test_the_named_tier_and_stemmed_duplicates_score_like_fts5(source_db: Path) -> None:
    with ChunkDB.open(source_db) as plain, ChunkDB.open(source_db) as fast:
        fast.prepare_lexical()
        named, _rest = fast.lexical_tiers("merge_tiers", 10)
        assert named and named == plain.lexical_tiers("merge_tiers", 10)[0]
        assert fast.lexical("connections connection", 10) == plain.lexical(
            "connections connection", 10
        )


def test_other_weights_and_unsplittable_terms_fall_back_to_fts5(source_db: Path) -> None:
    with ChunkDB.open(source_db) as plain, ChunkDB.open(source_db) as fast:
        fast.prepare_lexical()
        weights = (1.0, 1.0, 1.0)
        assert fast.lexical("return the value", 10, weights=weights) == plain.lexical(
            "return the value", 10, weights=weights
        )
        assert fast._impact is not None
        assert fast._impact.token("a.b") is None  # two tokens: FTS5 runs such a phrase
        assert fast._impact.token("Connections") == "connect"


def test_a_writer_and_a_schema_1_database_keep_fts5(tmp_path: Path) -> None:
    rows = source_chunks()[:50]
    with ChunkDB.create(tmp_path / "old.sqlite", None) as legacy:
        legacy.add(rows)
    with ChunkDB.open(tmp_path / "old.sqlite") as legacy:
        assert not legacy.prepare_lexical()
        assert legacy.lexical("return", 5)
    with ChunkDB.create(tmp_path / "new.sqlite") as writer:
        writer.add(rows)
        assert not writer.prepare_lexical()  # it still changes


def test_varints_decode_as_sqlite_writes_them() -> None:
    assert impact_mod._varints(bytes.fromhex("82a949")) == [38089]
    assert impact_mod._varints(bytes([0x05, 0x7F, 0x81, 0x00])) == [5, 127, 128]
    assert impact_mod._varints(bytes([0xFF] * 8 + [0x01])) == [(2**56 - 1) << 8 | 1]
