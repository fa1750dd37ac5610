"""The tools' parameters and limits, one definition for REST, MCP and OpenAPI.

(Their answers: :mod:`~codeintel.searcher.responses`, rows :mod:`~codeintel.searcher.rows`.)

The limits (docs/architecture.md, Searcher, guard rails) live here as
constants and in the field constraints, so the OpenAPI schema, the MCP input
schemas and the validation an agent hits all say the same thing. Every string
anywhere in a request must be encodable as UTF-8 (JSON lets ``"\\ud800"``
through; the tokenizer, ripgrep and git cannot take it), and integers and
booleans are strict (``"k": true`` is not 1). Descriptions are written for an
agent choosing a tool: what the field means, its unit, its range.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, field_validator

from codeintel.core import errors, globs
from codeintel.searcher import paths

MAX_K = 100
MAX_RESULTS = 10_000
MAX_LINE_SPAN = 5_000
MAX_HISTORY = 500
MAX_QUERY_CHARS = 2_000
MAX_BODY_BYTES = 1 << 20
MAX_GLOBS = 64
MAX_LINE_CHARS = 500
"""Snippet, blame and matched lines are cut to this many characters (minified files)."""
MAX_ANSWER_TEXT_CHARS = 512_000
"""Characters of source text (snippets, blame lines) one answer carries at most: a whole
5 000-line blame of ordinary code (up to ~100 characters a line) fits; a pathological
file is cut instead of making a multi-megabyte answer."""


def unencodable(value: Any) -> str | None:
    """Where a string inside ``value`` cannot be UTF-8 (a lone surrogate), else None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            return f"invalid Unicode: lone surrogate {value[e.start]!a} at character {e.start}"
        return None
    if isinstance(value, list | tuple):
        return next((p for p in map(unencodable, value) if p), None)
    if isinstance(value, dict):
        return next((p for p in map(unencodable, [*value, *value.values()]) if p), None)
    return None


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL bytes")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain more than whitespace")
    return value


def _glob(value: str) -> str:
    try:
        globs.compile_one(_no_nul(value))
    except errors.ConfigError as e:
        raise ValueError(str(e)) from e
    return value


def _repo_path(value: str) -> str:
    try:
        return paths.normalise(value)
    except errors.QueryError as e:
        raise ValueError(str(e)) from e


def _repo_dir(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return paths.normalise(value, allow_root=True)
    except errors.QueryError as e:
        raise ValueError(str(e)) from e


Text = Annotated[str, AfterValidator(_no_nul)]
Glob = Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_glob)]
RepoPath = Annotated[
    str,
    Field(
        min_length=1,
        max_length=paths.MAX_PATH_CHARS,
        description="File path relative to the repository root, e.g. 'src/app/main.py'.",
    ),
    AfterValidator(_repo_path),
]


MAX_REPOS = 1_000
"""Names or globs one request may list in ``repos``."""


def _repo_name(value: str) -> str:
    value = _no_nul(value).strip().strip("/")
    if not value:
        raise ValueError("must name a repository ('namespace/name')")
    return value


RepoName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=256,
        description="A served repository, 'namespace/name' (list_repos shows them).",
    ),
    AfterValidator(_repo_name),
]
RepoSelector = Annotated[
    str,
    Field(min_length=1, max_length=256),
    AfterValidator(_repo_name),
    AfterValidator(_glob),
]
Repos = Annotated[
    list[RepoSelector] | None,
    Field(
        max_length=MAX_REPOS,
        description="Repositories to search: names ('team/api') or globs ('team/*', 'api' "
        "matches that name in any namespace); omit for every served repository.",
    ),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("*", mode="before")
    @classmethod
    def _valid_unicode(cls, value: Any) -> Any:
        problem = unencodable(value)
        if problem:
            raise ValueError(problem)
        return value


OneOrMore = Annotated[int, Strict(), Field(ge=1)]
"""A JSON integer from 1 (a page size, a line number); each field adds its ``le`` and
description (pydantic merges the two Fields)."""

MaxTokens = Annotated[
    int | None,
    Strict(),
    Field(
        ge=500,
        le=400_000,
        description="Budget for this answer in tokens (default 8000). Over it the answer "
        "degrades in steps (shorter snippets, no snippets, counts per file, a count) and says "
        "which in `degraded`; every answer reports its size in `tokens`.",
    ),
]
Cursor = Annotated[
    str | None,
    Field(
        max_length=8192,
        description="The `cursor` of the previous answer, to get the next page (same "
        "parameters otherwise). Pages read the commit the first page read; 410 when that "
        "index is gone: start again without a cursor.",
    ),
]


# The row fields each tool's ``fields`` projection may leave out, declared once: the
# projection (tools._project) and the published rows (rows.py) read them with get_args.
SemanticField = Literal["score", "symbol", "language", "snippet"]
TextField = Literal["column", "text"]
PathField = Literal["size", "mode"]
BlameField = Literal["author", "email", "date", "summary", "text"]
HistoryField = Literal["sha", "author", "email", "date", "summary"]


def _fields(choice: Any) -> Any:
    """The ``fields`` projection's description and size limit for a tool's optional row fields."""
    names = typing.get_args(choice)
    return Field(
        max_length=len(names),
        description="Row fields to return besides the location; omit for all. E.g. "
        f"leave out {names[-1]!r} to save tokens. Choices: {', '.join(names)}.",
    )


class _ManyRepos(_Request):
    repos: Repos = None
    max_tokens: MaxTokens = None


class _OneRepo(_Request):
    max_tokens: MaxTokens = None
    repo: Annotated[
        RepoName | None,
        Field(description="The repository the path belongs to; needed when several are served."),
    ] = None


class SemanticSearchRequest(_ManyRepos):
    query: Annotated[
        Text,
        AfterValidator(_not_blank),
        Field(
            min_length=1,
            max_length=MAX_QUERY_CHARS,
            description="What the code does, in natural language or code words "
            "(e.g. 'retry HTTP requests with exponential backoff').",
        ),
    ]
    k: Annotated[OneOrMore, Field(le=MAX_K, description="Number of chunks to return.")] = 20
    path_glob: Annotated[
        Glob | None,
        Field(description="Only chunks whose path matches this glob, e.g. 'src/**/*.py'."),
    ] = None
    language: Annotated[
        Text | None,
        Field(max_length=64, description="Only chunks of this language, e.g. 'python', 'go'."),
    ] = None
    mode: Annotated[
        Literal["semantic", "hybrid", "lexical"],
        Field(
            description="'hybrid' (default): both rankings fused, leaning on BM25 for "
            "identifiers and names, both equally for questions; 'semantic': embedding similarity "
            "(meaning); 'lexical': BM25 over chunk text, symbol and path (words, identifiers)."
        ),
    ] = "hybrid"
    cursor: Cursor = None
    fields: Annotated[
        list[SemanticField] | None,
        _fields(SemanticField),
    ] = None


class SearchTextRequest(_ManyRepos):
    pattern: Annotated[
        Text,
        Field(
            min_length=1,
            max_length=MAX_QUERY_CHARS,
            description="Literal text to find, or a Rust-syntax regular expression when regex=true.",
        ),
    ]
    regex: Annotated[
        bool, Strict(), Field(description="Treat pattern as a regular expression.")
    ] = False
    case_sensitive: Annotated[bool, Strict(), Field(description="Match case exactly.")] = True
    path_glob: Annotated[
        Glob | None, Field(description="Only files matching this glob, e.g. '*.py' or 'src/**'.")
    ] = None
    max_results: Annotated[
        OneOrMore, Field(le=MAX_RESULTS, description="Matching lines returned at most (a page).")
    ] = 200
    cursor: Cursor = None
    fields: Annotated[list[TextField] | None, _fields(TextField)] = None


class ListPathsRequest(_ManyRepos):
    path: Annotated[
        str | None,
        Field(
            max_length=paths.MAX_PATH_CHARS,
            description="Directory (or file) to list under; omit for the whole repository.",
        ),
        AfterValidator(_repo_dir),
    ] = None
    include_globs: Annotated[
        list[Glob] | None,
        Field(max_length=MAX_GLOBS, description="Keep only paths matching one of these globs."),
    ] = None
    exclude_globs: Annotated[
        list[Glob] | None,
        Field(max_length=MAX_GLOBS, description="Drop paths matching any of these globs."),
    ] = None
    max_results: Annotated[
        OneOrMore, Field(le=MAX_RESULTS, description="Paths returned at most (a page).")
    ] = 1000
    cursor: Cursor = None
    fields: Annotated[list[PathField] | None, _fields(PathField)] = None


class BlameRangeRequest(_OneRepo):
    path: RepoPath
    start_line: Annotated[OneOrMore, Field(le=10_000_000, description="First line, 1-based.")]
    end_line: Annotated[
        OneOrMore,
        Field(
            le=10_000_000,
            description=f"Last line, inclusive; at most {MAX_LINE_SPAN} lines per call.",
        ),
    ]
    max_results: Annotated[
        OneOrMore,
        Field(
            le=MAX_LINE_SPAN,
            description="Line ranges (consecutive lines of one commit) returned at most (a page).",
        ),
    ] = 1000
    cursor: Cursor = None
    fields: Annotated[
        list[BlameField] | None,
        _fields(BlameField),
    ] = None

    def check(self) -> None:
        """Cross-field limits, raised as QueryError naming end_line."""
        if self.end_line < self.start_line:
            raise errors.QueryError("end_line must be >= start_line", field="end_line")
        if self.end_line - self.start_line + 1 > MAX_LINE_SPAN:
            raise errors.QueryError(
                f"line range is longer than {MAX_LINE_SPAN} lines", field="end_line"
            )


class FileHistoryRequest(_OneRepo):
    path: RepoPath
    limit: Annotated[
        OneOrMore,
        Field(le=MAX_HISTORY, description="Commits returned at most, newest first (a page)."),
    ] = 50
    cursor: Cursor = None
    fields: Annotated[
        list[HistoryField] | None,
        _fields(HistoryField),
    ] = None


class ListReposRequest(_ManyRepos):
    pass


class VectorSearchRequest(_Request):
    """The router's internal semantic_search: the request plus the query vector it
    embedded once for every shard (base64 float32, little-endian), and its model."""

    request: SemanticSearchRequest
    vector: Annotated[str, Field(min_length=4, max_length=200_000)]
    model: Annotated[str, Field(min_length=1, max_length=256)]

    def vector_array(self) -> Any:
        import base64
        import binascii

        import numpy as np

        try:
            raw = base64.b64decode(self.vector, validate=True)
        except (binascii.Error, ValueError) as e:
            raise errors.QueryError(f"vector is not base64: {e}", field="vector") from e
        if len(raw) % 4:
            raise errors.QueryError("vector is not a float32 array", field="vector")
        xq = np.frombuffer(raw, dtype="<f4")
        if not np.all(np.isfinite(xq)):
            raise errors.QueryError("vector has non-finite values", field="vector")
        return xq


Answer = dict[str, Any]
"""What a tool returns: a JSON object with ``results``, ``generation`` and ``commit``."""


# -- navigation: read_file, find_symbol, file_outline, find_references ---------------------

MAX_READ_LINES = 2_000
"""Lines one read_file call returns at most; ask again from ``next_start_line``."""


class ReadFileRequest(_OneRepo):
    path: RepoPath
    start_line: Annotated[
        int | None,
        Strict(),
        Field(ge=1, le=10_000_000, description="First line to return, 1-based (default 1)."),
    ] = None
    end_line: Annotated[
        int | None,
        Strict(),
        Field(
            ge=1,
            le=10_000_000,
            description="Last line, inclusive (default: 200 lines from start_line; at most "
            f"{MAX_READ_LINES} lines per call).",
        ),
    ] = None


MAX_SYMBOLS = 100
"""find_symbol results at most per call."""
MAX_REFERENCES = 1_000
"""find_references occurrences at most per page."""
SYMBOL_KINDS = (
    "class",
    "function",
    "method",
    "interface",
    "struct",
    "enum",
    "type",
    "trait",
    "impl",
    "module",
    "constant",
    "variable",
)

SymbolName = Annotated[
    Text | None,
    Field(
        min_length=1,
        max_length=500,
        description="The name: plain ('parse'), qualified ('Circle.area', "
        "'pkg.shapes.Circle.area', 'Foo::bar') or a glob ('parse_*', 'Circle.*').",
    ),
]
SymbolId = Annotated[
    str | None,
    Field(
        min_length=16,
        max_length=16,
        pattern="^[0-9a-f]{16}$",
        description="A symbol_id from an earlier answer (find_symbol, file_outline, "
        "find_references), instead of name: exactly that definition.",
    ),
]


class _ByName(_Request):
    name: SymbolName = None
    symbol_id: SymbolId = None

    def check(self) -> None:
        """Exactly one of name and symbol_id."""
        if (self.name is None) == (self.symbol_id is None):
            raise errors.QueryError("give either name or symbol_id (exactly one)", field="name")


class FindSymbolRequest(_ByName, _ManyRepos):
    kind: Annotated[
        Text | None,
        Field(
            max_length=32,
            description="Only definitions of this kind: " + ", ".join(SYMBOL_KINDS) + ".",
        ),
    ] = None
    path_glob: Annotated[
        Glob | None, Field(description="Only definitions in files matching this glob.")
    ] = None
    language: Annotated[
        Text | None, Field(max_length=64, description="Only definitions in this language.")
    ] = None
    include_body: Annotated[
        bool,
        Strict(),
        Field(
            description="Also return each definition's source (within max_tokens), with the "
            "enclosing class's signature and the names and spans of its siblings."
        ),
    ] = False
    limit: Annotated[
        OneOrMore, Field(le=MAX_SYMBOLS, description="Definitions returned at most, best first.")
    ] = 10


class FileOutlineRequest(_OneRepo):
    path: RepoPath


class FindReferencesRequest(_ByName, _ManyRepos):
    path_glob: Annotated[
        Glob | None, Field(description="Only occurrences in files matching this glob.")
    ] = None
    limit: Annotated[
        OneOrMore, Field(le=MAX_REFERENCES, description="Occurrences returned at most (a page).")
    ] = 100
    cursor: Cursor = None
