"""Repository paths and globs as agents send them, made safe and comparable.

Agents send paths in every spelling: ``./src//a.py``, ``src/a.py/``, Windows
separators, and sometimes hostile ones (``../../etc/passwd``, absolute paths,
NUL bytes). Every tool normalises through :func:`normalise` first, so a path
either names something inside the repository in one canonical spelling or is
refused with a :class:`~codeintel.core.errors.QueryError` naming the field.
Symlinks are checked against the materialised worktree by :func:`confine`: a
link that resolves outside the repository is refused, whatever the tool.

Globs are matched by :func:`codeintel.core.globs.matches`, the same rules
semantic_search's ``path_glob`` uses, so one glob means one thing everywhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from codeintel.core import errors

MAX_PATH_CHARS = 4096
"""Longest path accepted; Linux's PATH_MAX, so no real repository path is refused."""


def check_text(value: str, field: str) -> str:
    """Refuse NUL bytes, which no path, glob or pattern may carry to git or ripgrep."""
    if "\x00" in value:
        raise errors.QueryError(f"{field} must not contain NUL bytes", field=field)
    return value


def normalise(path: str, field: str = "path", *, allow_root: bool = False) -> str:
    """Canonical repository-relative spelling of ``path``; QueryError if it leaves the repo.

    ``allow_root`` accepts ``""``/``.``/``/``-free empty paths meaning "the whole
    repository" (list_paths); files must name something.
    """
    check_text(path, field)
    if len(path) > MAX_PATH_CHARS:
        raise errors.QueryError(f"{field} is longer than {MAX_PATH_CHARS} characters", field=field)
    text = path.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:/", text):
        raise errors.QueryError(
            f"{field} must be relative to the repository root, not absolute", field=field
        )
    parts: list[str] = []
    for part in text.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise errors.QueryError(f"{field} must not contain '..' segments", field=field)
        parts.append(part)
    if not parts and not allow_root:
        raise errors.QueryError(f"{field} must name a file in the repository", field=field)
    return "/".join(parts)


def confine(root: Path, path: str, field: str = "path") -> None:
    """Refuse ``path`` if it (or a directory on the way) is a symlink resolving outside ``root``.

    ``root`` is the materialised worktree of the generation's commit; paths that
    do not exist there pass (the tool then answers 404 from git's point of view).
    """
    if not path:
        return
    base = os.path.realpath(root)
    target = os.path.realpath(os.path.join(base, path))
    if target != base and not target.startswith(base + os.sep):
        raise errors.QueryError(
            f"{field} resolves outside the repository through a symlink", field=field
        )
