"""Which files of a commit get indexed, and how their bytes become text.

A repository holds much that should not be embedded: vendored trees, lock
files, minified bundles, images, files too large to be source. This module
makes that call in two steps, so that the pipeline reads no blob it will not
index:

1. :func:`select_files` decides from tree metadata alone (mode, size, path):
   symlinks (mode ``120000``) and submodules (``160000``) are not files of this
   repository, paths matching an exclude glob are skipped, and so are blobs
   larger than ``max_file_bytes``. Tree entries (``040000``) are not files and
   are dropped without a record.
2. :func:`decode_text` looks at the content of the files kept: a NUL byte in
   the first 8000 bytes means binary (git's own test), otherwise the bytes must
   be UTF-8 (a UTF-8 byte-order mark is stripped). Other encodings are skipped
   as ``not_utf8`` rather than guessed at, because a wrong guess indexes
   mojibake that no query will ever match.

Every skipped file comes back as a :class:`Skipped` with its reason, for the
coverage report in the generation's manifest.

Globs follow ``.gitignore`` (without ``!`` negation): ``*`` and ``?`` stay
within one path segment, ``**`` crosses directories, a pattern with no ``/``
matches a file or directory name at any depth, a pattern with a ``/`` is
anchored at the repository root, a trailing ``/`` matches directories only, and
a pattern matching a directory matches everything under it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from typing import Final

import msgspec

from codeintel.core import errors

SYMLINK_MODE: Final = "120000"
SUBMODULE_MODE: Final = "160000"
TREE_MODE: Final = "040000"

BINARY_SNIFF_BYTES: Final = 8000
"""Bytes searched for a NUL; git's ``buffer_is_binary`` looks at the same 8000."""

_UTF8_BOM: Final = b"\xef\xbb\xbf"


class FileEntry(msgspec.Struct, frozen=True):
    """One blob of a commit's tree, as git lists it."""

    path: str
    """Repository-relative, ``/``-separated."""
    blob: str
    """The blob's object id (hex)."""
    size: int
    """Size in bytes (0 for submodules)."""
    mode: str
    """Git file mode: ``100644``, ``100755``, ``120000`` (symlink), ``160000`` (submodule)."""


class Skipped(msgspec.Struct, frozen=True):
    """A file not indexed, and why."""

    path: str
    reason: str
    """One of ``excluded``, ``too_large``, ``binary``, ``not_utf8``, ``symlink``, ``submodule``."""
    size: int = 0


def select_files(
    entries: Iterable[FileEntry],
    *,
    max_file_bytes: int,
    exclude_globs: Sequence[str],
) -> tuple[list[FileEntry], list[Skipped]]:
    """Split tree entries into the files to read and the files skipped, keeping their order.

    Reasons are checked in this order: ``symlink``, ``submodule``, ``excluded``,
    ``too_large``, so a vendored symlink is reported as a symlink.
    """
    excluded = _compile_many(tuple(exclude_globs))
    kept: list[FileEntry] = []
    skipped: list[Skipped] = []
    for entry in entries:
        mode = entry.mode.lstrip("0")
        if mode == SYMLINK_MODE:
            skipped.append(Skipped(entry.path, "symlink", entry.size))
        elif mode == SUBMODULE_MODE:
            skipped.append(Skipped(entry.path, "submodule", entry.size))
        elif mode == TREE_MODE.lstrip("0"):
            continue
        elif excluded is not None and excluded.fullmatch(entry.path):
            skipped.append(Skipped(entry.path, "excluded", entry.size))
        elif entry.size > max_file_bytes:
            skipped.append(Skipped(entry.path, "too_large", entry.size))
        else:
            kept.append(entry)
    return kept, skipped


def decode_text(path: str, data: bytes) -> str | Skipped:
    """The text of a blob, or why it is not text (``binary`` or ``not_utf8``)."""
    if b"\0" in data[:BINARY_SNIFF_BYTES]:
        return Skipped(path, "binary", len(data))
    body = data[len(_UTF8_BOM) :] if data.startswith(_UTF8_BOM) else data
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return Skipped(path, "not_utf8", len(data))


def path_matches(path: str, pattern: str) -> bool:
    """Whether the repository-relative ``path`` matches the gitignore-style ``pattern``."""
    return _compile(pattern).fullmatch(path) is not None


@functools.lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(_translate(pattern))


@functools.lru_cache(maxsize=64)
def _compile_many(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One alternation for a whole exclude list: one regex run per path, not one per glob."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{_translate(p)})" for p in patterns))


def _translate(pattern: str) -> str:
    """A regular expression (for ``fullmatch``) equivalent to one gitignore-style glob."""
    glob = pattern.strip()
    if not glob or glob.startswith("!"):
        raise errors.ConfigError(f"unsupported path glob {pattern!r} (empty or a negation)")
    directory_only = glob.endswith("/")
    glob = glob.rstrip("/")
    anchored = "/" in glob
    glob = glob.lstrip("/")
    if not glob:
        raise errors.ConfigError(f"path glob {pattern!r} matches nothing")
    segments = glob.split("/")
    regex = "" if anchored else "(?:.*/)?"
    separator_needed = False
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            if last:
                regex += "/.*" if separator_needed else ".*"
            else:
                regex += "/(?:.*/)?" if separator_needed else "(?:.*/)?"
            separator_needed = False
            continue
        if separator_needed:
            regex += "/"
        regex += _translate_segment(segment)
        separator_needed = True
    if separator_needed:  # the pattern ended on a name: it may be a directory
        regex += "/.+" if directory_only else "(?:/.+)?"
    return regex


def _translate_segment(segment: str) -> str:
    """One path segment: ``*`` and ``?`` never cross ``/``; ``[…]`` is a character class."""
    out: list[str] = []
    index = 0
    while index < len(segment):
        char = segment[index]
        if char == "*":
            while index + 1 < len(segment) and segment[index + 1] == "*":
                index += 1
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and (close := _class_end(segment, index)) > 0:
            body = segment[index + 1 : close]
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            out.append(("[^/" if negate else "[") + body.replace("\\", "\\\\") + "]")
            index = close
        elif char == "\\" and index + 1 < len(segment):
            index += 1
            out.append(re.escape(segment[index]))
        else:
            out.append(re.escape(char))
        index += 1
    return "".join(out)


def _class_end(segment: str, start: int) -> int:
    """Index of the ``]`` closing the class opened at ``start``, or -1 (then ``[`` is literal)."""
    index = start + 1
    if index < len(segment) and segment[index] in "!^":
        index += 1
    if index < len(segment) and segment[index] == "]":  # a leading ] is a member
        index += 1
    close = segment.find("]", index)
    return close
