"""Precompute a generation's path history and blame (the ``history/`` files, ``core/history_index.py``).

One ``git log --name-status -M`` walk records every commit and what it changed;
an update walks only ``parent..new`` and appends. Blame is ``git blame
--porcelain`` once per indexed text file, ``history_workers`` processes at a
time, parsed by the searcher's own parser so answers are identical; an update
re-blames only the files some commit since the parent touched. Measured cost and
size: ``benchmarks/results/history.md``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import heapq
import logging
import os
import time
from pathlib import Path

import msgspec
import numpy as np

from codeintel.core import errors, gitrun
from codeintel.core import history as history_mod
from codeintel.core import history_index as hx
from codeintel.core import settings as settings_mod
from codeintel.core import store as store_mod
from codeintel.core.store.chunks import ChunkDB
from codeintel.indexer import progress as progress_mod

logger = logging.getLogger(__name__)

_FORMAT = "%x01%H%x00%P%x00%ct%x00%an%x00%ae%x00%aI%x00%s"
_NFIELDS = 7
_FILE_MODES = ("100644", "100755")


@dataclasses.dataclass
class Stats:
    commits: int = 0
    new_commits: int = 0
    files_blamed: int = 0
    files_reused: int = 0
    files_failed: int = 0
    lines: int = 0
    bytes: int = 0
    walk_seconds: float = 0.0
    blame_seconds: float = 0.0


class _Table:
    """The commit table while it is built: append-only, so commit ids stay valid."""

    def __init__(self, commit: str) -> None:
        self.commit = commit
        self.shas: list[bytes] = []
        self.ids: dict[bytes, int] = {}
        self.parents: list[list[int]] = []
        self.times: list[int] = []
        self.log: list[list[int]] = []
        self.blame: list[list[int]] = []
        self.strings: list[str] = []
        self.string_ids: dict[str, int] = {}
        self.changes: list[tuple[int, int, int, int]] = []

    @classmethod
    def load(cls, t: hx.CommitTable, commit: str) -> _Table:
        self = cls(commit)
        self.shas = [t.shas[i : i + 20] for i in range(0, len(t.shas), 20)]
        self.ids = {sha: i for i, sha in enumerate(self.shas)}
        starts, parents = hx.as_i32(t.parent_starts), hx.as_i32(t.parents)
        self.parents = [parents[starts[i] : starts[i + 1]].tolist() for i in range(len(self.shas))]
        self.times = hx.as_i64(t.commit_times).tolist()
        self.log = hx.as_i32(t.log_fields, hx.LOG_FIELDS).tolist()
        self.blame = hx.as_i32(t.blame_fields, hx.LOG_FIELDS).tolist()
        self.strings = list(t.strings)
        self.string_ids = {s: i for i, s in enumerate(self.strings)}
        self.changes = [tuple(row) for row in hx.as_i32(t.changes, 4).tolist()]  # type: ignore[misc]
        return self

    def intern(self, s: str) -> int:
        i = self.string_ids.get(s)
        if i is None:
            i = self.string_ids[s] = len(self.strings)
            self.strings.append(s)
        return i

    def append(self, records: list[tuple[list[str], list[tuple[str, str, str]]]]) -> int:
        """Add walked commits (newest first, as git prints them); returns how many were new."""
        fresh = []
        for fields, changes in records:
            sha = bytes.fromhex(fields[0])
            if sha in self.ids:
                continue
            self.ids[sha] = len(self.shas)
            self.shas.append(sha)
            fresh.append((fields, changes))
        for fields, changes in fresh:
            cid = len(self.parents)
            parents = [self.ids.get(bytes.fromhex(p)) for p in fields[1].split()]
            # A parent outside the table is a shallow boundary: git walks it as a root.
            self.parents.append([p for p in parents if p is not None])
            self.times.append(int(fields[2]))
            self.log.append([self.intern(f) for f in fields[3:7]])
            self.blame.append([-1] * hx.LOG_FIELDS)
            for status, path, old in changes:
                old_id = self.intern(old) if old else -1
                self.changes.append((cid, self.intern(path), old_id, ord(status[0])))
        return len(fresh)

    def walk_order(self, head: int) -> list[int]:
        """``git log <head>``'s default order: newest committer time first, ties in the
        order git queued them (``commit_list_insert_by_date``), each commit once."""
        heap = [(-self.times[head], 0, head)]
        seen = {head}
        seq = 1
        order: list[int] = []
        while heap:
            _, _, cid = heapq.heappop(heap)
            order.append(cid)
            for p in self.parents[cid]:
                if p not in seen:
                    seen.add(p)
                    heapq.heappush(heap, (-self.times[p], seq, p))
                    seq += 1
        return order

    def encode(self) -> hx.CommitTable:
        order = self.walk_order(self.ids[bytes.fromhex(self.commit)])
        if len(order) != len(self.shas):
            raise errors.GitError(
                f"history walk of {self.commit[:12]} reached {len(order)} of {len(self.shas)} commits"
            )
        rank = np.empty(len(order), dtype=np.int64)
        rank[np.asarray(order, dtype=np.int64)] = np.arange(len(order))
        ch = np.asarray(self.changes, dtype=np.int64).reshape(-1, 4)
        rows = np.arange(len(ch))
        renamed = ch[:, 2] >= 0
        touch_path = np.concatenate([ch[:, 1], ch[renamed, 2]])
        touch_row = np.concatenate([rows, rows[renamed]])
        by = np.lexsort((rank[ch[touch_row, 0]] if len(ch) else touch_row, touch_path))
        touch_path, touch_row = touch_path[by], touch_row[by]
        path_ids, first = np.unique(touch_path, return_index=True)
        starts = np.append(first, len(touch_path))
        n = len(self.shas)
        pstarts = np.zeros(n + 1, dtype=np.int64)
        pstarts[1:] = np.cumsum([len(p) for p in self.parents])
        return hx.CommitTable(
            commit=self.commit,
            shas=b"".join(self.shas),
            parent_starts=hx.i32(pstarts),
            parents=hx.i32([p for ps in self.parents for p in ps]),
            commit_times=hx.i64(self.times),
            order=hx.i32(order),
            log_fields=hx.i32(np.asarray(self.log, dtype=np.int64).reshape(-1, hx.LOG_FIELDS)),
            blame_fields=hx.i32(np.asarray(self.blame, dtype=np.int64).reshape(-1, hx.LOG_FIELDS)),
            changes=hx.i32(ch),
            path_ids=hx.i32(path_ids),
            path_starts=hx.i32(starts),
            path_rows=hx.i32(touch_row),
            strings=self.strings,
        )


def walk(mirror: Path, *revs: str) -> list[tuple[list[str], list[tuple[str, str, str]]]]:
    """``git log --name-status -M`` over ``revs``: (header fields, [(status, path, old path)])."""
    out = gitrun.run(
        mirror, "log", "-z", "--name-status", "-M", f"--format={_FORMAT}", *revs, "--", timeout=None
    )
    tokens = out.split(b"\0")
    records: list[tuple[list[str], list[tuple[str, str, str]]]] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith(b"\x01"):
            i += 1
            continue
        fields = [t.decode("utf-8", "replace") for t in tokens[i : i + _NFIELDS]]
        fields[0] = fields[0][1:]
        i += _NFIELDS
        changes: list[tuple[str, str, str]] = []
        while i < len(tokens):
            status = tokens[i].lstrip(b"\n").decode("ascii", "replace")
            if not status or status.startswith("\x01"):
                break
            if status[0] in "RC":
                old, new = tokens[i + 1], tokens[i + 2]
                changes.append((status[0], _path(new), _path(old)))
                i += 3
            else:
                changes.append((status[0], _path(tokens[i + 1]), ""))
                i += 2
        records.append((fields, changes))
    return records


def _path(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _touched(mirror: Path, old: str, new: str) -> set[str]:
    """Every path any commit of ``old..new`` changed against any of its parents."""
    out = gitrun.run(
        mirror, "log", "-z", "-m", "-r", "--name-only", "--no-renames", "--format=", f"{old}..{new}"
    )
    return {_path(t.strip(b"\n")) for t in out.split(b"\0") if t.strip(b"\n")}


def _tree(mirror: Path, commit: str) -> dict[str, tuple[str, str, int]]:
    out = gitrun.run(mirror, "ls-tree", "-r", "-l", "-z", "--full-tree", commit)
    tree: dict[str, tuple[str, str, int]] = {}
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, path = record.split(b"\t", 1)
        mode, _type, blob, size = meta.decode().split()
        tree[_path(path)] = (mode, blob, int(size) if size != "-" else 0)
    return tree


def _workers(cfg: settings_mod.IndexSettings) -> int:
    if cfg.history_workers > 0:
        return cfg.history_workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def write(
    out_dir: Path,
    mirror: Path,
    commit: str,
    parent: store_mod.Generation | None,
    cfg: settings_mod.IndexSettings,
    reporter: progress_mod.Reporter,
) -> Stats | None:
    """Write ``history/`` for ``commit`` into the generation being built at ``out_dir``.

    Reuses the parent generation's tables when its commit is an ancestor of ``commit``.
    Returns None (and writes nothing) when ``cfg.history`` is off.
    """
    if not cfg.history:
        return None
    stats = Stats()
    started = time.perf_counter()
    previous = hx.read_tables(parent.path, parent.manifest.commit) if parent else None
    old_commit = parent.manifest.commit if parent else ""
    incremental = previous is not None and history_mod.is_ancestor(mirror, old_commit, commit)
    if previous is not None and incremental:
        table = _Table.load(previous[0], commit)
        records = walk(mirror, commit, f"^{old_commit}") if old_commit != commit else []
    else:
        table = _Table(commit)
        records = walk(mirror, commit)
    known = len(table.shas)
    stats.new_commits = table.append(records)
    stats.commits = len(table.shas)
    stats.walk_seconds = time.perf_counter() - started

    started = time.perf_counter()
    reusable = (
        _reusable_blame(mirror, table, known, previous, old_commit, commit) if incremental else {}
    )
    tree = _tree(mirror, commit)
    db = ChunkDB.open(out_dir / store_mod.CHUNKS_DB, readonly=True)
    try:
        indexed = db.paths()
    finally:
        db.close()
    targets = [p for p in indexed if p in tree and tree[p][0] in _FILE_MODES]
    blamed: dict[str, tuple[bytes, np.ndarray]] = {}
    todo: list[str] = []
    for p in targets:
        blob = bytes.fromhex(tree[p][1])
        kept = reusable.get(p)
        if kept is not None and kept[0] == blob:
            blamed[p] = kept
            stats.files_reused += 1
        else:
            todo.append(p)
    todo.sort(key=lambda p: -tree[p][2])  # largest first: the pool ends together
    with (
        reporter.stage("history", total=len(todo)) as stage,
        concurrent.futures.ThreadPoolExecutor(_workers(cfg)) as pool,
    ):
        for path, result in zip(
            todo, pool.map(lambda p: _blame_file(mirror, commit, p), todo), strict=True
        ):
            stage.advance()
            if result is None:
                stats.files_failed += 1
                continue
            lines = _record_blame(table, path, result)
            if lines is None:
                stats.files_failed += 1
                continue
            blamed[path] = (bytes.fromhex(tree[path][1]), lines)
            stats.files_blamed += 1
    stats.blame_seconds = time.perf_counter() - started

    encoded = table.encode()
    paths = sorted(blamed)
    lengths = [len(blamed[p][1]) for p in paths]
    starts = np.zeros(len(paths) + 1, dtype=np.int64)
    starts[1:] = np.cumsum(lengths)
    blame = hx.BlameTable(
        commit=commit,
        paths=paths,
        blobs=b"".join(blamed[p][0] for p in paths),
        starts=hx.i64(starts),
        lines=hx.i32(np.concatenate([blamed[p][1] for p in paths]) if paths else []),
    )
    stats.lines = int(starts[-1])
    (out_dir / hx.HISTORY_DIR).mkdir(exist_ok=True)
    for rel, obj in ((hx.COMMITS_FILE, encoded), (hx.BLAME_FILE, blame)):
        data = msgspec.msgpack.encode(obj)
        (out_dir / rel).write_bytes(data)
        stats.bytes += len(data)
    reporter.timings["history_walk"] = round(stats.walk_seconds, 3)
    reporter.timings["history_blame"] = round(stats.blame_seconds, 3)
    logger.info(
        "history: %d commits (%d new), %d files blamed, %d reused, %d left to git, "
        "%d lines, %.1f MB, walk %.1f s, blame %.1f s",
        stats.commits,
        stats.new_commits,
        stats.files_blamed,
        stats.files_reused,
        stats.files_failed,
        stats.lines,
        stats.bytes / 1e6,
        stats.walk_seconds,
        stats.blame_seconds,
    )
    return stats


def _reusable_blame(
    mirror: Path,
    table: _Table,
    known: int,
    previous: tuple[hx.CommitTable, hx.BlameTable | None] | None,
    old: str,
    new: str,
) -> dict[str, tuple[bytes, np.ndarray]]:
    """The parent's blames still true at ``new``.

    A blame stays true when no commit since the parent touched the file (the same
    blob is not enough: a change and its revert move the blame to the revert) and
    ``new``'s first-parent chain passes through the parent's commit (blame follows
    the first parent whose blob is identical, so through a merge that did not touch
    the file it would otherwise continue on another line of history).
    """
    if previous is None or previous[1] is None:
        return {}
    old_id = table.ids[bytes.fromhex(old)]
    cid = table.ids[bytes.fromhex(new)]
    while cid != old_id:
        if not table.parents[cid] or cid < known:  # left the new commits elsewhere
            return {}
        cid = table.parents[cid][0]
    touched = _touched(mirror, old, new) if old != new else set()
    b = previous[1]
    starts = hx.as_i64(b.starts)
    lines = hx.as_i32(b.lines)
    return {
        p: (b.blobs[20 * k : 20 * k + 20], lines[starts[k] : starts[k + 1]])
        for k, p in enumerate(b.paths)
        if p not in touched
    }


def _blame_file(mirror: Path, commit: str, path: str) -> list[history_mod.BlameEntry] | None:
    try:
        out = gitrun.run(mirror, "blame", "--porcelain", commit, "--", path)
    except errors.GitError as e:
        logger.warning("history: %s stays on git at query time: %s", path, e)
        return None
    return history_mod.parse_porcelain(out)


def _record_blame(
    table: _Table, path: str, entries: list[history_mod.BlameEntry]
) -> np.ndarray | None:
    """Commit id per line, recording each commit's fields as blame reports them."""
    lines = np.empty(len(entries), dtype=np.int32)
    for i, e in enumerate(entries):
        cid = table.ids.get(bytes.fromhex(e.sha))
        if cid is None or e.line != i + 1:
            logger.warning("history: blame of %s does not match the walk; left to git", path)
            return None
        if table.blame[cid][0] < 0:
            table.blame[cid] = [table.intern(f) for f in (e.author, e.email, e.date, e.summary)]
        lines[i] = cid
    return lines
