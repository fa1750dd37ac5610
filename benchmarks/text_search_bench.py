"""search_text against ripgrep over the same tree, interleaved (issue 19: p50 <= 1.0x rg).

For each repository (a store built by the product's pipeline with the hash embedder
of :mod:`benchmarks.navigation_bench`; search_text reads no vectors) and each query
(selective identifiers, common words, regexes), every round times in turn, in an
order drawn anew each round (seeded):

- ``search_text`` page 1 and page 2 (``offset = max_results``, the cursor's offset),
  in-process (:func:`codeintel.searcher.textsearch.search`) or over REST
  (``POST /v1/search_text`` to ``codeintel serve --store``, page 2 by its cursor);
- ``rg --json`` and plain ``rg`` (same flags: ``--no-ignore --hidden``, fixed strings
  unless a regex) over the very tree search_text reads (the generation's
  materialised worktree), their whole output read through a pipe;
- with ``--rest --base-src DIR``, the same REST pages from a second server running
  the code under ``DIR`` (e.g. main's ``src``): ``base_page1``/``base_page2``, so a
  change is timed against its baseline in the same rounds, under the same load.

Ratios are p50 (p95) of search_text over p50 (p95) of each rg form, from the same
interleaved rounds; the load average is recorded before and after (2 shared cores).
``--cpu-blocks N`` adds each server's CPU per answer (from ``/proc``, ripgrep
included), the two servers in alternating blocks: the cost without the queue.

    python -m benchmarks.text_search_bench [--rounds 25] [--rest [--base-src DIR [--cpu-blocks 6]]] [--name text_search]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import random
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks import serverproc
from benchmarks.common import write_results
from benchmarks.navigation_bench import ensure_store
from codeintel.searcher import textsearch, worktree

QUERIES: dict[str, list[tuple[str, str, dict[str, Any]]]] = {
    "sympy": [
        ("identifier", "solve_linear_system", {}),
        ("identifier", "_eval_is_positive", {}),
        ("common word", "item", {}),
        ("common word", "return", {}),
        ("regex", r"def _eval_\w+\(self\)", {"regex": True}),
        ("regex", r"TODO|FIXME|XXX", {"regex": True}),
        ("ignore case", "todo", {"case_sensitive": False}),
    ],
    "cJSON": [
        ("identifier", "cJSON_ParseWithOpts", {}),
        ("common word", "item", {}),
        ("common word", "return", {}),
        ("regex", r"cJSON_\w+\(", {"regex": True}),
        ("ignore case", "todo", {"case_sensitive": False}),
    ],
}
MAX_RESULTS = 200
PAGES = ("page1", "page2", "base_page1", "base_page2")
BUILD_WAIT = 20.0
"""Seconds a server is given to build its trigram index after the first searches."""


def rg_args(pattern: str, flags: dict[str, Any], json: bool) -> list[str]:
    args = [textsearch.rg_binary(), "--no-config", "--no-ignore", "--hidden", "--no-messages"]
    args.append("--case-sensitive" if flags.get("case_sensitive", True) else "--ignore-case")
    if not flags.get("regex"):
        args.append("--fixed-strings")
    if json:
        args.append("--json")
    return [*args, f"--regexp={pattern}"]


async def rg(tree: Path, args: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=tree,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await proc.communicate()


def load() -> float:
    return os.getloadavg()[0]


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    t = time.perf_counter()
    await fn()
    return time.perf_counter() - t


def ms(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000.0, q))


async def measure(
    repo: str,
    tree: Path,
    rounds: int,
    page: Callable[[str, dict[str, Any], int], Awaitable[Any]],
    how: str,
    base: Callable[[str, dict[str, Any], int], Awaitable[Any]] | None = None,
) -> list[dict[str, Any]]:
    """Rows of p50/p95 per query: search_text pages 1 and 2 (and ``base``'s, the same pages
    from the baseline's server) against both rg forms."""
    rows = []
    trees = getattr(textsearch, "TREES", None)  # absent before the trigram index (a baseline)
    if trees is not None:
        trees.wait(tree)  # the in-process trigram index, built once per tree
    for kind, pattern, flags in QUERIES[repo]:
        probe = await textsearch.search(tree, pattern, max_results=MAX_RESULTS, **flags)
        json_args, plain_args = rg_args(pattern, flags, True), rg_args(pattern, flags, False)
        runs: dict[str, Callable[[], Awaitable[Any]]] = {
            "page1": functools.partial(page, pattern, flags, 1),
            "rg_json": functools.partial(rg, tree, json_args),
            "rg": functools.partial(rg, tree, plain_args),
        }
        if probe.total > MAX_RESULTS:
            runs["page2"] = functools.partial(page, pattern, flags, 2)
        if base is not None:
            runs["base_page1"] = functools.partial(base, pattern, flags, 1)
            if probe.total > MAX_RESULTS:
                runs["base_page2"] = functools.partial(base, pattern, flags, 2)
        times: dict[str, list[float]] = {k: [] for k in runs}
        names = list(runs)
        shuffle = random.Random(f"{repo} {pattern}")
        for _ in range(rounds):
            # A new order each round: in a rotation each run always follows the same one
            # (page 2 after rg, base page 2 right after its own server's page 1), and that
            # alone made identical servers differ by 1.16-1.23x at page 2.
            for name in shuffle.sample(names, len(names)):
                times[name].append(await timed(runs[name]))
        row: dict[str, Any] = {
            "repo": repo,
            "how": how,
            "class": kind,
            "pattern": pattern,
            "matches": probe.total,
            "exact": probe.exact,
        }
        for name, xs in times.items():
            row[f"{name}_p50_ms"] = round(ms(xs, 50), 2)
            row[f"{name}_p95_ms"] = round(ms(xs, 95), 2)
        for p in [n for n in PAGES if n in times]:
            for ref in ("rg", "rg_json"):
                row[f"{p}/{ref} p50"] = round(ms(times[p], 50) / ms(times[ref], 50), 3)
                row[f"{p}/{ref} p95"] = round(ms(times[p], 95) / ms(times[ref], 95), 3)
        for p in ("page1", "page2"):
            if f"base_{p}" in times:  # this code against the baseline's, same rounds
                row[f"{p}/base p50"] = round(ms(times[p], 50) / ms(times[f"base_{p}"], 50), 3)
        row["load"] = round(load(), 2)
        print(row, flush=True)
        rows.append(row)
    return rows


def in_process(repo: str, tree: Path, rounds: int) -> list[dict[str, Any]]:
    async def page(pattern: str, flags: dict[str, Any], n: int) -> Any:
        offset = (n - 1) * MAX_RESULTS
        return await textsearch.search(
            tree, pattern, max_results=MAX_RESULTS, offset=offset, **flags
        )

    return asyncio.run(measure(repo, tree, rounds, page, "in-process"))


Page = Callable[[str, dict[str, Any], int], Awaitable[Any]]


async def rest_pages(client: httpx.AsyncClient, repo: str) -> Page:
    """Pages of ``repo``'s queries from the server behind ``client``: page 2 by its cursor,
    taken once here, outside the timing (which also starts the server's trigram index)."""
    cursors: dict[str, str] = {}

    async def post(body: dict[str, Any]) -> Any:
        return (await client.post("/v1/search_text", json=body)).json()

    for _, pattern, flags in QUERIES[repo]:
        first = await post({"pattern": pattern, "max_results": MAX_RESULTS, **flags})
        if first.get("cursor"):
            cursors[pattern] = first["cursor"]

    async def page(pattern: str, flags: dict[str, Any], n: int) -> Any:
        body: dict[str, Any] = {"pattern": pattern, "max_results": MAX_RESULTS, **flags}
        if n == 2:
            body["cursor"] = cursors[pattern]
        return await post(body)

    return page


def over_rest(
    repo: str, store: Path, tree: Path, rounds: int, base_src: Path | None = None
) -> list[dict[str, Any]]:
    """REST pages against rg; with ``base_src``, also a server of that code, in the same rounds."""
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(
            serverproc.ServerProcess.codeintel("serve", "--store", str(store))
        )
        baseline = None
        if base_src is not None:
            env = {"PYTHONPATH": f"{base_src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
            baseline = stack.enter_context(
                serverproc.ServerProcess.codeintel("serve", "--store", str(store), env=env)
            )

        async def go() -> list[dict[str, Any]]:
            async with contextlib.AsyncExitStack() as clients:
                client = await clients.enter_async_context(
                    httpx.AsyncClient(base_url=server.url, timeout=60)
                )
                page = await rest_pages(client, repo)
                base = None
                if baseline is not None:
                    other = await clients.enter_async_context(
                        httpx.AsyncClient(base_url=baseline.url, timeout=60)
                    )
                    base = await rest_pages(other, repo)
                await asyncio.sleep(BUILD_WAIT)  # the servers' trigram indexes, started above
                return await measure(repo, tree, rounds, page, "REST", base)

        return asyncio.run(go())


def cpu_seconds(pid: int) -> float:
    """CPU of process ``pid`` and of its reaped children (ripgrep), from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def server_cpu(
    repo: str, store: Path, base_src: Path, blocks: int, per_block: int = 30
) -> list[dict[str, Any]]:
    """Server CPU per answer, page 1 and (by its cursor) page 2, this code's server
    against ``base_src``'s, in alternating blocks of ``per_block`` requests: the cost of
    an answer without the queue for the cores that wall time also measures."""
    env = {"PYTHONPATH": f"{base_src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    codeintel = serverproc.ServerProcess.codeintel
    with (
        codeintel("serve", "--store", str(store)) as after,
        codeintel("serve", "--store", str(store), env=env) as before,
    ):
        servers = {"after": after, "before": before}
        clients = {k: httpx.Client(base_url=s.url, timeout=60) for k, s in servers.items()}
        bodies = [{"pattern": p, "max_results": MAX_RESULTS, **f} for _, p, f in QUERIES[repo]]
        for client in clients.values():
            for body in bodies:
                client.post("/v1/search_text", json=body)
        time.sleep(BUILD_WAIT)  # the servers' trigram indexes
        rows = []
        for (kind, pattern, _), body in zip(QUERIES[repo], bodies, strict=True):
            pages = {name: [body] for name in servers}
            for name, client in clients.items():  # page 2: each server's own cursor
                cursor = client.post("/v1/search_text", json=body).json().get("cursor")
                if cursor:
                    pages[name].append({**body, "cursor": cursor})
            for page in range(min(len(p) for p in pages.values())):
                spent: dict[str, list[float]] = {"after": [], "before": []}
                for b in range(blocks):
                    for name in ("after", "before")[:: 1 if b % 2 else -1]:
                        start = cpu_seconds(servers[name].pid)
                        for _ in range(per_block):
                            clients[name].post("/v1/search_text", json=pages[name][page])
                        spent[name].append((cpu_seconds(servers[name].pid) - start) / per_block)
                after_ms, before_ms = (statistics.median(spent[n]) * 1000 for n in spent)
                row = {"repo": repo, "how": "server CPU", "class": kind, "pattern": pattern}
                row |= {"page": page + 1, "cpu_ms": round(after_ms, 2)}
                row |= {"base_cpu_ms": round(before_ms, 2)}
                row |= {"cpu/base": round(after_ms / before_ms, 3), "load": round(load(), 2)}
                print(row, flush=True)
                rows.append(row)
        return rows


def prepare(repo_dir: Path, store: Path) -> tuple[Path, Path]:
    """The store's generation and the worktree the server materialises for it."""
    gen, _ = ensure_store(repo_dir, store)
    commit = (gen / "manifest.json").read_text().split('"commit": "')[1].split('"')[0]
    cache = worktree.default_cache_dir(store)
    tree = worktree.materialise(store / "mirror.git", commit, cache)
    return store, tree


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rounds", type=int, default=25)
    p.add_argument("--sympy", type=Path, default=Path("/work/benchcache/corpora/sympy"))
    p.add_argument("--sympy-store", type=Path, default=Path("/tmp/text2/sympy-store"))
    p.add_argument("--cjson", type=Path, default=Path("/work/.mirror/DaveGamble+cJSON/repo"))
    p.add_argument("--cjson-store", type=Path, default=Path("/tmp/text2/cjson-store"))
    p.add_argument("--rest", action="store_true", help="also over REST (a server per store)")
    p.add_argument(
        "--base-src",
        type=Path,
        help="with --rest: also time a server running the code under this src (a baseline)",
    )
    p.add_argument("--no-in-process", action="store_true", help="REST only")
    p.add_argument(
        "--cpu-blocks",
        type=int,
        default=0,
        help="with --base-src: also the servers' CPU per answer, over this many blocks",
    )
    p.add_argument(
        "--cpu-per-block",
        type=int,
        default=30,
        help="requests per CPU block (ticks of 10 ms: more requests, finer figures)",
    )
    p.add_argument("--repos", nargs="*", default=["sympy", "cJSON"])
    p.add_argument("--name", default="text_search")
    a = p.parse_args(argv)
    sources = {"sympy": (a.sympy, a.sympy_store), "cJSON": (a.cjson, a.cjson_store)}
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    for repo in a.repos:
        store, tree = prepare(*sources[repo])
        if not a.no_in_process:
            rows += in_process(repo, tree, a.rounds)
        if a.rest:
            rows += over_rest(repo, store, tree, a.rounds, a.base_src)
        if a.base_src is not None and a.cpu_blocks:
            rows += server_cpu(repo, store, a.base_src, a.cpu_blocks, a.cpu_per_block)
    summary = {
        f"{how} {p}/{base} p50 median over queries": round(
            statistics.median(
                r[f"{p}/{base} p50"] for r in rows if r["how"] == how and f"{p}/{base} p50" in r
            ),
            3,
        )
        for how in {r["how"] for r in rows}
        for p in PAGES
        for base in ("rg", "rg_json", "base")
        if any(f"{p}/{base} p50" in r for r in rows if r["how"] == how)
    }
    meta = {
        "rounds": a.rounds,
        "max_results": MAX_RESULTS,
        "rg": subprocess.run(
            [textsearch.rg_binary(), "--version"], capture_output=True, text=True
        ).stdout.split("\n")[0],
        "load_before": load_before,
        "load_after": os.getloadavg(),
        **summary,
    }
    write_results(a.name, rows, meta)


if __name__ == "__main__":
    main()
