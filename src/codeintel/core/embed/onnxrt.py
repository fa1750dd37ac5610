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
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from codeintel.core import errors

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "onnx-int8")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


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
    target = cache_dir(cache) / _weights_key(model_dir)
    fp32, int8 = target / "model.onnx", target / "model-int8-per-channel.onnx"
    want = int8 if backend == "onnx-int8" else fp32
    if want.exists():
        return want
    target.mkdir(parents=True, exist_ok=True)
    if not fp32.exists():
        _export(st, fp32)
    if backend == "onnx-int8" and not int8.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with tempfile.TemporaryDirectory(dir=target) as tmp:
            out = Path(tmp) / int8.name
            quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True)
            os.replace(out, int8)
    return want


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
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp, warnings.catch_warnings():
        # The tracer warns about Python branches it fixes; BERT's are fixed by design
        # (no causal mask, a padded batch); the tests compare the export with torch.
        warnings.simplefilter("ignore")
        path = Path(tmp) / out.name
        torch.onnx.export(
            Encoder(st[0].auto_model).eval(),
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


class OnnxEncoder:
    """Sentence embeddings like ``SentenceTransformer.encode`` (mean pooling, unit rows)."""

    def __init__(self, st: Any, path: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.path = path
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._tokenizer = st.tokenizer
        self._limit = int(st.max_seq_length)

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out: np.ndarray | None = None
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            enc = self._tokenizer(
                [texts[i] for i in rows],
                padding=True,
                truncation=True,
                max_length=self._limit,
                return_tensors="np",
            )
            feeds = {k: np.asarray(enc[k], dtype=np.int64) for k in _INPUTS}
            (hidden,) = self._session.run(None, feeds)
            mask = feeds["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            if out is None:
                out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
            out[rows] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        assert out is not None  # callers pass at least one text
        return out
