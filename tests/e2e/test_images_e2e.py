"""The CodeIndex lifecycle with every Job and searcher running inside the built images.

As in ``test_cluster_e2e.py``, kopf runs the operator's handlers against kmock's
emulated API server and this test plays the kubelet and the job controller —
but each container runs inside the image its pod spec names
(``codeintel/indexer:<version>``, ``codeintel/searcher:<version>``), through
:mod:`image_kubelet` (``buildah run --isolation chroot``, the host's network),
as user 10001 with the store claim bind-mounted at the spec's ``mountPath`` and
``/tmp`` an emptyDir. The repository is served by ``git daemon`` on loopback,
as a cluster would reach a git host; the embedding server is
``codeintel embed-server`` on the host, as a cluster would run vLLM.

The operator image itself runs as the chart renders it. Runs only when the
images exist: ``make e2e-images`` builds them and sets ``CODEINTEL_E2E_IMAGES=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from benchmarks.serverproc import free_port, wait_http
from image_kubelet import ImagePod, stop
from images_shared import (
    INDEXER,
    MODEL,
    OPERATOR,
    QUERY,
    SEARCHER,
    VERSION,
    need_images,
    only_with_images,
)
from operator_harness import FAST, Cluster, emulated_cluster, running_operator, wait_for

from codeintel.operator.settings import OperatorSettings

NS = "search"
NEW_FILES = {
    "mail/queue.py": "def retry_later(message):\n    '''Queue a failed email for retry.'''\n",
    "mail/bounce.py": "def handle_bounce(report):\n    '''Mark a bounced address.'''\n",
}

pytestmark = [pytest.mark.slow, only_with_images]


def image_settings() -> OperatorSettings:
    return dataclasses.replace(FAST, indexer_image=INDEXER, searcher_image=SEARCHER)


@dataclasses.dataclass
class Kubelet:
    """Runs the pods of one namespace's Jobs and Deployments in their images."""

    cluster: Cluster
    root: Path
    claims: dict[str, Path]

    async def run_job(self, name: str) -> dict[str, Any] | None:
        """Run Job ``name``'s container to its end, then report it as kubelet + job controller.

        Returns the indexer's result (``None`` for a failed Job)."""
        job = await self.cluster.wait_for_job(NS, name, timeout=60)
        pod = ImagePod(job["spec"]["template"]["spec"], self.claims, self.root / name)
        with pod.created():
            ended = await asyncio.to_thread(pod.run_to_end)
            assert pod.root_writes() == [], f"{name} wrote outside its volumes"
        if ended.exit_code == 0:
            result = json.loads(ended.message)
            await self.cluster.finish_job(NS, name, result=result)
            return dict(result)
        await self.cluster.finish_job(NS, name, failure=("BackoffLimitExceeded", ended.message))
        return None

    @contextlib.asynccontextmanager
    async def searcher(self, deployment: dict[str, Any]) -> AsyncIterator[str]:
        """One replica of the searcher Deployment, serving on a free host port."""
        pod_spec = deployment["spec"]["template"]["spec"]
        port = free_port()
        workdir = self.root / f"searcher-{port}"
        pod = ImagePod(pod_spec, self.claims, workdir, replace_args={"--port": str(port)})
        with pod.created():
            proc = pod.start(workdir / "log")
            try:
                await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/readyz", 180, proc)
                yield f"http://127.0.0.1:{port}"
                assert proc.poll() is None, "the searcher exited"
            finally:
                code = stop(proc)
                log = (workdir / "log").read_text(errors="replace")
            assert pod.root_writes() == [], "the searcher wrote outside its volumes"
        # uvicorn shuts down, then ends by the SIGTERM it caught (exit 143 in a pod).
        assert code in (0, 1) and "Application shutdown complete" in log, log[-3000:]
        assert "Traceback" not in log, log[-3000:]


async def ask(base: str, tool: str, **params: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=60) as client:
        answer = await client.post(f"{base}/v1/{tool}", json=params)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def ask_mcp(base: str, tool: str, **params: Any) -> dict[str, Any]:
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with (
        streamable_http_client(f"{base}/mcp") as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool(tool, params)
    assert not result.is_error, result.content
    data = result.structured_content or json.loads(result.content[0].text)
    return dict(data.get("result", data))


def hits(answer: dict[str, Any]) -> list[tuple[str, int, int]]:
    return [(r["path"], r["start_line"], r["end_line"]) for r in answer["results"]]


async def status_where(cluster: Cluster, name: str, ok: Any, timeout: float = 60) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        status = await cluster.status(NS, name)
        return status if ok(status) else None

    return dict(await wait_for(probe, timeout))


async def test_codeindex_lifecycle_inside_the_images(
    sample_repo: Any, git_host: str, host_embed_server: str, tmp_path: Path
) -> None:
    need_images(INDEXER, SEARCHER)
    spec = {
        "repo": {"url": git_host, "ref": "main"},
        "embedding": {"endpoint": host_embed_server, "model": MODEL, "dimension": 384},
        "index": {"mergeThreshold": 1},
        "updates": {"enabled": True, "interval": "1s"},
        "searcher": {"replicas": 1},
    }
    async with emulated_cluster() as cluster, running_operator(cluster, image_settings()):
        kubelet = Kubelet(cluster, tmp_path / "pods", {"sample-store": tmp_path / "store"})
        await cluster.apply_codeindex(NS, "sample", spec)

        # 1. Build Job in the indexer image -> Ready -> searcher in its image answers.
        job = await cluster.wait_for_job(NS, "sample-build-00001")
        assert job["spec"]["template"]["spec"]["containers"][0]["image"] == INDEXER
        built = await kubelet.run_job("sample-build-00001")
        head = sample_repo.git("rev-parse", "HEAD")
        assert built is not None and built["action"] == "build" and built["commit"] == head
        await status_where(cluster, "sample", lambda s: s.get("generation") == built["generation"])
        deployment = await wait_for(
            lambda: cluster.get("apps/v1", "deployments", NS, "sample-searcher")
        )
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == SEARCHER

        async with kubelet.searcher(deployment) as base:
            found = await ask(base, "semantic_search", query=QUERY, k=3)
            assert found["generation"] == built["generation"] and found["commit"] == head
            assert any(path.startswith("mail/") for path, _, _ in hits(found))
            over_mcp = await ask_mcp(base, "semantic_search", query=QUERY, k=3)
            assert hits(over_mcp) == hits(found)
            blame = await ask_mcp(
                base, "blame_range", path="mail/sender.py", start_line=1, end_line=2
            )
            assert blame["commit"] == head and blame["results"]

            # 2. New commits -> update Job -> the same searcher serves the new generation.
            sample_repo.commit("add a retry queue and a bounce handler", NEW_FILES)
            new_head = sample_repo.git("rev-parse", "HEAD")
            updated = await kubelet.run_job("sample-update-00002")
            assert updated is not None and updated["action"] == "update"
            assert updated["commit"] == new_head
            assert updated["vectors"]["secondary"] > spec["index"]["mergeThreshold"]

            async def serving(generation: str) -> dict[str, Any] | None:
                index = await ask(base, "search_text", pattern="retry_later")
                return index if index["generation"] == generation else None

            answer = await wait_for(lambda: serving(updated["generation"]), 60)
            assert answer["commit"] == new_head
            assert [r["path"] for r in answer["results"]] == ["mail/queue.py"]
            before_merge = hits(await ask(base, "semantic_search", query=QUERY, k=5))

            # 3. The secondary passed mergeThreshold -> merge Job -> same answers.
            merged = await kubelet.run_job("sample-merge-00003")
            assert merged is not None and merged["action"] == "merge"
            assert merged["vectors"]["secondary"] == 0
            await wait_for(lambda: serving(merged["generation"]), 60)
            after_merge = await ask(base, "semantic_search", query=QUERY, k=5)
            assert after_merge["commit"] == new_head
            assert hits(after_merge) == before_merge
            status = await status_where(
                cluster, "sample", lambda s: s.get("generation") == merged["generation"]
            )
            assert status["vectors"]["secondary"] == 0


async def test_failing_job_in_the_image_degrades_and_retries(
    host_embed_server: str, tmp_path: Path
) -> None:
    need_images(INDEXER)
    port = free_port()  # nothing listens there: git cannot reach the repository
    spec = {
        "repo": {"url": f"git://127.0.0.1:{port}/missing.git", "ref": "main"},
        "embedding": {"endpoint": host_embed_server, "model": MODEL, "dimension": 384},
        "updates": {"enabled": False},
    }
    # A backoff long enough to see the Failed phase before the retry starts.
    settings = dataclasses.replace(image_settings(), retry_base_seconds=4, retry_max_seconds=4)
    async with emulated_cluster() as cluster, running_operator(cluster, settings):
        kubelet = Kubelet(cluster, tmp_path / "pods", {"broken-store": tmp_path / "store"})
        await cluster.apply_codeindex(NS, "broken", spec)
        assert await kubelet.run_job("broken-build-00001") is None
        status = await status_where(cluster, "broken", lambda s: s.get("failures") == 1)
        assert status["phase"] == "Failed"
        degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
        assert degraded["status"] == "True"
        assert "missing.git" in degraded["message"], degraded
        # The operator retries after its backoff, with a new Job in the same image.
        retry = await cluster.wait_for_job(NS, "broken-build-00002", timeout=30)
        assert retry["spec"]["template"]["spec"]["containers"][0]["image"] == INDEXER


CHART = Path(__file__).resolve().parents[2] / "charts" / "codeintel"


def chart_operator_deployment() -> dict[str, Any]:
    """The operator Deployment as ``helm install`` renders it, pointing at the built images."""
    import helm_python as helm
    import yaml

    def image(name: str) -> dict[str, str]:
        return {"repository": f"codeintel/{name}", "tag": VERSION}

    values = {
        "image": image("operator"),
        "indexer": {"image": image("indexer")},
        "searcher": {"image": image("searcher")},
        "config": {"pollIntervalSeconds": 1},
    }
    rendered = helm.Chart.load(CHART).render(
        values, name="codeintel", namespace="codeintel-system", is_install=True
    )
    texts = [text for path, text in rendered.items() if not path.endswith("NOTES.txt")]
    docs = [doc for text in texts for doc in yaml.safe_load_all(text) if doc]
    return next(d for d in docs if d.get("kind") == "Deployment")


def write_kubeconfig(directory: Path, server: str) -> Path:
    """What a pod's service account would give it: here, a kubeconfig for the emulator."""
    directory.mkdir()
    directory.chmod(0o755)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulated", "cluster": {"server": server}}],
        "users": [{"name": "operator", "user": {}}],
        "contexts": [{"name": "emulated", "context": {"cluster": "emulated", "user": "operator"}}],
        "current-context": "emulated",
    }
    (directory / "config").write_text(json.dumps(config))
    (directory / "config").chmod(0o644)
    return directory


async def test_operator_image_as_the_chart_runs_it_creates_the_build_job(
    tmp_path: Path,
) -> None:
    need_images(OPERATOR)
    deployment = chart_operator_deployment()
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == OPERATOR
    health = free_port()
    async with emulated_cluster() as cluster:
        pod = ImagePod(
            deployment["spec"]["template"]["spec"],
            {},
            tmp_path / "operator",
            replace_args={"--liveness": f"http://0.0.0.0:{health}/healthz"},
            extra_env={"KUBECONFIG": "/kube/config"},
            extra_mounts={write_kubeconfig(tmp_path / "kube", cluster.server): "/kube"},
        )
        with pod.created():
            proc = pod.start(tmp_path / "operator.log")
            try:
                await asyncio.to_thread(wait_http, f"http://127.0.0.1:{health}/healthz", 120, proc)
                spec = {
                    "repo": {"url": "https://git.example.org/org/repo.git"},
                    "embedding": {"endpoint": "http://vllm:8000/v1", "model": MODEL},
                }
                await cluster.apply_codeindex(NS, "demo", spec)
                job = await cluster.wait_for_job(NS, "demo-build-00001", timeout=60)
            finally:
                code = stop(proc)
            assert pod.root_writes() == [], "the operator wrote outside its volumes"
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == INDEXER
    log = (tmp_path / "operator.log").read_text().splitlines()
    assert log, "the operator logged nothing"
    # The chart asks for JSON logs: every line is one object a log collector can parse.
    not_json = [line for line in log if not line.startswith("{")]
    assert not_json == [], not_json[:5]
    assert code == 0, "the operator did not stop cleanly on SIGTERM"
