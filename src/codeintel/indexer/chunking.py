"""Cut a source file into the chunks that get embedded, one per symbol where possible.

Search results are chunks, so a chunk should be something an agent can act on:
a whole function, a whole method, a class's declaration. Files with a grammar
(see :mod:`codeintel.indexer.languages`) are parsed once with tree-sitter and
cut along definitions; every other file, and any file whose parse fails, is cut
into overlapping line windows.

How a parsed file is cut:

* Each function and method is one chunk, its symbol qualified by the classes
  around it (``Class.method``, ``Outer.Inner.method``; C++ ``Foo::bar`` and Go
  receivers become ``Foo.bar``). Comments, decorators and attributes directly
  above a definition (no blank line between) belong to it.
* A class (impl, trait, struct with methods) does not repeat its methods. Its
  chunk is the *header*: from its first line (decorators and doc comment
  included) to the line before its first method — base classes, docstring,
  fields. Lines inside the class between or after methods are their own chunks
  under the class's name, unless small (see below). A class without methods is
  one chunk.
* Nested functions stay inside their function's chunk; namespaces, Rust ``mod``
  and ``#ifdef`` blocks are looked through and add nothing to names (a name the
  source writes qualified, ``ns::Box::set``, keeps its qualifiers: ``ns.Box.set``).
  A Rust ``impl`` is named after its type, so its methods are ``Type.method``.
* Lines outside every definition (imports, module statements) are grouped into
  line windows with symbol ``""``. A gap of at most ``_SMALL_GAP_LINES`` lines
  joins a neighbouring definition of the same scope instead (the previous one
  first), and a gap that starts by closing a bracket (a class's ``}``) joins
  the chunk before it — so no chunk is a lone brace or a lone import.
* A definition longer than ``max_lines`` is split into consecutive pieces of at
  most ``max_lines`` lines with the same symbol, each cut preferring a blank
  line near the even split point.

The same parse gives the file's symbols and identifier occurrences
(:func:`chunk_and_extract`, :mod:`codeintel.indexer.extraction`): no file is
parsed twice.

Every chunk's text is exactly lines ``start_line..end_line`` of the file
(1-based, inclusive, counted by ``\\n``), blank lines at a chunk's edges are
trimmed, and whitespace-only chunks are dropped.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TypedDict, Unpack

import msgspec
import tree_sitter

from codeintel.core import errors
from codeintel.core.store import symbols as symbols_store
from codeintel.indexer import extraction, languages

logger = logging.getLogger(__name__)

_SMALL_GAP_LINES = 3
"""Gaps this short (after trimming blank lines) join a neighbouring definition."""

_CLOSERS = frozenset("})]")

_SYMBOL = 0
_GAP = 1


class ChunkDraft(msgspec.Struct, frozen=True):
    """One chunk of one file, before it gets an id and a vector.

    Its fields are a :class:`~codeintel.core.store.chunks.Chunk`'s after ``id``, in the
    same order, so ``publishing.chunk_rows`` builds rows positionally (a test holds them so)."""

    path: str
    start_line: int
    """First line, 1-based."""
    end_line: int
    """Last line, inclusive."""
    language: str
    symbol: str
    """Qualified name of the definition (``Class.method``), ``""`` for code outside any."""
    content_hash: str
    """Hex BLAKE2b-128 of ``text`` (UTF-8): unchanged chunks keep their vectors."""
    text: str
    """Exactly the file's lines ``start_line..end_line``, newlines included."""


class _Span:
    """A 0-based inclusive row range and what it belongs to."""

    __slots__ = ("end", "kind", "scope", "start", "symbol")

    def __init__(self, start: int, end: int, symbol: str, kind: int, scope: tuple[str, ...]):
        self.start = start
        self.end = end
        self.symbol = symbol
        self.kind = kind
        self.scope = scope
        """The names of the classes whose body holds these lines."""


class ChunkSizes(TypedDict, total=False):
    """The size options of :func:`chunk_and_extract`, which :func:`chunk_file` passes on."""

    max_lines: int
    window_lines: int
    overlap_lines: int


def chunk_file(path: str, text: str, **sizes: Unpack[ChunkSizes]) -> list[ChunkDraft]:
    """Chunks of one file, in line order (see the module docstring for the rules).

    Never raises because of the content: a missing grammar, a failed parse or
    broken syntax all end in line windows. Raises :class:`ConfigError` only for
    sizes that cannot work (``max_lines`` < 1, overlap not below the window).
    """
    drafts, _ = chunk_and_extract(path, text, symbols=False, **sizes)
    return drafts


def chunk_and_extract(
    path: str,
    text: str,
    *,
    max_lines: int = 200,
    window_lines: int = 60,
    overlap_lines: int = 10,
    symbols: bool = True,
    batch: extraction.Batch | None = None,
) -> tuple[list[ChunkDraft], symbols_store.FileSymbols | None]:
    """The chunks of :func:`chunk_file` and, from the same parse, the file's symbols and
    occurrences (:mod:`codeintel.indexer.extraction`); ``None`` for an empty file.

    With ``batch``, the occurrences are found when the batch is finished (many files at
    once, cheaper): the returned :class:`FileSymbols` is complete after ``batch.flush()``.
    A file without a grammar, or whose parse or extraction fails, gets an empty
    :class:`FileSymbols` (it exists, with no symbols): extraction never fails indexing.
    """
    if max_lines < 1 or window_lines < 1 or not 0 <= overlap_lines < window_lines:
        raise errors.ConfigError(
            f"chunk sizes need max_lines >= 1 and 0 <= overlap_lines < window_lines; got "
            f"max_lines={max_lines}, window_lines={window_lines}, overlap_lines={overlap_lines}"
        )
    if not text or text.isspace():
        return [], None
    language = languages.language_for(path)
    lines = text.split("\n")
    last_row = len(lines) - 2 if text.endswith("\n") else len(lines) - 1
    source = text.encode("utf-8", "surrogatepass")
    tree = _parse(path, language, source)
    spans = _symbol_spans(path, language, tree, last_row)
    if spans is None:
        spans = [_Span(0, last_row, "", _GAP, ())]
    found: symbols_store.FileSymbols | None = None
    if symbols:
        try:
            if batch is None:
                found = extraction.extract(path, language, tree, source)
            else:
                found = batch.add(path, language, tree, source)
        except Exception as e:  # content must never fail indexing (RecursionError included)
            logger.debug("%s: symbol extraction failed (%s)", path, e)
            found = symbols_store.FileSymbols(path, language)
    spans = _merge_small_gaps(_trimmed(spans, lines), lines, max_lines)
    window = min(window_lines, max_lines)
    drafts: list[ChunkDraft] = []
    for span in spans:
        if span.kind == _SYMBOL:
            pieces = _split(span.start, span.end, max_lines, lines)
        else:
            pieces = _windows(span.start, span.end, window, overlap_lines, lines)
        for start, end in pieces:
            body = "\n".join(lines[start : end + 1])
            if end < len(lines) - 1:
                body += "\n"
            digest = hashlib.blake2b(body.encode("utf-8", "surrogatepass"), digest_size=16)
            drafts.append(
                ChunkDraft(
                    path=path,
                    start_line=start + 1,
                    end_line=end + 1,
                    language=language,
                    symbol=span.symbol,
                    text=body,
                    content_hash=digest.hexdigest(),
                )
            )
    return drafts, found


def _parse(path: str, language: str, source: bytes) -> tree_sitter.Tree | None:
    """The file's one parse; ``None`` without a grammar or when the parser fails."""
    if languages.grammar_for(language) is None:
        return None
    parser = languages.parser_for(language)
    if parser is None:
        return None
    try:
        return parser.parse(source)
    except Exception as e:  # content must never fail indexing
        logger.debug("%s: parse failed (%s), using line windows", path, e)
        return None


def _symbol_spans(
    path: str, language: str, tree: tree_sitter.Tree | None, last_row: int
) -> list[_Span] | None:
    """Definition spans and the gaps between them covering every row; ``None`` → windows."""
    spec = languages.grammar_for(language)
    if spec is None or tree is None:
        return None
    try:
        found: list[_Span] = []
        _Collector(spec).collect(tree.root_node.named_children, (), found)
    except Exception as e:  # content must never fail indexing (RecursionError included)
        logger.debug("%s: parse failed (%s), using line windows", path, e)
        return None
    spans: list[_Span] = []
    next_row = 0
    for span in found:
        if span.end < next_row:  # two definitions on one line: the first keeps it
            continue
        span.start = max(span.start, next_row)
        if span.start > next_row:
            spans.append(_Span(next_row, span.start - 1, "", _GAP, ()))
        spans.append(span)
        next_row = span.end + 1
    if next_row <= last_row:
        spans.append(_Span(next_row, last_row, "", _GAP, ()))
    return spans


class _Collector:
    """Walks the definitions of a tree (never into function bodies) appending spans in order."""

    def __init__(self, spec: languages.GrammarSpec) -> None:
        self.spec = spec
        self.relevant = spec.leaves | spec.containers | spec.wrappers | spec.transparent

    def collect(
        self, nodes: list[tree_sitter.Node], scope: tuple[str, ...], out: list[_Span]
    ) -> None:
        """Spans of the definitions among sibling ``nodes`` (named children only)."""
        spec = self.spec
        prefix_start = prefix_end = -1
        previous: tree_sitter.Node | None = None
        for node in nodes:
            kind = node.type
            if kind in spec.prefixes:
                start = node.start_point.row
                # A comment on the line where the previous statement ends trails it.
                if previous is None or start > _end_row(previous):
                    if prefix_start < 0 or start > prefix_end + 1:
                        prefix_start = start
                    prefix_end = _end_row(node)
                continue
            previous = node
            if kind not in self.relevant:
                prefix_start = -1
                continue
            definition = node
            while kind in spec.wrappers:
                inner = _wrapped(definition)
                if inner is None:
                    break
                definition = inner
                kind = inner.type
            if kind in spec.transparent:
                self.collect(_body_children(definition, spec), scope, out)
            elif kind in spec.leaves or kind in spec.containers:
                name = languages.symbol_name(definition)
                if name:
                    start = node.start_point.row
                    if prefix_start >= 0 and prefix_end >= start - 1:
                        start = prefix_start
                    end = _end_row(node)
                    if kind in spec.containers:
                        self._container(definition, start, end, scope, name, out)
                    else:
                        out.append(_Span(start, end, _join(scope, name), _SYMBOL, scope))
            prefix_start = -1

    def _container(
        self,
        node: tree_sitter.Node,
        start: int,
        end: int,
        scope: tuple[str, ...],
        name: str,
        out: list[_Span],
    ) -> None:
        """The header, the members and the lines between them of a class-like definition."""
        inner_scope = (*scope, name)
        qualified = ".".join(inner_scope)
        members: list[_Span] = []
        body = node.child_by_field_name("body")
        if body is not None:
            self.collect(body.named_children, inner_scope, members)
        if not members or members[0].start <= start:
            out.append(_Span(start, end, qualified, _SYMBOL, scope))
            return
        out.append(_Span(start, members[0].start - 1, qualified, _SYMBOL, scope))
        covered = members[0].start - 1
        for member in members:
            if member.end <= covered:
                continue
            member.start = max(member.start, covered + 1)
            if member.start > covered + 1:
                out.append(_Span(covered + 1, member.start - 1, qualified, _GAP, inner_scope))
            out.append(member)
            covered = member.end
        if end > covered:
            out.append(_Span(covered + 1, end, qualified, _GAP, inner_scope))


def _end_row(node: tree_sitter.Node) -> int:
    """Last row holding text of ``node`` (a node ending at column 0 ends on the row before)."""
    row, column = node.end_point
    if column == 0 and row > node.start_point.row:
        return int(row) - 1
    return int(row)


def _wrapped(node: tree_sitter.Node) -> tree_sitter.Node | None:
    """The definition inside a wrapper (decorators, ``export``, ``template<>``)."""
    inner = node.child_by_field_name("definition") or node.child_by_field_name("declaration")
    if inner is None and node.named_child_count:
        inner = node.named_children[-1]
    return inner


def _body_children(node: tree_sitter.Node, spec: languages.GrammarSpec) -> list[tree_sitter.Node]:
    """What a transparent node holds: its body's statements, or its own children."""
    body = node.child_by_field_name("body")
    if body is None:
        return node.named_children
    if body.type in spec.leaves or body.type in spec.containers:  # extern "C" int f() {…}
        return [body]
    return body.named_children


def _join(scope: tuple[str, ...], name: str) -> str:
    return ".".join((*scope, name)) if scope else name


def _trimmed(spans: list[_Span], lines: list[str]) -> list[_Span]:
    """Spans without blank lines at their edges; blank spans dropped."""
    kept: list[_Span] = []
    for span in spans:
        start, end = span.start, span.end
        while start <= end and not lines[start].strip():
            start += 1
        while end >= start and not lines[end].strip():
            end -= 1
        if start <= end:
            span.start, span.end = start, end
            kept.append(span)
    return kept


def _merge_small_gaps(spans: list[_Span], lines: list[str], max_lines: int) -> list[_Span]:
    """Fold gaps of a few lines into a neighbouring definition (see the module docstring)."""
    merged: list[_Span] = []
    pending_start = -1  # a small gap waiting to be prepended to the next definition
    for index, span in enumerate(spans):
        if pending_start >= 0:
            span.start = pending_start
            pending_start = -1
        if span.kind != _GAP or span.end - span.start + 1 > _SMALL_GAP_LINES:
            merged.append(span)
            continue
        prev = merged[-1] if merged else None
        nxt = spans[index + 1] if index + 1 < len(spans) else None
        fits_prev = prev is not None and span.end - prev.start < max_lines
        if (
            fits_prev
            and prev is not None
            and (prev.scope == span.scope or _is_closing(span, lines))
        ):
            prev.end = span.end
        elif nxt is not None and nxt.scope == span.scope and nxt.end - span.start < max_lines:
            pending_start = span.start
        else:
            merged.append(span)
    return merged


def _is_closing(span: _Span, lines: list[str]) -> bool:
    """A gap that closes what came before: ``}``, ``};``, ``}  // namespace ns``."""
    return lines[span.start].lstrip()[:1] in _CLOSERS


def _split(start: int, end: int, max_lines: int, lines: list[str]) -> list[tuple[int, int]]:
    """Consecutive pieces of at most ``max_lines`` rows, cut at a blank row when one is near."""
    pieces: list[tuple[int, int]] = []
    while end - start + 1 > max_lines:
        remaining = end - start + 1
        count = -(-remaining // max_lines)
        size = -(-remaining // count)
        cut = start + size - 1
        # The earliest cut that still leaves the rest fitting in count - 1 pieces.
        floor = max(cut - size // 4, end - (count - 1) * max_lines)
        for row in range(cut, floor - 1, -1):
            if not lines[row].strip():
                cut = row
                break
        pieces.append((start, cut))
        start = cut + 1
    pieces.append((start, end))
    return pieces


def _windows(
    start: int, end: int, window: int, overlap: int, lines: list[str]
) -> list[tuple[int, int]]:
    """Windows of ``window`` rows overlapping by ``overlap``, trimmed, blank ones dropped."""
    if end - start + 1 <= window:
        return [(start, end)]
    step = window - overlap
    pieces: list[tuple[int, int]] = []
    for window_start in range(start, end - overlap + 1, step):
        first, last = window_start, min(window_start + window - 1, end)
        while first <= last and not lines[first].strip():
            first += 1
        while last >= first and not lines[last].strip():
            last -= 1
        if first <= last and not (pieces and last <= pieces[-1][1]):  # not blank, not a repeat
            pieces.append((first, last))
        if window_start + window - 1 >= end:
            break
    return pieces
