"""One glob dialect everywhere (docs/architecture.md, *Globs*): gitignore-like, no negation."""

from __future__ import annotations

import re

import hypothesis
import pytest
from hypothesis import strategies as st

from codeintel.core import errors, globs
from codeintel.core.globs import matches as path_matches

GLOB_TABLE = [
    # pattern, path, matches
    ("*.py", "a.py", True),
    ("*.py", "src/deep/a.py", True),  # no slash: basename anywhere
    ("*.py", "a.pyc", False),
    ("*.py", "src/a.py/inner.txt", True),  # a matching directory matches what it holds
    ("vendor", "vendor/x.go", True),
    ("vendor", "a/vendor/x.go", True),
    ("vendor", "vendored/x.go", False),
    ("vendor/", "a/vendor/x.go", True),  # trailing slash: directories only
    ("vendor/", "a/vendor", False),
    ("docs/*.md", "docs/a.md", True),  # a slash anchors at the root
    ("docs/*.md", "x/docs/a.md", False),
    ("docs/*.md", "docs/sub/a.md", False),  # * stays in one segment
    ("/build", "build/out.o", True),
    ("/build", "src/build/out.o", False),
    ("**/vendor/**", "vendor/a.go", True),
    ("**/vendor/**", "x/y/vendor/a/b.go", True),
    ("**/vendor/**", "vendor", False),
    ("**/*.min.js", "app.min.js", True),
    ("**/*.min.js", "a/b/app.min.js", True),
    ("**/*.min.js", "a/b/app.js", False),
    ("src/**/test_*.py", "src/test_a.py", True),  # /**/ matches zero directories
    ("src/**/test_*.py", "src/a/b/test_a.py", True),
    ("src/**/test_*.py", "lib/src/test_a.py", False),
    ("logs/**", "logs/a/b.txt", True),
    ("**", "anything/at/all", True),
    ("file?.txt", "file1.txt", True),
    ("file?.txt", "file10.txt", False),
    ("file?.txt", "dir/file/.txt", False),  # ? never matches a slash
    ("[abc].c", "b.c", True),
    ("[abc].c", "d.c", False),
    ("[!abc].c", "d.c", True),
    ("[a-c]x.h", "bx.h", True),
    ("a+b(1).txt", "a+b(1).txt", True),  # regex metacharacters are literal
    ("a+b(1).txt", "aab1.txt", False),
    (r"\*.txt", "*.txt", True),
    (r"\*.txt", "a.txt", False),
    ("*.PY", "a.py", False),  # case-sensitive, like git on Linux
]


class TestPathMatches:
    @pytest.mark.parametrize(("pattern", "path", "expected"), GLOB_TABLE)
    def test_gitignore_semantics(self, pattern: str, path: str, expected: bool) -> None:
        assert path_matches(path, pattern) is expected

    @pytest.mark.parametrize("pattern", ["", "   ", "!keep.py", "/"])
    def test_unsupported_patterns_are_config_errors(self, pattern: str) -> None:
        with pytest.raises(errors.ConfigError):
            path_matches("a.py", pattern)


def _reference(pattern: str) -> re.Pattern[str]:
    """The former regex translation: the reference semantics the automaton must keep."""
    glob = pattern.strip()
    directory_only = glob.endswith("/")
    glob = glob.rstrip("/")
    anchored = "/" in glob
    segments = glob.lstrip("/").split("/")
    regex = "" if anchored else "(?:.*/)?"
    separator_needed = False
    for index, segment in enumerate(segments):
        if segment == "**":
            last = index == len(segments) - 1
            if last:
                regex += "/.*" if separator_needed else ".*"
            else:
                regex += "/(?:.*/)?" if separator_needed else "(?:.*/)?"
            separator_needed = False
            continue
        if separator_needed:
            regex += "/"
        regex += _reference_segment(segment)
        separator_needed = True
    if separator_needed:
        regex += "/.+" if directory_only else "(?:/.+)?"
    return re.compile(regex, re.DOTALL)


def _reference_segment(segment: str) -> str:
    out = []
    for token in re.findall(r"\*+|\[!?[^\]/]+\]|\\.|.", segment):
        if token.startswith("*"):
            out.append("[^/]*")
        elif token == "?":
            out.append("[^/]")
        elif token.startswith("[") and len(token) > 2:
            body = token[1:-1]
            out.append("[^/" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
        elif token.startswith("\\"):
            out.append(re.escape(token[1:]))
        else:
            out.append(re.escape(token))
    return "".join(out)


GLOB_TOKENS = ["a", "b", ".", "/", "*", "**", "?", "[ab]", "[!a]", "[a-c]", "\\*"]
PATH_CHARS = "ab./*c"


class TestAgainstTheRegexReference:
    """Random globs and paths: the automaton answers what the backtracking regex answered."""

    @hypothesis.settings(max_examples=1500, deadline=None)
    @hypothesis.given(
        tokens=st.lists(st.sampled_from(GLOB_TOKENS), min_size=1, max_size=7),
        paths=st.lists(st.text(PATH_CHARS, max_size=9), min_size=1, max_size=8),
    )
    def test_same_answers(self, tokens: list[str], paths: list[str]) -> None:
        pattern = "".join(tokens)
        hypothesis.assume(pattern.strip().strip("/") and not pattern.startswith("!"))
        reference = _reference(pattern)
        automaton = globs.automaton(pattern)
        for path in paths:
            expected = reference.fullmatch(path.lstrip("/")) is not None
            assert path_matches(path, pattern) is expected, (pattern, path)
            assert automaton.match(path) is expected, (pattern, path)


class TestHostileGlobs:
    """Issue 22: ``*?*?…Z`` made the regex backtrack for seconds per path, ~4x per pair."""

    @pytest.mark.timeout(60)  # the backtracking regex would take days on these
    @pytest.mark.parametrize(
        "pattern",
        [
            "*?" * 40 + "Z",
            "ns1/" + "*?" * 40 + "Z",
            "*a" * 200 + "Z",
            "**/" * 60 + "Z",
            "*[ab]?" * 160,
        ],
    )
    def test_long_paths_answer_correctly(self, pattern: str) -> None:
        for length in (10, 100, 330):
            path = "dir/" + "a" * length
            expected = _expected_by_construction(pattern, path)
            assert path_matches(path, pattern) is expected
            assert globs.automaton(pattern).match(path) is expected

    def test_bad_character_ranges_are_config_errors(self) -> None:
        with pytest.raises(errors.ConfigError, match="character class"):
            path_matches("a.py", "[z-a].py")


def _expected_by_construction(pattern: str, path: str) -> bool:
    """What the hostile patterns above mean, worked out by hand rather than by a matcher."""
    name = path.rsplit("/", 1)[1]
    if pattern.endswith("Z"):
        return False  # no path above contains a Z
    if pattern.startswith("*[ab]?"):
        return len(name) >= 2 * pattern.count("?")  # each * may match nothing; [ab]? takes 2
    raise AssertionError(pattern)
