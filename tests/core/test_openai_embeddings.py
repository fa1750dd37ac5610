"""The OpenAI-compatible embeddings client against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY

from codeintel.core import embed, errors
from codeintel.core.embed.openai import OpenAIEmbeddingsClient
from codeintel.core.settings import EmbedderSettings
from servers import FakeEmbeddingsServer, expected_vectors

Server = tuple[FakeEmbeddingsServer, str]


def _client(url: str, **kwargs: object) -> OpenAIEmbeddingsClient:
    options: dict[str, object] = {"batch_size": 4, "max_retries": 3, "retry_budget": 10.0}
    options.update(kwargs)
    return OpenAIEmbeddingsClient(url, "test-model", **options)  # type: ignore[arg-type]


def _texts(n: int) -> list[str]:
    return [f"chunk {i}: def f{i}(x): return x * {i}" for i in range(n)]


def _gauge() -> float:
    return REGISTRY.get_sample_value("vllm_http_connections_open") or 0.0


def test_vectors_come_back_normalised_in_order(fake_server: Server) -> None:
    state, url = fake_server
    texts = _texts(10)
    with _client(url) as client:
        vectors = client.embed(texts)
    assert vectors.shape == (10, 8)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, expected_vectors(texts, 8), atol=1e-6)
    assert [len(r) for r in state.requests] == [4, 4, 2]
    assert client.dim == 8


def test_connections_are_reused_across_batches(fake_server: Server) -> None:
    state, url = fake_server
    with _client(url, batch_size=2) as client:
        client.embed(_texts(30))
        client.embed(_texts(6))
    assert len(state.requests) == 18
    assert len(state.client_ports) == 1


def test_shuffled_answers_are_put_back_in_input_order(fake_server: Server) -> None:
    state, url = fake_server
    state.shuffle = True
    texts = _texts(7)
    with _client(url, batch_size=7) as client:
        vectors = client.embed(texts)
    np.testing.assert_allclose(vectors, expected_vectors(texts, 8), atol=1e-6)


def test_batches_are_bounded_by_characters(fake_server: Server) -> None:
    state, url = fake_server
    texts = ["a" * 40, "b" * 40, "c" * 40, "d" * 500, "e" * 10, "f" * 10]
    with _client(url, batch_size=64, max_batch_chars=100) as client:
        vectors = client.embed(texts)
    assert [len(r) for r in state.requests] == [2, 1, 1, 2]
    assert state.requests[2] == ["d" * 500]  # longer than the cap: sent alone
    np.testing.assert_allclose(vectors, expected_vectors(texts, 8), atol=1e-6)


def test_503_and_429_are_retried_then_succeed(fake_server: Server) -> None:
    state, url = fake_server
    state.failures = [(503, {}), (429, {"Retry-After": "1"}), (502, {})]
    started = time.monotonic()
    with _client(url) as client:
        vectors = client.embed(_texts(3))
    elapsed = time.monotonic() - started
    assert vectors.shape == (3, 8)
    assert state.attempts == 4
    assert elapsed >= 0.9  # Retry-After: 1 was honoured


def test_retry_after_http_date_is_capped_by_the_budget(fake_server: Server) -> None:
    state, url = fake_server
    state.failures = [(429, {"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"})]
    started = time.monotonic()
    with _client(url, retry_budget=0.5) as client:
        vectors = client.embed(_texts(2))
    assert vectors.shape == (2, 8)
    assert time.monotonic() - started < 5


def test_exhausted_retries_name_the_url_and_status(fake_server: Server) -> None:
    state, url = fake_server
    state.failures = [(503, {})] * 10
    with _client(url, max_retries=2) as client, pytest.raises(errors.EmbeddingHTTPError) as info:
        client.embed(_texts(1))
    assert info.value.status_code == 503
    assert f"{url}/embeddings" in str(info.value)
    assert "scripted 503" in str(info.value)
    assert state.attempts == 3


def test_client_errors_fail_at_once_with_a_body_excerpt(fake_server: Server) -> None:
    state, url = fake_server
    state.failures = [(400, {})]
    with _client(url) as client, pytest.raises(errors.EmbeddingHTTPError, match="HTTP 400"):
        client.embed(_texts(1))
    assert state.attempts == 1


def test_unreachable_server_fails_quickly_naming_the_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        url = f"http://127.0.0.1:{port}/v1"
        started = time.monotonic()
        with _client(url, retry_budget=0.5) as client, pytest.raises(errors.EmbeddingError) as info:
            client.embed(["x"])
    assert time.monotonic() - started < 3
    assert f"unreachable at {url}/embeddings" in str(info.value)


def test_a_stalled_server_is_a_timeout(fake_server: Server) -> None:
    state, url = fake_server
    state.delay = 1.0
    with (
        _client(url, timeout=0.2, max_retries=1) as client,
        pytest.raises(errors.EmbeddingTimeoutError, match=url),
    ):
        client.embed(["x"])
    assert state.attempts == 2


def test_dimension_mismatch_with_configured_dim(fake_server: Server) -> None:
    _, url = fake_server
    with _client(url, dim=384) as client, pytest.raises(errors.DimensionMismatchError, match="384"):
        client.embed(["x"])


def test_dimension_learned_from_the_first_answer_is_enforced(fake_server: Server) -> None:
    state, url = fake_server
    state.wrong_dim_after = 1
    with _client(url, batch_size=1) as client:
        with pytest.raises(errors.DimensionMismatchError, match=r"9-d.*expected 8-d"):
            client.embed(["a", "b"])
        assert client.dim == 8


def test_empty_input_and_learned_dim(fake_server: Server) -> None:
    _, url = fake_server
    with _client(url) as client:
        assert client.embed([]).shape == (0, 0)
        client.embed(["x"])
        assert client.embed([]).shape == (0, 8)


def test_close_releases_the_pool_and_the_gauge(fake_server: Server) -> None:
    _, url = fake_server
    client = _client(url, batch_size=1)
    client.embed(_texts(3))
    assert client.open_connections() == 1
    before = _gauge()
    assert before >= 1
    client.close()
    assert client.closed
    assert client.open_connections() == 0
    assert _gauge() == before - 1
    with pytest.raises(errors.EmbeddingError):
        client.embed(["after close"])


async def test_aembed_concurrently_over_one_pool(fake_server: Server) -> None:
    state, url = fake_server
    state.delay = 0.05
    texts = _texts(40)
    async with _client(url, batch_size=2) as client:
        halves = await asyncio.gather(client.aembed(texts[:20]), client.aembed(texts[20:]))
        first_ports = len(state.client_ports)
        whole = await client.aembed(texts)
        in_pool = client.open_connections()
    np.testing.assert_allclose(np.vstack(halves), expected_vectors(texts, 8), atol=1e-6)
    np.testing.assert_allclose(whole, expected_vectors(texts, 8), atol=1e-6)
    assert len(state.requests) == 40
    assert state.max_in_flight > 1  # batches really overlapped
    # 2 calls x 8 batches in flight open at most 16 connections; the second round reuses them.
    assert 1 < first_ports <= 16
    assert len(state.client_ports) == first_ports
    assert in_pool == first_ports
    assert client.closed
    assert client.open_connections() == 0


async def test_aembed_retries_429(fake_server: Server) -> None:
    state, url = fake_server
    state.failures = [(429, {"Retry-After": "0"}), (500, {})]
    async with _client(url) as client:
        vectors = await client.aembed(_texts(2))
    assert vectors.shape == (2, 8)
    assert state.attempts == 3


async def test_aembed_unreachable_names_the_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        async with _client(url, retry_budget=0.3) as client:
            with pytest.raises(errors.EmbeddingError, match=re.escape(f"unreachable at {url}")):
                await client.aembed(["x"])


def test_malformed_answers_are_embedding_errors() -> None:
    """Answers a real server would not send: missing rows, junk bodies."""

    def handler(request: httpx.Request) -> httpx.Response:
        if b"junk" in request.content:
            return httpx.Response(200, content=b"<html>proxy error</html>")
        return httpx.Response(200, json={"data": [{"index": 0, "embedding": [1.0, 0.0]}]})

    client = _client("http://embed.test/v1", transport=httpx.MockTransport(handler))
    with client, pytest.raises(errors.EmbeddingError, match="2 inputs"):
        client.embed(["a", "b"])
    client = _client("http://embed.test/v1", transport=httpx.MockTransport(handler))
    with client, pytest.raises(errors.EmbeddingError, match="unreadable"):
        client.embed(["junk"])


def test_api_key_is_sent_as_bearer_token() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(200, json={"data": [{"index": 0, "embedding": [3.0, 4.0]}]})

    transport = httpx.MockTransport(handler)
    with _client("http://embed.test/v1", api_key="s3cret", transport=transport) as client:
        vectors = client.embed(["x"])
    assert seen == ["Bearer s3cret"]
    np.testing.assert_allclose(vectors, [[0.6, 0.8]], atol=1e-6)


def test_make_embedder_builds_the_client_from_settings() -> None:
    settings = EmbedderSettings(
        kind="openai", url="http://vllm:8000/v1/", model="Qwen/Qwen3-Embedding-4B", dim=2560
    )
    client = embed.make_embedder(settings)
    assert isinstance(client, OpenAIEmbeddingsClient)
    assert client.url == "http://vllm:8000/v1/embeddings"
    assert (client.model, client.dim, client.batch_size) == ("Qwen/Qwen3-Embedding-4B", 2560, 64)
    client.close()
