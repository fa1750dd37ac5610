"""The store: manifests, publishing generations atomically, verification, GC and the writer lock."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest

from codeintel.core import errors
from codeintel.core.store import (
    CHUNKS_DB,
    CURRENT,
    FORMAT_VERSION,
    MANIFEST,
    PRIMARY,
    SECONDARY,
    VECTORS_DIR,
    Counts,
    EmbeddingInfo,
    Generation,
    IndexInfo,
    Manifest,
    SkippedFile,
    Store,
    decode_manifest,
    encode_manifest,
)
from codeintel.core.store import root as root_mod
from codeintel.core.store import writer as writer_mod
from codeintel.core.store.chunks import Chunk, ChunkDB
from codeintel.core.store.vectors import VectorStore

DIM = 8


def make_manifest(**changes: object) -> Manifest:
    manifest = Manifest(
        repo_url="file:///repo",
        commit="c0ffee" * 6 + "abcd",
        ref="main",
        embedding=EmbeddingInfo(model="test-model", dim=DIM),
        index=IndexInfo(type="flat", params={"metric": "ip"}),
        counts=Counts(primary=3, secondary=0, tombstones=0),
        next_id=3,
        files_indexed=2,
        skipped=[SkippedFile(path="big.bin", reason="too large", size=1 << 21)],
        timings={"embed": 1.5},
    )
    return msgspec.structs.replace(manifest, **changes)


def build(store: Store, parent: Generation | None = None, first_id: int = 0) -> Generation:
    """A small but complete generation: primary index bytes, chunks db, one vector segment."""
    ids = np.arange(first_id, first_id + 3, dtype=np.int64)
    with store.lock(), store.begin(parent) as writer:
        if parent is None:
            (writer.path / PRIMARY).write_bytes(os.urandom(4096))
            db = ChunkDB.create(writer.path / CHUNKS_DB)
        else:
            writer.link_from_parent(PRIMARY)
            writer.link_from_parent(VECTORS_DIR)
            parent.chunks().copy_to(writer.path / CHUNKS_DB)
            db = ChunkDB.open(writer.path / CHUNKS_DB, readonly=False)
            (writer.path / SECONDARY).write_bytes(b"secondary index bytes")
        db.add(
            Chunk(int(i), f"f{i}.py", 1, 2, "python", "", f"h{i}", f"def f{i}(): pass") for i in ids
        )
        db.close()
        xb = np.random.default_rng(first_id).standard_normal((3, DIM)).astype(np.float32)
        VectorStore.write_segment(writer.path / VECTORS_DIR, writer.name, ids, xb)
        writer.write_tombstones(np.array([first_id - 1]) if parent else np.array([], np.int64))
        base = parent.manifest.base_generation if parent else ""
        return writer.publish(make_manifest(next_id=first_id + 3, base_generation=base))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


class TestManifest:
    def test_round_trip(self) -> None:
        manifest = make_manifest(generation="g000001", checksums={"a": "sha256:00"})
        assert decode_manifest(encode_manifest(manifest)) == manifest

    def test_is_readable_json_with_versions(self) -> None:
        text = encode_manifest(make_manifest()).decode()
        assert text.startswith("{\n")
        assert f'"format_version": {FORMAT_VERSION}' in text

    @pytest.mark.parametrize(
        "data", [b"{not json", b"", b'{"format_version": 1}', b"[1, 2]", b'{"format_version": "1"}']
    )
    def test_corrupt_manifest_is_refused(self, data: bytes) -> None:
        with pytest.raises(errors.IndexFormatError, match="corrupt manifest"):
            decode_manifest(data)

    def test_newer_format_is_refused_naming_both_versions(self) -> None:
        newer = b'{"format_version": 120, "min_reader_version": 99, "whatever": "changed"}'
        with pytest.raises(errors.IndexFormatError) as info:
            decode_manifest(newer, source="g000001/manifest.json")
        message = str(info.value)
        assert "99" in message
        assert f"reads format version {FORMAT_VERSION}" in message
        assert "upgrade codeintel" in message

    def test_newer_writer_readable_by_us_is_accepted(self) -> None:
        raw = msgspec.json.decode(encode_manifest(make_manifest()))
        raw.update(format_version=FORMAT_VERSION + 1, new_optional_field=[1, 2])
        manifest = decode_manifest(msgspec.json.encode(raw))
        assert manifest.format_version == FORMAT_VERSION + 1


class TestPublish:
    def test_publish_points_current_at_the_new_generation(self, store: Store) -> None:
        assert store.current_name() is None
        generation = build(store)
        assert store.current_name() == "g000001"
        assert (store.root / CURRENT).read_text() == "g000001\n"
        current = store.current()
        assert current.name == "g000001"
        assert current.manifest.generation == "g000001"
        assert current.manifest.parent is None
        assert current.manifest.base_generation == "g000001"
        assert current.manifest.created_at
        assert current.manifest == generation.manifest

    def test_checksums_cover_every_file_but_the_manifest(self, store: Store) -> None:
        manifest = build(store).manifest
        assert set(manifest.checksums) == {
            PRIMARY,
            CHUNKS_DB,
            "tombstones.npy",
            "vectors/g000001.ids.npy",
            "vectors/g000001.f16.npy",
        }
        assert all(v.startswith("sha256:") and len(v) == 71 for v in manifest.checksums.values())
        assert sorted(p.name for p in store.generations_dir.iterdir()) == ["g000001"]

    def test_child_links_parent_files_and_records_lineage(self, store: Store) -> None:
        parent = build(store)
        child = build(store, parent, first_id=3)
        assert child.name == "g000002"
        assert child.manifest.parent == "g000001"
        assert child.manifest.base_generation == "g000001"
        assert os.path.samefile(parent.primary_path, child.primary_path)
        assert child.manifest.checksums[PRIMARY] == parent.manifest.checksums[PRIMARY]
        segments = sorted(p.name for p in (child.path / "vectors").glob("*.ids.npy"))
        assert segments == ["g000001.ids.npy", "g000002.ids.npy"]
        assert child.vectors().ids().tolist() == list(range(6))
        with child.chunks() as db:
            assert db.count() == 6
        assert child.tombstones().tolist() == [2]
        assert parent.tombstones().tolist() == []
        store.open_generation("g000001")  # the parent still verifies: nothing was modified

    def test_link_falls_back_to_copy_across_devices(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        parent = build(store)

        def no_link(src: object, dst: object) -> None:
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        monkeypatch.setattr(writer_mod.os, "link", no_link)
        with store.begin(parent) as writer:
            writer.link_from_parent(PRIMARY)
            copied = writer.path / PRIMARY
            assert not os.path.samefile(copied, parent.primary_path)
            assert copied.read_bytes() == parent.primary_path.read_bytes()
            child = writer.publish(make_manifest())
        assert child.manifest.checksums[PRIMARY] == parent.manifest.checksums[PRIMARY]

    def test_link_from_parent_refuses_bad_requests(self, store: Store) -> None:
        with store.begin(None) as writer, pytest.raises(ValueError, match="no parent"):
            writer.link_from_parent(PRIMARY)
        parent = build(store)
        with store.begin(parent) as writer:
            with pytest.raises(errors.IndexFormatError, match="has no secondary"):
                writer.link_from_parent(SECONDARY)
            with pytest.raises(errors.IndexFormatError, match="bad relative path"):
                writer.link_from_parent("../CURRENT")

    def test_tombstones_are_sorted_unique_int64(self, store: Store) -> None:
        with store.begin(None) as writer:
            writer.write_tombstones(np.array([9, 2, 9, 5], dtype=np.int32))
            generation = writer.publish(make_manifest())
        tombstones = generation.tombstones()
        assert tombstones.dtype == np.int64
        assert tombstones.tolist() == [2, 5, 9]

    def test_names_count_up_past_gaps_and_ignore_temp_dirs(self, store: Store) -> None:
        build(store)
        (store.generations_dir / "g000007").mkdir()
        (store.generations_dir / ".tmp-g000009-1-abc").mkdir()
        with store.begin(None) as writer:
            assert writer.name == "g000008"
            assert writer.path.name.startswith(".tmp-g000008-")
            writer.abort()

    def test_publishing_twice_is_an_error(self, store: Store) -> None:
        with store.begin(None) as writer:
            writer.publish(make_manifest())
            with pytest.raises(RuntimeError, match="already published"):
                writer.publish(make_manifest())


class TestCrashSafety:
    def test_exception_inside_the_writer_leaves_current_and_no_temp_dir(self, store: Store) -> None:
        build(store)

        def failing_build() -> None:
            with store.begin(None) as writer:
                (writer.path / PRIMARY).write_bytes(b"half")
                raise RuntimeError("embedder died")

        with pytest.raises(RuntimeError, match="embedder died"):
            failing_build()
        assert store.current_name() == "g000001"
        assert sorted(p.name for p in store.generations_dir.iterdir()) == ["g000001"]

    def test_leaving_without_publishing_discards_the_build(self, store: Store) -> None:
        with store.begin(None) as writer:
            (writer.path / PRIMARY).write_bytes(b"x")
        assert list(store.generations_dir.iterdir()) == []
        assert store.current_name() is None

    @pytest.mark.parametrize("crash_at", ["hash", "manifest", "rename", "current"])
    def test_crash_at_any_step_before_the_swap_keeps_the_old_generation(
        self, store: Store, monkeypatch: pytest.MonkeyPatch, crash_at: str
    ) -> None:
        parent = build(store)
        real_replace, real_rename = os.replace, os.rename

        def boom(*args: object, **kwargs: object) -> None:
            raise OSError(errno.EIO, "simulated crash")

        def replace(src: str | Path, dst: str | Path) -> None:
            name = Path(dst).name
            if (crash_at, name) in {("manifest", MANIFEST), ("current", CURRENT)}:
                boom()
            real_replace(src, dst)

        def rename(src: str | Path, dst: str | Path) -> None:
            if crash_at == "rename" and Path(dst).parent == store.generations_dir:
                boom()
            real_rename(src, dst)

        if crash_at == "hash":
            monkeypatch.setattr(writer_mod.files, "file_checksum", boom)
        monkeypatch.setattr(writer_mod.os, "replace", replace)
        monkeypatch.setattr(writer_mod.os, "rename", rename)
        with pytest.raises((OSError, errors.IndexFormatError)):
            build(store, parent, first_id=3)
        monkeypatch.undo()
        assert not [p for p in store.generations_dir.iterdir() if p.name.startswith(".tmp-")]
        assert store.current_name() == "g000001"
        assert store.current().manifest == parent.manifest


class TestVerification:
    def test_flipped_byte_is_refused_naming_the_file(self, store: Store) -> None:
        generation = build(store)
        flip_byte(generation.path / "vectors" / "g000001.f16.npy")
        with pytest.raises(errors.IndexFormatError, match=r"vectors/g000001\.f16\.npy"):
            store.current()
        store.open_generation("g000001", verify=False)  # skipping verification still opens

    def test_missing_file_is_refused_naming_it(self, store: Store) -> None:
        generation = build(store)
        generation.primary_path.unlink()
        with pytest.raises(errors.IndexFormatError, match=r"missing primary\.faiss"):
            Generation(generation.path)

    def test_too_new_manifest_is_refused(self, store: Store) -> None:
        generation = build(store)
        raw = msgspec.json.decode((generation.path / MANIFEST).read_bytes())
        raw["min_reader_version"] = 99
        (generation.path / MANIFEST).write_bytes(msgspec.json.encode(raw))
        with pytest.raises(errors.IndexFormatError, match="99 or newer"):
            store.current()

    def test_corrupt_manifest_is_refused(self, store: Store) -> None:
        generation = build(store)
        (generation.path / MANIFEST).write_text('{"format_version": 1, "min_reader')
        with pytest.raises(errors.IndexFormatError, match="corrupt manifest"):
            store.current()

    def test_manifest_of_another_generation_is_refused(self, store: Store) -> None:
        generation = build(store)
        moved = generation.path.with_name("g000002")
        generation.path.rename(moved)
        with pytest.raises(errors.IndexFormatError, match="names generation 'g000001'"):
            Generation(moved)

    def test_empty_store_has_no_generation(self, store: Store) -> None:
        with pytest.raises(errors.NoGenerationError, match="no published generation"):
            store.current()
        assert store.list_generations() == []

    def test_bad_current_or_unknown_generation(self, store: Store) -> None:
        build(store)
        with pytest.raises(errors.IndexFormatError, match="not found"):
            store.open_generation("g000005")
        (store.root / CURRENT).write_text("../etc\n")
        with pytest.raises(errors.IndexFormatError, match="names no generation"):
            store.current()


class TestGarbageCollection:
    def test_keeps_the_last_n(self, store: Store) -> None:
        for i in range(5):
            build(store, first_id=3 * i)
        assert store.gc(keep=2, grace_seconds=0) == ["g000001", "g000002", "g000003"]
        assert store.list_generations() == ["g000004", "g000005"]
        assert store.current().name == "g000005"
        assert [p.name for p in store.generations_dir.iterdir() if p.name.startswith(".")] == []

    def test_never_deletes_current(self, store: Store) -> None:
        for i in range(4):
            build(store, first_id=3 * i)
        (store.root / CURRENT).write_text("g000001\n")  # rolled back by hand
        assert store.gc(keep=1, grace_seconds=0) == ["g000002", "g000003"]
        assert store.list_generations() == ["g000001", "g000004"]

    def test_respects_the_grace_after_a_successor_went_live(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for i in range(3):
            build(store, first_id=3 * i)
        assert store.gc(keep=1, grace_seconds=60) == []
        later = time.time() + 120
        monkeypatch.setattr(root_mod.time, "time", lambda: later)
        assert store.gc(keep=1, grace_seconds=60) == ["g000001", "g000002"]

    def test_removes_stale_temp_dirs_but_not_live_builds(self, store: Store) -> None:
        build(store)
        stale = store.generations_dir / ".tmp-g000002-4242-abcdef"
        (stale / "vectors").mkdir(parents=True)
        (stale / "vectors" / "x.npy").write_bytes(b"x")
        old = time.time() - 3600
        for path in (stale / "vectors" / "x.npy", stale / "vectors", stale):
            os.utime(path, (old, old))
        fresh = store.generations_dir / ".tmp-g000003-4243-abcdef"
        fresh.mkdir()
        with store.begin(None) as writer:
            store.gc(keep=1, grace_seconds=600)
            assert not stale.exists()
            assert fresh.exists()
            store.gc(keep=1, grace_seconds=0)
            assert writer.path.exists()  # this process's own open writer
            assert not fresh.exists()
            writer.abort()

    def test_negative_keep_is_refused(self, store: Store) -> None:
        with pytest.raises(ValueError, match="keep"):
            store.gc(keep=-1, grace_seconds=0)


class TestLock:
    def test_second_writer_is_refused(self, store: Store) -> None:
        with (
            store.lock(),
            pytest.raises(errors.ConfigError, match="locked by another writer"),
            store.lock(),
        ):
            pass
        with store.lock():  # released
            pass

    def test_waits_up_to_the_timeout(self, store: Store) -> None:
        held = threading.Event()
        events: list[str] = []

        def hold_briefly() -> None:
            with store.lock():
                held.set()
                time.sleep(0.3)
                events.append("released")

        thread = threading.Thread(target=hold_briefly)
        thread.start()
        assert held.wait(5)
        started = time.monotonic()
        with store.lock(timeout=5):
            events.append("acquired")
            waited = time.monotonic() - started
        thread.join()

        assert events == ["released", "acquired"]
        assert 0.2 <= waited < 5

    def test_another_process_holding_the_lock_is_named(self, store: Store) -> None:
        with store.lock():
            pass  # creates the lock file
        script = (
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, b'pid %d on test' % os.getpid())\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", script, str(store.root / ".lock")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "locked"
            with (
                pytest.raises(errors.ConfigError, match=f"pid {proc.pid} on test"),
                store.lock(timeout=0.1),
            ):
                pass
        finally:
            proc.communicate("", timeout=10)
        with store.lock():
            pass


def three_generations(store: Store) -> list[Generation]:
    g1 = build(store)
    g2 = build(store, g1, first_id=3)
    return [g1, g2, build(store, g2, first_id=6)]


class TestRollback:
    def test_points_current_at_the_newest_intact_older_generation(self, store: Store) -> None:
        _, g2, g3 = three_generations(store)
        flip_byte(g3.path / CHUNKS_DB)
        previous, target = store.rollback()
        assert (previous, target.name) == ("g000003", "g000002")
        assert (store.root / CURRENT).read_text() == "g000002\n"
        assert store.current().manifest == g2.manifest

    def test_skips_damaged_and_too_new_candidates(self, store: Store) -> None:
        g2 = three_generations(store)[1]
        raw = msgspec.json.decode((g2.path / MANIFEST).read_bytes())
        raw["min_reader_version"] = FORMAT_VERSION + 1
        (g2.path / MANIFEST).write_bytes(msgspec.json.encode(raw))
        previous, target = store.rollback()
        assert (previous, target.name) == ("g000003", "g000001")
        assert store.current_name() == "g000001"

    def test_to_a_named_generation_verifies_it_first(self, store: Store) -> None:
        g1 = three_generations(store)[0]
        flip_byte(g1.path / CHUNKS_DB)
        with pytest.raises(errors.IndexFormatError, match=r"g000001: chunks\.sqlite"):
            store.rollback("g000001")
        assert store.current_name() == "g000003", "a refused rollback leaves CURRENT alone"
        assert store.rollback("g000002")[1].name == "g000002"
        with pytest.raises(errors.IndexFormatError, match="not found"):
            store.rollback("g000009")

    def test_no_intact_older_generation_is_a_clear_error(self, store: Store) -> None:
        g1, g2, _ = three_generations(store)
        flip_byte(g1.path / PRIMARY)
        (g2.path / MANIFEST).write_text("{broken")
        with pytest.raises(errors.IndexFormatError) as info:
            store.rollback()
        message = str(info.value)
        assert "no intact generation older than g000003" in message
        assert "primary.faiss" in message and "corrupt manifest" in message
        assert store.current_name() == "g000003"

    def test_garbage_current_rolls_to_the_newest_intact_generation(self, store: Store) -> None:
        three_generations(store)
        (store.root / CURRENT).write_text("\x00garbage\n")
        previous, target = store.rollback()
        assert (previous, target.name) == (None, "g000003")
        assert store.current_name() == "g000003"

    def test_takes_the_writer_lock(self, store: Store) -> None:
        three_generations(store)
        with store.lock(), pytest.raises(errors.ConfigError, match="locked by another writer"):
            Store(store.root).rollback()
        assert store.current_name() == "g000003"

    def test_next_id_survives_an_unreadable_generation(self, store: Store) -> None:
        g3 = three_generations(store)[2]
        raw = msgspec.json.decode((g3.path / MANIFEST).read_bytes())
        raw.update(format_version=FORMAT_VERSION + 1, min_reader_version=FORMAT_VERSION + 1)
        (g3.path / MANIFEST).write_bytes(msgspec.json.encode(raw))
        with pytest.raises(errors.IndexFormatError):
            store.current()
        assert store.max_next_id() == 9
        (g3.path / MANIFEST).write_text("{broken")
        assert store.max_next_id() == 6


class TestStorePath:
    def test_a_file_is_refused_in_one_line(self, tmp_path: Path) -> None:
        path = tmp_path / "notes.txt"
        path.write_text("not a store")
        with pytest.raises(errors.ConfigError, match=r"notes\.txt is not a directory$"):
            Store(path)
        with pytest.raises(errors.ConfigError, match=r"notes\.txt is a file\)"):
            Store(path / "store")
        Store(tmp_path / "new" / "store")  # a path that does not exist yet is fine


class TestPermissions:
    def test_published_files_are_readable_by_other_users_whatever_the_umask(
        self, store: Store
    ) -> None:
        old = os.umask(0o077)
        try:
            g1 = build(store)
            g2 = build(store, g1, first_id=3)
        finally:
            os.umask(old)
        paths = [store.root / CURRENT, store.generations_dir]
        for gen in (g1, g2):
            paths += [gen.path, *gen.path.rglob("*")]
        for path in paths:
            mode = path.stat().st_mode & 0o777
            wanted = 0o555 if path.is_dir() else 0o444
            assert mode & wanted == wanted, f"{path} is {oct(mode)}"
