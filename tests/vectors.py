"""Synthetic embeddings for ANN tests: normalised gaussian mixtures, like real ones cluster."""

from __future__ import annotations

from collections.abc import Iterator

import faiss
import numpy as np


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Normalised gaussian-mixture vectors: n/40 clusters, noise 0.8 x the centre norm."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(16, n // 40), d)).astype(np.float32)
    xb = centres[rng.integers(len(centres), size=n)]
    xb += 0.8 * rng.standard_normal((n, d)).astype(np.float32)
    faiss.normalize_L2(xb)
    return xb


def one_omp_thread() -> Iterator[None]:
    """FAISS on one OpenMP thread, restored afterwards (use as a module-scoped fixture).

    On a shared, loaded 2-core machine OpenMP's spinning threads oversubscribe:
    training IVF128,PQ8np on 5K x 64 took 12.7 s with 2 threads, 2.3 s with 1.
    """
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)
