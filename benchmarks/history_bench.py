"""blame_range and file_history on a deep history: precomputed index vs raw git.

One run on a repository generated here with ``git fast-import`` (no network):
20 000 commits over 1 000 files by default, with merges, renames, deletions and
non-ASCII authors. It measures

* p50/p95 of both tools over REST (a ``codeintel serve`` process) with the history
  index, and with a store built ``--no-history`` (the git path, cache cleared by
  a fresh range each call), next to the raw git commands with and without the
  mirror's commit-graph (changed-path Bloom filters);
* the index-time cost of the precompute (seconds, % of the build without its
  embedding, and against the embedding time of the same repository);
* storage per blamed line;
* the update after 100 new commits.

    nice python -m benchmarks.history_bench [--commits 20000] [--files 1000] [--samples 40]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import write_results
from benchmarks.searcher_bench import Server, pct
from benchmarks.update_bench import HashEmbedder
from codeintel.core import history as history_mod
from codeintel.core import history_index
from codeintel.core.settings import Settings
from codeintel.core.store import Store
from codeintel.indexer import pipeline, progress
from codeintel.searcher import worktree as worktree_mod

AUTHORS = [
    ("Ada Lovelace", "ada@example.org"),
    ("Zoë Ångström", "zoe@example.org"),
    ("José Núñez", "jose@example.org"),
    ("李雷", "li@example.org"),
    ("Grace Hopper", "grace@example.org"),
    ("Alan Turing", "alan@example.org"),
    ("Барбара Лисков", "barbara@example.org"),
    ("Ken Thompson", "ken@example.org"),
]
WORDS = ["parse", "render", "invoice", "cache", "retry", "token", "schema", "route", "merge"]
T0 = 1_500_000_000


class Generator:
    """A fast-import stream of a long, realistic-looking history."""

    def __init__(self, files: int, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.files: dict[str, list[str]] = {}
        self.mark = 0
        self.time = T0
        self.serial = 0
        for i in range(files):
            self.files[self._new_path(i)] = self._content(i, self.rng.randint(30, 120))

    def _new_path(self, i: int) -> str:
        top = ["core", "api", "web", "données", "util", "jobs"][i % 6]
        return f"{top}/m{i % 37}/{WORDS[i % len(WORDS)]}_{i}.py"

    def _content(self, i: int, n: int) -> list[str]:
        lines: list[str] = []
        for j in range(n):
            if j % 10 == 0:
                lines.append(f"def {WORDS[(i + j) % len(WORDS)]}_{i}_{j}(value):")
            else:
                lines.append(f"    value = value * {j} + {i}  # step {j}")
        return lines

    def _line(self) -> str:
        self.serial += 1
        return f"    value = {WORDS[self.serial % len(WORDS)]}(value, {self.serial})"

    def _edit(self, path: str) -> None:
        lines = self.files[path]
        for _ in range(self.rng.randint(1, 3)):
            k = self.rng.randrange(len(lines))
            roll = self.rng.random()
            if roll < 0.6 or len(lines) > 200:
                lines[k] = self._line()
            elif roll < 0.9 or len(lines) < 20:
                lines[k:k] = [self._line() for _ in range(self.rng.randint(1, 5))]
            else:
                del lines[k]

    def _blob(self, path: str) -> str:
        data = "\n".join(self.files[path]) + "\n"  # ASCII: characters are bytes
        return f"M 100644 inline {path}\ndata {len(data)}\n{data}\n"

    def _commit(self, ref: str, msg: str, body: list[str], parents: list[int]) -> int:
        self.mark += 1
        self.time += self.rng.randint(60, 7200)
        name, email = AUTHORS[self.rng.randrange(len(AUTHORS))]
        data = msg.encode()
        head = [
            f"commit {ref}",
            f"mark :{self.mark}",
            f"author {name} <{email}> {self.time} +0200",
            f"committer {name} <{email}> {self.time} +0200",
            f"data {len(data)}",
            msg,
        ]
        if parents:
            head.append(f"from :{parents[0]}")
            head += [f"merge :{p}" for p in parents[1:]]
        return self._emit("\n".join(head) + "\n" + "".join(body) + "\n")

    def _emit(self, text: str) -> int:
        self.out.append(text)
        return self.mark

    def stream(self, commits: int, ref: str = "refs/heads/main", tip: int | None = None) -> str:
        """fast-import commands for ``commits`` commits on ``ref`` (continuing from ``tip``)."""
        self.out: list[str] = []
        paths = list(self.files)
        if tip is None:
            tip = self._commit(ref, "initial import", [self._blob(p) for p in paths], [])
            commits -= 1
        made = 0
        while made < commits:
            paths = list(self.files)
            if made % 250 == 125 and commits - made > 8:  # a side branch, merged back
                side = self.rng.sample(paths, 3)
                side_tip = tip
                for k in range(3):
                    self._edit(side[k])
                    side_tip = self._commit(
                        "refs/heads/side", f"side: {side[k]}", [self._blob(side[k])], [side_tip]
                    )
                for _ in range(2):
                    p = self.rng.choice([q for q in paths if q not in side])
                    self._edit(p)
                    tip = self._commit(ref, f"main: {p}", [self._blob(p)], [tip])
                tip = self._commit(
                    ref, "merge side", [self._blob(p) for p in side], [tip, side_tip]
                )
                made += 6
                continue
            if made % 400 == 399:  # a rename with a small edit
                old = self.rng.choice(paths)
                new = old.replace(".py", f"_v{made}.py")
                self.files[new] = self.files.pop(old)
                self._edit(new)
                body = [f"R {old} {new}\n", self._blob(new)]
                tip = self._commit(ref, f"rename {old}", body, [tip])
            elif made % 300 == 299:  # a deletion and a new file
                gone = self.rng.choice(paths)
                del self.files[gone]
                fresh = self._new_path(10_000 + made)
                self.files[fresh] = self._content(made, self.rng.randint(30, 120))
                body = [f"D {gone}\n", self._blob(fresh)]
                tip = self._commit(ref, f"replace {gone}", body, [tip])
            else:
                touched = self.rng.sample(paths, self.rng.choice((1, 1, 1, 2, 3)))
                for p in touched:
                    self._edit(p)
                msg = f"{WORDS[made % len(WORDS)]}: change {len(touched)} files"
                tip = self._commit(ref, msg, [self._blob(p) for p in touched], [tip])
            made += 1
        self.tip = tip
        return "".join(self.out)


def fast_import(repo: Path, stream: str, marks: Path) -> None:
    args = ["git", "fast-import", "--quiet", f"--export-marks={marks}"]
    if marks.exists():
        args.append(f"--import-marks={marks}")
    subprocess.run(args, cwd=repo, input=stream.encode(), check=True)


def timed(fn: Any, *args: Any, **kwargs: Any) -> float:
    """Seconds one call takes (``pct`` reports milliseconds)."""
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def warm_up(c: httpx.Client) -> None:
    """Wait until the searcher's query model has loaded: it loads in the background after
    /readyz and would compete for the CPU with the calls measured."""
    deadline = time.monotonic() + 600
    body = {"query": "warm up", "k": 1}
    while c.post("/v1/semantic_search", json=body).status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError("the searcher's embedder never became ready")
        time.sleep(0.5)


def post(c: httpx.Client, url: str, body: dict[str, Any]) -> None:
    c.post(url, json=body).raise_for_status()


def git(repo: Path, *args: str, graph: bool = True) -> None:
    cfg = [] if graph else ["-c", "core.commitGraph=false"]
    subprocess.run(["git", *cfg, *args], cwd=repo, capture_output=True, check=True)


def embed_estimate(gen_dir: Path, chunks: int, sample: int = 256) -> float:
    """Seconds the local CPU model would take for ``chunks`` chunks, from a timed sample."""
    import sqlite3

    from codeintel.core.embed.local import LocalEmbedder

    with sqlite3.connect(gen_dir / "chunks.sqlite") as db:
        rows = db.execute("SELECT path, symbol, text FROM chunks LIMIT ?", (sample,)).fetchall()
    texts = [f"{p}" + (f" :: {s}" if s else "") + f"\n{t}" for p, s, t in rows]
    model = LocalEmbedder()
    try:
        model.embed(texts[:8])  # load the weights outside the timing
        start = time.perf_counter()
        model.embed(texts)
        per_chunk = (time.perf_counter() - start) / len(texts)
    finally:
        model.close()
    return per_chunk * chunks


def stats(xs: list[float]) -> dict[str, float]:
    return {"p50_ms": round(pct(xs, 50), 2), "p95_ms": round(pct(xs, 95), 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--commits", type=int, default=20_000)
    ap.add_argument("--files", type=int, default=1_000)
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--range-lines", type=int, default=60)
    ap.add_argument("--limit", type=int, default=50)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    log = logging.getLogger("history_bench")
    # Builds use a hash embedder (µs per text) so the run measures what is not embedding;
    # the local model's time for the same chunks is extrapolated from a timed sample.
    embedder = HashEmbedder(384)
    result: dict[str, Any] = {}
    lat: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        lat.setdefault(name, []).append(seconds)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repo = root / "repo.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(repo)], check=True)
        gen = Generator(args.files)
        start = time.perf_counter()
        fast_import(repo, gen.stream(args.commits), root / "marks")
        result["generate_s"] = round(time.perf_counter() - start, 1)
        log.info("generated %d commits in %.0f s", args.commits, result["generate_s"])

        stores = {"index": root / "store", "git": root / "store-nohistory"}
        settings = Settings.from_env({}, store={"path": stores["index"]})
        reporter = progress.Reporter()
        start = time.perf_counter()
        built = pipeline.build(settings, str(repo), embedder, reporter=reporter)  # type: ignore[arg-type]
        wall = time.perf_counter() - start
        result["build"] = build_row(built, wall, reporter.timings, stores["index"])
        log.info("build: %s", json.dumps(result["build"]))

        # The same generation without history/ (what a store built before it holds):
        # a merge of a copy with history off re-publishes it without re-embedding.
        shutil.copytree(stores["index"], stores["git"])
        pipeline.merge(
            Settings.from_env({}, store={"path": stores["git"]}, index={"history": False})
        )

        generation = Store(stores["index"]).current()
        mirror = Store(stores["index"]).mirror_path
        commit = built.commit
        index = history_index.HistoryIndex.open(generation.path, commit)
        assert index is not None
        rng = random.Random(11)
        blamed = sorted(p for p in gen.files if index.blamed_blob(p) is not None)
        sample = rng.sample(blamed, min(args.samples, len(blamed)))
        ranges = {}
        for p in sample:
            n = len(gen.files[p])
            s = rng.randint(1, max(1, n - args.range_lines + 1))
            ranges[p] = (s, min(n, s + args.range_lines - 1))

        # In-process: the searcher's own client over the generation's worktree, no HTTP.
        worktree = worktree_mod.materialise(mirror, commit, root / "worktrees")
        client = history_mod.AsyncGitClient(mirror, index=index, worktree=worktree)
        for _ in range(5):
            for p in sample:
                s, e = ranges[p]
                add("blame_range in-process (index)", timed(client.blame_sync, commit, p, s, e))
                add(
                    "file_history in-process (index)",
                    timed(client.history_sync, commit, p, args.limit, follow=True),
                )

        nograph = root / "mirror-no-graph.git"
        shutil.copytree(mirror, nograph)
        shutil.rmtree(nograph / "objects" / "info" / "commit-graphs", ignore_errors=True)
        (nograph / "objects" / "info" / "commit-graph").unlink(missing_ok=True)
        fmt = "--format=%H%x1f%an%x1f%ae%x1f%aI%x1f%s%x1e"
        n = f"-n{args.limit}"
        for p in sample:
            s, e = ranges[p]
            for label, where, graph in (("", mirror, True), (" no commit-graph", nograph, False)):
                blame = ("blame", "--porcelain", "-L", f"{s},{e}", commit, "--", p)
                follow = ("log", "--follow", n, fmt, commit, "--", p)
                plain = ("log", n, fmt, commit, "--", p)
                add(f"blame raw git{label}", timed(git, where, *blame, graph=graph))
                add(f"history raw git log --follow{label}", timed(git, where, *follow, graph=graph))
                add(
                    f"history raw git log, no --follow{label}",
                    timed(git, where, *plain, graph=graph),
                )
        for kind, store in stores.items():
            with Server(store) as server, httpx.Client(base_url=server.url, timeout=300) as c:
                warm_up(c)
                for _rep in range(5 if kind == "index" else 1):
                    for p in sample:
                        s, e = ranges[p]
                        body = {"path": p, "start_line": s, "end_line": e}
                        hbody = {"path": p, "limit": args.limit}
                        add(f"blame_range REST ({kind})", timed(post, c, "/v1/blame_range", body))
                        add(
                            f"file_history REST ({kind})", timed(post, c, "/v1/file_history", hbody)
                        )
        result["latency"] = {k: {**stats(v), "n": len(v)} for k, v in lat.items()}
        log.info("latency: %s", json.dumps(result["latency"]))

        # 100 new commits, then an incremental update of the indexed store.
        fast_import(repo, gen.stream(100, tip=gen.tip), root / "marks")
        reporter = progress.Reporter()
        start = time.perf_counter()
        updated = pipeline.update(settings, embedder, merge_threshold=0, reporter=reporter)  # type: ignore[arg-type]
        t = dict(reporter.timings)
        result["update_100"] = {
            "wall_s": round(time.perf_counter() - start, 2),
            "history_walk_s": round(t.get("history_walk", 0.0), 2),
            "history_blame_s": round(t.get("history_blame", 0.0), 2),
            "timings": {k: round(v, 2) for k, v in t.items()},
            "chunks": updated.chunks,
        }
        log.info("update: %s", json.dumps(result["update_100"]))
    rows = [{"what": k, **v} for k, v in result["latency"].items()]
    meta = {
        "command": "nice python -m benchmarks.history_bench "
        f"--commits {args.commits} --files {args.files} --samples {args.samples}",
        "repository": f"{args.commits} commits, {args.files} files (git fast-import)",
        "range_lines": args.range_lines,
        "history_limit": args.limit,
        "generate_s": result["generate_s"],
        "build": result["build"],
        "update_100": result["update_100"],
        "cpus_available": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg(),
    }
    write_results("history", rows, meta)
    return 0


def build_row(built: Any, wall: float, timings: dict[str, float], store: Path) -> dict[str, Any]:
    t = dict(timings)
    gen_dir = Store(store).current().path
    history_s = t.get("history_walk", 0.0) + t.get("history_blame", 0.0)
    without_embed = wall - t.get("embed", 0.0)
    sizes = {
        rel: (gen_dir / rel).stat().st_size
        for rel in (history_index.COMMITS_FILE, history_index.BLAME_FILE)
    }
    tables = history_index.read_tables(gen_dir, built.commit)
    assert tables is not None
    assert tables[1] is not None
    commits, blame = tables
    lines = len(blame.lines) // 4
    est_embed = embed_estimate(gen_dir, built.chunks)
    return {
        "wall_s": round(wall, 1),
        "without_embed_s": round(without_embed, 1),
        "history_walk_s": round(t.get("history_walk", 0.0), 1),
        "history_blame_s": round(t.get("history_blame", 0.0), 1),
        "history_pct_of_build_without_embed": round(100 * history_s / without_embed, 1),
        "local_model_embed_s_est": round(est_embed, 1),
        "history_vs_local_embed": round(history_s / est_embed, 3),
        "timings": {k: round(v, 2) for k, v in t.items()},
        "files_indexed": built.files,
        "files_blamed": len(blame.paths),
        "chunks": built.chunks,
        "commits": len(commits.shas) // 20,
        "blamed_lines": lines,
        "commits_bytes": sizes[history_index.COMMITS_FILE],
        "blame_bytes": sizes[history_index.BLAME_FILE],
        "blame_bytes_per_line": round(sizes[history_index.BLAME_FILE] / lines, 2),
        "history_bytes_per_line": round(sum(sizes.values()) / lines, 2),
    }


if __name__ == "__main__":
    raise SystemExit(main())
