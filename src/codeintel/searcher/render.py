"""MCP text content written for reading: one renderer per tool, a compact fallback for the rest.

The structured content of an MCP answer carries the JSON (and its schema); the
text content is what a model reads, so it states each thing once, in the shapes
programmers already read: ``path:line: text`` for matches, ``path:start-end
symbol (score)`` then the snippet for semantic hits, blame ranges under their
commit's one line of metadata, one line per commit of history, one path per
line. A header names the commit and the page; a footer says what the budget left
out and how to get the next page. A tool without an entry in :data:`RENDERERS`
gets :func:`generic`: one compact JSON line per row, so a new tool plugs in with
no code here, and a better renderer is one :func:`renderer` away.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

Renderer = Callable[[dict[str, Any]], str]
RENDERERS: dict[str, Renderer] = {}
"""Tool name -> text renderer of its answer."""

_json = msgspec.json.Encoder().encode
_SKIP_IN_HEADER = {
    "results",
    "generation",
    "commit",
    "repos",
    "tokens",
    "degraded",
    "notice",
    "cursor",
    "has_more",
    "total",
    "total_exact",
    "counts",
    "commits",
    "truncated",
    "skipped",
    "partial",
    "missing_shards",
}


def renderer(name: str) -> Callable[[Renderer], Renderer]:
    """Register the decorated function as ``name``'s text renderer."""

    def register(fn: Renderer) -> Renderer:
        RENDERERS[name] = fn
        return fn

    return register


def render(name: str, answer: dict[str, Any]) -> str:
    """The text content of ``name``'s ``answer``."""
    body = RENDERERS.get(name, generic)(answer)
    return "\n".join(x for x in (header(answer), body.rstrip("\n"), footer(answer)) if x)


def header(answer: dict[str, Any]) -> str:
    """One line: rows shown of the total, and the commit (per repository in a fleet)."""
    parts = []
    rows = answer.get("results")
    if isinstance(rows, list):
        total = answer.get("total")
        if total is not None and total != len(rows):
            plus = "+" if answer.get("total_exact") is False else ""
            parts.append(f"{len(rows)} of {total}{plus}")
        else:
            parts.append(f"{len(rows)} results")
    if answer.get("commit"):
        parts.append(f"at {str(answer['commit'])[:12]} ({answer.get('generation')})")
    repos = answer.get("repos")
    if repos:
        at = ", ".join(f"{n}@{str(v.get('commit'))[:12]}" for n, v in sorted(repos.items()))
        parts.append(f"at {at}")
    for key, value in answer.items():
        if key not in _SKIP_IN_HEADER and value is not None and not isinstance(value, dict | list):
            parts.append(f"{key}={value}")
    return "# " + " · ".join(parts) if parts else ""


def footer(answer: dict[str, Any]) -> str:
    """Caveats, what the budget left out, counts, and the next page's cursor."""
    lines = []
    if answer.get("notice"):
        lines.append(f"notice: {answer['notice']}")
    for name, why in (answer.get("skipped") or {}).items():
        lines.append(f"skipped {name}: {why}")
    if answer.get("partial"):
        lines.append(f"partial: shards missing: {', '.join(answer.get('missing_shards') or [])}")
    counts = answer.get("counts")
    if counts:
        lines.append("counts:")
        lines.extend(f"{k}: {v}" for k, v in counts.items())
    degraded = answer.get("degraded")
    if degraded:
        lines.append(
            f"degraded ({degraded['step']}): left out {degraded['omitted']}; {degraded['hint']}"
        )
    if answer.get("has_more") and answer.get("cursor"):
        lines.append(f"more: pass cursor={answer['cursor']}")
    return "\n".join(lines)


def _where(row: dict[str, Any]) -> str:
    return f"{row['repo']}:{row['path']}" if row.get("repo") else str(row.get("path"))


def generic(answer: dict[str, Any]) -> str:
    """Any tool: each row as one line of compact JSON (row keys only, nulls left out)."""
    rows = answer.get("results")
    if not isinstance(rows, list):
        rest = {k: v for k, v in answer.items() if k not in _SKIP_IN_HEADER}
        return _json(rest).decode()
    return "\n".join(
        _json({k: v for k, v in row.items() if v is not None}).decode()
        if isinstance(row, dict)
        else _json(row).decode()
        for row in rows
    )


@renderer("semantic_search")
def semantic_search(answer: dict[str, Any]) -> str:
    out = []
    for row in answer["results"]:
        head = f"{_where(row)}:{row['start_line']}-{row['end_line']}"
        if row.get("symbol"):
            head += f" {row['symbol']}"
        if row.get("score") is not None:
            head += f" ({row['score']:.3f})"
        out.append(head)
        if row.get("snippet"):
            out.append(_indent(row["snippet"]))
    return "\n".join(out)


@renderer("search_text")
def search_text(answer: dict[str, Any]) -> str:
    return "\n".join(
        f"{_where(r)}:{r['line']}: {r.get('text', '')}".rstrip() for r in answer["results"]
    )


@renderer("list_paths")
def list_paths(answer: dict[str, Any]) -> str:
    return "\n".join(_where(r) for r in answer["results"])


@renderer("blame_range")
def blame_range(answer: dict[str, Any]) -> str:
    """Ranges grouped under their commit: one metadata line per commit, then its ranges."""
    commits = answer.get("commits") or {}
    by_commit: dict[str, list[dict[str, Any]]] = {}
    for r in answer["results"]:
        by_commit.setdefault(r["sha"], []).append(r)
    out = []
    for sha, ranges in by_commit.items():
        meta = commits.get(sha, {})
        line = " ".join(str(meta[k]) for k in ("date", "author") if meta.get(k))
        if meta.get("email"):
            line += f" <{meta['email']}>"
        if meta.get("summary"):
            line += f" {meta['summary']}"
        spans = ", ".join(
            f"{r['start_line']}-{r['end_line']}"
            if r["end_line"] != r["start_line"]
            else str(r["start_line"])
            for r in ranges
        )
        out.append(f"{sha} {line.strip()} · lines {spans}".replace("  ", " "))
        for r in ranges:
            if r.get("text") is not None:
                for n, text in enumerate(r["text"].split("\n"), start=r["start_line"]):
                    out.append(f"  {n}: {text}")
    return "\n".join(out)


@renderer("file_history")
def file_history(answer: dict[str, Any]) -> str:
    out = []
    for r in answer["results"]:
        who = r.get("author") or ""
        if r.get("email"):
            who += f" <{r['email']}>"
        fields = [
            r.get("short_sha") or r.get("sha", "")[:12],
            r.get("date", ""),
            who,
            r.get("summary", ""),
        ]
        out.append(" ".join(str(f) for f in fields if f))
    return "\n".join(out)


@renderer("list_repos")
def list_repos(answer: dict[str, Any]) -> str:
    out = []
    for r in answer["results"]:
        line = f"{r['name']} {r.get('url', '')} {r.get('ref', '')} @{str(r.get('commit', ''))[:12]} ({r.get('generation')})"
        vectors = r.get("vectors") or {}
        if vectors:
            line += f" vectors={sum(vectors.values())} {r.get('index_type', '')} {r.get('embedding_model', '')}"
        if r.get("error"):
            line += f" error: {r['error']}"
        out.append(" ".join(line.split()))
    return "\n".join(out)


def _indent(text: str) -> str:
    return "\n".join("  " + x for x in text.split("\n"))
