"""MCP text content written for reading: one renderer per tool, a compact fallback for the rest.

The structured content of an MCP answer carries the JSON (and its schema); the
text content is what a model reads, so it states each thing once, in the shapes
programmers already read: ``path:line: text`` for matches, ``path:start-end
symbol (score)`` then the snippet for semantic hits, blame's commits once then its
ranges in line order (or one line per commit without text), one line per commit of history, one path per
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
    "authors",
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
    """With text: the commits once (``c<i>``, the index the ranges name), then the ranges
    in line order, each under ``c<i> start-end`` with its numbered lines. Without text:
    one line per commit with the lines it last changed (``git blame``'s question, by
    commit)."""
    commits = answer.get("commits") or {}
    shas: list[str] = commits.get("sha") or []
    spans: dict[int, list[str]] = {}
    body: list[str] = []
    line = answer.get("start_line") or 1
    for row in answer["results"]:
        count, index = row[0], row[1]
        span = f"{line}-{line + count - 1}" if count > 1 else str(line)
        spans.setdefault(index, []).append(span)
        if len(row) > 2:
            body.append(f"c{index} {span}" + (" (cut)" if len(row) > 3 else ""))
            body.extend(f"{n}\t{text}" for n, text in enumerate(row[2].split("\n"), start=line))
        line += count
    out = []
    for i, sha in enumerate(shas):
        meta = _blame_commit(answer, i)
        if body:
            out.append(f"c{i} {sha} {meta}".rstrip())
        else:
            lines = f" · lines {', '.join(spans[i])}" if i in spans else ""
            out.append(f"{sha} {meta}".rstrip() + lines)
    return "\n".join(out + body)


def _blame_commit(answer: dict[str, Any], i: int) -> str:
    """Commit ``i`` of a blame answer's columns: day, author <email>, summary."""
    commits, authors = answer["commits"], answer.get("authors") or {}
    parts = []
    if commits.get("date"):
        parts.append(str(commits["date"][i])[:10])
    if commits.get("author"):
        who = commits["author"][i]
        if authors.get("name"):
            parts.append(str(authors["name"][who]))
        if authors.get("email"):
            parts.append(f"<{authors['email'][who]}>")
    if commits.get("summary"):
        parts.append(str(commits["summary"][i]))
    return " ".join(parts)


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


# -- navigation (issue 18): read_file, find_symbol, file_outline, find_references ---------------


@renderer("read_file")
def read_file(answer: dict[str, Any]) -> str:
    """``cat -n``: the line number, a tab, the line; then where to continue."""
    out = [f"{row['line']:>6}\t{row['text']}" for row in answer["results"]]
    if answer.get("next_start_line"):
        out.append(f"(more: start_line={answer['next_start_line']} of {answer['total_lines']})")
    return "\n".join(out)


def _symbol_line(row: dict[str, Any]) -> str:
    where = f"{_where(row)}:{row['start_line']}-{row['end_line']}"
    tags = "".join(f" [{row[k]}]" for k in ("category",) if row.get(k))
    return f"{row['kind']} {row['qualname']}  {where}  id={row['symbol_id']}{tags}"


@renderer("find_symbol")
def find_symbol(answer: dict[str, Any]) -> str:
    out = []
    for row in answer["results"]:
        out.append(_symbol_line(row))
        out.append(f"  {row['signature']}")
        if row.get("doc"):
            out.append(f"  # {row['doc']}")
        context = row.get("context") or {}
        parent = context.get("parent")
        if parent:
            out.append(f"  in {parent['signature']}  ({parent['start_line']}-{parent['end_line']})")
        if row.get("body") is not None:
            out.append(_indent(row["body"]))
            if row.get("next_start_line"):
                out.append(f"  (body cut: read_file start_line={row['next_start_line']})")
        siblings = context.get("siblings")
        if siblings:
            names = ", ".join(f"{s['name']} {s['start_line']}-{s['end_line']}" for s in siblings)
            more = context.get("more_siblings")
            out.append(f"  siblings: {names}" + (f" (+{more})" if more else ""))
    return "\n".join(out)


@renderer("file_outline")
def file_outline(answer: dict[str, Any]) -> str:
    out = []
    imports = answer.get("imports")
    if imports:
        out.append(f"imports {imports['start_line']}-{imports['end_line']}")

    def walk(rows: list[dict[str, Any]], depth: int) -> None:
        for row in rows:
            text = row.get("signature") or f"{row['kind']} {row['name']}"
            doc = f"  # {row['doc']}" if row.get("doc") else ""
            nested = f" (+{row['nested']} nested)" if row.get("nested") else ""
            out.append(
                f"{'  ' * depth}{row['start_line']}-{row['end_line']} {text}{nested}"
                f"  id={row['symbol_id']}{doc}"
            )
            walk(row.get("children") or [], depth + 1)

    walk(answer["results"], 0)
    return "\n".join(out)


@renderer("find_references")
def find_references(answer: dict[str, Any]) -> str:
    out = [f"defined: {_symbol_line(d)}" for d in answer.get("definitions") or []]
    for group in answer["results"]:
        scope = (
            f" in {group['symbol']} ({group['start_line']}-{group['end_line']})"
            if group.get("symbol")
            else ""
        )
        out.append(f"{_where(group)}{scope}:")
        for occ in group["occurrences"]:
            text = f" {occ['text']}" if occ.get("text") is not None else ""
            out.append(f"  {occ['line']} [{occ['kind']}]{text}")
    per_file = answer.get("per_file")
    if per_file and not answer["results"] and not answer.get("counts"):
        out.append("occurrences per file: " + ", ".join(f"{p} {n}" for p, n in per_file.items()))
    return "\n".join(out)
