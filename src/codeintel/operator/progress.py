"""A running indexer Job's progress, read from its log into ``status.progress``.

The indexer logs a JSON line with a ``progress`` object every
``CODEINTEL_LOG_PROGRESS_INTERVAL_SECONDS`` and at each stage's start and end.
While a Job runs, each pass over its CodeIndex reads the tail of the pod's log
(``pods/log``), takes the last such object, and merge-patches it into the
CodeIndex's ``status.progress`` — only when the stage or the count moved, and at
most once per ``progress_interval_seconds``. So the indexer needs no API token
and no RBAC of its own (its pods keep ``automountServiceAccountToken: false``),
and the API server sees at most one status write per interval per running Job.
The patches that start and end a Job clear the field (docs/architecture.md,
*Progress*). A log that cannot be read is logged once per Job and never stops
the reconciliation.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from collections.abc import Mapping
from typing import Any

import aiohttp

from codeintel.core import durations
from codeintel.operator import jobs, kube, planning

TAIL_LINES = 500
"""Log lines read from the end: at the default 10 s between progress lines, this
leaves room for ~50 other lines a second (HTTP clients, warnings) in between."""


def last_progress(log: str) -> dict[str, Any] | None:
    """The ``progress`` object of the last JSON log line that has one."""
    for line in reversed(log.splitlines()):
        if '"progress"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        found = entry.get("progress") if isinstance(entry, dict) else None
        if isinstance(found, dict) and isinstance(found.get("stage"), str):
            return found
    return None


def status_progress(
    job_name: str, line: Mapping[str, Any], moment: datetime.datetime
) -> dict[str, Any]:
    """``status.progress`` from a log line's ``progress`` object (the CRD's field names)."""
    stage = str(line["stage"])
    done = _int(line.get("done")) or 0
    total = _int(line.get("total"))
    percent = _number(line.get("percent"))
    rate = _number(line.get("rate"))
    eta = _number(line.get("eta_seconds"))
    fields = {
        "job": job_name,
        "stage": stage,
        "done": done,
        "total": total,
        "percent": percent,
        "rate": rate,
        "etaSeconds": round(eta) if eta is not None else None,
        "summary": summary(stage, done, total, percent, eta),
        "updatedAt": planning.timestamp(moment),
    }
    # Unknown values are left out rather than written as null.
    return {k: v for k, v in fields.items() if v is not None}


def summary(
    stage: str, done: int, total: int | None, percent: float | None, eta: float | None
) -> str:
    """The printer column: ``embed 12000/35483 (34%) eta 9m``."""
    text = f"{stage} {done}/{total}" if total is not None else stage
    if percent is not None:
        text += f" ({percent:.0f}%)"
    if eta is not None:
        text += f" eta {durations.compact(eta, minute_seconds=False)}"
    return text


def moved(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Worth a status write: another Job, another stage, or another count."""
    if not old:
        return True
    return any(old.get(k) != new.get(k) for k in ("job", "stage", "done", "total"))


@dataclasses.dataclass(slots=True)
class Tracker:
    """What the operator remembers about running Jobs' progress (kept in its memo)."""

    interval: float
    """Least seconds between two progress writes for one Job."""
    written: dict[str, float] = dataclasses.field(default_factory=dict)
    """Job name -> monotonic time of its last progress write."""
    warned: set[str] = dataclasses.field(default_factory=set)
    """Jobs whose log could not be read, already logged once."""

    def due(self, job_name: str) -> bool:
        last = self.written.get(job_name)
        return last is None or time.monotonic() - last >= self.interval

    def wrote(self, job_name: str) -> None:
        self.written[job_name] = time.monotonic()

    def forget(self, job_name: str) -> None:
        """The Job ended: drop what was kept about it."""
        self.written.pop(job_name, None)
        self.warned.discard(job_name)


async def refresh(
    client: kube.KubeClient,
    body: Mapping[str, Any],
    status: Mapping[str, Any],
    job_name: str,
    tracker: Tracker,
    logger: kube.Logger,
) -> dict[str, Any] | None:
    """The new ``status.progress`` of running Job ``job_name``, or ``None`` to leave it.

    Reads nothing until ``tracker.interval`` seconds after the last write for this
    Job. A failure to read is logged once per Job.
    """
    if not tracker.due(job_name):
        return None
    namespace = body["metadata"]["namespace"]
    try:
        pods = jobs.pods_of(
            job_name,
            await client.list(kube.path("v1", "pods", namespace), {"job-name": job_name}),
        )
        running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
        if not running:
            return None
        pod = running[-1]["metadata"]["name"]
        log = await client.text(
            kube.path("v1", "pods", namespace, pod, "log"),
            {"container": jobs.CONTAINER, "tailLines": str(TAIL_LINES)},
        )
    except (kube.ApiError, aiohttp.ClientError, OSError, TimeoutError) as e:
        if job_name not in tracker.warned:
            tracker.warned.add(job_name)
            logger.warning("Job %s: cannot read its progress from the pod log: %s", job_name, e)
        return None
    line = last_progress(log)
    if line is None:
        return None
    new = status_progress(job_name, line, planning.now())
    return new if moved(status.get("progress") or None, new) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(float(value), 2)
    return None
