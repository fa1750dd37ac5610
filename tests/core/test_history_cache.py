"""The git path of blame and log answers from a bounded cache once it has answered."""

from __future__ import annotations

import shutil

import pytest

from codeintel.core import errors, history
from gitrepo import GitRepo


def test_answers_are_cached_per_commit_and_path(git_repo: GitRepo) -> None:
    git_repo.commit("one", {"a.py": "x = 1\ny = 2\n"})
    git_repo.commit("two", {"a.py": "x = 1\ny = 3\n"})
    head = git_repo.head()
    log = history.cached_history(git_repo.path, head, "a.py", 5, follow=True)
    blame = history.cached_blame(git_repo.path, head, "a.py", 1, 2)
    assert [e.summary for e in log] == ["two", "one"]
    assert [e.summary for e in blame] == ["one", "two"]

    shutil.rmtree(git_repo.path / ".git")  # git can no longer answer anything here
    assert history.cached_blame(git_repo.path, head, "a.py", 1, 2) == blame
    assert history.cached_history(git_repo.path, head, "a.py", 1, follow=True) == log[:1]
    # The first answer held every commit (2 < 5), so a longer limit is answered too.
    assert history.cached_history(git_repo.path, head, "a.py", 50, follow=True) == log
    with pytest.raises(errors.GitError):
        history.cached_blame(git_repo.path, head, "a.py", 2, 2)
    with pytest.raises(errors.GitError):
        history.cached_history(git_repo.path, head, "a.py", 5, follow=False)


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    cache = history._LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
