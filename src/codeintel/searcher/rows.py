"""Answer rows, each declared once: by the msgspec record that builds it.

A tool builds each row of its answer from a msgspec record (a search ``Hit``, a
``LogEntry``, a ``Symbol``, …) with ``msgspec.to_builtins``, so that record's
annotations already say the row's fields, types and descriptions
(``Annotated[T, msgspec.Meta(description=...)]``). FastAPI's OpenAPI document and
the MCP SDK's output schema (which also checks every structured answer) take
pydantic models, so a :class:`Row` subclass names its record and how the answer
differs from it, and ``Row.__init_subclass__`` writes the record's fields into the
class before pydantic collects them (no private pydantic API):

* ``rename`` — a field published under another name (``Symbol.id`` is ``symbol_id``);
* ``omit`` — fields the answer never carries (a tree entry's blob id);
* ``optional`` — fields an answer may leave out (the ``fields`` projection, an empty
  docstring): published as ``T | None`` with default ``None``.

Every other record field is required in the row, whatever its default in the
record (a default there is for reading old stores). Fields the answer adds
(``repo``, ``truncated``, a body) are declared on the row class, after the record's;
one declared there with a record field's name replaces its type in place (a nested
record published as its row). Rows no record builds (blame ranges, file lines,
list_repos rows, made as dicts) are declared here directly.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Collection, Mapping
from typing import Annotated, Any

import msgspec
import pydantic
from pydantic import Field

from codeintel.core import git, history, hits, symbols
from codeintel.core.store import manifest
from codeintel.searcher import models, textsearch


def _published(record: type[msgspec.Struct], field: str) -> tuple[Any, str | None]:
    """A record field's type without its msgspec metadata, and its description."""
    hint = typing.get_type_hints(record, include_extras=True)[field]
    if typing.get_origin(hint) is not Annotated:
        return hint, None
    base, *extras = typing.get_args(hint)
    described = [m.description for m in extras if isinstance(m, msgspec.Meta) and m.description]
    return base, described[-1] if described else None


def _optional(kind: Any) -> Any:
    """``kind | None`` (once)."""
    return kind if type(None) in typing.get_args(kind) else kind | None


def record_fields(
    record: type[msgspec.Struct],
    *,
    rename: Mapping[str, str] | None = None,
    omit: Collection[str] = (),
    optional: Collection[str] = (),
) -> dict[str, tuple[Any, Any]]:
    """The row's fields derived from ``record``, in the record's order: published name to
    (annotation, pydantic FieldInfo)."""
    rename = dict(rename or {})
    names = record.__struct_fields__
    unknown = (set(rename) | set(omit) | set(optional)) - set(names) - set(rename.values())
    if unknown:
        raise TypeError(f"{record.__name__} has no fields {sorted(unknown)}")
    out: dict[str, tuple[Any, Any]] = {}
    for name in names:
        if name in omit:
            continue
        published = rename.get(name, name)
        kind, description = _published(record, name)
        if published in optional or name in optional:
            kind = _optional(kind)
            info = pydantic.Field(None, description=description)
        else:
            info = pydantic.Field(description=description)
        out[published] = (kind, info)
    return out


class Row(pydantic.BaseModel):
    """A published answer row; subclass with ``record=`` (and ``rename``, ``omit``, ``optional``)."""

    def __init_subclass__(
        cls,
        *,
        record: type[msgspec.Struct] | None = None,
        rename: Mapping[str, str] | None = None,
        omit: Collection[str] = (),
        optional: Collection[str] = (),
        **kwargs: Any,
    ) -> None:
        # Python calls this from ``type.__new__``, before pydantic collects the fields
        # (pydantic's ``__pydantic_init_subclass__`` is the hook that runs after), so the
        # record's fields written here are read like declared ones.
        if record is not None:
            derived = record_fields(record, rename=rename, omit=omit, optional=optional)
            own = inspect.get_annotations(cls)
            cls.__annotations__ = {**{field: kind for field, (kind, _) in derived.items()}, **own}
            for field, (_, info) in derived.items():
                if field not in own:
                    setattr(cls, field, info)
        super().__init_subclass__(**kwargs)


# -- what the ``fields`` projection may leave out of a row (models.*Field, tools._project) -

SEMANTIC_OPTIONAL: tuple[str, ...] = typing.get_args(models.SemanticField)
TEXT_OPTIONAL: tuple[str, ...] = typing.get_args(models.TextField)
PATH_OPTIONAL: tuple[str, ...] = typing.get_args(models.PathField)
BLAME_OPTIONAL: tuple[str, ...] = typing.get_args(models.BlameField)
HISTORY_OPTIONAL: tuple[str, ...] = typing.get_args(models.HistoryField)

_CUT = "Present and true when this row's text was cut (long lines, answer size)."


class _InRepo(Row):
    repo: str | None = None


# -- rows built from records --------------------------------------------------------------


class SemanticHit(_InRepo, record=hits.Hit, optional=SEMANTIC_OPTIONAL):
    truncated: bool = Field(default=False, description=_CUT)


class TextHit(_InRepo, record=textsearch.TextMatch, omit=("length",), optional=TEXT_OPTIONAL):
    truncated: bool = Field(default=False, description=_CUT)


class PathEntry(_InRepo, record=git.TreeEntry, omit=("blob",), optional=PATH_OPTIONAL):
    pass


class HistoryHit(Row, record=history.LogEntry, optional=HISTORY_OPTIONAL):
    pass


class IndexCalibration(Row, record=manifest.Calibration):
    """What the build measured to choose the primary index (docs/architecture.md, *Vector indexes*)."""


class SymbolRow(
    _InRepo,
    record=symbols.Symbol,
    rename={"id": "symbol_id"},
    omit=("line",),
    optional=("doc", "parent", "parent_id", "category"),
):
    body: str | None = Field(None, description="The source lines (include_body).")
    context: dict[str, Any] | None = Field(
        None,
        description="With the body: 'parent' (the enclosing definition's signature and span) "
        "and 'siblings' (names, kinds and spans of the other definitions beside it).",
    )
    truncated: bool = Field(default=False, description="True when the body was cut.")


class OutlineRow(
    Row,
    record=symbols.Symbol,
    rename={"id": "symbol_id"},
    omit=("qualname", "language", "path", "line", "parent", "parent_id", "category"),
    optional=("doc",),
):
    children: list[dict[str, Any]] | None = Field(
        None, description="Definitions nested in this one (methods of a class), same shape."
    )


class ReferenceOccurrence(Row, record=symbols.Occurrence, omit=("column",), optional=("text",)):
    pass


class ReferenceGroupRow(
    _InRepo,
    record=symbols.ReferenceGroup,
    optional=("symbol_id", "start_line", "end_line"),
):
    occurrences: list[ReferenceOccurrence]


# -- rows made as dicts -------------------------------------------------------------------


BlameRange = Annotated[
    list[int | str | bool],
    pydantic.WithJsonSchema(
        {
            "type": "array",
            "description": "[lines, commit, text, truncated]: consecutive lines last changed "
            "by one commit. Ranges follow one another from the answer's `start_line`, so a "
            "range starts where the previous one ended. text is absent when `fields` or the "
            "budget leaves it out; truncated is present (true) only when text was cut.",
            "prefixItems": [
                {
                    "title": "lines",
                    "type": "integer",
                    "minimum": 1,
                    "description": "How many lines: from the line after the previous range.",
                },
                {
                    "title": "commit",
                    "type": "integer",
                    "minimum": 0,
                    "description": "Index into the `commits` columns.",
                },
                {
                    "title": "text",
                    "type": "string",
                    "description": "The lines, joined by newlines.",
                },
                {"title": "truncated", "type": "boolean", "description": _CUT},
            ],
            "minItems": 2,
            "maxItems": 4,
        }
    ),
]
"""A blame range as published (``searcher/blame.py``): positions, not keys, per range."""


class BlameCommits(Row):
    """Each commit of the ranges once, as columns: entry i of each column is commit i."""

    sha: list[str] = Field(description="Short sha (12 hex digits), in order of first appearance.")
    author: list[int] | None = Field(
        None, description="Index into the `authors` columns (`fields` author or email)."
    )
    date: list[str] | None = Field(
        None, description="Author date, ISO 8601 with the author's own UTC offset."
    )
    summary: list[str] | None = Field(None, description="The commit message's first line.")


class BlameAuthors(Row):
    """Each author of the commits once, as columns: entry i of each column is author i."""

    name: list[str] | None = None
    email: list[str] | None = None


class FileLine(Row):
    line: int
    text: str
    truncated: bool = Field(
        default=False,
        description=f"Present and true when the line was cut at {models.MAX_LINE_CHARS} "
        "characters.",
    )


class RepoInfo(Row):
    name: str = Field(description="'namespace/name', what `repos` and `repo` take.")
    url: str
    ref: str
    commit: str
    generation: str
    vectors: dict[str, int] = Field(description="primary, secondary and tombstones.")
    index_type: str
    updated_at: str = Field(description="When the served generation was published (ISO-8601).")
    embedding_model: str
    embedding_dim: int
    calibration: IndexCalibration | None = Field(
        None, description="How the index type and nprobe were measured (absent in older stores)."
    )
    error: str | None = Field(
        None, description="Why the repository cannot be served, when it cannot."
    )
