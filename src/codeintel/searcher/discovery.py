"""Which stores a fleet searcher serves: the stores under a root, and this shard's share.

A SearchPool's volume holds one store per repository at
``<stores_root>/<namespace>/<name>/``, named ``namespace/name`` in the API.
With ``shards > 1`` a process serves only the stores that rendezvous-hash to its
``shard_index`` (highest random weight of ``blake2b(shard, name)``), so adding a
shard moves about 1/N of the stores, and the router, which computes the same
map, sends a one-repository tool to the one shard that serves it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from pathlib import Path

from codeintel.core import errors
from codeintel.core import settings as settings_mod
from codeintel.core.store import manifest as manifest_mod

logger = logging.getLogger(__name__)

_REPORTED: set[Path] = set()
"""Directories already logged as skipped: a rescan every few seconds must not repeat it."""

CURRENT = "CURRENT"


def shard_of(name: str, shards: int) -> int:
    """The shard (0..shards-1) that serves repository ``name``: rendezvous hashing."""
    if shards <= 1:
        return 0

    def weight(shard: int) -> bytes:
        return hashlib.blake2b(f"{shard}\x00{name}".encode(), digest_size=8).digest()

    return max(range(shards), key=weight)


def check_settings(fleet: settings_mod.FleetSettings) -> None:
    """ConfigError for a fleet configuration that cannot work, before anything starts."""
    if fleet.shards < 1:
        raise errors.ConfigError(f"shards must be at least 1, not {fleet.shards}")
    if not 0 <= fleet.shard_index < fleet.shards:
        raise errors.ConfigError(
            f"shard index {fleet.shard_index} is outside 0..{fleet.shards - 1}"
        )
    root = Path(fleet.stores_root)
    if root.exists() and not root.is_dir():
        raise errors.ConfigError(f"--stores-root {root} is not a directory")


def discover(root: Path) -> dict[str, Path]:
    """``namespace/name`` -> store root for every store directory under ``root``.

    A store is a directory two levels down holding ``CURRENT`` or ``generations/``
    (a first build in progress has the latter only)."""
    found: dict[str, Path] = {}
    try:
        namespaces = sorted(p for p in root.iterdir() if p.is_dir())
    except FileNotFoundError:
        return found
    for ns in namespaces:
        if ns.name.startswith("."):
            continue
        with contextlib.suppress(OSError):
            for store in sorted(ns.iterdir()):
                if store.name.startswith(".") or not store.is_dir():
                    continue
                if (store / CURRENT).exists() or (store / "generations").is_dir():
                    found[f"{ns.name}/{store.name}"] = store
                elif store not in _REPORTED and len(_REPORTED) < 10_000:
                    _REPORTED.add(store)
                    logger.warning(
                        "skipping %s: no %s and no generations/ (not a store, or not yet built)",
                        store,
                        CURRENT,
                    )
    return found


def read_manifest(root: Path) -> manifest_mod.Manifest | None:
    """The manifest CURRENT names, read without opening the index (None before a publish)."""
    try:
        name = (root / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    path = root / "generations" / name / manifest_mod.MANIFEST
    try:
        return manifest_mod.decode_manifest(path.read_bytes(), source=str(path))
    except FileNotFoundError as e:
        raise errors.IndexFormatError(f"{root / CURRENT} names {name!r}, which is missing") from e
