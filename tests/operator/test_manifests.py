"""Every manifest the operator renders: its content, and validity against Kubernetes' own schemas."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from codeintel.core import errors
from codeintel.operator import jobs, manifests
from codeintel.operator import spec as spec_mod
from codeintel.operator.settings import OperatorSettings, parse_duration

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = OperatorSettings()
BODY = {
    "apiVersion": "codeintel.io/v1alpha1",
    "kind": "CodeIndex",
    "metadata": {"name": "kgfoundry", "namespace": "search", "uid": "0b5c-uid", "generation": 3},
    "spec": {
        "repo": {
            "url": "https://example.org/org/repo.git",
            "ref": "main",
            "credentialsSecret": "git-creds",
        },
        "embedding": {
            "endpoint": "http://vllm:8000/v1/",
            "model": "Qwen/Qwen3-Embedding-4B",
            "dimension": 2560,
            "apiKeySecret": {"name": "vllm"},
        },
        "index": {"nprobe": 64, "mergeThreshold": 10000},
        "updates": {"interval": "15m"},
        "indexer": {
            "gpu": True,
            "resources": {"requests": {"cpu": "4", "memory": "16Gi"}},
            "nodeSelector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "backoffLimit": 1,
        },
        "searcher": {
            "replicas": 3,
            "apiTokenSecret": {"name": "search-token"},
            "allowedHosts": ["Code.Example.com"],
        },
        "storage": {"size": "50Gi", "storageClassName": "nfs"},
    },
}
K8S_VERSIONS = ("1.30", "1.37")


def parsed(body: dict = BODY) -> spec_mod.CodeIndexSpec:
    return spec_mod.parse(body["spec"], SETTINGS)


def all_manifests() -> list[dict]:
    spec = parsed()
    rendered = [
        manifests.render_pvc(BODY, spec),
        manifests.render_service(BODY, spec, SETTINGS),
        manifests.render_deployment(BODY, spec, SETTINGS, "g000042"),
    ]
    rendered += [jobs.render_job(BODY, spec, SETTINGS, action, 7) for action in jobs.Action]
    return rendered


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_validates_strictly(version: str) -> None:
    for manifest in all_manifests():
        kubernetes_validate.validate(manifest, version, strict=True)


def test_everything_is_owned_and_labelled() -> None:
    for manifest in all_manifests():
        owner = manifest["metadata"]["ownerReferences"][0]
        assert owner == {
            "apiVersion": "codeintel.io/v1alpha1",
            "kind": "CodeIndex",
            "name": "kgfoundry",
            "uid": "0b5c-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert manifest["metadata"]["namespace"] == "search"
        assert manifest["metadata"]["labels"]["codeintel.io/index"] == "kgfoundry"


def test_pvc_is_read_write_many_with_class_and_size() -> None:
    pvc = manifests.render_pvc(BODY, parsed())
    assert pvc["metadata"]["name"] == "kgfoundry-store"
    assert pvc["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": "nfs",
        "resources": {"requests": {"storage": "50Gi"}},
    }


def test_existing_claim_is_mounted_instead() -> None:
    body = copy.deepcopy(BODY)
    body["spec"]["storage"] = {"existingClaim": "shared-index"}
    job = jobs.render_job(body, parsed(body), SETTINGS, jobs.Action.BUILD, 1)
    volume = job["spec"]["template"]["spec"]["volumes"][0]
    assert volume["persistentVolumeClaim"]["claimName"] == "shared-index"


def test_build_job_runs_the_contract_command() -> None:
    job = jobs.render_job(BODY, parsed(), SETTINGS, jobs.Action.BUILD, 7)
    assert job["metadata"]["name"] == "kgfoundry-build-00007"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["codeintel"]
    assert container["args"] == [
        "index",
        "build",
        "https://example.org/org/repo.git",
        "--store",
        "/store",
        "--ref",
        "main",
        "--embedder",
        "openai",
        "--embed-url",
        "http://vllm:8000/v1",
        "--embed-model",
        "Qwen/Qwen3-Embedding-4B",
        "--embed-dim",
        "2560",
        "--result-file",
        "/dev/termination-log",
    ]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CODEINTEL_LOG_FORMAT"] == "json"


def test_update_and_merge_jobs() -> None:
    update = jobs.render_job(BODY, parsed(), SETTINGS, jobs.Action.UPDATE, 8)
    args = update["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:7] == [
        "index",
        "update",
        "--store",
        "/store",
        "--ref",
        "main",
        "--merge-threshold",
    ]
    assert args[7] == "0"
    merge = jobs.render_job(BODY, parsed(), SETTINGS, jobs.Action.MERGE, 9)
    assert merge["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "index",
        "merge",
        "--store",
        "/store",
        "--result-file",
        "/dev/termination-log",
    ]


def test_job_gpu_placement_secrets_and_limits() -> None:
    job = jobs.render_job(BODY, parsed(), SETTINGS, jobs.Action.BUILD, 1)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": 1}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["restartPolicy"] == "Never"
    env = {e["name"]: e for e in container["env"]}
    assert env["CODEINTEL_GIT_USERNAME"]["valueFrom"]["secretKeyRef"] == {
        "name": "git-creds",
        "key": "username",
    }
    assert env["CODEINTEL_GIT_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "git-creds",
        "key": "password",
    }
    assert env["CODEINTEL_EMBEDDER_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "vllm",
        "key": "api-key",
    }
    spec = job["spec"]
    assert spec["backoffLimit"] == 1
    assert spec["activeDeadlineSeconds"] == SETTINGS.job_active_deadline_seconds
    assert spec["ttlSecondsAfterFinished"] == SETTINGS.job_ttl_seconds_after_finished


def test_no_gpu_no_gpu_request() -> None:
    body = copy.deepcopy(BODY)
    body["spec"]["indexer"] = {}
    job = jobs.render_job(body, parsed(body), SETTINGS, jobs.Action.BUILD, 1)
    resources = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in resources.get("limits", {})
    assert resources == dict(SETTINGS.indexer_resources)


def test_searcher_deployment() -> None:
    deployment = manifests.render_deployment(BODY, parsed(), SETTINGS, "g000042")
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    template = spec["template"]
    assert template["metadata"]["annotations"] == {"codeintel.io/generation": "g000042"}
    container = template["spec"]["containers"][0]
    assert container["args"] == [
        "serve",
        "--store",
        "/store",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
    ]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["volumeMounts"][0] == {
        "name": "store",
        "mountPath": "/store",
        "readOnly": True,
    }
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CODEINTEL_EMBEDDER_MODEL"] == "Qwen/Qwen3-Embedding-4B"
    assert env["CODEINTEL_INDEX_NPROBE"] == "64"
    assert "kgfoundry-searcher.search.svc" in env["CODEINTEL_SERVER_ALLOWED_HOSTS"]
    assert "CODEINTEL_SERVER_API_TOKEN" in env
    assert env["CODEINTEL_LOG_FORMAT"] == "json"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert template["spec"]["securityContext"]["runAsNonRoot"] is True


def test_service_selects_the_searchers() -> None:
    service = manifests.render_service(BODY, parsed(), SETTINGS)
    deployment = manifests.render_deployment(BODY, parsed(), SETTINGS, "g1")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == 8080


def test_long_names_fit_kubernetes_limits() -> None:
    name = "a" * 120
    job_name = jobs.job_name(name, jobs.Action.MERGE, 123)
    assert len(job_name) <= 63 and job_name.endswith("-merge-00123")
    assert len(manifests.searcher_name(name)) <= 63
    assert jobs.job_name(name, jobs.Action.MERGE, 1) != jobs.job_name(
        "a" * 119 + "b", jobs.Action.MERGE, 1
    )


def test_history_can_be_turned_off_per_index() -> None:
    """``spec.index.history: false`` reaches every indexer Job as ``--no-history``."""
    off = spec_mod.parse({**BODY["spec"], "index": {"history": False}}, SETTINGS)
    for action in jobs.Action:
        on_args = jobs.render_job(BODY, parsed(), SETTINGS, action, 1)["spec"]["template"]["spec"]
        off_args = jobs.render_job(BODY, off, SETTINGS, action, 1)["spec"]["template"]["spec"]
        assert "--no-history" not in on_args["containers"][0]["args"]
        assert "--no-history" in off_args["containers"][0]["args"]


def test_spec_defaults_match_the_crd() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "codeindex.yaml").read_text())
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]
    spec = spec_mod.parse({"repo": {"url": "https://x/y.git"}}, SETTINGS)
    assert props["repo"]["properties"]["ref"]["default"] == spec.ref
    assert props["embedding"]["properties"]["endpoint"]["default"] == spec.embed_url
    assert props["embedding"]["properties"]["model"]["default"] == spec.embed_model
    assert props["index"]["properties"]["nprobe"]["default"] == spec.nprobe
    assert props["index"]["properties"]["mergeThreshold"]["default"] == spec.merge_threshold
    assert props["index"]["properties"]["history"]["default"] == spec.history
    assert (
        parse_duration(props["updates"]["properties"]["interval"]["default"])
        == spec.update_interval_seconds
    )
    assert props["searcher"]["properties"]["replicas"]["default"] == spec.replicas
    assert props["storage"]["properties"]["size"]["default"] == spec.storage_size
    assert props["storage"]["properties"]["accessMode"]["default"] == spec.access_mode
    assert props["storage"]["properties"]["deleteWithIndex"]["default"] == spec.delete_with_index


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({}, "spec.repo.url"),
        ({"repo": {"url": "https://x"}, "updates": {"interval": "soon"}}, "spec.updates.interval"),
        ({"repo": {"url": "https://x"}, "searcher": {"replicas": -1}}, "spec.searcher.replicas"),
        (
            {"repo": {"url": "https://x"}, "embedding": {"dimension": "big"}},
            "spec.embedding.dimension",
        ),
        (
            {"repo": {"url": "https://x"}, "storage": {"accessMode": "Shared"}},
            "spec.storage.accessMode",
        ),
        ({"repo": {"url": "https://x"}, "index": {"history": "no"}}, "spec.index.history"),
        (
            {"repo": {"url": "https://x"}, "searcher": {"allowedHosts": ["https://a.example"]}},
            "spec.searcher.allowedHosts[0]",
        ),
        (
            {"repo": {"url": "https://x"}, "searcher": {"allowedHosts": ["a.example", "b:8080"]}},
            "spec.searcher.allowedHosts[1]",
        ),
        (
            {"repo": {"url": "https://x"}, "searcher": {"allowedHosts": "a.example"}},
            "spec.searcher.allowedHosts",
        ),
        (
            {"repo": {"url": "https://x"}, "searcher": {"allowedHosts": ["h"] * 33}},
            "spec.searcher.allowedHosts",
        ),
    ],
)
def test_invalid_specs_name_the_field(spec: dict, field: str) -> None:
    with pytest.raises(errors.ConfigError, match=re.escape(field)):
        spec_mod.parse(spec, SETTINGS)


def test_allowed_hosts_follow_the_service_names_in_the_searcher_env() -> None:
    deployment = manifests.render_deployment(BODY, parsed(), SETTINGS, "g1")
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["CODEINTEL_SERVER_ALLOWED_HOSTS"] == (
        "kgfoundry-searcher,kgfoundry-searcher.search,kgfoundry-searcher.search.svc,"
        "code.example.com"
    )
    body = copy.deepcopy(BODY)
    body["spec"]["searcher"]["allowedHosts"] = ["kgfoundry-searcher", "x.example", "X.example"]
    deployment = manifests.render_deployment(body, parsed(body), SETTINGS, "g1")
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["CODEINTEL_SERVER_ALLOWED_HOSTS"].split(",")[3:] == ["x.example"]


def test_allowed_hosts_rule_is_the_crds() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "codeindex.yaml").read_text())
    field = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["searcher"]["properties"]["allowedHosts"]
    assert field["items"]["pattern"] == f"^{spec_mod.HOST_NAME.pattern}$"
    assert field["maxItems"] == spec_mod.MAX_ALLOWED_HOSTS
    validator = jsonschema.Draft7Validator(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    validator.validate(BODY)
    for bad in (["code.example.com:443"], ["https://code.example.com"], ["a,b"]):
        body = copy.deepcopy(BODY)
        body["spec"]["searcher"]["allowedHosts"] = bad
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(body)
        with pytest.raises(errors.ConfigError, match=r"spec\.searcher\.allowedHosts\[0\]"):
            parsed(body)
    assert spec_mod.parse({"repo": {"url": "https://x"}}, SETTINGS).allowed_hosts == ()
