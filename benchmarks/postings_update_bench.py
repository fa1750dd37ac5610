"""A schema-2 update's postings: merging the new files' into the parent's, against sorting all.

Writes the symbols of every Python file of a tree once (the parent, kept in ``--parent``
between runs), then edits ``--changed`` files (a seeded pick; a line appended to each)
and times, in CPU seconds of this process, interleaved ``--repeats`` times after a round not counted:

* ``merge``: the postings of the update as it is written now
  (``symbols_postings.save_update``: the parent's postings without the changed files,
  merged with theirs);
* ``sort``: the same postings by a full sort of every occurrence (``save`` of the
  parent's occurrences without the changed files plus theirs), what an update did before;
* ``update``: the whole ``symbols.update`` (database copy, row deletes and inserts, postings);
  ``--only-update`` times it alone, for A/B runs against another checkout's ``src``.

Both postings files are checked to hold the same bytes. Prints JSON and writes
``benchmarks/results/postings_update.{json,md}``::

    PYTHONPATH=src python -m benchmarks.postings_update_bench --root /work/benchcache/corpora/sympy
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from codeintel.core.store import symbols as symbols_store
from codeintel.core.store import symbols_postings
from codeintel.indexer import chunking

RESULTS = Path(__file__).resolve().parent / "results"


def extracted(root: Path, paths: list[str], edit: bool) -> list[symbols_store.FileSymbols]:
    out = []
    for rel in paths:
        text = (root / rel).read_text(errors="replace")
        if edit:
            text += "\n\n_bench_edit = len(__name__)\n"
        found = chunking.chunk_and_extract(rel, text)[1]
        if found is not None:
            out.append(found)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path("/work/benchcache/corpora/sympy"))
    ap.add_argument("--parent", type=Path, default=Path(tempfile.gettempdir()) / "postings-parent")
    ap.add_argument("--changed", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-write", action="store_true", help="print only, write no results")
    ap.add_argument(
        "--only-update",
        action="store_true",
        help="time the whole update alone and print its median (runs on any checkout's src)",
    )
    args = ap.parse_args(argv)
    paths = sorted(str(p.relative_to(args.root)) for p in args.root.rglob("*.py"))
    parent_db = args.parent / symbols_store.SYMBOLS_DB
    if not parent_db.is_file():
        args.parent.mkdir(parents=True, exist_ok=True)
        symbols_store.write(parent_db, extracted(args.root, paths, edit=False))
    changed = sorted(random.Random(7).sample(paths, args.changed))
    added = extracted(args.root, changed, edit=True)
    if args.only_update:
        print(json.dumps({"update_cpu_s_median": round(_update_median(args, changed, added), 4)}))
        return
    parent = symbols_store.open_postings(parent_db)
    times: dict[str, list[float]] = {"merge": [], "sort": [], "update": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # The changed files' rows as the update stages them: from an update's own database.
        symbols_store.update(parent_db, work / "symbols.sqlite", changed, added)
        child = symbols_store.open_postings(work / "symbols.sqlite")
        conn = sqlite3.connect(work / "symbols.sqlite")
        new_ids = [
            conn.execute("SELECT id FROM files WHERE path = ?", (p,)).fetchone()[0] for p in changed
        ]
        old_ids = sqlite3.connect(parent_db)
        dropped = [
            old_ids.execute("SELECT id FROM files WHERE path = ?", (p,)).fetchone()[0]
            for p in changed
        ]
        (names,) = conn.execute("SELECT max(id) FROM names").fetchone()
        conn.close()
        old_ids.close()
        every = child.everything()
        new_rows = symbols_postings.Occurrences(
            *(column[np.isin(every.files, new_ids)] for column in every)
        )
        for repeat in range(args.repeats + 1):  # the first round pages the parent in: not counted
            for name in ("merge", "sort", "update"):
                target = work / name
                target.mkdir(exist_ok=True)
                started = time.process_time()
                if name == "merge":
                    symbols_postings.save_update(
                        target / "p", parent, dropped, new_rows, int(names), "t"
                    )
                elif name == "sort":
                    full = symbols_postings.Occurrences.concatenate(
                        [parent.everything().without_files(dropped), new_rows]
                    )
                    symbols_postings.save(target / "p", full, int(names), "t")
                else:
                    symbols_store.update(parent_db, target / "symbols.sqlite", changed, added)
                if repeat:
                    times[name].append(time.process_time() - started)
                if name == "update":
                    shutil.rmtree(target)
        same = (work / "merge" / "p").read_bytes() == (work / "sort" / "p").read_bytes()
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "root": str(args.root),
        "changed_files": changed,
        "occurrences": len(parent.columns[0]),
        "postings": len(parent.files),
        "new_occurrences": len(new_rows.names),
        "repeats": args.repeats,
        "cpu_s_median": {k: round(v, 4) for k, v in medians.items()},
        "cpu_s_min": {k: round(min(v), 4) for k, v in times.items()},
        "merge_over_sort": round(medians["merge"] / medians["sort"], 3),
        "same_bytes": same,
        "loadavg": os.getloadavg(),
    }
    print(json.dumps(result, indent=2))
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "postings_update.json").write_text(json.dumps(result, indent=2) + "\n")
        rows = "\n".join(
            f"| {k} | {medians[k]:.4f} | {min(times[k]):.4f} |" for k in ("merge", "sort", "update")
        )
        (RESULTS / "postings_update.md").write_text(
            f"# An update's postings, {args.changed} changed files of {args.root.name}\n\n"
            f"{result['occurrences']:,} occurrences in {result['postings']:,} postings; "
            f"{result['new_occurrences']:,} new. CPU seconds, {args.repeats} interleaved "
            f"repeats, load average {result['loadavg'][0]:.2f}. Same bytes: {same}.\n\n"
            f"| step | median s | min s |\n|---|---|---|\n{rows}\n\n"
            f"merge / sort (median): {result['merge_over_sort']}\n"
        )


def _update_median(
    args: argparse.Namespace, changed: list[str], added: list[symbols_store.FileSymbols]
) -> float:
    parent_db = args.parent / symbols_store.SYMBOLS_DB
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats + 1):
            target = Path(tmp) / f"u{repeat}"
            target.mkdir()
            started = time.process_time()
            symbols_store.update(parent_db, target / "symbols.sqlite", changed, added)
            if repeat:
                times.append(time.process_time() - started)
            shutil.rmtree(target)
    return statistics.median(times)


if __name__ == "__main__":
    main()
