"""The searcher: the catalogue's tools over one index store (or many), as REST and MCP, with hot swap.

Public surface for the CLI and tests:

* :func:`create_app` — the FastAPI app (REST ``/v1/<tool>``, MCP at ``/mcp``,
  probes, metrics) over ``settings.store.path``.
* :func:`serve` — ``codeintel serve``: print the URLs and an MCP client
  config, then run uvicorn (blocking).
* :func:`run_stdio` — ``codeintel mcp``: the same tools over MCP stdio.
* :class:`EarlyIndex` — what ``serve PATH`` / ``mcp PATH`` index beside the searcher
  has produced so far, answered from before the first generation is published.
"""

from __future__ import annotations

from codeintel.searcher.app import create_app
from codeintel.searcher.early import EarlyIndex
from codeintel.searcher.serving import run_stdio, serve

__all__ = ["EarlyIndex", "create_app", "run_stdio", "serve"]
