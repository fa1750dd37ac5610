"""A client for any OpenAI-compatible ``/v1/embeddings`` server (vLLM in production).

In a cluster the indexer embeds hundreds of thousands of chunks against a
shared GPU server, and searchers embed every query against it. What matters
there, and what this client takes care of:

* **Connections are reused.** One ``httpx.Client`` (and, on first async use, one
  ``httpx.AsyncClient``) lives as long as the embedder, so a build of 10 000
  batches opens a handful of TCP connections, not 10 000. The
  ``vllm_http_connections_open`` gauge reads the pools' state so that is visible.
* **Requests stay bounded** by text count *and* characters, so a batch of long
  chunks does not exceed the server's limits; a single huge text goes alone.
* **Transient failures are retried** (connect errors, timeouts, 429 honouring
  ``Retry-After``, 5xx) with exponential backoff and full jitter, within both a
  retry count and a time budget; anything else fails at once with the status
  and an excerpt of the body, and every failure names the server's URL.
* **Answers are checked**: re-ordered by ``index``, one vector per input, one
  dimension throughout (the configured one, or the first one seen), and scaled
  to unit length because not every server normalises.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Literal, Self

import httpx
import msgspec
import numpy as np
import prometheus_client

from codeintel.core import errors
from codeintel.core.embed import base
from codeintel.core.settings import EmbedderSettings

logger = logging.getLogger(__name__)

_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
_BACKOFF_BASE_SECONDS = 0.25
_BACKOFF_CAP_SECONDS = 20.0
_BODY_EXCERPT_CHARS = 300
_ASYNC_CONCURRENCY = 8
"""Batches of one ``aembed`` call in flight at once: enough to keep a vLLM batch full."""


class _EmbeddingRequest(msgspec.Struct, omit_defaults=True):
    model: str
    input: list[str]
    encoding_format: Literal["float"] = "float"


class _EmbeddingItem(msgspec.Struct):
    index: int
    embedding: list[float]


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    total_tokens: int = 0


class _EmbeddingResponse(msgspec.Struct):
    """vLLM adds ``id``, ``object`` and ``created``; unknown fields are ignored."""

    data: list[_EmbeddingItem]
    model: str = ""
    usage: _Usage | None = None


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(_EmbeddingResponse)

_LIVE_CLIENTS: weakref.WeakSet[OpenAIEmbeddingsClient] = weakref.WeakSet()


def _open_connections_total() -> float:
    return float(sum(client.open_connections() for client in list(_LIVE_CLIENTS)))


HTTP_CONNECTIONS_OPEN = prometheus_client.Gauge(
    "vllm_http_connections_open",
    "Open TCP connections in the connection pools of live embeddings-server clients.",
)
HTTP_CONNECTIONS_OPEN.set_function(_open_connections_total)


def _pool_connections(transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None) -> int:
    """Connections of an httpx transport's httpcore pool that are not closed."""
    pool = getattr(transport, "_pool", None)
    connections = getattr(pool, "connections", None)
    if connections is None:
        return 0
    return sum(1 for conn in connections if not conn.is_closed())


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _excerpt(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    if len(text) > _BODY_EXCERPT_CHARS:
        text = text[:_BODY_EXCERPT_CHARS] + "…"
    return text


class _RetryableError(Exception):
    """An attempt failed in a way worth retrying; carries the final error and a wait hint."""

    def __init__(self, error: errors.EmbeddingError, wait: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait = wait


class _Retries:
    """One request's retry policy: whether to try again, how long to wait first, when to give up.

    The sync and async drivers share it and differ only in how they send and sleep.
    """

    def __init__(self, max_retries: int, deadline: float) -> None:
        self.max_retries = max_retries
        self.deadline = deadline
        self.attempt = 0

    def wait(self, retry: _RetryableError) -> float:
        """Seconds to sleep before the next attempt; raises the final error when retries are exhausted."""
        remaining = self.deadline - time.monotonic()
        if self.attempt >= self.max_retries or remaining <= 0:
            logger.warning(
                "embedding request failed after %d attempts: %s", self.attempt + 1, retry.error
            )
            raise retry.error from retry.__cause__
        if retry.wait is not None:
            wait = retry.wait
        else:
            ceiling = min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2**self.attempt)
            wait = random.uniform(0.0, ceiling)  # noqa: S311 - jitter, not security
        wait = min(wait, remaining)
        logger.info("retrying in %.2fs: %s", wait, retry.error)
        self.attempt += 1
        return wait


class OpenAIEmbeddingsClient:
    """Embeds texts with ``POST {base_url}/embeddings`` (``base_url`` like ``http://vllm:8000/v1``).

    Thread-safe for :meth:`embed`; :meth:`aembed` uses one ``AsyncClient`` bound to
    the event loop of its first call. ``transport``/``async_transport`` replace the
    network (tests inject faults with them).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "",
        dim: int = 0,
        batch_size: int = 64,
        max_batch_chars: int = 200_000,
        timeout: float = 60.0,
        max_retries: int = 5,
        retry_budget: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if batch_size < 1 or max_batch_chars < 1:
            raise errors.ConfigError("embedder batch_size and max_batch_chars must be >= 1")
        if not base_url.startswith(("http://", "https://")):
            raise errors.ConfigError(
                f"embedder URL must start with http:// or https://: {base_url!r}"
            )
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/embeddings"
        self.model = model
        self.dim = dim
        self.batch_size = batch_size
        self.max_batch_chars = max_batch_chars
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.retry_budget = max(0.0, retry_budget)
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._transport: httpx.BaseTransport = transport or httpx.HTTPTransport(limits=_LIMITS)
        self._client = httpx.Client(
            transport=self._transport, limits=_LIMITS, timeout=timeout, headers=self._headers
        )
        self._async_transport = async_transport
        self._aclient: httpx.AsyncClient | None = None
        self._dim_lock = threading.Lock()
        _LIVE_CLIENTS.add(self)

    @classmethod
    def from_settings(cls, s: EmbedderSettings) -> Self:
        return cls(
            s.url,
            s.model,
            api_key=s.api_key,
            dim=s.dim,
            batch_size=s.batch_size,
            max_batch_chars=s.max_batch_chars,
            timeout=s.timeout_seconds,
            max_retries=s.max_retries,
            retry_budget=s.retry_budget_seconds,
        )

    # -- batching and answers -------------------------------------------------

    def batches(self, texts: Sequence[str]) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` slices bounded by ``batch_size`` texts and ``max_batch_chars``."""
        start, chars = 0, 0
        for i, text in enumerate(texts):
            if i > start and (
                i - start >= self.batch_size or chars + len(text) > self.max_batch_chars
            ):
                yield start, i
                start, chars = i, 0
            chars += len(text)
        if start < len(texts):
            yield start, len(texts)

    def _parse(self, response: httpx.Response, n: int) -> np.ndarray:
        try:
            body = _DECODER.decode(response.content)
        except msgspec.DecodeError as e:
            raise errors.EmbeddingError(
                f"embedding server at {self.url} sent an unreadable answer: {e}"
            ) from e
        if len(body.data) != n or sorted(item.index for item in body.data) != list(range(n)):
            raise errors.EmbeddingError(
                f"embedding server at {self.url} answered {len(body.data)} vectors "
                f"for {n} inputs (or with wrong indices)"
            )
        ordered = sorted(body.data, key=lambda item: item.index)
        dims = {len(item.embedding) for item in ordered}
        with self._dim_lock:
            expected = self.dim or next(iter(dims))
            bad = dims - {expected}
            if bad:
                raise errors.DimensionMismatchError(
                    f"embedding model {self.model!r} at {self.url} returned "
                    f"{sorted(bad)[0]}-d vectors, expected {expected}-d"
                )
            self.dim = expected
        vectors = np.array([item.embedding for item in ordered], dtype=np.float32)
        return base.normalize_rows(vectors)

    def _classify(self, response: httpx.Response) -> None:
        """Raise for a failed response: :class:`_RetryableError` if worth retrying, else the error."""
        if response.is_success:
            return
        status = response.status_code
        message = f"embedding server at {self.url} answered HTTP {status}: {_excerpt(response)}"
        error = errors.EmbeddingHTTPError(message, status_code=status)
        if status == 429 or status >= 500:
            raise _RetryableError(error, _retry_after_seconds(response.headers.get("Retry-After")))
        raise error

    def _transport_error(self, e: httpx.TransportError) -> _RetryableError:
        if isinstance(e, httpx.TimeoutException):
            error: errors.EmbeddingError = errors.EmbeddingTimeoutError(
                f"embedding server at {self.url} did not answer within {self.timeout:g}s "
                f"({type(e).__name__})"
            )
        else:
            error = errors.EmbeddingError(
                f"embedding server unreachable at {self.url}: {type(e).__name__}: {e}"
            )
        return _RetryableError(error)

    def _retries(self) -> _Retries:
        return _Retries(self.max_retries, time.monotonic() + self.retry_budget)

    def _answer(self, response: httpx.Response, n: int) -> np.ndarray:
        self._classify(response)
        return self._parse(response, n)

    # -- sync -----------------------------------------------------------------

    def _send(self, payload: bytes) -> httpx.Response:
        try:
            return self._client.post(self.url, content=payload)
        except httpx.TransportError as e:
            raise self._transport_error(e) from e

    def _post(self, texts: list[str]) -> np.ndarray:
        if self._client.is_closed:
            raise errors.EmbeddingError(f"embeddings client for {self.url} is closed")
        payload = _ENCODER.encode(_EmbeddingRequest(model=self.model, input=texts))
        retries = self._retries()
        while True:
            try:
                return self._answer(self._send(payload), len(texts))
            except _RetryableError as retry:
                time.sleep(retries.wait(retry))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with base.EMBED_SECONDS.time():
            if not texts:
                return base.empty(self.dim)
            parts = [self._post(list(texts[a:b])) for a, b in self.batches(texts)]
            return parts[0] if len(parts) == 1 else np.concatenate(parts)

    # -- async ----------------------------------------------------------------

    def _async_client(self) -> httpx.AsyncClient:
        if self._client.is_closed:
            raise errors.EmbeddingError(f"embeddings client for {self.url} is closed")
        if self._aclient is None:
            transport = self._async_transport or httpx.AsyncHTTPTransport(limits=_LIMITS)
            self._async_transport = transport
            self._aclient = httpx.AsyncClient(
                transport=transport, limits=_LIMITS, timeout=self.timeout, headers=self._headers
            )
        return self._aclient

    async def _asend(self, client: httpx.AsyncClient, payload: bytes) -> httpx.Response:
        try:
            return await client.post(self.url, content=payload)
        except httpx.TransportError as e:
            raise self._transport_error(e) from e

    async def _apost(self, client: httpx.AsyncClient, texts: list[str]) -> np.ndarray:
        payload = _ENCODER.encode(_EmbeddingRequest(model=self.model, input=texts))
        retries = self._retries()
        while True:
            try:
                return self._answer(await self._asend(client, payload), len(texts))
            except _RetryableError as retry:
                await asyncio.sleep(retries.wait(retry))

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        with base.EMBED_SECONDS.time():
            if not texts:
                return base.empty(self.dim)
            client = self._async_client()
            slots = asyncio.Semaphore(_ASYNC_CONCURRENCY)

            async def one(a: int, b: int) -> np.ndarray:
                async with slots:
                    return await self._apost(client, list(texts[a:b]))

            parts = await asyncio.gather(*(one(a, b) for a, b in self.batches(texts)))
            return parts[0] if len(parts) == 1 else np.concatenate(parts)

    # -- lifecycle ------------------------------------------------------------

    def open_connections(self) -> int:
        """TCP connections currently open in this client's pools (sync and async)."""
        return _pool_connections(self._transport) + _pool_connections(self._async_transport)

    @property
    def closed(self) -> bool:
        return self._client.is_closed and (self._aclient is None or self._aclient.is_closed)

    def close(self) -> None:
        """Close the sync pool; an async pool is closed too when no event loop is running here."""
        self._client.close()
        if self._aclient is None or self._aclient.is_closed:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            logger.warning("close() inside an event loop leaves the async pool open; use aclose()")
            return
        try:
            asyncio.run(self._aclient.aclose())
        except RuntimeError as e:  # its connections belong to an event loop that is gone
            logger.debug("async pool of %s closed with its event loop: %s", self.url, e)

    async def aclose(self) -> None:
        if self._aclient is not None:
            await self._aclient.aclose()
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
