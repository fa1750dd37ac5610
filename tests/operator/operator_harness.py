"""A test harness: an emulated API server, a client for it, and the operator running in-process.

The test plays the kubelet and the job controller: it creates a Job's pod with a
terminated container (its termination message is the indexer's JSON result) and
then marks the Job complete or failed, exactly the fields the operator reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import kmock
import kopf
from kube_emulator import ClusterEmulator, make_emulator

from codeintel.operator import build_registry, kube
from codeintel.operator.settings import OperatorSettings

WAIT_SECONDS = 15.0
"""How long a test waits for the operator to reach a state it must reach: every step the
operator takes is driven by an event or a FAST tick (0.3 s), so a pass is well under a
second on a quiet machine; 15 s leaves room for a machine loaded several times over."""

FAST = OperatorSettings(
    poll_interval_seconds=0.3,
    retry_base_seconds=0.5,
    retry_max_seconds=2.0,
    indexer_image="registry.test/indexer:1",
    searcher_image="registry.test/searcher:1",
)


class Cluster:
    """The emulator plus helpers that act as kubectl, kubelet and the job controller."""

    def __init__(self, emulator: ClusterEmulator, server: str) -> None:
        self.emulator = emulator
        self.server = server
        self.connection = kopf.ConnectionInfo(server=server)
        self.client = kube.KubeClient(kube.Credentials(connection=self.connection))

    async def apply_codeindex(
        self, namespace: str, name: str, spec: dict[str, Any]
    ) -> dict[str, Any]:
        body = {
            "apiVersion": "codeintel.io/v1alpha1",
            "kind": "CodeIndex",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
        return await self.client.create(
            kube.path("codeintel.io/v1alpha1", "codeindexes", namespace), body
        )

    async def apply_searchpool(
        self, namespace: str, name: str, spec: dict[str, Any]
    ) -> dict[str, Any]:
        body = {
            "apiVersion": "codeintel.io/v1alpha1",
            "kind": "SearchPool",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
        return await self.client.create(
            kube.path("codeintel.io/v1alpha1", "searchpools", namespace), body
        )

    async def pool_status(self, namespace: str, name: str) -> dict[str, Any]:
        body = await self.get("codeintel.io/v1alpha1", "searchpools", namespace, name)
        assert body is not None
        return dict(body.get("status") or {})

    async def patch_spec(self, plural: str, namespace: str, name: str, spec: Any) -> None:
        path = kube.path("codeintel.io/v1alpha1", plural, namespace, name)
        assert await self.client.patch(path, {"spec": spec}) is not None

    async def start_shard_pod(
        self, namespace: str, statefulset: dict[str, Any], ordinal: int, *, ready: bool = True
    ) -> None:
        """Play the StatefulSet controller and kubelet: pod ``<set>-<ordinal>`` with the
        labels the controller stamps (its selector and the pod-index label), Ready or not."""
        template = statefulset["spec"]["template"]
        labels = {**template["metadata"]["labels"], "apps.kubernetes.io/pod-index": str(ordinal)}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{statefulset['metadata']['name']}-{ordinal}",
                "namespace": namespace,
                "labels": labels,
            },
            "spec": template["spec"],
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }
        await self.client.create(kube.path("v1", "pods", namespace), pod)

    async def get(self, api: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.client.get(kube.path(api, plural, namespace, name))

    async def codeindex(self, namespace: str, name: str) -> dict[str, Any]:
        body = await self.get("codeintel.io/v1alpha1", "codeindexes", namespace, name)
        assert body is not None
        return body

    async def status(self, namespace: str, name: str) -> dict[str, Any]:
        return dict((await self.codeindex(namespace, name)).get("status") or {})

    async def status_where(
        self, namespace: str, name: str, check: Callable[[dict[str, Any]], Any]
    ) -> dict[str, Any]:
        """The CodeIndex's status once ``check`` holds for it."""
        return await _status_where(lambda: self.status(namespace, name), check)

    async def pool_status_where(
        self, namespace: str, name: str, check: Callable[[dict[str, Any]], Any]
    ) -> dict[str, Any]:
        """The SearchPool's status once ``check`` holds for it."""
        return await _status_where(lambda: self.pool_status(namespace, name), check)

    async def jobs(self, namespace: str) -> list[dict[str, Any]]:
        answer = await self.client.get(kube.path("batch/v1", "jobs", namespace))
        return list((answer or {}).get("items") or [])

    async def wait_for_job(
        self, namespace: str, name: str, timeout: float = WAIT_SECONDS
    ) -> dict[str, Any]:
        return await wait_for(lambda: self.get("batch/v1", "jobs", namespace, name), timeout)

    async def finish_job(
        self,
        namespace: str,
        job_name: str,
        *,
        result: dict[str, Any] | None = None,
        failure: tuple[str, str] | None = None,
        exit_code: int | None = None,
    ) -> None:
        """Play kubelet + job controller: a terminated pod with the message, then the Job status.

        A failed pod exits 1 unless ``exit_code`` says otherwise."""
        job = await self.wait_for_job(namespace, job_name)
        if exit_code is None:
            exit_code = 1 if failure else 0
        message = failure[1] if failure else json.dumps(result)
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{job_name}-{len(await self.jobs(namespace)):x}pod",
                "namespace": namespace,
                "labels": {"job-name": job_name, "batch.kubernetes.io/job-name": job_name},
            },
            "spec": job["spec"]["template"]["spec"],
            "status": {
                "phase": "Failed" if failure else "Succeeded",
                "containerStatuses": [
                    {
                        "name": "indexer",
                        "state": {"terminated": {"exitCode": exit_code, "message": message}},
                    }
                ],
            },
        }
        await self.client.create(kube.path("v1", "pods", namespace), pod)
        if failure:
            condition = {
                "type": "Failed",
                "status": "True",
                "reason": failure[0],
                "message": "Job has reached the specified backoff limit",
            }
            job_status: dict[str, Any] = {"failed": 1, "conditions": [condition]}
        else:
            job_status = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
        await self.client.patch(
            kube.path("batch/v1", "jobs", namespace, job_name, "status"), {"status": job_status}
        )


OperatorFactory = Callable[..., contextlib.AbstractAsyncContextManager[None]]


def build_result(
    action: str,
    generation: str,
    *,
    primary: int = 100,
    secondary: int = 0,
    tombstones: int = 0,
    commit: str = "a" * 40,
    index_type: str = "flat",
) -> dict[str, Any]:
    """An indexer result as docs/architecture.md defines it."""
    return {
        "action": action,
        "changed": True,
        "generation": generation,
        "commit": commit,
        "index_type": index_type,
        "vectors": {"primary": primary, "secondary": secondary, "tombstones": tombstones},
    }


async def wait_for(probe: Callable[[], Awaitable[Any]], timeout: float = WAIT_SECONDS) -> Any:
    """Poll ``probe`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {probe}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def emulated_cluster() -> AsyncIterator[Cluster]:
    """An emulated API server on a loopback port, with a client for it."""
    async with make_emulator() as emulator, kmock.Server(emulator) as server:
        cluster = Cluster(emulator, str(server.url).rstrip("/"))
        try:
            yield cluster
        finally:
            await cluster.client.close()


@contextlib.asynccontextmanager
async def running_operator(
    cluster: Cluster, settings: OperatorSettings = FAST
) -> AsyncIterator[None]:
    """kopf running our registry, in this event loop, against the emulator."""
    kopf_settings = kopf.OperatorSettings()
    kopf_settings.scanning.disabled = True
    kopf_settings.posting.enabled = False
    kopf_settings.watching.reconnect_backoff = 0.1
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(
            registry=build_registry(settings, connection=cluster.connection),
            settings=kopf_settings,
            clusterwide=True,
            standalone=True,
            stop_flag=stop,
            ready_flag=ready,
        )
    )
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        # On exit kopf cancels every task born while it ran, which includes the
        # emulator's handlers of our keep-alive connections: start afresh.
        await cluster.client.close()


async def _status_where(
    read: Callable[[], Awaitable[dict[str, Any]]], check: Callable[[dict[str, Any]], Any]
) -> dict[str, Any]:
    """The status ``read`` gives once ``check`` holds for it (within :data:`WAIT_SECONDS`)."""

    async def probe() -> dict[str, Any] | None:
        status = await read()
        return status if check(status) else None

    return dict(await wait_for(probe))
