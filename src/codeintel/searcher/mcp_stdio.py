"""MCP over stdio that answers a line it cannot parse instead of dropping it.

The SDK's stdio transport hands an unparsable line (truncated JSON, a lone
surrogate such as ``"\\ud800"``) to the server as an exception, which logs it
and moves on: the caller, waiting for a reply, hangs (issue 22). JSON-RPC 2.0
says such a line gets an error with ``id: null``: ``-32700`` when it is not
JSON, ``-32600`` when it is JSON but not a request. The relay below sits
between the transport and the server, answers those itself and passes every
good message through unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import mcp_types as types
import pydantic
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

logger = logging.getLogger(__name__)


async def serve(server: MCPServer[Any]) -> None:
    """Serve ``server`` over this process's stdin and stdout until stdin closes."""
    lowlevel = server._lowlevel_server
    async with stdio_server() as (read_stream, write_stream):
        relay_in, relay_out = anyio.create_memory_object_stream[SessionMessage | Exception](0)

        async def relay() -> None:
            async with relay_in:
                async for item in read_stream:
                    if isinstance(item, Exception):
                        await write_stream.send(SessionMessage(error_reply(item)))
                    else:
                        await relay_in.send(item)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(relay)
            await lowlevel.run(relay_out, write_stream, lowlevel.create_initialization_options())
            tasks.cancel_scope.cancel()


def error_reply(exc: Exception) -> types.JSONRPCError:
    """The JSON-RPC error for a line that did not parse into a message."""
    not_json = isinstance(exc, pydantic.ValidationError) and any(
        e["type"] == "json_invalid" for e in exc.errors()
    )
    code, what = (
        (types.PARSE_ERROR, "Parse error")
        if not_json
        else (types.INVALID_REQUEST, "Invalid Request")
    )
    detail = str(exc).splitlines()[-1 if not_json else 0][:200]
    logger.warning("stdio: answered %s to a line: %s", code, detail)
    return types.JSONRPCError(
        jsonrpc="2.0", id=None, error=types.ErrorData(code=code, message=f"{what}: {detail}")
    )
