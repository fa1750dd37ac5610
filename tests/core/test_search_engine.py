"""SearchEngine against brute force: recall, tombstones, secondary merge, batches, threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np
import pytest

import vectors
from codeintel.core import errors
from codeintel.core.search import SECONDARY_IVF_MIN, SearchEngine
from codeintel.core.settings import IndexSettings
from codeintel.indexer import ann
from vectors import clustered

K = 20
IVF = IndexSettings(exact_budget_ms=0.0)
"""Always IVF: any measured exact-scan cost exceeds a zero budget."""


one_omp_thread = pytest.fixture(autouse=True, scope="module")(vectors.one_omp_thread)


class DictVectors:
    """A VectorLookup over a dict, storing float16 like the store's VectorStore."""

    def __init__(self, ids: np.ndarray, xb: np.ndarray) -> None:
        self.rows = {int(i): v.astype(np.float16) for i, v in zip(ids, xb, strict=True)}
        self.calls = 0

    def get(self, ids: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.stack([self.rows[int(i)] for i in ids]).astype(np.float32)


def exact(xq: np.ndarray, xb: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    D, I = faiss.knn(xq, xb, k, faiss.METRIC_INNER_PRODUCT)
    return D, ids[I]


def recall_at(I: np.ndarray, gt: np.ndarray, k: int = K) -> float:
    hits = [len(set(a[:k].tolist()) & set(b[:k].tolist())) for a, b in zip(I, gt, strict=True)]
    return float(np.mean(hits)) / k


def load(tmp_path: Path, index: faiss.Index, plan: ann.IndexPlan, **kwargs: object) -> SearchEngine:
    ann.write_index(index, tmp_path / "primary.faiss")
    ann.write_index(ann.new_secondary(index.d), tmp_path / "secondary.faiss")
    return SearchEngine.load(
        tmp_path / "primary.faiss",
        tmp_path / "secondary.faiss",
        kwargs.pop("tombstones", np.zeros(0, np.int64)),  # type: ignore[arg-type]
        kwargs.pop("vectors", None),  # type: ignore[arg-type]
        plan.type,
        ann.params_dict(plan),
        **kwargs,  # type: ignore[arg-type]
    )


def flat_engine(xb: np.ndarray, ids: np.ndarray, **kwargs: object) -> SearchEngine:
    primary = ann.new_secondary(xb.shape[1])
    ann.add_vectors(primary, xb, ids)
    return SearchEngine(
        primary,
        kwargs.pop("secondary", None),  # type: ignore[arg-type]
        kwargs.pop("tombstones", np.zeros(0, np.int64)),  # type: ignore[arg-type]
        None,
        index_type="flat",
        nprobe=0,
        rerank_factor=1,
    )


class TestRecall:
    """recall@20 against IndexFlatIP >= 0.95 at the default nprobe (docs/architecture.md, *Vector indexes*)."""

    def test_ivf_flat(self, tmp_path: Path) -> None:
        n, d = 20_000, 64
        x = clustered(n + 200, d)
        xb, xq, ids = x[:n], x[n:], np.arange(n, dtype=np.int64) + 5
        index, plan, _ = ann.build_primary(xb, ids, IVF)
        assert plan.type == "ivf_flat"
        engine = load(tmp_path, index, plan)
        D, I = engine.search(xq, K)
        assert recall_at(I, exact(xq, xb, ids, K)[1]) >= 0.95
        assert np.all(np.diff(D, axis=1) <= 1e-6)  # descending

    def test_ivf_pq_with_rerank(self, tmp_path: Path) -> None:
        n, d = 20_000, 64
        x = clustered(n + 200, d, seed=1)
        xb, xq, ids = x[:n], x[n:], np.arange(n, dtype=np.int64) * 3
        settings = IndexSettings(
            exact_budget_ms=0.0, ivf_flat_max_bytes=0, pq_m=8, train_sample_max=5_000
        )
        index, plan, _ = ann.build_primary(xb, ids, settings)
        assert plan.type == "ivf_pq"
        gt = exact(xq, xb, ids, K)[1]
        vectors = DictVectors(ids, xb)
        engine = load(tmp_path, index, plan, vectors=vectors)
        reranked = recall_at(engine.search(xq, K)[1], gt)
        assert vectors.calls == 1  # one lookup for the whole batch
        pq_only = load(tmp_path, index, plan)  # no stored vectors: PQ scores
        approximate = recall_at(pq_only.search(xq, K)[1], gt)
        assert reranked >= 0.95
        assert reranked > approximate


class TestTombstones:
    def test_never_returned_and_results_stay_k_long(self) -> None:
        n, d = 3_000, 32
        x = clustered(n + 10, d, seed=2)
        xb, xq, ids = x[:n], x[n:], np.arange(n, dtype=np.int64) + 100
        # Tombstone the 300 nearest of every query: beyond the first over-fetch, so
        # the engine must re-query deeper.
        _, near = exact(xq, xb, ids, 300)
        tombstones = np.unique(near)
        engine = flat_engine(xb, ids, tombstones=tombstones)
        D, I = engine.search(xq, K)
        assert I.shape == (10, K)
        assert not np.isin(I, tombstones).any()
        assert (I >= 0).all()
        live = ~np.isin(ids, tombstones)
        gt_D, gt_I = exact(xq, xb[live], ids[live], K)
        np.testing.assert_array_equal(I, gt_I)
        np.testing.assert_allclose(D, gt_D, rtol=1e-5)

    def test_ivf_pq_rerank_skips_tombstones(self, tmp_path: Path) -> None:
        n, d = 6_000, 32
        x = clustered(n + 20, d, seed=3)
        xb, xq, ids = x[:n], x[n:], np.arange(n, dtype=np.int64)
        settings = IndexSettings(
            exact_budget_ms=0.0, ivf_flat_max_bytes=0, pq_m=8, train_sample_max=2_000
        )
        index, plan, _ = ann.build_primary(xb, ids, settings)
        tombstones = np.unique(exact(xq, xb, ids, 5)[1])  # the 5 nearest of each query
        engine = load(tmp_path, index, plan, tombstones=tombstones, vectors=DictVectors(ids, xb))
        _, I = engine.search(xq, K)
        assert (I >= 0).all()
        assert not np.isin(I, tombstones).any()

    def test_padding_when_fewer_live_than_k(self) -> None:
        xb = clustered(30, 16)
        ids = np.arange(30, dtype=np.int64)
        engine = flat_engine(xb, ids, tombstones=ids[:25])
        D, I = engine.search(xb[:2], K)
        assert I.shape == D.shape == (2, K)
        assert set(I[0, :5].tolist()) == set(range(25, 30))
        assert (I[:, 5:] == -1).all()
        assert np.isneginf(D[:, 5:]).all()


class TestSecondaryMerge:
    def test_merged_by_score_equals_exact_over_both(self) -> None:
        d = 32
        x = clustered(4_000 + 10, d, seed=4)
        xa, xs, xq = x[:3_000], x[3_000:4_000], x[4_000:]
        ids_a = np.arange(3_000, dtype=np.int64)
        ids_s = np.arange(1_000, dtype=np.int64) + 10_000
        secondary = ann.new_secondary(d)
        ann.add_vectors(secondary, xs, ids_s)
        engine = flat_engine(xa, ids_a, secondary=secondary)
        D, I = engine.search(xq, K)
        gt_D, gt_I = exact(xq, np.vstack([xa, xs]), np.concatenate([ids_a, ids_s]), K)
        np.testing.assert_array_equal(I, gt_I)
        np.testing.assert_allclose(D, gt_D, rtol=1e-5)
        assert (I >= 10_000).any()  # the secondary contributes
        assert engine.ntotal == 4_000

    def test_large_secondary_is_probed_through_ivf_with_recall(self) -> None:
        d = 64
        n = SECONDARY_IVF_MIN * 2
        x = clustered(n + 1_000 + 100, d, seed=6)
        xa, xs, xq = x[:1_000], x[1_000 : 1_000 + n], x[1_000 + n :]
        ids_a = np.arange(1_000, dtype=np.int64)
        ids_s = np.arange(n, dtype=np.int64) + 100_000
        secondary = ann.new_secondary(d)
        ann.add_vectors(secondary, xs, ids_s)
        dead = ids_s[:50]
        engine = flat_engine(xa, ids_a, secondary=secondary, tombstones=dead)
        assert isinstance(engine._secondary, faiss.IndexIVFFlat)
        D, I = engine.search(xq, K)
        live = ~np.isin(ids_s, dead)
        _, gt_I = exact(xq, np.vstack([xa, xs[live]]), np.concatenate([ids_a, ids_s[live]]), K)
        assert recall_at(I, gt_I) >= 0.95
        assert not np.isin(I, dead).any()
        assert (I >= 0).all() and (np.diff(D, axis=1) <= 1e-6).all()

    def test_secondary_only(self) -> None:
        secondary = ann.new_secondary(8)
        ann.add_vectors(secondary, clustered(10, 8), np.arange(10))
        engine = SearchEngine(
            None, secondary, np.zeros(0), None, index_type="flat", nprobe=0, rerank_factor=1
        )
        _, I = engine.search(clustered(10, 8)[:3], 4)
        assert I[:, 0].tolist() == [0, 1, 2]


class TestBatchesAndThreads:
    def test_batch_equals_single_queries(self) -> None:
        x = clustered(2_000 + 16, 32, seed=5)
        engine = flat_engine(x[:2_000], np.arange(2_000))
        _, I = engine.search(x[2_000:], K)
        for q in range(16):
            _, Iq = engine.search(x[2_000 + q : 2_001 + q], K)
            np.testing.assert_array_equal(Iq[0], I[q])

    def test_concurrent_callers(self, tmp_path: Path) -> None:
        x = clustered(8_000 + 64, 32, seed=6)
        xb, xq = x[:8_000], x[8_000:]
        index, plan, _ = ann.build_primary(xb, np.arange(8_000), IVF)
        engine = load(tmp_path, index, plan)
        expected = engine.search(xq, K)[1]
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda q: engine.search(xq[q : q + 1], K)[1], range(64)))
        np.testing.assert_array_equal(np.vstack(results), expected)


class TestLoad:
    def test_nprobe_from_params_or_override(self, tmp_path: Path) -> None:
        xb = clustered(8_000, 16)
        index, plan, _ = ann.build_primary(xb, np.arange(8_000), IVF)
        engine = load(tmp_path, index, plan)
        assert engine.nprobe == plan.nprobe
        assert engine._primary is not None
        assert faiss.extract_index_ivf(engine._primary).nprobe == plan.nprobe
        engine = load(tmp_path, index, plan, nprobe=3)
        assert engine._primary is not None
        assert faiss.extract_index_ivf(engine._primary).nprobe == 3
        assert engine.dim == 16
        assert engine.ntotal == 8_000

    def test_missing_and_corrupt_files(self, tmp_path: Path) -> None:
        with pytest.raises(errors.IndexFormatError, match="missing"):
            SearchEngine.load(
                tmp_path / "primary.faiss", tmp_path / "s.faiss", np.zeros(0), None, "flat", {}
            )
        (tmp_path / "primary.faiss").write_bytes(b"not an index")
        with pytest.raises(errors.IndexFormatError, match="cannot read"):
            SearchEngine.load(
                tmp_path / "primary.faiss", tmp_path / "s.faiss", np.zeros(0), None, "flat", {}
            )

    def test_bad_queries(self) -> None:
        engine = flat_engine(clustered(10, 8), np.arange(10))
        with pytest.raises(errors.QueryError):
            engine.search(clustered(2, 8), 0)
        with pytest.raises(errors.DimensionMismatchError):
            engine.search(clustered(2, 4), 5)

    def test_close(self) -> None:
        engine = flat_engine(clustered(10, 8), np.arange(10))
        engine.close()
        assert engine.ntotal == 0
        _, I = engine.search(clustered(1, 8), 3)
        assert (I == -1).all()
