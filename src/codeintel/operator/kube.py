"""A small asyncio client for the few Kubernetes API calls the handlers make.

kopf watches and patches the CodeIndexes itself but offers no client for other
objects. The official ``kubernetes`` client is synchronous (a thread per call)
and typed per kind; the handlers need only get / list / create / merge-patch /
delete on plain dicts, so this client speaks that over aiohttp — the HTTP
library kopf already runs on — with the very credentials kopf logged in with
(:class:`Credentials`, filled by the ``@kopf.on.login`` handler). In tests the
same credentials point at kmock's emulator.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import logging
import os
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import kopf

from codeintel.core import errors

logger = logging.getLogger(__name__)

Logger = logging.Logger | logging.LoggerAdapter[Any]
"""The ``logger`` kopf passes a handler (an adapter whose lines become the object's
Events), or a module's own logger: what the operator's passes log to."""

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class ApiError(errors.CodeIntelError):
    """The API server refused or failed a request."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {message}")
        self.status = status


class ConflictError(ApiError):
    """HTTP 409: the object exists already (or changed underneath us)."""


@dataclasses.dataclass(slots=True)
class Credentials:
    """The connection kopf logged in with; the login handler keeps it current."""

    connection: kopf.ConnectionInfo | None = None
    token_file: Path | None = None
    """Re-read on every request when set: projected service-account tokens rotate."""


def path(
    api_version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The REST path of a collection or an object, e.g. ``/apis/batch/v1/namespaces/ns/jobs/x``."""
    root = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    parts = [root]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(plural)
    if name:
        parts.append(name)
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


class KubeClient:
    """JSON over HTTP to the API server; one aiohttp session for the operator's lifetime."""

    def __init__(self, credentials: Credentials, *, timeout_seconds: float = 30.0) -> None:
        self._credentials = credentials
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None
        self._session_server: str | None = None
        self._temp_files: list[str] = []

    async def close(self) -> None:
        """Close the session and remove certificate files written for it."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        for name in self._temp_files:
            Path(name).unlink(missing_ok=True)
        self._temp_files.clear()

    async def get(self, url: str) -> dict[str, Any] | None:
        """The object, or ``None`` when it does not exist."""
        return await self._request("GET", url, missing_ok=True)

    async def get_live(self, url: str) -> dict[str, Any] | None:
        """The object, or ``None`` when it does not exist or is being deleted."""
        body = await self.get(url)
        return None if body is None or body["metadata"].get("deletionTimestamp") else body

    async def list(self, url: str, label_selector: Mapping[str, str]) -> list[dict[str, Any]]:
        """Objects of a collection whose labels include ``label_selector``.

        The selector is also checked here, so a server that ignores it (a test emulator)
        yields the same answer."""
        selector = ",".join(f"{k}={v}" for k, v in label_selector.items())
        answer = await self._request("GET", url, params={"labelSelector": selector})
        items = (answer or {}).get("items") or []
        return [
            item
            for item in items
            if all(
                (item.get("metadata", {}).get("labels") or {}).get(k) == v
                for k, v in label_selector.items()
            )
        ]

    async def text(self, url: str, params: Mapping[str, str]) -> str:
        """A plain-text answer (a pod's log); :class:`ApiError` on any error status."""
        session, server = await self._open()
        headers = {"Accept": "text/plain, */*", **self._auth_headers()}
        async with session.get(server + url, params=params, headers=headers) as response:
            if response.status >= 400:
                text = await response.text()
                message = text[:500]
                with contextlib.suppress(ValueError, AttributeError):
                    message = str(json.loads(text).get("message", message))[:500]
                raise ApiError("GET", url, response.status, message)
            return await response.text(errors="replace")

    async def create(self, url: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create an object; :class:`ConflictError` when one of that name exists."""
        answer = await self._request("POST", url, json=body)
        assert answer is not None  # only a 404 yields None, and it raised
        return answer

    async def patch(self, url: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """JSON merge-patch (RFC 7386) an object; ``None`` when it does not exist."""
        return await self._request(
            "PATCH",
            url,
            json=body,
            headers={"Content-Type": "application/merge-patch+json"},
            missing_ok=True,
        )

    async def delete(self, url: str, *, propagation: str = "Background") -> bool:
        """Delete an object (and, in the background, its dependents); false if it was gone."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        return await self._request("DELETE", url, json=body, missing_ok=True) is not None

    async def _request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        session, server = await self._open()
        request_headers = {"Accept": "application/json", **(headers or {})}
        request_headers.update(self._auth_headers())
        async with session.request(
            method, server + url, json=json, params=params, headers=request_headers
        ) as response:
            if response.status == 404 and missing_ok:
                return None
            if response.status >= 400:
                text = await response.text()
                message = text[:500]
                with contextlib.suppress(ValueError):
                    message = str((await response.json(content_type=None)).get("message", text))
                cls = ConflictError if response.status == 409 else ApiError
                raise cls(method, url, response.status, message)
            data = await response.json(content_type=None)
            return data if isinstance(data, dict) else {}

    async def _open(self) -> tuple[aiohttp.ClientSession, str]:
        connection = self._credentials.connection
        if connection is None:
            raise ApiError("CONNECT", "", 0, "kopf has not logged in yet")
        server = str(connection.server).rstrip("/")
        if self._session is not None and self._session_server != server:
            await self.close()
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl_context(connection), limit=20)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, trust_env=connection.trust_env
            )
            self._session_server = server
        return self._session, server

    def _auth_headers(self) -> dict[str, str]:
        connection = self._credentials.connection
        if connection is None:
            return {}
        token = connection.token
        if self._credentials.token_file is not None:
            try:
                token = self._credentials.token_file.read_text().strip() or token
            except OSError:
                logger.warning(
                    "cannot read %s; using the token from login", self._credentials.token_file
                )
        if token:
            return {"Authorization": f"{connection.scheme or 'Bearer'} {token}"}
        if connection.username and connection.password:
            pair = f"{connection.username}:{connection.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        return {}

    def _ssl_context(self, connection: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
        if not str(connection.server).startswith("https"):
            return False
        if connection.insecure:
            return False
        context = ssl.create_default_context(
            cafile=_as_str(connection.ca_path),
            cadata=_decode(connection.ca_data),
        )
        cert = connection.certificate_path or self._write_temp(connection.certificate_data)
        key = connection.private_key_path or self._write_temp(connection.private_key_data)
        if cert:
            context.load_cert_chain(_as_str(cert) or "", _as_str(key))
        return context

    def _write_temp(self, data: str | bytes | None) -> str | None:
        """PEM data to a private temp file: ssl loads client certificates only from files."""
        if not data:
            return None
        fd, name = tempfile.mkstemp(prefix="codeintel-kube-", suffix=".pem")
        with os.fdopen(fd, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        self._temp_files.append(name)
        return name


def _as_str(value: Any) -> str | None:
    if value is None:
        return None
    return os.fsdecode(value)


def _decode(value: str | bytes | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else value
