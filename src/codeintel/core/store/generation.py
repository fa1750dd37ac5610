"""Reading one published generation: its manifest, checksums, indexes, vectors, chunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from codeintel.core import errors
from codeintel.core.store import files
from codeintel.core.store.chunks import ChunkDB
from codeintel.core.store.manifest import (
    CHUNKS_DB,
    MANIFEST,
    PRIMARY,
    SECONDARY,
    TOMBSTONES,
    VECTORS_DIR,
    decode_manifest,
)
from codeintel.core.store.vectors import VectorStore


class Generation:
    """Read view of one published generation; ``verify`` checks every file's checksum."""

    def __init__(self, path: Path, *, verify: bool = True) -> None:
        self.path = Path(path)
        self.name = self.path.name
        manifest_path = self.path / MANIFEST
        try:
            data = manifest_path.read_bytes()
        except FileNotFoundError as e:
            raise errors.IndexFormatError(f"generation {self.name} has no {MANIFEST}") from e
        self.manifest = decode_manifest(data, source=str(manifest_path))
        if self.manifest.generation != self.name:
            raise errors.IndexFormatError(
                f"{manifest_path} names generation {self.manifest.generation!r}, not {self.name!r}"
            )
        self._tombstones: np.ndarray | None = None
        if verify:
            self.verify()

    def __repr__(self) -> str:
        return f"Generation({self.name!r}, commit={self.manifest.commit[:12]!r})"

    def verify(self) -> None:
        """Every file named in the manifest exists and has the recorded sha256."""
        for rel, expected in sorted(self.manifest.checksums.items()):
            path = self.path / files.relpath(rel)
            if not path.is_file():
                raise errors.IndexFormatError(f"generation {self.name} is missing {rel}")
            actual = files.file_checksum(path)
            if actual != expected:
                raise errors.IndexFormatError(
                    f"checksum mismatch in generation {self.name}: {rel} "
                    f"has {actual}, the manifest records {expected}"
                )

    @property
    def primary_path(self) -> Path:
        return self.path / PRIMARY

    @property
    def secondary_path(self) -> Path:
        return self.path / SECONDARY

    def tombstones(self) -> np.ndarray:
        """Sorted int64 ids deleted since the base generation (empty when there is no file)."""
        if self._tombstones is None:
            path = self.path / TOMBSTONES
            if not path.exists():
                ids = np.empty(0, dtype=np.int64)
            else:
                try:
                    ids = np.load(path, allow_pickle=False)
                except (OSError, ValueError) as e:
                    raise errors.IndexFormatError(f"corrupt {path}: {e}") from e
                if ids.ndim != 1 or ids.dtype != np.int64:
                    raise errors.IndexFormatError(f"{path} is not a 1-d int64 array")
                ids = np.sort(ids)
            ids.flags.writeable = False
            self._tombstones = ids
        return self._tombstones

    def vectors(self) -> VectorStore:
        return VectorStore.open(self.path / VECTORS_DIR)

    def chunks(self, readonly: bool = True) -> ChunkDB:
        """The chunk database; ``readonly=False`` is for repair tools only (it breaks checksums)."""
        return ChunkDB.open(self.path / CHUNKS_DB, readonly=readonly)
