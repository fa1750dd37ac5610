"""The Helm chart, rendered and linted by Helm's own code, and every manifest checked by schema.

Helm's Go SDK runs in-process through helm-python-sdk (no ``helm`` binary, no
cluster). Built-in kinds are validated against the Kubernetes OpenAPI schemas of
the oldest and newest supported versions in strict mode (unknown fields fail);
the CodeIndex and SearchPool kinds are validated against their CRDs' own schemas.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "codeintel"
CRD = ROOT / "crds" / "codeindex.yaml"
POOL_CRD = ROOT / "crds" / "searchpool.yaml"
CRDS = {"CodeIndex": CRD, "SearchPool": POOL_CRD}
GPU_VALUES = CHART / "ci" / "gpu-values.yaml"
K8S_VERSIONS = ("1.30", "1.37")
NAMESPACE = "codeintel-system"


def gpu_values() -> dict[str, Any]:
    return helm.values_from_yaml(GPU_VALUES.read_text())


VALUE_SETS = {"default": {}, "gpu": gpu_values()}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    chart = helm.Chart.load(CHART)
    rendered = chart.render(values, name="codeintel", namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            continue
        docs += [doc for doc in yaml.safe_load_all(text) if doc]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def codeindex_validator(kind: str = "CodeIndex") -> jsonschema.Validator:
    crd = yaml.safe_load(CRDS[kind].read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_lint_strict(values: dict[str, Any]) -> None:
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_manifest_validates(values: dict[str, Any], version: str) -> None:
    docs = render(values)
    for doc in docs:
        if doc["apiVersion"].startswith("codeintel.io/"):
            codeindex_validator(doc["kind"]).validate(doc)
        elif doc["apiVersion"].startswith(("monitoring.coreos.com/", "kopf.dev/")):
            assert doc["metadata"]["name"]  # CRD-defined kinds outside this repository
        else:
            kubernetes_validate.validate(doc, version, strict=True)


def test_default_install() -> None:
    docs = render({})
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "Deployment",
        "ServiceAccount",
    ]
    deployment = by_kind(docs, "Deployment")[0]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == [
        "operator",
        "--all-namespaces",
        "--standalone",
        "--liveness=http://0.0.0.0:8081/healthz",
    ]
    assert container["image"] == "ghcr.io/codeintel/operator:0.1.0"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["CODEINTEL_OPERATOR_INDEXER_IMAGE"] == "ghcr.io/codeintel/indexer:0.1.0"
    assert json.loads(env["CODEINTEL_OPERATOR_INDEXER_RESOURCES"])["limits"] == {"memory": "16Gi"}


def test_operator_settings_accept_what_the_chart_sets() -> None:
    from codeintel.operator.settings import OperatorSettings

    for values in VALUE_SETS.values():
        container = by_kind(render(values), "Deployment")[0]["spec"]["template"]["spec"][
            "containers"
        ][0]
        env = {
            e["name"]: e["value"]
            for e in container["env"]
            if e["name"].startswith("CODEINTEL_OPERATOR_")
        }
        settings = OperatorSettings.from_env(env)
        assert settings.indexer_image == env["CODEINTEL_OPERATOR_INDEXER_IMAGE"]
        assert settings.router_resources == json.loads(env["CODEINTEL_OPERATOR_ROUTER_RESOURCES"])
        assert settings.cluster_domain == "cluster.local"


def test_gpu_install_with_peering_example_and_monitor() -> None:
    docs = render(gpu_values())
    container = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert "--peering=codeintel-gpu" in container["args"]
    assert "--namespace=search" in container["args"] and "--standalone" not in container["args"]
    assert {d["metadata"]["name"] for d in by_kind(docs, "CustomResourceDefinition")} == {
        "codeindexes.codeintel.io",
        "searchpools.codeintel.io",
        "clusterkopfpeerings.kopf.dev",
    }
    assert by_kind(docs, "ClusterKopfPeering")[0]["metadata"]["name"] == "codeintel-gpu"
    example = by_kind(docs, "CodeIndex")[0]
    assert example["spec"]["indexer"]["gpu"] is True
    monitor = by_kind(docs, "ServiceMonitor")[0]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    rules = by_kind(docs, "ClusterRole")[0]["rules"]
    assert any("clusterkopfpeerings" in r["resources"] for r in rules)


@pytest.mark.parametrize("path", CRDS.values(), ids=lambda p: p.name)
def test_chart_crd_is_the_source_crd_with_keep(path: Path) -> None:
    assert (CHART / "files" / path.name).read_bytes() == path.read_bytes()
    source = yaml.safe_load(path.read_text())
    crds = by_kind(render({}), "CustomResourceDefinition")
    rendered = next(c for c in crds if c["metadata"]["name"] == source["metadata"]["name"])
    assert rendered["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert rendered["spec"] == source["spec"]
    assert by_kind(render({"crds": {"install": False}}), "CustomResourceDefinition") == []
    for no_keep in by_kind(render({"crds": {"keep": False}}), "CustomResourceDefinition"):
        assert "annotations" not in no_keep["metadata"]


def test_rbac_is_least_privilege() -> None:
    rules = by_kind(render({}), "ClusterRole")[0]["rules"]
    granted = {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert all(r != "secrets" for _, r, _ in granted)
    assert all(v not in {"*", "escalate", "bind", "impersonate"} for _, _, v in granted)
    needed = {
        ("codeintel.io", "codeindexes", "watch"),
        ("codeintel.io", "codeindexes/status", "patch"),
        ("batch", "jobs", "create"),
        ("batch", "jobs", "delete"),
        ("", "pods", "list"),
        ("", "persistentvolumeclaims", "create"),
        ("apps", "deployments", "patch"),
        ("codeintel.io", "searchpools", "watch"),
        ("codeintel.io", "searchpools/status", "patch"),
        ("codeintel.io", "codeindexes", "list"),
        ("apps", "statefulsets", "create"),
        ("apps", "statefulsets", "patch"),
        ("apps", "statefulsets", "list"),
        ("apps", "statefulsets", "delete"),
        ("policy", "poddisruptionbudgets", "create"),
        ("policy", "poddisruptionbudgets", "patch"),
        ("policy", "poddisruptionbudgets", "delete"),
        ("", "services", "create"),
        ("", "events", "create"),
    }
    assert needed <= granted


def test_values_schema_refuses_bad_values() -> None:
    chart = helm.Chart.load(CHART)
    for bad in (
        {"replicaCount": -1},
        {"config": {"logFormat": "xml"}},
        {"unknownKey": 1},
        {"config": {"defaultUpdateInterval": "soon"}},
    ):
        with pytest.raises(helm.HelmValuesError):
            chart.render(bad, name="codeintel", namespace=NAMESPACE)
    with pytest.raises(helm.HelmRenderError, match="peering"):
        chart.render({"replicaCount": 2}, name="codeintel", namespace=NAMESPACE)


def test_every_values_key_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    key = re.compile(r"^(\s*)([A-Za-z][\w-]*):")
    for number, line in enumerate(lines):
        match = key.match(line)
        if not match:
            continue
        parent_documented = False
        previous = lines[number - 1].strip() if number else ""
        # Keys inside a documented resources/securityContext/spec block are Kubernetes fields.
        for earlier in reversed(lines[:number]):
            m = key.match(earlier)
            if m and len(m.group(1)) < len(match.group(1)):
                parent_documented = (
                    m.group(2)
                    in {
                        "resources",
                        "podSecurityContext",
                        "securityContext",
                        "spec",
                        "requests",
                        "limits",
                        "capabilities",
                        "seccompProfile",
                        "repo",
                        "embedding",
                        "searcher",
                        "storage",
                        "rbac",
                    }
                    and len(match.group(1)) > 0
                )
                break
        assert previous.startswith("#") or parent_documented, f"values.yaml:{number + 1} {line!r}"


def test_notes_give_next_steps() -> None:
    chart = helm.Chart.load(CHART)
    notes = chart.render({}, name="codeintel", namespace=NAMESPACE)["codeintel/templates/NOTES.txt"]
    assert "kubectl explain codeindex.spec" in notes
    assert "kubectl explain searchpool.spec" in notes
    assert "docs/operations.md" in notes


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_validate_against_the_crd(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        assert doc["kind"] in CRDS
        codeindex_validator(doc["kind"]).validate(doc)


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"repo": {}},
        {"repo": {"url": "ftp://x"}},
        {"repo": {"url": "https://x"}, "updates": {"interval": "15 minutes"}},
        {"repo": {"url": "https://x"}, "searcher": {"replicas": 101}},
        {"repo": {"url": "https://x"}, "storage": {"accessMode": "Shared"}},
        {"repo": {"url": "https://x"}, "searcher": {"serviceType": "Ingress"}},
    ],
)
def test_crd_schema_refuses_bad_specs(spec: dict[str, Any]) -> None:
    doc = {
        "apiVersion": "codeintel.io/v1alpha1",
        "kind": "CodeIndex",
        "metadata": {"name": "x"},
        "spec": spec,
    }
    with pytest.raises(jsonschema.ValidationError):
        codeindex_validator().validate(doc)


@pytest.mark.parametrize(
    "spec",
    [
        {"shards": 0},
        {"shards": 257},
        {"replicas": -1},
        {"serviceType": "Ingress"},
        {"allowedHosts": ["has space"]},
        {"storage": {"size": "lots"}},
        {"embedding": {"endpoint": "vllm:8000"}},
    ],
)
def test_searchpool_schema_refuses_bad_specs(spec: dict[str, Any]) -> None:
    doc = {
        "apiVersion": "codeintel.io/v1alpha1",
        "kind": "SearchPool",
        "metadata": {},
        "spec": spec,
    }
    with pytest.raises(jsonschema.ValidationError):
        codeindex_validator("SearchPool").validate(doc)


def test_codeindex_pool_name_is_checked() -> None:
    doc = {
        "apiVersion": "codeintel.io/v1alpha1",
        "kind": "CodeIndex",
        "metadata": {"name": "x"},
        "spec": {"repo": {"url": "https://x"}, "searcher": {"pool": "Fleet_1"}},
    }
    with pytest.raises(jsonschema.ValidationError):
        codeindex_validator().validate(doc)
    doc["spec"]["searcher"]["pool"] = "fleet-1"
    codeindex_validator().validate(doc)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", CRDS.values(), ids=lambda p: p.name)
def test_crd_validates(version: str, path: Path) -> None:
    kubernetes_validate.validate(yaml.safe_load(path.read_text()), version, strict=True)


@pytest.mark.parametrize(
    ("path", "columns"),
    [
        (CRD, ["Phase", "Generation", "Commit", "Vectors", "Progress", "Age"]),
        (POOL_CRD, ["Ready", "Shards", "Replicas", "Stores", "Age"]),
    ],
    ids=["codeindex", "searchpool"],
)
def test_crd_documents_every_field(path: Path, columns: list[str]) -> None:
    crd = yaml.safe_load(path.read_text())
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [
        c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")
    ] == columns
    assert crd["spec"]["names"]["shortNames"] and crd["spec"]["names"]["categories"]

    def walk(node: dict[str, Any], where: str) -> None:
        for name, child in (node.get("properties") or {}).items():
            if where == "" and name == "metadata":
                continue
            assert child.get("description"), f"{where}.{name} has no description"
            walk(child, f"{where}.{name}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{where}[]")

    walk(version["schema"]["openAPIV3Schema"], "")
    conditions = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"][
        "conditions"
    ]
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["properties"]) >= {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }


def test_service_monitor_scrapes_the_searchers_metrics_port_without_a_token() -> None:
    # The operator renders the searcher Service; the chart's ServiceMonitor must select it
    # and name a port it has, one that answers /metrics without the API token.
    from codeintel.operator import manifests
    from codeintel.operator import spec as spec_mod
    from codeintel.operator.settings import OperatorSettings

    docs = render(gpu_values())
    [monitor] = by_kind(docs, "ServiceMonitor")
    [endpoint] = monitor["spec"]["endpoints"]
    assert "authorization" not in endpoint and "bearerTokenSecret" not in endpoint
    container = by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    settings = OperatorSettings.from_env(env)
    example = by_kind(docs, "CodeIndex")[0]
    body = {**example, "metadata": {**example["metadata"], "uid": "u-1", "namespace": "search"}}
    body["spec"].setdefault("searcher", {})["apiTokenSecret"] = {"name": "search-token"}
    spec = spec_mod.parse(body["spec"], settings)
    service = manifests.render_service(body, spec, settings)
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert endpoint["port"] in ports
    deployment = manifests.render_deployment(body, spec, settings, "g000001")
    searcher = deployment["spec"]["template"]["spec"]["containers"][0]
    searcher_env = {e["name"]: e.get("value") for e in searcher["env"]}
    metrics_port = ports[endpoint["port"]]["port"]
    assert searcher_env["CODEINTEL_SERVER_METRICS_PORT"] == str(metrics_port)
    assert {"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"} in searcher[
        "ports"
    ]


def test_pool_routers_may_create_reviews_and_nothing_else() -> None:
    """SearchPool access mode kubernetes: exactly tokenreviews and subjectaccessreviews create."""
    accounts = [{"namespace": "search", "name": "fleet-router"}]
    docs = render({"accessReview": {"serviceAccounts": accounts}})
    (reviewer,) = [
        r for r in by_kind(docs, "ClusterRole") if "access-reviewer" in r["metadata"]["name"]
    ]
    granted = {
        (g, r, v)
        for rule in reviewer["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert granted == {
        ("authentication.k8s.io", "tokenreviews", "create"),
        ("authorization.k8s.io", "subjectaccessreviews", "create"),
    }
    (binding,) = [
        b for b in by_kind(docs, "ClusterRoleBinding") if "access-reviewer" in b["metadata"]["name"]
    ]
    assert binding["roleRef"]["name"] == reviewer["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", **accounts[0]}]
    # nobody is bound unless named
    assert not [
        b
        for b in by_kind(render({}), "ClusterRoleBinding")
        if "access-reviewer" in b["metadata"]["name"]
    ]
