"""Measure what the primary index costs and finds, on the corpus being indexed.

Why: the type and nprobe thresholds of a design are guesses about someone else's
data. Queries are short English sentences and the data is code, so they sit in
another region of the space than the data vectors: on a real 35K-chunk repository a
default ``IVF188,Flat`` at nprobe 47 found 0.958 of the exact top-10 for docstring
questions although it met recall@20 0.95 on data-distributed queries. So the build

* times an exact scan of its own vectors on one core (:func:`flat_cost_ms`), and
  keeps the primary exact while that fits a latency budget;
* otherwise calibrates nprobe on text queries drawn from the corpus itself
  (:func:`extract_queries`: docstring, comment and prose sentences), embedded with
  the build's model, against exact search over the same vectors
  (:func:`calibrate_nprobe`). docs/architecture.md, *Vector indexes*.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Sequence

import faiss
import msgspec
import numpy as np

from codeintel.core import embed as embedding_mod

QUERY_SEED = 20261202
FLAT_TIMING_QUERIES = 16
"""Single-query scans timed; the fastest is kept. On this shared 2-core machine the
median of 16 scans of 35K x 384 varied from 2.2 to 6.2 ms while the minimum stayed at
2.2 ms: a scan has no fast path, so the minimum is its cost without other processes."""
FLAT_TIMING_ROWS = 131_072
"""Rows scanned per timed query at most; the cost is linear in n, so larger corpora
are timed on a prefix and scaled, which bounds the measurement at ~16 x 10 ms."""
SOURCE_CHUNKS_MAX = 20_000
"""Chunks read for sentences at most (a seeded sample): 300 sentences need far fewer, and a
merge of a 1M-chunk store should not read every chunk's text to find them."""
MIN_QUERIES = 20
"""Fewer text queries than this measure recall too coarsely to choose nprobe."""
RECALL_K = 10

_DOCSTRING = re.compile(r"(?:\"\"\"|''')(.*?)(?:\"\"\"|''')", re.S)
_BLOCK_COMMENT = re.compile(r"/\*+(.*?)\*/", re.S)
_LINE_COMMENT = re.compile(r"^\s*(?:#+|//+|--|;+)\s?(.*)$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"^[A-Za-z][A-Za-z'-]*[.,;:!?]?$")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MARKUP = re.compile(r"[`*_>#|]+")
_PROSE_SUFFIXES = (".md", ".markdown", ".rst", ".txt")


class QuerySource(msgspec.Struct, frozen=True):
    """A chunk as calibration sees it."""

    path: str
    text: str


def extract_queries(chunks: Iterable[QuerySource], limit: int, seed: int = QUERY_SEED) -> list[str]:
    """Up to ``limit`` English sentences from the corpus, deduplicated, sampled with ``seed``.

    The first sentence of each docstring and comment block, and every sentence of
    Markdown, reStructuredText and text files; kept when it has 4 to 40 words and
    most of them are plain words (not code that was commented out).
    """
    seen: dict[str, str] = {}
    for chunk in chunks:
        for candidate in _candidates(chunk):
            sentence = _clean(candidate)
            if sentence and _is_prose(sentence):
                seen.setdefault(sentence.lower(), sentence)
    found = [seen[key] for key in sorted(seen)]
    if len(found) <= limit:
        return found
    rows = np.random.default_rng(seed).choice(len(found), size=max(limit, 0), replace=False)
    return [found[i] for i in sorted(rows)]


def _candidates(chunk: QuerySource) -> Iterable[str]:
    if chunk.path.lower().endswith(_PROSE_SUFFIXES):
        in_fence = False
        paragraph: list[str] = []
        for line in chunk.text.split("\n"):
            if line.lstrip().startswith(("```", "~~~")):
                in_fence = not in_fence
                continue
            if in_fence or not line.strip() or line.startswith(("    ", "\t", "..")):
                yield from _sentences(" ".join(paragraph))
                paragraph = []
                continue
            paragraph.append(line.strip())
        yield from _sentences(" ".join(paragraph))
        return
    for match in _DOCSTRING.finditer(chunk.text):
        yield _first_sentence(match.group(1))
    for match in _BLOCK_COMMENT.finditer(chunk.text):
        body = " ".join(line.strip().lstrip("*") for line in match.group(1).split("\n"))
        yield _first_sentence(body)
    block: list[str] = []
    for line in chunk.text.split("\n"):
        m = _LINE_COMMENT.match(line)
        if m and not line.lstrip().startswith("#!"):
            block.append(m.group(1).strip())
            continue
        if block:
            yield _first_sentence(" ".join(block))
            block = []
    if block:
        yield _first_sentence(" ".join(block))


def _sentences(text: str) -> list[str]:
    return _SENTENCE_END.split(text) if text else []


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    return _SENTENCE_END.split(text, maxsplit=1)[0] if text else ""


def _clean(text: str) -> str:
    text = _MD_LINK.sub(r"\1", text)
    text = _MARKUP.sub(" ", text)
    return " ".join(text.split())[:300]


def _is_prose(sentence: str) -> bool:
    words = sentence.split()
    if not 4 <= len(words) <= 40:
        return False
    return sum(1 for w in words if _WORD.match(w)) >= 0.75 * len(words)


def flat_cost_ms(xb: np.ndarray, k: int = RECALL_K, *, scan: faiss.Index | None = None) -> float:
    """Milliseconds one core takes to scan ``xb`` exactly for one query (best of 16).

    Queries are rows of ``xb``: an exact scan costs the same whatever the query. The
    scan covers ``xb``'s first :data:`FLAT_TIMING_ROWS` rows and is scaled to all of
    them. ``scan``, when given, is an exact inner-product index holding those rows
    already (the primary being filled): it is timed instead of a float32 copy of them.
    """
    n = int(xb.shape[0])
    if n == 0:
        return 0.0
    rows = min(n, FLAT_TIMING_ROWS)
    if scan is not None and scan.ntotal != rows:
        raise ValueError(f"the timed index holds {scan.ntotal} rows, not the first {rows}")
    pick = np.random.default_rng(QUERY_SEED).choice(n, size=FLAT_TIMING_QUERIES, replace=True)
    xq = np.ascontiguousarray(xb[pick], dtype=np.float32)
    if scan is None:
        sub = np.ascontiguousarray(xb[:rows], dtype=np.float32)

        def search(q: np.ndarray) -> object:
            return faiss.knn(q, sub, min(k, rows), faiss.METRIC_INNER_PRODUCT)
    else:

        def search(q: np.ndarray) -> object:
            return scan.search(q, min(k, rows))

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        search(xq[:1])  # page in
        best = math.inf
        for i in range(len(xq)):
            t0 = time.perf_counter()
            search(xq[i : i + 1])
            best = min(best, time.perf_counter() - t0)
    finally:
        faiss.omp_set_num_threads(threads)
    return best * 1e3 * n / rows


class NprobeChoice(msgspec.Struct, frozen=True):
    nprobe: int
    recall: float
    """Mean recall@10 against exact search at ``nprobe``."""
    reached: bool
    curve: dict[int, float]
    """Every nprobe tried and its recall."""


def exact_top_ids(xq: np.ndarray, xb: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """(nq, k) chunk ids of the exact inner-product top-k."""
    _, rows = faiss.knn(xq, xb, k, faiss.METRIC_INNER_PRODUCT)
    return ids[rows]


def recall_at(
    index: faiss.Index,
    nprobe: int,
    xq: np.ndarray,
    truth: np.ndarray,
    xb: np.ndarray,
    ids: np.ndarray,
    rerank_factor: int = 1,
) -> float:
    """Mean recall@k of ``index`` at ``nprobe`` against ``truth`` (nq, k), re-ranking exactly
    ``k x rerank_factor`` candidates with ``xb`` when ``rerank_factor > 1`` (as the searcher does)."""
    k = truth.shape[1]
    faiss.extract_index_ivf(index).nprobe = int(nprobe)
    if rerank_factor <= 1:
        _, found = index.search(xq, k)
    else:
        _, cand = index.search(xq, k * rerank_factor)
        found = _rerank(xq, cand, xb, ids, k)
    hits = sum(
        len(set(f[f >= 0].tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)
    )
    return hits / truth.size


def _rerank(
    xq: np.ndarray, cand: np.ndarray, xb: np.ndarray, ids: np.ndarray, k: int
) -> np.ndarray:
    order = np.argsort(ids, kind="stable")
    out = np.full((len(xq), k), -1, dtype=np.int64)
    for i, row in enumerate(cand):
        row = row[row >= 0]
        pos = order[np.searchsorted(ids, row, sorter=order)]
        scores = xb[pos] @ xq[i]
        top = np.argsort(-scores, kind="stable")[:k]
        out[i, : len(top)] = row[top]
    return out


def calibrate_nprobe(
    index: faiss.Index,
    nlist: int,
    xq: np.ndarray,
    xb: np.ndarray,
    ids: np.ndarray,
    *,
    target: float,
    rerank_factor: int = 1,
    k: int = RECALL_K,
) -> NprobeChoice:
    """The fewest lists to probe for mean recall@k >= ``target`` on ``xq``.

    Doubles nprobe from 1 until the target is met (or every list is probed), then
    bisects down to the smallest nprobe that still meets it. When no nprobe meets
    it, the smallest one reaching the best recall seen, with ``reached`` False.
    """
    k = min(k, xb.shape[0])
    truth = exact_top_ids(xq, xb, ids, k)
    curve: dict[int, float] = {}

    def measure(p: int) -> float:
        if p not in curve:
            curve[p] = recall_at(index, p, xq, truth, xb, ids, rerank_factor)
        return curve[p]

    lo, p = 0, 1
    while True:
        p = min(p, nlist)
        if measure(p) >= target:
            hi = p
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if measure(mid) >= target:
                    hi = mid
                else:
                    lo = mid
            return NprobeChoice(hi, curve[hi], True, dict(sorted(curve.items())))
        if p == nlist:
            break
        lo, p = p, p * 2
    best = max(curve.values())
    chosen = min(q for q, r in curve.items() if r == best)
    return NprobeChoice(chosen, best, False, dict(sorted(curve.items())))


def source_rows(n: int) -> np.ndarray:
    """Which of ``n`` chunks to read sentences from: all, or a seeded sample of
    :data:`SOURCE_CHUNKS_MAX`, sorted."""
    if n <= SOURCE_CHUNKS_MAX:
        return np.arange(n)
    return np.sort(np.random.default_rng(QUERY_SEED).choice(n, SOURCE_CHUNKS_MAX, replace=False))


def text_queries(
    embedder: embedding_mod.Embedder, chunks: Sequence[QuerySource], limit: int
) -> Callable[[], np.ndarray]:
    """A deferred ``(q, d)`` float32 array: :func:`extract_queries` of (a sample of)
    ``chunks`` embedded with ``embedder`` (deferred: an exact primary needs no calibration)."""

    def embed() -> np.ndarray:
        texts = extract_queries([chunks[i] for i in source_rows(len(chunks))], limit)
        if not texts:
            return np.empty((0, max(embedder.dim, 0)), dtype=np.float32)
        return np.asarray(embedder.embed(texts), dtype=np.float32)

    return embed
