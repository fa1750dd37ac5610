"""The tool catalogue as an MCP server (official SDK, ``MCPServer``), for HTTP and stdio.

Tool signatures are generated from the catalogue's request models, so the MCP
input schemas carry exactly the REST limits and descriptions; each tool
validates into the same model and calls the same service method as REST.
Errors come back as MCP tool errors (``isError``) whose text names the HTTP
status REST would have given, the error type and the field at fault.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import pydantic
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

from codeintel.core import errors
from codeintel.searcher import access, catalog
from codeintel.searcher import errors as errors_mod


class CallTool:
    """Run a tool by name with REST-equal metrics; how the MCP server reaches the service."""

    def __init__(self, service: Callable[[], catalog.Service]) -> None:
        self._service = service

    async def __call__(
        self, name: str, request: pydantic.BaseModel, context: Context[Any, Any] | None = None
    ) -> dict[str, Any]:
        try:
            with access.acting_as(_caller(name, context)):
                return await self._service().call(name, request)
        except errors.CodeIntelError as e:
            raise ToolError(errors_mod.tool_error_text(e)) from e


def _caller(tool: str, context: Context[Any, Any] | None) -> access.Caller:
    """Who is calling: the guard's caller of the HTTP request that carried this call
    (tools run in the session's task, outside that request's context), the process
    itself over stdio (a local pipe), and nobody when an HTTP request has none."""
    try:
        request = context.request_context.request if context is not None else None
    except ValueError:  # no request context: called outside a session
        request = None
    scope = getattr(request, "scope", None)
    if scope is None:
        return access.Caller(access.EVERYTHING, tool)
    found = scope.get(access.CALLER_KEY)
    if not isinstance(found, access.Caller):
        return access.Caller(access.NOTHING, tool)
    return access.Caller(found.scope, tool, found.audit)


_CONTEXT = "codeintel_request_context"


def _tool_function(spec: catalog.Tool, call: CallTool) -> Callable[..., Awaitable[dict[str, Any]]]:
    """An async function whose signature mirrors ``model``'s fields, for MCPServer to introspect."""

    model = spec.request

    async def tool(**arguments: Any) -> dict[str, Any]:
        context = arguments.pop(_CONTEXT, None)
        try:
            request = model.model_validate(arguments)
        except pydantic.ValidationError as e:
            fields = ", ".join(".".join(map(str, err["loc"])) for err in e.errors())
            raise ToolError(f"422 ValidationError: {e.errors()[0]['msg']} (field: {fields})") from e
        return await call(spec.name, request, context)

    params = [
        inspect.Parameter(
            field_name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[field.annotation, field],
            default=inspect.Parameter.empty if field.is_required() else field.default,
        )
        for field_name, field in model.model_fields.items()
    ]
    # The SDK injects the request context into the parameter annotated with Context,
    # found through the annotations, and leaves it out of the input schema.
    params.append(
        inspect.Parameter(
            _CONTEXT, inspect.Parameter.KEYWORD_ONLY, annotation=Context, default=None
        )
    )
    tool.__annotations__ = {_CONTEXT: Context, "return": dict[str, Any]}
    tool.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        params, return_annotation=dict[str, Any]
    )
    tool.__name__ = spec.name
    tool.__doc__ = spec.description
    return tool


def build_server(service: Callable[[], catalog.Service]) -> MCPServer[Any]:
    """An MCPServer exposing the catalogue; ``service`` returns what answers (Tools, fleet, router)."""
    server: MCPServer[Any] = MCPServer(
        name="codeintel",
        title="codeintel",
        instructions=catalog.INSTRUCTIONS,
        log_level="WARNING",
    )
    call = CallTool(service)
    for tool in catalog.CATALOG:
        server.add_tool(
            _tool_function(tool, call),
            name=tool.name,
            title=tool.title,
            description=tool.description,
            annotations=ToolAnnotations(
                read_only_hint=True,
                destructive_hint=False,
                idempotent_hint=True,
                open_world_hint=False,
            ),
        )
    return server
