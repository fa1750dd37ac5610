"""The five tools as an MCP server (official SDK, ``MCPServer``), for HTTP and stdio.

Tool signatures are generated from the request models in :mod:`models`, so
the MCP input schemas carry exactly the REST limits and descriptions; each
tool validates into the same model and calls the same :class:`~tools.Tools`
method as REST. The descriptions are written for an agent choosing between
tools: what question each answers, and when another tool is the better pick.
Errors come back as MCP tool errors (``isError``) whose text names the HTTP
status REST would have given, the error type and the field at fault.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import pydantic
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

from codeintel.core import errors
from codeintel.searcher import models
from codeintel.searcher import tools as tools_mod

INSTRUCTIONS = """\
codeintel answers questions about one git repository, always as of one indexed commit
(every answer names its `generation` and `commit`).
- Don't know where something is implemented? semantic_search (natural language; mode=hybrid
  when the query also contains identifiers).
- Know an exact string, identifier or regex? search_text.
- Need the layout or the files of a directory? list_paths.
- Who wrote these lines and why? blame_range. How did a file evolve? file_history.
"""

DESCRIPTIONS: dict[str, str] = {
    "semantic_search": (
        "Find the code that does something, by meaning. Give a natural-language description "
        "('where are invoices parsed', 'retry with exponential backoff'); returns the best "
        "matching chunks (functions, classes or line windows) with path, line range, symbol, "
        "language, score and a snippet. mode='hybrid' also ranks exact words (good when the "
        "query mixes prose and identifiers); mode='lexical' ranks words only (BM25). Narrow "
        "with path_glob ('src/**/*.py') or language ('python'). For exact strings use "
        "search_text instead."
    ),
    "search_text": (
        "Find every line containing an exact string (or a regular expression with regex=true, "
        "Rust regex syntax) in the repository at the indexed commit, like grep/ripgrep. "
        "Returns path, 1-based line and column, and the line text, sorted by path and line; "
        "'truncated' is true when more than max_results lines matched. Use for identifiers, "
        "error messages, config keys; use semantic_search when you only know what the code does."
    ),
    "list_paths": (
        "List files of the repository at the indexed commit, optionally under a directory "
        "('src/app') and filtered by include_globs / exclude_globs (gitignore-style: '*.py', "
        "'tests/**'). Returns path, size in bytes and git mode, sorted; 'total' counts all "
        "matches and 'truncated' says whether max_results cut the list."
    ),
    "blame_range": (
        "Who last changed each line of a file, for lines start_line..end_line (1-based, "
        "inclusive, at most 5000 lines): commit sha (full and short), author, email, ISO-8601 "
        "date and commit summary per line, plus the line text. Use to find why code looks "
        "the way it does; follow up with file_history."
    ),
    "file_history": (
        "The commits that changed a file (or a directory), newest first, up to 'limit' "
        "(default 50, at most 500): full and short sha, author, email, ISO-8601 date and "
        "summary. A file's history follows it across renames (git log --follow). Use to "
        "see how and when a file evolved."
    ),
}


class CallTool:
    """Run a tool by name with REST-equal metrics; how the MCP server reaches the context."""

    def __init__(self, tools: Callable[[], tools_mod.Tools]) -> None:
        self._tools = tools

    async def __call__(self, name: str, request: pydantic.BaseModel) -> dict[str, Any]:
        tools = self._tools()
        handler: Callable[[Any], Awaitable[dict[str, Any]]] = getattr(tools, name)
        try:
            result: dict[str, Any] = await tools.call(name, handler, request)
        except errors.CodeIntelError as e:
            body = tools_mod.error_body(e)["error"]
            where = f" (field: {body['field']})" if body["field"] else ""
            raise ToolError(
                f"{tools_mod.status_for(e)} {body['type']}: {body['message']}{where}"
            ) from e
        return result


def _tool_function(
    name: str, model: type[pydantic.BaseModel], call: CallTool
) -> Callable[..., Awaitable[dict[str, Any]]]:
    """An async function whose signature mirrors ``model``'s fields, for MCPServer to introspect."""

    async def tool(**arguments: Any) -> dict[str, Any]:
        try:
            request = model.model_validate(arguments)
        except pydantic.ValidationError as e:
            fields = ", ".join(".".join(map(str, err["loc"])) for err in e.errors())
            raise ToolError(f"422 ValidationError: {e.errors()[0]['msg']} (field: {fields})") from e
        return await call(name, request)

    params = [
        inspect.Parameter(
            field_name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[field.annotation, field],
            default=inspect.Parameter.empty if field.is_required() else field.default,
        )
        for field_name, field in model.model_fields.items()
    ]
    tool.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        params, return_annotation=dict[str, Any]
    )
    tool.__name__ = name
    tool.__doc__ = DESCRIPTIONS[name]
    return tool


TOOL_MODELS: dict[str, type[pydantic.BaseModel]] = {
    "semantic_search": models.SemanticSearchRequest,
    "search_text": models.SearchTextRequest,
    "list_paths": models.ListPathsRequest,
    "blame_range": models.BlameRangeRequest,
    "file_history": models.FileHistoryRequest,
}

TITLES = {
    "semantic_search": "Search code by meaning",
    "search_text": "Search text (ripgrep)",
    "list_paths": "List repository paths",
    "blame_range": "Blame a line range",
    "file_history": "History of a file",
}


def build_server(tools: Callable[[], tools_mod.Tools]) -> MCPServer[Any]:
    """An MCPServer exposing the five tools; ``tools`` returns the live context's Tools."""
    server: MCPServer[Any] = MCPServer(
        name="codeintel",
        title="codeintel",
        instructions=INSTRUCTIONS,
        log_level="WARNING",
    )
    call = CallTool(tools)
    for name, model in TOOL_MODELS.items():
        server.add_tool(
            _tool_function(name, model, call),
            name=name,
            title=TITLES[name],
            description=DESCRIPTIONS[name],
            annotations=ToolAnnotations(
                read_only_hint=True,
                destructive_hint=False,
                idempotent_hint=True,
                open_world_hint=False,
            ),
        )
    return server
