"""Real HTTP on loopback for the embedder tests: a uvicorn thread and a scriptable server.

``serve(app)`` runs any ASGI app on 127.0.0.1 with an ephemeral port in a
background thread. ``FakeEmbeddingsServer`` is a small OpenAI-compatible
``/v1/embeddings`` app that records which client ports talked to it and can be
told to fail, shuffle, stall or change dimension, so the client's connection
reuse, retries and checks are tested against a real socket.
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


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn on an ephemeral loopback port; yields ``http://127.0.0.1:PORT``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_keep_alive=30)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


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
    failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    """Statuses (with headers) answered, in order, before requests succeed again."""
    shuffle: bool = False
    delay: float = 0.0
    wrong_dim_after: int | None = None
    """After this many successful requests, answer vectors one longer than ``dim``."""
    client_ports: set[int] = field(default_factory=set)
    requests: list[list[str]] = field(default_factory=list)
    attempts: int = 0
    successes: int = 0
    max_in_flight: int = 0
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

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
                failure = self.failures.pop(0) if self.failures else None
                self._in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self._in_flight)
            try:
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
