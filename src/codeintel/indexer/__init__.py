"""The indexer: turns a repository at a commit into a published store generation.

Public surface for the CLI, the benchmarks and operators sizing a volume:

* :func:`build`, :func:`update`, :func:`merge` — the three ways a generation is made
  (``codeintel index build|update|merge``), each returning an :class:`IndexResult`.
* :func:`ensure_index` — ``codeintel serve PATH``'s first step: build or update as needed.
* :func:`estimate_memory_usage` — bytes an index of ``n`` vectors will take, per index type.

It is the only component that writes FAISS files.
"""

from __future__ import annotations

from codeintel.core.indexresult import IndexResult
from codeintel.indexer.ann import estimate_memory_usage
from codeintel.indexer.pipeline import build, merge, update
from codeintel.indexer.serving import ensure_index

__all__ = ["IndexResult", "build", "ensure_index", "estimate_memory_usage", "merge", "update"]
