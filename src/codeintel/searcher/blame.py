"""blame_range's answer: blame lines grouped into ranges, then packed into the published shape.

A whole-file blame with every line's text is the largest answer an agent asks for
(docs/performance.md, *Blame answers packed*): as one object per line it repeats the
commit's metadata on every line (845 KB for the 3,191 lines of cJSON.c), and even as
ranges of consecutive lines with each commit once, the keys of 1,553 range objects
and 276 commit objects were 60% of its 241 KB. The published shape therefore states
each thing once, as ``git blame --incremental`` does, and names things by position
where a name would repeat per row:

* ``results``: one ``[lines, commit, text?, truncated?]`` array per range of
  consecutive lines last changed by one commit, in line order; the ranges follow one
  another without a gap from the answer's ``start_line`` (a blame covers every line
  of its span), so a range's first line is the sum of the ranges before it;
* ``commits``: a table of columns (``sha``, ``author``, ``date``, ``summary``), each
  commit once in order of first appearance; a range's ``commit`` is its index;
* ``authors``: a table of columns (``name``, ``email``), each author once; a commit's
  ``author`` is an index into it.

The ``fields`` projection leaves out a column (or the ranges' text), never a position
in a row: a range is ``[lines, commit]`` without text. The tool works on the grouped
form (:func:`group`: ranges as dicts, commits by short sha), which the token budget
cuts and degrades (``budget.fit`` measures and returns the packed form, :func:`pack`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from codeintel.core import history
from codeintel.searcher import budget as budget_mod

COMMIT_COLUMNS = ("date", "summary")
"""Commit metadata published as a column of ``commits`` as it is (``author`` and
``email`` go through the ``authors`` table)."""


def group(
    entries: Sequence[history.BlameEntry],
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], bool]:
    """Blame lines as ranges of consecutive lines of one commit, and each commit once.

    Returns (ranges ``{start_line, end_line, sha, text, truncated?}``, commits by short
    sha ``{author, email, date, summary}``, whether any text was cut)."""
    budget = budget_mod.TextBudget()
    ranges: list[dict[str, Any]] = []
    commits: dict[str, dict[str, Any]] = {}
    texts: list[str] = []
    for e in entries:
        key = e.short_sha
        if key not in commits:
            summary, _ = budget.take(e.summary, count=False)
            commits[key] = {
                "author": e.author,
                "email": e.email,
                "date": e.date,
                "summary": summary,
            }
        text, cut = budget.take(e.text)
        last = ranges[-1] if ranges else None
        if last is not None and last["sha"] == key and last["end_line"] + 1 == e.line:
            last["end_line"] = e.line
            texts.append(text)
        else:
            if last is not None:
                last["text"] = "\n".join(texts)
            ranges.append({"start_line": e.line, "end_line": e.line, "sha": key})
            texts = [text]
        if cut:
            ranges[-1]["truncated"] = True
    if ranges:
        ranges[-1]["text"] = "\n".join(texts)
    return ranges, commits, budget.cut


def pack(answer: dict[str, Any]) -> dict[str, Any]:
    """The published answer (module docstring) of a grouped one; ``answer`` is not changed.

    The commits table holds the commits the ranges name, then those ``counts`` names
    (the budget's step 3 replaces the ranges by lines per commit)."""
    rows: list[dict[str, Any]] = answer["results"]
    table: dict[str, dict[str, Any]] | None = answer.get("commits")
    order: dict[str, int] = {}
    for r in rows:
        order.setdefault(r["sha"], len(order))
    for sha in answer.get("counts") or ():
        order.setdefault(sha, len(order))
    packed: list[list[Any]] = []
    for r in rows:
        row: list[Any] = [r["end_line"] - r["start_line"] + 1, order[r["sha"]]]
        if "text" in r:
            row.append(r["text"])
            if r.get("truncated"):
                row.append(True)
        packed.append(row)
    out: dict[str, Any] = {"results": packed}
    if table is not None and order:
        out["commits"], authors = _tables(list(order), table)
        if authors:
            out["authors"] = authors
    out.update((k, v) for k, v in answer.items() if k not in ("results", "commits"))
    if rows:
        out["start_line"], out["end_line"] = rows[0]["start_line"], rows[-1]["end_line"]
    return out


def _tables(
    shas: list[str], table: dict[str, dict[str, Any]]
) -> tuple[dict[str, list[Any]], dict[str, list[str]]]:
    """The ``commits`` and ``authors`` columns of ``shas`` (the projected fields only)."""
    present = set(table[shas[0]])
    commits: dict[str, list[Any]] = {"sha": shas}
    who = [f for f in ("author", "email") if f in present]
    authors: dict[str, list[str]] = {}
    if who:
        index: dict[tuple[str, ...], int] = {}
        column = []
        for sha in shas:
            key = tuple(table[sha][f] for f in who)
            column.append(index.setdefault(key, len(index)))
        commits["author"] = column
        names = {"author": "name", "email": "email"}
        authors = {names[f]: [key[i] for key in index] for i, f in enumerate(who)}
    for f in COMMIT_COLUMNS:
        if f in present:
            commits[f] = [table[sha][f] for sha in shas]
    return commits, authors
