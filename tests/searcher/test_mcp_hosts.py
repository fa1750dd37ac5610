"""Which Host and Origin values ``/mcp`` answers: the cluster's names and IPs, never a rebound name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from searcher_helpers import Served, settings_for

from codeintel.core import errors
from codeintel.core.settings import ServerSettings, Settings
from codeintel.operator import manifests
from codeintel.operator import spec as spec_mod
from codeintel.operator.settings import OperatorSettings
from codeintel.searcher import catalog, create_app
from codeintel.searcher.mcp_transport import HostPolicy

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
ACCEPT = {"accept": "application/json, text/event-stream"}
OPERATOR_HOSTS = ("idx-searcher", "idx-searcher.search", "idx-searcher.search.svc")


def policy(**server: Any) -> HostPolicy:
    return HostPolicy.from_settings(ServerSettings(**server))


class TestPolicy:
    @pytest.mark.parametrize(
        ("host", "allowed"),
        [
            ("localhost:8080", True),
            ("127.0.0.1", True),
            ("[::1]:9000", True),
            ("LOCALHOST:1", True),
            ("evil.example", False),
            ("evil.example:8080", False),
            ("localhost.evil.example", False),
            ("10.0.0.5:8080", False),  # nothing legitimate sends it to a loopback-only server
            ("", False),
            ("localhost:notaport", False),
            ("user@localhost", False),
        ],
    )
    def test_embedded_localhost_default(self, host: str, allowed: bool) -> None:
        assert policy().allows_host(host) is allowed

    @pytest.mark.parametrize(
        ("host", "allowed"),
        [
            ("idx-searcher:8080", True),
            ("idx-searcher.search.svc", True),
            ("idx-searcher.search.svc.cluster.local:8080", True),
            ("IDX-Searcher.Search.SVC.cluster.local.:8080", True),  # case and a trailing dot
            ("10.96.0.12:8080", True),  # ClusterIP
            ("10.244.1.7", True),  # pod IP
            ("[fd00::12]:8080", True),
            ("idx-searcher.search.svc.evil.example", False),
            ("idx-searcher.search.svc.cluster.local.evil.example", False),
            ("other-searcher.search.svc.cluster.local", False),
            ("evil.example:8080", False),
        ],
    )
    def test_operator_rendered_cluster(self, host: str, allowed: bool) -> None:
        p = policy(host="0.0.0.0", allowed_hosts=OPERATOR_HOSTS)
        assert p.allows_host(host) is allowed

    def test_cluster_domain_is_a_setting(self) -> None:
        p = policy(allowed_hosts=OPERATOR_HOSTS, cluster_domain="corp.internal")
        assert p.allows_host("idx-searcher.search.svc.corp.internal:8080")
        assert not p.allows_host("idx-searcher.search.svc.cluster.local:8080")

    def test_wildcard_bind_without_names_accepts_ips_not_names(self) -> None:
        p = policy(host="0.0.0.0")
        assert p.allows_host("192.168.1.20:8080")
        assert not p.allows_host("laptop.lan:8080")

    def test_ingress_names_any_port(self) -> None:
        p = policy(allowed_hosts=("code.example.com", "search.example.com:443"))
        assert p.allows_host("code.example.com")
        assert p.allows_host("search.example.com:8443")

    def test_origin_must_be_ours_or_the_same_origin(self) -> None:
        p = policy(allowed_hosts=OPERATOR_HOSTS)
        assert p.allows_origin("http://localhost:3000", "localhost:8080")
        assert p.allows_origin("https://idx-searcher.search.svc", "10.96.0.12:8080")
        assert p.allows_origin("http://10.96.0.12:8080", "10.96.0.12:8080")
        assert not p.allows_origin("http://10.0.0.9:8080", "10.96.0.12:8080")
        assert not p.allows_origin("http://evil.example", "localhost:8080")
        assert not p.allows_origin("null", "localhost:8080")

    def test_malformed_allowed_host_is_a_config_error(self) -> None:
        with pytest.raises(errors.ConfigError, match="CODEINTEL_SERVER_ALLOWED_HOSTS"):
            policy(allowed_hosts=("bad host/name",))


def _operator_env(tmp_path: Path) -> dict[str, str]:
    """The searcher's environment exactly as the operator renders it for a CodeIndex."""
    body = {
        "metadata": {"name": "idx", "namespace": "search", "uid": "u1"},
        "spec": {"repo": {"url": "https://example.org/r.git"}},
    }
    spec = spec_mod.parse(body["spec"], OperatorSettings())
    deployment = manifests.render_deployment(body, spec, OperatorSettings(), "g1")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    return {k: v for k, v in env.items() if k.startswith("CODEINTEL_SERVER_")}


@pytest.mark.slow
class TestOverHttp:
    def test_operator_env_accepts_fqdn_and_cluster_ip(
        self, tmp_path: Path, local_embedder: Any
    ) -> None:
        env = _operator_env(tmp_path)
        settings = Settings.from_env(
            env,
            store={"path": tmp_path / "store"},
            server={"host": "0.0.0.0"},
        )
        with Served(create_app(settings, embedder=local_embedder)) as served:
            for host, status in (
                ("idx-searcher.search.svc.cluster.local:8080", 200),
                ("idx-searcher.search.svc:8080", 200),
                ("10.96.0.12:8080", 200),
                ("[fd00::12]:8080", 200),
                ("evil.example:8080", 421),
            ):
                r = httpx.post(f"{served.url}/mcp", json=INIT, headers={**ACCEPT, "host": host})
                assert r.status_code == status, (host, r.text)
                if status == 421:
                    error = r.json()["error"]
                    assert error["data"] == {"type": "MisdirectedRequest", "field": "host"}
                    assert "CODEINTEL_SERVER_ALLOWED_HOSTS" in error["message"]
            # REST never looked at the Host; it still answers the same names.
            r = httpx.get(
                f"{served.url}/healthz",
                headers={"host": "idx-searcher.search.svc.cluster.local:8080"},
            )
            assert r.status_code == 200

    def test_localhost_default_refuses_rebound_names(
        self, tmp_path: Path, local_embedder: Any
    ) -> None:
        with Served(create_app(settings_for(tmp_path / "store"), embedder=local_embedder)) as s:
            for headers, status in (
                ({"host": "evil.example"}, 421),
                ({"host": f"evil.example:{s.port}"}, 421),
                ({"host": "10.0.0.5:8080"}, 421),
                # A page on another origin calling localhost: the Host is fine, the Origin is not.
                ({"origin": "http://evil.example"}, 403),
                # The modern protocol's requests take another path through the SDK; same guard.
                ({"host": "evil.example", "mcp-protocol-version": "2099-01-01"}, 421),
                ({}, 200),
            ):
                r = httpx.post(f"{s.url}/mcp", json=INIT, headers={**ACCEPT, **headers})
                assert r.status_code == status, (headers, r.text)

    async def test_official_client_through_the_cluster_fqdn(
        self, tmp_path: Path, local_embedder: Any
    ) -> None:
        settings = Settings.from_env(_operator_env(tmp_path), store={"path": tmp_path / "store"})
        host = "idx-searcher.search.svc.cluster.local:8080"
        with Served(create_app(settings, embedder=local_embedder)) as served:
            async with (
                httpx2.AsyncClient(headers={"host": host}, timeout=30) as http,
                streamable_http_client(f"{served.url}/mcp", http_client=http) as (read, write),
                ClientSession(read, write) as session,
            ):
                result = await session.initialize()
                assert result.server_info.name == "codeintel"
                tools = await session.list_tools()
                assert {t.name for t in tools.tools} == {t.name for t in catalog.CATALOG}
