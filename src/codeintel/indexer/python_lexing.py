"""Python's comments, strings, definitions and imports without a query walk of the tree.

The symbol pass needs, per file, the bytes that are code (comments and strings
blanked, f-string interpolations kept) and the definition and import statement
nodes. A tree-sitter query finds them by visiting every node of the tree: on
sympy 7.6M nodes, ~1.5 CPU s however little the query matches
(docs/performance.md). For Python the same facts come from the bytes: comments
and strings are regular tokens (a regular expression, as :mod:`tokenize` finds
them), and ``def``, ``class`` and ``import`` are hard keywords that only begin
the statements they name, so the tree is asked only at those places
(``descendant_for_byte_range``, a walk down one path in C). An f-string is handed
to the tree whole: its end (PEP 701 lets interpolations reuse its quote) and the
parts that are code again come from its own subtree, as the query gave them.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import tree_sitter

from codeintel.indexer import symbol_rules

# Comments, then the four string forms; a string's prefix is read back from the bytes
# before its quote. An unterminated one-line string stops at the line's end.
_TOKEN = re.compile(
    rb"#[^\r\n]*"
    rb"|'''(?:[^'\\]++|\\.|'(?!''))*+(?:'''|\Z)"
    rb'|"""(?:[^"\\]++|\\.|"(?!""))*+(?:"""|\Z)'
    rb"|'(?:[^'\\\r\n]++|\\(?:\r\n|.))*+'?"
    rb'|"(?:[^"\\\r\n]++|\\(?:\r\n|.))*+"?',
    re.DOTALL,
)
_HASH = ord("#")
_PREFIX = np.zeros(256, dtype=bool)
_PREFIX[list(b"rRbBuUfFtT")] = True
_FORMATTED = frozenset(b"fFtT")
_WORD = np.zeros(256, dtype=bool)
_WORD[list(b"_0123456789")] = _WORD[ord("a") : ord("z") + 1] = True
_WORD[ord("A") : ord("Z") + 1] = _WORD[128:] = True
_WORD_OR_DOT = _WORD.copy()
_WORD_OR_DOT[ord(".")] = True
# Literal-led patterns: the regex engine skips to candidates at C speed (a pattern led by
# `^` or a look-behind tries every byte: 0.36 and 0.67 CPU s over sympy against 0.19 and 0.02).
# Possessive blanks: a line that is no definition fails once, not once per indent width
# (0.19 -> 0.06 CPU s over sympy).
_DEFINITION_LINE = rb"[ \t\f]*+(?:async[ \t\f]++)?(def|class)(?![\w\x80-\xff])"
_DEFINITION = re.compile(rb"\n" + _DEFINITION_LINE)
_FIRST_DEFINITION = re.compile(_DEFINITION_LINE)
_IMPORT = re.compile(rb"import(?![\w\x80-\xff])")


def scan(
    tree: tree_sitter.Tree,
    source: bytes,
    rules: symbol_rules.SymbolRules,
    code: bytes | None = None,
) -> tuple[bytes, list[tree_sitter.Node], list[tree_sitter.Node]]:
    """(``source`` with comments and strings zeroed, definition nodes, import statements);
    ``code`` when :func:`codes` made it already."""
    root = tree.root_node
    if code is None:
        (code,) = codes([root], [source], rules)
    return code, _definitions(root, code, rules), _imports(root, code, rules)


def codes(
    roots: list[tree_sitter.Node], sources: list[bytes], rules: symbol_rules.SymbolRules
) -> list[bytes]:
    """Each source with comments and strings zeroed, f-string interpolations kept.

    The files are scanned joined by a line break, numpy's cost per call paid once: a
    token that runs past its file's end (an unterminated string) sends them back one by
    one, and a file with a PEP 701 f-string is redone token by token.
    """
    joined = b"\n".join(sources)
    bounds = np.fromiter(
        itertools.chain.from_iterable(match.span() for match in _TOKEN.finditer(joined)),
        dtype=np.int64,
    ).reshape(-1, 2)
    if not len(bounds):
        return list(sources)
    sizes = np.array([len(s) for s in sources], dtype=np.int64)
    bases = np.concatenate(([0], np.cumsum(sizes + 1)[:-1]))
    starts, ends = bounds[:, 0].copy(), bounds[:, 1]
    file_of = np.searchsorted(bases, starts, side="right") - 1
    if len(sources) > 1 and (ends > bases[file_of] + sizes[file_of]).any():
        return [codes([r], [s], rules)[0] for r, s in zip(roots, sources, strict=True)]
    data = np.frombuffer(joined, dtype=np.uint8)
    # A string's prefix is the one or two letters just before its quote, not part of a word.
    quoted = data[starts] != _HASH
    width = np.zeros(len(starts), dtype=np.int64)
    for back in (1, 2):
        before = np.maximum(starts - back, 0)
        width += quoted & (width == back - 1) & (starts >= back) & _PREFIX[data[before]]
    glued = (starts - width > 0) & _WORD[data[np.maximum(starts - width - 1, 0)]]
    width[glued] = 0  # `xr"…"` is no prefix (and no Python)
    starts -= width
    formatted: list[tuple[int, bytes]] = []
    sequential: set[int] = set()
    keep = np.ones(len(starts), dtype=bool)
    for i in np.flatnonzero(quoted & (width > 0)).tolist():
        start = int(starts[i])
        if not any(joined[j] in _FORMATTED for j in range(start, start + int(width[i]))):
            continue
        k = int(file_of[i])
        base = int(bases[k])
        node = _string_at(roots[k], start - base)
        if node is None:
            continue
        if node.end_byte + base != ends[i]:  # a PEP 701 f-string reusing its quote
            sequential.add(k)
            continue
        formatted.append((start, _formatted(node, sources[k], rules)))
        keep[i] = False
    code = _masked(joined, starts[keep], ends[keep], formatted)
    return [
        _code_sequential(roots[k], source, rules)
        if k in sequential
        else code[base : base + len(source)]
        for k, (base, source) in enumerate(zip(bases.tolist(), sources, strict=True))
    ]


def _code_sequential(
    root: tree_sitter.Node, source: bytes, rules: symbol_rules.SymbolRules
) -> bytes:
    """:func:`_code` one token at a time, each f-string's end taken from the tree."""
    starts: list[int] = []
    ends: list[int] = []
    formatted: list[tuple[int, bytes]] = []
    pos = 0
    while match := _TOKEN.search(source, pos):
        start, end = match.span()
        pos = end
        if source[start] != _HASH:
            prefix = start
            while prefix > start - 2 and prefix > 0 and _PREFIX[source[prefix - 1]]:
                prefix -= 1
            if prefix > 0 and _WORD[source[prefix - 1]]:
                prefix = start
            if any(source[j] in _FORMATTED for j in range(prefix, start)):
                node = _string_at(root, prefix)
                if node is not None:
                    formatted.append((prefix, _formatted(node, source, rules)))
                    pos = max(node.end_byte, start + 1)
                    continue
            start = prefix
        starts.append(start)
        ends.append(end)
    return _masked(
        source, np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64), formatted
    )


def _masked(
    source: bytes, starts: np.ndarray, ends: np.ndarray, formatted: list[tuple[int, bytes]]
) -> bytes:
    """``source`` zeroed over the disjoint ``starts``/``ends`` ranges, f-strings patched in."""
    code = source
    if len(starts):  # runs of code and not code alternate: one repeat makes the mask
        edges = np.empty(2 * len(starts) + 2, dtype=np.int64)
        edges[0], edges[1:-1:2], edges[2:-1:2], edges[-1] = 0, starts, ends, len(source)
        inside = np.resize(np.array([False, True]), len(edges) - 1)
        masked = np.frombuffer(source, dtype=np.uint8).copy()
        masked[np.repeat(inside, np.diff(edges))] = 0
        code = masked.tobytes()
    if not formatted:
        return code
    patched = bytearray(code)
    for start, text in formatted:
        patched[start : start + len(text)] = text
    return bytes(patched)


def _string_at(root: tree_sitter.Node, start: int) -> tree_sitter.Node | None:
    """The tree's ``string`` node starting at ``start`` (``None`` in an error region)."""
    node: tree_sitter.Node | None = root.descendant_for_byte_range(start, start + 1)
    while node is not None and node.start_byte == start and node.type != "string":
        node = node.parent
    return node if node is not None and node.start_byte == start else None


def _formatted(node: tree_sitter.Node, source: bytes, rules: symbol_rules.SymbolRules) -> bytes:
    """An f-string's bytes with what is not code zeroed: the nodes the query captured as
    ``skip`` and ``code`` inside it, applied outermost first."""
    base = node.start_byte
    found: list[tuple[int, int, bool]] = []
    pending = [node]
    while pending:
        current = pending.pop()
        if current.type in rules.non_code:
            found.append((current.start_byte, -current.end_byte, False))
        elif current.type in rules.code:
            found.append((current.start_byte, -current.end_byte, True))
        pending.extend(current.children)
    text = source[base : node.end_byte]
    masked = bytearray(text)
    for start, negative_end, is_code in sorted(found):
        a, b = start - base, -negative_end - base
        masked[a:b] = text[a:b] if is_code else bytes(b - a)
    return bytes(masked)


def _definitions(
    root: tree_sitter.Node, code: bytes, rules: symbol_rules.SymbolRules
) -> list[tree_sitter.Node]:
    """Every ``def`` and ``class`` statement: the keyword begins a line of code."""
    found: list[tree_sitter.Node] = []
    first = _FIRST_DEFINITION.match(code)
    for match in ([first] if first else []) + list(_DEFINITION.finditer(code)):
        start, end = match.span(1)
        keyword = root.descendant_for_byte_range(start, end)
        parent = keyword.parent if keyword is not None else None
        if parent is not None and parent.type in rules.definitions:
            found.append(parent)
    return found


def _imports(
    root: tree_sitter.Node, code: bytes, rules: symbol_rules.SymbolRules
) -> list[tree_sitter.Node]:
    """Every import statement: the ``import`` keyword is in each, once."""
    found: list[tree_sitter.Node] = []
    for match in _IMPORT.finditer(code):
        start, end = match.span()
        if start and _WORD_OR_DOT[code[start - 1]]:
            continue
        keyword = root.descendant_for_byte_range(start, end)
        parent = keyword.parent if keyword is not None else None
        if parent is not None and parent.type in rules.imports:
            found.append(parent)
    return found
