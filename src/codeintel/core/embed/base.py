"""What every embedder shares: the :class:`Embedder` contract, its metric and row helpers.

Both implementations (``local.py``, ``openai.py``) import this module and
nothing else of the package, so the factory in ``__init__`` can import them
lazily without a cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import prometheus_client

from codeintel.core import errors

EMBED_SECONDS = prometheus_client.Histogram(
    "codeintel_embed_seconds",
    "Wall time of one embed call (all batches of it), local model or remote server.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row per text, order preserved."""

    @property
    def model(self) -> str:
        """The model name recorded in the manifest (and sent to a server)."""
        ...

    @property
    def dim(self) -> int:
        """Vector dimension; 0 while unknown (a remote model before its first answer)."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``float32`` array of shape ``(len(texts), dim)``; empty input gives ``(0, dim)``."""
        ...

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`embed` without blocking the event loop."""
        ...

    def close(self) -> None:
        """Release connections or model memory; the embedder is unusable afterwards."""
        ...

    async def aclose(self) -> None:
        """:meth:`close` from async code."""
        ...


def check_dimension(embedder_dim: int, store_dim: int, model: str) -> None:
    """Refuse an embedder whose vectors cannot be searched against a store's index."""
    if embedder_dim != store_dim:
        raise errors.DimensionMismatchError(
            f"embedding model {model!r} produces {embedder_dim}-d vectors but the index "
            f"holds {store_dim}-d vectors; query with the model that built the index "
            "or rebuild the index with this one"
        )


def check_model(query_model: str, index_model: str, generation: str) -> None:
    """Refuse dense search when the query model is not the one that built ``generation``.

    Two models of one dimension compare without error and rank at random, so the
    model's name must match, not only the dimension. Lexical search does not embed."""
    if query_model != index_model:
        raise errors.ModelMismatchError(
            f"generation {generation} was embedded with model {index_model!r}, but this "
            f"searcher embeds queries with {query_model!r}; semantic and hybrid search "
            "are refused (mode=lexical still works): use the index's model "
            "(CODEINTEL_EMBEDDER_MODEL) or rebuild the index with this one"
        )


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm as float32; all-zero rows stay zero."""
    out = np.asarray(vectors, dtype=np.float32)
    if out.size == 0:
        return out
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0.0] = 1.0
    result: np.ndarray = (out / norms).astype(np.float32, copy=False)
    return result


def empty(dim: int) -> np.ndarray:
    """The ``(0, dim)`` float32 result of embedding no texts."""
    return np.zeros((0, dim), dtype=np.float32)
