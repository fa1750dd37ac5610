"""blame_range and file_history from the precomputed history equal git's own answers.

A real repository with renames, merges, a change and its revert, non-ASCII
authors and paths, a .mailmap, a multi-line subject, a binary file and
deletions is indexed by the real pipeline, then served over real HTTP; every
file's blame is compared with ``git blame --porcelain`` and its history with
``git log --follow``, before and after an incremental update, and for a
generation built without history (the git fallback).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from searcher_helpers import Served, blame_lines, settings_for

from codeintel.core import history as history_mod
from codeintel.core import history_index
from codeintel.core.history_index import HistoryIndex
from codeintel.core.store import Store
from codeintel.indexer import history_build, pipeline, progress
from codeintel.searcher import create_app
from gitrepo import GitRepo

pytestmark = pytest.mark.slow

ZOE = ("Zoë Ångström", "zoe@example.org")
BOB = ("Bob", "bob@old.example.org")
APP = "".join(f"def f{i}():\n    return {i}\n" for i in range(12))
CAFE = "docs/café notes.md"


def _commit(
    repo: GitRepo,
    msg: str,
    files: dict[str, str | bytes],
    day: int,
    who: tuple[str, str] | None = None,
) -> str:
    repo.write(files)
    repo.git("add", "-A")
    name, email = who or ("Ada Lovelace", "ada@example.org")
    date = f"2024-03-{day:02d}T10:00:00+02:00"
    env = {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_AUTHOR_DATE": date,
        "GIT_COMMITTER_DATE": date,
    }
    repo.git("commit", "-q", "--allow-empty", "-m", msg, env=env)
    return repo.head()


def _merge(repo: GitRepo, branch: str, day: int) -> None:
    date = f"2024-03-{day:02d}T10:00:00+02:00"
    env = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    repo.git("merge", "-q", "--no-ff", branch, "-m", f"merge {branch}", env=env)


def make_history(repo: GitRepo) -> None:
    _commit(
        repo,
        "initial",
        {
            "src/app.py": APP,
            CAFE: "# Café\n\nCrème brûlée.\n",
            "old/name.py": "".join(f"x{i} = {i}\n" for i in range(30)),
            "gone.py": "bye = 1\n",
            "logo.bin": b"\x89PNG\x00\x01\x02binary\n",
            ".mailmap": "Robert <bob@new.example.org> Bob <bob@old.example.org>\n",
        },
        1,
    )
    _commit(
        repo,
        "zoë edits",
        {
            "src/app.py": APP.replace("return 3", "return 33"),
            CAFE: "# Café\n\nCrème brûlée.\nTarte Tatin.\n",
        },
        2,
        ZOE,
    )
    repo.git("checkout", "-q", "-b", "side")
    _commit(
        repo,
        "side: f9",
        {"src/app.py": repo_text(repo, "src/app.py").replace("return 9", "return 99")},
        3,
        BOB,
    )
    repo.git("checkout", "-q", "main")
    _commit(repo, "main: name", {"old/name.py": repo_text(repo, "old/name.py") + "x30 = 30\n"}, 4)
    _merge(repo, "side", 5)
    (repo.path / "new").mkdir()
    repo.git("mv", "old/name.py", "new/name.py")
    _commit(
        repo,
        "move name\nacross two lines\n\nbody text",
        {"new/name.py": repo_text(repo, "new/name.py").replace("x5 = 5", "x5 = 55")},
        6,
        BOB,
    )
    repo.delete("gone.py")
    # Committed in the same second as the last: the walk order breaks the tie as git does.
    _commit(repo, "delete gone", {"logo.bin": b"\x89PNG\x00\x03binary\n"}, 6)


def grow_history(repo: GitRepo) -> None:
    """Commits for the update: a change and its revert, a merge, a rename, a new file."""
    app = repo_text(repo, "src/app.py")
    _commit(repo, "try f1", {"src/app.py": app.replace("return 1\n", "return 11\n")}, 7, ZOE)
    _commit(repo, "revert f1", {"src/app.py": app}, 8)
    repo.git("checkout", "-q", "-b", "side2")
    _commit(repo, "side2: café", {CAFE: repo_text(repo, CAFE) + "Clafoutis.\n"}, 9, ZOE)
    repo.git("checkout", "-q", "main")
    _commit(repo, "main: new", {"new.txt": "fresh\n"}, 10)
    _merge(repo, "side2", 11)
    repo.git("mv", CAFE, "docs/recettes.md")
    _commit(repo, "rename café", {}, 12)


def repo_text(repo: GitRepo, path: str) -> str:
    return (repo.path / path).read_text(encoding="utf-8")


def git_log_follow(repo: GitRepo, path: str) -> list[dict[str, str]]:
    fmt = "%H%x1f%an%x1f%ae%x1f%aI%x1f%s"
    out = repo.git(
        "-c", "core.quotepath=off", "log", "--follow", f"--format={fmt}", "HEAD", "--", path
    )
    rows = []
    for line in out.splitlines():
        sha, author, email, date, summary = line.split("\x1f")
        rows.append(
            {
                "sha": sha,
                "short_sha": sha[:12],
                "author": author,
                "email": email,
                "date": date,
                "summary": summary,
            }
        )
    return rows


def git_blame(repo: GitRepo, path: str, start: int, end: int) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["git", "blame", "--porcelain", "-L", f"{start},{end}", "HEAD", "--", path],
        cwd=repo.path,
        capture_output=True,
        check=True,
    ).stdout
    return [
        {
            "line": e.line,
            "sha": e.sha,
            "short_sha": e.short_sha,
            "author": e.author,
            "email": e.email,
            "date": e.date,
            "summary": e.summary,
            "text": e.text,
        }
        for e in history_mod.parse_porcelain(out)
    ]


def tracked(repo: GitRepo) -> list[str]:
    return repo.git("-c", "core.quotepath=off", "ls-files").splitlines()


def check_answers(client: httpx.Client, repo: GitRepo, index: HistoryIndex | None) -> None:
    """Every tracked file's history and blame over REST equal git's; so do the index's own."""
    for path in tracked(repo):
        expected = git_log_follow(repo, path)
        r = client.post("/v1/file_history", json={"path": path, "limit": 500})
        assert r.status_code == 200, r.text
        assert r.json()["results"] == expected, path
        r = client.post("/v1/file_history", json={"path": path, "limit": 2})
        assert r.json()["results"] == expected[:2], path
        if index is not None:
            assert [msgspec.structs.asdict(e) for e in index.log(path, 500)] == expected, path
        data = (repo.path / path).read_bytes()
        n = len(data.splitlines())
        for start, end in ((1, n + 5), (min(2, n), min(3, n)), (n, n)):
            body = {"path": path, "start_line": start, "end_line": end, "max_tokens": 400_000}
            r = client.post("/v1/blame_range", json=body)
            assert r.status_code == 200, (path, r.text)
            want = git_blame(repo, path, start, min(end, n))
            # The answer names each commit by its short sha (searcher/blame.py).
            short = [{**w, "sha": w["short_sha"]} for w in want]
            assert blame_lines(r.json()) == [
                {k: v for k, v in w.items() if k != "short_sha"} for w in short
            ], (path, start, end)
            if index is not None and index.blamed_blob(path) is not None:
                got = index.blame(path, start, end, data)
                assert got is not None and [msgspec.structs.asdict(e) for e in got] == want
        body = {"path": path, "start_line": n + 1, "end_line": n + 2}
        r = client.post("/v1/blame_range", json=body)
        assert r.status_code == 422 and r.json()["error"]["field"] == "start_line"
        assert f"({n} lines)" in r.json()["error"]["message"]
    # A directory's history is plain path-limited git log (renames cannot be followed).
    r = client.post("/v1/file_history", json={"path": "docs", "limit": 500})
    fmt = "%H"
    assert [e["sha"] for e in r.json()["results"]] == repo.git(
        "log", f"--format={fmt}", "HEAD", "--", "docs"
    ).split()


def _index(store: Path) -> HistoryIndex | None:
    gen = Store(store).current()
    return HistoryIndex.open(gen.path, gen.manifest.commit)


def _wait_for(client: httpx.Client, generation: str) -> None:
    deadline = time.monotonic() + 30
    while client.get("/readyz").json().get("generation") != generation:
        assert time.monotonic() < deadline, f"the searcher never loaded {generation}"
        time.sleep(0.05)


def test_identical_to_git_before_and_after_an_update(tmp_path: Path, local_embedder: Any) -> None:
    repo = GitRepo(tmp_path / "repo")
    make_history(repo)
    settings = settings_for(tmp_path / "store")
    pipeline.build(settings, str(repo.path), local_embedder)
    built = _index(tmp_path / "store")
    assert built is not None and built.blamed_blob("src/app.py") is not None
    assert built.blamed_blob("logo.bin") is None  # binary: blamed by git at query time
    assert [e.summary for e in built.log("new/name.py", 500)] == [
        "move name across two lines",
        "main: name",
        "initial",  # as old/name.py: followed across the rename
    ]
    # Blame reports the .mailmap name and the subject's first line; log the raw name and
    # the whole first paragraph. Each tool keeps its own, as git does.
    line6 = built.blame("new/name.py", 6, 6, (repo.path / "new/name.py").read_bytes())
    assert line6 is not None and (line6[0].author, line6[0].summary) == ("Robert", "move name")
    assert built.log("new/name.py", 1)[0].author == "Bob"

    with Served(create_app(settings, embedder=local_embedder)) as served:
        served.wait_ready()
        with httpx.Client(base_url=served.url, timeout=60) as client:
            check_answers(client, repo, built)
            grow_history(repo)
            result = pipeline.update(settings, local_embedder)
            updated = _index(tmp_path / "store")
            assert updated is not None and len(updated) == len(built) + 6
            assert updated.log("docs/recettes.md", 1)[0].summary == "rename café"
            _wait_for(client, result.generation)
            check_answers(client, repo, updated)


def test_a_force_push_rebuilds_the_history(tmp_path: Path, local_embedder: Any) -> None:
    repo = GitRepo(tmp_path / "repo")
    make_history(repo)
    settings = settings_for(tmp_path / "store")
    pipeline.build(settings, str(repo.path), local_embedder)
    repo.git("reset", "-q", "--hard", "HEAD~2")  # the parent's commit leaves the branch
    _commit(repo, "rewritten", {"src/app.py": repo_text(repo, "src/app.py") + "# new\n"}, 20)
    pipeline.update(settings, local_embedder)
    index = _index(tmp_path / "store")
    assert index is not None and len(index) == len(repo.git("log", "--format=%H").split())
    with Served(create_app(settings, embedder=local_embedder)) as served:
        served.wait_ready()
        with httpx.Client(base_url=served.url, timeout=60) as client:
            check_answers(client, repo, index)


def test_update_reblames_only_touched_files(tmp_path: Path, local_embedder: Any) -> None:
    repo = GitRepo(tmp_path / "repo")
    make_history(repo)
    settings = settings_for(tmp_path / "store")
    pipeline.build(settings, str(repo.path), local_embedder)
    grow_history(repo)
    mirror = Store(tmp_path / "store").mirror_path
    parent = Store(tmp_path / "store").current()
    out = tmp_path / "out"
    out.mkdir()
    (out / "chunks.sqlite").write_bytes((parent.path / "chunks.sqlite").read_bytes())
    subprocess.run(
        ["git", "fetch", "-q", str(repo.path), "+refs/heads/*:refs/heads/*"], cwd=mirror, check=True
    )
    stats = history_build.write(
        out, mirror, repo.head(), parent, settings.index, progress.Reporter()
    )
    assert stats is not None
    # The parent's chunks name src/app.py, new/name.py, .mailmap (and the café file, renamed
    # away since). src/app.py was changed and reverted: the same blob, yet a new blame.
    assert stats.new_commits == 6
    assert stats.files_blamed == 1 and stats.files_reused == 2


def test_generation_without_history_answers_through_git(
    tmp_path: Path, local_embedder: Any
) -> None:
    repo = GitRepo(tmp_path / "repo")
    make_history(repo)
    settings = settings_for(tmp_path / "store").replace(index={"history": False})
    pipeline.build(settings, str(repo.path), local_embedder)
    assert _index(tmp_path / "store") is None
    with Served(create_app(settings, embedder=local_embedder)) as served:
        served.wait_ready()
        with httpx.Client(base_url=served.url, timeout=60) as client:
            check_answers(client, repo, None)


def test_walk_order_is_git_log_order(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "repo")
    make_history(repo)
    grow_history(repo)
    table = history_build._Table(repo.head())
    table.append(history_build.walk(repo.path, repo.head()))
    order = table.walk_order(table.ids[bytes.fromhex(repo.head())])
    assert [table.shas[i].hex() for i in order] == repo.git("log", "--format=%H").split()


def test_generations_without_usable_history_fall_back(tmp_path: Path) -> None:
    v1 = Path(__file__).resolve().parents[1] / "fixtures" / "store-v1" / "generations" / "g000002"
    assert HistoryIndex.open(v1, Store(v1.parents[1]).current().manifest.commit) is None
    repo = GitRepo(tmp_path / "repo")
    make_history(repo)
    out = tmp_path / "gen"
    (out / history_index.HISTORY_DIR).mkdir(parents=True)
    table = history_build._Table(repo.head())
    table.append(history_build.walk(repo.path, repo.head()))
    encoded = table.encode()
    (out / history_index.COMMITS_FILE).write_bytes(msgspec.msgpack.encode(encoded))
    assert HistoryIndex.open(out, repo.head()) is not None
    assert HistoryIndex.open(out, "0" * 40) is None  # another commit's tables
    newer = msgspec.structs.replace(encoded, format=history_index.HISTORY_FORMAT + 1)
    (out / history_index.COMMITS_FILE).write_bytes(msgspec.msgpack.encode(newer))
    assert HistoryIndex.open(out, repo.head()) is None
