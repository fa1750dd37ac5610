"""``/readyz`` answers 200 only once every tool can answer, semantic search included.

A pod behind a Service gets traffic as soon as it is ready: a searcher that was
ready while its query embedder was still being made answered semantic queries
with 503 "the embedding model is still loading" (seen in the searcher image on
a busy node, where building the embedder outlasted loading a small generation).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from searcher_helpers import Served

from codeintel.core import embed as embedding
from codeintel.core.settings import Settings
from codeintel.searcher import create_app

pytestmark = pytest.mark.slow


def test_ready_only_once_the_query_embedder_is_made(
    store_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_embedder = embedding.make_embedder

    def slow_to_make(config: Any) -> Any:
        time.sleep(3)  # a cold import or a model load on a busy node
        return make_embedder(config)  # the real local model, owned and closed by the app

    monkeypatch.setattr(embedding, "make_embedder", slow_to_make)
    with Served(create_app(store_settings)) as served:
        served.wait_ready()
        r = httpx.post(
            f"{served.url}/v1/semantic_search", json={"query": "parse an invoice", "k": 3}
        )
        assert r.status_code == 200, r.text
        assert r.json()["results"]
