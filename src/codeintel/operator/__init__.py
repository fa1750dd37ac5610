"""The Kubernetes operator: kopf handlers for CodeIndex resources and the manifests they render.

``codeintel operator`` calls :func:`run`. For every CodeIndex the operator owns
a store PVC, at most one indexer Job at a time (``codeintel index
build|update|merge``), a searcher Deployment and its Service; it reads each
Job's result from its pod's termination message and rolls the searchers to the
new generation. It imports no FAISS and no torch: the indexer image does the
heavy work.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from codeintel.operator.handlers import build_registry
from codeintel.operator.settings import OperatorSettings

__all__ = ["OperatorSettings", "build_registry", "run"]

logger = logging.getLogger(__name__)


def run(
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
    if operator_settings.log_format == "json":
        kopf.configure(log_format=kopf.LogFormat.JSON, verbose=False)
    else:
        kopf.configure(log_format=kopf.LogFormat.PLAIN, verbose=False)
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
