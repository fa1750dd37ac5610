"""``serve PATH`` answers dense from its first pass, then from the full index, without a restart.

``indexer/serving.keep_indexed`` runs on a thread as ``codeintel serve PATH`` runs it,
with the real local model; after its first pass (two chunks) the model waits at a
gate, so the first generation is observed before the full one replaces it. Real HTTP.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from searcher_helpers import Served, make_repo

from codeintel.core.settings import Settings
from codeintel.indexer import serving
from codeintel.searcher import create_app
from codeintel.searcher import early as early_mod
from embedders import PassThrough

pytestmark = pytest.mark.slow


class GatedEmbedder(PassThrough):
    """The real model; every embed call after the first waits until ``gate`` is set."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.gate = threading.Event()
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.calls > 1:
            assert self.gate.wait(240), "the test never opened the gate"
        return super().embed(texts)


def _until(check: Any, timeout: float = 240.0) -> Any:
    """``check()``'s first truthy value (generous bound: the real model on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


def _semantic(url: str, mode: str = "semantic") -> dict[str, Any]:
    r = httpx.post(
        f"{url}/v1/semantic_search", json={"query": "parse an invoice", "mode": mode}, timeout=60
    )
    return dict(r.json()) if r.status_code == 200 else {}


@pytest.fixture
def serving_run(tmp_path: Path, local_embedder: Any) -> Iterator[tuple[str, GatedEmbedder]]:
    repo = make_repo(tmp_path / "repo")
    settings = Settings.from_env(
        {},
        store={"path": tmp_path / "store"},
        server={"reload_interval_seconds": 0.2, "reindex_interval_seconds": 0.5},
        index={"first_pass_seconds": 600, "first_pass_max_chunks": 2},
    )
    gated = GatedEmbedder(local_embedder)
    early = early_mod.EarlyIndex(str(repo.path), retry_seconds=0.5)
    stop = threading.Event()
    thread = threading.Thread(
        target=serving.keep_indexed,
        args=(settings, str(repo.path), gated, stop, early),
        daemon=True,
    )
    app = create_app(settings, embedder=local_embedder, early=early)
    with Served(app) as served:
        thread.start()
        try:
            yield served.url, gated
        finally:
            stop.set()
            gated.gate.set()
            thread.join(timeout=120)


def test_first_pass_answers_dense_with_a_notice_then_the_full_index_replaces_it(
    serving_run: tuple[str, GatedEmbedder],
) -> None:
    url, gated = serving_run
    first = _until(lambda: _semantic(url).get("generation") == "g000001" and _semantic(url))
    assert "partial dense coverage" in first["notice"] and "2 of " in first["notice"]
    assert first["results"], "the first pass's vectors answer"
    hybrid = _semantic(url, "hybrid")
    assert hybrid["generation"] == "g000001" and "notice" in hybrid
    # Lexical ranking covers every chunk and needs no notice.
    lexical = _semantic(url, "lexical")
    assert lexical["results"][0]["path"] == "billing/invoice.py" and "notice" not in lexical
    index = httpx.get(f"{url}/v1/index").json()
    assert index["dense_coverage"]["chunks"] == 2
    assert index["dense_coverage"]["total"] > 2
    assert index["indexing"]["phase"] != "ready"  # the rest is still being embedded
    assert httpx.get(f"{url}/readyz").status_code == 200

    gated.gate.set()
    full = _until(lambda: _semantic(url).get("generation") == "g000002" and _semantic(url))
    assert "notice" not in full
    assert full["results"][0]["path"] == "billing/invoice.py"
    index = _until(
        lambda: (i := httpx.get(f"{url}/v1/index").json())["indexing"]["phase"] == "ready" and i
    )
    assert index["generation"] == "g000002" and index["dense_coverage"] is None
