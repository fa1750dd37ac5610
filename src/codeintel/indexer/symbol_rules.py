"""What each grammar calls a definition, an identifier, a call and an import.

:mod:`codeintel.indexer.extraction` turns a parse tree into symbols and
occurrences with one tree-sitter query per language, built here from these
tables: the query runs in C and hands back only the nodes that matter, so the
symbol pass costs a fraction of a Python walk over every node.

* **definitions**: node type → kind. ``function`` becomes ``method`` inside a
  class-like definition; some kinds are refined from the node (a Go ``type_spec``
  is a struct, an interface or a type).
* **identifiers**: every identifier-like node type of the grammar (names,
  types, fields, properties, packages). Comments and string contents hold no
  such nodes, so nothing inside them is ever an occurrence; interpolations
  (f-strings, template strings) hold real code and do count.
* **calls**: query patterns capturing the callee's name as ``@call``.
* **imports**: statement types whose identifiers are imports, and whose
  top-level instances give a file's import span.
"""

from __future__ import annotations

import logging
import threading

import msgspec
import tree_sitter

from codeintel.indexer import languages

logger = logging.getLogger(__name__)


class SymbolRules(msgspec.Struct, frozen=True):
    """The node types of one grammar that make symbols and occurrences."""

    definitions: dict[str, str]
    """Definition node type → kind."""
    identifiers: frozenset[str]
    calls: tuple[str, ...]
    """Query patterns capturing a callee name as ``@call``."""
    imports: frozenset[str]
    containers: frozenset[str] = frozenset()
    """Definition types inside which a function is a method."""


_PY = SymbolRules(
    definitions={"function_definition": "function", "class_definition": "class"},
    identifiers=frozenset({"identifier"}),
    calls=(
        "(call function: (identifier) @call)",
        "(call function: (attribute attribute: (identifier) @call))",
    ),
    imports=frozenset({"import_statement", "import_from_statement", "future_import_statement"}),
    containers=frozenset({"class_definition"}),
)

_JS_DEFINITIONS = {
    "function_declaration": "function",
    "generator_function_declaration": "function",
    "method_definition": "method",
    "lexical_declaration": "function",
    "variable_declaration": "function",
    "class_declaration": "class",
    "class": "class",  # a named class expression: `X.Y = class Y {…}`
    "assignment_expression": "function",  # `res.send = function (…) {…}`; see extraction
    "pair": "method",  # `{ send: function (…) {…} }`
    "function_expression": "function",  # named, as a callback: `app.use(function auth() {…})`
}
_JS_IDENTIFIERS = frozenset(
    {
        "identifier",
        "property_identifier",
        "private_property_identifier",
        "shorthand_property_identifier",
        "shorthand_property_identifier_pattern",
    }
)
_JS_CALLS = (
    "(call_expression function: (identifier) @call)",
    "(call_expression function: (member_expression property: (property_identifier) @call))",
    "(new_expression constructor: (identifier) @call)",
)
_JS = SymbolRules(
    definitions=_JS_DEFINITIONS,
    identifiers=_JS_IDENTIFIERS,
    calls=_JS_CALLS,
    imports=frozenset({"import_statement"}),
    containers=frozenset({"class_declaration", "class"}),
)
_TS = SymbolRules(
    definitions=_JS_DEFINITIONS
    | {
        "abstract_class_declaration": "class",
        "interface_declaration": "interface",
        "enum_declaration": "enum",
        "type_alias_declaration": "type",
        "function_signature": "function",
        "method_signature": "method",
        "abstract_method_signature": "method",
    },
    identifiers=_JS_IDENTIFIERS | {"type_identifier"},
    calls=_JS_CALLS,
    imports=frozenset({"import_statement"}),
    containers=frozenset(
        {"class_declaration", "abstract_class_declaration", "interface_declaration"}
    ),
)

RULES: dict[str, SymbolRules] = {
    "python": _PY,
    "javascript": _JS,
    "typescript": _TS,
    "tsx": _TS,
    "go": SymbolRules(
        definitions={
            "function_declaration": "function",
            "method_declaration": "method",
            "type_spec": "type",
        },
        identifiers=frozenset(
            {"identifier", "field_identifier", "type_identifier", "package_identifier"}
        ),
        calls=(
            "(call_expression function: (identifier) @call)",
            "(call_expression function: (selector_expression field: (field_identifier) @call))",
        ),
        imports=frozenset({"import_declaration"}),
    ),
    "rust": SymbolRules(
        definitions={
            "function_item": "function",
            "function_signature_item": "function",
            "struct_item": "struct",
            "enum_item": "enum",
            "union_item": "union",
            "trait_item": "trait",
            "impl_item": "impl",
            "macro_definition": "macro",
            "mod_item": "module",
        },
        identifiers=frozenset(
            {"identifier", "field_identifier", "type_identifier", "shorthand_field_identifier"}
        ),
        calls=(
            "(call_expression function: (identifier) @call)",
            "(call_expression function: (field_expression field: (field_identifier) @call))",
            "(call_expression function: (scoped_identifier name: (identifier) @call))",
            "(macro_invocation macro: (identifier) @call)",
        ),
        imports=frozenset({"use_declaration", "extern_crate_declaration"}),
        containers=frozenset({"impl_item", "trait_item"}),
    ),
    "java": SymbolRules(
        definitions={
            "class_declaration": "class",
            "interface_declaration": "interface",
            "enum_declaration": "enum",
            "record_declaration": "record",
            "annotation_type_declaration": "annotation",
            "method_declaration": "method",
            "constructor_declaration": "constructor",
            "compact_constructor_declaration": "constructor",
            "enum_constant": "constant",
            "annotation_type_element_declaration": "method",
        },
        identifiers=frozenset({"identifier", "type_identifier"}),
        calls=(
            "(method_invocation name: (identifier) @call)",
            "(object_creation_expression type: (type_identifier) @call)",
        ),
        imports=frozenset({"import_declaration"}),
    ),
    "c": SymbolRules(
        definitions={
            "function_definition": "function",
            "struct_specifier": "struct",
            "union_specifier": "union",
            "enum_specifier": "enum",
            "type_definition": "typedef",
        },
        identifiers=frozenset({"identifier", "field_identifier", "type_identifier"}),
        calls=(
            "(call_expression function: (identifier) @call)",
            "(call_expression function: (field_expression field: (field_identifier) @call))",
        ),
        imports=frozenset({"preproc_include"}),
    ),
    "cpp": SymbolRules(
        definitions={
            "function_definition": "function",
            "class_specifier": "class",
            "struct_specifier": "struct",
            "union_specifier": "union",
            "enum_specifier": "enum",
            "type_definition": "typedef",
        },
        identifiers=frozenset(
            {"identifier", "field_identifier", "type_identifier", "namespace_identifier"}
        ),
        calls=(
            "(call_expression function: (identifier) @call)",
            "(call_expression function: (field_expression field: (field_identifier) @call))",
            "(call_expression function: (qualified_identifier name: (identifier) @call))",
        ),
        imports=frozenset({"preproc_include", "using_declaration"}),
        containers=frozenset({"class_specifier", "struct_specifier"}),
    ),
}
"""Every language with symbols: the languages chunked by symbols."""

_lock = threading.Lock()
_queries: dict[str, tree_sitter.Query | None] = {}


def query_for(language: str) -> tree_sitter.Query | None:
    """The compiled query of ``language`` (captures ``def``, ``id``, ``call``, ``import``)."""
    try:
        return _queries[language]
    except KeyError:
        pass
    with _lock:
        if language not in _queries:
            _queries[language] = _compile(language)
        return _queries[language]


def _compile(language: str) -> tree_sitter.Query | None:
    rules = RULES.get(language)
    grammar = languages.load_language(language)
    if rules is None or grammar is None:
        return None
    source = "\n".join(
        [
            "[" + " ".join(f"({t})" for t in sorted(rules.definitions)) + "] @def",
            "[" + " ".join(f"({t})" for t in sorted(rules.identifiers)) + "] @id",
            *rules.calls,
            "[" + " ".join(f"({t})" for t in sorted(rules.imports)) + "] @import",
        ]
    )
    try:
        return tree_sitter.Query(grammar, source)
    except (tree_sitter.QueryError, ValueError) as e:  # a grammar wheel that renamed a node
        logger.warning("no symbols for %s: its query does not compile (%s)", language, e)
        return None
