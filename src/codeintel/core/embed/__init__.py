"""The one interface every component embeds text through, whatever runs the model.

The indexer embeds chunks and the searcher embeds queries; both must get the
same vectors from the same model whether it runs in-process on a laptop
(:class:`~codeintel.core.embed.local.LocalEmbedder`) or behind an
OpenAI-compatible ``/v1/embeddings`` server in a cluster
(:class:`~codeintel.core.embed.openai.OpenAIEmbeddingsClient`). ``base`` fixes
the contract; :func:`make_embedder` builds the implementation the settings
name, importing it only then, so the operator and the CLI's light commands
never import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from codeintel.core import errors
from codeintel.core.embed.base import (
    EMBED_SECONDS,
    Embedder,
    check_dimension,
    check_model,
    empty,
    normalize_rows,
)

if TYPE_CHECKING:
    from codeintel.core.settings import EmbedderSettings

__all__ = [
    "EMBED_SECONDS",
    "Embedder",
    "check_dimension",
    "check_model",
    "empty",
    "make_embedder",
    "normalize_rows",
]


def make_embedder(settings: EmbedderSettings) -> Embedder:
    """The embedder ``settings.kind`` names, configured from ``settings``."""
    if settings.kind == "local":
        from codeintel.core.embed.local import LocalEmbedder

        return LocalEmbedder(
            model=settings.model,
            batch_size=settings.batch_size,
            backend=settings.backend,
            onnx_cache=settings.onnx_cache,
        )
    if settings.kind == "openai":
        from codeintel.core.embed.openai import OpenAIEmbeddingsClient

        return OpenAIEmbeddingsClient.from_settings(settings)
    raise errors.ConfigError(f"unknown embedder kind {settings.kind!r}; use 'local' or 'openai'")
