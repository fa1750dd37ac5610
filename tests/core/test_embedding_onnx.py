"""The local model through onnxruntime: exported from the bundled weights, here, offline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from codeintel.core import errors
from codeintel.core.embed import make_embedder, onnxrt
from codeintel.core.embed.local import LocalEmbedder, resolve_model_dir
from codeintel.core.settings import DEFAULT_MODEL, EmbedderSettings, Settings

TEXTS = [
    "def parse_invoice(text):\n    items = [line.split(',') for line in text.splitlines()]",
    "send an email through an SMTP relay",
    "class TaxCalculator:\n    def tax_for(self, amount):\n        return amount * self.rate",
    "HealthHandler answers liveness probes with 200 OK",
    "x" * 3000,  # past the model's 256 tokens: truncated like torch does
]


@pytest.fixture(scope="module")
def torch_vectors(local_embedder):
    return local_embedder.embed(TEXTS)


@pytest.mark.parametrize(
    ("backend", "mean", "worst"), [("onnx", 0.9999, 0.999), ("onnx-int8", 0.985, 0.97)]
)
def test_vectors_match_torch(backend, mean, worst, torch_vectors, tmp_path):
    embedder = LocalEmbedder(backend=backend, onnx_cache=tmp_path)
    try:
        xb = embedder.embed(TEXTS)
    finally:
        embedder.close()
    assert xb.dtype == np.float32 and xb.shape == torch_vectors.shape
    assert np.allclose(np.linalg.norm(xb, axis=1), 1.0, atol=1e-5)
    cos = np.sum(xb * torch_vectors, axis=1)
    assert cos.mean() >= mean and cos.min() >= worst, cos
    assert list(tmp_path.rglob("*.onnx")), "the export is cached"


def test_export_is_made_once_and_reused(tmp_path):
    first = LocalEmbedder(backend="onnx-int8", onnx_cache=tmp_path)
    first.embed(["warm"])
    (path,) = tmp_path.rglob("model-int8-per-channel.onnx")
    stamp = path.stat().st_mtime_ns
    first.close()
    second = LocalEmbedder(backend="onnx-int8", onnx_cache=tmp_path)
    try:
        second.embed(["again"])
    finally:
        second.close()
    assert path.stat().st_mtime_ns == stamp


def test_backend_setting_reaches_the_embedder_and_auto_prefers_fp32_onnx():
    assert onnxrt.available()
    assert make_embedder(EmbedderSettings(backend="torch")).backend == "torch"  # type: ignore[attr-defined]
    assert make_embedder(EmbedderSettings(backend="onnx-int8")).backend == "onnx-int8"  # type: ignore[attr-defined]
    assert make_embedder(EmbedderSettings()).backend == "onnx"  # type: ignore[attr-defined]


def test_unknown_backend_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="backend"):
        LocalEmbedder(backend="tensorrt")


def test_auto_falls_back_to_torch_where_the_export_cannot_be_written(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    auto = LocalEmbedder(backend="auto", onnx_cache=blocker / "onnx")
    try:
        assert auto.embed(["still embeds"]).shape == (1, 384)
        assert auto.backend == "torch"
    finally:
        auto.close()
    chosen = LocalEmbedder(backend="onnx", onnx_cache=blocker / "onnx")
    with pytest.raises(errors.ConfigError, match="backend 'onnx' failed"):
        chosen.embed(["must not silently change backend"])


def test_the_export_directory_comes_from_the_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({"CODEINTEL_ONNX_CACHE": "exports"})
    assert settings.embedder.onnx_cache == str(tmp_path / "exports")
    canonical = {"CODEINTEL_EMBEDDER_ONNX_CACHE": "/a", "CODEINTEL_ONNX_CACHE": "/b"}
    assert Settings.from_env(canonical).embedder.onnx_cache == "/a"
    embedder = make_embedder(dataclasses.replace(settings.embedder, backend="onnx"))
    try:
        embedder.embed(["exported where the settings say"])
    finally:
        embedder.close()
    assert list((tmp_path / "exports").rglob("model.onnx"))


def test_an_existing_export_runs_without_torch(torch_vectors, tmp_path, monkeypatch):
    """A fresh process with the export cached never imports torch (the searcher's and the
    indexer's memory), and its vectors are torch's, long texts and mixed batches included."""
    import json
    import subprocess
    import sys

    maker = LocalEmbedder(backend="onnx", onnx_cache=tmp_path)
    maker.embed(["make the export"])
    maker.close()
    script = (
        "import json, sys\n"
        "from codeintel.core.embed.local import LocalEmbedder\n"
        "e = LocalEmbedder(backend='onnx', onnx_cache=sys.argv[1])\n"
        "xb = e.embed(json.loads(sys.stdin.read()))\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'limit': e.max_tokens,\n"
        "  'tokens': e.count_tokens(['a b']), 'xb': xb.tolist()}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        input=json.dumps(TEXTS),
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["torch"] is False and got["limit"] == 256 and got["tokens"] == 4
    cos = np.sum(np.asarray(got["xb"], dtype=np.float32) * torch_vectors, axis=1)
    assert cos.min() >= 0.9999, cos


def test_token_budget_batches_match_one_text_at_a_time(tmp_path, monkeypatch):
    """Batches cut by ``BATCH_TOKENS`` (and padded to their own longest text) change no vector."""
    embedder = LocalEmbedder(backend="onnx", onnx_cache=tmp_path)
    try:
        embedder.embed(["load"])
        encoder = embedder._onnx
        assert encoder is not None
        texts = [f"def f{i}(x):\n" + "    x += 1\n" * (i * 7) for i in range(40)]
        together = encoder.encode(texts, batch_size=64)
        alone = np.vstack([encoder.encode([t], batch_size=1) for t in texts])
    finally:
        embedder.close()
    assert np.allclose(together, alone, atol=1e-5)


def test_the_onnx_backend_runs_the_fused_graph_and_completes_an_older_cache(
    torch_vectors, tmp_path
):
    """An older cache holding only the plain export gets the fused graph made once (one
    Attention op per layer: 0.66x the CPU time of the plain graph), with torch's vectors."""
    import onnx

    plain_maker = LocalEmbedder(backend="onnx-int8", onnx_cache=tmp_path)
    plain_maker.embed(["the plain export and its int8 copy, as an older cache has them"])
    plain_maker.close()
    (plain,) = tmp_path.rglob("model.onnx")
    assert not list(tmp_path.rglob(onnxrt.FUSED_NAME))
    assert onnxrt.exported_file(resolve_model_dir(DEFAULT_MODEL), "onnx", tmp_path) is None
    embedder = LocalEmbedder(backend="onnx", onnx_cache=tmp_path)
    try:
        xb = embedder.embed(TEXTS)
        encoder = embedder._onnx
        assert encoder is not None and encoder.path.name == onnxrt.FUSED_NAME
    finally:
        embedder.close()
    ops = [
        node.op_type for node in onnx.load(str(encoder.path), load_external_data=False).graph.node
    ]
    assert ops.count("Attention") == 6 and "Softmax" not in ops
    assert np.sum(xb * torch_vectors, axis=1).min() >= 0.9999
    assert plain.exists()


def test_embedders_of_one_process_share_one_session(tmp_path):
    """The query embedder and the indexer's (``serve PATH``) run one onnxruntime session of
    the weights, not two (~90 MB each), and embed from two threads at once."""
    import threading

    first = LocalEmbedder(backend="onnx", onnx_cache=tmp_path)
    second = LocalEmbedder(backend="onnx", onnx_cache=tmp_path)
    try:
        alone = first.embed(TEXTS)
        second.embed(["load"])
        assert first._onnx is not None and second._onnx is not None
        assert first._onnx._session is second._onnx._session
        got: dict[int, np.ndarray] = {}
        threads = [
            threading.Thread(target=lambda i=i, e=e: got.__setitem__(i, e.embed(TEXTS)))
            for i, e in enumerate((first, second) * 2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        first.close()
        second.close()
    assert len(got) == 4 and all(np.allclose(xb, alone, atol=1e-5) for xb in got.values())


def test_an_indexing_group_gives_back_each_batch(tmp_path, monkeypatch):
    """A group of the build trims the heap after every batch (its freed activations), a
    query never: glibc kept each batch's activations otherwise, +306 MB over the model on
    a group of long chunks (docs/performance.md)."""
    trims: list[int] = []
    monkeypatch.setattr(onnxrt.malloc, "trim", lambda: trims.append(1))
    embedder = LocalEmbedder(backend="onnx", onnx_cache=tmp_path)
    try:
        embedder.embed(["load"])
        encoder = embedder._onnx
        assert encoder is not None
        trims.clear()
        encoder.encode(["a query"], batch_size=8)
        assert trims == []
        texts = [" ".join(f"word{i}_{j}" for j in range(300)) for i in range(24)]
        encoder.encode(texts, batch_size=8)  # three batches of 8 x 256 tokens
        assert len(trims) == 3
    finally:
        embedder.close()
