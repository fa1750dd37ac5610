"""The Kubernetes operator: kopf handlers for CodeIndex and SearchPool resources and their manifests.

``codeintel operator`` calls :func:`run`. For every CodeIndex the operator owns
a store PVC, at most one indexer Job at a time (``codeintel index
build|update|merge``), a searcher Deployment and its Service; it reads each
Job's result from its pod's termination message and rolls the searchers to the
new generation. A SearchPool owns a shared volume and one searcher fleet (shard
StatefulSets and a router when sharded) for the CodeIndexes that name it. It
imports no FAISS and no torch: the indexer image does the heavy work.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from codeintel.operator.handlers import build_registry
from codeintel.operator.settings import OperatorSettings

__all__ = ["OperatorSettings", "build_registry", "parse_args", "run", "serve"]

logger = logging.getLogger(__name__)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Options of ``codeintel operator`` (the names follow ``kopf run``)."""
    parser = argparse.ArgumentParser(prog="codeintel operator", description=run.__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        dest="namespaces",
        help="watch this namespace (repeatable; globs allowed)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch the whole cluster (default)"
    )
    parser.add_argument("--peering", help="ClusterKopfPeering name shared by the replicas")
    parser.add_argument("--standalone", action="store_true", help="single replica: no peering")
    parser.add_argument("--liveness", help="health endpoint, e.g. http://0.0.0.0:8081/healthz")
    return parser.parse_args(list(argv))


def run(argv: Sequence[str] = ()) -> None:
    """Run the operator until SIGTERM/SIGINT, with ``codeintel operator`` options (see :func:`serve`).

    ``[--namespace NS ... | --all-namespaces] [--peering NAME] [--standalone] [--liveness URL]``
    """
    args = parse_args(argv)
    serve(
        namespaces=args.namespaces,
        peering=args.peering,
        standalone=args.standalone,
        liveness=args.liveness,
    )


def serve(
    namespaces: Sequence[str] = (),
    peering: str | None = None,
    standalone: bool = False,
    liveness: str | None = None,
    settings: OperatorSettings | None = None,
) -> None:
    """Run the operator until it is stopped (SIGTERM/SIGINT); blocks.

    ``namespaces`` limits it to those namespaces (globs allowed, as in kopf); empty
    watches the whole cluster. ``peering`` names the ClusterKopfPeering object that
    keeps more than one replica from acting at once; ``standalone`` skips peering
    (a single replica). ``liveness`` serves kopf's health endpoint, e.g.
    ``http://0.0.0.0:8081/healthz``. ``settings`` defaults to
    :meth:`OperatorSettings.from_env` (``CODEINTEL_OPERATOR_*``).
    """
    import kopf  # imported here: `codeintel --help` need not load kopf and aiohttp

    operator_settings = settings or OperatorSettings.from_env()
    # kopf.configure adds its own root handler: the CLI's would print every line twice.
    logging.getLogger().handlers.clear()
    if operator_settings.log_format == "json":
        kopf.configure(log_format=kopf.LogFormat.JSON, verbose=False)
    else:
        kopf.configure(log_format=kopf.LogFormat.FULL, verbose=False)
    clusterwide = not namespaces
    logger.info(
        "Starting the codeintel operator (%s)",
        "cluster-wide" if clusterwide else "namespaces " + ", ".join(namespaces),
    )
    kopf.run(
        registry=build_registry(operator_settings),
        clusterwide=clusterwide,
        namespaces=list(namespaces),
        peering_name=peering,
        standalone=standalone or None,
        liveness_endpoint=liveness,
    )
