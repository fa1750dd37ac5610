"""Symbols and occurrences from the chunk pass, and their life through build, update and merge."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codeintel.core import store as store_mod
from codeintel.core.settings import Settings
from codeintel.core.store import symbols as symbols_store
from codeintel.core.symbols import SymbolIndex
from codeintel.indexer import chunking, extraction, languages, pipeline, symbol_rules
from codeintel.searcher import early as early_mod

# Each snippet names `target` in a comment and in a string, and uses it as code
# exactly `uses` times (its definition's own name excluded).
SNIPPETS: dict[str, tuple[str, int]] = {
    "a.py": (
        "# target in a comment\n"
        "def target():\n"
        '    """target in a docstring"""\n'
        "    return 'target' + f'{target}'\n"
        "x = target()\n",
        2,
    ),
    "a.js": (
        "// target\nfunction target() { return 'target' + `${target}`; }\n/* target */ target();\n",
        2,
    ),
    "a.ts": ("// target\nconst s: string = 'target';\nfunction target(): void { target(); }\n", 1),
    "a.go": (
        'package a\n\n// target\nfunc target() string { return "target" }\n\nvar y = target()\n',
        1,
    ),
    "a.rs": ('// target\nfn target() -> &\'static str { "target" }\nfn b() { target(); }\n', 1),
    "A.java": (
        'class A {\n  // target\n  void target() { String s = "target"; target(); }\n}\n',
        1,
    ),
    "a.c": ("/* target */\nint target(void) { return 0; }\nint b(void) { return target(); }\n", 1),
    "a.cpp": (
        '// target\nint target() { return 0; }\nint b() { auto s = "target"; return target(); }\n',
        1,
    ),
}


class TestExtraction:
    def test_every_language_with_chunks_by_symbol_has_a_query(self):
        assert set(symbol_rules.RULES) == set(languages.GRAMMARS)
        for language in symbol_rules.RULES:
            assert symbol_rules.query_for(language) is not None, language

    @pytest.mark.parametrize("path", sorted(SNIPPETS))
    def test_comments_and_strings_never_hold_occurrences(self, path):
        text, uses = SNIPPETS[path]
        _, found = chunking.chunk_and_extract(path, text)
        assert found is not None
        assert [s.name for s in found.symbols if s.name == "target"] == ["target"]
        lines = [
            line
            for name, line in zip(found.occurrence_names(), found.lines, strict=True)
            if name == "target"
        ]
        assert len(lines) == uses, (path, lines)
        kinds = {
            symbols_store.OCCURRENCE_KINDS[k]
            for name, k in zip(found.occurrence_names(), found.kinds, strict=True)
            if name == "target"
        }
        assert "call" in kinds

    @pytest.mark.parametrize(
        ("path", "text", "wanted"),
        [
            # f-string interpolations are code, their format specifiers and the text are not
            (
                "f.py",
                "def f(x, width):\n    return f'{x!r:>{width}} {x:%Y} alpha'\n",
                ["x", "width", "x", "width", "x"],
            ),
            # numbers are not identifiers; keywords and builtin constants are not either
            (
                "n.py",
                "y = 0x1F + 1e5 + 2j + 1.e-6 + x1.real if None else True\n",
                ["y", "x1", "real"],
            ),
            # non-ASCII identifiers, with byte columns
            ("u.py", "café = 1\nprint(café)\n", ["café", "print", "café"]),
            # a reserved word after `.` is a property name
            ("p.js", "p.catch(e => e.default)\n", ["p", "catch", "e", "e", "default"]),
            ("d.js", "let $el = $(x)\n", ["$el", "$", "x"]),
            # directive words and preprocessor bodies are not occurrences; #ifdef names are
            (
                "m.c",
                '#include "m.h"\n#ifdef DEBUG\n#define LOG(s) puts("s")\n#endif\n',
                ["DEBUG", "LOG", "s"],
            ),
            ("r.rs", "fn g(v: Vec<u8>) -> char { let c = 'v'; c }\n", ["v", "Vec", "c", "c"]),
        ],
    )
    def test_identifiers_are_words_of_code(self, path, text, wanted):
        _, found = chunking.chunk_and_extract(path, text)
        assert found is not None
        assert found.occurrence_names() == wanted
        rows = list(zip(found.lines.tolist(), found.columns.tolist(), strict=True))
        lines = text.encode().split(b"\n")
        assert [
            lines[line - 1][column:].decode()[: len(n)]
            for (line, column), n in zip(rows, wanted, strict=True)
        ] == wanted

    @pytest.mark.parametrize("path", sorted(SNIPPETS))
    def test_the_chunks_are_those_of_chunk_file(self, path):
        text, _ = SNIPPETS[path]
        drafts, _ = chunking.chunk_and_extract(path, text)
        assert drafts == chunking.chunk_file(path, text)

    def test_a_file_without_grammar_has_no_symbols_and_an_empty_file_none(self):
        _, found = chunking.chunk_and_extract("notes.txt", "target target\n")
        assert found is not None and found.symbols == [] and len(found) == 0
        assert chunking.chunk_and_extract("empty.py", "\n\n") == ([], None)

    def test_broken_syntax_still_gives_chunks_and_what_parses(self):
        text = "def good():\n    return 1\n\ndef broken(:\n    pass\n"
        drafts, found = chunking.chunk_and_extract("b.py", text)
        assert drafts and found is not None
        assert "good" in [s.name for s in found.symbols]

    def test_signature_is_bounded_and_stops_at_the_body(self):
        params = ",\n".join(f"    p{i}" for i in range(10))
        text = f"def wide(\n{params},\n):\n    # not the signature\n    return 1\n"
        _, found = chunking.chunk_and_extract("w.py", text)
        assert found is not None
        (wide,) = found.symbols
        assert wide.signature.startswith("def wide(\n    p0,")
        assert wide.signature.endswith(" …")
        assert wide.signature.count("\n") == extraction.SIGNATURE_LINES - 1
        assert "not the signature" not in wide.signature


def _settings(store: Path) -> Settings:
    return Settings.from_env({}, store={"path": store}, index={})


class _Observer:
    """Records what the early index can answer when the chunk pass is done."""

    def __init__(self, generations_dir: Path) -> None:
        self.early = early_mod.EarlyIndex("unused")
        self.generations_dir = generations_dir
        self.found: list[str] = []

    def commit_resolved(self, mirror: Path, commit: str) -> None:
        self.early.commit_resolved(mirror, commit)

    def chunks_written(self, path: Path, generation: str) -> None:
        self.early.chunks_written(path, generation)
        index = self.early.symbols(self.generations_dir)
        assert index is not None
        self.found = [s.qualname for s in index.find("TaxCalculator.*")]


@pytest.mark.slow
class TestPipeline:
    def test_build_update_rename_and_merge(self, sample_repo, local_embedder, tmp_path):
        store_dir = tmp_path / "store"
        settings = _settings(store_dir)
        observer = _Observer(store_dir / "generations")
        pipeline.build(settings, str(sample_repo.path), local_embedder, observer=observer)
        # the early index answered from the temp directory, before publication
        assert observer.found == ["TaxCalculator.__init__", "TaxCalculator.tax_for"]
        # … and still answers after it (the directory was renamed)
        index = observer.early.symbols(store_dir / "generations")
        assert index is not None and index.find("send_email")[0].path == "mail/sender.py"

        store = store_mod.Store(store_dir)
        first = store.current()
        assert first is not None
        # the postings file is a file of the generation like any other: checksummed
        assert set(store_mod.SYMBOL_FILES) <= set(first.manifest.checksums)
        with SymbolIndex.open(first.path) as before:  # type: ignore[union-attr]
            go_ids = {s.qualname: s.id for s in before.outline("web/server.go").symbols}
            assert before.find("vendored") == []  # excluded paths have no symbols
            assert before.references("smtplib").total == 2

        invoice = (sample_repo.path / "billing/invoice.py").read_text()
        sample_repo.delete("billing/invoice.py")
        sample_repo.write({"billing/invoices.py": invoice})
        sample_repo.write(
            {"mail/sender.py": "def send_email(host):\n    return smtplib.SMTP(host)\n"}
        )
        sample_repo.commit("rename invoice.py, rewrite sender.py")
        pipeline.update(settings, local_embedder)
        updated = store.current()
        with SymbolIndex.open(updated.path) as after:  # type: ignore[union-attr]
            assert after.outline("billing/invoice.py") is None
            moved = after.find("TaxCalculator.tax_for")
            assert [s.path for s in moved] == ["billing/invoices.py"]
            assert {s.qualname: s.id for s in after.outline("web/server.go").symbols} == go_ids
            refs = after.references("smtplib")
            assert refs.total == 1 and refs.groups[0].symbol == "send_email"
            assert after.references("Decimal").per_file[0].path == "billing/invoices.py"

        pipeline.merge(settings)
        merged = store.current()
        assert merged.name != updated.name
        for name in store_mod.SYMBOL_FILES:
            a = os.stat(merged.path / name)
            b = os.stat(updated.path / name)
            assert (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)  # carried over, not rebuilt
            c = os.stat(first.path / name)
            assert (b.st_ino, b.st_dev) != (c.st_ino, c.st_dev)  # the update wrote its own
        assert merged.manifest.format_version == store_mod.FORMAT_VERSION >= 6
        with SymbolIndex.open(merged.path) as carried:  # type: ignore[union-attr]
            assert [s.path for s in carried.find("tax_for")] == ["billing/invoices.py"]
