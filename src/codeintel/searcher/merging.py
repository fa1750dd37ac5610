"""Merging answers of several repositories (or shards) into one, the same way everywhere.

A searcher serving many stores merges its per-store answers with these
functions, and the router merges its shards' answers with the same ones, so a
query answered by one process or by N shards comes back identical. Every result
names its ``repo``; the answer's ``repos`` maps every repository read to the
``{generation, commit}`` it was answered from, so pinning holds per repository.

Ordering: semantic hits by score (then repo, path, line, so ties are stable);
text matches and paths by repo, then path, then line. Scores of different
stores are compared as they are: cosine similarities are comparable across
indexes of one model; BM25 and fused (RRF) scores are comparable in rank, not
in absolute value, so a lexical merge interleaves each store's best hits.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from codeintel.searcher import cursors

_PAGE_KEYS = ("total", "total_exact", "has_more")


def tag(name: str, answer: Mapping[str, Any]) -> dict[str, Any]:
    """One repository's answer in the many-repository shape: results name ``repo``."""
    out = {k: v for k, v in answer.items() if k not in ("generation", "commit", "cursor")}
    out["results"] = [{**row, "repo": name} for row in answer.get("results", [])]
    out["repos"] = {name: {"generation": answer["generation"], "commit": answer["commit"]}}
    if answer.get("has_more"):
        out["more"] = [name]  # read by paginate: this repository has later pages
    return out


def one(name: str, answer: Mapping[str, Any]) -> dict[str, Any]:
    """A single-repository answer (file_history): tagged, keeping generation, commit and
    the page fields (its cursor is the store's own, sent back to the same store)."""
    out = {**tag(name, answer), "generation": answer["generation"], "commit": answer["commit"]}
    out.pop("more", None)
    out.update({k: answer[k] for k in (*_PAGE_KEYS, "cursor") if k in answer})
    return out


def paginate(
    tool: str,
    request: Any,
    parts: Iterable[Mapping[str, Any]],
    answer: dict[str, Any],
    start: cursors.Position | None,
) -> str | None:
    """Set ``total``, ``has_more`` and ``cursor`` of a merged page; return the cursor that
    re-reads this page (for the budget's steps 3-4).

    Each repository resumes where its own rows stopped: its offset moves by the rows
    of it this page kept; it has more when some of its rows were cut here or its own
    answer had more. The cursor pins each repository's generation, and names only
    the repositories with more, so the next page asks only those."""
    parts = list(parts)
    returned = Counter(r["repo"] for p in parts for r in p["results"])
    taken = Counter(r["repo"] for r in answer["results"])
    more: set[str] = set()
    total, exact = 0, True
    for p in parts:
        # A store's answer says has_more (``tag``); a shard's merged answer names the
        # repositories with more in its cursor.
        more.update(p.get("more") or [])
        if p.get("cursor"):
            more.update(cursors.positions(p["cursor"]).offsets)
        total += int(p.get("total", len(p["results"])))
        exact = exact and p.get("total_exact", True) is not False
    gens: dict[str, str] = {}
    begin: dict[str, int] = {}
    after: dict[str, int] = {}
    for name, v in answer.get("repos", {}).items():
        first = start.offset(name) if start else 0
        gens[name] = v["generation"]
        begin[name] = first
        if taken[name] < returned[name] or name in more:
            after[name] = first + taken[name]
    if start is not None and start.total is not None:
        # Later pages ask only the repositories with more: the first page's count holds.
        total, exact = start.total, start.exact
    answer["total"], answer["total_exact"] = total, exact
    answer["has_more"] = bool(after)
    answer["cursor"] = (
        cursors.encode(tool, request, {n: gens[n] for n in after}, after, total, exact)
        if after
        else None
    )
    return cursors.encode(tool, request, gens, begin, total, exact) if gens else None


def envelope(
    parts: Iterable[Mapping[str, Any]], skipped: Mapping[str, str] | None
) -> dict[str, Any]:
    """``repos`` and ``skipped`` of several answers, plus generation/commit when only one repo."""
    repos: dict[str, Any] = {}
    skip: dict[str, str] = dict(skipped or {})
    for part in parts:
        repos.update(part.get("repos") or {})
        skip.update(part.get("skipped") or {})
    out: dict[str, Any] = {"repos": dict(sorted(repos.items()))}
    if skip:
        out["skipped"] = dict(sorted(skip.items()))
    if len(repos) == 1:
        (only,) = repos.values()
        out["generation"], out["commit"] = only["generation"], only["commit"]
    return out


def semantic(
    parts: Iterable[Mapping[str, Any]], k: int, mode: str, skipped: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Best ``k`` hits of several answers by score."""
    parts = list(parts)
    rows = [row for part in parts for row in part["results"]]
    rows.sort(key=lambda r: (-r["score"], r["repo"], r["path"], r["start_line"]))
    truncated = any(p.get("truncated") for p in parts)  # a snippet was cut to the budget
    return {"results": rows[:k], "mode": mode, "truncated": truncated, **envelope(parts, skipped)}


def text(
    parts: Iterable[Mapping[str, Any]], max_results: int, skipped: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Text matches of several answers by repo, path, line, column; at most ``max_results``.

    Paths compare component by component, the order a store pages them in, so the
    rows kept of each repository are a prefix of its own (its cursor resumes there)."""
    parts = list(parts)
    rows = [row for part in parts for row in part["results"]]
    rows.sort(key=lambda r: (r["repo"], r["path"].split("/"), r["line"], r["column"]))
    truncated = len(rows) > max_results or any(p.get("truncated") for p in parts)
    return {"results": rows[:max_results], "truncated": truncated, **envelope(parts, skipped)}


def paths(
    parts: Iterable[Mapping[str, Any]], max_results: int, skipped: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Paths of several answers by repo and path; ``total`` adds up every answer's total
    (:func:`paginate` sets it again, the same way)."""
    parts = list(parts)
    rows = [row for part in parts for row in part["results"]]
    rows.sort(key=lambda r: (r["repo"], r["path"]))
    total = sum(int(p.get("total", len(p["results"]))) for p in parts)
    return {
        "results": rows[:max_results],
        "total": total,
        "truncated": total > min(len(rows), max_results),
        **envelope(parts, skipped),
    }


def repos(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """list_repos rows of several answers, by name."""
    rows = [row for part in parts for row in part["results"]]
    return {"results": sorted(rows, key=lambda r: r["name"])}
