"""Indexing throughput and peak memory of the product's ONNX encoder, one setting at a time.

Issue 21: a ``serve PATH`` build of sympy embedded its first pass at 24.9 chunks/s and
the rest at 8.5-10 chunks/s on a quiet machine. This benchmark runs the product's
``LocalEmbedder`` (backend ``onnx``) on real chunks of a repository, each variant in a
fresh process (malloc and onnxruntime settings are per process), the variants
interleaved round by round with the order rotated, and reports per variant:
chunks/s, *tokens*/s (what the model reads: the chunks' tokens after truncation at the
model's limit, special tokens included; chunks/s alone depends on how long the chunks
are), process CPU seconds, and resident memory (after loading, and the peak
``VmHWM``). ``vs base`` is the first variant's seconds over this one's in the same
round (>1: faster), the figure to trust on a shared machine.

A variant is a comma-separated list of settings over the product's defaults:

* ``tokens=N``: ``onnxrt.BATCH_TOKENS`` (padded tokens per model call);
* ``batch=N``: texts per model call at most (the embedder's ``batch_size``);
* ``arena=0|1``: onnxruntime's CPU memory arena;
* ``spin=0|1``: onnxruntime's intra-op threads spin while they wait for work;
* ``threads=N``: intra-op threads (0: onnxruntime's choice, one per core);
* ``arenas=N``: glibc ``M_ARENA_MAX`` (0: glibc's default; the CLI sets 2);
* ``trim=0|1``: ``malloc_trim`` after each indexing group;
* ``model=PATH``: another ONNX file of the same model (e.g. a fused export);
* ``order=rest|file``: groups of 512 longest first across the sample (the rest pass,
  ``corpus.embed_drafts``) or in file order (sorted inside each group only).

    python -m benchmarks.embed_throughput_bench --corpus /work/benchcache/corpora/sympy \\
        --chunks 600 --rounds 3 --variants 'base=;arena=arena=1;tokens8k=tokens=8192'
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_results

logger = logging.getLogger("embed_throughput_bench")

DEFAULTS = {
    "tokens": "0",  # 0: the product's BATCH_TOKENS
    "batch": "64",
    "arena": "",  # "": the product's choice
    "spin": "",
    "threads": "",
    "arenas": "2",
    "trim": "1",
    "order": "rest",
    "model": "",  # "": the product's export
}


def corpus_texts(root: Path) -> list[str]:
    """Embedding texts (header + code) of every chunk of the ``.py`` files under ``root``."""
    from codeintel.indexer import chunking, corpus

    texts: list[str] = []
    for path in sorted(root.rglob("*.py")):
        if ".git" in path.parts:
            continue
        rel = str(path.relative_to(root))
        text = path.read_text(encoding="utf-8", errors="replace")
        texts += [corpus.embedding_text(d) for d in chunking.chunk_file(rel, text)]
    return texts


def parse_variant(spec: str) -> dict[str, str]:
    """``key=value,...`` over :data:`DEFAULTS`; unknown keys are refused."""
    out = dict(DEFAULTS)
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, _, value = part.partition("=")
        if key not in DEFAULTS:
            raise SystemExit(f"unknown variant setting {key!r}; known: {', '.join(DEFAULTS)}")
        out[key] = value
    return out


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(texts_file: Path, spec: str) -> None:
    """Embed the texts once with the variant's settings; print one JSON line."""
    v = parse_variant(spec)
    from codeintel.core import malloc

    if int(v["arenas"]):
        malloc.limit_arenas(int(v["arenas"]))
    if v["trim"] == "0":
        malloc.trim = lambda: None  # type: ignore[assignment]
    from codeintel.core.embed import onnxrt
    from codeintel.core.embed.local import LocalEmbedder

    if int(v["tokens"]):
        onnxrt.BATCH_TOKENS = int(v["tokens"])
    texts: list[str] = json.loads(texts_file.read_text())
    embedder = LocalEmbedder(backend="onnx", batch_size=int(v["batch"]))
    embedder.embed(["warm up"])
    encoder = embedder._onnx
    if encoder is None:
        raise SystemExit("the ONNX export is not cached: run the product once first")
    if v["arena"] or v["spin"] or v["threads"] or v["model"]:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = int(v["threads"] or 0)
        opts.enable_cpu_mem_arena = (
            v["arena"] == "1" if v["arena"] else getattr(encoder, "arena", False)
        )
        if v["spin"]:
            opts.add_session_config_entry("session.intra_op.allow_spinning", v["spin"])
        encoder._session = ort.InferenceSession(
            v["model"] or str(encoder.path), opts, providers=["CPUExecutionProvider"]
        )
        embedder.embed(["warm up"])
    tokens = sum(len(e.ids) for e in encoder.tokenizer.encode_batch(texts))
    loaded = _status_mb("VmRSS")
    if v["order"] == "rest":
        order = np.argsort([-len(t) for t in texts], kind="stable")
    else:
        order = np.arange(len(texts))
    group_rates: list[float] = []
    begin, cpu = time.perf_counter(), _cpu()
    for start in range(0, len(texts), 512):
        t0 = time.perf_counter()
        rows = order[start : start + 512]
        embedder.embed([texts[i] for i in rows])
        group_rates.append(round(len(rows) / (time.perf_counter() - t0), 1))
    seconds, cpu = time.perf_counter() - begin, _cpu() - cpu
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu,
                "tokens": tokens,
                "rss_loaded_mb": loaded,
                "rss_after_mb": _status_mb("VmRSS"),
                "peak_rss_mb": _status_mb("VmHWM"),
                "group_chunks_per_s": group_rates,
            }
        )
    )


def run(args: argparse.Namespace) -> None:
    texts = corpus_texts(args.corpus)
    rng = random.Random(args.seed)
    if args.sample == "long":
        from codeintel.core.embed.local import LocalEmbedder

        counts = LocalEmbedder(backend="onnx").token_counts(texts)
        texts = [t for t, n in zip(texts, counts, strict=True) if n >= 254]
    picked = sorted(rng.sample(range(len(texts)), min(args.chunks, len(texts))))
    sample = [texts[i] for i in picked]
    args.cache.mkdir(parents=True, exist_ok=True)
    texts_file = args.cache / "throughput-texts.json"
    texts_file.write_text(json.dumps(sample))
    variants = [v.partition("=") for v in args.variants.split(";") if v.strip()]
    names = [name.strip() for name, _, _ in variants]
    specs = {name.strip(): spec for name, _, spec in variants}
    got: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    loads = [round(os.getloadavg()[0], 2)]
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        this: dict[str, float] = {}
        for name in order:
            cmd = [sys.executable, "-m", "benchmarks.embed_throughput_bench"]
            cmd += ["--child", specs[name], "--child-texts", str(texts_file)]
            done = subprocess.run(cmd, check=True, capture_output=True, text=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["load"] = round(os.getloadavg()[0], 2)
            got[name].append(row)
            this[name] = row["seconds"]
            logger.info(
                "round %d %-12s %6.1f chunks/s %7.0f tokens/s peak %6.0f MB load %.2f",
                r,
                name,
                len(sample) / row["seconds"],
                row["tokens"] / row["seconds"],
                row["peak_rss_mb"],
                row["load"],
            )
        loads.append(round(os.getloadavg()[0], 2))
        for name in names:
            ratios[name].append(this[names[0]] / this[name])
    rows: list[dict[str, Any]] = []
    for name in names:
        runs = got[name]
        sec = statistics.median(r["seconds"] for r in runs)
        rows.append(
            {
                "variant": name,
                "settings": specs[name] or "(product defaults)",
                "chunks/s": round(len(sample) / sec, 1),
                "tokens/s": round(runs[0]["tokens"] / sec),
                "vs base": round(statistics.median(ratios[name]), 3),
                "vs base min-max": f"{min(ratios[name]):.2f}-{max(ratios[name]):.2f}",
                "CPU s": round(statistics.median(r["cpu_seconds"] for r in runs), 1),
                "RSS loaded MB": statistics.median(r["rss_loaded_mb"] for r in runs),
                "peak RSS MB": max(r["peak_rss_mb"] for r in runs),
                "first group chunks/s": statistics.median(r["group_chunks_per_s"][0] for r in runs),
            }
        )
    write_results(
        args.out,
        rows,
        {
            "corpus": str(args.corpus),
            "sample": f"{len(sample)} chunks ({args.sample}, seed {args.seed})",
            "sample_tokens": got[names[0]][0]["tokens"],
            "rounds": args.rounds,
            "load_avg_1m": loads,
            "how": "one fresh process per variant and round, variants interleaved, order "
            "rotated; vs base = first variant's seconds / this variant's in the same round",
        },
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("/work/benchcache/corpora/sympy"))
    parser.add_argument("--chunks", type=int, default=600)
    parser.add_argument("--sample", choices=("random", "long"), default="random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default="base=")
    parser.add_argument("--cache", type=Path, default=Path("/work/benchcache/embed2"))
    parser.add_argument("--out", default="embed-throughput")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-texts", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args.child_texts, args.child)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    run(args)


if __name__ == "__main__":
    main()
