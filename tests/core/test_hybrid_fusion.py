"""Hybrid fusion's parts on hand-made rankings, and the lexical tiers on a real chunk database."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeintel.core import hits, lexical
from codeintel.core.store import chunks as chunks_mod
from codeintel.core.store.chunks import Chunk, ChunkDB


class TestKeepDenseTop:
    def test_a_clear_dense_answer_moves_up_past_far_lower_chunks(self) -> None:
        dense = [(1, 0.57), (2, 0.53), (3, 0.30), (4, -0.03)]
        fused = [(3, 0.79), (1, 0.50), (2, 0.47), (4, 0.0)]
        kept = hits.keep_dense_top(fused, dense, 0.15)
        assert [i for i, _ in kept] == [1, 3, 2, 4]
        assert [s for _, s in kept] == sorted((s for _, s in kept), reverse=True)

    def test_a_close_competitor_keeps_its_place(self) -> None:
        dense = [(1, 0.57), (3, 0.50)]
        fused = [(3, 0.79), (1, 0.50)]
        assert hits.keep_dense_top(fused, dense, 0.15) == fused

    def test_a_chunk_only_bm25_found_counts_as_the_last_cosine(self) -> None:
        dense = [(1, 0.60), (2, 0.50)]
        assert hits.keep_dense_top([(9, 1.0), (1, 0.5)], dense, 0.15) == [(9, 1.0), (1, 0.5)]
        dense = [(1, 0.60), (2, 0.40)]
        assert [i for i, _ in hits.keep_dense_top([(9, 1.0), (1, 0.5)], dense, 0.15)] == [1, 9]

    def test_named_chunks_stay_above_it(self) -> None:
        dense = [(1, 0.6), (2, 0.1), (3, 0.0)]
        fused = [(3, 1.9), (2, 0.7), (1, 0.5)]
        kept = hits.keep_dense_top(fused, dense, 0.15, named=frozenset({3}))
        assert [i for i, _ in kept] == [3, 1, 2]

    def test_off_at_zero_or_when_already_first(self) -> None:
        dense = [(1, 0.9), (2, 0.1)]
        assert hits.keep_dense_top([(2, 1.0), (1, 0.5)], dense, 0.0) == [(2, 1.0), (1, 0.5)]
        assert hits.keep_dense_top([(1, 1.0), (2, 0.5)], dense, 0.15) == [(1, 1.0), (2, 0.5)]


class TestFuse:
    def test_a_question_keeps_its_clear_dense_answer_first(self) -> None:
        dense = [(1, 0.57), (2, 0.53), (3, 0.30), (4, -0.03)]
        bm25 = [(3, 1.68), (2, 2e-6), (1, 2e-6)]
        question = "great-circle distance between two coordinates"
        assert hits.minmax(dense, bm25, 0.5)[0][0] == 3  # min-max alone loses it
        assert hits.fuse(question, dense, bm25)[0][0] == 1
        assert hits.fuse(question, dense, bm25, margin=0.0)[0][0] == 3

    def test_code_and_keyword_queries_are_exempt_from_the_margin(self) -> None:
        dense, bm25 = [(1, 0.9), (2, 0.1)], [(2, 9.0), (1, 1.0)]
        assert hits.fuse("parse_args", dense, bm25)[0][0] == 2
        assert hits.fuse("parse args", dense, bm25)[0][0] == 2

    def test_a_named_chunk_goes_first_even_unseen_by_both_rankings(self) -> None:
        dense, bm25 = [(1, 0.9), (2, 0.5)], [(1, 9.0), (2, 8.0)]
        fused = hits.fuse("parse_manifest", dense, bm25, named=[(7, 3.0)])
        assert [i for i, _ in fused] == [7, 1, 2]
        assert hits.fuse("parse_manifest", dense, bm25, named=[(7, 3.0)], boost=0)[0][0] == 1

    def test_calibrated_does_not_zero_a_short_lists_last_entry(self) -> None:
        dense = [(1, 0.6), (2, 0.55)]
        bm25 = [(2, 4.0), (1, 3.0)]
        fused = dict(hits.calibrated(dense, bm25, 0.5, span=0.3))
        assert fused[1] == pytest.approx(0.5 * 1.0 + 0.5 * 0.75)
        assert fused[2] == pytest.approx(0.5 * (1 - 0.05 / 0.3) + 0.5)
        assert dict(hits.minmax(dense, bm25, 0.5))[1] == pytest.approx(0.5)


class TestNames:
    @pytest.mark.parametrize(
        ("query", "symbol", "named"),
        [
            ("parse_manifest", "parse_manifest", True),
            ("parse manifest", "parse_manifest", True),
            ("parseManifest", "loader.parse_manifest", True),
            ("Manifest.parse", "pkg.Manifest.parse", True),
            ("Manifest.parse", "Config.parse", False),
            ("Manifest.parse", "Manifest", False),
            ("parse for", "Parser.parse_for", True),  # a stop word in a name
            ("getchar", "CliRunner._getchar", True),
            ("repr", "Response.__repr__", False),
            ("__repr__", "Response.__repr__", True),
            ("Return the manifest entries of a file", "manifest", False),
        ],
    )
    def test_names(self, query: str, symbol: str, named: bool) -> None:
        assert lexical.names(lexical.named_symbol(query), symbol) is named


def _db(tmp_path: Path, chunks: list[tuple[str, str, str]]) -> Path:
    path = tmp_path / "chunks.sqlite"
    db = ChunkDB.create(path)
    db.add(
        Chunk(i, p, 1, 3, "python", symbol, f"h{i}", text)
        for i, (p, symbol, text) in enumerate(chunks, start=1)
    )
    db.close()
    return path


class TestLexicalTiers:
    def test_the_named_tier_holds_full_symbol_matches_only(self, tmp_path: Path) -> None:
        path = _db(
            tmp_path,
            [
                ("pkg/manifest.py", "Manifest.parse", "def parse(cls, text): return cls(text)"),
                ("pkg/config.py", "Config.parse", "def parse(cls, text): return cls()"),
                ("pkg/manifest.py", "Manifest", "class Manifest: entries = []"),
                ("pkg/loader.py", "load", "Manifest.parse(text) # parse the manifest, parse it"),
            ],
        )
        with ChunkDB.open(path) as db:
            named, rest = db.lexical_tiers("Manifest.parse", 10)
            assert [i for i, _ in named] == [1]
            assert {i for i, _ in rest} >= {1, 3, 4}
            assert db.lexical("Manifest.parse", 10)[0][0] == 1
            assert db.lexical_tiers("where is the manifest read", 10)[0] == []

    def test_terms_in_half_the_chunks_are_dropped_without_changing_the_ranking(
        self, tmp_path: Path
    ) -> None:
        texts = [f"return value_{i} + offset" for i in range(30)]
        texts += ["return the parsed manifest entries", "manifest manifest entries here"]
        path = _db(tmp_path, [(f"m{i}.py", f"f{i}", t) for i, t in enumerate(texts)])
        query = "return manifest entries"
        with ChunkDB.open(path) as db:
            assert db._informative(lexical.query_terms(query)) == ["manifest", "entries"]
            pruned = db.lexical(query, 5)
        with ChunkDB.open(path) as db:
            db._rows = 10**9  # nothing is common: every term is kept
            full = db.lexical(query, 5)
        assert [i for i, _ in pruned][:2] == [i for i, _ in full][:2]
        assert {i for i, _ in pruned[:2]} == {31, 32}

    def test_merge_keeps_scores_falling(self) -> None:
        merged = chunks_mod.merge_tiers([(5, 1.0)], [(1, 9.0), (5, 3.0), (2, 2.0)], 3)
        assert [i for i, _ in merged] == [5, 1, 2]
        assert [s for _, s in merged] == sorted((s for _, s in merged), reverse=True)


class TestTiersComputedAhead:
    """The searcher ranks BM25 while the query is embedded and hands the tiers to ``rank``."""

    @pytest.mark.parametrize("mode", ["hybrid", "lexical", "semantic"])
    @pytest.mark.parametrize("query", ["Manifest.parse", "where is the manifest parsed", "parse"])
    def test_rank_with_tiers_ahead_equals_rank_alone(
        self, tmp_path: Path, mode: hits.Mode, query: str
    ) -> None:
        path = _db(
            tmp_path,
            [
                ("pkg/manifest.py", "Manifest.parse", "def parse(cls, text): return cls(text)"),
                ("pkg/config.py", "Config.parse", "def parse(cls, text): return cls()"),
                ("pkg/manifest.py", "Manifest", "class Manifest: entries = []"),
                ("pkg/loader.py", "load", "Manifest.parse(text) # parse the manifest, parse it"),
            ],
        )
        dense = [(3, 0.61), (2, 0.40), (4, 0.33)]
        with ChunkDB.open(path) as db:
            alone = hits.rank(db, query, mode, 3, dense)
            tiers = hits.bm25_tiers(db, query, mode, 3)
            ahead = hits.rank(db, query, mode, 3, dense, tiers=tiers)
        assert ahead == alone
        assert (tiers == ([], [])) == (mode == "semantic")
