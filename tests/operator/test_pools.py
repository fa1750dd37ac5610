"""SearchPools on the emulated API server: the objects a pool owns, CodeIndexes joining and
leaving one, a missing pool, staged rollouts and deletion.

The test plays the StatefulSet and Deployment controllers where the operator reads
their work (shard pods with the pod-index label, ``status`` of StatefulSets and the
router Deployment).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from operator_harness import Cluster, build_result, wait_for

from conftest import OperatorFactory

NS = "team-a"
INDEX = {
    "repo": {"url": "https://example.org/org/repo.git", "ref": "main"},
    "embedding": {"endpoint": "http://vllm:8000/v1", "model": "m", "dimension": 8},
    "updates": {"enabled": False},
    "searcher": {"replicas": 1},
}
API = "codeintel.io/v1alpha1"


def condition(status: dict, type_: str) -> dict:
    return next(c for c in status.get("conditions", []) if c["type"] == type_)


def container(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]["containers"][0]


async def pool_status_where(cluster: Cluster, name: str, check) -> dict:
    return await cluster.pool_status_where(NS, name, check)


async def index_status_where(cluster: Cluster, name: str, check) -> dict:
    return await cluster.status_where(NS, name, check)


async def get(cluster: Cluster, api: str, plural: str, name: str) -> dict[str, Any] | None:
    return await cluster.get(api, plural, NS, name)


async def gone(cluster: Cluster, api: str, plural: str, name: str) -> bool:
    return await get(cluster, api, plural, name) is None


async def test_sharded_pool_renders_shards_router_services_and_claim(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    async with run_operator():
        await cluster.apply_searchpool(
            NS, "fleet", {"shards": 3, "replicas": 2, "storage": {"size": "200Gi"}}
        )
        r0 = await wait_for(lambda: get(cluster, "apps/v1", "statefulsets", "fleet-r0"))
        r1 = await wait_for(lambda: get(cluster, "apps/v1", "statefulsets", "fleet-r1"))
        router = await wait_for(lambda: get(cluster, "apps/v1", "deployments", "fleet-router"))
        front = await wait_for(lambda: get(cluster, "v1", "services", "fleet"))
        headless = await get(cluster, "v1", "services", "fleet-shards")
        pvc = await get(cluster, "v1", "persistentvolumeclaims", "fleet-pool")
        status = await pool_status_where(cluster, "fleet", lambda s: s.get("shards") == 3)
        assert status["replicas"] == 6 and status["readyShards"] == 0
        assert status["unavailableShards"] == [0, 1, 2]
        assert condition(status, "Ready")["status"] == "False"

        # Shards 0 and 1 come up in replica set 0, and one router pod is ready.
        for ordinal in (0, 1):
            await cluster.start_shard_pod(NS, r0, ordinal)
        await cluster.start_shard_pod(NS, r1, 2, ready=False)
        await cluster.client.patch(
            f"/apis/apps/v1/namespaces/{NS}/deployments/fleet-router/status",
            {"status": {"readyReplicas": 1, "replicas": 2}},
        )
        status = await pool_status_where(cluster, "fleet", lambda s: s.get("readyShards") == 2)
    assert status["unavailableShards"] == [2]
    assert status["readyReplicas"] == 2 and status["routerReadyReplicas"] == 1
    assert condition(status, "Ready")["status"] == "True"
    degraded = condition(status, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "ShardsUnavailable"
    assert "shards 2 of 3" in degraded["message"]
    assert status["service"] == "fleet" and status["claim"] == "fleet-pool"

    assert pvc is not None and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "200Gi"
    assert pvc["metadata"]["ownerReferences"][0]["kind"] == "SearchPool"
    for replica, sts in enumerate((r0, r1)):
        assert sts["spec"]["replicas"] == 3
        assert sts["spec"]["podManagementPolicy"] == "Parallel"
        assert sts["spec"]["serviceName"] == "fleet-shards"
        assert sts["spec"]["selector"]["matchLabels"]["codeintel.io/replica-set"] == str(replica)
        args = container(sts)["args"]
        assert args == [
            "serve",
            "--stores-root",
            "/pool",
            "--host",
            "0.0.0.0",
            "--port",
            "8080",
            "--shard-index",
            "$(CODEINTEL_SHARD_INDEX)",
            "--shards",
            "3",
        ]
        shard_env = next(e for e in container(sts)["env"] if e["name"] == "CODEINTEL_SHARD_INDEX")
        assert shard_env["valueFrom"]["fieldRef"]["fieldPath"] == (
            "metadata.labels['apps.kubernetes.io/pod-index']"
        )
        volume = sts["spec"]["template"]["spec"]["volumes"][0]
        assert volume["persistentVolumeClaim"] == {"claimName": "fleet-pool", "readOnly": True}
    assert headless is not None and headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == {
        "codeintel.io/pool": "fleet",
        "app.kubernetes.io/component": "pool-shard",
    }
    assert container(router)["args"] == [
        "router",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
        "--shard-url",
        "http://fleet-r{r}-{i}.fleet-shards.team-a.svc.cluster.local:8080",
        "--shards",
        "3",
        "--shard-replicas",
        "2",
    ]
    assert "volumes" not in router["spec"]["template"]["spec"] or all(
        "persistentVolumeClaim" not in v for v in router["spec"]["template"]["spec"]["volumes"]
    )
    assert front["spec"]["selector"] == router["spec"]["selector"]["matchLabels"]
    assert await get(cluster, "apps/v1", "deployments", "fleet-searchers") is None
    for name in ("fleet-shards", "fleet-router"):
        budget = await get(cluster, "policy/v1", "poddisruptionbudgets", name)
        assert budget is not None and budget["spec"]["maxUnavailable"] == 1


async def test_one_shard_runs_plain_searchers_and_resharding_swaps_the_shape(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    async with run_operator():
        await cluster.apply_searchpool(NS, "fleet", {"replicas": 3})
        searchers = await wait_for(
            lambda: get(cluster, "apps/v1", "deployments", "fleet-searchers")
        )
        front = await wait_for(lambda: get(cluster, "v1", "services", "fleet"))
        assert searchers["spec"]["replicas"] == 3
        assert container(searchers)["args"] == [
            "serve",
            "--stores-root",
            "/pool",
            "--host",
            "0.0.0.0",
            "--port",
            "8080",
        ]
        assert front["spec"]["selector"] == searchers["spec"]["selector"]["matchLabels"]
        assert await get(cluster, "apps/v1", "deployments", "fleet-router") is None
        assert await get(cluster, "policy/v1", "poddisruptionbudgets", "fleet-searchers")

        await cluster.patch_spec("searchpools", NS, "fleet", {"shards": 2, "replicas": 1})
        await wait_for(lambda: get(cluster, "apps/v1", "statefulsets", "fleet-r0"))
        router = await wait_for(lambda: get(cluster, "apps/v1", "deployments", "fleet-router"))
        await wait_for(lambda: gone(cluster, "apps/v1", "deployments", "fleet-searchers"))
        await wait_for(
            lambda: gone(cluster, "policy/v1", "poddisruptionbudgets", "fleet-searchers")
        )
        front = await get(cluster, "v1", "services", "fleet")
        assert front is not None
        assert front["spec"]["selector"] == router["spec"]["selector"]["matchLabels"]
        assert await get(cluster, "apps/v1", "statefulsets", "fleet-r1") is None

        await cluster.patch_spec("searchpools", NS, "fleet", {"shards": 1})
        await wait_for(lambda: gone(cluster, "apps/v1", "statefulsets", "fleet-r0"))
        await wait_for(lambda: gone(cluster, "apps/v1", "deployments", "fleet-router"))
        await wait_for(lambda: gone(cluster, "v1", "services", "fleet-shards"))
        await wait_for(lambda: gone(cluster, "policy/v1", "poddisruptionbudgets", "fleet-router"))
        await wait_for(lambda: get(cluster, "apps/v1", "deployments", "fleet-searchers"))


async def test_codeindex_joins_a_pool_and_leaves_it(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    async with run_operator():
        await cluster.apply_searchpool(NS, "fleet", {"shards": 2})
        await cluster.apply_codeindex(NS, "demo", INDEX)
        await cluster.finish_job(NS, "demo-build-00001", result=build_result("build", "g000001"))
        await wait_for(lambda: get(cluster, "apps/v1", "deployments", "demo-searcher"))

        # Joining: a full build into the pool volume; the own searchers serve meanwhile.
        joined = {**INDEX, "searcher": {"replicas": 1, "pool": "fleet"}}
        await cluster.patch_spec("codeindexes", NS, "demo", joined)
        job = await cluster.wait_for_job(NS, "demo-build-00002")
        pod = job["spec"]["template"]["spec"]
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "fleet-pool"
        assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/pool"
        args = pod["containers"][0]["args"]
        assert args[args.index("--store") + 1] == "/pool/team-a/demo"
        assert job["metadata"]["labels"]["codeintel.io/pool"] == "fleet"
        status = await cluster.status(NS, "demo")
        assert status["activeJob"]["pool"] == "fleet"
        assert condition(status, "Indexing")["reason"] == "PoolChanged"
        assert await get(cluster, "apps/v1", "deployments", "demo-searcher") is not None

        await cluster.finish_job(NS, "demo-build-00002", result=build_result("build", "g000002"))
        status = await index_status_where(cluster, "demo", lambda s: s.get("pool") == "fleet")
        assert status["generation"] == "g000002" and status["phase"] == "Ready"
        await wait_for(lambda: gone(cluster, "apps/v1", "deployments", "demo-searcher"))
        assert await gone(cluster, "v1", "services", "demo-searcher")
        pool = await pool_status_where(
            cluster, "fleet", lambda s: s.get("members") and s["members"][0]["generation"]
        )
        assert pool["stores"] == 1
        assert pool["members"] == [
            {
                "name": "demo",
                "phase": "Ready",
                "generation": "g000002",
                "commit": "a" * 40,
                "vectors": 100,
            }
        ]

        # Leaving: a full build back on the own claim; own searchers once it succeeds.
        await cluster.patch_spec("codeindexes", NS, "demo", {"searcher": {"pool": None}})
        job = await cluster.wait_for_job(NS, "demo-build-00003")
        pod = job["spec"]["template"]["spec"]
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "demo-store"
        args = pod["containers"][0]["args"]
        assert args[args.index("--store") + 1] == "/store"
        assert await get(cluster, "apps/v1", "deployments", "demo-searcher") is None
        await cluster.finish_job(NS, "demo-build-00003", result=build_result("build", "g000003"))
        await index_status_where(cluster, "demo", lambda s: s.get("pool") == "")
        await wait_for(lambda: get(cluster, "apps/v1", "deployments", "demo-searcher"))
        pool = await pool_status_where(cluster, "fleet", lambda s: s.get("stores") == 0)
        assert pool["members"] == []
        # The copy left in the pool is removed, so the pool stops serving it.
        prune = await wait_for(lambda: prune_jobs(cluster, "demo"))
    assert len(prune) == 1
    assert prune[0]["metadata"]["ownerReferences"][0]["kind"] == "SearchPool"
    command = prune[0]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[-2:] == ["/pool/team-a/demo", "/pool"]


async def prune_jobs(cluster: Cluster, index: str) -> list[dict]:
    return [
        job
        for job in await cluster.jobs(NS)
        if job["metadata"]["name"].startswith(f"{index}-prune-")
    ]


async def test_rejoining_waits_for_the_old_copy_to_be_removed(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    pooled = {**INDEX, "searcher": {"pool": "fleet"}}
    async with run_operator():
        await cluster.apply_searchpool(NS, "fleet", {})
        await cluster.apply_codeindex(NS, "demo", pooled)
        await cluster.finish_job(NS, "demo-build-00001", result=build_result("build", "g000001"))
        await index_status_where(cluster, "demo", lambda s: s.get("pool") == "fleet")
        await cluster.patch_spec("codeindexes", NS, "demo", {"searcher": {"pool": None}})
        await cluster.finish_job(NS, "demo-build-00002", result=build_result("build", "g000002"))
        prune = (await wait_for(lambda: prune_jobs(cluster, "demo")))[0]

        await cluster.patch_spec("codeindexes", NS, "demo", {"searcher": {"pool": "fleet"}})
        await asyncio.sleep(1.5)
        assert await cluster.get("batch/v1", "jobs", NS, "demo-build-00003") is None
        await cluster.client.patch(
            f"/apis/batch/v1/namespaces/{NS}/jobs/{prune['metadata']['name']}/status",
            {"status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}},
        )
        job = await cluster.wait_for_job(NS, "demo-build-00003")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--store") + 1] == "/pool/team-a/demo"


async def test_deleting_a_member_removes_its_store_from_the_pool(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    async with run_operator():
        await cluster.apply_searchpool(NS, "fleet", {})
        await cluster.apply_codeindex(NS, "demo", {**INDEX, "searcher": {"pool": "fleet"}})
        await cluster.finish_job(NS, "demo-build-00001", result=build_result("build", "g000001"))
        await index_status_where(cluster, "demo", lambda s: s.get("pool") == "fleet")
        await cluster.client.delete(f"/apis/{API}/namespaces/{NS}/codeindexes/demo")
        await wait_for(lambda: gone(cluster, API, "codeindexes", "demo"))
        prune = await wait_for(lambda: prune_jobs(cluster, "demo"))
        await pool_status_where(cluster, "fleet", lambda s: s.get("stores") == 0)
    command = prune[0]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[-2:] == ["/pool/team-a/demo", "/pool"]


async def test_codeindex_born_in_a_pool_has_no_claim_or_searchers(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    async with run_operator():
        await cluster.apply_searchpool(NS, "fleet", {"storage": {"existingClaim": "nfs-stores"}})
        await cluster.apply_codeindex(NS, "api", {**INDEX, "searcher": {"pool": "fleet"}})
        job = await cluster.wait_for_job(NS, "api-build-00001")
        volume = job["spec"]["template"]["spec"]["volumes"][0]
        assert volume["persistentVolumeClaim"]["claimName"] == "nfs-stores"
        await cluster.finish_job(NS, "api-build-00001", result=build_result("build", "g000001"))
        await index_status_where(cluster, "api", lambda s: s.get("phase") == "Ready")
        await pool_status_where(
            cluster,
            "fleet",
            lambda s: [m["generation"] for m in s.get("members", [])] == ["g000001"],
        )
    assert await get(cluster, "v1", "persistentvolumeclaims", "api-store") is None
    assert await get(cluster, "v1", "persistentvolumeclaims", "fleet-pool") is None
    assert await get(cluster, "apps/v1", "deployments", "api-searcher") is None
    assert await get(cluster, "v1", "services", "api-searcher") is None


async def test_missing_pool_degrades_then_recovers_when_it_appears(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    async with run_operator():
        await cluster.apply_codeindex(NS, "demo", {**INDEX, "searcher": {"pool": "later"}})
        status = await index_status_where(
            cluster, "demo", lambda s: any(c["type"] == "Degraded" for c in s.get("conditions", []))
        )
        degraded = condition(status, "Degraded")
        assert degraded["status"] == "True" and degraded["reason"] == "PoolNotFound"
        assert "SearchPool later does not exist in namespace team-a" in degraded["message"]
        assert status["phase"] == "Pending"
        assert await cluster.jobs(NS) == []
        assert await get(cluster, "v1", "persistentvolumeclaims", "demo-store") is None

        await cluster.apply_searchpool(NS, "later", {})
        job = await cluster.wait_for_job(NS, "demo-build-00001")
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--store") + 1] == "/pool/team-a/demo"
        status = await index_status_where(
            cluster, "demo", lambda s: condition(s, "Degraded")["status"] == "False"
        )
    assert condition(status, "Degraded")["reason"] == "PoolFound"


async def test_replica_sets_roll_one_at_a_time(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    async with run_operator():
        await cluster.apply_searchpool(NS, "fleet", {"shards": 2, "replicas": 2})
        r0 = await wait_for(lambda: get(cluster, "apps/v1", "statefulsets", "fleet-r0"))
        await wait_for(lambda: get(cluster, "apps/v1", "statefulsets", "fleet-r1"))
        resources = {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "8Gi"}}
        await cluster.patch_spec("searchpools", NS, "fleet", {"resources": resources})

        async def memory(name: str) -> str:
            sts = await get(cluster, "apps/v1", "statefulsets", name)
            assert sts is not None
            return str(container(sts)["resources"]["limits"]["memory"])

        await wait_for(lambda: _equals(memory("fleet-r0"), "8Gi"))
        # r1 waits while r0 has not rolled out: several ticks pass.
        await asyncio.sleep(1.5)
        assert await memory("fleet-r1") == "4Gi"

        # The StatefulSet controller reports r0 rolled out and ready: r1 follows.
        r0 = await get(cluster, "apps/v1", "statefulsets", "fleet-r0")
        assert r0 is not None
        await cluster.client.patch(
            f"/apis/apps/v1/namespaces/{NS}/statefulsets/fleet-r0/status",
            {
                "status": {
                    "observedGeneration": r0["metadata"]["generation"],
                    "replicas": 2,
                    "readyReplicas": 2,
                    "updatedReplicas": 2,
                    "currentRevision": "fleet-r0-2",
                    "updateRevision": "fleet-r0-2",
                }
            },
        )
        await wait_for(lambda: _equals(memory("fleet-r1"), "8Gi"))


async def test_scaling_replicas_down_deletes_extra_replica_sets(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    async with run_operator():
        await cluster.apply_searchpool(NS, "fleet", {"shards": 2, "replicas": 3})
        await wait_for(lambda: get(cluster, "apps/v1", "statefulsets", "fleet-r2"))
        await cluster.patch_spec("searchpools", NS, "fleet", {"replicas": 1})
        await wait_for(lambda: gone(cluster, "apps/v1", "statefulsets", "fleet-r2"))
        await wait_for(lambda: gone(cluster, "apps/v1", "statefulsets", "fleet-r1"))
        assert await get(cluster, "apps/v1", "statefulsets", "fleet-r0") is not None


async def test_delete_pool_removes_serving_objects_and_keeps_the_claim(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    async with run_operator():
        await cluster.apply_searchpool(NS, "fleet", {"shards": 2, "replicas": 1})
        await wait_for(lambda: get(cluster, "apps/v1", "deployments", "fleet-router"))
        await cluster.client.delete(f"/apis/{API}/namespaces/{NS}/searchpools/fleet")
        await wait_for(lambda: gone(cluster, API, "searchpools", "fleet"))
    for api, plural, name in (
        ("apps/v1", "statefulsets", "fleet-r0"),
        ("apps/v1", "deployments", "fleet-router"),
        ("v1", "services", "fleet-shards"),
        ("v1", "services", "fleet"),
        ("policy/v1", "poddisruptionbudgets", "fleet-shards"),
    ):
        assert await get(cluster, api, plural, name) is None, name
    kept = await get(cluster, "v1", "persistentvolumeclaims", "fleet-pool")
    assert kept is not None and not kept["metadata"].get("ownerReferences")


async def test_invalid_pool_spec_is_reported(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    async with run_operator():
        await cluster.apply_searchpool(NS, "fleet", {"allowedHosts": ["not a host"]})
        status = await pool_status_where(cluster, "fleet", lambda s: bool(s.get("conditions")))
    assert condition(status, "Degraded")["reason"] == "InvalidSpec"
    assert "spec.allowedHosts" in condition(status, "Degraded")["message"]
    assert await get(cluster, "v1", "persistentvolumeclaims", "fleet-pool") is None


async def _equals(value: Any, expected: Any) -> bool:
    return await value == expected


async def test_pool_examples_run_on_the_emulated_cluster(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    """examples/searchpool.yaml and examples/codeindex-in-pool.yaml, applied as they are."""
    examples = Path(__file__).resolve().parents[2] / "examples"
    pool = yaml.safe_load((examples / "searchpool.yaml").read_text())
    index = yaml.safe_load((examples / "codeindex-in-pool.yaml").read_text())
    async with run_operator():
        await cluster.apply_searchpool(NS, pool["metadata"]["name"], pool["spec"])
        await cluster.apply_codeindex(NS, index["metadata"]["name"], index["spec"])
        job = await cluster.wait_for_job(NS, "requests-build-00001")
        for replica in range(pool["spec"]["replicas"]):
            await wait_for(lambda r=replica: get(cluster, "apps/v1", "statefulsets", f"fleet-r{r}"))
        router = await wait_for(lambda: get(cluster, "apps/v1", "deployments", "fleet-router"))
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--store") + 1] == f"/pool/{NS}/requests"
    router_args = container(router)["args"]
    assert router_args[router_args.index("--shards") + 1] == str(pool["spec"]["shards"])


def pruned_fields(value: Any, schema: dict, where: str = "") -> list[str]:
    """Fields a real API server would drop: not described by the CRD's structural schema."""
    if isinstance(value, dict) and "properties" in schema:
        found = []
        for key, item in value.items():
            if key not in schema["properties"]:
                found.append(f"{where}.{key}")
            else:
                found += pruned_fields(item, schema["properties"][key], f"{where}.{key}")
        return found
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [f for item in value for f in pruned_fields(item, schema["items"], f"{where}[]")]
    return []


def crd_schema(name: str, part: str) -> dict:
    crd = yaml.safe_load((Path(__file__).resolve().parents[2] / "crds" / name).read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][part]


async def test_every_status_field_written_is_in_the_crds(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    async with run_operator():
        await cluster.apply_searchpool(NS, "fleet", {"shards": 2})
        await cluster.apply_codeindex(NS, "demo", {**INDEX, "searcher": {"pool": "fleet"}})
        await cluster.apply_codeindex(NS, "lost", {**INDEX, "searcher": {"pool": "nope"}})
        await cluster.finish_job(NS, "demo-build-00001", result=build_result("build", "g000001"))
        await index_status_where(cluster, "demo", lambda s: s.get("pool") == "fleet")
        await index_status_where(cluster, "lost", lambda s: bool(s.get("conditions")))
        pool = await pool_status_where(
            cluster, "fleet", lambda s: s.get("members") and s["members"][0]["generation"]
        )
        await cluster.patch_spec("codeindexes", NS, "demo", {"searcher": {"pool": None}})
        await cluster.wait_for_job(NS, "demo-build-00002")
        demo = await cluster.status(NS, "demo")
        lost = await cluster.status(NS, "lost")
    assert pruned_fields(pool, crd_schema("searchpool.yaml", "status")) == []
    for status in (demo, lost):
        assert pruned_fields(status, crd_schema("codeindex.yaml", "status")) == []
    assert demo["activeJob"]["pool"] == ""
