"""find_symbol, file_outline and find_references: the symbol index as answers for agents.

The index (:mod:`codeintel.core.symbols`, one ``symbols.sqlite`` per generation)
knows definitions and identifier occurrences; this module turns its records into
compact, bounded answers of one repository at one generation, and the fleet and
router merge those. Every function here blocks (sqlite, file reads): the tools
run them on the executor.

* **find_symbol**: exact matches first, source above tests above vendored code
  (the index's order). A plain name with several exact definitions is
  *ambiguous*: the answer lists up to :data:`MAX_CANDIDATES` candidates with their
  ids, no bodies, and says to ask again by ``symbol_id``. With ``include_body``
  each definition carries its lines at the commit and, because agents otherwise
  read the whole file next, its context: the enclosing definition's signature and
  span and the names and spans of its siblings.
* **file_outline**: the file's definitions nested by scope, signatures and no
  bodies, and the span of its imports.
* **find_references**: occurrences grouped by enclosing definition, definitions
  named apart; ``total`` comes from per-file counts, so a name with 10,000
  occurrences costs one page. Over the budget the answer degrades in the shared
  steps (shorter lines, no lines, counts per file, a count).

A generation without a symbol index (an older store) answers 409 "not indexed:
rebuild" naming the repository; read_file and the other tools still answer.
"""

from __future__ import annotations

from typing import Any

import msgspec

from codeintel.core import errors
from codeintel.core import symbols as symbols_mod
from codeintel.searcher import budget, merging, models, navigation
from codeintel.searcher import generations as generations_mod

MAX_CANDIDATES = 10
"""Candidates an ambiguous name lists (codanna's choice; enough to pick from)."""
MAX_SIBLINGS = 40
"""Siblings listed beside a body; the rest are counted."""
SHORT_LINE_CHARS = 80
"""Reference line text at the first degrade step."""
_POSITION_BITS = 21
"""A find_references position packs (file id, line, column) into one cursor offset."""


def index_of(gen: generations_mod.LoadedGeneration, repo: str) -> symbols_mod.SymbolIndex:
    """The generation's symbol index, or 409 "not indexed: rebuild" naming ``repo``."""
    index = gen.symbols  # the early index's stands in until its chunk pass is done
    if index is None:
        raise errors.NotIndexedError([repo])
    result: symbols_mod.SymbolIndex = index
    return result


SYMBOL_ROW_FIELDS = (
    "name",
    "qualname",
    "kind",
    "language",
    "path",
    "start_line",
    "end_line",
    "signature",
)
"""A find_symbol row's fields after ``symbol_id``, always there (``rows.SymbolRow``)."""
OUTLINE_NODE_FIELDS = ("name", "kind", "start_line", "end_line", "signature")
"""A file_outline node's fields after ``symbol_id``, always there (``rows.OutlineRow``)."""


def _compact(sym: symbols_mod.Symbol, fields: tuple[str, ...]) -> dict[str, Any]:
    """``symbol_id``, then ``fields`` of ``sym``, then its docstring when it has one."""
    row: dict[str, Any] = {"symbol_id": sym.id}
    for field in fields:
        row[field] = getattr(sym, field)
    if sym.doc:
        row["doc"] = sym.doc
    return row


def symbol_row(sym: symbols_mod.Symbol) -> dict[str, Any]:
    """One definition, compact: empty fields are left out."""
    row = _compact(sym, SYMBOL_ROW_FIELDS)
    if sym.parent:
        row["parent"] = sym.parent
        row["parent_id"] = sym.parent_id
    if sym.category != "source":
        row["category"] = sym.category
    return row


# -- find_symbol -------------------------------------------------------------------------------


def find_symbol(
    gen: generations_mod.LoadedGeneration, req: models.FindSymbolRequest, repo: str
) -> dict[str, Any]:
    """The find_symbol answer of one repository (blocking)."""
    index = index_of(gen, repo)
    notice = None
    if req.symbol_id is not None:
        found = index.get(req.symbol_id)
        symbols = [found] if found is not None else []
        if found is None:
            notice = (
                f"no definition has symbol_id {req.symbol_id} at this commit (ids change when a "
                "definition is renamed or moves to another file); search by name"
            )
        total, exact = len(symbols), True
    else:
        assert req.name is not None
        fetch = min(symbols_mod.MAX_LIMIT, max(req.limit, MAX_CANDIDATES) + 1)
        symbols = _find(index, req, fetch)
        total, exact = len(symbols), len(symbols) < fetch
    exact_matches = [s for s in symbols if _is_exact(s, req.name)] if req.name else symbols
    ambiguous = len(exact_matches) > 1 and req.symbol_id is None and not _is_glob(req.name)
    shown = symbols[: min(req.limit, MAX_CANDIDATES) if ambiguous else req.limit]
    rows = [symbol_row(s) for s in shown]
    if ambiguous:
        notice = (
            f"{len(exact_matches)}{'' if exact else '+'} definitions are named {req.name!r}; "
            "ask again with the symbol_id of the one you mean (or a qualified name"
            + (", for its body)" if req.include_body else ")")
        )
    elif req.include_body:
        _add_bodies(gen, index, shown, rows, req.max_tokens)
    answer: dict[str, Any] = {
        "results": rows,
        "ambiguous": ambiguous,
        "total": total if exact else len(symbols) - 1,
        "total_exact": exact,
        "has_more": total > len(shown),
        "cursor": None,
        "generation": gen.name,
        "commit": gen.commit,
    }
    if notice:
        answer["notice"] = notice
    return budget.fit(answer, req.max_tokens, _SYMBOL_SHAPE)


_SYMBOL_SHAPE = budget.Shape(
    text_fields=("body",), group=lambda r: (r["path"], 1), group_name="definitions per file"
)


def _find(
    index: symbols_mod.SymbolIndex, req: models.FindSymbolRequest, limit: int
) -> list[symbols_mod.Symbol]:
    assert req.name is not None
    return index.find(
        req.name, kind=req.kind, path_glob=req.path_glob, language=req.language, limit=limit
    )


def _is_glob(name: str | None) -> bool:
    return bool(name) and any(c in (name or "") for c in "*?[")


def _is_exact(sym: symbols_mod.Symbol, name: str | None) -> bool:
    if not name:
        return False
    query = name.strip().replace("::", ".")
    if "." in query:
        full = f"{symbols_mod.module_name(sym.path)}.{sym.qualname}"
        return sym.qualname == query or full == query or full.endswith("." + query)
    return sym.name == query


def _add_bodies(
    gen: generations_mod.LoadedGeneration,
    index: symbols_mod.SymbolIndex,
    symbols: list[symbols_mod.Symbol],
    rows: list[dict[str, Any]],
    max_tokens: int | None,
) -> None:
    """Each row's body and context, within the byte budget; a cut body says where to resume."""
    left = navigation.byte_budget(max_tokens) - len(msgspec.json.encode(rows))
    for sym, row in zip(symbols, rows, strict=True):
        row["context"] = _context(index, sym)
        left -= len(msgspec.json.encode(row["context"]))
        try:
            lines = navigation.file_lines(gen, navigation.indexed_file(gen, sym.path))
        except errors.CodeIntelError:
            continue  # a file the tree no longer resolves: the row keeps its span
        body_lines = [x[: models.MAX_LINE_CHARS] for x in lines[sym.start_line - 1 : sym.end_line]]
        kept: list[str] = []
        for line in body_lines:
            cost = len(line.encode()) + 3
            if cost > left:
                break
            kept.append(line)
            left -= cost
        row["body"] = "\n".join(kept)
        if len(kept) < len(body_lines):
            row["truncated"] = True
            row["next_start_line"] = sym.start_line + len(kept)


def _context(index: symbols_mod.SymbolIndex, sym: symbols_mod.Symbol) -> dict[str, Any]:
    """The enclosing definition's signature and span, and the names and spans of the
    siblings nearest the definition."""
    context: dict[str, Any] = {}
    parent = index.get(sym.parent_id) if sym.parent_id is not None else None
    if parent is not None:
        context["parent"] = {
            "symbol_id": parent.id,
            "qualname": parent.qualname,
            "kind": parent.kind,
            "signature": parent.signature,
            "start_line": parent.start_line,
            "end_line": parent.end_line,
        }
    siblings, count = index.siblings(sym, MAX_SIBLINGS)
    context["siblings"] = [
        {"name": s.name, "kind": s.kind, "start_line": s.start_line, "end_line": s.end_line}
        for s in siblings
    ]
    if count > len(siblings):
        context["more_siblings"] = count - len(siblings)
    return context


# -- file_outline ------------------------------------------------------------------------------


def file_outline(
    gen: generations_mod.LoadedGeneration, req: models.FileOutlineRequest, repo: str
) -> dict[str, Any]:
    """The file_outline answer (blocking): nested definitions, no bodies."""
    index = index_of(gen, repo)
    entry, resolved = navigation.resolve_file(gen, req.path)
    outline = index.outline(resolved)
    symbols = outline.symbols if outline is not None else []
    nodes: dict[str, dict[str, Any]] = {}
    top: list[dict[str, Any]] = []
    for sym in symbols:
        node = _compact(sym, OUTLINE_NODE_FIELDS)
        nodes[sym.id] = node
        parent = nodes.get(sym.parent_id or "")
        if parent is not None:
            parent.setdefault("children", []).append(node)
        else:
            top.append(node)
    answer: dict[str, Any] = {
        "results": top,
        "path": req.path,
        "language": outline.language if outline is not None else None,
        "imports": msgspec.to_builtins(outline.imports) if outline and outline.imports else None,
        "symbols": len(symbols),
        "generation": gen.name,
        "commit": gen.commit,
    }
    if resolved != req.path:
        answer["resolved_path"] = resolved
    if outline is None:
        navigation.file_lines(gen, entry)  # a binary file is refused as read_file refuses it
        answer["notice"] = f"{entry.path!r} has no definitions the index knows (or no grammar)"
    return _fit_outline(answer, list(nodes.values()), req.max_tokens)


def _fit_outline(
    answer: dict[str, Any], nodes: list[dict[str, Any]], max_tokens: int | None
) -> dict[str, Any]:
    """Docs, then signatures, then nested rows go when the outline is over the budget."""
    limit = max_tokens or budget.DEFAULT_MAX_TOKENS
    steps = (
        ("short_snippets", "docs", "doc"),
        ("no_snippets", "docs and signatures", "signature"),
        ("counts_per_file", "nested definitions (methods) and all signatures", None),
    )
    for step, omitted, field in steps:
        answer["tokens"] = budget.estimate(answer)
        if answer["tokens"] <= limit:
            return answer
        if field is not None:
            for node in nodes:
                node.pop(field, None)
        else:
            for node in answer["results"]:
                kids = node.pop("children", None)
                if kids:
                    node["nested"] = len(kids)
        answer["degraded"] = {
            "step": step,
            "omitted": omitted,
            "hint": "ask find_symbol for a definition, or read_file for the lines",
        }
    answer["tokens"] = budget.estimate(answer)
    if answer["tokens"] > limit:
        answer["results"] = []
        answer["degraded"] = {
            "step": "count",
            "omitted": f"all {answer['symbols']} definitions",
            "hint": f"ask again with max_tokens={min(answer['tokens'] + 200, budget.MAX_MAX_TOKENS)}",
        }
        answer["tokens"] = budget.estimate(answer)
    return answer


# -- find_references ---------------------------------------------------------------------------


def pack(cursor: str | None) -> int:
    """The index's page cursor (``file:line:column``) as one non-negative offset (0: start)."""
    if cursor is None:
        return 0
    file_id, line, column = (int(p) for p in cursor.split(":"))
    return (file_id << (2 * _POSITION_BITS)) | (line << _POSITION_BITS) | min(column, 2**21 - 1)


def unpack(offset: int) -> str | None:
    if offset <= 0:
        return None
    mask = (1 << _POSITION_BITS) - 1
    file_id = offset >> (2 * _POSITION_BITS)
    return f"{file_id}:{(offset >> _POSITION_BITS) & mask}:{offset & mask}"


def find_references(
    gen: generations_mod.LoadedGeneration,
    req: models.FindReferencesRequest,
    repo: str,
    offset: int,
) -> dict[str, Any]:
    """One repository's page of find_references from ``offset`` (blocking).

    The answer's ``next_offset`` (popped by the caller) is where the next page starts."""
    index = index_of(gen, repo)
    target: str | symbols_mod.Symbol
    if req.symbol_id is not None:
        found = index.get(req.symbol_id)
        if found is None:
            raise errors.QueryError(
                f"no definition has symbol_id {req.symbol_id} at this commit; search by name",
                field="symbol_id",
            )
        target = found
    else:
        assert req.name is not None
        target = req.name
    try:
        refs = index.references(
            target, path_glob=req.path_glob, limit=req.limit, cursor=unpack(offset)
        )
    except errors.QueryError as e:
        if e.field == "cursor":
            raise errors.QueryError(
                "cursor does not continue this question at this commit", field="cursor"
            ) from e
        raise
    groups = [
        {
            "path": g.path,
            "symbol": g.symbol,
            "symbol_id": g.symbol_id,
            "start_line": g.start_line,
            "end_line": g.end_line,
            "occurrences": [
                {"line": o.line, "kind": o.kind, "text": o.text} for o in g.occurrences
            ],
        }
        for g in refs.groups
    ]
    return {
        "results": groups,
        "name": refs.name,
        "definitions": [symbol_row(s) for s in refs.definitions],
        "total": refs.total,
        "total_exact": True,
        "files": refs.files,
        "per_file": {fc.path: fc.count for fc in refs.per_file},
        "has_more": refs.has_more,
        "cursor": None,
        "next_offset": pack(refs.cursor) if refs.has_more else None,
        "generation": gen.name,
        "commit": gen.commit,
    }


def fit_references(
    answer: dict[str, Any], max_tokens: int | None, page_cursor: str | None
) -> dict[str, Any]:
    """Degrade a find_references answer to ``max_tokens`` in the shared steps.

    Steps 3-4 leave this page's rows out; ``cursor`` then re-reads it (``page_cursor``)."""
    limit = max_tokens or budget.DEFAULT_MAX_TOKENS
    occurrences = [o for g in answer["results"] for o in g["occurrences"]]
    full = budget.estimate(answer)
    hint = (
        f"this page needs about {full} tokens: ask again with max_tokens="
        f"{min(full + 200, budget.MAX_MAX_TOKENS)}, a smaller limit or a narrower path_glob"
    )

    def fits() -> bool:
        answer["tokens"] = budget.estimate(answer)
        return bool(answer["tokens"] <= limit)

    def degraded(step: str, omitted: str, advice: str = hint) -> bool:
        """Name the step ``answer`` is degraded to, and whether it fits now."""
        answer["degraded"] = {"step": step, "omitted": omitted, "hint": advice}
        return fits()

    if fits():
        return answer
    for o in occurrences:
        o["text"] = (o.get("text") or "")[:SHORT_LINE_CHARS]
    if degraded("short_snippets", f"line text beyond {SHORT_LINE_CHARS} characters"):
        return answer
    for o in occurrences:
        o.pop("text", None)
    if degraded("no_snippets", "line text"):
        return answer
    counts: dict[str, int] = {}
    for g in answer["results"]:
        key = f"{g['repo']}:{g['path']}" if "repo" in g else g["path"]
        counts[key] = counts.get(key, 0) + len(g["occurrences"])
    answer["results"] = []
    answer["counts"] = counts
    if page_cursor is not None or answer.get("has_more"):
        answer["has_more"] = True
        answer["cursor"] = page_cursor if page_cursor is not None else answer.get("cursor")
    omitted = f"the {len(occurrences)} occurrences of this page (counts gives them per file)"
    if degraded("counts_per_file", omitted):
        return answer
    answer.pop("counts", None)
    answer.pop("per_file", None)
    for key in ("definitions", "files", "total_exact"):
        answer.pop(key, None)
    advice = f"max_tokens={min(full + 200, budget.MAX_MAX_TOKENS)} or a smaller limit"
    degraded("count", "occurrences, counts and definitions", advice)
    return answer


# -- merging several repositories (fleet) or shards (router) -----------------------------------

_CATEGORY = {"source": 0, "test": 1, "vendored": 2}


def merge_symbols(
    parts: list[dict[str, Any]],
    req: models.FindSymbolRequest,
    skipped: dict[str, str] | None = None,
) -> dict[str, Any]:
    """find_symbol answers of several repositories (rows tagged with ``repo``), best first:
    exact matches, then source, tests, vendored; then repository, path and line."""
    rows = [row for part in parts for row in part["results"]]
    rows.sort(
        key=lambda r: (
            0 if _row_is_exact(r, req.name) else 1,
            _CATEGORY.get(r.get("category", "source"), 3),
            r.get("repo", ""),
            r["path"],
            r["start_line"],
        )
    )
    exact = sum(1 for r in rows if _row_is_exact(r, req.name))
    ambiguous = req.symbol_id is None and not _is_glob(req.name) and exact > 1
    keep = min(req.limit, MAX_CANDIDATES) if ambiguous else req.limit
    if ambiguous:
        for row in rows:
            row.pop("body", None)
            row.pop("context", None)
    total = sum(int(p.get("total", 0)) for p in parts)
    answer: dict[str, Any] = {
        "results": rows[:keep],
        "ambiguous": ambiguous,
        "total": total,
        "total_exact": all(p.get("total_exact", True) for p in parts),
        "has_more": total > keep,
        "cursor": None,
        **merging.envelope(parts, skipped),
    }
    if ambiguous:
        answer["notice"] = (
            f"{exact} definitions are named {req.name!r}; ask again with the symbol_id of the "
            "one you mean (and repos=[its repo]), or a qualified name"
        )
    return budget.fit(answer, req.max_tokens, _SYMBOL_SHAPE)


def _row_is_exact(row: dict[str, Any], name: str | None) -> bool:
    if not name:
        return True
    query = name.strip().replace("::", ".")
    if "." in query:
        return bool(row["qualname"] == query or row["qualname"].endswith("." + query))
    return bool(row["name"] == query)


def merge_references(
    parts: list[dict[str, Any]], skipped: dict[str, str] | None = None
) -> dict[str, Any]:
    """find_references pages of several repositories (rows tagged), in repository order."""
    parts = sorted(parts, key=lambda p: next(iter(p.get("repos") or {"": 0})))
    per_file: dict[str, int] = {}
    for part in parts:
        for path, count in (part.get("per_file") or {}).items():
            per_file[path] = count
    top = dict(sorted(per_file.items(), key=lambda kv: -kv[1])[:50])
    return {
        "results": [row for part in parts for row in part["results"]],
        "name": parts[0]["name"] if parts else "",
        "definitions": [row for part in parts for row in part.get("definitions", [])],
        "total": sum(int(p.get("total", 0)) for p in parts),
        "total_exact": all(p.get("total_exact", True) for p in parts),
        "files": sum(int(p.get("files", 0)) for p in parts),
        "per_file": top,
        "has_more": any(p.get("has_more") for p in parts),
        "cursor": None,
        **merging.envelope(parts, skipped),
    }


def tag_references(name: str, answer: dict[str, Any]) -> dict[str, Any]:
    """One repository's find_references page in the many-repository shape."""
    out = {k: v for k, v in answer.items() if k not in ("generation", "commit")}
    out["results"] = [{**row, "repo": name} for row in answer["results"]]
    out["definitions"] = [{**row, "repo": name} for row in answer["definitions"]]
    out["per_file"] = {f"{name}:{p}": c for p, c in (answer.get("per_file") or {}).items()}
    out["repos"] = {name: {"generation": answer["generation"], "commit": answer["commit"]}}
    return out
