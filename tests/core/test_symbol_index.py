"""The navigation query API (core/symbols.py) over a real symbols.sqlite and chunks.sqlite.

The generation directory is written by the real chunker, extractor and writers
from a small multi-language fixture with known answers (no embedding needed:
the symbol index never reads vectors).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from codeintel.core import errors, store
from codeintel.core.store import symbols as symbols_store
from codeintel.core.store.chunks import Chunk, ChunkDB
from codeintel.core.symbols import SymbolIndex
from codeintel.indexer import chunking, publishing

HOT_LINES = 1000
HOT_PER_LINE = 10

FILES: dict[str, str] = {
    "app/models.py": (
        "import decimal\n"
        "from app import util\n"
        "\n"
        "\n"
        "class Invoice:\n"
        '    """An invoice: lines and their total."""\n'
        "\n"
        "    def total(self):\n"
        "        # total of every line; total is not cached\n"
        '        label = "total"\n'
        "        return sum(self.lines) + hot_name\n"
        "\n"
        "\n"
        "class Order:\n"
        "    def total(self):\n"
        "        return self.invoice.total()\n"
        "\n"
        "\n"
        "def parse(text):\n"
        '    """Parse text; parse() is never called on total."""\n'
        "    return util.parse(text)\n"
    ),
    "tests/test_models.py": (
        "from app.models import parse\n\n\ndef test_parse():\n    assert parse('x')\n"
    ),
    "vendor/lib/helpers.py": "def parse(text):\n    return text\n",
    "web/handler.go": (
        "package web\n\n"
        'import "strings"\n\n'
        "// Server serves requests.\n"
        "type Server struct {\n\tname string\n}\n\n"
        "// Handle answers one request.\n"
        "func (s *Server) Handle(path string) string {\n\treturn parse(path)\n}\n\n"
        "func parse(p string) string {\n\treturn strings.TrimSpace(p)\n}\n"
    ),
    "ui/widget.ts": (
        "import { h } from './h';\n\n"
        "export interface Props {\n  title: string;\n}\n\n"
        "/** A widget on screen. */\n"
        "export class Widget {\n  render(props: Props): string {\n    return h(props.title);\n  }\n}\n\n"
        "export const parse = (s: string) => s.trim();\n"
    ),
    "core/engine.rs": (
        "use std::fmt;\n\n"
        "/// The engine.\n"
        "pub struct Engine {\n    speed: u32,\n}\n\n"
        "impl Engine {\n    pub fn run(&self) -> u32 {\n        self.speed\n    }\n}\n\n"
        "pub trait Runner {\n    fn go(&self);\n}\n"
    ),
    "lib/Util.java": (
        "package lib;\n\nimport java.util.List;\n\n"
        "public class Util {\n"
        "    public static int parse(String s) {\n        return Integer.parseInt(s);\n    }\n"
        "}\n"
    ),
    "native/buf.c": (
        "#include <stdlib.h>\n\n"
        "struct buffer {\n    int size;\n};\n\n"
        "int buffer_init(struct buffer *b)\n{\n    b->size = 0;\n    return 0;\n}\n"
    ),
    "native/box.cpp": (
        "namespace ns {\nclass Box {\n public:\n  void set(int v);\n  int get() { return v_; }\n"
        "  int v_;\n};\n}\n\n"
        "void ns::Box::set(int v) { v_ = v; }\n"
    ),
    "web/app.js": ("const handler = () => 1;\n\nfunction start() {\n  return handler();\n}\n"),
    "gen/names_generated.py": "".join(
        f"v{i} = {' + '.join(['hot_name'] * HOT_PER_LINE)}\n" for i in range(HOT_LINES)
    ),
    "README.md": "# parse\n\nThe parse function parses.\n",
}


def write_generation(root: Path, files: dict[str, str]) -> Path:
    """A generation directory with the chunks and symbols of ``files`` (real writers)."""
    root.mkdir(parents=True, exist_ok=True)
    chunks: list[Chunk] = []
    found: list[symbols_store.FileSymbols] = []
    for path, text in sorted(files.items()):
        drafts, symbols = chunking.chunk_and_extract(path, text)
        chunks += publishing.chunk_rows(np.arange(len(chunks), len(chunks) + len(drafts)), drafts)
        if symbols is not None:
            found.append(symbols)
    db = ChunkDB.create(root / store.CHUNKS_DB)
    db.add(chunks)
    db.commit()
    db.close()
    symbols_store.write(root / store.SYMBOLS_DB, found)
    return root


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = write_generation(tmp_path_factory.mktemp("gen") / "g000001", FILES)
    opened = SymbolIndex.open(root)
    assert opened is not None
    yield opened
    opened.close()


class TestFind:
    def test_an_ambiguous_name_lists_every_definition_source_first(self, index):
        found = index.find("parse")
        exact = [s for s in found if s.name == "parse"]
        assert [(s.path, s.kind) for s in exact] == [
            ("app/models.py", "function"),
            ("lib/Util.java", "method"),
            ("ui/widget.ts", "function"),
            ("web/handler.go", "function"),
            ("vendor/lib/helpers.py", "function"),
        ]
        assert [s.category for s in exact] == ["source"] * 4 + ["vendored"]
        assert len({s.id for s in found}) == len(found)
        # exact matches before the prefix ones (test_parse is a prefix match of "test_", not here)
        assert all(s.name == "parse" for s in found[: len(exact)])

    def test_a_prefix_fills_after_the_exact_matches(self, index):
        found = index.find("buffer")
        assert [s.qualname for s in found] == ["buffer", "buffer_init"]
        assert found[0].kind == "struct" and found[1].kind == "function"

    def test_siblings_share_the_file_and_the_parent(self, index):
        (invoice,) = index.find("Invoice")
        shown, count = index.siblings(invoice, 10)
        assert [(s.name, s.kind) for s in shown] == [("Order", "class"), ("parse", "function")]
        assert count == 2
        (total,) = index.find("Order.total")
        assert index.siblings(total, 10) == ([], 0)
        (handle,) = index.find("Server.Handle")
        assert [s.name for s in index.siblings(handle, 10)[0]] == ["Server", "parse"]

    def test_siblings_are_the_nearest_ones(self, tmp_path):
        text = "".join(f"def f{i}():\n    pass\n" for i in range(100))
        root = write_generation(tmp_path / "g000001", {"many.py": text})
        with SymbolIndex.open(root) as index:  # type: ignore[union-attr]
            (middle,) = index.find("f50")
            shown, count = index.siblings(middle, 6)
            assert [s.name for s in shown] == ["f47", "f48", "f49", "f51", "f52", "f53"]
            assert count == 99
            (first,) = index.find("f0")
            assert [s.name for s in index.siblings(first, 3)[0]] == ["f1", "f2", "f3"]
            (last,) = index.find("f99")
            assert [s.name for s in index.siblings(last, 3)[0]] == ["f96", "f97", "f98"]

    def test_module_qualified_names(self, tmp_path):
        """The module comes from the path: source roots (``src/``, ``lib/``) dropped or kept,
        ``__init__`` and the extension dropped; an ambiguous suffix lists every match."""
        shapes = "class Circle:\n    def area(self):\n        return 1\n"
        root = write_generation(
            tmp_path / "g000001",
            {
                "src/pkg/shapes.py": shapes,
                "src/pkg/__init__.py": "def setup():\n    pass\n",
                "lib/geo/shapes.py": shapes,
                "sympy/core/basic.py": "class Basic:\n    def __init__(self):\n        pass\n",
                "web/comp.tsx": "export class Circle {\n  area(): number { return 1 }\n}\n",
            },
        )
        with SymbolIndex.open(root) as index:  # type: ignore[union-attr]

            def where(name: str) -> list[tuple[str, str]]:
                return [(s.path, s.qualname) for s in index.find(name)]

            assert where("pkg.shapes.Circle.area") == [("src/pkg/shapes.py", "Circle.area")]
            assert where("src.pkg.shapes.Circle.area") == [("src/pkg/shapes.py", "Circle.area")]
            assert where("lib.geo.shapes.Circle") == [("lib/geo/shapes.py", "Circle")]
            assert where("shapes.Circle.area") == [
                ("lib/geo/shapes.py", "Circle.area"),
                ("src/pkg/shapes.py", "Circle.area"),
            ]
            assert where("pkg.setup") == [("src/pkg/__init__.py", "setup")]
            assert where("sympy.core.basic.Basic") == [("sympy/core/basic.py", "Basic")]
            assert where("core.basic.Basic.__init__") == [("sympy/core/basic.py", "Basic.__init__")]
            assert where("web.comp.Circle.area") == [("web/comp.tsx", "Circle.area")]
            assert where("other.shapes.Circle.area") == []

    def test_same_method_in_two_classes(self, index):
        both = index.find("total")
        assert [(s.qualname, s.parent) for s in both] == [
            ("Invoice.total", "Invoice"),
            ("Order.total", "Order"),
        ]
        assert [s.kind for s in both] == ["method", "method"]
        (order,) = index.find("Order.total")
        assert order.start_line == 15 and order.signature == "def total(self):"
        assert index.find("app.models.Order.total") == [order]
        assert index.find("models.Invoice.total")[0].qualname == "Invoice.total"
        assert index.find("Nope.total") == []
        assert index.get(order.id) == order
        assert index.get(order.parent_id or "").qualname == "Order"

    def test_globs_kinds_languages_and_paths(self, index):
        assert [s.qualname for s in index.find("Invoice.*")] == ["Invoice.total"]
        assert {s.qualname for s in index.find("*.total")} == {"Invoice.total", "Order.total"}
        assert [s.name for s in index.find("buf*_init")] == ["buffer_init"]
        assert [s.path for s in index.find("parse", language="go")] == ["web/handler.go"]
        assert [s.path for s in index.find("parse", path_glob="vendor/**")] == [
            "vendor/lib/helpers.py"
        ]
        assert [s.qualname for s in index.find("parse", kind="method")] == ["Util.parse"]
        assert len(index.find("parse", limit=2)) == 2

    def test_cpp_rust_go_ts_js_java_c_definitions(self, index):
        def one(name: str) -> tuple[str, str, int, str]:
            s = index.find(name)[0]
            assert s.qualname.endswith(name)
            return s.kind, s.language, s.line, s.signature

        # written `void ns::Box::set(int v)`: the source's qualifiers stay, as in chunks
        assert index.find("Box.set")[0].qualname == "ns.Box.set"
        assert one("Box.set")[:3] == ("method", "cpp", 10)
        assert one("Box.get")[:3] == ("method", "cpp", 5)
        assert one("Engine.run") == ("method", "rust", 9, "pub fn run(&self) -> u32")
        assert one("Engine")[0] in {"struct", "impl"}
        assert one("Runner.go")[0] == "method"
        assert one("Server.Handle")[:3] == ("method", "go", 11)
        assert one("Server")[0] == "struct"
        assert one("Props")[0] == "interface"
        assert one("Widget.render")[:2] == ("method", "typescript")
        assert one("handler")[:3] == ("function", "javascript", 1)
        assert one("Util.parse")[:2] == ("method", "java")
        assert one("buffer_init")[3] == "int buffer_init(struct buffer *b)"

    def test_docs_come_from_docstrings_and_leading_comments(self, index):
        docs = {s.qualname: s.doc for s in index.find("*", limit=1000)}
        assert docs["Invoice"] == "An invoice: lines and their total."
        assert docs["Server.Handle"] == "Handle answers one request."
        assert docs["Widget"] == "A widget on screen."
        assert docs["Order.total"] == ""

    def test_bad_input_is_a_query_error(self, index):
        with pytest.raises(errors.QueryError) as e:
            index.find("  ")
        assert e.value.field == "name"
        with pytest.raises(errors.QueryError):
            index.find("parse", limit=0)
        assert index.get("not-an-id") is None
        assert index.get("0" * 16) is None


class TestOutline:
    def test_nested_symbols_and_the_imports_span(self, index):
        outline = index.outline("app/models.py")
        assert outline.imports is not None
        assert (outline.imports.start_line, outline.imports.end_line) == (1, 2)
        rows = [(s.qualname, s.kind, s.start_line, s.end_line) for s in outline.symbols]
        assert rows == [
            ("Invoice", "class", 5, 11),
            ("Invoice.total", "method", 8, 11),
            ("Order", "class", 14, 16),
            ("Order.total", "method", 15, 16),
            ("parse", "function", 19, 21),
        ]
        by_id = {s.id: s for s in outline.symbols}
        assert by_id[outline.symbols[1].parent_id].qualname == "Invoice"

    def test_a_file_without_grammar_has_an_empty_outline_and_unknown_paths_none(self, index):
        readme = index.outline("README.md")
        assert readme is not None and readme.symbols == [] and readme.imports is None
        assert index.outline("no/such/file.py") is None


class TestReferences:
    def test_comments_and_strings_never_count(self, index):
        refs = index.references("total")
        # models.py: `self.invoice.total()` only; the comment, the string and the
        # docstring mention "total" too, and the two definitions are listed apart.
        assert refs.total == 1
        (group,) = refs.groups
        assert (group.path, group.symbol, group.start_line) == ("app/models.py", "Order.total", 15)
        (occurrence,) = group.occurrences
        assert (occurrence.line, occurrence.kind) == (16, "call")
        assert occurrence.text == "return self.invoice.total()"
        assert [d.qualname for d in refs.definitions] == ["Invoice.total", "Order.total"]

    def test_grouped_by_enclosing_symbol_with_kinds(self, index):
        refs = index.references("parse")
        rows = [(g.path, g.symbol, [(o.line, o.kind) for o in g.occurrences]) for g in refs.groups]
        assert rows == [
            ("app/models.py", "parse", [(21, "call")]),
            ("web/handler.go", "Server.Handle", [(12, "call")]),
            ("tests/test_models.py", "", [(1, "import")]),
            ("tests/test_models.py", "test_parse", [(5, "call")]),
        ]
        assert refs.total == 4 and refs.files == 3 and not refs.has_more
        assert len(refs.definitions) == 5
        assert index.references(refs.definitions[0]).total == 4

    def test_ten_thousand_occurrences_count_per_file_and_page(self, index):
        refs = index.references("hot_name", limit=100)
        assert refs.total == HOT_LINES * HOT_PER_LINE + 1
        assert refs.files == 2
        assert [(f.path, f.count) for f in refs.per_file] == [
            ("gen/names_generated.py", HOT_LINES * HOT_PER_LINE),
            ("app/models.py", 1),
        ]
        first = [o for g in refs.groups for o in g.occurrences]
        assert len(first) == 100 and refs.has_more and refs.cursor
        assert refs.groups[0].path == "app/models.py"  # source before generated code

        seen = [(g.path, o.line, o.column) for g in refs.groups for o in g.occurrences]
        cursor = refs.cursor
        while cursor:
            page = index.references("hot_name", limit=1000, cursor=cursor)
            seen += [(g.path, o.line, o.column) for g in page.groups for o in g.occurrences]
            cursor = page.cursor
        assert len(seen) == len(set(seen)) == refs.total

    def test_path_glob_narrows_totals_and_pages(self, index):
        refs = index.references("hot_name", path_glob="app/**")
        assert refs.total == 1 and refs.files == 1 and not refs.has_more

    def test_an_unknown_name_has_nothing(self, index):
        refs = index.references("never_defined_anywhere")
        assert (refs.total, refs.files, refs.groups, refs.definitions) == (0, 0, [], [])

    def test_a_foreign_cursor_is_a_query_error(self, index):
        with pytest.raises(errors.QueryError) as e:
            index.references("hot_name", cursor="garbage")
        assert e.value.field == "cursor"
        with pytest.raises(errors.QueryError):
            index.references("hot_name", cursor="999999:1:1")


class TestStability:
    def test_ids_survive_edits_above_and_inside_a_definition(self, tmp_path):
        before = write_generation(tmp_path / "a", {"m.py": FILES["app/models.py"]})
        edited = "# a new first line\n" + FILES["app/models.py"].replace(
            "return self.invoice.total()", "return 2 * self.invoice.total()"
        )
        after = write_generation(tmp_path / "b", {"m.py": edited})
        with SymbolIndex.open(before) as a, SymbolIndex.open(after) as b:  # type: ignore[union-attr]
            old = {s.qualname: (s.id, s.start_line) for s in a.outline("m.py").symbols}
            new = {s.qualname: (s.id, s.start_line) for s in b.outline("m.py").symbols}
        assert {k: v[0] for k, v in old.items()} == {k: v[0] for k, v in new.items()}
        assert all(new[k][1] == old[k][1] + 1 for k in old)


class TestOlderStores:
    def test_a_generation_without_symbols_opens_as_none(self, tmp_path):
        fixture = Path(__file__).resolve().parents[1] / "fixtures" / "store-v1"
        target = tmp_path / "store-v1"
        shutil.copytree(fixture, target)
        generation = store.Store(target).current()
        assert generation.manifest.format_version < 6
        assert SymbolIndex.open(generation.path) is None

    def test_a_newer_schema_is_refused(self, tmp_path):
        root = write_generation(tmp_path / "g", {"m.py": "def f():\n    return 1\n"})
        conn = sqlite3.connect(root / store.SYMBOLS_DB)
        conn.execute(f"PRAGMA user_version = {symbols_store.SCHEMA_VERSION + 1}")
        conn.commit()
        conn.close()
        with pytest.raises(errors.IndexFormatError, match="symbol schema"):
            SymbolIndex.open(root)


def test_symbol_ids_are_printable_and_round_trip():
    value = symbols_store.symbol_id("a.py", "A.f", "method", 0)
    assert 0 <= value < 2**63
    text = symbols_store.format_id(value)
    assert len(text) == 16 and symbols_store.parse_id(text) == value
    assert symbols_store.symbol_id("a.py", "A.f", "method", 1) != value
    assert np.int64(value) == value  # fits sqlite's INTEGER
