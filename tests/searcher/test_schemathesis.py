"""Property-based fuzzing of the REST API from its own OpenAPI schema: no input yields a 5xx.

schemathesis generates valid and invalid bodies for every operation and runs
its default checks (no server error, response conforms to the documented
schema, status codes documented) against the real server on loopback.
"""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from searcher_helpers import Served

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
    assert len(operations) == 10  # 4 GET (probes, metrics, index) + 6 tools
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
