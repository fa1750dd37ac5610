"""``symbols.postings``: a generation's identifier occurrences as flat columns, mapped by readers.

Symbol schema 1 (store formats 6-7) kept one SQLite row per (name, file) holding that
file's occurrences of the name packed in a blob. Inserting those rows (158K on sympy)
and indexing them was a third of the symbol pass's writing, and cutting the blobs
another third. Schema 2 stores every occurrence once, sorted by (name, file), as
columns beside ``symbols.sqlite`` (``symbols.postings``, store format 8); the build
writes them with a handful of numpy calls and readers map them read-only
(:mod:`~codeintel.core.store.array_file`; docs/performance.md, *The symbol pass with
postings in a flat file*).

Arrays (version 1), ``P`` postings (one per name and file), ``N`` occurrences:

* ``name_starts`` (names + 2): the postings of name id ``n`` are
  ``name_starts[n]:name_starts[n + 1]``, ordered by file id;
* ``files`` (P): each posting's file id (``files.id`` of the database);
* ``starts`` (P + 1): the occurrences of posting ``p`` are ``starts[p]:starts[p + 1]``,
  in the file's source order;
* ``lines``, ``columns`` (u32, 1-based line and 0-based byte column), ``kinds`` (u8,
  :data:`~codeintel.core.store.symbols.OCCURRENCE_KINDS`) and ``enclosing`` (the symbol
  id of the innermost enclosing definition, 0 at module level), each N long.

The header carries a token that the database also holds (its ``meta`` table), so a
postings file never serves another database. An update drops the postings of removed
files from the parent's columns, sorts the new files' on their own and merges the two
sorted runs (:func:`save_update`).

Versions:
  1  name_starts, files, starts, lines, columns, kinds, enclosing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import NamedTuple

import numpy as np

from codeintel.core import errors
from codeintel.core.store import array_file

MAGIC = b"CISYMPOS"
VERSION = 1
DTYPES = {
    "name_starts": "<i8",
    "files": "<i8",
    "starts": "<i8",
    "lines": "<u4",
    "columns": "<u4",
    "kinds": "|u1",
    "enclosing": "<i8",
}
"""Every array of version 1 and its dtype."""
_BATCH = 500
"""File ids looked up per query (SQLite's variable limit is 32,766)."""


class Occurrences(NamedTuple):
    """Occurrences as parallel columns, each with its name id and file id."""

    names: np.ndarray
    files: np.ndarray
    lines: np.ndarray
    columns: np.ndarray
    kinds: np.ndarray
    enclosing: np.ndarray

    @classmethod
    def concatenate(cls, parts: list[Occurrences]) -> Occurrences:
        dtypes = (np.int64, np.int64, np.uint32, np.uint32, np.uint8, np.int64)
        if not parts:
            return cls(*(np.zeros(0, dtype=d) for d in dtypes))
        return cls(*(np.concatenate(column) for column in zip(*parts, strict=True)))

    def without_files(self, file_ids: list[int]) -> Occurrences:
        keep = ~np.isin(self.files, np.asarray(file_ids, dtype=np.int64))
        return Occurrences(*(column[keep] for column in self))


def save(path: Path, occurrences: Occurrences, names: int, token: str) -> None:
    """Write ``occurrences`` (name ids 1 to ``names``) sorted into postings, tied to the
    database by ``token``: a temp name, then rename."""
    order, firsts = _sorted(occurrences)
    _write(
        path,
        token,
        names,
        occurrences.names[order][firsts],
        occurrences.files[order][firsts],
        np.append(firsts, len(order)),
        [column[order] for column in occurrences[2:]],
    )


def save_update(
    path: Path, parent: Postings, dropped: list[int], added: Occurrences, names: int, token: str
) -> None:
    """Write ``parent``'s postings without the files ``dropped``, plus ``added`` (name ids
    1 to ``names``): the bytes :func:`save` writes for the same occurrences, tied to the
    database by ``token``.

    The kept postings are sorted already, so only the added ones are sorted, and the two
    runs are merged: linear in the parent's size where sorting it all again was
    O(n log n) on every update (docs/performance.md, *An update merges the postings*).
    Kept name ids stay valid: an update's new names take new ids, after the parent's.
    """
    counts = np.diff(parent.starts)
    kept = ~np.isin(parent.files, np.asarray(dropped, dtype=np.int64))
    kept_names = np.repeat(
        np.arange(len(parent.name_starts) - 1, dtype=np.int64), np.diff(parent.name_starts)
    )[kept]
    kept_files = parent.files[kept].astype(np.int64)
    kept_counts = counts[kept]
    order, firsts = _sorted(added)
    new_names, new_files = added.names[order][firsts], added.files[order][firsts]
    new_counts = np.diff(np.append(firsts, len(order)))
    span = max(int(kept_files.max(initial=0)), int(new_files.max(initial=0))) + 1
    if max(names, len(parent.name_starts)) >= (1 << 62) // span:  # keys beyond 63 bits
        everything = Occurrences.concatenate([parent.everything().without_files(dropped), added])
        save(path, everything, names, token)
        return
    kept_keys = kept_names * span + kept_files
    if len(kept_keys) > 1 and not bool(np.all(kept_keys[1:] > kept_keys[:-1])):
        raise errors.IndexFormatError(f"{parent.path}: its postings are not in (name, file) order")
    # Each added posting goes before the first kept one with a larger key (no key is in
    # both: an added file's postings were dropped from the parent), after those placed
    # before it: np.insert's placement, into arrays allocated once.
    at = np.searchsorted(kept_keys, new_names * span + new_files) + np.arange(len(new_names))
    postings = len(kept_keys) + len(at)
    placed = np.zeros(postings, dtype=bool)
    placed[at] = True
    out_names, out_files, out_counts = (
        _merged(postings, placed, at, old, new)
        for old, new in (
            (kept_names, new_names),
            (kept_files, new_files),
            (kept_counts, new_counts),
        )
    )
    starts = np.zeros(postings + 1, dtype=np.int64)
    np.cumsum(out_counts, out=starts[1:])
    # The same placement for the occurrences: each added posting's run lands at its start.
    occurrences = int(starts[-1])
    to = np.repeat(starts[at] - firsts, new_counts) + np.arange(len(order))
    landed = np.zeros(occurrences, dtype=bool)
    landed[to] = True
    kept_rows = None if bool(kept.all()) else np.repeat(kept, counts)
    columns = [
        _merged(occurrences, landed, to, old if kept_rows is None else old[kept_rows], new[order])
        for old, new in zip(parent.columns, added[2:], strict=True)
    ]
    _write(path, token, names, out_names, out_files, starts, columns)


def _merged(
    size: int, placed: np.ndarray, at: np.ndarray, old: np.ndarray, new: np.ndarray
) -> np.ndarray:
    """``old`` with ``new`` placed at ``at`` (``placed`` marks those), in ``size`` rows."""
    out = np.empty(size, dtype=old.dtype)
    out[at] = new
    out[~placed] = old
    return out


def _sorted(occurrences: Occurrences) -> tuple[np.ndarray, np.ndarray]:
    """The order of ``occurrences`` by (name, file), stable (each posting keeps its source
    order), and where each posting starts in that order."""
    names_col, files_col = occurrences.names, occurrences.files
    span = int(files_col.max()) + 1 if len(files_col) else 1
    top = int(names_col.max()) + 1 if len(names_col) else 1
    if top < (1 << 62) // span:
        order = _radix_order(names_col * span + files_col, (top * span - 1).bit_length())
    else:  # keys beyond 63 bits
        order = np.lexsort((files_col, names_col))
    names_col, files_col = names_col[order], files_col[order]
    firsts = np.flatnonzero(
        (np.diff(names_col, prepend=-1) != 0) | (np.diff(files_col, prepend=-1) != 0)
    )
    return order, firsts


def _radix_order(keys: np.ndarray, bits: int) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` of non-negative keys below ``2**bits``, 16 bits a
    pass from the lowest: numpy's stable sort is a radix sort for 16-bit digits and a
    merge sort for wider ones (0.08 -> 0.04 CPU s for sympy's 1.5M occurrences)."""
    order = np.arange(len(keys))
    for shift in range(0, max(bits, 1), 16):
        digits = ((keys[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digits, kind="stable")]
    return order


def _write(
    path: Path,
    token: str,
    names: int,
    posting_names: np.ndarray,
    posting_files: np.ndarray,
    starts: np.ndarray,
    columns: list[np.ndarray],
) -> None:
    """Postings in (name, file) order and their occurrences' columns to ``path``."""
    lines, cols, kinds, enclosing = columns
    arrays = {
        "name_starts": np.searchsorted(posting_names, np.arange(names + 2), side="left"),
        "files": posting_files,
        "starts": starts,
        "lines": lines,
        "columns": cols,
        "kinds": kinds,
        "enclosing": enclosing,
    }
    header = {"token": token, "names": names, "postings": len(posting_files)}
    array_file.save(path, MAGIC, VERSION, header, arrays, DTYPES)


class Postings:
    """Read side of a postings file: per name, its files and counts; per (name, file),
    the occurrences. Thread-safe (read-only arrays)."""

    def __init__(self, path: Path, arrays: dict[str, np.ndarray]) -> None:
        self.path = path
        self.name_starts = arrays["name_starts"]
        self.files = arrays["files"]
        self.starts = arrays["starts"]
        self.columns = (arrays["lines"], arrays["columns"], arrays["kinds"], arrays["enclosing"])

    @classmethod
    def load(cls, path: Path, token: str) -> Postings:
        """The file at ``path``, refused unless written for the database holding ``token``."""
        header, arrays = array_file.load(path, MAGIC, VERSION, DTYPES, "symbol postings file")
        if header.get("token") != token:
            raise errors.IndexFormatError(f"{path} was written for another symbol database")
        postings, occurrences = len(arrays["files"]), len(arrays["lines"])
        starts, name_starts = arrays["starts"], arrays["name_starts"]
        consistent = (
            len(starts) == postings + 1
            and int(starts[0]) == 0
            and int(starts[-1]) == occurrences
            and len(name_starts) >= 2
            and int(name_starts[0]) == 0
            and int(name_starts[-1]) == postings
            and all(len(arrays[n]) == occurrences for n in ("columns", "kinds", "enclosing"))
        )
        if not consistent:
            raise errors.IndexFormatError(f"{path}: its arrays disagree in length")
        return cls(path, arrays)

    def _range(self, name_id: int) -> tuple[int, int]:
        if not 0 < name_id < len(self.name_starts) - 1:
            return 0, 0
        return int(self.name_starts[name_id]), int(self.name_starts[name_id + 1])

    def file_counts(
        self, conn: sqlite3.Connection, name_id: int
    ) -> list[tuple[int, str, int, int]]:
        """(file id, path, category, count) of every file where the name occurs."""
        first, last = self._range(name_id)
        file_ids = self.files[first:last].tolist()
        counts = dict(zip(file_ids, np.diff(self.starts[first : last + 1]).tolist(), strict=True))
        rows = []
        for at in range(0, len(file_ids), _BATCH):  # measured: 2x faster than json_each
            part = file_ids[at : at + _BATCH]
            marks = ",".join("?" * len(part))
            sql = f"SELECT id, path, category FROM files WHERE id IN ({marks})"  # noqa: S608
            rows += conn.execute(sql, part).fetchall()
        if len(rows) != len(counts):
            raise errors.IndexFormatError(f"{self.path} names files its database lacks")
        return [(file_id, path, cat, counts[file_id]) for file_id, path, cat in rows]

    def occurrences(
        self, conn: sqlite3.Connection, name_id: int, file_id: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(lines, columns, kinds, enclosing symbol ids) of a name in one file."""
        del conn  # the columns are all here
        first, last = self._range(name_id)
        at = first + int(np.searchsorted(self.files[first:last], file_id))
        if at == last or int(self.files[at]) != file_id:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty, empty
        a, b = int(self.starts[at]), int(self.starts[at + 1])
        return tuple(column[a:b] for column in self.columns)  # type: ignore[return-value]

    def name_totals(self) -> np.ndarray:
        """The occurrences of every name id (index 0 is no name)."""
        return np.diff(self.starts[self.name_starts])

    def everything(self) -> Occurrences:
        """Every occurrence with its name and file id, in (name, file, source) order."""
        per_posting = np.diff(self.starts)
        posting_names = np.repeat(
            np.arange(len(self.name_starts) - 1, dtype=np.int64), np.diff(self.name_starts)
        )
        return Occurrences(
            np.repeat(posting_names, per_posting),
            np.repeat(self.files.astype(np.int64), per_posting),
            *(np.array(column) for column in self.columns),
        )
