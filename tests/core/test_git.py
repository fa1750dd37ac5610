"""Every git call goes through one hardened runner: another uid's store, option-looking refs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import msgspec
import pytest

from codeintel.core import errors, gitrun, history
from codeintel.core import git as git_mod
from codeintel.indexer import selection
from codeintel.searcher import worktree
from gitrepo import GitRepo

OTHER_UID = 12345
PATH = "docs/naïve café.md"


@pytest.fixture
def mirror(git_repo: GitRepo, tmp_path: Path) -> Path:
    git_repo.commit("first", {PATH: "one\ntwo\n", "src/app.py": "print('hi')\n"})
    git_repo.commit("second", {PATH: "one\ntwo\nthree\n"})
    dest = tmp_path / "store" / "mirror.git"
    git_mod.GitClient.mirror(str(git_repo.path), dest).close()
    return dest


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
class TestStoreOwnedByAnotherUid:
    """The cluster case: the indexer Job wrote the store, the searcher reads it as another uid."""

    @pytest.fixture
    def foreign(self, mirror: Path) -> Path:
        subprocess.run(["chown", "-R", str(OTHER_UID), str(mirror.parent)], check=True)
        assert mirror.stat().st_uid == OTHER_UID != os.geteuid()
        return mirror

    def test_plain_git_refuses_it(self, foreign: Path) -> None:
        """The premise: without the runner's settings git calls the repository dubious."""
        proc = subprocess.run(
            ["git", "ls-tree", "HEAD"],
            cwd=foreign,
            capture_output=True,
            text=True,
            env={**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"},
            check=False,
        )
        assert proc.returncode != 0 and "dubious ownership" in proc.stderr

    def test_listing_blobs_and_diff(self, foreign: Path) -> None:
        with git_mod.GitClient(foreign) as git:
            head = git.resolve("HEAD")
            tree = git.list_files(head)
            assert sorted(e.path for e in tree) == [PATH, "src/app.py"]
            blob = next(e.blob for e in tree if e.path == PATH)
            assert dict(git.read_blobs([blob])) == {blob: b"one\ntwo\nthree\n"}
            assert [(c.status, c.path) for c in git.diff(f"{head}~1", head)] == [("M", PATH)]
        assert git_mod.list_tree(foreign, head) == tree

    def test_blame_and_log(self, foreign: Path) -> None:
        head = git_mod.GitClient(foreign).resolve("HEAD")
        assert [e.text for e in history.blame(foreign, head, PATH, 1, 3)] == ["one", "two", "three"]
        assert [e.summary for e in history.history(foreign, head, PATH, 5)] == ["second", "first"]
        assert history.path_exists(foreign, head, PATH)

    def test_archive(self, foreign: Path, tmp_path: Path) -> None:
        head = git_mod.GitClient(foreign).resolve("HEAD")
        tree = worktree.materialise(foreign, head, tmp_path / "worktrees")
        assert (tree / PATH).read_text() == "one\ntwo\nthree\n"


class TestOptionInjection:
    @pytest.mark.parametrize("ref", ["--output=/tmp/owned", "-h", ""])
    def test_refs_that_look_like_options_are_refused(self, mirror: Path, ref: str) -> None:
        with git_mod.GitClient(mirror) as git:
            with pytest.raises(errors.GitError, match="not a valid ref"):
                git.resolve(ref)
            with pytest.raises(errors.GitError, match="not a valid ref"):
                git.list_files(ref)
            with pytest.raises(errors.GitError, match="not a valid ref"):
                git.diff(ref, "HEAD")
        with pytest.raises(errors.GitError, match="not a valid ref"):
            history.blame(mirror, ref, PATH, 1, 1)
        with pytest.raises(errors.GitError, match="not a valid ref"):
            history.history(mirror, ref, PATH, 1)

    def test_paths_that_look_like_options_are_paths(self, git_repo: GitRepo) -> None:
        head = git_repo.commit("odd name", {"--help": "not an option\n"})
        assert [e.text for e in history.blame(git_repo.path, head, "--help", 1, 1)] == [
            "not an option"
        ]
        assert [e.summary for e in history.history(git_repo.path, head, "--help", 1)] == [
            "odd name"
        ]

    def test_a_source_that_looks_like_an_option_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(errors.GitError, match="not a repository path or URL"):
            git_mod.GitClient.mirror("--upload-pack=touch /tmp/owned", tmp_path / "m.git")


class TestRunner:
    def test_no_prompt_and_the_c_locale(self) -> None:
        env = gitrun.environment(base={"LANG": "de_DE.UTF-8", "PATH": "/bin"})
        assert env["GIT_TERMINAL_PROMPT"] == "0" and env["LC_ALL"] == "C"
        assert env["GIT_SSH_COMMAND"] == "ssh -o BatchMode=yes"
        assert "CODEINTEL_GIT_PASSWORD" not in env

    def test_credentials_reach_git_only_through_the_helper(self, tmp_path: Path) -> None:
        """The helper answers git's credential question from the child's environment."""
        argv = gitrun.argv("credential", "fill", credentials=("bot", "s3cret"))
        assert "s3cret" not in " ".join(argv)
        proc = subprocess.run(
            argv,
            input=b"protocol=https\nhost=example.org\n\n",
            capture_output=True,
            env=gitrun.environment(("bot", "s3cret")),
            cwd=tmp_path,
            check=True,
        )
        assert b"username=bot\n" in proc.stdout and b"password=s3cret\n" in proc.stdout

    def test_a_subdirectory_is_not_a_repository(self, git_repo: GitRepo) -> None:
        git_repo.commit("x", {"sub/a.txt": "a\n"})
        with pytest.raises(errors.GitError, match="not a git repository"):
            git_mod.GitClient(git_repo.path / "sub")

    def test_a_working_tree_and_a_bare_mirror_are_repositories(
        self, git_repo: GitRepo, mirror: Path
    ) -> None:
        git_mod.GitClient(git_repo.path).close()
        git_mod.GitClient(mirror).close()

    def test_a_missing_git_binary_is_a_config_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(shutil, "which", lambda _name: None)
        with pytest.raises(errors.ConfigError, match="'git' binary"):
            gitrun.require_git()


class TestRecords:
    """Tree, blame and log rows are defined once, in core, and encode as the tools answer."""

    def test_blame_and_log_rows(self, mirror: Path) -> None:
        head = git_mod.GitClient(mirror).resolve("HEAD")
        [row] = history.blame(mirror, head, PATH, 3, 3)
        assert msgspec.to_builtins(row) == {
            "line": 3,
            "sha": head,
            "short_sha": head[:12],
            "author": "Ada Lovelace",
            "email": "ada@example.org",
            "date": row.date,
            "summary": "second",
            "text": "three",
        }
        [commit, _] = history.history(mirror, head, PATH, 5)
        assert list(msgspec.to_builtins(commit)) == [
            "sha",
            "short_sha",
            "author",
            "email",
            "date",
            "summary",
        ]

    def test_the_tree_listing_is_what_selection_takes(self, mirror: Path) -> None:
        tree = git_mod.list_tree(mirror, "HEAD")
        kept, skipped = selection.select_files(tree, max_file_bytes=1 << 20, exclude_globs=())
        assert kept == sorted(tree, key=lambda e: e.path) and skipped == []


class TestMirrorPermissions:
    """Searchers may run as another user than the indexer: the mirror must stay readable."""

    @staticmethod
    def unreadable(root: Path) -> list[str]:
        bad = []
        for path in [root, *root.rglob("*")]:
            if path.name == "FETCH_HEAD" or "hooks" in path.relative_to(root).parts:
                continue  # git's scratch file and sample hooks: no reader opens them
            mode = path.stat().st_mode & 0o777
            wanted = 0o555 if path.is_dir() else 0o444
            if mode & wanted != wanted:
                bad.append(f"{path.relative_to(root)} {oct(mode)}")
        return bad

    def test_clone_and_fetch_under_a_strict_umask_stay_readable(
        self, git_repo: GitRepo, tmp_path: Path
    ) -> None:
        git_repo.commit("first", {"a.py": "x = 1\n"})
        dest = tmp_path / "store" / "mirror.git"
        old = os.umask(0o077)
        try:
            git_mod.GitClient.mirror(str(git_repo.path), dest).close()
            assert self.unreadable(dest) == []
            for i in range(3):  # small fetches land as loose objects in new directories
                git_repo.commit(f"more {i}", {f"new{i}/b{i}.py": f"y = {i}\n"})
                git_mod.GitClient.mirror(str(git_repo.path), dest).close()
        finally:
            os.umask(old)
        assert self.unreadable(dest) == []

    def test_an_older_mirror_is_opened_up_on_its_next_fetch(
        self, mirror: Path, git_repo: GitRepo
    ) -> None:
        subprocess.run(
            ["git", "config", "--unset", "core.sharedRepository"], cwd=mirror, check=True
        )
        for path in [mirror, *mirror.rglob("*")]:
            path.chmod(0o700 if path.is_dir() else 0o600)
        git_mod.GitClient.mirror(str(git_repo.path), mirror).close()
        assert self.unreadable(mirror) == []
