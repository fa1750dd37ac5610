"""Page cursors: opaque strings that resume a list where it stopped, at the commit it read.

A cursor is base64url of a small JSON object: the tool, a digest of the request
(every parameter but the page size, budget, projection and the cursor itself,
so a cursor cannot continue a different question), and per repository the
generation it read and the offset of the next row (one key, ``""``, on a
single-store searcher). Offsets over a generation are stable because every list
is in a fixed order at one commit (path, line; newest commit first; rank).

The searcher keeps the generation a cursor names open for a grace period after
a publish (``generations.GenerationManager.use``); past it the tool answers
:class:`~codeintel.core.errors.CursorExpiredError`, 410 Gone, saying to start
again, so no page ever mixes two commits. Nothing in a cursor is secret or
trusted: a forged offset reads another page of the same question.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec

from codeintel.core import errors

VERSION = 1
PAGE_KEYS = frozenset({"cursor", "max_tokens", "fields", "max_results", "limit", "k"})
"""Request fields a caller may change between pages."""
MAX_CURSOR_CHARS = 8_192


@dataclasses.dataclass(frozen=True, slots=True)
class Position:
    """Where a cursor resumes: per repository, the generation read and the next row."""

    generations: dict[str, str]
    offsets: dict[str, int]
    total: int | None = None
    """Rows in all pages as the first page counted them (merged answers keep it)."""
    exact: bool = True

    def offset(self, repo: str = "") -> int:
        return self.offsets.get(repo, 0)


class _Payload(msgspec.Struct, frozen=True):
    v: int
    t: str
    q: str
    g: dict[str, str]
    o: dict[str, int]
    n: int | None = None
    x: bool = True


def digest(tool: str, request: Any) -> str:
    """A short digest of what ``request`` asks, page fields left out."""
    data = request.model_dump(mode="json") if hasattr(request, "model_dump") else dict(request)
    kept = {k: v for k, v in sorted(data.items()) if k not in PAGE_KEYS}
    raw = msgspec.json.encode([tool, kept])
    return hashlib.blake2b(raw, digest_size=6).hexdigest()


def encode(
    tool: str,
    request: Any,
    generations: Mapping[str, str],
    offsets: Mapping[str, int],
    total: int | None = None,
    exact: bool = True,
) -> str:
    """The cursor that resumes ``tool`` on ``request`` at ``offsets`` of ``generations``."""
    payload = _Payload(
        VERSION, tool, digest(tool, request), dict(generations), dict(offsets), total, exact
    )
    return base64.urlsafe_b64encode(msgspec.json.encode(payload)).decode().rstrip("=")


def positions(text: str) -> Position:
    """The positions of a cursor this server wrote (a shard's, read by the router)."""
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    payload = msgspec.json.decode(raw, type=_Payload)
    return Position(dict(payload.g), dict(payload.o), payload.n, payload.x)


def decode(tool: str, request: Any) -> Position | None:
    """The position ``request.cursor`` names, None for a first page; 422 when it is not ours."""
    text = getattr(request, "cursor", None)
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        payload = msgspec.json.decode(raw, type=_Payload)
    except (binascii.Error, ValueError, msgspec.DecodeError) as e:
        raise errors.QueryError(
            "cursor is not a cursor this server gave; pass the 'cursor' of the previous answer "
            "unchanged, or omit it for the first page",
            field="cursor",
        ) from e
    if payload.v != VERSION or payload.t != tool:
        raise errors.QueryError(f"cursor was given by another tool, not {tool}", field="cursor")
    if payload.q != digest(tool, request):
        raise errors.QueryError(
            "cursor belongs to a different question: keep every parameter but max_results, "
            "limit, k, fields and max_tokens as in the first page",
            field="cursor",
        )
    if any(o < 0 for o in payload.o.values()):
        raise errors.QueryError("cursor offset is negative", field="cursor")
    return Position(dict(payload.g), dict(payload.o), payload.n, payload.x)


def expired(generation: str, now: str = "") -> errors.CursorExpiredError:
    """The 410 for a cursor over ``generation``, which is no longer kept (``now``: the live one)."""
    serving = f" (now {now})" if now else ""
    return errors.CursorExpiredError(
        f"the cursor read generation {generation}, which is no longer served{serving}; "
        "start again without a cursor"
    )
