"""Long chunks: embed them as several windows (best window wins) or by their head alone?

The local model reads 256 tokens; a longer chunk is embedded from its first
256 tokens only. This measures, on the retrieval benchmark's corpora and its
docstring (``nl``) queries, what reading the rest as extra windows buys:

* ``head``: one vector per chunk, as the product stores it (truncated text);
* ``windows<=m``: the head vector plus up to ``m`` vectors for further windows,
  cut by the product's ``indexer.windows.split`` (the chunk's header line, then
  whole lines packed up to the model's limit, starting at the first line the
  head did not read); a chunk scores its best window.

Both rankings are exact inner-product scans over the same stored head vectors
(the ANN is left out so only the vectors differ), cut to the candidates the
product fetches and ranked by the product's ``hits.rank``. Window vectors are
cached with the benchmark's embedding cache under variant ``windows``.

    nice python -m benchmarks.embed_windows_bench [--corpora kopf,web] [--max-queries 300]
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import retrieval_bench as rb
from benchmarks import retrieval_cache
from benchmarks.common import write_results
from codeintel.core import hits as hits_mod
from codeintel.core import store as store_mod
from codeintel.indexer import windows as windows_mod

logger = logging.getLogger("embed_windows_bench")

MAX_WINDOWS = 8
"""Windows per chunk beyond the head; a 200-line chunk rarely needs more."""

WINDOW_CAPS = (1, 2, 4, MAX_WINDOWS)
"""Caps on extra windows per chunk measured (the first windows of the same run)."""


def header_of(chunk: store_mod.Chunk) -> str:
    return chunk.path + (f" :: {chunk.symbol}" if chunk.symbol else "")


def measure(
    corpus_name: str, embedder: rb.retrieval_cache.CachingEmbedder, max_queries: int, cache: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    corpus = rb.prepare(corpus_name, cache)
    store_dir = cache / "stores" / f"{corpus_name}-e1-windows"
    settings = rb.build_store(corpus, store_dir, embedder)
    generation = store_mod.Store(settings.store.path).current()
    ids, xb = rb._stored(generation)
    db = generation.chunks()
    chunks = db.get([int(i) for i in ids])
    st = embedder.inner._load()  # type: ignore[attr-defined]
    limit = st.max_seq_length

    def counts(texts: Sequence[str]) -> list[int]:
        ids = st.tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        return [len(x) for x in ids]

    win_embedder = retrieval_cache.cached_embedder(cache, variant="windows")
    owner: list[int] = []
    number: list[int] = []
    texts: list[str] = []
    long_chunks = 0
    for cid in ids.tolist():
        c = chunks[cid]
        extra = windows_mod.split(header_of(c), c.text, counts, limit, MAX_WINDOWS)
        long_chunks += bool(extra)
        owner += [cid] * len(extra)
        number += range(1, len(extra) + 1)
        texts += extra
    t0 = time.perf_counter()
    xw = win_embedder.embed(texts) if texts else np.empty((0, xb.shape[1]), np.float32)
    embed_s = time.perf_counter() - t0
    # Stored vectors are float16-rounded; round window vectors the same way.
    xw = xw.astype(np.float16).astype(np.float32)
    all_ids = np.concatenate([ids, np.asarray(owner, dtype=ids.dtype)])
    all_no = np.concatenate([np.zeros(len(ids), np.int64), np.asarray(number, np.int64)])
    all_x = np.vstack([xb, xw])
    variants = [("head", ids, xb)]
    for m in WINDOW_CAPS:
        keep = all_no <= m
        variants.append((f"windows<={m}", all_ids[keep], all_x[keep]))

    queries = corpus.queries["nl"][:max_queries]
    xq = embedder.embed([q.text for q in queries])
    fetch = hits_mod.plan(rb.K, "semantic", False)[0]
    rows: list[dict[str, Any]] = []
    for variant, vid, vx in variants:
        scores = xq @ vx.T
        ranks = []
        for q, query in enumerate(queries):
            best: dict[int, float] = {}
            top = np.argsort(-scores[q])[: fetch * (1 + MAX_WINDOWS)]
            for j in top.tolist():
                cid = int(vid[j])
                if cid not in best:
                    best[cid] = float(scores[q, j])
                if len(best) >= fetch:
                    break
            hits = hits_mod.rank(db, query.text, "semantic", rb.K, list(best.items()))
            ranks.append(rb.first_hit(hits, query.gold))
        m = rb.score(ranks)
        rows.append(
            {
                "corpus": corpus_name,
                "variant": variant,
                "queries": m.queries,
                "recall@10": m.recall,
                "mrr@10": m.mrr,
                "vectors": len(vid),
            }
        )
        logger.info("%s", rows[-1])
    db.close()
    head_ranks = {r["variant"]: r for r in rows}
    head_ranks["windows"] = head_ranks[f"windows<={MAX_WINDOWS}"]
    info = {
        "corpus": corpus_name,
        "chunks": len(ids),
        "long_chunks": long_chunks,
        "long_share": round(long_chunks / max(len(ids), 1), 3),
        "extra_windows": len(texts),
        "vectors_ratio": round((len(ids) + len(texts)) / max(len(ids), 1), 2),
        "window_embed_s": round(embed_s, 1),
        "recall_gain": round(
            head_ranks["windows"]["recall@10"] - head_ranks["head"]["recall@10"], 4
        ),
        "mrr_gain": round(head_ranks["windows"]["mrr@10"] - head_ranks["head"]["mrr@10"], 4),
    }
    logger.info("%s", info)
    return rows, info


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--corpora", default="kopf,web")
    parser.add_argument("--max-queries", type=int, default=300)
    parser.add_argument("--cache", type=Path, default=rb.DEFAULT_CACHE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    embedder = retrieval_cache.cached_embedder(args.cache)
    rows: list[dict[str, Any]] = []
    corpora: list[dict[str, Any]] = []
    for name in args.corpora.split(","):
        r, info = measure(name, embedder, args.max_queries, args.cache)
        rows += r
        corpora.append(info)
        write_results(
            "embed-windows",
            rows,
            {
                "what": "nl (docstring) queries, exact scan; head = one truncated vector "
                "per chunk, windows = head + line-packed windows, best window wins",
                "model_max_tokens": 256,
                "max_windows": MAX_WINDOWS,
                "corpora": corpora,
            },
        )


if __name__ == "__main__":
    main()
