"""A running indexer Job's progress in CodeIndex ``status.progress``: kopf against the emulator.

The test plays the kubelet: the indexer is a real ``codeintel index build`` process
(JSON logs, as the Job renders it) whose stderr the emulated API server serves as
the pod's log; the operator reads it into the status, throttled, and clears it
when the Job ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import kmock
import pytest
from operator_harness import FAST, Cluster, OperatorFactory, build_result, wait_for

from codeintel.indexer import corpus
from codeintel.operator import kube, progress
from gitrepo import GitRepo
from servers import FakeEmbeddingsServer

NS = "team-a"
SPEC = {
    "repo": {"url": "https://example.org/org/repo.git", "ref": "main"},
    "embedding": {"endpoint": "http://vllm:8000/v1", "model": "fake", "dimension": 8},
    "updates": {"enabled": False},
}
PROGRESS_INTERVAL = 1.0
SETTINGS = dataclasses.replace(FAST, progress_interval_seconds=PROGRESS_INTERVAL)


async def start_pod(cluster: Cluster, job_name: str, log: Any) -> str:
    """Play the kubelet: a Running pod of the Job whose log is ``log()`` (bytes)."""
    job = await cluster.wait_for_job(NS, job_name)
    pod = f"{job_name}-run"
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod,
            "namespace": NS,
            "labels": {"job-name": job_name, "batch.kubernetes.io/job-name": job_name},
        },
        "spec": job["spec"]["template"]["spec"],
        "status": {"phase": "Running"},
    }
    await cluster.client.create(kube.path("v1", "pods", NS), body)
    cluster.emulator[f"get {kube.path('v1', 'pods', NS, pod, 'log')}"] << log
    return pod


def progress_patches(cluster: Cluster) -> list[dict[str, Any]]:
    """Status writes that set a progress (the emulator records each request)."""
    found = []
    for request in cluster.emulator["patch"]:
        if request.subresource != "status" or not isinstance(request.data, dict):
            continue
        # The emulator records the effective change: only the fields that moved.
        value = (request.data.get("status") or {}).get("progress")
        if isinstance(value, dict) and value:
            found.append(value)
    return found


def many_files(repo: GitRepo) -> int:
    n = 3 * corpus.EMBED_GROUP + 17
    repo.commit(
        "many", {f"pkg/m{i:04d}.py": f"def f{i}(x):\n    return x + {i}\n" for i in range(n)}
    )
    return n


@pytest.mark.slow
async def test_a_real_indexer_log_becomes_status_progress_throttled_and_cleared(
    cluster: Cluster, run_operator: OperatorFactory, git_repo: GitRepo, tmp_path: Path
) -> None:
    chunks = many_files(git_repo)
    log_file, result_file = tmp_path / "indexer.log", tmp_path / "result.json"
    log_file.touch()
    server = FakeEmbeddingsServer(delay=0.15)
    async with run_operator(SETTINGS):
        await cluster.apply_codeindex(NS, "demo", SPEC)
        job = await cluster.wait_for_job(NS, "demo-build-00001")
        env = {
            e["name"]: e.get("value")
            for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["CODEINTEL_LOG_FORMAT"] == "json"  # what makes the log machine-readable
        await start_pod(cluster, "demo-build-00001", log_file.read_bytes)

        with server.running():
            cmd = [sys.executable, "-m", "codeintel.cli", "index", "build", str(git_repo.path)]
            cmd += ["--store", str(tmp_path / "store"), "--no-history", "--embedder", "openai"]
            cmd += ["--embed-url", server.url, "--embed-model", "fake", "--embed-dim", "8"]
            cmd += ["--result-file", str(result_file)]
            child_env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join(sys.path),
                "CODEINTEL_LOG_FORMAT": env["CODEINTEL_LOG_FORMAT"],
                "CODEINTEL_LOG_PROGRESS_INTERVAL_SECONDS": "0.2",
            }
            started = time.monotonic()
            with log_file.open("wb") as stderr:
                proc = await asyncio.create_subprocess_exec(*cmd, env=child_env, stderr=stderr)
                seen: list[dict[str, Any]] = []
                while proc.returncode is None:
                    progress = (await cluster.status(NS, "demo")).get("progress")
                    if progress and (not seen or progress != seen[-1]):
                        seen.append(progress)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(proc.wait(), 0.1)
            elapsed = time.monotonic() - started
        assert proc.returncode == 0, log_file.read_text()[-3000:]
        # The last line of the log names the last stage; the status follows within an interval.
        last = await wait_for(
            lambda: _status_if(cluster, lambda s: (s.get("progress") or {}).get("stage") == "train")
        )
        seen.append(last["progress"])

        embed = [p for p in seen if p["stage"] == "embed" and p["done"]]
        assert embed, seen
        for p in embed:
            assert p["job"] == "demo-build-00001" and p["total"] == chunks
            assert 0 < p["percent"] < 100 and p["rate"] > 0 and p["etaSeconds"] >= 0
            assert p["summary"].startswith(f"embed {p['done']}/{chunks} (")
        stages = [p["stage"] for p in seen]
        assert stages.index("embed") < max(i for i, st in enumerate(stages) if st == "train"), (
            stages
        )

        # Throttled: the log had a progress line every 0.2 s and the operator looked
        # every 0.3 s, yet the status moved at most once per PROGRESS_INTERVAL.
        patches = progress_patches(cluster)
        lines = [ln for ln in log_file.read_text().splitlines() if '"progress"' in ln]
        assert len(lines) > 2 * len(patches)
        assert 2 <= len(patches) <= elapsed / PROGRESS_INTERVAL + 2, (len(patches), elapsed)
        stamps = [p["updatedAt"] for p in patches]
        assert len(set(stamps)) == len(stamps)  # never two writes in the same second

        # The Job ends: its result is what the real build wrote; progress is cleared.
        result = json.loads(result_file.read_text())
        await cluster.finish_job(NS, "demo-build-00001", result=result)
        status = await wait_for(
            lambda: _status_if(cluster, lambda s: s.get("phase") == "Ready"), timeout=15
        )
    assert "progress" not in status
    assert status["generation"] == result["generation"]


async def _status_if(cluster: Cluster, check) -> dict[str, Any] | None:
    status = await cluster.status(NS, "demo")
    return status if check(status) else None


def _line(stage: str, done: int, total: int) -> bytes:
    progress = {
        "stage": stage,
        "done": done,
        "total": total,
        "percent": 100 * done / total,
        "rate": 10.0,
        "eta_seconds": (total - done) / 10.0,
        "elapsed_seconds": 1.0,
    }
    entry = {
        "ts": "t",
        "level": "info",
        "logger": "codeintel.indexer.progress",
        "msg": f"progress {stage}: {done}/{total}",
        "progress": progress,
    }
    return (json.dumps(entry) + "\n").encode()


async def test_a_failed_job_clears_progress(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    async with run_operator(SETTINGS):
        await cluster.apply_codeindex(NS, "demo", SPEC)
        await start_pod(cluster, "demo-build-00001", lambda: b"noise\n" + _line("embed", 5, 50))
        progress = await wait_for(lambda: _status_if(cluster, lambda s: s.get("progress")))
        assert progress["progress"]["summary"] == "embed 5/50 (10%) eta 4s"
        await cluster.finish_job(NS, "demo-build-00001", failure=("BackoffLimitExceeded", "boom"))
        status = await wait_for(lambda: _status_if(cluster, lambda s: s.get("failures")))
    assert "progress" not in status  # neither the failed Job's nor (yet) its retry's
    assert status["failures"] == 1


async def test_an_unreadable_log_is_logged_once_and_the_job_still_ends(
    cluster: Cluster, run_operator: OperatorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)

    def refused() -> None:
        raise RuntimeError("kubelet unreachable")  # the emulator answers 500

    async with run_operator(SETTINGS):
        await cluster.apply_codeindex(NS, "demo", SPEC)
        await start_pod(cluster, "demo-build-00001", refused)
        await wait_for(lambda: _log_reads(cluster, 5))  # several ticks went by
        await cluster.finish_job(NS, "demo-build-00001", result=build_result("build", "g000001"))
        status = await wait_for(lambda: _status_if(cluster, lambda s: s.get("phase") == "Ready"))
    assert "progress" not in status
    warnings = [r for r in caplog.records if "cannot read its progress" in r.getMessage()]
    assert len(warnings) == 1


async def _log_reads(cluster: Cluster, at_least: int) -> bool:
    return len(cluster.emulator[kmock.subresource("log")]) >= at_least


async def test_status_writes_are_throttled_however_often_the_log_moves(
    cluster: Cluster, run_operator: OperatorFactory
) -> None:
    """Every read of the log shows more done; the status still moves once per interval."""
    reads: list[float] = []

    def advancing() -> bytes:
        reads.append(time.monotonic())
        return _line("embed", len(reads), 10_000)

    async with run_operator(SETTINGS):
        await cluster.apply_codeindex(NS, "demo", SPEC)
        await start_pod(cluster, "demo-build-00001", advancing)
        await wait_for(lambda: _status_if(cluster, lambda s: s.get("progress")))
        passes_before, first = _passes(cluster), time.monotonic()
        await asyncio.sleep(3.5)
        window, passes = time.monotonic() - first, _passes(cluster) - passes_before
        patches = progress_patches(cluster)
    assert passes >= 6  # the operator looked at the CodeIndex every 0.3 s...
    # ...and wrote the first progress, then at most one more per interval: it does
    # not even read the log while the recorded progress is fresh.
    assert 2 <= len(patches) <= 1 + window / PROGRESS_INTERVAL + 1, len(patches)
    gaps = [b - a for a, b in itertools.pairwise(reads)]
    assert min(gaps) >= PROGRESS_INTERVAL - 0.05, gaps


def _passes(cluster: Cluster) -> int:
    """Reconciliation passes: each starts by reading the CodeIndex."""
    path = kube.path("codeintel.io/v1alpha1", "codeindexes", NS, "demo")
    return sum(1 for r in cluster.emulator["get"] if r.url.path == path)


def test_the_last_progress_line_wins_and_garbage_is_skipped() -> None:
    log = (
        b'ion": 3}}\n'  # a tail can start mid-line
        + _line("embed", 10, 50)
        + _line("embed", 20, 50)
        + b'{"msg": "progress is a word", "progress": "not an object"}\n'
        + b"Traceback (most recent call last): progress\n"
        + b'{"level": "info", "msg": "HTTP Request: POST /v1/embeddings"}\n'
    ).decode()
    found = progress.last_progress(log)
    assert found is not None and found["done"] == 20
    assert progress.last_progress("no json here\n") is None
    assert progress.last_progress("") is None
