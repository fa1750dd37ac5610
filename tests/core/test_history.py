"""Blame and log at a pinned commit (``core/history.py``), against a real repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeintel.core import errors, history
from gitrepo import GitRepo

NON_ASCII_PATH = "docs/naïve café.md"
AUTHORS = {
    "ada": ("Ada Lovelace", "ada@example.org"),
    "zoe": ("Zoë Ürban-Ñúñez", "zoe@example.org"),
}


def _commit(repo: GitRepo, message: str, files: dict[str, str], author: str, day: int) -> str:
    name, email = AUTHORS[author]
    date = f"2024-01-{day:02d}T12:00:00+02:00"
    env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": date}
    repo.write(dict(files))
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", message, env={**env, "GIT_COMMITTER_DATE": date})
    return repo.head()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> GitRepo:
    repo = GitRepo(tmp_path_factory.mktemp("history") / "repo")
    recipes = "# Naïve café\n\nCrème brûlée recipes for the cafeteria.\n"
    _commit(repo, "initial import", {NON_ASCII_PATH: recipes, "a.py": "x = 1\n"}, "ada", 1)
    _commit(repo, "café: more recipes", {NON_ASCII_PATH: recipes + "Tarte Tatin.\n"}, "zoe", 2)
    return repo


class TestHistory:
    def test_blame_and_log_at_a_pinned_commit(self, repo: GitRepo) -> None:
        first = repo.git("rev-list", "--max-parents=0", "HEAD")
        lines = history.blame(repo.path, first, NON_ASCII_PATH, 1, 100)
        assert len(lines) == 3  # the later "Tarte Tatin." line does not exist yet
        assert {e.author for e in lines} == {AUTHORS["ada"][0]}
        log = history.history(repo.path, repo.head(), NON_ASCII_PATH, 10)
        assert [e.summary for e in log] == ["café: more recipes", "initial import"]

    def test_blame_names_the_last_author_of_each_line(self, repo: GitRepo) -> None:
        lines = history.blame(repo.path, repo.head(), NON_ASCII_PATH, 3, 4)
        assert [(e.line, e.author, e.text) for e in lines] == [
            (3, AUTHORS["ada"][0], "Crème brûlée recipes for the cafeteria."),
            (4, AUTHORS["zoe"][0], "Tarte Tatin."),
        ]
        assert lines[1].date == "2024-01-02T12:00:00+02:00"

    def test_a_range_past_the_end(self, repo: GitRepo) -> None:
        assert [e.line for e in history.blame(repo.path, repo.head(), "a.py", 1, 50)] == [1]
        with pytest.raises(errors.QueryError, match="past the end"):
            history.blame(repo.path, repo.head(), "a.py", 5, 6)

    def test_missing_paths(self, repo: GitRepo) -> None:
        head = repo.head()
        with pytest.raises(errors.PathNotFoundError):
            history.blame(repo.path, head, "nope.py", 1, 2)
        with pytest.raises(errors.PathNotFoundError):
            history.history(repo.path, head, "nope.py", 2)

    def test_porcelain_dates_keep_the_offset(self) -> None:
        sha = "a" * 40
        out = (
            f"{sha} 1 1 1\nauthor Zoë\nauthor-mail <z@x>\nauthor-time 1700000000\n"
            f"author-tz -0130\nsummary s\nfilename f\n\tline\n"
        ).encode()
        [entry] = history.parse_porcelain(out)
        assert entry.date == "2023-11-14T20:43:20-01:30"
        assert entry.author == "Zoë"
        assert entry.text == "line"

    async def test_the_async_client_runs_off_the_loop(self, repo: GitRepo) -> None:
        client = history.AsyncGitClient(Path(repo.path))
        head = repo.head()
        assert await client.path_exists(head, NON_ASCII_PATH)
        assert len(await client.blame(head, NON_ASCII_PATH, 1, 1)) == 1
        assert len(await client.history(head, "a.py", 5)) == 1
