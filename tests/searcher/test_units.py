"""Small pieces on their own: path normalisation, RRF, micro-batching."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np
import pytest

from codeintel.core import errors
from codeintel.searcher import paths, semantic


class TestNormalise:
    @pytest.mark.parametrize(
        ("given", "expected"),
        [("a/b.py", "a/b.py"), ("./a//b.py", "a/b.py"), ("a\\b.py", "a/b.py"), ("a/./b/", "a/b")],
    )
    def test_spellings(self, given: str, expected: str) -> None:
        assert paths.normalise(given) == expected

    @pytest.mark.parametrize(
        "bad", ["../x", "a/../../x", "/etc/passwd", "C:/x", "a\x00b", "", "./"]
    )
    def test_refused(self, bad: str) -> None:
        with pytest.raises(errors.QueryError) as e:
            paths.normalise(bad)
        assert e.value.field == "path"

    def test_confine_refuses_symlinks_leaving_the_root(self, tmp_path: Path) -> None:
        (tmp_path / "inside.txt").write_text("x")
        (tmp_path / "ok").symlink_to("inside.txt")
        (tmp_path / "out").symlink_to("/etc")
        paths.confine(tmp_path, "ok")
        with pytest.raises(errors.QueryError):
            paths.confine(tmp_path, "out/passwd")


def test_rrf_rewards_agreement() -> None:
    fused = semantic.rrf([(1, 0.9), (2, 0.8), (3, 0.7)], [(3, 9.0), (4, 8.0)])
    assert [i for i, _ in fused][:2] == [3, 1]


class _Engine:
    def __init__(self, xb: np.ndarray) -> None:
        self.index = faiss.IndexFlatIP(xb.shape[1])
        self.index.add(xb)
        self.calls: list[int] = []

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.calls.append(len(xq))
        D, I = self.index.search(xq, k)
        return D, I


async def test_micro_batching_coalesces_and_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    xb = rng.standard_normal((500, 16)).astype(np.float32)
    table = {f"q{i}": rng.standard_normal(16).astype(np.float32) for i in range(40)}
    embeds: list[int] = []

    async def embed(texts: Sequence[str]) -> np.ndarray:
        embeds.append(len(texts))
        await asyncio.sleep(0.005)
        return np.stack([table[t] for t in texts])

    async def run(fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.to_thread(fn, *args)

    engine = _Engine(xb)
    batcher = semantic.QueryBatcher(embed, run, window=0.01, max_batch=16, max_inflight=2)
    results = await asyncio.gather(*(batcher.search(engine, q, 5) for q in table))
    assert len(embeds) < len(table) / 4
    assert max(embeds) <= 16
    truth_D, truth_I = faiss.IndexFlatIP(16), None
    truth_D.add(xb)
    for (_, I), q in zip(results, table, strict=True):
        _, truth_I = truth_D.search(table[q][None, :], 5)
        assert I.tolist() == truth_I[0].tolist()
    await batcher.aclose()


async def test_batcher_fails_every_query_of_a_failed_batch() -> None:
    async def embed(texts: Sequence[str]) -> np.ndarray:
        raise errors.EmbeddingError("model down")

    async def run(fn, *args):  # type: ignore[no-untyped-def]
        return fn(*args)

    batcher = semantic.QueryBatcher(embed, run, window=0.001)
    outcome = await asyncio.gather(
        *(batcher.search(_Engine(np.eye(4, dtype=np.float32)), "q", 1) for _ in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(o, errors.EmbeddingError) for o in outcome)
