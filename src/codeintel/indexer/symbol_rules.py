"""What each grammar calls a definition, an identifier, a call and an import.

:mod:`codeintel.indexer.extraction` turns a parse tree into symbols and
occurrences with one tree-sitter query per language, built here from these
tables: the query runs in C and hands back only the few nodes that matter
(definitions, calls, imports, comments and strings). Identifier occurrences are
not captured node by node: they are the words of one compiled regular expression
per language (:func:`word_pattern`) over the file's bytes with comments and
strings blanked out, less numbers and reserved words, which costs a fraction of a Python ``Node`` per identifier
(measured on sympy: 1.49M identifiers, docs/performance.md).

* **definitions**: node type → kind. ``function`` becomes ``method`` inside a
  class-like definition; some kinds are refined from the node (a Go ``type_spec``
  is a struct, an interface or a type).
* **identifiers**: every identifier-like node type of the grammar (names,
  types, fields, properties, packages); they locate a definition's name node.
* **non_code** and **code**: the nodes whose bytes are not code (comments,
  strings, character literals, regex literals, C's preprocessor bodies) and,
  inside them, the nodes that are code again (f-string and template-string
  interpolations). Nothing inside ``non_code`` is ever an occurrence.
* **keywords**: reserved words the identifier pattern drops (after a ``.`` they
  are property names and count: ``promise.catch``).
* **calls**: query patterns capturing the callee's name as ``@call``.
* **imports**: statement types whose identifiers are imports, and whose
  top-level instances give a file's import span.
"""

from __future__ import annotations

import keyword
import logging
import re

import msgspec
import numpy as np
import tree_sitter

from codeintel.indexer import languages

logger = logging.getLogger(__name__)


def _reserved(words: str) -> frozenset[str]:
    return frozenset(words.split())


class SymbolRules(msgspec.Struct, frozen=True):
    """The node types of one grammar that make symbols and occurrences."""

    definitions: dict[str, str]
    """Definition node type → kind."""
    identifiers: frozenset[str]
    calls: tuple[str, ...]
    """Query patterns capturing a callee name as ``@call``."""
    imports: frozenset[str]
    non_code: frozenset[str]
    """Node types whose bytes are not code: comments, strings, character literals."""
    keywords: frozenset[str]
    """Reserved words, never occurrences (except after a ``.``)."""
    containers: frozenset[str] = frozenset()
    """Definition types inside which a function is a method."""
    code: frozenset[str] = frozenset()
    """Node types inside ``non_code`` that hold code again (interpolations)."""
    dollar: bool = False
    """``$`` is an identifier character (JavaScript, TypeScript, Java)."""
    directives: bool = False
    """Preprocessor directive words (``#include``, ``#define``) are not identifiers."""
    lexer: bool = False
    """Comments, strings, definitions and imports come from the bytes and the tree is
    asked only where they start (:mod:`codeintel.indexer.python_lexing`), not from a
    query walk of every node; callees are the words followed by ``(``."""


_PY = SymbolRules(
    definitions={"function_definition": "function", "class_definition": "class"},
    identifiers=frozenset({"identifier"}),
    calls=(
        "(call function: (identifier) @call)",
        "(call function: (attribute attribute: (identifier) @call))",
    ),
    imports=frozenset({"import_statement", "import_from_statement", "future_import_statement"}),
    non_code=frozenset({"comment", "string", "format_specifier", "type_conversion"}),
    keywords=frozenset(keyword.kwlist),
    containers=frozenset({"class_definition"}),
    code=frozenset({"interpolation", "format_expression"}),  # `{x:>{width}}`: width is code
    lexer=True,
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
_JS_NON_CODE = frozenset(
    {"comment", "html_comment", "string", "template_string", "regex", "jsx_text"}
)
_JS_KEYWORDS = _reserved(
    "break case catch class const continue debugger default delete do else export extends "
    "false finally for function if import in instanceof let new null return static super "
    "switch this throw true try typeof undefined var void while with yield await"
)
_JS = SymbolRules(
    definitions=_JS_DEFINITIONS,
    identifiers=_JS_IDENTIFIERS,
    calls=_JS_CALLS,
    imports=frozenset({"import_statement"}),
    non_code=_JS_NON_CODE,
    keywords=_JS_KEYWORDS,
    containers=frozenset({"class_declaration", "class"}),
    code=frozenset({"template_substitution"}),
    dollar=True,
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
    non_code=_JS_NON_CODE,
    keywords=_JS_KEYWORDS
    | {"enum", "implements", "interface", "private", "protected", "public", "readonly"},
    containers=frozenset(
        {"class_declaration", "abstract_class_declaration", "interface_declaration"}
    ),
    code=frozenset({"template_substitution"}),
    dollar=True,
)

# Preprocessor bodies (`preproc_arg`) are raw text to the grammar: never occurrences, as
# they hold strings the parser cannot see.
_C_NON_CODE = frozenset(
    {"comment", "string_literal", "char_literal", "system_lib_string", "preproc_arg"}
)
_C_KEYWORDS = _reserved(
    "auto break case char const continue default defined do double else enum extern false "
    "float for goto if inline int long register restrict return short signed sizeof static "
    "struct switch true typedef union unsigned void volatile while NULL _Bool"
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
        non_code=frozenset(
            {"comment", "interpreted_string_literal", "raw_string_literal", "rune_literal"}
        ),
        keywords=_reserved(
            "break case chan const continue default defer else fallthrough false for func go "
            "goto if import interface iota map nil package range return select struct switch "
            "true type var"
        ),
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
        non_code=frozenset(
            {
                "line_comment",
                "block_comment",
                "string_literal",
                "raw_string_literal",
                "char_literal",
            }
        ),
        keywords=_reserved(
            "as async await break const continue crate dyn else enum extern false fn for if "
            "impl in let loop match mod move mut pub ref return self Self static struct super "
            "trait true type unsafe use where while bool char str f32 f64 i8 i16 i32 i64 i128 "
            "isize u8 u16 u32 u64 u128 usize"
        ),
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
        non_code=frozenset(
            {"line_comment", "block_comment", "string_literal", "character_literal"}
        ),
        keywords=_reserved(
            "abstract assert boolean break byte case catch char class const continue default "
            "do double else enum extends false final finally float for goto if implements "
            "import instanceof int interface long native new null package private protected "
            "public return short static strictfp super switch synchronized this throw throws "
            "transient true try void volatile while"
        ),
        dollar=True,
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
        non_code=_C_NON_CODE,
        keywords=_C_KEYWORDS,
        directives=True,
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
        non_code=_C_NON_CODE | {"raw_string_literal"},
        keywords=_C_KEYWORDS
        | _reserved(
            "alignas alignof asm catch class const_cast constexpr consteval constinit "
            "decltype delete dynamic_cast explicit export friend mutable namespace new "
            "noexcept nullptr operator private protected public reinterpret_cast requires "
            "static_assert static_cast template this thread_local throw try typeid typename "
            "using virtual co_await co_return co_yield"
        ),
        directives=True,
        containers=frozenset({"class_specifier", "struct_specifier"}),
    ),
}
"""Every language with symbols: the languages chunked by symbols."""


def query_for(language: str) -> tree_sitter.Query | None:
    """The compiled query of ``language`` (captures ``def``, ``call``, ``import``,
    ``skip`` (not code) and ``code`` (code inside ``skip``))."""
    return _queries.get(language)


def _compile(language: str) -> tree_sitter.Query | None:
    rules = RULES.get(language)
    grammar = languages.load_language(language)
    if rules is None or grammar is None:
        return None

    def alternatives(types: frozenset[str] | dict[str, str], capture: str) -> list[str]:
        known = sorted(t for t in types if grammar.id_for_node_kind(t, True))
        return ["[" + " ".join(f"({t})" for t in known) + f"] @{capture}"] if known else []

    source = "\n".join(
        [
            *alternatives(rules.definitions, "def"),
            *rules.calls,
            *alternatives(rules.imports, "import"),
            *alternatives(rules.non_code, "skip"),
            *alternatives(rules.code, "code"),
        ]
    )
    try:
        return tree_sitter.Query(grammar, source)
    except (tree_sitter.QueryError, ValueError) as e:  # a grammar wheel that renamed a node
        logger.warning("no symbols for %s: its query does not compile (%s)", language, e)
        return None


_queries: languages.OncePerLanguage[tree_sitter.Query | None] = languages.OncePerLanguage(_compile)


def word_pattern(language: str) -> re.Pattern[bytes]:
    """Maximal runs of identifier bytes (numbers included: a run starting with a digit is
    one); any non-ASCII byte counts as a letter (UTF-8 identifiers)."""
    return _words.get(language)[0]


def word_bytes(language: str) -> np.ndarray:
    """The bytes of :func:`word_pattern` as a 256-entry boolean table."""
    return _words.get(language)[1]


def _word(language: str) -> tuple[re.Pattern[bytes], np.ndarray]:
    dollar = RULES[language].dollar
    pattern = re.compile(rb"[\w\x80-\xff$]+" if dollar else rb"[\w\x80-\xff]+")
    table = np.zeros(256, dtype=bool)
    for byte in range(256):
        table[byte] = pattern.fullmatch(bytes([byte])) is not None
    return pattern, table


_words: languages.OncePerLanguage[tuple[re.Pattern[bytes], np.ndarray]] = languages.OncePerLanguage(
    _word
)
