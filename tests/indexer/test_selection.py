"""Which files get indexed: metadata decisions, exclude globs, text decoding."""

from __future__ import annotations

import pytest

from codeintel.core.git import TreeEntry
from codeintel.core.globs import matches as path_matches
from codeintel.core.settings import IndexSettings
from codeintel.indexer.selection import (
    Skipped,
    decode_text,
    select_files,
)

DEFAULTS = IndexSettings()


def entry(path: str, size: int = 100, mode: str = "100644") -> TreeEntry:
    return TreeEntry(path=path, blob="0" * 40, size=size, mode=mode)


def select(
    *entries: TreeEntry, max_file_bytes: int = DEFAULTS.max_file_bytes
) -> tuple[list[TreeEntry], list[Skipped]]:
    return select_files(
        entries, max_file_bytes=max_file_bytes, exclude_globs=DEFAULTS.exclude_globs
    )


class TestSelectFiles:
    def test_ordinary_source_files_are_kept_in_order(self) -> None:
        files = [entry("src/a.py"), entry("bin/run", mode="100755"), entry("README.md")]
        kept, skipped = select(*files)
        assert kept == files
        assert skipped == []

    @pytest.mark.parametrize(
        "path",
        [
            "vendor/github.com/x/y.go",
            "web/node_modules/react/index.js",
            "third_party/zlib/inflate.c",
            "static/app.min.js",
            "static/app.min.css",
            "static/app.js.map",
            "package-lock.json",
            "web/yarn.lock",
            "pnpm-lock.yaml",
            "poetry.lock",
            "Cargo.lock",
            "go.sum",
            "uv.lock",
        ],
    )
    def test_default_globs_exclude_vendored_minified_and_lock_files(self, path: str) -> None:
        kept, skipped = select(entry(path, size=42))
        assert kept == []
        assert skipped == [Skipped(path, "excluded", 42)]

    def test_files_over_the_limit_are_too_large(self) -> None:
        kept, skipped = select(
            entry("small.py", size=1000), entry("big.py", size=1001), max_file_bytes=1000
        )
        assert [e.path for e in kept] == ["small.py"]
        assert skipped == [Skipped("big.py", "too_large", 1001)]

    def test_symlinks_and_submodules_are_not_files_of_this_repository(self) -> None:
        kept, skipped = select(
            entry("link.py", size=9, mode="120000"),
            entry("deps/lib", size=0, mode="160000"),
            entry("vendor/link", size=5, mode="120000"),
        )
        assert kept == []
        assert skipped == [
            Skipped("link.py", "symlink", 9),
            Skipped("deps/lib", "submodule", 0),
            Skipped("vendor/link", "symlink", 5),
        ]

    def test_tree_entries_are_dropped_silently(self) -> None:
        assert select(entry("src", size=0, mode="040000")) == ([], [])

    def test_excluded_wins_over_too_large(self) -> None:
        _, skipped = select(entry("vendor/huge.c", size=10**9))
        assert skipped == [Skipped("vendor/huge.c", "excluded", 10**9)]

    def test_no_globs_excludes_nothing(self) -> None:
        kept, _ = select_files([entry("vendor/a.go")], max_file_bytes=1000, exclude_globs=())
        assert len(kept) == 1


class TestExcludeGlobs:
    @pytest.mark.parametrize(
        ("pattern", "path"),
        [
            ("*.py", "src/a.py"),
            ("/build", "src/build/x"),
            ("docs/**/*.md", "docs/a/b/c.md"),
            ("vendor/", "vendor/lib/x.go"),
            ("a?c", "abc/d"),
            ("*.PY", "a.py"),
        ],
    )
    def test_select_files_agrees_with_path_matches(self, pattern: str, path: str) -> None:
        _, skipped = select_files(
            [entry(path)], max_file_bytes=10**6, exclude_globs=(pattern, "nothing-*")
        )
        assert bool(skipped) is path_matches(path, pattern)


class TestDecodeText:
    def test_utf8_is_decoded(self) -> None:
        assert decode_text("a.py", "print('héllo ✓')\n".encode()) == "print('héllo ✓')\n"

    def test_a_utf8_bom_is_stripped(self) -> None:
        assert decode_text("a.cs", b"\xef\xbb\xbfusing System;\n") == "using System;\n"

    def test_empty_is_text(self) -> None:
        assert decode_text("empty.py", b"") == ""

    def test_a_nul_early_means_binary(self) -> None:
        data = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
        assert decode_text("logo.png", data) == Skipped("logo.png", "binary", len(data))

    def test_utf16_is_binary_like_git_says(self) -> None:
        data = "hello\n".encode("utf-16")
        assert decode_text("w.txt", data) == Skipped("w.txt", "binary", len(data))

    def test_a_nul_after_the_sniffed_prefix_is_not_binary(self) -> None:
        data = b"a" * 8000 + b"\x00"
        assert decode_text("late.txt", data) == "a" * 8000 + "\x00"

    def test_invalid_utf8_is_not_utf8(self) -> None:
        data = "café\n".encode("latin-1")
        assert decode_text("old.txt", data) == Skipped("old.txt", "not_utf8", len(data))
