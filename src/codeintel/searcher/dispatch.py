"""One way to answer a tool by name, for every serving object: metrics, then its method.

REST and MCP reach a serving object (:class:`~tools.Tools` over one store,
:class:`~fleet.FleetTools` over many, :class:`~router.Router` over shards) only
through :meth:`Dispatcher.call`, which runs the object's method named after the
tool under the request metrics. A subclass must define an async method for every
catalogue row (and for each name in its ``INTERNAL``): the class statement raises
``TypeError`` otherwise, so a tool added to the catalogue without its method fails
at import instead of answering 500 at run time.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from codeintel.core import errors
from codeintel.searcher import catalog
from codeintel.searcher import errors as errors_mod
from codeintel.searcher import metrics as metrics_mod

Req = TypeVar("Req")


async def metered(
    metrics: metrics_mod.Metrics, tool: str, handler: Callable[[Req], Awaitable[Any]], req: Req
) -> Any:
    """Run one tool with latency, outcome and in-flight metrics.

    The outcome is ``ok`` or the HTTP status of the error; a request cancelled by its
    client (disconnect, shutdown) is ``cancelled``, not a server error."""
    metrics.inflight_requests.inc()
    start = time.perf_counter()
    status = "500"
    try:
        result = await handler(req)
        status = "ok"
        return result
    except asyncio.CancelledError:
        status = "cancelled"
        raise
    except Exception as e:
        status = str(errors_mod.status_for(e))
        raise
    finally:
        metrics.inflight_requests.dec()
        metrics.request_seconds.labels(tool=tool).observe(time.perf_counter() - start)
        metrics.requests_total.labels(tool=tool, status=status).inc()


def missing_tools(cls: type, names: tuple[str, ...]) -> list[str]:
    """The ``names`` for which ``cls`` has no async method of that name."""
    return [n for n in names if not inspect.iscoroutinefunction(getattr(cls, n, None))]


class Dispatcher:
    """Base of the serving objects: :meth:`call` by tool name, checked against the catalogue."""

    INTERNAL: ClassVar[tuple[str, ...]] = ()
    """Tools ``call`` answers that are not catalogue rows (no REST route or MCP tool of their own)."""

    TOOLS: ClassVar[frozenset[str]] = frozenset()
    """Every name ``call`` dispatches: the catalogue and ``INTERNAL``, set per subclass."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names = tuple(tool.name for tool in catalog.CATALOG) + cls.INTERNAL
        missing = missing_tools(cls, names)
        if missing:
            raise TypeError(
                f"{cls.__qualname__} has no async method for the tool(s) {', '.join(missing)}; "
                "every serving object answers every catalogue row"
            )
        cls.TOOLS = frozenset(names)

    def __init__(self, metrics: metrics_mod.Metrics) -> None:
        self.request_metrics = metrics

    async def call(self, name: str, request: Any) -> dict[str, Any]:
        """Run the tool ``name`` on a validated request, with metrics."""
        if name not in self.TOOLS:
            raise errors.QueryError(f"there is no tool named {name!r}", field="name")
        result: dict[str, Any] = await metered(
            self.request_metrics, name, getattr(self, name), request
        )
        return result
