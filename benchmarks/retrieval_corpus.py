"""Retrieval corpora and their queries, generated from installed packages' sources.

A corpus is the ``*.py`` files of packages in this venv, copied into a git
repository with every docstring blanked (the literal becomes ``""`` and its
other lines become empty, so line numbers do not move). The blanked text is
what gets indexed; the original docstrings become the queries, CodeSearchNet
style: the first sentence of a function's docstring asks for that function.
A second kind of query names a symbol (``parse_args``) or says its words
(``parse args``). A query's gold is the function's file and line range; a
result is a hit when it is in that file and its lines overlap the range.

Everything is derived from the files and a seed: the same venv gives the same
repository (fixed author and dates) and the same queries.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import random
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SITE_PACKAGES = Path(
    os.environ.get("CODEINTEL_BENCH_SITE_PACKAGES", "/work/main/.venv/lib/python3.11/site-packages")
)
DEFAULT_CACHE = Path(os.environ.get("CODEINTEL_BENCH_CACHE", "/work/benchcache"))

REPO_FORMAT = 1
"""Bump when the indexed copy changes (the blanking), so cached repositories are rewritten.

1: every module, class and function docstring becomes ``""`` plus empty lines."""

QUERY_FORMAT = 2
"""Bump when query extraction changes, so cached queries are drawn again.

1: first sentences (3-40 words) of non-test functions; unique names of >= 4 characters.
2: as 1, without dunder methods, functions under 3 lines, and sentences holding ``=``."""

CORPORA: dict[str, tuple[str, ...]] = {
    "web": ("httpx", "starlette", "fastapi"),
    "httpx": ("httpx",),
    "kopf": ("kopf",),
    "rich": ("rich",),
    "sympy": ("sympy",),
    "jinja2": ("jinja2",),
    "click": ("click",),
    "werkzeug": ("werkzeug",),
}
"""Corpus name -> the site-packages directories it is made of."""

SMALL = ("web", "kopf", "rich")
LARGE = ("sympy",)
TUNED = ("web", "kopf", "rich", "sympy")
"""Corpora that ranking choices (fusion weights, windows) were tuned on before issue 21."""
UNTUNED = ("jinja2", "click", "werkzeug")
"""Held out: packages no corpus above uses, generated the same way; ranking choices
are decided on these (docs/performance.md, *Retrieval quality, tuned vs untuned*)."""

QUERY_SETS = ("nl", "ident", "words")
"""``nl``: a docstring's first sentence; ``ident``: a function's name as written;
``words``: the same name split into lower-case words."""

_MIN_WORDS = 3
_MAX_WORDS = 40
_MAX_GOLD = 3
"""A docstring sentence shared by more functions than this is too generic to ask for."""

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00+0000",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00+0000",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@dataclass(frozen=True)
class Span:
    """Lines ``start..end`` (1-based, inclusive) of ``path``."""

    path: str
    start: int
    end: int


@dataclass(frozen=True)
class Query:
    text: str
    gold: tuple[Span, ...]
    symbol: str


@dataclass(frozen=True)
class Function:
    """A function or method of the original source, with its docstring."""

    path: str
    name: str
    qualname: str
    start: int
    """First line: the first decorator, else the ``def``."""
    end: int
    docstring: str | None


@dataclass
class Corpus:
    name: str
    repo_path: Path
    files: int
    queries: dict[str, list[Query]] = field(default_factory=dict)

    @property
    def nl_queries(self) -> list[Query]:
        return self.queries["nl"]

    @property
    def ident_queries(self) -> list[Query]:
        return self.queries["ident"]

    @property
    def words_queries(self) -> list[Query]:
        return self.queries["words"]


# --- blanking ---------------------------------------------------------------------


def docstring_nodes(tree: ast.AST) -> list[ast.Constant]:
    """The docstring literal of the module and of every class and function in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
        ):
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                found.append(first.value)
    return found


def blank_docstrings(source: str) -> str:
    """``source`` with each docstring replaced by ``""`` and its other lines emptied.

    Line numbers are kept: line ``n`` of the result is line ``n`` of the source
    or an empty line. Raises ``SyntaxError`` when ``source`` does not parse."""
    tree = ast.parse(source)
    lines = source.encode("utf-8").split(b"\n")  # ast columns are UTF-8 byte offsets
    for node in sorted(docstring_nodes(tree), key=lambda n: n.lineno, reverse=True):
        first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        end_col = node.end_col_offset if node.end_col_offset is not None else len(lines[last])
        rest = lines[last][end_col:]
        lines[first] = lines[first][: node.col_offset] + b'""' + rest
        for i in range(first + 1, last + 1):
            lines[i] = b""
    return b"\n".join(lines).decode("utf-8")


# --- queries ------------------------------------------------------------------------


def functions(path: str, source: str) -> list[Function]:
    """Every function and method of one parsed file, qualified by its classes."""
    tree = ast.parse(source)
    out: list[Function] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([d.lineno for d in child.decorator_list] + [child.lineno])
                out.append(
                    Function(
                        path=path,
                        name=child.name,
                        qualname=prefix + child.name,
                        start=start,
                        end=child.end_lineno or child.lineno,
                        docstring=ast.get_docstring(child),
                    )
                )
                visit(child, prefix + child.name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


_SENTENCE_END = re.compile(r"(.+?[.!?])(?:\s|$)")


def first_sentence(docstring: str) -> str | None:
    """The docstring's first sentence, whitespace collapsed; None when it is not a question.

    Too short (< 3 words), too long, or not prose (doctest, directive, field list)."""
    paragraph = inspect.cleandoc(docstring).split("\n\n", 1)[0]
    text = " ".join(paragraph.split())
    if not text or text[0] in ">:.@*=-`" or text.lower().startswith(("todo", "deprecated")):
        return None
    m = _SENTENCE_END.match(text)
    sentence = m.group(1) if m else text
    words = sentence.split()
    if not _MIN_WORDS <= len(words) <= _MAX_WORDS or "=" in sentence:  # ``no = 0 for real``
        return None
    return sentence


def split_words(identifier: str) -> str:
    """An identifier's words, lower case: ``parse_args`` and ``parseArgs`` -> ``parse args``."""
    parts = re.findall(r"[A-Z]+(?=[A-Z][a-z]|\d|\b|_)|[A-Z]?[a-z]+|[A-Z]+|\d+", identifier)
    return " ".join(p.lower() for p in parts)


def is_test_path(path: str) -> bool:
    parts = path.split("/")
    return (
        any(p in ("tests", "test", "testing") for p in parts[:-1])
        or parts[-1].startswith("test_")
        or parts[-1] == "conftest.py"
    )


def _eligible(f: Function) -> bool:
    """Not a test, not a dunder method, at least 3 lines (CodeSearchNet's filters)."""
    dunder = f.name.startswith("__") and f.name.endswith("__")
    return (
        not is_test_path(f.path)
        and not f.name.startswith("test")
        and not dunder
        and f.end - f.start >= 2
    )


def nl_queries(fns: Sequence[Function], n: int, seed: int) -> list[Query]:
    """``n`` first-sentence queries (fewer if the corpus has fewer), seeded sample.

    A sentence that documents several functions has all of them as gold; one that
    documents more than a few is dropped as too generic."""
    by_text: dict[str, list[Function]] = {}
    for f in fns:
        if f.docstring and _eligible(f):
            sentence = first_sentence(f.docstring)
            if sentence:
                by_text.setdefault(sentence, []).append(f)
    candidates = sorted(t for t, fs in by_text.items() if len(fs) <= _MAX_GOLD)
    chosen = random.Random(seed).sample(candidates, min(n, len(candidates)))
    return [
        Query(
            text=t,
            gold=tuple(Span(f.path, f.start, f.end) for f in by_text[t]),
            symbol=by_text[t][0].qualname,
        )
        for t in chosen
    ]


def symbol_queries(fns: Sequence[Function], n: int, seed: int) -> tuple[list[Query], list[Query]]:
    """``n`` functions whose name is unique in the corpus: as written, and as words."""
    count: dict[str, int] = {}
    for f in fns:
        count[f.name] = count.get(f.name, 0) + 1
    candidates = sorted(
        (f for f in fns if _eligible(f) and count[f.name] == 1 and len(f.name.strip("_")) >= 4),
        key=lambda f: (f.path, f.start),
    )
    chosen = random.Random(seed + 1).sample(candidates, min(n, len(candidates)))
    ident = [Query(f.name, (Span(f.path, f.start, f.end),), f.qualname) for f in chosen]
    words = [
        Query(split_words(f.name), (Span(f.path, f.start, f.end),), f.qualname) for f in chosen
    ]
    return ident, words


# --- corpus generation ----------------------------------------------------------------


def source_files(packages: Iterable[str], root: Path = SITE_PACKAGES) -> list[tuple[str, Path]]:
    """(repository path, source file) of every ``*.py`` of ``packages``, sorted."""
    out = []
    for package in packages:
        base = root / package
        if not base.is_dir():
            raise FileNotFoundError(f"package directory {base} does not exist")
        for file in base.rglob("*.py"):
            if "__pycache__" not in file.parts:
                out.append((file.relative_to(root).as_posix(), file))
    return sorted(out)


def parsed_functions(files: Sequence[tuple[str, str]]) -> list[Function]:
    """The functions of every file of ``files`` that parses (others give no queries)."""
    fns: list[Function] = []
    for path, text in files:
        text = text.replace("\r\n", "\n")
        if "\r" in text:  # ast would count a lone CR as a line break, the chunker would not
            continue
        try:
            fns.extend(functions(path, text))
        except (SyntaxError, ValueError):
            continue
    return fns


def write_repo(files: Sequence[tuple[str, str]], repo: Path) -> int:
    """A fresh git repository at ``repo`` holding ``files`` (path, original text) blanked.

    Files that do not parse are copied as they are. Returns the number of files."""
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    for path, text in files:
        text = text.replace("\r\n", "\n")
        try:
            blanked = blank_docstrings(text) if "\r" not in text else text
        except (SyntaxError, ValueError):
            blanked = text
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(blanked, encoding="utf-8")
    env = {**os.environ, **_GIT_ENV}
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "--no-gpg-sign", "-m", "corpus"],
    ):
        subprocess.run(cmd, cwd=repo, env=env, check=True)
    return len(files)


def sample_queries(
    fns: Sequence[Function], nl: int = 300, ident: int = 150, seed: int = 0
) -> dict[str, list[Query]]:
    """Every query set (see :data:`QUERY_SETS`) drawn from ``fns``."""
    queries = {"nl": nl_queries(fns, nl, seed)}
    queries["ident"], queries["words"] = symbol_queries(fns, ident, seed)
    return queries


def make_corpus(
    name: str,
    files: Sequence[tuple[str, str]],
    repo: Path,
    *,
    nl: int = 300,
    ident: int = 150,
    seed: int = 0,
) -> Corpus:
    """Write ``files`` as a blanked repository at ``repo`` and sample its queries."""
    corpus = Corpus(name=name, repo_path=repo, files=write_repo(files, repo))
    corpus.queries = sample_queries(parsed_functions(files), nl, ident, seed)
    return corpus


def prepare(
    name: str,
    cache: Path = DEFAULT_CACHE,
    *,
    nl: int = 300,
    ident: int = 150,
    seed: int = 0,
    root: Path = SITE_PACKAGES,
) -> Corpus:
    """The corpus ``name`` (see :data:`CORPORA`), generated under ``cache/corpora`` once.

    The repository is rewritten only when :data:`REPO_FORMAT` or the packages
    change (its chunks' vectors stay cached either way); the queries are drawn
    again when :data:`QUERY_FORMAT`, the sample sizes or the seed change."""
    packages = CORPORA[name]
    repo = cache / "corpora" / name
    repo_key = {"format": REPO_FORMAT, "packages": list(packages)}
    key = {**repo_key, "query_format": QUERY_FORMAT, "nl": nl, "ident": ident, "seed": seed}
    saved = cache / "corpora" / f"{name}.queries.json"
    data = json.loads(saved.read_text(encoding="utf-8")) if saved.is_file() else {}
    repo_ok = (repo / ".git").is_dir() and data.get("repo_key") == repo_key
    if repo_ok and data.get("key") == key:
        return _load(name, repo, data)
    files = [
        (p, f.read_text(encoding="utf-8", errors="replace"))
        for p, f in source_files(packages, root)
    ]
    count = len(files) if repo_ok else write_repo(files, repo)
    queries = sample_queries(parsed_functions(files), nl, ident, seed)
    data = {
        "repo_key": repo_key,
        "key": key,
        "files": count,
        "queries": {s: [asdict(q) for q in qs] for s, qs in queries.items()},
    }
    tmp = saved.with_name(saved.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, saved)
    return _load(name, repo, data)


def _load(name: str, repo: Path, data: dict[str, Any]) -> Corpus:
    corpus = Corpus(name=name, repo_path=repo, files=data["files"])
    for query_set, rows in data["queries"].items():
        corpus.queries[query_set] = [
            Query(r["text"], tuple(Span(**g) for g in r["gold"]), r["symbol"]) for r in rows
        ]
    return corpus
