"""Files of a store on disk: names, permissions, checksums and atomic writes.

Every published file must be readable, and every directory listable, by every
uid (a searcher may run as another user than the indexer on a shared volume),
and every write that readers may see goes to a temp name, is fsynced and then
renamed (docs/architecture.md, "Writing a generation").
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from pathlib import Path, PurePosixPath

from codeintel.core import errors

logger = logging.getLogger(__name__)

LOCK = ".lock"
TMP_PREFIX = ".tmp-"  # a build in progress, or one that crashed
DEL_PREFIX = ".del-"  # a generation gc has decided to delete
NAME = re.compile(r"g(\d{6,})")
BLOCK = 1 << 20  # checksum read size
# Searchers may run as another uid on the same volume: every published file must be
# readable, and every directory listable, by all (whatever the writer's umask).
FILE_READ = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
DIR_READ = FILE_READ | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


def file_checksum(path: Path, *, fsync: bool = False) -> str:
    """``sha256:<hex>`` of a file, read in 1 MiB blocks; ``fsync`` also flushes it to disk."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
        if fsync:
            os.fsync(f.fileno())
    return f"sha256:{digest.hexdigest()}"


def number(name: str) -> int:
    match = NAME.fullmatch(name)
    return int(match.group(1)) if match else -1


def relpath(rel: str) -> PurePosixPath:
    """A manifest-relative path that stays inside the generation directory."""
    path = PurePosixPath(rel)
    if not rel or path.is_absolute() or ".." in path.parts:
        raise errors.IndexFormatError(f"bad relative path in generation: {rel!r}")
    return path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def share(path: Path, bits: int) -> None:
    """Add read (and, for directories, list) permission for everyone if it is missing."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & bits == bits:
        return
    try:
        os.chmod(path, mode | bits)
    except PermissionError:
        logger.warning("cannot make %s readable by other users: not its owner", path)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path.tmp``, fsync, ``os.replace`` onto ``path``, fsync the directory."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    share(tmp, FILE_READ)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def newest_mtime(path: Path) -> float:
    """Latest mtime of a directory or anything in it (a live build keeps touching files)."""
    newest = mtime(path)
    for p in path.rglob("*"):
        newest = max(newest, mtime(p))
    return newest
