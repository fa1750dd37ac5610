"""The navigation index against independent oracles, and what it costs to build.

Three parts (``--part``), each writing ``results/symbols-<part>.{json,md}``:

* **definitions**: universal-ctags (the Debian package) on real repositories in
  several languages. Recall of ctags' function, class and method tags matched by
  path, name and line; every miss is listed. Precision is reported the other way:
  our function/class/method definitions that ctags has no tag of any kind for.
* **references**: a Python ``ast`` oracle on a repository past 30K chunks (sympy
  from this venv). Every ``Name`` and ``Attribute`` in ``Load`` context is an
  occurrence the index must hold (recall); no occurrence may sit inside a comment
  or a string (checked with :mod:`tokenize`; f-string replacement fields are code).
  Also end to end through ``symbols.sqlite`` and :class:`SymbolIndex`: sampled
  names' reference pages are walked and checked against the oracle, and timed.
* **cost**: a build of the same repository without embeddings (hash embedder,
  its stage subtracted) through ``pipeline.build``, next to the extraction's own
  time (the chunk pass with and without it, interleaved) and the bytes of
  ``symbols.sqlite``, ``chunks.sqlite`` and the history index.

    python -m benchmarks.symbols_oracle_bench --part definitions [--repos gin,ripgrep,ky,click]
    python -m benchmarks.symbols_oracle_bench --part references
    python -m benchmarks.symbols_oracle_bench --part cost

Repositories come from ``--mirrors`` (bare clones, e.g. the ``fetch`` tool's
``/work/.mirror/<owner>+<name>/repo``) or from this venv's site-packages; they are
exported to a temp directory and never committed.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import random
import resource
import shutil
import subprocess
import tempfile
import time
import tokenize
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_results
from benchmarks.update_bench import HashEmbedder
from codeintel.core import globs
from codeintel.core.settings import Settings
from codeintel.core.store import symbols as symbols_store
from codeintel.core.store.chunks import Chunk, ChunkDB
from codeintel.core.symbols import SymbolIndex
from codeintel.indexer import (
    chunking,
    extraction,
    languages,
    pipeline,
    progress,
    publishing,
    symbol_rules,
)

SITE_PACKAGES = Path(
    os.environ.get("CODEINTEL_BENCH_SITE_PACKAGES", "/work/main/.venv/lib/python3.11/site-packages")
)
MIRRORS = Path(os.environ.get("CODEINTEL_BENCH_MIRRORS", "/work/.mirror"))
SOURCES = {
    "gin": ("mirror", "gin-gonic+gin"),
    "ripgrep": ("mirror", "BurntSushi+ripgrep"),
    "ky": ("mirror", "sindresorhus+ky"),
    "cjson": ("mirror", "DaveGamble+cJSON"),
    "gson": ("mirror", "google+gson"),
    "express": ("mirror", "expressjs+express"),
    "click": ("site", "click"),
    "httpx": ("site", "httpx"),
}
"""Name → where its files come from (a mirror directory, or a site-packages package)."""

CTAGS_KINDS = frozenset({"function", "func", "method", "class"})
"""ctags kinds compared: functions, methods and classes (and Python's methods, ``member``;
Go's ``member`` is a struct field)."""
OUR_KINDS = frozenset({"function", "method", "class", "constructor"})
EXTRA_LISTED = 60
"""Definitions ctags lacks listed per repository in the detail file (all misses are listed)."""


def uptime() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def export(name: str, work: Path) -> tuple[Path, str]:
    """The repository's files in ``work/name``; returns (directory, commit or version)."""
    kind, where = SOURCES[name]
    target = work / name
    target.mkdir(parents=True)
    if kind == "mirror":
        repo = MIRRORS / where / "repo"
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", "HEAD"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
        return target, commit
    shutil.copytree(
        SITE_PACKAGES / where, target / where, ignore=shutil.ignore_patterns("__pycache__")
    )
    return target, _version(where)


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return f"{package}=={metadata.version(package)}"
    except metadata.PackageNotFoundError:
        return package


def indexed_files(root: Path) -> list[str]:
    """Files the index would give symbols: a grammar, not excluded by default, text."""
    excluded = globs.compile_many(tuple(Settings.from_env({}).index.exclude_globs))
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        rel = path.relative_to(root).as_posix()
        if languages.language_for(rel) not in symbol_rules.RULES:
            continue
        if excluded is not None and excluded.match(rel):
            continue
        out.append(rel)
    return out


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


# -- definitions -------------------------------------------------------------------------


def ctags_tags(root: Path, files: list[str]) -> list[dict[str, Any]]:
    listing = root / ".ctags-files"
    listing.write_text("\n".join(files) + "\n")
    out = subprocess.run(
        ["ctags", "--output-format=json", "--fields=+nKZl", "-f", "-", "-L", str(listing)],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    listing.unlink()
    tags = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [t for t in tags if t.get("_type") == "tag"]


def definitions(name: str, work: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    root, version = export(name, work)
    files = indexed_files(root)
    ours: dict[tuple[str, str, int], str] = {}
    by_language: Counter[str] = Counter()
    for rel in files:
        text = read_text(root / rel)
        if text is None:
            continue
        _, found = chunking.chunk_and_extract(rel, text)
        if found is None:
            continue
        for s in found.symbols:
            ours[(rel, s.name, s.line)] = s.kind
        by_language[found.language] += 1
    tags = ctags_tags(root, files)
    every_tag = {(t["path"], t["name"], t["line"]) for t in tags}
    compared = [
        t
        for t in tags
        if t.get("kind") in CTAGS_KINDS
        or (t.get("kind") == "member" and t.get("language") == "Python")
    ]
    # ctags names anonymous functions (callbacks) AnonymousFunction<hash>: nothing to look up.
    wanted = [t for t in compared if not t["name"].startswith("AnonymousFunction")]
    misses = [t for t in wanted if (t["path"], t["name"], t["line"]) not in ours]
    extra = [key for key, kind in ours.items() if kind in OUR_KINDS and key not in every_tag]
    explained = Counter(_explain(t, root) for t in misses)
    explained.pop("", None)
    unexplained = len(misses) - sum(explained.values())
    recall = 1 - len(misses) / len(wanted) if wanted else 1.0
    ours_compared = sum(1 for kind in ours.values() if kind in OUR_KINDS)
    row = {
        "repo": name,
        "version": version,
        "languages": ",".join(f"{k}:{v}" for k, v in by_language.most_common()),
        "files": len(files),
        "ctags_anonymous_skipped": len(compared) - len(wanted),
        "ctags_defs": len(wanted),
        "matched": len(wanted) - len(misses),
        "recall": round(recall, 4),
        "misses_explained": ",".join(f"{k}:{v}" for k, v in explained.most_common()),
        "recall_unexplained_only": round(1 - unexplained / len(wanted), 4) if wanted else 1.0,
        "ours_defs": ours_compared,
        "ours_not_in_ctags": len(extra),
        "precision_vs_ctags": round(1 - len(extra) / ours_compared, 4) if ours_compared else 1.0,
    }
    detail = [
        {"repo": name, "side": "miss", "path": t["path"], "name": t["name"], "line": t["line"],
         "kind": t.get("kind"), "scope": t.get("scope", ""),
         "source": _line(root / t["path"], t["line"])}
        for t in misses
    ] + [
        {"repo": name, "side": "extra", "path": p, "name": n, "line": line, "kind": ours[(p, n, line)],
         "source": _line(root / p, line)}
        for p, n, line in sorted(extra)[:EXTRA_LISTED]
    ]  # fmt: skip
    return row, detail


def _explain(tag: dict[str, Any], root: Path) -> str:
    """Why a ctags definition is not ours, for the classes of misses we understand."""
    source = _line(root / tag["path"], tag["line"])
    if tag.get("language") == "JavaScript" and tag["kind"] == "class" and "class" not in source:
        return "js_object_literal"  # ctags calls `var X = {…}` a class
    if tag.get("language") == "C" and not source.startswith(tuple(_C_TYPES)) and "(" in source:
        first = source.split("(", 1)[0].strip()
        if first == tag["name"] and first.isupper():
            return "c_macro_invocation"  # `TEST(group, name) {…}`: a macro, not a function
    if tag.get("language") == "C" and tag["name"] == "main" and "CJSON_CDECL" in source:
        return "c_calling_convention_macro"  # `int CJSON_CDECL main(void)` misparses
    if tag.get("language") == "JavaScript" and ("[" in source.split("=")[0] or "exports" in source):
        return "js_computed_or_exports"
    if _in_parse_error(root / tag["path"], tag["line"]):
        return "tree_sitter_parse_error"  # e.g. C macros without `;` inside `#ifdef`
    return ""


def _in_parse_error(path: Path, line: int) -> bool:
    """Whether tree-sitter's parse of ``path`` has an ERROR node around ``line``."""
    language = languages.language_for(path.name)
    parser = languages.parser_for(language)
    text = read_text(path)
    if parser is None or text is None:
        return False
    pending = [parser.parse(text.encode()).root_node]
    while pending:
        node = pending.pop()
        if node.start_point.row + 1 > line or node.end_point.row + 1 < line:
            continue
        if node.type == "ERROR" or node.is_missing:
            return True
        pending.extend(node.children)
    return False


_C_TYPES = ("int ", "void ", "static ", "char ", "const ", "unsigned ", "double ", "float ")


def _line(path: Path, line: int) -> str:
    try:
        return (
            path.read_text(encoding="utf-8", errors="replace").split("\n")[line - 1].strip()[:120]
        )
    except (OSError, IndexError):
        return ""


# -- references --------------------------------------------------------------------------


def python_files(package: str) -> list[tuple[str, str]]:
    base = SITE_PACKAGES / package
    out = []
    for path in sorted(base.rglob("*.py")):
        text = read_text(path)
        if text is not None:
            out.append((f"{package}/{path.relative_to(base).as_posix()}", text))
    return out


def mirror_files(repo: Path) -> list[tuple[str, str]]:
    """The tracked files of a checkout that have a grammar, as text."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True
    ).stdout.split(b"\0")
    out = []
    for raw in listed:
        rel = raw.decode("utf-8", "surrogateescape")
        if rel and languages.grammar_for(languages.language_for(rel)) is not None:
            text = read_text(repo / rel)
            if text is not None:
                out.append((rel, text))
    return out


def ast_loads(text: str) -> set[tuple[int, int, str]] | None:
    """(line, byte column, identifier) of every Name and Attribute loaded."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    out: set[tuple[int, int, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            out.add((node.lineno, node.col_offset, node.id))
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Load)
            and node.end_lineno is not None
            and node.end_col_offset is not None
        ):
            out.add((node.end_lineno, node.end_col_offset - len(node.attr.encode()), node.attr))
    return out


def non_code_ranges(text: str) -> tuple[list[tuple[tuple[int, int], tuple[int, int]]], int]:
    """Comment and plain-string token ranges ((line, col) start, end), f-strings apart."""
    ranges = []
    fstrings = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                ranges.append((tok.start, tok.end))
            elif tok.type == tokenize.STRING:
                prefix = tok.string[: tok.string.find(tok.string[-1])].lower()
                if "f" in prefix:
                    fstrings += 1  # replacement fields hold code; checked against ast below
                else:
                    ranges.append((tok.start, tok.end))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        pass
    return ranges, fstrings


def _char_col(line_text: str, byte_col: int) -> int:
    return len(line_text.encode("utf-8")[:byte_col].decode("utf-8", errors="replace"))


def references(
    package: str, work: Path, samples: int, seed: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    files = python_files(package)
    chunks = 0
    oracle_total = found_total = 0
    in_comment_or_string = 0
    misses: list[dict[str, Any]] = []
    unparsable = 0
    per_name: Counter[str] = Counter()
    extracted = []
    rows: list[Chunk] = []  # chunks.sqlite gives the references' line text
    for rel, text in files:
        drafts, found = chunking.chunk_and_extract(rel, text)
        chunks += len(drafts)
        rows += publishing.chunk_rows(np.arange(len(rows), len(rows) + len(drafts)), drafts)
        if found is None:
            continue
        extracted.append(found)
        ours = set(
            zip(found.lines.tolist(), found.columns.tolist(), found.occurrence_names(), strict=True)
        )
        loads = ast_loads(text)
        if loads is None:
            unparsable += 1
            continue
        oracle_total += len(loads)
        hit = loads & ours
        found_total += len(hit)
        for line, col, name in sorted(loads - hit)[:5]:
            if len(misses) < 200:
                misses.append({"path": rel, "line": line, "col": col, "name": name,
                               "source": text.split("\n")[line - 1].strip()[:120]})  # fmt: skip
        per_name.update(name for _, _, name in loads)
        # positions inside comments and plain strings
        ranges, _ = non_code_ranges(text)
        if ranges:
            lines = text.split("\n")
            starts = sorted(ranges)
            for line, col, _name in ours:
                char = _char_col(lines[line - 1], col)
                if any(s <= (line, char) < e for s, e in _covering(starts, line)):
                    in_comment_or_string += 1
    # end to end: symbols.sqlite, SymbolIndex.references, paged
    db = work / "sym"
    db.mkdir()
    chunk_db = ChunkDB.create(db / "chunks.sqlite")
    chunk_db.add(rows)
    chunk_db.commit()
    chunk_db.close()
    del rows
    started = time.perf_counter()
    symbols_store.write(db / symbols_store.SYMBOLS_DB, extracted)
    write_s = time.perf_counter() - started
    rng = random.Random(seed)
    common = [n for n, c in per_name.items() if 10 <= c <= 1000]
    names = rng.sample(sorted(common), min(samples, len(common)))
    top = [n for n, _ in per_name.most_common(5)]
    clock = _Clock()
    checked = agree = 0
    with SymbolIndex.open(db) as index:  # type: ignore[union-attr]
        for bucket, group in (("refs_le1000", names), ("refs_top5", top)):
            for name in group:
                page = clock.time(bucket, lambda n=name: index.references(n, limit=50))
                if bucket == "refs_le1000":
                    walked = {
                        (g.path, o.line, o.column) for g in page.groups for o in g.occurrences
                    }
                    cursor = page.cursor
                    while cursor:
                        more = index.references(name, limit=1000, cursor=cursor)
                        walked |= {
                            (g.path, o.line, o.column) for g in more.groups for o in g.occurrences
                        }
                        cursor = more.cursor
                    checked += 1
                    agree += len(walked) == page.total
    lookups = api_latency(db, extracted, rng)
    row = {
        "repo": package,
        "version": _version(package),
        "files": len(files),
        "chunks": chunks,
        **lookups,
        "unparsable_by_ast": unparsable,
        "oracle_loads": oracle_total,
        "found": found_total,
        "recall": round(found_total / oracle_total, 5) if oracle_total else 1.0,
        "hits_in_comments_or_strings": in_comment_or_string,
        "symbols_db_write_s": round(write_s, 2),
        "symbols_db_mb": round((db / symbols_store.SYMBOLS_DB).stat().st_size / 1e6, 1),
        "paged_walks_complete": f"{agree}/{checked}",
        **clock.summary(),
        "top5_names": ",".join(f"{n}:{per_name[n]}" for n in top),
        "load": uptime(),
    }
    return row, misses


class _Clock:
    """Wall and CPU time of each call: on a shared, loaded machine the wall time is mostly
    waiting for a core, the process CPU time is the work."""

    def __init__(self) -> None:
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}

    def time(self, key: str, call: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        out = call()
        self.cpu.setdefault(key, []).append(time.process_time() - cpu)
        self.wall.setdefault(key, []).append(time.perf_counter() - wall)
        return out

    def summary(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key in self.wall:
            out[f"{key}_p50_ms"] = _pct(self.wall[key], 50)
            out[f"{key}_p95_ms"] = _pct(self.wall[key], 95)
            out[f"{key}_cpu_p95_ms"] = _pct(self.cpu[key], 95)
        return out


def api_latency(
    db: Path, extracted: list[symbols_store.FileSymbols], rng: random.Random, n: int = 200
) -> dict[str, Any]:
    """In-process latency of find (plain, qualified, glob) and outline on sampled names."""
    definitions = [(f.path, s) for f in extracted for s in f.symbols]
    picked = [definitions[i] for i in rng.sample(range(len(definitions)), min(n, len(definitions)))]
    paths = rng.sample(sorted({f.path for f in extracted}), min(n, len(extracted)))
    clock = _Clock()
    found_first = 0
    with SymbolIndex.open(db) as index:  # type: ignore[union-attr]
        for path, symbol in picked:
            clock.time("find_plain", lambda s=symbol: index.find(s.name, limit=10))
            clock.time("find_glob", lambda s=symbol: index.find(s.name[:3] + "*", limit=10))
            found = clock.time("find_qualified", lambda s=symbol: index.find(s.qualname, limit=10))
            found_first += any(f.path == path and f.line == symbol.line for f in found)
        for path in paths:
            clock.time("outline", lambda p=path: index.outline(p))
    return {
        "symbols": len(definitions),
        "qualified_found_in_top10": f"{found_first}/{len(picked)}",
        **clock.summary(),
    }


def _covering(
    ranges: list[tuple[tuple[int, int], tuple[int, int]]], line: int
) -> Iterator[tuple[tuple[int, int], tuple[int, int]]]:
    for start, end in ranges:
        if start[0] > line:
            break
        if end[0] >= line:
            yield start, end


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return round(ordered[index] * 1000, 2)


# -- cost --------------------------------------------------------------------------------


def cost(package: str, work: Path, repeats: int, mirror: str | None = None) -> dict[str, Any]:
    """The symbol pass next to a build without embeddings: of ``package``'s files from
    site-packages committed once (no history to speak of: the symbol pass's worst case
    relative to the build), or, with ``mirror``, of that real repository with its history.
    """
    repo = work / "repo"
    if mirror is not None:
        subprocess.run(
            ["git", "clone", "-q", str(MIRRORS / mirror / "repo"), str(repo)], check=True
        )
        files = mirror_files(repo)
        package = mirror
    else:
        files = python_files(package)
        for rel, text in files:
            target = repo / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
               "GIT_COMMITTER_EMAIL": "b@b", "GIT_AUTHOR_DATE": "2020-01-01T00:00:00",
               "GIT_COMMITTER_DATE": "2020-01-01T00:00:00"}  # fmt: skip
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
        subprocess.run(["git", "add", "-A"], cwd=repo, check=True, env=env)
        subprocess.run(["git", "commit", "-qm", "import"], cwd=repo, check=True, env=env)
    # The chunk pass alone, with and without extraction, interleaved on the same texts.
    # CPU time of this process: on a shared machine the wall time is mostly waiting.
    plain: list[float] = []
    full: list[float] = []
    extracted: list[symbols_store.FileSymbols] = []
    for _ in range(repeats):
        for extract, out in ((False, plain), (True, full)):
            started = time.process_time()
            batch = extraction.Batch()  # as corpus.read_corpus finds occurrences
            kept = [
                chunking.chunk_and_extract(rel, text, symbols=extract, batch=batch)
                for rel, text in files
            ]
            batch.flush()
            out.append(time.process_time() - started)
            if extract:
                extracted = [found for _, found in kept if found is not None]
            del kept
    writes: list[float] = []  # best of as many writes as chunk passes, as the extraction
    for repeat in range(repeats):
        started = time.process_time()
        symbols_store.write(work / f"symbols-alone-{repeat}.sqlite", extracted)
        writes.append(time.process_time() - started)
    write_cpu = min(writes)
    del extracted
    # A whole build without embeddings: the hash embedder's stage subtracted; CPU counted
    # for this process and its children (git, the history index's blame processes).
    settings = Settings.from_env({}, store={"path": work / "store"})
    reporter = progress.Reporter()
    started, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
    result = pipeline.build(settings, str(repo), HashEmbedder(384), reporter=reporter)  # type: ignore[arg-type]
    build_s = time.perf_counter() - started
    build_cpu = time.process_time() - cpu + _children_cpu() - children
    timings = dict(reporter.timings)
    texts = [f"{rel}\n{text}" for rel, text in files]
    started = time.process_time()
    for i in range(0, len(texts), 512):
        HashEmbedder(384).embed(texts[i : i + 512])
    embed_cpu = (time.process_time() - started) * result.chunks / max(len(texts), 1)
    gen = work / "store" / "generations" / result.generation
    extraction_cpu = min(full) - min(plain)
    no_embed_cpu = build_cpu - embed_cpu
    return {
        "repo": package,
        "files": len(files),
        "chunks": result.chunks,
        "chunk_pass_cpu_s": round(min(plain), 2),
        "chunk_pass_with_extraction_cpu_s": round(min(full), 2),
        "extraction_cpu_s": round(extraction_cpu, 2),
        "symbols_write_cpu_s": round(write_cpu, 2),
        "build_wall_s": round(build_s, 1),
        "build_cpu_s": round(build_cpu, 1),
        "embed_cpu_s_estimated": round(embed_cpu, 1),
        "build_without_embeddings_cpu_s": round(no_embed_cpu, 1),
        "symbol_overhead_cpu": round((extraction_cpu + write_cpu) / no_embed_cpu, 4),
        "history_wall_s": round(timings.get("history", 0.0), 2),
        "symbols_mb": round(_size(gen / "symbols.sqlite") / 1e6, 1),
        "symbol_postings_mb": round(_size(gen / "symbols.postings") / 1e6, 1),
        "chunks_mb": round(_size(gen / "chunks.sqlite") / 1e6, 1),
        "history_mb": round(_size(gen / "history") / 1e6, 1),
        "stages_wall": json.dumps({k: round(v, 2) for k, v in timings.items()}),
        "load": uptime(),
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["definitions", "references", "cost"], required=True)
    ap.add_argument("--repos", default="gin,ripgrep,ky,express,cjson,gson,click")
    ap.add_argument("--package", default="sympy")
    ap.add_argument(
        "--mirror", default=None, help="cost: a real repository with history (e.g. sympy+sympy)"
    )
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.part == "definitions":
            rows, detail = [], []
            for name in args.repos.split(","):
                row, more = definitions(name, work)
                rows.append(row)
                detail += more
                print(row, flush=True)
            ctags = subprocess.run(["ctags", "--version"], capture_output=True, text=True).stdout
            write_results(
                "symbols-definitions",
                rows,
                {
                    "what": "definitions vs universal-ctags, matched by path, name and line",
                    "ctags": ctags.split("\n")[0],
                    "ctags_kinds": sorted(CTAGS_KINDS),
                    "our_kinds": sorted(OUR_KINDS),
                    "load": uptime(),
                },
            )
            (Path(__file__).parent / "results" / "symbols-definitions-detail.json").write_text(
                json.dumps(detail, indent=1)
            )
        elif args.part == "references":
            row, misses = references(args.package, work, args.samples, args.seed)
            print(row, flush=True)
            write_results(
                "symbols-references",
                [row],
                {
                    "what": "occurrences vs Python ast (Name/Attribute loads); end-to-end pages",
                    "misses_sample": misses[:50],
                },
            )
        else:
            row = cost(args.package, work, args.repeats, args.mirror)
            print(row, flush=True)
            write_results(
                "symbols-cost" if args.mirror is None else "symbols-cost-history",
                [row],
                {"what": "symbol pass cost next to a build without embeddings (hash embedder)"},
            )


if __name__ == "__main__":
    main()
