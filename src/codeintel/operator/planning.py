"""Deciding the next indexer Job, and the status patches that record each step.

Everything here is a pure function of the parsed spec, the CodeIndex status and
the current time, so the decisions — build when nothing serves or the vectors
became useless, merge past the threshold, update on schedule or a new ref, wait
out the backoff after a failure — are unit-tested without a cluster. The
handlers (:mod:`codeintel.operator.reconciling`) only carry them out.

The patches that start and end a Job also clear ``progress`` (what the running Job
last reported), so it never outlives its Job.

The status is the operator's memory: ``activeJob`` and ``jobSequence`` make Job
creation idempotent across restarts, ``failures`` and ``retryAfter`` drive the
backoff, and ``embedding`` / ``repoUrl`` / ``ref`` record what the served
generation was built from so a spec change can be told apart from a new commit.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from codeintel.core import indexresult
from codeintel.operator import jobs
from codeintel.operator import settings as settings_mod
from codeintel.operator import spec as spec_mod

PHASE_FOR_ACTION = {
    jobs.Action.BUILD: "Indexing",
    jobs.Action.UPDATE: "Updating",
    jobs.Action.MERGE: "Merging",
}


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """The next Job to start (``action`` ``None``: nothing to do yet) and why."""

    action: jobs.Action | None
    reason: str


def now() -> datetime.datetime:
    """The current time in UTC (one place, so tests and handlers agree on the clock)."""
    return datetime.datetime.now(tz=datetime.UTC)


def generation_of(body: Mapping[str, Any]) -> int:
    """The object's ``metadata.generation``: what a status it gets says it has observed."""
    return int(body["metadata"].get("generation") or 0)


def timestamp(moment: datetime.datetime) -> str:
    """RFC 3339 as Kubernetes writes it: seconds precision, ``Z``."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime.datetime | None:
    """Read a status timestamp; ``None`` when absent or unreadable."""
    if not value:
        return None
    try:
        moment = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def next_action(
    spec: spec_mod.CodeIndexSpec, status: Mapping[str, Any], moment: datetime.datetime
) -> Plan:
    """What to run next. Never a second Job while one is active (at most one per CodeIndex)."""
    if status.get("activeJob"):
        return Plan(None, "JobActive")
    retry_after = parse_time(status.get("retryAfter"))
    if retry_after is not None and moment < retry_after:
        return Plan(None, "BackingOff")
    if not status.get("generation"):
        return Plan(jobs.Action.BUILD, "NoIndex")
    if status.get("rebuildReason"):
        return Plan(jobs.Action.BUILD, str(status["rebuildReason"]))
    built_with = status.get("embedding") or {}
    if dict(built_with) != spec.embedding_fingerprint:
        return Plan(jobs.Action.BUILD, "EmbeddingChanged")
    if status.get("repoUrl") and status.get("repoUrl") != spec.repo_url:
        return Plan(jobs.Action.BUILD, "RepositoryChanged")
    if (status.get("pool") or "") != (spec.pool or ""):
        # Into, out of or between pools: the store starts empty at its new place.
        return Plan(jobs.Action.BUILD, "PoolChanged")
    secondary = int((status.get("vectors") or {}).get("secondary") or 0)
    if spec.merge_threshold and secondary > spec.merge_threshold:
        return Plan(jobs.Action.MERGE, "SecondaryOverThreshold")
    if status.get("ref") and status.get("ref") != spec.ref:
        return Plan(jobs.Action.UPDATE, "RefChanged")
    if spec.updates_enabled:
        last = parse_time(status.get("lastUpdateTime"))
        if last is None or moment >= last + datetime.timedelta(
            seconds=spec.update_interval_seconds
        ):
            return Plan(jobs.Action.UPDATE, "Scheduled")
    return Plan(None, "UpToDate")


Change = tuple[str, bool, str, str]
"""One condition to set: ``(type, status, reason, message)``."""


def set_conditions(
    conditions: Sequence[Mapping[str, Any]],
    changes: Iterable[Change],
    observed_generation: int,
    moment: datetime.datetime,
) -> list[dict[str, Any]]:
    """``conditions`` with each change applied in turn (see :func:`set_condition`)."""
    result = [dict(condition) for condition in conditions]
    for type_, status, reason, message in changes:
        result = set_condition(result, type_, status, reason, message, observed_generation, moment)
    return result


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    observed_generation: int,
    moment: datetime.datetime,
) -> list[dict[str, Any]]:
    """``conditions`` with one type set; ``lastTransitionTime`` moves only when the status flips."""
    value = "True" if status else "False"
    result: list[dict[str, Any]] = []
    previous: Mapping[str, Any] | None = None
    for condition in conditions:
        if condition.get("type") == type_:
            previous = condition
        else:
            result.append(dict(condition))
    changed = previous is None or previous.get("status") != value
    result.append(
        {
            "type": type_,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": timestamp(moment)
            if changed or previous is None
            else str(previous.get("lastTransitionTime") or timestamp(moment)),
            "observedGeneration": observed_generation,
        }
    )
    order = {"Ready": 0, "Indexing": 1, "Degraded": 2}
    return sorted(result, key=lambda c: order.get(str(c.get("type")), 9))


def start_patch(
    status: Mapping[str, Any],
    plan: Plan,
    job_name: str,
    sequence: int,
    observed_generation: int,
    moment: datetime.datetime,
    *,
    pool: str = "",
) -> dict[str, Any]:
    """Status recorded *before* the Job is created: a restart then finds it, never a duplicate.

    ``pool`` is where the Job writes the store (empty: the CodeIndex's own claim); the
    success patch records it as where the served generation lives."""
    assert plan.action is not None  # callers only start a planned action
    changes: list[Change] = [
        ("Indexing", True, plan.reason, f"Job {job_name} runs codeintel index {plan.action.value}")
    ]
    if not status.get("generation"):
        changes.append(("Ready", False, "NoIndex", "no generation built yet"))
    conditions = set_conditions(
        status.get("conditions") or [], changes, observed_generation, moment
    )
    return {
        "phase": PHASE_FOR_ACTION[plan.action],
        "activeJob": {
            "name": job_name,
            "action": plan.action.value,
            "startTime": timestamp(moment),
            "pool": pool,
        },
        "jobSequence": sequence,
        "progress": None,  # a new Job: nothing reported yet
        "conditions": conditions,
        "observedGeneration": observed_generation,
    }


def success_patch(
    status: Mapping[str, Any],
    result: indexresult.IndexResult,
    spec: spec_mod.CodeIndexSpec,
    observed_generation: int,
    moment: datetime.datetime,
) -> dict[str, Any]:
    """Status after a Job succeeded: the new generation serves and the backoff resets."""
    active = status.get("activeJob") or {}
    action = str(active.get("action") or result.action)
    message = f"generation {result.generation} at commit {result.commit[:12]}"
    changes: list[Change] = [
        ("Ready", True, "GenerationServed", message),
        ("Indexing", False, "JobSucceeded", f"{action} Job succeeded"),
        ("Degraded", False, "JobSucceeded", ""),
    ]
    conditions = set_conditions(
        status.get("conditions") or [], changes, observed_generation, moment
    )
    patch: dict[str, Any] = {
        "phase": "Ready",
        "activeJob": None,
        "progress": None,
        "failures": 0,
        "retryAfter": None,
        "lastUpdateTime": timestamp(moment),
        "conditions": conditions,
        "observedGeneration": observed_generation,
        "generation": result.generation,
        "commit": result.commit,
        "vectors": result.status_vectors(),
        "ref": spec.ref,
    }
    if result.index_type:
        patch["indexType"] = result.index_type
    if "pool" in active:
        patch["pool"] = str(active["pool"] or "")
    if action == jobs.Action.BUILD.value:
        patch["rebuildReason"] = None
        patch["embedding"] = spec.embedding_fingerprint
        patch["repoUrl"] = spec.repo_url
    return patch


def failure_patch(
    status: Mapping[str, Any],
    reason: str,
    message: str,
    settings: settings_mod.OperatorSettings,
    observed_generation: int,
    moment: datetime.datetime,
) -> dict[str, Any]:
    """Status after a Job failed: Degraded, a retry after backoff; a built generation keeps serving."""
    failures = int(status.get("failures") or 0) + 1
    delay = settings.retry_delay(failures)
    retry_after = moment + datetime.timedelta(seconds=delay)
    serving = bool(status.get("generation"))
    full = f"{message} (failure {failures}; retrying after {timestamp(retry_after)})".strip()
    changes: list[Change] = [
        ("Degraded", True, reason, full),
        ("Indexing", False, reason, "the last indexer Job failed"),
    ]
    if not serving:
        changes.append(("Ready", False, reason, "no generation built yet"))
    conditions = set_conditions(
        status.get("conditions") or [], changes, observed_generation, moment
    )
    return {
        "phase": "Ready" if serving else "Failed",
        "activeJob": None,
        "progress": None,
        "failures": failures,
        "retryAfter": timestamp(retry_after),
        "conditions": conditions,
        "observedGeneration": observed_generation,
    }


UNREADABLE = "GenerationUnreadable"


def unreadable_patch(
    status: Mapping[str, Any],
    job_name: str,
    action: str,
    detail: str,
    observed_generation: int,
    moment: datetime.datetime,
) -> dict[str, Any]:
    """Status after an update or merge found the live generation unreadable: ``Degraded``
    says so, and ``rebuildReason`` makes the next Job a full build, started now (no
    backoff: retrying the update would fail the same way). A build's success clears it."""
    generation = str(status.get("generation") or "")
    message = (
        f"{action} Job {job_name} could not read generation {generation}; starting a full "
        f"build, which writes a fresh generation over it. {detail}"
    ).strip()
    changes: list[Change] = [
        ("Degraded", True, UNREADABLE, message),
        ("Indexing", False, UNREADABLE, f"the {action} Job failed; a build follows"),
    ]
    conditions = set_conditions(
        status.get("conditions") or [], changes, observed_generation, moment
    )
    return {
        "activeJob": None,
        "progress": None,
        "retryAfter": None,
        "rebuildReason": UNREADABLE,
        "conditions": conditions,
        "observedGeneration": observed_generation,
    }


def invalid_spec_patch(
    status: Mapping[str, Any], message: str, observed_generation: int, moment: datetime.datetime
) -> dict[str, Any]:
    """Status for a spec the operator refuses; the previous generation (if any) keeps serving."""
    conditions = set_condition(
        status.get("conditions") or [],
        "Degraded",
        True,
        "InvalidSpec",
        message,
        observed_generation,
        moment,
    )
    return {
        "phase": "Ready" if status.get("generation") else "Failed",
        "conditions": conditions,
        "observedGeneration": observed_generation,
    }


POOL_REASONS = frozenset({"PoolNotFound", "PoolInvalid"})


def pool_problem_patch(
    status: Mapping[str, Any], reason: str, message: str, observed_generation: int
) -> dict[str, Any]:
    """Status of a CodeIndex whose SearchPool is missing or refused: ``Degraded``, no Job
    starts; whatever serves now keeps serving."""
    conditions = set_condition(
        status.get("conditions") or [],
        "Degraded",
        True,
        reason,
        message,
        observed_generation,
        now(),
    )
    patch: dict[str, Any] = {"conditions": conditions, "observedGeneration": observed_generation}
    if not status.get("generation") and not status.get("activeJob"):
        patch["phase"] = "Pending"
    return patch


def pool_found_patch(
    status: Mapping[str, Any], pool: str, observed_generation: int
) -> dict[str, Any] | None:
    """Clears a ``Degraded`` that :func:`pool_problem_patch` set, once the pool is there;
    ``None`` when there is nothing to clear (a failed Job's ``Degraded`` stays)."""
    degraded = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Degraded"), None
    )
    if degraded is None or degraded.get("reason") not in POOL_REASONS:
        return None
    conditions = set_condition(
        status.get("conditions") or [],
        "Degraded",
        False,
        "PoolFound",
        f"SearchPool {pool} holds the store",
        observed_generation,
        now(),
    )
    return {"conditions": conditions}
