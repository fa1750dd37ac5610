"""kmock's KubernetesEmulator with the API-server behaviour kopf and the operator rely on.

kmock 0.8 stores objects as posted and merges patches, but it leaves gaps a real
API server fills; this subclass fills the ones that matter here:

* create stamps ``uid``, ``resourceVersion``, ``generation`` and
  ``creationTimestamp``, and names objects posted with ``generateName``
  (kopf's Events);
* every patch bumps ``resourceVersion``; ``generation`` moves only when the spec
  changes, as for a resource with a status subresource;
* a JSON patch whose ``test`` op fails is refused with HTTP 422 — kopf removes
  its finalizer with a ``test`` on ``resourceVersion`` and retries on 422;
* writes to the status subresource change only ``status``, other writes never
  change ``status``.

:func:`make_emulator` also loads kmock's bundled discovery (so ``v1``, ``apps/v1``,
``batch/v1`` resources exist) and registers ``codeindexes`` with a status
subresource, and ``searchpools`` likewise. kopf must run cluster-wide against it: listing namespaces is not
emulated.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import itertools
import uuid
from typing import Any

import aiohttp.web
import jsonpatch
import kmock
from kmock._internal import enums, rendering

CODEINDEXES = "codeintel.io/v1alpha1/codeindexes"
SEARCHPOOLS = "codeintel.io/v1alpha1/searchpools"


class ClusterEmulator(kmock.KubernetesEmulator):
    """The emulator plus uid / resourceVersion / generation and JSON-patch ``test`` ops."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._versions = itertools.count(1000)
        self._writes = asyncio.Lock()

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is None or request.action not in {
            enums.action.CREATE,
            enums.action.UPDATE,
        }:
            return await super()._handle(request)
        async with self._writes:
            try:
                if request.action == enums.action.CREATE:
                    self._stamp_new(request)
                elif request.name is not None:
                    self._prepare_patch(request)
            except kmock.KubernetesError as e:
                return await self._render_error(e)
            return await super()._handle(request)

    def _stamp_new(self, request: rendering.Request) -> None:
        data = request.data
        if not isinstance(data, dict):
            return
        meta = data.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        if request.namespace and not meta.get("namespace"):
            meta["namespace"] = request.namespace
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = str(next(self._versions))
        meta["generation"] = 1
        meta["creationTimestamp"] = _now()

    def _prepare_patch(self, request: rendering.Request) -> None:
        """Rewrite the patch in place into the merge patch a real server would apply."""
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return  # the base class answers 404
        current: dict[str, Any] = copy.deepcopy(self.objects[key].raw)
        if isinstance(request.data, list):
            try:
                patched = jsonpatch.apply_patch(current, request.data, in_place=False)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                raise kmock.KubernetesError(
                    status=422, reason="Invalid", message=f"the JSON patch failed: {e}"
                ) from e
        elif isinstance(request.data, dict):
            patched = _merge(current, request.data)
        else:
            return
        if request.subresource == "status":
            patched = {**current, "status": patched.get("status")}
        elif "status" in current or "status" in patched:
            patched["status"] = current.get("status")
        meta = patched.setdefault("metadata", {})
        meta["resourceVersion"] = str(next(self._versions))
        if patched.get("spec") != current.get("spec"):
            meta["generation"] = int(current["metadata"].get("generation") or 1) + 1
        # The base class merges our full result into the stored object: keys that
        # vanished must be sent as None to be removed.
        object.__setattr__(request, "data", _as_merge_patch(current, patched))


def _merge(value: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(value) if isinstance(value, dict) else {}
    for key, item in patch.items():
        if item is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), item)
    return result


def _as_merge_patch(old: Any, new: Any) -> Any:
    """The merge patch turning ``old`` into ``new``."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return copy.deepcopy(new)
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old or old[key] != value:
            patch[key] = _as_merge_patch(old.get(key), value)
    return patch


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_emulator() -> ClusterEmulator:
    """An emulator with the bundled built-in resources and the CodeIndex CRD registered."""
    emulator = ClusterEmulator()
    emulator.resources.load_bundled()
    emulator.resources[CODEINDEXES] = kmock.ResourceInfo(
        kind="CodeIndex",
        singular="codeindex",
        namespaced=True,
        verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
        shortnames={"cidx"},
        categories={"codeintel", "all"},
        subresources={"status"},
    )
    emulator.resources[SEARCHPOOLS] = kmock.ResourceInfo(
        kind="SearchPool",
        singular="searchpool",
        namespaced=True,
        verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
        shortnames={"spool"},
        categories={"codeintel", "all"},
        subresources={"status"},
    )
    return emulator
