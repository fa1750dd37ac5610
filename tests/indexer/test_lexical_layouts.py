"""The chunk database's layout through build, update and merge (docs/architecture.md, *Lexical search and hybrid ranking*).

A build writes schema 2; an update copies its parent's database and must keep
writing the parent's layout (an old schema-1 store stays schema 1, readable by
older readers); a merge keeps the same file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from codeintel.core import store as store_mod
from codeintel.core.settings import Settings
from codeintel.core.store import Store
from codeintel.core.store.chunks import ChunkDB
from codeintel.indexer import pipeline

pytestmark = pytest.mark.slow

CHANGE = {
    "billing/invoice.py": (
        "def refund_payment(order_id, amount):\n    return {'order': order_id, 'refunded': amount}\n"
    ),
}


def _settings(store: Path) -> Settings:
    return Settings.from_env({}, store={"path": store}, index={"history": False})


def _lexical(generation: store_mod.Generation, query: str) -> list[str]:
    with generation.chunks() as db:
        found = db.get([i for i, _ in db.lexical(query, 10)])
        return [found[i].symbol for i, _ in db.lexical(query, 10)]


def _downgrade_to_schema_1(generation: store_mod.Generation) -> None:
    """Rewrite a published generation's chunks.sqlite in the schema-1 layout of older
    stores, as a store written before schema 2 holds it (checksum and reader version too)."""
    path = generation.path / store_mod.CHUNKS_DB
    with generation.chunks() as db:
        rows = list(db.get(db.all_ids().tolist()).values())
    os.chmod(generation.path, stat.S_IRWXU)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    path.unlink()
    with ChunkDB.create(path, None) as old:
        old.add(rows)
    manifest_path = generation.path / store_mod.MANIFEST
    os.chmod(manifest_path, stat.S_IRUSR | stat.S_IWUSR)
    raw = json.loads(manifest_path.read_text())
    raw["checksums"][store_mod.CHUNKS_DB] = store_mod.file_checksum(path)
    raw.update(format_version=2, min_reader_version=1)
    manifest_path.write_text(json.dumps(raw))


def test_a_build_and_its_update_write_schema_2(sample_repo, local_embedder, tmp_path):
    settings = _settings(tmp_path / "store")
    pipeline.build(settings, str(sample_repo.path), local_embedder)
    first = Store(settings.store.path).current()
    with first.chunks() as db:
        assert db.schema == 2
    # schema 2 needs reader 5; format 6 (symbols.sqlite) raises no reader version
    assert first.manifest.min_reader_version == 5 <= store_mod.FORMAT_VERSION
    assert _lexical(first, "parse invoice")[0] == "parse_invoice"  # words meet the identifier
    assert _lexical(first, "calculator")[0] == "TaxCalculator"

    sample_repo.commit("refunds", CHANGE)
    pipeline.update(settings, local_embedder)
    second = Store(settings.store.path).current()
    with second.chunks() as db:
        assert db.schema == 2
    assert second.manifest.min_reader_version == 5
    assert _lexical(second, "refund payment")[0] == "refund_payment"
    assert "parse_invoice" not in _lexical(second, "parse invoice")  # tombstoned rows left FTS


def test_update_and_merge_keep_an_older_schema_1_layout(sample_repo, local_embedder, tmp_path):
    settings = _settings(tmp_path / "store")
    pipeline.build(settings, str(sample_repo.path), local_embedder)
    _downgrade_to_schema_1(Store(settings.store.path).current())
    base = Store(settings.store.path).current()  # verifies the rewritten checksum
    assert base.manifest.min_reader_version == 1
    assert _lexical(base, "parse_invoice") == ["parse_invoice"]
    assert _lexical(base, "calculator") == []  # schema 1 keeps TaxCalculator whole

    sample_repo.commit("refunds", CHANGE)
    pipeline.update(settings, local_embedder)
    updated = Store(settings.store.path).current()
    with updated.chunks() as db:
        assert (db.schema, db.lexicon) == (1, None)
    assert updated.manifest.min_reader_version == 1  # older readers still read it
    assert _lexical(updated, "refund_payment") == ["refund_payment"]
    assert _lexical(updated, "parse_invoice") == []

    pipeline.merge(settings)
    merged = Store(settings.store.path).current()
    assert merged.name != updated.name
    with merged.chunks() as db:
        assert db.schema == 1
    assert merged.manifest.min_reader_version == 1
    assert _lexical(merged, "refund_payment") == ["refund_payment"]
