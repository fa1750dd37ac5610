"""Removing a former member's store from a SearchPool's volume, so the pool stops serving it.

A CodeIndex leaves a pool (its rebuild elsewhere succeeded) or is deleted: its store
at ``<pool mount>/<namespace>/<name>`` would otherwise stay, and the pool's searchers
would keep answering for a repository nobody indexes any more. A small Job, owned by
the pool (which outlives the CodeIndex), renames the store into ``<mount>/.trash`` —
searchers see it vanish at once, never half-deleted — and then deletes it. A Job
writing to the same place waits until that Job has finished.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from codeintel.core import errors
from codeintel.operator import jobs, kube, manifests, poolmanifests
from codeintel.operator import poolspec as poolspec_mod
from codeintel.operator import settings as settings_mod

POOLS = (manifests.API_VERSION, "searchpools")
JOBS = ("batch/v1", "jobs")

PRUNE = "pool-prune"
PRUNE_SCRIPT = (
    'set -eu; store="$1"; trash="$2/.trash"; '
    '[ -e "$store" ] || exit 0; mkdir -p "$trash"; '
    'moved="$trash/$(basename "$(dirname "$store")")-$(basename "$store")-$(date +%s)"; '
    'mv "$store" "$moved"; rm -rf "$moved"'
)


def prune_job_name(index_name: str, key: str) -> str:
    """``<index>-prune-<digest of key>``, at most 63 characters; ``key`` names what is pruned
    (CodeIndex uid, pool, abandoned generation), so each move or deletion gets its own Job."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    suffix = f"-prune-{digest}"
    return manifests.truncate_name(index_name, 63 - len(suffix)) + suffix


def render_prune_job(
    body: Mapping[str, Any],
    spec: poolspec_mod.SearchPoolSpec,
    settings: settings_mod.OperatorSettings,
    index_name: str,
    key: str,
    store_namespace: str,
) -> manifests.Manifest:
    """A Job that removes a former member's store from the pool volume: it is first renamed
    into ``<mount>/.trash`` (searchers see the store vanish at once, never half-deleted),
    then deleted. Owned by the pool, which outlives the CodeIndex it cleans up after."""
    pool = body["metadata"]["name"]
    mount = settings.pool_mount_path
    store = f"{mount}/{store_namespace}/{index_name}"
    job_labels = {
        **poolmanifests.labels(pool, PRUNE),
        manifests.INDEX_LABEL: manifests.truncate_name(index_name),
    }
    meta = poolmanifests.metadata(body, prune_job_name(index_name, key), PRUNE)
    meta["labels"] = job_labels
    container = {
        "name": "prune",
        # The searcher image (Debian slim: sh and coreutils) is small and already on pool nodes.
        "image": settings.searcher_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["sh", "-c", PRUNE_SCRIPT, "prune", store, mount],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "volumeMounts": [{"name": poolmanifests.POOL_VOLUME, "mountPath": mount}],
        "securityContext": manifests.container_security_context(),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": 3,
            "activeDeadlineSeconds": 3600,
            "ttlSecondsAfterFinished": settings.job_ttl_seconds_after_finished,
            "template": {
                "metadata": {"labels": job_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": manifests.pod_security_context(settings),
                    "containers": [container],
                    "volumes": [
                        {
                            "name": poolmanifests.POOL_VOLUME,
                            "persistentVolumeClaim": {
                                "claimName": poolmanifests.claim_name(pool, spec)
                            },
                        }
                    ],
                    "automountServiceAccountToken": False,
                },
            },
        },
    }


async def prune_store(
    client: kube.KubeClient,
    settings: settings_mod.OperatorSettings,
    body: Mapping[str, Any],
    pool_name: str,
    generation: str,
    logger: kube.Logger,
) -> None:
    """Start the Job removing CodeIndex ``body``'s store (last at ``generation``) from
    SearchPool ``pool_name``; a pool that is gone takes its volume's fate with it."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    pool = await client.get_live(kube.path(*POOLS, namespace, pool_name))
    if pool is None:
        logger.warning("SearchPool %s is gone: its copy of %s is not removed", pool_name, name)
        return
    try:
        pool_spec = poolspec_mod.parse(pool.get("spec") or {})
    except errors.ConfigError as e:
        logger.warning("SearchPool %s: cannot remove the store of %s: %s", pool_name, name, e)
        return
    key = f"{body['metadata'].get('uid', '')}/{pool_name}/{generation}"
    manifest = render_prune_job(pool, pool_spec, settings, name, key, namespace)
    try:
        await client.create(kube.path(*JOBS, namespace), manifest)
    except kube.ConflictError:
        return  # started already (the same move, seen again)
    logger.info(
        "Removing the store of %s from SearchPool %s (Job %s)",
        name,
        pool_name,
        manifest["metadata"]["name"],
    )


async def prune_running(client: kube.KubeClient, body: Mapping[str, Any], pool: str) -> bool:
    """A prune Job of CodeIndex ``body``'s store in ``pool`` has not finished yet."""
    selector = {
        **poolmanifests.selector_labels(pool, PRUNE),
        manifests.INDEX_LABEL: manifests.truncate_name(body["metadata"]["name"]),
    }
    running = await client.list(kube.path(*JOBS, body["metadata"]["namespace"]), selector)
    return any(jobs.outcome(job)[0] is jobs.Outcome.RUNNING for job in running)
