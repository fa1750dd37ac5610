"""The indexer: turns a repository at a commit into a published store generation.

Public surface for the CLI, the benchmarks and operators sizing a volume:

* :func:`build`, :func:`update`, :func:`merge` — the three ways a generation is made
  (``codeintel index build|update|merge``), each returning an :class:`IndexResult`.
* :func:`ensure_index` — ``codeintel serve PATH``'s first step: build or update as needed;
  :func:`keep_indexed` — the same, then following the ref, beside a searcher.
* :func:`make_reporter` — progress of a run: bars on a terminal, lines in a log.
* :func:`repo_url` — the URL a store records for a repository path or URL.
* :func:`estimate_memory_usage` — bytes an index of ``n`` vectors will take, per index type.

It is the only component that writes FAISS files.
"""

from __future__ import annotations

from codeintel.core.indexresult import IndexResult
from codeintel.indexer.ann import estimate_memory_usage
from codeintel.indexer.pipeline import build, merge, repo_url, update
from codeintel.indexer.progress import make_reporter
from codeintel.indexer.serving import ensure_index, keep_indexed

__all__ = [
    "IndexResult",
    "build",
    "ensure_index",
    "estimate_memory_usage",
    "keep_indexed",
    "make_reporter",
    "merge",
    "repo_url",
    "update",
]
