"""The tool catalogue as an MCP server (official SDK, ``MCPServer``), for HTTP and stdio.

Tool signatures are generated from the catalogue's request models, so the MCP
input schemas carry exactly the REST limits and descriptions; each tool
validates into the same model and calls the same service method as REST.
An answer's structured content is the REST JSON, published and validated as the
tool's output schema (the catalogue's response model); its text content is the
same answer written for reading (:mod:`~codeintel.searcher.render`), not the JSON
a second time.
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
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase
from mcp_types import CallToolResult, TextContent, ToolAnnotations

from codeintel.core import errors
from codeintel.searcher import access, catalog, render
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


def _tool_function(spec: catalog.Tool, call: CallTool) -> Callable[..., Awaitable[CallToolResult]]:
    """An async function whose signature mirrors ``model``'s fields, for MCPServer to introspect."""

    model = spec.request

    async def tool(**arguments: Any) -> CallToolResult:
        context = arguments.pop(_CONTEXT, None)
        try:
            request = model.model_validate(arguments)
        except pydantic.ValidationError as e:
            fields = ", ".join(".".join(map(str, err["loc"])) for err in e.errors())
            raise ToolError(f"422 ValidationError: {e.errors()[0]['msg']} (field: {fields})") from e
        answer = await call(spec.name, request, context)
        return CallToolResult(
            content=[TextContent(type="text", text=render.render(spec.name, answer))],
            structured_content=answer,
        )

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
    tool.__annotations__ = {_CONTEXT: Context, "return": Annotated[CallToolResult, spec.response]}
    tool.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        params, return_annotation=Annotated[CallToolResult, spec.response]
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
    for tool in catalog.CATALOG:
        registered = server._tool_manager.get_tool(tool.name)
        if registered is not None:
            _refuse_unknown_arguments(registered)
    return server


def _refuse_unknown_arguments(tool: Tool) -> None:
    """One rule for REST and MCP: the request model alone validates the arguments.

    The SDK validates into a model built from the signature, which drops unknown
    arguments and words its errors its own way; hand ``tool`` the arguments as sent
    instead, so the request model (``extra="forbid"``, as on REST) answers a 422 naming
    the field, and say so in the advertised input schema."""
    tool.fn_metadata.arg_model = _AsSent
    tool.parameters["additionalProperties"] = False


class _AsSent(ArgModelBase):
    """Tool arguments passed through unvalidated, for the request model to judge."""

    model_config = pydantic.ConfigDict(extra="allow")

    def model_dump_one_level(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
