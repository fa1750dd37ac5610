"""The numpy BM25 of a loaded generation ranks as FTS5 through build, update and merge.

Every generation stores its impact index (``chunks.impact``, core/store/impact_file.py)
and a searcher maps it when it loads the generation; one without it (written before
format 7) is read into memory instead. An update deletes rows from the contentless FTS
table and adds others, a merge rewrites the store: each must still give FTS5's ranking."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import pytest

import codeintel
from codeintel.core import errors, hits
from codeintel.core import store as store_mod
from codeintel.core.settings import Settings
from codeintel.core.store import Store
from codeintel.core.store.chunks import ChunkDB
from codeintel.searcher import generations
from lexical_ranking import FILTERS, QUERIES, assert_same_ranking

pytestmark = pytest.mark.slow

SOURCE = Path(codeintel.__file__).parent
MORE = ("core/lexical.py", "core/globs.py", "core/hits.py", "searcher/generations.py")


def _settings(store: Path, **index: object) -> Settings:
    return Settings.from_env({}, store={"path": store}, index={"history": False, **index})


def _stored(store: Store, name: str) -> Path:
    """The generation's impact index: written, and covered by the manifest's checksums."""
    generation = store.open_generation(name, verify=True)
    assert generation.manifest.format_version == store_mod.FORMAT_VERSION >= 7
    assert store_mod.IMPACT in generation.manifest.checksums
    return generation.path / store_mod.IMPACT


def _compare(store: Store, name: str, *, from_file: bool = True) -> None:
    with ChunkDB.open(store.open_generation(name).path / "chunks.sqlite") as plain:
        symbols = sorted({c.symbol for c in plain.get(plain.all_ids().tolist()).values()})
        with ThreadPoolExecutor(1) as executor:
            loaded = generations.load(store, name, _settings(store.root), store.root, executor)
        try:
            fast = loaded.chunks
            assert fast._impact is not None  # the searcher's load prepared it
            arrays = fast._impact.arrays().values()
            assert all(not a.flags.writeable for a in arrays) == from_file  # stored, not rebuilt
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
    built = _stored(store, store.current_name())
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
    updated = _stored(store, store.current_name())
    assert updated.read_bytes() != built.read_bytes()  # its own, of its changed database
    _compare(store, store.current_name())

    pipeline.merge(settings, embedder=local_embedder)
    merged = _stored(store, store.current_name())
    assert merged.stat().st_ino == updated.stat().st_ino  # chunks.sqlite is linked: so is it
    _compare(store, store.current_name())


def _as_format_6(generation: Path) -> None:
    """Make ``generation`` what format 6 wrote: no ``chunks.impact``, none in its manifest."""
    manifest = store_mod.decode_manifest((generation / store_mod.MANIFEST).read_bytes())
    (generation / store_mod.IMPACT).unlink()
    sums = {k: v for k, v in manifest.checksums.items() if k != store_mod.IMPACT}
    older = msgspec.structs.replace(manifest, format_version=6, checksums=sums)
    (generation / store_mod.MANIFEST).chmod(0o644)
    (generation / store_mod.MANIFEST).write_bytes(store_mod.encode_manifest(older))


def test_older_generations_and_a_damaged_file(sample_repo, local_embedder, tmp_path):
    """A generation without the file is read into memory; its update and merge write one;
    a damaged file fails the generation's checksums, and the store serves the one before."""
    from codeintel.indexer import pipeline

    settings = _settings(tmp_path / "store")
    pipeline.build(settings, str(sample_repo.path), local_embedder)
    store = Store(settings.store.path)
    first = store.current_name()
    _as_format_6(store.open_generation(first, verify=False).path)
    _compare(store, first, from_file=False)
    pipeline.merge(settings, embedder=local_embedder)  # links chunks.sqlite, writes the index
    merged = store.current_name()
    _stored(store, merged)
    _compare(store, merged)

    sample_repo.commit("refunds", {"billing/refund.py": "def refund(order):\n    return 0\n"})
    pipeline.update(settings, local_embedder, merge_threshold=0)
    damaged = store.current_name()
    impact = _stored(store, damaged)
    data = bytearray(impact.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit in the postings
    impact.chmod(0o644)
    impact.write_bytes(bytes(data))
    with pytest.raises(errors.IndexFormatError, match=r"checksum mismatch .*chunks\.impact"):
        store.open_generation(damaged, verify=True)
    previous, serving = store.rollback()
    assert (previous, serving.name) == (damaged, merged)
    _compare(store, merged)


def test_a_progressive_build_links_the_first_generations_file(
    sample_repo, local_embedder, tmp_path
):
    from codeintel.indexer import pipeline

    settings = _settings(tmp_path / "store", first_pass_seconds=600, first_pass_max_chunks=2)
    pipeline.build(settings, str(sample_repo.path), local_embedder, progressive=True)
    store = Store(settings.store.path)
    full = store.open_generation(store.current_name())
    assert full.manifest.parent is not None and full.manifest.dense_coverage is None
    first = _stored(store, full.manifest.parent)
    assert _stored(store, full.name).stat().st_ino == first.stat().st_ino
    _compare(store, full.name)
