"""Checked-out files of one commit, for ripgrep, outside the read-only store.

ripgrep searches files, not git objects, and searcher pods mount the store
read-only, so the generation's commit is materialised with ``git archive``
(piped into ``tar``) into a writable cache directory keyed by commit sha. It is
prepared while a generation loads, before it goes live, written under a temp
name and renamed into place so a crash never leaves a half-extracted tree that
looks complete. Trees of commits no longer served are removed by :func:`prune`.

``git archive`` writes exactly the tracked files (so ``.gitignore`` holds by
construction) and keeps symlinks as symlinks; ripgrep does not follow them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from codeintel.core import errors, gitrun

logger = logging.getLogger(__name__)

ARCHIVE_TIMEOUT_SECONDS = 600.0
"""Bound on materialising one commit; a large monorepo takes tens of seconds, not minutes."""


def default_cache_dir(store_root: Path) -> Path:
    """A per-store directory under the system temp dir (writable even in a read-only pod)."""
    key = hashlib.sha256(str(Path(store_root).resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "codeintel-worktrees" / key


def materialise(mirror: Path, commit: str, cache_dir: Path) -> Path:
    """The directory holding ``commit``'s files, extracting them first if needed."""
    if len(commit) < 7 or not all(c in "0123456789abcdef" for c in commit):
        raise errors.GitError(f"not a commit sha: {commit!r}")
    final = cache_dir / commit
    if final.is_dir():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{commit[:12]}.", dir=cache_dir))
    try:
        with gitrun.start(mirror, "archive", "--format=tar", "--end-of-options", commit) as archive:
            tar = subprocess.run(
                ["tar", "-x", "--no-same-owner", "-C", str(tmp)],
                stdin=archive.stdout,
                capture_output=True,
                timeout=ARCHIVE_TIMEOUT_SECONDS,
                check=False,
            )
            _, archive_err = archive.communicate(timeout=ARCHIVE_TIMEOUT_SECONDS)
        if archive.returncode != 0 or tar.returncode != 0:
            detail = (archive_err or tar.stderr).decode("utf-8", "replace").strip()
            raise errors.GitError(f"cannot materialise {commit[:12]}: {detail}")
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.is_dir():  # lost a race only if someone else finished it
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("materialised %s into %s", commit[:12], final)
    return final


def prune(cache_dir: Path, keep: set[str]) -> None:
    """Remove trees (and leftover temp dirs) of commits not in ``keep``."""
    if not cache_dir.is_dir():
        return
    now = time.time()
    for entry in cache_dir.iterdir():
        if entry.name in keep:
            continue
        # A hidden entry is another process's extraction in progress, unless it is stale.
        if entry.name.startswith(".") and now - entry.stat().st_mtime < ARCHIVE_TIMEOUT_SECONDS:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        logger.info("removed worktree %s", entry)
