"""Repository handling: the store's bare mirror, refs, trees, blobs and diffs.

Everything codeintel answers is "as of one commit", so every read goes through
a commit sha, never a working tree. The indexer mirrors the source (a local
path or a URL) into ``STORE/mirror.git`` and reads files straight from the
commit's tree, which makes ``.gitignore`` hold by construction. GitPython keeps
one ``git cat-file --batch`` process per client, so reading thousands of blobs
costs one pipe round trip each instead of one process each.

Credentials for private repositories come from ``CODEINTEL_GIT_USERNAME`` and
``CODEINTEL_GIT_PASSWORD`` (a Kubernetes Secret in the cluster) through an
inline credential helper, so nothing secret is written to disk.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import git
import msgspec

from codeintel.core import errors

logger = logging.getLogger(__name__)

_CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    'echo "username=${CODEINTEL_GIT_USERNAME}"; echo "password=${CODEINTEL_GIT_PASSWORD}"; }; f'
)


class TreeEntry(msgspec.Struct, frozen=True):
    """One file of a commit's tree (``git ls-tree -r -l``)."""

    path: str
    mode: str
    blob: str
    size: int


class FileChange(msgspec.Struct, frozen=True):
    """One line of ``git diff --name-status -M``: A, M, D, T, or R (with ``old_path``)."""

    status: str
    path: str
    old_path: str | None = None


def require_git() -> str:
    """The git binary's path, or a ConfigError saying how to get one."""
    found = shutil.which("git")
    if not found:
        raise errors.ConfigError("the 'git' binary is required but was not found on PATH")
    return found


def is_url(source: str) -> bool:
    """True for anything git fetches over a network (or file://) rather than a local path."""
    return "://" in source or (":" in source and "@" in source.split(":", 1)[0])


def _env() -> dict[str, str]:
    env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": ""}
    env["GIT_SSH_COMMAND"] = os.environ.get("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


def _config_args() -> list[str]:
    if os.environ.get("CODEINTEL_GIT_USERNAME") or os.environ.get("CODEINTEL_GIT_PASSWORD"):
        return ["-c", "credential.helper=", "-c", f"credential.helper={_CREDENTIAL_HELPER}"]
    return []


def _short(e: git.GitCommandError) -> str:
    text = (e.stderr or e.stdout or str(e)).strip()
    text = text.removeprefix("stderr:").strip().strip("'").strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[-2:]) if lines else "git failed"


class GitClient:
    """Typed access to one repository (usually the store's bare mirror)."""

    def __init__(self, path: Path) -> None:
        require_git()
        self.path = Path(path)
        try:
            self.repo = git.Repo(self.path)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as e:
            raise errors.GitError(f"not a git repository: {self.path}") from e
        self._lock = threading.Lock()

    # -- mirroring -------------------------------------------------------------------------

    @classmethod
    def mirror(cls, source: str, dest: Path) -> GitClient:
        """Clone ``source`` as a bare mirror at ``dest``, or fetch into the existing mirror."""
        require_git()
        dest = Path(dest)
        if not is_url(source):
            local = Path(source).expanduser().resolve()
            if not local.exists():
                raise errors.GitError(f"repository path does not exist: {source}")
            try:
                git.Repo(local, search_parent_directories=False)
            except (git.InvalidGitRepositoryError, git.NoSuchPathError) as e:
                raise errors.GitError(f"not a git repository: {local}") from e
            source = str(local)
        if (dest / "HEAD").exists():
            client = cls(dest)
            client.set_origin(source)
            client.fetch()
            return client
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            git.Git().execute(
                ["git", *_config_args(), "clone", "--mirror", "--quiet", "--", source, str(tmp)],
                env=_env(),
            )
        except git.GitCommandError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise errors.GitError(f"cannot mirror {source}: {_short(e)}") from e
        client = cls(tmp)
        # Searchers read old commits while the indexer fetches new ones: never let an
        # automatic gc prune objects a live generation still answers from.
        with client.repo.config_writer() as cw:
            cw.set_value("gc", "auto", "0")
            cw.set_value("gc", "pruneExpire", "never")
        client.write_commit_graph()
        client.close()
        os.replace(tmp, dest)
        return cls(dest)

    def set_origin(self, source: str) -> None:
        """Point the mirror's origin at ``source`` (a moved checkout, or a new URL in the spec)."""
        if self.origin_url() != source:
            self.repo.git.remote("set-url", "origin", source)

    def origin_url(self) -> str | None:
        try:
            return str(self.repo.git.config("--get", "remote.origin.url")).strip() or None
        except git.GitCommandError:
            return None

    def fetch(self) -> None:
        """Bring the mirror up to date with its origin (all refs, pruned)."""
        try:
            self.repo.git.execute(
                ["git", *_config_args(), "fetch", "--prune", "--quiet", "origin"],
                env=_env(),
            )
        except git.GitCommandError as e:
            raise errors.GitError(f"cannot fetch {self.origin_url()}: {_short(e)}") from e
        self.write_commit_graph()

    def write_commit_graph(self) -> None:
        """Refresh the commit-graph with changed-path Bloom filters (a new split layer for
        new commits only): path-limited ``log`` and ``blame`` then skip most commits."""
        try:
            self.repo.git.execute(
                ["git", "commit-graph", "write", "--reachable", "--changed-paths", "--split"],
                env=_env(),
            )
        except git.GitCommandError as e:  # an optimisation only: answers stay correct
            logger.warning("cannot write the commit-graph of %s: %s", self.path, _short(e))

    # -- refs and trees ---------------------------------------------------------------------

    def resolve(self, ref: str = "HEAD") -> str:
        """The full sha of the commit ``ref`` names in this repository."""
        if not self.has_commits():
            raise errors.GitError(f"repository has no commits: {self.origin_url() or self.path}")
        for candidate in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}", f"refs/remotes/{ref}"):
            try:
                out = self.repo.git.rev_parse(
                    "--verify", "--quiet", "--end-of-options", f"{candidate}^{{commit}}"
                )
            except git.GitCommandError:
                continue
            if out.strip():
                return str(out).strip()
        raise errors.GitError(f"unknown ref {ref!r} in {self.origin_url() or self.path}")

    def has_commits(self) -> bool:
        try:
            self.repo.git.rev_parse("--verify", "--quiet", "HEAD")
            return True
        except git.GitCommandError:
            return bool(self.repo.git.for_each_ref("--count=1", "--format=%(objectname)").strip())

    def is_ancestor(self, old: str, new: str) -> bool:
        try:
            self.repo.git.merge_base("--is-ancestor", old, new)
            return True
        except git.GitCommandError:
            return False

    def has_commit(self, sha: str) -> bool:
        try:
            self.repo.git.cat_file("-e", f"{sha}^{{commit}}")
            return True
        except git.GitCommandError:
            return False

    def list_files(self, commit: str) -> list[TreeEntry]:
        """Every blob (and submodule/symlink entry) in the commit's tree, recursively."""
        try:
            out = self.repo.git.ls_tree("-r", "-l", "-z", "--full-tree", commit)
        except git.GitCommandError as e:
            raise errors.GitError(f"cannot list tree of {commit}: {_short(e)}") from e
        entries = []
        for record in out.split("\0"):
            if not record:
                continue
            meta, path = record.split("\t", 1)
            mode, _type, blob, size = meta.split(maxsplit=3)
            entries.append(TreeEntry(path, mode, blob, int(size) if size.strip() != "-" else 0))
        return entries

    def read_blobs(self, blobs: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """(blob sha, content) for each sha, through one persistent ``cat-file --batch``."""
        with self._lock:
            for blob in blobs:
                stream = self.repo.odb.stream(bytes.fromhex(blob))
                yield blob, stream.read()

    def read_file(self, commit: str, path: str) -> bytes:
        """One file's content at a commit; PathNotFoundError when it is not there."""
        try:
            blob = self.repo.git.rev_parse("--verify", "--quiet", f"{commit}:{path}")
        except git.GitCommandError as e:
            raise errors.PathNotFoundError(path, commit) from e
        return next(self.read_blobs([blob.strip()]))[1]

    def diff(self, old: str, new: str) -> list[FileChange]:
        """``git diff --name-status -M`` between two commits, renames paired."""
        try:
            out = self.repo.git.diff("--name-status", "-M", "-z", old, new)
        except git.GitCommandError as e:
            raise errors.GitError(f"cannot diff {old[:12]}..{new[:12]}: {_short(e)}") from e
        fields = out.split("\0")
        changes: list[FileChange] = []
        i = 0
        while i < len(fields) and fields[i]:
            status = fields[i]
            if status[0] in "RC":
                changes.append(FileChange(status[0], fields[i + 2], fields[i + 1]))
                i += 3
            else:
                changes.append(FileChange(status[0], fields[i + 1]))
                i += 2
        return changes

    def run_git(self, *args: str) -> str:
        """Run any git command in this repository; GitError with git's own message on failure."""
        try:
            return str(
                self.repo.git.execute(["git", *args], env=_env(), strip_newline_in_stdout=False)
            )
        except git.GitCommandError as e:
            raise errors.GitError(f"git {args[0] if args else ''} failed: {_short(e)}") from e

    def close(self) -> None:
        self.repo.close()

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
        elif change.status in "RC":
            if change.status == "R" and change.old_path:
                removed.add(change.old_path)
            added.add(change.path)
        else:  # A, M, T (type change) and anything unusual: re-index the new side
            removed.add(change.path)
            added.add(change.path)
    return removed, added
