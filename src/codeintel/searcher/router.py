"""``codeintel router``: one REST + MCP endpoint in front of the shards of a search pool.

The router holds no index. It validates a request with the same catalogue
models as a searcher, sends it to every shard at once (``blame_range`` and
``file_history`` go only to the shard that owns the repository, found by the
same rendezvous hash the shards use) and merges the answers with
:mod:`merging`, so an agent cannot tell a router from a single searcher.

A shard that is slow, down or failing never turns a query into a 5xx: after
``shard_timeout_seconds`` the router answers with what it has, sets
``partial: true`` and names the missing shards (:mod:`shard_fanout` asks them,
replica by replica).

A repository selection that matches nothing on one shard is normal (that
shard's 404 means "none of mine"); only when no shard has a match is the answer
a 404. The router learns each repository's embedding model from its shards'
``list_repos`` (refreshed in the background) to refuse a semantic query that
would mix models, which no single shard can see.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from codeintel.core import errors
from codeintel.core import settings as settings_mod
from codeintel.searcher import (
    access,
    discovery,
    dispatch,
    merged_pages,
    merging,
    models,
    shard_fanout,
    symbol_answers,
)
from codeintel.searcher import budget as budget_mod
from codeintel.searcher import context as context_mod
from codeintel.searcher import metrics as metrics_mod
from codeintel.searcher import query_embedders as query_embedders_mod
from codeintel.searcher import tools as tools_mod

logger = logging.getLogger(__name__)

CATALOGUE_REFRESH_SECONDS = 10.0
"""How often the router re-reads every shard's list_repos (repository -> model)."""


class Router(dispatch.Dispatcher):
    """The catalogue answered by fanning out to shards and merging."""

    def __init__(
        self,
        settings: settings_mod.Settings,
        metrics: metrics_mod.RouterMetrics,
        embedders: query_embedders_mod.QueryEmbedders,
    ) -> None:
        super().__init__(metrics.base)
        self.settings = settings
        self.embedders = embedders
        self.fanout = shard_fanout.ShardFanout(settings, metrics)
        self.shards = self.fanout.shards
        self.models: dict[str, str] = {}
        """Repository -> embedding model, from the shards' list_repos."""
        self.names: frozenset[str] = frozenset()
        """Every repository the shards serve, from the same refresh."""
        self.catalogue_ready = asyncio.Event()

    # -- the catalogue ---------------------------------------------------------------------

    async def semantic_search(self, req: models.SemanticSearchRequest) -> dict[str, Any]:
        model = self._check_models(req.repos) if req.mode != "lexical" else None
        vector = await self._embed(model, req.query) if model else None
        if vector is None:  # lexical, or the router cannot embed: each shard embeds
            answers, missing = await self.fanout.fan("semantic_search", _unbudgeted(req))
        else:
            body = {
                "request": _unbudgeted(req).model_dump(exclude_none=True),
                "vector": base64.b64encode(vector.astype("<f4").tobytes()).decode(),
                "model": model,
            }
            answers, missing = await self.fanout.fan(
                "semantic_search", body, path="/internal/v1/semantic_search"
            )
        return self._fit(
            "semantic_search", req, answers, merging.semantic(answers, req.k, req.mode), missing
        )

    async def _embed(self, model: str, query: str) -> np.ndarray | None:
        """The query vector for ``model``, embedded once here for every shard (micro-batched
        like a searcher's), or None when this router cannot embed for that model."""
        try:
            _, batcher = self.embedders.batcher(model)
            vector, _ = await batcher.search(_IDENTITY, query, 0)
        except errors.EmbeddingError as e:
            logger.debug("router cannot embed for %s (%s); shards will", model, e)
            return None
        return vector

    async def search_text(self, req: models.SearchTextRequest) -> dict[str, Any]:
        answers, missing = await self.fanout.fan("search_text", _unbudgeted(req))
        return self._fit(
            "search_text", req, answers, merging.text(answers, req.max_results), missing
        )

    async def list_paths(self, req: models.ListPathsRequest) -> dict[str, Any]:
        answers, missing = await self.fanout.fan("list_paths", _unbudgeted(req))
        return self._fit(
            "list_paths", req, answers, merging.paths(answers, req.max_results), missing
        )

    def _fit(
        self,
        tool: str,
        req: Any,
        parts: list[dict[str, Any]],
        merged: dict[str, Any],
        missing: list[str],
    ) -> dict[str, Any]:
        """The shards' pages merged into one page (the shards read the same cursor)."""
        return merged_pages.fit(tool, req, parts, _partial(merged, missing))

    async def blame_range(self, req: models.BlameRangeRequest) -> dict[str, Any]:
        req.check()
        return await self._single("blame_range", req)

    async def file_history(self, req: models.FileHistoryRequest) -> dict[str, Any]:
        return await self._single("file_history", req)

    async def read_file(self, req: models.ReadFileRequest) -> dict[str, Any]:
        return await self._single("read_file", req)

    async def file_outline(self, req: models.FileOutlineRequest) -> dict[str, Any]:
        return await self._single("file_outline", req)

    async def find_symbol(self, req: models.FindSymbolRequest) -> dict[str, Any]:
        req.check()
        answers, missing = await self.fanout.fan("find_symbol", req)
        return _partial(symbol_answers.merge_symbols(answers, req), missing)

    async def find_references(self, req: models.FindReferencesRequest) -> dict[str, Any]:
        """Each shard pages its own repositories; the router's cursor holds each shard's
        cursor, and a next page asks only the shards that have more."""
        req.check()
        counted: tuple[int, int] | None = None
        if req.cursor:
            given, counted = _shard_cursors(req.cursor, len(self.shards))
            asks = {
                shard: req.model_copy(update={"cursor": cursor}) for shard, cursor in given.items()
            }
        else:
            asks = {shard: req for shard in range(len(self.shards))}
        replies = await asyncio.gather(
            *(self.fanout.fan("find_references", ask, [shard]) for shard, ask in asks.items()),
            return_exceptions=True,
        )
        answers: list[dict[str, Any]] = []
        missing: list[str] = []
        following: dict[int, str] = {}
        refused: BaseException | None = None
        for shard, reply in zip(asks, replies, strict=True):
            if isinstance(reply, errors.RepoNotFoundError | errors.NotIndexedError):
                # none of this shard's repositories (normal in a pool), or not indexed
                if not isinstance(refused, errors.NotIndexedError):
                    refused = reply
                continue
            if isinstance(reply, BaseException):
                raise reply
            part, gone = reply
            missing += gone
            for answer in part:
                if answer.get("cursor"):
                    following[shard] = answer["cursor"]
                answer.pop("degraded", None)
                answers.append(answer)
        if not answers and not missing and refused is not None:
            raise refused
        merged = symbol_answers.merge_references(answers)
        if counted is not None:  # later pages ask fewer shards: the first page counted all
            merged["total"], merged["files"] = counted
        if following:
            merged["cursor"] = _encode_shard_cursors(
                following, merged["total"], merged.get("files", 0)
            )
            merged["has_more"] = True
        fitted = symbol_answers.fit_references(merged, req.max_tokens, req.cursor)
        return _partial(fitted, missing)

    async def _single(self, tool: str, req: Any) -> dict[str, Any]:
        """A one-repository tool, sent to the shard that owns ``repo`` only."""
        repo = req.repo
        if repo is None:
            visible = access.current().filter(self.models)
            if len(visible) != 1:
                raise errors.QueryError(
                    "several repositories are served; name one in `repo` (list_repos)",
                    field="repo",
                )
            repo = visible[0]
            req = req.model_copy(update={"repo": repo})
        shard = discovery.shard_of(repo, len(self.shards))
        answers, missing = await self.fanout.fan(tool, req, [shard])
        if not answers:
            raise errors.NoGenerationError(
                f"{missing[0]}, which serves {repo!r}, did not answer; try again shortly"
            )
        return answers[0]

    async def list_repos(self, req: models.ListReposRequest) -> dict[str, Any]:
        answers, missing = await self.fanout.fan("list_repos", req)
        answer = merging.repos(answers)
        if req.repos is None and not missing and access.current().everything:
            self._learn(answer["results"])
        return _partial(answer, missing)

    # -- what the shards serve ---------------------------------------------------------------

    def _learn(self, rows: Sequence[dict[str, Any]]) -> None:
        self.names = frozenset(str(r["name"]) for r in rows)
        self.models = {r["name"]: r["embedding_model"] for r in rows if r.get("embedding_model")}
        self.catalogue_ready.set()

    def _check_models(self, patterns: Sequence[str] | None) -> str | None:
        """The one model of the selection (None if unknown yet); ModelMixError for several."""
        known = self.models
        if not known:
            return None  # nothing learnt yet: the shards still refuse a mix within themselves
        try:
            names = tools_mod.select(known, patterns)
        except errors.RepoNotFoundError:
            return None  # a store newer than the last refresh: let the shards decide
        groups: dict[str, list[str]] = {}
        for name in names:
            groups.setdefault(known[name], []).append(name)
        if len(groups) > 1:
            raise errors.ModelMixError(groups)
        return next(iter(groups), None)

    async def refresh_catalogue(self) -> None:
        """Re-read every shard's list_repos forever (cancel to stop)."""
        while True:
            try:
                await self.list_repos(models.ListReposRequest())
            except Exception as e:
                logger.warning("cannot refresh the repository list: %s", e)
            await asyncio.sleep(CATALOGUE_REFRESH_SECONDS)

    async def aclose(self) -> None:
        await self.fanout.aclose()


_SHARD_CURSOR = "r1."


def _encode_shard_cursors(cursors: dict[int, str], total: int, files: int) -> str:
    """The router's page cursor: each shard's own cursor, by shard, and the first page's
    total and file count."""
    shards = {str(k): v for k, v in sorted(cursors.items())}
    raw = msgspec.json.encode({"s": shards, "t": total, "f": files})
    return _SHARD_CURSOR + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _shard_cursors(text: str, shards: int) -> tuple[dict[int, str], tuple[int, int]]:
    try:
        if not text.startswith(_SHARD_CURSOR):
            raise ValueError(text[:8])
        body = text[len(_SHARD_CURSOR) :]
        data = msgspec.json.decode(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        found = {int(k): str(v) for k, v in dict(data["s"]).items()}
        if not found or any(not 0 <= k < shards for k in found):
            raise ValueError("shards")
        return found, (int(data["t"]), int(data["f"]))
    except (ValueError, TypeError, KeyError, msgspec.DecodeError) as e:
        raise errors.QueryError(
            "cursor is not a cursor this router gave; pass the previous answer's cursor "
            "unchanged, or omit it for the first page",
            field="cursor",
        ) from e


def _partial(answer: dict[str, Any], missing: Sequence[str]) -> dict[str, Any]:
    if missing:
        answer["partial"] = True
        answer["missing_shards"] = sorted(missing)
    return answer


def _unbudgeted(req: Any) -> Any:
    """``req`` for a shard: its whole page, since the budget applies to the merged answer."""
    return req.model_copy(update={"max_tokens": budget_mod.MAX_MAX_TOKENS})


class _Identity:
    """An 'engine' whose search returns the query vectors: the batcher then only embeds."""

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return xq, np.zeros((len(xq), 0), dtype=np.int64)


_IDENTITY = _Identity()


class RouterContext(context_mod.Runtime):
    """The router's long-lived state for the app lifespan: HTTP client, embedder, metrics."""

    def __init__(self, settings: settings_mod.Settings) -> None:
        self.router_metrics = metrics_mod.RouterMetrics.create()
        super().__init__(settings, self.router_metrics.base, workers=2, name="codeintel-router")
        self.embedders = query_embedders_mod.QueryEmbedders(
            settings, self.run, self.metrics.batch_size.observe
        )
        self.router = Router(settings, self.router_metrics, self.embedders)

    @property
    def service(self) -> Router:
        return self.router

    def known_repos(self) -> list[str]:
        """Every repository the shards serve (the catalogue), for a Kubernetes reviewer."""
        return sorted(self.router.names)

    async def start(self) -> None:
        self.spawn(self.embedders.start())
        self.spawn(self.router.refresh_catalogue())
        self.spawn(self.router.fanout.probe_ejected())

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready at once: a router with shards down still answers (partially)."""
        return True, {"shards": len(self.router.shards), "repos": len(self.router.models)}

    async def index_document(self) -> bytes:
        answer = await self.router.list_repos(models.ListReposRequest())
        return msgspec.json.encode({"repos": answer["results"], **_flags(answer)})

    async def aclose(self) -> None:
        await self.stop()
        await self.embedders.aclose()
        await self.router.aclose()
        self.shutdown()


def _flags(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: answer[k] for k in ("partial", "missing_shards") if k in answer}
