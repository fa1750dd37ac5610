"""The lexical impact index of a generation on disk: written once, mapped by every reader.

Reading FTS5's index into an :class:`~codeintel.core.store.impact.ImpactIndex` costs
1.6-3.5 s and ~19 MB of private memory per sympy-sized generation, paid by every searcher
process at every generation load, and by each store of a fleet searcher. The indexer
therefore writes the index beside ``chunks.sqlite`` (``chunks.impact``, store format 7)
when it writes the database, and readers map it read-only: a load reads a header, the
pages are the page cache's (shared by every process on the machine) and cost nothing
until a query touches them (docs/performance.md, *The impact index stored per
generation*).

Layout: :mod:`~codeintel.core.store.array_file` with the magic ``CIIMPACT``. The header
names the tokenizer, the column weights, the FTS table's row count and total length
(which must equal the database's, so a file never serves another database). A file that
fails any check is refused with :class:`~codeintel.core.errors.IndexFormatError`; the reader then
builds the index in memory as for a generation without the file. Published files are
also covered by the manifest's checksums like every file.

Versions:
  1  ids, norm, vocabulary, vocabulary_starts, starts, positions, freqs
     (:meth:`~codeintel.core.store.impact.ImpactIndex.arrays`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from codeintel.core import errors
from codeintel.core.store import array_file
from codeintel.core.store.impact import ImpactIndex

MAGIC = b"CIIMPACT"
VERSION = 1
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


def save(index: ImpactIndex, path: Path, weights: Sequence[float]) -> None:
    """Write ``index`` (scored with column ``weights``) to ``path``: a temp name, then rename."""
    header: dict[str, object] = {
        "tokenizer": index.tokenizer,
        "weights": [float(w) for w in weights],
        "rows": int(index.rows),
        "total": int(index.total),
    }
    array_file.save(path, MAGIC, VERSION, header, index.arrays(), DTYPES)


def load(
    path: Path, *, tokenizer: str, weights: Sequence[float], rows: int, total: int
) -> ImpactIndex:
    """The index stored at ``path``, its arrays read-only views of a shared mapping (of
    the bytes read, for a file under :data:`~codeintel.core.store.array_file.MAP_MIN_BYTES`).

    ``tokenizer``, ``weights``, ``rows`` and ``total`` are the database's: a file written
    for other ones is refused, as is a short, truncated or newer file (IndexFormatError)."""
    header, arrays = array_file.load(path, MAGIC, VERSION, DTYPES, "impact index")
    try:
        written = (str(header["tokenizer"]), [float(w) for w in header["weights"]])
        counts = (int(header["rows"]), int(header["total"]))
    except (ValueError, KeyError, TypeError) as e:
        raise errors.IndexFormatError(f"{path} has a corrupt header: {e}") from e
    if written != (tokenizer, [float(w) for w in weights]) or counts != (rows, total):
        raise errors.IndexFormatError(
            f"{path} was written for another database or lexicon "
            f"(rows {counts[0]}, length {counts[1]}; this one has {rows}, {total})"
        )
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
