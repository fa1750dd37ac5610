"""Every serving object answers every catalogue row, through one metered ``call``."""

from __future__ import annotations

import inspect
import typing
from typing import Any

import pytest

from codeintel.core import errors
from codeintel.searcher import catalog, dispatch, fleet, router, tools
from codeintel.searcher import errors as searcher_errors
from codeintel.searcher import metrics as metrics_mod

SERVING = (tools.Tools, fleet.FleetTools, router.Router)


@pytest.mark.parametrize("cls", SERVING, ids=lambda c: c.__name__)
@pytest.mark.parametrize("tool", catalog.CATALOG, ids=lambda t: t.name)
def test_every_serving_object_has_a_method_for_every_catalogue_tool(
    cls: type, tool: catalog.Tool
) -> None:
    method = getattr(cls, tool.name, None)
    assert inspect.iscoroutinefunction(method), f"{cls.__name__}.{tool.name} is not async"
    params = list(inspect.signature(method).parameters.values())[1:]
    assert len(params) == 1, f"{cls.__name__}.{tool.name} takes one request"
    hints = typing.get_type_hints(method)
    assert hints[params[0].name] is tool.request
    assert tool.name in cls.TOOLS  # type: ignore[attr-defined]


def test_the_vector_search_is_internal_to_the_fleet() -> None:
    assert "semantic_search_vector" in fleet.FleetTools.TOOLS
    assert "semantic_search_vector" not in tools.Tools.TOOLS
    assert "semantic_search_vector" not in {t.name for t in catalog.CATALOG}


def _methods(names: typing.Iterable[str]) -> dict[str, Any]:
    async def answer(self: Any, req: Any) -> dict[str, Any]:
        return {"results": [req]}

    return {name: answer for name in names}


def test_a_serving_class_lacking_a_catalogue_tool_cannot_be_defined() -> None:
    *present, absent = (t.name for t in catalog.CATALOG)
    with pytest.raises(TypeError, match=absent):
        type("Partial", (dispatch.Dispatcher,), _methods(present))


def test_a_sync_method_does_not_count() -> None:
    first, *rest = (t.name for t in catalog.CATALOG)
    namespace = _methods(rest) | {first: lambda self, req: {}}
    with pytest.raises(TypeError, match=first):
        type("Sync", (dispatch.Dispatcher,), namespace)


def test_a_missing_internal_tool_is_refused_too() -> None:
    namespace = _methods(t.name for t in catalog.CATALOG) | {"INTERNAL": ("extra_tool",)}
    with pytest.raises(TypeError, match="extra_tool"):
        type("NoExtra", (dispatch.Dispatcher,), namespace)


def _sample(metrics: metrics_mod.Metrics, tool: str, status: str) -> float:
    value = metrics.registry.get_sample_value(
        "codeintel_requests_total", {"tool": tool, "status": status}
    )
    return value or 0.0


async def test_call_dispatches_by_name_and_meters_outcomes() -> None:
    names = [t.name for t in catalog.CATALOG]

    async def refuse(self: Any, req: Any) -> dict[str, Any]:
        raise errors.QueryError("bad request", field="query")

    cls = type("Full", (dispatch.Dispatcher,), _methods(names[1:]) | {names[0]: refuse})
    metrics = metrics_mod.Metrics.create()
    service = cls(metrics)

    assert await service.call(names[1], "ask") == {"results": ["ask"]}
    assert _sample(metrics, names[1], "ok") == 1.0
    with pytest.raises(errors.QueryError):
        await service.call(names[0], "ask")
    status = str(searcher_errors.status_for(errors.QueryError("bad request")))
    assert _sample(metrics, names[0], status) == 1.0
    assert _sample(metrics, names[0], "500") == 0.0
    with pytest.raises(errors.QueryError, match="no tool named 'nope'"):
        await service.call("nope", "ask")
    with pytest.raises(errors.QueryError):  # a helper method is not a tool
        await service.call("__init__", "ask")
