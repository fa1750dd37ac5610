"""Long chunks as several vectors: window ids, cutting, search, update and merge.

Real FAISS, the real local model on a small repository whose one long function
says what it does only past the model's 256 tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from codeintel.core import errors, hits
from codeintel.core import windows as windows_mod
from codeintel.core.search import SearchEngine
from codeintel.core.settings import Settings
from codeintel.core.store import CHUNKS_DB, MIN_READER_VERSION, WINDOWS_READER_VERSION, Store
from codeintel.core.store import chunks as chunks_mod
from codeintel.indexer import chunking, pipeline, progress, windows

SAMPLE_FILES = {
    "billing/invoice.py": (
        "import decimal\n\n\n"
        "def parse_invoice(text):\n"
        "    items = [line.split(',') for line in text.splitlines() if line]\n"
        "    total = sum(decimal.Decimal(price) for _, price in items)\n"
        "    return items, total\n"
    ),
    "mail/sender.py": (
        "import smtplib\n\n\n"
        "def send_email(host, recipient, subject, body):\n"
        "    with smtplib.SMTP(host) as smtp:\n"
        "        smtp.sendmail('noreply@example.org', [recipient], body)\n"
    ),
    "geo/maps.py": "def tile_url(zoom, x, y):\n    return f'https://tiles/{zoom}/{x}/{y}.png'\n",
}
"""Short chunks around the long one (no windows of their own)."""


def _settings(store: Path, **index: object) -> Settings:
    return Settings.from_env({}, store={"path": store}, index=index)


def _long_function() -> str:
    """A function whose first ~300 tokens read option names and whose end computes a
    great-circle distance: only a window past the head says so."""
    lines = ["def load_settings_then_measure(options, first, second):"]
    for i in range(40):
        lines.append(f"    value_{i} = options.get('setting_number_{i}', {i}) or fallback_{i}")
    lines += [
        "    # Great-circle distance between two GPS points: the haversine formula.",
        "    lat1, lon1 = map(math.radians, first)",
        "    lat2, lon2 = map(math.radians, second)",
        "    a = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * "
        "math.sin((lon2 - lon1) / 2) ** 2",
        "    earth_radius_km = 6371.0",
        "    return 2 * earth_radius_km * math.asin(math.sqrt(a))",
    ]
    return "import math\n\n\n" + "\n".join(lines) + "\n"


QUERY = "haversine great-circle distance in kilometres between two GPS coordinates"


def _hits_for(settings: Settings, embedder: object, path: str) -> list[hits.Hit]:
    found = hits.search_store(settings, embedder, QUERY, 10)  # type: ignore[arg-type]
    return [h for h in found if h.path == path]


class TestIds:
    def test_window_ids_map_back_to_their_chunk(self):
        chunks = np.array([0, 7, 2**40], dtype=np.int64)
        ids = windows_mod.window_ids(chunks, np.array([1, 3, 2]))
        assert (ids > windows_mod.CHUNK_MASK).all()
        assert windows_mod.chunk_ids(ids).tolist() == chunks.tolist()
        assert windows_mod.chunk_ids(np.array([-1, 5])).tolist() == [-1, 5]
        assert windows_mod.has_windows(ids) and not windows_mod.has_windows(chunks)

    def test_out_of_range_ids_are_refused(self):
        with pytest.raises(ValueError, match="chunk ids"):
            windows_mod.window_ids(np.array([2**48]), np.array([1]))
        with pytest.raises(ValueError, match="window numbers"):
            windows_mod.window_ids(np.array([1]), np.array([0]))

    def test_best_per_chunk_keeps_the_first_entry_of_each_chunk(self):
        w = windows_mod.window_ids
        I = np.array([[int(w(np.array([4]), np.array([1]))[0]), 9, 4, -1]], dtype=np.int64)
        D = np.array([[0.9, 0.8, 0.7, -np.inf]], dtype=np.float32)
        D2, C = windows_mod.best_per_chunk(D, I)
        assert C.tolist() == [[4, 9, -1, -1]]
        assert D2[0, :2].tolist() == pytest.approx([0.9, 0.8])
        assert np.isneginf(D2[0, 2:]).all()


class TestSplit:
    def test_windows_start_where_the_head_stops_and_fit_the_limit(self, local_embedder):
        text = _long_function()
        counts = local_embedder.token_counts
        limit = local_embedder.max_tokens
        header = "geo.py :: load_settings_then_measure"
        out = windows.split(header, text, counts, limit, max_windows=8)
        assert out, "a ~600-token chunk has windows past its head"
        assert all(w.startswith(header + "\n") for w in out)
        assert all(counts([w])[0] + 2 <= limit for w in out)
        assert "earth_radius_km" in out[-1]
        # The head reads whole lines up to the limit; window 1 starts at the first it missed.
        first_body_line = out[0].split("\n")[1]
        head = counts([f"{header}\n{text[: text.index(first_body_line)]}"])[0]
        assert head + 2 > limit - counts([first_body_line])[0]

    def test_short_text_has_no_window_and_the_cap_holds(self, local_embedder):
        counts, limit = local_embedder.token_counts, local_embedder.max_tokens
        assert windows.split("a.py", "def f():\n    return 1\n", counts, limit, 8) == []
        assert len(windows.split("a.py", _long_function(), counts, limit, 1)) == 1

    def test_negative_setting_is_a_config_error(self, local_embedder):
        draft = chunking.chunk_file("geo.py", _long_function())
        with pytest.raises(errors.ConfigError, match="chunk_windows"):
            windows.add_windows(
                local_embedder,
                local_embedder,
                draft,
                np.arange(len(draft), dtype=np.int64),
                np.zeros((len(draft), 384), np.float32),
                -1,
                progress.Reporter(),
            )


class TestEngine:
    """Synthetic vectors, real FAISS: each chunk counts once, with its best vector."""

    def _engine(self, ids: np.ndarray, xb: np.ndarray, tombstones: np.ndarray) -> SearchEngine:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(xb.shape[1]))
        index.add_with_ids(xb, ids)

        class Stored:
            def ids(self) -> np.ndarray:
                return np.sort(ids)

            def get(self, want: np.ndarray) -> np.ndarray:
                pos = {int(i): n for n, i in enumerate(ids)}
                return xb[[pos[int(i)] for i in want]]

        return SearchEngine(
            index, None, tombstones, Stored(), index_type="flat", nprobe=0, rerank_factor=1
        )

    def test_matches_a_brute_force_max_over_each_chunks_vectors(self):
        rng = np.random.default_rng(0)
        n, d = 300, 32
        chunk = np.arange(n, dtype=np.int64)
        owners = rng.choice(n, 200)
        numbers = np.ones(200, dtype=np.int64)
        for i in range(1, 200):
            numbers[i] = 1 + int((owners[:i] == owners[i]).sum())
        ids = np.concatenate([chunk, windows_mod.window_ids(owners, numbers)])
        xb = rng.standard_normal((len(ids), d)).astype(np.float32)
        xb /= np.linalg.norm(xb, axis=1, keepdims=True)
        xq = rng.standard_normal((20, d)).astype(np.float32)
        dead = np.array(sorted(set(owners[:30].tolist())), dtype=np.int64)
        D, I = self._engine(ids, xb, dead).search(xq, 10)

        scores = xq @ xb.T
        for q in range(len(xq)):
            best: dict[int, float] = {}
            for j in np.argsort(-scores[q]):
                c = int(windows_mod.chunk_ids(ids[j : j + 1])[0])
                if c not in dead and c not in best:
                    best[c] = float(scores[q, j])
            expected = list(best)[:10]
            assert I[q].tolist() == expected
            assert D[q] == pytest.approx([best[c] for c in expected], abs=1e-5)

    def test_ivf_pq_rerank_scores_every_window_exactly(self):
        rng = np.random.default_rng(1)
        n, d = 2000, 32
        owners = rng.choice(n, 1500, replace=False)
        ids = np.concatenate(
            [np.arange(n, dtype=np.int64), windows_mod.window_ids(owners, np.ones(1500, np.int64))]
        )
        xb = rng.standard_normal((len(ids), d)).astype(np.float32)
        xb /= np.linalg.norm(xb, axis=1, keepdims=True)
        index = faiss.index_factory(d, "IDMap2,IVF16,PQ8", faiss.METRIC_INNER_PRODUCT)
        index.train(xb)
        index.add_with_ids(xb, ids)
        engine = self._engine(ids, xb, np.empty(0, np.int64))
        engine = SearchEngine(
            index,
            None,
            np.empty(0, np.int64),
            engine._vectors,
            index_type="ivf_pq",
            nprobe=16,
            rerank_factor=8,
        )
        xq = rng.standard_normal((20, d)).astype(np.float32)
        D, I = engine.search(xq, 10)
        scores = xq @ xb.T
        found = 0
        for q in range(len(xq)):
            assert len(set(I[q].tolist())) == 10, "each chunk once"
            best: dict[int, float] = {}
            for j in np.argsort(-scores[q]):
                best.setdefault(int(windows_mod.chunk_ids(ids[j : j + 1])[0]), float(scores[q, j]))
            # Re-ranked scores are exact: each is the chunk's best vector's inner product.
            assert D[q] == pytest.approx([best[int(c)] for c in I[q]], abs=1e-4)
            found += len(set(I[q].tolist()) & set(list(best)[:10]))
        assert found / (10 * len(xq)) >= 0.8


class TestPipeline:
    def test_a_long_chunk_is_found_by_what_only_its_window_reads(
        self, git_repo, local_embedder, tmp_path
    ):
        git_repo.commit("initial", {**SAMPLE_FILES, "geo/measure.py": _long_function()})
        with_windows = _settings(tmp_path / "windows", chunk_windows=4)
        head_only = _settings(tmp_path / "head", chunk_windows=0)
        pipeline.build(with_windows, str(git_repo.path), local_embedder)
        pipeline.build(head_only, str(git_repo.path), local_embedder)

        generation = Store(tmp_path / "windows").current()
        assert generation.vectors().has_windows
        assert generation.manifest.min_reader_version == max(
            WINDOWS_READER_VERSION, _lexicon(generation)
        )
        head_generation = Store(tmp_path / "head").current()
        assert not head_generation.vectors().has_windows
        assert head_generation.manifest.min_reader_version == _lexicon(head_generation)

        found = hits.search_store(with_windows, local_embedder, QUERY, 10)  # type: ignore[arg-type]
        assert found[0].path == "geo/measure.py"
        keys = [(h.path, h.start_line) for h in found]
        assert len(keys) == len(set(keys)), "a chunk comes back once, whatever its windows"
        windowed = _hits_for(with_windows, local_embedder, "geo/measure.py")[0].score
        head = _hits_for(head_only, local_embedder, "geo/measure.py")[0].score
        assert windowed > head + 0.1

    def test_update_and_merge_drop_every_window_of_a_changed_chunk(
        self, git_repo, local_embedder, tmp_path
    ):
        git_repo.commit("initial", {**SAMPLE_FILES, "geo/measure.py": _long_function()})
        settings = _settings(tmp_path / "store", chunk_windows=4, merge_threshold=0)
        pipeline.build(settings, str(git_repo.path), local_embedder)
        assert _hits_for(settings, local_embedder, "geo/measure.py")

        git_repo.commit("measure nothing", {"geo/measure.py": "def nothing():\n    return 0\n"})
        pipeline.update(settings, local_embedder)
        generation = Store(tmp_path / "store").current()
        dead = generation.tombstones()
        stored = generation.vectors().ids()
        windows_of_dead = np.isin(windows_mod.chunk_ids(stored), dead) & (
            stored > windows_mod.CHUNK_MASK
        )
        assert windows_of_dead.any(), "the parent's windows are still stored, tombstoned"
        assert not [
            h
            for h in hits.search_store(settings, local_embedder, QUERY, 20)  # type: ignore[arg-type]
            if "earth_radius_km" in h.snippet
        ]

        pipeline.merge(settings)
        merged = Store(tmp_path / "store").current()
        assert len(merged.tombstones()) == 0
        live = merged.chunks()
        try:
            live_ids = set(live.all_ids().tolist())
        finally:
            live.close()
        assert set(windows_mod.chunk_ids(merged.vectors().ids()).tolist()) == live_ids
        assert merged.manifest.min_reader_version == _lexicon(merged)

    def test_update_puts_a_new_long_chunks_windows_in_the_secondary(
        self, git_repo, local_embedder, tmp_path
    ):
        git_repo.commit("initial", SAMPLE_FILES)
        settings = _settings(tmp_path / "store", chunk_windows=4, merge_threshold=0)
        pipeline.build(settings, str(git_repo.path), local_embedder)
        git_repo.commit("measure", {"geo/measure.py": _long_function()})
        result = pipeline.update(settings, local_embedder)

        generation = Store(tmp_path / "store").current()
        assert result.vectors.secondary > result.chunks, "windows went to the secondary"
        assert generation.manifest.min_reader_version == max(
            WINDOWS_READER_VERSION, _lexicon(generation)
        )
        found = hits.search_store(settings, local_embedder, QUERY, 10)  # type: ignore[arg-type]
        assert found[0].path == "geo/measure.py"
        assert len({(h.path, h.start_line) for h in found}) == len(found)


def _lexicon(generation: Any) -> int:
    """The reader version the chunk database alone asks for (windows may only raise it)."""
    return max(MIN_READER_VERSION, chunks_mod.reader_version(generation.path / CHUNKS_DB))
