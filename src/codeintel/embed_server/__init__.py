"""``codeintel embed-server``: one shared embedder for a small cluster, in vLLM's wire format.

A component beside the indexer and the searcher (it imports only core): indexer
Jobs and searcher pods reach it over HTTP exactly as they would reach vLLM.
"""

from __future__ import annotations

from codeintel.embed_server.app import MAX_INPUTS, create_app, run

__all__ = ["MAX_INPUTS", "create_app", "run"]
