"""From a commit's files to embedded chunks: select, decode, chunk, embed.

Both a full build and an incremental update go through here; they differ only
in which paths they pass. Chunks are embedded with a short header (path and
symbol) in front of the code, because an agent's question usually names the
concept, and the file and function names carry much of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence

import msgspec
import numpy as np

from codeintel.core import embed as embedding_mod
from codeintel.core import git as git_mod
from codeintel.core import settings as settings_mod
from codeintel.core import store as store_mod
from codeintel.core.store import symbols as symbols_store
from codeintel.indexer import chunking, extraction, selection
from codeintel.indexer import progress as progress_mod

logger = logging.getLogger(__name__)

# Texts per embed call: small enough for a responsive progress bar, large enough
# that the model (or the server) sees full batches.
EMBED_GROUP = 512


class Corpus(msgspec.Struct):
    """The chunks read from one set of files, and the files that were skipped."""

    drafts: list[chunking.ChunkDraft]
    skipped: list[store_mod.SkippedFile]
    files: int
    symbols: list[symbols_store.FileSymbols] = msgspec.field(default_factory=list)
    """Definitions and occurrences of every file that gave chunks, from the same parse."""


def read_corpus(
    git: git_mod.GitClient,
    commit: str,
    cfg: settings_mod.IndexSettings,
    reporter: progress_mod.Reporter,
    only_paths: Collection[str] | None = None,
) -> Corpus:
    """Chunks of every indexable file of ``commit`` (or only of ``only_paths``)."""
    entries = [e for e in git.list_files(commit) if only_paths is None or e.path in only_paths]
    chosen, skipped_meta = selection.select_files(
        entries, max_file_bytes=cfg.max_file_bytes, exclude_globs=cfg.exclude_globs
    )
    skipped = [store_mod.SkippedFile(s.path, s.reason, s.size) for s in skipped_meta]
    drafts: list[chunking.ChunkDraft] = []
    symbols: list[symbols_store.FileSymbols] = []
    files = 0
    by_blob: dict[str, list[git_mod.TreeEntry]] = {}
    for entry in chosen:
        by_blob.setdefault(entry.blob, []).append(entry)
    batch = extraction.Batch()  # occurrences found many files at a time
    with reporter.stage("chunk", total=len(chosen)) as stage:
        for blob, data in git.read_blobs(list(by_blob)):
            for entry in by_blob[blob]:
                text = selection.decode_text(entry.path, data)
                if isinstance(text, selection.Skipped):
                    skipped.append(store_mod.SkippedFile(text.path, text.reason, entry.size))
                else:
                    files += 1
                    chunks, found = chunking.chunk_and_extract(
                        entry.path,
                        text,
                        max_lines=cfg.chunk_max_lines,
                        window_lines=cfg.chunk_window_lines,
                        overlap_lines=cfg.chunk_overlap_lines,
                        batch=batch,
                    )
                    drafts.extend(chunks)
                    if found is not None and chunks:
                        symbols.append(found)
                stage.advance()
        batch.flush()
    logger.info("read %d files into %d chunks (%d skipped)", files, len(drafts), len(skipped))
    return Corpus(drafts=drafts, skipped=skipped, files=files, symbols=symbols)


def embedding_header(draft: chunking.ChunkDraft) -> str:
    """The first line the model sees for a chunk (and for each of its windows)."""
    return f"{draft.path}" + (f" :: {draft.symbol}" if draft.symbol else "")


def embedding_text(draft: chunking.ChunkDraft) -> str:
    """What the model sees for a chunk: a one-line header, then the code."""
    return f"{embedding_header(draft)}\n{draft.text}"


def embed_drafts(
    embedder: embedding_mod.Embedder,
    drafts: Sequence[chunking.ChunkDraft],
    reporter: progress_mod.Reporter,
    *,
    texts_of: Callable[[chunking.ChunkDraft], str] = embedding_text,
    out: np.ndarray | None = None,
    at: np.ndarray | None = None,
) -> np.ndarray:
    """float16 (n, dim) unit vectors for ``drafts``, in order: the stored precision.

    Texts are embedded longest-first in groups, so each batch holds texts of
    similar length and pads little (what sentence-transformers does inside one
    call; doing it here keeps that gain while still reporting progress).

    With ``out``, draft ``i``'s row is written to ``out[at[i]]`` (``at`` defaults to
    ``0..n-1``) and ``out`` is returned: the caller's array is the only copy. Each
    group's text is made when it is embedded, and each group is rounded as it lands,
    so the build never holds every text twice or the vectors three times
    (docs/performance.md, "The build's last step without copies").
    """
    where = np.arange(len(drafts)) if at is None else at
    if len(where) != len(drafts):
        raise ValueError(f"{len(drafts)} drafts for {len(where)} rows")
    order = np.argsort([-len(texts_of(d)) for d in drafts], kind="stable")
    with reporter.stage("embed", total=len(drafts)) as stage:
        for start in range(0, len(drafts), EMBED_GROUP):
            rows = order[start : start + EMBED_GROUP]
            xb = embedder.embed([texts_of(drafts[i]) for i in rows])
            if out is None:
                out = np.empty((len(drafts), xb.shape[1]), dtype=np.float16)
            embedding_mod.check_dimension(xb.shape[1], out.shape[1], embedder.model)
            # Stored vectors are float16; round now so the primary, the secondary, the
            # re-ranker and a later merge all see exactly the same numbers. A float16
            # ``out`` is half the bytes through the whole pass; a float32 one holds the
            # rounded values.
            out[where[rows]] = xb.astype(np.float16)
            stage.advance(len(rows))
    if out is None:
        return np.empty((0, max(embedder.dim, 0)), dtype=np.float16)
    return out
