"""The store's format: version constants, file names and the manifest schema.

Every generation directory carries a ``manifest.json`` that says what it holds
and who may read it. Readers decode the two version fields first, so a store
written by a newer codeintel is refused with a message naming both versions
instead of failing somewhere inside a FAISS or SQLite read.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from codeintel import __version__
from codeintel.core import errors

# Format versions (zoekt index/toc.go style). A manifest records the version that
# wrote it (format_version) and the oldest reader able to read it
# (min_reader_version). A reader refuses a manifest whose min_reader_version is
# above its FORMAT_VERSION. Bump FORMAT_VERSION for every change to the layout;
# bump MIN_READER_VERSION too when older readers would misread the new layout
# (adding an optional manifest field does not need it; changing a file does).
#
# Changelog:
#   1  manifest.json (msgspec), primary.faiss / secondary.faiss (IndexIDMap2),
#      tombstones.npy (sorted int64), vectors/<segment>.{ids,f16}.npy,
#      chunks.sqlite (schema 1, FTS5 unicode61 with tokenchars "_"),
#      sha256 checksums of every file in the manifest.
#   2  optional history/commits.msgpack and history/blame.msgpack (precomputed
#      path history and blame, core/history_index.py); readers of 1 ignore them.
#   3  optional index.calibration in the manifest (how the primary's type and nprobe
#      were measured); readers of 1 and 2 ignore it, and read its absence as "not recorded".
#   4  long chunks may have several vectors: ids above 2**48 in the indexes and
#      vector segments are windows of a chunk (core/windows.py). A generation
#      holding any sets min_reader_version 4 (an older reader would take them
#      for chunk ids); one without them stays readable by 1.
#   5  chunks.sqlite schema 2 (code-aware lexicon, core/lexical.py). A generation
#      records min_reader_version 5 only when its chunks.sqlite is schema 2; an
#      update of an older generation keeps schema 1 and stays readable by 1.
#   6  optional symbols.sqlite (definitions, import spans and identifier occurrences
#      for navigation; core/store/symbols.py, schema 1). Readers of 1-5 ignore it; a
#      generation without it (built before 6, or updated from one) answers the
#      navigation tools with "not indexed: rebuild" (core/symbols.SymbolIndex.open
#      returns None). min_reader_version is unchanged.
#   7  optional chunks.impact (chunks.sqlite's FTS5 index as BM25 postings, mapped by
#      readers; core/store/impact_file.py, version 1), written with every chunks.sqlite
#      of schema 2. Readers of 1-6 ignore it; a reader of 7 reads a generation without
#      it (or with one it refuses) by reading the FTS5 index into memory, as 6 did.
#      min_reader_version is unchanged.
#   8  symbols.sqlite schema 2: the identifier occurrences move out of its postings
#      table into symbols.postings beside it (flat columns mapped by readers;
#      core/store/symbols_postings.py, version 1), tied to the database by a token.
#      A reader of 6-7 refuses a schema-2 database by its version and turns the
#      navigation tools off for that generation ("not indexed"), every other tool
#      answering; an update of a schema-1 generation stays schema 1. A merge links
#      both files. min_reader_version is unchanged.
FORMAT_VERSION = 8
MIN_READER_VERSION = 1
WINDOWS_READER_VERSION = 4
"""min_reader_version of a generation whose vectors include windows."""

PRIMARY = "primary.faiss"
SECONDARY = "secondary.faiss"
TOMBSTONES = "tombstones.npy"
CHUNKS_DB = "chunks.sqlite"
SYMBOLS_DB = "symbols.sqlite"
SYMBOL_POSTINGS = "symbols.postings"
SYMBOL_FILES = (SYMBOLS_DB, SYMBOL_POSTINGS)
"""The files of a generation's symbol index (the postings file from format 8)."""
IMPACT = "chunks.impact"
VECTORS_DIR = "vectors"
MANIFEST = "manifest.json"
CURRENT = "CURRENT"
IndexType = Literal["flat", "ivf_flat", "ivf_pq"]
INDEX_TYPES: tuple[IndexType, ...] = ("flat", "ivf_flat", "ivf_pq")
"""Primary index kinds, smallest corpus first (docs/architecture.md, *Vector indexes*)."""


class EmbeddingInfo(msgspec.Struct):
    model: str
    dim: int


class Calibration(msgspec.Struct, kw_only=True):
    """What the build measured to choose the primary (docs/architecture.md, *Vector indexes*)."""

    flat_ms: Annotated[
        float, msgspec.Meta(description="Exact scan of the vectors, ms per query on one core.")
    ]
    budget_ms: Annotated[
        float,
        msgspec.Meta(description="Latency budget: the primary is exact when flat_ms fits."),
    ]
    """The settings' ``exact_budget_ms``."""
    nprobe: Annotated[
        int, msgspec.Meta(description="IVF lists probed per query (0: exact primary).")
    ] = 0
    recall_at_10: Annotated[
        float | None,
        msgspec.Meta(
            description="Recall@10 against exact search at nprobe, on text queries from the corpus."
        ),
    ] = None
    """The mean over the calibration queries; None when not measured (an exact primary,
    or no queries)."""
    target: float = 0.0
    """The recall@10 calibration aimed for."""
    reached: bool = True
    """Whether ``recall_at_10`` met ``target``; when not, ``nprobe`` is the best found."""
    queries: Annotated[
        int,
        msgspec.Meta(description="Calibration queries (docstring/comment/README sentences)."),
    ] = 0
    """Drawn from the corpus."""
    seconds: float = 0.0
    """Build time spent measuring and calibrating."""
    note: str = ""
    """Why calibration fell back to a default, when it did."""


class IndexInfo(msgspec.Struct):
    type: str
    """One of :data:`INDEX_TYPES`."""
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    calibration: Calibration | None = None
    """Absent in stores written before format version 3."""


class Counts(msgspec.Struct):
    primary: int
    secondary: int
    tombstones: int


class DenseCoverage(msgspec.Struct):
    """Chunks with a dense vector, when fewer than all: a progressive first generation
    (``indexer/firstpass.py``). Lexical search covers all ``total``; a full build replaces it."""

    chunks: int
    total: int


class SkippedFile(msgspec.Struct):
    path: str
    reason: str
    size: int = 0


class Manifest(msgspec.Struct, kw_only=True):
    """``manifest.json`` of one generation. :meth:`GenerationWriter.publish` fills in
    ``format_version``, ``min_reader_version``, ``generation``, ``parent``,
    ``checksums`` and ``created_at`` (and ``base_generation`` when left empty, i.e. a full build)."""

    format_version: int = FORMAT_VERSION
    min_reader_version: int = MIN_READER_VERSION
    generation: str = ""
    parent: str | None = None
    base_generation: str = ""
    """The last full build or merge, whose primary index this generation uses."""
    repo_url: str
    commit: str
    ref: str
    embedding: EmbeddingInfo
    index: IndexInfo
    counts: Counts
    next_id: int
    """Next free chunk id; ids are never reused across generations."""
    files_indexed: int = 0
    skipped: list[SkippedFile] = msgspec.field(default_factory=list)
    timings: dict[str, float] = msgspec.field(default_factory=dict)
    """Seconds per build stage."""
    checksums: dict[str, str] = msgspec.field(default_factory=dict)
    """Relative file path -> ``sha256:<hex>``, for every file but the manifest."""
    created_at: str = ""
    """ISO-8601 UTC time of publication; GC measures its grace period from it."""
    codeintel_version: str = __version__
    dense_coverage: DenseCoverage | None = None
    """Set only on a progressive build's first generation (its vectors cover part of the
    chunks); absent means every chunk has its vectors. Older readers ignore it."""


class _VersionProbe(msgspec.Struct):
    """The two fields read before anything else, so a newer layout is refused clearly."""

    format_version: int
    min_reader_version: int


class ManifestPeek(msgspec.Struct):
    """What a writer may still learn from a manifest it cannot fully read (corrupt or newer)."""

    next_id: int = 1
    repo_url: str = ""
    ref: str = ""
    dense_coverage: DenseCoverage | None = None


def peek_manifest(data: bytes) -> ManifestPeek | None:
    """``next_id`` and ``repo_url`` of any JSON manifest, without the version check; None if unreadable."""
    try:
        return msgspec.json.decode(data, type=ManifestPeek)
    except msgspec.MsgspecError:
        return None


def encode_manifest(manifest: Manifest) -> bytes:
    """Indented JSON, for people reading the store as much as for programs."""
    return msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n"


def decode_manifest(data: bytes, source: str = MANIFEST) -> Manifest:
    """Parse a manifest, refusing corrupt ones and ones this reader is too old for."""
    try:
        probe = msgspec.json.decode(data, type=_VersionProbe)
    except msgspec.MsgspecError as e:
        raise errors.IndexFormatError(f"corrupt manifest {source}: {e}") from e
    if probe.min_reader_version > FORMAT_VERSION:
        raise errors.IndexFormatError(
            f"{source} was written in store format version {probe.format_version} and needs a "
            f"reader of format version {probe.min_reader_version} or newer; this codeintel "
            f"({__version__}) reads format version {FORMAT_VERSION}: upgrade codeintel"
        )
    if probe.format_version < 1:
        raise errors.IndexFormatError(
            f"corrupt manifest {source}: format_version {probe.format_version}"
        )
    try:
        return msgspec.json.decode(data, type=Manifest)
    except msgspec.MsgspecError as e:
        raise errors.IndexFormatError(f"corrupt manifest {source}: {e}") from e
