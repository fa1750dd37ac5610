"""search_text: ripgrep over the generation's materialised worktree.

ripgrep is the fastest correct grep we can ship (a wheel puts ``rg`` next to
the interpreter); we run it as an asyncio subprocess, so the event loop never
blocks, read its ``--json`` stream line by line, and kill it as soon as
``max_results`` lines are in or the timeout passes (the answer then says
``truncated``); a cut list is the first ``max_results`` in path order (see
:func:`search`). Patterns go through ``--regexp=`` so one starting with ``-`` is
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
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import msgspec

from codeintel.core import errors
from codeintel.searcher import models


@dataclasses.dataclass(frozen=True, slots=True)
class TextMatch:
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


async def search(
    root: Path,
    pattern: str,
    *,
    regex: bool = False,
    case_sensitive: bool = True,
    path_glob: str | None = None,
    max_results: int = 200,
    timeout: float = 10.0,
) -> tuple[list[TextMatch], bool]:
    """Matching lines under ``root`` (sorted by path, line) and whether the list was cut short.

    ripgrep searches files in parallel and prints them in no fixed order, so a list cut
    at ``max_results`` while reading would keep different matches from run to run. A
    first parallel run answers whenever everything fits; when it does not, a second run
    with ``--sort=path`` (one thread, files in order) returns the first ``max_results``
    matches in order, so the same commit always gives the same answer.
    """
    kwargs: dict[str, Any] = {
        "regex": regex,
        "case_sensitive": case_sensitive,
        "path_glob": path_glob,
    }
    matches: list[TextMatch] = []
    try:
        async with asyncio.timeout(timeout):
            more = await _run(root, build_args(pattern, **kwargs), max_results, matches)
            if more:
                matches = []
                more = await _run(
                    root, build_args(pattern, **kwargs, sort=True), max_results, matches
                )
    except TimeoutError:
        more = True  # what was found in time, marked as cut short
    matches.sort(key=order)
    return matches, more


async def _run(root: Path, args: list[str], max_results: int, matches: list[TextMatch]) -> bool:
    """Append up to ``max_results`` matches of one ripgrep run; whether it had more."""
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
            match = _match(event["data"])
            if len(matches) >= max_results:
                more = True
                break
            matches.append(match)
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
