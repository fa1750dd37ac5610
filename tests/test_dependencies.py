"""pyproject.toml declares what the code imports, where it imports it."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement string."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]).lower()


def _third_party_imports(folder: Path) -> set[str]:
    """Top-level modules imported anywhere below ``folder`` that are neither stdlib nor ours."""
    found: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return {m for m in found if m not in sys.stdlib_module_names and m != "codeintel"}


def _distributions(modules: set[str]) -> dict[str, set[str]]:
    """Each imported module's distributions (normalised names), as installed here."""
    installed = importlib.metadata.packages_distributions()
    return {m: {_name(d) for d in installed.get(m, [])} for m in modules}


PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
RUNTIME = {_name(r) for r in PROJECT["dependencies"]}
EXTRAS = {
    extra: {_name(r) for r in reqs} for extra, reqs in PROJECT["optional-dependencies"].items()
}


def test_every_runtime_import_is_a_declared_dependency() -> None:
    allowed = RUNTIME | EXTRAS["local"] | EXTRAS["gpu"]
    undeclared = {
        module: dists
        for module, dists in _distributions(_third_party_imports(ROOT / "src")).items()
        if not dists & allowed
    }
    assert undeclared == {}


NOT_IMPORTED = {
    "ripgrep": "ships the rg binary that searcher/textsearch.py runs",
    **{
        f"tree-sitter-{lang}": "a grammar indexer/languages.py loads by module name"
        for lang in ("python", "javascript", "typescript", "go", "rust", "java", "c", "cpp")
    },
}


def test_every_runtime_dependency_is_imported() -> None:
    imported = set().union(*_distributions(_third_party_imports(ROOT / "src")).values())
    assert RUNTIME - imported - set(NOT_IMPORTED) == set()


def test_grammar_dependencies_are_the_modules_languages_loads() -> None:
    source = (ROOT / "src/codeintel/indexer/languages.py").read_text(encoding="utf-8")
    loaded = {_name(m) for m in re.findall(r'module="(tree_sitter_\w+)"', source)}
    assert loaded == {name for name in NOT_IMPORTED if name.startswith("tree-sitter-")}


def test_tests_and_benchmarks_import_only_declared_packages() -> None:
    allowed = RUNTIME | set().union(*EXTRAS.values())
    modules = _third_party_imports(ROOT / "tests") | _third_party_imports(ROOT / "benchmarks")
    local = {p.stem for p in (ROOT / "tests").rglob("*.py")} | {"benchmarks", "conftest"}
    undeclared = {
        module: dists
        for module, dists in _distributions(modules - local).items()
        if not dists & allowed
    }
    assert undeclared == {}
