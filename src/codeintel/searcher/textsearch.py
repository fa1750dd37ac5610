"""search_text: ripgrep over the generation's materialised worktree.

ripgrep is the fastest correct grep we can ship (a wheel puts ``rg`` next to
the interpreter); we run it as an asyncio subprocess, so the event loop never
blocks, read its ``--json`` stream line by line, and kill it as soon as
``max_results`` lines are in or the timeout passes (the answer then says
``truncated``). Patterns go through ``--regexp=`` so one starting with ``-`` is
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

MAX_LINE_CHARS = 500
"""Matched lines are cut to this many characters; minified files otherwise flood the answer."""


@dataclasses.dataclass(frozen=True, slots=True)
class TextMatch:
    path: str
    line: int
    column: int
    text: str


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
    pattern: str, *, regex: bool, case_sensitive: bool, path_glob: str | None
) -> list[str]:
    args = [rg_binary(), "--json", "--no-config", "--no-ignore", "--hidden", "--no-messages"]
    args.append("--case-sensitive" if case_sensitive else "--ignore-case")
    if not regex:
        args.append("--fixed-strings")
    if path_glob:
        args.append(f"--glob={path_glob}")
    args.append(f"--regexp={pattern}")
    return args


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
    """Matching lines under ``root`` (sorted by path, line) and whether the list was cut short."""
    args = build_args(pattern, regex=regex, case_sensitive=case_sensitive, path_glob=path_glob)
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=root,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=16 << 20,
    )
    matches: list[TextMatch] = []
    truncated = False
    decoder = msgspec.json.Decoder()
    try:
        async with asyncio.timeout(timeout):
            assert proc.stdout is not None
            async for raw_line in proc.stdout:
                event = decoder.decode(raw_line)
                if event.get("type") != "match":
                    continue
                match = _match(event["data"])
                if match is None:
                    continue
                if len(matches) >= max_results:
                    truncated = True
                    break
                matches.append(match)
    except TimeoutError:
        truncated = True
    finally:
        # Kill only a run we stopped early (enough matches, timeout, cancellation). After
        # EOF rg is exiting on its own: killing it there would turn its exit status 2
        # (a bad pattern) into -9 and an error into an empty answer.
        if proc.returncode is None and (truncated or not _at_eof(proc)):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        _, stderr = await proc.communicate()
    # rg exits 0 (matches), 1 (none) or 2 (error); a kill we caused is not an error.
    if proc.returncode == 2 and not truncated:
        message = stderr.decode("utf-8", "replace").strip() or "ripgrep failed"
        field = "path_glob" if "glob" in message.lower() else "pattern"
        raise errors.QueryError(f"invalid {field}: {message[-500:]}", field=field)
    matches.sort(key=lambda m: (m.path, m.line))
    return matches, truncated


def _at_eof(proc: asyncio.subprocess.Process) -> bool:
    return proc.stdout is not None and proc.stdout.at_eof()


def _match(data: dict[str, Any]) -> TextMatch | None:
    path, _ = _text(data["path"])
    line_text, line_bytes = _text(data["lines"])
    submatches = data.get("submatches") or []
    start = int(submatches[0]["start"]) if submatches else 0
    column = len(line_bytes[:start].decode("utf-8", "replace")) + 1
    text = line_text.rstrip("\r\n")
    if len(text) > MAX_LINE_CHARS:
        text = text[:MAX_LINE_CHARS]
    return TextMatch(
        path=path.removeprefix("./"), line=int(data["line_number"]), column=column, text=text
    )
