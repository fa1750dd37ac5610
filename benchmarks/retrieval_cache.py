"""An Embedder that remembers every vector on disk, so benchmark re-runs never re-embed.

Embedding a 38K-chunk corpus with the local model takes 15-25 minutes on this
machine; rebuilding its store from cached vectors takes about a minute. The
benchmark measures ranking and index changes, which leave chunk texts (and so
their vectors) alone: vectors are keyed by model, a variant tag (anything that
changes how the model turns a text into a vector) and the SHA-256 of the text.
One SQLite file per model and variant, safe to share between processes.

A store someone else built from the same corpus with the same model can fill
the cache without embedding (``python -m benchmarks.retrieval_cache --seed-from
STORE``): its stored vectors are keyed by the text the indexer embedded, once a
sample of them is checked against vectors already cached.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from benchmarks.retrieval_corpus import DEFAULT_CACHE
from codeintel.core import embed as embedding_mod
from codeintel.core import settings as settings_mod
from codeintel.core import store as store_mod
from codeintel.core.store import chunks as chunks_mod
from codeintel.indexer import chunking
from codeintel.indexer import corpus as corpus_mod

_LOOKUP_BATCH = 500


def text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class CachingEmbedder:
    """Wraps an embedder (made on first miss by ``make``); hits come from ``directory``."""

    def __init__(
        self,
        model: str,
        make: Callable[[], embedding_mod.Embedder],
        directory: Path,
        variant: str = "",
    ) -> None:
        self._model = model
        self._make = make
        self._inner: embedding_mod.Embedder | None = None
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model + (f"-{variant}" if variant else ""))
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{safe}.sqlite"
        self._db = sqlite3.connect(self.path, timeout=120, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS v (k BLOB PRIMARY KEY, x BLOB NOT NULL)")
        self._db.commit()
        self._dim = 0
        self.hits = 0
        self.misses = 0

    @property
    def model(self) -> str:
        return self._model

    @property
    def dim(self) -> int:
        if not self._dim:
            row = self._db.execute("SELECT x FROM v LIMIT 1").fetchone()
            self._dim = len(row[0]) // 4 if row else self.inner.dim
        return self._dim

    @property
    def inner(self) -> embedding_mod.Embedder:
        if self._inner is None:
            self._inner = self._make()
        return self._inner

    # Token counting goes to the model's tokenizer (no weights loaded), so stores built
    # through this cache get the long-chunk windows the product builds (indexer/windows.py).
    @property
    def max_tokens(self) -> int:
        return int(getattr(self.inner, "max_tokens", 0))

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        counts = getattr(self.inner, "token_counts", None)
        return list(counts(texts)) if counts else [0] * len(texts)

    def lookup(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        for start in range(0, len(keys), _LOOKUP_BATCH):
            part = list(keys[start : start + _LOOKUP_BATCH])
            marks = ",".join("?" * len(part))
            for k, x in self._db.execute(f"SELECT k, x FROM v WHERE k IN ({marks})", part):
                found[bytes(k)] = np.frombuffer(x, dtype=np.float32)
        return found

    def insert(self, rows: Sequence[tuple[bytes, bytes]]) -> None:
        """Store (key, float32 bytes) rows."""
        self._db.executemany("INSERT OR REPLACE INTO v (k, x) VALUES (?, ?)", rows)
        self._db.commit()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        keys = [text_key(t) for t in texts]
        found = self.lookup(keys)
        missing = list({k: t for k, t in zip(keys, texts, strict=True) if k not in found}.items())
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if missing:
            xb = np.asarray(self.inner.embed([t for _, t in missing]), dtype=np.float32)
            self.insert([(k, xb[i].tobytes()) for i, (k, _) in enumerate(missing)])
            for i, (k, _) in enumerate(missing):
                found[k] = xb[i]
        if not texts:
            return embedding_mod.empty(self.dim)
        return np.stack([found[k] for k in keys]).astype(np.float32)

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.to_thread(self.embed, texts)

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
        self._db.close()

    async def aclose(self) -> None:
        self.close()


SEED_CHECK = 50
"""Vectors already cached that a store must reproduce before it may seed the cache."""


def cached_embedder(
    cache: Path = DEFAULT_CACHE, model: str = settings_mod.DEFAULT_MODEL, variant: str = ""
) -> CachingEmbedder:
    """The local model behind the on-disk vector cache under ``cache/embeddings``.

    Pass a ``variant`` when the embedder's way of turning a text into a vector
    changes (another max length, windows), so its vectors are kept apart."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return CachingEmbedder(
        model,
        lambda: embedding_mod.make_embedder(settings_mod.EmbedderSettings(model=model)),
        cache / "embeddings",
        variant,
    )


def seed_from_store(cache: CachingEmbedder, store_path: Path, check: int = SEED_CHECK) -> int:
    """Cache the stored vectors of ``store_path``'s live generation, keyed by embedded text.

    Refuses (``ValueError``) a store of another model, or one whose vectors for at
    least ``check`` texts already cached differ from the cache beyond float16
    rounding (another embedding text, window scheme or model build). Returns the
    number of vectors added. The store's vectors are float16, which is what the
    indexer keeps of any vector, so a store built from them is the same."""
    generation = store_mod.Store(store_path).current()
    model = generation.manifest.embedding.model
    if model != cache.model:
        raise ValueError(f"{store_path} was built with {model!r}, the cache holds {cache.model!r}")
    db = generation.chunks()
    try:
        chunks = list(db.get(db.all_ids().tolist()).values())
    finally:
        db.close()
    ids = np.array([c.id for c in chunks], dtype=np.int64)
    xb = generation.vectors().get(ids)
    keys = [text_key(corpus_mod.embedding_text(_draft(c))) for c in chunks]
    known = cache.lookup(keys)
    rows = [i for i, k in enumerate(keys) if k in known]
    if len(rows) < check:
        raise ValueError(
            f"only {len(rows)} of the store's texts are cached; need {check} to check it matches"
        )
    mine = np.stack([known[keys[i]] for i in rows]).astype(np.float16).astype(np.float32)
    diff = float(np.abs(mine - xb[rows]).max())
    if diff > 2e-3:
        raise ValueError(f"{store_path}'s vectors differ from the cache's by up to {diff:.4f}")
    new = [(k, xb[i].astype(np.float32).tobytes()) for i, k in enumerate(keys) if k not in known]
    cache.insert(new)
    return len(new)


def _draft(chunk: chunks_mod.Chunk) -> chunking.ChunkDraft:
    return chunking.ChunkDraft(
        path=chunk.path,
        start_line=chunk.start_line,
        end_line=chunk.end_line,
        language=chunk.language,
        symbol=chunk.symbol,
        text=chunk.text,
        content_hash=chunk.content_hash,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="fill the benchmark's vector cache from a store")
    parser.add_argument("--seed-from", type=Path, required=True, help="a built codeintel store")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--variant", default="")
    args = parser.parse_args(argv)
    cache = cached_embedder(args.cache, variant=args.variant)
    try:
        print(f"added {seed_from_store(cache, args.seed_from)} vectors to {cache.path}")
    finally:
        cache.close()


if __name__ == "__main__":
    main()
