"""The numpy BM25 of a loaded generation ranks as FTS5 through build, update and merge.

A searcher reads each generation's FTS index into an impact index when it loads it
(core/store/impact.py); an update deletes rows from the contentless FTS table and
adds others, a merge rewrites the store: each must still give FTS5's ranking."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import codeintel
from codeintel.core import hits
from codeintel.core.settings import Settings
from codeintel.core.store import Store
from codeintel.core.store.chunks import ChunkDB
from codeintel.searcher import generations
from lexical_ranking import FILTERS, QUERIES, assert_same_ranking

pytestmark = pytest.mark.slow

SOURCE = Path(codeintel.__file__).parent
MORE = ("core/lexical.py", "core/globs.py", "core/hits.py", "searcher/generations.py")


def _settings(store: Path) -> Settings:
    return Settings.from_env({}, store={"path": store}, index={"history": False})


def _compare(store: Store, name: str) -> None:
    with ChunkDB.open(store.open_generation(name).path / "chunks.sqlite") as plain:
        symbols = sorted({c.symbol for c in plain.get(plain.all_ids().tolist()).values()})
        with ThreadPoolExecutor(1) as executor:
            loaded = generations.load(store, name, _settings(store.root), store.root, executor)
        try:
            fast = loaded.chunks
            assert fast._impact is not None  # the searcher's load prepared it
            queries = QUERIES + [s for s in symbols if s] + ["parse invoice", "refund payment"]
            for query in queries:
                for filters in [*FILTERS, {"language": "go"}, {"path_glob": "billing/**"}]:
                    for k in (3, 40):
                        assert_same_ranking(plain, fast, query, k, **filters)
        finally:
            loaded.close()


def test_build_update_and_merge_rank_as_fts5(sample_repo, local_embedder, tmp_path):
    from codeintel.indexer import pipeline

    files = {f"pkg/{rel}": (SOURCE / rel).read_text(encoding="utf-8") for rel in MORE}
    sample_repo.commit("more code", files)
    settings = _settings(tmp_path / "store")
    pipeline.build(settings, str(sample_repo.path), local_embedder)
    store = Store(settings.store.path)
    _compare(store, store.current_name())
    # A batch of queries (the CLI, the retrieval benchmark) is scored in numpy too: same hits.
    batch = (QUERIES * 3)[: hits.PREPARE_BATCH + 1]
    one_by_one = [hits.search_store(settings, None, q, 10, "lexical") for q in batch]
    assert hits.search_store(settings, None, batch, 10, "lexical") == one_by_one

    sample_repo.commit(
        "refunds",
        {"billing/invoice.py": "def refund_payment(order_id, amount):\n    return amount\n"},
    )
    sample_repo.delete("pkg/core/globs.py")
    sample_repo.commit("drop globs")
    pipeline.update(settings, local_embedder, merge_threshold=0)
    _compare(store, store.current_name())

    pipeline.merge(settings, embedder=local_embedder)
    _compare(store, store.current_name())
