"""The decisions and status patches, as pure functions of spec, status and time; settings; results."""

from __future__ import annotations

import dataclasses
import datetime
import json

import pytest

from codeintel.core import errors
from codeintel.operator import jobs, planning
from codeintel.operator import spec as spec_mod
from codeintel.operator.settings import OperatorSettings, parse_duration

SETTINGS = OperatorSettings()
T0 = datetime.datetime(2025, 1, 1, 12, 0, tzinfo=datetime.UTC)
SPEC = spec_mod.parse(
    {
        "repo": {"url": "https://x/y.git"},
        "embedding": {"model": "m", "dimension": 8},
        "index": {"mergeThreshold": 100},
        "updates": {"interval": "15m"},
    },
    SETTINGS,
)
SERVING = {
    "generation": "g000003",
    "embedding": {"model": "m", "dimension": 8},
    "repoUrl": "https://x/y.git",
    "ref": "main",
    "vectors": {"primary": 10, "secondary": 5, "tombstones": 0},
    "lastUpdateTime": planning.timestamp(T0),
}


def plan(status: dict, moment: datetime.datetime = T0) -> tuple[str | None, str]:
    decided = planning.next_action(SPEC, status, moment)
    return (decided.action.value if decided.action else None), decided.reason


def test_nothing_built_means_build() -> None:
    assert plan({}) == ("build", "NoIndex")


def test_never_a_second_job() -> None:
    assert plan({"activeJob": {"name": "x-build-00001"}}) == (None, "JobActive")


def test_up_to_date_until_the_interval_passes() -> None:
    assert plan(SERVING) == (None, "UpToDate")
    assert plan(SERVING, T0 + datetime.timedelta(minutes=15)) == ("update", "Scheduled")


def test_vector_invalidating_changes_rebuild() -> None:
    assert plan({**SERVING, "embedding": {"model": "old", "dimension": 8}}) == (
        "build",
        "EmbeddingChanged",
    )
    assert plan({**SERVING, "embedding": {"model": "m", "dimension": 4}}) == (
        "build",
        "EmbeddingChanged",
    )
    assert plan({**SERVING, "repoUrl": "https://x/z.git"}) == ("build", "RepositoryChanged")


def test_moving_into_out_of_or_between_pools_rebuilds() -> None:
    pooled = dataclasses.replace(SPEC, pool="fleet")
    decided = planning.next_action(pooled, SERVING, T0)
    assert (decided.action, decided.reason) == (jobs.Action.BUILD, "PoolChanged")
    assert plan({**SERVING, "pool": "fleet"}) == ("build", "PoolChanged")
    other = planning.next_action(pooled, {**SERVING, "pool": "other"}, T0)
    assert other.reason == "PoolChanged"
    # Served from the pool it names, or never in one (status written before pools): no rebuild.
    assert planning.next_action(pooled, {**SERVING, "pool": "fleet"}, T0).action is None
    assert plan({**SERVING, "pool": ""}) == (None, "UpToDate")


def test_the_store_location_travels_with_the_job() -> None:
    start = planning.start_patch(
        {}, planning.Plan(jobs.Action.BUILD, "PoolChanged"), "x-build-00002", 2, 3, T0, pool="fleet"
    )
    assert start["activeJob"]["pool"] == "fleet"
    result = jobs.parse_result(
        json.dumps({"action": "build", "generation": "g000002", "commit": "c" * 40})
    )
    done = planning.success_patch({"activeJob": start["activeJob"]}, result, SPEC, 3, T0)
    assert done["pool"] == "fleet"
    # A Job recorded by an operator that knew no pools leaves the recorded place alone.
    old = planning.success_patch({"activeJob": {"action": "update"}}, result, SPEC, 3, T0)
    assert "pool" not in old


def test_missing_pool_degrades_and_clears_once_found() -> None:
    patch = planning.pool_problem_patch({}, "PoolNotFound", "SearchPool x does not exist", 4)
    degraded = next(c for c in patch["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "PoolNotFound"
    assert patch["phase"] == "Pending"
    assert "phase" not in planning.pool_problem_patch(SERVING, "PoolNotFound", "gone", 4)
    cleared = planning.pool_found_patch(patch, "x", 4)
    assert cleared is not None
    assert next(c for c in cleared["conditions"] if c["type"] == "Degraded")["status"] == "False"
    # A failed Job's Degraded is not the pool's to clear.
    failed = planning.failure_patch(SERVING, "BackoffLimitExceeded", "boom", SETTINGS, 4, T0)
    assert planning.pool_found_patch(failed, "x", 4) is None


def test_an_unreadable_generation_rebuilds_before_anything_else() -> None:
    status = {**SERVING, "rebuildReason": "GenerationUnreadable", "ref": "old"}
    assert plan(status) == ("build", "GenerationUnreadable")
    assert plan({**status, "retryAfter": planning.timestamp(T0 + datetime.timedelta(1))}) == (
        None,
        "BackingOff",
    )


def _failed_pod(exit_code: int) -> dict:
    terminated = {"exitCode": exit_code, "message": "error: cannot update"}
    return {
        "metadata": {"labels": {"job-name": "j"}},
        "status": {"containerStatuses": [{"name": "indexer", "state": {"terminated": terminated}}]},
    }


def test_only_an_update_or_merge_exiting_3_means_unreadable() -> None:
    assert jobs.current_unreadable("update", [_failed_pod(3)])
    assert jobs.current_unreadable("merge", [_failed_pod(1), _failed_pod(3)])
    assert not jobs.current_unreadable("update", [_failed_pod(1)])
    assert not jobs.current_unreadable("build", [_failed_pod(3)])
    assert not jobs.current_unreadable("update", [])


def test_unreadable_patch_starts_the_build_now_and_success_clears_it() -> None:
    patch = planning.unreadable_patch(SERVING, "y-update-00002", "update", "boom", 4, T0)
    assert patch["rebuildReason"] == "GenerationUnreadable"
    assert patch["retryAfter"] is None and patch["activeJob"] is None
    assert "failures" not in patch
    plan_after = planning.next_action(SPEC, {**SERVING, **patch}, T0)
    assert (plan_after.action, plan_after.reason) == (jobs.Action.BUILD, "GenerationUnreadable")
    result = jobs.parse_result(
        json.dumps(
            {
                "action": "build",
                "changed": True,
                "generation": "g000004",
                "commit": "b" * 40,
                "vectors": {"primary": 1, "secondary": 0, "tombstones": 0},
            }
        )
    )
    building = {**SERVING, **patch, "activeJob": {"name": "y-build-00003", "action": "build"}}
    assert planning.success_patch(building, result, SPEC, 4, T0)["rebuildReason"] is None


def test_ref_change_updates_and_threshold_merges() -> None:
    assert plan({**SERVING, "ref": "release"}) == ("update", "RefChanged")
    over = {**SERVING, "vectors": {"secondary": 101}}
    assert plan(over) == ("merge", "SecondaryOverThreshold")


def test_backoff_holds_everything() -> None:
    status = {**SERVING, "retryAfter": planning.timestamp(T0 + datetime.timedelta(seconds=30))}
    assert plan(status, T0 + datetime.timedelta(minutes=0, seconds=29)) == (None, "BackingOff")
    assert (
        plan({**status, "lastUpdateTime": None}, T0 + datetime.timedelta(seconds=31))[0] == "update"
    )


def test_retry_delay_doubles_and_caps() -> None:
    settings = OperatorSettings(retry_base_seconds=10, retry_max_seconds=60)
    assert [settings.retry_delay(n) for n in range(6)] == [0, 10, 20, 40, 60, 60]


def test_success_patch_serves_the_new_generation() -> None:
    result = jobs.parse_result(
        json.dumps(
            {
                "action": "build",
                "changed": True,
                "generation": "g000004",
                "commit": "c" * 40,
                "index_type": "ivf_pq",
                "vectors": {"primary": 900, "secondary": 20, "tombstones": 5},
            }
        )
    )
    status = {"activeJob": {"name": "x", "action": "build"}, "failures": 2}
    patch = planning.success_patch(status, result, SPEC, 5, T0)
    assert patch["phase"] == "Ready" and patch["activeJob"] is None and patch["failures"] == 0
    assert patch["vectors"] == {"primary": 900, "secondary": 20, "tombstones": 5, "total": 915}
    assert patch["embedding"] == {"model": "m", "dimension": 8}
    ready = next(c for c in patch["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["observedGeneration"] == 5


def test_failure_patch_keeps_serving_and_backs_off() -> None:
    patch = planning.failure_patch(
        {**SERVING, "failures": 1}, "BackoffLimitExceeded", "git fetch failed", SETTINGS, 2, T0
    )
    assert patch["phase"] == "Ready"
    assert patch["failures"] == 2
    assert planning.parse_time(patch["retryAfter"]) == T0 + datetime.timedelta(seconds=60)
    degraded = next(c for c in patch["conditions"] if c["type"] == "Degraded")
    assert (
        degraded["reason"] == "BackoffLimitExceeded" and "git fetch failed" in degraded["message"]
    )
    assert planning.failure_patch({}, "X", "", SETTINGS, 1, T0)["phase"] == "Failed"


def test_condition_transition_time_moves_only_on_flips() -> None:
    first = planning.set_condition([], "Ready", True, "A", "", 1, T0)
    later = T0 + datetime.timedelta(hours=1)
    same = planning.set_condition(first, "Ready", True, "B", "", 2, later)
    flipped = planning.set_condition(same, "Ready", False, "C", "", 3, later)
    assert same[0]["lastTransitionTime"] == planning.timestamp(T0)
    assert flipped[0]["lastTransitionTime"] == planning.timestamp(later)


def test_job_outcomes_and_results() -> None:
    assert jobs.outcome({})[0] is jobs.Outcome.RUNNING
    assert jobs.outcome({"status": {"succeeded": 1}})[0] is jobs.Outcome.SUCCEEDED
    failed = {
        "status": {
            "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]
        }
    }
    assert jobs.outcome(failed)[:2] == (jobs.Outcome.FAILED, "DeadlineExceeded")
    pod = {
        "metadata": {"labels": {"job-name": "j"}},
        "status": {
            "containerStatuses": [
                {
                    "name": "indexer",
                    "state": {"terminated": {"exitCode": 1, "message": "Traceback...\nboom"}},
                }
            ]
        },
    }
    assert jobs.failure_message(jobs.pods_of("j", [pod])) == "Traceback...\nboom"
    assert jobs.pods_of("other", [pod]) == []
    with pytest.raises(errors.IndexFormatError):
        jobs.read_result([pod])
    with pytest.raises(errors.IndexFormatError):
        jobs.parse_result("{not json")


def test_settings_from_env() -> None:
    settings = OperatorSettings.from_env(
        {
            "CODEINTEL_OPERATOR_INDEXER_IMAGE": "reg/indexer:2",
            "CODEINTEL_OPERATOR_JOB_BACKOFF_LIMIT": "4",
            "CODEINTEL_OPERATOR_POLL_INTERVAL_SECONDS": "5.5",
            "CODEINTEL_OPERATOR_SEARCHER_RESOURCES": '{"requests": {"cpu": "1"}}',
        }
    )
    assert settings.indexer_image == "reg/indexer:2"
    assert settings.job_backoff_limit == 4
    assert settings.poll_interval_seconds == 5.5
    assert settings.searcher_resources == {"requests": {"cpu": "1"}}
    with pytest.raises(errors.ConfigError, match="CODEINTEL_OPERATOR_JOB_BACKOFF_LIMIT"):
        OperatorSettings.from_env({"CODEINTEL_OPERATOR_JOB_BACKOFF_LIMIT": "many"})
    with pytest.raises(errors.ConfigError):
        OperatorSettings.from_env({"CODEINTEL_OPERATOR_DEFAULT_UPDATE_INTERVAL": "often"})


def test_durations() -> None:
    assert parse_duration("1h30m") == 5400
    assert parse_duration("1d") == 86400
    with pytest.raises(errors.ConfigError):
        parse_duration("15 minutes")


def test_operator_imports_no_faiss_or_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, codeintel.operator, codeintel.operator.handlers; "
        "print([m for m in ('faiss', 'torch', 'sentence_transformers') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_options() -> None:
    from codeintel.operator import parse_args

    args = parse_args(
        [
            "-n",
            "a",
            "--namespace",
            "b",
            "--peering",
            "codeintel",
            "--liveness",
            "http://0.0.0.0:8081/healthz",
        ]
    )
    assert args.namespaces == ["a", "b"] and args.peering == "codeintel" and not args.standalone
    assert parse_args(["--all-namespaces", "--standalone"]).namespaces == []
