"""Code-aware text analysis for lexical (BM25) search: the same on the write and the query side.

SQLite's ``unicode61`` tokenizer keeps ``parse_args`` or ``HTTPServer`` as one
token, so a question in words ("parse the args") never meets the identifier. Here
every identifier is indexed as its words as well as whole: split on ``_``, on case
changes (``HTTPServer`` -> ``http server``) and between letters and digits, and
the whole kept joined (``parse_args`` and ``parseArgs`` both give ``parseargs``,
so either spelling finds the other). FTS5 then folds case and diacritics and, when
the lexicon says so, applies its Porter stemmer, to the indexed text and the query
alike. Which choices pay is measured in ``docs/performance.md`` (*Lexical and
hybrid tuning*); :data:`DEFAULT` is the winner.
"""

from __future__ import annotations

import re
import unicodedata

import msgspec

MAX_QUERY_TERMS = 64
"""Most distinct terms in one lexical query; bounds its cost."""

_WORD = re.compile(r"\w+")
_ASCII_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")

# Questions in words carry these; they match most chunks (slowing BM25 down) and
# say nothing about which one. Code keywords are left alone.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "should",
        "that",
        "the",
        "their",
        "them",
        "there",
        "these",
        "this",
        "those",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
    ]
)

# Shapes that only code has besides compound words: a.b member access, f( calls,
# :: and -> paths, a leading underscore.
_CODE_SHAPES = re.compile(r"[^\W\d]\w*\.[^\W\d]|\w\(|::|->|(?<![\w.])_+[^\W_]")
_ABBREVIATIONS = re.compile(r"\b(?:e\.g|i\.e|etc)\.", re.IGNORECASE)


class Lexicon(msgspec.Struct, frozen=True):
    """How one ``chunks.sqlite`` analyses text (recorded in it, so queries match the index)."""

    split: bool = True
    """Index identifiers as their words too (``parse_args`` -> ``parseargs parse args``)."""
    stem: bool = True
    """FTS5's Porter stemmer on every token (``connections`` meets ``connection``)."""

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


def tokens(text: str, lexicon: Lexicon = DEFAULT) -> list[str]:
    """Index terms of ``text`` in order: each identifier whole (joined, lower-case), then its words.

    NFKC first, so full-width and composed/decomposed spellings agree; FTS5 folds
    case and diacritics after this."""
    text = unicodedata.normalize("NFKC", text)
    out: list[str] = []
    for word in _WORD.findall(text):
        if not lexicon.split or (word.islower() and word.isalpha()):
            out.append(word.lower())
            continue
        parts = split_identifier(word)
        if len(parts) > 1:
            out.append("".join(parts))
        out.extend(parts)
    return out


def analyze(text: str, lexicon: Lexicon = DEFAULT) -> str:
    """``text`` as the space-separated terms FTS5 indexes (see :func:`tokens`)."""
    return " ".join(tokens(text, lexicon))


def query_terms(query: str, lexicon: Lexicon = DEFAULT, *, stopwords: bool = True) -> list[str]:
    """Distinct terms of a query, analysed like the index; stop words dropped unless nothing else is left."""
    terms = list(dict.fromkeys(tokens(query, lexicon)))
    if stopwords:
        kept = [t for t in terms if t not in STOPWORDS]
        terms = kept or terms
    return terms[:MAX_QUERY_TERMS]


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
