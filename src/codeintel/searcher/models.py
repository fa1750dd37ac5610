"""The five tools' parameters and answers, one definition for REST, MCP and OpenAPI.

The limits (docs/architecture.md, Searcher, guard rails) live here as
constants and in the field constraints, so the OpenAPI schema, the MCP input
schemas and the validation an agent hits all say the same thing. Every string
anywhere in a request must be encodable as UTF-8 (JSON lets ``"\\ud800"``
through; the tokenizer, ripgrep and git cannot take it), and integers and
booleans are strict (``"k": true`` is not 1). Descriptions are written for an
agent choosing a tool: what the field means, its unit, its range.
"""

from __future__ import annotations

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


def _glob(value: str) -> str:
    try:
        globs.translate(_no_nul(value))
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


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @field_validator("*", mode="before")
    @classmethod
    def _valid_unicode(cls, value: Any) -> Any:
        problem = unencodable(value)
        if problem:
            raise ValueError(problem)
        return value


class SemanticSearchRequest(_Request):
    query: Annotated[
        Text,
        Field(
            min_length=1,
            max_length=MAX_QUERY_CHARS,
            description="What the code does, in natural language or code words "
            "(e.g. 'retry HTTP requests with exponential backoff').",
        ),
    ]
    k: Annotated[
        int, Strict(), Field(ge=1, le=MAX_K, description="Number of chunks to return.")
    ] = 20
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
            description="'semantic': embedding similarity (meaning); 'lexical': BM25 over "
            "chunk text (exact words, identifiers); 'hybrid': both, fused by reciprocal rank."
        ),
    ] = "semantic"


class SearchTextRequest(_Request):
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
        int, Strict(), Field(ge=1, le=MAX_RESULTS, description="Matching lines returned at most.")
    ] = 200


class ListPathsRequest(_Request):
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
        int, Strict(), Field(ge=1, le=MAX_RESULTS, description="Paths returned at most.")
    ] = 1000


class BlameRangeRequest(_Request):
    path: RepoPath
    start_line: Annotated[
        int, Strict(), Field(ge=1, le=10_000_000, description="First line, 1-based.")
    ]
    end_line: Annotated[
        int,
        Strict(),
        Field(
            ge=1,
            le=10_000_000,
            description=f"Last line, inclusive; at most {MAX_LINE_SPAN} lines per call.",
        ),
    ]

    def check(self) -> None:
        """Cross-field limits, raised as QueryError naming end_line."""
        if self.end_line < self.start_line:
            raise errors.QueryError("end_line must be >= start_line", field="end_line")
        if self.end_line - self.start_line + 1 > MAX_LINE_SPAN:
            raise errors.QueryError(
                f"line range is longer than {MAX_LINE_SPAN} lines", field="end_line"
            )


class FileHistoryRequest(_Request):
    path: RepoPath
    limit: Annotated[
        int,
        Strict(),
        Field(ge=1, le=MAX_HISTORY, description="Commits returned at most, newest first."),
    ] = 50


# -- answers (documented in OpenAPI; built as plain dicts for speed) ------------------------


class _Answer(BaseModel):
    generation: str = Field(description="Index generation that answered, e.g. 'g000042'.")
    commit: str = Field(description="Full sha of the commit every result is taken from.")


class SemanticHit(BaseModel):
    path: str
    start_line: int
    end_line: int
    score: float
    symbol: str | None
    language: str | None
    snippet: str
    truncated: bool = Field(
        default=False,
        description="Present and true when this row's text was cut (long lines, answer size).",
    )


class SemanticSearchResponse(_Answer):
    results: list[SemanticHit]
    mode: str
    truncated: bool = Field(
        description=f"True when text was cut: a line over {MAX_LINE_CHARS} characters, "
        f"or the answer over {MAX_ANSWER_TEXT_CHARS} characters of source text."
    )


class TextHit(BaseModel):
    path: str
    line: int
    column: int
    text: str
    truncated: bool = Field(
        default=False,
        description="Present and true when this row's text was cut (long lines, answer size).",
    )


class SearchTextResponse(_Answer):
    results: list[TextHit]
    truncated: bool = Field(
        description="True when matches were left out (more than max_results, or the "
        "timeout) or a line's text was cut."
    )


class PathEntry(BaseModel):
    path: str
    size: int
    mode: str


class ListPathsResponse(_Answer):
    results: list[PathEntry]
    total: int
    truncated: bool


class BlameHit(BaseModel):
    line: int
    sha: str
    short_sha: str
    author: str
    email: str
    date: str
    summary: str
    text: str
    truncated: bool = Field(
        default=False,
        description="Present and true when this row's text was cut (long lines, answer size).",
    )


class BlameRangeResponse(_Answer):
    results: list[BlameHit]
    path: str
    truncated: bool = Field(
        description=f"True when text was cut: a line over {MAX_LINE_CHARS} characters, "
        f"or the answer over {MAX_ANSWER_TEXT_CHARS} characters of source text."
    )


class HistoryHit(BaseModel):
    sha: str
    short_sha: str
    author: str
    email: str
    date: str
    summary: str


class FileHistoryResponse(_Answer):
    results: list[HistoryHit]
    path: str


class ErrorBody(BaseModel):
    type: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


Answer = dict[str, Any]
"""What a tool returns: a JSON object with ``results``, ``generation`` and ``commit``."""
