"""Scopes end to end: one process and a router with two shard processes, REST and MCP.

The matrix walks ``catalog.CATALOG``, so a tool added to the catalogue joins it
(and fails here until it resolves repositories through ``tools.select``). For
every tool, a caller scoped to ``team-a/*`` asks about an allowed repository, a
denied one and one that does not exist: the denied cell must be the unknown
cell with the name swapped, status and body, so nothing tells them apart.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from benchmarks import serverproc
from benchmarks.serverproc import free_port
from fleet_helpers import REPOS, build_fleet, fleet_settings
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from searcher_helpers import Served

from codeintel.core.settings import Settings
from codeintel.searcher import catalog, create_app
from codeintel.searcher.app import create_router_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))
import kmock
from kube_emulator import make_emulator

pytestmark = pytest.mark.slow

NAMES = [*REPOS, "team-c/docs"]
ADMIN = "admin-token"
POOL = "pool-token"
TEAM_A = "team-a-token"
ALLOWED, DENIED, UNKNOWN = "team-a/billing", "team-b/web", "team-b/nope"
TEAM = {"authorization": f"Bearer {TEAM_A}"}

SAMPLES: dict[str, Any] = {
    "query": "invoice",
    "pattern": "shared_marker",
    "path": "README.md",
    "start_line": 1,
    "end_line": 1,
    "name": "parse_invoice",
}
"""A value for each required parameter of the catalogue's tools (add one for a new tool)."""


def body(tool: catalog.Tool, repo: str) -> dict[str, Any]:
    """A valid request of ``tool`` about ``repo`` alone."""
    fields = tool.request.model_fields
    assert "repo" in fields or "repos" in fields, f"{tool.name} names no repository"
    out: dict[str, Any] = {}
    for name, field in fields.items():
        if name == "repos":
            out[name] = [repo]
        elif name == "repo":
            out[name] = repo
        elif name == "mode":
            out[name] = "lexical"  # ranks without the embedder: the scope is what is tested
        elif field.is_required() or name == "name":
            assert name in SAMPLES, f"add a sample value for {tool.name}.{name} to SAMPLES"
            out[name] = SAMPLES[name]
    return out


def write_tokens(path: Path, repos: list[str]) -> None:
    rows = [
        {"name": "team-a", "sha256": hashlib.sha256(TEAM_A.encode()).hexdigest(), "repos": repos}
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows))
    os.replace(tmp, path)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, local_embedder: Any) -> Path:
    files = {**REPOS, "team-c/docs": {"README.md": "# Docs\n\nshared_marker\n"}}
    return build_fleet(tmp_path_factory.mktemp("scopes"), files, local_embedder)


@pytest.fixture(scope="module")
def tokens(root: Path) -> Path:
    path = root.parent / "tokens.json"
    write_tokens(path, ["team-a/*"])
    return path


def _with_access(settings: Settings, tokens: Path) -> Settings:
    return settings.replace(
        server={"api_token": ADMIN, "tokens_file": str(tokens), "tokens_poll_seconds": 0.1}
    )


@pytest.fixture(scope="module")
def single(root: Path, tokens: Path, local_embedder: Any) -> Iterator[str]:
    app = create_app(_with_access(fleet_settings(root), tokens), embedder=local_embedder)
    with Served(app) as served:
        served.wait_ready()
        yield served.url


def _spawn_shard(root: Path, index: int, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CODEINTEL_FLEET_SCAN_INTERVAL_SECONDS": "0.2",
        "CODEINTEL_SERVER_API_TOKEN": POOL,  # the shards trust the router's credential only
    }
    return subprocess.Popen(
        [
            sys.executable, "-m", "codeintel.cli", "--log-level", "warning", "serve",
            "--stores-root", str(root), "--shards", "2", "--shard-index", str(index),
            "--host", "127.0.0.1", "--port", str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _wait(url: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


@pytest.fixture(scope="module")
def shard_urls(root: Path) -> Iterator[list[str]]:
    ports = [free_port(), free_port()]
    procs = [_spawn_shard(root, i, port) for i, port in enumerate(ports)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        for url in urls:
            _wait(url)
        yield urls
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


@pytest.fixture(scope="module")
def router(shard_urls: list[str], tokens: Path) -> Iterator[str]:
    settings = Settings.from_env(
        {},
        fleet={"shard_urls": tuple(shard_urls), "shard_timeout_seconds": 20.0, "shard_token": POOL},
    )
    with Served(create_router_app(_with_access(settings, tokens))) as served:
        served.wait_ready()
        deadline = time.monotonic() + 60
        admin = {"authorization": f"Bearer {ADMIN}"}
        while len(
            httpx.post(f"{served.url}/v1/list_repos", json={}, headers=admin).json()["results"]
        ) < len(NAMES):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        yield served.url


@pytest.fixture(scope="module")
def router_process(shard_urls: list[str], tokens: Path) -> Iterator[str]:
    """``codeintel router --tokens-file`` in its own process, as a pool deploys it: every
    part of the chain is a real process on real HTTP (the router's flag included)."""
    urls = [a for shard in shard_urls for a in ("--shard-url", shard)]
    env = {
        "CODEINTEL_SERVER_API_TOKEN": ADMIN,
        "CODEINTEL_FLEET_SHARD_TOKEN": POOL,
        "CODEINTEL_SERVER_TOKENS_POLL_SECONDS": "0.1",
    }
    proc = serverproc.ServerProcess.codeintel(
        "router", *urls, "--shard-timeout", "20", "--tokens-file", str(tokens),
        env=env, timeout=120, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    with proc:
        admin = {"authorization": f"Bearer {ADMIN}"}
        deadline = time.monotonic() + 60
        while len(
            httpx.post(f"{proc.url}/v1/list_repos", json={}, headers=admin).json()["results"]
        ) < len(NAMES):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        yield proc.url


@pytest.fixture(params=["single", "router", "router_process"])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


def _rest(
    url: str, tool: str, data: dict[str, Any], headers: dict[str, str] = TEAM
) -> httpx.Response:
    return httpx.post(f"{url}/v1/{tool}", json=data, headers=headers, timeout=60)


async def _mcp(url: str, calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[bool, str]]:
    async with (
        httpx.AsyncClient(timeout=60, headers=TEAM) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        out = []
        for tool, data in calls:
            result = await session.call_tool(tool, data)
            # the text an agent reads and the structured content, both checked for leaks
            text = "".join(getattr(c, "text", "") for c in result.content)
            structured = json.dumps(result.structured_content or {})
            out.append((bool(result.is_error), f"{text}\n{structured}"))
        return out


def _same_but_name(denied: str, unknown: str) -> None:
    assert denied.replace(DENIED, "<repo>") == unknown.replace(UNKNOWN, "<repo>")


def _only_team_a(text: str) -> None:
    for hidden in ("team-b", "team-c", "HealthHandler"):
        assert hidden not in text, text[:500]


@pytest.mark.parametrize("tool", catalog.CATALOG, ids=lambda t: t.name)
async def test_every_tool_hides_what_the_scope_does_not_allow(url: str, tool: catalog.Tool) -> None:
    cells = {
        cell: body(tool, repo)
        for cell, repo in (("allowed", ALLOWED), ("denied", DENIED), ("unknown", UNKNOWN))
    }
    # REST
    rest = {cell: _rest(url, tool.name, data) for cell, data in cells.items()}
    assert rest["allowed"].status_code == 200, rest["allowed"].text
    _only_team_a(rest["allowed"].text)
    assert ALLOWED in rest["allowed"].text
    assert rest["denied"].status_code == rest["unknown"].status_code == 404
    _same_but_name(rest["denied"].text, rest["unknown"].text)
    assert rest["denied"].headers.get("content-length") is not None
    # MCP
    answers = dict(
        zip(cells, await _mcp(url, list((tool.name, d) for d in cells.values())), strict=True)
    )
    assert not answers["allowed"][0], answers["allowed"][1]
    _only_team_a(answers["allowed"][1])
    assert answers["denied"][0] and answers["unknown"][0]
    assert "404" in answers["denied"][1]
    _same_but_name(answers["denied"][1], answers["unknown"][1])


async def test_globs_and_defaults_expand_to_the_scope_only(url: str) -> None:
    listed = _rest(url, "list_repos", {}).json()["results"]
    assert [r["name"] for r in listed] == ["team-a/billing", "team-a/mail"]
    for data in ({"pattern": "shared_marker"}, {"pattern": "shared_marker", "repos": ["*"]}):
        found = _rest(url, "search_text", data)
        assert found.status_code == 200
        assert {r["repo"] for r in found.json()["results"]} == {"team-a/billing", "team-a/mail"}
        _only_team_a(found.text)
    # a glob matching hidden repositories only is an unknown glob
    assert _rest(url, "list_paths", {"repos": ["team-b/*"]}).status_code == 404
    (listed_mcp,) = await _mcp(url, [("list_repos", {})])
    assert not listed_mcp[0]
    structured = json.loads(listed_mcp[1].rsplit("\n", 1)[1])
    assert [r["name"] for r in structured["results"]] == [
        "team-a/billing",
        "team-a/mail",
    ]
    index = httpx.get(f"{url}/v1/index", headers=TEAM)
    assert index.status_code == 200
    _only_team_a(index.text)
    # the shared token still reads everything
    admin = {"authorization": f"Bearer {ADMIN}"}
    assert len(_rest(url, "list_repos", {}, admin).json()["results"]) == len(NAMES)


def test_a_cursor_cannot_reach_past_the_scope(url: str) -> None:
    """Every page of a question the shared token asked, replayed by the team-a caller:
    the cursor names hidden repositories' positions, the answer still shows none."""
    admin = {"authorization": f"Bearer {ADMIN}"}
    ask = {"pattern": "shared_marker", "max_results": 1}
    page = _rest(url, "search_text", ask, admin).json()
    replayed = 0
    while page.get("cursor"):
        theirs = _rest(url, "search_text", {**ask, "cursor": page["cursor"]})
        assert theirs.status_code in {200, 400, 404}, theirs.text
        _only_team_a(theirs.text)
        replayed += 1
        page = _rest(url, "search_text", {**ask, "cursor": page["cursor"]}, admin).json()
    assert replayed >= len(NAMES) - 1, "the shared token's answer was not paged"


def test_a_denied_repository_costs_what_an_unknown_one_does(
    root: Path, tokens: Path, local_embedder: Any
) -> None:
    """The timing class, without timing: a denied repository is refused before its store
    is opened, exactly like one that does not exist (no load, no disk, no FAISS); only an
    allowed one loads. Fresh server, so nothing is loaded before."""
    admin = {"authorization": f"Bearer {ADMIN}"}
    app = create_app(_with_access(fleet_settings(root), tokens), embedder=local_embedder)

    def loaded(url: str) -> float:
        text = httpx.get(f"{url}/metrics", headers=admin).text
        lines = [line for line in text.splitlines() if 'stores{state="loaded"}' in line]
        return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0

    with Served(app) as served:
        served.wait_ready()
        assert loaded(served.url) == 0
        for repo in (DENIED, UNKNOWN):
            for tool in ("semantic_search", "list_paths", "file_outline"):
                data = {"repos": [repo]} if tool != "file_outline" else {"repo": repo}
                data |= {"query": "invoice", "mode": "lexical"} if tool == "semantic_search" else {}
                data |= {"path": "README.md"} if tool == "file_outline" else {}
                assert _rest(served.url, tool, data).status_code == 404
        assert loaded(served.url) == 0
        assert _rest(served.url, "list_paths", {"repos": [ALLOWED]}).status_code == 200
        assert loaded(served.url) == 1


def test_credentials_are_required_and_metrics_need_the_shared_token(url: str) -> None:
    for headers in ({}, {"authorization": "Bearer nope"}, {"authorization": f"Basic {TEAM_A}"}):
        r = _rest(url, "list_repos", {}, headers)
        assert r.status_code == 401 and r.json()["error"]["field"] == "authorization"
    assert _rest(url, "list_repos", {"repos": [DENIED]}).status_code == 404
    assert httpx.get(f"{url}/metrics", headers=TEAM).status_code == 403
    metrics = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {ADMIN}"})
    assert metrics.status_code == 200
    assert (
        'codeintel_access_denied_total{reason="unauthenticated",tool="list_repos"}' in metrics.text
    )


def test_shards_trust_only_the_routers_credential(shard_urls: list[str]) -> None:
    for shard in shard_urls:
        assert _rest(shard, "list_repos", {}).status_code == 401
        assert (
            _rest(shard, "list_repos", {}, {"authorization": f"Bearer {ADMIN}"}).status_code == 401
        )
        pool = {"authorization": f"Bearer {POOL}"}
        assert _rest(shard, "list_repos", {}, pool).status_code == 200
        # a forwarded scope only narrows what the credential carrying it may read
        narrowed = {
            **pool,
            "x-codeintel-scope": json.dumps({"identity": "x", "layers": [["team-c/*"]]}),
        }
        names = {r["name"] for r in _rest(shard, "list_repos", {}, narrowed).json()["results"]}
        assert names <= {"team-c/docs"}


def test_the_denial_is_counted_where_the_repository_lives(single: str) -> None:
    assert _rest(single, "file_history", {"repo": DENIED, "path": "README.md"}).status_code == 404
    metrics = httpx.get(f"{single}/metrics", headers={"authorization": f"Bearer {ADMIN}"}).text
    assert 'codeintel_access_denied_total{reason="scope",tool="file_history"}' in metrics


def test_an_edited_tokens_file_applies_without_a_restart(single: str, tokens: Path) -> None:
    data = {"repo": DENIED, "path": "README.md"}
    assert _rest(single, "file_history", data).status_code == 404
    write_tokens(tokens, ["team-a/*", DENIED])
    try:
        deadline = time.monotonic() + 30
        while (r := _rest(single, "file_history", data)).status_code != 200:
            assert time.monotonic() < deadline, r.text
            time.sleep(0.1)
        tokens.write_text("[{")  # a broken edit keeps the last good file
        time.sleep(0.3)
        assert _rest(single, "file_history", data).status_code == 200
    finally:
        write_tokens(tokens, ["team-a/*"])
    deadline = time.monotonic() + 30
    while _rest(single, "file_history", data).status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.1)


class TestHostAndOrigin:
    def test_dns_rebinding_is_refused_on_rest(self, single: str) -> None:
        admin = {"authorization": f"Bearer {ADMIN}"}
        rebound = {**admin, "host": "evil.example", "origin": "http://evil.example"}
        r = _rest(single, "list_repos", {}, rebound)
        assert r.status_code in (403, 421) and r.json()["error"]["field"] in ("host", "origin")
        assert r.status_code == 421  # the Host is checked first
        foreign_page = {**admin, "origin": "http://evil.example"}
        r = _rest(single, "list_repos", {}, foreign_page)
        assert r.status_code == 403 and r.json()["error"]["field"] == "origin"
        assert (
            httpx.get(f"{single}/v1/index", headers={**admin, "host": "evil.example"}).status_code
            == 421
        )
        # our own page (same origin) and plain clients (no Origin) are served
        port = single.rsplit(":", 1)[1]
        same = {**admin, "origin": f"http://localhost:{port}"}
        assert _rest(single, "list_repos", {}, same).status_code == 200

    def test_probes_and_metrics_answer_the_pod_ip(self, single: str) -> None:
        pod = {"host": "10.1.2.3:8080"}
        assert httpx.get(f"{single}/healthz", headers=pod).status_code == 200
        assert httpx.get(f"{single}/readyz", headers=pod).status_code == 200
        admin = {**pod, "authorization": f"Bearer {ADMIN}"}
        assert httpx.get(f"{single}/metrics", headers=admin).status_code == 200
        # the same Host on the API is refused on a localhost server
        assert _rest(single, "list_repos", {}, admin).status_code == 421


async def test_kubernetes_mode_follows_rbac_per_namespace(
    root: Path, local_embedder: Any, tmp_path: Path
) -> None:
    """TokenReview + SubjectAccessReview on the emulated API server, REST and MCP."""
    sa_token = tmp_path / "sa-token"
    sa_token.write_text("searcher-sa-token")
    agent = "system:serviceaccount:agents:alice"
    async with make_emulator() as emulator, kmock.Server(emulator) as api:
        emulator.reviewers.add("searcher-sa-token")
        emulator.users["alice-token"] = {"username": agent, "uid": "u1", "groups": []}
        emulator.grants[agent] = {"team-a"}
        settings = fleet_settings(root).replace(
            server={
                "kube_auth": True,
                "kube_api_url": str(api.url).rstrip("/"),
                "kube_token_file": str(sa_token),
                "kube_ca_file": "",
            }
        )
        with Served(create_app(settings, embedder=local_embedder)) as served:
            served.wait_ready()
            alice = {"authorization": "Bearer alice-token"}
            async with httpx.AsyncClient(base_url=served.url, headers=alice, timeout=60) as http:
                listed = await http.post("/v1/list_repos", json={})
                assert [r["name"] for r in listed.json()["results"]] == [
                    "team-a/billing",
                    "team-a/mail",
                ]
                ok = await http.post(
                    "/v1/file_history", json={"repo": ALLOWED, "path": "README.md"}
                )
                assert ok.status_code == 200, ok.text
                denied = await http.post(
                    "/v1/file_history", json={"repo": DENIED, "path": "README.md"}
                )
                unknown = await http.post(
                    "/v1/file_history", json={"repo": UNKNOWN, "path": "README.md"}
                )
                assert denied.status_code == unknown.status_code == 404
                _same_but_name(denied.text, unknown.text)
                stranger = await http.post(
                    "/v1/list_repos", json={}, headers={"authorization": "Bearer forged"}
                )
                assert stranger.status_code == 401
            async with (
                httpx.AsyncClient(timeout=60, headers=alice) as http,
                streamable_http_client(f"{served.url}/mcp", http_client=http) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                hidden = await session.call_tool(
                    "file_history", {"repo": DENIED, "path": "README.md"}
                )
                assert hidden.is_error and "404" in hidden.content[0].text  # type: ignore[union-attr]
                mine = await session.call_tool(
                    "file_history", {"repo": ALLOWED, "path": "README.md"}
                )
                assert not mine.is_error
            # each repository reviewed once, then cached: the four served ones (list_repos
            # names none, so all), and the missing name, reviewed like a hidden one
            assert emulator.reviews["TokenReview"] == 2  # alice (cached after), the forged one
            assert emulator.reviews["SubjectAccessReview"] == len(NAMES) + 1
