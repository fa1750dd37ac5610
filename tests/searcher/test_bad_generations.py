"""Bad generations under a real searcher: fall back loudly, report the real reason, never lose the index.

Each test serves a real store over loopback HTTP and breaks it the way an
operator's volume can break: a refused CURRENT at startup, no intact generation
at all, a garbage CURRENT, bytes flipped in the live ``chunks.sqlite``, a
rebuild with another embedding model, a store path that is a file.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from searcher_helpers import (
    Served,
    build_store,
    make_repo,
    metric,
    serving,
    settings_for,
    until,
)

from codeintel.core import store as store_mod
from codeintel.core.embed.local import LocalEmbedder, resolve_model_dir
from codeintel.core.settings import Settings
from codeintel.indexer import pipeline
from codeintel.searcher import create_app

pytestmark = pytest.mark.slow

LOGGER = "codeintel.searcher.generations"


def clone_generation(root: Path, src: str, dst: str, **changes: Any) -> Path:
    """Copy a published generation under a new name, editing its manifest."""
    gens = root / "generations"
    shutil.copytree(gens / src, gens / dst)
    manifest = msgspec.json.decode((gens / dst / "manifest.json").read_bytes())
    manifest.update(generation=dst, **changes)
    (gens / dst / "manifest.json").write_bytes(msgspec.json.encode(manifest))
    return gens / dst


def set_current(root: Path, text: str) -> None:
    (root / "CURRENT.tmp").write_text(text)
    (root / "CURRENT.tmp").replace(root / "CURRENT")


def damage(gen: Path, fault: str) -> None:
    if fault == "newer_format":
        manifest = msgspec.json.decode((gen / "manifest.json").read_bytes())
        newer = store_mod.FORMAT_VERSION + 1
        manifest.update(format_version=newer, min_reader_version=newer)
        (gen / "manifest.json").write_bytes(msgspec.json.encode(manifest))
    else:
        db = gen / "chunks.sqlite"
        db.write_bytes(db.read_bytes()[:-1] + b"\x01")


@pytest.mark.parametrize("fault", ["newer_format", "bad_checksum"])
def test_starting_on_a_refused_generation_serves_the_newest_intact_one(
    tmp_path: Path, local_embedder: Any, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = build_store(make_repo(tmp_path / "repo"), tmp_path / "store", local_embedder)
    root = tmp_path / "store"
    damage(clone_generation(root, "g000001", "g000002"), fault)
    set_current(root, "g000002\n")
    caplog.set_level(logging.INFO, logger=LOGGER)
    with Served(create_app(settings, embedder=local_embedder)) as served:
        assert served.wait_ready()["generation"] == "g000001"
        info = serving(served.url)
        assert info["generation"] == "g000001" and info["current"] == "g000002"
        assert info["fallback"] is True
        assert ("newer" if fault == "newer_format" else "checksum mismatch") in info["reason"]
        assert metric(served.url, "codeintel_generation_fallback") == 1.0
        assert metric(served.url, 'codeintel_generation_loads_total{result="fallback"}') == 1.0
        result = "refused_format" if fault == "newer_format" else "damaged"
        assert metric(served.url, f'codeintel_generation_loads_total{{result="{result}"}}')
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert any("serving generation g000001, not CURRENT's" in m for m in errors), errors
        r = httpx.post(f"{served.url}/v1/semantic_search", json={"query": "parse an invoice"})
        assert r.status_code == 200 and r.json()["generation"] == "g000001"

        # The documented recovery: roll CURRENT back; the searcher stops calling it a fallback.
        store_mod.Store(root).rollback()
        until(lambda: not serving(served.url)["fallback"], "the rollback was never noticed")
        assert serving(served.url) == {
            "generation": "g000001",
            "current": "g000001",
            "fallback": False,
            "reason": None,
        }
        assert metric(served.url, "codeintel_generation_fallback") == 0.0


def test_with_no_intact_generation_clients_are_told_why(
    tmp_path: Path, local_embedder: Any
) -> None:
    repo = make_repo(tmp_path / "repo")
    settings = build_store(repo, tmp_path / "store", local_embedder)
    damage(tmp_path / "store" / "generations" / "g000001", "bad_checksum")
    with Served(create_app(settings, embedder=local_embedder)) as served:
        r = until(
            lambda: (
                (r := httpx.get(f"{served.url}/readyz")).status_code == 503
                and "checksum" in r.text
                and r
            ),
            "readyz never gave the reason",
        )
        message = r.json()["error"]["message"]
        assert "checksum mismatch in generation g000001: chunks.sqlite" in message
        assert "no intact generation older than g000001" in message
        assert "still being built" not in message
        r = httpx.post(f"{served.url}/v1/list_paths", json={})
        assert r.status_code == 503 and r.headers["content-type"] == "application/json"
        assert "checksum mismatch in generation g000001" in r.json()["error"]["message"]

        pipeline.build(settings, str(repo.path), local_embedder)  # a fresh build recovers
        assert served.wait_ready()["generation"] == "g000002"
        assert serving(served.url)["fallback"] is False


def test_garbage_current_is_logged_once_per_change(
    tmp_path: Path, local_embedder: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = build_store(make_repo(tmp_path / "repo"), tmp_path / "store", local_embedder)
    root = tmp_path / "store"
    caplog.set_level(logging.INFO, logger=LOGGER)

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if "cannot read CURRENT" in r.getMessage()]

    with Served(create_app(settings, embedder=local_embedder)) as served:
        served.wait_ready()
        set_current(root, "\x00\x01garbage\n")
        until(lambda: serving(served.url)["fallback"], "the garbage CURRENT was never noticed")
        time.sleep(1.5)  # seven more polls at 0.2 s
        assert len(warnings()) == 1, warnings()
        info = serving(served.url)
        assert info["generation"] == "g000001" and info["current"] is None
        assert "names no generation" in info["reason"]
        set_current(root, "other garbage\n")
        until(lambda: len(warnings()) == 2, "a changed CURRENT was not logged again")
        time.sleep(1.0)
        assert len(warnings()) == 2, warnings()
        set_current(root, "g000001\n")
        until(lambda: not serving(served.url)["fallback"], "a repaired CURRENT was not noticed")

    # A searcher that starts on a garbage CURRENT serves the newest intact generation.
    set_current(root, "garbage again\n")
    with Served(create_app(settings, embedder=local_embedder)) as served:
        assert served.wait_ready()["generation"] == "g000001"
        assert serving(served.url)["fallback"] is True


def _flip_pages(db: Path) -> bytes:
    """XOR every byte after SQLite's 100-byte header, in place; returns the original bytes."""
    original = db.read_bytes()
    with db.open("r+b") as f:
        f.seek(100)
        f.write(bytes(b ^ 0x5A for b in original[100:]))
    return original


def test_damaged_chunks_db_under_a_running_searcher_falls_back(
    two_generation_store: tuple[Path, Settings], local_embedder: Any
) -> None:
    root, settings = two_generation_store
    with Served(create_app(settings, embedder=local_embedder)) as served:
        assert served.wait_ready()["generation"] == "g000002"
        _flip_pages(root / "generations" / "g000002" / "chunks.sqlite")
        r = httpx.post(
            f"{served.url}/v1/semantic_search", json={"query": "invoice", "mode": "lexical"}
        )
        if r.status_code == 200:  # the poll saw the file change first (issue 22) and fell back
            assert r.json()["generation"] == "g000001", r.text
        else:
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == "application/json"
            error = r.json()["error"]
            assert error["type"] == "GenerationCorruptError"
            assert "generation g000002 is damaged" in error["message"]
            series = 'codeintel_generation_corruptions_total{generation="g000002"}'
            assert (metric(served.url, series) or 0) >= 1

        until(lambda: served.wait_ready()["generation"] == "g000001", "never fell back")
        info = serving(served.url)
        assert info["fallback"] is True and info["current"] == "g000002"
        assert "g000002 was damaged while served" in info["reason"]
        assert "chunks.sqlite" in info["reason"]
        for mode in ("lexical", "semantic"):
            r = httpx.post(
                f"{served.url}/v1/semantic_search", json={"query": "invoice", "mode": mode}
            )
            assert r.status_code == 200 and r.json()["generation"] == "g000001", r.text


def test_damage_that_goes_away_reopens_the_same_generation(
    two_generation_store: tuple[Path, Settings], local_embedder: Any
) -> None:
    root, _ = two_generation_store
    # A slow poll, so the bytes are back before the searcher re-verifies them.
    settings = settings_for(root, reload_interval_seconds=3.0)
    with Served(create_app(settings, embedder=local_embedder)) as served:
        served.wait_ready()
        db = root / "generations" / "g000002" / "chunks.sqlite"
        original = _flip_pages(db)
        r = httpx.post(
            f"{served.url}/v1/semantic_search", json={"query": "invoice", "mode": "lexical"}
        )
        db.write_bytes(original)  # e.g. a flaky network volume that reads right again
        assert r.status_code == 503 and r.json()["error"]["type"] == "GenerationCorruptError"
        until(
            lambda: metric(served.url, 'codeintel_generation_loads_total{result="reloaded"}'),
            "the generation was never re-verified and reopened",
        )
        r = httpx.post(
            f"{served.url}/v1/semantic_search", json={"query": "invoice", "mode": "lexical"}
        )
        assert r.status_code == 200 and r.json()["generation"] == "g000002"
        assert serving(served.url)["fallback"] is False


def test_a_generation_of_another_model_serves_no_dense_results(
    tmp_path: Path, local_embedder: Any
) -> None:
    repo = make_repo(tmp_path / "repo")
    settings = build_store(repo, tmp_path / "store", local_embedder)
    # The same 384-d weights under another model name: what a rebuild with another
    # model of the same dimension looks like to the searcher.
    other = LocalEmbedder(model=str(resolve_model_dir(local_embedder.model)))
    with Served(create_app(settings, embedder=local_embedder)) as served:
        served.wait_ready()
        body = {"query": "parse an invoice", "k": 3}
        assert httpx.post(f"{served.url}/v1/semantic_search", json=body).status_code == 200
        try:
            pipeline.build(settings, str(repo.path), other)
        finally:
            other.close()
        until(lambda: served.wait_ready()["generation"] == "g000002", "g000002 never went live")
        for mode in ("semantic", "hybrid"):
            r = httpx.post(f"{served.url}/v1/semantic_search", json={**body, "mode": mode})
            assert r.status_code == 503, r.text
            error = r.json()["error"]
            assert error["type"] == "ModelMismatchError"
            assert repr(other.model) in error["message"]
            assert repr(local_embedder.model) in error["message"]
            assert "mode=lexical" in error["message"]
        r = httpx.post(f"{served.url}/v1/semantic_search", json={**body, "mode": "lexical"})
        assert r.status_code == 200 and r.json()["generation"] == "g000002"
        assert r.json()["results"]
        series = 'codeintel_dense_refusals_total{reason="model_mismatch"}'
        assert metric(served.url, series) == 2.0


def test_store_path_that_is_a_file_is_the_reason_not_ready(
    tmp_path: Path, local_embedder: Any
) -> None:
    path = tmp_path / "store"
    path.write_text("not a store")
    with Served(create_app(settings_for(path), embedder=local_embedder)) as served:
        r = until(
            lambda: (
                (r := httpx.get(f"{served.url}/readyz")).status_code == 503
                and "not a directory" in r.text
                and r
            ),
            "readyz never named the bad store path",
        )
        assert r.json()["error"]["message"].endswith(f"store path {path} is not a directory")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the store to another uid")
def test_a_store_owned_by_another_user_is_served(tmp_path: Path, local_embedder: Any) -> None:
    repo = make_repo(tmp_path / "repo")
    settings = build_store(repo, tmp_path / "store", local_embedder)
    nobody = 65534
    for path in [tmp_path / "store", *(tmp_path / "store").rglob("*")]:
        os.lchown(path, nobody, nobody)
    with Served(create_app(settings, embedder=local_embedder)) as served:
        assert served.wait_ready(timeout=30)["generation"] == "g000001"
        r = httpx.post(f"{served.url}/v1/list_paths", json={})
        assert r.status_code == 200 and r.json()["total"] > 0


def test_truncated_index_under_a_running_searcher_is_not_ready_and_says_why(
    tmp_path: Path, local_embedder: Any
) -> None:
    """Issue 22: ``truncate -s 0 primary.faiss`` under a server was a SIGBUS on the next query."""
    settings = build_store(make_repo(tmp_path / "repo"), tmp_path / "store", local_embedder)
    gen = tmp_path / "store" / "generations" / "g000001"
    with Served(create_app(settings, embedder=local_embedder)) as served:
        served.wait_ready()
        os.truncate(gen / "primary.faiss", 0)
        r = httpx.post(f"{served.url}/v1/semantic_search", json={"query": "parse an invoice"})
        assert r.status_code == 503, r.text
        assert "g000001" in r.json()["error"]["message"]
        ready = until(
            lambda: (r := httpx.get(f"{served.url}/readyz")).status_code == 503 and r,
            "a damaged only generation stayed ready",
        )
        reason = ready.json()["error"]["message"]
        assert "g000001 was damaged while served" in reason and "primary.faiss" in reason
        assert "no intact" in reason and "fall back to" in reason
        r = httpx.post(f"{served.url}/v1/list_paths", json={})
        assert r.status_code == 503
        message = r.json()["error"]["message"]
        assert "no intact" in message and "will reopen" not in message
        assert metric(served.url, 'codeintel_generation_loads_total{result="damaged"}')
        assert not metric(served.url, 'codeintel_generation_loads_total{result="refused_format"}')


def test_truncated_vectors_are_noticed_by_the_poll_and_fallen_back_from(
    two_generation_store: tuple[Path, Settings], local_embedder: Any
) -> None:
    root, settings = two_generation_store
    with Served(create_app(settings, embedder=local_embedder)) as served:
        assert served.wait_ready()["generation"] == "g000002"
        (segment,) = [
            p for p in (root / "generations" / "g000002").rglob("*.f16.npy") if p.stat().st_size
        ][:1]
        os.truncate(segment, segment.stat().st_size // 2)
        # No request touches it: the reload poll compares sizes and re-verifies.
        until(lambda: serving(served.url)["generation"] == "g000001", "never fell back")
        info = serving(served.url)
        assert info["fallback"] is True and "g000002 was damaged while served" in info["reason"]
        r = httpx.post(f"{served.url}/v1/semantic_search", json={"query": "invoice"})
        assert r.status_code == 200 and r.json()["generation"] == "g000001"
