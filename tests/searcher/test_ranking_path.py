"""One ranking path: ``codeintel search --mode M`` and REST semantic_search rank alike."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from searcher_helpers import Served

from codeintel.cli import main
from codeintel.core.settings import Settings

pytestmark = pytest.mark.slow

QUERIES = ["parse an invoice into line items", "send email through SMTP", "TaxCalculator rate"]


def _cli(store: str, query: str, mode: str, capsys: Any) -> list[tuple[str, int, int, float]]:
    capsys.readouterr()
    assert main(["search", query, "--store", store, "--mode", mode, "-k", "5", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    return [(r["path"], r["start_line"], r["end_line"], r["score"]) for r in rows]


def _rest(server: Served, query: str, mode: str) -> list[tuple[str, int, int, float]]:
    body = {"query": query, "mode": mode, "k": 5}
    r = httpx.post(f"{server.url}/v1/semantic_search", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return [(h["path"], h["start_line"], h["end_line"], h["score"]) for h in r.json()["results"]]


@pytest.mark.parametrize("mode", ["semantic", "hybrid", "lexical"])
def test_cli_and_searcher_rank_the_same(
    mode: str, server: Served, store_settings: Settings, capsys: Any
) -> None:
    store = str(store_settings.store.path)
    for query in QUERIES:
        cli = _cli(store, query, mode, capsys)
        rest = _rest(server, query, mode)
        assert cli, (mode, query)
        # The same chunks in the same order; scores equal up to float32 noise (the two
        # processes run the model in their own sessions and threads: 1e-6 apart seen).
        assert [h[:3] for h in cli] == [h[:3] for h in rest], (mode, query)
        assert [h[3] for h in cli] == pytest.approx([h[3] for h in rest], abs=1e-5)


def test_lexical_search_needs_no_embedder(
    store_settings: Settings, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An embedder that cannot be reached: lexical mode must not touch it.
    monkeypatch.setenv("CODEINTEL_EMBEDDER_KIND", "openai")
    monkeypatch.setenv("CODEINTEL_EMBEDDER_URL", "http://127.0.0.1:9/v1")
    rows = _cli(str(store_settings.store.path), "TaxCalculator", "lexical", capsys)
    assert rows[0][0] == "billing/invoice.py"


def test_cli_refuses_dense_search_with_another_model_of_the_same_dimension(
    store_settings: Settings, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from codeintel.core.embed.local import resolve_model_dir

    # The same 384-d weights under another name: dimensions agree, rankings would not.
    other = str(resolve_model_dir(store_settings.embedder.model))
    monkeypatch.setenv("CODEINTEL_EMBEDDER_MODEL", other)
    store = str(store_settings.store.path)
    capsys.readouterr()
    assert main(["search", "invoice", "--store", store, "--mode", "semantic"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:"), err
    assert repr(other) in err[0] and repr(store_settings.embedder.model) in err[0]
    assert "mode=lexical" in err[0]
    assert _cli(store, "TaxCalculator", "lexical", capsys)  # lexical is unaffected
