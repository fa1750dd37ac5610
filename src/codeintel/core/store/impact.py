"""FTS5's BM25 ranking of a published ``chunks.sqlite``, scored in numpy.

FTS5 scores every chunk holding any query term, at about 2 µs a posting (a docsize
lookup and the auxiliary-function calls per row): a question whose terms sit in 10-50%
of the chunks costs 30-90 ms on the 38K-chunk sympy corpus, the tail of hybrid search
(docs/performance.md, *BM25 scored in numpy*). This module reads FTS5's own index once
per generation into postings (term -> chunk positions and column-weighted term
frequencies) and scores a query with one gather and one ``np.bincount`` over the chunks:
sympy's lexical p95 55 -> 5 ms in process.

Choices:

* Built from FTS5 itself, so nothing can drift from it: the postings from the
  ``fts5vocab`` *instance* table (``group_concat`` in C over term ranges, split by the
  *row* table's counts, both in term order), each chunk's length from ``chunks_fts_docsize``, the
  row count and total length from the averages record, and each query term's index
  token from the same tokenizer in an in-memory FTS5 table. Scores follow
  ``fts5Bm25Function`` (k1 1.2, b 0.75, IDF clamped to 1e-6) operation by operation in
  float64, so they equal FTS5's bit for bit and ties break the same way (by id).
* Only for :data:`~codeintel.core.store.chunks.WEIGHTS`; other weights (the ablation
  benchmark) and schema-1 databases stay on FTS5, as does a query term the tokenizer
  does not turn into exactly one token.
* Built once per generation by the indexer and stored beside ``chunks.sqlite``
  (:mod:`~codeintel.core.store.impact_file`, store format 7), then mapped read-only by every
  reader: no build at load (1.6-3.5 s for sympy's 4M token instances on a loaded 2-core
  machine) and no private copy per process (about 8 bytes a posting and the terms as one
  byte array: sympy 1.35M postings, 103K terms, +19 MB of RSS when built in memory). A
  generation written before format 7 is still read into memory at load, as before.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
import threading
from collections.abc import Callable, Sequence

import numpy as np

K1 = 1.2
B = 0.75
IDF_FLOOR = 1e-6
_COLUMNS = ("text", "symbol", "path")
_TOKEN_CACHE = 50_000
_MASK_CACHE = 32
_BATCH = 100_000
"""Token instances read at once while building (about 6 MB of transient memory)."""


def _varints(blob: bytes) -> list[int]:
    """SQLite varints (big-endian 7-bit groups, a ninth byte of 8 bits), as FTS5 writes them."""
    out: list[int] = []
    i = 0
    while i < len(blob):
        value = 0
        for n in range(9):
            byte = blob[i]
            i += 1
            if n == 8:
                value = (value << 8) | byte
                break
            value = (value << 7) | (byte & 0x7F)
            if byte < 0x80:
                break
        out.append(value)
    return out


def _postings(
    conn: sqlite3.Connection,
    first: str,
    last: str,
    instances: np.ndarray,
    ids: np.ndarray,
    weights: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Postings of the terms ``first``..``last`` (``instances`` token instances each):
    chunk positions, column-weighted frequencies, and how many postings each term has."""
    case = " ".join(f"WHEN '{c}' THEN {n}" for n, c in enumerate(_COLUMNS))
    (flat,) = conn.execute(
        f"SELECT group_concat(doc * 4 + (CASE col {case} END), ',') "  # noqa: S608 - constants
        "FROM temp.impact_instances WHERE term >= ?1 AND term <= ?2",
        (first, last),
    ).fetchone()
    keys = np.fromstring(flat, dtype=np.int64, sep=",") if flat else np.zeros(0, np.int64)
    if int(instances.sum()) != len(keys):
        raise ValueError("fts5vocab row and instance tables disagree")
    term_of = np.repeat(np.arange(len(instances), dtype=np.int64), instances)
    docs = keys >> 2
    # Instances come in (term, doc, column, offset) order: one posting per (term, doc) run.
    new = np.ones(len(keys), dtype=bool)
    new[1:] = (term_of[1:] != term_of[:-1]) | (docs[1:] != docs[:-1])
    heads = np.flatnonzero(new)
    # Sums of small whole weights: exact in float32, widened again when scored.
    freqs = (
        np.add.reduceat(weights[keys & 3], heads).astype(np.float32)
        if len(heads)
        else np.zeros(0, np.float32)
    )
    positions = np.searchsorted(ids, docs[heads]).astype(np.int32)
    return positions, freqs, np.bincount(term_of[heads], minlength=len(instances))


def totals(conn: sqlite3.Connection) -> tuple[int, int]:
    """Rows of ``chunks_fts`` and token instances in all its columns, from its averages record."""
    found = conn.execute("SELECT block FROM chunks_fts_data WHERE id = 1").fetchone()
    counts = _varints(found[0]) if found else []
    if not counts:  # a table that never held a row has an empty record
        return 0, 0
    return counts[0], sum(counts[1 : 1 + len(_COLUMNS)])


class Vocabulary:
    """The index's terms in FTS5's order (their UTF-8 bytes, ascending), looked up by
    bisection: one byte array (each term ended by a NUL) and an offset array, not 100K
    Python strings. Both may be read-only views of a mapped file."""

    def __init__(self, blob: np.ndarray, starts: np.ndarray) -> None:
        self.blob = blob  # uint8: every term's bytes and a NUL
        self.starts = starts  # int64, len(terms) + 1: term t is blob[starts[t]:starts[t+1]-1]

    @classmethod
    def from_joined(cls, joined: bytes) -> Vocabulary:
        """From the terms joined by NULs (``group_concat(term, char(0))``)."""
        blob = np.frombuffer(joined + b"\0" if joined else b"", dtype=np.uint8)
        ends = np.flatnonzero(blob == 0)
        return cls(blob, np.concatenate(([0], ends + 1)).astype(np.int64))

    def __len__(self) -> int:
        return len(self.starts) - 1

    def _bytes(self, slot: int) -> bytes:
        return self.blob[int(self.starts[slot]) : int(self.starts[slot + 1]) - 1].tobytes()

    def term(self, slot: int) -> str:
        return self._bytes(slot).decode()

    def slot(self, term: str) -> int | None:
        """The position of ``term``, or None when the index does not hold it."""
        key = term.encode()
        lo, hi = 0, len(self)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._bytes(mid) < key:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < len(self) and self._bytes(lo) == key else None


class ImpactIndex:
    """Postings of one FTS5 table (``chunks_fts``) with its BM25 statistics; read-only, thread-safe."""

    def __init__(
        self,
        ids: np.ndarray,
        norm: np.ndarray,
        terms: Vocabulary,
        starts: np.ndarray,
        positions: np.ndarray,
        freqs: np.ndarray,
        rows: int,
        tokenizer: str,
        total: int,
    ) -> None:
        self.ids = ids  # chunk ids, ascending: a position in every array is an index here
        self._norm = norm  # k1 * (1 - b + b * D / avgdl) per position
        self._terms = terms  # index token -> its slot in starts
        self._starts = starts  # postings of slot t: positions/freqs[starts[t]:starts[t+1]]
        self._positions = positions
        self._freqs = freqs  # column-weighted term frequency (float32: whole numbers)
        self.rows = rows
        self.total = total  # token instances in all columns: with rows, names the FTS index
        self.tokenizer = tokenizer
        self._lock = threading.Lock()
        self._tokens: dict[str, str | None] = {}
        self._masks: dict[tuple[str | None, str | None], np.ndarray] = {}
        self._paths: list[str] | None = None
        self._languages: np.ndarray | None = None
        self._analyzer: sqlite3.Connection | None = None

    @classmethod
    def build(
        cls,
        conn: sqlite3.Connection,
        tokenizer: str,
        weights: Sequence[float],
        *,
        batch: int = _BATCH,
    ) -> ImpactIndex:
        """The index of ``chunks_fts`` in ``conn`` (an immutable, published database),
        read about ``batch`` token instances at a time."""
        conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.impact_rows USING fts5vocab(main, chunks_fts, row)"
        )
        conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.impact_instances "
            "USING fts5vocab(main, chunks_fts, instance)"
        )
        sizes = conn.execute("SELECT id, sz FROM chunks_fts_docsize ORDER BY id").fetchall()
        ids = np.fromiter((r[0] for r in sizes), dtype=np.int64, count=len(sizes))
        lengths = np.fromiter(
            (sum(_varints(r[1])) for r in sizes), dtype=np.float64, count=len(sizes)
        )
        rows, total = totals(conn)
        avgdl = float(total) / float(rows) if rows else 1.0
        norm = K1 * ((1.0 - B) + B * lengths / avgdl)
        joined, counts_text = conn.execute(
            "SELECT group_concat(term, char(0)), group_concat(cnt, ',') FROM temp.impact_rows"
        ).fetchone()
        terms = Vocabulary.from_joined((joined or "").encode())
        instances = (
            np.fromstring(counts_text, dtype=np.int64, sep=",")
            if counts_text
            else np.zeros(0, np.int64)
        )
        if len(instances) != len(terms):
            raise ValueError("fts5vocab row table: terms and counts disagree")
        # Term ranges of about ``batch`` instances each: bounds the transient memory.
        ends = np.searchsorted(
            np.cumsum(instances), np.arange(1, 1 + int(instances.sum()) // batch) * batch
        )
        bounds = sorted({0, len(terms), *(int(e) + 1 for e in ends if e + 1 < len(terms))})
        weight_of = np.asarray(weights, dtype=np.float64)
        parts = [
            _postings(conn, terms.term(lo), terms.term(hi - 1), instances[lo:hi], ids, weight_of)
            for lo, hi in itertools.pairwise(bounds)
        ]
        positions = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int32)
        freqs = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.float32)
        per_term = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.int64)
        starts = np.concatenate(([0], np.cumsum(per_term)))
        return cls(ids, norm, terms, starts, positions, freqs, int(rows), tokenizer, int(total))

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the index by name, as :meth:`from_arrays` takes them (for the file)."""
        return {
            "ids": self.ids,
            "norm": self._norm,
            "vocabulary": self._terms.blob,
            "vocabulary_starts": self._terms.starts,
            "starts": self._starts,
            "positions": self._positions,
            "freqs": self._freqs,
        }

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], *, rows: int, total: int, tokenizer: str
    ) -> ImpactIndex:
        """The index made of :meth:`arrays` (views of a mapped file)."""
        terms = Vocabulary(arrays["vocabulary"], arrays["vocabulary_starts"])
        return cls(
            arrays["ids"],
            arrays["norm"],
            terms,
            arrays["starts"],
            arrays["positions"],
            arrays["freqs"],
            rows,
            tokenizer,
            total,
        )

    # -- query side ------------------------------------------------------------

    def token(self, term: str) -> str | None:
        """The index token FTS5 makes of the quoted query term ``term`` (stemmed as the
        index is), or None when it makes no single token (then FTS5 must run the query)."""
        found = self._tokens.get(term, "")
        if found != "":
            return found
        with self._lock:
            if self._analyzer is None:
                self._analyzer = sqlite3.connect(":memory:", check_same_thread=False)
                quoted = "'" + self.tokenizer.replace("'", "''") + "'"
                self._analyzer.execute(f"CREATE VIRTUAL TABLE q USING fts5(x, tokenize={quoted})")
                self._analyzer.execute("CREATE VIRTUAL TABLE qv USING fts5vocab(q, instance)")
            self._analyzer.execute("DELETE FROM q")
            self._analyzer.execute("INSERT INTO q(rowid, x) VALUES (1, ?)", (term,))
            made = [str(r[0]) for r in self._analyzer.execute("SELECT term FROM qv")]
        token = made[0] if len(made) == 1 else None
        if len(self._tokens) >= _TOKEN_CACHE:
            self._tokens.clear()
        self._tokens[term] = token
        return token

    def frequency(self, token: str) -> int:
        """Chunks holding the index token ``token``."""
        slot = self._terms.slot(token)
        return 0 if slot is None else int(self._starts[slot + 1] - self._starts[slot])

    def mask(
        self,
        path_glob: str | None,
        language: str | None,
        rows: Callable[[], list[tuple[int, str, str]]],
        matches: Callable[[str, str], bool],
    ) -> np.ndarray:
        """Which positions pass the filters; ``rows`` gives (id, path, language) of every chunk."""
        key = (path_glob, language)
        found = self._masks.get(key)
        if found is not None:
            return found
        with self._lock:
            if self._paths is None:
                by_id = {i: (p, lang) for i, p, lang in rows()}
                found_rows = [by_id.get(int(i), ("", "")) for i in self.ids]
                self._languages = np.asarray([lang for _, lang in found_rows], dtype=object)
                self._paths = [p for p, _ in found_rows]
        paths, languages = self._paths, self._languages
        keep = np.ones(len(self.ids), dtype=bool)
        if language is not None and languages is not None:
            keep &= languages == language
        if path_glob is not None:
            verdict = {p: matches(p, path_glob) for p in set(paths)}
            keep &= np.fromiter((verdict[p] for p in paths), dtype=bool, count=len(paths))
        if len(self._masks) >= _MASK_CACHE:
            self._masks.clear()
        self._masks[key] = keep
        return keep

    def top(
        self, tokens: Sequence[str], k: int, keep: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """FTS5's ``-bm25`` ranking of ``"t1" OR "t2" ...``: the best ``k`` (id, score), ties by id."""
        n = len(self.ids)
        gathered: list[np.ndarray] = []
        scored: list[np.ndarray] = []
        for token in tokens:
            slot = self._terms.slot(token)
            if slot is None:
                continue
            lo, hi = int(self._starts[slot]), int(self._starts[slot + 1])
            pos = self._positions[lo:hi]
            f = self._freqs[lo:hi].astype(np.float64)
            hit = float(hi - lo)
            idf = math.log((self.rows - hit + 0.5) / (hit + 0.5))
            idf = IDF_FLOOR if idf <= 0.0 else idf
            gathered.append(pos)
            scored.append(idf * ((f * (K1 + 1.0)) / (f + self._norm[pos])))
        if not gathered or k <= 0:
            return []
        pos = np.concatenate(gathered)
        scores = np.bincount(pos, weights=np.concatenate(scored), minlength=n)
        matched = np.zeros(n, dtype=bool)
        matched[pos] = True
        if keep is not None:
            matched &= keep
        candidates = np.flatnonzero(matched)
        values = scores[candidates]
        if len(candidates) > k:
            kth = np.partition(values, len(values) - k)[len(values) - k]
            chosen = values >= kth
            candidates, values = candidates[chosen], values[chosen]
        order = np.lexsort((candidates, -values))[:k]
        return [
            (int(self.ids[c]), float(values[o]))
            for o, c in zip(order, candidates[order], strict=True)
        ]
