"""Issue 22: a hung shard no longer costs every query the shard timeout.

Real shard searchers (one a separate process, stopped with SIGSTOP) behind a
real router on loopback: after the first timeout the replica is ejected,
queries go to the shard's other replica where there is one and answer
``partial`` at once where there is none, and a background probe takes the
replica back once it answers again.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from benchmarks import serverproc
from fleet_helpers import REPOS, build_fleet, fleet_settings
from searcher_helpers import Served

from codeintel.core.settings import Settings
from codeintel.searcher import create_app, discovery
from codeintel.searcher.app import create_router_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, local_embedder: Any) -> Path:
    return build_fleet(tmp_path_factory.mktemp("ejection"), REPOS, local_embedder)


def _free_block() -> int:
    """A multiple of 10 whose next four ports are free: ``{base//10}{i}`` numbers replicas."""
    for base in range(41000, 60000, 10):
        with contextlib.ExitStack() as stack:
            try:
                for i in range(4):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", base + i))
            except OSError:
                continue
            return base
    raise RuntimeError("no free port block")


@contextlib.contextmanager
def serve_on(app: Any, port: int) -> Iterator[str]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def query(url: str) -> tuple[dict[str, Any], float]:
    start = time.monotonic()
    r = httpx.post(f"{url}/v1/search_text", json={"pattern": "def "}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json(), time.monotonic() - start


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_hung_replica_is_ejected_bypassed_and_taken_back(root: Path, local_embedder: Any) -> None:
    base = _free_block()
    # Shard i, replica r is port base + i + 2r: shard 0 = {+0, +2 (absent)}, shard 1 = {+1, +3}.
    hung = _shard_process(root, 1, 2, base + 1)
    lost = {n for n in REPOS if discovery.shard_of(n, 2) == 1}
    try:
        hung.start()
        shard = [create_app(fleet_settings(root, shards=2, shard_index=i), embedder=local_embedder)
                 for i in (0, 1)]  # fmt: skip
        with serve_on(shard[0], base), serve_on(shard[1], base + 3) as spare:
            _ready(f"http://127.0.0.1:{base}")
            _ready(spare)
            hung_signal(hung, signal.SIGSTOP)
            template = f"http://127.0.0.1:{base // 10}{{i}}"
            settings = Settings.from_env({}, fleet={
                "shard_urls": (template,), "shards": 2, "shard_replicas": 2,
                "shard_timeout_seconds": 2.0,
            })  # fmt: skip
            with Served(create_router_app(settings)) as router:
                answers = [query(router.url)[0] for _ in range(6)]
                # At most the first query waits for the hung replica; after that it is
                # ejected and its shard answered by the spare replica: complete answers.
                assert all("partial" not in a for a in answers[1:]), [
                    (a.get("missing_shards"), a.get("partial")) for a in answers
                ]
                assert set(answers[-1]["repos"]) == set(REPOS)
                assert metric(router.url, "codeintel_router_shard_ejections_total") == 1.0
                assert metric(router.url, "codeintel_router_replicas_ejected") >= 1.0

        # No spare: the router answers partial at once while the shard is out.
        again = create_app(fleet_settings(root, shards=2, shard_index=0), embedder=local_embedder)
        with serve_on(again, base) as first:
            _ready(first)
            settings = Settings.from_env({}, fleet={
                "shard_urls": (first, f"http://127.0.0.1:{base + 1}"),
                "shard_timeout_seconds": 2.0,
            })  # fmt: skip
            with Served(create_router_app(settings)) as router:
                first_answer, _ = query(router.url)
                assert first_answer["partial"] is True
                timeouts = 'codeintel_router_shard_failures_total{reason="timeout",shard="shard-1"}'
                waited = metric(router.url, timeouts)  # the first query, maybe list_repos too
                for _ in range(5):
                    answer, _ = query(router.url)
                    assert answer["partial"] is True and answer["missing_shards"] == ["shard-1"]
                    assert not lost & set(answer["repos"])
                # No more waiting after the ejection: the next five skipped the shard.
                assert metric(router.url, timeouts) == waited
                assert metric(router.url, "codeintel_router_shard_ejections_total") == 1.0
                # It wakes up: a probe takes it back and answers are whole again.
                hung_signal(hung, signal.SIGCONT)
                deadline = time.monotonic() + 60
                while metric(router.url, "codeintel_router_replicas_ejected") > 0:
                    assert time.monotonic() < deadline, "the replica was never taken back"
                    time.sleep(0.2)
                answer, _ = query(router.url)
                assert "partial" not in answer and set(answer["repos"]) == set(REPOS)
    finally:
        hung_signal(hung, signal.SIGCONT)
        hung.stop(0)


def _shard_process(root: Path, index: int, n: int, port: int) -> serverproc.ServerProcess:
    """Shard ``index`` of ``n`` as its own ``codeintel serve`` process on ``port``."""
    argv = serverproc.codeintel(
        "--log-level", "warning", "serve", "--stores-root", str(root),
        "--shards", str(n), "--shard-index", str(index), "--host", "127.0.0.1",
        "--port", str(port),
    )  # fmt: skip
    env = {
        "CODEINTEL_FLEET_SCAN_INTERVAL_SECONDS": "0.2",
        "CODEINTEL_SERVER_RELOAD_INTERVAL_SECONDS": "0.2",
    }
    return serverproc.ServerProcess(argv, port, env=env, timeout=120, stderr=subprocess.DEVNULL)


def hung_signal(server: serverproc.ServerProcess, sig: signal.Signals) -> None:
    if server.proc is not None and server.proc.poll() is None:
        server.proc.send_signal(sig)


def _ready(url: str) -> None:
    serverproc.wait_http(f"{url}/readyz", 120)
