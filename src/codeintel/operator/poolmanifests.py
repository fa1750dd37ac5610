"""The objects a SearchPool owns, rendered as plain dicts (docs/architecture.md, "Search pools").

For pool ``P`` in namespace ``NS``:

* ``P-pool``: the ReadWriteMany claim (unless ``storage.existingClaim``), holding
  every member's store at ``<namespace>/<name>/``;
* ``P``: the Service agents connect to (REST and ``/mcp``);
* shards 1: ``P-searchers``, a Deployment whose pods all serve every store;
* shards N > 1: ``P-r0`` … ``P-r<replicas-1>``, one StatefulSet per replica set with N
  pods each (pod ``P-r<j>-<s>`` serves shard ``s``, its ordinal), all behind the headless
  Service ``P-shards``, and ``P-router``, a Deployment fanning requests out to them.

Rendering is pure, like :mod:`codeintel.operator.manifests`, so every object is
validated against the Kubernetes schemas without a cluster.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from codeintel.operator import jobs, manifests
from codeintel.operator import poolspec as poolspec_mod
from codeintel.operator import settings as settings_mod

KIND = "SearchPool"
POOL_LABEL = jobs.POOL_LABEL
REPLICA_SET_LABEL = f"{manifests.GROUP}/replica-set"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
TEMPLATE_HASH_ANNOTATION = f"{manifests.GROUP}/template-hash"
POOL_VOLUME = "pool"
SEARCHER, SHARD, ROUTER = "pool-searcher", "pool-shard", "pool-router"


@dataclasses.dataclass(frozen=True)
class Pool:
    """The SearchPool a renderer draws: the object as read, its parsed spec, and the
    operator's settings (ports, mount path, resources, cluster domain)."""

    body: Mapping[str, Any]
    spec: poolspec_mod.SearchPoolSpec
    settings: settings_mod.OperatorSettings

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"]["namespace"])


def service_name(pool: str) -> str:
    """The Service agents connect to: the pool's own name."""
    return pool


def claim_name(pool: str, spec: poolspec_mod.SearchPoolSpec) -> str:
    """The claim holding the stores: the user's existing claim, or ``<pool>-pool``."""
    return spec.existing_claim or f"{pool}-pool"


def searchers_name(pool: str) -> str:
    """The searcher Deployment of an unsharded pool."""
    return f"{pool}-searchers"


def replica_set_name(pool: str, replica: int) -> str:
    """StatefulSet of replica set ``replica``; its pod ``<it>-<s>`` serves shard ``s``."""
    return f"{pool}-r{replica}"


def shards_service_name(pool: str) -> str:
    """The headless Service governing the shard StatefulSets."""
    return f"{pool}-shards"


def router_name(pool: str) -> str:
    """The router Deployment."""
    return f"{pool}-router"


def shards_service_host(pool: str, namespace: str, settings: settings_mod.OperatorSettings) -> str:
    """Fully qualified DNS name of the headless Service, as the router resolves it."""
    return f"{shards_service_name(pool)}.{namespace}.svc.{settings.cluster_domain}"


def member_store(
    pool: str,
    spec: poolspec_mod.SearchPoolSpec,
    namespace: str,
    index_name: str,
    settings: settings_mod.OperatorSettings,
) -> jobs.StoreLocation:
    """Where a member CodeIndex keeps its store: ``<pool mount>/<namespace>/<name>``."""
    mount = settings.pool_mount_path
    return jobs.StoreLocation(
        claim=claim_name(pool, spec),
        mount_path=mount,
        store_path=f"{mount}/{namespace}/{index_name}",
        pool=pool,
    )


def labels(pool: str, component: str) -> dict[str, str]:
    """Labels on everything the operator creates for SearchPool ``pool``."""
    return {
        "app.kubernetes.io/name": "codeintel",
        "app.kubernetes.io/instance": pool,
        manifests.COMPONENT_LABEL: component,
        "app.kubernetes.io/managed-by": manifests.MANAGED_BY,
        POOL_LABEL: pool,
    }


def selector_labels(pool: str, component: str) -> dict[str, str]:
    """The immutable subset of :func:`labels` that selectors match on (always these two keys,
    so a merge patch of the front Service's selector replaces both values)."""
    return {POOL_LABEL: pool, manifests.COMPONENT_LABEL: component}


def metadata(body: Mapping[str, Any], name: str, component: str) -> dict[str, Any]:
    """Metadata of an owned object: name, namespace, labels, owner reference."""
    return {
        "name": name,
        "namespace": body["metadata"]["namespace"],
        "labels": labels(body["metadata"]["name"], component),
        "ownerReferences": [manifests.owner_reference(body, KIND)],
    }


def render_pvc(body: Mapping[str, Any], spec: poolspec_mod.SearchPoolSpec) -> manifests.Manifest:
    """The pool's ReadWriteMany claim (only when the spec names no existing claim)."""
    meta = metadata(body, claim_name(body["metadata"]["name"], spec), "pool-store")
    return manifests.claim(meta, "ReadWriteMany", spec.storage_size, spec.storage_class)


def render_service(pool: Pool) -> manifests.Manifest:
    """The Service agents use: in front of the router, or of the searchers when unsharded."""
    target = ROUTER if pool.spec.sharded else SEARCHER
    return manifests.service(
        metadata(pool.body, service_name(pool.name), "pool"),
        selector_labels(pool.name, target),
        [("http", pool.settings.searcher_port)],
        {"type": pool.spec.service_type},
    )


def render_shards_service(
    body: Mapping[str, Any], settings: settings_mod.OperatorSettings
) -> manifests.Manifest:
    """The headless Service of the shard pods: DNS, not load balancing. Only ready pods are
    published, so a shard with no ready pod is missing from the router's view."""
    pool = body["metadata"]["name"]
    return manifests.service(
        metadata(body, shards_service_name(pool), SHARD),
        selector_labels(pool, SHARD),
        [("http", settings.searcher_port)],
        {"clusterIP": "None", "publishNotReadyAddresses": False},
    )


def _hosts(
    service: str,
    namespace: str,
    spec: poolspec_mod.SearchPoolSpec,
    settings: settings_mod.OperatorSettings,
) -> list[str]:
    """Host names REST and MCP accept: every name of the Service in cluster DNS, plus the
    spec's and the operator's (the chart's ``searcher.allowedHosts``)."""
    names = [service, f"{service}.{namespace}", f"{service}.{namespace}.svc"]
    names.append(f"{names[-1]}.{settings.cluster_domain}")
    return [
        *names,
        *dict.fromkeys(h for h in (*spec.allowed_hosts, *settings.allowed_hosts) if h not in names),
    ]


def _env(
    spec: poolspec_mod.SearchPoolSpec, hosts: list[str], *, embedder: bool
) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    if embedder:
        # Each store's manifest names its model; the endpoint embeds queries for all of them.
        env += [
            {"name": "CODEINTEL_EMBEDDER_KIND", "value": "openai"},
            {"name": "CODEINTEL_EMBEDDER_URL", "value": spec.embed_url},
        ]
        if spec.embed_api_key:
            env.append(manifests.secret_env("CODEINTEL_EMBEDDER_API_KEY", spec.embed_api_key))
    env += [
        {"name": "CODEINTEL_SERVER_ALLOWED_HOSTS", "value": ",".join(hosts)},
        {"name": "HOME", "value": "/tmp"},  # noqa: S108 - git wants a writable home
        {"name": "CODEINTEL_LOG_FORMAT", "value": "json"},
    ]
    if spec.api_token:
        env.append(manifests.secret_env("CODEINTEL_SERVER_API_TOKEN", spec.api_token))
    return env


ACCESS_VOLUME = "access-tokens"
ACCESS_MOUNT = "/etc/codeintel/access"


def front_service_account(pool: str, spec: poolspec_mod.SearchPoolSpec) -> str:
    """The ServiceAccount of the pods callers reach in ``kubernetes`` access mode; the
    chart's ClusterRoleBinding (``accessReview.serviceAccounts``) lets it create reviews."""
    return spec.router_service_account or router_name(pool)


def _with_access(
    pod: dict[str, Any], pool: str, spec: poolspec_mod.SearchPoolSpec
) -> dict[str, Any]:
    """The pod callers reach (the router, or an unsharded pool's searchers) checking who
    may read which repository: the tokens Secret as a file (re-read when the kubelet
    updates it), or TokenReview + SubjectAccessReview with the pod's own ServiceAccount."""
    container = pod["containers"][0]
    if spec.access_mode == "tokensFile" and spec.tokens_secret is not None:
        pod["volumes"].append(
            {
                "name": ACCESS_VOLUME,
                "secret": {
                    "secretName": spec.tokens_secret.name,
                    "items": [{"key": spec.tokens_secret.key, "path": "tokens.json"}],
                },
            }
        )
        container["volumeMounts"].append(
            {"name": ACCESS_VOLUME, "mountPath": ACCESS_MOUNT, "readOnly": True}
        )
        container["env"].append(
            {"name": "CODEINTEL_SERVER_TOKENS_FILE", "value": f"{ACCESS_MOUNT}/tokens.json"}
        )
    elif spec.access_mode == "kubernetes":
        pod["serviceAccountName"] = front_service_account(pool, spec)
        pod["automountServiceAccountToken"] = True
        container["env"].append({"name": "CODEINTEL_SERVER_KUBE_AUTH", "value": "true"})
    return pod


def _container(
    name: str,
    args: list[str],
    env: list[dict[str, Any]],
    resources: dict[str, Any],
    settings: settings_mod.OperatorSettings,
    *,
    mounts_pool: bool,
) -> dict[str, Any]:
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108 - an emptyDir
    if mounts_pool:
        mounts.insert(
            0, {"name": POOL_VOLUME, "mountPath": settings.pool_mount_path, "readOnly": True}
        )
    ports = [("http", settings.searcher_port)]
    return manifests.serving_container(name, args, env, resources, mounts, ports, settings)


def _pod_spec(
    container: dict[str, Any],
    spec: poolspec_mod.SearchPoolSpec,
    settings: settings_mod.OperatorSettings,
    claim: str | None,
) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if claim:
        volumes.insert(
            0,
            {"name": POOL_VOLUME, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}},
        )
    return manifests.serving_pod_spec(container, spec.searcher, volumes, settings)


def _searcher_resources(
    spec: poolspec_mod.SearchPoolSpec, settings: settings_mod.OperatorSettings
) -> dict[str, Any]:
    return manifests.resources(
        spec.searcher.resources, settings.searcher_resources, spec.searcher.gpu
    )


def searcher_args(settings: settings_mod.OperatorSettings) -> list[str]:
    """``codeintel serve`` over every store under the pool volume."""
    return ["serve", "--stores-root", settings.pool_mount_path, *_listen_args(settings)]


def _listen_args(settings: settings_mod.OperatorSettings) -> list[str]:
    """Every interface of the pod, on the searcher port."""
    host = "0.0.0.0"  # noqa: S104 - a pod listens on its own interface
    return ["--host", host, "--port", str(settings.searcher_port)]


def render_searchers(pool: Pool) -> manifests.Manifest:
    """The searcher Deployment of an unsharded pool: every pod serves every store."""
    spec, settings = pool.spec, pool.settings
    args, resources = searcher_args(settings), _searcher_resources(spec, settings)
    pod = _front_pod(pool, "searcher", args, resources, claim_name(pool.name, spec))
    return _deployment(pool, searchers_name(pool.name), SEARCHER, spec.replicas, pod)


def render_replica_set(pool: Pool, replica: int) -> manifests.Manifest:
    """StatefulSet ``replica``: ``shards`` pods, pod ``s`` serving shard ``s``.

    The shard index is the pod's ordinal, read from the ``apps.kubernetes.io/pod-index``
    label through the downward API and expanded into the args by the kubelet."""
    body, spec, settings = pool.body, pool.spec, pool.settings
    headless = shards_service_name(pool.name)
    hosts = _hosts(headless, pool.namespace, spec, settings)
    env = [
        {
            "name": "CODEINTEL_SHARD_INDEX",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{POD_INDEX_LABEL}']"}},
        },
        *_env(spec, hosts, embedder=True),
    ]
    args = [
        *searcher_args(settings),
        "--shard-index",
        "$(CODEINTEL_SHARD_INDEX)",
        "--shards",
        str(spec.shards),
    ]
    container = _container(
        "searcher", args, env, _searcher_resources(spec, settings), settings, mounts_pool=True
    )
    pod = _pod_spec(container, spec, settings, claim_name(pool.name, spec))
    # Replicas of one shard (same ordinal, different StatefulSets) on different nodes.
    pod["topologySpreadConstraints"] = [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector_labels(pool.name, SHARD)},
            "matchLabelKeys": [POD_INDEX_LABEL],
        }
    ]
    selector = {**selector_labels(pool.name, SHARD), REPLICA_SET_LABEL: str(replica)}
    manifest: manifests.Manifest = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(body, replica_set_name(pool.name, replica), SHARD),
        "spec": {
            "replicas": spec.shards,
            "serviceName": headless,
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": {**labels(pool.name, SHARD), REPLICA_SET_LABEL: str(replica)}
                },
                "spec": pod,
            },
        },
    }
    manifest["metadata"]["labels"][REPLICA_SET_LABEL] = str(replica)
    manifest["metadata"]["annotations"] = {TEMPLATE_HASH_ANNOTATION: template_hash(manifest)}
    return manifest


def template_hash(manifest: Mapping[str, Any]) -> str:
    """A digest of what the operator renders in a spec, so it can tell whether an object
    still needs patching without diffing against the API server's defaults."""
    text = json.dumps(manifest["spec"], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def router_args(pool: Pool) -> list[str]:
    """``codeintel router`` pointed at every shard pod: pod ``s`` of replica set ``r`` is
    ``<pool>-r<r>-<s>.<headless service>``, stable DNS a StatefulSet gives its pods."""
    settings = pool.settings
    host = shards_service_host(pool.name, pool.namespace, settings)
    pod = f"{replica_set_name(pool.name, 0)[:-1]}{{r}}-{{i}}"
    return [
        "router",
        *_listen_args(settings),
        "--shard-url",
        f"http://{pod}.{host}:{settings.searcher_port}",
        "--shards",
        str(pool.spec.shards),
        "--shard-replicas",
        str(pool.spec.replicas),
    ]


def render_router(pool: Pool) -> manifests.Manifest:
    """The router Deployment: stateless, no volume, same image as the searchers."""
    spec = pool.spec
    resources = manifests.resources(spec.router_resources, pool.settings.router_resources, False)
    pod = _front_pod(pool, "router", router_args(pool), resources, None)
    return _deployment(pool, router_name(pool.name), ROUTER, spec.router_replicas, pod)


def _front_pod(
    pool: Pool,
    name: str,
    args: list[str],
    resources: dict[str, Any],
    claim: str | None,
) -> dict[str, Any]:
    """The pod of a Deployment behind the pool's Service (the router, or unsharded searchers):
    it embeds queries, checks access, and mounts the pool volume when ``claim`` names it."""
    spec, settings = pool.spec, pool.settings
    hosts = _hosts(service_name(pool.name), pool.namespace, spec, settings)
    env = _env(spec, hosts, embedder=True)
    container = _container(name, args, env, resources, settings, mounts_pool=claim is not None)
    return _with_access(_pod_spec(container, spec, settings, claim), pool.name, spec)


def _deployment(
    pool: Pool, name: str, component: str, replicas: int, pod: dict[str, Any]
) -> manifests.Manifest:
    """A Deployment of the pool's ``component`` pods that surges before it retires one."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(pool.body, name, component),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(pool.name, component)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {"metadata": {"labels": labels(pool.name, component)}, "spec": pod},
        },
    }


def render_disruption_budget(
    body: Mapping[str, Any], name: str, component: str
) -> manifests.Manifest:
    """At most one of the ``component`` pods evicted at a time (node drains, autoscaler):
    with 2+ replicas per shard a drain never empties a shard. Unhealthy pods may always be
    evicted, so a crash-looping pod never blocks a drain."""
    pool = body["metadata"]["name"]
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(body, name, component),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(pool, component)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
