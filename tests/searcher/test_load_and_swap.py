"""Concurrency and hot swap: many requests at once, a new generation under load, refused generations."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from searcher_helpers import Repo, Served, build_store, make_repo

from codeintel.core import store as store_mod
from codeintel.indexer import pipeline
from codeintel.searcher import create_app

pytestmark = pytest.mark.slow

MIX: list[tuple[str, dict[str, Any]]] = [
    ("semantic_search", {"query": "parse an invoice", "k": 5}),
    ("semantic_search", {"query": "SMTP relay", "k": 5, "mode": "hybrid"}),
    ("search_text", {"pattern": "def "}),
    ("list_paths", {}),
    ("blame_range", {"path": "mail/sender.py", "start_line": 1, "end_line": 5}),
    ("file_history", {"path": "mail/sender.py", "limit": 5}),
]


async def test_200_concurrent_requests_all_succeed(client: httpx.AsyncClient) -> None:
    calls = [MIX[i % len(MIX)] for i in range(200)]
    responses = await asyncio.gather(
        *(client.post(f"/v1/{tool}", json=body) for tool, body in calls)
    )
    assert [r.status_code for r in responses] == [200] * 200


async def test_new_generation_under_load(tmp_path: Path, local_embedder: Any) -> None:
    repo = make_repo(tmp_path / "repo")
    settings = build_store(repo, tmp_path / "store", local_embedder)
    old_commit = repo.git("rev-parse", "HEAD")
    with Served(create_app(settings, embedder=local_embedder)) as served:
        served.wait_ready()
        failures: list[str] = []
        commits: list[str] = []
        stop = asyncio.Event()

        async def hammer(c: httpx.AsyncClient, worker: int) -> None:
            i = worker
            while not stop.is_set():
                tool, body = MIX[i % len(MIX)]
                i += 1
                r = await c.post(f"/v1/{tool}", json=body)
                if r.status_code != 200:
                    failures.append(f"{tool} {r.status_code} {r.text}")
                else:
                    commits.append(r.json()["commit"])

        async with httpx.AsyncClient(base_url=served.url, timeout=60) as c:
            workers = [asyncio.create_task(hammer(c, w)) for w in range(16)]
            await asyncio.sleep(0.5)
            new_commit = repo.commit(
                "add refunds", {"billing/refund.py": "def refund_invoice(x):\n    return -x\n"}
            )
            await asyncio.to_thread(pipeline.update, settings, local_embedder)
            deadline = time.monotonic() + 30
            while (await c.get("/readyz")).json()["commit"] != new_commit:
                assert time.monotonic() < deadline, "the new generation never went live"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*workers)
            assert failures == []
            assert commits[0] == old_commit
            assert commits[-1] == new_commit
            assert set(commits) == {old_commit, new_commit}
            r = await c.post("/v1/search_text", json={"pattern": "refund_invoice"})
            assert r.json()["results"][0]["path"] == "billing/refund.py"
            assert r.json()["generation"] == "g000002"


def _clone_generation(store_root: Path, src: str, dst: str, **changes: Any) -> Path:
    """Copy a published generation under a new name, editing its manifest."""
    gens = store_root / "generations"
    shutil.copytree(gens / src, gens / dst)
    manifest = msgspec.json.decode((gens / dst / "manifest.json").read_bytes())
    manifest.update(generation=dst, **changes)
    (gens / dst / "manifest.json").write_bytes(msgspec.json.encode(manifest))
    return gens / dst


def _publish(store_root: Path, name: str) -> None:
    (store_root / "CURRENT.tmp").write_text(name + "\n")
    (store_root / "CURRENT.tmp").replace(store_root / "CURRENT")


@pytest.mark.parametrize("fault", ["newer_format", "bad_checksum"])
def test_refused_generation_keeps_the_old_one(
    tmp_path: Path, local_embedder: Any, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    repo: Repo = make_repo(tmp_path / "repo")
    settings = build_store(repo, tmp_path / "store", local_embedder)
    root = tmp_path / "store"
    if fault == "newer_format":
        _clone_generation(
            root,
            "g000001",
            "g000002",
            format_version=store_mod.FORMAT_VERSION + 1,
            min_reader_version=store_mod.FORMAT_VERSION + 1,
        )
    else:
        gen = _clone_generation(root, "g000001", "g000002")
        db = gen / "chunks.sqlite"
        db.write_bytes(db.read_bytes()[:-1] + b"\x01")
    with Served(create_app(settings, embedder=local_embedder)) as served:
        served.wait_ready()
        _publish(root, "g000002")
        result = "refused_format" if fault == "newer_format" else "damaged"  # issue 22
        metric = f'codeintel_generation_loads_total{{result="{result}"}} 1.0'
        deadline = time.monotonic() + 20
        while metric not in httpx.get(f"{served.url}/metrics").text:
            assert time.monotonic() < deadline, "the refusal was never counted"
            time.sleep(0.05)
        assert httpx.get(f"{served.url}/readyz").json()["generation"] == "g000001"
        r = httpx.post(f"{served.url}/v1/list_paths", json={})
        assert r.status_code == 200
        assert r.json()["generation"] == "g000001"
    assert any("refused generation g000002" in rec.getMessage() for rec in caplog.records)
