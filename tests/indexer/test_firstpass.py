"""The progressive first pass: its order, and a build that publishes it before the full index.

Real repositories in ``tmp_path``, the real bundled model, real FAISS.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from codeintel.core import hits
from codeintel.core.settings import Settings
from codeintel.core.store import CHUNKS_DB, Store
from codeintel.indexer import chunking, firstpass, pipeline
from embedders import TokenCountingPassThrough


def _draft(path: str, symbol: str = "", start: int = 1) -> chunking.ChunkDraft:
    return chunking.ChunkDraft(
        path=path,
        start_line=start,
        end_line=start + 1,
        language="python",
        symbol=symbol,
        text="x = 1\n",
        content_hash="0" * 32,
    )


class TestOrder:
    @pytest.mark.parametrize(
        ("path", "kind"),
        [
            ("src/pkg/core.py", firstpass.SOURCE),
            ("pkg/util/io.go", firstpass.SOURCE),
            ("contest.py", firstpass.SOURCE),
            ("tests/test_core.py", firstpass.TESTS),
            ("pkg/core_test.go", firstpass.TESTS),
            ("web/app.spec.ts", firstpass.TESTS),
            ("pkg/tests/helpers.py", firstpass.TESTS),
            ("conftest.py", firstpass.TESTS),
            ("docs/conf.py", firstpass.DOCS),
            ("README.md", firstpass.DOCS),
            ("examples/quickstart.py", firstpass.DOCS),
            ("third_party/zlib/inflate.c", firstpass.VENDORED),
            ("pkg/_vendor/six.py", firstpass.VENDORED),
            ("api/service_pb2.py", firstpass.VENDORED),
            ("static/app.min.js", firstpass.VENDORED),
        ],
    )
    def test_kind_of_a_path(self, path: str, kind: int) -> None:
        assert firstpass.kind(path) == kind

    def test_source_definitions_first_then_tests_docs_vendored(self) -> None:
        drafts = [
            _draft("README.md"),
            _draft("vendor/dep.py", "dep"),
            _draft("tests/test_a.py", "test_a"),
            _draft("pkg/b.py", "", 1),
            _draft("pkg/b.py", "B.run", 3),
            _draft("pkg/a.py", "helper", 9),
            _draft("tests/test_a.py", "", 1),
        ]
        ranked = [(drafts[i].path, drafts[i].symbol) for i in firstpass.order(drafts)]
        assert ranked == [
            ("pkg/a.py", "helper"),
            ("pkg/b.py", "B.run"),
            ("pkg/b.py", ""),
            ("tests/test_a.py", "test_a"),
            ("tests/test_a.py", ""),
            ("README.md", ""),
            ("vendor/dep.py", "dep"),
        ]

    def test_empty(self) -> None:
        assert firstpass.order([]).tolist() == []


class TestGroupSize:
    """The next embed call is cut to what the rate so far fits in the budget's rest."""

    def test_doubling_while_the_budget_is_far(self) -> None:
        assert firstpass.next_group(256, done=192, elapsed=5.0, seconds=60.0) == 256

    def test_cut_near_the_end_of_the_budget(self) -> None:
        # sympy on a quiet machine: 1,472 chunks at 25/s, 1 s before the 60 s budget.
        assert firstpass.next_group(512, done=1472, elapsed=59.0, seconds=60.0) == 24

    def test_never_below_one_batch(self) -> None:
        assert firstpass.next_group(512, done=100, elapsed=59.9, seconds=60.0) == 16
        assert firstpass.next_group(512, done=100, elapsed=70.0, seconds=60.0) == 16

    def test_first_call_is_not_cut(self) -> None:
        assert firstpass.next_group(64, done=0, elapsed=0.0, seconds=60.0) == 64


class CountingEmbedder(TokenCountingPassThrough):
    """The real model, counting the texts it is asked for; fails after ``fail_after`` calls."""

    def __init__(self, inner: Any, fail_after: int | None = None) -> None:
        super().__init__(inner)
        self.texts: list[str] = []
        self.calls = 0
        self.fail_after = fail_after
        self.lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with self.lock:
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise RuntimeError("the model went away")
            self.calls += 1
            self.texts += list(texts)
        return super().embed(texts)


def _settings(store: Path, **index: object) -> Settings:
    return Settings.from_env({}, store={"path": store}, index=index)


@pytest.mark.slow
class TestProgressiveBuild:
    def test_first_generation_then_the_full_one_over_it(
        self, sample_repo: Any, local_embedder: Any, tmp_path: Path
    ) -> None:
        settings = _settings(tmp_path / "store", first_pass_seconds=600, first_pass_max_chunks=2)
        embedder = CountingEmbedder(local_embedder)
        result = pipeline.build(settings, str(sample_repo.path), embedder, progressive=True)

        store = Store(tmp_path / "store")
        first, full = store.open_generation("g000001"), store.open_generation("g000002")
        assert result.generation == "g000002" == store.current_name()
        coverage = first.manifest.dense_coverage
        assert coverage is not None and (coverage.chunks, coverage.total) == (2, result.chunks)
        assert first.manifest.counts.primary == 2 and first.vectors().ids().size == 2
        assert full.manifest.dense_coverage is None
        assert full.manifest.parent == "g000001" and full.manifest.commit == first.manifest.commit
        assert full.manifest.counts.primary == result.vectors.primary >= result.chunks
        # The full generation reuses the first one's chunks (a hard link) ...
        assert os.stat(first.path / CHUNKS_DB).st_ino == os.stat(full.path / CHUNKS_DB).st_ino
        # ... and its vectors: the first pass's two source chunks are not embedded again.
        first_texts = embedder.texts[:2]
        assert len(set(first_texts)) == 2 and not set(first_texts) & set(embedder.texts[2:])
        assert all("README.md" not in t.splitlines()[0] for t in first_texts)
        first_ids = first.vectors().ids()
        assert np.array_equal(first.vectors().get(first_ids), full.vectors().get(first_ids))

    def test_same_vectors_and_answers_as_a_plain_build(
        self, sample_repo: Any, local_embedder: Any, tmp_path: Path
    ) -> None:
        plain = _settings(tmp_path / "plain")
        progressive = _settings(tmp_path / "progressive", first_pass_max_chunks=1)
        a = pipeline.build(plain, str(sample_repo.path), local_embedder)
        b = pipeline.build(progressive, str(sample_repo.path), local_embedder, progressive=True)

        assert (a.generation, b.generation) == ("g000001", "g000002")
        assert a.embedded == b.embedded and a.vectors == b.vectors
        va, vb = (
            Store(tmp_path / "plain").current().vectors(),
            Store(tmp_path / "progressive").current().vectors(),
        )
        assert np.array_equal(va.ids(), vb.ids())
        assert np.array_equal(va.get(va.ids()), vb.get(vb.ids()))
        for settings in (plain, progressive):
            top = hits.search_store(settings, local_embedder, "deliver a message by SMTP", 3)
            assert top[0].path == "mail/sender.py"

    def test_index_build_and_a_small_first_pass_publish_once(
        self, sample_repo: Any, local_embedder: Any, tmp_path: Path
    ) -> None:
        # Without ``progressive`` (index build), and when the first pass embeds every chunk.
        for name, progressive in (("cli", False), ("small", True)):
            settings = _settings(tmp_path / name, first_pass_seconds=600)
            result = pipeline.build(
                settings, str(sample_repo.path), local_embedder, progressive=progressive
            )
            assert result.generation == "g000001"
            assert Store(tmp_path / name).current().manifest.dense_coverage is None

    def test_a_stopped_build_leaves_the_first_generation_and_update_completes_it(
        self, sample_repo: Any, local_embedder: Any, tmp_path: Path
    ) -> None:
        settings = _settings(tmp_path / "store", first_pass_seconds=600, first_pass_max_chunks=2)
        failing = CountingEmbedder(local_embedder, fail_after=1)
        with pytest.raises(RuntimeError, match="went away"):
            pipeline.build(settings, str(sample_repo.path), failing, progressive=True)
        store = Store(tmp_path / "store")
        live = store.current()
        assert live.name == "g000001" and live.manifest.dense_coverage is not None
        top = hits.search_store(settings, local_embedder, "parse an invoice", 3, "lexical")
        assert top[0].path == "billing/invoice.py"  # lexical still covers every chunk

        counting = CountingEmbedder(local_embedder)
        result = pipeline.update(settings, counting)
        assert result.action == "build" and result.generation == "g000002"
        assert store.current().manifest.dense_coverage is None
        # The embedding cache kept the first pass: only the rest reaches the model.
        assert not set(failing.texts) & set(counting.texts)
        top = hits.search_store(settings, local_embedder, "deliver a message by SMTP", 3)
        assert top[0].path == "mail/sender.py"
