"""Issue 22: slow clients no longer hold connections open; one address cannot hold them all.

A real uvicorn server, configured by ``serving.make_server`` as ``codeintel serve``
runs it, on loopback; clients are raw sockets, so they can be as slow as an
attacker likes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from benchmarks import serverproc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from codeintel.core.settings import Settings
from codeintel.searcher import serving


async def echo(request: Request) -> Response:
    body = await request.body()
    if request.query_params.get("slow"):
        await asyncio.sleep(float(request.query_params["slow"]))
    return Response(body)


async def stream(request: Request) -> StreamingResponse:
    async def later() -> AsyncIterator[bytes]:
        await asyncio.sleep(3)
        yield b"late"

    return StreamingResponse(later(), media_type="text/event-stream")


APP = Starlette(
    routes=[Route("/echo", echo, methods=["POST"]), Route("/stream", stream, methods=["GET"])]
)


@contextlib.contextmanager
def running(**server: Any) -> Iterator[int]:
    port = serverproc.free_port()
    settings = Settings.from_env({}, server={"port": port, **server})
    uv = serving.make_server(settings, APP)
    sockets = serving.bind(uv.config, settings)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    while not uv.started:
        time.sleep(0.01)
    try:
        yield port
    finally:
        uv.should_exit = True
        thread.join(timeout=30)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes ``sock`` (reads EOF) before the 30 s socket timeout."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def response(sock: socket.socket) -> tuple[bytes, bytes]:
    """(status line, body) of one whole HTTP response read from ``sock``."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head.split(b"\r\n")[0], body


def post(body: bytes, query: str = "") -> bytes:
    return (
        f"POST /echo{query} HTTP/1.1\r\nHost: localhost\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


@pytest.mark.timeout(120)
def test_slow_headers_and_slow_bodies_are_cut_off() -> None:
    with running(request_read_timeout_seconds=1.0) as port:
        slow_header = connect(port)
        slow_header.sendall(b"POST /echo HTTP/1.1\r\nHost: localhost\r\n")
        slow_body = connect(port)
        slow_body.sendall(post(b"x" * 100)[:-90])
        assert closed_by_server(slow_header)
        assert closed_by_server(slow_body)

        # A complete request is answered, even when answering takes longer than the deadline,
        # and the connection stays usable for the next one.
        fine = connect(port)
        fine.sendall(post(b"hello", "?slow=2"))
        assert response(fine) == (b"HTTP/1.1 200 OK", b"hello")
        fine.sendall(post(b"again"))
        assert response(fine) == (b"HTTP/1.1 200 OK", b"again")


@pytest.mark.timeout(120)
def test_a_client_cannot_hold_more_than_its_connections() -> None:
    with running(request_read_timeout_seconds=0, max_connections_per_client=5) as port:
        held = [connect(port) for _ in range(5)]
        for sock in held:  # each is served, so each is surely accepted
            sock.sendall(post(b"ok"))
            assert response(sock) == (b"HTTP/1.1 200 OK", b"ok")
        extra = connect(port)
        assert closed_by_server(extra)
        held.pop().close()
        time.sleep(0.5)  # the server notices the close
        again = connect(port)
        again.sendall(post(b"ok"))
        assert response(again) == (b"HTTP/1.1 200 OK", b"ok")


def test_limits_are_off_when_set_to_zero() -> None:
    with running(request_read_timeout_seconds=0, max_connections_per_client=0) as port:
        sock = connect(port)
        sock.sendall(b"POST /echo HTTP/1.1\r\n")
        sock.settimeout(2)
        assert not closed_by_server(sock)


def test_a_response_goes_out_in_one_send(monkeypatch: pytest.MonkeyPatch) -> None:
    """Head and body in one ``send()``: one wake-up of the client, one system call."""
    sent: list[bytes] = []
    real = socket.socket.send

    def spy(self: socket.socket, data: Any, *args: Any) -> int:
        sent.append(bytes(data))
        return real(self, data, *args)

    with running() as port:
        sock = connect(port)
        monkeypatch.setattr(socket.socket, "send", spy)  # the server's; the client uses sendall
        for body in (b"one", b"two" * 5000):
            sent.clear()
            sock.sendall(post(body))
            assert response(sock) == (b"HTTP/1.1 200 OK", body)
            assert len(sent) == 1 and sent[0].endswith(b"\r\n\r\n" + body)


def test_a_stream_sends_its_head_before_its_first_event() -> None:
    """A held head goes out on the loop's next turn: a stream's client is not kept waiting."""
    with running() as port:
        sock = connect(port)
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        sock.settimeout(1.5)  # the first event comes after 3 s
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n")
        sock.settimeout(30)
        assert b"late" in sock.recv(65536)
