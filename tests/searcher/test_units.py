"""Small pieces on their own: path normalisation, RRF, micro-batching, ripgrep order, metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from codeintel.core import errors, hits
from codeintel.core.settings import Settings
from codeintel.searcher import merging, models, paths, semantic, textsearch
from codeintel.searcher.context import AppContext


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
    fused = hits.rrf([(1, 0.9), (2, 0.8), (3, 0.7)], [(3, 9.0), (4, 8.0)])
    assert [i for i, _ in fused][:2] == [3, 1]


def test_weighted_rrf_leans_on_the_heavier_ranking() -> None:
    dense, bm25 = [(1, 0.9), (2, 0.8)], [(2, 9.0), (1, 8.0)]
    assert hits.rrf(dense, bm25, weights=(1.0, 3.0))[0][0] == 2
    assert hits.rrf(dense, bm25, weights=(3.0, 1.0))[0][0] == 1


class TestScoreFusion:
    def test_scales_each_ranking_then_weighs_them(self) -> None:
        dense = [(1, 0.80), (2, 0.79), (3, 0.40)]  # 2 is nearly as close as 1
        bm25 = [(2, 30.0), (4, 10.0), (1, 5.0)]  # and far ahead lexically
        fused = hits.minmax(dense, bm25, 0.5)
        assert [i for i, _ in fused][:2] == [2, 1]
        assert fused[0][1] == pytest.approx(0.5 * (0.39 / 0.40) + 0.5)
        assert [i for i, _ in hits.minmax(dense, bm25, 0.0)][:3] == [1, 2, 3]

    def test_one_side_empty_or_flat(self) -> None:
        assert hits.minmax([(1, 0.5), (2, 0.4)], [], 0.7) == [(1, pytest.approx(0.3)), (2, 0.0)]
        assert hits.minmax([], [(5, 2.0)], 0.7) == [(5, pytest.approx(0.7))]

    def test_fusion_follows_the_query_kind(self, monkeypatch: pytest.MonkeyPatch) -> None:
        dense, bm25 = [(1, 0.9), (2, 0.1)], [(2, 9.0), (1, 1.0)]
        monkeypatch.setattr(
            hits,
            "FUSION",
            {
                "code": hits.Fusion("minmax", 0.9),
                "keywords": hits.Fusion("rrf", 5.0, 5),
                "prose": hits.Fusion("minmax", 0.1),
            },
        )
        assert hits.fuse("parse_args", dense, bm25)[0][0] == 2  # code leans lexical
        assert hits.fuse("where are the arguments parsed", dense, bm25)[0][0] == 1
        assert hits.fuse("parse args", dense, bm25)[0][0] == 2  # keywords: rrf, BM25 x5


def test_hybrid_is_the_default_mode() -> None:
    from codeintel.cli import parser as cli_parser

    assert models.SemanticSearchRequest(query="x").mode == "hybrid"
    assert cli_parser.build().parse_args(["search", "q", "--store", "s"]).mode == "hybrid"


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


async def test_one_query_over_many_stores_is_embedded_once_and_searched_in_one_hop() -> None:
    """A cross-repository query is one pending item per store, all with the same text."""
    rng = np.random.default_rng(1)
    engines = [_Engine(rng.standard_normal((50, 8)).astype(np.float32)) for _ in range(30)]
    query = rng.standard_normal(8).astype(np.float32)
    embedded: list[list[str]] = []
    hops: list[str] = []

    async def embed(texts: Sequence[str]) -> np.ndarray:
        embedded.append(list(texts))
        return np.stack([query for _ in texts])

    async def run(fn, *args):  # type: ignore[no-untyped-def]
        hops.append(fn.__name__)
        return await asyncio.to_thread(fn, *args)

    batcher = semantic.QueryBatcher(embed, run, window=0.01, max_batch=64, max_inflight=1)
    results = await asyncio.gather(*(batcher.search(e, "where is x", 3) for e in engines))
    assert embedded == [["where is x"]]
    assert len(hops) == 1
    for engine, (_, I) in zip(engines, results, strict=True):
        assert engine.calls == [1]
        assert I.tolist() == engine.index.search(query[None, :], 3)[1][0].tolist()
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


async def test_one_bad_query_fails_alone_in_a_batch(local_embedder: Any) -> None:
    # The real tokenizer refuses a lone surrogate (TypeError); the 15 others must still answer.
    rng = np.random.default_rng(1)
    xb = rng.standard_normal((200, local_embedder.dim)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    engine = _Engine(xb)
    batches: list[int] = []

    async def run(fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.to_thread(fn, *args)

    batcher = semantic.QueryBatcher(
        local_embedder.aembed, run, window=0.05, max_batch=64, on_batch=batches.append
    )
    queries = [f"parse an invoice {i}" for i in range(15)]
    outcome = await asyncio.gather(
        batcher.search(engine, "\ud800 abc", 5),
        *(batcher.search(engine, q, 5) for q in queries),
        return_exceptions=True,
    )
    await batcher.aclose()
    assert batches == [16]  # they did share one batch
    assert isinstance(outcome[0], Exception)
    alone = await local_embedder.aembed(queries)
    for q, (_, I) in enumerate(outcome[1:]):  # type: ignore[misc]
        _, truth = engine.index.search(alone[q : q + 1], 5)
        assert I.tolist() == truth[0].tolist()


async def test_a_down_embedder_is_not_retried_per_query() -> None:
    calls: list[int] = []

    async def embed(texts: Sequence[str]) -> np.ndarray:
        calls.append(len(texts))
        raise errors.EmbeddingTimeoutError("no answer in 30 s")

    async def run(fn, *args):  # type: ignore[no-untyped-def]
        return fn(*args)

    batcher = semantic.QueryBatcher(embed, run, window=0.01)
    engine = _Engine(np.eye(4, dtype=np.float32))
    outcome = await asyncio.gather(
        *(batcher.search(engine, f"q{i}", 1) for i in range(8)), return_exceptions=True
    )
    assert all(isinstance(o, errors.EmbeddingTimeoutError) for o in outcome)
    assert calls == [8]


@pytest.fixture(scope="module")
def rg_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rg-order")
    rng = np.random.default_rng(7)
    names = [f"pkg{rng.integers(0, 9)}/mod_{i:03d}.py" for i in range(240)]
    # names where path order and component order differ: "a b", "a.txt", "a/..."
    names += ["a/b.py", "a b.py", "a.py", "a-b/c.py", "a_b.py", "Z.py", "é.py"]
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"needle {j}\n" for j in range(int(rng.integers(1, 5)))))
    return root


class TestDeterministicTruncation:
    async def test_a_cut_answer_is_the_sorted_prefix_every_time(self, rg_tree: Path) -> None:
        everything = await textsearch.search(rg_tree, "needle", max_results=10_000)
        full = everything.matches
        assert everything.exact and everything.total == len(full) > 400
        assert sum(everything.per_file.values()) == len(full)
        for limit in (1, 7, 50, 333):
            for _ in range(5):
                cut = await textsearch.search(rg_tree, "needle", max_results=limit, prune=False)
                assert cut.exact and cut.total == len(full)
                assert cut.matches == full[:limit]
                # every file holds it: through the index, a sorted run stopped past the page
                common = await textsearch.search(rg_tree, "needle", max_results=limit)
                assert common.matches == full[:limit]
                assert common.total == len(full) if common.exact else common.total > limit

    async def test_pages_tile_the_whole_list(self, rg_tree: Path) -> None:
        full = (await textsearch.search(rg_tree, "needle", max_results=10_000)).matches
        pages = []
        for offset in range(0, len(full), 97):
            found = await textsearch.search(rg_tree, "needle", max_results=97, offset=offset)
            pages.extend(found.matches)
        assert pages == full

    async def test_past_the_scan_cap_a_sorted_pass_keeps_the_order(
        self, rg_tree: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        full = (await textsearch.search(rg_tree, "needle", max_results=10_000)).matches
        monkeypatch.setattr(textsearch, "MAX_SCAN", 50)
        cut = await textsearch.search(rg_tree, "needle", max_results=20, offset=10)
        assert not cut.exact and cut.total >= 30
        assert cut.matches == full[10:30]

    async def test_order_is_by_path_component_then_line(self, rg_tree: Path) -> None:
        full = (await textsearch.search(rg_tree, "needle", max_results=10_000)).matches
        keys = [(m.path.split("/"), m.line) for m in full]
        assert keys == sorted(keys)
        assert [m.path for m in full].index("a/b.py") < [m.path for m in full].index("a b.py")


async def test_a_cancelled_call_is_not_counted_as_a_server_error(
    store_settings: Settings, local_embedder: Any
) -> None:
    # A semantic query parked in the batcher's window is cancelled, as a client disconnect does.
    settings = store_settings.replace(server={"batch_window_seconds": 5.0})
    context = AppContext(settings, embedder=local_embedder)
    await context.start()
    try:
        await context.wait_ready(60)
        tools = context.tools
        request = models.SemanticSearchRequest(query="send an email")
        task = asyncio.create_task(tools.call("semantic_search", request))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        exposition = context.metrics.exposition().decode()
        assert (
            'codeintel_requests_total{status="cancelled",tool="semantic_search"} 1.0' in exposition
        )
        assert 'status="500"' not in exposition
    finally:
        await context.aclose()


async def test_plain_output_keeps_columns_colons_and_odd_bytes(tmp_path: Path) -> None:
    # ripgrep's plain stream is split on bytes: a colon in a path or a line, a column
    # after multibyte characters, bytes that are not UTF-8 and a long line all survive.
    (tmp_path / "dir:x").mkdir()
    (tmp_path / "dir:x" / "a.py").write_text("x = 1\n\u00e9t\u00e9: needle: 2\n", encoding="utf-8")
    (tmp_path / "latin.txt").write_bytes(b"caf\xe9 needle\n")
    (tmp_path / "long.txt").write_text("needle" + "y" * 2000 + "\r\n")
    found = await textsearch.search(tmp_path, "needle")
    assert found.exact and found.total == 3
    assert found.per_file == {"dir:x/a.py": 1, "latin.txt": 1, "long.txt": 1}
    first, latin, long = found.matches
    assert (first.path, first.line, first.column, first.text) == (
        "dir:x/a.py",
        2,
        6,
        "\u00e9t\u00e9: needle: 2",
    )
    assert (latin.column, latin.text) == (6, "caf\ufffd needle")
    assert long.length == 2006 and long.text == ("needle" + "y" * 2000)[: models.MAX_LINE_CHARS]


def test_merged_text_pages_keep_each_repositorys_own_order() -> None:
    # A store pages its matches path component by component ("a/b.py" before "a-b.py");
    # the merge takes a prefix of each repository's rows, so its cursor can resume
    # each repository at the count it took.
    def rows(repo: str, paths: list[str]) -> dict[str, object]:
        return {
            "results": [{"repo": repo, "path": p, "line": 1, "column": 1} for p in paths],
            "repos": {repo: {"generation": "g000001", "commit": "c" * 40}},
        }

    mine = ["a/b.py", "a-b.py", "a.py"]
    merged = merging.text([rows("r1", ["x.py"]), rows("r2", mine)], 2)
    taken = [r["path"] for r in merged["results"] if r["repo"] == "r2"]
    assert taken == mine[: len(taken)]
