"""Many repositories: one searcher process over N stores, and a router over 4 shards.

    python -m benchmarks.fleet_bench [--stores 200] [--files-per-store 4] [--queries 40]

Corpus: real Python sources of packages installed in this venv (httpx, rich,
starlette, kopf, ...), dealt out into ``--stores`` small git repositories of
``--files-per-store`` files each, and the same files as ONE repository (the
baseline: the same total size in one store). Every store is built by the real
pipeline with the bundled local model. Queries are the first sentences of
docstrings in the corpus (natural language against code) and identifiers for
``search_text``.

Measured, each server in its own process (as deployed), queries sent one at a
time from this process:

* start to ready, then the first cross-repository query (which loads every
  store), RSS and open files per store, worktree disk per store;
* cross-repository ``semantic_search`` (k=10) and ``search_text`` p50/p95 against
  the one big store, same queries;
* router + 4 shard processes against one process holding every store, same
  queries (ratio of p50 and p95);
* how both grow from 10 to ``--stores`` stores.

All processes share this machine's cores: the router setup runs 5 processes
(4 of them embedding every query) where the baseline runs one, so on a 2-core
machine the router's ratio is an upper bound of what separate nodes would show.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks import serverproc
from benchmarks.common import write_results
from codeintel.core.settings import Settings
from codeintel.indexer import pipeline

PACKAGES = (
    "httpx", "rich", "starlette", "kopf", "fastapi", "anyio", "uvicorn", "git", "mcp",
    "click", "h11", "pydantic", "msgspec", "yaml", "httpcore", "hypothesis", "_pytest",
)  # fmt: skip
MAX_LINES = 400
NO_HISTORY = {"history": False}  # blame precompute is beside the point here


def corpus(limit: int) -> list[tuple[str, str]]:
    """(relative path, text) of up to ``limit`` real source files, in a fixed shuffled order."""
    site = Path(httpx.__file__).resolve().parent.parent
    files: list[tuple[str, str]] = []
    for package in PACKAGES:
        for path in sorted((site / package).rglob("*.py")):
            try:
                text = path.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            lines = text.splitlines()
            if len(lines) >= 20:
                files.append((str(path.relative_to(site)), "\n".join(lines[:MAX_LINES]) + "\n"))
    random.Random(7).shuffle(files)
    return files[:limit]


def docstring_queries(files: list[tuple[str, str]], n: int) -> list[str]:
    """First sentences of function docstrings: how an agent asks in words."""
    out: list[str] = []
    for _, text in files:
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc and len(doc.split()) >= 4:
                    out.append(doc.strip().split("\n")[0].split(". ")[0][:200])
    random.Random(11).shuffle(out)
    return out[:n]


def git_repo(path: Path, files: list[tuple[str, str]]) -> Path:
    path.mkdir(parents=True)
    for rel, text in files:
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text, encoding="utf-8")
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@x", "GIT_CONFIG_GLOBAL": "/dev/null"}  # fmt: skip
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "import"]):
        subprocess.run(["git", *cmd], cwd=path, env=env, check=True)
    return path


def spawn(args: list[str], env: dict[str, str] | None = None) -> serverproc.ServerProcess:
    """One ``codeintel`` server process, ready when /readyz answers 200."""
    return serverproc.ServerProcess.codeintel(*args, env=env, timeout=600)


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def latencies(url: str, tool: str, bodies: list[dict[str, Any]]) -> list[float]:
    out: list[float] = []
    with httpx.Client(base_url=url, timeout=120) as c:
        c.post(f"/v1/{tool}", json=bodies[0]).raise_for_status()  # warm
        for body in bodies:
            start = time.perf_counter()
            c.post(f"/v1/{tool}", json=body).raise_for_status()
            out.append(time.perf_counter() - start)
    return out


def measure(
    url: str, semantic: list[dict[str, Any]], text: list[dict[str, Any]]
) -> dict[str, float]:
    s = latencies(url, "semantic_search", semantic)
    t = latencies(url, "search_text", text)
    return {"semantic_p50_ms": pct(s, 0.5), "semantic_p95_ms": pct(s, 0.95),
            "text_p50_ms": pct(t, 0.5), "text_p95_ms": pct(t, 0.95)}  # fmt: skip


def subset_root(base: Path, stores: Path, names: list[str], n: int) -> Path:
    """A stores root holding the first ``n`` stores (symlinks to the real ones)."""
    root = base / f"root-{n}"
    for name in names[:n]:
        link = root / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(stores / name)
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", type=int, default=200)
    parser.add_argument("--files-per-store", type=int, default=4)
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--sizes", default="10,50,100,200")
    parser.add_argument("--out", default="fleet", help="results name (benchmarks/results/NAME)")
    args = parser.parse_args(argv)
    from codeintel.core.embed.local import LocalEmbedder

    sizes = [int(s) for s in args.sizes.split(",") if int(s) <= args.stores]
    files = corpus(args.stores * args.files_per_store)
    queries = docstring_queries(files, args.queries)
    semantic = [{"query": q, "k": 10} for q in queries]
    text = [{"pattern": p} for p in ("def __init__", "raise ValueError", "async def", "import os",
                                     "return None", "self._", "TypeError", "yield")]  # fmt: skip
    text = (text * (args.queries // len(text) + 1))[: args.queries]
    base = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] = {"stores": args.stores, "files_per_store": args.files_per_store,
                            "files": len(files), "queries": len(queries), "shards": args.shards,
                            "command": "python -m benchmarks.fleet_bench " + " ".join(argv or sys.argv[1:])}  # fmt: skip
    try:
        embedder = LocalEmbedder()
        stores = base / "stores"
        names: list[str] = []
        start = time.perf_counter()
        for i in range(args.stores):
            name = f"ns{i % 10}/repo-{i:04d}"
            first = i * args.files_per_store  # the corpus wraps if stores outnumber it
            part = [files[(first + j) % len(files)] for j in range(args.files_per_store)]
            repo = git_repo(base / "src" / f"r{i}", part)
            settings = Settings.from_env({}, store={"path": stores / name}, index=NO_HISTORY)
            pipeline.build(settings, str(repo), embedder)
            names.append(name)
        meta["build_all_seconds"] = round(time.perf_counter() - start, 1)
        big = git_repo(base / "src" / "all", files)
        one = Settings.from_env({}, store={"path": base / "one"}, index=NO_HISTORY)
        pipeline.build(one, str(big), embedder)
        embedder.close()
        worktrees = base / "worktrees"
        env = {"CODEINTEL_SERVER_WORKTREE_DIR": str(worktrees),
               "CODEINTEL_FLEET_IDLE_UNLOAD_SECONDS": "0", "CODEINTEL_FLEET_MAX_LOADED_STORES": "0"}  # fmt: skip

        with spawn(["serve", "--store", str(base / "one")], env) as one:
            baseline = measure(one.url, semantic, text)
            rows.append({"setup": "one store, same files", "stores": 1, **baseline})

        for n in sizes:
            root = subset_root(base, stores, names, n)
            shutil.rmtree(worktrees, ignore_errors=True)
            with spawn(["serve", "--stores-root", str(root)], env) as proc:
                rss0, fds0 = proc.rss_mb(), proc.open_files()
                start = time.perf_counter()
                httpx.post(f"{proc.url}/v1/search_text", json={"pattern": "x"}, timeout=600)
                load = time.perf_counter() - start
                rss1, fds1 = proc.rss_mb(), proc.open_files()
                disk = sum(f.stat().st_size for f in worktrees.rglob("*") if f.is_file())
                single = measure(proc.url, semantic, text)
            row = {"setup": "one process", "stores": n, **single,
                   "ready_s": round(proc.ready_seconds, 2), "first_query_loads_s": round(load, 2),
                   "rss_per_store_mb": round((rss1 - rss0) / n, 2),
                   "fds_per_store": round((fds1 - fds0) / n, 1),
                   "worktree_kb_per_store": round(disk / n / 1024, 1)}  # fmt: skip
            rows.append(row)
            shard_args = ["serve", "--stores-root", str(root), "--shards", str(args.shards)]
            shard_procs = [
                spawn([*shard_args, "--shard-index", str(i)], env) for i in range(args.shards)
            ]
            for p in shard_procs:
                p.__enter__()
            try:
                urls = [a for p in shard_procs for a in ("--shard-url", p.url)]
                with spawn(["router", *urls], env) as router:
                    httpx.post(f"{router.url}/v1/search_text", json={"pattern": "x"}, timeout=600)
                    routed = measure(router.url, semantic, text)
            finally:
                for p in shard_procs:
                    p.__exit__()
            ratio = {f"{k}_vs_one_process": round(routed[k] / single[k], 2) for k in single}
            rows.append({"setup": f"router + {args.shards} shards", "stores": n, **routed, **ratio})
            print(rows[-2], rows[-1], flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    write_results(args.out, rows, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
