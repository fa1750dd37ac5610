"""The primary build: plans by measured cost, builds, sizes, atomic writes, the CPU fallback."""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np
import pytest

import vectors
from codeintel.core import errors, gpu
from codeintel.core.settings import IndexSettings
from codeintel.indexer import ann
from vectors import clustered

one_omp_thread = pytest.fixture(autouse=True, scope="module")(vectors.one_omp_thread)


# The type follows the measured exact-scan cost (flat_ms) against exact_budget_ms, and
# the IVF-Flat size against ivf_flat_max_bytes; tests force each with the settings.
EXACT = IndexSettings(exact_budget_ms=1e9)
IVF = IndexSettings(exact_budget_ms=0.0, pq_m=8, train_sample_max=3_000)
# Small, fast IVF-PQ: 64-d, M=8 (8-d sub-quantisers), 3K training vectors.
SMALL_PQ = IndexSettings(exact_budget_ms=0.0, ivf_flat_max_bytes=0, pq_m=8, train_sample_max=3_000)
OVER = 1e9
"""A flat_ms above any budget the plans below use: IVF of some kind."""


def plan(n: int, dim: int, settings: IndexSettings, flat_ms: float = OVER) -> ann.IndexPlan:
    return ann.plan_index(n, dim, settings, flat_ms=flat_ms)


class TestPlanByCost:
    def test_exact_while_the_scan_fits_the_budget(self) -> None:
        budget = IndexSettings().exact_budget_ms
        assert plan(35_000, 384, IndexSettings(), flat_ms=budget).type == "flat"
        assert plan(35_000, 384, IndexSettings(), flat_ms=budget * 1.01).type == "ivf_flat"
        assert plan(0, 384, IndexSettings(exact_budget_ms=0.0), flat_ms=0.0).type == "flat"

    def test_ivf_pq_only_when_ivf_flat_would_not_fit_in_memory(self) -> None:
        n, dim = 60_000, 384
        ivf_flat = ann.estimate_memory_usage(n, dim, "ivf_flat")
        assert plan(n, dim, IndexSettings(ivf_flat_max_bytes=ivf_flat)).type == "ivf_flat"
        assert plan(n, dim, IndexSettings(ivf_flat_max_bytes=ivf_flat - 1)).type == "ivf_pq"
        # the default (1 GiB) keeps ~650K x 384 in IVF-Flat
        assert plan(600_000, 384, IndexSettings()).type == "ivf_flat"
        assert plan(700_000, 384, IndexSettings()).type == "ivf_pq"

    def test_too_few_vectors_for_pq_codebooks_stay_ivf_flat(self) -> None:
        no_memory = IndexSettings(exact_budget_ms=0.0, ivf_flat_max_bytes=0)
        assert plan(ann.PQ_MIN_VECTORS - 1, 64, no_memory).type == "ivf_flat"
        assert plan(ann.PQ_MIN_VECTORS, 64, no_memory).type == "ivf_pq"
        xb = clustered(300, 16)
        index, p, _ = ann.build_primary(xb, np.arange(300), no_memory)  # PQ would not train
        assert p.type == "ivf_flat" and index.ntotal == 300

    @pytest.mark.parametrize(
        ("field", "value"),
        [("exact_budget_ms", -1.0), ("ivf_flat_max_bytes", -1), ("calibration_recall", 1.5)],
    )
    def test_bad_settings_are_refused(self, field: str, value: float) -> None:
        with pytest.raises(errors.ConfigError, match=field):
            plan(10, 64, IndexSettings(**{field: value}))


class TestPlanParameters:
    @pytest.mark.parametrize(("n", "nlist"), [(10_000, 100), (40_000, 200), (50_000, 224)])
    def test_ivf_flat_nlist_is_sqrt_n(self, n: int, nlist: int) -> None:
        p = plan(n, 384, IndexSettings())
        assert (p.nlist, p.factory) == (nlist, f"IVF{nlist},Flat")

    def test_nlist_leaves_39_training_points_per_centroid(self) -> None:
        assert plan(1_000, 64, IndexSettings()).nlist == 1_000 // ann.MIN_POINTS_PER_CENTROID
        p = plan(50_000, 64, IndexSettings(train_sample_max=2_000))
        assert p.nlist == 2_000 // ann.MIN_POINTS_PER_CENTROID

    @pytest.mark.parametrize(
        ("n", "sample", "nlist"),
        [
            (60_000, 100_000, 1024),  # max(1024, sqrt n)
            (400_000, 100_000, 1024),
            (2_000_000, 1_000_000, 5657),  # 4 sqrt n above 500K
            (200_000, 20_000, 512),  # capped: 39 training points per centroid
        ],
    )
    def test_ivf_pq_nlist(self, n: int, sample: int, nlist: int) -> None:
        p = plan(n, 384, IndexSettings(train_sample_max=sample, ivf_flat_max_bytes=0))
        assert p.type == "ivf_pq"
        assert p.nlist == nlist
        assert p.factory == f"IVF{nlist},PQ64np"  # no polysemous training
        assert p.rerank_factor == IndexSettings().rerank_factor

    @pytest.mark.parametrize(("dim", "pq_m", "m"), [(384, 64, 64), (100, 64, 50), (96, 64, 48)])
    def test_pq_m_divides_dim(self, dim: int, pq_m: int, m: int) -> None:
        p = plan(60_000, dim, IndexSettings(pq_m=pq_m, ivf_flat_max_bytes=0))
        assert p.pq_m == m
        assert dim % p.pq_m == 0

    def test_fallback_nprobe_and_override(self) -> None:
        pq = IndexSettings(ivf_flat_max_bytes=0)
        assert plan(60_000, 384, pq).nprobe == 64  # nlist / 16
        assert plan(60_000, 384, IndexSettings(nprobe=7)).nprobe == 7
        assert plan(40_000, 384, IndexSettings()).nprobe == 50  # nlist / 4

    def test_opq_is_opt_in(self) -> None:
        p = plan(60_000, 384, IndexSettings(use_opq=True, ivf_flat_max_bytes=0))
        assert p.opq
        assert p.factory == "OPQ64,IVF1024,PQ64np"

    def test_params_dict_is_plain(self) -> None:
        p = plan(60_000, 384, IndexSettings(ivf_flat_max_bytes=0))
        params = ann.params_dict(p)
        assert params["type"] == "ivf_pq"
        assert params["nprobe"] == p.nprobe
        assert set(params) >= {"nlist", "pq_m", "opq", "rerank_factor", "factory"}
        assert "calibration" not in params  # the manifest's index.calibration holds it


class TestBuildPrimary:
    @pytest.mark.parametrize(
        ("n", "settings", "kind"),
        [
            (800, EXACT, "flat"),
            (3_000, IVF, "ivf_flat"),
            (6_000, SMALL_PQ, "ivf_pq"),
        ],
    )
    def test_each_type(
        self, n: int, settings: IndexSettings, kind: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        xb = clustered(n, 64)
        ids = np.arange(n, dtype=np.int64) * 7 + 1000
        with caplog.at_level(logging.INFO, logger="codeintel.indexer.ann"):
            index, plan, timings = ann.build_primary(xb, ids, settings)
        assert plan.type == kind
        assert isinstance(index, faiss.IndexIDMap2)
        assert index.ntotal == n
        assert set(timings) == {"measure", "train", "add", "calibrate"}
        assert plan.calibration is not None and plan.calibration.flat_ms > 0
        np.testing.assert_array_equal(faiss.vector_to_array(index.id_map), ids)
        if kind != "flat":
            assert faiss.extract_index_ivf(index).nprobe == plan.nprobe
        message = caplog.records[-1].getMessage()
        assert f"n={n}" in message
        assert f"type={kind}" in message
        assert f"nlist={plan.nlist}" in message
        assert "train=" in message
        assert "exact scan" in message

    def test_training_sample_is_capped(self) -> None:
        xb = clustered(5_000, 32)
        sample = ann._training_sample(xb, 1_000)
        assert sample.shape == (1_000, 32)
        np.testing.assert_array_equal(sample, ann._training_sample(xb, 1_000))  # seeded

    def test_shapes_are_checked(self) -> None:
        with pytest.raises(ValueError, match="ids"):
            ann.build_primary(clustered(10, 8), np.arange(9), IndexSettings())
        with pytest.raises(ValueError, match="2-D"):
            ann.build_primary(np.zeros(8, np.float32), np.arange(1), IndexSettings())


class TestSecondary:
    def test_add_vectors(self) -> None:
        index = ann.new_secondary(16)
        ann.add_vectors(index, clustered(50, 16), np.arange(50) + 10)
        assert index.ntotal == 50
        _, labels = index.search(clustered(50, 16)[:1], 1)
        assert labels[0, 0] == 10

    def test_dimension_mismatch(self) -> None:
        with pytest.raises(errors.DimensionMismatchError):
            ann.add_vectors(ann.new_secondary(16), clustered(5, 8), np.arange(5))


class TestEstimateMemoryUsage:
    @pytest.mark.parametrize(
        ("n", "kind"),
        [
            (500, "flat"),
            (900, "flat"),
            (2_000, "ivf_flat"),
            (3_500, "ivf_flat"),
            (5_000, "ivf_pq"),
            (12_000, "ivf_pq"),
        ],
    )
    def test_within_20_percent_of_written_size(self, tmp_path: Path, n: int, kind: str) -> None:
        xb = clustered(n, 64)
        settings = {"flat": EXACT, "ivf_flat": IVF, "ivf_pq": SMALL_PQ}[kind]
        index, plan, _ = ann.build_primary(xb, np.arange(n), settings)
        assert plan.type == kind
        path = tmp_path / "primary.faiss"
        ann.write_index(index, path)
        estimate = ann.estimate_memory_usage(n, 64, kind, nlist=plan.nlist, pq_m=plan.pq_m)
        assert abs(estimate - path.stat().st_size) <= 0.2 * path.stat().st_size

    def test_default_nlist_follows_the_plan(self) -> None:
        p = plan(200_000, 384, IndexSettings(ivf_flat_max_bytes=0))
        assert ann.estimate_memory_usage(200_000, 384, "ivf_pq") == ann.estimate_memory_usage(
            200_000, 384, "ivf_pq", nlist=p.nlist
        )

    def test_unknown_type(self) -> None:
        with pytest.raises(errors.ConfigError):
            ann.estimate_memory_usage(10, 8, "hnsw")


class TestWriteIndex:
    def test_atomic_and_no_temp_left(self, tmp_path: Path) -> None:
        index = ann.new_secondary(8)
        ann.add_vectors(index, clustered(20, 8), np.arange(20))
        path = tmp_path / "secondary.faiss"
        ann.write_index(index, path)
        ann.write_index(index, path)  # replaces an existing file
        assert [p.name for p in tmp_path.iterdir()] == ["secondary.faiss"]
        assert faiss.read_index(str(path)).ntotal == 20

    def test_failure_keeps_old_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        path = tmp_path / "primary.faiss"
        path.write_bytes(b"old")

        def broken(index: faiss.Index, name: str) -> None:
            Path(name).write_bytes(b"half")
            raise RuntimeError("disk full")

        monkeypatch.setattr(faiss, "write_index", broken)
        with pytest.raises(RuntimeError, match="disk full"):
            ann.write_index(ann.new_secondary(8), path)
        assert path.read_bytes() == b"old"
        assert [p.name for p in tmp_path.iterdir()] == ["primary.faiss"]


class TestGpuFallback:
    def test_no_gpu_here(self) -> None:
        assert gpu.gpu_count() == 0
        info = gpu.describe()
        assert info["gpus"] == 0
        assert info["path"] == "cpu"
        assert info["faiss_version"] == faiss.__version__
        # This machine has the CPU wheel: doctor must say so, not just "no GPU".
        assert info["build"] == "cpu"
        assert "faiss-cpu" in str(info["distribution"])

    def test_cuvs_not_wanted(self) -> None:
        assert gpu.use_cuvs(False) is False
        assert gpu.describe(False)["cuvs_wanted"] is False

    def test_gpu_failure_falls_back_to_cpu(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        # Pretend faiss sees a GPU: the CPU-only build lacks the GPU cloner, so the
        # GPU path raises and the build must still succeed on CPU.
        monkeypatch.setattr(gpu, "gpu_count", lambda: 1)
        xb = clustered(3_000, 32)
        with caplog.at_level(logging.INFO, logger="codeintel.indexer.ann"):
            index, plan, _ = ann.build_primary(xb, np.arange(3_000), IVF)
        assert plan.type == "ivf_flat"
        assert index.is_trained
        assert index.ntotal == 3_000
        assert "GPU training failed" in caplog.text
        assert "(cpu)" in caplog.records[-1].getMessage()

    def test_use_gpu_false_skips_gpu(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def no_gpu_expected(*args: object) -> faiss.Index:
            raise AssertionError("GPU path taken")

        monkeypatch.setattr(gpu, "gpu_count", lambda: 1)
        monkeypatch.setattr(ann, "_train_gpu", no_gpu_expected)
        settings = IndexSettings(exact_budget_ms=0.0, use_gpu=False)
        index, _, _ = ann.build_primary(clustered(2_000, 16), np.arange(2_000), settings)
        assert index.ntotal == 2_000


class TestFromFloat16Rows:
    """A build's rows are float16 (the stored precision); the primary is filled from them
    in float32 slices, with no float32 copy of every row (docs/performance.md)."""

    def test_flat_is_byte_for_byte_the_float32_build(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # Several slices, and a timed prefix shorter than the rows: both adds are exercised.
        monkeypatch.setattr(ann, "ADD_SLICE", 700)
        monkeypatch.setattr(ann.calibration, "FLAT_TIMING_ROWS", 1_500)
        half = clustered(4_000, 32).astype(np.float16)
        ids = np.arange(4_000, dtype=np.int64) * 7 + 3
        index16, plan16, _ = ann.build_primary(half, ids, EXACT)
        index32, plan32, _ = ann.build_primary(half.astype(np.float32), ids, EXACT)
        assert plan16.type == plan32.type == "flat" and index16.ntotal == 4_000
        assert faiss.serialize_index(index16).tobytes() == faiss.serialize_index(index32).tobytes()
        xq = half[[5, 1_700, 3_999]].astype(np.float32)
        _, found = index16.search(xq, 1)
        assert found[:, 0].tolist() == ids[[5, 1_700, 3_999]].tolist()

    @pytest.mark.parametrize("settings", [IVF, SMALL_PQ], ids=["ivf_flat", "ivf_pq"])
    def test_ivf_from_float16_matches_float32(self, settings: IndexSettings) -> None:
        half = clustered(4_000, 64, seed=5).astype(np.float16)
        ids = np.arange(4_000, dtype=np.int64)
        index16, plan16, _ = ann.build_primary(half, ids, settings)
        index32, plan32, _ = ann.build_primary(half.astype(np.float32), ids, settings)
        assert plan16.type == plan32.type != "flat"
        assert faiss.serialize_index(index16).tobytes() == faiss.serialize_index(index32).tobytes()

    @pytest.mark.parametrize("settings", [IVF, SMALL_PQ], ids=["ivf_flat", "ivf_pq"])
    def test_an_ivf_plan_past_the_timed_rows_fills_no_exact_index(
        self, monkeypatch: pytest.MonkeyPatch, settings: IndexSettings
    ) -> None:
        # An exact index of the timed prefix (131,072 rows, 200 MB at 384-d) was filled and
        # thrown away by every IVF build past it; now only the IVF index is filled.
        monkeypatch.setattr(ann.calibration, "FLAT_TIMING_ROWS", 1_000)
        filled: list[tuple[str, int]] = []
        add_slices = ann._add_slices

        def spy(index: faiss.Index, xb: np.ndarray, ids: np.ndarray) -> float:
            inner = faiss.downcast_index(faiss.downcast_index(index).index)
            filled.append((type(inner).__name__, len(ids)))
            return add_slices(index, xb, ids)

        monkeypatch.setattr(ann, "_add_slices", spy)
        half = clustered(4_000, 64, seed=5).astype(np.float16)
        index, p, _ = ann.build_primary(half, np.arange(4_000), settings)
        assert p.type != "flat" and index.ntotal == 4_000
        assert [rows for _, rows in filled] == [4_000]
        assert not any(name.startswith("IndexFlat") for name, _ in filled)

    @pytest.mark.parametrize("timed", [131_072, 1_000], ids=["all-timed", "prefix-timed"])
    @pytest.mark.parametrize("settings", [IVF, SMALL_PQ], ids=["ivf_flat", "ivf_pq"])
    def test_ivf_is_byte_for_byte_a_plain_faiss_build(
        self, monkeypatch: pytest.MonkeyPatch, settings: IndexSettings, timed: int
    ) -> None:
        # Timed on the exact index's own rows (all timed) or on a float32 prefix: the IVF
        # index is the one faiss builds from the float32 rows, whichever way it was timed.
        monkeypatch.setattr(ann.calibration, "FLAT_TIMING_ROWS", timed)
        half = clustered(4_000, 64, seed=5).astype(np.float16)
        ids = np.arange(4_000, dtype=np.int64) * 5 + 2
        index, p, _ = ann.build_primary(half, ids, settings)
        xb = half.astype(np.float32)
        inner = faiss.index_factory(64, p.factory, faiss.METRIC_INNER_PRODUCT)
        if p.type == "ivf_pq":
            ivfpq = faiss.downcast_index(faiss.extract_index_ivf(inner))
            ivfpq.pq.cp.max_points_per_centroid = ann.PQ_MAX_POINTS_PER_CENTROID
        inner.train(ann._training_sample(xb, settings.train_sample_max))
        expected = faiss.IndexIDMap2(inner)
        expected.add_with_ids(xb, ids)
        faiss.extract_index_ivf(expected).nprobe = p.nprobe
        assert faiss.serialize_index(index).tobytes() == faiss.serialize_index(expected).tobytes()

    def test_a_timed_index_that_is_not_the_prefix_is_refused(self) -> None:
        xb = clustered(100, 16)
        scan = faiss.IndexFlatIP(16)
        scan.add(xb[:50])
        with pytest.raises(ValueError, match="holds 50 rows, not the first 100"):
            ann.calibration.flat_cost_ms(xb, scan=scan)

    def test_the_flat_codes_are_reserved_once_not_regrown_per_slice(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Each add grows faiss's std::vector by doubling: the old and new buffers together
        # were +28 MB at sympy's peak. Reserved, every slice lands in one buffer.
        monkeypatch.setattr(ann, "ADD_SLICE", 100)
        half = clustered(1_000, 8).astype(np.float16)
        flat = faiss.IndexFlatIP(8)
        ann._reserve(flat, 1_000)
        exact = faiss.IndexIDMap2(flat)
        ann._add_slices(exact, half[:100], np.arange(100))
        buffer = flat.codes.data()
        ann._add_slices(exact, half[100:], np.arange(100, 1_000))
        assert flat.codes.data() == buffer and flat.ntotal == 1_000
        _, found = exact.search(half[[0, 999]].astype(np.float32), 1)
        assert found[:, 0].tolist() == [0, 999]
