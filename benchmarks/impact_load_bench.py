"""Generation load with a stored impact index against one read at load, and many stores in one process.

    python -m benchmarks.impact_load_bench --store STORE [--base-src DIR] [--rounds 3] [--stores 4]

Each measurement runs in a fresh process (``PYTHONPATH`` = this checkout's ``src``, or
``--base-src`` for the code before the change), as a searcher loads a generation: verify
the manifest's checksums, open ``chunks.sqlite``, :meth:`ChunkDB.prepare_lexical`; then
the sympy lexical queries (every ``nl``, ``ident`` and ``words`` query, k=20) are
answered once. Reported per process: seconds to verify, seconds to prepare, and the
process's RSS split into private (``RssAnon``) and file-backed (``RssFile``, pages of
mapped files: shared with every other process mapping them) before and after preparing
and after the queries, plus PSS.

``--stores N`` copies the live generation's ``chunks.sqlite`` (and ``chunks.impact``
when present) into N separate directories (no hard links: N different files, as N
repositories of a fleet searcher are) and prepares all N in one process.

Variants, interleaved round by round (ratios within a round are what to quote on a
shared machine): ``base`` (``--base-src``: reads the FTS index at load),
``branch`` (this code: maps ``chunks.impact``), ``branch-nofile`` (this code, the
file hidden: the fallback for generations written before format 7).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import write_results

SRC = Path(__file__).resolve().parents[1] / "src"
QUERIES = Path("/work/benchcache/corpora/sympy.queries.json")

CHILD = r"""
import json, sys, time
from pathlib import Path

def mem():
    status = dict(l.split(":", 1) for l in Path("/proc/self/status").read_text().splitlines())
    rollup = dict(
        l.split(":", 1) for l in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]
    )
    kb = lambda v: int(v.strip().split()[0]) / 1024
    return {"anon": kb(status["RssAnon"]), "file": kb(status["RssFile"]), "pss": kb(rollup["Pss"])}

from codeintel.core.store.chunks import ChunkDB
from codeintel.core.store.generation import Generation

generation, dbs, queries = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
out = {}
t = time.perf_counter()
if generation:
    Generation(Path(generation), verify=True)
out["verify_s"] = time.perf_counter() - t
opened = [ChunkDB.open(Path(p)) for p in dbs]
opened[0].count()
out["before"] = mem()
t = time.perf_counter()
ready = [db.prepare_lexical() for db in opened]
out["prepare_s"] = time.perf_counter() - t
out["ready"] = all(ready)
out["mapped"] = all(
    db._impact is not None and not db._impact._positions.flags.writeable for db in opened
)
out["prepared"] = mem()
t = time.perf_counter()
for db in opened:
    for q in queries:
        db.lexical(q, 20)
out["queries_s"] = time.perf_counter() - t
out["queried"] = mem()
print(json.dumps(out))
"""


def _queries() -> list[str]:
    sets = json.loads(QUERIES.read_text())["queries"]
    return [str(q["text"]) for name in ("nl", "ident", "words") for q in sets[name]]


def _child(src: Path, generation: str, dbs: list[Path], queries: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            generation,
            json.dumps([str(p) for p in dbs]),
            json.dumps(queries),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"the measuring process failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _copies(live: Path, n: int, root: Path, with_file: bool) -> list[Path]:
    made = []
    for i in range(n):
        d = root / f"{'with' if with_file else 'without'}-{i}"
        d.mkdir(parents=True)
        shutil.copyfile(live / "chunks.sqlite", d / "chunks.sqlite")
        if with_file and (live / "chunks.impact").is_file():
            shutil.copyfile(live / "chunks.impact", d / "chunks.impact")
        made.append(d / "chunks.sqlite")
    return made


def _load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--store", type=Path, required=True, help="a store whose live generation has chunks.impact"
    )
    parser.add_argument("--base-src", type=Path, help="src of the code before the change")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stores", type=int, default=4, help="stores in one process (0: skip)")
    parser.add_argument("--out", default="impact_load")
    args = parser.parse_args()
    live = args.store / "generations" / (args.store / "CURRENT").read_text().strip()
    queries = _queries()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="impact-load-") as tmp:
        hidden = _copies(live, 1, Path(tmp) / "one", with_file=False)
        fleet_with = _copies(live, args.stores, Path(tmp) / "fleet", with_file=True)
        fleet_without = _copies(live, args.stores, Path(tmp) / "fleet", with_file=False)
        variants: list[tuple[str, Path, str, list[Path]]] = []
        if args.base_src:
            variants.append(("base", args.base_src, str(live), [live / "chunks.sqlite"]))
        variants += [
            ("branch", SRC, str(live), [live / "chunks.sqlite"]),
            ("branch-nofile", SRC, "", hidden),
        ]
        if args.stores:
            if args.base_src:
                variants.append((f"base x{args.stores}", args.base_src, "", fleet_without))
            variants.append((f"branch x{args.stores}", SRC, "", fleet_with))
        for r in range(args.rounds):
            order = variants if r % 2 == 0 else variants[::-1]
            for name, src, generation, dbs in order:
                load = _load_avg()
                got = _child(src, generation, dbs, queries)
                row = {
                    "round": r + 1,
                    "variant": name,
                    "load": load,
                    "stores": len(dbs),
                    "mapped": got["mapped"],
                    "verify_s": round(got["verify_s"], 3),
                    "prepare_s": round(got["prepare_s"], 4),
                    "queries_s": round(got["queries_s"], 3),
                    "anon_before_mb": round(got["before"]["anon"], 1),
                    "anon_prepared_mb": round(got["prepared"]["anon"], 1),
                    "anon_queried_mb": round(got["queried"]["anon"], 1),
                    "file_prepared_mb": round(got["prepared"]["file"], 1),
                    "file_queried_mb": round(got["queried"]["file"], 1),
                    "pss_queried_mb": round(got["queried"]["pss"], 1),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    write_results(
        args.out,
        rows,
        {
            "store": str(args.store),
            "generation": live.name,
            "queries": len(queries),
            "base_src": str(args.base_src),
        },
    )


if __name__ == "__main__":
    main()
