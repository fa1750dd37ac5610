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
another uid readable). :class:`AsyncGitClient` answers from the generation's
precomputed history when it has one (``core/history_index.py``: ~0.2 ms instead
of ~150 ms on 20K commits) and otherwise runs git through a bounded cache, on an
executor so the event loop never waits on git.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import datetime as dt
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from codeintel.core import errors, gitrun

if TYPE_CHECKING:
    from codeintel.core.history_index import HistoryIndex

_ONLY_LINES = re.compile(r"has only (\d+) lines?")
_FIELD = "\x1f"
_RECORD = "\x1e"


class LogEntry(msgspec.Struct, frozen=True):
    """One commit that touched a file: a ``file_history`` row, and the first half of a blame row."""

    sha: Annotated[str, msgspec.Meta(description="Full sha.")]
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


def is_ancestor(repo: Path, old: str, new: str) -> bool:
    """Whether commit ``old`` is reachable from ``new`` (both present in ``repo``)."""
    try:
        _git(repo, "merge-base", "--is-ancestor", gitrun.check_ref(old), gitrun.check_ref(new))
    except errors.GitError:
        return False
    return True


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
    fields: dict[str, tuple[str, str, str, str]] = {}
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
        if sha not in fields:  # the author lines come with a commit's first group only
            fields[sha] = (
                info.get("author", ""),
                info.get("author-mail", "").strip("<>"),
                _iso(info.get("author-time", "0"), info.get("author-tz", "+0000")),
                info.get("summary", ""),
            )
        author, email, date, summary = fields[sha]
        entries.append(
            BlameEntry(sha, sha[:12], author, email, date, summary, line=final_line, text=text)
        )
    return entries


def history(
    repo: Path, commit: str, path: str, limit: int, *, follow: bool = False
) -> list[LogEntry]:
    """The last ``limit`` commits reachable from ``commit`` that touched ``path``, newest first.

    ``follow`` (a file, not a directory) is ``git log --follow``: across renames.
    """
    if limit < 1:
        raise errors.QueryError("limit must be at least 1", field="limit")
    gitrun.check_ref(commit)
    fmt = _FIELD.join(("%H", "%an", "%ae", "%aI", "%s")) + _RECORD
    extra = ("--follow",) if follow else ()
    try:
        out = _git(
            repo,
            "log",
            *extra,
            f"-n{limit}",
            f"--format={fmt}",
            "--end-of-options",
            commit,
            "--",
            path,
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


class _LRU:
    """A bounded, thread-safe least-recently-used map for answers of the git path."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: collections.OrderedDict[Any, Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


GIT_CACHE_ENTRIES = 1024
"""Answers of the git path kept per process; a blame of 60 lines is ~10 KB, so at most ~10 MB."""

_cache = _LRU(GIT_CACHE_ENTRIES)


def cached_blame(
    repo: Path, commit: str, path: str, start_line: int, end_line: int
) -> list[BlameEntry]:
    """:func:`blame` through the bounded cache (answers at a commit never change)."""
    key = ("blame", str(repo), commit, path, start_line, end_line)
    found: list[BlameEntry] | None = _cache.get(key)
    if found is None:
        found = blame(repo, commit, path, start_line, end_line)
        _cache.put(key, found)
    return found


def cached_history(
    repo: Path, commit: str, path: str, limit: int, *, follow: bool = False
) -> list[LogEntry]:
    """:func:`history` through the bounded cache; a longer answer serves every shorter limit."""
    key = ("log", str(repo), commit, path, follow)
    found: tuple[int, list[LogEntry]] | None = _cache.get(key)
    if found is not None:
        fetched, entries = found
        if limit <= fetched or len(entries) < fetched:
            return entries[:limit]
    entries = history(repo, commit, path, limit, follow=follow)
    _cache.put(key, (limit, entries))
    return entries


class AsyncGitClient:
    """Blame and log for one repository, run on an executor so callers can ``await`` them.

    ``executor`` is shared with the rest of the searcher so one bound caps all
    blocking work; ``None`` uses the loop's default executor. With ``index`` (the
    generation's precomputed history) and ``worktree`` (its files), blame of an
    indexed file and the history of a file are lookups; everything else, and a
    generation built without history, goes to git through a bounded cache.
    """

    def __init__(
        self,
        repo: Path,
        executor: concurrent.futures.Executor | None = None,
        *,
        index: HistoryIndex | None = None,
        worktree: Path | None = None,
    ) -> None:
        self.repo = Path(repo)
        self._executor = executor
        self.index = index
        self.worktree = Path(worktree) if worktree is not None else None

    def blame_sync(
        self, commit: str, path: str, start_line: int, end_line: int
    ) -> list[BlameEntry]:
        if start_line < 1 or end_line < start_line:
            raise errors.QueryError("need 1 <= start_line <= end_line", field="start_line")
        found = self._indexed_blame(commit, path, start_line, end_line)
        if found is not None:
            return found
        return cached_blame(self.repo, commit, path, start_line, end_line)

    def _indexed_blame(
        self, commit: str, path: str, start_line: int, end_line: int
    ) -> list[BlameEntry] | None:
        """The precomputed blame of ``path``, checked against the worktree's file, or None."""
        index, worktree = self.index, self.worktree
        if index is None or worktree is None or commit != index.commit:
            return None
        if index.blamed_blob(path) is None:
            return None
        try:
            data = (worktree / path).read_bytes()
        except OSError:
            return None
        return index.blame(path, start_line, end_line, data)

    def history_sync(
        self, commit: str, path: str, limit: int, *, follow: bool = False
    ) -> list[LogEntry]:
        if limit < 1:
            raise errors.QueryError("limit must be at least 1", field="limit")
        if follow and self.index is not None and commit == self.index.commit:
            return self.index.log(path, limit)
        return cached_history(self.repo, commit, path, limit, follow=follow)

    async def blame(
        self, commit: str, path: str, start_line: int, end_line: int
    ) -> list[BlameEntry]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self.blame_sync, commit, path, start_line, end_line
        )

    async def history(
        self, commit: str, path: str, limit: int, *, follow: bool = False
    ) -> list[LogEntry]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, lambda: self.history_sync(commit, path, limit, follow=follow)
        )

    async def path_exists(self, commit: str, path: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, path_exists, self.repo, commit, path)
