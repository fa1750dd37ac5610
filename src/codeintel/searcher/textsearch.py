"""search_text: ripgrep over the generation's materialised worktree.

ripgrep is the fastest correct grep we can ship (a wheel puts ``rg`` next to
the interpreter); we run it as an asyncio subprocess, so the event loop never
blocks, read its ``--json`` stream line by line, and kill it as soon as
the timeout passes (the answer then says ``truncated``). Pages come in (path,
line) order from one parallel run (see :func:`search`). Patterns go through ``--regexp=`` so one starting with ``-`` is
never read as a flag; literal search uses ``--fixed-strings``. ``--no-ignore``
and ``--hidden`` search every tracked file (the worktree holds nothing else),
and ``--no-config`` keeps a user's ``RIPGREP_CONFIG_PATH`` out.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import functools
import heapq
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import msgspec

from codeintel.core import errors
from codeintel.searcher import models


class TextMatch(msgspec.Struct, frozen=True):
    path: str
    line: int
    column: int
    text: str
    length: int
    """Characters of the whole line; more than ``len(text)`` when the line was cut."""


@functools.cache
def rg_binary() -> str:
    """The ``rg`` shipped beside this interpreter (the ripgrep wheel), else the one on PATH."""
    found = shutil.which("rg", path=os.path.dirname(sys.executable)) or shutil.which("rg")
    if not found:
        raise errors.ConfigError("ripgrep ('rg') not found; install the 'ripgrep' package")
    return found


def _text(obj: dict[str, Any]) -> tuple[str, bytes]:
    """ripgrep's ``{"text": ...}`` or ``{"bytes": base64}`` as (text, raw bytes)."""
    if "text" in obj:
        text = str(obj["text"])
        return text, text.encode("utf-8", "surrogateescape")
    raw = base64.b64decode(obj.get("bytes", ""))
    return raw.decode("utf-8", "replace"), raw


def build_args(
    pattern: str,
    *,
    regex: bool,
    case_sensitive: bool,
    path_glob: str | None,
    sort: bool = False,
) -> list[str]:
    args = [rg_binary(), "--json", "--no-config", "--no-ignore", "--hidden", "--no-messages"]
    args.append("--case-sensitive" if case_sensitive else "--ignore-case")
    if not regex:
        args.append("--fixed-strings")
    if path_glob:
        args.append(f"--glob={path_glob}")
    if sort:
        args.append("--sort=path")
    args.append(f"--regexp={pattern}")
    return args


def order(match: TextMatch) -> tuple[list[str], int]:
    """Sort key of matches: path component by component, then line (``rg --sort=path``'s order)."""
    return match.path.split("/"), match.line


MAX_SCAN = 100_000
"""Matches one parallel pass reads before it stops; past it, a sorted pass finds the page."""


@dataclasses.dataclass(slots=True)
class Found:
    """One page of matches in stable order, and what the search saw of the rest."""

    matches: list[TextMatch]
    total: int
    """Matches in all pages: exact when ``exact``, else a lower bound."""
    exact: bool
    per_file: dict[str, int]
    """Matches per path, over all pages (over what was read when not ``exact``)."""


async def search(
    root: Path,
    pattern: str,
    *,
    regex: bool = False,
    case_sensitive: bool = True,
    path_glob: str | None = None,
    max_results: int = 200,
    offset: int = 0,
    timeout: float = 10.0,
) -> Found:
    """Matches ``offset``..``offset + max_results`` under ``root`` in (path, line) order.

    ripgrep searches files in parallel and prints them in no fixed order. One parallel
    run is read to the end: every match is counted per file (so ``total`` is exact) and
    the first ``offset + max_results`` in order are kept in a heap, so the same commit
    always gives the same pages without a second, sorted (single-threaded) run. Only a
    pathological search of more than :data:`MAX_SCAN` matches, or one past the timeout,
    stops early; the first then finds its page with ``--sort=path``, the second answers
    what it found, ``total`` a lower bound.
    """
    kwargs: dict[str, Any] = {
        "regex": regex,
        "case_sensitive": case_sensitive,
        "path_glob": path_glob,
    }
    keep = offset + max_results
    state = _Scan(keep)
    exact = True
    try:
        async with asyncio.timeout(timeout):
            more = await _run(root, build_args(pattern, **kwargs), MAX_SCAN, state)
            if more:
                exact = False
                sorted_state = _Scan(keep)
                await _run(root, build_args(pattern, **kwargs, sort=True), keep, sorted_state)
                state.heap = sorted_state.heap
    except TimeoutError:
        exact = False  # what was found in time, a lower bound
    ranked = sorted((item[2] for item in state.heap), key=order)
    return Found(
        matches=ranked[offset:keep],
        total=state.count if exact else max(state.count, len(ranked)),
        exact=exact,
        per_file=state.per_file,
    )


class _Scan:
    """Matches read so far: counts per file and the ``keep`` first in order (a max-heap)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.count = 0
        self.per_file: dict[str, int] = {}
        self.heap: list[tuple[_Neg, int, TextMatch]] = []

    def add(self, match: TextMatch) -> None:
        self.count += 1
        self.per_file[match.path] = self.per_file.get(match.path, 0) + 1
        key = _Neg(order(match))
        if len(self.heap) < self.keep:
            heapq.heappush(self.heap, (key, self.count, match))
        elif key > self.heap[0][0]:
            heapq.heapreplace(self.heap, (key, self.count, match))


class _Neg:
    """Reverses a sort key, so ``heapq``'s min-heap keeps the smallest keys (a max-heap)."""

    __slots__ = ("key",)

    def __init__(self, key: tuple[list[str], int]) -> None:
        self.key = key

    def __lt__(self, other: _Neg) -> bool:
        return self.key > other.key

    def __gt__(self, other: _Neg) -> bool:
        return self.key < other.key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Neg) and self.key == other.key

    def __hash__(self) -> int:
        return hash((tuple(self.key[0]), self.key[1]))


async def _run(root: Path, args: list[str], limit: int, scan: _Scan) -> bool:
    """Feed up to ``limit`` matches of one ripgrep run to ``scan``; whether it had more."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=root,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=16 << 20,
    )
    more = False
    searched: int | None = None
    decoder = msgspec.json.Decoder()
    try:
        assert proc.stdout is not None
        async for raw_line in proc.stdout:
            event = decoder.decode(raw_line)
            kind = event.get("type")
            if kind == "summary":
                searched = int(event["data"]["stats"].get("searches", 0))
            if kind != "match":
                continue
            if scan.count >= limit:
                more = True
                break
            scan.add(_match(event["data"]))
    finally:
        # Kill only a run we stopped early (enough matches, timeout, cancellation). After
        # EOF rg is exiting on its own: killing it there would turn its exit status 2
        # (a bad pattern) into -9 and an error into an empty answer.
        if proc.returncode is None and (more or not _at_eof(proc)):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        _, stderr = await proc.communicate()
    # rg exits 0 (matches), 1 (none) or 2 (error); a kill we caused is not an error.
    if proc.returncode == 2 and not more:
        message = stderr.decode("utf-8", "replace").strip()
        if not message and searched == 0:
            return False  # "No files were searched": the glob matched nothing
        message = message or "ripgrep failed"
        field = "path_glob" if "glob" in message.lower() else "pattern"
        raise errors.QueryError(f"invalid {field}: {message[-500:]}", field=field)
    return more


def _at_eof(proc: asyncio.subprocess.Process) -> bool:
    return proc.stdout is not None and proc.stdout.at_eof()


def _match(data: dict[str, Any]) -> TextMatch:
    path, _ = _text(data["path"])
    line_text, line_bytes = _text(data["lines"])
    submatches = data.get("submatches") or []
    start = int(submatches[0]["start"]) if submatches else 0
    column = len(line_bytes[:start].decode("utf-8", "replace")) + 1
    text = line_text.rstrip("\r\n")
    return TextMatch(
        path=path.removeprefix("./"),
        line=int(data["line_number"]),
        column=column,
        text=text[: models.MAX_LINE_CHARS],
        length=len(text),
    )
