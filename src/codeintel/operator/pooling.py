"""Carrying out a SearchPool: its claim, its searchers (or shards and router), its status.

Each pass takes the pool's lock, re-reads it and then:

1. ensures the claim (unless ``storage.existingClaim``);
2. ensures the serving objects for the spec's shape and deletes those of the other
   shape (a pool going from 1 to N shards loses its Deployment and gains StatefulSets,
   a headless Service and a router);
3. writes the status: members and the generation each serves, ready pods, which
   shards have none (the router answers without them), conditions.

Shard StatefulSets roll one replica set at a time: a changed template is patched into
``P-r<j>`` only once every earlier replica set runs its current template with all pods
ready, so with ``replicas`` ≥ 2 every shard keeps a ready pod during an upgrade, and a
template that never becomes ready stops the rollout at the first replica set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from codeintel.core import errors
from codeintel.operator import kube, manifests, planning, poolmanifests, reconciling
from codeintel.operator import poolspec as poolspec_mod
from codeintel.operator import spec as spec_mod

POOLS = (manifests.API_VERSION, "searchpools")
STATEFULSETS = ("apps/v1", "statefulsets")
PDBS = ("policy/v1", "poddisruptionbudgets")
url = reconciling.url


def lock_key(name: str) -> str:
    """Key of a pool's lock in the shared table (CodeIndex names hold no ``/``)."""
    return f"searchpool/{name}"


async def reconcile_pool(
    ctx: reconciling.Context, namespace: str, name: str, logger: kube.Logger
) -> None:
    """One pass over SearchPool ``namespace/name``; raises ``ConfigError`` for a bad spec."""
    async with ctx.lock(namespace, lock_key(name)):
        live = await reconciling.read_live(ctx, POOLS, namespace, name)
        if live is None:
            return
        body, status, observed = live
        try:
            spec_mod.parse_pool_name(name, "metadata.name")
            spec = poolspec_mod.parse(body.get("spec") or {})
        except errors.ConfigError as e:
            conditions = planning.set_condition(
                status.get("conditions") or [],
                "Degraded",
                True,
                "InvalidSpec",
                str(e),
                observed,
                planning.now(),
            )
            await _patch_status(ctx, body, {"conditions": conditions})
            raise
        await ensure_claim(ctx, body, spec)
        if spec.sharded:
            await ensure_sharded(ctx, body, spec, logger)
        else:
            await ensure_unsharded(ctx, body, spec)
        await _patch_status(ctx, body, await observe(ctx, body, spec, status, observed))


async def ensure_claim(
    ctx: reconciling.Context, body: Mapping[str, Any], spec: poolspec_mod.SearchPoolSpec
) -> None:
    """Create the pool's claim unless the spec names one; never patched (see ensure_storage)."""
    if spec.existing_claim:
        return
    pvc = poolmanifests.render_pvc(body, spec)
    namespace, claim = body["metadata"]["namespace"], pvc["metadata"]["name"]
    existing = await ctx.client.get(url(reconciling.PVCS, namespace, claim))
    if existing is None:
        await reconciling.create_or_adopt(ctx, url(reconciling.PVCS, namespace), pvc)
    elif not existing["metadata"].get("ownerReferences"):
        # Kept from a deleted pool of the same name: its stores are reused.
        owners = {"metadata": {"ownerReferences": pvc["metadata"]["ownerReferences"]}}
        await ctx.client.patch(url(reconciling.PVCS, namespace, claim), owners)


async def _apply(
    ctx: reconciling.Context, kind: tuple[str, str], manifest: Mapping[str, Any]
) -> dict[str, Any]:
    """Merge-patch ``manifest`` over the object of its name, or create it."""
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    patched = await ctx.client.patch(url(kind, namespace, name), manifest)
    if patched is not None:
        return patched
    return await reconciling.create_or_adopt(ctx, url(kind, namespace), manifest)


async def ensure_unsharded(
    ctx: reconciling.Context, body: Mapping[str, Any], spec: poolspec_mod.SearchPoolSpec
) -> None:
    """Shards 1: a searcher Deployment behind the pool's Service; no StatefulSet, no router."""
    searchpool = poolmanifests.Pool(body, spec, ctx.settings)
    pool, namespace = searchpool.name, searchpool.namespace
    searchers = poolmanifests.searchers_name(pool)
    await _apply(ctx, reconciling.DEPLOYMENTS, poolmanifests.render_searchers(searchpool))
    budget = poolmanifests.render_disruption_budget(body, searchers, poolmanifests.SEARCHER)
    await _apply(ctx, PDBS, budget)
    await _apply(ctx, reconciling.SERVICES, poolmanifests.render_service(searchpool))
    for replica_set in await _replica_sets(ctx, namespace, pool):
        await ctx.client.delete(url(STATEFULSETS, namespace, replica_set["metadata"]["name"]))
    shards, router = poolmanifests.shards_service_name(pool), poolmanifests.router_name(pool)
    for kind, name in (
        (reconciling.SERVICES, shards),
        (PDBS, shards),
        (reconciling.DEPLOYMENTS, router),
        (PDBS, router),
    ):
        await ctx.client.delete(url(kind, namespace, name))


async def ensure_sharded(
    ctx: reconciling.Context,
    body: Mapping[str, Any],
    spec: poolspec_mod.SearchPoolSpec,
    logger: kube.Logger,
) -> None:
    """Shards N > 1: headless Service, one StatefulSet per replica set (rolled one at a
    time), the router and the pool's Service in front of it."""
    searchpool = poolmanifests.Pool(body, spec, ctx.settings)
    pool, namespace = searchpool.name, searchpool.namespace
    shards, router = poolmanifests.shards_service_name(pool), poolmanifests.router_name(pool)
    await _apply(ctx, reconciling.SERVICES, poolmanifests.render_shards_service(body, ctx.settings))
    budget = poolmanifests.render_disruption_budget(body, shards, poolmanifests.SHARD)
    await _apply(ctx, PDBS, budget)
    existing = {s["metadata"]["name"]: s for s in await _replica_sets(ctx, namespace, pool)}
    earlier_settled = True
    for replica in range(spec.replicas):
        manifest = poolmanifests.render_replica_set(searchpool, replica)
        name = manifest["metadata"]["name"]
        current = existing.pop(name, None)
        if current is None:
            await reconciling.create_or_adopt(ctx, url(STATEFULSETS, namespace), manifest)
            earlier_settled = False
            continue
        wanted = manifest["metadata"]["annotations"][poolmanifests.TEMPLATE_HASH_ANNOTATION]
        annotations = current["metadata"].get("annotations") or {}
        if annotations.get(poolmanifests.TEMPLATE_HASH_ANNOTATION) != wanted:
            if earlier_settled:
                logger.info("Rolling StatefulSet %s to template %s", name, wanted)
                await _apply(ctx, STATEFULSETS, manifest)
            else:
                logger.info("StatefulSet %s waits for the replica sets before it to roll", name)
            earlier_settled = False
            continue
        earlier_settled = earlier_settled and settled(current)
    for name in existing:
        logger.info("Deleting StatefulSet %s: spec.replicas is %d", name, spec.replicas)
        await ctx.client.delete(url(STATEFULSETS, namespace, name))
    await _apply(ctx, reconciling.DEPLOYMENTS, poolmanifests.render_router(searchpool))
    budget = poolmanifests.render_disruption_budget(body, router, poolmanifests.ROUTER)
    await _apply(ctx, PDBS, budget)
    await _apply(ctx, reconciling.SERVICES, poolmanifests.render_service(searchpool))
    searchers = poolmanifests.searchers_name(pool)
    await ctx.client.delete(url(reconciling.DEPLOYMENTS, namespace, searchers))
    await ctx.client.delete(url(PDBS, namespace, searchers))


def settled(statefulset: Mapping[str, Any]) -> bool:
    """The StatefulSet controller has rolled out the current template and every pod is ready."""
    meta, status = statefulset.get("metadata") or {}, statefulset.get("status") or {}
    wanted = int((statefulset.get("spec") or {}).get("replicas") or 0)
    update_revision = status.get("updateRevision")
    return (
        int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
        and int(status.get("updatedReplicas") or 0) >= wanted
        and int(status.get("readyReplicas") or 0) >= wanted
        and (not update_revision or status.get("currentRevision") == update_revision)
    )


async def _replica_sets(
    ctx: reconciling.Context, namespace: str, pool: str
) -> list[dict[str, Any]]:
    selector = poolmanifests.selector_labels(pool, poolmanifests.SHARD)
    return await ctx.client.list(url(STATEFULSETS, namespace), selector)


async def observe(
    ctx: reconciling.Context,
    body: Mapping[str, Any],
    spec: poolspec_mod.SearchPoolSpec,
    status: Mapping[str, Any],
    observed: int,
) -> dict[str, Any]:
    """The status patch: members, ready pods and shards, conditions."""
    pool, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    members = await member_entries(ctx, namespace, pool)
    router_ready = 0
    if spec.sharded:
        ready_pods = await ready_shard_pods(ctx, namespace, pool, spec)
        ready = sum(ready_pods.values())
        missing = [shard for shard in range(spec.shards) if not ready_pods.get(shard)]
        router = await ctx.client.get(
            url(reconciling.DEPLOYMENTS, namespace, poolmanifests.router_name(pool))
        )
        router_ready = int(((router or {}).get("status") or {}).get("readyReplicas") or 0)
    else:
        deployment = await ctx.client.get(
            url(reconciling.DEPLOYMENTS, namespace, poolmanifests.searchers_name(pool))
        )
        ready = int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0)
        missing = [] if ready else [0]
    answering = len(missing) < spec.shards and (router_ready > 0 or not spec.sharded)
    moment = planning.now()
    if answering:
        ready_reason, ready_message = (
            "Serving",
            f"{spec.shards - len(missing)} of {spec.shards} shards serve",
        )
    elif spec.sharded and router_ready == 0 and len(missing) < spec.shards:
        ready_reason, ready_message = "RouterUnavailable", "no router pod is ready"
    else:
        ready_reason, ready_message = "NoShardReady", "no searcher pod is ready"
    conditions = planning.set_condition(
        status.get("conditions") or [],
        "Ready",
        answering,
        ready_reason,
        ready_message,
        observed,
        moment,
    )
    if missing and answering:
        degraded = (
            True,
            "ShardsUnavailable",
            f"shards {', '.join(map(str, missing))} of {spec.shards} have no ready searcher pod: "
            "answers name them and are marked partial",
        )
    elif not answering:
        degraded = (True, ready_reason, ready_message)
    else:
        degraded = (False, "AllShardsServing", "")
    conditions = planning.set_condition(conditions, "Degraded", *degraded, observed, moment)
    return {
        "observedGeneration": observed,
        "shards": spec.shards,
        "replicas": spec.shards * spec.replicas,
        "readyReplicas": ready,
        "readyShards": spec.shards - len(missing),
        "unavailableShards": missing,
        "routerReadyReplicas": router_ready if spec.sharded else None,
        "service": poolmanifests.service_name(pool),
        "claim": poolmanifests.claim_name(pool, spec),
        "stores": len(members),
        "members": members,
        "conditions": conditions,
    }


async def member_entries(
    ctx: reconciling.Context, namespace: str, pool: str
) -> list[dict[str, Any]]:
    """Every CodeIndex of the namespace naming ``pool``, with what its store serves there."""
    entries = []
    for index in await ctx.client.list(url(reconciling.CODEINDEXES, namespace), {}):
        searcher = (index.get("spec") or {}).get("searcher") or {}
        if searcher.get("pool") != pool:
            continue
        status = index.get("status") or {}
        in_pool = status.get("pool") == pool
        entries.append(
            {
                "name": index["metadata"]["name"],
                "phase": str(status.get("phase") or "Pending"),
                "generation": str(status.get("generation") or "") if in_pool else "",
                "commit": str(status.get("commit") or "") if in_pool else "",
                "vectors": int((status.get("vectors") or {}).get("total") or 0) if in_pool else 0,
            }
        )
    return sorted(entries, key=lambda entry: entry["name"])


async def ready_shard_pods(
    ctx: reconciling.Context, namespace: str, pool: str, spec: poolspec_mod.SearchPoolSpec
) -> dict[int, int]:
    """Ready pods per shard, counting only pods of the replica sets and shards the spec wants."""
    counts: dict[int, int] = {}
    selector = poolmanifests.selector_labels(pool, poolmanifests.SHARD)
    for pod in await ctx.client.list(url(reconciling.PODS, namespace), selector):
        labels = pod["metadata"].get("labels") or {}
        try:
            shard = int(
                labels.get(poolmanifests.POD_INDEX_LABEL)
                or pod["metadata"]["name"].rsplit("-", 1)[1]
            )
            replica = int(labels.get(poolmanifests.REPLICA_SET_LABEL, "-1"))
        except (IndexError, ValueError):
            continue
        if not (0 <= shard < spec.shards and 0 <= replica < spec.replicas):
            continue
        conditions = (pod.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            counts[shard] = counts.get(shard, 0) + 1
    return counts


async def delete_pool_owned(
    ctx: reconciling.Context, body: Mapping[str, Any], logger: kube.Logger
) -> None:
    """Delete the serving objects; the claim goes only with ``storage.deleteWithPool``,
    otherwise its owner reference is dropped first so the garbage collector keeps it."""
    pool, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    try:
        spec: poolspec_mod.SearchPoolSpec | None = poolspec_mod.parse(body.get("spec") or {})
    except errors.ConfigError:
        spec = None
    async with ctx.lock(namespace, lock_key(pool)):
        for replica_set in await _replica_sets(ctx, namespace, pool):
            await ctx.client.delete(url(STATEFULSETS, namespace, replica_set["metadata"]["name"]))
        for kind, name in (
            (reconciling.DEPLOYMENTS, poolmanifests.router_name(pool)),
            (reconciling.DEPLOYMENTS, poolmanifests.searchers_name(pool)),
            (reconciling.SERVICES, poolmanifests.shards_service_name(pool)),
            (reconciling.SERVICES, poolmanifests.service_name(pool)),
            (PDBS, poolmanifests.router_name(pool)),
            (PDBS, poolmanifests.searchers_name(pool)),
            (PDBS, poolmanifests.shards_service_name(pool)),
        ):
            await ctx.client.delete(url(kind, namespace, name))
        if spec is not None and not spec.existing_claim:
            claim = poolmanifests.claim_name(pool, spec)
            if spec.delete_with_pool:
                if await ctx.client.delete(url(reconciling.PVCS, namespace, claim)):
                    logger.info("Deleted the pool claim %s and every store on it", claim)
            elif (
                await ctx.client.patch(
                    url(reconciling.PVCS, namespace, claim), {"metadata": {"ownerReferences": None}}
                )
                is not None
            ):
                logger.info("Kept the pool claim %s (storage.deleteWithPool is false)", claim)
    ctx.locks.pop((namespace, lock_key(pool)), None)


async def _patch_status(
    ctx: reconciling.Context, body: Mapping[str, Any], patch: Mapping[str, Any]
) -> None:
    meta = body["metadata"]
    answer = await ctx.client.patch(
        url(POOLS, meta["namespace"], meta["name"], "status"), {"status": patch}
    )
    if answer is None:
        raise kube.ApiError("PATCH", meta["name"], 404, "the SearchPool was deleted")
