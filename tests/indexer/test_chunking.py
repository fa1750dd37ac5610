"""Symbol-aware chunking with the real tree-sitter grammars, on real snippets."""

from __future__ import annotations

import textwrap

import msgspec
import numpy as np
import pytest

from codeintel.core import errors
from codeintel.core.store.chunks import Chunk
from codeintel.indexer import languages, publishing
from codeintel.indexer.chunking import ChunkDraft, chunk_file


def lines_of(text: str, start: int, end: int) -> str:
    """The file's 1-based lines ``start..end`` with their newlines."""
    return "".join(text.splitlines(keepends=True)[start - 1 : end])


def by_symbol(chunks: list[ChunkDraft]) -> dict[str, ChunkDraft]:
    return {c.symbol: c for c in chunks}


def assert_exact(chunks: list[ChunkDraft], text: str) -> None:
    """Every chunk's text is exactly its lines; chunks are in order and never overlap."""
    previous_end = 0
    for chunk in chunks:
        assert chunk.text == lines_of(text, chunk.start_line, chunk.end_line)
        assert chunk.start_line > previous_end
        assert chunk.end_line >= chunk.start_line
        previous_end = chunk.end_line


PYTHON = textwrap.dedent(
    '''\
    """Module docstring."""

    import os
    import sys
    from collections import (
        OrderedDict,
        defaultdict,
    )

    LIMIT = 10


    # Cached because the lookup is slow.
    @functools.cache
    def lookup(key):
        return os.environ.get(key)


    class Store(Base):
        """Keeps things."""

        kind = "store"

        def __init__(self, root):
            self.root = root

        @property
        def size(self):
            def helper():
                return 1
            return helper()


    if __name__ == "__main__":
        lookup("HOME")
    '''
)


class TestPython:
    def test_module_code_functions_and_methods_become_chunks(self) -> None:
        chunks = chunk_file("pkg/store.py", PYTHON)
        assert_exact(chunks, PYTHON)
        assert [(c.symbol, c.start_line, c.end_line) for c in chunks] == [
            ("", 1, 10),
            ("lookup", 13, 16),
            ("Store", 19, 22),
            ("Store.__init__", 24, 25),
            ("Store.size", 27, 31),
            ("", 34, 35),
        ]
        assert {c.language for c in chunks} == {"python"}

    def test_decorators_and_comments_directly_above_belong_to_the_symbol(self) -> None:
        lookup = by_symbol(chunk_file("m.py", PYTHON))["lookup"]
        assert lookup.text.startswith("# Cached because the lookup is slow.\n@functools.cache\n")
        size = by_symbol(chunk_file("m.py", PYTHON))["Store.size"]
        assert size.text.startswith("    @property\n")

    def test_class_chunk_is_its_header_not_its_methods(self) -> None:
        store = by_symbol(chunk_file("m.py", PYTHON))["Store"]
        assert "Keeps things" in store.text
        assert 'kind = "store"' in store.text
        assert "def __init__" not in store.text

    def test_nested_functions_stay_inside_their_function(self) -> None:
        symbols = [c.symbol for c in chunk_file("m.py", PYTHON)]
        assert not any("helper" in s for s in symbols)

    def test_comment_after_a_blank_line_is_not_attached(self) -> None:
        text = "import os\nimport re\nimport sys\n\n# about the module\n\ndef f():\n    return 1\n"
        chunks = chunk_file("m.py", text)
        assert [(c.symbol, c.start_line, c.end_line) for c in chunks] == [("", 1, 5), ("f", 7, 8)]

    def test_a_few_lines_between_symbols_join_a_neighbour(self) -> None:
        text = "import os\n\ndef f():\n    return 1\n\nX = 1\n\ndef g():\n    return X\n"
        chunks = chunk_file("m.py", text)
        assert [(c.symbol, c.start_line, c.end_line) for c in chunks] == [("f", 1, 6), ("g", 8, 9)]

    def test_content_hash_depends_on_text_only(self) -> None:
        one = chunk_file("a.py", "def f():\n    return 1\n")[0]
        two = chunk_file("b/c.py", "def f():\n    return 1\n")[0]
        other = chunk_file("a.py", "def f():\n    return 2\n")[0]
        assert one.content_hash == two.content_hash != other.content_hash
        assert len(one.content_hash) == 32
        int(one.content_hash, 16)


# (path, source, symbols that must each be a chunk)
LANGUAGE_CASES = [
    (
        "web/app.js",
        """\
        import x from "y";

        /** Adds. */
        export function add(a, b) {
          return a + b;
        }

        export default class Counter extends Base {
          static start = 0;

          increment() {
            this.n += 1;
          }
        }

        const handler = async (req) => {
          return req.body;
        };
        """,
        {"add", "Counter", "Counter.increment", "handler"},
    ),
    (
        "src/shape.ts",
        """\
        interface Shape {
          area(): number;
        }

        enum Color { Red, Green }

        @Injectable()
        export abstract class Square implements Shape {
          private side = 1;

          area(): number {
            return this.side ** 2;
          }
        }

        export const double = (n: number): number => n * 2;
        """,
        {"Shape", "Color", "Square", "Square.area", "double"},
    ),
    (
        "ui/App.tsx",
        """\
        import React from "react";

        export function App({ name }: { name: string }) {
          return <div className="app">{name}</div>;
        }

        class Panel extends React.Component<Props> {
          render() {
            return <section>{this.props.children}</section>;
          }
        }
        """,
        {"App", "Panel", "Panel.render"},
    ),
    (
        "cmd/server.go",
        """\
        package main

        import "fmt"

        // Server serves.
        type Server struct {
        \tport int
        }

        // Start starts it.
        func (s *Server) Start() error {
        \treturn nil
        }

        func main() {
        \tfmt.Println("hi")
        }
        """,
        {"Server", "Server.Start", "main"},
    ),
    (
        "src/point.rs",
        """\
        use std::fmt;

        /// A point.
        #[derive(Debug)]
        pub struct Point {
            x: i32,
        }

        impl fmt::Display for Point {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "{}", self.x)
            }
        }

        pub fn origin() -> Point {
            Point { x: 0 }
        }
        """,
        {"Point", "Point.fmt", "origin"},
    ),
    (
        "src/main/java/a/Greeter.java",
        """\
        package a;

        import java.util.List;

        /** Greets. */
        public class Greeter {
            private final String name;

            public Greeter(String name) {
                this.name = name;
            }

            @Override
            public String toString() {
                return name;
            }
        }
        """,
        {"Greeter", "Greeter.Greeter", "Greeter.toString"},
    ),
    (
        "lib/vec.c",
        """\
        #include <stdio.h>

        struct vec {
            int x, y;
        };

        /* Adds two vectors. */
        struct vec vec_add(struct vec a, struct vec b) {
            struct vec r = {a.x + b.x, a.y + b.y};
            return r;
        }

        static int *first(int *xs) {
            return xs;
        }
        """,
        {"vec", "vec_add", "first"},
    ),
    (
        "lib/box.cpp",
        """\
        #include <vector>

        namespace geo {
        template <typename T>
        class Box : public Shape {
         public:
          Box() {}

          T get() const {
            return value;
          }

         private:
          T value;
        };
        }  // namespace geo

        int Box::area() const {
          return 0;
        }
        """,
        {"Box", "Box.Box", "Box.get", "Box.area"},
    ),
]


class TestGrammars:
    @pytest.mark.parametrize(
        ("path", "source", "expected"),
        LANGUAGE_CASES,
        ids=[case[0].rsplit(".", 1)[1] for case in LANGUAGE_CASES],
    )
    def test_definitions_become_chunks_with_their_symbol(
        self, path: str, source: str, expected: set[str]
    ) -> None:
        text = textwrap.dedent(source)
        chunks = chunk_file(path, text)
        assert_exact(chunks, text)
        assert expected <= {c.symbol for c in chunks}
        assert {c.language for c in chunks} == {languages.language_for(path)}

    def test_methods_are_not_repeated_in_their_class_chunk(self) -> None:
        text = textwrap.dedent(LANGUAGE_CASES[5][1])
        greeter = by_symbol(chunk_file("Greeter.java", text))["Greeter"]
        assert "private final String name;" in greeter.text
        assert "toString" not in greeter.text

    def test_doc_comments_and_attributes_belong_to_the_definition(self) -> None:
        text = textwrap.dedent(LANGUAGE_CASES[4][1])
        struct, impl = (c for c in chunk_file("point.rs", text) if c.symbol == "Point")
        assert "\n/// A point.\n#[derive(Debug)]\npub struct Point {\n" in struct.text
        assert impl.text == "impl fmt::Display for Point {\n"

    @pytest.mark.parametrize("language", sorted(languages.GRAMMARS))
    def test_every_grammar_loads(self, language: str) -> None:
        assert languages.parser_for(language) is not None


class TestLongSymbols:
    def test_a_long_function_splits_into_consecutive_pieces(self) -> None:
        body = "".join(f"    x{i} = {i}\n" + ("\n" if i % 37 == 0 else "") for i in range(500))
        text = "import os\n\n\ndef huge():\n" + body + "\n\ndef small():\n    return 1\n"
        chunks = chunk_file("big.py", text, max_lines=200)
        assert_exact(chunks, text)
        pieces = [c for c in chunks if c.symbol == "huge"]
        assert len(pieces) == 3
        assert all(c.end_line - c.start_line + 1 <= 200 for c in chunks)
        assert pieces[0].start_line == 4
        assert [b.start_line for b in pieces[1:]] == [a.end_line + 1 for a in pieces[:-1]]
        last_line_of_huge = 4 + len(body.splitlines())
        assert pieces[-1].end_line == last_line_of_huge
        assert by_symbol(chunks)["small"].text == "def small():\n    return 1\n"

    def test_a_long_class_header_splits_too(self) -> None:
        text = "class Table:\n" + "".join(f"    c{i} = {i}\n" for i in range(450))
        chunks = chunk_file("t.py", text, max_lines=100)
        assert_exact(chunks, text)
        assert {c.symbol for c in chunks} == {"Table"}
        assert [c.end_line - c.start_line + 1 for c in chunks] == [91, 90, 90, 90, 90]


class TestLineWindows:
    def test_non_code_files_get_overlapping_windows(self) -> None:
        text = "".join(f"line {i}\n" for i in range(1, 131))
        chunks = chunk_file("docs/guide.md", text, window_lines=60, overlap_lines=10)
        assert_exact_windows(chunks, text)
        assert [(c.start_line, c.end_line) for c in chunks] == [(1, 60), (51, 110), (101, 130)]
        assert {(c.language, c.symbol) for c in chunks} == {("markdown", "")}

    def test_long_module_code_between_symbols_is_windowed(self) -> None:
        text = "".join(f"CONST_{i} = {i}\n" for i in range(100)) + "\ndef f():\n    pass\n"
        chunks = chunk_file("consts.py", text, window_lines=60, overlap_lines=10)
        assert [(c.symbol, c.start_line, c.end_line) for c in chunks] == [
            ("", 1, 60),
            ("", 51, 100),
            ("f", 102, 103),
        ]

    def test_window_never_exceeds_max_lines(self) -> None:
        text = "word\n" * 50
        chunks = chunk_file("notes.txt", text, max_lines=20, window_lines=60, overlap_lines=5)
        assert max(c.end_line - c.start_line + 1 for c in chunks) == 20

    def test_blank_runs_are_trimmed_and_dropped(self) -> None:
        text = "\n" * 5 + "alpha\n" + "\n" * 200 + "omega\n"
        chunks = chunk_file("notes.txt", text, window_lines=60, overlap_lines=10)
        assert (chunks[0].start_line, chunks[0].text) == (6, "alpha\n")
        assert chunks[-1].text == "omega\n"
        assert all(c.text.strip() for c in chunks)

    def test_content_seen_by_two_windows_only_in_their_overlap_is_not_repeated(self) -> None:
        text = "start\n" + "\n" * 54 + "only\nhere\n" + "\n" * 103 + "end\n"
        chunks = chunk_file("notes.txt", text, window_lines=60, overlap_lines=10)
        assert [(c.start_line, c.end_line) for c in chunks] == [(1, 57), (161, 161)]


def assert_exact_windows(chunks: list[ChunkDraft], text: str) -> None:
    for chunk in chunks:
        assert chunk.text == lines_of(text, chunk.start_line, chunk.end_line)


class TestRobustness:
    @pytest.mark.parametrize("text", ["", "\n", "   \n\t\n\n", "\n\n\n"])
    @pytest.mark.parametrize("path", ["a.py", "a.md", "a.go"])
    def test_empty_or_blank_files_have_no_chunks(self, path: str, text: str) -> None:
        assert chunk_file(path, text) == []

    def test_syntax_errors_still_chunk(self) -> None:
        text = "import os\n\ndef good(a):\n    return a\n\ndef broken(:\n    return )))\n\n"
        text += "class K:\n    def m(self):\n        return 1\n"
        chunks = chunk_file("bad.py", text)
        assert_exact(chunks, text)
        assert {"good", "K.m"} <= {c.symbol for c in chunks}
        covered = {n for c in chunks for n in range(c.start_line, c.end_line + 1)}
        assert {6, 7} <= covered

    def test_garbage_in_a_grammar_language_still_chunks(self) -> None:
        text = "}}} ((( <<< >>> ;;; \x00 @@@\n" * 30
        chunks = chunk_file("x.rs", text)
        assert chunks
        assert_exact_windows(chunks, text)

    def test_file_without_trailing_newline(self) -> None:
        text = "def f():\n    return 1"
        (chunk,) = chunk_file("f.py", text)
        assert (chunk.start_line, chunk.end_line, chunk.text) == (1, 2, text)

    def test_crlf_and_unicode_keep_line_numbers(self) -> None:
        text = 'x = "héllo ✓"\r\n' * 4 + '\r\n\r\ndef f():\r\n    return "ü"\r\n'
        f = by_symbol(chunk_file("u.py", text))["f"]
        assert (f.start_line, f.end_line) == (7, 8)
        assert f.text == 'def f():\r\n    return "ü"\r\n'

    def test_bad_sizes_are_a_config_error(self) -> None:
        with pytest.raises(errors.ConfigError):
            chunk_file("a.md", "x\n", window_lines=10, overlap_lines=10)
        with pytest.raises(errors.ConfigError):
            chunk_file("a.md", "x\n", max_lines=0)


class TestLanguageDetection:
    @pytest.mark.parametrize(
        ("path", "language"),
        [
            ("a/b.py", "python"),
            ("x.jsx", "javascript"),
            ("x.mjs", "javascript"),
            ("x.d.ts", "typescript"),
            ("x.tsx", "tsx"),
            ("main.go", "go"),
            ("lib.rs", "rust"),
            ("A.java", "java"),
            ("x.h", "c"),
            ("x.hpp", "cpp"),
            ("README.MD", "markdown"),
            ("ci.yml", "yaml"),
            ("Cargo.toml", "toml"),
            ("build/Dockerfile", "dockerfile"),
            ("Dockerfile.dev", "dockerfile"),
            ("Makefile", "makefile"),
            ("run.sh", "shell"),
            ("q.sql", "sql"),
            ("LICENSE", "text"),
            (".gitignore", "text"),
            ("weird.xyz", "text"),
        ],
    )
    def test_language_for(self, path: str, language: str) -> None:
        assert languages.language_for(path) == language

    def test_no_parser_for_grammarless_languages(self) -> None:
        assert languages.parser_for("markdown") is None
        assert languages.grammar_for("text") is None


class TestChunkRows:
    """``publishing.chunk_rows`` builds rows positionally from a draft's fields."""

    def test_a_draft_declares_the_row_fields_after_id_in_order(self) -> None:
        assert msgspec.structs.fields(Chunk)[0].name == "id"
        row_fields = [(f.name, f.type) for f in msgspec.structs.fields(Chunk)[1:]]
        assert [(f.name, f.type) for f in msgspec.structs.fields(ChunkDraft)] == row_fields

    def test_rows_keep_every_field_of_their_draft_by_name(self) -> None:
        drafts = chunk_file("pkg/mod.py", "def f():\n    return 1\n\n\nclass C:\n    x = 2\n")
        rows = publishing.chunk_rows(np.arange(7, 7 + len(drafts), dtype=np.int64), drafts)
        assert [r.id for r in rows] == list(range(7, 7 + len(drafts)))
        assert all(type(r.id) is int for r in rows)
        for row, draft in zip(rows, drafts, strict=True):
            for field in msgspec.structs.fields(ChunkDraft):
                assert getattr(row, field.name) == getattr(draft, field.name)
