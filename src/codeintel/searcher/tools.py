"""The five tools, once, for both REST and MCP.

Each tool takes its validated request model, holds the live generation for the
whole call (so a hot swap never mixes commits in one answer), does its blocking
work on the shared executor or as an asyncio subprocess, and returns a plain
JSON object with ``results``, ``generation`` and ``commit``. :meth:`Tools.call`
wraps every tool with the request metrics; :func:`status_for` is the single
map from the error tree to HTTP statuses that REST and MCP both report.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from codeintel.core import embedding as embedding_mod
from codeintel.core import errors, globs, hits
from codeintel.core import settings as settings_mod
from codeintel.searcher import generations as generations_mod
from codeintel.searcher import metrics as metrics_mod
from codeintel.searcher import models, semantic, textsearch
from codeintel.searcher import paths as paths_mod

Req = TypeVar("Req")

_SUBMODULE_MODE = "160000"


def status_for(exc: BaseException) -> int:
    """HTTP status for an error (REST status and the ``status`` label of the metrics)."""
    if isinstance(exc, errors.PathNotFoundError):
        return 404
    if isinstance(exc, errors.QueryError):
        return 422
    if isinstance(exc, errors.IndexFormatError | errors.EmbeddingError):
        return 503
    return 500


def error_body(exc: BaseException) -> dict[str, Any]:
    """The JSON error object: a type, a one-line message and the field at fault."""
    field = getattr(exc, "field", None)
    if isinstance(exc, errors.PathNotFoundError):
        field = "path"
    message = str(exc) if isinstance(exc, errors.CodeIntelError) else "internal error"
    return {"error": {"type": type(exc).__name__, "message": message, "field": field}}


class Tools:
    """The five tools over the live generation of one store."""

    def __init__(
        self,
        settings: settings_mod.Settings,
        manager: generations_mod.GenerationManager,
        batcher: semantic.QueryBatcher,
        embedder: Callable[[], embedding_mod.Embedder],
        run_blocking: Callable[..., Awaitable[Any]],
        metrics: metrics_mod.Metrics,
    ) -> None:
        self.settings = settings
        self.manager = manager
        self.batcher = batcher
        self._embedder = embedder
        self._run = run_blocking
        self.metrics = metrics

    async def call(self, tool: str, handler: Callable[[Req], Awaitable[Any]], req: Req) -> Any:
        """Run one tool with latency, outcome and in-flight metrics."""
        m = self.metrics
        m.inflight_requests.inc()
        start = time.perf_counter()
        status = "500"
        try:
            result = await handler(req)
            status = "ok"
            return result
        except BaseException as e:
            status = str(status_for(e))
            raise
        finally:
            m.inflight_requests.dec()
            m.request_seconds.labels(tool=tool).observe(time.perf_counter() - start)
            m.requests_total.labels(tool=tool, status=status).inc()

    async def semantic_search(self, req: models.SemanticSearchRequest) -> models.Answer:
        filtered = bool(req.path_glob or req.language)
        with self.manager.use() as gen:
            dense: list[tuple[int, float]] = []
            lexical: list[tuple[int, float]] = []
            if req.mode in ("semantic", "hybrid"):
                embedder = self._embedder()
                want = int(gen.manifest.embedding.dim)
                if embedder.dim and want and embedder.dim != want:
                    embedding_mod.check_dimension(embedder.dim, want, embedder.model)
                fetch = hits.fetch_size(req.k, filtered)
                if req.mode == "hybrid":
                    fetch = max(fetch, min(hits.MAX_FETCH, 2 * req.k))
                scores, ids = await self.batcher.search(gen.engine, req.query, fetch)
                dense = hits.ranked_pairs(scores, ids)
            if req.mode in ("lexical", "hybrid"):
                lexical = await self._run(
                    gen.chunks.lexical,
                    req.query,
                    hits.fetch_size(req.k, False) * (2 if req.mode == "hybrid" else 1),
                    path_glob=req.path_glob,
                    language=req.language,
                )
            if req.mode == "semantic":
                ranked = dense
            elif req.mode == "lexical":
                ranked = lexical
            else:
                ranked = semantic.rrf(dense, lexical)
            found = await self._run(
                hits.hydrate,
                gen.chunks,
                ranked,
                req.k,
                path_glob=req.path_glob,
                language=req.language,
            )
            return {
                "results": [msgspec.to_builtins(hit) for hit in found],
                "mode": req.mode,
                "generation": gen.name,
                "commit": gen.commit,
            }

    async def search_text(self, req: models.SearchTextRequest) -> models.Answer:
        with self.manager.use() as gen:
            matches, truncated = await textsearch.search(
                gen.worktree,
                req.pattern,
                regex=req.regex,
                case_sensitive=req.case_sensitive,
                path_glob=req.path_glob,
                max_results=req.max_results,
                timeout=self.settings.server.search_text_timeout_seconds,
            )
            return {
                "results": [
                    {"path": m.path, "line": m.line, "column": m.column, "text": m.text}
                    for m in matches
                ],
                "truncated": truncated,
                "generation": gen.name,
                "commit": gen.commit,
            }

    async def list_paths(self, req: models.ListPathsRequest) -> models.Answer:
        with self.manager.use() as gen:
            prefix = req.path or ""
            paths_mod.confine(gen.worktree, prefix)
            rows, total = await self._run(
                _list,
                gen,
                prefix,
                req.include_globs or [],
                req.exclude_globs or [],
                req.max_results,
            )
            if prefix and total == 0 and not _exists(gen, prefix):
                raise errors.PathNotFoundError(prefix, gen.commit)
            return {
                "results": rows,
                "total": total,
                "truncated": total > len(rows),
                "generation": gen.name,
                "commit": gen.commit,
            }

    async def blame_range(self, req: models.BlameRangeRequest) -> models.Answer:
        req.check()
        with self.manager.use() as gen:
            _require_file(gen, req.path)
            entries = await gen.git.blame(gen.commit, req.path, req.start_line, req.end_line)
            return {
                "results": [
                    {
                        "line": e.line,
                        "sha": e.sha,
                        "short_sha": e.short_sha,
                        "author": e.author,
                        "email": e.email,
                        "date": e.date,
                        "summary": e.summary,
                        "text": e.text,
                    }
                    for e in entries
                ],
                "path": req.path,
                "generation": gen.name,
                "commit": gen.commit,
            }

    async def file_history(self, req: models.FileHistoryRequest) -> models.Answer:
        with self.manager.use() as gen:
            paths_mod.confine(gen.worktree, req.path)
            if not _exists(gen, req.path):
                raise errors.PathNotFoundError(req.path, gen.commit)
            # A file's history follows renames (git log --follow); a directory's cannot.
            follow = _entry_index(gen, req.path) is not None
            entries = await gen.git.history(gen.commit, req.path, req.limit, follow=follow)
            return {
                "results": [
                    {
                        "sha": e.sha,
                        "short_sha": e.short_sha,
                        "author": e.author,
                        "email": e.email,
                        "date": e.date,
                        "summary": e.summary,
                    }
                    for e in entries
                ],
                "path": req.path,
                "generation": gen.name,
                "commit": gen.commit,
            }


def _entry_index(gen: generations_mod.LoadedGeneration, path: str) -> int | None:
    i = bisect.bisect_left(gen.tree_paths, path)
    return i if i < len(gen.tree_paths) and gen.tree_paths[i] == path else None


def _exists(gen: generations_mod.LoadedGeneration, path: str) -> bool:
    """A file of the tree, or a directory holding one."""
    if _entry_index(gen, path) is not None:
        return True
    i = bisect.bisect_left(gen.tree_paths, path + "/")
    return i < len(gen.tree_paths) and gen.tree_paths[i].startswith(path + "/")


def _require_file(gen: generations_mod.LoadedGeneration, path: str) -> None:
    """Refuse what cannot be blamed: outside the repo, missing, a directory, a submodule."""
    paths_mod.confine(gen.worktree, path)
    i = _entry_index(gen, path)
    if i is None:
        if _exists(gen, path):
            raise errors.QueryError(f"{path!r} is a directory, not a file", field="path")
        raise errors.PathNotFoundError(path, gen.commit)
    if gen.tree[i].mode == _SUBMODULE_MODE:
        raise errors.QueryError(f"{path!r} is a submodule, not a file", field="path")


def _list(
    gen: generations_mod.LoadedGeneration,
    prefix: str,
    include: list[str],
    exclude: list[str],
    limit: int,
) -> tuple[list[dict[str, Any]], int]:
    """Entries under ``prefix`` that pass the globs: the first ``limit`` rows and the total."""
    if prefix:
        exact = _entry_index(gen, prefix)
        lo = bisect.bisect_left(gen.tree_paths, prefix + "/")
        hi = bisect.bisect_left(gen.tree_paths, prefix + "0")  # "0" sorts right after "/"
        indices = ([exact] if exact is not None else []) + list(range(lo, hi))
    else:
        indices = list(range(len(gen.tree_paths)))
    rows: list[dict[str, Any]] = []
    total = 0
    for i in indices:
        entry = gen.tree[i]
        if include and not any(globs.matches(entry.path, g) for g in include):
            continue
        if exclude and any(globs.matches(entry.path, g) for g in exclude):
            continue
        total += 1
        if len(rows) < limit:
            rows.append({"path": entry.path, "size": entry.size, "mode": entry.mode})
    return rows, total
