"""Recovering a store whose current generation is bad, from the command line.

A corrupt or too-new current generation must never trap a store: a full build
writes a fresh generation over it, an update says which command gets out, and
``index rollback`` points CURRENT back at an intact generation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from codeintel.cli import main
from codeintel.core import errors
from codeintel.core.settings import Settings
from codeintel.core.store import CHUNKS_DB, FORMAT_VERSION, MANIFEST, Store
from codeintel.indexer import serving
from servers import FakeEmbeddingsServer

pytestmark = pytest.mark.slow

FAULTS = ["flipped_byte", "newer_format", "garbage_current"]


@pytest.fixture
def embed_server() -> Iterator[FakeEmbeddingsServer]:
    server = FakeEmbeddingsServer()
    with server.running():
        yield server


def _openai(server: FakeEmbeddingsServer) -> list[str]:
    return ["--embedder", "openai", "--embed-url", server.url, "--embed-model", "test-embed"]


def _index(server: FakeEmbeddingsServer, command: str, *args: str) -> int:
    return main(["index", command, *args, *_openai(server)])


@pytest.fixture
def two_generations(sample_repo, embed_server, tmp_path) -> Path:
    """A store with g000001 (build) and g000002 (update), made through the CLI."""
    store = tmp_path / "store"
    assert _index(embed_server, "build", str(sample_repo.path), "--store", str(store)) == 0
    sample_repo.commit("more", {"extra.py": "def extra():\n    return 'extra'\n"})
    assert _index(embed_server, "update", "--store", str(store)) == 0
    assert Store(store).current_name() == "g000002"
    return store


def damage(store: Path, name: str, fault: str) -> None:
    gen = store / "generations" / name
    if fault == "flipped_byte":
        data = bytearray((gen / CHUNKS_DB).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (gen / CHUNKS_DB).write_bytes(bytes(data))
    elif fault == "newer_format":
        raw = msgspec.json.decode((gen / MANIFEST).read_bytes())
        raw.update(format_version=FORMAT_VERSION + 1, min_reader_version=FORMAT_VERSION + 1)
        (gen / MANIFEST).write_bytes(msgspec.json.encode(raw))
    else:
        (store / "CURRENT").write_text("not a generation\n")


def _error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("fault", FAULTS)
def test_build_writes_a_fresh_generation_over_a_bad_current(
    sample_repo, two_generations, embed_server, capsys, fault
):
    store = two_generations
    old_next_id = Store(store).current().manifest.next_id
    damage(store, "g000002", fault)
    with pytest.raises(errors.IndexFormatError):
        Store(store).current()

    assert _index(embed_server, "build", str(sample_repo.path), "--store", str(store)) == 0
    assert _error_lines(capsys) == []
    current = Store(store).current()
    assert current.name == "g000003"
    assert current.manifest.commit == sample_repo.head()
    assert current.manifest.parent is None, "a bad generation is nobody's parent"
    assert current.manifest.next_id > old_next_id, "chunk ids never repeat within a store"


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("command", ["update", "merge"])
def test_update_and_merge_name_the_way_out(
    sample_repo, two_generations, embed_server, capsys, fault, command
):
    store = two_generations
    damage(store, "g000002", fault)
    args = ["index", command, "--store", str(store)]
    # Its own exit code: the operator reads it from the indexer pod and starts a build.
    code = main(args + (_openai(embed_server) if command == "update" else []))
    assert code == errors.CurrentUnreadableError.exit_code == 3
    (line,) = _error_lines(capsys)
    assert f"cannot {command}" in line
    assert f"codeintel index rollback --store {store}" in line
    assert f"codeintel index build {sample_repo.path} --store {store}" in line or (
        fault == "garbage_current" and "codeintel index build SOURCE" in line
    )
    assert sorted(p.name for p in (store / "generations").iterdir()) == ["g000001", "g000002"]


@pytest.mark.parametrize("fault", FAULTS)
def test_rollback_then_update_recovers(sample_repo, two_generations, embed_server, capsys, fault):
    store = two_generations
    damage(store, "g000002", fault)
    capsys.readouterr()

    assert main(["index", "rollback", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    if fault == "garbage_current":
        # Nothing names a bad generation: the newest intact one is g000002 itself.
        assert out.startswith("CURRENT: nothing readable -> g000002")
        return
    assert out.startswith("CURRENT: g000002 -> g000001 (commit ")
    assert Store(store).current().name == "g000001"

    head = sample_repo.commit("after", {"after.py": "def after():\n    return 3\n"})
    assert _index(embed_server, "update", "--store", str(store)) == 0
    current = Store(store).current()
    assert (current.name, current.manifest.parent) == ("g000003", "g000001")
    assert current.manifest.commit == head


def test_rollback_to_a_named_generation_and_its_errors(two_generations, capsys):
    store = two_generations
    assert main(["index", "rollback", "--store", str(store), "--to", "g000001"]) == 0
    assert capsys.readouterr().out.startswith("CURRENT: g000002 -> g000001")
    # Nothing older than g000001 is left to roll back to.
    assert main(["index", "rollback", "--store", str(store)]) != 0
    (line,) = _error_lines(capsys)
    assert "no intact generation older than g000001" in line
    damage(store, "g000002", "flipped_byte")
    assert main(["index", "rollback", "--store", str(store), "--to", "g000002"]) != 0
    (line,) = _error_lines(capsys)
    assert "checksum mismatch in generation g000002: chunks.sqlite" in line
    assert Store(store).current_name() == "g000001"


def test_serve_bootstrap_rebuilds_over_a_bad_current(
    sample_repo, two_generations, embed_server, tmp_path
):
    from codeintel.core import embed as embedding

    damage(two_generations, "g000002", "flipped_byte")
    settings = Settings.from_env(
        {},
        store={"path": two_generations},
        embedder={"kind": "openai", "url": embed_server.url, "model": "test-embed"},
    )
    embedder = embedding.make_embedder(settings.embedder)
    try:
        result = serving.ensure_index(settings, str(sample_repo.path), embedder)
    finally:
        embedder.close()
    assert (result.action, result.generation) == ("build", "g000003")
    assert Store(two_generations).current().name == "g000003"
