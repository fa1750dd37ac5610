"""The tree of a generation's commit, sorted by path: lookups and listings for the tools.

``LoadedGeneration.tree`` lists every file at the commit and ``tree_paths`` the same
paths, sorted, so a file is a bisection and a directory is the range of paths under
``dir/``. list_paths, blame_range, file_history and read_file all look paths up here.
"""

from __future__ import annotations

import bisect
from typing import Any

from codeintel.core import errors, globs
from codeintel.searcher import generations as generations_mod
from codeintel.searcher import paths as paths_mod

SUBMODULE_MODE = "160000"
"""The git mode of a submodule entry: a commit of another repository, not a file."""


def entry_index(gen: generations_mod.LoadedGeneration, path: str) -> int | None:
    """The index of the file ``path`` in the generation's sorted tree, or None."""
    i = bisect.bisect_left(gen.tree_paths, path)
    return i if i < len(gen.tree_paths) and gen.tree_paths[i] == path else None


def is_dir(gen: generations_mod.LoadedGeneration, path: str) -> bool:
    """A directory of the tree (one holding a file)."""
    i = bisect.bisect_left(gen.tree_paths, path + "/")
    return i < len(gen.tree_paths) and gen.tree_paths[i].startswith(path + "/")


def exists(gen: generations_mod.LoadedGeneration, path: str) -> bool:
    """A file of the tree, or a directory holding one."""
    return entry_index(gen, path) is not None or is_dir(gen, path)


def require_file(gen: generations_mod.LoadedGeneration, path: str) -> None:
    """Refuse what cannot be blamed: outside the repo, missing, a directory, a submodule."""
    paths_mod.confine(gen.worktree, path)
    i = entry_index(gen, path)
    if i is None:
        if exists(gen, path):
            raise errors.QueryError(f"{path!r} is a directory, not a file", field="path")
        raise errors.PathNotFoundError(path, gen.commit)
    if gen.tree[i].mode == SUBMODULE_MODE:
        raise errors.QueryError(f"{path!r} is a submodule, not a file", field="path")


def listing(
    gen: generations_mod.LoadedGeneration,
    prefix: str,
    include: list[str],
    exclude: list[str],
    limit: int,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """Entries under ``prefix`` that pass the globs: ``limit`` rows from ``offset``, and the total."""
    if prefix:
        exact = entry_index(gen, prefix)
        lo = bisect.bisect_left(gen.tree_paths, prefix + "/")
        hi = bisect.bisect_left(gen.tree_paths, prefix + "0")  # "0" sorts right after "/"
        indices = ([exact] if exact is not None else []) + list(range(lo, hi))
    else:
        indices = list(range(len(gen.tree_paths)))
    rows: list[dict[str, Any]] = []
    total = 0
    for i in indices:
        entry = gen.tree[i]
        if include and not any(globs.matches(entry.path, g) for g in include):
            continue
        if exclude and any(globs.matches(entry.path, g) for g in exclude):
            continue
        total += 1
        if total > offset and len(rows) < limit:
            rows.append({"path": entry.path, "size": entry.size, "mode": entry.mode})
    return rows, total
