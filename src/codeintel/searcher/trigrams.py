"""Which files of a worktree can hold a literal: a trigram index, as zoekt keeps.

ripgrep over a whole checkout reads every file; most searches an agent makes are
for an identifier that a few files hold. The worktree of a generation never
changes, so its files' byte trigrams are indexed once (in memory, built off the
event loop on the first search of that tree) and a literal search hands ripgrep
only the files that hold every trigram of the pattern: a superset of the files
with a match, so the answer is the one a search of the whole tree gives.

Exactness against ripgrep's own rules:

- trigrams are of the ASCII-lowercased bytes, so one index serves case-sensitive
  literals and ASCII case-insensitive ones without ``k`` or ``s`` (Unicode folds
  ``k`` with the Kelvin sign and ``s`` with the long s);
- a file with a NUL byte is binary to ripgrep: searched as part of a directory,
  it stops at the first NUL, but named on the command line it is searched whole.
  Such files are indexed up to their first NUL and, when one is a candidate, the
  candidates go to ripgrep as ``--glob`` whitelists (a directory walk keeps the
  directory rules) instead of as paths;
- a file that starts with a UTF-16 byte-order mark is transcoded by ripgrep, so
  its UTF-8 text is indexed; a file with any byte-order mark goes to ripgrep as a
  glob too; symbolic links are not followed (nor by rg).

A tree past :data:`MAX_TREE_BYTES` is not indexed (every search reads it whole).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

try:  # Python 3.11 names them sre_*; 3.12 moved them under re
    from re import _constants, _parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    import sre_constants as _constants  # type: ignore[no-redef]
    import sre_parse as _parser  # type: ignore[no-redef]

import numpy as np

logger = logging.getLogger(__name__)

MAX_TREE_BYTES = 64 << 20
"""Trees larger than this are searched whole: the index holds ~8 bytes per distinct
(file, trigram) pair, about 1.5x the text of a source tree."""

MAX_TREES = 4
"""Indexes kept (least recently used first out): one per served commit."""

MAX_SHARE = 0.5
"""Past this share of the tree's files, a candidate list saves ripgrep too little."""

_BOMS = (b"\xff\xfe", b"\xfe\xff")
_GLOB_SPECIAL = frozenset("*?[]{}\\!")


@dataclasses.dataclass(frozen=True, slots=True)
class Candidates:
    """Files that can hold the pattern, and how to hand them to ripgrep."""

    paths: list[str]
    """Relative paths, path component by component (``rg --sort=path`` keeps this order)."""
    raw_paths: list[bytes]
    """The same paths as held on disk (a name need not decode), same order."""
    as_globs: bool
    """Some are binary: name them as ``--glob`` whitelists, not as paths."""
    share: float
    """Their share of the tree's files: past :data:`MAX_SHARE` the pattern is common."""
    size: int
    """Their bytes, all told."""
    longest_line: int = 0
    """Bytes of the longest line any of them holds."""
    sizes: list[int] = dataclasses.field(default_factory=list)
    """Bytes of each of ``paths`` (same order), for :func:`read_file`."""


@dataclasses.dataclass(slots=True)
class TrigramIndex:
    paths: list[str]
    """In page order (:func:`page_order`), so ascending ids are page order too."""
    raw_paths: list[bytes]
    """``paths`` as held on disk."""
    keys: np.ndarray
    """uint32 trigrams, sorted; ``files[i]`` holds ``keys[i]``."""
    files: np.ndarray
    binary: np.ndarray
    """bool per file: holds a NUL byte or starts with a byte-order mark (ripgrep reads
    it otherwise than as plain lines)."""
    sizes: np.ndarray
    """Bytes per file."""
    longest: np.ndarray
    """Bytes of each file's longest line (what a backtracking regex may walk per start)."""

    def lookup(self, pattern: bytes) -> np.ndarray:
        """Ids of files holding every trigram of ``pattern`` (ASCII-lowercased)."""
        grams = _grams(pattern.lower())
        found: np.ndarray | None = None
        for gram in np.unique(grams):
            lo, hi = np.searchsorted(self.keys, [gram, gram + 1])
            ids = self.files[lo:hi]
            found = ids if found is None else np.intersect1d(found, ids, assume_unique=True)
            if found.size == 0:
                break
        if found is None:  # under three bytes: any file
            return np.arange(len(self.paths), dtype=np.int32)
        return found


def read_file(path: str | bytes, *, dir_fd: int | None = None, size: int | None = None) -> bytes:
    """A file's bytes with four system calls and no buffered reader: ~half the time of
    ``open().read()`` per file, which counts when a search reads a hundred small ones.

    ``dir_fd`` (:func:`open_dir`) resolves a relative ``path`` from that directory rather
    than the whole path from the root, and ``size`` (the index's) saves the ``fstat``:
    0.46 against 0.75 ms for the 87 files of cJSON holding ``return``. A wrong ``size``
    costs only a second read (the file is read to its end either way)."""
    fd = os.open(path, os.O_RDONLY | _CLOEXEC, dir_fd=dir_fd)
    try:
        if size is None:
            size = os.fstat(fd).st_size
        data = os.read(fd, size + 1)  # a regular file reads short only at its end
        if len(data) <= size:
            return data
        chunks = [data]  # it grew since fstat
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def open_dir(root: str | bytes | os.PathLike[str]) -> int:
    """A descriptor of directory ``root`` for :func:`read_file`'s ``dir_fd`` (close it)."""
    return os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)


_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def page_order(raw_path: bytes) -> tuple[list[str], bytes]:
    """Sort key of pages: a path as answers show it, component by component (``rg
    --sort=path``'s order), then its bytes (two names that decode alike)."""
    return raw_path.decode("utf-8", "replace").removeprefix("./").split("/"), raw_path


def _grams(data: bytes) -> np.ndarray:
    a = np.frombuffer(data, dtype=np.uint8).astype(np.uint32)
    if a.size < 3:
        return np.empty(0, dtype=np.uint32)
    return np.asarray((a[:-2] << 16) | (a[1:-1] << 8) | a[2:], dtype=np.uint32)


def build(root: Path, max_bytes: int = MAX_TREE_BYTES) -> TrigramIndex | None:
    """The index of every regular file under ``root``, or None past ``max_bytes``."""
    paths: list[str] = []
    grams: list[np.ndarray] = []
    binary: list[bool] = []
    sizes: list[int] = []
    longest: list[int] = []
    seen = 0
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            full = os.path.join(dirpath, name)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            data = read_file(full)
            seen += len(data)
            if seen > max_bytes:
                return None
            nul = data.find(b"\0")
            binary.append(nul >= 0 or data.startswith((*_BOMS, b"\xef\xbb\xbf")))
            if data.startswith(_BOMS):  # ripgrep searches it transcoded to UTF-8
                data = data.decode("utf-16", "replace").encode("utf-8")
                nul = data.find(b"\0")
            sizes.append(len(data))
            longest.append(max(map(len, data.split(b"\n"))))
            paths.append(os.path.relpath(full, root))
            grams.append(np.unique(_grams(data[: nul if nul >= 0 else len(data)].lower())))
    # Ids in page order: a candidate list is then in page order as found, unsorted.
    raw = [os.fsencode(p) for p in paths]
    by_page = sorted(range(len(paths)), key=lambda i: page_order(raw[i]))
    grams = [grams[i] for i in by_page]
    counts = np.fromiter((g.size for g in grams), dtype=np.int64, count=len(grams))
    keys = np.concatenate(grams) if grams else np.empty(0, dtype=np.uint32)
    files = np.repeat(np.arange(len(paths), dtype=np.int32), counts)
    order = np.argsort(keys, kind="stable")
    return TrigramIndex(
        paths=[paths[i] for i in by_page],
        raw_paths=[raw[i] for i in by_page],
        keys=keys[order],
        files=files[order],
        binary=np.asarray(binary, dtype=bool)[by_page],
        sizes=np.asarray(sizes, dtype=np.int64)[by_page],
        longest=np.asarray(longest, dtype=np.int64)[by_page],
    )


def needles(
    pattern: str, *, regex: bool, case_sensitive: bool, path_glob: str | None
) -> list[list[bytes]] | None:
    """What every match must contain: alternatives, each a list of literals of 3+ bytes.

    A literal is itself; a regex gives the runs of plain characters its every match
    spells (Python's parser reads it; any syntax where Rust's regex reads otherwise,
    such as nested classes or inline flags, gives None: search the whole tree)."""
    if path_glob or "\n" in pattern or "\r" in pattern:
        return None
    if not regex:
        alternatives = [[pattern]]
    else:
        if any(s in pattern for s in RUST_ONLY) or re.search(r"\(\?(?!:)", pattern):
            return None
        try:
            tree = _parser.parse(pattern)
        except (re.error, RecursionError, OverflowError):
            return None
        alternatives = _alternatives(list(tree))
    out: list[list[bytes]] = []
    for alternative in alternatives:
        usable = [
            lit.encode("utf-8", "surrogateescape")
            for lit in alternative
            if case_sensitive or (lit.isascii() and not any(c in "kKsS" for c in lit))
        ]
        usable = [b for b in usable if len(b) >= 3]
        if not usable:
            return None  # an alternative that any file might hold
        out.append(usable)
    return out or None


RUST_ONLY = ("[[", "[:", "&&", "--", "~~", "\\p", "\\P", "\\x{", "\\u", "\\U")
"""Regex text that Rust's regex and Python's read differently (or Python not at all);
inline flags other than a plain ``(?:`` group are refused too."""


def _alternatives(items: list[Any]) -> list[list[str]]:
    if len(items) == 1 and items[0][0] is _constants.BRANCH:
        branches = items[0][1][1]
        return [_literals(list(b)) for b in branches]
    return [_literals(items)]


def _literals(items: list[Any]) -> list[str]:
    """Runs of consecutive literal characters that every match of ``items`` holds."""
    runs: list[str] = []
    run: list[str] = []
    for op, arg in items:
        if op is _constants.LITERAL:
            run.append(chr(arg))
            continue
        if run:
            runs.append("".join(run))
            run = []
        if op is _constants.SUBPATTERN and not arg[1] and not arg[2]:
            runs += _literals(list(arg[3]))
        elif op in (_constants.MAX_REPEAT, _constants.MIN_REPEAT) and arg[0] >= 1:
            runs += _literals(list(arg[2]))
    if run:
        runs.append("".join(run))
    return runs


class Trees:
    """Indexes of the worktrees searched lately, built in a background thread on first use."""

    def __init__(self, max_trees: int = MAX_TREES, max_bytes: int = MAX_TREE_BYTES) -> None:
        self.max_trees = max_trees
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._ready: collections.OrderedDict[str, TrigramIndex | None] = collections.OrderedDict()
        self._building: set[str] = set()

    def candidates(self, root: Path, wanted: list[list[bytes]]) -> Candidates | None:
        """Files of ``root`` holding every literal of one of ``wanted`` (see :func:`needles`).

        None while the tree's index is being built (or when it is too large to index)."""
        key = str(root)
        with self._lock:
            if key not in self._ready:
                if key not in self._building:
                    self._building.add(key)
                    threading.Thread(target=self._build, args=(root,), daemon=True).start()
                return None
            self._ready.move_to_end(key)
            index = self._ready[key]
        if index is None:
            return None
        ids = np.empty(0, dtype=np.int32)
        for literals in wanted:
            found: np.ndarray | None = None
            for literal in literals:
                hit = index.lookup(literal)
                found = hit if found is None else np.intersect1d(found, hit, assume_unique=True)
            if found is not None:
                ids = np.union1d(ids, found)
        share = ids.size / max(1, len(index.paths))
        order = ids.tolist()  # ascending ids: page order (:func:`build`)
        paths = [index.paths[i] for i in order]
        as_globs = bool(index.binary[ids].any())
        if as_globs and any(c in _GLOB_SPECIAL for p in paths for c in p):
            return None  # a name that a glob would read as a pattern
        sizes = index.sizes[ids]
        longest = int(index.longest[ids].max()) if ids.size else 0
        raw = [index.raw_paths[i] for i in order]
        return Candidates(paths, raw, as_globs, share, int(sizes.sum()), longest, sizes.tolist())

    def wait(self, root: Path, timeout: float = 60.0) -> bool:
        """Block until ``root``'s index is built (tests, benchmarks); whether it was."""
        deadline = time.monotonic() + timeout
        self.candidates(root, [])
        while time.monotonic() < deadline:
            with self._lock:
                if str(root) in self._ready:
                    return True
            time.sleep(0.01)
        return False

    def _build(self, root: Path) -> None:
        t0 = time.perf_counter()
        try:
            index = build(root, self.max_bytes)
        except OSError as e:
            logger.warning("no trigram index for %s: %s", root, e)
            index = None
        with self._lock:
            self._building.discard(str(root))
            self._ready[str(root)] = index
            while len(self._ready) > self.max_trees:
                self._ready.popitem(last=False)
        if index is not None:
            logger.info(
                "trigram index of %s: %d files, %d pairs in %.2fs",
                root,
                len(index.paths),
                index.keys.size,
                time.perf_counter() - t0,
            )
