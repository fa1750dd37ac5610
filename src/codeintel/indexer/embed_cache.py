"""Embed through the store's cache: only texts never embedded with this model reach the model.

:func:`caching` wraps the run's embedder for one build or update (under the
store lock). Each ``embed`` call looks its texts up by sha256 in
``STORE/embcache.sqlite`` (``core/store/embcache.py``), sends only the misses
(each distinct text once) to the real embedder and stores their float16 rows.
Stored vectors are float16 anyway (``corpus.embed_drafts``), so a row from the
cache is bit for bit what the first build stored. Measured on a 35K-chunk
rebuild (docs/performance.md, "Rebuild with a warm embedding cache").
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import prometheus_client

from codeintel.core import embed as embedding_mod
from codeintel.core import settings as settings_mod
from codeintel.core.store import embcache

logger = logging.getLogger(__name__)

CACHE_LOOKUPS = prometheus_client.Counter(
    "codeintel_embed_cache_lookups_total",
    "Texts the indexer looked up in the store's embedding cache, by result (hit or miss).",
    ["result"],
)


@dataclasses.dataclass
class CacheStats:
    hits: int = 0
    """Texts answered from the cache."""
    embedded: int = 0
    """Texts sent to the embedder (distinct misses)."""


class CachingEmbedder:
    """An :class:`~codeintel.core.embed.Embedder` that asks the cache before the model.

    ``expected_dim`` is the configured dimension (0: unknown). Without it, the
    cache's one dimension for the model is assumed until the model answers; when
    ``trust_cached_dim`` is false (a remote server may be redeployed with another
    dimension under the same name) one text is embedded first to check it.
    """

    def __init__(
        self,
        inner: embedding_mod.Embedder,
        cache: embcache.EmbeddingCache,
        *,
        expected_dim: int = 0,
        trust_cached_dim: bool = True,
    ) -> None:
        self.inner = inner
        self.cache = cache
        self.stats = CacheStats()
        self._key = inner.model + (f"@{v}" if (v := getattr(inner, "variant", "")) else "")
        self._dim = expected_dim  # known for sure (configured, or seen from the model)
        self._trust = trust_cached_dim

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return self.inner.embed(texts)
        keys = [embcache.text_key(t) for t in texts]
        text_of = dict(zip(keys, texts, strict=True))
        rows: dict[bytes, np.ndarray] = {}
        fresh_keys: list[bytes] = []
        fresh: list[np.ndarray] = []
        dim = self._lookup_dim()
        if not dim and not self._trust and self.cache.dims(self._key):
            dim = self._probe(keys[0], text_of, fresh_keys, fresh)  # learn it from one text
        if dim:
            rows.update(self.cache.get(self._key, dim, keys))
        todo = [k for k in dict.fromkeys(keys) if k not in rows and k not in fresh_keys]
        if todo:
            xb = self.inner.embed([text_of[k] for k in todo])
            if self._dim == 0 or xb.shape[1] != dim:
                # The cache's dimension was assumed: rows of another dimension are not these.
                self._dim = int(xb.shape[1])
                if dim and self._dim != dim:
                    rows = self.cache.get(self._key, self._dim, keys)
            fresh_keys += todo
            fresh.append(xb.astype(np.float16))
            todo = [k for k in dict.fromkeys(keys) if k not in rows and k not in fresh_keys]
            if todo:  # cached under the assumed dimension only
                fresh_keys += todo
                fresh.append(self.inner.embed([text_of[k] for k in todo]).astype(np.float16))
        if fresh_keys:
            xb16 = np.concatenate(fresh)
            self.cache.put(self._key, int(xb16.shape[1]), fresh_keys, xb16)
            rows.update(zip(fresh_keys, xb16, strict=True))
        embedded = set(fresh_keys)
        hits = sum(1 for k in keys if k not in embedded)
        self.stats.hits += hits
        self.stats.embedded += len(fresh_keys)
        CACHE_LOOKUPS.labels(result="hit").inc(hits)
        CACHE_LOOKUPS.labels(result="miss").inc(len(keys) - hits)
        return np.stack([rows[k] for k in keys]).astype(np.float32)

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)

    def close(self) -> None:
        """The wrapped embedder belongs to the caller; only the cache is closed (by :func:`caching`)."""

    async def aclose(self) -> None:
        """See :meth:`close`."""

    def _lookup_dim(self) -> int:
        """The dimension to look up under: known, else the cache's only one for this model."""
        if self._dim:
            return self._dim
        dims = self.cache.dims(self._key)
        if len(dims) > 1:
            self._dim = (
                self.inner.dim
            )  # several: ask (a local model loads; a remote one may not know)
            return self._dim
        if len(dims) == 1 and self._trust:
            return dims[0]
        return 0

    def _probe(
        self, key: bytes, text_of: dict[bytes, str], keys: list[bytes], out: list[np.ndarray]
    ) -> int:
        xb = self.inner.embed([text_of[key]])
        self._dim = int(xb.shape[1])
        keys.append(key)
        out.append(xb.astype(np.float16))
        return self._dim


@contextlib.contextmanager
def caching(
    store_root: Path, settings: settings_mod.Settings, embedder: embedding_mod.Embedder
) -> Iterator[CachingEmbedder | None]:
    """The run's embedder behind the store's cache (``None`` when the cache is off), closed after.

    Hold the store lock around it. A hit-rate line is logged at the end.
    """
    limit = settings.store.embedding_cache_bytes
    if limit <= 0:
        yield None
        return
    cache = embcache.EmbeddingCache(Path(store_root) / embcache.FILE, limit)
    cached = CachingEmbedder(
        embedder,
        cache,
        expected_dim=settings.embedder.dim,
        trust_cached_dim=settings.embedder.kind == "local",
    )
    try:
        yield cached
    finally:
        size = cache.live_bytes()
        cache.close()
        s = cached.stats
        if s.hits or s.embedded:
            logger.info(
                "embedding cache: %d of %d texts reused, %d embedded (%.1f%% hits); "
                "%.0f of %.0f MiB used",
                s.hits,
                s.hits + s.embedded,
                s.embedded,
                100.0 * s.hits / max(1, s.hits + s.embedded),
                size / 2**20,
                limit / 2**20,
            )
