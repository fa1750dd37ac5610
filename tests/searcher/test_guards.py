"""Guard rails: token, path confinement, limits, JSON errors, not-ready, and no 5xx from input."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from searcher_helpers import Served, settings_for

from codeintel.core.settings import Settings
from codeintel.searcher import create_app, serving
from servers import free_port

pytestmark = pytest.mark.slow


class TestToken:
    @pytest.mark.parametrize("via_env", [False, True])
    def test_bearer_token_guards_all_but_probes(
        self,
        store_settings: Settings,
        local_embedder: Any,
        via_env: bool,
    ) -> None:
        settings = store_settings
        if via_env:  # the older variable name, read by Settings (the app reads no env itself)
            from_env = Settings.from_env({"CODEINTEL_API_TOKEN": "s3cret"})
            settings = settings.replace(server={"api_token": from_env.server.api_token})
        else:
            settings = settings.replace(server={"api_token": "s3cret"})
        with Served(create_app(settings, embedder=local_embedder)) as served:
            served.wait_ready()
            assert httpx.get(f"{served.url}/healthz").status_code == 200
            body = {"path": "README.md", "limit": 1}
            r = httpx.post(f"{served.url}/v1/file_history", json=body)
            assert r.status_code == 401
            assert r.json()["error"]["field"] == "authorization"
            wrong = {"Authorization": "Bearer s3creT"}
            assert (
                httpx.post(f"{served.url}/v1/file_history", json=body, headers=wrong).status_code
                == 401
            )
            assert httpx.get(f"{served.url}/metrics").status_code == 401
            assert httpx.post(f"{served.url}/mcp", json={}).status_code == 401
            good = {"Authorization": "Bearer s3cret"}
            assert (
                httpx.post(f"{served.url}/v1/file_history", json=body, headers=good).status_code
                == 200
            )


class TestPaths:
    @pytest.mark.parametrize(
        ("tool", "body"),
        [
            ("blame_range", {"path": "../etc/passwd", "start_line": 1, "end_line": 1}),
            ("blame_range", {"path": "/etc/passwd", "start_line": 1, "end_line": 1}),
            ("blame_range", {"path": "README.md\x00", "start_line": 1, "end_line": 1}),
            ("blame_range", {"path": "escape/passwd", "start_line": 1, "end_line": 1}),
            ("file_history", {"path": "link_out"}),
            ("file_history", {"path": "billing/../../x"}),
            ("list_paths", {"path": "escape"}),
            ("list_paths", {"path": "C:\\Windows"}),
            ("search_text", {"pattern": "x", "path_glob": "a\x00b"}),
        ],
    )
    async def test_outside_the_repository_is_4xx(
        self, client: httpx.AsyncClient, tool: str, body: dict[str, Any]
    ) -> None:
        r = await client.post(f"/v1/{tool}", json=body)
        assert 400 <= r.status_code < 500, r.text
        error = r.json()["error"]
        assert error["field"] in ("path", "path_glob")

    async def test_symlink_inside_is_answered(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/v1/file_history", json={"path": "alias.py"})
        assert r.status_code == 200

    async def test_spellings_are_normalised(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/v1/file_history", json={"path": ".//mail/./sender.py", "limit": 1})
        assert r.status_code == 200
        assert r.json()["path"] == "mail/sender.py"


class TestLimits:
    @pytest.mark.parametrize(
        ("tool", "body", "field"),
        [
            ("semantic_search", {"query": "x", "k": 101}, "k"),
            ("semantic_search", {"query": "x", "k": 0}, "k"),
            ("semantic_search", {"query": "x" * 2001}, "query"),
            ("semantic_search", {"query": "x", "mode": "fuzzy"}, "mode"),
            ("search_text", {"pattern": "x", "max_results": 10_001}, "max_results"),
            ("list_paths", {"max_results": 10_001}, "max_results"),
            ("blame_range", {"path": "README.md", "start_line": 1, "end_line": 5001}, "end_line"),
            ("blame_range", {"path": "README.md", "start_line": 5, "end_line": 4}, "end_line"),
            ("file_history", {"path": "README.md", "limit": 501}, "limit"),
            ("file_history", {"path": "README.md", "bogus": 1}, "bogus"),
            ("file_history", {}, "path"),
            ("semantic_search", {"query": "x", "path_glob": "!src/**"}, "path_glob"),
            ("search_text", {"pattern": "x", "path_glob": "/"}, "path_glob"),
            ("list_paths", {"include_globs": ["ok/**", "!neg"]}, "include_globs.1"),
        ],
    )
    async def test_limits_are_422_naming_the_field(
        self, client: httpx.AsyncClient, tool: str, body: dict[str, Any], field: str
    ) -> None:
        r = await client.post(f"/v1/{tool}", json=body)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == field

    async def test_at_the_limits_is_fine(self, client: httpx.AsyncClient) -> None:
        ok = [
            ("semantic_search", {"query": "x" * 2000, "k": 100}),
            ("blame_range", {"path": "README.md", "start_line": 1, "end_line": 5000}),
            ("file_history", {"path": "README.md", "limit": 500}),
            ("list_paths", {"max_results": 10_000}),
        ]
        for tool, body in ok:
            r = await client.post(f"/v1/{tool}", json=body)
            assert r.status_code == 200, (tool, r.text)

    async def test_body_over_one_mib_is_413(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/v1/search_text", json={"pattern": "x", "pad": "y" * (1 << 20)})
        assert r.status_code == 413
        assert r.json()["error"]["field"] == "body"

    async def test_malformed_json_is_422(self, client: httpx.AsyncClient) -> None:
        r = await client.post(
            "/v1/list_paths", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 422
        assert r.json()["error"]["field"]


class TestNotReady:
    def test_no_generation_readyz_and_tools_503(self, tmp_path: Path, local_embedder: Any) -> None:
        with Served(
            create_app(settings_for(tmp_path / "empty"), embedder=local_embedder)
        ) as served:
            assert httpx.get(f"{served.url}/healthz").status_code == 200
            r = httpx.get(f"{served.url}/readyz")
            assert r.status_code == 503
            r = httpx.post(f"{served.url}/v1/list_paths", json={})
            assert r.status_code == 503
            assert r.json()["error"]["type"] == "NoGenerationError"


class TestMcpHosts:
    def test_service_host_allowed_others_refused(
        self, store_settings: Settings, local_embedder: Any
    ) -> None:
        settings = store_settings.replace(server={"allowed_hosts": ("codeintel.tools.svc",)})
        init = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        headers = {"accept": "application/json, text/event-stream"}
        with Served(create_app(settings, embedder=local_embedder)) as served:
            for host, status in (
                ("codeintel.tools.svc", 200),
                ("codeintel.tools.svc:8080", 200),
                ("localhost:1234", 200),
                ("evil.example.com", 421),
            ):
                r = httpx.post(f"{served.url}/mcp", json=init, headers={**headers, "host": host})
                assert r.status_code == status, (host, r.text)


class TestMetricsPort:
    def test_metrics_port_serves_metrics_without_the_token_and_nothing_else(
        self, store_settings: Settings, local_embedder: Any
    ) -> None:
        # As `codeintel serve` runs it in a pod: one uvicorn, the API port and the metrics port.
        api_port, metrics_port = free_port(), free_port()
        settings = store_settings.replace(
            server={"api_token": "s3cret", "port": api_port, "metrics_port": metrics_port}
        )
        server = serving.make_server(settings, create_app(settings, embedder=local_embedder))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": serving.bind(server.config, settings)}
        )
        thread.start()
        try:
            api, metrics = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{metrics_port}"
            deadline = time.monotonic() + 60
            while httpx.get(f"{metrics}/readyz").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            r = httpx.get(f"{metrics}/metrics")
            assert r.status_code == 200 and "codeintel_requests_total" in r.text
            assert httpx.get(f"{api}/metrics").status_code == 401  # the API port keeps the token
            good = {"Authorization": "Bearer s3cret"}
            assert httpx.get(f"{api}/metrics", headers=good).status_code == 200
            for method, path in (
                ("POST", "/v1/file_history"),
                ("GET", "/v1/index"),
                ("POST", "/mcp"),
                ("GET", "/docs"),
                ("POST", "/metrics"),
            ):
                r = httpx.request(method, f"{metrics}{path}", json={"path": "README.md"})
                assert r.status_code == 404, (method, path, r.text)
                r = httpx.request(method, f"{metrics}{path}", headers=good, json={})
                assert r.status_code == 404, (method, path, r.text)
        finally:
            server.should_exit = True
            thread.join(timeout=30)
