"""Path globs, one dialect everywhere: exclude lists, ``path_glob`` filters, list_paths.

gitignore-like, so that what a person writes in ``.gitignore`` means the same here:

* A pattern without ``/`` (other than a trailing one) matches at any depth:
  ``*.py`` matches ``a/b/c.py``, ``vendor`` matches ``vendor/`` anywhere and
  everything under it.
* A pattern with ``/`` is anchored at the repository root (a leading ``/`` is
  ignored): ``src/*.py`` matches ``src/a.py`` only.
* ``*``, ``?`` and ``[...]`` never cross ``/``; ``**`` does: ``src/**/*.py``
  matches ``src/a.py`` and ``src/x/y/a.py``; ``**/vendor/**`` anything under a
  ``vendor`` directory.
* A name may be a directory: ``docs`` (or ``docs/``) matches everything below ``docs``.
* Negations (``!``) and empty patterns are refused with a ConfigError; request
  handlers translate that into a 4xx naming their field.

Globs come from callers (64 of 1,000 characters per request), so matching must
not backtrack: a pattern used to compile to one Python regular expression, and
``*?*?*?*?*?*?*?*?*?*?*?*?Z`` took 8 s on one list_paths call (issue 22). Now a
pattern compiles (cached) to a list of steps over the path's ``/``-separated
segments, matched by simulating the automaton (a set of states, one pass over
the segments: ``O(steps * segments)``). Inside a segment the ``*`` split it into
fixed-length pieces; the first must match at the start, the last at the end and
the others leftmost in order, which is exact for fixed-length pieces and costs
``O(len(segment) * len(pattern))``. No step ever revisits an earlier one.

The everyday patterns (``*.py``, ``src/**/*.py``, ``vendor``: at most one ``**``
and one ``*`` per segment) still run as one regular expression, which cannot
backtrack more than quadratically with so few choices and is ~10x faster in
CPython than the automaton; everything else takes the automaton.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Literal

from codeintel.core import errors

Step = Callable[[str], bool] | None
"""A segment matcher, or ``None`` for ``**``: zero or more whole segments."""

Tail = Literal["end", "rest", "dir"]
"""What may follow the last step: nothing (``end``), optionally a non-empty rest
(``rest``: the pattern named a file or a directory) or a non-empty rest (``dir``:
a trailing ``/``)."""


def matches(path: str, pattern: str) -> bool:
    """Whether the repository-relative ``path`` matches the gitignore-style ``pattern``."""
    return compile_one(pattern).match(path)


class Glob:
    """One compiled pattern; :meth:`match` runs in time linear in the path's segments."""

    __slots__ = ("_fast", "_steps", "_tail", "pattern")

    def __init__(
        self, pattern: str, steps: Sequence[Step], tail: Tail, fast: re.Pattern[str] | None
    ) -> None:
        self.pattern = pattern
        self._steps = tuple(steps)
        self._tail = tail
        self._fast = fast

    def match(self, path: str) -> bool:
        path = path.lstrip("/")
        if self._fast is not None:
            return self._fast.fullmatch(path) is not None
        parts = path.split("/")
        steps, final = self._steps, len(self._steps)
        states = self._closure({0})
        for index, part in enumerate(parts):
            if final in states and self._accepts(parts, index):
                return True
            following: set[int] = set()
            for state in states:
                if state == final:
                    continue
                step = steps[state]
                if step is None:
                    following.add(state)
                elif step(part):
                    following.add(state + 1)
            if not following:
                return False
            states = self._closure(following)
        return final in states and self._accepts(parts, len(parts))

    def _closure(self, states: set[int]) -> set[int]:
        """``**`` may match no segment: a state before one also stands after it."""
        steps, final = self._steps, len(self._steps)
        for state in sorted(states):
            while state < final and steps[state] is None:
                state += 1
                states.add(state)
        return states

    def _accepts(self, parts: list[str], index: int) -> bool:
        """Whether the segments from ``index`` on may follow the last step."""
        left = len(parts) - index
        rest = left >= 2 or (left == 1 and parts[index] != "")
        if self._tail == "end":
            return left == 0
        if self._tail == "rest":
            return left == 0 or rest
        return rest


class GlobSet:
    """Several patterns (an exclude list): a path matches when any of them does."""

    __slots__ = ("globs",)

    def __init__(self, globs: Sequence[Glob]) -> None:
        self.globs = tuple(globs)

    def match(self, path: str) -> bool:
        return any(glob.match(path) for glob in self.globs)


@functools.lru_cache(maxsize=1024)
def compile_one(pattern: str) -> Glob:
    """The compiled ``pattern``, or ConfigError naming what is wrong with it."""
    return _compile(pattern, allow_regex=True)


def automaton(pattern: str) -> Glob:
    """``pattern`` matched by the automaton alone, never the regex (tests compare the two)."""
    return _compile(pattern, allow_regex=False)


def _compile(pattern: str, *, allow_regex: bool) -> Glob:
    glob = pattern.strip()
    if not glob or glob.startswith("!"):
        raise errors.ConfigError(f"unsupported path glob {pattern!r} (empty or a negation)")
    directory_only = glob.endswith("/")
    glob = glob.rstrip("/")
    anchored = "/" in glob
    glob = glob.lstrip("/")
    if not glob:
        raise errors.ConfigError(f"path glob {pattern!r} matches nothing")
    segments = glob.split("/")
    steps: list[Step] = [] if anchored else [None]
    tail: Tail = "rest"
    # The same pattern as one regular expression, used where it cannot backtrack badly.
    regex = "" if anchored else "(?:.*/)?"
    separator_needed = False
    backtracking = 0 if anchored else 1
    for index, segment in enumerate(segments):
        if segment == "**":
            if index == len(segments) - 1:  # a trailing ** needs one segment more
                steps += [_any_segment, None]
                tail = "end"
                regex += "/.*" if separator_needed else ".*"
            else:
                if not steps or steps[-1] is not None:  # ``**/**`` is ``**``
                    steps.append(None)
                regex += "/(?:.*/)?" if separator_needed else "(?:.*/)?"
                backtracking += 1
            separator_needed = False
            continue
        matcher, segment_regex, stars = _segment_matcher(pattern, segment)
        steps.append(matcher)
        regex += ("/" if separator_needed else "") + segment_regex
        separator_needed = True
        backtracking += stars > 1
    if separator_needed:  # the pattern ended on a name: it may be a directory
        regex += "/.+" if directory_only else "(?:/.+)?"
    if tail == "rest" and directory_only:
        tail = "dir"
    # One ``**`` and one ``*`` per segment backtrack at most quadratically in the path
    # (bounded by segment length); the C regex engine is then ~10x faster than the automaton.
    fast = re.compile(regex, re.DOTALL) if allow_regex and backtracking <= 1 else None
    return Glob(pattern, steps, tail, fast)


@functools.lru_cache(maxsize=64)
def compile_many(patterns: tuple[str, ...]) -> GlobSet | None:
    """A whole exclude list compiled once; None when it is empty."""
    if not patterns:
        return None
    return GlobSet([compile_one(p) for p in patterns])


def _any_segment(part: str) -> bool:
    return True


def _segment_matcher(pattern: str, segment: str) -> tuple[Callable[[str], bool], str, int]:
    """One path segment: its matcher, its regex and its number of ``*``.

    ``*`` and ``?`` never cross ``/``; ``[…]`` is a character class."""
    pieces: list[list[str]] = [[]]
    index = 0
    while index < len(segment):
        char = segment[index]
        if char == "*":
            while index + 1 < len(segment) and segment[index + 1] == "*":
                index += 1
            pieces.append([])
        elif char == "?":
            pieces[-1].append("[^/]")
        elif char == "[" and (close := _class_end(segment, index)) > 0:
            body = segment[index + 1 : close]
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            pieces[-1].append(("[^/" if negate else "[") + body.replace("\\", "\\\\") + "]")
            index = close
        elif char == "\\" and index + 1 < len(segment):
            index += 1
            pieces[-1].append(re.escape(segment[index]))
        else:
            pieces[-1].append(re.escape(char))
        index += 1
    try:
        # Each piece matches a fixed number of characters, one per element: no backtracking.
        compiled = [(re.compile("".join(p), re.DOTALL), len(p)) for p in pieces]
    except re.error as e:
        raise errors.ConfigError(f"path glob {pattern!r}: bad character class ({e})") from e
    regex = "[^/]*".join("".join(p) for p in pieces)
    if len(compiled) == 1:
        whole = compiled[0][0]
        return (lambda part: whole.fullmatch(part) is not None), regex, 0
    shortest = sum(length for _, length in compiled)
    return functools.partial(_match_pieces, compiled, shortest), regex, len(compiled) - 1


def _match_pieces(pieces: list[tuple[re.Pattern[str], int]], shortest: int, part: str) -> bool:
    """Fixed-length pieces separated by ``*``: first at the start, last at the end, the
    others leftmost in order (leftmost leaves the most room, so this is exact)."""
    if len(part) < shortest:
        return False
    (first, first_len), *middle, (last, last_len) = pieces
    end = len(part) - last_len
    if end < first_len:
        return False
    if first_len and first.match(part, 0, first_len) is None:
        return False
    if last_len and last.match(part, end) is None:
        return False
    position = first_len
    for piece, length in middle:
        if not length:
            continue
        found = piece.search(part, position, end)
        if found is None:
            return False
        position = found.end()
    return True


def _class_end(segment: str, start: int) -> int:
    """Index of the ``]`` closing the class opened at ``start``, or -1 (then ``[`` is literal)."""
    index = start + 1
    if index < len(segment) and segment[index] in "!^":
        index += 1
    if index < len(segment) and segment[index] == "]":  # a leading ] is a member
        index += 1
    close = segment.find("]", index)
    return close
