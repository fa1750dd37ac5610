"""What goes into a new generation: chunks, symbols, vectors, indexes and the manifest.

:mod:`pipeline` decides *which* generation to make (build, update, merge); the
functions here write its parts into a :class:`~codeintel.core.store.GenerationWriter`
and publish it. A build publishes once (``publish_full``) or, when progressive,
twice: a first generation with vectors for the chunks embedded so far
(``publish_first``), then the full one over it.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np

from codeintel import __version__
from codeintel.core import embed as embedding_mod
from codeintel.core import errors
from codeintel.core import settings as settings_mod
from codeintel.core import store as store_mod
from codeintel.core.store import symbols as symbols_store
from codeintel.core.store.chunks import Chunk, ChunkDB
from codeintel.core.store.vectors import VectorStore
from codeintel.indexer import ann, calibration, chunking, corpus, embed_cache, firstpass, windows
from codeintel.indexer import progress as progress_mod

logger = logging.getLogger(__name__)


class BuildBase(msgspec.Struct, kw_only=True):
    """What every generation of one build records about its source."""

    source: str
    commit: str
    ref: str
    model: str
    next_id: int
    files: int
    skipped: list[store_mod.SkippedFile]

    def manifest(
        self,
        writer: store_mod.GenerationWriter,
        plan: ann.IndexPlan,
        *,
        dim: int,
        primary: int,
        reporter: progress_mod.Reporter,
        dense: store_mod.DenseCoverage | None = None,
    ) -> store_mod.Manifest:
        """The manifest of a base generation of this build: ``primary`` vectors in the
        index ``plan`` made, none in the secondary, no tombstones."""
        return new_manifest(
            writer,
            parent=writer.parent,
            base=writer.name,
            source=self.source,
            commit=self.commit,
            ref=self.ref,
            model=self.model,
            dim=dim,
            index=index_info(plan),
            counts=store_mod.Counts(primary=primary, secondary=0, tombstones=0),
            next_id=self.next_id,
            files=self.files,
            skipped=self.skipped,
            reporter=reporter,
            dense=dense,
        )


def publish_first(
    writer: store_mod.GenerationWriter,
    first: firstpass.FirstPass,
    ids: np.ndarray,
    base: BuildBase,
    settings: settings_mod.Settings,
    reporter: progress_mod.Reporter,
) -> store_mod.Generation:
    """Publish the first pass's generation: every chunk, vectors for ``first.done`` only."""
    vids, xb = ids[first.done], first.rows
    VectorStore.write_segment(writer.path / store_mod.VECTORS_DIR, writer.name, vids, xb)
    # No calibration: a first pass is small enough for an exact index, and short-lived.
    plan = write_indexes(writer, xb, vids, xb.shape[1], settings.index, reporter, None)
    manifest = base.manifest(
        writer,
        plan,
        dim=int(xb.shape[1]),
        primary=len(vids),
        reporter=reporter,
        dense=store_mod.DenseCoverage(chunks=len(vids), total=len(ids)),
    )
    generation = writer.publish(manifest)
    logger.info(
        "published %s with vectors for %d of %d chunks; embedding the rest",
        generation.name,
        len(vids),
        len(ids),
    )
    return generation


def publish_full(
    writer: store_mod.GenerationWriter,
    embedder: embedding_mod.Embedder,
    cached: embed_cache.CachingEmbedder | None,
    drafts: list[chunking.ChunkDraft],
    ids: np.ndarray,
    base: BuildBase,
    settings: settings_mod.Settings,
    reporter: progress_mod.Reporter,
    first: firstpass.FirstPass | None,
) -> tuple[store_mod.Generation, np.ndarray]:
    """Embed what ``first`` did not, add windows, train the primary and publish."""
    vids, xv = embed_chunks(embedder, cached, drafts, ids, settings.index, reporter, first)
    dim = dimension_of(embedder, xv)
    VectorStore.write_segment(writer.path / store_mod.VECTORS_DIR, writer.name, vids, xv)
    queries = calibration.text_queries(
        cached or embedder,
        [calibration.QuerySource(d.path, d.text) for d in drafts],
        settings.index.calibration_queries,
    )
    plan = write_indexes(writer, xv, vids, dim, settings.index, reporter, queries)
    manifest = base.manifest(writer, plan, dim=dim, primary=len(vids), reporter=reporter)
    return writer.publish(manifest), vids


def embed_chunks(
    embedder: embedding_mod.Embedder,
    cached: embed_cache.CachingEmbedder | None,
    drafts: list[chunking.ChunkDraft],
    ids: np.ndarray,
    cfg: settings_mod.IndexSettings,
    reporter: progress_mod.Reporter,
    first: firstpass.FirstPass | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Vector ids and rows of ``drafts`` (chunk ids ``ids``): their heads, through the
    cache when there is one, then the long chunks' windows (``windows.add_windows``).

    Heads the ``first`` pass already embedded are reused, not embedded again. The one
    path build and update both embed through."""
    through = cached or embedder
    if first is None or not len(first.done):
        xb = corpus.embed_drafts(through, drafts, reporter)
    else:
        rest = np.setdiff1d(np.arange(len(drafts)), first.done)
        # float16, the stored precision (the first pass's rows are rounded already): half
        # the bytes through the rest pass, and the primary is filled from it in slices.
        xb = np.empty((len(drafts), first.rows.shape[1]), dtype=np.float16)
        xb[first.done] = first.rows
        # The rest's rows land in xb itself: no second array of the rest's vectors.
        corpus.embed_drafts(through, [drafts[i] for i in rest], reporter, out=xb, at=rest)
    return windows.add_windows(embedder, through, drafts, ids, xb, cfg.chunk_windows, reporter)


def dimension_of(embedder: embedding_mod.Embedder, xb: np.ndarray) -> int:
    dim = int(xb.shape[1]) if xb.size else int(embedder.dim)
    if dim <= 0:
        raise errors.ConfigError(
            "nothing to index: the commit has no indexable files, so the embedder "
            f"{embedder.model!r} was never asked for a vector and its dimension is unknown; "
            "give it with --embed-dim (CODEINTEL_EMBEDDER_DIM)"
        )
    return dim


def chunk_rows(ids: np.ndarray, drafts: list[chunking.ChunkDraft]) -> list[Chunk]:
    """The drafts as rows of ``chunks.sqlite``: a draft is a chunk without its id."""
    # Positional, from each draft's fields in order: as fast as naming every field, 2.3x
    # faster than Chunk(id=..., **asdict(draft)) (docs/performance.md, "Chunk rows").
    astuple = msgspec.structs.astuple
    return [Chunk(i, *astuple(d)) for i, d in zip(ids.tolist(), drafts, strict=True)]


def write_chunks(path: Path, ids: np.ndarray, drafts: list[chunking.ChunkDraft]) -> None:
    db = ChunkDB.create(path)
    try:
        db.add(chunk_rows(ids, drafts))
        db.commit()
    finally:
        db.close()


def update_symbols(
    parent: store_mod.Generation,
    path: Path,
    removed: set[str],
    added: list[symbols_store.FileSymbols],
) -> None:
    """The parent's symbols minus the removed and changed files, plus the new rows; none
    when the parent has none (built before format 6: its tools say "rebuild")."""
    source = parent.path / store_mod.SYMBOLS_DB
    if source.is_file():
        symbols_store.update(source, path / store_mod.SYMBOLS_DB, removed, added)
    else:
        logger.info("generation %s has no symbols; a full build adds them", parent.name)


def write_indexes(
    writer: store_mod.GenerationWriter,
    xb: np.ndarray,
    ids: np.ndarray,
    dim: int,
    cfg: settings_mod.IndexSettings,
    reporter: progress_mod.Reporter,
    queries: Callable[[], np.ndarray] | None,
) -> ann.IndexPlan:
    with reporter.stage("train", total=len(ids)) as stage:
        primary, plan, timings = ann.build_primary(xb, ids, cfg, queries=queries, log=logger)
        stage.advance(len(ids))
    reporter.timings.update({f"index_{k}": v for k, v in timings.items()})
    ann.write_index(primary, writer.path / store_mod.PRIMARY)
    ann.write_index(ann.new_secondary(dim), writer.path / store_mod.SECONDARY)
    writer.write_tombstones(np.empty(0, dtype=np.int64))
    return plan


def index_info(plan: ann.IndexPlan) -> store_mod.IndexInfo:
    return store_mod.IndexInfo(
        type=plan.type, params=ann.params_dict(plan), calibration=plan.calibration
    )


def stored_queries(
    writer: store_mod.GenerationWriter,
    embedder: embedding_mod.Embedder | None,
    old: store_mod.Manifest,
    cfg: settings_mod.IndexSettings,
) -> Callable[[], np.ndarray] | None:
    """Calibration queries for a merge: from the live chunks' text, with the store's model."""
    if embedder is None:
        return None

    def embed() -> np.ndarray:
        if embedder.model != old.embedding.model:
            raise errors.ConfigError(
                f"the store was built with embedding model {old.embedding.model!r}, "
                f"not {embedder.model!r}"
            )
        db = ChunkDB.open(writer.path / store_mod.CHUNKS_DB, readonly=True)
        try:
            live = db.all_ids()
            chunks = db.get([int(i) for i in live[calibration.source_rows(len(live))]])
        finally:
            db.close()
        sources = [calibration.QuerySource(c.path, c.text) for c in chunks.values()]
        return calibration.text_queries(embedder, sources, cfg.calibration_queries)()

    return embed


def segment_files(generation: store_mod.Generation) -> list[str]:
    root = generation.path / store_mod.VECTORS_DIR
    return sorted(p.name for p in root.iterdir() if p.is_file())


def new_manifest(
    writer: store_mod.GenerationWriter,
    *,
    parent: store_mod.Generation | None,
    base: str,
    source: str,
    commit: str,
    ref: str,
    model: str,
    dim: int,
    index: store_mod.IndexInfo,
    counts: store_mod.Counts,
    next_id: int,
    files: int,
    skipped: list[store_mod.SkippedFile],
    reporter: progress_mod.Reporter,
    dense: store_mod.DenseCoverage | None = None,
) -> store_mod.Manifest:
    return store_mod.Manifest(
        format_version=store_mod.FORMAT_VERSION,
        min_reader_version=store_mod.MIN_READER_VERSION,
        generation=writer.name,
        parent=parent.name if parent else None,
        base_generation=base,
        repo_url=source,
        commit=commit,
        ref=ref,
        embedding=store_mod.EmbeddingInfo(model=model, dim=dim),
        index=index,
        counts=counts,
        next_id=next_id,
        files_indexed=files,
        skipped=sorted(skipped, key=lambda s: s.path),
        timings=dict(reporter.timings),
        checksums={},
        created_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        codeintel_version=__version__,
        dense_coverage=dense,
    )


def files_with_chunks(drafts: list[chunking.ChunkDraft]) -> int:
    """Files that gave at least one chunk: what ``chunks.sqlite`` holds, so updates can recount."""
    return len({d.path for d in drafts})
