"""A server in its own process on a loopback port: started, waited for over HTTP, stopped.

Benchmarks measure ``codeintel serve`` as it is deployed (its own process, its own
GIL, so the load generator does not share the server's interpreter), and the e2e
tests run the very commands the operator renders. Both start a process here,
wait until a URL answers 200 (failing at once if the process dies first), and stop
it by process group, so nothing it spawned (ripgrep, git) outlives it.

The process binds the port itself, so :func:`free_port` can race with another
process taking it; in-process servers use ``tests/servers.serve``, which cannot.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import httpx

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
"""The bundled model only: no process started here reaches the Hugging Face hub."""


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def codeintel(*args: str) -> list[str]:
    """The argv of ``codeintel ARGS`` run by this interpreter."""
    return [sys.executable, "-m", "codeintel.cli", *args]


def wait_http(url: str, timeout: float, proc: subprocess.Popen[Any] | None = None) -> None:
    """Until ``url`` answers 200; RuntimeError if ``proc`` exits first, TimeoutError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:g}s")


def stop(proc: subprocess.Popen[Any], timeout: float = 30) -> int:
    """SIGTERM the process group of ``proc`` (started with ``start_new_session``), SIGKILL
    it after ``timeout`` seconds; the exit status."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    return proc.wait()


class ServerProcess:
    """``argv`` as a server on 127.0.0.1:``port``, ready once ``ready_path`` answers 200.

    A context manager: entering starts it and waits (``ready_seconds`` says how long),
    leaving stops it with its process group. Its stdout is discarded and its stderr
    inherited unless told otherwise. :meth:`codeintel` builds the usual case."""

    def __init__(
        self,
        argv: Sequence[str],
        port: int,
        *,
        env: Mapping[str, str] | None = None,
        ready_path: str = "/readyz",
        timeout: float = 300,
        stdout: IO[Any] | int | None = subprocess.DEVNULL,
        stderr: IO[Any] | int | None = None,
    ) -> None:
        self.argv = list(argv)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, **OFFLINE, **(env or {})}
        self.ready_path = ready_path
        self.timeout = timeout
        self.stdout, self.stderr = stdout, stderr
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_seconds = 0.0

    @classmethod
    def codeintel(
        cls,
        *args: str,
        log_level: str = "warning",
        **options: Any,
    ) -> ServerProcess:
        """``codeintel --log-level LOG_LEVEL ARGS --host 127.0.0.1 --port <free port>``."""
        port = free_port()
        argv = codeintel("--log-level", log_level, *args, "--host", "127.0.0.1")
        return cls([*argv, "--port", str(port)], port, **options)

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self) -> ServerProcess:
        """Start the process and wait until it is ready (stopping it if it never is)."""
        begun = time.perf_counter()
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=self.stdout,
            stderr=self.stderr,
            start_new_session=True,
        )
        try:
            wait_http(f"{self.url}{self.ready_path}", self.timeout, self.proc)
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.perf_counter() - begun
        return self

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM its process group, SIGKILL after ``timeout`` seconds (0: at once)."""
        if self.proc is not None:
            stop(self.proc, timeout)

    def rss_mb(self) -> float:
        """Resident memory of the server process, in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def open_files(self) -> int:
        """File descriptors the server process holds open."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
