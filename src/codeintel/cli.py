"""The single ``codeintel`` entry point (the commands of docs/architecture.md).

Parses flags, builds :class:`Settings` once (flags over ``CODEINTEL_*`` env over
defaults) and hands it to the component that does the work. Every
``CodeIntelError`` becomes one ``error: …`` line on stderr and a non-zero exit;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from codeintel import __version__
from codeintel.core import errors, malloc
from codeintel.core import settings as settings_mod
from codeintel.core.settings import Settings

logger = logging.getLogger("codeintel")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "operator":  # its options (and --help) belong to the operator's parser
        args.kopf_args = [*args.kopf_args, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "source", None):
        args.source = _absolute_source(args.source)
    try:
        _configure_logging(args.log_level)
        malloc.limit_arenas()  # before the threads: docs/performance.md, *Memory*
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        return int(args.func(args) or 0)
    except errors.CodeIntelError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# -- commands ----------------------------------------------------------------------------


def _cmd_build(args: argparse.Namespace) -> int:
    from codeintel.indexer import pipeline

    settings = _settings(args)
    with _embedder(settings) as embedder:
        reporter = _reporter(settings)
        try:
            result = pipeline.build(
                settings, args.source, embedder, ref=args.ref, reporter=reporter
            )
        finally:
            reporter.close()
        _finish(args, result, reporter)
    return 0


def _cmd_update(args: argparse.Namespace) -> int:
    from codeintel.indexer import pipeline

    settings = _settings(args)
    with _embedder(settings) as embedder:
        reporter = _reporter(settings)
        try:
            result = pipeline.update(
                settings,
                embedder,
                ref=args.ref,
                merge_threshold=args.merge_threshold,
                reporter=reporter,
            )
        finally:
            reporter.close()
        if not result.changed:
            print(f"up to date: {result.generation} at {result.commit[:12]}", file=sys.stderr)
        _finish(args, result, reporter)
    return 0


def _cmd_merge(args: argparse.Namespace) -> int:
    from codeintel.indexer import pipeline

    settings = _settings(args)
    with _embedder(settings) as embedder:  # embeds the queries that recalibrate nprobe
        reporter = _reporter(settings)
        try:
            result = pipeline.merge(settings, embedder=embedder, reporter=reporter)
        finally:
            reporter.close()
        _finish(args, result, reporter)
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    from codeintel.core import store as store_mod

    settings = _settings(args)
    store = store_mod.Store(settings.store.path)
    previous, target = store.rollback(args.to)
    m = target.manifest
    was = previous or "nothing readable"
    print(f"CURRENT: {was} -> {target.name} (commit {m.commit[:12]}, {m.index.type})")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    from codeintel.core import hits

    settings = _settings(args)
    if not 1 <= args.k <= 100:
        raise errors.QueryError("-k must be between 1 and 100", field="k")
    if args.mode == "lexical":  # BM25 only: no model to load
        found = hits.search_store(settings, None, args.query, args.k, "lexical")
    else:
        with _embedder(settings) as embedder:
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


def _cmd_serve(args: argparse.Namespace) -> int:
    from codeintel import searcher

    settings = _settings(args)
    if settings.fleet.stores_root:
        if args.source:
            raise errors.ConfigError("serve takes a repository or --stores-root, not both")
        searcher.serve(settings)
        return 0
    if args.source and not args.store and "CODEINTEL_STORE_PATH" not in os.environ:
        settings = settings.replace(store={"path": default_store(args.source)})
        print(f"index store: {settings.store.path}", file=sys.stderr)
    _check_store_path(settings)
    if not args.source:
        searcher.serve(settings)
        return 0
    with _indexing(settings, args.source, args.ref, rebuild=args.rebuild) as early:
        searcher.serve(settings, early=early)
    return 0


def _cmd_router(args: argparse.Namespace) -> int:
    from codeintel import searcher

    searcher.serve(_settings(args), router=True)
    return 0


def _cmd_mcp(args: argparse.Namespace) -> int:
    from codeintel import searcher

    settings = _settings(args)
    if not args.source:
        if not args.store and "CODEINTEL_STORE_PATH" not in os.environ:
            raise errors.ConfigError("mcp needs a repository (codeintel mcp .) or --store DIR")
        _check_store_path(settings)
        searcher.run_stdio(settings)
        return 0
    if not args.store and "CODEINTEL_STORE_PATH" not in os.environ:
        settings = settings.replace(store={"path": default_store(args.source)})
    print(f"index store: {settings.store.path}", file=sys.stderr)  # stdout speaks MCP only
    _check_store_path(settings)
    with _indexing(settings, args.source, args.ref, rebuild=args.rebuild) as early:
        searcher.run_stdio(settings, early=early)
    return 0


def _cmd_embed_server(args: argparse.Namespace) -> int:
    from codeintel import embed_server

    embed_server.run(args.host, args.port, args.model)
    return 0


def _cmd_operator(args: argparse.Namespace) -> int:
    from codeintel import operator

    operator.run(list(args.kopf_args))
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from codeintel import doctor

    report = doctor.run(_settings(args))
    print(json.dumps(report, indent=2, default=str) if args.json else doctor.render(report))
    return 0 if report.get("ok") else 1


# -- helpers -----------------------------------------------------------------------------


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


def _absolute_source(source: str) -> str:
    """A repository path made absolute against the caller's working directory; URLs as given.

    With the store, stores root and result file (made absolute by ``Settings``), this is
    every path a user hands the CLI: resolved once here, so nothing below depends on the
    process's current directory (git runs in the store, threads index in the background)."""
    from codeintel.core import git as git_mod

    if git_mod.is_url(source) or source.startswith("-"):
        return source
    return os.path.abspath(os.path.expanduser(source))


def _settings(args: argparse.Namespace) -> Settings:
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


def _check_store_path(settings: Settings) -> None:
    """Refuse a store path that can never hold a store (a file) before serving starts."""
    from codeintel.core import store as store_mod

    store_mod.Store(settings.store.path)


@contextlib.contextmanager
def _embedder(settings: Settings) -> Iterator[Any]:
    """An embedder for these settings, closed on exit."""
    from codeintel.core import embed as embedding

    embedder = embedding.make_embedder(settings.embedder)
    try:
        yield embedder
    finally:
        embedder.close()


@contextlib.contextmanager
def _indexing(settings: Settings, source: str, ref: str, *, rebuild: bool = False) -> Iterator[Any]:
    """Index ``source`` on a background thread (build now — from scratch with ``rebuild`` —
    then follow the ref) while the caller serves; yields the ``EarlyIndex`` the searcher
    answers from meanwhile."""
    from codeintel.core import git as git_mod
    from codeintel.searcher import early as early_mod

    if not git_mod.is_url(source) and not Path(source).expanduser().is_dir():
        raise errors.ConfigError(f"not a directory or URL: {source!r}")
    early = early_mod.EarlyIndex(
        _repo_url(source), retry_seconds=settings.server.reindex_interval_seconds
    )
    stop = threading.Event()
    thread = threading.Thread(
        target=_index_in_background,
        args=(settings, source, ref, early, stop, rebuild),
        name="codeintel-index",
        daemon=True,
    )
    thread.start()
    try:
        yield early
    finally:
        stop.set()
        thread.join(timeout=5)
        if thread.is_alive():
            # A build is inside the model (native threads): finalising the interpreter under
            # it aborts the process (SIGABRT). Leave at once; the writer lock is an flock,
            # released with the process, and the next run removes the temp directory.
            logger.warning("stopped while indexing; the next run starts that build again")
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)


def _repo_url(source: str) -> str:
    from codeintel.indexer import pipeline

    return pipeline.repo_url(source)


def _index_in_background(
    settings: Settings, source: str, ref: str, early: Any, stop: threading.Event, rebuild: bool
) -> None:
    from codeintel.core import embed as embedding
    from codeintel.indexer import serving

    try:
        embedder = embedding.make_embedder(settings.embedder)
    except Exception as e:  # the searcher keeps answering from the tree and shows why
        logger.exception("cannot load the embedding model for indexing")
        early.round_failed(f"cannot load the embedding model: {e}")
        return
    try:
        serving.keep_indexed(
            settings,
            source,
            embedder,
            stop,
            early,
            ref=ref,
            make_reporter=lambda: _reporter(settings),
            rebuild=rebuild,
        )
    finally:
        embedder.close()


def _reporter(settings: Settings) -> Any:
    from codeintel.indexer import progress

    return progress.make_reporter(interval=settings.log.progress_interval_seconds)


def _finish(args: argparse.Namespace, result: Any, reporter: Any) -> None:
    payload = msgspec.json.encode(result)
    result_file = _settings(args).index.result_file
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


def _configure_logging(level: str | None) -> None:
    log = Settings.from_env(log={"level": level}).log
    handler = logging.StreamHandler(sys.stderr)
    if log.format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log.level.upper())
    # faiss >= 1.10 dispatches SIMD at run time; its loader still logs every legacy
    # module it tries (avx512, avx2) at INFO, which reads like an error. Keep its warnings.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    # httpx logs every embeddings request at INFO: hundreds of lines a minute that
    # drown the indexer's progress lines (and push them out of a log tail).
    logging.getLogger("httpx").setLevel(logging.WARNING)


class _JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors in the cluster."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        progress = getattr(record, "progress", None)
        if progress is not None:
            entry["progress"] = progress
        return json.dumps(entry, ensure_ascii=False)


def _add_embedder_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("embedder (or CODEINTEL_EMBEDDER_* env vars)")
    g.add_argument(
        "--embedder", choices=["local", "openai"], help="local model or an /v1/embeddings server"
    )
    g.add_argument(
        "--embed-url", help="base URL of the embeddings server, e.g. http://vllm:8000/v1"
    )
    g.add_argument("--embed-model", help="embedding model name (or local model directory)")
    g.add_argument("--embed-dim", type=int, help="expected vector dimension (checked)")


def _add_rebuild_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="build the index from scratch before serving, even if it is up to date "
        "(after changing chunking settings); unchanged texts come from the embedding cache",
    )


def _add_store_flag(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument(
        "--store",
        required=required and "CODEINTEL_STORE_PATH" not in os.environ,
        help="index store directory (env CODEINTEL_STORE_PATH)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codeintel",
        description="Code intelligence for AI agents: index a repository, serve five tools.",
    )
    parser.add_argument("--version", action="version", version=f"codeintel {__version__}")
    parser.add_argument(
        "--log-level", help="debug, info, warning or error (env CODEINTEL_LOG_LEVEL)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="index PATH if needed, then serve REST + MCP")
    p.add_argument(
        "source", nargs="?", help="repository path or URL (omit to serve the store as is)"
    )
    _add_store_flag(p, required=False)
    p.add_argument("--ref", default="HEAD")
    _add_rebuild_flag(p)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    g = p.add_argument_group("many stores (a search pool; or CODEINTEL_FLEET_* env vars)")
    g.add_argument(
        "--stores-root", help="serve every store at DIR/<namespace>/<name>/ instead of one"
    )
    g.add_argument("--shards", type=int, help="shards the stores are split across")
    g.add_argument("--shard-index", type=int, help="this process's shard, 0-based")
    g.add_argument(
        "--tokens-file",
        help="JSON list of {name, sha256, repos}: each bearer token reads only its repositories "
        "(env CODEINTEL_SERVER_TOKENS_FILE; re-read on change)",
    )
    _add_embedder_flags(p)
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("router", help="one REST + MCP endpoint fanning out to pool shards")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument(
        "--shard-url",
        action="append",
        help="a shard's base URL (repeat, in shard order), or one template where {i} is the "
        "shard and {r} the replica: http://pool-r{r}-{i}.pool-shards.ns.svc:8080",
    )
    p.add_argument("--shards", type=int, help="number of shards (with a template)")
    p.add_argument("--shard-replicas", type=int, help="replicas of each shard (with a template)")
    p.add_argument("--shard-timeout", type=float, help="seconds to wait for one shard")
    p.add_argument(
        "--tokens-file",
        help="JSON list of {name, sha256, repos}: each bearer token reads only its repositories "
        "(env CODEINTEL_SERVER_TOKENS_FILE; re-read on change)",
    )
    p.set_defaults(func=_cmd_router)

    index = sub.add_parser("index", help="build, update, merge or roll back an index store")
    isub = index.add_subparsers(dest="index_command", required=True)
    for name, func, helptext in (
        ("build", _cmd_build, "index a repository from scratch"),
        ("update", _cmd_update, "incremental update to the ref's newest commit"),
        ("merge", _cmd_merge, "fold the secondary index and tombstones into the primary"),
    ):
        q = isub.add_parser(name, help=helptext)
        if name == "build":
            q.add_argument("source", help="repository path or URL")
        _add_store_flag(q)
        if name != "merge":
            q.add_argument("--ref", default="HEAD" if name == "build" else None)
        _add_embedder_flags(q)
        if name == "update":
            q.add_argument(
                "--merge-threshold",
                type=int,
                help="merge when the secondary holds this many vectors (0: never)",
            )
        q.add_argument(
            "--history",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="precompute blame and file history (env CODEINTEL_INDEX_HISTORY; default on)",
        )
        q.add_argument(
            "--history-workers",
            type=int,
            help="parallel git blame processes (env CODEINTEL_INDEX_HISTORY_WORKERS; 0: all CPUs)",
        )
        q.add_argument("--result-file", help="write the result JSON here (a Job's termination log)")
        q.add_argument("--json", action="store_true", help="print the result JSON on stdout")
        q.set_defaults(func=func)
    q = isub.add_parser(
        "rollback",
        help="point CURRENT at an older intact generation (checksums verified)",
        description="Point CURRENT at the newest intact generation older than the current one, "
        "or at --to. Every file of the target is checked against its manifest first; "
        "searchers pick the change up on their own.",
    )
    _add_store_flag(q)
    q.add_argument(
        "--to", metavar="GENERATION", help="e.g. g000041 (default: the newest intact older one)"
    )
    q.set_defaults(func=_cmd_rollback)

    p = sub.add_parser("search", help="search a store by meaning, by words, or both")
    p.add_argument("query")
    _add_store_flag(p)
    p.add_argument("-k", type=int, default=10)
    p.add_argument(
        "--mode",
        choices=["semantic", "hybrid", "lexical"],
        default="hybrid",
        help="hybrid (default: both, fused), semantic (embeddings), lexical (BM25 words), as the API",
    )
    p.add_argument("--json", action="store_true")
    _add_embedder_flags(p)
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser(
        "mcp",
        help="serve the tools over MCP stdio (for local editors): codeintel mcp .",
        description="Index PATH if needed (in the user cache, as serve does) and follow its "
        "new commits while speaking MCP on stdin/stdout; tools answer at once from the commit "
        "being indexed. With --store and no PATH, serve a prepared store.",
    )
    p.add_argument("source", nargs="?", help="repository path or URL (omit to serve --store as is)")
    _add_store_flag(p, required=False)
    p.add_argument("--ref", default="HEAD")
    _add_rebuild_flag(p)
    _add_embedder_flags(p)
    p.set_defaults(func=_cmd_mcp)

    p = sub.add_parser("embed-server", help="OpenAI-compatible /v1/embeddings on the local model")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default=settings_mod.DEFAULT_MODEL)
    p.set_defaults(func=_cmd_embed_server)

    p = sub.add_parser("operator", help="run the Kubernetes operator (kopf)", add_help=False)
    p.add_argument(
        "kopf_args", nargs=argparse.REMAINDER, help="operator options (--help lists them)"
    )
    p.set_defaults(func=_cmd_operator)

    p = sub.add_parser("doctor", help="check git, faiss GPUs/cuVS, the embedder")
    _add_store_flag(p, required=False)
    _add_embedder_flags(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_doctor)
    return parser


if __name__ == "__main__":
    sys.exit(main())
