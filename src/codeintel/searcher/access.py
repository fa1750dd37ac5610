"""Who may read which repository: a caller's scope, and the one place it is checked.

A :class:`Scope` is what one caller may read: globs over ``namespace/name`` (the
``repos`` dialect, :mod:`codeintel.core.globs`), or everything. The edge (the
app's guard middleware for REST, the MCP tool wrapper for MCP) turns a request's
credentials into a :class:`Caller` and sets it in a context variable for the
whole call; :func:`codeintel.searcher.tools.select`, through which every tool
resolves ``repos`` and ``repo`` (one store, many stores, the router), keeps
only what :func:`current` allows. So a tool added tomorrow inherits the scope by
calling ``select`` like the others, and a repository outside it is simply not
there: the same 404, same body, same code path as a name that does not exist.

Code running outside a request (background refreshes, the CLI, tests that call
the services directly) has no caller and acts as the process: every repository.
The edge always sets one, so a request never falls through to that default.

In a pool the router authenticates and forwards the caller's scope to its
shards in :data:`SCOPE_HEADER`; a shard intersects it with the scope of the
credential that carried it (the router's: everything), so a forwarded scope can
only narrow, never widen, whoever sends it (docs/architecture.md, "Access control").
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec
import prometheus_client as prom

from codeintel.core import errors, globs

logger = logging.getLogger(__name__)

CALLER_KEY = "codeintel.caller"
"""Where the guard leaves the :class:`Caller` in the ASGI scope (MCP reads it there)."""
SCOPE_HEADER = "x-codeintel-scope"
"""Header the router sends its shards: the caller's identity and scope (JSON)."""
MAX_SCOPE_HEADER_BYTES = 256 * 1024
"""A forwarded scope larger than this is refused (a SAR-resolved scope names each repository)."""
_DECIDED_NAMES = 65536
"""Names whose answer one scope remembers (then it starts over)."""
_LOGGED_DENIALS = 4096
"""Distinct (identity, tool, repository) denials remembered so each is logged once."""


@dataclasses.dataclass(frozen=True, slots=True)
class Scope:
    """The repositories one caller may read: ``patterns`` (names or globs), every one when
    None, and no more than ``within`` allows (the credential's scope under a forwarded one)."""

    identity: str
    patterns: tuple[str, ...] | None = None
    within: Scope | None = None
    _exact: frozenset[str] = dataclasses.field(init=False, repr=False, compare=False)
    _globs: globs.GlobSet | None = dataclasses.field(init=False, repr=False, compare=False)
    _decided: dict[str, bool] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        patterns = self.patterns or ()
        object.__setattr__(self, "_exact", frozenset(patterns))
        object.__setattr__(self, "_globs", _compiled(patterns))
        # A tokens-file scope lives as long as the file and sees the same names on every
        # request: remembering each name's answer makes the filter a dict lookup per name.
        object.__setattr__(self, "_decided", {})

    @property
    def everything(self) -> bool:
        return self.patterns is None and (self.within is None or self.within.everything)

    def allows(self, name: str) -> bool:
        found = self._decided.get(name)
        if found is None:
            found = self._allows(name)
            if len(self._decided) >= _DECIDED_NAMES:
                self._decided.clear()
            self._decided[name] = found
        return found

    def _allows(self, name: str) -> bool:
        if (
            self.patterns is not None
            and name not in self._exact
            and (self._globs is None or not self._globs.match(name))
        ):
            return False
        return self.within is None or self.within.allows(name)

    def filter(self, names: Iterable[str]) -> list[str]:
        """The ``names`` this scope allows, in their order."""
        if self.everything:
            return list(names)
        return [n for n in names if self.allows(n)]

    def narrowed(self, forwarded: Scope) -> Scope:
        """This (the credential's) scope, limited further by a forwarded one."""
        if forwarded.everything:
            return dataclasses.replace(self, identity=forwarded.identity or self.identity)
        return Scope(forwarded.identity or self.identity, forwarded.patterns, within=self)

    def layers(self) -> list[list[str]]:
        """Every limiting pattern list, outermost first (what :func:`encode` sends)."""
        out: list[list[str]] = []
        scope: Scope | None = self
        while scope is not None:
            if scope.patterns is not None:
                out.append(list(scope.patterns))
            scope = scope.within
        return out


def _compiled(patterns: tuple[str, ...]) -> globs.GlobSet | None:
    # Scope globs are anchored at the namespace ("*" is every repository, "team-a" the
    # whole namespace, "*/docs" one name in every namespace). A full name without glob
    # characters can only match itself, which the set lookup above answers: a
    # SAR-resolved scope lists hundreds of them and never reaches the regex.
    rest = tuple(f"/{p.lstrip('/')}" for p in patterns if "/" not in p or _wild(p))
    if not rest:
        return None
    return globs.compile_many(rest)


def _wild(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


EVERYTHING = Scope("process")
"""The scope of code running outside any request."""
NOTHING = Scope("unknown", ())
"""The scope of a request whose caller cannot be found (fail closed)."""


def check_patterns(patterns: Iterable[str], where: str) -> tuple[str, ...]:
    """``patterns`` as a tuple, each a valid glob, or ConfigError naming ``where``."""
    out: list[str] = []
    for p in patterns:
        if not isinstance(p, str) or not p.strip():
            raise errors.ConfigError(f"{where}: {p!r} is not a repository name or glob")
        try:
            globs.compile_one(p)
        except errors.ConfigError as e:
            raise errors.ConfigError(f"{where}: {e}") from e
        out.append(p.strip())
    return tuple(out)


# -- the caller of the request being answered ----------------------------------------------


@dataclasses.dataclass(slots=True)
class Caller:
    """One request's identity and scope, and where to report a denial."""

    scope: Scope
    tool: str = ""
    audit: Audit | None = None


_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "codeintel_caller", default=None
)


def current() -> Scope:
    """The scope of the request being answered (:data:`EVERYTHING` outside requests)."""
    caller = _caller.get()
    return EVERYTHING if caller is None else caller.scope


def caller() -> Caller | None:
    return _caller.get()


@contextlib.contextmanager
def acting_as(who: Caller) -> Iterator[Caller]:
    """Run the enclosed code as ``who`` (the edge of one request)."""
    token = _caller.set(who)
    try:
        yield who
    finally:
        _caller.reset(token)


def denied(pattern: str, served: Iterable[str]) -> None:
    """Report a ``repos``/``repo`` pattern that selected nothing because of the scope (and
    not because nothing matches): logged once per identity, tool and repository, counted."""
    who = _caller.get()
    if who is None or who.scope.everything or who.audit is None:
        return
    hidden = [n for n in served if n == pattern or globs.matches(n, pattern)]
    if hidden:
        who.audit.deny("scope", who.scope.identity, who.tool, pattern)


class Audit:
    """Denials: a Prometheus counter and one log line per (identity, tool, repository)."""

    def __init__(self) -> None:
        self.counter: prom.Counter | None = None
        self._logged: collections.OrderedDict[tuple[str, str, str], None] = (
            collections.OrderedDict()
        )

    def register(self, registry: prom.CollectorRegistry) -> None:
        """Count into ``registry`` (the app's, made in the lifespan)."""
        self.counter = prom.Counter(
            "codeintel_access_denied",
            "Calls refused by access control, by reason (unauthenticated: no or unknown "
            "credentials; scope: a repository outside the caller's scope) and tool.",
            ["reason", "tool"],
            registry=registry,
        )

    def deny(self, reason: str, identity: str, tool: str, repo: str) -> None:
        if self.counter is not None:
            self.counter.labels(reason=reason, tool=tool or "-").inc()
        key = (identity, tool, repo)
        if key in self._logged:
            self._logged.move_to_end(key)
            return
        self._logged[key] = None
        if len(self._logged) > _LOGGED_DENIALS:
            self._logged.popitem(last=False)
        logger.warning(
            "access denied (%s): identity=%s tool=%s repo=%s",
            reason,
            identity,
            tool or "-",
            repo[:200] or "-",
        )


# -- forwarding a scope from the router to its shards ----------------------------------------


def encode(scope: Scope) -> str | None:
    """The :data:`SCOPE_HEADER` value for ``scope``; None when it limits nothing."""
    if scope.everything:
        return None
    return msgspec.json.encode({"identity": scope.identity, "layers": scope.layers()}).decode()


def decode(value: str) -> Scope:
    """A forwarded scope; QueryError (400, field ``x-codeintel-scope``) when malformed."""
    if len(value) > MAX_SCOPE_HEADER_BYTES:
        raise errors.QueryError("forwarded scope too large", field=SCOPE_HEADER)
    try:
        data: Any = msgspec.json.decode(value)
        identity = str(data.get("identity") or "")
        layers = data["layers"]
        if not isinstance(layers, list) or not all(isinstance(x, list) for x in layers):
            raise TypeError("layers")
        scope: Scope | None = None
        for layer in reversed(layers):
            patterns = check_patterns(layer, SCOPE_HEADER)
            scope = Scope(identity, patterns, within=scope)
    except (msgspec.DecodeError, AttributeError, KeyError, TypeError, errors.ConfigError) as e:
        raise errors.QueryError(f"malformed forwarded scope: {e}", field=SCOPE_HEADER) from e
    return scope or Scope(identity)
