"""Carrying out the plan for one CodeIndex: children, the active Job, the next Job.

Each pass takes the CodeIndex's lock (the create/update handlers, its timer and
Job events may all fire at once), re-reads the object, and then:

1. finds the store: its own PVC (ensured here), or the volume of the SearchPool
   it names (a missing pool is reported as ``Degraded`` and retried at the next
   tick); once a generation exists, ensures its own searchers, or removes them
   when a pool serves its store;
2. observes the active Job — creates it if the operator stopped between
   recording and creating it, records success (new generation, searchers roll)
   or failure (``Degraded``, backoff);
3. starts the next Job that :func:`codeintel.operator.planning.next_action`
   asks for, recording it in the status *first*.

Step 3 after step 2 means a finished update whose secondary index passed the
threshold starts its merge Job in the same pass.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any, NamedTuple

from codeintel.core import errors
from codeintel.operator import jobs, kube, manifests, planning, poolmanifests, progress, pruning
from codeintel.operator import poolspec as poolspec_mod
from codeintel.operator import settings as settings_mod
from codeintel.operator import spec as spec_mod

CODEINDEXES = (manifests.API_VERSION, manifests.PLURAL)
POOLS = (manifests.API_VERSION, "searchpools")
JOBS = ("batch/v1", "jobs")
PODS = ("v1", "pods")
PVCS = ("v1", "persistentvolumeclaims")
DEPLOYMENTS = ("apps/v1", "deployments")
SERVICES = ("v1", "services")
MAX_NAME_CONFLICTS = 5


@dataclasses.dataclass(slots=True)
class Context:
    """What every handler shares, kept in kopf's memo: settings, API client, per-index locks."""

    settings: settings_mod.OperatorSettings
    client: kube.KubeClient
    locks: dict[tuple[str, str], asyncio.Lock] = dataclasses.field(default_factory=dict)
    progress: progress.Tracker = dataclasses.field(init=False)
    """Throttling and warnings of running Jobs' ``status.progress``."""

    def __post_init__(self) -> None:
        self.progress = progress.Tracker(self.settings.progress_interval_seconds)

    def lock(self, namespace: str, name: str) -> asyncio.Lock:
        """The lock serialising passes over one CodeIndex."""
        return self.locks.setdefault((namespace, name), asyncio.Lock())


def url(
    kind: tuple[str, str], namespace: str, name: str | None = None, sub: str | None = None
) -> str:
    """REST path of one of the kinds above."""
    return kube.path(kind[0], kind[1], namespace, name, sub)


class LiveObject(NamedTuple):
    """A custom object as one reconcile pass reads it, fresh under its lock."""

    body: dict[str, Any]
    status: dict[str, Any]
    """A copy of the object's status, for the pass to update."""
    observed: int
    """Its ``metadata.generation``: what a status the pass writes has observed."""


async def read_live(
    ctx: Context, kind: tuple[str, str], namespace: str, name: str
) -> LiveObject | None:
    """The object ``namespace/name`` of ``kind``; ``None`` when it is gone or being deleted."""
    body = await ctx.client.get_live(url(kind, namespace, name))
    if body is None:
        return None
    return LiveObject(body, dict(body.get("status") or {}), planning.generation_of(body))


async def reconcile(
    ctx: Context,
    namespace: str,
    name: str,
    logger: kube.Logger,
    *,
    ensure_children: bool,
) -> None:
    """One pass over CodeIndex ``namespace/name``; raises ``ConfigError`` for a bad spec."""
    async with ctx.lock(namespace, name):
        live = await read_live(ctx, CODEINDEXES, namespace, name)
        if live is None:
            return
        body, status, observed = live
        try:
            spec = spec_mod.parse(body.get("spec") or {}, ctx.settings)
        except errors.ConfigError as e:
            await _patch_status(
                ctx, body, planning.invalid_spec_patch(status, str(e), observed, planning.now())
            )
            raise
        # The volume first, always: a Job must never wait on a claim that is not coming.
        location = await store_location(ctx, body, spec, status)
        if location is None:
            return
        if not spec.pool:
            await ensure_storage(ctx, body, spec)
        if ensure_children and status.get("generation"):
            await ensure_serving(ctx, body, spec, status)
        target = JobTarget(body, spec, location)
        status = await observe_job(ctx, target, status, logger)
        await start_next_job(ctx, target, status, logger)


async def store_location(
    ctx: Context,
    body: Mapping[str, Any],
    spec: spec_mod.CodeIndexSpec,
    status: Mapping[str, Any],
) -> jobs.StoreLocation | None:
    """Where the CodeIndex's Jobs write its store; ``None`` (and ``Degraded``) when the
    SearchPool it names is missing or refused, so no Job starts until it is there."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    if not spec.pool:
        return jobs.own_store(name, spec, ctx.settings)
    observed = planning.generation_of(body)
    pool = await ctx.client.get_live(url(POOLS, namespace, spec.pool))
    if pool is None:
        message = (
            f"SearchPool {spec.pool} does not exist in namespace {namespace} (a pool serves "
            "CodeIndexes of its own namespace); looking again every "
            f"{ctx.settings.poll_interval_seconds:g}s"
        )
        await _patch_status(
            ctx, body, planning.pool_problem_patch(status, "PoolNotFound", message, observed)
        )
        return None
    try:
        pool_spec = poolspec_mod.parse(pool.get("spec") or {})
    except errors.ConfigError as e:
        message = f"SearchPool {spec.pool} has an invalid spec: {e}"
        await _patch_status(
            ctx, body, planning.pool_problem_patch(status, "PoolInvalid", message, observed)
        )
        return None
    cleared = planning.pool_found_patch(status, spec.pool, observed)
    if cleared:
        await _patch_status(ctx, body, cleared)
    return poolmanifests.member_store(spec.pool, pool_spec, namespace, name, ctx.settings)


async def ensure_serving(
    ctx: Context, body: Mapping[str, Any], spec: spec_mod.CodeIndexSpec, status: Mapping[str, Any]
) -> None:
    """Own searchers while the served generation is on the CodeIndex's own claim; none once
    it is in a pool (whose searchers find the store by themselves)."""
    if status.get("pool"):
        await remove_searchers(ctx, body)
    else:
        await ensure_searchers(ctx, body, spec, str(status["generation"]))


async def remove_searchers(ctx: Context, body: Mapping[str, Any]) -> None:
    """Delete the CodeIndex's own searcher Deployment and Service (absent ones are fine)."""
    namespace = body["metadata"]["namespace"]
    searchers = manifests.searcher_name(body["metadata"]["name"])
    await ctx.client.delete(url(DEPLOYMENTS, namespace, searchers))
    await ctx.client.delete(url(SERVICES, namespace, searchers))


async def ensure_storage(
    ctx: Context, body: Mapping[str, Any], spec: spec_mod.CodeIndexSpec
) -> None:
    """Create the store PVC unless the spec names an existing claim. Claims are never patched:
    their size and class are immutable or need the storage driver's help to change."""
    if spec.existing_claim:
        return
    pvc = manifests.render_pvc(body, spec)
    namespace = body["metadata"]["namespace"]
    existing = await ctx.client.get(url(PVCS, namespace, pvc["metadata"]["name"]))
    if existing is None:
        await create_or_adopt(ctx, url(PVCS, namespace), pvc)
    elif not existing["metadata"].get("ownerReferences"):
        # A claim kept from a deleted CodeIndex of the same name: its index is reused.
        owners = {"metadata": {"ownerReferences": pvc["metadata"]["ownerReferences"]}}
        await ctx.client.patch(url(PVCS, namespace, pvc["metadata"]["name"]), owners)


async def ensure_searchers(
    ctx: Context, body: Mapping[str, Any], spec: spec_mod.CodeIndexSpec, generation: str
) -> None:
    """Create or patch the searcher Service and Deployment for ``generation``.

    A merge patch replaces lists and merges maps, so the rendered manifest wins
    over anything it names and leaves the API server's defaults alone. A new
    generation changes the pod-template annotation, which rolls the searchers."""
    namespace = body["metadata"]["namespace"]
    for kind, manifest in (
        (SERVICES, manifests.render_service(body, spec, ctx.settings)),
        (DEPLOYMENTS, manifests.render_deployment(body, spec, ctx.settings, generation)),
    ):
        name = manifest["metadata"]["name"]
        if await ctx.client.patch(url(kind, namespace, name), manifest) is None:
            await create_or_adopt(ctx, url(kind, namespace), manifest)


class JobTarget(NamedTuple):
    """The CodeIndex whose Jobs a pass follows and starts: the object as read, its parsed
    spec, and where its Jobs write the store."""

    body: Mapping[str, Any]
    spec: spec_mod.CodeIndexSpec
    where: jobs.StoreLocation


async def observe_job(
    ctx: Context, target: JobTarget, status: dict[str, Any], logger: kube.Logger
) -> dict[str, Any]:
    """Follow the active Job to its end; returns the status as it is afterwards."""
    body, spec, where = target
    namespace = body["metadata"]["namespace"]
    observed = planning.generation_of(body)
    active = status.get("activeJob")
    if not active:
        adopted = await _find_running_job(ctx, body)
        if adopted is None:
            return status
        logger.warning("Adopting running Job %s that the status did not record", adopted["name"])
        return await _patch_status(ctx, body, {"activeJob": adopted})

    job_name = str(active["name"])
    job = await ctx.client.get(url(JOBS, namespace, job_name))
    if job is None:
        if active.get("uid"):
            # Created, then gone before we saw it end (TTL or a manual delete): retry.
            logger.warning("Job %s disappeared before it finished", job_name)
            patch = planning.failure_patch(
                status,
                "JobLost",
                f"Job {job_name} was deleted before it finished",
                ctx.settings,
                observed,
                planning.now(),
            )
            return await _patch_status(ctx, body, patch)
        # Recorded, but the operator stopped before creating it: create it now, same name.
        action = jobs.Action(str(active["action"]))
        sequence = int(status.get("jobSequence") or 0)
        if active.get("pool", "") != where.pool:
            active = {**active, "pool": where.pool}
            status = await _patch_status(ctx, body, {"activeJob": active})
        job = await create_or_adopt(
            ctx,
            url(JOBS, namespace),
            jobs.render_job(body, spec, ctx.settings, action, sequence, where),
        )
    if not active.get("uid"):
        uid = job["metadata"].get("uid", "")
        status = await _patch_status(ctx, body, {"activeJob": {**active, "uid": uid}})

    outcome, reason, message = jobs.outcome(job)
    if outcome is jobs.Outcome.RUNNING:
        return await _refresh_progress(ctx, body, status, job_name, logger)
    ctx.progress.forget(job_name)
    pods = jobs.pods_of(
        job_name, await ctx.client.list(url(PODS, namespace), {"job-name": job_name})
    )
    moment = planning.now()
    previous_pool = str(status.get("pool") or "")
    abandoned = str(status.get("generation") or "")
    if outcome is jobs.Outcome.SUCCEEDED:
        try:
            result = jobs.read_result(pods)
        except errors.IndexFormatError as e:
            logger.error("Job %s succeeded without a readable result: %s", job_name, e)
            patch = planning.failure_patch(
                status, "ResultUnreadable", str(e), ctx.settings, observed, moment
            )
            return await _patch_status(ctx, body, patch)
        logger.info(
            "Job %s succeeded: generation %s, commit %s, %d vectors (%s)",
            job_name,
            result.generation,
            result.commit[:12],
            result.total,
            result.index_type,
        )
        status = await _patch_status(
            ctx, body, planning.success_patch(status, result, spec, observed, moment)
        )
        await ensure_serving(ctx, body, spec, status)
        if previous_pool and previous_pool != (status.get("pool") or ""):
            await pruning.prune_store(
                ctx.client, ctx.settings, body, previous_pool, abandoned, logger
            )
        return status
    detail = jobs.failure_message(pods) or message or "the indexer Job failed"
    failed_action = str(active.get("action") or "")
    if jobs.current_unreadable(failed_action, pods):
        logger.warning(
            "Job %s could not read generation %s: starting a full build over it (%s)",
            job_name,
            abandoned,
            detail,
        )
        patch = planning.unreadable_patch(status, job_name, failed_action, detail, observed, moment)
        return await _patch_status(ctx, body, patch)
    logger.error("Job %s failed (%s): %s", job_name, reason, detail)
    patch = planning.failure_patch(status, reason, detail, ctx.settings, observed, moment)
    return await _patch_status(ctx, body, patch)


async def start_next_job(
    ctx: Context, target: JobTarget, status: dict[str, Any], logger: kube.Logger
) -> None:
    """Start the Job the plan asks for: status first, then the Job (idempotent by name)."""
    body, spec, where = target
    plan = planning.next_action(spec, status, planning.now())
    if plan.action is None:
        return
    if where.pool and await pruning.prune_running(ctx.client, body, where.pool):
        logger.info("Waiting for the old store in SearchPool %s to be removed", where.pool)
        return
    namespace = body["metadata"]["namespace"]
    observed = planning.generation_of(body)
    sequence = int(status.get("jobSequence") or 0)
    for _ in range(MAX_NAME_CONFLICTS):
        sequence += 1
        name = jobs.job_name(body["metadata"]["name"], plan.action, sequence)
        patch = planning.start_patch(
            status, plan, name, sequence, observed, planning.now(), pool=where.pool
        )
        status = await _patch_status(ctx, body, patch)
        manifest = jobs.render_job(body, spec, ctx.settings, plan.action, sequence, where)
        try:
            job = await create_or_adopt(ctx, url(JOBS, namespace), manifest)
        except kube.ConflictError:
            # A Job of that name belongs to someone else (a deleted CodeIndex of the same
            # name, say): take the next sequence number.
            status = await _patch_status(ctx, body, {"activeJob": None})
            continue
        logger.info("Started Job %s (%s: %s)", name, plan.action.value, plan.reason)
        await _patch_status(
            ctx, body, {"activeJob": {**patch["activeJob"], "uid": job["metadata"].get("uid", "")}}
        )
        return
    raise kube.ApiError("POST", url(JOBS, namespace), 409, "no free Job name")


async def delete_owned(
    ctx: Context,
    body: Mapping[str, Any],
    logger: kube.Logger,
) -> None:
    """Delete what the CodeIndex owns. Its PVC goes only with ``storage.deleteWithIndex``;
    otherwise the owner reference is dropped first, so Kubernetes' garbage collector keeps it."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        spec: spec_mod.CodeIndexSpec | None = spec_mod.parse(body.get("spec") or {}, ctx.settings)
    except errors.ConfigError:
        spec = None
    async with ctx.lock(namespace, name):
        for job in await ctx.client.list(
            url(JOBS, namespace), manifests.selector_labels(name, "indexer")
        ):
            await ctx.client.delete(url(JOBS, namespace, job["metadata"]["name"]))
        # Its stores in pools: the served one, and one a running Job was writing elsewhere.
        status = body.get("status") or {}
        pools = {
            str(status.get("pool") or ""),
            str((status.get("activeJob") or {}).get("pool") or ""),
        }
        for pool in sorted(pools - {""}):
            generation = str(status.get("generation") or "")
            await pruning.prune_store(ctx.client, ctx.settings, body, pool, generation, logger)
        searchers = manifests.searcher_name(name)
        await ctx.client.delete(url(DEPLOYMENTS, namespace, searchers))
        await ctx.client.delete(url(SERVICES, namespace, searchers))
        if spec is None or spec.existing_claim:
            return
        claim = url(PVCS, namespace, manifests.claim_name(name, spec))
        if spec.delete_with_index:
            if await ctx.client.delete(claim):
                logger.info("Deleted the store claim %s", manifests.claim_name(name, spec))
        elif await ctx.client.patch(claim, {"metadata": {"ownerReferences": None}}) is not None:
            logger.info(
                "Kept the store claim %s (storage.deleteWithIndex is false)",
                manifests.claim_name(name, spec),
            )
    ctx.locks.pop((namespace, name), None)


async def _refresh_progress(
    ctx: Context,
    body: Mapping[str, Any],
    status: dict[str, Any],
    job_name: str,
    logger: kube.Logger,
) -> dict[str, Any]:
    """Copy the running Job's last reported progress into the status, throttled."""
    new = await progress.refresh(ctx.client, body, status, job_name, ctx.progress, logger)
    if new is None:
        return status
    ctx.progress.wrote(job_name)
    return await _patch_status(ctx, body, {"progress": new})


async def _find_running_job(ctx: Context, body: Mapping[str, Any]) -> dict[str, Any] | None:
    """An unfinished indexer Job of this CodeIndex that the status does not know about."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    uid = body["metadata"].get("uid")
    for job in await ctx.client.list(
        url(JOBS, namespace), manifests.selector_labels(name, "indexer")
    ):
        owners = job["metadata"].get("ownerReferences") or []
        if uid and not any(owner.get("uid") == uid for owner in owners):
            continue
        if jobs.outcome(job)[0] is jobs.Outcome.RUNNING:
            labels = job["metadata"].get("labels") or {}
            return {
                "name": job["metadata"]["name"],
                "action": labels.get(jobs.ACTION_LABEL, jobs.Action.UPDATE.value),
                "pool": labels.get(jobs.POOL_LABEL, ""),
                "uid": job["metadata"].get("uid", ""),
                "startTime": job["metadata"].get("creationTimestamp")
                or planning.timestamp(planning.now()),
            }
    return None


async def create_or_adopt(
    ctx: Context, collection: str, manifest: Mapping[str, Any]
) -> dict[str, Any]:
    """Create ``manifest``; if it exists and is ours (same owner), return the existing one."""
    try:
        return await ctx.client.create(collection, manifest)
    except kube.ConflictError:
        existing = await ctx.client.get(f"{collection}/{manifest['metadata']['name']}")
        wanted = {ref["uid"] for ref in manifest["metadata"].get("ownerReferences") or []}
        owners = {
            ref.get("uid")
            for ref in (existing or {}).get("metadata", {}).get("ownerReferences") or []
        }
        if existing is None or (wanted and not wanted & owners):
            raise
        return existing


async def _patch_status(
    ctx: Context, body: Mapping[str, Any], patch: Mapping[str, Any]
) -> dict[str, Any]:
    """Merge-patch the status subresource; returns the new status."""
    meta = body["metadata"]
    answer = await ctx.client.patch(
        url(CODEINDEXES, meta["namespace"], meta["name"], "status"), {"status": patch}
    )
    if answer is None:
        raise kube.ApiError("PATCH", meta["name"], 404, "the CodeIndex was deleted")
    return dict(answer.get("status") or {})
