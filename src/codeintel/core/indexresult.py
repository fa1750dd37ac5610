"""The indexer's result, the one contract between an index Job and the operator.

``codeintel index build|update|merge --result-file PATH`` writes it as one JSON
object; the Job points ``terminationMessagePath`` at that path, so the operator
reads it back from the pod status (docs/architecture.md, *Index job result*).
"""

from __future__ import annotations

import msgspec

from codeintel.core import errors
from codeintel.core.store.manifest import Counts


class IndexResult(msgspec.Struct, kw_only=True):
    """What one indexer run did; ``changed`` is false when an update found no new commit."""

    action: str
    changed: bool = True
    generation: str
    commit: str
    index_type: str = ""
    vectors: Counts = msgspec.field(default_factory=lambda: Counts(0, 0, 0))
    files: int = 0
    chunks: int = 0
    skipped: int = 0
    merged: bool = False
    embedded: int = 0
    """Texts sent to the embedding model this run (the rest came from the store's cache)."""
    embed_cache_hits: int = 0
    """Texts (chunks, and an IVF primary's calibration queries) whose vectors came from
    the store's embedding cache."""

    @property
    def total(self) -> int:
        """Live vectors: every stored one not deleted or replaced since."""
        v = self.vectors
        return max(0, v.primary + v.secondary - v.tombstones)

    def status_vectors(self) -> dict[str, int]:
        """The counts as a CodeIndex's ``status.vectors``."""
        v = self.vectors
        return {
            "primary": v.primary,
            "secondary": v.secondary,
            "tombstones": v.tombstones,
            "total": self.total,
        }


def encode(result: IndexResult) -> bytes:
    """The JSON a Job writes as its termination message."""
    return msgspec.json.encode(result)


def decode(message: str | bytes) -> IndexResult:
    """Parse a Job's result; IndexFormatError naming what was wrong."""
    try:
        return msgspec.json.decode(message, type=IndexResult, strict=False)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        shown = (
            message[:200] if isinstance(message, str) else message[:200].decode("utf-8", "replace")
        )
        raise errors.IndexFormatError(f"unreadable indexer result {shown!r}: {e}") from e
