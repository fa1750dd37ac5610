"""search_text's pages and answer sizes: cut inside files, measured by the house rule."""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path

import msgspec
import pytest

from codeintel.searcher import budget, textsearch, tools

PAGE = 7


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files with many matching lines each, so that pages begin and end inside files."""
    root = tmp_path_factory.mktemp("pages")
    for i, n in enumerate((23, 1, 9, 40, 2)):
        body = "".join(
            f"line {j} needle {'x' * j}\n" if j % 3 else f"plain {j}\n" for j in range(n * 3)
        )
        path = root / f"d{i % 2}" / f"f{i}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text(body)
    for i in range(12):  # most files do not hold it: an exact count, not a common word's bound
        (root / f"other{i}.txt").write_text(f"nothing here {i}\n")
    assert textsearch.TREES.wait(root)
    return root


def _ripgrep_sorted(root: Path) -> list[tuple[str, int, str]]:
    """The oracle: ripgrep's own (path, line, text) in ``--sort=path`` order."""
    args = textsearch.build_args("needle", regex=False, case_sensitive=True, path_glob=None)
    out = subprocess.run(
        [*args[:-1], "--sort=path", args[-1]], cwd=root, capture_output=True, check=True
    ).stdout
    rows = []
    for raw in out.decode().splitlines():
        path, _, rest = raw.partition("\0")
        line, _, rest = rest.partition(":")
        _, _, text = rest.partition(":")
        rows.append((path.removeprefix("./"), int(line), text))
    return rows


@pytest.mark.parametrize("prune", [True, False])  # read in-process / through ripgrep
async def test_pages_cut_inside_files_tile_ripgreps_sorted_output(tree: Path, prune: bool) -> None:
    oracle = _ripgrep_sorted(tree)
    assert len(oracle) > 5 * PAGE
    pages: list[tuple[str, int, str]] = []
    for offset in range(0, len(oracle) + PAGE, PAGE):
        found = await textsearch.search(
            tree, "needle", max_results=PAGE, offset=offset, prune=prune
        )
        assert found.exact and found.total == len(oracle)
        pages += [(m.path, m.line, m.text) for m in found.matches]
    assert pages == oracle


async def test_later_pages_of_a_ripgrep_search_read_only_their_files(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Candidates too large to read here go to ripgrep, which counts every file: its
    layout then gives later pages from their own files, read here, with no ripgrep run."""
    monkeypatch.setattr(textsearch, "IN_PROCESS_BYTES", 0)
    runs: list[list[str]] = []
    run = textsearch._run

    async def spy(root: Path, args: list[str], *rest: object) -> bool:
        runs.append(args)
        return await run(root, args, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(textsearch, "_run", spy)
    textsearch.LAYOUTS.clear()
    oracle = _ripgrep_sorted(tree)
    pages: list[tuple[str, int, str]] = []
    for offset in range(0, len(oracle) + PAGE, PAGE):
        found = await textsearch.search(tree, "needle", max_results=PAGE, offset=offset)
        assert found.exact and found.total == len(oracle)
        assert set(found.per_file) == {p for p, _, _ in oracle}
        pages += [(m.path, m.line, m.text) for m in found.matches]
    assert pages == oracle
    assert len(runs) == 1 and "--" in runs[0]  # page 1 only, over the candidate files


async def test_pages_read_in_process_are_the_whole_tree_pages(tmp_path: Path) -> None:
    """Names that do not decode (Latin-1 bytes) sort as answers show them, on both paths."""
    names = [b"b\xe9.txt", "b\u00fc.txt".encode(), b"b\xff/z.txt", b"a.txt", b"bz.txt"]
    for i, name in enumerate(names):
        path = os.path.join(os.fsencode(tmp_path), name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(b"needle\n" * (3 + i) + b"x\n")
    for i in range(8):
        (tmp_path / f"other{i}.txt").write_text("nothing\n")
    assert textsearch.TREES.wait(tmp_path)
    for offset in range(0, 30, 4):
        pruned = await textsearch.search(tmp_path, "needle", max_results=4, offset=offset)
        whole = await textsearch.search(
            tmp_path, "needle", max_results=4, offset=offset, prune=False
        )
        assert pruned.total == whole.total == 25
        assert pruned.matches == whole.matches


def _answer(rows: int, text: str) -> dict[str, object]:
    return {
        "results": [
            {"path": f"src/f{i}.c", "line": i, "column": 1, "text": text} for i in range(rows)
        ],
        "truncated": False,
        "total": rows,
        "generation": "g000001",
        "commit": "0" * 40,
    }


def _fixed_point(answer: dict[str, object]) -> int:
    """``tokens`` found the slow way: encode, set, encode again until it holds."""
    answer["tokens"] = 0
    for _ in range(4):
        n = budget.estimate(answer)
        if n == answer["tokens"]:
            break
        answer["tokens"] = n
    return int(answer["tokens"])  # type: ignore[call-overload]


@pytest.mark.parametrize("rows", [0, 1, 2, 5, 17, 60, 200, 999])
def test_tokens_are_the_estimate_of_the_answer_that_holds_them(rows: int) -> None:
    for text in ("x", "é" * 37, "a\nb\tc" * 30):
        answer = _answer(rows, text)
        fitted = budget.fit(answer, budget.MAX_MAX_TOKENS, tools.SHAPES["search_text"])
        assert fitted["tokens"] == budget.estimate(fitted) == _fixed_point(_answer(rows, text))
        wire = msgspec.json.encode(fitted)
        assert fitted["tokens"] == math.ceil(len(wire) / budget.BYTES_PER_TOKEN)


def test_each_step_is_measured_after_it_is_taken() -> None:
    answer = _answer(400, "int item = cJSON_GetArrayItem(array, index); " * 4)
    fitted = budget.fit(answer, 2_000, tools.SHAPES["search_text"], counts={"a": 1})
    assert fitted["degraded"]["step"] == "counts_per_file"  # type: ignore[index]
    assert fitted["tokens"] == budget.estimate(fitted) <= 2_000
    short = budget.fit(_answer(2, "y" * 3000), 700, tools.SHAPES["search_text"])
    assert short["degraded"]["step"] == "short_snippets"  # type: ignore[index]
    assert all(len(r["text"]) == budget.SHORT_CHARS for r in short["results"])  # type: ignore[attr-defined]
    assert short["tokens"] == budget.estimate(short)


@pytest.mark.parametrize("fresh", [False, True])  # a later page from the layout, or afresh
async def test_lines_counted_past_the_page_are_ripgreps(tmp_path: Path, fresh: bool) -> None:
    """Outside the page, lines are counted and skipped by a regex, not walked: every page,
    total and count per file is still ripgrep's, with the literal twice on a line, CRLF
    endings, a last line without a newline and ASCII case folding; a page that starts
    inside a file is found from the first file on (``fresh``) or from its layout."""
    bodies = {
        "a.txt": "Needle needle NEEDLE\nnone\nneedle\r\nx needleneedle\n" * 6,
        "b/c.txt": "needle\n\nneedle needle\nneedle",  # no newline at the end
        "b/d.txt": "NeEdLe\r\n" * 5 + "plain\n",
        "e.txt": "needle " * 40 + "\n" + "needle\n" * 9,
    }
    for name, body in bodies.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(body.encode())
    for i in range(10):  # most files do not hold it: counted exactly, not bounded
        (tmp_path / f"other{i}.txt").write_text("nothing\n")
    assert textsearch.TREES.wait(tmp_path)
    for case_sensitive in (True, False):
        for offset, page in ((0, 3), (0, 1000), (5, 4), (17, 6), (30, 2), (60, 5)):
            kwargs = {"case_sensitive": case_sensitive, "max_results": page, "offset": offset}
            if fresh:
                textsearch.LAYOUTS.clear()
            pruned = await textsearch.search(tmp_path, "needle", **kwargs)  # type: ignore[arg-type]
            whole = await textsearch.search(tmp_path, "needle", prune=False, **kwargs)  # type: ignore[arg-type]
            assert pruned.exact and whole.exact
            assert (pruned.total, pruned.per_file) == (whole.total, whole.per_file)
            assert pruned.matches == whole.matches
    assert whole.total == 6 * 3 + 3 + 5 + 10  # case-insensitive: each line holding it once
