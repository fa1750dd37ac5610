"""Bearer credentials to scopes: the shared token, the tokens file, the Kubernetes reviewer.

:class:`Gate` is what the app's guard asks for every request but the probes:
given the credentials of ``Authorization: Bearer``, which :class:`~access.Scope`
(None: 401). In order:

1. ``server.api_token`` (the single shared token; in a pool also the router's
   credential towards its shards): every repository, as before scopes existed.
2. ``server.tokens_file``: a JSON list of
   ``{"name": "team-a", "sha256": "<hex sha256 of the token>", "repos": ["ns1/*"]}``.
   Only hashes are stored; a presented token is hashed and compared with every
   entry in constant time (no early exit, so timing names no entry). The file is
   re-read when its mtime, size or inode change (checked at most every
   ``tokens_poll_seconds``); a file that does not parse keeps the last good one
   and logs why, so a typo in an edit never locks every caller out.
3. ``server.kube_auth`` (a pool's router): TokenReview and SubjectAccessReview
   against the API server (:mod:`kubeauth`).

With none of them configured the server is open, as before, to every repository.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import msgspec
import prometheus_client as prom

from codeintel.core import errors, globs
from codeintel.core import settings as settings_mod
from codeintel.searcher import access

logger = logging.getLogger(__name__)

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_ENTRY_KEYS = frozenset({"name", "sha256", "repos"})


def parse_tokens(data: bytes, source: str) -> tuple[tuple[bytes, access.Scope], ...]:
    """(sha256 digest, scope) per entry of a tokens file; ConfigError naming the entry."""
    try:
        rows: Any = msgspec.json.decode(data)
    except msgspec.DecodeError as e:
        raise errors.ConfigError(f"{source}: not JSON: {e}") from e
    if not isinstance(rows, list):
        raise errors.ConfigError(f"{source}: expected a JSON list of token entries")
    out: list[tuple[bytes, access.Scope]] = []
    seen: set[bytes] = set()
    for i, row in enumerate(rows):
        where = f"{source}: entry {i}"
        if not isinstance(row, dict):
            raise errors.ConfigError(f"{where}: expected an object")
        unknown = set(row) - _ENTRY_KEYS
        if unknown:
            raise errors.ConfigError(f"{where}: unknown keys {sorted(unknown)}")
        name, digest, repos = row.get("name"), row.get("sha256"), row.get("repos")
        if not isinstance(name, str) or not name.strip():
            raise errors.ConfigError(f"{where}: `name` must be a non-empty string")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise errors.ConfigError(
                f"{where} ({name}): `sha256` must be 64 hex digits (sha256 of the token)"
            )
        if not isinstance(repos, list):
            raise errors.ConfigError(f"{where} ({name}): `repos` must be a list of globs")
        raw = bytes.fromhex(digest)
        if raw in seen:
            raise errors.ConfigError(f"{where} ({name}): the same token hash appears twice")
        seen.add(raw)
        patterns = access.check_patterns(repos, f"{where} ({name}) repos")
        out.append((raw, access.Scope(name.strip(), patterns)))
    return tuple(out)


class TokensFile:
    """The tokens file, re-read when it changes; the last good contents when it breaks."""

    def __init__(
        self, path: Path, *, poll_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self.poll_seconds = poll_seconds
        self._clock = clock
        self._checked = clock()
        self._stamp = self._stat()
        if self._stamp is None:
            raise errors.ConfigError(f"tokens file {path} does not exist")
        self.entries = parse_tokens(path.read_bytes(), str(path))
        self.error: str | None = None
        """Why the last reload failed (None when the file in use is the file on disk)."""
        logger.info("tokens file %s: %d identities", path, len(self.entries))

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def maybe_reload(self) -> None:
        now = self._clock()
        if now - self._checked < self.poll_seconds:
            return
        self._checked = now
        stamp = self._stat()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            if stamp is None:
                raise errors.ConfigError(f"{self.path} is gone")
            entries = parse_tokens(self.path.read_bytes(), str(self.path))
        except (OSError, errors.ConfigError) as e:
            self.error = str(e)
            logger.error("tokens file not reloaded, keeping the last good one: %s", e)
            return
        self.entries = entries
        self.error = None
        logger.info("tokens file %s reloaded: %d identities", self.path, len(entries))

    def lookup(self, token: bytes) -> access.Scope | None:
        """The scope of ``token``, or None; every entry is compared, in constant time."""
        self.maybe_reload()
        digest = hashlib.sha256(token).digest()
        found: access.Scope | None = None
        for candidate, scope in self.entries:
            if hmac.compare_digest(candidate, digest):
                found = scope
        return found


def _candidates(names: Iterable[str], wanted: Sequence[str] | None) -> list[str]:
    """The repositories a reviewer decides on for a request naming ``wanted``."""
    served = list(names)
    if wanted is None:
        return served
    out: set[str] = set()
    for pattern in wanted:
        if "/" in pattern and not any(c in pattern for c in "*?["):
            out.add(pattern)
            continue
        try:
            out.update(n for n in served if n == pattern or globs.matches(n, pattern))
        except errors.ConfigError:
            continue  # an invalid glob: the request is refused with a 422 anyway
    return sorted(out)


class Reviewer(Protocol):
    """Asks someone else (the Kubernetes API server) who a token is and what it may read."""

    async def scope(self, token: bytes, names: Iterable[str]) -> access.Scope | None: ...

    def register(self, registry: prom.CollectorRegistry) -> None: ...

    async def aclose(self) -> None: ...


class Gate:
    """Credentials to scope for one server (see the module docstring for the order)."""

    def __init__(
        self,
        api_token: str = "",
        tokens: TokensFile | None = None,
        reviewer: Reviewer | None = None,
    ) -> None:
        self._token = api_token.encode()
        self.tokens = tokens
        self.reviewer = reviewer
        self.audit = access.Audit()
        self.names: Callable[[], Iterable[str]] = lambda: ()
        """The repositories a reviewer decides on (the router's catalogue), set by the app."""

    @classmethod
    def from_settings(cls, server: settings_mod.ServerSettings) -> Gate:
        tokens = None
        if server.tokens_file:
            tokens = TokensFile(Path(server.tokens_file), poll_seconds=server.tokens_poll_seconds)
        reviewer: Reviewer | None = None
        if server.kube_auth:
            from codeintel.searcher import kubeauth

            reviewer = kubeauth.KubeReviewer.from_settings(server)
        return cls(server.api_token, tokens, reviewer)

    def register(self, registry: prom.CollectorRegistry) -> None:
        """Count denials (and the reviewer's cache) into the app's registry."""
        self.audit.register(registry)
        if self.reviewer is not None:
            self.reviewer.register(registry)

    @property
    def required(self) -> bool:
        """Whether a request must present credentials at all."""
        return bool(self._token or self.tokens is not None or self.reviewer is not None)

    async def authenticate(
        self, credentials: bytes | None, wanted: Sequence[str] | None = None
    ) -> access.Scope | None:
        """The caller's scope, or None (401) for missing or unknown credentials.

        ``wanted`` (the request's ``repo``/``repos``; None: all) limits what a reviewer is
        asked about: the served names they match, and every exact name even when nothing
        by that name is served, so that a hidden repository and a missing one cost the
        same review and answer in the same time."""
        if not self.required:
            return access.Scope("anonymous")
        if not credentials:
            return None
        if self._token and hmac.compare_digest(credentials, self._token):
            return access.Scope("api-token")
        if self.tokens is not None:
            found = self.tokens.lookup(credentials)
            if found is not None:
                return found
        if self.reviewer is not None:
            return await self.reviewer.scope(credentials, _candidates(self.names(), wanted))
        return None

    async def aclose(self) -> None:
        if self.reviewer is not None:
            await self.reviewer.aclose()
