"""Property-based fuzzing of the REST API from its own OpenAPI schema: no input yields a 5xx.

schemathesis generates valid and invalid bodies for every operation and runs
its default checks (no server error, response conforms to the documented
schema, status codes documented) against the real server on loopback.
Hypothesis then adds what schemathesis never sends: lone surrogates in any
field, bools and floats for integers, malformed, non-UTF-8 and chunked bodies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from searcher_helpers import Served

from codeintel.searcher import catalog, models

pytestmark = pytest.mark.slow


def _operations(schema: Any) -> list[Any]:
    ops = []
    for result in schema.get_all_operations():
        ops.append(result.ok())
    return ops


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_produces_a_5xx(server: Served, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = _operations(schema)
    assert len(operations) == 4 + len(catalog.CATALOG)  # 4 GET (probes, metrics, index)
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.method.upper() != "POST":
            continue  # nothing to make invalid in a parameterless GET

        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis.settings(
            max_examples=30,
            deadline=None,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(base_url=server.url)
            assert response.status_code < 500, (case.method, case.path, case.body, response.text)
            if mode is GenerationMode.POSITIVE and response.status_code == 200:
                case.validate_response(response)

        check()


# -- the hostile classes schemathesis does not generate ------------------------------------
# Hypothesis text never holds lone surrogates (they cannot be UTF-8), schemathesis keeps
# to the schema's types, and both send well-formed JSON with a Content-Length. Each class
# below once produced a 5xx or a wrong status; the fuzzing keeps it fixed.

TOOLS: dict[str, tuple[type[Any], dict[str, Any]]] = {
    "semantic_search": (models.SemanticSearchRequest, {"query": "send an email"}),
    "search_text": (models.SearchTextRequest, {"pattern": "def"}),
    "list_paths": (models.ListPathsRequest, {}),
    "blame_range": (
        models.BlameRangeRequest,
        {"path": "README.md", "start_line": 1, "end_line": 1},
    ),
    "file_history": (models.FileHistoryRequest, {"path": "README.md"}),
    "read_file": (models.ReadFileRequest, {"path": "README.md"}),
}


def test_every_tool_has_a_valid_example() -> None:
    assert set(TOOLS) == {tool.name for tool in catalog.CATALOG} - {"list_repos"}


lone_surrogate = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
with_surrogate = st.tuples(st.text(max_size=8), lone_surrogate, st.text(max_size=8)).map("".join)
not_an_int = st.one_of(st.booleans(), st.floats(allow_nan=False), st.text(max_size=4))
hostile_value = st.one_of(
    with_surrogate,
    st.lists(with_surrogate, min_size=1, max_size=3),
    not_an_int,
    st.none(),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.integers(min_value=-(2**70), max_value=2**70),
)


def _post(server: Served, tool: str, content: bytes | Iterator[bytes]) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/{tool}",
        content=content,
        headers={"content-type": "application/json"},
        timeout=60,
    )


def _json_error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/json", response.text
    body = response.json()
    if response.status_code >= 400:
        assert isinstance(body["error"]["message"], str) and body["error"]["type"]
        return dict(body["error"])
    return {}


@hypothesis.settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
@hypothesis.given(data=st.data())
def test_hostile_values_in_any_field(server: Served, data: st.DataObject) -> None:
    tool = data.draw(st.sampled_from(sorted(TOOLS)))
    model, valid = TOOLS[tool]
    field = data.draw(st.sampled_from(sorted(model.model_fields)))
    value = data.draw(hostile_value)
    body = {**valid, field: value}
    response = _post(server, tool, json.dumps(body, ensure_ascii=True).encode())
    error = _json_error(response)
    if models.unencodable(value):
        assert response.status_code == 422 and error["field"] == field, response.text
    if isinstance(value, bool) and model.model_fields[field].annotation is int:
        assert response.status_code == 422 and error["field"] == field, response.text


@hypothesis.settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
@hypothesis.given(
    tool=st.sampled_from(sorted(TOOLS)),
    raw=st.one_of(
        st.binary(max_size=64),
        st.text(max_size=64).map(str.encode),
        st.sampled_from([b"{", b'{"query": "\\ud800"', b"\xff\xfe{}", b"[]", b"null", b"1e999"]),
    ),
    pieces=st.integers(min_value=1, max_value=5),
)
def test_malformed_and_chunked_bodies(server: Served, tool: str, raw: bytes, pieces: int) -> None:
    size = max(1, len(raw) // pieces)
    chunks = [raw[i : i + size] for i in range(0, len(raw), size)] or [b""]
    _json_error(_post(server, tool, iter(chunks)))  # a generator: chunked, no Content-Length


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_chunked_body_over_the_limit_is_413(server: Served, tool: str) -> None:
    block = b" " * (64 << 10)
    response = _post(server, tool, iter([b"{", *[block] * 17, b"}"]))
    assert response.status_code == 413
    assert _json_error(response)["field"] == "body"
