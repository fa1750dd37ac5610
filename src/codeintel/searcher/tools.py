"""The catalogue's tools over one store, once, for both REST and MCP.

Each tool takes its validated request model, holds the live generation for the
whole call (so a hot swap never mixes commits in one answer), does its blocking
work on the shared executor or as an asyncio subprocess, and returns a plain
JSON object with ``results``, ``generation`` and ``commit``.
:class:`~dispatch.Dispatcher` runs each under the request metrics.

Source text in answers is bounded (docs/architecture.md, Searcher, guard rails):
one line of a minified file is megabytes, and an agent's context is not. Each
line is cut at ``models.MAX_LINE_CHARS`` and each semantic or blame answer
carries at most ``models.MAX_ANSWER_TEXT_CHARS`` of snippets or blame text; a
cut row says ``truncated: true``, and so does the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import msgspec

from codeintel.core import embed as embedding_mod
from codeintel.core import errors, globs, hits
from codeintel.core import settings as settings_mod
from codeintel.searcher import (
    access,
    blame,
    cursors,
    dispatch,
    models,
    navigation,
    semantic,
    symbol_answers,
    textsearch,
    tree,
)
from codeintel.searcher import budget as budget_mod
from codeintel.searcher import generations as generations_mod
from codeintel.searcher import metrics as metrics_mod
from codeintel.searcher import paths as paths_mod
from codeintel.searcher import rows as rows_mod


def repo_name(url: str) -> str:
    """A repository's display name from its URL or path: the last two path segments."""
    tail = url.rstrip("/").removesuffix(".git").replace(":", "/").split("/")
    parts = [p for p in tail if p]
    return "/".join(parts[-2:]) if parts else "repo"


def select(
    names: Iterable[str],
    patterns: Sequence[str] | None,
    field: str = "repos",
    *,
    audit: bool = False,
) -> list[str]:
    """The served ``names`` that ``patterns`` (names or globs) select and the caller's scope
    allows, sorted; all allowed when None. Every tool resolves repositories here, so this
    is where scopes hold (:mod:`access`): what the scope hides is not served, as far as
    this caller can tell, down to the error text.

    RepoNotFoundError when a pattern selects nothing, so a typo is not an empty answer.
    ``audit`` reports a pattern that only hidden repositories match (where ``names`` is
    the authority: a searcher, not the router's catalogue)."""
    every = list(names)
    served = sorted(access.current().filter(every))
    if not patterns:
        return served
    chosen: set[str] = set()
    for pattern in patterns:
        hit = [n for n in served if n == pattern or globs.matches(n, pattern)]
        if not hit:
            if audit and len(served) != len(every):
                access.denied(pattern, every)
            raise errors.RepoNotFoundError(
                f"no served repository matches {pattern!r} (list_repos shows them)", field=field
            )
        chosen.update(hit)
    return sorted(chosen)


class Tools(dispatch.Dispatcher):
    """The catalogue over the live generation of one store."""

    def __init__(
        self,
        settings: settings_mod.Settings,
        manager: generations_mod.GenerationManager,
        batcher: semantic.QueryBatcher,
        embedder: Callable[[], embedding_mod.Embedder],
        run_blocking: Callable[..., Awaitable[Any]],
        metrics: metrics_mod.Metrics,
    ) -> None:
        super().__init__(metrics)
        self.settings = settings
        self.manager = manager
        self.batcher = batcher
        self._embedder = embedder
        self._run = run_blocking
        self.metrics = metrics

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

    def _resume(self, tool: str, req: Any) -> tuple[cursors.Position | None, int]:
        """A paged tool's start: ``req``'s repositories checked, and the position and row
        offset its cursor resumes from (None and 0 on a first page)."""
        self._check_repos(req)
        pos = cursors.decode(tool, req)
        return pos, pos.offset() if pos else 0

    async def list_repos(self, req: models.ListReposRequest) -> dict[str, Any]:
        self._check_repos(req)
        with self.manager.use() as gen:
            return {"results": [repo_info(self.repo, gen.manifest)]}

    @contextlib.asynccontextmanager
    async def _generation(
        self, pos: cursors.Position | None
    ) -> AsyncIterator[generations_mod.LoadedGeneration]:
        """The generation a call reads: the cursor's, else the live one (waiting, within a
        bound, for the first tree of ``serve PATH``)."""
        await self.manager.wait_usable()
        with self.manager.use(pos.generations.get("") if pos else None) as gen:
            yield gen

    async def _while_embedding(
        self,
        gen: generations_mod.LoadedGeneration,
        req: models.SemanticSearchRequest,
        mode: hits.Mode,
        want: int,
        dense_fetch: int,
    ) -> tuple[list[tuple[int, float]], hits.Tiers | None]:
        """The dense neighbours, and in hybrid mode the BM25 tiers ranked on the executor
        while the query is embedded (both release the GIL: onnxruntime and sqlite), so a
        hybrid answer waits for the slower of the two, not their sum."""
        if mode != "hybrid":
            scores, ids = await self.batcher.search(gen.engine, req.query, dense_fetch)
            return hits.ranked_pairs(scores, ids), None
        bm25 = asyncio.ensure_future(
            self._run(
                hits.bm25_tiers,
                gen.chunks,
                req.query,
                mode,
                want,
                path_glob=req.path_glob,
                language=req.language,
            )
        )
        try:
            scores, ids = await self.batcher.search(gen.engine, req.query, dense_fetch)
        except BaseException:
            bm25.cancel()
            with contextlib.suppress(BaseException):
                await bm25
            raise
        try:
            tiers = await bm25
        except errors.IndexingError:
            tiers = None  # rank asks again and the caller answers as before
        return hits.ranked_pairs(scores, ids), tiers

    async def semantic_search(self, req: models.SemanticSearchRequest) -> models.Answer:
        pos, offset = self._resume("semantic_search", req)
        want = min(offset + req.k, MAX_RANKED)
        async with self._generation(pos) as gen:
            mode, notice = req.mode, None
            dense: list[tuple[int, float]] = []
            lexical: hits.Tiers | None = None
            dense_fetch, _ = hits.plan(want, req.mode, bool(req.path_glob or req.language))
            if dense_fetch:
                try:
                    self.manager.check_dense(gen)
                except errors.IndexingError as e:
                    if req.mode != "hybrid":
                        raise
                    # The default mode answers from BM25 while the vectors are built.
                    mode, notice = "lexical", _lexical_notice(e)
                else:
                    self.manager.check_embedder(gen, self._embedder())
                    tiers = await self._while_embedding(gen, req, mode, want, dense_fetch)
                    dense, lexical = tiers
            try:
                found = await self._run(
                    hits.rank,
                    gen.chunks,
                    req.query,
                    mode,
                    want,
                    dense,
                    path_glob=req.path_glob,
                    language=req.language,
                    tiers=lexical,
                )
            except errors.IndexingError as e:
                if req.mode != "hybrid":
                    raise
                found, mode = [], "lexical"
                notice = _lexical_notice(e) + "; no chunks are written yet: use search_text"
            budget = budget_mod.TextBudget()
            results = []
            for hit in found[offset:want]:
                row = msgspec.to_builtins(hit)
                row["snippet"], cut = budget.take(row["snippet"])
                if cut:
                    row["truncated"] = True
                results.append(_project(row, req.fields, rows_mod.SEMANTIC_OPTIONAL))
            has_more = len(found) >= want and want < MAX_RANKED
            answer: dict[str, Any] = {
                "results": results,
                "mode": mode,
                "truncated": budget.cut,
                "total": offset + len(results),
                "total_exact": not has_more,
                **_page("semantic_search", req, gen, offset + len(results), has_more),
                "generation": gen.name,
                "commit": gen.commit,
            }
            coverage = getattr(gen.manifest, "dense_coverage", None)
            if mode != "lexical" and coverage is not None:
                notice = partial_dense_notice(coverage.chunks, coverage.total)
            if notice:
                answer["notice"] = notice
            return budget_mod.fit(
                answer,
                req.max_tokens,
                SHAPES["semantic_search"],
                page_cursor=_cursor("semantic_search", req, gen, offset),
            )

    async def search_text(self, req: models.SearchTextRequest) -> models.Answer:
        pos, offset = self._resume("search_text", req)
        async with self._generation(pos) as gen:
            found = await textsearch.search(
                gen.worktree,
                req.pattern,
                regex=req.regex,
                case_sensitive=req.case_sensitive,
                path_glob=req.path_glob,
                max_results=req.max_results,
                offset=offset,
                timeout=self.settings.server.search_text_timeout_seconds,
            )
            # Lines are cut (in textsearch); the row count is the caller's max_results.
            truncated = not found.exact
            results = []
            for m in found.matches:
                row: dict[str, Any] = {
                    "path": m.path,
                    "line": m.line,
                    "column": m.column,
                    "text": m.text,
                }
                if len(m.text) < m.length:
                    row["truncated"] = True
                    truncated = True
                results.append(_project(row, req.fields, rows_mod.TEXT_OPTIONAL))
            end = offset + len(results)
            has_more = found.total > end
            answer: dict[str, Any] = {
                "results": results,
                "truncated": truncated or has_more,
                "total": found.total,
                "total_exact": found.exact,
                **_page("search_text", req, gen, end, has_more),
                "generation": gen.name,
                "commit": gen.commit,
            }
            return budget_mod.fit(
                answer,
                req.max_tokens,
                SHAPES["search_text"],
                page_cursor=_cursor("search_text", req, gen, offset),
                counts=found.per_file,
            )

    async def list_paths(self, req: models.ListPathsRequest) -> models.Answer:
        pos, offset = self._resume("list_paths", req)
        async with self._generation(pos) as gen:
            prefix = req.path or ""
            paths_mod.confine(gen.worktree, prefix)
            rows, total = await self._run(
                tree.listing,
                gen,
                prefix,
                req.include_globs or [],
                req.exclude_globs or [],
                req.max_results,
                offset,
            )
            if prefix and total == 0 and not tree.exists(gen, prefix):
                raise errors.PathNotFoundError(prefix, gen.commit)
            end = offset + len(rows)
            answer: dict[str, Any] = {
                "results": [_project(r, req.fields, rows_mod.PATH_OPTIONAL) for r in rows],
                "total": total,
                "total_exact": True,
                "truncated": total > end,
                **_page("list_paths", req, gen, end, total > end),
                "generation": gen.name,
                "commit": gen.commit,
            }
            shape = dataclasses.replace(SHAPES["list_paths"], group=_directory_of(prefix))
            return _fit_cut_page("list_paths", answer, req, gen, offset, shape)

    async def blame_range(self, req: models.BlameRangeRequest) -> models.Answer:
        req.check()
        pos, offset = self._resume("blame_range", req)
        async with self._generation(pos) as gen:
            tree.require_file(gen, req.path)
            entries = await gen.git.blame(gen.commit, req.path, req.start_line, req.end_line)
            ranges, commits, truncated = blame.group(entries)
            page = ranges[offset : offset + req.max_results]
            end = offset + len(page)
            used = {r["sha"] for r in page}
            answer: dict[str, Any] = {
                "results": [_project(r, req.fields, rows_mod.BLAME_OPTIONAL) for r in page],
                "commits": {
                    k: _project(c, req.fields, rows_mod.BLAME_OPTIONAL)
                    for k, c in commits.items()
                    if k in used
                },
                "path": req.path,
                # The page's first line (blame.pack restates it from the ranges it keeps).
                "start_line": ranges[offset]["start_line"] if page else req.start_line,
                "end_line": None,
                "truncated": truncated,
                "total": len(ranges),
                "total_exact": True,
                **_page("blame_range", req, gen, end, len(ranges) > end),
                "generation": gen.name,
                "commit": gen.commit,
            }
            return _fit_cut_page("blame_range", answer, req, gen, offset)

    async def file_history(self, req: models.FileHistoryRequest) -> models.Answer:
        pos, offset = self._resume("file_history", req)
        async with self._generation(pos) as gen:
            paths_mod.confine(gen.worktree, req.path)
            if not tree.exists(gen, req.path):
                raise errors.PathNotFoundError(req.path, gen.commit)
            # A file's history follows renames (git log --follow); a directory's cannot.
            follow = tree.entry_index(gen, req.path) is not None
            entries = await gen.git.history(
                gen.commit, req.path, offset + req.limit + 1, follow=follow
            )
            rows = msgspec.to_builtins(entries[offset : offset + req.limit])
            end = offset + len(rows)
            has_more = len(entries) > end
            answer: dict[str, Any] = {
                "results": [_project(r, req.fields, rows_mod.HISTORY_OPTIONAL) for r in rows],
                "path": req.path,
                "total": len(entries),
                "total_exact": not has_more,
                **_page("file_history", req, gen, end, has_more),
                "generation": gen.name,
                "commit": gen.commit,
            }
            return _fit_cut_page("file_history", answer, req, gen, offset)

    # -- navigation (searcher/navigation.py holds the logic) ----------------------------------

    async def read_file(self, req: models.ReadFileRequest) -> models.Answer:
        self._check_repos(req)
        with self.manager.use() as gen:
            answer: models.Answer = await self._run(navigation.read_file, gen, req)
            return answer

    async def find_symbol(self, req: models.FindSymbolRequest) -> models.Answer:
        req.check()
        self._check_repos(req)
        async with self._generation(None) as gen:
            answer: models.Answer = await self._run(symbol_answers.find_symbol, gen, req, self.repo)
            return answer

    async def file_outline(self, req: models.FileOutlineRequest) -> models.Answer:
        self._check_repos(req)
        async with self._generation(None) as gen:
            answer: models.Answer = await self._run(
                symbol_answers.file_outline, gen, req, self.repo
            )
            return answer

    async def find_references(self, req: models.FindReferencesRequest) -> models.Answer:
        req.check()
        pos, offset = self._resume("find_references", req)
        async with self._generation(pos) as gen:
            answer: models.Answer = await self._run(
                symbol_answers.find_references, gen, req, self.repo, offset
            )
            following = answer.pop("next_offset")
            if following is not None:
                answer["cursor"] = _cursor("find_references", req, gen, following)
            this_page = _cursor("find_references", req, gen, offset)
            return symbol_answers.fit_references(answer, req.max_tokens, this_page)


MAX_RANKED = 1_000
"""semantic_search ranks at most this deep across pages (``k`` per page, at most 100)."""

SHAPES: dict[str, budget_mod.Shape] = {
    "semantic_search": budget_mod.Shape(
        text_fields=("snippet",), group=lambda r: (r["path"], 1), group_name="hits per file"
    ),
    "search_text": budget_mod.Shape(text_fields=("text",), group_name="matches per file"),
    "list_paths": budget_mod.Shape(group_name="paths per directory"),
    "blame_range": budget_mod.Shape(
        text_fields=("text",),
        group=lambda r: (r["sha"], r["end_line"] - r["start_line"] + 1),
        group_name="lines per commit (see commits)",
        pack=blame.pack,
        text_bytes_per_token=budget_mod.TEXT_BYTES_PER_TOKEN,
    ),
    "file_history": budget_mod.Shape(text_fields=("summary",)),
}
"""How each tool's answer degrades over its budget (``budget.fit``)."""


CUT_PAGES = frozenset({"list_paths", "blame_range", "file_history"})
"""Tools whose answers over the budget become a shorter page (the rest behind the
cursor) rather than counts: their rows are locations already, nothing to summarise.
semantic_search and search_text go on to counts per file, then a count."""


def merged_shape(tool: str) -> budget_mod.Shape:
    """How a merged answer of several repositories degrades: counts per ``repo:path``."""

    def per_file(row: dict[str, Any]) -> tuple[str, int]:
        return f"{row.get('repo')}:{row['path']}", 1

    return dataclasses.replace(SHAPES[tool], group=per_file)


def _project(
    row: dict[str, Any], fields: Sequence[str] | None, optional: Sequence[str]
) -> dict[str, Any]:
    """``row`` without the optional fields the caller left out of ``fields``."""
    if fields is None:
        return row
    for name in optional:
        if name not in fields:
            row.pop(name, None)
    return row


def _cursor(tool: str, req: Any, gen: generations_mod.LoadedGeneration, offset: int) -> str:
    return cursors.encode(tool, req, {"": gen.name}, {"": offset})


def _page(
    tool: str, req: Any, gen: generations_mod.LoadedGeneration, end: int, has_more: bool
) -> dict[str, Any]:
    """``has_more`` and the ``cursor`` of the next page (row ``end``)."""
    return {"has_more": has_more, "cursor": _cursor(tool, req, gen, end) if has_more else None}


def _fit_cut_page(
    tool: str,
    answer: dict[str, Any],
    req: Any,
    gen: generations_mod.LoadedGeneration,
    offset: int,
    shape: budget_mod.Shape | None = None,
) -> models.Answer:
    """``answer`` (a page from row ``offset``) fitted to the budget by cutting it to fewer
    rows, the rest behind its cursor (``CUT_PAGES``)."""

    def repage(cut: dict[str, Any]) -> None:
        end = offset + len(cut["results"])
        cut.update(_page(tool, req, gen, end, True))
        if "truncated" in cut and tool != "blame_range":
            cut["truncated"] = True

    fitted: models.Answer = budget_mod.fit(
        answer,
        req.max_tokens,
        shape or SHAPES[tool],
        page_cursor=_cursor(tool, req, gen, offset),
        repage=repage,
    )
    return fitted


def _lexical_notice(e: errors.IndexingError) -> str:
    p = e.progress
    done, total, eta = p.get("done"), p.get("total"), p.get("eta_seconds")
    where = f"{done}/{total}" if total else f"phase {p.get('phase')}"
    left = f", about {round(float(eta))} s left" if isinstance(eta, int | float) else ""
    return (
        f"lexical (BM25) results: embeddings are being built ({where}{left}); hybrid answers "
        "include meaning once the index is published"
    )


def _directory_of(prefix: str) -> Callable[[dict[str, Any]], tuple[str, int]]:
    """list_paths' step 3 key: a path's first directory below ``prefix``."""
    cut = len(prefix) + 1 if prefix else 0

    def key(row: dict[str, Any]) -> tuple[str, int]:
        rest = row["path"][cut:]
        head, sep, _ = rest.partition("/")
        return (prefix + "/" if prefix else "") + (head + "/" if sep else "."), 1

    return key


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
