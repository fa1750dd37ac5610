"""search_text: ripgrep over the generation's materialised worktree.

ripgrep is the fastest correct grep we can ship (a wheel puts ``rg`` next to
the interpreter); we run it as an asyncio subprocess, so the event loop never
blocks, and kill it as soon as the timeout passes (the answer then says
``truncated``). Patterns go through ``--regexp=`` so one starting with ``-`` is
never read as a flag; literal search uses ``--fixed-strings``. ``--no-ignore``
and ``--hidden`` search every tracked file (the worktree holds nothing else),
and ``--no-config`` keeps a user's ``RIPGREP_CONFIG_PATH`` out.

Pages come in (path, line) order from one parallel run (see :func:`search`).
ripgrep's plain output (``path NUL line:column:text``) is read in large blocks
and split on bytes: only the page's lines are decoded. Reading ``--json`` line
by line and decoding each match in Python made a common word cost 1.5-2.1x a raw
ripgrep run (docs/performance.md, "Answers sized for agents"); the plain stream
is also less for ripgrep to write. Small candidate sets are read in-process
instead (:func:`search`): starting ripgrep, and compiling a Unicode regex in it,
cost more than reading them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import itertools
import os
import re
import shutil
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import msgspec

from codeintel.core import errors
from codeintel.searcher import models, regexscan, trigrams

_T = TypeVar("_T")

TREES = trigrams.Trees()
"""Trigram indexes of the worktrees this process searched lately (one per commit)."""


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


def build_args(
    pattern: str,
    *,
    regex: bool,
    case_sensitive: bool,
    path_glob: str | None,
    sort: bool = False,
    only: trigrams.Candidates | None = None,
) -> list[str]:
    """ripgrep's command line: one ``path NUL line:column:text`` line per matching line.

    ``only`` limits the search to those files (as paths, or as ``--glob`` whitelists)."""
    args = [rg_binary(), "--no-config", "--no-ignore", "--hidden", "--no-messages"]
    args += ["--no-heading", "--with-filename", "--line-number", "--column", "--null"]
    args += ["--color=never", "--case-sensitive" if case_sensitive else "--ignore-case"]
    if not regex:
        args.append("--fixed-strings")
    if path_glob:
        args.append(f"--glob={path_glob}")
    if sort:
        args.append("--sort=path")
    if only is not None and only.as_globs:
        args += [f"--glob=/{p}" for p in only.paths]
    args.append(f"--regexp={pattern}")
    if only is not None and not only.as_globs:
        args += ["--", *only.paths]
    return args


def order(match: TextMatch) -> tuple[list[str], int]:
    """Sort key of matches: path component by component, then line (``rg --sort=path``'s order)."""
    return match.path.split("/"), match.line


MAX_SCAN = 100_000
"""Matching lines one parallel pass reads before it stops; past it, a sorted pass finds the page."""

IN_PROCESS_BYTES = 4 << 20
"""A literal whose candidate files hold at most this many bytes is found in-process:
reading them costs less than starting ripgrep (a few ms on a loaded machine)."""

ON_LOOP_BYTES = 1 << 20
"""Files read in-process up to this many bytes (a few ms) are read on the event loop:
on 2 loaded cores a hop to a worker thread and back cost 5-8 ms more than the scan
itself (docs/performance.md); larger reads go to a thread."""

READ_BLOCK = 1 << 18
"""Bytes read from ripgrep at a time: a few thousand lines split in one call."""


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
    prune: bool = True,
) -> Found:
    """Matches ``offset``..``offset + max_results`` under ``root`` in (path, line) order.

    ripgrep searches files in parallel and prints them in no fixed order, but each
    file's lines together and in line order. One parallel run is read to the end and
    its lines grouped by file: every match is counted (so ``total`` is exact), and the
    page is cut from the files in path order, so the same commit always gives the same
    pages without a second, sorted (single-threaded) run. Only a pathological search of
    more than :data:`MAX_SCAN` matching lines, or one past the timeout, stops early; the
    first then finds its page with ``--sort=path``, the second answers what it found,
    ``total`` a lower bound.

    Once the tree's trigram index is built (:mod:`.trigrams`), a literal, or a regex
    with literal runs, goes only through the files that can hold it: the same answer
    from a fraction of the tree. One that most files can hold (a common word) takes
    its page from a sorted run stopped right after it, ``total`` then a lower bound
    (``exact`` false) rather than the count of a whole-tree read. ``prune=False``
    searches the whole tree in parallel every time.

    Candidates of at most :data:`IN_PROCESS_BYTES` are read here, without ripgrep: a
    literal with ``bytes.find``, a regex when :mod:`.regexscan` can prove Python's
    answer is ripgrep's (else ripgrep answers). Such a search leaves its
    :class:`Layout` (its files and their counts) in :data:`LAYOUTS`, keyed by tree
    and search, and a later page of it reads only the files that hold that page. So
    does ripgrep's exact answer over candidates too large to read here whose files
    could be read (plain text, a literal or such a regex): its page 2 reads two or
    three files instead of running ripgrep over hundreds again.
    """
    flags: dict[str, Any] = {
        "regex": regex,
        "case_sensitive": case_sensitive,
        "path_glob": path_glob,
    }
    keep = offset + max_results
    key = (str(root), pattern, regex, case_sensitive, path_glob)
    layout = LAYOUTS.get(key) if prune and offset > 0 else None
    if layout is not None:  # a later page of a search read before: only its files are read
        needle = _Needle(pattern, _translated(pattern, case_sensitive, regex), case_sensitive)
        _, _, size = layout.reads(offset, keep)
        found = await _off_loop(size, _page_of_layout, root, layout, needle, offset, keep)
        if found is not None:
            return found[0]
    wanted = trigrams.needles(pattern, **flags) if prune else None
    only = TREES.candidates(root, wanted) if wanted else None
    if only is not None and only.share > trigrams.MAX_SHARE:
        args = build_args(pattern, **flags, sort=True)
        return await _first_in_order(root, args, keep, offset, timeout)
    if only is not None and not only.paths and not regex:
        return Found(matches=[], total=0, exact=True, per_file={})
    small = only is not None and only.paths and not only.as_globs
    readable = False  # whether its files can be read here (a later page, from its layout)
    if small and only is not None:
        translated = _translated(pattern, case_sensitive, regex)
        if translated is not None and not regexscan.affordable(translated, only.longest_line):
            translated = None
        readable = not regex or translated is not None
        if readable and only.size <= IN_PROCESS_BYTES:
            needle = _Needle(pattern, translated, case_sensitive)
            found = await _off_loop(
                only.size,
                _scan_in_process,
                root,
                only.raw_paths,
                only.size,
                needle,
                offset,
                keep,
                only.sizes,
            )
            if found is not None:
                LAYOUTS.put(key, found[1])
                return found[0]
            readable = False  # a line here that only ripgrep reads right
    if only is not None and only.paths:
        flags["only"] = only
    scan = _Scan()
    per_file: dict[str, int] | None = None
    exact = True
    try:
        async with asyncio.timeout(timeout):
            more = await _run(root, build_args(pattern, **flags), MAX_SCAN, scan)
            per_file = scan.counts()
            if more:
                exact = False
                ordered = _Scan()
                await _run(root, build_args(pattern, **flags, sort=True), keep, ordered)
                scan.lines = ordered.lines
    except TimeoutError:
        exact = False  # what was found in time, a lower bound
    matches, seen = scan.page(offset, keep)
    if exact and readable and only is not None:
        # ripgrep counted every file: a later page reads only its own files, here.
        LAYOUTS.put(key, _layout_of(scan, only, per_file or {}))
    return Found(
        matches=matches,
        total=scan.count if exact else max(scan.count, seen),
        exact=exact,
        per_file=scan.counts() if per_file is None else per_file,
    )


async def _first_in_order(
    root: Path, args: list[str], keep: int, offset: int, timeout: float
) -> Found:
    """A common pattern's page from one sorted run, stopped once past it: ``total`` a lower bound.

    Most files hold it, so counting every match would read the whole tree; in path
    order the page is found in the first files (docs/performance.md)."""
    scan = _Scan()
    more = False
    try:
        async with asyncio.timeout(timeout):
            more = await _run(root, args, keep, scan)
    except TimeoutError:
        more = True  # what was found in time, a lower bound
    matches, _ = scan.page(offset, keep)
    return Found(
        matches=matches,
        total=scan.count + (1 if more else 0),
        exact=not more,
        per_file=scan.counts(),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    """Where a search's matches are: its files in page order, with their counts."""

    paths: list[bytes]
    """As held (a name need not decode), in page order."""
    counts: list[int]
    total: int
    per_file: dict[str, int]
    size: int
    """Bytes of the files searched, all told (at most)."""
    sizes: list[int] = dataclasses.field(default_factory=list)
    """Bytes of each of ``paths`` (same order); empty when not known."""

    def reads(self, offset: int, keep: int) -> tuple[int, list[bytes], int]:
        """What rows ``offset``..``keep`` need: the row their first file starts at, the
        files that hold them, and those files' bytes (:attr:`size` when not known)."""
        start, first, paths, size = 0, 0, [], 0
        known = bool(self.sizes)
        for i, (path, count) in enumerate(zip(self.paths, self.counts, strict=True)):
            if start + count <= offset:
                first = start = start + count
                continue
            if start >= keep:
                break
            paths.append(path)
            size += self.sizes[i] if known else 0
            start += count
        return first, paths, size if known else self.size


class Layouts:
    """The :class:`Layout` of the searches read in-process lately, by tree and search.

    A tree is one commit's worktree, never changed (its path names the commit), so a
    layout holds for as long as the tree is served; it lets a later page read only the
    files that hold it instead of every candidate file again."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._held: collections.OrderedDict[tuple[Any, ...], Layout] = collections.OrderedDict()

    def get(self, key: tuple[Any, ...]) -> Layout | None:
        with self._lock:
            layout = self._held.get(key)
            if layout is not None:
                self._held.move_to_end(key)
            return layout

    def put(self, key: tuple[Any, ...], layout: Layout) -> None:
        with self._lock:
            self._held[key] = layout
            self._held.move_to_end(key)
            while len(self._held) > self.size:
                self._held.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._held.clear()


LAYOUTS = Layouts()
"""Layouts of this process's in-process searches (pages after the first read less)."""


class _Needle(NamedTuple):
    """What an in-process scan looks for: the pattern as asked, and as :mod:`.regexscan`
    translated it (None for a literal)."""

    pattern: str
    translated: regexscan.Translated | None
    case_sensitive: bool


def _translated(pattern: str, case_sensitive: bool, regex: bool) -> regexscan.Translated | None:
    return regexscan.translate(pattern, case_sensitive) if regex else None


def _page_of_layout(
    root: Path, layout: Layout, needle: _Needle, offset: int, keep: int
) -> tuple[Found, Layout] | None:
    """Rows ``offset``..``keep`` read from the files of ``layout`` that hold them."""
    first, paths, _ = layout.reads(offset, keep)
    if not paths:
        return Found(matches=[], total=layout.total, exact=True, per_file=layout.per_file), layout
    found = _scan_in_process(root, paths, layout.size, needle, offset - first, keep - first)
    if found is None:
        return None
    page = dataclasses.replace(found[0], total=layout.total, per_file=layout.per_file)
    return page, layout


async def _off_loop(size: int, fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)``, reading files of ``size`` bytes: on the loop if small, else on a thread."""
    if size <= ON_LOOP_BYTES:
        return fn(*args)
    return await asyncio.to_thread(fn, *args)


def _scan_in_process(
    root: Path,
    paths: Sequence[bytes],
    size: int,
    needle: _Needle,
    offset: int,
    keep: int,
    sizes: Sequence[int] = (),
) -> tuple[Found, Layout] | None:
    """The page from ``paths`` (in page order, as held; ``size`` bytes, each one's in
    ``sizes`` when known) read here, and where all its matches are: a literal, or a regex
    :mod:`.regexscan` can answer for ripgrep (None when it cannot, for a line of these
    files)."""
    if needle.translated is None:
        scan = _scan_files(
            root, paths, needle.pattern, needle.case_sensitive, offset, keep, sizes=sizes
        )
    else:
        rows = regexscan.scan(root, list(paths), needle.translated, offset, keep)
        if rows is None:
            return None
        scan = _Scan(ordered=True)  # grouped in the order of paths
        scan.lines, scan.count = rows
    matches, _ = scan.page(offset, keep)
    per_file = scan.counts()
    held = list(scan.lines)  # in page order
    by_path = dict(zip(paths, sizes, strict=True)) if sizes else {}
    layout = Layout(
        held,
        [len(scan.lines[p]) for p in held],
        scan.count,
        per_file,
        size,
        [by_path[p] for p in held] if by_path else [],
    )
    return Found(matches=matches, total=scan.count, exact=True, per_file=per_file), layout


def _layout_of(scan: _Scan, only: trigrams.Candidates, per_file: dict[str, int]) -> Layout:
    """The layout of a search ripgrep answered over the candidates ``only`` (``scan`` in
    page order once its page was cut)."""
    by_path = dict(zip(only.raw_paths, only.sizes, strict=True))
    held = list(scan.lines)
    sizes = [by_path.get(p.removeprefix(b"./"), only.size) for p in held]
    counts = [len(scan.lines[p]) for p in held]
    return Layout(held, counts, scan.count, per_file, only.size, sizes)


def _scan_files(
    root: Path,
    paths: Sequence[bytes],
    pattern: str,
    case_sensitive: bool,
    offset: int,
    keep: int,
    *,
    sizes: Sequence[int] = (),
) -> _Scan:
    """ripgrep's ``--fixed-strings`` lines of plain (not binary) files, found with ``bytes.find``.

    The same rows ripgrep prints: each line holding the literal once, with the byte
    column of its first occurrence; case-insensitive only for ASCII literals the
    index allows (:func:`.trigrams.needles`), where ASCII folding is Unicode's.

    ``paths`` are in page order (:func:`.trigrams.page_order`), so only the rows
    ``offset``..``keep`` are cut out, as :class:`TextMatch` (the scan is then
    ``built``); the others are counted, held as empty placeholders that
    :meth:`_Scan.page` of the same rows never reads. Lines outside the page are found by
    a regex, the literal then the rest of its line (``[^\\n]*``): one match per matching
    line, as the loop finds them, without a Python step per line (the literal holds no
    newline: :func:`.trigrams.needles`): counted past the page, skipped up to its first
    row. ``sizes`` (the index's, one per path) save a ``fstat`` per file."""
    needle = pattern.encode("utf-8", "surrogateescape")
    if not case_sensitive:
        needle = needle.lower()
    lines_of = re.compile(re.escape(needle) + rb"[^\n]*")
    count_in = lines_of.findall
    scan = _Scan(ordered=True, built=True)
    index = 0  # of the next matching line in page order
    held: Sequence[int | None] = sizes or [None] * len(paths)
    top = trigrams.open_dir(root)
    try:
        for raw_path, size in zip(paths, held, strict=True):
            data = trigrams.read_file(raw_path, dir_fd=top, size=size)
            hay = data if case_sensitive else data.lower()
            if index >= keep:  # past the page: counted only
                n = len(count_in(hay))
                if n:
                    scan.lines[raw_path] = [b""] * n
                    scan.count += n
                    index += n
                continue
            at = hay.find(needle)
            if at < 0:
                continue
            bucket: list[Any] = []
            if index < offset:  # the page starts in this file or a later one
                n = len(count_in(hay, at))
                skip = offset - index
                if n <= skip:
                    scan.lines[raw_path] = [b""] * n
                    scan.count += n
                    index += n
                    continue
                at = next(itertools.islice(lines_of.finditer(hay, at), skip, None)).start()
                bucket = [b""] * skip
                index += skip
            name = _decode(raw_path)
            line, counted = 1, 0
            while at >= 0:
                if index >= keep:
                    n = len(count_in(hay, at))
                    bucket += [b""] * n
                    index += n
                    break
                end = data.find(b"\n", at)
                end = len(data) if end < 0 else end
                line += data.count(b"\n", counted, at)
                counted = at
                start = data.rfind(b"\n", 0, at) + 1
                bucket.append(_match(name, line, at - start, data[start:end]))
                index += 1
                at = hay.find(needle, end)
            scan.lines[raw_path] = bucket
            scan.count += len(bucket)
    finally:
        os.close(top)
    return scan


class _Scan:
    """Lines read so far, grouped by path (raw ``line:column:text`` bytes).

    ``ordered``: the paths were added in page order (files read in-process), so
    :meth:`page` need not sort them (ripgrep's parallel output is in no order).
    ``built``: the page's lines are held as :class:`TextMatch` already (a literal read
    in-process), not as ripgrep's bytes."""

    def __init__(self, *, ordered: bool = False, built: bool = False) -> None:
        self.count = 0
        self.lines: dict[bytes, list[Any]] = {}
        self.ordered = ordered
        self.built = built

    def counts(self) -> dict[str, int]:
        return {_decode(p): len(bucket) for p, bucket in self.lines.items()}

    def feed(self, lines: list[bytes], limit: int) -> bool:
        """Group matching lines until ``limit`` are held; whether one past it was seen."""
        grouped = self.lines
        count = self.count
        last: bytes | None = None
        bucket: list[bytes] = []
        for raw in lines:
            path, sep, rest = raw.partition(b"\0")
            if not sep:
                continue  # ripgrep's warning that it stopped in a binary file
            if count >= limit:
                self.count = count
                return True
            count += 1
            if path != last:  # a file's lines come together: one look-up per run of them
                last = path
                bucket = grouped.setdefault(path, [])
            bucket.append(rest)
        self.count = count
        return False

    def page(self, offset: int, keep: int) -> tuple[list[TextMatch], int]:
        """Matches ``offset``..``keep`` in (path, line) order, and how many were held.

        A file's lines are held in line order (ripgrep prints them so, and so does
        :func:`_scan_files`): only the page's lines are decoded, not the whole file's."""
        out: list[TextMatch] = []
        start = 0
        if not self.ordered:  # once: a layout of this scan reads the same order
            held = sorted(self.lines, key=trigrams.page_order)
            self.lines = {p: self.lines[p] for p in held}
            self.ordered = True
        for raw_path in self.lines:
            bucket = self.lines[raw_path]
            end = start + len(bucket)
            if end > offset and start < keep:
                rows = bucket[max(0, offset - start) : keep - start]
                if self.built:
                    out += rows
                else:
                    name = _decode(raw_path)
                    out += [_row(name, raw) for raw in rows]
            start = end
        return out, start


async def _run(root: Path, args: list[str], limit: int, scan: _Scan) -> bool:
    """Feed up to ``limit`` matching lines of one ripgrep run to ``scan``; whether it had more."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=root,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    more = False
    tail = b""
    try:
        assert proc.stdout is not None
        while block := await proc.stdout.read(READ_BLOCK):
            lines = (tail + block).split(b"\n")
            tail = lines.pop()
            if scan.feed(lines, limit):
                more = True
                break
        if tail and not more:  # a last line without its newline
            more = scan.feed([tail], limit)
    finally:
        # Kill only a run we stopped early (enough matches, timeout, cancellation). After
        # EOF rg is exiting on its own: killing it there would turn its exit status 2
        # (a bad pattern) into -9 and an error into an empty answer.
        if proc.returncode is None and (more or not _at_eof(proc)):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        _, stderr = await proc.communicate()
    # rg exits 0 (matches), 1 (none) or 2 (error); a kill we caused is not an error, and
    # with --no-messages a silent 2 is an unreadable file or a glob that matched nothing.
    message = stderr.decode("utf-8", "replace").strip()
    if proc.returncode == 2 and not more and message:
        field = "path_glob" if "glob" in message.lower() else "pattern"
        raise errors.QueryError(f"invalid {field}: {message[-500:]}", field=field)
    return more


def _at_eof(proc: asyncio.subprocess.Process) -> bool:
    return proc.stdout is not None and proc.stdout.at_eof()


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").removeprefix("./")


def _row(path: str, raw: bytes) -> TextMatch:
    """One ``line:column:text`` of ripgrep's output; the column counted in characters."""
    line, _, rest = raw.partition(b":")
    column, _, body = rest.partition(b":")
    return _match(path, int(line), int(column) - 1, body)


def _match(path: str, line: int, at: int, body: bytes) -> TextMatch:
    """The row of line ``body`` matching at byte ``at`` (0-based); the column counted in
    characters."""
    whole = body.decode("utf-8", "replace")
    if len(whole) != len(body):  # multi-byte characters: count those before the match
        at = len(body[:at].decode("utf-8", "replace"))
    text = whole.rstrip("\r\n")
    return TextMatch(
        path=path,
        line=line,
        column=at + 1,
        text=text[: models.MAX_LINE_CHARS],
        length=len(text),
    )
