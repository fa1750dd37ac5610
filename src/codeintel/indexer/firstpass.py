"""The progressive first pass: which chunks get vectors first, and embedding them to a budget.

``codeintel serve PATH`` on a 38K-chunk repository would wait 13+ minutes on
two CPU cores for every vector before its first dense answer (about 50 chunks/s,
docs/performance.md, *First dense answer*). Instead the build embeds the chunks
an agent most likely asks for first, for ``index.first_pass_seconds``, publishes
a generation whose dense vectors cover those (lexical search covers every
chunk), then embeds the rest and publishes the full index over it
(``indexer/pipeline.py``).

The order (:func:`order`) is by kind of file, then by chunk: source before
tests, tests before documentation and examples, vendored or generated code
last; inside a kind, chunks that define a named symbol (a function, class or
method: what "where is the code that does X" answers with) before module-level
fragments, then in path order.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Sequence
from pathlib import PurePosixPath

import numpy as np

from codeintel.core import embed as embedding_mod
from codeintel.core import malloc
from codeintel.indexer import chunking, corpus
from codeintel.indexer import progress as progress_mod

logger = logging.getLogger(__name__)

FIRST_GROUP = 64
"""Texts of the first embed call; each next call doubles, up to ``corpus.EMBED_GROUP``. The
budget is checked between calls, and on a loaded machine the model may embed only a few
chunks per second: a first call of 512 could overrun a 60 s budget several times over."""

MIN_GROUP = 16
"""Texts of an embed call at least, near the end of the budget (one model batch of
256-token texts)."""

SOURCE, TESTS, DOCS, VENDORED = 0, 1, 2, 3
"""File kinds, in the order their chunks are embedded."""

_VENDORED_DIRS = frozenset(
    {"vendor", "vendored", "_vendor", "third_party", "third-party", "thirdparty", "external"}
    | {"node_modules", "generated", "gen", "dist", "build"}
)
_TEST_DIRS = frozenset({"test", "tests", "testing", "__tests__", "spec", "specs", "e2e"})
_DOC_DIRS = frozenset(
    {"doc", "docs", "documentation", "example", "examples", "sample", "samples"}
    | {"benchmark", "benchmarks", "bench", "demo", "demos", "tutorial", "tutorials"}
)
_DOC_SUFFIXES = frozenset({".md", ".rst", ".txt", ".adoc", ".ipynb"})
_TEST_NAME = re.compile(
    r"^(test_.*|.*_test|.*_tests|.*\.test|.*\.spec|.*Test|.*Tests|conftest)\.[A-Za-z0-9]+$"
)
_GENERATED_NAME = re.compile(r".*(\.min\.js|_pb2\.py|_pb2_grpc\.py|\.pb\.go|_generated\.\w+)$")


def kind(path: str) -> int:
    """:data:`SOURCE`, :data:`TESTS`, :data:`DOCS` or :data:`VENDORED` for ``path``."""
    p = PurePosixPath(path)
    dirs = {d.lower() for d in p.parts[:-1]}
    if dirs & _VENDORED_DIRS or _GENERATED_NAME.match(p.name):
        return VENDORED
    if dirs & _TEST_DIRS or _TEST_NAME.match(p.name):
        return TESTS
    if dirs & _DOC_DIRS or p.suffix.lower() in _DOC_SUFFIXES:
        return DOCS
    return SOURCE


def order(drafts: Sequence[chunking.ChunkDraft]) -> np.ndarray:
    """Indices of ``drafts`` in the order the first pass embeds them (module docstring)."""
    keys = [(kind(d.path), 0 if d.symbol else 1, d.path, d.start_line) for d in drafts]
    return np.asarray(sorted(range(len(drafts)), key=keys.__getitem__), dtype=np.int64)


def next_group(group: int, done: int, elapsed: float, seconds: float) -> int:
    """Texts of the next embed call: ``group`` (already doubled), but no more than the
    rate so far (``done`` chunks in ``elapsed`` seconds) fits in what is left of the
    ``seconds`` budget, and at least :data:`MIN_GROUP`. A full group of 512 at the start
    of the last seconds overran the 60 s budget by 20 s on sympy (a quiet machine,
    25 chunks/s), and the first dense answer waited for it."""
    if done <= 0 or elapsed <= 0:
        return group
    fits = int(done / elapsed * (seconds - elapsed))
    return max(MIN_GROUP, min(group, fits))


@dataclasses.dataclass(frozen=True)
class FirstPass:
    """Head vectors of the chunks the first pass embedded: ``rows[i]`` is ``drafts[done[i]]``."""

    done: np.ndarray
    """int64 indices into the build's drafts, in the order they were embedded."""
    rows: np.ndarray
    """float32 (len(done), dim) unit rows, float16-rounded like every stored vector."""
    seconds: float


def embed(
    embedder: embedding_mod.Embedder,
    drafts: Sequence[chunking.ChunkDraft],
    *,
    seconds: float,
    max_chunks: int,
    reporter: progress_mod.Reporter,
) -> FirstPass:
    """Embed ``drafts`` in :func:`order`, a growing group at a time, until ``seconds`` have
    passed or ``max_chunks`` (0: no cap) are done, whichever comes first; at least one group."""
    ranked = order(drafts)
    cap = len(ranked) if max_chunks <= 0 else min(max_chunks, len(ranked))
    started = time.monotonic()
    parts: list[np.ndarray] = []
    taken = 0
    group = FIRST_GROUP
    with reporter.stage("embed", total=len(ranked)) as stage:
        while taken < cap and (not parts or time.monotonic() - started < seconds):
            rows = ranked[taken : taken + min(group, cap - taken)]
            group = min(corpus.EMBED_GROUP, group * 2)
            texts = [corpus.embedding_text(drafts[i]) for i in rows]
            # Longest first inside the group, as corpus.embed_drafts does: little padding.
            by_length = np.argsort([-len(t) for t in texts], kind="stable")
            got = embedder.embed([texts[i] for i in by_length])
            xb = np.empty_like(got)
            xb[by_length] = got
            parts.append(xb)
            taken += len(rows)
            stage.advance(len(rows))
            malloc.trim()  # the model's activations of that group
            group = next_group(group, taken, time.monotonic() - started, seconds)
    elapsed = time.monotonic() - started
    logger.info(
        "first pass embedded %d of %d chunks in %.1f s (%.1f chunks/s)",
        taken,
        len(ranked),
        elapsed,
        taken / max(elapsed, 1e-9),
    )
    return FirstPass(
        done=ranked[:taken],
        rows=np.vstack(parts).astype(np.float16).astype(np.float32),
        seconds=round(elapsed, 2),
    )
