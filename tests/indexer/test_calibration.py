"""Index choice by measured cost and nprobe calibration on text queries from the corpus."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

import vectors
from codeintel.cli import main
from codeintel.core.settings import IndexSettings, Settings
from codeintel.core.store import Store
from codeintel.indexer import ann, calibration, pipeline
from codeintel.searcher import generations
from gitrepo import GitRepo
from vectors import clustered

one_omp_thread = pytest.fixture(autouse=True, scope="module")(vectors.one_omp_thread)

IVF = IndexSettings(exact_budget_ms=0.0)
"""Any measured exact-scan cost exceeds a zero budget: IVF whatever the size."""
H11 = Path(faiss.__file__).resolve().parents[1] / "h11"
"""A small real package (h11, ~2.5K lines of documented Python) as the corpus."""


def src(path: str, text: str) -> calibration.QuerySource:
    return calibration.QuerySource(path, text)


class TestExtractQueries:
    def test_docstrings_comments_and_prose(self) -> None:
        code = (
            "#!/usr/bin/env python\n"
            "def parse(text):\n"
            '    """Parse an invoice document into line items. Then total them."""\n'
            "    # Skip the blank lines at the end of the file\n"
            "    # because the exporter adds them.\n"
            "    # x = parse(y)\n"
            "    return [line for line in text.splitlines() if line]\n"
        )
        go = "/* HealthHandler answers the liveness probes of the cluster. */\n// ok\n"
        readme = (
            "# The project title\n\n"
            "This service parses invoices and sends [emails](http://x) to customers.\n"
            "It runs as one process per node.\n\n"
            "```\n# a shell comment in a fence is not prose here\n```\n"
        )
        found = calibration.extract_queries(
            [src("a.py", code), src("web/s.go", go), src("README.md", readme)], limit=100
        )
        assert set(found) == {
            "Parse an invoice document into line items.",
            "Skip the blank lines at the end of the file because the exporter adds them.",
            "HealthHandler answers the liveness probes of the cluster.",
            "This service parses invoices and sends emails to customers.",
            "It runs as one process per node.",
        }

    def test_commented_out_code_and_short_lines_are_not_queries(self) -> None:
        code = "# result = compute(a, b)[0]\n# TODO\n# noqa: E501\n# if x == 1: return y\n"
        assert calibration.extract_queries([src("a.py", code)], limit=10) == []

    def test_deduplicated_sampled_with_a_seed(self) -> None:
        chunks = [
            src(f"m{i}.py", f'"""Return the number {i} of widgets in the store."""\n')
            for i in range(50)
        ]
        chunks += chunks  # every sentence twice
        everything = calibration.extract_queries(chunks, limit=1_000)
        assert len(everything) == 50
        some = calibration.extract_queries(chunks, limit=20)
        assert len(some) == 20 and set(some) <= set(everything)
        assert some == calibration.extract_queries(list(reversed(chunks)), limit=20)
        assert some != calibration.extract_queries(chunks, limit=20, seed=7)

    def test_sentences_come_from_a_bounded_seeded_sample_of_chunks(self) -> None:
        small = calibration.source_rows(100)
        np.testing.assert_array_equal(small, np.arange(100))
        big = calibration.source_rows(calibration.SOURCE_CHUNKS_MAX * 3)
        assert len(big) == calibration.SOURCE_CHUNKS_MAX and np.all(np.diff(big) > 0)
        np.testing.assert_array_equal(big, calibration.source_rows(len(big) * 3))


class TestFlatCost:
    def test_measured_on_one_core_and_threads_restored(self) -> None:
        faiss.omp_set_num_threads(2)
        try:
            assert calibration.flat_cost_ms(clustered(4_000, 32)) > 0
            assert faiss.omp_get_max_threads() == 2
        finally:
            faiss.omp_set_num_threads(1)
        assert calibration.flat_cost_ms(np.empty((0, 32), np.float32)) == 0.0


class TestChoice:
    def test_exact_under_the_budget_ivf_beyond_it(self) -> None:
        xb = clustered(3_000, 32)
        ids = np.arange(3_000)
        _, plan, _ = ann.build_primary(xb, ids, IndexSettings())  # 3K x 32: ~0.1 ms < 5 ms
        cal = plan.calibration
        assert plan.type == "flat" and cal is not None
        assert 0 < cal.flat_ms <= cal.budget_ms == IndexSettings().exact_budget_ms
        assert (cal.nprobe, cal.recall_at_10, cal.queries) == (0, None, 0)

        tiny = IndexSettings(exact_budget_ms=cal.flat_ms / 1_000)
        _, plan, _ = ann.build_primary(xb, ids, tiny)
        assert plan.type == "ivf_flat"
        assert plan.calibration is not None and plan.calibration.flat_ms > tiny.exact_budget_ms


class TestCalibrateNprobe:
    def test_smallest_nprobe_meeting_the_target(self) -> None:
        x = clustered(6_200, 32, seed=2)
        xb, xq, ids = x[:6_000], x[6_000:], np.arange(6_000) * 3 + 1
        index, plan, _ = ann.build_primary(xb, ids, IVF, queries=lambda: xq)
        cal = plan.calibration
        assert cal is not None and cal.reached and cal.queries == 200 and cal.note == ""
        assert cal.recall_at_10 is not None and cal.recall_at_10 >= 0.99
        assert plan.nprobe == cal.nprobe == faiss.extract_index_ivf(index).nprobe
        truth = calibration.exact_top_ids(xq, xb, ids, 10)
        at = calibration.recall_at(index, cal.nprobe, xq, truth, xb, ids)
        assert at == pytest.approx(cal.recall_at_10, abs=1e-4)
        if cal.nprobe > 1:
            assert calibration.recall_at(index, cal.nprobe - 1, xq, truth, xb, ids) < 0.99

    def test_records_honestly_when_the_target_is_out_of_reach(self) -> None:
        # PQ with 2 sub-quantisers and no re-ranking cannot find 0.99 of the exact top-10.
        x = clustered(5_200, 32, seed=4)
        xb, xq, ids = x[:5_000], x[5_000:], np.arange(5_000)
        settings = IndexSettings(
            exact_budget_ms=0.0, ivf_flat_max_bytes=0, pq_m=2, rerank_factor=1,
            train_sample_max=3_000,
        )  # fmt: skip
        index, plan, _ = ann.build_primary(xb, ids, settings, queries=lambda: xq)
        cal = plan.calibration
        assert plan.type == "ivf_pq" and cal is not None
        assert not cal.reached and cal.recall_at_10 is not None and cal.recall_at_10 < 0.99
        truth = calibration.exact_top_ids(xq, xb, ids, 10)
        every = [calibration.recall_at(index, p, xq, truth, xb, ids) for p in (1, plan.nlist)]
        assert cal.recall_at_10 >= max(every) - 1e-9  # the best nprobe found is kept

    def test_reranking_counts_like_the_searcher(self) -> None:
        x = clustered(5_200, 32, seed=5)
        xb, xq, ids = x[:5_000], x[5_000:], np.arange(5_000)
        settings = IndexSettings(
            exact_budget_ms=0.0, ivf_flat_max_bytes=0, pq_m=8, train_sample_max=3_000
        )
        _, plan, _ = ann.build_primary(xb, ids, settings, queries=lambda: xq)
        assert plan.calibration is not None and plan.calibration.reached

    def test_too_few_queries_fall_back_and_say_so(self) -> None:
        x = clustered(3_005, 32, seed=6)
        xb, xq = x[:3_000], x[3_000:]
        _, plan, _ = ann.build_primary(xb, np.arange(3_000), IVF, queries=lambda: xq)
        cal = plan.calibration
        assert cal is not None and cal.queries == 5 and "only 5 text queries" in cal.note
        assert cal.nprobe == ann.plan_index(3_000, 32, IVF, flat_ms=1.0).nprobe
        assert cal.recall_at_10 is not None  # still measured on the five

    def test_no_query_source_and_failing_embedder(self) -> None:
        xb = clustered(3_000, 32, seed=7)
        _, plan, _ = ann.build_primary(xb, np.arange(3_000), IVF)
        assert plan.calibration is not None and "no embedder" in plan.calibration.note
        assert plan.calibration.recall_at_10 is None and not plan.calibration.reached

        def broken() -> np.ndarray:
            raise OSError("model weights missing")

        _, plan, _ = ann.build_primary(xb, np.arange(3_000), IVF, queries=broken)
        assert plan.calibration is not None and "model weights missing" in plan.calibration.note

    def test_fixed_nprobe_is_kept_and_measured(self) -> None:
        x = clustered(3_200, 32, seed=8)
        xb, xq = x[:3_000], x[3_000:]
        settings = IndexSettings(exact_budget_ms=0.0, nprobe=3)
        _, plan, _ = ann.build_primary(xb, np.arange(3_000), settings, queries=lambda: xq)
        cal = plan.calibration
        assert cal is not None and cal.nprobe == plan.nprobe == 3 and "fixed" in cal.note
        assert cal.recall_at_10 is not None and cal.queries == 200


# -- the pipeline, the real model, text queries from a real package -------------------------


def _h11_repo(path: Path) -> GitRepo:
    repo = GitRepo(path)
    repo.write({f"h11/{p.name}": p.read_text() for p in sorted(H11.glob("*.py"))})
    repo.commit("import h11")
    return repo


def _settings(store: Path, **index: Any) -> Settings:
    return Settings.from_env({}, store={"path": store}, index=index)


@pytest.fixture(scope="module")
def h11_store(tmp_path_factory: pytest.TempPathFactory, local_embedder: Any) -> Settings:
    root = tmp_path_factory.mktemp("h11")
    repo = _h11_repo(root / "repo")
    settings = _settings(root / "store", exact_budget_ms=0.0)
    pipeline.build(settings, str(repo.path), local_embedder)
    return settings


@pytest.mark.slow
class TestPipeline:
    def test_build_calibrates_on_corpus_text(self, h11_store: Settings) -> None:
        generation = Store(h11_store.store.path).current()
        m = generation.manifest
        cal = m.index.calibration
        assert m.index.type == "ivf_flat" and cal is not None
        assert cal.queries >= calibration.MIN_QUERIES and cal.note == ""
        assert cal.reached and cal.recall_at_10 is not None and cal.recall_at_10 >= 0.99
        assert cal.target == 0.99 and cal.flat_ms > 0 and cal.budget_ms == 0.0
        assert 1 <= cal.nprobe <= m.index.params["nlist"]
        assert m.index.params["nprobe"] == cal.nprobe
        assert faiss.extract_index_ivf(faiss.read_index(str(generation.primary_path))).nprobe == (
            cal.nprobe
        )
        assert {"index_measure", "index_calibrate"} <= set(m.timings)

    def test_the_searcher_uses_the_recorded_nprobe(
        self, h11_store: Settings, tmp_path: Path
    ) -> None:
        store = Store(h11_store.store.path)
        name = store.current_name()
        cal = store.current().manifest.index.calibration
        assert cal is not None
        with ThreadPoolExecutor(1) as executor:
            for settings, expected in (
                (h11_store, cal.nprobe),  # nprobe 0: the recorded one
                (Settings.from_env({}, index={"nprobe": cal.nprobe + 1}), cal.nprobe + 1),
            ):
                loaded = generations.load(store, name, settings, tmp_path, executor)
                try:
                    engine = loaded.engine
                    assert engine.nprobe == expected
                    assert faiss.extract_index_ivf(engine._primary).nprobe == expected
                finally:
                    loaded.close()

    def test_update_keeps_merge_recalibrates(self, tmp_path: Path, local_embedder: Any) -> None:
        repo = _h11_repo(tmp_path / "repo")
        settings = _settings(tmp_path / "store", exact_budget_ms=0.0)
        pipeline.build(settings, str(repo.path), local_embedder)
        store = Store(settings.store.path)
        built = store.current().manifest.index

        repo.delete("h11/_connection.py", "h11/_state.py")
        repo.commit("drop two modules")
        pipeline.update(settings, local_embedder, merge_threshold=0)
        updated = store.current().manifest
        assert updated.index == built  # the primary is the parent's: so is its calibration

        pipeline.merge(settings, embedder=local_embedder)
        merged = store.current().manifest.index
        assert merged.calibration is not None and built.calibration is not None
        assert merged.calibration.note == "" and merged.calibration.reached
        # recalibrated on the merged corpus: the deleted modules' sentences are gone
        assert merged.calibration.queries < built.calibration.queries
        assert merged.params["nprobe"] == merged.calibration.nprobe

        pipeline.merge(settings)  # no embedder: the fallback nprobe, said so
        fallback = store.current().manifest.index.calibration
        assert fallback is not None and "no embedder" in fallback.note

    def test_cli_merge_recalibrates_with_the_stores_model(
        self, h11_store: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CODEINTEL_INDEX_EXACT_BUDGET_MS", "0")
        store_path = tmp_path / "store"
        shutil.copytree(h11_store.store.path, store_path, symlinks=True)
        built = Store(store_path).current().manifest.index.calibration
        argv = ["index", "merge", "--store", str(store_path), "--embedder", "local"]
        assert main(argv) == 0
        merged = Store(store_path).current()
        cal = merged.manifest.index.calibration
        assert merged.name != h11_store.store.path.name and cal is not None and built is not None
        assert cal.note == "" and cal.queries == built.queries and cal.reached
        assert cal.seconds > 0 and merged.manifest.index.params["nprobe"] == cal.nprobe
