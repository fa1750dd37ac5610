"""The retrieval benchmark end to end on a tiny corpus: blanking, queries, gold, metrics."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from benchmarks import retrieval_bench as bench
from benchmarks import retrieval_cache
from benchmarks import retrieval_corpus as rc

from codeintel.core import hits as hits_mod
from codeintel.core import store as store_mod
from codeintel.indexer import corpus as corpus_mod

INVOICE = '''\
"""Invoices: parsing and totals."""

import decimal


def parse_invoice(text):
    """Parse an invoice document into line items.

    Each line holds a name and a price: ``name,price``.
    """
    return [line.split(",") for line in text.splitlines() if line]


class TaxCalculator:
    """Taxes on amounts, in décimal."""

    @staticmethod
    def tax_for(amount, rate):
        """Compute the tax owed on an amount at a given rate."""
        return decimal.Decimal(amount) * rate
'''

MAIL = '''\
import smtplib


def send_email(host, recipient, body):
    """Send an email message through an SMTP relay server."""
    with smtplib.SMTP(host) as smtp:
        smtp.sendmail("noreply@example.org", [recipient], body)


def test_send_email():
    """Check that sending an email works as expected."""
'''

TEST_FILE = '''\
def check_totals_match():
    """Verify that the computed totals match the expected totals."""
    return True
'''

FILES = [("pkg/invoice.py", INVOICE), ("pkg/mail.py", MAIL), ("pkg/tests/checks.py", TEST_FILE)]


def test_blanking_keeps_every_line_number_and_the_syntax() -> None:
    blanked = rc.blank_docstrings(INVOICE)
    before, after = INVOICE.split("\n"), blanked.split("\n")
    assert len(after) == len(before)
    assert after[0] == '""'
    assert after[6:10] == ['    ""', "", "", ""]
    assert after[14] == '    ""'
    assert after[18] == '        ""'
    code_lines = [i for i in range(len(before)) if i not in (0, 6, 7, 8, 9, 14, 18)]
    assert [after[i] for i in code_lines] == [before[i] for i in code_lines]
    tree = ast.parse(blanked)
    assert ast.get_docstring(tree) == ""
    assert "parse an invoice" not in blanked.lower() and "décimal" not in blanked


def test_blanking_keeps_code_after_a_docstring_on_its_last_line() -> None:
    source = 'def f():\n    """One.\n    Two."""; x = 1\n    return x\n'
    blanked = rc.blank_docstrings(source)
    assert blanked == 'def f():\n    ""; x = 1\n\n    return x\n'
    ast.parse(blanked)


@pytest.mark.parametrize(
    ("docstring", "sentence"),
    [
        ("Parse an invoice document.\n\nMore text.", "Parse an invoice document."),
        ("Send an email. Then wait for the reply.", "Send an email."),
        (
            "Return the\n    wrapped value of the proxy\n\nArgs: x",
            "Return the wrapped value of the proxy",
        ),
        ("Too short.", None),
        (">>> f(1)\n2", None),
        (":param x: the value to use", None),
        ("no = 0 for real part, no = 1 for imaginary part", None),
    ],
)
def test_first_sentence(docstring: str, sentence: str | None) -> None:
    assert rc.first_sentence(docstring) == sentence


@pytest.mark.parametrize(
    ("identifier", "words"),
    [
        ("parse_args", "parse args"),
        ("_merge_cookies", "merge cookies"),
        ("parseHTTPResponse", "parse http response"),
        ("HTTPServer", "http server"),
        ("utf8_decode2", "utf 8 decode 2"),
        ("Console", "console"),
    ],
)
def test_split_words(identifier: str, words: str) -> None:
    assert rc.split_words(identifier) == words


def test_queries_and_gold_ranges(tmp_path: Path) -> None:
    corpus = rc.make_corpus("tiny", FILES, tmp_path / "repo")
    gold = {q.text: q.gold for q in corpus.nl_queries}
    # decorators start the range; test files and test functions never give queries
    assert gold == {
        "Parse an invoice document into line items.": (rc.Span("pkg/invoice.py", 6, 11),),
        "Compute the tax owed on an amount at a given rate.": (rc.Span("pkg/invoice.py", 17, 20),),
        "Send an email message through an SMTP relay server.": (rc.Span("pkg/mail.py", 4, 7),),
    }
    assert sorted((q.text, q.gold) for q in corpus.ident_queries) == [
        ("parse_invoice", (rc.Span("pkg/invoice.py", 6, 11),)),
        ("send_email", (rc.Span("pkg/mail.py", 4, 7),)),
        ("tax_for", (rc.Span("pkg/invoice.py", 17, 20),)),
    ]
    assert sorted(q.text for q in corpus.words_queries) == [
        "parse invoice",
        "send email",
        "tax for",
    ]
    assert (tmp_path / "repo" / "pkg/invoice.py").read_text() == rc.blank_docstrings(INVOICE)
    again = rc.make_corpus("tiny", FILES, tmp_path / "again")
    assert again.queries == corpus.queries


def test_prepare_caches_the_repository_and_redraws_only_the_queries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "site-packages"
    for path, text in FILES:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "__pycache__" / "stale.py").write_text("x = 1\n")
    monkeypatch.setitem(rc.CORPORA, "tiny", ("pkg",))
    cache = tmp_path / "cache"
    corpus = rc.prepare("tiny", cache, root=root)
    assert corpus.files == 3 and len(corpus.nl_queries) == 3
    head = (cache / "corpora" / "tiny" / ".git" / "refs" / "heads" / "main").read_text()
    marker = cache / "corpora" / "tiny" / "marker"
    marker.write_text("kept")  # a rewritten repository would lose it
    assert rc.prepare("tiny", cache, root=root).queries == corpus.queries
    fewer = rc.prepare("tiny", cache, nl=1, root=root)
    assert len(fewer.nl_queries) == 1 and marker.exists()
    monkeypatch.setattr(rc, "REPO_FORMAT", rc.REPO_FORMAT + 1)
    rc.prepare("tiny", cache, nl=1, root=root)
    assert not marker.exists()
    assert (cache / "corpora" / "tiny" / ".git" / "refs" / "heads" / "main").read_text() == head


def test_tests_dunders_and_tiny_functions_give_no_queries() -> None:
    def fn(name: str, path: str = "m.py", lines: int = 5) -> rc.Function:
        return rc.Function(path, name, name, 10, 10 + lines - 1, f"Do the {name} thing well.")

    fns = [
        fn("compute_total"),
        fn("__repr__"),
        fn("test_total"),
        fn("short_one", lines=2),
        fn("checker", path="pkg/tests/helpers.py"),
    ]
    assert [q.symbol for q in rc.nl_queries(fns, 10, 0)] == ["compute_total"]
    ident, words = rc.symbol_queries(fns, 10, 0)
    assert [q.text for q in ident] == ["compute_total"]
    assert [q.text for q in words] == ["compute total"]


def _hit(path: str, start: int, end: int) -> hits_mod.Hit:
    return hits_mod.Hit(path, start, end, 0.5, None, "python", "")


def test_metrics_on_a_hand_checked_case() -> None:
    gold = (rc.Span("a.py", 10, 20), rc.Span("b.py", 1, 5))
    assert bench.first_hit([_hit("a.py", 21, 30), _hit("b.py", 5, 9)], gold) == 2
    assert bench.first_hit([_hit("a.py", 1, 10)], gold) == 1
    assert bench.first_hit([_hit("c.py", 10, 20), _hit("a.py", 21, 22)], gold) is None
    m = bench.score([1, None, 2, 4], k=3)
    assert (m.queries, m.recall, m.mrr) == (4, 0.5, round((1 + 0.5) / 4, 4))


@pytest.mark.slow
def test_end_to_end_on_a_tiny_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = rc.make_corpus("tiny", FILES, tmp_path / "repo")
    embedder = retrieval_cache.cached_embedder(tmp_path / "cache")
    try:
        settings = bench.build_store(corpus, tmp_path / "store", embedder)
        assert embedder.misses == 6 and embedder.hits == 0  # six chunks
        generation = store_mod.Store(settings.store.path).current()
        db = generation.chunks()
        try:
            chunks = {c.symbol: c for c in db.get(db.all_ids().tolist()).values()}
        finally:
            db.close()
        # the indexed copy keeps line numbers: chunks sit where the original functions were
        # (the chunker joins the short module preamble to the first function)
        assert (chunks["parse_invoice"].start_line, chunks["parse_invoice"].end_line) == (1, 11)
        tax_for = chunks["TaxCalculator.tax_for"]
        assert (tax_for.start_line, tax_for.end_line) == (17, 20)
        assert "Parse" not in chunks["parse_invoice"].text

        for query_set in rc.QUERY_SETS:
            queries = corpus.queries[query_set]
            for mode in hits_mod.MODES:
                m = bench.evaluate(settings, embedder, queries, mode)
                found = hits_mod.search_store(
                    settings, embedder, [q.text for q in queries], bench.K, mode
                )
                ranks = [bench.first_hit(h, q.gold) for h, q in zip(found, queries, strict=True)]
                assert m.ranks == tuple(ranks)
                hit = sum(r is not None for r in ranks) / len(ranks)
                assert m.recall == pytest.approx(hit, abs=1e-4)
            exact = bench.evaluate(settings, embedder, queries, bench.EXACT)
            assert exact.ranks == bench.evaluate(settings, embedder, queries, "semantic").ranks
        info = bench.ann_recall(settings, embedder, [q.text for q in corpus.nl_queries])
        assert info["index"] == "flat" and info["ann_recall@10"] == 1.0

        # an IVF store (forced; six chunks make one list): probing every list is exact
        ivf = bench.build_store(corpus, tmp_path / "ivf", embedder, {"index.exact_budget_ms": 0})
        info = bench.ann_recall(ivf, embedder, [q.text for q in corpus.nl_queries])
        assert info["index"] == "ivf_flat" and info["nlist"] == 1
        sweep = bench.ann_sweep(ivf, embedder, corpus.nl_queries, [1])
        assert [(r["nprobe"], r["ann_recall@10"]) for r in sweep] == [(1, 1.0)]
        exact = bench.evaluate(ivf, embedder, corpus.nl_queries, bench.EXACT)
        assert (sweep[0]["recall@10"], sweep[0]["mrr@10"]) == (exact.recall, exact.mrr)

        precious = tmp_path / "precious"
        (precious / "notes.txt").parent.mkdir()
        (precious / "notes.txt").write_text("mine")
        with pytest.raises(ValueError, match="neither empty nor a codeintel store"):
            bench.build_store(corpus, precious, embedder)
        assert (precious / "notes.txt").read_text() == "mine"

        # a rebuild embeds nothing: every vector comes from the cache, and so do the queries
        embedded, hits_before = embedder.misses, embedder.hits
        bench.build_store(corpus, tmp_path / "store", embedder)
        assert embedder.misses == embedded and embedder.hits > hits_before
        again = bench.evaluate(settings, embedder, corpus.nl_queries, "semantic")
        assert embedder.misses == embedded
        x = embedder.embed(["Send an email message through an SMTP relay server."])
        y = embedder.inner.embed(["Send an email message through an SMTP relay server."])
        np.testing.assert_allclose(x, y, atol=1e-6)
        assert (
            again.ranks == bench.evaluate(settings, embedder, corpus.nl_queries, "semantic").ranks
        )

        monkeypatch.setattr(bench, "RESULTS_DIR", tmp_path / "results")
        monkeypatch.setattr("benchmarks.common.RESULTS_DIR", tmp_path / "results")
        rows, info = bench.run_corpus(
            corpus, embedder, ["semantic", "lexical"], ["nl"], 10, tmp_path / "store2"
        )
        bench.write("tiny", rows, [info], {"k": bench.K})
        data = json.loads((tmp_path / "results" / "tiny.json").read_text())
        assert [(r["mode"], r["n"]) for r in data["rows"]] == [("semantic", 3), ("lexical", 3)]
        table = (tmp_path / "results" / "tiny.md").read_text()
        assert "| tiny | " in table and "ann_recall@10" in table
    finally:
        embedder.close()


@pytest.mark.slow
def test_a_built_store_seeds_the_cache_only_when_it_matches(tmp_path: Path) -> None:
    corpus = rc.make_corpus("tiny", FILES, tmp_path / "repo")
    built = retrieval_cache.cached_embedder(tmp_path / "built")
    seeded = retrieval_cache.cached_embedder(tmp_path / "seeded")
    try:
        settings = bench.build_store(corpus, tmp_path / "store", built)
        db = store_mod.Store(settings.store.path).current().chunks()
        try:
            chunks = sorted(db.get(db.all_ids().tolist()).values(), key=lambda c: c.id)
        finally:
            db.close()
        texts = [corpus_mod.embedding_text(retrieval_cache._draft(c)) for c in chunks]
        with pytest.raises(ValueError, match="only 0 of the store's texts are cached"):
            retrieval_cache.seed_from_store(seeded, settings.store.path, check=2)
        seeded.embed(texts[:2])
        assert retrieval_cache.seed_from_store(seeded, settings.store.path, check=2) == 4

        misses = seeded.misses
        again = bench.build_store(corpus, tmp_path / "again", seeded)
        assert seeded.misses == misses  # every chunk came from the seeded cache
        a = store_mod.Store(settings.store.path).current().vectors()
        b = store_mod.Store(again.store.path).current().vectors()
        # equal up to float16 rounding of the two texts embedded again in another batch
        np.testing.assert_allclose(a.get(a.ids()), b.get(b.ids()), atol=1e-4)

        wrong = retrieval_cache.cached_embedder(tmp_path / "wrong")
        wrong.insert(
            [(retrieval_cache.text_key(t), np.ones(384, np.float32).tobytes()) for t in texts[:2]]
        )
        with pytest.raises(ValueError, match="differ from the cache"):
            retrieval_cache.seed_from_store(wrong, settings.store.path, check=2)
        wrong.close()
    finally:
        built.close()
        seeded.close()
