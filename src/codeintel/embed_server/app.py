"""``codeintel embed-server``: the local model behind an OpenAI/vLLM-compatible HTTP API.

A small cluster without GPUs still needs one place that embeds for every
indexer Job and searcher pod, so that all of them use the same model and none
has to carry torch's memory. This module serves any :class:`Embedder` with the
same wire format vLLM uses (``POST /v1/embeddings``, ``GET /v1/models``,
``GET /health``), so the indexer's :class:`OpenAIEmbeddingsClient` talks to it
exactly as it talks to vLLM, and swapping in vLLM later changes only a URL.

Embedding runs off the event loop (``Embedder.aembed``); bad requests get a 400
in OpenAI's error shape naming the field, never FastAPI's 422.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import msgspec
import prometheus_client
from fastapi import FastAPI, Request, Response

from codeintel.core import embed, errors

logger = logging.getLogger(__name__)

MAX_INPUTS = 2048
"""Texts per request, as OpenAI allows; clients batch far below it (64 by default)."""


@runtime_checkable
class TokenCounter(Protocol):
    """An embedder that can count the tokens its model reads (the local one can)."""

    def count_tokens(self, texts: Sequence[str]) -> int: ...


class _EmbeddingsRequest(msgspec.Struct):
    input: Any = None
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


class _EmbeddingData(msgspec.Struct):
    index: int
    embedding: list[float] | str
    object: str = "embedding"


class _Usage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class _EmbeddingsResponse(msgspec.Struct):
    id: str
    created: int
    model: str
    data: list[_EmbeddingData]
    usage: _Usage
    object: str = "list"


class _BadRequest(Exception):  # noqa: N818 - control flow to a 4xx answer, not an error of ours
    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


_ENCODER = msgspec.json.Encoder()
_REQUEST_DECODER = msgspec.json.Decoder(_EmbeddingsRequest)


def _error(status: int, message: str, kind: str, param: str | None = None) -> Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return Response(_ENCODER.encode(body), status_code=status, media_type="application/json")


def _texts(raw: Any) -> list[str]:
    """The request's ``input`` as a list of strings, or a :class:`_BadRequest` naming it."""
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list):
        raise _BadRequest("'input' must be a string or a list of strings", "input")
    if not raw:
        raise _BadRequest("'input' must not be empty", "input")
    if len(raw) > MAX_INPUTS:
        raise _BadRequest(f"'input' holds {len(raw)} texts; at most {MAX_INPUTS}", "input")
    if all(isinstance(item, str) for item in raw):
        return raw
    if all(isinstance(item, int | list) for item in raw):
        raise _BadRequest("token-id inputs are not supported by this server; send text", "input")
    raise _BadRequest("'input' must be a string or a list of strings", "input")


def _encode_row(row: Any, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        # OpenAI's base64 format: the little-endian float32 bytes of the vector.
        return base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
    values: list[float] = row.tolist()
    return values


def create_app(embedder: embed.Embedder, model_name: str) -> FastAPI:
    """The embeddings API over ``embedder``, answering to the model name ``model_name``.

    The caller owns ``embedder`` and closes it after the app stops.
    """
    app = FastAPI(title="codeintel embed-server", docs_url=None, redoc_url=None)
    started = int(time.time())

    @app.exception_handler(errors.EmbeddingError)
    async def embedding_failed(request: Request, exc: errors.EmbeddingError) -> Response:
        logger.exception("embedding failed", exc_info=exc)
        return _error(500, f"embedding failed: {exc}", "InternalServerError")

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(
            prometheus_client.generate_latest(),
            media_type=prometheus_client.CONTENT_TYPE_LATEST,
        )

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {
            "id": model_name,
            "object": "model",
            "created": started,
            "owned_by": "codeintel",
            "root": model_name,
            "parent": None,
            "permission": [],
        }
        return {"object": "list", "data": [card]}

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        try:
            body = _REQUEST_DECODER.decode(await request.body())
        except msgspec.ValidationError as e:
            return _error(400, f"invalid request: {e}", "BadRequestError", _field_of(e))
        except msgspec.DecodeError as e:
            return _error(400, f"request body is not valid JSON: {e}", "BadRequestError")
        try:
            texts = _texts(body.input)
            if body.model is not None and body.model != model_name:
                raise _BadRequest(
                    f"The model `{body.model}` does not exist; this server serves `{model_name}`.",
                    "model",
                    status=404,
                )
            vectors = await embedder.aembed(texts)
            if body.dimensions is not None and body.dimensions != vectors.shape[1]:
                raise _BadRequest(
                    f"'dimensions' must be {vectors.shape[1]} for `{model_name}`", "dimensions"
                )
        except _BadRequest as e:
            kind = "NotFoundError" if e.status == 404 else "BadRequestError"
            return _error(e.status, e.message, kind, e.param)
        tokens = await _count_tokens(embedder, texts)
        answer = _EmbeddingsResponse(
            id=f"embd-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=model_name,
            data=[
                _EmbeddingData(index=i, embedding=_encode_row(row, body.encoding_format))
                for i, row in enumerate(vectors)
            ],
            usage=_Usage(prompt_tokens=tokens, total_tokens=tokens),
        )
        return Response(_ENCODER.encode(answer), media_type="application/json")

    return app


async def _count_tokens(embedder: embed.Embedder, texts: list[str]) -> int:
    """Model tokens when the embedder can count them, else a whitespace-word estimate."""
    if isinstance(embedder, TokenCounter):
        return await asyncio.to_thread(embedder.count_tokens, texts)
    return sum(len(text.split()) for text in texts)


def _field_of(e: msgspec.ValidationError) -> str | None:
    """``model`` from msgspec's "... - at `$.model`" message."""
    _, sep, where = str(e).rpartition("at `$.")
    return where.split("`")[0].split(".")[0].split("[")[0] if sep else None


def run(host: str, port: int, model: str) -> None:
    """Load ``model`` (a packaged model name or a directory) and serve it until interrupted."""
    import uvicorn

    from codeintel.core.embed.local import LocalEmbedder

    embedder = LocalEmbedder(model=model)
    try:
        # Load before listening: a bad model fails here, and the first request is not slow.
        embedder.embed(["warm-up"])
        logger.info("serving %s (%d-d) on http://%s:%d/v1", model, embedder.dim, host, port)
        uvicorn.run(create_app(embedder, model), host=host, port=port, log_level="info")
    finally:
        embedder.close()
