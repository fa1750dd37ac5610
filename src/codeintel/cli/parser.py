"""The ``codeintel`` command line: every subcommand, its flags and its handler."""

from __future__ import annotations

import argparse

from codeintel import __version__
from codeintel.cli import commands
from codeintel.core import settings as settings_mod


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


def _add_tokens_file_flag(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument(
        "--tokens-file",
        help="JSON list of {name, sha256, repos}: each bearer token reads only its repositories "
        "(env CODEINTEL_SERVER_TOKENS_FILE; re-read on change)",
    )


def _add_store_flag(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument(
        "--store",
        required=required and not settings_mod.env_sets("store", "path"),
        help="index store directory (env CODEINTEL_STORE_PATH)",
    )


def build() -> argparse.ArgumentParser:
    """The ``codeintel`` parser: each subcommand sets ``func``, its handler in :mod:`commands`."""
    parser = argparse.ArgumentParser(
        prog="codeintel",
        description="Code intelligence for AI agents: index a repository, answer over MCP and REST.",
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
    _add_tokens_file_flag(g)
    _add_embedder_flags(p)
    p.set_defaults(func=commands.serve)

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
    _add_tokens_file_flag(p)
    p.set_defaults(func=commands.router)

    index = sub.add_parser("index", help="build, update, merge or roll back an index store")
    isub = index.add_subparsers(dest="index_command", required=True)
    for name, func, helptext in (
        ("build", commands.build, "index a repository from scratch"),
        ("update", commands.update, "incremental update to the ref's newest commit"),
        ("merge", commands.merge, "fold the secondary index and tombstones into the primary"),
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
    q.set_defaults(func=commands.rollback)

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
    p.set_defaults(func=commands.search)

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
    p.set_defaults(func=commands.mcp)

    p = sub.add_parser("embed-server", help="OpenAI-compatible /v1/embeddings on the local model")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default=settings_mod.DEFAULT_MODEL)
    p.set_defaults(func=commands.embed_server)

    p = sub.add_parser("operator", help="run the Kubernetes operator (kopf)", add_help=False)
    p.add_argument(
        "kopf_args", nargs=argparse.REMAINDER, help="operator options (--help lists them)"
    )
    p.set_defaults(func=commands.operator)

    p = sub.add_parser("doctor", help="check git, faiss GPUs/cuVS, the embedder")
    _add_store_flag(p, required=False)
    _add_embedder_flags(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=commands.doctor)
    return parser
