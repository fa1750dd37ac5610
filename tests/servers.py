"""Real HTTP on loopback for every test package: one uvicorn harness and one fake embeddings server.

``serve(app)`` binds and listens on 127.0.0.1:0 *before* uvicorn starts and hands
it that socket, so no other process can take the port between choosing and
binding it (picking a free port, closing it and letting uvicorn bind again races;
a server in another process, which binds its own, is ``benchmarks/serverproc``).
``FakeEmbeddingsServer`` is a small OpenAI-compatible ``/v1/embeddings`` app a test
scripts: failures, a sticky error status, shuffled or stalled answers, a wrong
dimension, and it records what reached it.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

START_TIMEOUT_SECONDS = 30.0


def listening_socket() -> socket.socket:
    """A TCP socket bound to an ephemeral loopback port and already listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@contextmanager
def serve(app: Any, **config: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on its own socket; yields ``http://127.0.0.1:PORT``."""
    sock = listening_socket()
    options = {"log_level": "warning", "lifespan": "on", "timeout_keep_alive": 30, **config}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextmanager
def refused_url(path: str = "/v1") -> Iterator[str]:
    """A loopback URL that refuses connections: its port stays bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}{path}"


def fake_vector(text: str, dim: int) -> list[float]:
    """A deterministic, deliberately non-normalised vector for ``text``."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return (np.random.default_rng(seed).standard_normal(dim) * 3.0).tolist()


def expected_vectors(texts: list[str], dim: int) -> np.ndarray:
    rows = np.array([fake_vector(t, dim) for t in texts], dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@dataclass
class FakeEmbeddingsServer:
    """Scriptable OpenAI-compatible embeddings endpoint; state is read by the tests."""

    dim: int = 8
    url: str = ""
    """The base URL (``…/v1``) while :meth:`running`."""
    failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    """Statuses (with headers) answered, in order, before requests succeed again."""
    status: int = 200
    """Answer every request with this status while it is not 200 (429 says Retry-After: 0)."""
    shuffle: bool = False
    delay: float = 0.0
    wrong_dim_after: int | None = None
    """After this many successful requests, answer vectors one longer than ``dim``."""
    hang_after: int | None = None
    """After this many requests, hold every further one until :attr:`release` is set."""
    hanging: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    client_ports: set[int] = field(default_factory=set)
    requests: list[list[str]] = field(default_factory=list)
    attempts: int = 0
    successes: int = 0
    max_in_flight: int = 0
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def running(self) -> Iterator[str]:
        """Serve on loopback; yields the base URL (``…/v1``). Held requests are released at exit."""
        with serve(self.app()) as url:
            self.url = f"{url}/v1"
            try:
                yield self.url
            finally:
                self.release.set()  # before uvicorn shuts down, which waits for held requests

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def record_client(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            client = request.scope.get("client")
            if client:
                with self._lock:
                    self.client_ports.add(client[1])
            return await call_next(request)

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> Response:
            body = await request.json()
            with self._lock:
                self.attempts += 1
                attempt = self.attempts
                failure = self.failures.pop(0) if self.failures else None
                if failure is None and self.status != 200:
                    headers = {"Retry-After": "0"} if self.status == 429 else {}
                    failure = (self.status, headers)
                self._in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight)
            try:
                if self.hang_after is not None and attempt > self.hang_after:
                    self.hanging.set()
                    while not self.release.is_set():
                        await asyncio.sleep(0.05)
                if self.delay:
                    await asyncio.sleep(self.delay)
                if failure is not None:
                    status, headers = failure
                    return JSONResponse(
                        {"error": {"message": f"scripted {status}", "type": "x", "code": status}},
                        status_code=status,
                        headers=headers,
                    )
                texts: list[str] = body["input"]
                with self._lock:
                    self.requests.append(texts)
                    dim = self.dim
                    if self.wrong_dim_after is not None and self.successes >= self.wrong_dim_after:
                        dim += 1
                    self.successes += 1
                data = [
                    {"index": i, "object": "embedding", "embedding": fake_vector(t, dim)}
                    for i, t in enumerate(texts)
                ]
                if self.shuffle:
                    random.Random(len(texts)).shuffle(data)
                return JSONResponse(
                    {
                        "id": "embd-test",
                        "object": "list",
                        "created": int(time.time()),
                        "model": body["model"],
                        "data": data,
                        "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)},
                    }
                )
            finally:
                with self._lock:
                    self._in_flight -= 1

        return app
