"""Searcher fixtures: a real repository with history, a real store, a real server on loopback.

The repository has several authors (one with a non-ASCII name), a non-ASCII
path, symlinks inside and outside the tree, and enough commits for blame and
history to mean something. It is indexed once per session with the real local
model by the indexer's own pipeline, and served by uvicorn in a thread, so
tests speak real HTTP to it (REST, MCP, schemathesis).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from searcher_helpers import ReadyServer, Repo, Served, build_store, make_repo

from codeintel.core.settings import Settings
from codeintel.indexer import pipeline
from codeintel.searcher import create_app


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    return make_repo(tmp_path_factory.mktemp("searcher") / "repo")


@pytest.fixture(scope="session")
def store_settings(
    repo: Repo, local_embedder: Any, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return build_store(repo, tmp_path_factory.mktemp("searcher-store") / "store", local_embedder)


@pytest.fixture
def two_generation_store(tmp_path: Path, local_embedder: Any) -> tuple[Path, Settings]:
    """A store of two generations: ``g000001`` of ``make_repo``, then ``g000002`` after one
    more commit (a refund module); the store's root and the settings that built it."""
    repo = make_repo(tmp_path / "repo")
    settings = build_store(repo, tmp_path / "store", local_embedder)
    repo.commit("refunds", {"billing/refund.py": "def refund_invoice(x):\n    return -x\n"})
    pipeline.update(settings, local_embedder)
    return tmp_path / "store", settings


@pytest.fixture(scope="session")
def ready_server(local_embedder: Any) -> ReadyServer:
    """``with ready_server(settings) as served``: the searcher app over ``settings`` with the
    session's real model, on loopback, once ``/readyz`` answers."""

    @contextlib.contextmanager
    def serving(settings: Settings) -> Iterator[Served]:
        with Served(create_app(settings, embedder=local_embedder)) as served:
            served.wait_ready()
            yield served

    return serving


@pytest.fixture(scope="session")
def server(store_settings: Settings, ready_server: ReadyServer) -> Iterator[Served]:
    """The session store's server; a module may override it to serve a store of its own
    (``client`` then talks to that one)."""
    with ready_server(store_settings) as served:
        yield served


@pytest.fixture
async def client(server: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
        yield c
