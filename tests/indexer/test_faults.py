"""Bad input and faults: one clear error line, a non-zero exit, and CURRENT untouched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from codeintel.cli import main
from codeintel.core.store import Store
from servers import FakeEmbeddingsServer, refused_url

pytestmark = pytest.mark.slow


@pytest.fixture
def embed_server() -> Iterator[FakeEmbeddingsServer]:
    server = FakeEmbeddingsServer()
    with server.running():
        yield server


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEINTEL_EMBEDDER_MAX_RETRIES", "2")
    monkeypatch.setenv("CODEINTEL_EMBEDDER_RETRY_BUDGET_SECONDS", "3")
    monkeypatch.setenv("CODEINTEL_EMBEDDER_TIMEOUT_SECONDS", "5")


def _openai(server: FakeEmbeddingsServer, *extra: str) -> list[str]:
    return [
        "--embedder",
        "openai",
        "--embed-url",
        server.url,
        "--embed-model",
        "test-embed",
        *extra,
    ]


def _build(source: str, store: Path, *extra: str) -> int:
    return main(["index", "build", source, "--store", str(store), *extra])


@pytest.fixture
def built(sample_repo, embed_server, tmp_path) -> Path:
    """A store with one good generation, made through the openai path."""
    store = tmp_path / "store"
    assert _build(str(sample_repo.path), store, *_openai(embed_server)) == 0
    assert Store(store).current_name() == "g000001"
    return store


def _one_error_line(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1, err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


class TestBadSources:
    def test_not_a_git_repo(self, built, embed_server, tmp_path, capsys):
        plain = tmp_path / "plain"
        plain.mkdir()
        assert _build(str(plain), built, *_openai(embed_server)) != 0
        _one_error_line(capsys, "not a git repository", str(plain))
        assert Store(built).current_name() == "g000001"

    def test_unknown_ref(self, sample_repo, built, embed_server, capsys):
        assert (
            _build(str(sample_repo.path), built, "--ref", "no-such-branch", *_openai(embed_server))
            != 0
        )
        _one_error_line(capsys, "unknown ref", "no-such-branch")
        assert Store(built).current_name() == "g000001"

    def test_unreachable_url(self, built, embed_server, capsys):
        assert _build("http://127.0.0.1:9/nowhere.git", built, *_openai(embed_server)) != 0
        _one_error_line(capsys, "http://127.0.0.1:9/nowhere.git", "unable to access")
        assert Store(built).current_name() == "g000001"

    def test_empty_repository(self, git_repo, embed_server, tmp_path, capsys):
        assert _build(str(git_repo.path), tmp_path / "store", *_openai(embed_server)) != 0
        _one_error_line(capsys, "no commits")
        assert Store(tmp_path / "store").current_name() is None


class TestEmbeddingFaults:
    @pytest.mark.parametrize("status", [500, 429])
    def test_server_errors(self, sample_repo, built, embed_server, fast_retries, capsys, status):
        sample_repo.commit("change", {"new.py": "def fresh():\n    return 2\n"})
        embed_server.status = status
        assert main(["index", "update", "--store", str(built), *_openai(embed_server)]) != 0
        _one_error_line(capsys, str(status), embed_server.url)
        assert embed_server.attempts > 1, "5xx and 429 must be retried"
        assert Store(built).current_name() == "g000001"

    def test_server_unreachable(self, sample_repo, built, fast_retries, capsys):
        sample_repo.commit("change", {"new.py": "def fresh():\n    return 2\n"})
        with refused_url() as dead:
            args = ["--embedder", "openai", "--embed-url", dead, "--embed-model", "test-embed"]
            assert main(["index", "update", "--store", str(built), *args]) != 0
        _one_error_line(capsys, dead)
        assert Store(built).current_name() == "g000001"

    def test_wrong_dimension_for_the_store(self, sample_repo, built, embed_server, capsys):
        sample_repo.commit("change", {"new.py": "def fresh():\n    return 2\n"})
        embed_server.dim = 16
        assert main(["index", "update", "--store", str(built), *_openai(embed_server)]) != 0
        _one_error_line(capsys, "16", "8")
        assert Store(built).current_name() == "g000001"


def test_corrupt_manifest_is_refused(built, embed_server, capsys):
    manifest = built / "generations" / "g000001" / "manifest.json"
    manifest.write_text("{not json")
    assert main(["search", "anything", "--store", str(built), *_openai(embed_server)]) != 0
    _one_error_line(capsys, "manifest")
    assert main(["index", "update", "--store", str(built), *_openai(embed_server)]) != 0
    _one_error_line(capsys, "manifest")
    assert (built / "CURRENT").read_text().strip() == "g000001"


def test_sigkill_mid_build_keeps_the_last_good_generation(
    sample_repo, built, embed_server, tmp_path
):
    sample_repo.commit(
        "many files", {f"pkg/mod{i}.py": f"def f{i}():\n    return {i}\n" for i in range(40)}
    )
    embed_server.hang_after = embed_server.attempts  # the next embeddings request never answers
    env = {**os.environ, "CODEINTEL_EMBEDDER_BATCH_SIZE": "4"}
    cmd = [
        sys.executable,
        "-m",
        "codeintel.cli",
        "index",
        "build",
        str(sample_repo.path),
        "--store",
        str(built),
    ]
    proc = subprocess.Popen([*cmd, *_openai(embed_server)], env=env, stderr=subprocess.PIPE)
    try:
        assert embed_server.hanging.wait(60), "the build never reached the embedding stage"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    leftovers = [p.name for p in (built / "generations").iterdir() if p.name.startswith(".tmp")]
    assert leftovers, "the kill should land while a generation is half-written"
    assert (built / "CURRENT").read_text().strip() == "g000001"
    assert Store(built).current().manifest.commit != sample_repo.head()

    embed_server.hang_after = None
    embed_server.release.set()
    assert _build(str(sample_repo.path), built, *_openai(embed_server)) == 0
    current = Store(built).current()
    assert current.name == "g000002" and current.manifest.commit == sample_repo.head()
    leftovers = [p.name for p in (built / "generations").iterdir() if p.name.startswith(".tmp")]
    assert leftovers == [], "the next build under the lock removes what the killed one left"
