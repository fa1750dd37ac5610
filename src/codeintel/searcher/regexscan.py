"""A regex search in-process, with ripgrep's answer, for the regexes where that is provable.

Starting ripgrep costs more than its search on a small candidate set: a Unicode
``\\w`` alone is ~8 ms of regex compilation per run (``cJSON_\\w+\\(`` took 15 ms
on one 9 KB file, against 6 ms for ``cJSON_``), while Python's ``re`` finds the
same 1,035 lines in the 28 files that hold them in ~1.5 ms (docs/performance.md). So a regex whose
candidate files are few and small is read here, when its answer is provably
ripgrep's:

- the pattern is translated from Python's parse tree, node by node, into a bytes
  regex (:func:`translate`), and only a whitelist of nodes is taken: ASCII
  literals, ``.``, classes of ASCII ranges and ``\\w \\d \\s``, groups,
  alternation, repetition, ``^ $ \\b \\B``. Anything else (negated classes,
  look-around, back-references, inline flags, a pattern that can match the empty
  string, syntax Rust reads otherwise) gives None: ripgrep answers;
- no translated node matches a newline (``\\s`` becomes ``[\\t\\v\\f\\r ]``), so a
  match never crosses a line, as in ripgrep's line-by-line search;
- on ASCII text every kept node matches in bytes mode exactly what Rust's
  Unicode regex matches. A line with other characters is searched as a shadow
  line where each of them is one ASCII stand-in of its class for these nodes
  (a word character, a space, anything else: :class:`Shadow`); a character
  whose class Python cannot know (an unassigned code point, where
  Rust's ``Alphabetic`` differs from Python's categories) gives None, and so
  does a file that is not UTF-8.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import string
import time
import unicodedata
from typing import Any

try:  # Python 3.11 names them sre_*; 3.12 moved them under re
    from re import _constants, _parser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    import sre_constants as _constants  # type: ignore[no-redef]
    import sre_parse as _parser  # type: ignore[no-redef]

from codeintel.searcher import trigrams

_ESCAPES = frozenset("\\.+*?()|[]{}^$-/wdsbBtWDS")
"""Escaped characters Python and Rust read alike (the W/D/S classes are refused later)."""
_REPEAT = re.compile(r"\{\d+(?:,\d*)?\}")
_WHITE_SPACE = frozenset(
    "\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
"""Unicode's White_Space past ASCII (Rust's ``\\s``)."""


class UnknownClassError(Exception):
    """A line holds a character whose class for the pattern Python cannot tell."""


@dataclasses.dataclass(frozen=True, slots=True)
class Translated:
    """A pattern as a bytes regex of Python's, and how other characters stand in for it."""

    regex: re.Pattern[bytes]
    case_sensitive: bool
    digits: bool
    """The pattern has ``\\d``: a non-ASCII decimal digit is then unknown, not a letter."""
    runs: int
    """Repeats of more than one character: a failing start may walk a line once per run."""
    word: str | None
    """An ASCII word character no literal or range of the pattern names (a letter's
    stand-in): a letter or ``_``, else a digit when the pattern has no ``\\d``."""


@functools.lru_cache(maxsize=256)
def translate(pattern: str, case_sensitive: bool) -> Translated | None:
    """``pattern`` (Rust's syntax) as a bytes regex with the same matches, or None."""
    if not pattern or any(s in pattern for s in trigrams.RUST_ONLY) or not _plain(pattern):
        return None
    try:
        tree = _parser.parse(pattern)
        if tree.getwidth()[0] < 1:  # an empty match: every line, at column 1
            return None
        named: set[str] = set()
        flags = {"digits": 0, "runs": 0}
        body = _emit(list(tree), case_sensitive, named, flags)
        if flags["runs"] > MAX_RUNS:
            return None
        regex = re.compile(body.encode("ascii"), re.MULTILINE | (0 if case_sensitive else re.I))
    except (_RefusedError, re.error, RecursionError, OverflowError, UnicodeEncodeError):
        return None
    pool = "_" + string.ascii_letters + ("" if flags["digits"] else string.digits)
    word = next((c for c in pool if c not in named), None)
    return Translated(regex, case_sensitive, bool(flags["digits"]), flags["runs"], word)


MAX_COUNT = 100
"""The largest counted repetition read here (``\\w{1000}`` is past Rust's size limit)."""
MAX_RUNS = 2
"""Repeats (of more than one character) a pattern read here may hold. Python's engine
backtracks: a start that fails may cost the line's length to the power of the runs."""
LONGEST_LINE = {0: 1 << 62, 1: 4000, 2: 1000}
"""The longest line a candidate file may hold, by the pattern's runs: a start that
fails walks at most the line's length per run (4,000 steps with one run, 10^6 with
two), and the 100 ms budget bounds the rest. Files with longer lines go to ripgrep."""
BUDGET_SECONDS = 0.1
"""A scan past this gives up after the file it is in: ripgrep answers instead."""


def affordable(translated: Translated, longest_line: int) -> bool:
    """Whether files whose longest line has ``longest_line`` bytes are read here."""
    return longest_line <= LONGEST_LINE[translated.runs]


class _RefusedError(Exception):
    pass


def _plain(pattern: str) -> bool:
    """Whether the text has only escapes, classes and counted repetitions both read alike."""
    if re.search(r"\(\?(?!:)", pattern):
        return False  # inline flags, look-around, named groups
    i, n, in_class = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n or pattern[i + 1] not in _ESCAPES:
                return False
            if pattern[i + 1] in "bB" and pattern[i + 2 : i + 3] == "{":
                return False  # Rust's \b{start}
            i += 2
            continue
        if in_class:
            if c == "[":
                return False  # a nested class in Rust
            if c == "]":
                in_class = False
        elif c == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "^":
                return False
            i += 2 if pattern[i + 1 : i + 2] == "]" else 1
            continue
        elif c == "{":
            found = _REPEAT.match(pattern, i)
            if found is None or i == 0:
                return False
            i = found.end()
            continue
        elif c == "}":
            return False
        i += 1
    return not in_class


def _char(code: int, named: set[str]) -> str:
    if not (code == 9 or 0x20 <= code < 0x7F):
        raise _RefusedError  # controls, newlines and non-ASCII (Unicode folding) go to ripgrep
    named.add(chr(code))
    named.add(chr(code).swapcase())
    return re.escape(chr(code))


_CLASSES = {_constants.CATEGORY_WORD: r"\w", _constants.CATEGORY_DIGIT: "0-9"}


def _emit(items: list[Any], case_sensitive: bool, named: set[str], flags: dict[str, int]) -> str:
    out: list[str] = []
    for op, av in items:
        if op is _constants.LITERAL:
            out.append(_char(av, named))
        elif op is _constants.ANY:
            out.append(".")
        elif op is _constants.IN:
            members = "".join(_member(m, case_sensitive, named, flags) for m in av)
            out.append(members if members == r"\w" else f"[{members}]")
        elif op is _constants.AT and av in _ANCHORS:
            out.append(_ANCHORS[av])
        elif op is _constants.BRANCH:
            alternatives = [_emit(list(b), case_sensitive, named, flags) for b in av[1]]
            out.append("(?:" + "|".join(alternatives) + ")")
        elif op is _constants.SUBPATTERN and not av[1] and not av[2]:
            out.append("(?:" + _emit(list(av[3]), case_sensitive, named, flags) + ")")
        elif op in (_constants.MAX_REPEAT, _constants.MIN_REPEAT):
            low, high, sub = av
            if len(sub) != 1 or sub[0][0] not in (
                _constants.LITERAL,
                _constants.IN,
                _constants.ANY,
            ):
                raise _RefusedError  # a repeated group: backtracking may nest
            if low > MAX_COUNT or (high is not _constants.MAXREPEAT and high > MAX_COUNT):
                raise _RefusedError  # Rust may refuse it as too large to compile
            if high is _constants.MAXREPEAT or high > 1:
                flags["runs"] += 1
            count = f"{{{low},}}" if high is _constants.MAXREPEAT else f"{{{low},{high}}}"
            count = _SHORT.get(count, count) + ("?" if op is _constants.MIN_REPEAT else "")
            out.append(_emit(list(sub), case_sensitive, named, flags) + count)
        else:
            raise _RefusedError
    return "".join(out)


_SHORT = {"{0,}": "*", "{1,}": "+", "{0,1}": "?"}
_ANCHORS = {
    _constants.AT_BEGINNING: "^",
    _constants.AT_END: "$",
    _constants.AT_BOUNDARY: r"\b",
    _constants.AT_NON_BOUNDARY: r"\B",
}


def _member(
    member: tuple[Any, Any], case_sensitive: bool, named: set[str], flags: dict[str, int]
) -> str:
    op, av = member
    if op is _constants.LITERAL:
        return _char(av, named)
    if op is _constants.RANGE:
        low, high = av
        if not case_sensitive and not any(
            a <= chr(low) and chr(high) <= b for a, b in (("a", "z"), ("A", "Z"), ("0", "9"))
        ):
            raise _RefusedError  # folding of a range across cases: leave it to Rust
        _char(low, named)
        _char(high, named)
        named.update(chr(c) for c in range(low, high + 1))
        named.update(chr(c).swapcase() for c in range(low, high + 1))
        return f"{re.escape(chr(low))}-{re.escape(chr(high))}"
    if op is _constants.CATEGORY:
        if av is _constants.CATEGORY_SPACE:
            return r" \t\x0b\x0c\r"
        if av is _constants.CATEGORY_DIGIT:
            flags["digits"] = 1
        if av in _CLASSES:
            return _CLASSES[av]
    raise _RefusedError


_ALPHABETIC_SYMBOLS = ((0x24B6, 0x24E9), (0x1F130, 0x1F149), (0x1F150, 0x1F169), (0x1F170, 0x1F189))
"""The ``So`` code points of Unicode's Other_Alphabetic (circled and squared letters):
word characters to Rust. Other_Alphabetic is otherwise ``Mn``/``Mc`` (marks, all word
characters anyway), and the word class adds ``Nd``, ``Pc`` and the join controls."""


def _alphabetic_symbol(ch: str) -> bool:
    code = ord(ch)
    return ch in "\u200c\u200d" or any(lo <= code <= hi for lo, hi in _ALPHABETIC_SYMBOLS)


class Shadow:
    """Lines with non-ASCII characters as ASCII lines of the same characters' classes.

    A word character (letters, marks, ``Nd``, ``Nl``, ``Pc``, the join controls)
    becomes the pattern's :attr:`Translated.word`, a White_Space one ``\\v``, any
    other a control byte no node matches but ``.``. Each is one byte: the shadow's
    byte column is the line's character column."""

    def __init__(self, translated: Translated) -> None:
        self.t = translated
        self._memo: dict[str, str] = {}

    def line(self, text: str) -> bytes:
        return re.sub(r"[^\x00-\x7f]", self._stand_in, text).encode("ascii")

    def _stand_in(self, found: re.Match[str]) -> str:
        ch = found.group()
        memo = self._memo.get(ch)
        if memo is None:
            memo = self._memo[ch] = self._classify(ch)
        return memo

    def _classify(self, ch: str) -> str:
        if not self.t.case_sensitive:
            raise UnknownClassError(ch)  # Unicode folding (the Kelvin sign is a k)
        if ch in _WHITE_SPACE:
            return "\x0b"
        category = unicodedata.category(ch)
        if category == "Cn" or (category == "Nd" and self.t.digits):
            raise UnknownClassError(ch)
        if category[0] in "LM" or category in ("Nd", "Nl", "Pc") or _alphabetic_symbol(ch):
            if self.t.word is None:
                raise UnknownClassError(ch)
            return self.t.word
        return "\x01"


def scan(
    root: os.PathLike[str] | str,
    raw_paths: list[bytes],
    translated: Translated,
    offset: int,
    keep: int,
) -> tuple[dict[bytes, list[bytes]], int] | None:
    """ripgrep's ``line:column:text`` rows of ``raw_paths`` (in page order), or None.

    Rows ``offset``..``keep`` (in the order the paths are given) are formatted, the
    others counted as empty placeholders, as :func:`.textsearch._scan_files` does.
    None when a file is not UTF-8 or a line holds a character of unknown class."""
    rx = translated.regex
    shadow = Shadow(translated)
    deadline = time.perf_counter() + BUDGET_SECONDS
    top = os.fsencode(root)
    grouped: dict[bytes, list[bytes]] = {}
    index = 0
    for raw_path in raw_paths:
        data = trigrams.read_file(os.path.join(top, raw_path))
        hay = data
        original: list[bytes] | None = None
        if not data.isascii():
            try:
                text = data.decode("utf-8")
                hay = shadow.line(text)
            except (UnicodeDecodeError, UnknownClassError):
                return None
            original = data.split(b"\n")
        bucket: list[bytes] = []
        line, counted, pos = 1, 0, 0
        while (found := rx.search(hay, pos)) is not None:
            at = found.start()
            end = hay.find(b"\n", at)
            end = len(hay) if end < 0 else end
            if offset <= index < keep:
                line += hay.count(b"\n", counted, at)
                counted = at
                start = hay.rfind(b"\n", 0, at) + 1
                if original is None:
                    bucket.append(b"%d:%d:%s" % (line, at - start + 1, hay[start:end]))
                else:  # the original line, the column in its bytes (rows hold byte columns)
                    full = original[line - 1]
                    chars = full.decode("utf-8")[: at - start]
                    bucket.append(b"%d:%d:%s" % (line, len(chars.encode()) + 1, full))
            else:
                bucket.append(b"")
            index += 1
            pos = end + 1
            if pos > len(hay):
                break
        if bucket:
            grouped[raw_path] = bucket
        if time.perf_counter() > deadline:
            return None
    return grouped, index
