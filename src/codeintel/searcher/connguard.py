"""Connection limits uvicorn does not have: a deadline to read a request, and connections per client.

uvicorn bounds the idle time between keep-alive requests, but not how long a
client may take to send one: fifty connections trickling a header or a body a
byte at a time were all still open after 45 s (issue 22), each holding a socket
and a request slot. :func:`guarded_h11` returns uvicorn's h11 protocol with two
additions:

* **read deadline** — from the moment a connection is ready for a request (it
  opened, or the previous response completed), the request's headers *and*
  body must arrive within ``request_read_timeout_seconds``; otherwise the
  connection is closed. A request being answered (an MCP event stream, a slow
  search) is not affected: only reading the request is timed.
* **connections per client** — a client address holding
  ``max_connections_per_client`` connections has its next one closed at once.
* **one send a response** — uvicorn writes a response's head and its body with a
  ``send()`` each, so the client is woken twice and the server makes two system
  calls; on two busy cores the first wake-up often costs the server its core before
  the body is out. Each request's cycle writes through :class:`HeadWithBody`, which
  holds the head until the body joins it (at most until the loop's next turn, so an
  event stream's head is not held back).

The protocol class is uvicorn's own (``h11``, pure Python, always installed), so
everything else behaves as before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)


def guarded_h11(read_timeout: float, per_client: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a request read deadline and a per-client connection cap
    (0 disables either)."""

    class GuardedH11Protocol(H11Protocol):
        _read_timer: asyncio.TimerHandle | None = None
        _armed_for: Any = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            host = self.client[0] if self.client else None
            if per_client and host is not None:
                held = sum(1 for c in self.connections if _host(c) == host)
                if held > per_client:
                    logger.warning(
                        "closing a connection from %s: it holds %d (limit %d)",
                        host,
                        held - 1,
                        per_client,
                    )
                    transport.close()
                    return
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def handle_events(self) -> None:
            before = self.cycle
            super().handle_events()
            cycle = self.cycle
            if cycle is not None and cycle is not before:  # a new request: its task runs later
                cycle.transport = HeadWithBody(self.transport, self.loop)  # type: ignore[assignment]

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            if read_timeout > 0 and not self.transport.is_closing():
                self._armed_for = self.cycle
                self._read_timer = self.loop.call_later(read_timeout, self._read_deadline)

        def _disarm(self) -> None:
            if self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        def _read_deadline(self) -> None:
            self._read_timer = None
            cycle = self.cycle
            if cycle is None or cycle is self._armed_for:
                reading = "the request headers"  # no new request began
            elif cycle.more_body:
                reading = "the request body"
            else:
                return  # the request is in; answering it is not timed here
            if self.transport.is_closing():
                return
            logger.info(
                "closing a connection from %s: %s did not arrive within %.0f s",
                self.client[0] if self.client else "?",
                reading,
                read_timeout,
            )
            self.transport.close()

    return GuardedH11Protocol


class HeadWithBody:
    """A request cycle's transport that sends the response's first write (its head) with
    the next one (its body) in one ``send()``.

    What is held goes out with the next write, on :meth:`close`, or on the event loop's
    next turn, whichever comes first; writes keep their order. The protocol writes to the
    real transport only between responses (an error before a cycle, the next cycle's
    head), never while this holds anything: a response's body write completes it."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held = b""
        self._first = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held:
            data, self._held = self._held + bytes(data), b""
        elif self._first and data:
            self._first = False
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
            return
        self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def _flush(self) -> None:
        if self._held and not self._transport.is_closing():
            self._transport.write(self._held)
        self._held = b""


def _host(protocol: Any) -> str | None:
    client = getattr(protocol, "client", None)
    return client[0] if client else None
