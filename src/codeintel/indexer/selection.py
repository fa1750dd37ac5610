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

from collections.abc import Iterable, Sequence
from typing import Final

import msgspec

from codeintel.core import git, globs

SYMLINK_MODE: Final = "120000"
SUBMODULE_MODE: Final = "160000"
TREE_MODE: Final = "040000"

BINARY_SNIFF_BYTES: Final = 8000
"""Bytes searched for a NUL; git's ``buffer_is_binary`` looks at the same 8000."""

_UTF8_BOM: Final = b"\xef\xbb\xbf"


class Skipped(msgspec.Struct, frozen=True):
    """A file not indexed, and why."""

    path: str
    reason: str
    """One of ``excluded``, ``too_large``, ``binary``, ``not_utf8``, ``symlink``, ``submodule``."""
    size: int = 0


def select_files(
    entries: Iterable[git.TreeEntry],
    *,
    max_file_bytes: int,
    exclude_globs: Sequence[str],
) -> tuple[list[git.TreeEntry], list[Skipped]]:
    """Split tree entries into the files to read and the files skipped, keeping their order.

    Reasons are checked in this order: ``symlink``, ``submodule``, ``excluded``,
    ``too_large``, so a vendored symlink is reported as a symlink.
    """
    excluded = globs.compile_many(tuple(exclude_globs))
    kept: list[git.TreeEntry] = []
    skipped: list[Skipped] = []
    for entry in entries:
        mode = entry.mode.lstrip("0")
        if mode == SYMLINK_MODE:
            skipped.append(Skipped(entry.path, "symlink", entry.size))
        elif mode == SUBMODULE_MODE:
            skipped.append(Skipped(entry.path, "submodule", entry.size))
        elif mode == TREE_MODE.lstrip("0"):
            continue
        elif excluded is not None and excluded.match(entry.path):
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
