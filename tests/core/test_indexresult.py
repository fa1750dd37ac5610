"""The Job result contract: what the indexer writes is what the operator reads."""

from __future__ import annotations

import json

import pytest

from codeintel.core import errors, indexresult
from codeintel.core.indexresult import IndexResult
from codeintel.core.store.manifest import Counts
from codeintel.operator import jobs


def test_what_the_indexer_writes_the_operator_reads() -> None:
    written = IndexResult(
        action="update",
        changed=True,
        generation="g000003",
        commit="c" * 40,
        index_type="ivf_flat",
        vectors=Counts(primary=812, secondary=40, tombstones=3),
        files=12,
        chunks=40,
    )
    read = jobs.parse_result(indexresult.encode(written).decode())
    assert read == written
    assert read.total == 849
    assert read.status_vectors() == {"primary": 812, "secondary": 40, "tombstones": 3, "total": 849}


def test_the_documented_example_parses() -> None:
    """The object docs/architecture.md shows, with no optional field."""
    message = json.dumps(
        {
            "action": "build",
            "changed": True,
            "generation": "g000003",
            "commit": "a" * 40,
            "index_type": "ivf_flat",
            "vectors": {"primary": 812, "secondary": 40, "tombstones": 3},
        }
    )
    result = indexresult.decode(message)
    assert (result.action, result.generation, result.vectors.secondary) == ("build", "g000003", 40)
    assert result.files == 0 and result.merged is False


def test_a_no_op_update_has_no_vectors_to_report() -> None:
    result = indexresult.decode(
        '{"action": "update", "changed": false, "generation": "g1", "commit": "c"}'
    )
    assert result.changed is False and result.total == 0 and result.index_type == ""


@pytest.mark.parametrize(
    ("message", "named"),
    [
        ("{not json", "unreadable indexer result"),
        ('{"action": "build", "commit": "c"}', "generation"),
        ('{"action": "build", "generation": "g", "commit": "c", "vectors": []}', "vectors"),
    ],
)
def test_a_bad_result_is_an_index_format_error(message: str, named: str) -> None:
    with pytest.raises(errors.IndexFormatError, match=named):
        indexresult.decode(message)
