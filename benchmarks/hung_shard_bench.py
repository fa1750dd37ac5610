"""A hung shard: router latency with one of two shards stopped (SIGSTOP), against all healthy.

    python -m benchmarks.hung_shard_bench [--stores 16] [--queries 30] [--rounds 3]

Issue 22's target: p99 with one shard hung <= 2x p99 with all shards healthy, after
the first timeout. Before the router ejected timed-out replicas, every query
waited the full ``--shard-timeout`` (10.02 s each in the drill).

Set-up, each server its own process as deployed: ``--stores`` small repositories
(real Python sources of installed packages, built by the real pipeline with the
bundled model), two shard processes (``serve --stores-root --shards 2``) and a
router process (``router --shard-url A --shard-url B``). Queries are sent one at
a time from this process: cross-repository ``search_text`` (identifiers) and
``semantic_search`` (docstring sentences), alternating.

Interleaved rounds, so machine load hits both conditions alike: each round runs
``--queries`` queries with both shards healthy, then stops shard 1 (SIGSTOP),
sends one query (it pays the timeout and ejects the shard: reported on its own),
then ``--queries`` more with the shard hung, then resumes it (SIGCONT) and waits
until the router's background probe has taken it back. The p50/p99 of each
condition pool every round's queries; the hung rows also count partial answers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks import fleet_bench
from benchmarks.common import write_results
from codeintel.core.settings import Settings
from codeintel.indexer import pipeline

TEXT = ("def __init__", "raise ValueError", "async def", "import os", "return None", "self._")


def ejected(router: str) -> float:
    """The router's ``codeintel_router_replicas_ejected`` gauge."""
    for line in httpx.get(f"{router}/metrics", timeout=30).text.splitlines():
        if line.startswith("codeintel_router_replicas_ejected"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def run_queries(
    client: httpx.Client, bodies: list[tuple[str, dict[str, Any]]]
) -> tuple[list[float], int]:
    """Seconds per query, and how many answers were ``partial``."""
    seconds: list[float] = []
    partial = 0
    for tool, body in bodies:
        start = time.perf_counter()
        r = client.post(f"/v1/{tool}", json=body)
        seconds.append(time.perf_counter() - start)
        r.raise_for_status()
        partial += bool(r.json().get("partial"))
    return seconds, partial


def summary(seconds: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(fleet_bench.pct(seconds, 0.5), 1),
        "p99_ms": round(fleet_bench.pct(seconds, 0.99), 1),
        "max_ms": round(max(seconds) * 1000, 1),
    }


def build_stores(base: Path, n: int, files_per_store: int) -> Path:
    from codeintel.core.embed.local import LocalEmbedder

    files = fleet_bench.corpus(n * files_per_store)
    stores = base / "stores"
    embedder = LocalEmbedder()
    try:
        for i in range(n):
            part = [files[(i * files_per_store + j) % len(files)] for j in range(files_per_store)]
            repo = fleet_bench.git_repo(base / "src" / f"r{i}", part)
            settings = Settings.from_env(
                {}, store={"path": stores / f"ns{i % 4}/repo-{i:03d}"}, index={"history": False}
            )
            pipeline.build(settings, str(repo), embedder)
    finally:
        embedder.close()
    return stores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=int, default=16)
    parser.add_argument("--files-per-store", type=int, default=4)
    parser.add_argument("--queries", type=int, default=30, help="per condition and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shard-timeout", type=float, default=5.0)
    parser.add_argument("--out", default="hung_shard")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    base = Path(tempfile.mkdtemp(prefix="hung-shard-bench-"))
    files = fleet_bench.corpus(args.stores * args.files_per_store)
    sentences = fleet_bench.docstring_queries(files, args.queries)
    bodies: list[tuple[str, dict[str, Any]]] = []
    for i in range(args.queries):
        if i % 2:
            bodies.append(("semantic_search", {"query": sentences[i % len(sentences)], "k": 10}))
        else:
            bodies.append(("search_text", {"pattern": TEXT[i % len(TEXT)]}))
    healthy: list[float] = []
    hung: list[float] = []
    first: list[float] = []
    partial_hung = partial_healthy = 0
    readmit: list[float] = []
    try:
        start = time.perf_counter()
        stores = build_stores(base, args.stores, args.files_per_store)
        build_s = time.perf_counter() - start
        env = {"CODEINTEL_SERVER_WORKTREE_DIR": str(base / "worktrees"),
               "CODEINTEL_FLEET_IDLE_UNLOAD_SECONDS": "0"}  # fmt: skip
        shard_args = ["serve", "--stores-root", str(stores), "--shards", "2"]
        shards = [fleet_bench.spawn([*shard_args, "--shard-index", str(i)], env) for i in (0, 1)]
        for shard in shards:
            shard.__enter__()
        try:
            urls = [a for s in shards for a in ("--shard-url", s.url)]
            timeout = ["--shard-timeout", str(args.shard_timeout)]
            with (
                fleet_bench.spawn(["router", *urls, *timeout], env) as router,
                httpx.Client(base_url=router.url, timeout=120) as client,
            ):
                run_queries(client, bodies[:4])  # warm: loads every store on both shards
                for _ in range(args.rounds):
                    seconds, partial = run_queries(client, bodies)
                    healthy += seconds
                    partial_healthy += partial
                    stopped = shards[1].proc
                    assert stopped is not None
                    os.kill(stopped.pid, signal.SIGSTOP)
                    try:
                        seconds, partial = run_queries(client, bodies[:1])
                        first += seconds
                        seconds, partial = run_queries(client, bodies)
                        hung += seconds
                        partial_hung += partial
                    finally:
                        os.kill(stopped.pid, signal.SIGCONT)
                    resumed = time.perf_counter()
                    while ejected(router.url) > 0:
                        time.sleep(0.1)
                    readmit.append(time.perf_counter() - resumed)
        finally:
            for shard in shards:
                shard.__exit__(None, None, None)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    n = args.queries * args.rounds
    rows = [
        {"condition": "both shards healthy", "queries": n, **summary(healthy),
         "partial": partial_healthy},
        {"condition": "first query after SIGSTOP (pays the timeout)", "queries": len(first),
         **summary(first), "partial": ""},
        {"condition": "one shard hung, after the first timeout", "queries": n, **summary(hung),
         "partial": partial_hung},
    ]  # fmt: skip
    ratio = rows[2]["p99_ms"] / rows[0]["p99_ms"]
    meta = {
        "command": "python -m benchmarks.hung_shard_bench " + " ".join(argv or sys.argv[1:]),
        "stores": args.stores,
        "files_per_store": args.files_per_store,
        "rounds": args.rounds,
        "shard_timeout_s": args.shard_timeout,
        "build_s": round(build_s, 1),
        "load_before": load_before,
        "p99_hung_over_p99_healthy": round(ratio, 2),
        "target": "<= 2 (issue 22)",
        "readmitted_after_sigcont_s": [round(s, 1) for s in readmit],
        "note": "queries one at a time, search_text and semantic_search alternating; "
        "healthy and hung blocks interleaved per round",
    }
    meta["load_after"] = os.getloadavg()
    write_results(args.out, rows, meta)
    print(rows, meta, sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
