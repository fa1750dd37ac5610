"""The five tools, once, for both REST and MCP.

Each tool takes its validated request model, holds the live generation for the
whole call (so a hot swap never mixes commits in one answer), does its blocking
work on the shared executor or as an asyncio subprocess, and returns a plain
JSON object with ``results``, ``generation`` and ``commit``. :func:`metered`
wraps every tool with the request metrics (here, in the fleet and in the router).

Source text in answers is bounded (docs/architecture.md, Searcher, guard rails):
one line of a minified file is megabytes, and an agent's context is not. Each
line is cut at ``models.MAX_LINE_CHARS`` and each semantic or blame answer
carries at most ``models.MAX_ANSWER_TEXT_CHARS`` of snippets or blame text; a
cut row says ``truncated: true``, and so does the answer.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import msgspec

from codeintel.core import embed as embedding_mod
from codeintel.core import errors, globs, hits
from codeintel.core import settings as settings_mod
from codeintel.searcher import errors as errors_mod
from codeintel.searcher import generations as generations_mod
from codeintel.searcher import metrics as metrics_mod
from codeintel.searcher import models, semantic, textsearch
from codeintel.searcher import paths as paths_mod

Req = TypeVar("Req")

_SUBMODULE_MODE = "160000"


async def metered(
    metrics: metrics_mod.Metrics, tool: str, handler: Callable[[Req], Awaitable[Any]], req: Req
) -> Any:
    """Run one tool with latency, outcome and in-flight metrics.

    The outcome is ``ok`` or the HTTP status of the error; a request cancelled by its
    client (disconnect, shutdown) is ``cancelled``, not a server error."""
    metrics.inflight_requests.inc()
    start = time.perf_counter()
    status = "500"
    try:
        result = await handler(req)
        status = "ok"
        return result
    except asyncio.CancelledError:
        status = "cancelled"
        raise
    except Exception as e:
        status = str(errors_mod.status_for(e))
        raise
    finally:
        metrics.inflight_requests.dec()
        metrics.request_seconds.labels(tool=tool).observe(time.perf_counter() - start)
        metrics.requests_total.labels(tool=tool, status=status).inc()


def repo_name(url: str) -> str:
    """A repository's display name from its URL or path: the last two path segments."""
    tail = url.rstrip("/").removesuffix(".git").replace(":", "/").split("/")
    parts = [p for p in tail if p]
    return "/".join(parts[-2:]) if parts else "repo"


def select(names: Iterable[str], patterns: Sequence[str] | None, field: str = "repos") -> list[str]:
    """The served ``names`` that ``patterns`` (names or globs) select, sorted; all when None.

    RepoNotFoundError when a pattern selects nothing, so a typo is not an empty answer."""
    served = sorted(names)
    if not patterns:
        return served
    chosen: set[str] = set()
    for pattern in patterns:
        hit = [n for n in served if n == pattern or globs.matches(n, pattern)]
        if not hit:
            raise errors.RepoNotFoundError(
                f"no served repository matches {pattern!r} (list_repos shows them)", field=field
            )
        chosen.update(hit)
    return sorted(chosen)


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

    async def call(self, name: str, request: Any) -> dict[str, Any]:
        """Run the tool ``name`` (a catalogue row) on a validated request, with metrics."""
        result: dict[str, Any] = await metered(self.metrics, name, getattr(self, name), request)
        return result

    @property
    def repo(self) -> str:
        """This store's name in ``repos``, ``repo`` and list_repos."""
        configured = self.settings.server.repo_name
        if configured:
            return configured
        live = self.manager.live
        return repo_name(str(live.manifest.repo_url)) if live is not None else "repo"

    def _check_repos(self, req: Any) -> None:
        """A single-store searcher answers for its one repository; any other is a 404."""
        patterns = getattr(req, "repos", None)
        if patterns:
            select([self.repo], patterns)
        one = getattr(req, "repo", None)
        if one is not None and one != self.repo:
            raise errors.RepoNotFoundError(
                f"this searcher serves only {self.repo!r}, not {one!r}", field="repo"
            )

    async def list_repos(self, req: models.ListReposRequest) -> dict[str, Any]:
        self._check_repos(req)
        with self.manager.use() as gen:
            return {"results": [repo_info(self.repo, gen.manifest)]}

    async def semantic_search(self, req: models.SemanticSearchRequest) -> models.Answer:
        self._check_repos(req)
        with self.manager.use() as gen:
            dense: list[tuple[int, float]] = []
            dense_fetch, _ = hits.plan(req.k, req.mode, bool(req.path_glob or req.language))
            if dense_fetch:
                self.manager.check_dense(gen)
                self.manager.check_embedder(gen, self._embedder())
                scores, ids = await self.batcher.search(gen.engine, req.query, dense_fetch)
                dense = hits.ranked_pairs(scores, ids)
            found = await self._run(
                hits.rank,
                gen.chunks,
                req.query,
                req.mode,
                req.k,
                dense,
                path_glob=req.path_glob,
                language=req.language,
            )
            budget = TextBudget()
            results = []
            for hit in found:
                row = msgspec.to_builtins(hit)
                row["snippet"], cut = budget.take(row["snippet"])
                if cut:
                    row["truncated"] = True
                results.append(row)
            answer: models.Answer = {
                "results": results,
                "mode": req.mode,
                "truncated": budget.cut,
                "generation": gen.name,
                "commit": gen.commit,
            }
            coverage = getattr(gen.manifest, "dense_coverage", None)
            if dense_fetch and coverage is not None:
                answer["notice"] = partial_dense_notice(coverage.chunks, coverage.total)
            return answer

    async def search_text(self, req: models.SearchTextRequest) -> models.Answer:
        self._check_repos(req)
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
            # Lines are cut (in textsearch); the row count is the caller's max_results.
            results = []
            for m in matches:
                row: dict[str, Any] = {
                    "path": m.path,
                    "line": m.line,
                    "column": m.column,
                    "text": m.text,
                }
                if len(m.text) < m.length:
                    row["truncated"] = True
                    truncated = True
                results.append(row)
            return {
                "results": results,
                "truncated": truncated,
                "generation": gen.name,
                "commit": gen.commit,
            }

    async def list_paths(self, req: models.ListPathsRequest) -> models.Answer:
        self._check_repos(req)
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
        self._check_repos(req)
        with self.manager.use() as gen:
            _require_file(gen, req.path)
            entries = await gen.git.blame(gen.commit, req.path, req.start_line, req.end_line)
            budget = TextBudget()
            results = []
            for e in entries:
                row: dict[str, Any] = msgspec.to_builtins(e)
                row["text"], cut = budget.take(e.text)
                row["summary"], cut_summary = budget.take(e.summary, count=False)
                if cut or cut_summary:
                    row["truncated"] = True
                results.append(row)
            return {
                "results": results,
                "path": req.path,
                "truncated": budget.cut,
                "generation": gen.name,
                "commit": gen.commit,
            }

    async def file_history(self, req: models.FileHistoryRequest) -> models.Answer:
        self._check_repos(req)
        with self.manager.use() as gen:
            paths_mod.confine(gen.worktree, req.path)
            if not _exists(gen, req.path):
                raise errors.PathNotFoundError(req.path, gen.commit)
            # A file's history follows renames (git log --follow); a directory's cannot.
            follow = _entry_index(gen, req.path) is not None
            entries = await gen.git.history(gen.commit, req.path, req.limit, follow=follow)
            return {
                "results": msgspec.to_builtins(entries),
                "path": req.path,
                "generation": gen.name,
                "commit": gen.commit,
            }


class TextBudget:
    """Cuts source text for one answer: each line, then the answer's total."""

    def __init__(
        self,
        total: int = models.MAX_ANSWER_TEXT_CHARS,
        line: int = models.MAX_LINE_CHARS,
    ) -> None:
        self.left = total
        self.line = line
        self.cut = False
        """Whether anything of this answer was cut."""

    def take(self, text: str, *, count: bool = True) -> tuple[str, bool]:
        """``text`` with each line cut to ``line`` characters and, if ``count``, within what is left."""
        cut = False
        if len(text) > self.line:
            lines = text.split("\n")
            if any(len(x) > self.line for x in lines):
                text = "\n".join(x[: self.line] for x in lines)
                cut = True
        if count:
            if len(text) > self.left:
                text = text[: self.left]
                cut = True
            self.left -= len(text)
        self.cut = self.cut or cut
        return text, cut


def partial_dense_notice(chunks: int, total: int) -> str:
    """What a semantic or hybrid answer says while its generation is a progressive first pass."""
    return (
        f"partial dense coverage: vectors for {chunks:,} of {total:,} chunks so far (source "
        "before tests and docs); the other chunks are found by their words only until the "
        "full index replaces this generation"
    )


def repo_info(name: str, manifest: Any) -> dict[str, Any]:
    """One list_repos row for a repository's served manifest."""
    c = manifest.counts
    return {
        "name": name,
        "url": str(manifest.repo_url),
        "ref": str(manifest.ref),
        "commit": str(manifest.commit),
        "generation": str(manifest.generation),
        "vectors": {"primary": c.primary, "secondary": c.secondary, "tombstones": c.tombstones},
        "index_type": str(manifest.index.type),
        "updated_at": str(manifest.created_at),
        "embedding_model": str(manifest.embedding.model),
        "embedding_dim": int(manifest.embedding.dim),
        "calibration": msgspec.to_builtins(manifest.index.calibration),
        "error": None,
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
