"""corpus.embed_drafts: longest first, float16-rounded, straight into the caller's rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from codeintel.core import errors
from codeintel.indexer import chunking, corpus, progress


def _draft(path: str, text: str) -> chunking.ChunkDraft:
    return chunking.ChunkDraft(
        path=path,
        start_line=1,
        end_line=text.count("\n") + 1,
        language="python",
        symbol="",
        text=text,
        content_hash="0" * 32,
    )


DRAFTS = [
    _draft("geo.py", "def haversine(a, b):\n    return 2 * asin(sqrt(h))\n"),
    _draft("shapes.py", "def circle_area(r):\n    return pi * r * r\n"),
    _draft("io.py", "def read_config(path):\n" + "    line = f.readline()\n" * 30),
    _draft("t.py", "x = 1\n"),
]


def test_rows_land_where_asked_and_are_float16_exact(local_embedder: Any) -> None:
    alone = corpus.embed_drafts(local_embedder, DRAFTS, progress.Reporter(interval=None))
    assert alone.dtype == np.float16  # the stored precision, half the bytes of float32
    direct = local_embedder.embed([corpus.embedding_text(d) for d in DRAFTS])
    assert np.array_equal(alone, direct.astype(np.float16))
    # Rows 1, 4, 2, 6 of a wider array, the others untouched: the first pass's rows. A
    # float32 array the caller gives holds the same rounded values.
    for dtype in (np.float16, np.float32):
        out = np.full((7, alone.shape[1]), 7.0, dtype=dtype)
        at = np.array([1, 4, 2, 6])
        given = corpus.embed_drafts(
            local_embedder, DRAFTS, progress.Reporter(interval=None), out=out, at=at
        )
        assert given is out
        assert np.array_equal(out[at], alone)
        assert np.all(out[[0, 3, 5]] == 7.0)
    assert np.allclose(np.linalg.norm(alone.astype(np.float32), axis=1), 1.0, atol=1e-3)


def test_rows_of_another_dimension_are_refused(local_embedder: Any) -> None:
    out = np.zeros((len(DRAFTS), 8), dtype=np.float32)
    with pytest.raises(errors.DimensionMismatchError):
        corpus.embed_drafts(local_embedder, DRAFTS, progress.Reporter(interval=None), out=out)


def test_positions_must_match_the_drafts(local_embedder: Any) -> None:
    out = np.zeros((9, 384), dtype=np.float32)
    with pytest.raises(ValueError, match="4 drafts for 2 rows"):
        corpus.embed_drafts(
            local_embedder, DRAFTS, progress.Reporter(interval=None), out=out, at=np.arange(2)
        )
