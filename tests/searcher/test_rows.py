"""Answer rows derive from the msgspec records that build them (searcher/rows.py).

A row's fields, types and descriptions are the record's: renamed, left out or made
optional as the row class says, and nothing else; the schema snapshot
(test_schema_snapshot.py) holds what that publishes.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any

import msgspec
import pydantic
import pytest

from codeintel.core import history, symbols
from codeintel.core.store import manifest
from codeintel.searcher import rows


class Place(msgspec.Struct, frozen=True):
    id: str
    path: Annotated[str, msgspec.Meta(description="Where it is.")]
    line: int = 0
    blob: str = ""
    note: Annotated[str | None, msgspec.Meta(description="Why.")] = None


class Box(msgspec.Struct, frozen=True):
    name: str
    places: list[Place]


class PlaceRow(
    rows.Row, record=Place, rename={"id": "place_id"}, omit=("blob",), optional=("note",)
):
    extra: bool = False


class BoxRow(rows.Row, record=Box):
    places: list[PlaceRow]


def test_a_row_is_its_record_renamed_cut_and_relaxed() -> None:
    schema = PlaceRow.model_json_schema()
    assert list(schema["properties"]) == ["place_id", "path", "line", "note", "extra"]
    # Record defaults are for reading old data: every kept field is required in the row
    # unless the row says it may be left out.
    assert schema["required"] == ["place_id", "path", "line"]
    assert schema["properties"]["path"]["description"] == "Where it is."
    assert schema["properties"]["note"] == {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "default": None,
        "description": "Why.",
        "title": "Note",
    }


def test_a_record_turned_into_builtins_validates_as_its_row() -> None:
    place = Place(id="p1", path="a.py", line=3, blob="abc", note=None)
    row: dict[str, Any] = msgspec.to_builtins(place)
    row["place_id"] = row.pop("id")
    del row["blob"]
    assert PlaceRow.model_validate(row).path == "a.py"
    box = msgspec.to_builtins(Box(name="b", places=[place]))
    with pytest.raises(pydantic.ValidationError):  # a nested record is published as its row
        BoxRow.model_validate(box)


def test_a_row_naming_a_field_its_record_lacks_is_refused() -> None:
    with pytest.raises(TypeError, match="no fields"):

        class Wrong(rows.Row, record=Place, optional=("colour",)):
            pass


def test_rows_stand_on_public_pydantic_api_only() -> None:
    """pydantic's ``_internal`` modules move between releases; no module of ours imports one
    (rows.py subclassed its private ModelMetaclass until it moved to ``__init_subclass__``)."""
    package = Path(rows.__file__).parents[1]
    users = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if "pydantic._internal" in path.read_text(encoding="utf-8")
    ]
    assert users == []


def _meta_description(record: type[msgspec.Struct], field: str) -> str | None:
    hint = typing.get_type_hints(record, include_extras=True)[field]
    found = [
        m.description for m in getattr(hint, "__metadata__", ()) if isinstance(m, msgspec.Meta)
    ]
    return found[0] if found else None


@pytest.mark.parametrize(
    ("row", "field", "record", "record_field"),
    [
        (rows.SymbolRow, "qualname", symbols.Symbol, "qualname"),
        (rows.ReferenceGroupRow, "symbol", symbols.ReferenceGroup, "symbol"),
        (rows.ReferenceOccurrence, "kind", symbols.Occurrence, "kind"),
        (rows.IndexCalibration, "flat_ms", manifest.Calibration, "flat_ms"),
        (rows.HistoryHit, "sha", history.LogEntry, "sha"),
    ],
)
def test_published_rows_carry_their_records_descriptions(
    row: type[pydantic.BaseModel], field: str, record: type[msgspec.Struct], record_field: str
) -> None:
    described = _meta_description(record, record_field)
    assert described
    assert row.model_fields[field].description == described
