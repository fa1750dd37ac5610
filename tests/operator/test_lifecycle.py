"""kopf running our handlers in this event loop against kmock's emulated API server.

Each test drives one behaviour of a CodeIndex's life: create, a completed Job,
scheduled updates, merges, failures and retries, operator restarts, deletion.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest
from operator_harness import (
    FAST,
    WAIT_SECONDS,
    Cluster,
    OperatorFactory,
    build_result,
    wait_for,
)

from codeintel.core import errors

NS = "team-a"
SPEC = {
    "repo": {"url": "https://example.org/org/repo.git", "ref": "main", "credentialsSecret": "git"},
    "embedding": {
        "endpoint": "http://vllm:8000/v1",
        "model": "Qwen/Qwen3-Embedding-4B",
        "dimension": 2560,
    },
    "index": {"mergeThreshold": 50},
    "updates": {"enabled": False},
    "searcher": {"replicas": 2},
}


async def status_where(cluster: Cluster, name: str, check, namespace: str = NS) -> dict:
    return await cluster.status_where(namespace, name, check)


def condition(status: dict, type_: str) -> dict:
    return next(c for c in status.get("conditions", []) if c["type"] == type_)


async def test_create_makes_pvc_and_build_job(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    async with run_operator():
        await cluster.apply_codeindex(NS, "demo", SPEC)
        job = await cluster.wait_for_job(NS, "demo-build-00001")
        pvc = await cluster.get("v1", "persistentvolumeclaims", NS, "demo-store")
        status = await status_where(cluster, "demo", lambda s: s.get("activeJob", {}).get("uid"))

    assert pvc is not None and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["metadata"]["ownerReferences"][0]["kind"] == "CodeIndex"
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == ["index", "build", SPEC["repo"]["url"]]
    assert status["phase"] == "Indexing"
    assert status["activeJob"]["name"] == "demo-build-00001"
    assert condition(status, "Indexing")["status"] == "True"
    # Searchers come only once a generation exists to serve.
    assert await cluster.get("apps/v1", "deployments", NS, "demo-searcher") is None


async def test_completed_build_records_status_and_starts_searchers(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    async with run_operator():
        await cluster.apply_codeindex(NS, "demo", SPEC)
        await cluster.finish_job(
            NS,
            "demo-build-00001",
            result=build_result(
                "build", "g000001", primary=812, commit="1a2b3c4d" * 5, index_type="ivf_flat"
            ),
        )
        status = await status_where(cluster, "demo", lambda s: s.get("phase") == "Ready")
        deployment = await wait_for(
            lambda: cluster.get("apps/v1", "deployments", NS, "demo-searcher")
        )
        service = await cluster.get("v1", "services", NS, "demo-searcher")

    assert status["generation"] == "g000001"
    assert status["commit"] == "1a2b3c4d" * 5
    assert status["indexType"] == "ivf_flat"
    assert status["vectors"] == {"primary": 812, "secondary": 0, "tombstones": 0, "total": 812}
    assert status["embedding"] == {"model": "Qwen/Qwen3-Embedding-4B", "dimension": 2560}
    assert "activeJob" not in status
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "Degraded")["status"] == "False"
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"]["codeintel.io/generation"] == "g000001"
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert (
        service is not None
        and service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    )


async def test_timer_starts_update_and_merge_past_threshold(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    spec = {**SPEC, "updates": {"enabled": True, "interval": "1s"}}
    async with run_operator():
        await cluster.apply_codeindex(NS, "demo", spec)
        await cluster.finish_job(NS, "demo-build-00001", result=build_result("build", "g000001"))
        update = await cluster.wait_for_job(NS, "demo-update-00002")
        args = update["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[:2] == ["index", "update"]
        assert args[args.index("--merge-threshold") + 1] == "0"

        # The update leaves 60 vectors in the secondary: past mergeThreshold (50).
        await cluster.finish_job(
            NS, "demo-update-00002", result=build_result("update", "g000002", secondary=60)
        )
        merge = await cluster.wait_for_job(NS, "demo-merge-00003")
        assert merge["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["index", "merge"]
        status = await cluster.status(NS, "demo")
        assert status["phase"] == "Merging"
        assert status["generation"] == "g000002"  # still serving while the merge runs

        await cluster.finish_job(
            NS, "demo-merge-00003", result=build_result("merge", "g000003", primary=160)
        )
        await status_where(cluster, "demo", lambda s: s.get("generation") == "g000003")

        async def rolled() -> bool:
            deployment = await cluster.get("apps/v1", "deployments", NS, "demo-searcher")
            template = (deployment or {}).get("spec", {}).get("template", {})
            return template["metadata"]["annotations"]["codeintel.io/generation"] == "g000003"

        # The status is written first, then the Deployment is patched: the searchers roll.
        await wait_for(rolled)
    names = sorted(j["metadata"]["name"] for j in await cluster.jobs(NS))
    assert names[:3] == ["demo-build-00001", "demo-merge-00003", "demo-update-00002"]


async def test_failed_job_degrades_then_retries_with_backoff(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    slow_retry = dataclasses.replace(FAST, retry_base_seconds=2.0, retry_max_seconds=2.0)
    async with run_operator(slow_retry):
        await cluster.apply_codeindex(NS, "demo", SPEC)
        await cluster.finish_job(
            NS,
            "demo-build-00001",
            failure=(
                "BackoffLimitExceeded",
                "EmbeddingHTTPError: http://vllm:8000/v1 answered 503",
            ),
        )
        status = await status_where(cluster, "demo", lambda s: s.get("failures") == 1)
        assert status["phase"] == "Failed"
        degraded = condition(status, "Degraded")
        assert degraded["status"] == "True"
        assert degraded["reason"] == "BackoffLimitExceeded"
        assert "answered 503" in degraded["message"]
        assert await cluster.get("batch/v1", "jobs", NS, "demo-build-00002") is None

        # After the backoff the build is retried under the next name, and succeeds.
        await cluster.finish_job(NS, "demo-build-00002", result=build_result("build", "g000001"))
        status = await status_where(cluster, "demo", lambda s: s.get("phase") == "Ready")
        assert status["failures"] == 0
        assert condition(status, "Degraded")["status"] == "False"


async def test_failed_update_keeps_the_previous_generation_serving(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    spec = {**SPEC, "updates": {"enabled": True, "interval": "1s"}}
    slow_retry = dataclasses.replace(FAST, retry_base_seconds=5.0, retry_max_seconds=5.0)
    async with run_operator(slow_retry):
        await cluster.apply_codeindex(NS, "demo", spec)
        await cluster.finish_job(NS, "demo-build-00001", result=build_result("build", "g000001"))
        await cluster.finish_job(
            NS, "demo-update-00002", failure=("DeadlineExceeded", "fatal: unable to access repo")
        )
        status = await status_where(cluster, "demo", lambda s: s.get("failures") == 1)
    assert status["phase"] == "Ready"
    assert status["generation"] == "g000001"
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "Degraded")["reason"] == "DeadlineExceeded"


async def test_unreadable_generation_starts_a_build_not_endless_updates(
    cluster: Cluster, run_operator: OperatorFactory, caplog
) -> None:
    """An update that cannot read the live generation (exit 3, as ``codeintel index update``
    exits on one: tests/indexer/test_recovery.py) is followed by a build at once, which
    writes over it; the status says so until a build succeeds."""
    spec = {**SPEC, "updates": {"enabled": True, "interval": "1s"}}
    quick_retry = dataclasses.replace(FAST, retry_base_seconds=1.0, retry_max_seconds=1.0)
    log = (
        "error: cannot update: generation g000001: primary.faiss has 0 bytes, the manifest "
        "says 1536045. To recover, serve the newest intact older generation again with "
        "`codeintel index rollback --store /store`, or write a fresh one with "
        "`codeintel index build https://example.org/org/repo.git --store /store`"
    )
    async with run_operator(quick_retry):
        await cluster.apply_codeindex(NS, "demo", spec)
        await cluster.finish_job(NS, "demo-build-00001", result=build_result("build", "g000001"))
        await cluster.finish_job(
            NS,
            "demo-update-00002",
            failure=("PodFailurePolicy", log),
            exit_code=errors.CurrentUnreadableError.exit_code,
        )
        build = await cluster.wait_for_job(NS, "demo-build-00003", timeout=5)
        assert build["spec"]["template"]["spec"]["containers"][0]["args"][:2] == [
            "index",
            "build",
        ]
        status = await status_where(cluster, "demo", lambda s: s.get("activeJob"))
        assert status["activeJob"]["name"] == "demo-build-00003"
        assert status["rebuildReason"] == "GenerationUnreadable"
        assert status["phase"] == "Indexing"
        assert status.get("failures", 0) == 0, "no backoff: an update retry cannot help"
        degraded = condition(status, "Degraded")
        assert (degraded["status"], degraded["reason"]) == ("True", "GenerationUnreadable")
        assert "could not read generation g000001" in degraded["message"]
        assert "starting a full build" in degraded["message"]
        assert "primary.faiss has 0 bytes" in degraded["message"]
        assert condition(status, "Indexing")["reason"] == "GenerationUnreadable"

        # A failed build is retried as a build after its backoff, never as an update.
        await cluster.finish_job(NS, "demo-build-00003", failure=("BackoffLimitExceeded", "x"))
        await cluster.wait_for_job(NS, "demo-build-00004", timeout=10)
        await cluster.finish_job(NS, "demo-build-00004", result=build_result("build", "g000004"))
        status = await status_where(cluster, "demo", lambda s: s.get("generation") == "g000004")
        assert not status.get("rebuildReason")
        assert condition(status, "Degraded")["status"] == "False"
        # Updates resume on their schedule from the fresh generation.
        update = await cluster.wait_for_job(NS, "demo-update-00005", timeout=10)
        assert update["spec"]["template"]["spec"]["containers"][0]["args"][:2] == [
            "index",
            "update",
        ]
    names = [j["metadata"]["name"] for j in await cluster.jobs(NS)]
    assert "demo-update-00003" not in names and "demo-update-00004" not in names
    warnings = [
        r.getMessage() for r in caplog.records if "could not read generation" in r.getMessage()
    ]
    assert warnings and "starting a full build" in warnings[0]


async def test_operator_restart_never_duplicates_a_job(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    async with run_operator():
        await cluster.apply_codeindex(NS, "demo", SPEC)
        await cluster.wait_for_job(NS, "demo-build-00001")
        await status_where(cluster, "demo", lambda s: s.get("activeJob", {}).get("uid"))
    async with run_operator():
        await asyncio.sleep(1.5)  # resume handlers and several timer ticks
        assert [j["metadata"]["name"] for j in await cluster.jobs(NS)] == ["demo-build-00001"]
        await cluster.finish_job(NS, "demo-build-00001", result=build_result("build", "g000001"))
        await status_where(cluster, "demo", lambda s: s.get("phase") == "Ready")


async def test_recorded_but_uncreated_job_is_created_once_under_its_name(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    """The operator died between recording a Job in the status and creating it."""
    body = await cluster.apply_codeindex(NS, "demo", SPEC)
    await cluster.client.patch(
        "/apis/codeintel.io/v1alpha1/namespaces/team-a/codeindexes/demo/status",
        {
            "status": {
                "jobSequence": 7,
                "activeJob": {"name": "demo-build-00007", "action": "build"},
            }
        },
    )
    assert body["metadata"]["uid"]
    async with run_operator():
        await cluster.wait_for_job(NS, "demo-build-00007")
        await asyncio.sleep(1.0)
        assert [j["metadata"]["name"] for j in await cluster.jobs(NS)] == ["demo-build-00007"]


async def test_embedding_change_starts_a_full_rebuild(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    async with run_operator():
        await cluster.apply_codeindex(NS, "demo", SPEC)
        await cluster.finish_job(NS, "demo-build-00001", result=build_result("build", "g000001"))
        await status_where(cluster, "demo", lambda s: s.get("phase") == "Ready")
        new_spec = {"embedding": {"model": "BAAI/bge-m3", "dimension": 1024}}
        await cluster.client.patch(
            "/apis/codeintel.io/v1alpha1/namespaces/team-a/codeindexes/demo", {"spec": new_spec}
        )
        job = await cluster.wait_for_job(NS, "demo-build-00002")
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--embed-model") + 1] == "BAAI/bge-m3"
        status = await cluster.status(NS, "demo")
        assert status["phase"] == "Indexing" and status["generation"] == "g000001"


async def test_delete_removes_owned_objects_and_keeps_the_claim(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    async with run_operator():
        await cluster.apply_codeindex(NS, "keep", SPEC)
        await cluster.apply_codeindex(NS, "drop", {**SPEC, "storage": {"deleteWithIndex": True}})
        for name in ("keep", "drop"):
            await cluster.finish_job(
                NS, f"{name}-build-00001", result=build_result("build", "g000001")
            )
            await wait_for(
                lambda name=name: cluster.get("apps/v1", "deployments", NS, f"{name}-searcher")
            )
        for name in ("keep", "drop"):
            await cluster.client.delete(
                f"/apis/codeintel.io/v1alpha1/namespaces/team-a/codeindexes/{name}"
            )
        for name in ("keep", "drop"):
            await wait_for(
                lambda name=name: _gone(cluster, "codeintel.io/v1alpha1", "codeindexes", name)
            )

    assert await cluster.jobs(NS) == []
    for name in ("keep", "drop"):
        assert await cluster.get("apps/v1", "deployments", NS, f"{name}-searcher") is None
        assert await cluster.get("v1", "services", NS, f"{name}-searcher") is None
    kept = await cluster.get("v1", "persistentvolumeclaims", NS, "keep-store")
    assert kept is not None and not kept["metadata"].get("ownerReferences")
    assert await cluster.get("v1", "persistentvolumeclaims", NS, "drop-store") is None


async def test_deleting_during_a_tick_releases_the_finalizer_once_the_tick_ends(
    cluster: Cluster, run_operator: OperatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A tick still running when the CodeIndex is deleted holds kopf's finalizer until the
    timer exits; kopf looks again only after ``cancellation_polling``, 60 s by default, so
    the deletion must not wait on that (the loaded-machine flake of the pool tests)."""
    caplog.set_level(logging.DEBUG, logger="kopf.objects")
    path = "/apis/codeintel.io/v1alpha1/namespaces/team-a/codeindexes/demo"
    async with run_operator():
        await cluster.apply_codeindex(NS, "demo", SPEC)
        await cluster.finish_job(NS, "demo-build-00001", result=build_result("build", "g000001"))
        await wait_for(lambda: cluster.get("apps/v1", "deployments", NS, "demo-searcher"))
        # The next pass's read of the CodeIndex is slow to answer: the timer is mid-tick
        # (or queued on the pass's lock) when the deletion arrives.
        held = cluster.emulator.hold("GET", path)
        try:
            await asyncio.wait_for(held.reached.wait(), WAIT_SECONDS)
            await cluster.client.delete(path)
            await wait_for(lambda: _logged(caplog, "is still exiting"))
        finally:
            held.release()
        await wait_for(lambda: _gone(cluster, "codeintel.io/v1alpha1", "codeindexes", "demo"))
    assert await cluster.get("apps/v1", "deployments", NS, "demo-searcher") is None


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in message for message in caplog.messages)


async def test_many_codeindexes_in_many_namespaces(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    async with run_operator():
        for namespace in ("team-a", "team-b"):
            for name in ("api", "web"):
                await cluster.apply_codeindex(namespace, name, SPEC)
        for namespace in ("team-a", "team-b"):
            for name in ("api", "web"):
                await cluster.wait_for_job(namespace, f"{name}-build-00001")
        await cluster.finish_job(
            "team-b", "web-build-00001", result=build_result("build", "g000001")
        )
        await status_where(cluster, "web", lambda s: s.get("phase") == "Ready", namespace="team-b")
        assert (await cluster.status("team-a", "web"))["phase"] == "Indexing"


async def test_invalid_spec_is_reported_not_retried(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    async with run_operator():
        await cluster.apply_codeindex(
            NS, "bad", {"repo": {"url": "https://x/y.git"}, "updates": {"interval": "soon"}}
        )
        status = await status_where(cluster, "bad", lambda s: s.get("phase") == "Failed")
    assert condition(status, "Degraded")["reason"] == "InvalidSpec"
    assert "spec.updates.interval" in condition(status, "Degraded")["message"]
    assert await cluster.jobs(NS) == []


async def _gone(cluster: Cluster, api: str, plural: str, name: str) -> bool:
    return await cluster.get(api, plural, NS, name) is None
