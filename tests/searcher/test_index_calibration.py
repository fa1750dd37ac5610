"""What the build measured to choose the index is shown by /v1/index and list_repos,
and stores written before it was recorded still load (tests/core/test_backward_compat.py
checks that they answer)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from fleet_helpers import build, fleet_settings, make_repo
from searcher_helpers import Served

from codeintel.core.settings import Settings
from codeintel.core.store import Store
from codeintel.searcher import create_app, rows, tools

pytestmark = pytest.mark.slow

V1 = Path(__file__).resolve().parents[1] / "fixtures" / "store-v1"


def _check_row(row: dict[str, Any], calibration: dict[str, Any] | None) -> None:
    assert row["calibration"] == calibration
    rows.RepoInfo.model_validate(row)  # the declared list_repos schema holds


async def test_single_store(client: httpx.AsyncClient, store_settings: Settings) -> None:
    recorded = Store(store_settings.store.path).current().manifest.index.calibration
    assert recorded is not None
    manifest = (await client.get("/v1/index")).json()
    cal = manifest["index"]["calibration"]
    assert cal["flat_ms"] == recorded.flat_ms > 0
    assert cal["budget_ms"] == store_settings.index.exact_budget_ms
    assert manifest["index"]["type"] == "flat" and cal["nprobe"] == 0
    assert cal["recall_at_10"] is None  # exact: nothing to calibrate
    rows = (await client.post("/v1/list_repos", json={})).json()["results"]
    _check_row(rows[0], cal)


def test_a_v1_manifest_has_no_calibration(tmp_path: Path) -> None:
    shutil.copytree(V1, tmp_path / "store")
    m = Store(tmp_path / "store").current().manifest
    assert m.format_version == 1 and m.index.calibration is None
    assert msgspec.to_builtins(m)["index"]["calibration"] is None  # the /v1/index body
    _check_row(tools.repo_info("old/v1", m), None)


def test_fleet_rows_and_index(tmp_path: Path, local_embedder: Any) -> None:
    root = tmp_path / "stores"
    repo = make_repo(tmp_path / "src", {"a.py": 'def f():\n    """Add two numbers."""\n'})
    built = build(root, "new/one", repo, local_embedder)
    shutil.copytree(V1, root / "old" / "v1")
    recorded = Store(built.store.path).current().manifest.index.calibration
    assert recorded is not None
    app = create_app(fleet_settings(root), embedder=local_embedder)
    with Served(app) as served:
        served.wait_ready()
        rows = httpx.post(f"{served.url}/v1/list_repos", json={}, timeout=60).json()["results"]
        index = httpx.get(f"{served.url}/v1/index", timeout=60).json()["repos"]
    by_name = {r["name"]: r for r in rows}
    _check_row(by_name["old/v1"], None)
    _check_row(by_name["new/one"], by_name["new/one"]["calibration"])
    assert by_name["new/one"]["calibration"]["flat_ms"] == recorded.flat_ms
    assert {r["name"]: r["calibration"] for r in index} == {
        "new/one": by_name["new/one"]["calibration"],
        "old/v1": None,
    }
