"""The lexical impact index of a generation on disk: written once, mapped by every reader.

Reading FTS5's index into an :class:`~codeintel.core.store.impact.ImpactIndex` costs
1.6-3.5 s and ~19 MB of private memory per sympy-sized generation, paid by every searcher
process at every generation load, and by each store of a fleet searcher. The indexer
therefore writes the index beside ``chunks.sqlite`` (``chunks.impact``, store format 7)
when it writes the database, and readers map it read-only: a load reads a header, the
pages are the page cache's (shared by every process on the machine) and cost nothing
until a query touches them (docs/performance.md, *The impact index stored per
generation*).

Layout, all little-endian::

    b"CIIMPACT"  uint32 version  uint32 header length  header (JSON)  arrays

The header names the tokenizer, the column weights, the FTS table's row count and total
length (which must equal the database's, so a file never serves another database) and,
per array, its dtype, byte offset (a multiple of 64) and length. A file that fails any
check is refused with :class:`~codeintel.core.errors.IndexFormatError`; the reader then
builds the index in memory as for a generation without the file. Published files are
also covered by the manifest's checksums like every file.

Versions:
  1  ids, norm, vocabulary, vocabulary_starts, starts, positions, freqs
     (:meth:`~codeintel.core.store.impact.ImpactIndex.arrays`).
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from codeintel.core import errors
from codeintel.core.store import files
from codeintel.core.store.impact import ImpactIndex

MAGIC = b"CIIMPACT"
VERSION = 1
_PREFIX = struct.Struct("<8sII")
_ALIGN = 64
DTYPES = {
    "ids": "<i8",
    "norm": "<f8",
    "vocabulary": "|u1",
    "vocabulary_starts": "<i8",
    "starts": "<i8",
    "positions": "<i4",
    "freqs": "<f4",
}
"""Every array of version 1 and its dtype."""
MAP_MIN_BYTES = 1 << 20
"""Smaller files are read, not mapped: before Python 3.13 a mapping holds a file descriptor
open, and a fleet searcher holds hundreds of small stores (a 4-file store's index is a few
KB) but few large ones, whose private megabytes the descriptor saves."""
_UNTRACKED: dict[str, bool] = {"trackfd": False} if sys.version_info >= (3, 13) else {}


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


def save(index: ImpactIndex, path: Path, weights: Sequence[float]) -> None:
    """Write ``index`` (scored with column ``weights``) to ``path``: a temp name, then rename."""
    arrays = {n: np.ascontiguousarray(a, dtype=DTYPES[n]) for n, a in index.arrays().items()}
    header: dict[str, object] = {
        "tokenizer": index.tokenizer,
        "weights": [float(w) for w in weights],
        "rows": int(index.rows),
        "total": int(index.total),
    }
    # The offsets are in the header, whose length moves them: grow the room until it fits.
    room = 1024
    while True:
        offsets: list[int] = []
        end = _aligned(_PREFIX.size + room)
        for a in arrays.values():
            offsets.append(end)
            end = _aligned(end + a.nbytes)
        header["arrays"] = [
            [n, DTYPES[n], at, len(a)] for (n, a), at in zip(arrays.items(), offsets, strict=True)
        ]
        header["size"] = end
        text = json.dumps(header, separators=(",", ":")).encode()
        if len(text) <= room:
            break
        room *= 2
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(_PREFIX.pack(MAGIC, VERSION, len(text)))
        f.write(text)
        for a, at in zip(arrays.values(), offsets, strict=True):
            f.write(bytes(at - f.tell()))
            f.write(a.tobytes())
        f.write(bytes(end - f.tell()))
    files.share(tmp, files.FILE_READ)
    os.replace(tmp, path)


def load(
    path: Path, *, tokenizer: str, weights: Sequence[float], rows: int, total: int
) -> ImpactIndex:
    """The index stored at ``path``, its arrays read-only views of a shared mapping (of
    the bytes read, for a file under :data:`MAP_MIN_BYTES`).

    ``tokenizer``, ``weights``, ``rows`` and ``total`` are the database's: a file written
    for other ones is refused, as is a short, truncated or newer file (IndexFormatError)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < _PREFIX.size:
                raise errors.IndexFormatError(f"{path} is too short ({size} bytes)")
            mapped: bytes | mmap.mmap = (
                f.read()
                if size < MAP_MIN_BYTES
                else mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ, **_UNTRACKED)
            )
    except OSError as e:
        raise errors.IndexFormatError(f"cannot map {path}: {e.strerror}") from e
    magic, version, length = _PREFIX.unpack_from(mapped, 0)
    if magic != MAGIC:
        raise errors.IndexFormatError(f"{path} is not an impact index")
    if version != VERSION:
        raise errors.IndexFormatError(
            f"{path} is impact index version {version}; this codeintel reads {VERSION}"
        )
    try:
        header = json.loads(mapped[_PREFIX.size : _PREFIX.size + length])
        layout = {str(n): (str(d), int(at), int(count)) for n, d, at, count in header["arrays"]}
        written = (str(header["tokenizer"]), [float(w) for w in header["weights"]])
        counts = (int(header["rows"]), int(header["total"]))
        expected_size = int(header["size"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise errors.IndexFormatError(f"{path} has a corrupt header: {e}") from e
    if expected_size != size:
        raise errors.IndexFormatError(f"{path} holds {size} bytes, its header says {expected_size}")
    if written != (tokenizer, [float(w) for w in weights]) or counts != (rows, total):
        raise errors.IndexFormatError(
            f"{path} was written for another database or lexicon "
            f"(rows {counts[0]}, length {counts[1]}; this one has {rows}, {total})"
        )
    if set(layout) != set(DTYPES):
        raise errors.IndexFormatError(f"{path} holds arrays {sorted(layout)}")
    arrays: dict[str, np.ndarray] = {}
    for name, (dtype, at, count) in layout.items():
        item = np.dtype(DTYPES[name]).itemsize
        if dtype != DTYPES[name] or at % _ALIGN or at < _PREFIX.size + length:
            raise errors.IndexFormatError(f"{path}: bad layout of {name}")
        if count < 0 or at + count * item > size:
            raise errors.IndexFormatError(f"{path}: {name} runs past the end of the file")
        arrays[name] = np.frombuffer(mapped, dtype=DTYPES[name], count=count, offset=at)
    _check_shapes(path, arrays)
    return ImpactIndex.from_arrays(arrays, rows=rows, total=total, tokenizer=tokenizer)


def _check_shapes(path: Path, a: dict[str, np.ndarray]) -> None:
    """The lengths agree; the few bytes read here are all a load touches."""
    terms = len(a["starts"]) - 1
    consistent = (
        len(a["ids"]) == len(a["norm"])
        and len(a["positions"]) == len(a["freqs"])
        and terms >= 0
        and len(a["vocabulary_starts"]) == terms + 1
        and int(a["starts"][0]) == 0
        and int(a["starts"][-1]) == len(a["positions"])
        and int(a["vocabulary_starts"][0]) == 0
        and int(a["vocabulary_starts"][-1]) == len(a["vocabulary"])
    )
    if not consistent:
        raise errors.IndexFormatError(f"{path}: its arrays disagree in length")
