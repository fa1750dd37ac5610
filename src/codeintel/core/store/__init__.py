"""The on-disk index store: immutable generations, published by an atomic ``CURRENT`` swap.

This is the contract between the indexer (the only writer) and the searchers
(many readers, possibly on other machines sharing a volume; docs/architecture.md,
"Writing a generation"). A writer builds a generation in a temp directory under
``generations/``, fsyncs it, records a sha256 of every file in its manifest,
renames the directory to its final name and only then replaces ``CURRENT``. A
crash at any point before that last rename leaves ``CURRENT`` on the previous
generation, so a reader never sees a half-written one, and a reader that
verifies checksums never serves a corrupted one. Old generations are deleted
only after a grace period, because searchers may still be serving them.
"""

import importlib
from typing import TYPE_CHECKING, Any

from codeintel.core.store.manifest import (
    CHUNKS_DB,
    CURRENT,
    FORMAT_VERSION,
    IMPACT,
    INDEX_TYPES,
    MANIFEST,
    MIN_READER_VERSION,
    PRIMARY,
    SECONDARY,
    SYMBOL_FILES,
    SYMBOLS_DB,
    TOMBSTONES,
    VECTORS_DIR,
    WINDOWS_READER_VERSION,
    Calibration,
    Counts,
    DenseCoverage,
    EmbeddingInfo,
    IndexInfo,
    Manifest,
    ManifestPeek,
    SkippedFile,
    decode_manifest,
    encode_manifest,
    peek_manifest,
)

if TYPE_CHECKING:
    from codeintel.core.store.files import file_checksum
    from codeintel.core.store.generation import Generation
    from codeintel.core.store.root import Store
    from codeintel.core.store.writer import GenerationWriter

# The reader and writer pull in numpy, sqlite and the vector store; the manifest format
# does not. They load on first use, so the operator (which reads Job results, i.e. the
# format only) never imports numpy.
_LAZY = {
    "file_checksum": "files",
    "Generation": "generation",
    "Store": "root",
    "GenerationWriter": "writer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "CHUNKS_DB",
    "CURRENT",
    "FORMAT_VERSION",
    "IMPACT",
    "INDEX_TYPES",
    "MANIFEST",
    "MIN_READER_VERSION",
    "PRIMARY",
    "SECONDARY",
    "SYMBOLS_DB",
    "SYMBOL_FILES",
    "TOMBSTONES",
    "VECTORS_DIR",
    "WINDOWS_READER_VERSION",
    "Calibration",
    "Counts",
    "DenseCoverage",
    "EmbeddingInfo",
    "Generation",
    "GenerationWriter",
    "IndexInfo",
    "Manifest",
    "ManifestPeek",
    "SkippedFile",
    "Store",
    "decode_manifest",
    "encode_manifest",
    "file_checksum",
    "peek_manifest",
]
