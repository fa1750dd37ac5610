"""Blame and log at a fixed commit, the two history questions agents ask.

Why plain ``git`` subprocesses: measured on this project's benchmark repository
(see ``docs/architecture.md``, section *Searcher*), ``git blame --porcelain``
and ``git log --format`` run directly are the fastest *correct* way to answer.
GitPython's ``Repo.blame`` runs the same ``git blame`` and then parses the
porcelain in Python objects per line (slower, and it re-decodes names), and
pygit2's ``Repository.blame`` (libgit2) has to walk the history without git's
commit-graph and bloom-filter shortcuts, so it is several times slower on long
histories; its path-limited log needs a diff per commit in Python.

Every call is pinned to a commit sha, so answers never mix commits, and runs
through :mod:`codeintel.core.gitrun` (non-ASCII paths intact, a store owned by
another uid readable). :class:`AsyncGitClient` moves the blocking calls onto an executor so the event
loop never waits on git.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import re
from pathlib import Path

import msgspec

from codeintel.core import errors, gitrun

_ONLY_LINES = re.compile(r"has only (\d+) lines?")
_FIELD = "\x1f"
_RECORD = "\x1e"


class LogEntry(msgspec.Struct, frozen=True):
    """One commit that touched a file: a ``file_history`` row, and the first half of a blame row."""

    sha: str
    """Full commit id."""
    short_sha: str
    """The first 12 hex digits: unique in practice, short enough to quote."""
    author: str
    email: str
    date: str
    """Author date, ISO 8601 with the author's own UTC offset."""
    summary: str
    """The commit message's first line."""


class BlameEntry(LogEntry, frozen=True):
    """One line of a blame (a ``blame_range`` row): the commit that last changed it, and the line."""

    line: int
    """1-based line number at the blamed commit."""
    text: str
    """The line's content, without its newline."""


def _git(repo: Path, *args: str) -> bytes:
    return gitrun.run(repo, *args)


def _iso(epoch: str, tz: str) -> str:
    """``1700000000`` + ``+0200`` -> ``2023-11-14T22:13:20+02:00``."""
    sign = -1 if tz.startswith("-") else 1
    digits = tz.lstrip("+-").rjust(4, "0")
    offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    zone = dt.timezone(sign * offset)
    return dt.datetime.fromtimestamp(int(epoch), tz=zone).isoformat()


def _missing(message: str) -> bool:
    return "no such path" in message or "does not exist" in message or "no such ref" in message


def blame(repo: Path, commit: str, path: str, start_line: int, end_line: int) -> list[BlameEntry]:
    """Blame lines ``start_line..end_line`` (1-based, inclusive) of ``path`` at ``commit``.

    A range running past the end of the file is cut at the last line; a range
    starting past it is a :class:`~codeintel.core.errors.QueryError` on ``start_line``.
    """
    if start_line < 1 or end_line < start_line:
        raise errors.QueryError("need 1 <= start_line <= end_line", field="start_line")
    gitrun.check_ref(commit)
    try:
        out = _git(
            repo, "blame", "--porcelain", "-L", f"{start_line},{end_line}", commit, "--", path
        )
    except errors.GitError as e:
        text = str(e)
        if _missing(text):
            raise errors.PathNotFoundError(path, commit) from e
        match = _ONLY_LINES.search(text)
        if match is None:
            raise
        last = int(match.group(1))
        if start_line > last:
            raise errors.QueryError(
                f"start_line {start_line} is past the end of {path!r} ({last} lines)",
                field="start_line",
            ) from e
        if last == 0:
            return []
        out = _git(repo, "blame", "--porcelain", "-L", f"{start_line},{last}", commit, "--", path)
    return parse_porcelain(out)


def parse_porcelain(out: bytes) -> list[BlameEntry]:
    """Parse ``git blame --porcelain``; commit headers appear once, so they are remembered by sha."""
    commits: dict[str, dict[str, str]] = {}
    entries: list[BlameEntry] = []
    lines = out.decode("utf-8", "replace").split("\n")
    i = 0
    while i < len(lines):
        header = lines[i].split(" ")
        i += 1
        if len(header) < 3 or len(header[0]) < 40:
            continue
        sha, final_line = header[0], int(header[2])
        info = commits.setdefault(sha, {})
        while i < len(lines) and not lines[i].startswith("\t"):
            key, _, value = lines[i].partition(" ")
            info[key] = value
            i += 1
        text = lines[i][1:] if i < len(lines) else ""
        i += 1
        email = info.get("author-mail", "").strip("<>")
        entries.append(
            BlameEntry(
                line=final_line,
                sha=sha,
                short_sha=sha[:12],
                author=info.get("author", ""),
                email=email,
                date=_iso(info.get("author-time", "0"), info.get("author-tz", "+0000")),
                summary=info.get("summary", ""),
                text=text,
            )
        )
    return entries


def history(repo: Path, commit: str, path: str, limit: int) -> list[LogEntry]:
    """The last ``limit`` commits reachable from ``commit`` that touched ``path``, newest first."""
    if limit < 1:
        raise errors.QueryError("limit must be at least 1", field="limit")
    gitrun.check_ref(commit)
    fmt = _FIELD.join(("%H", "%an", "%ae", "%aI", "%s")) + _RECORD
    try:
        out = _git(
            repo, "log", f"-n{limit}", f"--format={fmt}", "--end-of-options", commit, "--", path
        )
    except errors.GitError as e:
        if _missing(str(e)):
            raise errors.PathNotFoundError(path, commit) from e
        raise
    entries: list[LogEntry] = []
    for record in out.decode("utf-8", "replace").split(_RECORD):
        fields = record.strip("\n").split(_FIELD)
        if len(fields) != 5:
            continue
        sha, author, email, date, summary = fields
        entries.append(LogEntry(sha, sha[:12], author, email, date, summary))
    if not entries and not path_exists(repo, commit, path):
        raise errors.PathNotFoundError(path, commit)
    return entries


def path_exists(repo: Path, commit: str, path: str) -> bool:
    """Whether ``path`` (file or directory) exists in ``commit``'s tree."""
    try:
        _git(repo, "cat-file", "-e", "--end-of-options", f"{gitrun.check_ref(commit)}:{path}")
    except errors.GitError:
        return False
    return True


class AsyncGitClient:
    """Blame and log for one repository, run on an executor so callers can ``await`` them.

    ``executor`` is shared with the rest of the searcher so one bound caps all
    blocking work; ``None`` uses the loop's default executor.
    """

    def __init__(self, repo: Path, executor: concurrent.futures.Executor | None = None) -> None:
        self.repo = Path(repo)
        self._executor = executor

    async def blame(
        self, commit: str, path: str, start_line: int, end_line: int
    ) -> list[BlameEntry]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, blame, self.repo, commit, path, start_line, end_line
        )

    async def history(self, commit: str, path: str, limit: int) -> list[LogEntry]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, history, self.repo, commit, path, limit)

    async def path_exists(self, commit: str, path: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, path_exists, self.repo, commit, path)
