"""Long chunks read whole: extra vectors for the text past the model's token limit.

The local model reads 256 tokens and truncates the rest; 27% of real chunks
are longer. Each such chunk also gets up to ``index.chunk_windows`` extra
vectors, one per window: the chunk's header line, then whole lines packed up
to the model's limit, starting at the first line the head did not read. A
search scores a chunk by its best vector. Measured on the retrieval
benchmark's docstring queries (docs/performance.md, "Long chunks"): recall@10
0.724 -> 0.798 on kopf for 1.32x the vectors. Window ids: ``core/windows.py``.
Off by default since issue 21 (``index.chunk_windows`` 0): on corpora held out from that
tuning, best-window scoring did not beat head-only vectors on docstring questions
(docs/performance.md, "Retrieval quality, tuned vs untuned").

Only embedders that say how they count tokens (the local model) get windows;
a remote server's limit is its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from codeintel.core import embed as embedding_mod
from codeintel.core import errors
from codeintel.core import windows as windows_mod
from codeintel.indexer import chunking, corpus
from codeintel.indexer import progress as progress_mod

logger = logging.getLogger(__name__)

_SPECIAL_TOKENS = 2
"""[CLS] and [SEP], inside the model's limit."""


@runtime_checkable
class TokenCounter(Protocol):
    """An embedder that reads at most ``max_tokens`` tokens and can count them."""

    @property
    def max_tokens(self) -> int: ...

    def token_counts(self, texts: Sequence[str]) -> list[int]: ...


def split(
    header: str,
    text: str,
    counts: Callable[[Sequence[str]], list[int]],
    limit: int,
    max_windows: int,
) -> list[str]:
    """Texts of the windows after the head (none when the head reads all of ``text``).

    The head (``header``, newline, ``text``, truncated at ``limit`` tokens) reads
    whole lines while they fit; window 1 starts at the first line it did not
    read whole, and each window is ``header`` plus as many whole lines as fit
    (a single line longer than that is a window of its own, truncated by the
    model). Line token counts are summed, which is what a WordPiece tokenizer
    gives for newline-joined lines.
    """
    budget = limit - _SPECIAL_TOKENS
    lines = text.split("\n")
    line_tokens = counts(lines)
    head_tokens = counts([header])[0]
    used, i = head_tokens, 0
    while i < len(lines) and used + line_tokens[i] <= budget:
        used += line_tokens[i]
        i += 1
    room = max(1, budget - head_tokens)
    out: list[str] = []
    while i < len(lines) and len(out) < max_windows:
        start, used = i, 0
        while i < len(lines) and (i == start or used + line_tokens[i] <= room):
            used += line_tokens[i]
            i += 1
        body = "\n".join(lines[start:i]).strip()
        if body:
            out.append(f"{header}\n{body}")
    return out


def window_texts(
    counter: TokenCounter, drafts: Sequence[chunking.ChunkDraft], max_windows: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(draft index, window number, text) of every extra window of ``drafts``."""
    limit = counter.max_tokens
    if max_windows <= 0 or limit <= _SPECIAL_TOKENS or not drafts:
        return np.empty(0, np.int64), np.empty(0, np.int64), []
    max_windows = min(max_windows, windows_mod.MAX_WINDOWS)
    # One batched count finds the long chunks; only those are cut line by line.
    totals = counter.token_counts([corpus.embedding_text(d) for d in drafts])
    owner: list[int] = []
    number: list[int] = []
    texts: list[str] = []
    for i, (draft, total) in enumerate(zip(drafts, totals, strict=True)):
        if total + _SPECIAL_TOKENS <= limit:
            continue
        extra = split(
            corpus.embedding_header(draft), draft.text, counter.token_counts, limit, max_windows
        )
        owner += [i] * len(extra)
        number += range(1, len(extra) + 1)
        texts += extra
    return np.asarray(owner, np.int64), np.asarray(number, np.int64), texts


def add_windows(
    counter: embedding_mod.Embedder,
    embedder: embedding_mod.Embedder,
    drafts: Sequence[chunking.ChunkDraft],
    ids: np.ndarray,
    xb: np.ndarray,
    max_windows: int,
    reporter: progress_mod.Reporter,
) -> tuple[np.ndarray, np.ndarray]:
    """Vector ids and rows of ``drafts`` (chunk ids ``ids``, head rows ``xb``) plus their windows.

    ``counter`` cuts the windows (the configured embedder; one that cannot count
    tokens adds none), ``embedder`` embeds them (the same, or a cache in front of
    it). Window rows are float16-rounded like the heads (``corpus.embed_drafts``).
    """
    if max_windows < 0:
        raise errors.ConfigError(f"index chunk_windows must be >= 0, got {max_windows}")
    if max_windows == 0 or not isinstance(counter, TokenCounter) or not len(ids):
        return ids, xb
    owner, number, texts = window_texts(counter, drafts, max_windows)
    if not texts:
        return ids, xb
    order = np.argsort([-len(t) for t in texts], kind="stable")
    xw = np.empty((len(texts), xb.shape[1]), dtype=xb.dtype)
    with reporter.stage("embed windows", total=len(texts)) as stage:
        for start in range(0, len(texts), corpus.EMBED_GROUP):
            rows = order[start : start + corpus.EMBED_GROUP]
            xw[rows] = embedder.embed([texts[i] for i in rows]).astype(np.float16)
            stage.advance(len(rows))
    embedding_mod.check_dimension(xw.shape[1], xb.shape[1], embedder.model)
    logger.info(
        "%d long chunks get %d extra windows (%.2fx the vectors)",
        len(np.unique(owner)),
        len(texts),
        (len(ids) + len(texts)) / len(ids),
    )
    vids = np.concatenate([ids, windows_mod.window_ids(ids[owner], number)])
    return vids, np.vstack([xb, xw])
