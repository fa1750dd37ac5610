"""Files of named numpy arrays behind a JSON header, written once and mapped by readers.

The generation files that readers map rather than read (``chunks.impact``,
``symbols.postings``) share this layout, all little-endian::

    magic (8 bytes)  uint32 version  uint32 header length  header (JSON)  arrays

The header holds the caller's fields, the file's size and, per array, its name, dtype,
byte offset (a multiple of 64) and length. :func:`load` checks the magic, the version,
the size and that every array lies inside the file with the dtype the caller expects,
and returns read-only views of one shared mapping: a load reads the header, and the
pages are the page cache's until a query touches them. Anything wrong is an
:class:`~codeintel.core.errors.IndexFormatError` naming the file.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from codeintel.core import errors
from codeintel.core.store import files

_PREFIX = struct.Struct("<8sII")
_ALIGN = 64
MAP_MIN_BYTES = 1 << 20
"""Smaller files are read, not mapped: before Python 3.13 a mapping holds a file descriptor
open, and a fleet searcher holds hundreds of small stores (a 4-file store's index is a few
KB) but few large ones, whose private megabytes the descriptor saves."""
_UNTRACKED: dict[str, bool] = {"trackfd": False} if sys.version_info >= (3, 13) else {}


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


def save(
    path: Path,
    magic: bytes,
    version: int,
    header: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    dtypes: Mapping[str, str],
) -> None:
    """Write ``header`` and ``arrays`` (each as ``dtypes[name]``) to ``path``: a temp
    name, then rename."""
    arrays = {n: np.ascontiguousarray(a, dtype=dtypes[n]) for n, a in arrays.items()}
    fields = dict(header)
    # The offsets are in the header, whose length moves them: grow the room until it fits.
    room = 1024
    while True:
        offsets: list[int] = []
        end = _aligned(_PREFIX.size + room)
        for a in arrays.values():
            offsets.append(end)
            end = _aligned(end + a.nbytes)
        fields["arrays"] = [
            [n, dtypes[n], at, len(a)] for (n, a), at in zip(arrays.items(), offsets, strict=True)
        ]
        fields["size"] = end
        text = json.dumps(fields, separators=(",", ":")).encode()
        if len(text) <= room:
            break
        room *= 2
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(_PREFIX.pack(magic, version, len(text)))
        f.write(text)
        for a, at in zip(arrays.values(), offsets, strict=True):
            f.write(bytes(at - f.tell()))
            f.write(a.data.cast("B"))  # no copy of the array
        f.write(bytes(end - f.tell()))
    files.share(tmp, files.FILE_READ)
    os.replace(tmp, path)


def load(
    path: Path, magic: bytes, version: int, dtypes: Mapping[str, str], what: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and the arrays of a file :func:`save` wrote, the arrays read-only views
    of a shared mapping (of the bytes read, for a file under :data:`MAP_MIN_BYTES`).

    ``what`` names the kind of file in errors. A short, truncated, foreign or newer
    file, or one whose arrays are not exactly ``dtypes``, is refused."""
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
    found_magic, found_version, length = _PREFIX.unpack_from(mapped, 0)
    if found_magic != magic:
        raise errors.IndexFormatError(f"{path} is not an {what}")
    if found_version != version:
        raise errors.IndexFormatError(
            f"{path} is {what} version {found_version}; this codeintel reads {version}"
        )
    try:
        header = json.loads(mapped[_PREFIX.size : _PREFIX.size + length])
        layout = {str(n): (str(d), int(at), int(count)) for n, d, at, count in header["arrays"]}
        expected_size = int(header["size"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise errors.IndexFormatError(f"{path} has a corrupt header: {e}") from e
    if expected_size != size:
        raise errors.IndexFormatError(f"{path} holds {size} bytes, its header says {expected_size}")
    if set(layout) != set(dtypes):
        raise errors.IndexFormatError(f"{path} holds arrays {sorted(layout)}")
    arrays: dict[str, np.ndarray] = {}
    for name, (dtype, at, count) in layout.items():
        item = np.dtype(dtypes[name]).itemsize
        if dtype != dtypes[name] or at % _ALIGN or at < _PREFIX.size + length:
            raise errors.IndexFormatError(f"{path}: bad layout of {name}")
        if count < 0 or at + count * item > size:
            raise errors.IndexFormatError(f"{path}: {name} runs past the end of the file")
        arrays[name] = np.frombuffer(mapped, dtype=dtypes[name], count=count, offset=at)
    return header, arrays
