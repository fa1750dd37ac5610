"""What the built images hold: user, no build leftovers, the operator's few packages,
and the GPU indexer's FAISS, which falls back to the CPU on a machine without a GPU.

Runs only with the images built (``make e2e-images``, ``make e2e-images-gpu``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from image_kubelet import buildah
from images_shared import (
    INDEXER,
    INDEXER_GPU,
    MODEL,
    OPERATOR,
    QUERY,
    SEARCHER,
    need_images,
    only_with_images,
    run_in_image,
)

pytestmark = [pytest.mark.slow, only_with_images]


def test_images_run_as_uid_10001_without_compilers_or_caches() -> None:
    need_images(OPERATOR, INDEXER, SEARCHER)
    for image in (OPERATOR, INDEXER, SEARCHER):
        config = json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]["config"]
        assert config["User"] == "10001:10001", image
        probe = run_in_image(
            image,
            "sh",
            "-c",
            "id -u; for c in gcc cc c++ make pip pip3; do command -v $c; done; true",
        )
        assert probe.split() == ["10001"], f"{image}: {probe}"
        caches = run_in_image(
            image,
            "sh",
            "-c",
            "find /root/.cache /var/lib/apt/lists /var/cache/apt /src /wheels -type f"
            " -not -name lock 2>/dev/null || true",
            user="0:0",
        )
        assert caches.split() == [], f"{image} keeps build leftovers: {caches}"


def test_operator_image_holds_only_what_the_operator_imports() -> None:
    need_images(OPERATOR)
    out = run_in_image(
        OPERATOR,
        "python3",
        "-c",
        "import importlib.util as u, codeintel.operator, codeintel.cli;"
        " print([m for m in ('faiss', 'numpy', 'torch', 'git', 'fastapi', 'kubernetes')"
        " if u.find_spec(m)])",
    )
    assert out.strip() == "[]"
    assert "--standalone" in run_in_image(OPERATOR, "codeintel", "operator", "--help")


GPU_PROBE = """
import json
from importlib import metadata

import faiss
import numpy as np

xb = np.random.default_rng(0).random((4000, 32), dtype="float32")
index = faiss.index_factory(32, "IVF32,Flat")
index.train(xb)
index.add(xb)
index.nprobe = 32
D, I = index.search(xb[:5], 1)
print(json.dumps({
    "gpu_classes": [c for c in ("StandardGpuResources", "GpuIndexFlatIP", "index_cpu_to_gpu")
                    if hasattr(faiss, c)],
    "gpus": faiss.get_num_gpus(),
    "self_hits": I[:, 0].tolist(),
    "faiss_dists": sorted(d.metadata["Name"] for d in metadata.distributions()
                          if d.metadata["Name"].startswith("faiss")),
}))
"""


def test_gpu_image_has_the_gpu_build_and_falls_back_to_cpu(
    sample_repo: Any, git_host: str, host_embed_server: str, tmp_path: Path
) -> None:
    need_images(INDEXER_GPU)
    found = json.loads(run_in_image(INDEXER_GPU, "python3", "-c", GPU_PROBE))
    assert found["gpu_classes"] == ["StandardGpuResources", "GpuIndexFlatIP", "index_cpu_to_gpu"]
    assert found["gpus"] == 0  # no GPU here: faiss says so, and IVF trains and searches on CPU
    assert found["self_hits"] == [0, 1, 2, 3, 4]
    assert found["faiss_dists"] == ["faiss-gpu"]  # no faiss-cpu beside it

    server = {
        "CODEINTEL_EMBEDDER_URL": host_embed_server,
        "CODEINTEL_EMBEDDER_MODEL": MODEL,
        "CODEINTEL_EMBEDDER_DIM": "384",
    }
    doctor = json.loads(run_in_image(INDEXER_GPU, "codeintel", "doctor", "--json", env=server))
    assert doctor["ok"], doctor
    assert doctor["faiss"]["gpus"] == 0 and doctor["faiss"]["path"] == "cpu"
    assert doctor["faiss"]["build"] == "gpu"  # the GPU wheel, running its CPU fallback
    assert doctor["embedder"]["kind"] == "openai" and doctor["embedder"]["dim"] == 384
    assert doctor["git"]["ok"]

    # The indexer's own build and search, in the GPU image, on this GPU-less machine.
    store = tmp_path / "store"
    store.mkdir()
    os.chown(store, 10001, 10001)
    embedder = ["--embedder", "openai", "--embed-url", host_embed_server]
    embedder += ["--embed-model", MODEL, "--embed-dim", "384"]
    volumes = {store: "/store"}
    run_in_image(
        INDEXER_GPU,
        "codeintel",
        "index",
        "build",
        git_host,
        "--store",
        "/store",
        *embedder,
        volumes=volumes,
    )
    answer = json.loads(
        run_in_image(
            INDEXER_GPU,
            "codeintel",
            "search",
            QUERY,
            "--store",
            "/store",
            "-k",
            "3",
            "--json",
            *embedder,
            volumes=volumes,
        )
    )
    assert answer and answer[0]["path"].startswith("mail/"), answer
