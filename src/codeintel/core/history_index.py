"""Precomputed blame and path history of one generation: the ``history/`` files and their reader.

Raw ``git blame`` and ``git log`` cost grows with the depth of history (on 20K
commits, hundreds of milliseconds per call, ``benchmarks/results/history.md``);
agents call them in loops. The indexer walks the history once and blames every
indexed text file (``indexer/history_build.py``); a searcher then answers with a
dictionary lookup and a slice. What the files hold, and where answers differ
from ``git log --follow``, is in ``docs/architecture.md`` (*History index*).

Both files are msgspec msgpack; numeric columns are little-endian numpy bytes.
A reader that finds no ``history/``, an unknown ``format`` or another commit
returns ``None`` from :meth:`HistoryIndex.open`, and callers use git.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import msgspec
import numpy as np

from codeintel.core import errors
from codeintel.core.history import BlameEntry, LogEntry

logger = logging.getLogger(__name__)

HISTORY_DIR = "history"
COMMITS_FILE = f"{HISTORY_DIR}/commits.msgpack"
BLAME_FILE = f"{HISTORY_DIR}/blame.msgpack"

# Changelog:
#   1  commits.msgpack (commit table, changes, per-path rows by walk rank),
#      blame.msgpack (per file: blob sha, int32 commit id per line).
HISTORY_FORMAT = 1

LOG_FIELDS = 4
"""author, email, date, summary: string ids per commit, as ``git log`` (``%an %ae %aI %s``)
and as ``git blame --porcelain`` report them (they differ: mailmap, multi-line subjects)."""


class CommitTable(msgspec.Struct, kw_only=True):
    """Every commit reachable from ``commit``, ids in append order (stable across updates)."""

    format: int = HISTORY_FORMAT
    commit: str
    shas: bytes
    """20 bytes per commit id."""
    parent_starts: bytes
    """int32, n + 1: the parents of id ``i`` are ``parents[parent_starts[i]:parent_starts[i+1]]``."""
    parents: bytes
    """int32 commit ids, in the commit's parent order."""
    commit_times: bytes
    """int64 committer time; the walk order is by it (as ``git log``'s default order)."""
    order: bytes
    """int32 commit ids in ``git log <commit>`` order; a commit's position is its rank."""
    log_fields: bytes
    """int32 (n, 4) string ids, from ``git log``."""
    blame_fields: bytes
    """int32 (n, 4) string ids, from ``git blame --porcelain``; -1 where never blamed."""
    changes: bytes
    """int32 (m, 4): commit id, path id, old path id (-1 unless a rename), status letter."""
    path_ids: bytes
    """int32 string ids of every path a change touches (as new or old path)."""
    path_starts: bytes
    """int32, len(path_ids) + 1: slices of ``path_rows``."""
    path_rows: bytes
    """int32 change rows touching each path, by ascending rank (newest first)."""
    strings: list[str]


class BlameTable(msgspec.Struct, kw_only=True):
    """Line -> commit id for every blamed file at ``commit``."""

    format: int = HISTORY_FORMAT
    commit: str
    paths: list[str]
    blobs: bytes
    """20 bytes per path: the blob sha the blame is of."""
    starts: bytes
    """int64, len(paths) + 1: the lines of path ``k`` are ``lines[starts[k]:starts[k+1]]``."""
    lines: bytes
    """int32 commit id per line."""


def i32(a: np.ndarray | list[int]) -> bytes:
    return np.asarray(a, dtype="<i4").tobytes()


def i64(a: np.ndarray | list[int]) -> bytes:
    return np.asarray(a, dtype="<i8").tobytes()


def as_i32(b: bytes, cols: int = 1) -> np.ndarray:
    a = np.frombuffer(b, dtype="<i4")
    return a.reshape(-1, cols) if cols > 1 else a


def as_i64(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<i8")


def blob_sha(data: bytes) -> bytes:
    """The git blob id of ``data`` (sha1 of ``blob <len>\\0<data>``), 20 raw bytes."""
    h = hashlib.sha1(b"blob %d\0" % len(data), usedforsecurity=False)
    h.update(data)
    return h.digest()


def read_tables(generation_dir: Path, commit: str) -> tuple[CommitTable, BlameTable | None] | None:
    """Both tables of a generation, or None when it has none this reader can use."""
    path = Path(generation_dir) / COMMITS_FILE
    if not path.is_file():
        return None
    try:
        commits = msgspec.msgpack.decode(path.read_bytes(), type=CommitTable)
        blame_path = Path(generation_dir) / BLAME_FILE
        blame = (
            msgspec.msgpack.decode(blame_path.read_bytes(), type=BlameTable)
            if blame_path.is_file()
            else None
        )
    except (OSError, msgspec.MsgspecError) as e:
        logger.warning("ignoring the history index of %s: %s", generation_dir, e)
        return None
    for table in (commits, blame):
        if table is None:
            continue
        if table.format > HISTORY_FORMAT or table.commit != commit:
            logger.warning(
                "ignoring the history index of %s: format %d for commit %s (want <= %d, %s)",
                generation_dir,
                table.format,
                table.commit[:12],
                HISTORY_FORMAT,
                commit[:12],
            )
            return None
    return commits, blame


class HistoryIndex:
    """Answers ``file_history`` (with ``--follow``) and ``blame_range`` from the tables."""

    def __init__(self, commits: CommitTable, blame: BlameTable | None) -> None:
        c = commits
        self.commit = c.commit
        self._strings = c.strings
        self._shas = c.shas
        self._log = as_i32(c.log_fields, LOG_FIELDS)
        self._blame_fields = as_i32(c.blame_fields, LOG_FIELDS)
        self._changes = as_i32(c.changes, 4)
        order = as_i32(c.order)
        self._order = order
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        rows = as_i32(c.path_rows)
        self._rows = rows
        self._row_ranks = rank[self._changes[rows, 0]] if len(rows) else np.empty(0, np.int64)
        starts = as_i32(c.path_starts)
        self._path_slots = {
            c.strings[int(pid)]: (int(starts[k]), int(starts[k + 1]))
            for k, pid in enumerate(as_i32(c.path_ids))
        }
        self._blame_slots: dict[str, int] = {}
        if blame is not None:
            self._blame_slots = {p: k for k, p in enumerate(blame.paths)}
            self._blobs = blame.blobs
            self._starts = as_i64(blame.starts)
            self._lines = as_i32(blame.lines)

    @classmethod
    def open(cls, generation_dir: Path, commit: str) -> HistoryIndex | None:
        tables = read_tables(generation_dir, commit)
        return cls(*tables) if tables is not None else None

    def __len__(self) -> int:
        return len(self._order)

    def _sha(self, cid: int) -> str:
        return self._shas[20 * cid : 20 * cid + 20].hex()

    def log(self, path: str, limit: int) -> list[LogEntry]:
        """``git log --follow -n limit <commit> -- path``: non-merge commits that touch the
        followed path, newest first, switching to the old name at a rename."""
        out: list[LogEntry] = []
        current = path
        after = -1
        while len(out) < limit:
            slot = self._path_slots.get(current)
            if slot is None:
                break
            lo, hi = slot
            ranks = self._row_ranks[lo:hi]
            i = int(np.searchsorted(ranks, after, side="right"))
            if i >= len(ranks):
                break
            rank = int(ranks[i])
            cid = int(self._order[rank])
            renamed_from = -1
            while i < len(ranks) and int(ranks[i]) == rank:
                _, new, old, status = self._changes[self._rows[lo + i]]
                if status == ord("R") and self._strings[new] == current:
                    renamed_from = int(old)
                i += 1
            author, email, date, summary = (self._strings[s] for s in self._log[cid])
            sha = self._sha(cid)
            out.append(LogEntry(sha, sha[:12], author, email, date, summary))
            after = rank
            if renamed_from >= 0:
                current = self._strings[renamed_from]
        return out

    def blamed_blob(self, path: str) -> bytes | None:
        k = self._blame_slots.get(path)
        return None if k is None else self._blobs[20 * k : 20 * k + 20]

    def blame(
        self, path: str, start_line: int, end_line: int, data: bytes
    ) -> list[BlameEntry] | None:
        """Lines ``start_line..end_line`` of ``path`` whose content is ``data``; None when
        the file was not blamed at index time or ``data`` is not the blob that was."""
        k = self._blame_slots.get(path)
        if k is None or blob_sha(data) != self._blobs[20 * k : 20 * k + 20]:
            return None
        lo, hi = int(self._starts[k]), int(self._starts[k + 1])
        n = hi - lo
        if start_line > n:
            raise errors.QueryError(
                f"start_line {start_line} is past the end of {path!r} ({n} lines)",
                field="start_line",
            )
        end = min(end_line, n)
        texts = data.split(b"\n", end)[start_line - 1 : end]
        entries: list[BlameEntry] = []
        for offset, raw in enumerate(texts):
            line = start_line + offset
            cid = int(self._lines[lo + line - 1])
            author, email, date, summary = (self._strings[s] for s in self._blame_fields[cid])
            sha = self._sha(cid)
            text = raw.decode("utf-8", "replace")
            entries.append(
                BlameEntry(sha, sha[:12], author, email, date, summary, line=line, text=text)
            )
        return entries
