"""The one map from the error tree to HTTP statuses and JSON error bodies.

REST answers with these, MCP reports the same status and body as a tool error,
the router relays a shard's error unchanged, and the request metrics label
outcomes with the same status.
"""

from __future__ import annotations

import json
from typing import Any

from codeintel.core import errors


def status_for(exc: BaseException) -> int:
    """HTTP status for an error (REST status and the ``status`` label of the metrics)."""
    if isinstance(exc, errors.PathNotFoundError | errors.RepoNotFoundError):
        return 404
    if isinstance(exc, errors.ModelMixError):
        return 400
    if isinstance(exc, errors.CursorExpiredError):
        return 410
    if isinstance(exc, errors.NotIndexedError):
        return 409
    if isinstance(exc, errors.QueryError):
        return 422
    if isinstance(exc, errors.IndexFormatError | errors.EmbeddingError):
        return 503
    return 500


def error_body(exc: BaseException) -> dict[str, Any]:
    """The JSON error object: a type, a one-line message and the field at fault."""
    field = getattr(exc, "field", None)
    if isinstance(exc, errors.PathNotFoundError):
        field = "path"
    message = str(exc) if isinstance(exc, errors.CodeIntelError) else "internal error"
    kind = getattr(exc, "type_name", type(exc).__name__)  # a shard's type, relayed by the router
    body: dict[str, Any] = {"type": kind, "message": message, "field": field}
    if isinstance(exc, errors.ModelMixError):
        body["groups"] = exc.groups
    if isinstance(exc, errors.IndexingError):
        # What is happening, beside the one error shape: phase, done, total, eta_seconds, …
        return {"error": body, **exc.progress}
    return {"error": body}


def retry_after(exc: BaseException) -> int | None:
    """Seconds for a ``Retry-After`` header, for errors that pass with time."""
    return exc.retry_after if isinstance(exc, errors.IndexingError) else None


def tool_error_text(exc: BaseException) -> str:
    """An MCP tool error's text: the REST status, the error type, the message and the field."""
    body = error_body(exc)["error"]
    where = f" (field: {body['field']})" if body["field"] else ""
    text = f"{status_for(exc)} {body['type']}: {body['message']}{where}"
    if isinstance(exc, errors.IndexingError):
        text += f" (retry after {exc.retry_after} s) " + json.dumps(error_body(exc))
    return text
