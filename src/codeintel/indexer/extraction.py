"""Symbols and identifier occurrences from the parse tree the chunker already made.

Navigation (find_symbol, file_outline, find_references) needs every definition
with its qualified name, kind, span, signature and first doc line, and every
identifier with its position, kind and enclosing definition. They come from the
same ``tree_sitter.Tree`` as the chunks (:func:`codeintel.indexer.chunking.chunk_and_extract`):
no file is parsed twice. One query per language (:mod:`codeintel.indexer.symbol_rules`)
captures the definition, callee, import, comment and string nodes in C; Python gets
the same without the query's walk of every node (:mod:`codeintel.indexer.python_lexing`;
its callees are the words before ``(``). This module nests the definitions by byte
range. Identifiers are the runs of word bytes of the file with comments and strings
zeroed out (f-string and template interpolations kept: they hold code), told apart by a
hash of their bytes, and each gets its line, kind and innermost enclosing definition from numpy
searches, never a Python object per identifier. The tree is needed only for the
definitions and the code bytes (:func:`prepare`); the occurrences of many files are then
found at once (:class:`Batch`, :func:`finish`), numpy's cost per call paid per batch.

Rules:

* A definition's span starts at its wrapper (decorators, ``export``,
  ``template<>``) and ends with its node; its ``line`` and ``column`` are those
  of its name. A function inside a class-like definition is a ``method``; so is
  a C++ function defined with a qualified name (``void Foo::bar()``).
* Qualified names join the enclosing definitions with ``.`` (``Class.method``,
  ``outer.inner``, Go ``Type.Method``, Rust ``Type.method`` from its ``impl``);
  namespaces and modules the chunker looks through add nothing, exactly as in
  the chunks' ``symbol`` column.
* The signature is the definition's text from its first line up to its body
  (at most :data:`SIGNATURE_LINES` lines and :data:`SIGNATURE_CHARS` characters);
  the doc is the first line of a Python docstring, else of the comment block
  directly above the definition.
* A definition's own name node is not an occurrence (it is the definition).
* An identifier is a word outside comments and strings that is not a reserved word
  of the language (a reserved word after ``.`` is a property name and counts).
"""

from __future__ import annotations

import functools
import logging
import re

import numpy as np
import tree_sitter

from codeintel.core.store import symbols as symbols_store
from codeintel.indexer import languages, python_lexing, symbol_rules

logger = logging.getLogger(__name__)

SIGNATURE_LINES = 4
SIGNATURE_CHARS = 300
DOC_CHARS = 200

_COMMENT_MARKERS = re.compile(r"^\s*(/\*\*|/\*!|/\*|\*/|///|//!|//|\*|#+|--)\s?")
_BODY_FIELDS = ("body",)


def extract(
    path: str, language: str, tree: tree_sitter.Tree | None, source: bytes
) -> symbols_store.FileSymbols:
    """The symbols and occurrences of one parsed file (empty without rules or a tree)."""
    prepared = prepare(path, language, tree, source)
    finish([prepared])
    return prepared.out


class Prepared:
    """One file's definitions and import span, read from its tree, and what its
    occurrences are found from (:func:`finish`): the tree is no longer needed."""

    __slots__ = ("calls", "code", "definitions", "imports", "out", "rules", "source")

    def __init__(
        self,
        out: symbols_store.FileSymbols,
        rules: symbol_rules.SymbolRules | None = None,
        code: bytes = b"",
        source: bytes = b"",
        calls: np.ndarray | None = None,
        imports: np.ndarray | None = None,
        definitions: list[_Definition] | None = None,
    ) -> None:
        self.out = out
        self.rules = rules
        """``None``: nothing to find (no rules or no tree)."""
        self.code = code
        self.source = source
        self.calls = calls
        """Start bytes of the callees' names; ``None`` where calls are read from the bytes."""
        self.imports = imports
        """(start, end) bytes of the import statements."""
        self.definitions = definitions or []


def prepare(
    path: str,
    language: str,
    tree: tree_sitter.Tree | None,
    source: bytes,
    *,
    out: symbols_store.FileSymbols | None = None,
    code: bytes | None = None,
) -> Prepared:
    """The part of :func:`extract` that needs the tree: definitions, imports, code bytes
    (into ``out`` when given; ``code`` when Python's were made with others')."""
    out = symbols_store.FileSymbols(path, language) if out is None else out
    rules = symbol_rules.RULES.get(language)
    query = symbol_rules.query_for(language)
    spec = languages.grammar_for(language)
    if rules is None or query is None or spec is None or tree is None:
        return Prepared(out)
    if rules.lexer:
        code, found, imports = python_lexing.scan(tree, source, rules, code)
        calls = None
    else:
        captures = tree_sitter.QueryCursor(query).captures(tree.root_node)
        code = _code_bytes(source, captures.get("skip", []), captures.get("code", []))
        found, imports = captures.get("def", []), captures.get("import", [])
        callees = captures.get("call", [])
        calls = np.fromiter((n.start_byte for n in callees), dtype=np.int64, count=len(callees))
    definitions = (_python_definitions if rules.lexer else _definitions)(
        out, rules, spec, found, source, code
    )
    _imports_span(out, imports)
    spans = np.array(sorted((n.start_byte, n.end_byte) for n in imports), dtype=np.int64)
    return Prepared(out, rules, code, source, calls, spans.reshape(-1, 2), definitions)


def finish(files: list[Prepared]) -> None:
    """Find the occurrences of prepared files, filling their ``out`` in place.

    Files of one language are done together (:func:`_occurrences`): numpy's cost per
    call, not per byte, was a third of the symbol pass on sympy's 1,532 files. A batch
    whose words cannot all be told apart by hash is done again a file at a time.
    """
    by_language: dict[str, list[Prepared]] = {}
    for file in files:
        if file.rules is not None and file.code:
            by_language.setdefault(file.out.language, []).append(file)
    for group in by_language.values():
        if not _occurrences(group) and len(group) > 1:
            for file in group:
                _occurrences([file])


class Batch:
    """Parsed files whose symbols are extracted together, every :data:`BATCH_BYTES` of
    source (and at :meth:`flush`): Python's code bytes (:func:`python_lexing.codes`) and
    every language's occurrences (:func:`finish`) many files at a time."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = BATCH_BYTES if limit is None else limit
        self._files: list[tuple[symbols_store.FileSymbols, tree_sitter.Tree | None, bytes]] = []
        self._bytes = 0

    def add(
        self, path: str, language: str, tree: tree_sitter.Tree | None, source: bytes
    ) -> symbols_store.FileSymbols:
        """The file's symbols: empty until the batch is flushed, complete after."""
        out = symbols_store.FileSymbols(path, language)
        self._files.append((out, tree, source))
        self._bytes += len(source)
        if self._bytes >= self.limit:
            self.flush()
        return out

    def flush(self) -> None:
        files, self._files, self._bytes = self._files, [], 0
        try:
            finish(_prepared(files))
        except Exception as e:  # content must never fail indexing: a file at a time
            logger.debug("symbol batch failed (%s); extracting its files one by one", e)
            for out, tree, source in files:
                _emptied(out)
                try:
                    finish(_prepared([(out, tree, source)]))
                except Exception as e:
                    logger.debug("%s: symbol extraction failed (%s)", out.path, e)
                    _emptied(out)


def _prepared(
    files: list[tuple[symbols_store.FileSymbols, tree_sitter.Tree | None, bytes]],
) -> list[Prepared]:
    """:func:`prepare` of each file, Python's code bytes made for all of them at once."""
    python = [
        (i, tree.root_node, source)
        for i, (out, tree, source) in enumerate(files)
        if tree is not None and out.language == "python"
    ]
    codes: dict[int, bytes] = {}
    if python:
        made = python_lexing.codes(
            [root for _, root, _ in python],
            [source for _, _, source in python],
            symbol_rules.RULES["python"],
        )
        codes = {i: code for (i, _, _), code in zip(python, made, strict=True)}
    return [
        prepare(out.path, out.language, tree, source, out=out, code=codes.get(i))
        for i, (out, tree, source) in enumerate(files)
    ]


BATCH_BYTES = 256 * 1024
"""Source bytes finished at once: sixteen files of sympy's size took 0.63 CPU s for its
occurrences against 0.99 one file at a time; sixty-four were slower again (0.72)."""


def _emptied(out: symbols_store.FileSymbols) -> None:
    fresh = symbols_store.FileSymbols(out.path, out.language)
    for slot in symbols_store.FileSymbols.__slots__:
        setattr(out, slot, getattr(fresh, slot))


class _Definition:
    __slots__ = ("end", "index", "name_start", "start", "type")

    def __init__(self, start: int, end: int, index: int, name_start: int, type_: str) -> None:
        self.start = start
        self.end = end
        self.index = index
        self.name_start = name_start
        self.type = type_


def _definitions(
    out: symbols_store.FileSymbols,
    rules: symbol_rules.SymbolRules,
    spec: languages.GrammarSpec,
    nodes: list[tree_sitter.Node],
    source: bytes,
    code: bytes,
) -> list[_Definition]:
    """Append the file's definitions in source order; their byte ranges for the sweep.

    ``code`` is ``source`` with comments and strings zeroed: where a comment could be,
    it answers without asking the tree (:func:`_signature`, :func:`_doc`)."""
    found: list[tuple[tree_sitter.Node, tree_sitter.Node]] = []
    for node in nodes:
        outer = node
        parent = node.parent
        while parent is not None and parent.type in spec.wrappers:
            outer = parent
            parent = parent.parent
        found.append((outer, node))
    found.sort(key=lambda pair: (pair[0].start_byte, -pair[0].end_byte, pair[1].start_byte))
    ranges: list[_Definition] = []
    stack: list[_Definition] = []
    for outer, node in found:
        full = _definition_name(node, source)
        if not full:
            continue
        name = full.rsplit(".", 1)[-1]
        while stack and stack[-1].end <= outer.start_byte:
            stack.pop()
        parent_def = stack[-1] if stack else None
        name_node = _name_node(node, name, rules.identifiers, source)
        kind = _kind(node, rules, parent_def, full)
        parent_index = parent_def.index if parent_def else -1
        qualname = f"{out.symbols[parent_index].qualname}.{full}" if parent_def else full
        line, column = name_node.start_point if name_node else node.start_point
        out.symbols.append(
            symbols_store.SymbolDraft(
                name=name,
                qualname=qualname,
                kind=kind,
                start_line=outer.start_point.row + 1,
                end_line=_end_row(outer) + 1,
                line=int(line) + 1,
                column=int(column),
                signature=_signature(node, source, code),
                doc=_doc(node, outer, language=out.language, source=source, code=code),
                parent=parent_index,
            )
        )
        definition = _Definition(
            outer.start_byte,
            outer.end_byte,
            len(out.symbols) - 1,
            name_node.start_byte if name_node else -1,
            node.type,
        )
        ranges.append(definition)
        stack.append(definition)
    return ranges


def _python_definitions(
    out: symbols_store.FileSymbols,
    rules: symbol_rules.SymbolRules,
    spec: languages.GrammarSpec,
    nodes: list[tree_sitter.Node],
    source: bytes,
    code: bytes,
) -> list[_Definition]:
    """:func:`_definitions` for Python's ``def`` and ``class`` statements, each fact of a
    node asked once: the symbol pass's other hot path (a definition per 540 bytes of
    sympy). The general function is its oracle (``tests/indexer/test_extraction_fast_paths.py``).

    A Python definition is named by its ``name`` field, a plain identifier; its one
    wrapper is ``decorated_definition``; its body is a ``block`` whose first byte starts
    its docstring if it has one. ``nodes`` come in source order (a ``def`` cannot sit in
    a decorator), so no sort is needed; a file where they do not, or a name that is not
    UTF-8, goes to the general function.
    """
    ranges: list[_Definition] = []
    stack: list[_Definition] = []
    symbols = out.symbols
    containers, kinds, wrappers = rules.containers, rules.definitions, spec.wrappers
    last = -1
    for node in nodes:
        name_node = node.child_by_field_name("name")
        if name_node is None:
            continue
        name_start = name_node.start_byte
        name = source[name_start : name_node.end_byte].decode("utf-8", errors="replace")
        outer = node.parent
        if outer is None or outer.type not in wrappers:
            outer = node
        start = outer.start_byte
        if not name or "\ufffd" in name or start < last:
            del symbols[len(symbols) - len(ranges) :]
            return _definitions(out, rules, spec, nodes, source, code)
        last = start
        while stack and stack[-1].end <= start:
            stack.pop()
        parent_def = stack[-1] if stack else None
        node_type = node.type
        kind = kinds[node_type]
        if kind == "function" and parent_def is not None and parent_def.type in containers:
            kind = "method"
        parent_index = parent_def.index if parent_def else -1
        body = node.child_by_field_name("body")
        doc = _python_doc(body, source) if body is not None else None
        if doc is None:
            doc = _comment_doc(outer, source, code)
        line, column = name_node.start_point
        symbols.append(
            symbols_store.SymbolDraft(
                name=name,
                qualname=f"{symbols[parent_index].qualname}.{name}" if parent_def else name,
                kind=kind,
                start_line=outer.start_point.row + 1,
                end_line=_end_row(outer) + 1,
                line=line + 1,
                column=column,
                signature=_head(node.start_byte, node.end_byte, body, source, code),
                doc=doc,
                parent=parent_index,
            )
        )
        definition = _Definition(start, outer.end_byte, len(symbols) - 1, name_start, node_type)
        ranges.append(definition)
        stack.append(definition)
    return ranges


_FUNCTION_VALUES = frozenset(
    {"function_expression", "function", "arrow_function", "generator_function", "class"}
)


_BINDINGS = frozenset({"assignment_expression", "variable_declarator", "pair"})


def _text_or_none(node: tree_sitter.Node | None, source: bytes) -> str | None:
    return _text(node, source) or None if node is not None else None


def _named_object(pair: tree_sitter.Node) -> bool:
    """A pair of a module-like object bound to a name, not of options passed to a call."""
    holder = pair.parent.parent if pair.parent is not None else None
    return holder is not None and holder.type in ("variable_declarator", "assignment_expression")


def _definition_name(node: tree_sitter.Node, source: bytes) -> str | None:
    """:func:`languages.symbol_name`, plus JavaScript's functions bound by assignment
    (``res.send = function``, ``View.prototype.render = …``) or in an object literal."""
    if node.type == "function_expression":  # bound ones are named by their binding
        parent = node.parent
        bound = parent is not None and parent.type in _BINDINGS
        if parent is not None and parent.type == "pair" and not _named_object(parent):
            bound = False
        return None if bound else _text_or_none(node.child_by_field_name("name"), source)
    if node.type not in ("assignment_expression", "pair"):
        return languages.symbol_name(node)
    value = node.child_by_field_name("right" if node.type == "assignment_expression" else "value")
    if value is None or value.type not in _FUNCTION_VALUES:
        return None
    if node.type == "pair" and not _named_object(node):
        return None
    target = node.child_by_field_name("left" if node.type == "assignment_expression" else "key")
    if target is None or target.type not in (
        "identifier", "member_expression", "property_identifier"
    ):  # fmt: skip
        return None
    parts = [p for p in _text(target, source).split(".") if p not in ("prototype", "this")]
    if parts[-1] == "exports" or not all(p.isidentifier() for p in parts):
        own = value.child_by_field_name("name")  # module.exports = function name() {…}
        return _text(own, source) if own is not None else None
    return ".".join(parts) or None


def _kind(
    node: tree_sitter.Node,
    rules: symbol_rules.SymbolRules,
    parent: _Definition | None,
    full: str,
) -> str:
    kind = rules.definitions[node.type]
    if node.type == "type_spec":  # Go: the declared type says what it is
        declared = node.child_by_field_name("type")
        if declared is not None and declared.type == "struct_type":
            return "struct"
        if declared is not None and declared.type == "interface_type":
            return "interface"
        return "type"
    if kind == "function" and (
        (parent is not None and parent.type in rules.containers) or "." in full
    ):
        return "method"
    return kind


def _name_node(
    node: tree_sitter.Node, name: str, identifiers: frozenset[str], source: bytes
) -> tree_sitter.Node | None:
    """The definition's ``name`` field, else the first identifier spelling ``name`` in its
    head (never its body)."""
    field = node.child_by_field_name("name")
    wanted = name.encode("utf-8", "surrogatepass")
    if field is not None and source[field.start_byte : field.end_byte] == wanted:
        return field
    body = node.child_by_field_name("body")
    stop = body.start_byte if body is not None else node.end_byte
    pending = list(reversed(node.children))
    while pending:
        child = pending.pop()
        if child.start_byte >= stop:
            continue
        if child.type in identifiers:
            if source[child.start_byte : child.end_byte] == wanted:
                return child
            continue
        pending.extend(reversed(child.children))
    return None


def _signature(node: tree_sitter.Node, source: bytes, code: bytes) -> str:
    """The definition's head: its text up to the body, bounded."""
    return _head(node.start_byte, node.end_byte, _body(node), source, code)


def _head(start: int, end: int, body: tree_sitter.Node | None, source: bytes, code: bytes) -> str:
    """The text of a definition over bytes ``start:end`` up to its ``body``, bounded.

    The head ends with its last token before the body that is not a comment: the last
    byte of ``code`` before the body that is neither blank nor zeroed (no definition's
    head ends with a string literal). Without a body it is the first line.
    """
    if body is not None and body.start_byte > start:
        end = start + len(code[start : body.start_byte].rstrip(_HEAD_TRAILER))
    else:
        newline = source.find(b"\n", start, end)
        end = newline if newline >= 0 else end
    head = source[start:end]
    if len(head) <= SIGNATURE_CHARS and b"\n" not in head:  # most heads: one short line
        return head.decode("utf-8", errors="replace").rstrip()
    lines = [line.rstrip() for line in head.decode("utf-8", errors="replace").split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    clipped = len(lines) > SIGNATURE_LINES
    text = "\n".join(lines[:SIGNATURE_LINES])
    if len(text) > SIGNATURE_CHARS:
        text, clipped = text[:SIGNATURE_CHARS], True
    return text + " …" if clipped else text


_HEAD_TRAILER = b" \t\r\n\f\v\0"
"""What may come between a head's last token and its body: blanks, and comments (zeroed)."""


def _body(node: tree_sitter.Node) -> tree_sitter.Node | None:
    body = node.child_by_field_name("body")
    if body is not None:
        return body
    if node.type in ("lexical_declaration", "variable_declaration"):
        for declarator in node.named_children:
            value = declarator.child_by_field_name("value")
            if value is not None:
                return value.child_by_field_name("body")
    if node.type == "type_spec":
        declared = node.child_by_field_name("type")
        if declared is not None and declared.type in ("struct_type", "interface_type"):
            for child in declared.children:
                if child.type in ("field_declaration_list", "{"):
                    return child
    return None


def _doc(
    node: tree_sitter.Node, outer: tree_sitter.Node, *, language: str, source: bytes, code: bytes
) -> str:
    """The first line of the docstring (Python) or of the comment block just above."""
    if language == "python":
        body = node.child_by_field_name("body")
        doc = _python_doc(body, source) if body is not None else None
        if doc is not None:
            return doc
    return _comment_doc(outer, source, code)


def _python_doc(body: tree_sitter.Node, source: bytes) -> str | None:
    """The first line of the docstring that starts ``body``; ``None`` without one."""
    # A docstring starts its body, so the body's first byte is a quote or a prefix.
    if not _STRING_START.match(source, body.start_byte):
        return None
    # named_child(0), not named_children[0]: a class body's statements are not made
    first = body.named_child(0) if body.named_child_count else None
    if first is None or first.type != "expression_statement":
        return None
    string = first.named_child(0) if first.named_child_count else None
    if string is None or string.type != "string":
        return None
    for child in string.named_children:
        if child.type == "string_content":
            return _first_line(_text(child, source))
    return ""


def _comment_doc(outer: tree_sitter.Node, source: bytes, code: bytes) -> str:
    """The first line of the comment block just above a definition."""
    # A comment ending on the line above (or before the definition on its first line)
    # zeroed bytes of ``code`` there: without one, there is no block to read.
    start = outer.start_byte
    above = source.rfind(b"\n", 0, max(source.rfind(b"\n", 0, start), 0)) + 1
    if code.find(0, above, start) < 0:  # no byte zeroed there (a NUL in the source asks)
        return ""
    block: list[tree_sitter.Node] = []
    row = outer.start_point.row
    sibling = outer.prev_named_sibling
    while sibling is not None and "comment" in sibling.type and _end_row(sibling) >= row - 1:
        block.append(sibling)
        row = sibling.start_point.row
        sibling = sibling.prev_named_sibling
    for comment in reversed(block):
        for line in _text(comment, source).split("\n"):
            cleaned = _COMMENT_MARKERS.sub("", line).strip().rstrip("*/").strip()
            if cleaned:
                return cleaned[:DOC_CHARS]
    return ""


_STRING_START = re.compile(rb"[rRbBuUfFtT]{0,2}['\"]")
"""Where a Python string literal may start: a quote after at most two prefix letters."""


def _first_line(text: str) -> str:
    for line in text.split("\n"):
        if line.strip():
            return line.strip()[:DOC_CHARS]
    return ""


def _imports_span(out: symbols_store.FileSymbols, nodes: list[tree_sitter.Node]) -> None:
    top = [n for n in nodes if n.parent is not None and n.parent.parent is None]
    if top:
        out.imports = (
            min(n.start_point.row for n in top) + 1,
            max(_end_row(n) for n in top) + 1,
        )


def _occurrences(files: list[Prepared]) -> bool:
    """Every identifier outside comments and strings but the definitions' names, with
    kind and enclosing definition, in source order, for files of one language; ``False``
    (nothing filled) when a word is too long to hash or two words share a hash.

    The hot path of the symbol pass (every identifier of the corpus): numpy finds the
    words of the files' code bytes, joined by a zero byte, tells them apart by a hash
    (:func:`_word_ids`) and gives each its line, column, kind and enclosing definition;
    Python makes an object per distinct word of a file, never per identifier nor a
    tree-sitter ``Node``.
    """
    rules = files[0].rules
    language = files[0].out.language
    assert rules is not None
    codes = [f.code for f in files]
    if rules.directives:
        codes = [_DIRECTIVE.sub(_blank, c) for c in codes]
    code = b"\0".join(codes)
    sizes = np.array([len(c) + 1 for c in codes], dtype=np.int64)
    bases = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    data = np.frombuffer(code, dtype=np.uint8)
    is_word = symbol_rules.word_bytes(language)[data]
    starts = np.flatnonzero(is_word & ~np.concatenate(([False], is_word[:-1])))
    if not len(starts):
        return True
    ends = np.flatnonzero(is_word & ~np.concatenate((is_word[1:], [False]))) + 1
    file_of = np.searchsorted(bases, starts, side="right") - 1
    words = _word_ids(code, data, starts, ends, file_of, language)
    if words is None:
        return False
    firsts, index, hashes = words
    first_starts, first_ends = starts[firsts], ends[firsts]  # each distinct word's first
    # Numbers are words too, and reserved words are not identifiers unless after a `.`.
    number = (data[first_starts] - _ZERO) < 10
    keyword = _reserved(code, first_starts, first_ends, hashes, rules.keywords)
    keep = ~number[index]
    after_dot = np.zeros(len(starts), dtype=bool)
    after_dot[1:] = data[starts[1:] - 1] == _DOT
    keep &= ~keyword[index] | after_dot
    # The exponent of `1.e-6` follows a number and a dot: part of the number, not a name.
    fraction = np.zeros(len(starts), dtype=bool)
    fraction[1:] = after_dot[1:] & (ends[:-1] == starts[1:] - 1) & number[index[:-1]]
    keep &= ~fraction
    own = [base + d.name_start for f, base in zip(files, bases.tolist(), strict=True)
           for d in f.definitions if d.name_start >= 0]  # fmt: skip
    if own:
        keep &= ~_member(starts, np.sort(np.array(own, dtype=np.int64)))
    starts, ends, index, file_of = starts[keep], ends[keep], index[keep], file_of[keep]
    # A file's names are its distinct words that kept an occurrence, numbered from 0.
    used = np.bincount(index, minlength=len(firsts)) > 0
    used_rank = np.cumsum(used) - 1
    word_file = np.searchsorted(bases, first_starts, side="right") - 1
    used_before = np.searchsorted(word_file[used], np.arange(len(files)))
    name_index = (used_rank[index] - used_before[file_of]).astype(np.int32)
    names = _names(code, first_starts[used], first_ends[used], hashes, used)
    source = np.frombuffer(b"\0".join(f.source for f in files), dtype=np.uint8)
    newlines = np.flatnonzero(source == _NEWLINE)
    rows = np.searchsorted(newlines, starts)
    line_starts = bases[file_of]  # after the newline before, if it is in the same file
    if len(newlines):
        line_starts = np.maximum(line_starts, newlines[np.maximum(rows - 1, 0)] + 1)
        line_starts[rows == 0] = 0
    lines = (rows - np.searchsorted(newlines, bases)[file_of] + 1).astype(np.uint32)
    columns = (starts - line_starts).astype(np.uint32)
    if rules.lexer:
        called = _before_paren(code, data, is_word, ends, bases)
    else:
        calls = [f.calls + base for f, base in zip(files, bases.tolist(), strict=True)
                 if f.calls is not None and len(f.calls)]  # fmt: skip
        called = (
            _member(starts, np.sort(np.concatenate(calls)))
            if calls
            else np.zeros(len(starts), dtype=bool)
        )
    imports = [f.imports + base for f, base in zip(files, bases.tolist(), strict=True)
               if f.imports is not None and len(f.imports)]  # fmt: skip
    kinds = _kinds(starts, called, np.concatenate(imports) if imports else None)
    enclosing = _enclosing(starts, files, bases)
    at = np.searchsorted(file_of, np.arange(len(files) + 1)).tolist()
    named = np.searchsorted(word_file[used], np.arange(len(files) + 1)).tolist()
    for i, file in enumerate(files):
        out, a, b = file.out, at[i], at[i + 1]
        out.names = names[named[i] : named[i + 1]]
        out.name_index = name_index[a:b]
        out.lines, out.columns = lines[a:b], columns[a:b]
        out.kinds, out.enclosing = kinds[a:b], enclosing[a:b]
    return True


def _names(
    code: bytes, starts: np.ndarray, ends: np.ndarray, hashes: np.ndarray | None, used: np.ndarray
) -> list[str]:
    """The words ``code[starts:ends]`` as text, each distinct word decoded once for the
    batch (a word in many files is one ``str``), by hash where :func:`_word_ids` gave
    them and no two words of one hash differ in length."""
    if hashes is not None:
        _, firsts, inverse = np.unique(hashes[used], return_index=True, return_inverse=True)
        lengths = ends - starts
        if np.array_equal(lengths, lengths[firsts][inverse]):
            decoded = [
                code[a:b].decode("utf-8", errors="replace")
                for a, b in zip(starts[firsts].tolist(), ends[firsts].tolist(), strict=True)
            ]
            return list(map(decoded.__getitem__, inverse.tolist()))
    return [
        code[a:b].decode("utf-8", errors="replace")
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    ]


def _word_ids(
    code: bytes,
    data: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    file_of: np.ndarray,
    language: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """The files' distinct words (a word in two files is two): where each first occurs
    (positions in ``starts``, in order of first occurrence), each word's position among
    them, and their hashes; ``None`` for a batch of files that must be done one by one.

    The words are told apart by a polynomial hash of their bytes computed for all the
    bytes at once (numpy: a prefix sum of bytes times powers of an odd base, modulo
    2**64), so no Python object is made per word. Words of one hash must have one
    length; a file where they do not, or with a word longer than :data:`_HASHED_WORD`
    bytes (beyond which a power-of-two modulus has known collisions), takes the exact
    path (one ``bytes`` per word and a dict), which gives no hashes.
    """
    single = not file_of[-1]
    lengths = ends - starts
    if int(lengths.max()) > _HASHED_WORD:
        return _word_ids_exact(code, language) if single else None
    powers, inverses = _powers(len(data))
    sums = np.zeros(len(data) + 1, dtype=np.uint64)
    np.cumsum(data * powers, out=sums[1:])
    hashes = (sums[ends] - sums[starts]) * inverses[starts]
    # np.unique(return_index=, return_inverse=) by hand, of (file, hash) pairs: a stable
    # sort keeps each hash's positions, and so its files, in order.
    order = np.argsort(hashes, kind="stable")
    ordered, files = hashes[order], file_of[order]
    new = np.empty(len(ordered), dtype=bool)
    new[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    new[1:] |= files[1:] != files[:-1]
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    firsts = order[new]  # each word's first position
    if not np.array_equal(lengths, lengths[firsts][inverse]):
        return _word_ids_exact(code, language) if single else None
    by_sight = np.argsort(firsts)  # distinct words by first occurrence, so by file
    rank = np.empty(len(by_sight), dtype=np.int64)
    rank[by_sight] = np.arange(len(by_sight))
    return firsts[by_sight], rank[inverse], ordered[new][by_sight]


def _word_ids_exact(code: bytes, language: str) -> tuple[np.ndarray, np.ndarray, None]:
    """:func:`_word_ids` of one file with a ``bytes`` object per word and a dict."""
    words = symbol_rules.word_pattern(language).findall(code)
    distinct = dict.fromkeys(words)
    ids = dict(zip(distinct, range(len(distinct)), strict=True))
    index = np.fromiter(map(ids.__getitem__, words), dtype=np.int64, count=len(words))
    _, firsts = np.unique(index, return_index=True)  # ids count up in order of first sight
    return firsts, index, None


def _reserved(
    code: bytes,
    starts: np.ndarray,
    ends: np.ndarray,
    hashes: np.ndarray | None,
    keywords: frozenset[str],
) -> np.ndarray:
    """Which of the distinct words ``code[starts:ends]`` are reserved words: those whose
    hash is a reserved word's, each checked by its bytes (a few per file)."""
    found = np.zeros(len(starts), dtype=bool)
    spelled = _keyword_bytes(keywords)
    check = None if hashes is None else np.flatnonzero(_member(hashes, _keyword_hashes(keywords)))
    for i in range(len(starts)) if check is None else check.tolist():
        found[i] = code[int(starts[i]) : int(ends[i])] in spelled
    return found


@functools.cache
def _keyword_bytes(keywords: frozenset[str]) -> frozenset[bytes]:
    return frozenset(word.encode("latin-1") for word in keywords)


@functools.cache
def _keyword_hashes(keywords: frozenset[str]) -> np.ndarray:
    """The reserved words' hashes as :func:`_word_ids` computes them."""
    hashes = [
        sum(b * pow(_BASE, i, 2**64) for i, b in enumerate(w)) for w in _keyword_bytes(keywords)
    ]
    return np.sort(np.array([h % 2**64 for h in hashes], dtype=np.uint64))


_HASHED_WORD = 256
_BASE = 0x9E3779B97F4A7C15  # odd: invertible modulo 2**64
_power_table: list[tuple[np.ndarray, np.ndarray]] = []
"""One slot: the longest table made so far (replaced whole: a reader never sees half one)."""


def _powers(size: int) -> tuple[np.ndarray, np.ndarray]:
    """``base**i`` and ``base**-i`` modulo 2**64 for ``i < size`` (grown as batches need)."""
    table = _power_table[-1] if _power_table else None
    if table is None or len(table[0]) < size:
        grown = 1 << max(16, (size - 1).bit_length())  # 16 bytes each: 16 MB for 1 MiB
        table = (_geometric(_BASE, grown), _geometric(pow(_BASE, -1, 2**64), grown))
        _power_table[:] = [table]
    return table[0][:size], table[1][:size]


def _geometric(base: int, size: int) -> np.ndarray:
    """``base**i`` modulo 2**64 for ``i < size`` (a power of two): each half is the one
    before times ``base**half``, a vector product (``np.cumprod`` of uint64 took 0.1 s
    for a million)."""
    out = np.empty(size, dtype=np.uint64)
    out[0] = 1
    filled = 1
    while filled < size:
        np.multiply(out[:filled], np.uint64(pow(base, filled, 2**64)), out=out[filled : 2 * filled])
        filled *= 2
    return out


_NEWLINE, _DOT, _PAREN, _ZERO = (ord(c) for c in "\n.(0")
_INLINE_BLANK = np.zeros(256, dtype=bool)
_INLINE_BLANK[list(b" \t\f\\")] = True  # outside strings a backslash continues the line
_SPACE = np.zeros(256, dtype=bool)
_SPACE[list(b" \t\f")] = True
_BLANK = _INLINE_BLANK.copy()
_BLANK[list(b"\r\n\0")] = True  # a comment's bytes are zeroed in the code
_INLINE_RUN = re.compile(rb"[ \t\f]*(?:\\\r?\n[ \t\f]*)*")
_NESTING = np.zeros(256, dtype=np.int8)
_NESTING[list(b"([{")], _NESTING[list(b")]}")] = 1, -1
_DIRECTIVE = re.compile(rb"#[ \t]*[A-Za-z_]\w*")


def _blank(match: re.Match[bytes]) -> bytes:
    return bytes(match.end() - match.start())


def _code_bytes(source: bytes, skip: list[tree_sitter.Node], code: list[tree_sitter.Node]) -> bytes:
    """``source`` with every byte of comments and strings zeroed, interpolations kept.

    The ranges nest (a string in an interpolation in an f-string); applied outermost
    first, each inner one overrides its container.
    """
    if not skip:
        return source
    ranges = sorted(
        [(n.start_byte, -n.end_byte, False) for n in skip]
        + [(n.start_byte, -n.end_byte, True) for n in code]
    )
    masked = bytearray(source)
    for start, negative_end, is_code in ranges:
        end = -negative_end
        masked[start:end] = source[start:end] if is_code else bytes(end - start)
    return bytes(masked)


def _kinds(starts: np.ndarray, called: np.ndarray, imports: np.ndarray | None) -> np.ndarray:
    """CALL at a callee's name, else IMPORT inside an import statement (sorted (start,
    end) bytes), else OTHER."""
    kinds = np.full(len(starts), symbols_store.OTHER, dtype=np.uint8)
    if imports is not None and len(imports):  # import statements never nest
        at = np.searchsorted(imports[:, 0], starts, side="right") - 1
        inside = (at >= 0) & (starts < imports[np.maximum(at, 0), 1])
        kinds[inside] = symbols_store.IMPORT
    kinds[called] = symbols_store.CALL
    return kinds


def _before_paren(
    code: bytes, data: np.ndarray, is_word: np.ndarray, ends: np.ndarray, bases: np.ndarray
) -> np.ndarray:
    """Which words are followed by ``(``: Python's callees (a name or an attribute called),
    what its query's call patterns capture. Blanks may come between; inside brackets line
    breaks and comments too (``f\\n(x)`` calls there, not at the start of a statement).

    Found from the parentheses, fewer than the words: most follow their word directly;
    the others look back over their blanks (zeroed comments among them) to a word's end.
    """
    parens = np.flatnonzero(data == _PAREN)
    parens = parens[parens > 0]
    direct = is_word[parens - 1]
    called = parens[direct]  # each called word's end
    spaced = parens[~direct & _BLANK[data[parens - 1]]]
    if len(spaced):
        # The last byte before each that is not blank: mostly two back (`if (`, `= (`).
        last = spaced - 2
        for i in np.flatnonzero((last < 0) | _BLANK[data[np.maximum(last, 0)]]).tolist():
            at = int(last[i])
            while at >= 0 and _BLANK[code[at]]:
                at -= 1
            last[i] = at
        spaced, last = spaced[last >= 0], last[last >= 0]
        worded = is_word[last]
        spaced, last = spaced[worded], last[worded] + 1
        # One space or tab between (`if (`, `print (`) crosses nothing; longer runs may.
        crossed = (spaced - last != 1) | ~_SPACE[data[last]]
        check = np.flatnonzero(crossed)
        crossed[check] = np.fromiter(
            (
                _INLINE_RUN.fullmatch(code, a, b) is None
                for a, b in zip(last[check].tolist(), spaced[check].tolist(), strict=True)
            ),
            dtype=bool,
            count=len(check),
        )
        if crossed.any():
            inside = _Depth(data, bases).inside(last[crossed])
            keep = ~crossed
            keep[np.flatnonzero(crossed)[inside]] = True
            last = last[keep]
        called = np.sort(np.concatenate((called, last)))
    return _member(ends, called)


class _Depth:
    """Whether positions are inside brackets (openings before them outnumber closings,
    counted from the start of their file: ``bases``)."""

    def __init__(self, data: np.ndarray, bases: np.ndarray) -> None:
        self._data = data
        self._bases = bases
        self._bounds: tuple[np.ndarray, np.ndarray] | None = None

    def inside(self, where: np.ndarray) -> np.ndarray:
        if not len(where):
            return np.zeros(0, dtype=bool)
        if self._bounds is None:
            nesting = _NESTING[self._data]
            self._bounds = np.flatnonzero(nesting > 0), np.flatnonzero(nesting < 0)
        opens, closes = self._bounds
        base = self._bases[np.searchsorted(self._bases, where, side="right") - 1]
        opened = np.searchsorted(opens, where) - np.searchsorted(opens, base)
        inside: np.ndarray = opened > np.searchsorted(closes, where) - np.searchsorted(closes, base)
        return inside


def _member(values: np.ndarray, among: np.ndarray) -> np.ndarray:
    """Which ``values`` are in the sorted ``among`` (a binary search: cheaper than
    ``np.isin`` here)."""
    if not len(among):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(among, values), len(among) - 1)
    found: np.ndarray = among[at] == values
    return found


def _enclosing(starts: np.ndarray, files: list[Prepared], bases: np.ndarray) -> np.ndarray:
    """The index of each position's innermost enclosing definition in its file, -1 at
    top level.

    The nested byte ranges flatten into change points (position, innermost definition
    from there on), each file's led by a point at its start (top level); a binary search
    places each identifier.
    """
    points: list[int] = []
    labels: list[int] = []
    for file, base in zip(files, bases.tolist(), strict=True):
        points.append(base)
        labels.append(-1)
        stack: list[_Definition] = []
        for definition in file.definitions:  # in source order, containers before contents
            while stack and stack[-1].end <= definition.start:
                points.append(base + stack.pop().end)
                labels.append(stack[-1].index if stack else -1)
            stack.append(definition)
            points.append(base + definition.start)
            labels.append(definition.index)
        while stack:
            points.append(base + stack.pop().end)
            labels.append(stack[-1].index if stack else -1)
    at = np.searchsorted(np.array(points, dtype=np.int64), starts, side="right") - 1
    table: np.ndarray = np.array(labels, dtype=np.int32)[at]
    return table


def _text(node: tree_sitter.Node, source: bytes) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8", errors="replace")


def _end_row(node: tree_sitter.Node) -> int:
    row, column = node.end_point
    if column == 0 and row > node.start_point.row:
        return int(row) - 1
    return int(row)
