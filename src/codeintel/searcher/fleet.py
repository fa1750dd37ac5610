"""Many stores in one searcher process: the catalogue answered across them.

``codeintel serve --stores-root DIR`` serves every store at
``DIR/<namespace>/<name>/`` (a SearchPool's volume), named ``namespace/name`` in
the API: :mod:`discovery` finds them and picks this shard's share,
:mod:`storeset` opens and closes them on demand, :mod:`query_embedders` embeds
queries once per embedding model and :class:`~metrics.FleetMetrics` adds per-store series.

:class:`FleetTools` answers the catalogue across the selected stores by running
the single-store :class:`~tools.Tools` on each and merging with
:mod:`merging`, which the router uses too. Semantic queries embed once per
embedding model (stores of one model share the query vector through the
batcher) and refuse a selection that mixes models (HTTP 400 naming the groups).
:class:`~fleet_context.FleetContext` owns all of it for the app's lifespan.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from codeintel.core import embed as embedding_mod
from codeintel.core import errors
from codeintel.searcher import budget as budget_mod
from codeintel.searcher import (
    cursors,
    dispatch,
    merged_pages,
    merging,
    models,
    navigation,
    symbol_answers,
)
from codeintel.searcher import generations as generations_mod
from codeintel.searcher import query_embedders as query_embedders_mod
from codeintel.searcher import tools as tools_mod

if TYPE_CHECKING:
    from codeintel.searcher.fleet_context import FleetContext

_TOTAL = "#total"
_FILES = "#files"


class FleetTools(dispatch.Dispatcher):
    """The catalogue over many stores: per-store Tools, merged."""

    INTERNAL = ("semantic_search_vector",)

    def __init__(self, context: FleetContext) -> None:
        super().__init__(context.metrics)
        self._ctx = context
        self.stores = context.stores

    def _tools(
        self, manager: generations_mod.GenerationManager, vector: np.ndarray | None = None
    ) -> tools_mod.Tools:
        """Single-store tools over one loaded store, with the batcher of its model (or,
        when the router sent the query vector, a batcher that searches with it)."""
        live = manager.live
        model = str(live.manifest.embedding.model) if live is not None else ""
        embedders = self._ctx.embedders

        def batcher_embedder() -> embedding_mod.Embedder:
            if vector is not None:
                return query_embedders_mod.GivenEmbedder(model, int(vector.shape[0]))  # type: ignore[return-value]
            return embedders.batcher(model)[0]

        batcher: Any = (
            query_embedders_mod.LazyBatcher(embedders, model)
            if vector is None
            else query_embedders_mod.VectorBatcher(vector, self._ctx.run)
        )
        return tools_mod.Tools(
            self._ctx.settings,
            manager,
            batcher,
            batcher_embedder,
            self._ctx.run,
            self._ctx.metrics,
        )

    async def _each(
        self,
        names: Sequence[str],
        tool: str,
        request: Any,
        vector: np.ndarray | None = None,
        pos: cursors.Position | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """Run ``tool`` on every named store at once: (tagged answers, skipped repo -> reason).

        Each store answers its page in full (the budget applies to the merged answer) from
        where ``pos`` says it stopped, at the generation ``pos`` pinned for it."""
        single = request.model_copy(
            update={"repos": None, "cursor": None, "max_tokens": budget_mod.MAX_MAX_TOKENS}
        )

        async def one(name: str) -> dict[str, Any]:
            req = single
            if pos is not None:
                at = cursors.encode(
                    tool, single, {"": pos.generations[name]}, {"": pos.offset(name)}
                )
                req = single.model_copy(update={"cursor": at})
            async with self.stores.open(name) as manager:
                handler = getattr(self._tools(manager, vector), tool)
                answer: dict[str, Any] = await handler(req)
                return answer

        results = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
        answers: list[dict[str, Any]] = []
        skipped: dict[str, str] = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, errors.IndexFormatError | errors.EmbeddingError):
                skipped[name] = str(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                answers.append(merging.tag(name, result))
        if not answers and skipped:
            name, reason = next(iter(skipped.items()))
            raise errors.NoGenerationError(f"no selected repository can answer: {name}: {reason}")
        return answers, skipped

    def _served_dim(self, name: str) -> int:
        """The vector dimension of a store's served manifest, 0 when unknown."""
        try:
            manifest = self.stores.manifest(name)
        except errors.CodeIntelError:
            return 0
        return int(manifest.embedding.dim or 0) if manifest is not None else 0

    def _check_models(self, names: Sequence[str]) -> dict[str, list[str]]:
        """One embedding model across the selection, or ModelMixError naming the groups."""
        groups: dict[str, list[str]] = {}
        for name in names:
            try:
                m = self.stores.manifest(name)
            except errors.CodeIntelError:
                continue
            if m is not None:
                groups.setdefault(str(m.embedding.model), []).append(name)
        if len(groups) > 1:
            raise errors.ModelMixError(groups)
        return groups

    def _selected(self, tool: str, req: Any) -> tuple[list[str], cursors.Position | None]:
        """The stores a list tool reads, and where its cursor resumes them (only those
        with more)."""
        names = self.stores.select(req.repos)
        pos = cursors.decode(tool, req)
        if pos is not None:
            names = [n for n in names if n in pos.offsets]
        return names, pos

    async def semantic_search(self, req: models.SemanticSearchRequest) -> dict[str, Any]:
        names, pos = self._selected("semantic_search", req)
        if req.mode != "lexical":
            self._check_models(names)
        answers, skipped = await self._each(names, "semantic_search", req, pos=pos)
        merged = merging.semantic(answers, req.k, req.mode, skipped)
        return merged_pages.fit("semantic_search", req, answers, merged)

    async def semantic_search_vector(self, req: models.VectorSearchRequest) -> dict[str, Any]:
        """semantic_search with the query vector the router embedded once for all shards."""
        names = self.stores.select(req.request.repos)
        vector = req.vector_array()
        for name in names:
            want = self._served_dim(name)
            if want and want != vector.shape[0]:
                raise errors.QueryError(
                    f"vector has {vector.shape[0]} dimensions, {name} has {want}", field="vector"
                )
        groups = self._check_models(names)
        if groups and req.model not in groups:
            raise errors.ModelMixError({req.model: ["(the router's query)"], **groups})
        inner = req.request
        pos = cursors.decode("semantic_search", inner)
        if pos is not None:
            names = [n for n in names if n in pos.offsets]
        answers, skipped = await self._each(names, "semantic_search", inner, vector, pos)
        merged = merging.semantic(answers, inner.k, inner.mode, skipped)
        return merged_pages.fit("semantic_search", inner, answers, merged)

    async def search_text(self, req: models.SearchTextRequest) -> dict[str, Any]:
        names, pos = self._selected("search_text", req)
        answers, skipped = await self._each(names, "search_text", req, pos=pos)
        merged = merging.text(answers, req.max_results, skipped)
        return merged_pages.fit("search_text", req, answers, merged)

    async def list_paths(self, req: models.ListPathsRequest) -> dict[str, Any]:
        names, pos = self._selected("list_paths", req)
        answers, skipped = await self._each(names, "list_paths", req, pos=pos)
        merged = merging.paths(answers, req.max_results, skipped)
        return merged_pages.fit("list_paths", req, answers, merged)

    def _one(self, req: Any) -> str:
        if req.repo is not None:
            return self.stores.select([req.repo], field="repo")[0]
        visible = self.stores.select(None)
        if len(visible) == 1:
            return visible[0]
        raise errors.QueryError(
            f"{len(visible)} repositories are served; name one in `repo` (list_repos shows them)",
            field="repo",
        )

    async def _single(self, tool: str, req: Any) -> tuple[str, dict[str, Any]]:
        """A one-repository tool answered by that repository's store: (its name, answer)."""
        name = self._one(req)
        async with self.stores.open(name) as manager:
            method = getattr(self._tools(manager), tool)
            answer: dict[str, Any] = await method(req.model_copy(update={"repo": None}))
        return name, answer

    async def blame_range(self, req: models.BlameRangeRequest) -> dict[str, Any]:
        req.check()
        # Its ranges are positional rows: ``repo`` once at the top, as for read_file.
        return navigation.placed(*await self._single("blame_range", req))

    async def file_history(self, req: models.FileHistoryRequest) -> dict[str, Any]:
        return merging.one(*await self._single("file_history", req))

    async def read_file(self, req: models.ReadFileRequest) -> dict[str, Any]:
        return navigation.placed(*await self._single("read_file", req))

    async def file_outline(self, req: models.FileOutlineRequest) -> dict[str, Any]:
        name = self._one(req)
        async with self.stores.open(name) as manager:
            tools = self._tools(manager)
            try:
                answer = await tools.file_outline(req.model_copy(update={"repo": None}))
            except errors.NotIndexedError as e:
                raise errors.NotIndexedError([name]) from e  # the pool's name for it
        return navigation.placed(name, answer)

    async def find_symbol(self, req: models.FindSymbolRequest) -> dict[str, Any]:
        req.check()
        names = self.stores.select(req.repos)
        single = req.model_copy(update={"repos": None})

        async def one(name: str) -> dict[str, Any]:
            async with self.stores.open(name) as manager:
                answer = await self._tools(manager).find_symbol(single)
            return merging.tag(name, answer)

        parts, skipped = await self._navigate(names, one)
        return symbol_answers.merge_symbols(parts, req, skipped)

    async def find_references(self, req: models.FindReferencesRequest) -> dict[str, Any]:
        """Every selected repository's page at once; ``limit`` bounds each repository's rows.

        The cursor holds, per repository, the generation read and where its next page
        starts; a repository whose pages are done is left out of the next page."""
        req.check()
        pos = cursors.decode("find_references", req)
        names = self.stores.select(req.repos)
        if pos is not None:
            names = [n for n in names if n in pos.offsets and n in pos.generations]
        single = req.model_copy(update={"repos": None, "cursor": None})
        generations: dict[str, str] = {}
        starts: dict[str, int] = {}
        following: dict[str, int] = {}

        async def one(name: str) -> dict[str, Any]:
            async with self.stores.open(name) as manager:
                await manager.wait_usable()
                pinned = pos.generations.get(name) if pos is not None else None
                with manager.use(pinned) as gen:
                    offset = pos.offset(name) if pos is not None else 0
                    answer = await self._ctx.run(
                        symbol_answers.find_references, gen, single, name, offset
                    )
                    generations[name], starts[name] = gen.name, offset
            nxt = answer.pop("next_offset")
            if nxt is not None:
                following[name] = nxt
            return symbol_answers.tag_references(name, answer)

        parts, skipped = await self._navigate(names, one)
        answer = symbol_answers.merge_references(parts, skipped)
        # Later pages read only the repositories with more; the first page's total and
        # file count ride in the cursor (keys no repository name can take).
        if pos is not None and _TOTAL in pos.offsets:
            answer["total"], answer["files"] = pos.offsets[_TOTAL], pos.offsets[_FILES]
        counts = {_TOTAL: answer["total"], _FILES: answer["files"]}
        if following:
            answer["cursor"] = cursors.encode(
                "find_references", req, generations, {**following, **counts}
            )
        this_page = cursors.encode("find_references", req, generations, {**starts, **counts})
        return symbol_answers.fit_references(answer, req.max_tokens, this_page)

    async def _navigate(
        self, names: Sequence[str], one: Any
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """Run ``one(name)`` on every store at once: (answers, skipped repo -> reason).

        A store without symbols, or without a generation, is skipped and named; when
        no store answers, the first such error is the answer."""
        results = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
        answers: list[dict[str, Any]] = []
        skipped: dict[str, str] = {}
        not_indexed: list[str] = []
        for name, result in zip(names, results, strict=True):
            if isinstance(result, errors.NotIndexedError):
                not_indexed.append(name)
                skipped[name] = "not indexed: rebuild (no symbol index)"
            elif isinstance(result, errors.IndexFormatError | errors.EmbeddingError):
                skipped[name] = str(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                answers.append(result)
        if not answers and not_indexed:
            raise errors.NotIndexedError(not_indexed)
        if not answers and skipped:
            name, reason = next(iter(skipped.items()))
            raise errors.NoGenerationError(f"no selected repository can answer: {name}: {reason}")
        return answers, skipped

    async def list_repos(self, req: models.ListReposRequest) -> dict[str, Any]:
        names = self.stores.select(req.repos)
        rows = await self._ctx.run(self._rows, names)
        return {"results": rows}

    def _rows(self, names: Sequence[str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for name in names:
            try:
                m = self.stores.manifest(name)
            except errors.CodeIntelError as e:
                rows.append(_unavailable(name, str(e)))
                continue
            if m is None:
                rows.append(_unavailable(name, "no generation published yet"))
                continue
            row = tools_mod.repo_info(name, m)
            error = self.stores.entries[name].error
            if error:
                row["error"] = error
            rows.append(row)
        return rows


def _unavailable(name: str, reason: str) -> dict[str, Any]:
    return {
        "name": name,
        "url": "",
        "ref": "",
        "commit": "",
        "generation": "",
        "vectors": {},
        "index_type": "",
        "updated_at": "",
        "embedding_model": "",
        "embedding_dim": 0,
        "calibration": None,
        "error": reason,
    }
