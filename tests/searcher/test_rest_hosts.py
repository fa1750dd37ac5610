"""Every source of allowed Host names reaches REST's check as it reaches MCP's.

The chart's ``searcher.allowedHosts`` (rendered by Helm's own code), a CodeIndex's
``spec.searcher.allowedHosts`` and a SearchPool's ``spec.allowedHosts`` go through
the operator into the searcher's and router's environment; a real searcher built
from that environment answers REST on those names, on its Service names, and
refuses any other Host (DNS rebinding) or a foreign Origin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import httpx
import pytest
import yaml
from searcher_helpers import Served, build_store, make_repo

from codeintel.core import errors
from codeintel.core.settings import Settings
from codeintel.operator import manifests, poolmanifests, poolspec
from codeintel.operator import spec as spec_mod
from codeintel.operator.settings import OperatorSettings
from codeintel.searcher import create_app

CHART = Path(__file__).resolve().parents[2] / "charts" / "codeintel"
INGRESS = "code.example.org"
TEAM = "idx.team.example"


def operator_settings(values: dict[str, Any]) -> OperatorSettings:
    """The operator's settings exactly as the chart installed with ``values`` sets them."""
    rendered = helm.Chart.load(CHART).render(
        values, name="codeintel", namespace="codeintel-system", is_install=True
    )
    docs = [
        d
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for d in yaml.safe_load_all(text)
        if d
    ]
    (deployment,) = [d for d in docs if isinstance(d, dict) and d.get("kind") == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    return OperatorSettings.from_env({k: v for k, v in env.items() if "OPERATOR_" in k})


def server_env(container: dict[str, Any]) -> dict[str, str]:
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    return {k: v for k, v in env.items() if k.startswith("CODEINTEL_SERVER_")}


def codeindex_env(settings: OperatorSettings) -> dict[str, str]:
    body = {
        "metadata": {"name": "idx", "namespace": "search", "uid": "u1"},
        "spec": {
            "repo": {"url": "https://example.org/r.git"},
            "searcher": {"allowedHosts": [TEAM]},
        },
    }
    spec = spec_mod.parse(body["spec"], settings)
    deployment = manifests.render_deployment(body, spec, settings, "g1")
    return server_env(deployment["spec"]["template"]["spec"]["containers"][0])


def test_chart_value_reaches_the_operator_and_every_rendered_searcher() -> None:
    settings = operator_settings({"searcher": {"allowedHosts": [INGRESS, "Code.Example.org"]}})
    assert settings.allowed_hosts == (INGRESS,)
    assert operator_settings({}).allowed_hosts == ()
    hosts = codeindex_env(settings)["CODEINTEL_SERVER_ALLOWED_HOSTS"].split(",")
    assert hosts == [
        "idx-searcher",
        "idx-searcher.search",
        "idx-searcher.search.svc",
        TEAM,
        INGRESS,
    ]
    pool = {"metadata": {"name": "fleet", "namespace": "search", "uid": "p1"}, "spec": {}}
    router = poolmanifests.render_router(
        poolmanifests.Pool(pool, poolspec.parse({"allowedHosts": [TEAM]}), settings)
    )
    env = server_env(router["spec"]["template"]["spec"]["containers"][0])
    assert env["CODEINTEL_SERVER_ALLOWED_HOSTS"].split(",")[-2:] == [TEAM, INGRESS]


def test_a_bad_chart_value_is_refused_by_schema_and_by_the_operator() -> None:
    with pytest.raises(helm.HelmValuesError):
        operator_settings({"searcher": {"allowedHosts": ["https://code.example.org"]}})
    with pytest.raises(errors.ConfigError, match="allowed_hosts"):
        OperatorSettings.from_env({"CODEINTEL_OPERATOR_ALLOWED_HOSTS": "a.example,bad host"})


@pytest.mark.slow
def test_rest_answers_the_chart_and_spec_names_and_refuses_others(
    tmp_path: Path, local_embedder: Any
) -> None:
    build_store(make_repo(tmp_path / "repo"), tmp_path / "store", local_embedder)
    env = codeindex_env(operator_settings({"searcher": {"allowedHosts": [INGRESS]}}))
    settings = Settings.from_env(
        env, store={"path": tmp_path / "store"}, server={"host": "0.0.0.0"}
    )
    with Served(create_app(settings, embedder=local_embedder)) as served:
        served.wait_ready()
        for headers, status in (
            ({"host": f"{INGRESS}:443"}, 200),
            ({"host": TEAM}, 200),
            ({"host": "idx-searcher.search.svc.cluster.local:8080"}, 200),
            ({"host": INGRESS, "origin": f"https://{INGRESS}"}, 200),
            ({"host": "evil.example"}, 421),
            ({"host": INGRESS, "origin": "http://evil.example"}, 403),
        ):
            r = httpx.post(f"{served.url}/v1/list_paths", json={}, headers=headers)
            assert r.status_code == status, (headers, r.text)
            if status != 200:
                assert r.json()["error"]["field"] in {"host", "origin"}
        # Probes and /metrics answer any Host: kubelet and Prometheus send the pod IP.
        for path in ("/healthz", "/readyz", "/metrics"):
            assert httpx.get(f"{served.url}{path}", headers={"host": "10.1.2.3:8080"}).is_success
