"""The background scrub: damage that keeps a file's size and mtime is still found.

Sizes and mtimes are compared on every poll, checksums at load; bit rot (or a
backup restored with its old mtime) changes neither, so only re-reading the
bytes finds it. A real store, a real server, a file rewritten in place with
its size and mtime kept, and no request touching it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fleet_helpers import REPOS, build, fleet_settings
from fleet_helpers import make_repo as make_fleet_repo
from searcher_helpers import (
    Served,
    build_store,
    make_repo,
    metric,
    serving,
    settings_for,
    until,
)

from codeintel.core.settings import Settings
from codeintel.searcher import create_app, scrubbing

pytestmark = pytest.mark.slow


def rot(path: Path) -> None:
    """Flip one byte in the middle of ``path``, keeping its size and mtime (bit rot)."""
    st = path.stat()
    with path.open("r+b") as f:
        f.seek(st.st_size // 2)
        byte = f.read(1)
        f.seek(st.st_size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)


def own_file(gen: Path, parent: Path) -> Path:
    """A FAISS or vector file of ``gen`` that is not a hard link to one of ``parent``'s."""
    shared = {p.stat().st_ino for p in parent.rglob("*") if p.is_file()}
    for path in sorted(gen.rglob("*")):
        if (
            path.suffix in {".faiss", ".npy"}
            and path.stat().st_size
            and (path.stat().st_ino not in shared)
        ):
            return path
    raise AssertionError(f"no file of its own in {gen}")


def test_rot_in_the_live_generation_falls_back_to_the_intact_one(
    two_generation_store: tuple[Path, Settings], local_embedder: Any
) -> None:
    root, settings = two_generation_store
    assert settings.server.scrub_mb_per_second > 0, "on by default"
    with Served(create_app(settings, embedder=local_embedder)) as served:
        assert served.wait_ready()["generation"] == "g000002"
        victim = own_file(root / "generations" / "g000002", root / "generations" / "g000001")
        rot(victim)
        until(lambda: serving(served.url)["generation"] == "g000001", "the rot was never found")
        info = serving(served.url)
        assert info["fallback"] is True and info["current"] == "g000002"
        assert "g000002 was damaged while served" in info["reason"]
        assert "checksum mismatch" in info["reason"] and victim.name in info["reason"]
        assert metric(served.url, 'codeintel_generation_loads_total{result="damaged"}') == 1
        assert metric(served.url, 'codeintel_generation_loads_total{result="fallback"}') == 1
        series = 'codeintel_generation_corruptions_total{generation="g000002"}'
        assert metric(served.url, series) == 1
        r = httpx.post(f"{served.url}/v1/semantic_search", json={"query": "invoice"})
        assert r.status_code == 200 and r.json()["generation"] == "g000001", r.text


def test_rot_in_the_only_generation_is_a_503_naming_it(tmp_path: Path, local_embedder: Any) -> None:
    build_store(make_repo(tmp_path / "repo"), tmp_path / "store", local_embedder)
    settings = settings_for(tmp_path / "store", scrub_mb_per_second=50.0)
    with Served(create_app(settings, embedder=local_embedder)) as served:
        served.wait_ready()
        rot(tmp_path / "store" / "generations" / "g000001" / "primary.faiss")
        ready = until(
            lambda: (r := httpx.get(f"{served.url}/readyz")).status_code == 503 and r,
            "rot in the only generation was never found",
        )
        reason = ready.json()["error"]["message"]
        assert "g000001 was damaged while served" in reason
        assert "checksum mismatch" in reason and "primary.faiss" in reason
        r = httpx.post(f"{served.url}/v1/list_paths", json={})
        assert r.status_code == 503 and "no intact" in r.json()["error"]["message"]


def test_a_fleet_scrubs_its_loaded_stores(tmp_path: Path, local_embedder: Any) -> None:
    """``serve --stores-root``: one scrub over every loaded store; the damaged store is
    refused, the others keep answering."""
    for name in REPOS:
        build(tmp_path / "stores", name, make_fleet_repo(tmp_path / name.replace("/", "-"), REPOS[name]),
              local_embedder)  # fmt: skip
    settings = fleet_settings(tmp_path / "stores").replace(server={"scrub_mb_per_second": 50.0})
    damaged, *intact = sorted(REPOS)
    with Served(create_app(settings, embedder=local_embedder)) as served:
        served.wait_ready()
        r = httpx.post(f"{served.url}/v1/list_paths", json={"repos": ["*"]})
        assert r.status_code == 200 and set(r.json()["repos"]) == set(REPOS), r.text
        rot(tmp_path / "stores" / damaged / "generations" / "g000001" / "primary.faiss")

        def refused() -> httpx.Response | None:
            r = httpx.post(f"{served.url}/v1/list_paths", json={"repos": [damaged]})
            return r if r.status_code == 503 else None

        message = until(refused, "the fleet never found the rot").json()["error"]["message"]
        assert "g000001 was damaged while served" in message and "checksum mismatch" in message
        for name in intact:
            r = httpx.post(f"{served.url}/v1/list_paths", json={"repos": [name]})
            assert r.status_code == 200, r.text


def test_off_means_the_rot_is_served_until_the_next_load(
    two_generation_store: tuple[Path, Settings], local_embedder: Any
) -> None:
    """The setting is real: with the scrub off, nothing else notices (the reason it exists)."""
    root, _ = two_generation_store
    settings = settings_for(root, scrub_mb_per_second=0.0)
    with Served(create_app(settings, embedder=local_embedder)) as served:
        served.wait_ready()
        rot(own_file(root / "generations" / "g000002", root / "generations" / "g000001"))
        for _ in range(10):  # ten polls at 0.2 s
            assert serving(served.url)["generation"] == "g000002"
            time.sleep(0.2)


async def test_the_pacer_never_reads_faster_than_its_rate(monkeypatch) -> None:
    """On a fake clock: 10 MB at 4 MB/s asks for 2.5 s of sleep, idle time is no credit."""
    clock = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(scrubbing.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(scrubbing.asyncio, "sleep", sleep)
    pacer = scrubbing.Pacer(4e6)
    for _ in range(10):
        await pacer.spend(1_000_000)
    assert sum(slept) == pytest.approx(2.5)
    clock[0] += 60  # a minute idle
    slept.clear()
    for _ in range(4):
        await pacer.spend(1_000_000)
    assert sum(slept) == pytest.approx(1.0)
