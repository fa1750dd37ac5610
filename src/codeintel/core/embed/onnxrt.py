"""The local model through onnxruntime, exported here from its weights (no download).

Measured on real chunks on this machine's CPU (docs/performance.md, "CPU
embedding speed"): the fp32 export gives torch's vectors (cosine 0.9999+) at
about 1.35x torch's chunks/s, so ``auto`` uses it; dynamic int8 with
per-channel weight scales is about 2x torch (cosine 0.993 on average) but lost
3-4 points of recall@10 on the retrieval benchmark's identifier queries, so it
is opt-in; per-tensor scales lost more (cosine 0.94). No ``optimum`` (its
releases pin transformers < 4.58): ``torch.onnx`` exports the transformer once,
onnxruntime's ``quantize_dynamic`` makes the int8 copy, both cached under
``~/.cache/codeintel/onnx`` (``embedder.onnx_cache`` in the settings) keyed by
the weights' hash. Tokenizer and mean pooling are the model's own.

Once the export exists, :meth:`OnnxEncoder.from_dir` runs it with no torch and
no sentence-transformers at all: the tokenizer from the model's
``tokenizer.json`` (the ``tokenizers`` library, which ``transformers`` wraps),
the sequence limit and pooling from its sentence-transformers configuration
files. torch and the model's weights held about 450 MB of a process's RSS that
the ONNX session does not need (docs/performance.md, *Memory*), so a searcher
answering queries and an indexer embedding chunks each hold only the session,
and in one process (``serve PATH``) they hold the same one (:func:`_shared_session`).

The ``onnx`` backend runs the export after onnxruntime's BERT fusions
(:func:`_fuse`; exported with eager attention, whose graph the fusion recognises):
one ``Attention`` op per layer instead of a dozen ops that each write a
batch x heads x 256 x 256 tensor. Same vectors; on sympy's 256-token chunks
0.66x the CPU time and about 0.6x the peak RSS of the unfused graph
(docs/performance.md, *Embedding throughput and memory, issue 21*).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from codeintel.core import errors, malloc

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "onnx-int8")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FUSED_NAME = "model-fused.onnx"
"""What the ``onnx`` backend runs: the export with onnxruntime's BERT fusions (``_fuse``).
An older cache holding only ``model.onnx`` (unfused) is completed once, through torch."""
ARENA = False
"""onnxruntime's CPU memory arena: off. An indexing group instead gives each batch's
freed activations back to the system (``malloc.trim`` after every batch, :meth:`OnnxEncoder.encode`).
Measured over the loaded model, one group of chunks, one process per variant
(docs/performance.md, *The build's vectors in float16, and the model's batches*):

* no arena, a trim per group (before): +306-309 MB on 512 long chunks, +173 MB on 2,048
  short ones;
* the arena, shrunk after each run: +143-154 MB long, but +421-455 MB short (what raised
  the local build's rest pass from 739 to 866 MiB among sympy's short chunks);
* no arena, a trim per batch (now): +176-232 MB long, +140-148 MB short.

An arena would also keep the widest batch's activations for the life of the session a
searcher shares with the build (:func:`_shared_session`)."""
BATCH_TOKENS = 2048
"""Padded tokens per model call at most: 8 texts of 256 tokens, 32 of 64. A batch's
activations grow with its texts times their length squared (attention). 64 texts of 256
tokens took a process from 630 MB to a 1.5-1.8 GB peak; with the fused graph, 4 096
tokens peaked at ~410 MB and 2 048 at ~300 MB for a bare embedder, and 2 048 was as fast
or faster on sympy's chunks (docs/performance.md, *Embedding throughput and memory*)."""


def available() -> bool:
    """Whether onnxruntime (and onnx, for the export) can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def cache_dir(configured: str | Path = "") -> Path:
    """Where the exports are kept: ``configured`` (``embedder.onnx_cache``), else the
    user's cache directory."""
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "codeintel" / "onnx"


def _weights_key(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in sorted(p.name for p in model_dir.iterdir() if p.is_file()):
        if name.endswith((".safetensors", ".bin", ".json", ".txt")):
            digest.update(name.encode())
            digest.update((model_dir / name).read_bytes())
    return digest.hexdigest()[:16]


def _files(model_dir: Path, backend: str, cache: str | Path) -> tuple[Path, Path, Path, Path]:
    """(plain export, fused graph, int8 copy, the file ``backend`` runs)."""
    target = cache_dir(cache) / _weights_key(model_dir)
    plain, fused = target / "model.onnx", target / FUSED_NAME
    int8 = target / "model-int8-per-channel.onnx"
    return plain, fused, int8, int8 if backend == "onnx-int8" else fused


def exported_file(model_dir: Path, backend: str, cache: str | Path = "") -> Path | None:
    """The ONNX file for ``backend`` when an earlier run made it under :func:`cache_dir` of
    ``cache``, else None (no torch needed)."""
    want = _files(model_dir, backend, cache)[3]
    return want if want.exists() else None


def model_file(st: Any, model_dir: Path, backend: str, cache: str | Path = "") -> Path:
    """The ONNX file for ``backend`` of the sentence-transformers model ``st``, made once
    under :func:`cache_dir` of ``cache``."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise errors.ConfigError(
            f"embedder backend {backend!r} needs onnxruntime: pip install 'codeintel[onnx]'"
        ) from e
    plain, fused, int8, want = _files(model_dir, backend, cache)
    target = plain.parent
    if want.exists():
        return want
    target.mkdir(parents=True, exist_ok=True)
    if backend == "onnx-int8":
        if not plain.exists():
            _export(st, plain)
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with tempfile.TemporaryDirectory(dir=target) as tmp:
            out = Path(tmp) / int8.name
            quantize_dynamic(str(plain), str(out), weight_type=QuantType.QInt8, per_channel=True)
            os.replace(out, int8)
        return want
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        eager = Path(tmp) / "eager.onnx"
        _export(st, eager)
        config = st[0].auto_model.config
        out = Path(tmp) / fused.name
        _fuse(eager, out, int(config.num_attention_heads), int(config.hidden_size))
        if not plain.exists():
            os.replace(eager, plain)
        os.replace(out, fused)
    return want


def _fuse(src: Path, out: Path, heads: int, hidden: int) -> None:
    """Write ``src`` with onnxruntime's BERT fusions to ``out`` (the plain graph when they
    do not apply): one Attention op per layer instead of a dozen, and SkipLayerNorm,
    BiasGelu and EmbedLayerNorm. Same vectors (cosine 1.0000 on sympy chunks), 0.72x the
    CPU time and 0.55x the peak memory of the plain export on 256-token batches
    (docs/performance.md, *Embedding throughput and memory*)."""
    try:
        from onnxruntime.transformers import optimizer

        model = optimizer.optimize_model(
            str(src), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0
        )
        fused = model.get_fused_operator_statistics().get("Attention", 0)
        if not fused:
            raise ValueError("no attention subgraph was recognised")
        model.save_model_to_file(str(out))
        logger.info("fused %d attention layers into %s", fused, out)
    except Exception as e:  # an optional speed-up: the plain graph gives the same vectors
        logger.warning("cannot fuse %s (%s); running the plain export", src, e)
        shutil.copyfile(src, out)


def _export(st: Any, out: Path) -> None:
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    # Traced on a padded batch so the attention mask takes its general path.
    enc = st.tokenizer(["a", "a longer sentence here"], padding=True, return_tensors="pt")
    model = st[0].auto_model
    attention = model.config._attn_implementation
    # The eager attention's graph is the one onnxruntime's BERT fusion recognises (sdpa's
    # masked softmax is not); the vectors are the same.
    model.set_attn_implementation("eager")
    with (
        tempfile.TemporaryDirectory(dir=out.parent) as tmp,
        warnings.catch_warnings(),
        _restored(model, attention),
    ):
        # The tracer warns about Python branches it fixes; BERT's are fixed by design
        # (no causal mask, a padded batch); the tests compare the export with torch.
        warnings.simplefilter("ignore")
        path = Path(tmp) / out.name
        torch.onnx.export(
            Encoder(model).eval(),
            tuple(enc[k] for k in _INPUTS),
            str(path),
            input_names=list(_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes={k: {0: "batch", 1: "seq"} for k in [*_INPUTS, "last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )
        os.replace(path, out)
    logger.info("exported %s", out)


_SESSIONS: weakref.WeakValueDictionary[tuple[str, int], Any] = weakref.WeakValueDictionary()
_SESSIONS_LOCK = threading.Lock()


def _shared_session(path: Path, threads: int) -> Any:
    """One onnxruntime session per model file and thread count in the process, shared by
    every encoder that runs it: ``serve PATH`` embeds queries and indexes in one process,
    and a second session of the same weights costs ~90 MB of RSS. ``run`` is thread-safe;
    the session is dropped with its last encoder."""
    import onnxruntime as ort

    key = (str(Path(path).resolve()), threads)
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.enable_cpu_mem_arena = ARENA
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            _SESSIONS[key] = session
        return session


@contextlib.contextmanager
def _restored(model: Any, attention: str) -> Iterator[None]:
    try:
        yield
    finally:
        if attention:
            model.set_attn_implementation(attention)


class OnnxEncoder:
    """Sentence embeddings like ``SentenceTransformer.encode`` (mean pooling, unit rows).

    ``tokenizer`` is a ``tokenizers.Tokenizer`` set to truncate at the model's limit,
    without padding (:meth:`encode` pads each batch to its longest text)."""

    def __init__(self, tokenizer: Any, path: Path, limit: int, dim: int, threads: int = 0) -> None:
        self.path = path
        self.limit = limit
        self.dim = dim
        self._session = _shared_session(path, threads)
        self.tokenizer = tokenizer

    @classmethod
    def from_dir(cls, model_dir: Path, path: Path, threads: int = 0) -> OnnxEncoder | None:
        """The encoder of the sentence-transformers model at ``model_dir`` run from ``path``,
        read from its configuration files alone; None when it is not a Transformer, mean
        Pooling and Normalize model with a ``tokenizer.json`` (then load it with torch)."""
        try:
            modules = [m["type"].rsplit(".", 1)[-1] for m in _json(model_dir / "modules.json")]
            pooling = _json(model_dir / "1_Pooling" / "config.json")
            limit = int(_json(model_dir / "sentence_bert_config.json")["max_seq_length"])
            dim = int(pooling["word_embedding_dimension"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        modes = {k for k, v in pooling.items() if k.startswith("pooling_mode_") and v is True}
        if modules != ["Transformer", "Pooling", "Normalize"] or modes != {
            "pooling_mode_mean_tokens"
        }:
            return None
        if not (model_dir / "tokenizer.json").is_file():
            return None
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=limit)
        tokenizer.no_padding()  # batches are padded here, to their own longest text
        return cls(tokenizer, path, limit, dim, threads)

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Unit rows for ``texts``: longest first, in batches of at most ``batch_size``
        texts and :data:`BATCH_TOKENS` padded tokens."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        encoded = self.tokenizer.encode_batch([texts[i] for i in order])
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        indexing = len(texts) > batch_size  # a group of the build, not a query
        start = 0
        while start < len(order):
            # Longest first, so the first text of a batch sets its padded length.
            width = max(1, len(encoded[start].ids))
            stop = min(len(order), start + max(1, min(batch_size, BATCH_TOKENS // width)))
            out[order[start:stop]] = self._run(encoded[start:stop])
            start = stop
            if indexing:  # the batch's activations, before the heap holds the next one's too
                malloc.trim()
        return out

    def _run(self, encoded: Sequence[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in encoded)
        feeds = {name: np.zeros((len(encoded), width), dtype=np.int64) for name in _INPUTS}
        for row, e in enumerate(encoded):
            n = len(e.ids)
            feeds["input_ids"][row, :n] = e.ids
            feeds["attention_mask"][row, :n] = e.attention_mask
            feeds["token_type_ids"][row, :n] = e.type_ids
        (hidden,) = self._session.run(None, feeds)
        weights = feeds["attention_mask"][..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        unit: np.ndarray = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return unit

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens read for ``texts``, special tokens included, after truncation."""
        if not texts:
            return 0
        return sum(sum(e.attention_mask) for e in self.tokenizer.encode_batch(list(texts)))


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
