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

Patterns compile to one regular expression each (cached), and a whole exclude
list to one alternation, so a path costs one regex run however many globs.
"""

from __future__ import annotations

import functools
import re

from codeintel.core import errors


def matches(path: str, pattern: str) -> bool:
    """Whether the repository-relative ``path`` matches the gitignore-style ``pattern``."""
    return compile_one(pattern).fullmatch(path.lstrip("/")) is not None


@functools.lru_cache(maxsize=1024)
def compile_one(pattern: str) -> re.Pattern[str]:
    return re.compile(translate(pattern))


@functools.lru_cache(maxsize=64)
def compile_many(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One alternation for a whole exclude list: one regex run per path, not one per glob."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{translate(p)})" for p in patterns))


def translate(pattern: str) -> str:
    """A regular expression (for ``fullmatch``) equivalent to one gitignore-style glob."""
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
    regex = "" if anchored else "(?:.*/)?"
    separator_needed = False
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            if last:
                regex += "/.*" if separator_needed else ".*"
            else:
                regex += "/(?:.*/)?" if separator_needed else "(?:.*/)?"
            separator_needed = False
            continue
        if separator_needed:
            regex += "/"
        regex += _translate_segment(segment)
        separator_needed = True
    if separator_needed:  # the pattern ended on a name: it may be a directory
        regex += "/.+" if directory_only else "(?:/.+)?"
    return regex


def _translate_segment(segment: str) -> str:
    """One path segment: ``*`` and ``?`` never cross ``/``; ``[…]`` is a character class."""
    out: list[str] = []
    index = 0
    while index < len(segment):
        char = segment[index]
        if char == "*":
            while index + 1 < len(segment) and segment[index + 1] == "*":
                index += 1
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and (close := _class_end(segment, index)) > 0:
            body = segment[index + 1 : close]
            negate = body[:1] in ("!", "^")
            if negate:
                body = body[1:]
            out.append(("[^/" if negate else "[") + body.replace("\\", "\\\\") + "]")
            index = close
        elif char == "\\" and index + 1 < len(segment):
            index += 1
            out.append(re.escape(segment[index]))
        else:
            out.append(re.escape(char))
        index += 1
    return "".join(out)


def _class_end(segment: str, start: int) -> int:
    """Index of the ``]`` closing the class opened at ``start``, or -1 (then ``[`` is literal)."""
    index = start + 1
    if index < len(segment) and segment[index] in "!^":
        index += 1
    if index < len(segment) and segment[index] == "]":  # a leading ] is a member
        index += 1
    close = segment.find("]", index)
    return close
