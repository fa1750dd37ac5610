"""Every path a user gives is resolved once, against the caller's working directory.

The README's first command is ``make serve``, which runs ``codeintel serve . --store
.codeintel``: a relative store. These tests run the real CLI as a subprocess, with
relative stores, from the repository's own directory and from its parent, the way a
user types it; and a mirror whose first attempt fails, then succeeds.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from benchmarks import serverproc
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

import servers
from codeintel.core import errors, gitrun
from codeintel.core import git as git_mod
from codeintel.core.settings import Settings
from gitrepo import GitRepo

pytestmark = pytest.mark.slow


def _repo(path: Path) -> GitRepo:
    repo = GitRepo(path)
    repo.write(
        {
            "billing/invoice.py": "def parse_invoice(text):\n    return text.split(',')\n",
            "mail/sender.py": "def send_email(to, body):\n    return (to, body)\n",
        }
    )
    repo.commit("first")
    return repo


def _env(tmp_path: Path) -> dict[str, str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
        "CODEINTEL_SERVER_RELOAD_INTERVAL_SECONDS": "0.2",
        "CODEINTEL_INDEX_HISTORY": "0",
    }
    if "PYTHONPATH" in os.environ:  # a worktree's sources over the editable install
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def _embedder_flags(url: str) -> list[str]:
    return ["--embedder", "openai", "--embed-url", url, "--embed-model", "fake", "--embed-dim", "8"]


def _cli(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "codeintel.cli", *args]
    out = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, f"{' '.join(args)}: {out.stderr[-3000:]}"
    return out


def _assert_one_clean_store(store: Path) -> None:
    """A store where it was asked for: no store nested inside it, no scratch mirror left."""
    assert (store / "CURRENT").is_file()
    assert (store / "mirror.git" / "HEAD").is_file()
    assert not (store / store.name).exists(), "a store nested inside the store"
    assert not (store / "mirror.git.tmp").exists()
    assert not any(p.name.startswith(".codeintel") for p in store.iterdir())


@pytest.fixture(scope="module")
def embeddings() -> Iterator[str]:
    fake = servers.FakeEmbeddingsServer(dim=8)
    with fake.running() as url:
        yield url


@pytest.mark.parametrize("where", ["repository", "parent"])
def test_build_update_merge_with_a_relative_store(
    tmp_path: Path, embeddings: str, where: str
) -> None:
    repo = _repo(tmp_path / "repo")
    env = _env(tmp_path)
    cwd, source = (repo.path, ".") if where == "repository" else (tmp_path, "repo")
    store = cwd / "rel-store"
    flags = _embedder_flags(embeddings)

    _cli(cwd, env, "index", "build", source, "--store", "rel-store", *flags)
    _assert_one_clean_store(store)
    manifest = _manifest(store)
    assert manifest["commit"] == repo.head()
    assert manifest["repo_url"] == str(repo.path)

    repo.write({"billing/refund.py": "def refund_order(order):\n    return order\n"})
    head = repo.commit("refunds")
    _cli(cwd, env, "index", "update", "--store", "rel-store", *flags)
    _cli(cwd, env, "index", "merge", "--store", "rel-store", *flags)
    _assert_one_clean_store(store)
    found = _cli(cwd, env, "search", "refund order", "--store", "rel-store", "--mode", "lexical")
    assert "billing/refund.py" in found.stdout
    assert _manifest(store)["commit"] == head


def _manifest(store: Path) -> dict[str, Any]:
    live = (store / "CURRENT").read_text().strip()
    return dict(json.loads((store / "generations" / live / "manifest.json").read_text()))


def _until(check: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.parametrize("where", ["repository", "parent"])
def test_serve_with_a_relative_store(tmp_path: Path, embeddings: str, where: str) -> None:
    """``make serve``'s command line: ``serve . --store .codeintel`` (and from the parent)."""
    repo = _repo(tmp_path / "repo")
    cwd, source = (repo.path, ".") if where == "repository" else (tmp_path, "repo")
    port = serverproc.free_port()
    cmd = [sys.executable, "-m", "codeintel.cli", "serve", source, "--store", ".codeintel"]
    cmd += ["--port", str(port), *_embedder_flags(embeddings)]
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(cmd, cwd=cwd, env=_env(tmp_path), stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200)
        answer = httpx.post(
            f"{url}/v1/semantic_search", json={"query": "parse an invoice"}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["generation"] == "g000001" and body["commit"] == repo.head()
        assert body["results"][0]["path"] == "billing/invoice.py"
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    text = (tmp_path / "serve.log").read_text()
    assert "retrying in" not in text, text[-3000:]
    _assert_one_clean_store(cwd / ".codeintel")


async def test_mcp_with_a_relative_store_from_the_parent(tmp_path: Path, embeddings: str) -> None:
    repo = _repo(tmp_path / "repo")
    args = ["-m", "codeintel.cli", "mcp", "repo", "--store", "st2"]
    params = StdioServerParameters(
        command=sys.executable,
        args=[*args, *_embedder_flags(embeddings)],
        env=_env(tmp_path),
        cwd=tmp_path,
    )
    with (tmp_path / "stderr.log").open("w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            deadline = time.monotonic() + 120
            while True:
                found = await session.call_tool("search_text", {"pattern": "send_email"})
                text = found.content[0].text if found.content else ""
                if not found.is_error and "mail/sender.py" in text:
                    assert found.structured_content["commit"] == repo.head()
                    break
                assert "cannot" not in text, text
                assert time.monotonic() < deadline, text
                await asyncio.sleep(0.2)
            while not (tmp_path / "st2" / "CURRENT").exists():
                assert time.monotonic() < deadline, (tmp_path / "stderr.log").read_text()
                await asyncio.sleep(0.2)
    _assert_one_clean_store(tmp_path / "st2")
    assert "retrying in" not in (tmp_path / "stderr.log").read_text()


# -- the mirror -----------------------------------------------------------------------------


def test_a_mirror_that_fails_once_then_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the clone (here the commit-graph write, scripted: a real disk that
    fills at that moment is not reproducible) leaves nothing behind, and the retry works."""
    repo = _repo(tmp_path / "repo")
    dest = tmp_path / "store" / "mirror.git"
    real = git_mod.write_commit_graph
    calls: list[Path] = []

    def fails_once(path: Path) -> None:
        calls.append(path)
        if len(calls) == 1:
            raise errors.GitError("scripted: no space left on device")
        real(path)

    monkeypatch.setattr(git_mod, "write_commit_graph", fails_once)
    with pytest.raises(errors.GitError, match="no space left"):
        git_mod.GitClient.mirror(str(repo.path), dest)
    assert sorted(p.name for p in dest.parent.iterdir()) == []
    with git_mod.GitClient.mirror(str(repo.path), dest) as git:
        assert git.resolve("HEAD") == repo.head()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["mirror.git"]


def test_leftovers_of_a_crashed_mirror_never_block_the_next(tmp_path: Path) -> None:
    """A process killed mid-clone leaves ``mirror.git.tmp`` full of objects: the next
    attempt clears it and clones."""
    repo = _repo(tmp_path / "repo")
    dest = tmp_path / "store" / "mirror.git"
    leftover = dest.with_name("mirror.git.tmp")
    (leftover / "objects" / "pack").mkdir(parents=True)
    (leftover / "objects" / "pack" / "tmp_pack_123").write_bytes(b"half a pack")
    (leftover / "HEAD").write_text("ref: refs/heads/main\n")
    with git_mod.GitClient.mirror(str(repo.path), dest) as git:
        assert git.resolve("HEAD") == repo.head()
    assert not leftover.exists()


def test_git_refuses_a_relative_working_directory() -> None:
    with pytest.raises(ValueError, match="absolute working directory"):
        gitrun.run(Path("relative/store"), "status")


# -- settings -------------------------------------------------------------------------------


def test_relative_paths_in_settings_are_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env(
        {"CODEINTEL_STORE_PATH": "st", "CODEINTEL_RESULT_FILE": "out/result.json"},
        fleet={"stores_root": "~/stores"},
    )
    assert settings.store.path == tmp_path / "st"
    assert settings.index.result_file == str(tmp_path / "out" / "result.json")
    assert settings.fleet.stores_root == os.path.expanduser("~/stores")
    # Later changes of directory change nothing: the meaning was fixed when it was given.
    monkeypatch.chdir("/")
    assert settings.replace(store={"keep_generations": 1}).store.path == tmp_path / "st"
    assert Settings.from_env({}).store.path == Path("/.codeintel")
    assert Settings.from_env({}).index.result_file == ""
