"""Indexer Jobs: their names, their manifests, and how their outcome is read back.

An indexer Job runs ``codeintel index build|update|merge`` against the store
volume and, when it succeeds, writes one JSON object (docs/architecture.md,
"Index job result") to ``/dev/termination-log``; Kubernetes copies it into the
pod's ``status.containerStatuses[].state.terminated.message``, where the
operator reads it. On failure the same field holds the last log lines
(``FallbackToLogsOnError``), which become the ``Degraded`` condition's message.

Job names are ``<codeindex>-<action>-<sequence>``: the sequence is kept in the
CodeIndex status and written there *before* the Job is created, so an operator
that restarts between the two steps creates the same name again — and the API
server refuses a duplicate.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from typing import Any

from codeintel.core import errors, indexresult
from codeintel.operator import manifests
from codeintel.operator import settings as settings_mod
from codeintel.operator import spec as spec_mod

CONTAINER = "indexer"
TERMINATION_LOG = "/dev/termination-log"
ACTION_LABEL = f"{manifests.GROUP}/action"
POOL_LABEL = f"{manifests.GROUP}/pool"
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")


class Action(enum.StrEnum):
    """What an indexer Job does to the store."""

    BUILD = "build"
    UPDATE = "update"
    MERGE = "merge"


class Outcome(enum.StrEnum):
    """Where a Job is, as the job controller reports it."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True, slots=True)
class StoreLocation:
    """Where an indexer Job finds a CodeIndex's store: a claim, its mount path, the store in it.

    A CodeIndex of its own mounts ``<name>-store`` (or its existing claim) at the store
    path; a member of a SearchPool mounts the pool's whole volume and keeps its store at
    ``<mount>/<namespace>/<name>`` (docs/architecture.md, "Search pools").
    """

    claim: str
    mount_path: str
    store_path: str
    pool: str = ""
    """The SearchPool holding the store; empty for a CodeIndex's own claim."""


def own_store(
    index_name: str, spec: spec_mod.CodeIndexSpec, settings: settings_mod.OperatorSettings
) -> StoreLocation:
    """The store on the CodeIndex's own claim."""
    return StoreLocation(
        claim=manifests.claim_name(index_name, spec),
        mount_path=settings.store_mount_path,
        store_path=settings.store_mount_path,
    )


def job_name(index_name: str, action: Action, sequence: int) -> str:
    """``<index>-<action>-<sequence>``, at most 63 characters (it becomes a pod label value)."""
    suffix = f"-{action.value}-{sequence:05d}"
    return manifests.truncate_name(index_name, 63 - len(suffix)) + suffix


def indexer_command(
    action: Action,
    spec: spec_mod.CodeIndexSpec,
    settings: settings_mod.OperatorSettings,
    store_path: str | None = None,
) -> tuple[list[str], list[str]]:
    """Command and args of the indexer container (docs/architecture.md, "Commands the cluster runs")."""
    store = ["--store", store_path or settings.store_mount_path]
    embedder = ["--embedder", "openai", "--embed-url", spec.embed_url]
    embedder += ["--embed-model", spec.embed_model]
    if spec.embed_dim:
        embedder += ["--embed-dim", str(spec.embed_dim)]
    result = ["--result-file", TERMINATION_LOG]
    if not spec.history:
        result.append("--no-history")
    if action is Action.BUILD:
        args = ["index", "build", spec.repo_url, *store, "--ref", spec.ref, *embedder, *result]
    elif action is Action.UPDATE:
        # The operator decides when to merge (a separate Job), so the update never does.
        args = ["index", "update", *store, "--ref", spec.ref, "--merge-threshold", "0"]
        args += [*embedder, *result]
    else:
        args = ["index", "merge", *store, *result]
    return ["codeintel"], args


def render_job(
    body: Mapping[str, Any],
    spec: spec_mod.CodeIndexSpec,
    settings: settings_mod.OperatorSettings,
    action: Action,
    sequence: int,
    location: StoreLocation | None = None,
) -> manifests.Manifest:
    """The indexer Job for ``action`` on the store at ``location`` (default: the CodeIndex's
    own claim); at most one exists per CodeIndex at a time."""
    index_name = body["metadata"]["name"]
    name = job_name(index_name, action, sequence)
    where = location or own_store(index_name, spec, settings)
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": "/tmp"},  # noqa: S108 - git writes its config under HOME
        {"name": "CODEINTEL_RESULT_FILE", "value": TERMINATION_LOG},
        {"name": "CODEINTEL_LOG_FORMAT", "value": "json"},
        *manifests.embedder_env(spec),
    ]
    if spec.credentials_secret:
        secret = spec.credentials_secret
        env.append(
            manifests.secret_env("CODEINTEL_GIT_USERNAME", spec_mod.SecretKey(secret, "username"))
        )
        env.append(
            manifests.secret_env("CODEINTEL_GIT_PASSWORD", spec_mod.SecretKey(secret, "password"))
        )
    command, args = indexer_command(action, spec, settings, where.store_path)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings.indexer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": command,
        "args": args,
        "env": env,
        "resources": manifests.resources(
            spec.indexer.resources, settings.indexer_resources, spec.indexer.gpu
        ),
        "volumeMounts": [
            {"name": manifests.STORE_VOLUME, "mountPath": where.mount_path, "readOnly": False},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - an emptyDir
        ],
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": manifests.container_security_context(),
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": manifests.pod_security_context(settings),
        "containers": [container],
        "volumes": manifests.store_volumes(where.claim, read_only=False),
        "automountServiceAccountToken": False,
    }
    if spec.indexer.node_selector:
        pod_spec["nodeSelector"] = dict(spec.indexer.node_selector)
    if spec.indexer.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.indexer.tolerations]
    job_labels = {**manifests.labels(index_name, "indexer"), ACTION_LABEL: action.value}
    if where.pool:
        job_labels[POOL_LABEL] = where.pool
    meta = manifests.metadata(body, name, "indexer")
    meta["labels"] = job_labels
    deadline = spec.indexer_active_deadline_seconds or settings.job_active_deadline_seconds
    backoff = spec.indexer_backoff_limit
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": settings.job_backoff_limit if backoff is None else backoff,
            "activeDeadlineSeconds": deadline,
            "ttlSecondsAfterFinished": settings.job_ttl_seconds_after_finished,
            "template": {"metadata": {"labels": job_labels}, "spec": pod_spec},
            # An unreadable live generation fails every retry the same way: end the Job at
            # once, and the operator starts the build that writes over it.
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "In",
                            "values": [errors.CurrentUnreadableError.exit_code],
                        },
                    }
                ]
            },
        },
    }


def outcome(job: Mapping[str, Any]) -> tuple[Outcome, str, str]:
    """The Job's outcome with the job controller's reason and message (for failures)."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") in {"Complete", "SuccessCriteriaMet"}:
            return Outcome.SUCCEEDED, "", ""
        if condition.get("type") in {"Failed", "FailureTarget"}:
            return (
                Outcome.FAILED,
                str(condition.get("reason") or "JobFailed"),
                str(condition.get("message") or ""),
            )
    if (status.get("succeeded") or 0) > 0:
        return Outcome.SUCCEEDED, "", ""
    return Outcome.RUNNING, "", ""


def pods_of(job_name_: str, pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The pods a Job created, newest last (the list may hold other pods: filtered here)."""
    mine = [
        pod
        for pod in pods
        if any(
            (pod.get("metadata", {}).get("labels") or {}).get(key) == job_name_
            for key in JOB_NAME_LABELS
        )
    ]
    return sorted(mine, key=lambda pod: str(pod["metadata"].get("creationTimestamp") or ""))


def termination(pod: Mapping[str, Any]) -> tuple[int, str] | None:
    """Exit code and termination message of the indexer container, once it terminated."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") != CONTAINER:
            continue
        terminated = (status.get("state") or {}).get("terminated")
        if terminated:
            return int(terminated.get("exitCode", 1)), str(terminated.get("message") or "")
    return None


def read_result(pods: Iterable[Mapping[str, Any]]) -> indexresult.IndexResult:
    """The result of a succeeded Job from its pod that exited 0."""
    for pod in reversed(list(pods)):
        ended = termination(pod)
        if ended is not None and ended[0] == 0:
            return parse_result(ended[1])
    raise errors.IndexFormatError("the Job succeeded but no pod reported a result")


def failed_exit_code(pods: Iterable[Mapping[str, Any]]) -> int | None:
    """The exit code of the last pod whose indexer container failed; ``None`` when none did
    (a Job killed by its deadline, say, before the container ended)."""
    for pod in reversed(list(pods)):
        ended = termination(pod)
        if ended is not None and ended[0] != 0:
            return ended[0]
    return None


def current_unreadable(action: str, pods: Iterable[Mapping[str, Any]]) -> bool:
    """Whether an update or merge Job failed because the live generation cannot be read
    (:class:`~codeintel.core.errors.CurrentUnreadableError`): retrying it cannot help,
    only a full build can."""
    return action in {Action.UPDATE.value, Action.MERGE.value} and (
        failed_exit_code(pods) == errors.CurrentUnreadableError.exit_code
    )


def failure_message(pods: Iterable[Mapping[str, Any]], limit: int = 2000) -> str:
    """The last failed pod's message (the end of its log), cut to ``limit`` characters."""
    for pod in reversed(list(pods)):
        ended = termination(pod)
        if ended is not None and ended[0] != 0 and ended[1].strip():
            return ended[1].strip()[-limit:]
    return ""


def parse_result(message: str) -> indexresult.IndexResult:
    """Parse the JSON result of ``codeintel index … --result-file``."""
    return indexresult.decode(message)
