"""The tools' answers as published: the JSON object around the rows, per tool.

Answers are built as plain dicts for speed (msgspec records turned into rows,
:mod:`~codeintel.searcher.rows`); these models document them in OpenAPI and are the
MCP output schemas, which the MCP SDK checks every structured answer against.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from codeintel.searcher import models, rows


class RepoVersion(BaseModel):
    generation: str
    commit: str


class _Answer(BaseModel):
    generation: str | None = Field(
        None,
        description="Index generation that answered, e.g. 'g000042' (absent when the answer "
        "read several repositories: see `repos`; 'indexing' when `serve PATH` answered from "
        "the commit its first index is being built from).",
    )
    commit: str | None = Field(
        None, description="Full sha of the commit every result is taken from."
    )
    repos: dict[str, RepoVersion] | None = Field(
        None,
        description="Every repository the answer read, with the generation and commit it "
        "was answered from (searchers serving many repositories, and the router).",
    )
    skipped: dict[str, str] | None = Field(
        None,
        description="Selected repositories that could not answer (no generation yet, a "
        "refused index, an unavailable embedding model), with the reason.",
    )
    partial: bool | None = Field(
        None, description="True when some shards did not answer (router); see missing_shards."
    )
    missing_shards: list[str] | None = Field(
        None, description="Shards whose repositories are absent from a partial answer."
    )
    tokens: int | None = Field(
        None,
        description="This answer's size in tokens (estimated: compact JSON bytes / 1.7, "
        "blame_range's line text / 2.2, calibrated on the embedding model's tokenizer).",
    )
    degraded: Degraded | None = Field(
        None, description="Present when the answer was cut to fit max_tokens: how, and how to ask."
    )
    notice: str | None = Field(
        None,
        description="A caveat about this answer (e.g. lexical results while embeddings are built).",
    )


class Degraded(BaseModel):
    step: Literal["short_snippets", "no_snippets", "counts_per_file", "count"] = Field(
        description="The last step taken: shorter snippets, no snippets, counts per file, a count."
    )
    omitted: str = Field(description="What the answer left out.")
    hint: str = Field(description="How to ask for the rest.")


class _Page(_Answer):
    total: int | None = Field(
        None, description="Rows in all pages (a lower bound when total_exact is false)."
    )
    total_exact: bool | None = Field(
        None, description="False when `total` is a lower bound (counting all would cost too much)."
    )
    has_more: bool | None = Field(None, description="True when a next page exists: pass `cursor`.")
    cursor: str | None = Field(None, description="Pass back as `cursor` for the next page.")
    counts: dict[str, int] | None = Field(
        None,
        description="Rows per file (per directory for list_paths, lines per commit for "
        "blame_range) when the budget left the rows out (degraded.step 'counts_per_file').",
    )


_TEXT_CUT = (
    f"True when text was cut: a line over {models.MAX_LINE_CHARS} characters, "
    f"or the answer over {models.MAX_ANSWER_TEXT_CHARS} characters of source text."
)


class SemanticSearchResponse(_Page):
    results: list[rows.SemanticHit]
    mode: str
    truncated: bool = Field(description=_TEXT_CUT)


class SearchTextResponse(_Page):
    results: list[rows.TextHit]
    truncated: bool = Field(
        description="True when matches were left out (more than max_results, or the "
        "timeout) or a line's text was cut."
    )


class ListPathsResponse(_Page):
    results: list[rows.PathEntry]
    truncated: bool


class BlameRangeResponse(_Page):
    results: list[rows.BlameRange] = Field(
        description="Ranges of consecutive lines last changed by one commit, in line order "
        "and without gaps from `start_line`."
    )
    commits: rows.BlameCommits | None = Field(
        None, description="The commits the ranges (or `counts`) name, once each."
    )
    authors: rows.BlameAuthors | None = Field(
        None,
        description="The authors of those commits, once each (absent when `fields` "
        "leaves out author and email).",
    )
    path: str
    start_line: int | None = Field(None, description="First line of this page's first range.")
    end_line: int | None = Field(None, description="Last line of this page's last range.")
    repo: str | None = Field(None, description="The repository read (when several are served).")
    truncated: bool = Field(description=_TEXT_CUT)


class FileHistoryResponse(_Page):
    results: list[rows.HistoryHit]
    path: str


class ListReposResponse(BaseModel):
    results: list[rows.RepoInfo]
    partial: bool | None = None
    missing_shards: list[str] | None = None


class ErrorBody(BaseModel):
    type: str
    message: str
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class ReadFileResponse(_Answer):
    results: list[rows.FileLine] = Field(description="The lines, in order, each with its number.")
    path: str
    resolved_path: str | None = Field(
        None, description="The file read, when `path` is a symlink inside the repository."
    )
    repo: str | None = Field(None, description="The repository read (when several are served).")
    start_line: int
    end_line: int = Field(description="Last line returned (start_line - 1 when none).")
    total_lines: int = Field(description="Lines in the whole file.")
    truncated: bool = Field(
        description="True when lines of the range asked for were left out (see "
        "next_start_line) or a line was cut."
    )
    next_start_line: int | None = Field(
        None, description="Ask again with this start_line to continue; null when done."
    )


class FindSymbolResponse(_Page):
    results: list[rows.SymbolRow]
    ambiguous: bool = Field(
        description="True when a plain name matched several definitions exactly: ask again "
        "with one symbol_id (or a qualified name) for the one you mean."
    )


class FileOutlineResponse(_Answer):
    results: list[rows.OutlineRow] = Field(description="Top-level definitions, nested by scope.")
    path: str
    repo: str | None = None
    language: str | None = None
    imports: dict[str, int] | None = Field(
        None, description="start_line and end_line of the top-level imports, where known."
    )
    symbols: int = Field(description="Definitions in the file, nested ones included.")


class FindReferencesResponse(_Page):
    results: list[rows.ReferenceGroupRow] = Field(
        description="Occurrences grouped by enclosing definition, in file order."
    )
    name: str = Field(description="The identifier whose occurrences are listed.")
    definitions: list[rows.SymbolRow] | None = Field(
        None, description="Where the name is defined (left out of results)."
    )
    files: int | None = Field(None, description="Files with at least one occurrence.")
    per_file: dict[str, int] | None = Field(
        None, description="Occurrences per file for the files with the most."
    )
