"""The chart's side of indexer progress: the CRD's ``status.progress`` and Progress column,
the one permission it needs, and the interval the operator reads (rendered by Helm's own code)."""

from __future__ import annotations

import datetime
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from test_chart import K8S_VERSIONS, VALUE_SETS, by_kind, render

from codeintel.operator import progress
from codeintel.operator.settings import OperatorSettings


def rendered_codeindex_crd(values: dict[str, Any]) -> dict[str, Any]:
    crds = by_kind(render(values), "CustomResourceDefinition")
    return next(c for c in crds if c["spec"]["names"]["kind"] == "CodeIndex")


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_rendered_crd_has_the_progress_column(values: dict[str, Any]) -> None:
    version = rendered_codeindex_crd(values)["spec"]["versions"][0]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    column = columns["Progress"]
    assert column["jsonPath"] == ".status.progress.summary"
    assert column["type"] == "string" and not column.get("priority")  # in plain `kubectl get`
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names.index("Vectors") < names.index("Progress") < names.index("Age")


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_rendered_crd_validates(version: str) -> None:
    kubernetes_validate.validate(rendered_codeindex_crd({}), version, strict=True)


def _status_schema() -> jsonschema.Validator:
    schema = rendered_codeindex_crd({})["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return jsonschema.Draft7Validator(schema["properties"]["status"])


def test_what_the_operator_writes_validates_against_the_crd() -> None:
    moment = datetime.datetime(2026, 12, 2, 4, 0, tzinfo=datetime.UTC)
    line = {
        "stage": "embed",
        "done": 12000,
        "total": 35483,
        "percent": 33.8,
        "rate": 41.27,
        "eta_seconds": 569.0,
        "elapsed_seconds": 290.0,
    }
    written = progress.status_progress("demo-build-00001", line, moment)
    assert written["summary"] == "embed 12000/35483 (34%) eta 9m"
    _status_schema().validate({"progress": written})
    unknown = progress.status_progress("demo-build-00001", {"stage": "mirror"}, moment)
    assert unknown == {
        "job": "demo-build-00001",
        "stage": "mirror",
        "done": 0,
        "summary": "mirror",
        "updatedAt": "2026-12-02T04:00:00Z",
    }
    _status_schema().validate({"progress": unknown})
    with pytest.raises(jsonschema.ValidationError):
        _status_schema().validate({"progress": {**written, "done": "many"}})


def test_the_operator_may_read_pod_logs_and_nothing_more() -> None:
    rules = by_kind(render({}), "ClusterRole")[0]["rules"]
    on_logs = [r for r in rules if "pods/log" in r["resources"]]
    assert len(on_logs) == 1 and on_logs[0]["verbs"] == ["get"]
    assert on_logs[0]["resources"] == ["pods/log"] and on_logs[0]["apiGroups"] == [""]
    subresources = {res for r in rules for res in r["resources"] if res.startswith("pods/")}
    assert subresources == {"pods/log"}  # no exec, attach or portforward


def test_the_progress_interval_reaches_the_operator() -> None:
    values = {"config": {"progressIntervalSeconds": 15}}
    container = by_kind(render(values), "Deployment")[0]["spec"]["template"]["spec"]["containers"][
        0
    ]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    settings = OperatorSettings.from_env(
        {k: v for k, v in env.items() if k.startswith("CODEINTEL_OPERATOR_")}
    )
    assert settings.progress_interval_seconds == 15.0
    defaults = by_kind(render({}), "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "CODEINTEL_OPERATOR_PROGRESS_INTERVAL_SECONDS", "value": "20"} in defaults[
        "env"
    ]
