"""What language a file is written in, and what its grammar calls a definition.

Chunking wants one chunk per function, method or class, which needs a parser
and, per grammar, the syntax-node types that are definitions. This module owns
that language knowledge so that :mod:`codeintel.indexer.chunking` stays a
language-neutral algorithm over line ranges.

Grammars come only from the per-language ``tree_sitter_<lang>`` wheels (no
download at run time). Each is loaded on first use and cached for the process;
``tree_sitter.Parser`` objects are not safe to share between threads, so
:func:`parser_for` hands every thread its own parser per language.

Node roles in a :class:`GrammarSpec`:

* **leaf** definitions (functions, methods, interfaces, enums) become one chunk;
* **container** definitions (classes, impls, traits) have their members chunked
  separately and qualify their names (``Class.method``);
* **wrappers** (decorators, ``export``, ``template<>``) lend their first lines to
  the definition inside them;
* **transparent** nodes (namespaces, Rust ``mod``, ``#ifdef``, ``extern "C"``,
  parse errors) are looked through without adding a name;
* **prefix** nodes (comments, attributes, decorators as siblings) directly above
  a definition belong to it.
"""

from __future__ import annotations

import importlib
import logging
import posixpath
import re
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import msgspec
import tree_sitter

logger = logging.getLogger(__name__)

_EXTENSIONS: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".pyw": "python",
    ".js": "javascript", ".jsx": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".ts": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c", ".h": "c",
    ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".c++": "cpp",
    ".hh": "cpp", ".hpp": "cpp", ".hxx": "cpp", ".h++": "cpp", ".ipp": "cpp", ".inl": "cpp",
    ".md": "markdown", ".markdown": "markdown", ".mdx": "markdown",
    ".rst": "rst", ".adoc": "asciidoc",
    ".yaml": "yaml", ".yml": "yaml",
    ".json": "json", ".jsonc": "json", ".json5": "json",
    ".toml": "toml", ".ini": "ini", ".cfg": "ini",
    ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".fish": "shell",
    ".sql": "sql",
    ".html": "html", ".htm": "html", ".xml": "xml", ".svg": "xml",
    ".css": "css", ".scss": "css", ".sass": "css", ".less": "css",
    ".rb": "ruby", ".php": "php", ".kt": "kotlin", ".kts": "kotlin", ".swift": "swift",
    ".scala": "scala", ".cs": "csharp", ".lua": "lua", ".r": "r", ".pl": "perl",
    ".proto": "protobuf", ".tf": "terraform", ".cmake": "cmake",
}  # fmt: skip
"""Lower-cased extension → language. ``.h`` is C: the C grammar is the common
denominator, and a C++ header still chunks (by line windows where it fails)."""

_FILENAMES: dict[str, str] = {
    "dockerfile": "dockerfile", "containerfile": "dockerfile",
    "makefile": "makefile", "gnumakefile": "makefile",
    "cmakelists.txt": "cmake",
    "gemfile": "ruby", "rakefile": "ruby",
    "pipfile": "toml", "go.mod": "gomod",
    ".bashrc": "shell", ".zshrc": "shell", ".profile": "shell",
}  # fmt: skip
"""Lower-cased base names whose language no extension tells."""

_FILENAME_PREFIXES: tuple[tuple[str, str], ...] = (
    ("dockerfile.", "dockerfile"),
    ("makefile.", "makefile"),
)

TEXT = "text"
"""The fallback language: chunked by line windows, like every grammar-less language."""


def language_for(path: str) -> str:
    """The language of ``path`` by base name, then extension; ``"text"`` when unknown."""
    base = posixpath.basename(path).lower()
    by_name = _FILENAMES.get(base)
    if by_name is not None:
        return by_name
    for prefix, language in _FILENAME_PREFIXES:
        if base.startswith(prefix):
            return language
    dot = base.rfind(".")
    if dot <= 0:  # no extension, or a dotfile such as ".gitignore"
        return TEXT
    return _EXTENSIONS.get(base[dot:], TEXT)


class GrammarSpec(msgspec.Struct, frozen=True):
    """The node types of one grammar that shape its chunks (see the module docstring)."""

    module: str
    """The ``tree_sitter_<lang>`` module providing the grammar."""
    function: str
    """The function of that module returning the language capsule."""
    leaves: frozenset[str]
    containers: frozenset[str]
    wrappers: frozenset[str] = frozenset()
    transparent: frozenset[str] = frozenset()
    prefixes: frozenset[str] = frozenset()


_ERROR = frozenset({"ERROR"})
_C_FAMILY_TRANSPARENT = frozenset(
    {"preproc_if", "preproc_ifdef", "preproc_else", "preproc_elif", "preproc_elifdef"}
)
_JS_LEAVES = frozenset(
    {
        "function_declaration",
        "generator_function_declaration",
        "method_definition",
        "lexical_declaration",  # only when it binds a function; see symbol_name
        "variable_declaration",
    }
)
_TS_EXTRA_LEAVES = frozenset(
    {"interface_declaration", "enum_declaration", "type_alias_declaration"}
)
_TS_TRANSPARENT = frozenset(
    {"internal_module", "module", "ambient_declaration", "expression_statement"}
)


def _typescript(function: str) -> GrammarSpec:
    """TypeScript and TSX: one grammar package, two entry points, one node-type table."""
    return GrammarSpec(
        module="tree_sitter_typescript",
        function=function,
        leaves=_JS_LEAVES | _TS_EXTRA_LEAVES,
        containers=frozenset({"class_declaration", "abstract_class_declaration"}),
        wrappers=frozenset({"export_statement"}),
        transparent=_ERROR | _TS_TRANSPARENT,
        prefixes=frozenset({"comment", "decorator"}),
    )


GRAMMARS: dict[str, GrammarSpec] = {
    "python": GrammarSpec(
        module="tree_sitter_python",
        function="language",
        leaves=frozenset({"function_definition"}),
        containers=frozenset({"class_definition"}),
        wrappers=frozenset({"decorated_definition"}),
        transparent=_ERROR,
        prefixes=frozenset({"comment"}),
    ),
    "javascript": GrammarSpec(
        module="tree_sitter_javascript",
        function="language",
        leaves=_JS_LEAVES,
        containers=frozenset({"class_declaration"}),
        wrappers=frozenset({"export_statement"}),
        transparent=_ERROR,
        prefixes=frozenset({"comment", "decorator"}),
    ),
    "typescript": _typescript("language_typescript"),
    "tsx": _typescript("language_tsx"),
    "go": GrammarSpec(
        module="tree_sitter_go",
        function="language",
        leaves=frozenset({"function_declaration", "method_declaration", "type_declaration"}),
        containers=frozenset(),
        transparent=_ERROR,
        prefixes=frozenset({"comment"}),
    ),
    "rust": GrammarSpec(
        module="tree_sitter_rust",
        function="language",
        leaves=frozenset(
            {"function_item", "struct_item", "enum_item", "union_item", "macro_definition"}
        ),
        containers=frozenset({"impl_item", "trait_item"}),
        transparent=_ERROR | {"mod_item"},
        prefixes=frozenset({"line_comment", "block_comment", "attribute_item"}),
    ),
    "java": GrammarSpec(
        module="tree_sitter_java",
        function="language",
        leaves=frozenset(
            {"method_declaration", "constructor_declaration", "compact_constructor_declaration"}
        ),
        containers=frozenset(
            {
                "class_declaration",
                "interface_declaration",
                "enum_declaration",
                "record_declaration",
                "annotation_type_declaration",
            }
        ),
        transparent=_ERROR | {"enum_body_declarations"},
        prefixes=frozenset({"line_comment", "block_comment"}),
    ),
    "c": GrammarSpec(
        module="tree_sitter_c",
        function="language",
        leaves=frozenset(
            {"function_definition", "struct_specifier", "union_specifier", "enum_specifier"}
            | {"type_definition"}
        ),
        containers=frozenset(),
        transparent=_ERROR | _C_FAMILY_TRANSPARENT | {"linkage_specification"},
        prefixes=frozenset({"comment"}),
    ),
    "cpp": GrammarSpec(
        module="tree_sitter_cpp",
        function="language",
        leaves=frozenset(
            {"function_definition", "union_specifier", "enum_specifier", "type_definition"}
        ),
        containers=frozenset({"class_specifier", "struct_specifier"}),
        wrappers=frozenset({"template_declaration"}),
        transparent=_ERROR
        | _C_FAMILY_TRANSPARENT
        | {"namespace_definition", "linkage_specification"},
        prefixes=frozenset({"comment"}),
    ),
}
"""Every language chunked by symbols. Others are chunked by line windows."""

_local = threading.local()

T = TypeVar("T")


class OncePerLanguage(Generic[T]):
    """A value per language (a grammar, a compiled query), made by ``make`` once per
    process: under a lock the first time, so threads asking together make it once, then
    read without it."""

    def __init__(self, make: Callable[[str], T]) -> None:
        self._make = make
        self._values: dict[str, T] = {}
        self._lock = threading.Lock()

    def get(self, language: str) -> T:
        try:
            return self._values[language]
        except KeyError:
            pass
        with self._lock:
            if language not in self._values:
                self._values[language] = self._make(language)
            return self._values[language]


def grammar_for(language: str) -> GrammarSpec | None:
    """The node-type table of ``language``, or ``None`` when it has no grammar here."""
    return GRAMMARS.get(language)


def load_language(language: str) -> tree_sitter.Language | None:
    """The grammar of ``language``, loaded once per process; ``None`` if absent or broken."""
    return _grammars.get(language)


def _load(language: str) -> tree_sitter.Language | None:
    spec = GRAMMARS.get(language)
    if spec is None:
        return None
    try:
        module = importlib.import_module(spec.module)
        return tree_sitter.Language(getattr(module, spec.function)())
    except (ImportError, AttributeError, ValueError, TypeError) as e:
        # A missing or ABI-incompatible wheel degrades to line windows, loudly once.
        logger.warning("no %s grammar (%s: %s); using line windows", language, spec.module, e)
        return None


_grammars: OncePerLanguage[tree_sitter.Language | None] = OncePerLanguage(_load)


def parser_for(language: str) -> tree_sitter.Parser | None:
    """This thread's parser for ``language``; ``None`` when there is no grammar for it.

    Parsers keep per-parse state, so each thread gets its own, reused across calls.
    """
    parsers: dict[str, tree_sitter.Parser] | None = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = _local.parsers = {}
    parser = parsers.get(language)
    if parser is None:
        grammar = load_language(language)
        if grammar is None:
            return None
        parser = parsers[language] = tree_sitter.Parser(grammar)
    return parser


_TEMPLATE_ARGS = re.compile(r"<[^<>]*>")
_FUNCTION_VALUES = frozenset(
    {"arrow_function", "function_expression", "function", "generator_function", "class"}
)


def symbol_name(node: tree_sitter.Node) -> str | None:
    """What a definition node is called, dotted where the source qualifies it.

    ``None`` means the node is no definition after all (``const x = 1``, an
    anonymous struct), so the chunker treats its lines as plain code.
    """
    kind = node.type
    if kind in ("lexical_declaration", "variable_declaration"):
        return _bound_function_name(node)
    if kind == "method_declaration" and (receiver := node.child_by_field_name("receiver")):
        name = _text(node.child_by_field_name("name"))
        owner = _text(_first_of_type(receiver, "type_identifier"))
        return f"{owner}.{name}" if owner and name else name
    if kind == "type_declaration":  # Go: `type X struct{}` or a `type (...)` group
        spec = _first_of_type(node, "type_spec", depth=1)
        return _text(spec.child_by_field_name("name")) if spec else None
    if kind == "function_definition" and (declarator := node.child_by_field_name("declarator")):
        return _declarator_name(declarator)
    if kind == "type_definition":  # C: only typedefs that define a struct/union/enum body
        body_type = node.child_by_field_name("type")
        if body_type is None or body_type.child_by_field_name("body") is None:
            return None
        return _clean(_text(node.child_by_field_name("declarator")))
    if kind in ("struct_specifier", "union_specifier", "enum_specifier", "class_specifier"):
        if node.child_by_field_name("body") is None:  # a forward declaration or a use
            return None
        return _clean(_text(node.child_by_field_name("name")))
    if kind == "impl_item":
        return _clean(_text(node.child_by_field_name("type")))
    return _text(node.child_by_field_name("name"))


def _bound_function_name(node: tree_sitter.Node) -> str | None:
    """``const f = () => …`` is the function ``f``; any other binding is plain code."""
    for declarator in node.named_children:
        if declarator.type != "variable_declarator":
            continue
        value = declarator.child_by_field_name("value")
        if value is not None and value.type in _FUNCTION_VALUES:
            return _text(declarator.child_by_field_name("name"))
    return None


def _declarator_name(declarator: tree_sitter.Node) -> str | None:
    """The name inside a C/C++ declarator chain (pointers, references, ``Foo::bar``)."""
    node: tree_sitter.Node | None = declarator
    while node is not None and node.type != "function_declarator":
        inner = node.child_by_field_name("declarator")
        if inner is None:  # reference_declarator keeps its target as a plain child
            inner = next((c for c in node.named_children if "declarator" in c.type), None)
        node = inner
    if node is None:
        return None
    return _clean(_text(node.child_by_field_name("declarator")))


def _first_of_type(node: tree_sitter.Node, kind: str, depth: int = 4) -> tree_sitter.Node | None:
    """The first descendant of ``kind`` at most ``depth`` levels down (breadth first)."""
    level = [node]
    for _ in range(depth):
        level = [child for parent in level for child in parent.named_children]
        for child in level:
            if child.type == kind:
                return child
    return None


def _text(node: tree_sitter.Node | None) -> str | None:
    if node is None or node.text is None:
        return None
    return node.text.decode("utf-8", errors="replace") or None


def _clean(name: str | None) -> str | None:
    """``ns::Box<T>::get`` → ``ns.Box.get``: one separator for every language."""
    if name is None:
        return None
    while "<" in name:
        stripped = _TEMPLATE_ARGS.sub("", name)
        if stripped == name:
            break
        name = stripped
    return ".".join(part.strip() for part in name.split("::") if part.strip()) or None
