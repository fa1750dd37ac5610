"""vectors/: float16 segments by id, ordered lookups for re-ranking, batches for merges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codeintel.core import errors
from codeintel.core.store.vectors import VectorStore

DIM = 16
Segments = tuple[Path, np.ndarray, np.ndarray]


def unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def two_segments(tmp_path: Path) -> Segments:
    """Segment a holds ids 0..99 (written shuffled), segment b ids 100..149."""
    ids = np.arange(150, dtype=np.int64)
    xb = unit_vectors(150)
    shuffle = np.random.default_rng(1).permutation(100)
    VectorStore.write_segment(tmp_path, "g000001", ids[:100][shuffle], xb[:100][shuffle])
    VectorStore.write_segment(tmp_path, "g000002", ids[100:], xb[100:])
    return tmp_path, ids, xb


class TestWriteSegment:
    def test_writes_sorted_int64_ids_and_float16_rows(self, tmp_path: Path) -> None:
        names = VectorStore.write_segment(
            tmp_path, "s", np.array([5, 1, 3], np.int32), unit_vectors(3)
        )
        assert names == ["s.ids.npy", "s.f16.npy"]
        ids = np.load(tmp_path / "s.ids.npy")
        assert ids.dtype == np.int64
        assert ids.tolist() == [1, 3, 5]
        assert np.load(tmp_path / "s.f16.npy").dtype == np.float16
        assert not list(tmp_path.glob(".*"))  # no temp files left

    def test_dimension_must_match_existing_segments(self, tmp_path: Path) -> None:
        VectorStore.write_segment(tmp_path, "a", np.arange(2), unit_vectors(2))
        with pytest.raises(errors.DimensionMismatchError, match="dimension 8"):
            VectorStore.write_segment(tmp_path, "b", np.arange(2, 4), np.ones((2, 8)))

    @pytest.mark.parametrize(
        ("ids", "xb", "message"),
        [
            (np.arange(3), np.ones((2, DIM)), "3 ids for 2 vectors"),
            (np.arange(3), np.ones(3), "2-d"),
            (np.array([1.5, 2.5]), np.ones((2, DIM)), "integer"),
            (np.array([1, 1]), np.ones((2, DIM)), "duplicate"),
            (np.array([3, 1, 3]), np.ones((3, DIM)), "duplicate"),
            (np.arange(2), np.full((2, DIM), 1e6), "finite"),
        ],
    )
    def test_bad_input_is_an_index_format_error(
        self, tmp_path: Path, ids: np.ndarray, xb: np.ndarray, message: str
    ) -> None:
        with pytest.raises(errors.IndexFormatError, match=message):
            VectorStore.write_segment(tmp_path, "s", ids, xb)

    def test_empty_segment_keeps_its_dimension(self, tmp_path: Path) -> None:
        VectorStore.write_segment(tmp_path, "a", np.empty(0, np.int64), np.empty((0, DIM)))
        store = VectorStore.open(tmp_path)
        assert (len(store), store.dim) == (0, DIM)
        assert list(store.iter_batches(10)) == []

    def test_nothing_embedded_writes_nothing(self, tmp_path: Path) -> None:
        assert VectorStore.write_segment(tmp_path, "a", np.empty(0), np.empty((0, 0))) == []
        assert len(VectorStore.open(tmp_path)) == 0

    def test_segments_are_never_overwritten(self, tmp_path: Path) -> None:
        VectorStore.write_segment(tmp_path, "s", np.arange(2), unit_vectors(2))
        with pytest.raises(FileExistsError):
            VectorStore.write_segment(tmp_path, "s", np.arange(2, 4), unit_vectors(2))


class TestLookup:
    def test_round_trip_within_float16_tolerance(self, two_segments: Segments) -> None:
        directory, ids, xb = two_segments
        store = VectorStore.open(directory)
        assert store.dim == DIM
        assert len(store) == 150
        assert sorted(p.name for p in directory.glob("*.ids.npy")) == [
            "g000001.ids.npy",
            "g000002.ids.npy",
        ]
        assert store.ids().tolist() == ids.tolist()
        got = store.get(ids)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, xb, atol=1e-3)

    def test_get_preserves_the_order_asked(self, two_segments: Segments) -> None:
        directory, _, xb = two_segments
        store = VectorStore.open(directory)
        asked = np.array([149, 3, 120, 0, 3, 77])
        np.testing.assert_allclose(store.get(asked), xb[asked], atol=1e-3)

    def test_missing_id_is_a_key_error_naming_it(self, two_segments: Segments) -> None:
        store = VectorStore.open(two_segments[0])
        with pytest.raises(KeyError, match="chunk id 150 "):
            store.get(np.array([1, 150]))
        with pytest.raises(KeyError, match="chunk id -1 "):
            store.get(np.array([-1]))

    def test_empty_request_and_empty_store(self, tmp_path: Path) -> None:
        store = VectorStore.open(tmp_path / "absent")
        assert len(store) == 0
        assert store.dim == 0
        assert store.get(np.array([], np.int64)).shape == (0, 0)
        with pytest.raises(KeyError):
            store.get(np.array([1]))

    def test_ids_are_read_only(self, two_segments: Segments) -> None:
        store = VectorStore.open(two_segments[0])
        with pytest.raises(ValueError, match="read-only"):
            store.ids()[0] = 7


class TestIterBatches:
    def test_covers_every_vector_in_bounded_batches(self, two_segments: Segments) -> None:
        directory, ids, xb = two_segments
        batches = list(VectorStore.open(directory).iter_batches(32))
        assert max(len(b) for b, _ in batches) <= 32
        got_ids = np.concatenate([b for b, _ in batches])
        assert sorted(got_ids.tolist()) == ids.tolist()
        got = np.concatenate([v for _, v in batches])
        np.testing.assert_allclose(got, xb[got_ids], atol=1e-3)

    def test_excludes_tombstones(self, two_segments: Segments) -> None:
        directory, ids, _ = two_segments
        dead = np.array([0, 5, 99, 100, 149, 10_000])
        batches = VectorStore.open(directory).iter_batches(40, exclude=dead)
        live = np.concatenate([b for b, _ in batches])
        assert sorted(live.tolist()) == sorted(set(ids.tolist()) - set(dead.tolist()))

    def test_batch_must_be_positive(self, two_segments: Segments) -> None:
        with pytest.raises(ValueError, match="positive"):
            next(VectorStore.open(two_segments[0]).iter_batches(0))


class TestCorruption:
    def test_duplicate_id_across_segments(self, tmp_path: Path) -> None:
        VectorStore.write_segment(tmp_path, "a", np.array([1, 2]), unit_vectors(2))
        VectorStore.write_segment(tmp_path, "b", np.array([2, 3]), unit_vectors(2))
        with pytest.raises(errors.IndexFormatError, match="chunk id 2 is stored twice"):
            VectorStore.open(tmp_path)

    def test_segment_without_its_rows(self, tmp_path: Path) -> None:
        VectorStore.write_segment(tmp_path, "a", np.array([1, 2]), unit_vectors(2))
        (tmp_path / "a.f16.npy").unlink()
        with pytest.raises(errors.IndexFormatError, match=r"a\.f16\.npy"):
            VectorStore.open(tmp_path)

    def test_truncated_rows(self, tmp_path: Path) -> None:
        VectorStore.write_segment(tmp_path, "a", np.arange(50), unit_vectors(50))
        path = tmp_path / "a.f16.npy"
        path.write_bytes(path.read_bytes()[:200])
        with pytest.raises(errors.IndexFormatError, match="corrupt vector segment"):
            VectorStore.open(tmp_path)
