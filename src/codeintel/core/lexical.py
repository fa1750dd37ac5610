"""Code-aware text analysis for lexical (BM25) search: the same on the write and the query side.

SQLite's ``unicode61`` tokenizer keeps ``parse_args`` or ``HTTPServer`` as one
token, so a question in words ("parse the args") never meets the identifier. Here
every identifier is indexed as its words as well as whole: split on ``_``, on case
changes (``HTTPServer`` -> ``http server``) and between letters and digits, and
the whole kept joined (``parse_args`` and ``parseArgs`` both give ``parseargs``,
so either spelling finds the other). FTS5 then folds case and diacritics and, when
the lexicon says so, applies its Porter stemmer, to the indexed text and the query
alike. Stemming conflates names a query spells exactly (``make_keys`` and
``make_key``, ``label`` and ``labels``), so the symbol also indexes every name
exactly, marked with a trailing ``_`` that no Porter rule touches; a query that
names something (:func:`exact_terms`) ranks those exact matches first. Which
choices pay is measured in ``docs/performance.md`` (*Lexical and hybrid
tuning*); :data:`DEFAULT` is the winner.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

import msgspec

MAX_QUERY_TERMS = 64
"""Most distinct terms in one lexical query; bounds its cost."""

_WORD = re.compile(r"\w+")
_ASCII_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")

# Questions in words carry these; they match most chunks (slowing BM25 down) and say
# nothing about which one. Dropped from queries only (the index keeps every word), and
# only when another term remains.
_STOP = (
    "a an and are as at be by can do does for from how i in into is it its of on or should "
    "that the their them there these this those to was what when where which who why will "
    "with would"
)
STOPWORDS = frozenset(_STOP.split())

# Shapes that only code has besides compound words: a.b member access, f( calls,
# :: and -> paths, a leading underscore.
_CODE_SHAPES = re.compile(r"[^\W\d]\w*\.[^\W\d]|\w\(|::|->|(?<![\w.])_+[^\W_]")
_ABBREVIATIONS = re.compile(r"\b(?:e\.g|i\.e|etc)\.", re.IGNORECASE)


ANALYZER = 1
"""Version of what :func:`tokens` produces. Bump it on any change to the terms it emits:
a schema-2 database records the analyzer it was written with, updates delete rows by
re-analysing their text (the FTS table is contentless), and a codeintel refuses a
database whose analyzer it does not implement rather than corrupt or misread it."""


class Lexicon(msgspec.Struct, frozen=True):
    """How one ``chunks.sqlite`` analyses text (recorded in it, so queries match the index)."""

    split: bool = True
    """Index identifiers as their words too (``parse_args`` -> ``parseargs parse args``)."""
    stem: bool = True
    """FTS5's Porter stemmer on every token (``connections`` meets ``connection``)."""
    exact: bool = True
    """The symbol also holds each name exactly (``make_keys_``), for :func:`exact_terms`."""
    analyzer: int = ANALYZER
    """:data:`ANALYZER` of the codeintel that wrote the database."""

    def tokenizer(self) -> str:
        """The FTS5 ``tokenize`` argument for this lexicon."""
        base = "unicode61 remove_diacritics 2 tokenchars '_'"
        return f"porter {base}" if self.stem else base


DEFAULT = Lexicon()


def split_identifier(word: str) -> list[str]:
    """The words of one identifier, lower-cased: ``getHTTPResponse2`` -> get, http, response, 2.

    Splits on ``_``, lower -> upper, before the last capital of a run followed by a
    lower-case letter, and between letters and digits. Works on any script: letters
    without case (CJK) count as lower-case."""
    parts: list[str] = []
    for piece in word.split("_"):
        if not piece:
            continue
        if piece.isascii():
            parts.extend(p.lower() for p in _ASCII_PART.findall(piece))
        else:
            parts.extend(_split_unicode(piece))
    return parts


def _kind(ch: str) -> str:
    if ch.isdigit() or ch.isnumeric():
        return "d"
    if ch.isupper():
        return "u"
    return "l"


def _split_unicode(piece: str) -> list[str]:
    parts: list[str] = []
    start = 0
    for i in range(1, len(piece)):
        prev, cur = _kind(piece[i - 1]), _kind(piece[i])
        nxt = _kind(piece[i + 1]) if i + 1 < len(piece) else ""
        if (
            (prev == "l" and cur == "u")
            or (prev == "d") != (cur == "d")
            or (prev == "u" and cur == "u" and nxt == "l")
        ):
            parts.append(piece[start:i])
            start = i
    parts.append(piece[start:])
    return [p.lower() for p in parts if p]


def tokens(text: str, lexicon: Lexicon = DEFAULT, *, exact: bool = False) -> list[str]:
    """Index terms of ``text`` in order: each identifier whole (joined, lower-case), then its words.

    NFKC first, so full-width and composed/decomposed spellings agree; FTS5 folds
    case and diacritics after this. ``exact`` adds each name's exact marker(s) (see
    :func:`markers`) before its terms: for symbols."""
    text = unicodedata.normalize("NFKC", text)
    out: list[str] = []
    for word in _WORD.findall(text):
        plain = word.islower() and word.isalpha()
        parts = [word.lower()] if plain or not lexicon.split else split_identifier(word)
        if exact:
            out.extend(markers(word, parts))
        if not lexicon.split or plain:
            out.append(word.lower())
            continue
        if len(parts) > 1:
            out.append("".join(parts))
        out.extend(parts)
    return out


def markers(word: str, parts: list[str]) -> list[str]:
    """Exact markers of one name: as written (lower-case) and joined, each with a trailing ``_``."""
    written = word.lower() + "_"
    joined = "".join(parts) + "_"
    return [written] if joined == written else [written, joined]


def analyze(text: str, lexicon: Lexicon = DEFAULT, *, exact: bool = False) -> str:
    """``text`` as the space-separated terms FTS5 indexes (see :func:`tokens`)."""
    return " ".join(tokens(text, lexicon, exact=exact))


def query_terms(query: str, lexicon: Lexicon = DEFAULT, *, stopwords: bool = True) -> list[str]:
    """Distinct terms of a query, analysed like the index; stop words dropped unless nothing else is left."""
    terms = list(dict.fromkeys(tokens(query, lexicon)))
    if stopwords:
        kept = [t for t in terms if t not in STOPWORDS]
        terms = kept or terms
    return terms[:MAX_QUERY_TERMS]


def exact_terms(query: str, lexicon: Lexicon = DEFAULT) -> list[str]:
    """Exact markers of what a query names, to rank chunks whose symbol holds them first.

    A short code-shaped query (at most :data:`KEYWORD_TERMS` words) names its code
    words (``make_keys``, ``os.path``, ``run(``: not the plain words around them); a
    query of a few words (at most :data:`KEYWORD_TERMS`, stop words included: ``parse
    for`` is ``parse_for``) names one symbol in words (``remove empty stanzas`` ->
    ``remove_empty_stanzas`` or ``removeEmptyStanzas``); a longer sentence names nothing,
    even one mentioning code: there a named type is usually what the answer uses
    (measured: questions lost 0.03-0.04 MRR on web and sympy when they named it)."""
    if not lexicon.exact:
        return []
    kind = query_kind(query)
    text = _ABBREVIATIONS.sub(" ", unicodedata.normalize("NFKC", query))
    found: list[str] = []
    if kind == "code" and len(_WORD.findall(text)) <= KEYWORD_TERMS:
        for m in _WORD.finditer(text):
            if _is_code_word(text, m.start(), m.end()):
                word = m.group()
                found.extend(markers(word, split_identifier(word) if lexicon.split else [word]))
    elif kind != "code" and 0 < len(_WORD.findall(text)) <= KEYWORD_TERMS:
        lowered = [w.lower() for w in _WORD.findall(text)]
        found = ["_".join(lowered) + "_", "".join(lowered) + "_"]
    return list(dict.fromkeys(found))[:MAX_QUERY_TERMS]


def named_symbol(query: str, lexicon: Lexicon = DEFAULT) -> tuple[str, ...]:
    """The qualified name a query names, as joined lower-case parts (``Manifest.parse`` ->
    ``("manifest", "parse")``; ``parse manifest`` -> ``("parsemanifest",)``), or ``()``.

    The code words of a short code query in order, or the words of a short query in
    words run together; what :func:`names` compares with a chunk's symbol."""
    if not exact_terms(query, lexicon):
        return ()
    text = _ABBREVIATIONS.sub(" ", unicodedata.normalize("NFKC", query))
    if query_kind(query) == "code":
        return tuple(
            _joined(m.group())
            for m in _WORD.finditer(text)
            if _is_code_word(text, m.start(), m.end())
        )
    return ("".join(w.lower() for w in _WORD.findall(text)),)


def names(named: tuple[str, ...], symbol: str) -> bool:
    """Whether a chunk's ``symbol`` (``Class.method``) is the name ``named`` (from
    :func:`named_symbol`): its last parts, joined and lower-cased, are those parts."""
    if not named:
        return False
    parts = tuple(_joined(p) for p in symbol.split(".") if p)
    return parts[-len(named) :] == named


def _joined(word: str) -> str:
    """A name part as compared: its words run together; a dunder keeps its underscores
    (``repr`` names ``_repr`` or ``Repr``, not every class's ``__repr__``)."""
    joined = "".join(split_identifier(word)) or word.lower()
    dunder = len(word) > 4 and word.startswith("__") and word.endswith("__")
    return f"__{joined}__" if dunder else joined


def _is_code_word(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is written as code: compound, ``_x``, or joined by ``.``, ``(``, ``::``, ``->``."""
    word = text[start:end]
    if word.startswith("_") or (
        not (word.islower() and word.isalpha()) and len(split_identifier(word)) > 1
    ):
        return True
    before, after = text[max(0, start - 2) : start], text[end : end + 2]
    return (
        after[:1] == "("
        or (after[:1] == "." and after[1:2].isalpha())
        or after in ("::", "->")
        or (before[-1:] == "." and before[:1].isalnum())
        or before in ("::", "->")
    )


def fts_match(terms: list[str]) -> str:
    """Terms as a safe FTS5 expression: each quoted (operators become text), any may match (OR)."""
    return " OR ".join(f'"{t}"' for t in terms)


def looks_like_code(query: str) -> bool:
    """Whether a query is written as code: a compound identifier (``snake_case``,
    ``camelCase``, ``HTTPServer``, ``utf8``), ``a.b``, ``f(``, ``::`` or ``->``.

    Such queries name what they look for, so hybrid ranking leans on BM25 for them;
    questions in words lean on the dense ranking."""
    query = _ABBREVIATIONS.sub(" ", unicodedata.normalize("NFKC", query))
    if _CODE_SHAPES.search(query):
        return True
    return any(
        not (w.islower() and w.isalpha()) and len(split_identifier(w)) > 1
        for w in _WORD.findall(query)
    )


QueryKind = Literal["code", "keywords", "prose"]
_LONE_NAME = re.compile(r"^\s*[^\W\d][\w.:]*(?:\(\)?)?\s*$")


def is_lone_name(query: str) -> bool:
    """A ``code`` query that is one token and nothing else (``parse_args``,
    ``HTTPServer``, ``os.path.join(``): it names the symbol it wants."""
    query = unicodedata.normalize("NFKC", query)
    return looks_like_code(query) and bool(_LONE_NAME.match(query))


KEYWORD_TERMS = 4
"""Most words of a ``keywords`` query (``retry policy``); longer ones are questions."""


def query_kind(query: str) -> QueryKind:
    """``code`` (see :func:`looks_like_code`), ``keywords`` (at most :data:`KEYWORD_TERMS`
    words, under half of them stop words: a name in words, ``wait for depletion``) or
    ``prose`` (a question or sentence)."""
    if looks_like_code(query):
        return "code"
    words = [w.lower() for w in _WORD.findall(unicodedata.normalize("NFKC", query))]
    stop = sum(w in STOPWORDS for w in words)
    if 0 < len(words) <= KEYWORD_TERMS and 2 * stop < len(words):
        return "keywords"
    return "prose"
