"""Navigation at the indexed commit: reading a file's lines, bounded for an agent.

An agent that reaches codeintel over the network has no checkout; after a search
hit it needs the lines around it. :func:`read_file` answers numbered lines of one
file *as of the generation's commit*: the bytes are the blob the commit's tree
names, read from the materialised worktree when its git hash matches (a stat and
a SHA-1, well under a millisecond) and from the mirror (``git cat-file``)
otherwise, since ``git archive`` may rewrite a file (``export-subst``, eol
attributes) or leave it out (``export-ignore``). Decoded files are kept in a small
cache keyed by blob id, which is content-addressed and so valid across generations.

What an answer carries is bounded three ways: a default window of
:data:`DEFAULT_READ_LINES` lines when ``end_line`` is omitted, at most
:data:`MAX_READ_LINES` lines per call, and a character budget derived from
``max_tokens``; each line is cut at ``models.MAX_LINE_CHARS``. A cut answer says
``truncated: true`` and gives ``next_start_line``, the request that continues it.

Refused with the 4xx every tool gives: a path outside the tree (``..``, absolute,
or through a symlink that resolves outside it), a directory, a submodule and a
binary file (a NUL byte in its first 8,000 bytes, git's own test).
"""

from __future__ import annotations

import collections
import hashlib
import posixpath
import threading
from pathlib import Path
from typing import Any

from codeintel.core import errors, gitrun
from codeintel.core import git as git_mod
from codeintel.searcher import budget, models, tree
from codeintel.searcher import generations as generations_mod
from codeintel.searcher import paths as paths_mod

SYMLINK_MODE = "120000"
MAX_SYMLINK_HOPS = 16
BINARY_SNIFF_BYTES = 8000
"""Bytes searched for a NUL to call a file binary (git's ``buffer_is_binary``)."""

DEFAULT_READ_LINES = 200
"""Lines read_file returns when ``end_line`` is omitted: a long function with context, and
what fits the default budget (8,000 tokens at 2 bytes a token is ~200 rows of 40-character
code, with the ~30 bytes of JSON around each row)."""
MAX_READ_LINES = models.MAX_READ_LINES
ENVELOPE_BYTES = 600
"""JSON bytes reserved for an answer's fields around its rows."""
ROW_OVERHEAD_BYTES = len('{"line":,"text":""},') + 6
"""JSON around one line row (the number and a little escaping)."""

_CACHE_BYTES = 64 << 20
"""Decoded files kept across calls (by blob id): enough for the working set of a session."""


def estimate_tokens(answer: Any) -> int:
    """Size of an answer in tokens, by the house rule (``budget.estimate``)."""
    return budget.estimate(answer)


def byte_budget(max_tokens: int | None) -> int:
    """JSON bytes of rows an answer may carry within ``max_tokens`` (default: the house's)."""
    tokens = max_tokens or budget.DEFAULT_MAX_TOKENS
    return max(0, int(tokens * budget.BYTES_PER_TOKEN) - ENVELOPE_BYTES)


class _Lines:
    """A cache of decoded files by blob id, bounded by their size in bytes."""

    def __init__(self, capacity: int = _CACHE_BYTES) -> None:
        self._capacity = capacity
        self._used = 0
        self._items: collections.OrderedDict[str, tuple[list[str], int]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, blob: str) -> list[str] | None:
        with self._lock:
            found = self._items.get(blob)
            if found is None:
                return None
            self._items.move_to_end(blob)
            return found[0]

    def put(self, blob: str, lines: list[str], size: int) -> None:
        if size > self._capacity // 4:
            return
        with self._lock:
            if blob in self._items:
                return
            self._items[blob] = (lines, size)
            self._used += size
            while self._used > self._capacity:
                _, (_, dropped) = self._items.popitem(last=False)
                self._used -= dropped


_LINES = _Lines()


def resolve_file(
    gen: generations_mod.LoadedGeneration, path: str, field: str = "path"
) -> tuple[git_mod.TreeEntry, str]:
    """The tree entry of the file ``path`` names, following symlinks inside the tree.

    Returns (entry, resolved path). QueryError (422) for a path leaving the tree, a
    directory, a submodule or a dangling/looping symlink; PathNotFoundError (404) for
    a path absent from the commit."""
    paths_mod.confine(gen.worktree, path, field)
    current = path
    for _ in range(MAX_SYMLINK_HOPS):
        i = tree.entry_index(gen, current)
        if i is None:
            if tree.is_dir(gen, current):
                raise errors.QueryError(f"{current!r} is a directory, not a file", field=field)
            if current != path:
                raise errors.QueryError(
                    f"{path!r} is a symlink to {current!r}, which is not in the tree", field=field
                )
            raise errors.PathNotFoundError(path, gen.commit)
        entry = gen.tree[i]
        if entry.mode == tree.SUBMODULE_MODE:
            raise errors.QueryError(f"{current!r} is a submodule, not a file", field=field)
        if entry.mode != SYMLINK_MODE:
            return entry, current
        target = _blob_bytes(gen, entry).decode("utf-8", "surrogateescape")
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(current), target))
        if target.startswith("/") or joined == ".." or joined.startswith("../"):
            raise errors.QueryError(
                f"{path!r} is a symlink leaving the repository ({target!r})", field=field
            )
        current = joined
    raise errors.QueryError(f"{path!r}: too many levels of symlinks", field=field)


def indexed_file(gen: generations_mod.LoadedGeneration, path: str) -> git_mod.TreeEntry:
    """The tree entry of a path the generation indexed (a regular file of its tree): no
    confinement check, which a path from the index does not need; anything else goes
    through :func:`resolve_file`."""
    i = tree.entry_index(gen, path)
    if i is not None and gen.tree[i].mode not in (SYMLINK_MODE, tree.SUBMODULE_MODE):
        return gen.tree[i]
    return resolve_file(gen, path)[0]


def _git_blob_id(data: bytes, blob: str) -> str:
    header = b"blob %d\0" % len(data)
    digest = hashlib.sha256 if len(blob) == 64 else hashlib.sha1
    return digest(header + data).hexdigest()


def _blob_bytes(gen: generations_mod.LoadedGeneration, entry: git_mod.TreeEntry) -> bytes:
    """The blob's bytes: the worktree's copy when its hash matches, else ``git cat-file``."""
    if entry.mode != SYMLINK_MODE:
        try:
            data = (Path(gen.worktree) / entry.path).read_bytes()
        except OSError:
            data = None
        if (
            data is not None
            and len(data) == entry.size
            and _git_blob_id(data, entry.blob) == entry.blob
        ):
            return data
    return gitrun.run(Path(gen.git.repo), "cat-file", "blob", gitrun.check_ref(entry.blob))


def file_lines(
    gen: generations_mod.LoadedGeneration, entry: git_mod.TreeEntry, field: str = "path"
) -> list[str]:
    """The file's lines (without their newline), decoded as UTF-8 with replacement.

    QueryError for a binary file. Lines are split on ``\\n`` only, as git and
    tree-sitter count them; a final newline does not start a line."""
    cached = _LINES.get(entry.blob)
    if cached is not None:
        return cached
    data = _blob_bytes(gen, entry)
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        raise errors.QueryError(f"{entry.path!r} is a binary file", field=field)
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    _LINES.put(entry.blob, lines, len(data))
    return lines


def read_file(gen: generations_mod.LoadedGeneration, req: models.ReadFileRequest) -> dict[str, Any]:
    """The read_file answer (blocking: run it on the executor)."""
    entry, resolved = resolve_file(gen, req.path)
    lines = file_lines(gen, entry)
    total = len(lines)
    start = req.start_line or 1
    if req.end_line is not None and req.end_line < start:
        raise errors.QueryError("end_line must be >= start_line", field="end_line")
    if start > max(total, 1):
        raise errors.QueryError(
            f"start_line {start} is past the end of {req.path!r} ({total} lines)",
            field="start_line",
        )
    wanted_end = min(req.end_line, total) if req.end_line is not None else total
    end = min(wanted_end, start + MAX_READ_LINES - 1)
    if req.end_line is None:
        end = min(end, start + DEFAULT_READ_LINES - 1)
    left = byte_budget(req.max_tokens)
    rows: list[dict[str, Any]] = []
    cut_line = False
    for n in range(start, end + 1):
        text = lines[n - 1]
        row: dict[str, Any] = {"line": n, "text": text}
        if len(text) > models.MAX_LINE_CHARS:
            row["text"] = text[: models.MAX_LINE_CHARS]
            row["truncated"] = True
            cut_line = True
        cost = len(row["text"].encode()) + len(str(n)) + ROW_OVERHEAD_BYTES
        if rows and cost > left:
            break
        left -= cost
        rows.append(row)
    last = rows[-1]["line"] if rows else start - 1
    more = last < wanted_end
    answer: dict[str, Any] = {
        "results": rows,
        "path": req.path,
        "start_line": start,
        "end_line": last,
        "total_lines": total,
        "truncated": more or cut_line,
        "next_start_line": last + 1 if more else None,
        "generation": gen.name,
        "commit": gen.commit,
    }
    if resolved != req.path:
        answer["resolved_path"] = resolved
    answer["tokens"] = estimate_tokens(answer)
    return answer


def placed(name: str, answer: dict[str, Any]) -> dict[str, Any]:
    """A one-repository answer in the fleet's shape (navigation and blame_range): ``repo``
    once at the top (not on every row, as ``merging.one`` does for file_history) and
    ``repos`` for pinning."""
    out = {
        **answer,
        "repo": name,
        "repos": {name: {"generation": answer["generation"], "commit": answer["commit"]}},
    }
    out["tokens"] = estimate_tokens(out)
    return out
