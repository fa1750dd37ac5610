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
  change ``status``;
* ``TokenReview`` and ``SubjectAccessReview`` are answered as a real API server
  does (201 with the object and its ``status``), from :attr:`ClusterEmulator.users`
  (token -> user info) and :attr:`ClusterEmulator.grants` (username -> namespaces
  whose CodeIndexes it may ``get``); only a caller whose bearer token is in
  :attr:`ClusterEmulator.reviewers` may create them (403 otherwise, as RBAC
  without ``tokenreviews: create`` would). :attr:`ClusterEmulator.reviews` counts them.

:meth:`ClusterEmulator.hold` makes the server slow to answer one request, as a loaded
API server is, at the moment a test chooses rather than by chance.

:func:`make_emulator` also loads kmock's bundled discovery (so ``v1``, ``apps/v1``,
``batch/v1`` resources exist) and registers ``codeindexes`` with a status
subresource, and ``searchpools`` likewise. kopf must run cluster-wide against it: listing namespaces is not
emulated.
"""

from __future__ import annotations

import asyncio
import collections
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
_REVIEWS = {
    "/apis/authentication.k8s.io/v1/tokenreviews": "TokenReview",
    "/apis/authorization.k8s.io/v1/subjectaccessreviews": "SubjectAccessReview",
}
SEARCHPOOLS = "codeintel.io/v1alpha1/searchpools"


class Hold:
    """A request the emulator holds: :attr:`reached` is set when it arrives, and it is
    answered once :meth:`release` is called."""

    def __init__(self, method: str, path: str) -> None:
        self.method, self.path = method.upper(), path
        self.reached, self._released = asyncio.Event(), asyncio.Event()

    def release(self) -> None:
        self._released.set()

    async def answer(self) -> None:
        """Called by the emulator: wait until the test releases the request."""
        self.reached.set()
        await self._released.wait()


class ClusterEmulator(kmock.KubernetesEmulator):
    """The emulator plus uid / resourceVersion / generation and JSON-patch ``test`` ops."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._versions = itertools.count(1000)
        self._writes = asyncio.Lock()
        self.users: dict[str, dict[str, Any]] = {}
        self.grants: dict[str, set[str]] = {}
        self.reviewers: set[str] = set()
        self.reviews: collections.Counter[str] = collections.Counter()
        self._holds: list[Hold] = []

    def hold(self, method: str, path: str) -> Hold:
        """Hold the next ``method`` request to ``path`` (watches excluded) until released."""
        held = Hold(method, path)
        self._holds.append(held)
        return held

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        path = request.url.path
        held = next(
            (
                h
                for h in self._holds
                if h.method == request.method.value
                and h.path == path
                and request.action != enums.action.WATCH
            ),
            None,
        )
        if held is not None:
            self._holds.remove(held)
            await held.answer()
        if request.method == enums.method.POST and path in _REVIEWS:
            return self._review(_REVIEWS[path], request)
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

    def _review(self, kind: str, request: rendering.Request) -> aiohttp.web.StreamResponse:
        """A TokenReview or SubjectAccessReview, answered from users and grants."""
        auth = dict(request.headers).get("Authorization") or dict(request.headers).get(
            "authorization", ""
        )
        if auth.removeprefix("Bearer ").strip() not in self.reviewers:
            return aiohttp.web.json_response(
                {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403,
                 "reason": "Forbidden", "message": f"cannot create {kind.lower()}s"},
                status=403,
            )  # fmt: skip
        self.reviews[kind] += 1
        data = copy.deepcopy(request.data) if isinstance(request.data, dict) else {}
        spec = data.get("spec") or {}
        if kind == "TokenReview":
            user = self.users.get(str(spec.get("token", "")))
            data["status"] = (
                {"authenticated": True, "user": user}
                if user
                else {"authenticated": False, "error": "invalid bearer token"}
            )
        else:
            attrs = spec.get("resourceAttributes") or {}
            allowed = (
                attrs.get("verb") == "get"
                and attrs.get("group") == "codeintel.io"
                and attrs.get("resource") == "codeindexes"
                and attrs.get("namespace") in self.grants.get(str(spec.get("user")), set())
            )
            data["status"] = {"allowed": allowed}
            if not allowed:
                data["status"]["reason"] = "no RBAC policy matched"
        return aiohttp.web.json_response(data, status=201)

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
