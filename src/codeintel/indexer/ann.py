"""Build the primary FAISS index by measured cost, and the other FAISS files the indexer writes.

Why measured: one fixed index type is wrong at both ends, and count thresholds are
guesses about someone else's machine and data. A fixed ``OPQ64,IVF1024,PQ64`` at
50K x 384 on one core trained for ~460 s and reached recall@20 0.41, while an exact
scan of 35K x 384 costs ~2.5 ms on one core, less than embedding the query. So
(docs/architecture.md, *Vector indexes*):

* ``flat`` while one exact single-query scan of the corpus, timed at build time on
  one core, fits ``IndexSettings.exact_budget_ms``: exact, nothing to train.
* ``ivf_flat`` beyond it: nlist = clamp(sqrt n); float32 codes, so scores are exact
  and only the probed lists limit recall.
* ``ivf_pq`` when an IVF-Flat index would exceed ``ivf_flat_max_bytes``:
  ``IVF{nlist},PQ{m}np`` with nlist = max(1024, sqrt n) (4 sqrt n above 500K).
  ``np``: no polysemous training (12.5 s instead of minutes at 50K x 384). PQ codes
  alone cap recall@20 at 0.36-0.48, so the searcher over-fetches ``rerank_factor`` x k
  candidates and re-ranks them exactly with the stored vectors. OPQ is an option.

nprobe is then calibrated on text queries drawn from the corpus (``calibration``) and
recorded with what was measured in the manifest's ``index.calibration``.

Every index is wrapped in ``IndexIDMap2`` so FAISS labels are chunk ids.
Training uses at most ``train_sample_max`` vectors, which bounds its time
whatever the corpus size; nlist is lowered when the sample would leave fewer
than 39 points per centroid (FAISS's own warning threshold). Training runs on
GPU when faiss reports one (cuVS kernels unless ``USE_CUVS=0``), else on CPU;
any GPU failure falls back to CPU. Only the indexer writes FAISS files, and
always through :func:`write_index` (temp name, fsync, ``os.replace``).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import msgspec
import numpy as np

from codeintel.core import errors, gpu
from codeintel.core.settings import IndexSettings
from codeintel.core.store import manifest
from codeintel.indexer import calibration

logger = logging.getLogger(__name__)

IndexType = manifest.IndexType
INDEX_TYPES = manifest.INDEX_TYPES

MIN_POINTS_PER_CENTROID = 39
"""FAISS warns below 39 training points per centroid; nlist is lowered to stay above."""

IVF_FLAT_NLIST_MIN = 16
IVF_FLAT_NLIST_MAX = 4096
IVF_PQ_NLIST_MIN = 1024
IVF_PQ_WIDE_ABOVE = 500_000
"""Above this many vectors IVF-PQ uses nlist = 4 sqrt(n): shorter lists, cheaper scans."""

PQ_MAX_POINTS_PER_CENTROID = 64
"""Training points per PQ centroid (256 per sub-quantiser), i.e. 16 384 per sub-quantiser.
PQ codebook training costs ~0.2 s per sub-quantiser per 10K points on one core here
(measured: 64-d, M=16, 10K points: 3.2 s), so the FAISS default of 256 would make
PQ64 training alone take minutes on a 100K sample."""

TRAIN_SEED = 1234

ADD_SLICE = 4_096
"""Rows converted to float32 and added to an index at a time: 6 MiB at 384 dimensions,
the only float32 copy of a float16 build's rows (16,384 rows kept 24 MiB more at the
build's peak; docs/performance.md, *The build's vectors in float16*)."""

PQ_MIN_VECTORS = 1_024
"""IVF-PQ needs 256 points per sub-quantiser codebook to train at all; below 4x that the
primary stays IVF-Flat whatever the memory limit (a few MB at most)."""

# Fallback nprobe (when calibration has no text queries) as a fraction of nlist, to give
# recall@20 >= 0.95 against IndexFlatIP on data-distributed queries.
# Measured on normalised gaussian mixtures (n/40 clusters, noise 0.8 x the centre norm),
# one core: IVF200,Flat at 40K x 64 reaches 0.945 at nlist/8 and 0.976 at nlist/4, and
# scanning a quarter of <= 50K float vectors costs ~2 ms, so ivf_flat probes a quarter.
# IVF512,PQ32np at 60K x 128 with exact re-ranking of 4-8x k candidates reaches 0.99 at
# nlist/16 (0.81 without re-ranking); at nlist >= 1024 that is >= 64 lists.
IVF_FLAT_PROBE_FRACTION = 1 / 4
IVF_PQ_PROBE_FRACTION = 1 / 16
NPROBE_MIN = 16
"""Fewest lists probed by default: with nlist 128 (a small corpus), nlist/16 = 8 probes gave
recall@20 0.935 with re-ranking on the test mixture; 16 lists are still a small scan."""


class IndexPlan(msgspec.Struct, frozen=True):
    """What :func:`plan_index` chose for n vectors; recorded in the manifest's ``index.params``."""

    type: IndexType
    nlist: int
    """Inverted lists (0 for flat)."""
    pq_m: int
    """PQ sub-quantisers, a divisor of the dimension (0 unless ivf_pq)."""
    opq: bool
    nprobe: int
    """Lists visited per query: calibrated by :func:`build_primary`, a fraction of nlist before."""
    rerank_factor: int
    """Candidates fetched per requested result and re-ranked exactly (1: no re-ranking)."""
    factory: str
    """The faiss ``index_factory`` string of the index inside ``IndexIDMap2``."""
    calibration: manifest.Calibration | None = None
    """What the build measured (the manifest's ``index.calibration``, not ``params``)."""


def plan_index(n: int, dim: int, settings: IndexSettings, *, flat_ms: float) -> IndexPlan:
    """Choose the index type and its parameters for ``n`` vectors of ``dim`` dimensions,
    whose exact scan costs ``flat_ms`` per query on one core (:func:`calibration.flat_cost_ms`)."""
    if n < 0:
        raise errors.ConfigError(f"vector count must be >= 0, got {n}")
    if dim <= 0:
        raise errors.ConfigError(f"dimension must be > 0, got {dim}")
    _check_settings(settings)
    if n == 0 or flat_ms <= settings.exact_budget_ms:
        return IndexPlan("flat", 0, 0, False, 0, 1, "Flat")
    nlist = _capped_nlist(_formula_nlist(n, "ivf_flat"), n, settings.train_sample_max)
    ivf_flat_bytes = estimate_memory_usage(n, dim, "ivf_flat", nlist=nlist)
    fits = ivf_flat_bytes <= settings.ivf_flat_max_bytes
    index_type: IndexType = "ivf_flat" if fits or n < PQ_MIN_VECTORS else "ivf_pq"
    if index_type == "ivf_pq":
        nlist = _capped_nlist(_formula_nlist(n, index_type), n, settings.train_sample_max)
    nprobe = settings.nprobe if settings.nprobe > 0 else _default_nprobe(index_type, nlist)
    nprobe = min(nprobe, nlist)
    if index_type == "ivf_flat":
        return IndexPlan("ivf_flat", nlist, 0, False, nprobe, 1, f"IVF{nlist},Flat")
    pq_m = pq_subquantizers(dim, settings.pq_m)
    factory = f"IVF{nlist},PQ{pq_m}np"
    if settings.use_opq:
        factory = f"OPQ{pq_m}," + factory
    rerank = max(1, settings.rerank_factor)
    return IndexPlan("ivf_pq", nlist, pq_m, settings.use_opq, nprobe, rerank, factory)


def _check_settings(settings: IndexSettings) -> None:
    if not settings.exact_budget_ms >= 0:
        raise errors.ConfigError(
            f"exact_budget_ms must be >= 0 milliseconds, got {settings.exact_budget_ms}"
        )
    if settings.ivf_flat_max_bytes < 0:
        raise errors.ConfigError(
            f"ivf_flat_max_bytes must be >= 0, got {settings.ivf_flat_max_bytes}"
        )
    if not 0 < settings.calibration_recall <= 1:
        raise errors.ConfigError(
            f"calibration_recall must be in (0, 1], got {settings.calibration_recall}"
        )


def pq_subquantizers(dim: int, pq_m: int) -> int:
    """The largest divisor of ``dim`` not above ``pq_m`` (PQ needs dim % m == 0)."""
    for m in range(min(max(pq_m, 1), dim), 0, -1):
        if dim % m == 0:
            return m
    return 1


def _formula_nlist(n: int, index_type: IndexType) -> int:
    root = math.sqrt(max(n, 1))
    if index_type == "ivf_flat":
        return min(max(round(root), IVF_FLAT_NLIST_MIN), IVF_FLAT_NLIST_MAX)
    if n > IVF_PQ_WIDE_ABOVE:
        return round(4 * root)
    return max(IVF_PQ_NLIST_MIN, round(root))


def _capped_nlist(nlist: int, n: int, train_sample_max: int) -> int:
    """Lower nlist so every centroid gets >= 39 points of the (capped) training sample."""
    sample = min(n, max(train_sample_max, 1))
    return max(1, min(nlist, sample // MIN_POINTS_PER_CENTROID))


def _default_nprobe(index_type: IndexType, nlist: int) -> int:
    fraction = IVF_FLAT_PROBE_FRACTION if index_type == "ivf_flat" else IVF_PQ_PROBE_FRACTION
    return min(nlist, max(NPROBE_MIN, math.ceil(nlist * fraction)))


def params_dict(plan: IndexPlan) -> dict[str, Any]:
    """The plan as plain JSON types, for the manifest's ``index.params``."""
    params: dict[str, Any] = msgspec.to_builtins(plan)
    params.pop("calibration", None)
    return params


def build_primary(
    xb: np.ndarray,
    ids: np.ndarray,
    settings: IndexSettings,
    *,
    queries: Callable[[], np.ndarray] | None = None,
    log: logging.Logger | None = None,
) -> tuple[faiss.Index, IndexPlan, dict[str, float]]:
    """Measure, train and fill the primary index: ``IndexIDMap2`` over the type
    :func:`plan_index` picks for the measured cost of an exact scan.

    ``xb`` is (n, d) float16 (as stored) or float32, L2-normalised; ``ids`` is (n,) int64
    chunk ids.
    ``queries`` gives the calibration query vectors ((q, d) float32, unit rows: text
    from the corpus embedded by the build's model); it is called only for an IVF
    primary. Returns the index (its nprobe set to the calibrated one, and saved with
    it), the plan with ``calibration`` filled in, and timings ``{"measure": s,
    "train": s, "add": s, "calibrate": s}``. Logs the choice and what it measured.
    """
    log = log or logger
    xb, ids = _rows_as_stored(xb, ids)
    n, d = xb.shape
    _check_settings(settings)
    t_measure = time.perf_counter()
    exact: tuple[faiss.Index, faiss.IndexFlat] | None = None
    add_s = 0.0
    if n <= calibration.FLAT_TIMING_ROWS:
        # Every row is timed: the exact index is filled a slice at a time and its own scan
        # timed, then kept as the primary or, for IVF, as the float32 rows it needs.
        exact = _exact(n, d)
        add_s = _add_slices(exact[0], xb, ids)
        flat_ms = calibration.flat_cost_ms(xb, scan=exact[1])
    else:
        # A prefix is timed, on a float32 copy of it: an index of those rows would be
        # thrown away by the IVF plan such a corpus usually gets (docs/performance.md).
        flat_ms = calibration.flat_cost_ms(xb)
    measure_s = time.perf_counter() - t_measure - add_s
    plan = plan_index(n, d, settings, flat_ms=flat_ms)

    where = "none"
    train_s = 0.0
    if plan.type == "flat":
        if exact is None:  # a fast scan over more rows than were timed: all of them now
            exact = _exact(n, d)
            add_s = _add_slices(exact[0], xb, ids)
        index = exact[0]
    else:
        # IVF trains, adds and calibrates against exact scans of float32 rows: the timed
        # index's own (its id maps freed), else a float32 copy.
        if exact is None:
            xb = np.ascontiguousarray(xb, dtype=np.float32)
        else:
            rows_owner = exact[1]  # holds the rows until the build returns
            exact = None
            xb = _rows_of(rows_owner)
        inner = faiss.index_factory(d, plan.factory, faiss.METRIC_INNER_PRODUCT)
        if plan.type == "ivf_pq":
            ivfpq = faiss.downcast_index(faiss.extract_index_ivf(inner))
            if isinstance(ivfpq, faiss.IndexIVFPQ):
                ivfpq.pq.cp.max_points_per_centroid = PQ_MAX_POINTS_PER_CENTROID
        t0 = time.perf_counter()
        sample = _training_sample(xb, settings.train_sample_max)
        inner, where = _train(
            inner, sample, use_gpu=settings.use_gpu, use_cuvs=settings.use_cuvs, log=log
        )
        del sample
        train_s = time.perf_counter() - t0
        index = faiss.IndexIDMap2(inner)
        add_s += _add_slices(index, xb, ids)

    t2 = time.perf_counter()
    cal = manifest.Calibration(
        flat_ms=round(flat_ms, 4),
        budget_ms=settings.exact_budget_ms,
        target=settings.calibration_recall,
    )
    if plan.type != "flat":
        cal = _calibrate(index, plan, xb, ids, queries, settings, cal, log)
        faiss.extract_index_ivf(index).nprobe = cal.nprobe
    calibrate_s = time.perf_counter() - t2
    cal = msgspec.structs.replace(cal, seconds=round(measure_s + calibrate_s, 3))
    plan = msgspec.structs.replace(plan, nprobe=cal.nprobe, calibration=cal)

    log.info(
        "built primary index: n=%d dim=%d type=%s (exact scan %.2f ms/query on one core, "
        "budget %.2f ms) nlist=%d pq_m=%d nprobe=%d recall@10=%s on %d text queries%s "
        "train=%.2fs (%s) add=%.2fs measure+calibrate=%.2fs",
        n,
        d,
        plan.type,
        flat_ms,
        settings.exact_budget_ms,
        plan.nlist,
        plan.pq_m,
        plan.nprobe,
        "n/a" if cal.recall_at_10 is None else f"{cal.recall_at_10:.3f}",
        cal.queries,
        f" ({cal.note})" if cal.note else "",
        train_s,
        where,
        add_s,
        measure_s + calibrate_s,
    )
    timings = {"measure": measure_s, "train": train_s, "add": add_s, "calibrate": calibrate_s}
    return index, plan, timings


def _calibrate(
    index: faiss.Index,
    plan: IndexPlan,
    xb: np.ndarray,
    ids: np.ndarray,
    queries: Callable[[], np.ndarray] | None,
    settings: IndexSettings,
    cal: manifest.Calibration,
    log: logging.Logger,
) -> manifest.Calibration:
    """nprobe for ``index``: calibrated on the text queries, else the plan's, and what it finds."""
    target = settings.calibration_recall
    xq = np.empty((0, xb.shape[1]), dtype=np.float32)
    note = ""
    if queries is None:
        note = "no calibration queries (no embedder given)"
    else:
        try:
            xq = np.ascontiguousarray(queries(), dtype=np.float32).reshape(-1, xb.shape[1])
        except Exception as e:
            # The index is sound without calibration: fall back, say so, never fail the build.
            log.warning("could not embed the calibration queries: %s", e, exc_info=True)
            note = f"embedding the calibration queries failed: {e}"
    nq = len(xq)
    if settings.nprobe > 0:
        note = "; ".join(filter(None, (f"nprobe {settings.nprobe} fixed by settings", note)))
    elif nq < calibration.MIN_QUERIES and not note:
        note = (
            f"only {nq} text queries in the corpus (calibration needs "
            f"{calibration.MIN_QUERIES}): nprobe is the default fraction of nlist"
        )
    if not note:
        choice = calibration.calibrate_nprobe(
            index, plan.nlist, xq, xb, ids, target=target, rerank_factor=plan.rerank_factor
        )
        log.debug("nprobe calibration curve (nprobe: recall@10): %s", choice.curve)
        return msgspec.structs.replace(
            cal,
            nprobe=choice.nprobe,
            recall_at_10=round(choice.recall, 4),
            reached=choice.reached,
            queries=nq,
        )
    recall = None
    if nq:
        k = min(calibration.RECALL_K, xb.shape[0])
        truth = calibration.exact_top_ids(xq, xb, ids, k)
        recall = calibration.recall_at(index, plan.nprobe, xq, truth, xb, ids, plan.rerank_factor)
    return msgspec.structs.replace(
        cal,
        nprobe=plan.nprobe,
        recall_at_10=None if recall is None else round(recall, 4),
        reached=recall is not None and recall >= target,
        queries=nq,
        note=note,
    )


def _training_sample(xb: np.ndarray, sample_max: int) -> np.ndarray:
    """At most ``sample_max`` rows of ``xb``, drawn without replacement with a fixed seed."""
    n = xb.shape[0]
    if n <= sample_max:
        return xb
    rows = np.random.default_rng(TRAIN_SEED).choice(n, size=max(sample_max, 1), replace=False)
    rows.sort()  # sequential reads from mmap'd or cached vectors
    return np.ascontiguousarray(xb[rows])


def _train(
    inner: faiss.Index, sample: np.ndarray, *, use_gpu: bool, use_cuvs: bool, log: logging.Logger
) -> tuple[faiss.Index, str]:
    """Train on GPU when allowed and present, else (or on any GPU failure) on CPU."""
    if use_gpu and gpu.gpu_count() > 0:
        cuvs = gpu.use_cuvs(use_cuvs)
        try:
            return _train_gpu(inner, sample, cuvs), "gpu-cuvs" if cuvs else "gpu"
        except Exception:
            log.warning("GPU training failed; training on CPU instead", exc_info=True)
    inner.train(sample)
    return inner, "cpu"


def _train_gpu(inner: faiss.Index, sample: np.ndarray, cuvs: bool) -> faiss.Index:
    """Clone the untrained index to every GPU, train there, and copy the trained index back.

    Vectors are added on CPU afterwards, into ``IndexIDMap2``: adding is one
    coarse assignment plus encoding per vector, and keeping it on CPU keeps the
    written index identical whichever device trained it. cuVS kernels are used
    when ``cuvs`` (``GpuClonerOptions.use_cuvs``).
    """
    co = faiss.GpuMultipleClonerOptions()
    # float16 lookup tables: classic GPU IVF-PQ needs them above 48 bytes per code.
    co.useFloat16 = True
    if hasattr(co, "use_cuvs"):
        co.use_cuvs = cuvs
    gpu_index = faiss.index_cpu_to_all_gpus(inner, co)
    gpu_index.train(sample)
    return faiss.index_gpu_to_cpu(gpu_index)


def new_secondary(dim: int) -> faiss.Index:
    """An empty secondary index: exact inner product, ids kept (``IndexIDMap2(IndexFlatIP)``)."""
    if dim <= 0:
        raise errors.ConfigError(f"dimension must be > 0, got {dim}")
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def add_vectors(index: faiss.Index, xb: np.ndarray, ids: np.ndarray) -> None:
    """Add (n, d) float32 vectors under (n,) int64 ids to an ``IndexIDMap2``."""
    xb, ids = _check_vectors(xb, ids)
    if xb.shape[1] != index.d:
        raise errors.DimensionMismatchError(
            f"vectors have dimension {xb.shape[1]}, the index has {index.d}"
        )
    if xb.shape[0]:
        index.add_with_ids(xb, ids)


def _check_vectors(xb: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous float32 rows and int64 ids, for FAISS as it is called."""
    xb, ids = _checked(xb, ids)
    return np.ascontiguousarray(xb, dtype=np.float32), ids


def _rows_as_stored(xb: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous rows kept in float16 when given so (else float32) and int64 ids: a build
    converts them to float32 a slice at a time (:func:`_add_slices`)."""
    xb, ids = _checked(xb, ids)
    dtype = np.float16 if xb.dtype == np.float16 else np.float32
    return np.ascontiguousarray(xb, dtype=dtype), ids


def _checked(xb: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``xb`` checked to be (n, d) and ``ids`` (n,) integers, as contiguous int64."""
    if xb.ndim != 2:
        raise ValueError(f"xb must be 2-D (n, d), got shape {xb.shape}")
    if ids.ndim != 1 or ids.shape[0] != xb.shape[0]:
        raise ValueError(f"ids must have shape ({xb.shape[0]},), got {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be integers, got {ids.dtype}")
    return xb, np.ascontiguousarray(ids, dtype=np.int64)


def _exact(rows: int, d: int) -> tuple[faiss.Index, faiss.IndexFlat]:
    """An empty ``IndexIDMap2(IndexFlatIP)`` with room for ``rows`` rows (:func:`_reserve`),
    and the flat index inside it."""
    flat = faiss.IndexFlatIP(d)
    _reserve(flat, rows)
    return faiss.IndexIDMap2(flat), flat


def _rows_of(flat: faiss.IndexFlat) -> np.ndarray:
    """The float32 rows of ``flat``, (ntotal, d): a view of its codes, no copy, valid
    while ``flat`` lives."""
    return faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * flat.d).reshape(flat.ntotal, flat.d)


def _reserve(flat: faiss.IndexFlat, rows: int) -> None:
    """Room for ``rows`` rows in ``flat`` before it is filled a slice at a time.

    Its codes are a ``std::vector``, which each ``add`` grows by at least doubling: three
    slices of sympy's rows held the old buffer and a new one together (+28 MB at the
    build's peak, measured). Growing the vector to its final size and back keeps the
    capacity (the standard never shrinks it on ``resize``), so the adds fill it in place.
    """
    filled = flat.codes.size()
    flat.codes.resize(rows * flat.code_size)
    flat.codes.resize(filled)


def _add_slices(index: faiss.Index, xb: np.ndarray, ids: np.ndarray) -> float:
    """Add ``xb`` under ``ids`` :data:`ADD_SLICE` rows at a time, float32 one slice at a
    time (FAISS copies what it is given); returns the seconds it took."""
    t0 = time.perf_counter()
    for start in range(0, len(ids), ADD_SLICE):
        stop = start + ADD_SLICE
        index.add_with_ids(np.ascontiguousarray(xb[start:stop], dtype=np.float32), ids[start:stop])
    return time.perf_counter() - t0


def write_index(index: faiss.Index, path: Path) -> None:
    """Write ``index`` to ``path`` atomically: temp file in the same directory, fsync, rename."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        faiss.write_index(index, str(tmp))
        # mkstemp creates 0600; searchers may read the store as another user.
        os.chmod(tmp, 0o644)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# Written-file layout (faiss 1.15 index_write.cpp), per part:
#   IDMap2: header + id_map, 8 bytes per vector.
#   Flat: 4*d bytes per vector.
#   IVF: quantizer nlist*4*d, list sizes 8 per list, ids 8 per vector, codes per vector
#   (4*d for Flat, m for PQ8); PQ centroids 256*4*d; OPQ rotation 4*d*d.
# Measured (20K x 64): flat 5 280 090 bytes vs 5 280 256 estimated; ivf_pq (256, M=16)
# 773 345 vs 773 376.
_HEADER_BYTES = 256


def estimate_memory_usage(
    n: int,
    dim: int,
    index_type: str,
    *,
    nlist: int | None = None,
    pq_m: int = 64,
    opq: bool = False,
) -> int:
    """Bytes of the written primary index (``IndexIDMap2`` ids included) for n vectors.

    ``nlist`` defaults to what :func:`plan_index` would choose with default
    settings; ``pq_m`` is lowered to a divisor of ``dim`` as the build does.
    The in-memory size of a loaded index is the same plus a reverse id map
    (~16 bytes per vector) unless the file is memory-mapped.
    """
    if n < 0 or dim <= 0:
        raise errors.ConfigError(f"need n >= 0 and dim > 0, got n={n} dim={dim}")
    ids = 8 * n
    if index_type == "flat":
        return _HEADER_BYTES + ids + 4 * dim * n
    if index_type not in ("ivf_flat", "ivf_pq"):
        raise errors.ConfigError(
            f"unknown index type {index_type!r}; expected one of {INDEX_TYPES}"
        )
    if nlist is None:
        nlist = _capped_nlist(
            _formula_nlist(n, index_type),  # type: ignore[arg-type]
            n,
            IndexSettings().train_sample_max,
        )
    coarse = nlist * (4 * dim + 8)
    if index_type == "ivf_flat":
        return _HEADER_BYTES + ids + coarse + n * (4 * dim + 8)
    m = pq_subquantizers(dim, pq_m)
    codebooks = 256 * 4 * dim + (4 * dim * dim + 4 * dim if opq else 0)
    return _HEADER_BYTES + ids + coarse + codebooks + n * (m + 8)
