"""Repository handling: the store's bare mirror, refs, trees, blobs and diffs.

Everything codeintel answers is "as of one commit", so every read goes through
a commit sha, never a working tree. The indexer mirrors the source (a local
path or a URL) into ``STORE/mirror.git`` and reads files straight from the
commit's tree, which makes ``.gitignore`` hold by construction. Blobs come
through one persistent ``git cat-file --batch`` per client, so reading
thousands of them costs one pipe round trip each instead of one process each.
Every git process starts through :mod:`codeintel.core.gitrun`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import msgspec

from codeintel.core import errors, gitrun
from codeintel.core.store import files

logger = logging.getLogger(__name__)

SHARED_MODE = "0644"
"""``core.sharedRepository`` of every mirror: files 0644 and directories 0755 whatever
the umask, so searchers running as another user can read what the indexer fetched."""

require_git = gitrun.require_git


class TreeEntry(msgspec.Struct, frozen=True):
    """One entry of a commit's tree (``git ls-tree -r -l``): a blob, symlink or submodule."""

    path: str
    """Repository-relative, ``/``-separated."""
    blob: str
    """The object id (hex)."""
    size: int
    """Size in bytes (0 for submodules)."""
    mode: str
    """Git file mode: ``100644``, ``100755``, ``120000`` (symlink), ``160000`` (submodule)."""


class FileChange(msgspec.Struct, frozen=True):
    """One line of ``git diff --name-status -M``: A, M, D, T, or R (with ``old_path``)."""

    status: str
    path: str
    old_path: str | None = None


def is_url(source: str) -> bool:
    """True for anything git fetches over a network (or file://) rather than a local path."""
    return "://" in source or (":" in source and "@" in source.split(":", 1)[0])


def _decode(raw: bytes) -> str:
    # Paths are bytes to git; surrogateescape keeps a non-UTF-8 name round-trippable.
    return raw.decode("utf-8", "surrogateescape")


def list_tree(repo: Path, commit: str) -> list[TreeEntry]:
    """Every blob (and submodule/symlink entry) in ``commit``'s tree, recursively."""
    gitrun.check_ref(commit)
    try:
        out = gitrun.run(
            Path(repo), "ls-tree", "-r", "-l", "-z", "--full-tree", "--end-of-options", commit
        )
    except errors.GitError as e:
        raise errors.GitError(f"cannot list tree of {commit}: {e}") from e
    entries = []
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, path = record.split(b"\t", 1)
        mode, _type, blob, size = meta.decode("ascii").split(maxsplit=3)
        entries.append(TreeEntry(_decode(path), blob, int(size) if size != "-" else 0, mode))
    return entries


def _check_repository(path: Path) -> None:
    """A GitError unless ``path`` is the top of a repository (bare, or a working tree)."""
    if not path.is_dir():
        raise errors.GitError(f"not a git repository: {path}")
    try:
        git_dir = Path(_decode(gitrun.run(path, "rev-parse", "--absolute-git-dir")).strip())
        if git_dir.resolve() == path.resolve():
            return
        top = _decode(gitrun.run(path, "rev-parse", "--show-toplevel")).strip()
    except errors.GitError as e:
        raise errors.GitError(f"not a git repository: {path}") from e
    if not top or Path(top).resolve() != path.resolve():
        raise errors.GitError(f"not a git repository: {path}")


class GitClient:
    """Typed access to one repository (usually the store's bare mirror).

    ``credentials`` (username, password) are handed to git only when it fetches.
    """

    def __init__(self, path: Path, credentials: tuple[str, str] | None = None) -> None:
        gitrun.require_git()
        self.path = Path(path)
        self.credentials = credentials
        _check_repository(self.path)
        self._lock = threading.Lock()
        self._batch: subprocess.Popen[bytes] | None = None

    def _git(self, *args: str) -> bytes:
        return gitrun.run(self.path, *args)

    # -- mirroring -------------------------------------------------------------------------

    @classmethod
    def mirror(
        cls, source: str, dest: Path, credentials: tuple[str, str] | None = None
    ) -> GitClient:
        """Clone ``source`` as a bare mirror at ``dest``, or fetch into the existing mirror."""
        gitrun.require_git()
        dest = Path(dest)
        if source.startswith("-"):
            raise errors.GitError(f"not a repository path or URL: {source!r}")
        if not is_url(source):
            local = Path(source).expanduser().resolve()
            if not local.exists():
                raise errors.GitError(f"repository path does not exist: {source}")
            _check_repository(local)
            source = str(local)
        if (dest / "HEAD").exists():
            client = cls(dest, credentials)
            client.set_origin(source)
            if gitrun.run(
                dest, "config", "--default", "", "core.sharedRepository"
            ).decode().strip() != (SHARED_MODE):
                # A mirror made before its permissions were pinned: open it up once.
                gitrun.run(dest, "config", "core.sharedRepository", SHARED_MODE)
                share_tree(dest)
            client.fetch()
            return client
        # One scratch name per mirror: whatever an earlier attempt left there (a crash,
        # a failure after the clone) is removed first, and this attempt removes its own
        # on any failure, so a retry always starts clean.
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            gitrun.run(
                tmp.parent,
                *("clone", "--mirror", "--quiet", "--", source, str(tmp)),
                timeout=None,
                credentials=credentials,
            )
        except errors.GitError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise errors.GitError(f"cannot mirror {source}: {e}") from e
        try:
            # Searchers read old commits while the indexer fetches new ones: never let an
            # automatic gc prune objects a live generation still answers from.
            gitrun.run(tmp, "config", "gc.auto", "0")
            gitrun.run(tmp, "config", "gc.pruneExpire", "never")
            # Searchers may run as another user than the indexer: whatever the indexer's
            # umask, every file git writes from now on is world-readable, and what the
            # clone already wrote is opened up here.
            gitrun.run(tmp, "config", "core.sharedRepository", SHARED_MODE)
            share_tree(tmp)
            write_commit_graph(tmp)
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(dest, credentials)

    def set_origin(self, source: str) -> None:
        """Point the mirror's origin at ``source`` (a moved checkout, or a new URL in the spec)."""
        if self.origin_url() != source:
            self._git("remote", "set-url", "origin", "--", source)

    def origin_url(self) -> str | None:
        try:
            return _decode(self._git("config", "--get", "remote.origin.url")).strip() or None
        except errors.GitError:
            return None

    def fetch(self) -> None:
        """Bring the mirror up to date with its origin (all refs, pruned)."""
        try:
            gitrun.run(
                self.path,
                *("fetch", "--prune", "--quiet", "origin"),
                timeout=None,
                credentials=self.credentials,
            )
        except errors.GitError as e:
            raise errors.GitError(f"cannot fetch {self.origin_url()}: {e}") from e
        write_commit_graph(self.path)

    # -- refs and trees ---------------------------------------------------------------------

    def resolve(self, ref: str = "HEAD") -> str:
        """The full sha of the commit ``ref`` names in this repository."""
        gitrun.check_ref(ref)
        if not self.has_commits():
            raise errors.GitError(f"repository has no commits: {self.origin_url() or self.path}")
        for candidate in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}", f"refs/remotes/{ref}"):
            try:
                out = self._git(
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    "--end-of-options",
                    f"{candidate}^{{commit}}",
                )
            except errors.GitError:
                continue
            if out.strip():
                return out.decode("ascii").strip()
        raise errors.GitError(f"unknown ref {ref!r} in {self.origin_url() or self.path}")

    def has_commits(self) -> bool:
        try:
            self._git("rev-parse", "--verify", "--quiet", "HEAD")
            return True
        except errors.GitError:
            return bool(self._git("for-each-ref", "--count=1", "--format=%(objectname)").strip())

    def list_files(self, commit: str) -> list[TreeEntry]:
        """Every blob (and submodule/symlink entry) in the commit's tree, recursively."""
        return list_tree(self.path, commit)

    def read_blobs(self, blobs: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """(blob sha, content) for each sha, through one persistent ``cat-file --batch``."""
        with self._lock:
            if self._batch is None:
                self._batch = gitrun.start(self.path, "cat-file", "--batch", stdin=subprocess.PIPE)
            stdin, stdout = self._batch.stdin, self._batch.stdout
            if stdin is None or stdout is None:
                raise errors.GitError("git cat-file --batch started without pipes")
            for blob in blobs:
                stdin.write(gitrun.check_ref(blob).encode("ascii") + b"\n")
                stdin.flush()
                header = stdout.readline().split()
                if len(header) != 3:
                    raise errors.GitError(f"cannot read blob {blob} from {self.path}")
                data = stdout.read(int(header[2]) + 1)[:-1]  # content, then a newline
                yield blob, data

    def diff(self, old: str, new: str) -> list[FileChange]:
        """``git diff --name-status -M`` between two commits, renames paired."""
        gitrun.check_ref(old)
        gitrun.check_ref(new)
        try:
            out = self._git("diff", "--name-status", "-M", "-z", "--end-of-options", old, new, "--")
        except errors.GitError as e:
            raise errors.GitError(f"cannot diff {old[:12]}..{new[:12]}: {e}") from e
        fields = [_decode(f) for f in out.split(b"\0")]
        changes: list[FileChange] = []
        i = 0
        while i < len(fields) and fields[i]:
            status = fields[i]
            if status[0] == "R":
                changes.append(FileChange(status[0], fields[i + 2], fields[i + 1]))
                i += 3
            else:
                changes.append(FileChange(status[0], fields[i + 1]))
                i += 2
        return changes

    def close(self) -> None:
        batch, self._batch = self._batch, None
        if batch is not None:
            if batch.stdin is not None:
                batch.stdin.close()
            try:
                batch.wait(timeout=5)
            except subprocess.TimeoutExpired:
                batch.kill()
                batch.wait()
            for stream in (batch.stdout, batch.stderr):
                if stream is not None:
                    stream.close()

    def __enter__(self) -> GitClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def changed_paths(changes: Sequence[FileChange]) -> tuple[set[str], set[str]]:
    """(paths whose old chunks must be tombstoned, paths whose new content must be indexed)."""
    removed: set[str] = set()
    added: set[str] = set()
    for change in changes:
        if change.status == "D":
            removed.add(change.path)
        elif change.status == "R":
            if change.old_path:
                removed.add(change.old_path)
            added.add(change.path)
        else:  # A, M, T (type change) and anything unusual: re-index the new side
            removed.add(change.path)
            added.add(change.path)
    return removed, added


def write_commit_graph(repo: Path) -> None:
    """Refresh ``repo``'s commit-graph with changed-path Bloom filters (a new split layer
    for new commits only; nothing when none arrived): path-limited ``log`` and ``blame``
    then skip most commits."""
    try:
        gitrun.run(
            repo, "commit-graph", "write", "--reachable", "--changed-paths", "--split", timeout=None
        )
    except errors.GitError as e:  # an optimisation only: answers stay correct without it
        logger.warning("cannot write the commit-graph of %s: %s", repo, e)


def share_tree(root: Path) -> None:
    """Make everything under ``root`` readable (and directories listable) by everyone."""
    files.share(root, files.DIR_READ)
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in dirnames:
            files.share(base / name, files.DIR_READ)
        for name in filenames:
            files.share(base / name, files.FILE_READ)
