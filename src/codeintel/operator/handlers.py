"""The kopf handlers, registered on a registry of their own.

:func:`build_registry` returns a fresh ``kopf.OperatorRegistry`` rather than
decorating kopf's global one, so the tests run the very same handlers in their
own event loop against an emulated API server, and importing this module
registers nothing. Errors are translated here, at the edge: a spec the operator
refuses becomes ``kopf.PermanentError`` (no retries until the spec changes), an
unreachable or failing API server a ``kopf.TemporaryError`` with a delay.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import kopf

from codeintel.core import errors
from codeintel.operator import jobs, kube, manifests, pooling, reconciling
from codeintel.operator import settings as settings_mod

GROUP, VERSION, PLURAL = manifests.GROUP, manifests.VERSION, manifests.PLURAL
POOL_PLURAL = "searchpools"
FINALIZER = f"{GROUP}/finalizer"
ANNOTATIONS_PREFIX = f"operator.{GROUP}"
API_RETRY_SECONDS = 10.0
TIMER_EXIT_POLL_SECONDS = 1.0
"""How soon kopf looks again at a timer still running when its object is deleted.

kopf stops an object's timers when the object is deleted and keeps the finalizer on it
until they have exited; a tick mid-pass then (its pass takes the object's lock, so a
slow API server or a busy machine makes that likely) is looked at again only after
``settings.background.cancellation_polling``, 60 s by default, unless some other change
to the object comes first: the deletion hung for a minute. A tick's pass over an object
being deleted ends at its first read, so one second is ample; each look costs one
annotation patch, only while a deletion waits on a tick."""

# The poll timers share a function with the change handlers; these are the ids kopf gave
# them when they were functions of their own, kept so their Events read as before.
TICK_ID = "build_registry.<locals>.tick"
POOL_TICK_ID = "register_pool_handlers.<locals>.tick_pool"


def build_registry(
    operator_settings: settings_mod.OperatorSettings,
    *,
    connection: kopf.ConnectionInfo | None = None,
) -> kopf.OperatorRegistry:
    """All handlers of the operator on a new registry.

    ``connection`` overrides the login (tests point it at an emulator); without
    it the operator logs in with its service account, else with the kubeconfig.
    """
    registry = kopf.OperatorRegistry()
    credentials = kube.Credentials()
    poll_seconds = operator_settings.poll_interval_seconds

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure_kopf(settings)
        memo["codeintel"] = reconciling.Context(
            settings=operator_settings, client=kube.KubeClient(credentials)
        )

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        ctx = memo.get("codeintel")
        if isinstance(ctx, reconciling.Context):
            await ctx.client.close()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        if connection is not None:
            credentials.connection = connection
            return connection
        info = kopf.login_with_service_account(**kwargs)
        if info is not None:
            credentials.token_file = kube.SERVICE_ACCOUNT_TOKEN
        else:
            info = kopf.login_with_kubeconfig(**kwargs)
        credentials.connection = info
        return info

    # One pass serves every cause; ``param`` says whether to make sure of the children first.
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, param=True)
    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry, param=True)
    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=registry, param=True)
    @kopf.timer(
        GROUP, VERSION, PLURAL, id=TICK_ID, param=False, interval=poll_seconds, registry=registry
    )
    async def apply_spec(
        *,
        param: bool = False,
        namespace: str | None,
        name: str,
        memo: Any,
        logger: kube.Logger,
        **_: Any,
    ) -> None:
        """A new, changed or (after a restart) resumed CodeIndex: children, then Jobs; on
        the poll tick, scheduled updates, retries after backoff, and Jobs whose events were
        missed."""
        async with translated_errors():
            await reconciling.reconcile(
                _context(memo), namespace or "", name, logger, ensure_children=param
            )

    @kopf.on.event(
        "batch",
        "v1",
        "jobs",
        labels={"app.kubernetes.io/managed-by": manifests.MANAGED_BY},
        registry=registry,
    )
    async def job_event(
        *, body: kopf.Body, namespace: str | None, memo: Any, logger: kube.Logger, **_: Any
    ) -> None:
        """A finished indexer Job: act on it now rather than at the next tick."""
        if jobs.outcome(body)[0] is jobs.Outcome.RUNNING:
            return
        owners = [
            ref
            for ref in body.get("metadata", {}).get("ownerReferences") or []
            if ref.get("kind") == manifests.KIND
        ]
        for owner in owners:
            try:
                async with translated_errors():
                    await reconciling.reconcile(
                        _context(memo),
                        namespace or "",
                        owner["name"],
                        logger,
                        ensure_children=False,
                    )
            except (kopf.TemporaryError, kopf.PermanentError) as e:
                logger.warning(
                    "Job %s: will look again at the next tick: %s", body["metadata"]["name"], e
                )

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    async def delete(*, body: kopf.Body, memo: Any, logger: kube.Logger, **_: Any) -> None:
        """Delete the Jobs, searchers and (with ``storage.deleteWithIndex``) the store claim."""
        async with translated_errors():
            await reconciling.delete_owned(_context(memo), body, logger)

    register_pool_handlers(registry, operator_settings)
    return registry


def register_pool_handlers(
    registry: kopf.OperatorRegistry, operator_settings: settings_mod.OperatorSettings
) -> None:
    """SearchPool handlers: the same pass on create, change, resume and every tick (the
    tick refreshes members, ready shards and the staged rollout of replica sets)."""
    poll_seconds = operator_settings.poll_interval_seconds

    @kopf.on.create(GROUP, VERSION, POOL_PLURAL, registry=registry)
    @kopf.on.resume(GROUP, VERSION, POOL_PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, POOL_PLURAL, field="spec", registry=registry)
    @kopf.timer(
        GROUP, VERSION, POOL_PLURAL, id=POOL_TICK_ID, interval=poll_seconds, registry=registry
    )
    async def apply_pool(
        *, namespace: str | None, name: str, memo: Any, logger: kube.Logger, **_: Any
    ) -> None:
        """A new, changed or resumed SearchPool: claim, serving objects, status; on the poll
        tick, members, ready shards, and the next replica set of a staged rollout."""
        async with translated_errors():
            await pooling.reconcile_pool(_context(memo), namespace or "", name, logger)

    @kopf.on.delete(GROUP, VERSION, POOL_PLURAL, registry=registry)
    async def delete_pool(*, body: kopf.Body, memo: Any, logger: kube.Logger, **_: Any) -> None:
        """Delete the searchers, shards and router; keep the claim unless deleteWithPool."""
        async with translated_errors():
            await pooling.delete_pool_owned(_context(memo), body, logger)


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """kopf's own settings: our finalizer, and progress kept in annotations so the
    status holds only what the CRD's schema describes."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATIONS_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATIONS_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    settings.execution.max_workers = 8
    settings.background.cancellation_polling = TIMER_EXIT_POLL_SECONDS


@asynccontextmanager
async def translated_errors() -> AsyncIterator[None]:
    """Map our errors to kopf's: bad spec → permanent, API trouble → retry later."""
    try:
        yield
    except errors.ConfigError as e:
        raise kopf.PermanentError(f"invalid spec: {e}") from e
    except (kube.ApiError, aiohttp.ClientError, TimeoutError) as e:
        raise kopf.TemporaryError(f"Kubernetes API: {e}", delay=API_RETRY_SECONDS) from e


def _context(memo: Any) -> reconciling.Context:
    ctx = memo.get("codeintel")
    if not isinstance(ctx, reconciling.Context):
        raise kopf.TemporaryError("the operator is still starting", delay=1)
    return ctx
