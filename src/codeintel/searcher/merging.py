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

from collections.abc import Iterable, Mapping
from typing import Any


def tag(name: str, answer: Mapping[str, Any]) -> dict[str, Any]:
    """One repository's answer in the many-repository shape: results name ``repo``."""
    out = {k: v for k, v in answer.items() if k not in ("generation", "commit")}
    out["results"] = [{**row, "repo": name} for row in answer.get("results", [])]
    out["repos"] = {name: {"generation": answer["generation"], "commit": answer["commit"]}}
    return out


def one(name: str, answer: Mapping[str, Any]) -> dict[str, Any]:
    """A single-repository answer (blame, history): tagged, keeping generation and commit."""
    return {**tag(name, answer), "generation": answer["generation"], "commit": answer["commit"]}


def _envelope(
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
    return {"results": rows[:k], "mode": mode, "truncated": truncated, **_envelope(parts, skipped)}


def text(
    parts: Iterable[Mapping[str, Any]], max_results: int, skipped: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Text matches of several answers by repo, path, line, column; at most ``max_results``."""
    parts = list(parts)
    rows = [row for part in parts for row in part["results"]]
    rows.sort(key=lambda r: (r["repo"], r["path"], r["line"], r["column"]))
    truncated = len(rows) > max_results or any(p.get("truncated") for p in parts)
    return {"results": rows[:max_results], "truncated": truncated, **_envelope(parts, skipped)}


def paths(
    parts: Iterable[Mapping[str, Any]], max_results: int, skipped: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Paths of several answers by repo and path; ``total`` adds up every answer's total."""
    parts = list(parts)
    rows = [row for part in parts for row in part["results"]]
    rows.sort(key=lambda r: (r["repo"], r["path"]))
    total = sum(int(p.get("total", len(p["results"]))) for p in parts)
    return {
        "results": rows[:max_results],
        "total": total,
        "truncated": total > min(len(rows), max_results),
        **_envelope(parts, skipped),
    }


def repos(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """list_repos rows of several answers, by name."""
    rows = [row for part in parts for row in part["results"]]
    return {"results": sorted(rows, key=lambda r: r["name"])}
