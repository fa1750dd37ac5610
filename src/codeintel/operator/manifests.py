"""The objects a CodeIndex owns, rendered as plain dicts: store PVC, searcher Deployment, Service.

Rendering is pure — a function of the CodeIndex, its parsed spec and the
operator settings — so every manifest is unit-tested and validated against the
Kubernetes OpenAPI schemas without a cluster. Indexer Jobs live in
:mod:`codeintel.operator.jobs`; the pod pieces both share (labels, owner
reference, security context, embedder environment) are here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from codeintel.operator import settings as settings_mod
from codeintel.operator import spec as spec_mod

GROUP = "codeintel.io"
"""The API group of the CodeIndex resource, and the prefix of every label and annotation we set."""
VERSION = "v1alpha1"
PLURAL = "codeindexes"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "CodeIndex"
GENERATION_ANNOTATION = f"{GROUP}/generation"
INDEX_LABEL = f"{GROUP}/index"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY = "codeintel-operator"
GPU_RESOURCE = "nvidia.com/gpu"
STORE_VOLUME = "store"

Manifest = dict[str, Any]


def truncate_name(base: str, limit: int = 63) -> str:
    """``base`` cut to ``limit`` characters, keeping it unique with a short hash when cut."""
    if len(base) <= limit:
        return base
    digest = hashlib.sha256(base.encode()).hexdigest()[:8]
    return f"{base[: limit - 9].rstrip('-.')}-{digest}"


def claim_name(name: str, spec: spec_mod.CodeIndexSpec) -> str:
    """The PVC holding the store: the user's existing claim, or ``<name>-store``."""
    return spec.existing_claim or truncate_name(f"{name}-store", 253)


def searcher_name(name: str) -> str:
    """Name of the searcher Deployment and Service (a DNS label, so at most 63 characters)."""
    return truncate_name(f"{name}-searcher")


def labels(name: str, component: str) -> dict[str, str]:
    """Labels on everything the operator creates for CodeIndex ``name``."""
    return {
        "app.kubernetes.io/name": "codeintel",
        "app.kubernetes.io/instance": truncate_name(name),
        COMPONENT_LABEL: component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        INDEX_LABEL: truncate_name(name),
    }


def selector_labels(name: str, component: str) -> dict[str, str]:
    """The immutable subset of :func:`labels` that selectors match on."""
    return {INDEX_LABEL: truncate_name(name), COMPONENT_LABEL: component}


def owner_reference(body: Mapping[str, Any], kind: str = KIND) -> dict[str, Any]:
    """An owner reference to the CodeIndex (or a SearchPool, ``kind``), so Kubernetes
    garbage-collects what it owns."""
    meta = body["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(body: Mapping[str, Any], name: str, component: str) -> dict[str, Any]:
    """Metadata of an owned object: name, namespace, labels, owner reference."""
    return {
        "name": name,
        "namespace": body["metadata"]["namespace"],
        "labels": labels(body["metadata"]["name"], component),
        "ownerReferences": [owner_reference(body)],
    }


def resources(
    requested: Mapping[str, Any], default: Mapping[str, Any], gpu: bool
) -> dict[str, Any]:
    """The spec's resources (or the operator default), plus one GPU in requests and limits."""
    chosen = requested or default
    result: dict[str, Any] = {
        key: dict(chosen[key]) for key in ("requests", "limits") if chosen.get(key)
    }
    if gpu:
        result.setdefault("requests", {})[GPU_RESOURCE] = 1
        result.setdefault("limits", {})[GPU_RESOURCE] = 1
    return result


def pod_security_context(settings: settings_mod.OperatorSettings) -> dict[str, Any]:
    """Non-root pods whose group owns the store volume."""
    return {
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "runAsGroup": settings.run_as_user,
        "fsGroup": settings.fs_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """No privilege escalation, no capabilities, a read-only root filesystem (``/tmp`` is a volume)."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def secret_env(name: str, ref: spec_mod.SecretKey) -> dict[str, Any]:
    """An environment variable read from a Secret key."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def embedder_env(spec: spec_mod.CodeIndexSpec) -> list[dict[str, Any]]:
    """The embedder as ``CODEINTEL_EMBEDDER_*`` variables: searchers must embed queries
    with the model that built the index."""
    env: list[dict[str, Any]] = [
        {"name": "CODEINTEL_EMBEDDER_KIND", "value": "openai"},
        {"name": "CODEINTEL_EMBEDDER_URL", "value": spec.embed_url},
        {"name": "CODEINTEL_EMBEDDER_MODEL", "value": spec.embed_model},
    ]
    if spec.embed_dim:
        env.append({"name": "CODEINTEL_EMBEDDER_DIM", "value": str(spec.embed_dim)})
    if spec.embed_api_key:
        env.append(secret_env("CODEINTEL_EMBEDDER_API_KEY", spec.embed_api_key))
    return env


def store_volumes(claim: str, *, read_only: bool) -> list[dict[str, Any]]:
    """The store claim and an emptyDir for ``/tmp`` (the root filesystem is read-only)."""
    return [
        {
            "name": STORE_VOLUME,
            "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only},
        },
        {"name": "tmp", "emptyDir": {}},
    ]


def store_mounts(
    settings: settings_mod.OperatorSettings, *, read_only: bool
) -> list[dict[str, Any]]:
    """Mounts of :func:`store_volumes`."""
    return [
        {"name": STORE_VOLUME, "mountPath": settings.store_mount_path, "readOnly": read_only},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir, not the host's /tmp
    ]


def claim(meta: dict[str, Any], access_mode: str, size: str, storage_class: str | None) -> Manifest:
    """A PersistentVolumeClaim: one store (CodeIndex) or a pool's stores (SearchPool)."""
    claim_spec: dict[str, Any] = {
        "accessModes": [access_mode],
        "resources": {"requests": {"storage": size}},
    }
    if storage_class:
        claim_spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": meta,
        "spec": claim_spec,
    }


def render_pvc(body: Mapping[str, Any], spec: spec_mod.CodeIndexSpec) -> Manifest:
    """The store's PersistentVolumeClaim (only when the spec names no existing claim)."""
    meta = metadata(body, claim_name(body["metadata"]["name"], spec), "store")
    return claim(meta, spec.access_mode, spec.storage_size, spec.storage_class)


def serving_container(
    name: str,
    args: list[str],
    env: list[dict[str, Any]],
    resources: dict[str, Any],
    mounts: list[dict[str, Any]],
    ports: list[tuple[str, int]],
    settings: settings_mod.OperatorSettings,
) -> dict[str, Any]:
    """A searcher or router container: ``codeintel`` in the searcher image, named ``ports``
    (``http`` first), ready on ``/readyz``, alive on ``/healthz``, with no privilege."""
    return {
        "name": name,
        "image": settings.searcher_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["codeintel"],
        "args": args,
        "ports": [
            {"name": port_name, "containerPort": port, "protocol": "TCP"}
            for port_name, port in ports
        ],
        "env": env,
        "resources": resources,
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "http"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "volumeMounts": mounts,
        "securityContext": container_security_context(),
    }


def serving_pod_spec(
    container: dict[str, Any],
    placement: spec_mod.PodPlacement,
    volumes: list[dict[str, Any]],
    settings: settings_mod.OperatorSettings,
) -> dict[str, Any]:
    """The pod spec around one serving container, placed as the spec asks."""
    pod: dict[str, Any] = {
        "securityContext": pod_security_context(settings),
        "containers": [container],
        "volumes": volumes,
        "automountServiceAccountToken": False,
    }
    if placement.node_selector:
        pod["nodeSelector"] = dict(placement.node_selector)
    if placement.tolerations:
        pod["tolerations"] = [dict(t) for t in placement.tolerations]
    return pod


def render_service(
    body: Mapping[str, Any], spec: spec_mod.CodeIndexSpec, settings: settings_mod.OperatorSettings
) -> Manifest:
    """The Service in front of the searchers."""
    name = body["metadata"]["name"]
    return service(
        metadata(body, searcher_name(name), "searcher"),
        selector_labels(name, "searcher"),
        searcher_ports(settings),
        {"type": spec.service_type},
    )


def service(
    meta: dict[str, Any],
    selector: dict[str, str],
    ports: Iterable[tuple[str, int]],
    extra: Mapping[str, Any],
) -> Manifest:
    """A Service over the pods ``selector`` matches, one TCP port per named container port;
    ``extra`` adds to its spec (``type``, ``clusterIP``...)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            **extra,
            "selector": selector,
            "ports": [
                {"name": name, "port": port, "targetPort": name, "protocol": "TCP"}
                for name, port in ports
            ],
        },
    }


def searcher_ports(settings: settings_mod.OperatorSettings) -> list[tuple[str, int]]:
    """Named ports of a searcher: ``http`` (API, token) and ``metrics`` (Prometheus, no token)."""
    ports = [("http", settings.searcher_port)]
    if settings.searcher_metrics_port:
        ports.append(("metrics", settings.searcher_metrics_port))
    return ports


def searcher_args(settings: settings_mod.OperatorSettings) -> list[str]:
    """Args of ``codeintel`` in a searcher container (docs/architecture.md, "Commands the
    cluster runs")."""
    args = ["serve", "--store", settings.store_mount_path, "--host", "0.0.0.0"]  # noqa: S104
    return [*args, "--port", str(settings.searcher_port)]


def render_deployment(
    body: Mapping[str, Any],
    spec: spec_mod.CodeIndexSpec,
    settings: settings_mod.OperatorSettings,
    generation: str,
) -> Manifest:
    """The searcher Deployment; a new ``generation`` changes the pod template and rolls it."""
    name = body["metadata"]["name"]
    namespace = body["metadata"]["namespace"]
    service = searcher_name(name)
    # The searcher also accepts these under its cluster domain, and pod and cluster IPs.
    hosts = [service, f"{service}.{namespace}", f"{service}.{namespace}.svc"]
    hosts += [h for h in (*spec.allowed_hosts, *settings.allowed_hosts) if h not in hosts]
    env = [
        *embedder_env(spec),
        {"name": "CODEINTEL_INDEX_NPROBE", "value": str(spec.nprobe)},
        {"name": "CODEINTEL_SERVER_ALLOWED_HOSTS", "value": ",".join(hosts)},
        {"name": "HOME", "value": "/tmp"},  # noqa: S108 - git wants a writable home
        {"name": "CODEINTEL_LOG_FORMAT", "value": "json"},  # one object a line for collectors
    ]
    if spec.api_token:
        env.append(secret_env("CODEINTEL_SERVER_API_TOKEN", spec.api_token))
    if settings.searcher_metrics_port:
        env.append(
            {"name": "CODEINTEL_SERVER_METRICS_PORT", "value": str(settings.searcher_metrics_port)}
        )
    container = serving_container(
        "searcher",
        searcher_args(settings),
        env,
        resources(spec.searcher.resources, settings.searcher_resources, spec.searcher.gpu),
        store_mounts(settings, read_only=True),
        searcher_ports(settings),
        settings,
    )
    pod_spec = serving_pod_spec(
        container,
        spec.searcher,
        store_volumes(claim_name(name, spec), read_only=True),
        settings,
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(body, service, "searcher"),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector_labels(name, "searcher")},
            # A new generation never takes serving capacity away: surge first, then retire.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": labels(name, "searcher"),
                    "annotations": {GENERATION_ANNOTATION: generation},
                },
                "spec": pod_spec,
            },
        },
    }
