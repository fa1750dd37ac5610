"""Everything a SearchPool renders, and the Jobs of a member CodeIndex: content, and validity
against Kubernetes' own schemas."""

from __future__ import annotations

import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from codeintel.core import errors
from codeintel.operator import jobs, pooling, poolmanifests, poolspec, pruning
from codeintel.operator import spec as spec_mod
from codeintel.operator.settings import OperatorSettings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = OperatorSettings()
K8S_VERSIONS = ("1.30", "1.37")
POOL = {
    "apiVersion": "codeintel.io/v1alpha1",
    "kind": "SearchPool",
    "metadata": {"name": "fleet", "namespace": "search", "uid": "9f1d-uid", "generation": 2},
    "spec": {
        "shards": 4,
        "replicas": 2,
        "gpu": True,
        "resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "8Gi"}},
        "nodeSelector": {"pool": "search"},
        "tolerations": [{"key": "search", "operator": "Exists", "effect": "NoSchedule"}],
        "serviceType": "LoadBalancer",
        "apiTokenSecret": {"name": "search-token"},
        "allowedHosts": ["code.example.org", "code.example.org:443"],
        "embedding": {"endpoint": "http://vllm:8000/v1/", "apiKeySecret": {"name": "vllm"}},
        "router": {"replicas": 3, "resources": {"limits": {"memory": "2Gi"}}},
        "storage": {"size": "1Ti", "storageClassName": "nfs"},
    },
}
MEMBER = {
    "apiVersion": "codeintel.io/v1alpha1",
    "kind": "CodeIndex",
    "metadata": {"name": "api", "namespace": "search", "uid": "77aa-uid", "generation": 1},
    "spec": {"repo": {"url": "https://example.org/org/api.git"}, "searcher": {"pool": "fleet"}},
}


def parsed(spec: dict | None = None) -> poolspec.SearchPoolSpec:
    return poolspec.parse(POOL["spec"] if spec is None else spec)


def all_manifests() -> list[dict]:
    spec = parsed()
    unsharded = parsed({**POOL["spec"], "shards": 1})
    rendered = [
        poolmanifests.render_pvc(POOL, spec),
        poolmanifests.render_service(poolmanifests.Pool(POOL, spec, SETTINGS)),
        poolmanifests.render_shards_service(POOL, SETTINGS),
        poolmanifests.render_router(poolmanifests.Pool(POOL, spec, SETTINGS)),
        poolmanifests.render_searchers(poolmanifests.Pool(POOL, unsharded, SETTINGS)),
    ]
    rendered += [
        poolmanifests.render_replica_set(poolmanifests.Pool(POOL, spec, SETTINGS), j)
        for j in range(2)
    ]
    rendered += [
        poolmanifests.render_disruption_budget(POOL, name, component)
        for name, component in (
            ("fleet-searchers", poolmanifests.SEARCHER),
            ("fleet-shards", poolmanifests.SHARD),
            ("fleet-router", poolmanifests.ROUTER),
        )
    ]
    return rendered


def member_jobs() -> list[dict]:
    spec = spec_mod.parse(MEMBER["spec"], SETTINGS)
    where = poolmanifests.member_store("fleet", parsed(), "search", "api", SETTINGS)
    return [jobs.render_job(MEMBER, spec, SETTINGS, action, 3, where) for action in jobs.Action]


def prune_job() -> dict:
    return pruning.render_prune_job(POOL, parsed(), SETTINGS, "api", "77aa-uid/g3", "search")


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_pool_manifest_validates_strictly(version: str) -> None:
    for manifest in [*all_manifests(), *member_jobs(), prune_job()]:
        kubernetes_validate.validate(manifest, version, strict=True)


def test_everything_is_owned_by_the_pool_and_labelled() -> None:
    for manifest in all_manifests():
        assert manifest["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "codeintel.io/v1alpha1",
                "kind": "SearchPool",
                "name": "fleet",
                "uid": "9f1d-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert manifest["metadata"]["namespace"] == "search"
        assert manifest["metadata"]["labels"]["codeintel.io/pool"] == "fleet"


def test_names_are_predictable_for_the_router() -> None:
    names = [m["metadata"]["name"] for m in all_manifests()]
    assert names == [
        "fleet-pool",
        "fleet",
        "fleet-shards",
        "fleet-router",
        "fleet-searchers",
        "fleet-r0",
        "fleet-r1",
        "fleet-searchers",
        "fleet-shards",
        "fleet-router",
    ]
    assert poolmanifests.shards_service_host("fleet", "search", SETTINGS) == (
        "fleet-shards.search.svc.cluster.local"
    )


def test_replica_set_serves_its_ordinal_as_shard() -> None:
    sts = poolmanifests.render_replica_set(poolmanifests.Pool(POOL, parsed(), SETTINGS), 1)
    spec = sts["spec"]
    assert spec["replicas"] == 4 and spec["podManagementPolicy"] == "Parallel"
    assert spec["serviceName"] == "fleet-shards"
    assert spec["selector"]["matchLabels"] == {
        "codeintel.io/pool": "fleet",
        "app.kubernetes.io/component": "pool-shard",
        "codeintel.io/replica-set": "1",
    }
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"][-4:] == ["--shard-index", "$(CODEINTEL_SHARD_INDEX)", "--shards", "4"]
    env = {e["name"]: e for e in container["env"]}
    # Defined before the args reference it, so the kubelet expands $(CODEINTEL_SHARD_INDEX).
    assert container["env"][0]["name"] == "CODEINTEL_SHARD_INDEX"
    assert env["CODEINTEL_EMBEDDER_URL"]["value"] == "http://vllm:8000/v1"
    assert env["CODEINTEL_EMBEDDER_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "vllm"
    assert env["CODEINTEL_SERVER_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "search-token",
        "key": "token",
    }
    hosts = env["CODEINTEL_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    assert "fleet-shards.search.svc" in hosts and "code.example.org:443" in hosts
    assert container["resources"]["limits"] == {"memory": "8Gi", "nvidia.com/gpu": 1}
    assert container["volumeMounts"][0] == {"name": "pool", "mountPath": "/pool", "readOnly": True}
    assert pod["nodeSelector"] == {"pool": "search"}
    assert pod["tolerations"][0]["key"] == "search"
    assert pod["topologySpreadConstraints"][0]["matchLabelKeys"] == ["apps.kubernetes.io/pod-index"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_template_hash_follows_the_spec() -> None:
    first = poolmanifests.render_replica_set(poolmanifests.Pool(POOL, parsed(), SETTINGS), 0)
    again = poolmanifests.render_replica_set(poolmanifests.Pool(POOL, parsed(), SETTINGS), 0)
    bigger = poolmanifests.render_replica_set(
        poolmanifests.Pool(POOL, parsed({**POOL["spec"], "shards": 5}), SETTINGS), 0
    )
    key = poolmanifests.TEMPLATE_HASH_ANNOTATION
    assert first["metadata"]["annotations"][key] == again["metadata"]["annotations"][key]
    assert first["metadata"]["annotations"][key] != bigger["metadata"]["annotations"][key]


def test_router_has_no_volume_gpu_or_index() -> None:
    router = poolmanifests.render_router(poolmanifests.Pool(POOL, parsed(), SETTINGS))
    assert router["spec"]["replicas"] == 3
    pod = router["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    assert container["resources"] == {"limits": {"memory": "2Gi"}}
    env = {e["name"]: e.get("value") for e in container["env"]}
    args = container["args"]
    assert args[args.index("--shard-url") + 1] == (
        "http://fleet-r{r}-{i}.fleet-shards.search.svc.cluster.local:8080"
    )
    assert args[args.index("--shards") + 1] == "4"
    hosts = env["CODEINTEL_SERVER_ALLOWED_HOSTS"].split(",")
    assert hosts == [
        "fleet",
        "fleet.search",
        "fleet.search.svc",
        "fleet.search.svc.cluster.local",
        "code.example.org",
        "code.example.org:443",
    ]


def test_front_service_targets_router_or_searchers() -> None:
    sharded = poolmanifests.render_service(poolmanifests.Pool(POOL, parsed(), SETTINGS))
    router = poolmanifests.render_router(poolmanifests.Pool(POOL, parsed(), SETTINGS))
    assert sharded["spec"]["type"] == "LoadBalancer"
    assert sharded["spec"]["selector"] == router["spec"]["selector"]["matchLabels"]
    one = parsed({"shards": 1})
    plain = poolmanifests.render_service(poolmanifests.Pool(POOL, one, SETTINGS))
    searchers = poolmanifests.render_searchers(poolmanifests.Pool(POOL, one, SETTINGS))
    assert plain["spec"]["selector"] == searchers["spec"]["selector"]["matchLabels"]
    assert searchers["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_disruption_budgets_select_the_pods_of_their_workload() -> None:
    shards = poolmanifests.render_disruption_budget(POOL, "fleet-shards", poolmanifests.SHARD)
    sts = poolmanifests.render_replica_set(poolmanifests.Pool(POOL, parsed(), SETTINGS), 0)
    selector = shards["spec"]["selector"]["matchLabels"]
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    # One budget over every replica set: one shard pod evicted at a time, whatever the set.
    assert selector.items() <= pod_labels.items() and "codeintel.io/replica-set" not in selector
    assert shards["spec"]["maxUnavailable"] == 1
    router = poolmanifests.render_router(poolmanifests.Pool(POOL, parsed(), SETTINGS))
    budget = poolmanifests.render_disruption_budget(POOL, "fleet-router", poolmanifests.ROUTER)
    assert budget["spec"]["selector"] == router["spec"]["selector"]


def test_headless_service_publishes_only_ready_shards() -> None:
    service = poolmanifests.render_shards_service(POOL, SETTINGS)
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is False
    assert service["spec"]["ports"][0]["name"] == "http"


def test_member_jobs_write_under_namespace_and_name_on_the_pool_volume() -> None:
    for job in member_jobs():
        pod = job["spec"]["template"]["spec"]
        assert pod["volumes"][0]["persistentVolumeClaim"] == {
            "claimName": "fleet-pool",
            "readOnly": False,
        }
        assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/pool"
        args = pod["containers"][0]["args"]
        assert args[args.index("--store") + 1] == "/pool/search/api"
        assert job["metadata"]["labels"]["codeintel.io/pool"] == "fleet"
        assert job["metadata"]["ownerReferences"][0]["kind"] == "CodeIndex"


def test_prune_job_renames_the_store_away_then_deletes_it(tmp_path: Path) -> None:
    job = prune_job()
    assert job["metadata"]["ownerReferences"][0]["kind"] == "SearchPool"
    assert job["metadata"]["name"].startswith("api-prune-")
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == SETTINGS.searcher_image
    assert pruning.prune_job_name("api", "a") != pruning.prune_job_name("api", "b")
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "fleet-pool"}
    command = pod["containers"][0]["command"]
    assert command[-2:] == ["/pool/search/api", "/pool"]
    # Run the script itself against a stand-in for the pool volume.
    pool = tmp_path / "pool"
    (pool / "search" / "api" / "generations" / "g000001").mkdir(parents=True)
    (pool / "search" / "api" / "CURRENT").write_text("g000001\n")
    (pool / "search" / "web").mkdir()
    script = [*command[:4], str(pool / "search" / "api"), str(pool)]
    subprocess.run(script, check=True)
    assert not (pool / "search" / "api").exists()
    assert (pool / "search" / "web").is_dir()
    assert list((pool / ".trash").iterdir()) == []
    subprocess.run(script, check=True)  # already gone: nothing to do, no error


def test_existing_claim_is_used_by_searchers_and_members() -> None:
    spec = parsed({"storage": {"existingClaim": "nfs-stores"}})
    searchers = poolmanifests.render_searchers(poolmanifests.Pool(POOL, spec, SETTINGS))
    volume = searchers["spec"]["template"]["spec"]["volumes"][0]
    assert volume["persistentVolumeClaim"]["claimName"] == "nfs-stores"
    where = poolmanifests.member_store("fleet", spec, "search", "api", SETTINGS)
    assert where.claim == "nfs-stores"


def test_settled_reads_the_statefulset_controller() -> None:
    sts = {"metadata": {"generation": 3}, "spec": {"replicas": 2}}
    assert not pooling.settled(sts)
    sts["status"] = {
        "observedGeneration": 3,
        "updatedReplicas": 2,
        "readyReplicas": 2,
        "currentRevision": "r-1",
        "updateRevision": "r-2",
    }
    assert not pooling.settled(sts)  # still rolling to r-2
    sts["status"]["currentRevision"] = "r-2"
    assert pooling.settled(sts)
    sts["status"]["readyReplicas"] = 1
    assert not pooling.settled(sts)


def test_pool_spec_defaults_match_the_crd() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "searchpool.yaml").read_text())
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]
    spec = poolspec.parse({})
    assert props["shards"]["default"] == spec.shards
    assert props["replicas"]["default"] == spec.replicas
    assert props["serviceType"]["default"] == spec.service_type
    assert props["gpu"]["default"] == spec.searcher.gpu
    assert props["embedding"]["properties"]["endpoint"]["default"] == spec.embed_url
    assert props["router"]["properties"]["replicas"]["default"] == spec.router_replicas
    assert props["storage"]["properties"]["size"]["default"] == spec.storage_size
    assert props["storage"]["properties"]["deleteWithPool"]["default"] == spec.delete_with_pool
    assert props["shards"]["maximum"] == poolspec.MAX_SHARDS


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"shards": 0}, "spec.shards"),
        ({"shards": "4"}, "spec.shards"),
        ({"replicas": 101}, "spec.replicas"),
        ({"serviceType": "Ingress"}, "spec.serviceType"),
        ({"allowedHosts": "x.org"}, "spec.allowedHosts"),
        ({"allowedHosts": ["a b"]}, "spec.allowedHosts"),
        ({"router": {"replicas": -1}}, "spec.router.replicas"),
        ({"apiTokenSecret": {"key": "t"}}, "spec.apiTokenSecret"),
        ({"tolerations": {"key": "x"}}, "spec.tolerations"),
    ],
)
def test_invalid_pool_specs_name_the_field(spec: dict, field: str) -> None:
    with pytest.raises(errors.ConfigError, match=field.replace(".", r"\.")):
        poolspec.parse(spec)


@pytest.mark.parametrize("name", ["Fleet", "1fleet", "fleet-", "f" * 41, "a_b"])
def test_pool_names_that_would_break_object_names_are_refused(name: str) -> None:
    with pytest.raises(errors.ConfigError, match=r"spec\.searcher\.pool"):
        spec_mod.parse({"repo": {"url": "https://x"}, "searcher": {"pool": name}}, SETTINGS)


def _env(pod: dict) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["containers"][0]["env"]}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_tokens_file_mode_mounts_the_secret_on_the_pods_callers_reach(version: str) -> None:
    access = {"mode": "tokensFile", "tokensSecret": {"name": "pool-tokens"}}
    spec = parsed({**POOL["spec"], "access": access})
    router = poolmanifests.render_router(poolmanifests.Pool(POOL, spec, SETTINGS))
    pod = router["spec"]["template"]["spec"]
    assert _env(pod)["CODEINTEL_SERVER_TOKENS_FILE"] == "/etc/codeintel/access/tokens.json"
    (volume,) = [v for v in pod["volumes"] if v["name"] == poolmanifests.ACCESS_VOLUME]
    assert volume["secret"] == {
        "secretName": "pool-tokens",
        "items": [{"key": "tokens.json", "path": "tokens.json"}],
    }
    assert pod["automountServiceAccountToken"] is False
    # the shards trust the router's token only: no tokens file there
    shard = poolmanifests.render_replica_set(poolmanifests.Pool(POOL, spec, SETTINGS), 0)
    assert "CODEINTEL_SERVER_TOKENS_FILE" not in _env(shard["spec"]["template"]["spec"])
    # an unsharded pool's searchers face the callers themselves
    one = parsed({**POOL["spec"], "shards": 1, "access": access})
    searchers = poolmanifests.render_searchers(poolmanifests.Pool(POOL, one, SETTINGS))
    assert "CODEINTEL_SERVER_TOKENS_FILE" in _env(searchers["spec"]["template"]["spec"])
    for manifest in (router, shard, searchers):
        kubernetes_validate.validate(manifest, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_mode_gives_the_router_its_service_account(version: str) -> None:
    spec = parsed({**POOL["spec"], "access": {"mode": "kubernetes"}})
    router = poolmanifests.render_router(poolmanifests.Pool(POOL, spec, SETTINGS))
    pod = router["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "fleet-router"
    assert pod["automountServiceAccountToken"] is True
    assert _env(pod)["CODEINTEL_SERVER_KUBE_AUTH"] == "true"
    shard = poolmanifests.render_replica_set(poolmanifests.Pool(POOL, spec, SETTINGS), 0)
    shard_pod = shard["spec"]["template"]["spec"]
    assert shard_pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in shard_pod
    named = parsed(
        {**POOL["spec"], "access": {"mode": "kubernetes", "serviceAccountName": "agents-gw"}}
    )
    named_pod = poolmanifests.render_router(poolmanifests.Pool(POOL, named, SETTINGS))["spec"][
        "template"
    ]["spec"]
    assert named_pod["serviceAccountName"] == "agents-gw"
    kubernetes_validate.validate(router, version, strict=True)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"access": {"mode": "ldap"}}, "spec.access.mode"),
        ({"access": {"mode": "tokensFile"}}, "spec.access.tokensSecret"),
        (
            {"access": {"mode": "tokensFile", "tokensSecret": {"key": "x"}}},
            "spec.access.tokensSecret",
        ),
        ({"shards": 2, "access": {"mode": "kubernetes"}}, "spec.apiTokenSecret"),
        (
            {"shards": 2, "access": {"mode": "tokensFile", "tokensSecret": {"name": "t"}}},
            "spec.apiTokenSecret",
        ),
    ],
)
def test_access_specs_that_would_leave_a_door_open_are_refused(spec: dict, field: str) -> None:
    with pytest.raises(errors.ConfigError, match=field.replace(".", r"\.")):
        poolspec.parse(spec)


def test_access_defaults_match_the_crd() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "searchpool.yaml").read_text())
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["access"]["properties"]
    assert props["mode"]["default"] == poolspec.parse({}).access_mode
    assert props["mode"]["enum"] == list(poolspec.ACCESS_MODES)
    assert props["tokensSecret"]["properties"]["key"]["default"] == poolspec.DEFAULT_TOKENS_KEY
