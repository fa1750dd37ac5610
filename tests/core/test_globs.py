"""One glob dialect everywhere (docs/architecture.md, *Globs*): gitignore-like, no negation."""

from __future__ import annotations

import pytest

from codeintel.core import errors
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
