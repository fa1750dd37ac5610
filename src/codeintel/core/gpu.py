"""Guarded GPU detection, shared by the indexer (training) and the searcher.

The same code runs on a laptop with ``faiss-cpu`` and in an indexer pod with
``faiss-gpu`` or ``faiss-gpu-cuvs``. Every question about GPUs goes through
here so that no caller touches a GPU symbol that the installed build lacks:
each function answers from what the build exposes and never raises, so a
broken driver or a CPU-only wheel degrades to the CPU path instead of failing
a build. ``codeintel doctor`` prints :func:`describe`.
"""

from __future__ import annotations

import importlib.util
import logging

import faiss

logger = logging.getLogger(__name__)


def gpu_count() -> int:
    """GPUs faiss can use: ``faiss.get_num_gpus()`` when the build has it, else 0."""
    get_num_gpus = getattr(faiss, "get_num_gpus", None)
    if get_num_gpus is None:
        return 0
    try:
        return max(0, int(get_num_gpus()))
    except Exception:  # a CUDA runtime that fails to initialise counts as no GPU
        logger.warning("faiss.get_num_gpus() failed; assuming no GPU", exc_info=True)
        return 0


def cuvs_available() -> bool:
    """Whether the faiss build was compiled with NVIDIA cuVS (whatever ``USE_CUVS`` says)."""
    try:
        if importlib.util.find_spec("faiss._cuvs_build") is not None:
            return True
    except (ImportError, ValueError):
        pass
    try:
        options = str(faiss.get_compile_options())
    except Exception:
        return False
    # Older builds called the same integration RAFT.
    return "CUVS" in options or "RAFT" in options


def use_cuvs(wanted: bool = True) -> bool:
    """cuVS kernels for GPU cloning: on when the build has them and they are ``wanted``
    (``IndexSettings.use_cuvs``, off with ``USE_CUVS=0``)."""
    return wanted and cuvs_available() and hasattr(faiss, "GpuClonerOptions")


def gpu_build() -> bool:
    """Whether the installed faiss was compiled with GPU support (whatever GPUs exist)."""
    return hasattr(faiss, "StandardGpuResources")


def distribution() -> str:
    """The installed faiss wheel (``faiss-cpu``, ``faiss-gpu-cu12``, …), or ``unknown``."""
    from importlib import metadata

    names = sorted(
        name
        for dist in metadata.distributions()
        if (name := str(dist.metadata["Name"] or "")).lower().startswith("faiss")
    )
    return ", ".join(names) or "unknown"


def describe(wanted_cuvs: bool = True) -> dict[str, object]:
    """What ``codeintel doctor`` prints: faiss version, GPUs, cuVS and the path that runs."""
    gpus = gpu_count()
    cuvs = use_cuvs(wanted_cuvs) if gpus else False
    if gpus == 0:
        path = "cpu"
    elif cuvs:
        path = "gpu-cuvs"
    else:
        path = "gpu"
    return {
        "faiss_version": str(getattr(faiss, "__version__", "unknown")),
        "build": "gpu" if gpu_build() else "cpu",
        "distribution": distribution(),
        "gpus": gpus,
        "cuvs_compiled": cuvs_available(),
        "cuvs": cuvs,
        "cuvs_wanted": wanted_cuvs,
        "omp_threads": int(faiss.omp_get_max_threads()),
        "path": path,
    }
