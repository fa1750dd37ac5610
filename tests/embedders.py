"""The session's real local model, passed through so a test can count, hold or fail its calls.

Not a fake: every text still reaches the real model. Closing a wrapper leaves the model
open, since it belongs to the session fixture (``local_embedder``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class PassThrough:
    """The real model; subclasses override :meth:`embed` to watch or hold its calls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @property
    def model(self) -> str:
        return str(self.inner.model)

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        xb: np.ndarray = self.inner.embed(texts)
        return xb

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)

    def close(self) -> None:
        """The inner model belongs to the session fixture."""

    async def aclose(self) -> None:
        """As :meth:`close`."""


class TokenCountingPassThrough(PassThrough):
    """A pass-through that also counts tokens as the model does, so long chunks get the
    same windows as with the bare model (``indexer/windows.py``) and hit the same cache."""

    @property
    def max_tokens(self) -> int:
        return int(self.inner.max_tokens)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        counts: list[int] = self.inner.token_counts(texts)
        return counts
