"""Shared by the impact-index tests: a real vocabulary, queries and filters, and the
comparison of a numpy-scored reader with an FTS5 one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import codeintel
from codeintel.core.store.chunks import Chunk, ChunkDB

SOURCE = Path(codeintel.__file__).parent
WINDOW = 12

FILTERS: list[dict[str, str]] = [
    {},
    {"language": "python"},
    {"language": "markdown"},
    {"path_glob": "core/**"},
    {"path_glob": "**/*.py", "language": "python"},
    {"path_glob": "searcher/*.py"},
]


def source_chunks() -> list[Chunk]:
    """Windows of this package's own source: a real vocabulary, many common terms."""
    files = sorted(SOURCE.glob("core/**/*.py")) + sorted(SOURCE.glob("searcher/*.py"))
    chunks: list[Chunk] = []
    for path in files[:60]:
        lines = path.read_text(encoding="utf-8").splitlines()
        rel = path.relative_to(SOURCE).as_posix()
        for start in range(0, len(lines), WINDOW):
            body = "\n".join(lines[start : start + WINDOW])
            found = re.search(r"(?:def|class) (\w+)", body)
            chunks.append(
                Chunk(
                    id=len(chunks) * 3 + 7,  # ids with gaps, as after updates
                    path=rel,
                    start_line=start + 1,
                    end_line=min(len(lines), start + WINDOW),
                    language="markdown" if start == 0 else "python",
                    symbol=found.group(1) if found else "",
                    content_hash=f"h{len(chunks)}",
                    text=body,
                )
            )
    unicode = "Überprüfung der Straße: café naïve 東京 ünïcode ÉTÉ Überprüfung_fertig"
    chunks.append(Chunk(2, "docs/ünï.py", 1, 1, "python", "Überprüfung", "u", unicode))
    return chunks


QUERIES = [
    "return the value",
    "How does the searcher pick up a new generation?",
    "connections connection connected",  # one stem, three phrases: counted three times
    "ChunkDB.lexical_tiers",
    "lexical tiers",
    "merge_tiers(",
    "parse args",
    "self",
    "the a of",  # stop words only: kept
    "path glob language filter",
    "numpy bincount argpartition",
    "zzzz_not_a_word qqq",
    "IndexFormatError raise errors",
    "def __init__ self",
    "_informative",
    "FTS5 bm25 weights",
    "Überprüfung café naive tokyo 東京",
]


def write_source_db(path: Path, rows: int | None = None) -> Path:
    """``chunks.sqlite`` of :func:`source_chunks` (the first ``rows``), with a few rows
    deleted afterwards: contentless deletes, as an update makes."""
    chunks = source_chunks()[:rows]
    with ChunkDB.create(path) as db:
        db.add(chunks)
        db.commit()
    with ChunkDB.open(path, readonly=False) as db:
        db.delete([c.id for c in chunks[5:40:3]])
        db.commit()
    return path


def assert_same_ranking(plain: ChunkDB, fast: ChunkDB, query: str, k: int, **filters: str) -> None:
    expected = plain.lexical_tiers(query, k, **filters)  # type: ignore[arg-type]
    got = fast.lexical_tiers(query, k, **filters)  # type: ignore[arg-type]
    for tier_expected, tier_got in zip(expected, got, strict=True):
        assert [i for i, _ in tier_got] == [i for i, _ in tier_expected], (query, filters, k)
        for (_, s_got), (_, s_expected) in zip(tier_got, tier_expected, strict=True):
            assert s_got == pytest.approx(s_expected, rel=1e-12, abs=1e-15), (query, filters)
