"""Host-side servers the image tests talk to, as a cluster's pods would reach them."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

import pytest
from benchmarks import serverproc
from images_shared import MODEL


@pytest.fixture(scope="module")
def host_embed_server() -> Iterator[str]:
    """``codeintel embed-server`` on the host's loopback, serving the local model."""
    server = serverproc.ServerProcess.codeintel(
        "embed-server", "--model", MODEL, ready_path="/health", timeout=180, stderr=DEVNULL
    )
    with server:
        yield f"{server.url}/v1"


@pytest.fixture
def git_host(sample_repo: Any) -> Iterator[str]:
    """``git daemon`` serving the sample repository at ``git://127.0.0.1:PORT/repo``."""
    port = serverproc.free_port()
    base = Path(sample_repo.path).parent
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
            f"--port={port}",
            f"--base-path={base}",
            str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"git://127.0.0.1:{port}/{Path(sample_repo.path).name}"
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["git", "ls-remote", url], capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, "git daemon did not start"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)
