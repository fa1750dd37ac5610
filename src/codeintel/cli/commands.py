"""What each ``codeintel`` command does, given its parsed flags.

Each handler builds :class:`Settings` once with :func:`settings_from` (flags over
``CODEINTEL_*`` over defaults) and hands it to the component that does the work,
imported inside the handler through its package face, so ``codeintel --help`` or
``codeintel operator`` loads neither FAISS nor the searcher.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from codeintel.cli import background
from codeintel.core import errors
from codeintel.core import settings as settings_mod
from codeintel.core.settings import Settings


def build(args: argparse.Namespace) -> int:
    from codeintel import indexer

    _index(
        args,
        lambda settings, embedder, progress: indexer.build(
            settings, args.source, embedder, ref=args.ref, reporter=progress
        ),
    )
    return 0


def update(args: argparse.Namespace) -> int:
    from codeintel import indexer

    result = _index(
        args,
        lambda settings, embedder, progress: indexer.update(
            settings,
            embedder,
            ref=args.ref,
            merge_threshold=args.merge_threshold,
            reporter=progress,
        ),
    )
    if not result.changed:
        print(f"up to date: {result.generation} at {result.commit[:12]}", file=sys.stderr)
    return 0


def merge(args: argparse.Namespace) -> int:
    from codeintel import indexer

    # The embedder embeds the queries that recalibrate nprobe.
    _index(
        args,
        lambda settings, embedder, progress: indexer.merge(
            settings, embedder=embedder, reporter=progress
        ),
    )
    return 0


def _index(args: argparse.Namespace, run: Callable[[Settings, Any, Any], Any]) -> Any:
    """One ``codeintel index`` action, given the embedder and a progress reporter; its
    result is summarised, written to ``--result-file`` and printed with ``--json``."""
    settings = settings_from(args)
    with embedder_for(settings) as embedder:
        progress = reporter(settings)
        try:
            result = run(settings, embedder, progress)
        finally:
            progress.close()
        _finish(args, result, progress)
    return result


def rollback(args: argparse.Namespace) -> int:
    from codeintel.core import store as store_mod

    settings = settings_from(args)
    store = store_mod.Store(settings.store.path)
    previous, target = store.rollback(args.to)
    m = target.manifest
    was = previous or "nothing readable"
    print(f"CURRENT: {was} -> {target.name} (commit {m.commit[:12]}, {m.index.type})")
    return 0


def search(args: argparse.Namespace) -> int:
    from codeintel.core import hits

    settings = settings_from(args)
    if not 1 <= args.k <= 100:
        raise errors.QueryError("-k must be between 1 and 100", field="k")
    if args.mode == "lexical":  # BM25 only: no model to load
        found = hits.search_store(settings, None, args.query, args.k, "lexical")
    else:
        with embedder_for(settings) as embedder:
            found = hits.search_store(settings, embedder, args.query, args.k, args.mode)
    if args.json:
        print(json.dumps([msgspec.to_builtins(h) for h in found], ensure_ascii=False, indent=2))
        return 0
    for h in found:
        title = f"{h.path}:{h.start_line}-{h.end_line}"
        print(f"{h.score:6.3f}  {title}  {h.symbol}".rstrip())
    if not found:
        print("no results", file=sys.stderr)
    return 0


def serve(args: argparse.Namespace) -> int:
    from codeintel import searcher

    settings = settings_from(args)
    if settings.fleet.stores_root:
        if args.source:
            raise errors.ConfigError("serve takes a repository or --stores-root, not both")
        searcher.serve(settings)
        return 0
    if args.source and not _store_given(args):
        settings = settings.replace(store={"path": default_store(args.source)})
        print(f"index store: {settings.store.path}", file=sys.stderr)
    _check_store_path(settings)
    if not args.source:
        searcher.serve(settings)
        return 0
    with background.indexing(settings, args.source, args.ref, rebuild=args.rebuild) as early:
        searcher.serve(settings, early=early)
    return 0


def router(args: argparse.Namespace) -> int:
    from codeintel import searcher

    searcher.serve(settings_from(args), router=True)
    return 0


def mcp(args: argparse.Namespace) -> int:
    from codeintel import searcher

    settings = settings_from(args)
    if not args.source:
        if not _store_given(args):
            raise errors.ConfigError("mcp needs a repository (codeintel mcp .) or --store DIR")
        _check_store_path(settings)
        searcher.run_stdio(settings)
        return 0
    if not _store_given(args):
        settings = settings.replace(store={"path": default_store(args.source)})
    print(f"index store: {settings.store.path}", file=sys.stderr)  # stdout speaks MCP only
    _check_store_path(settings)
    with background.indexing(settings, args.source, args.ref, rebuild=args.rebuild) as early:
        searcher.run_stdio(settings, early=early)
    return 0


def embed_server(args: argparse.Namespace) -> int:
    from codeintel import embed_server

    embed_server.run(args.host, args.port, args.model)
    return 0


def operator(args: argparse.Namespace) -> int:
    from codeintel import operator

    operator.run(list(args.kopf_args))
    return 0


def doctor(args: argparse.Namespace) -> int:
    from codeintel import doctor

    report = doctor.run(settings_from(args))
    print(json.dumps(report, indent=2, default=str) if args.json else doctor.render(report))
    return 0 if report.get("ok") else 1


def default_store(source: str) -> Path:
    """Where ``codeintel serve SOURCE`` keeps its index when no ``--store`` is given.

    Under the user's cache directory, one store per repository (path or URL), so
    serving the same repository from any directory reuses its index and nothing is
    written into the repository's working tree.
    """
    from codeintel.core import git as git_mod

    key = source if git_mod.is_url(source) else str(Path(source).expanduser().resolve())
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", key.rstrip("/").rsplit("/", 1)[-1]).strip("-.")
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "codeintel" / f"{(name or 'repo').removesuffix('.git')}-{digest}"


def absolute_source(source: str) -> str:
    """A repository path made absolute against the caller's working directory; URLs as given.

    With the store, stores root and result file (made absolute by ``Settings``), this is
    every path a user hands the CLI: resolved once here, so nothing below depends on the
    process's current directory (git runs in the store, threads index in the background)."""
    from codeintel.core import git as git_mod

    if git_mod.is_url(source) or source.startswith("-"):
        return source
    return os.path.abspath(os.path.expanduser(source))


def settings_from(args: argparse.Namespace) -> Settings:
    store = getattr(args, "store", None)
    return Settings.from_env(
        store={"path": Path(store) if store else None},
        embedder={
            "kind": getattr(args, "embedder", None),
            "url": getattr(args, "embed_url", None),
            "model": getattr(args, "embed_model", None),
            "dim": getattr(args, "embed_dim", None),
        },
        server={
            "host": getattr(args, "host", None),
            "port": getattr(args, "port", None),
            "tokens_file": getattr(args, "tokens_file", None),
        },
        index={
            "result_file": getattr(args, "result_file", None),
            "history": getattr(args, "history", None),
            "history_workers": getattr(args, "history_workers", None),
        },
        fleet={
            "stores_root": getattr(args, "stores_root", None),
            "shards": getattr(args, "shards", None),
            "shard_index": getattr(args, "shard_index", None),
            "shard_urls": tuple(getattr(args, "shard_url", None) or ()) or None,
            "shard_replicas": getattr(args, "shard_replicas", None),
            "shard_timeout_seconds": getattr(args, "shard_timeout", None),
        },
    )


def _store_given(args: argparse.Namespace) -> bool:
    """Whether the store was named, by ``--store`` or the environment (``store.path``)."""
    return bool(args.store) or settings_mod.env_sets("store", "path")


def _check_store_path(settings: Settings) -> None:
    """Refuse a store path that can never hold a store (a file) before serving starts."""
    from codeintel.core import store as store_mod

    store_mod.Store(settings.store.path)


@contextlib.contextmanager
def embedder_for(settings: Settings) -> Iterator[Any]:
    """An embedder for these settings, closed on exit."""
    from codeintel.core import embed as embedding

    embedder = embedding.make_embedder(settings.embedder)
    try:
        yield embedder
    finally:
        embedder.close()


def reporter(settings: Settings) -> Any:
    """The progress reporter of an indexing run (bars on a terminal, lines in a log)."""
    from codeintel import indexer

    return indexer.make_reporter(interval=settings.log.progress_interval_seconds)


def _finish(args: argparse.Namespace, result: Any, reporter: Any) -> None:
    payload = msgspec.json.encode(result)
    result_file = settings_from(args).index.result_file
    if result_file:
        Path(result_file).write_bytes(payload)
    reporter.summary(
        {
            "action": result.action,
            "generation": result.generation,
            "commit": result.commit[:12],
            "files": result.files,
            "skipped": result.skipped,
            "chunks": result.chunks,
            "embedded": f"{result.embedded} ({result.embed_cache_hits} from the cache)",
            "vectors": f"{result.vectors.primary} + {result.vectors.secondary}"
            f" (-{result.vectors.tombstones})",
            "index": result.index_type,
        }
    )
    if getattr(args, "json", False):
        print(payload.decode())
