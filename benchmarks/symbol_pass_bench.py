"""The symbol pass alone, in process: extraction over parsed trees, then the writer.

Parses every Python file of a tree once, then times ``extraction.extract`` over all of
them and ``symbols.write`` of the result, best of ``--repeats`` each, in CPU seconds of
this process. For A/B runs, interleave it with another checkout's ``src`` on
``PYTHONPATH``::

    PYTHONPATH=src python -m benchmarks.symbol_pass_bench
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.symbols_oracle_bench import SITE_PACKAGES
from codeintel.core.store import symbols as symbols_store
from codeintel.indexer import extraction, languages

SITE_SYMPY = SITE_PACKAGES / "sympy"
"""sympy as installed: the real files the cost benchmark builds (the retrieval corpus's
copy has its docstrings and comments blanked)."""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=SITE_SYMPY)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    parser = languages.parser_for("python")
    assert parser is not None
    files = [
        (str(p.relative_to(args.root)), p.read_bytes()) for p in sorted(args.root.rglob("*.py"))
    ]
    trees = [(rel, parser.parse(source), source) for rel, source in files]
    extract_cpu, write_cpu = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            started = time.process_time()
            batch = extraction.Batch()  # as the build does (corpus.read_corpus)
            found = []
            for rel, tree, source in trees:
                found.append(batch.add(rel, "python", tree, source))
            batch.flush()
            extract_cpu.append(time.process_time() - started)
            started = time.process_time()
            symbols_store.write(Path(tmp) / f"symbols-{repeat}.sqlite", found)
            write_cpu.append(time.process_time() - started)
    print(
        f"files {len(files)} extract {min(extract_cpu):.2f} write {min(write_cpu):.2f} "
        f"CPU s, load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
