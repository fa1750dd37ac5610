"""The tool catalogue: one row per tool, which REST, MCP and the router all loop over.

A row names the tool and carries what an agent reads when choosing it (title,
description), the request model that validates its parameters (and so the
OpenAPI and MCP input schemas) and the response model OpenAPI documents and MCP
publishes as the output schema. Each
serving object (:class:`~tools.Tools` over one store, :class:`~fleet.FleetTools`
over many, :class:`~router.Router` over shards) has one async method per row,
named after the tool, so adding a tool is adding a row and those methods.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import pydantic

from codeintel.searcher import models, responses

INSTRUCTIONS = """\
codeintel answers questions about git repositories, each as of one indexed commit
(every answer names the `generation` and `commit` it read, per repository in `repos`).
You have no checkout: read and navigate the code through these tools.
- Which repositories can I ask about? list_repos.
- Don't know where something is implemented? semantic_search (natural language; mode=hybrid
  when the query also contains identifiers).
- Know an exact string, identifier or regex? search_text.
- Know a name and want its definition? find_symbol (plain 'parse', qualified 'Circle.area',
  or a glob); include_body=true gives the code with its class and siblings. An ambiguous name
  lists candidates: ask again with the symbol_id you mean.
- Who calls or uses a name? find_references (grouped by the calling function; page with cursor).
- What is in a file? file_outline (classes, functions, methods, spans; no bodies).
- Need the lines themselves? read_file (path, start_line, end_line; continue at next_start_line).
- Need the layout or the files of a directory? list_paths.
- Who wrote these lines and why? blame_range. How did a file evolve? file_history.
When several repositories are served, `repos` narrows a search, find_symbol and
find_references, and `repo` names the one repository read_file, file_outline, blame_range
and file_history read. Answers stay under `max_tokens` (default 8000): a cut answer says
what it left out in `degraded` and how to get the rest; lists page with `cursor`.
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Tool:
    name: str
    title: str
    description: str
    request: type[pydantic.BaseModel]
    response: type[pydantic.BaseModel]


class Service(Protocol):
    """What REST and MCP call: one tool by name, with metrics, on a validated request."""

    async def call(self, name: str, request: Any) -> dict[str, Any]: ...


CATALOG: tuple[Tool, ...] = (
    Tool(
        "semantic_search",
        "Search code by meaning",
        "Find the code that does something, by meaning. Give a natural-language description "
        "('where are invoices parsed', 'retry with exponential backoff'); returns the best "
        "matching chunks (functions, classes or line windows) with path, line range, symbol, "
        "language, score and a snippet. mode='hybrid' also ranks exact words (good when the "
        "query mixes prose and identifiers); mode='lexical' ranks words only (BM25). Narrow "
        "with path_glob ('src/**/*.py'), language ('python') or repos. For exact strings use "
        "search_text instead.",
        models.SemanticSearchRequest,
        responses.SemanticSearchResponse,
    ),
    Tool(
        "search_text",
        "Search text (ripgrep)",
        "Find every line containing an exact string (or a regular expression with regex=true, "
        "Rust regex syntax) at the indexed commit, like grep/ripgrep. Returns path, 1-based "
        "line and column, and the line text, sorted by repository, path and line; 'truncated' "
        "is true when more than max_results lines matched. Use for identifiers, error "
        "messages, config keys; use semantic_search when you only know what the code does.",
        models.SearchTextRequest,
        responses.SearchTextResponse,
    ),
    Tool(
        "list_paths",
        "List repository paths",
        "List files at the indexed commit, optionally under a directory ('src/app') and "
        "filtered by include_globs / exclude_globs (gitignore-style: '*.py', 'tests/**'). "
        "Returns path, size in bytes and git mode, sorted; 'total' counts all matches and "
        "'truncated' says whether max_results cut the list.",
        models.ListPathsRequest,
        responses.ListPathsResponse,
    ),
    Tool(
        "blame_range",
        "Blame a line range",
        "Who last changed each line of a file, for lines start_line..end_line (1-based, "
        "inclusive, at most 5000 lines): ranges of consecutive lines of one commit in line "
        "order, each [lines, commit, text] (a range starts where the previous one ended, the "
        "first at start_line); each commit once in the `commits` columns (short sha, author "
        "as an index into `authors`, ISO-8601 date, summary). `fields` leaves out text or "
        "metadata. Use to find why code looks the way it does; follow up with file_history.",
        models.BlameRangeRequest,
        responses.BlameRangeResponse,
    ),
    Tool(
        "file_history",
        "History of a file",
        "The commits that changed a file (or a directory), newest first, up to 'limit' "
        "(default 50, at most 500): full and short sha, author, email, ISO-8601 date and "
        "summary. A file's history follows it across renames (git log --follow). Use to see "
        "how and when a file evolved.",
        models.FileHistoryRequest,
        responses.FileHistoryResponse,
    ),
    Tool(
        "read_file",
        "Read lines of a file",
        "Numbered lines of one file at the indexed commit: start_line..end_line (1-based, "
        "inclusive; default 200 lines from start_line, at most 2000 per call). Long "
        "lines are cut at 500 characters and the answer stays under max_tokens; when lines "
        "were left out, 'truncated' is true and 'next_start_line' is where to continue. "
        "'total_lines' is the file's length. Use after a search hit to see the code around "
        "it; name `repo` when several repositories are served.",
        models.ReadFileRequest,
        responses.ReadFileResponse,
    ),
    Tool(
        "find_symbol",
        "Find a definition by name",
        "Jump to the definition of a name: a plain name ('parse'), a qualified one "
        "('Circle.area', 'pkg.shapes.Circle.area', 'Foo::bar') or a glob ('parse_*'), or a "
        "symbol_id from an earlier answer. Each result: symbol_id, qualified name, kind, path, "
        "line span, signature, first doc line, parent. Exact matches first; source above tests "
        "above vendored code. A name defined several times is 'ambiguous': up to 10 candidates "
        "with their ids, and you ask again by symbol_id. include_body=true adds the source and "
        "the enclosing class's signature and the sibling definitions' names and spans, so you "
        "rarely need to read the whole file. Narrow with kind, language, path_glob or repos.",
        models.FindSymbolRequest,
        responses.FindSymbolResponse,
    ),
    Tool(
        "file_outline",
        "Outline of a file",
        "The definitions of one file, nested (classes with their methods): kind, name, "
        "symbol_id, line span, signature and first doc line, no bodies; and the span of the "
        "imports. Cheaper than reading the file to see what it holds; follow with "
        "find_symbol(symbol_id, include_body=true) or read_file for the lines you need.",
        models.FileOutlineRequest,
        responses.FileOutlineResponse,
    ),
    Tool(
        "find_references",
        "Find references to a name",
        "Who uses a name: every occurrence of the identifier at the indexed commit (from the "
        "parse, never in comments or strings), grouped by the enclosing definition (qualified "
        "name and span), each with its line number, kind (call, import, other) and line text. "
        "The definitions are listed apart in 'definitions', not as references. Give name or "
        "symbol_id (its name is searched). 'total' counts every occurrence; page with "
        "'cursor' while 'has_more'. A very common name answers with counts per file within "
        "max_tokens; narrow with path_glob or repos.",
        models.FindReferencesRequest,
        responses.FindReferencesResponse,
    ),
    Tool(
        "list_repos",
        "List served repositories",
        "The repositories this server answers about: name (what `repos` and `repo` take), "
        "URL, ref, indexed commit and generation, vector counts, index type, when the index "
        "was last updated and its embedding model. Semantic search can span repositories "
        "of one embedding model at a time.",
        models.ListReposRequest,
        responses.ListReposResponse,
    ),
)

BY_NAME: dict[str, Tool] = {tool.name: tool for tool in CATALOG}
