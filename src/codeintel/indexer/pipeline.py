"""Build, update and merge: the three ways a new generation comes to be.

* **build** mirrors the source, chunks every file of the commit, embeds, trains
  the adaptive primary index and publishes a new base generation.
* **update** fetches, diffs the parent commit against the new one, tombstones the
  chunks of deleted and changed files, embeds only the new chunks into the
  secondary flat index and hard-links everything else from the parent.
* **merge** rebuilds the primary from every live stored vector (no re-embedding)
  and empties the secondary and the tombstones.

Each runs under the store's writer lock and publishes through
``GenerationWriter``: a crash at any point leaves ``CURRENT`` on the last good
generation, and the temp directory is cleaned by the next run's GC.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import faiss
import msgspec
import numpy as np

from codeintel import __version__
from codeintel.core import embed as embedding_mod
from codeintel.core import errors, malloc
from codeintel.core import git as git_mod
from codeintel.core import settings as settings_mod
from codeintel.core import store as store_mod
from codeintel.core.indexresult import IndexResult
from codeintel.core.store import symbols as symbols_store
from codeintel.core.store.chunks import Chunk, ChunkDB
from codeintel.core.store.vectors import VectorStore
from codeintel.indexer import (
    ann,
    calibration,
    chunking,
    corpus,
    embed_cache,
    firstpass,
    history_build,
    windows,
)
from codeintel.indexer import progress as progress_mod

logger = logging.getLogger(__name__)


class BuildObserver(Protocol):
    """Told when a build's early products exist (the embedded default answers from them)."""

    def commit_resolved(self, mirror: Path, commit: str) -> None:
        """The mirror holds ``commit``, the commit being indexed."""

    def chunks_written(self, path: Path, generation: str) -> None:
        """``chunks.sqlite`` of unpublished ``generation`` is complete at ``path``."""


def build(
    settings: settings_mod.Settings,
    source: str,
    embedder: embedding_mod.Embedder,
    *,
    ref: str = "HEAD",
    reporter: progress_mod.Reporter | None = None,
    observer: BuildObserver | None = None,
    progressive: bool = False,
) -> IndexResult:
    """Index ``source`` at ``ref`` from scratch into a new base generation.

    ``progressive`` (``serve PATH``): first publish a generation whose dense vectors
    cover the chunks embedded in ``index.first_pass_seconds`` (``firstpass``), then
    the full one over it; without it (``index build``) only the full one.
    """
    reporter = reporter or progress_mod.Reporter()
    store = store_mod.Store(settings.store.path)
    store.root.mkdir(parents=True, exist_ok=True)
    cfg = settings.index
    with store.lock():
        with reporter.stage("mirror"):
            git = git_mod.GitClient.mirror(source, store.mirror_path, settings.git.credentials)
        with git:
            commit = git.resolve(ref)
            if observer:
                observer.commit_resolved(store.mirror_path, commit)
            found = corpus.read_corpus(git, commit, cfg, reporter)
        malloc.trim()  # the blobs and syntax trees of the chunk pass
        parent = _readable_current(store)
        next_id = store.max_next_id()
        ids = np.arange(next_id, next_id + len(found.drafts), dtype=np.int64)
        files = _files_with_chunks(found.drafts)
        base = _BuildBase(
            source=repo_url(source),
            commit=commit,
            ref=ref,
            model=embedder.model,
            next_id=int(next_id + len(ids)),
            files=files,
            skipped=found.skipped,
        )
        first: firstpass.FirstPass | None = None
        # The calibration queries (a seeded sample of the chunks' sentences) and the
        # long chunks' windows go through the cache too: a rebuild embeds nothing.
        with embed_cache.caching(store.root, settings, embedder) as cached:
            with store.begin(parent) as writer:
                _write_chunks(writer.path / store_mod.CHUNKS_DB, ids, found.drafts)
                with reporter.stage("symbols"):
                    symbols_store.write(writer.path / store_mod.SYMBOLS_DB, found.symbols)
                if observer:
                    observer.chunks_written(writer.path / store_mod.CHUNKS_DB, writer.name)
                history_build.write(writer.path, store.mirror_path, commit, parent, cfg, reporter)
                if progressive and cfg.first_pass_seconds > 0 and found.drafts:
                    first = firstpass.embed(
                        cached or embedder,
                        found.drafts,
                        seconds=cfg.first_pass_seconds,
                        max_chunks=cfg.first_pass_max_chunks,
                        reporter=reporter,
                    )
                partial = first is not None and len(first.done) < len(ids)
                if first is not None and partial:
                    parent = _publish_first(writer, first, ids, base, settings, reporter)
                    malloc.trim()
                else:
                    generation, vids = _publish_full(
                        writer, embedder, cached, found.drafts, ids, base, settings, reporter, first
                    )
            if partial:
                with store.begin(parent) as writer:
                    # Same commit, same chunks: the full index reuses them and the history.
                    writer.link_from_parent(store_mod.CHUNKS_DB)
                    writer.link_from_parent(store_mod.SYMBOLS_DB)
                    history_build.write(
                        writer.path, store.mirror_path, commit, parent, cfg, reporter
                    )
                    generation, vids = _publish_full(
                        writer, embedder, cached, found.drafts, ids, base, settings, reporter, first
                    )
        _collect_garbage(store, settings)
    malloc.trim()  # the vectors, the texts and the model's batches of the whole build
    return _result(
        "build",
        generation,
        files=files,
        chunks=len(ids),
        skipped=len(found.skipped),
        cache=cached.stats if cached else None,
        texts=len(vids),
    )


class _BuildBase(msgspec.Struct, kw_only=True):
    """What every generation of one build records about its source."""

    source: str
    commit: str
    ref: str
    model: str
    next_id: int
    files: int
    skipped: list[store_mod.SkippedFile]


def _publish_first(
    writer: store_mod.GenerationWriter,
    first: firstpass.FirstPass,
    ids: np.ndarray,
    base: _BuildBase,
    settings: settings_mod.Settings,
    reporter: progress_mod.Reporter,
) -> store_mod.Generation:
    """Publish the first pass's generation: every chunk, vectors for ``first.done`` only."""
    vids, xb = ids[first.done], first.rows
    VectorStore.write_segment(writer.path / store_mod.VECTORS_DIR, writer.name, vids, xb)
    # No calibration: a first pass is small enough for an exact index, and short-lived.
    plan = _write_indexes(writer, xb, vids, xb.shape[1], settings.index, reporter, None)
    manifest = _manifest(
        writer,
        parent=writer.parent,
        base=writer.name,
        source=base.source,
        commit=base.commit,
        ref=base.ref,
        model=base.model,
        dim=int(xb.shape[1]),
        index=_index_info(plan),
        counts=store_mod.Counts(primary=len(vids), secondary=0, tombstones=0),
        next_id=base.next_id,
        files=base.files,
        skipped=base.skipped,
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


def _publish_full(
    writer: store_mod.GenerationWriter,
    embedder: embedding_mod.Embedder,
    cached: embed_cache.CachingEmbedder | None,
    drafts: list[chunking.ChunkDraft],
    ids: np.ndarray,
    base: _BuildBase,
    settings: settings_mod.Settings,
    reporter: progress_mod.Reporter,
    first: firstpass.FirstPass | None,
) -> tuple[store_mod.Generation, np.ndarray]:
    """Embed what ``first`` did not, add windows, train the primary and publish."""
    vids, xv = embed_chunks(embedder, cached, drafts, ids, settings.index, reporter, first)
    dim = _dimension(embedder, xv)
    VectorStore.write_segment(writer.path / store_mod.VECTORS_DIR, writer.name, vids, xv)
    queries = calibration.text_queries(
        cached or embedder,
        [calibration.QuerySource(d.path, d.text) for d in drafts],
        settings.index.calibration_queries,
    )
    plan = _write_indexes(writer, xv, vids, dim, settings.index, reporter, queries)
    manifest = _manifest(
        writer,
        parent=writer.parent,
        base=writer.name,
        source=base.source,
        commit=base.commit,
        ref=base.ref,
        model=base.model,
        dim=dim,
        index=_index_info(plan),
        counts=store_mod.Counts(primary=len(vids), secondary=0, tombstones=0),
        next_id=base.next_id,
        files=base.files,
        skipped=base.skipped,
        reporter=reporter,
    )
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
        xr = corpus.embed_drafts(through, [drafts[i] for i in rest], reporter)
        xb = np.empty((len(drafts), first.rows.shape[1]), dtype=np.float32)
        xb[first.done] = first.rows
        if len(rest):
            embedding_mod.check_dimension(xr.shape[1], first.rows.shape[1], embedder.model)
            xb[rest] = xr
    return windows.add_windows(embedder, through, drafts, ids, xb, cfg.chunk_windows, reporter)


def update(
    settings: settings_mod.Settings,
    embedder: embedding_mod.Embedder,
    *,
    ref: str | None = None,
    merge_threshold: int | None = None,
    reporter: progress_mod.Reporter | None = None,
) -> IndexResult:
    """Fold the commits since the live generation into a new one, incrementally.

    A live progressive first generation (vectors for part of its chunks: its build
    stopped) is completed by a build instead, through the embedding cache."""
    reporter = reporter or progress_mod.Reporter()
    store = store_mod.Store(settings.store.path)
    name = _current_name_or_none(store)
    peek = store.peek(name) if name else None
    if peek is not None and peek.dense_coverage is not None and peek.repo_url:
        logger.info(
            "%s has vectors for %d of %d chunks: building the full index",
            name,
            peek.dense_coverage.chunks,
            peek.dense_coverage.total,
        )
        return build(
            settings, peek.repo_url, embedder, ref=ref or peek.ref or "HEAD", reporter=reporter
        )
    threshold = settings.index.merge_threshold if merge_threshold is None else merge_threshold
    with store.lock():
        parent = _current_for(store, "update")
        old = parent.manifest
        if embedder.model != old.embedding.model:
            raise errors.ConfigError(
                f"the store was built with embedding model {old.embedding.model!r}, not "
                f"{embedder.model!r}; run 'codeintel index build' to re-embed everything"
            )
        ref = ref or old.ref
        with reporter.stage("mirror"):
            # The manifest, not the mirror's config, names the source: a failed build of
            # another repository may have repointed the mirror's origin.
            git = git_mod.GitClient.mirror(
                old.repo_url, store.mirror_path, settings.git.credentials
            )
        with git:
            commit = git.resolve(ref)
            if commit == old.commit:
                logger.debug("up to date at %s (%s)", commit[:12], parent.name)
                return _result("update", parent, changed=False)
            removed, added = git_mod.changed_paths(git.diff(old.commit, commit))
            found = corpus.read_corpus(git, commit, settings.index, reporter, only_paths=added)
        # After the up-to-date check: reading a local model's dimension loads its weights,
        # which a no-op update (every `serve` poll, every idle cron Job) should not pay.
        if embedder.dim:  # a remote model's dimension is known only after its first answer
            embedding_mod.check_dimension(embedder.dim, old.embedding.dim, embedder.model)
        parent_chunks = parent.chunks()
        try:
            dead = parent_chunks.ids_for_paths(sorted(removed))
        finally:
            parent_chunks.close()
        next_id = store.max_next_id()
        ids = np.arange(next_id, next_id + len(found.drafts), dtype=np.int64)
        with embed_cache.caching(store.root, settings, embedder) as cached:
            vids, xv = embed_chunks(embedder, cached, found.drafts, ids, settings.index, reporter)
            if len(ids):
                embedding_mod.check_dimension(xv.shape[1], old.embedding.dim, embedder.model)
        tombstones = np.union1d(parent.tombstones(), dead).astype(np.int64)
        with store.begin(parent) as writer:
            writer.link_from_parent(store_mod.PRIMARY)
            for name in _segment_files(parent):
                writer.link_from_parent(f"{store_mod.VECTORS_DIR}/{name}")
            with reporter.stage("add", total=len(vids)) as stage:
                secondary = faiss.read_index(str(parent.secondary_path))
                if len(ids):
                    VectorStore.write_segment(
                        writer.path / store_mod.VECTORS_DIR, writer.name, vids, xv
                    )
                    ann.add_vectors(secondary, xv, vids)
                ann.write_index(secondary, writer.path / store_mod.SECONDARY)
                stage.advance(len(vids))
            writer.write_tombstones(tombstones)
            db = ChunkDB.open(parent.path / store_mod.CHUNKS_DB, readonly=True)
            try:
                db.copy_to(writer.path / store_mod.CHUNKS_DB)
            finally:
                db.close()
            db = ChunkDB.open(writer.path / store_mod.CHUNKS_DB, readonly=False)
            try:
                db.delete(int(i) for i in dead)
                db.add(_chunks(ids, found.drafts))
                db.commit()
                files = len(db.paths())
            finally:
                db.close()
            _update_symbols(parent, writer.path, removed, found.symbols)
            history_build.write(
                writer.path, store.mirror_path, commit, parent, settings.index, reporter
            )
            skipped = [s for s in old.skipped if s.path not in removed and s.path not in added]
            manifest = _manifest(
                writer,
                parent=parent,
                base=old.base_generation,
                source=old.repo_url,
                commit=commit,
                ref=ref,
                model=old.embedding.model,
                dim=old.embedding.dim,
                index=old.index,
                counts=store_mod.Counts(
                    primary=old.counts.primary,
                    secondary=int(secondary.ntotal),
                    tombstones=len(tombstones),
                ),
                next_id=int(next_id + len(ids)),
                files=files,
                skipped=skipped + found.skipped,
                reporter=reporter,
            )
            generation = writer.publish(manifest)
        logger.info(
            "updated %s -> %s: %d files changed, %d chunks added, %d tombstoned",
            old.commit[:12],
            commit[:12],
            len(added | removed),
            len(ids),
            len(dead),
        )
        _collect_garbage(store, settings)
    result = _result(
        "update",
        generation,
        files=files,
        chunks=len(ids),
        cache=cached.stats if cached else None,
        texts=len(vids),
    )
    if threshold > 0 and result.vectors.secondary >= threshold:
        logger.info(
            "secondary holds %d vectors (>= %d): merging", result.vectors.secondary, threshold
        )
        merged = merge(settings, embedder=embedder, reporter=reporter)
        return msgspec.structs.replace(
            merged,
            action="update",
            merged=True,
            chunks=len(ids),
            embedded=result.embedded,
            embed_cache_hits=result.embed_cache_hits,
        )
    return result


def merge(
    settings: settings_mod.Settings,
    *,
    embedder: embedding_mod.Embedder | None = None,
    reporter: progress_mod.Reporter | None = None,
) -> IndexResult:
    """Rebuild the primary from all live stored vectors; empty secondary and tombstones.

    ``embedder`` (the store's model) embeds the text queries that recalibrate nprobe
    for the new primary; without it the manifest records the fallback nprobe as such.
    """
    reporter = reporter or progress_mod.Reporter()
    store = store_mod.Store(settings.store.path)
    with store.lock():
        parent = _current_for(store, "merge")
        old = parent.manifest
        vectors = parent.vectors()
        dead = parent.tombstones()
        id_parts: list[np.ndarray] = []
        xb_parts: list[np.ndarray] = []
        with reporter.stage("load", total=len(vectors)) as stage:
            for batch_ids, batch_xb in vectors.iter_batches(65_536, exclude=dead):
                id_parts.append(batch_ids)
                xb_parts.append(batch_xb)
                stage.advance(len(batch_ids))
        dim = old.embedding.dim
        ids = np.concatenate(id_parts) if id_parts else np.empty(0, dtype=np.int64)
        xb = np.concatenate(xb_parts) if xb_parts else np.empty((0, dim), dtype=np.float32)
        with store.begin(parent) as writer:
            VectorStore.write_segment(writer.path / store_mod.VECTORS_DIR, writer.name, ids, xb)
            writer.link_from_parent(store_mod.CHUNKS_DB)
            if (parent.path / store_mod.SYMBOLS_DB).is_file():
                writer.link_from_parent(store_mod.SYMBOLS_DB)
            history_build.write(
                writer.path, store.mirror_path, old.commit, parent, settings.index, reporter
            )
            queries = _stored_queries(writer, embedder, old, settings.index)
            plan = _write_indexes(writer, xb, ids, dim, settings.index, reporter, queries)
            manifest = _manifest(
                writer,
                parent=parent,
                base=writer.name,
                source=old.repo_url,
                commit=old.commit,
                ref=old.ref,
                model=old.embedding.model,
                dim=dim,
                index=_index_info(plan),
                counts=store_mod.Counts(primary=len(ids), secondary=0, tombstones=0),
                next_id=old.next_id,
                files=old.files_indexed,
                skipped=old.skipped,
                reporter=reporter,
                dense=old.dense_coverage,
            )
            generation = writer.publish(manifest)
        _collect_garbage(store, settings)
    return _result("merge", generation, files=old.files_indexed, chunks=0, merged=True)


# -- helpers ------------------------------------------------------------------------------


def _readable_current(store: store_mod.Store) -> store_mod.Generation | None:
    """The live generation, or None when there is none or it cannot be read.

    A full build needs nothing from its parent, so a corrupt or too-new current
    generation must not stop the build that replaces it.
    """
    try:
        return store.current()
    except errors.NoGenerationError:
        return None
    except errors.IndexFormatError as e:
        logger.warning("the current generation cannot be read, building over it: %s", e)
        return None


def _current_for(store: store_mod.Store, action: str) -> store_mod.Generation:
    """The live generation an update or merge starts from; a bad one names the way out."""
    try:
        return store.current()
    except errors.NoGenerationError:
        raise
    except errors.IndexFormatError as e:
        name = _current_name_or_none(store)
        peek = store.peek(name) if name else None
        source = peek.repo_url if peek and peek.repo_url else "SOURCE"
        root = store.root
        raise errors.CurrentUnreadableError(
            f"cannot {action}: {e}. To recover, serve the newest intact older generation "
            f"again with `codeintel index rollback --store {root}`, or write a fresh one with "
            f"`codeintel index build {source} --store {root}`"
        ) from e


def _current_name_or_none(store: store_mod.Store) -> str | None:
    try:
        return store.current_name()
    except errors.IndexFormatError:
        return None


def _files_with_chunks(drafts: list[chunking.ChunkDraft]) -> int:
    """Files that gave at least one chunk: what ``chunks.sqlite`` holds, so updates can recount."""
    return len({d.path for d in drafts})


def _dimension(embedder: embedding_mod.Embedder, xb: np.ndarray) -> int:
    dim = int(xb.shape[1]) if xb.size else int(embedder.dim)
    if dim <= 0:
        raise errors.ConfigError(
            "nothing to index: the commit has no indexable files, so the embedder "
            f"{embedder.model!r} was never asked for a vector and its dimension is unknown; "
            "give it with --embed-dim (CODEINTEL_EMBEDDER_DIM)"
        )
    return dim


def _chunks(ids: np.ndarray, drafts: list[chunking.ChunkDraft]) -> list[Chunk]:
    return [
        Chunk(
            id=int(i),
            path=d.path,
            start_line=d.start_line,
            end_line=d.end_line,
            language=d.language,
            symbol=d.symbol,
            content_hash=d.content_hash,
            text=d.text,
        )
        for i, d in zip(ids, drafts, strict=True)
    ]


def _write_chunks(path: Path, ids: np.ndarray, drafts: list[chunking.ChunkDraft]) -> None:
    db = ChunkDB.create(path)
    try:
        db.add(_chunks(ids, drafts))
        db.commit()
    finally:
        db.close()


def _update_symbols(
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


def _write_indexes(
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


def _index_info(plan: ann.IndexPlan) -> store_mod.IndexInfo:
    return store_mod.IndexInfo(
        type=plan.type, params=ann.params_dict(plan), calibration=plan.calibration
    )


def _stored_queries(
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


def _segment_files(generation: store_mod.Generation) -> list[str]:
    root = generation.path / store_mod.VECTORS_DIR
    return sorted(p.name for p in root.iterdir() if p.is_file())


def repo_url(source: str) -> str:
    if git_mod.is_url(source):
        return source
    return str(Path(source).expanduser().resolve())


def _manifest(
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


def _result(
    action: str,
    generation: store_mod.Generation,
    *,
    changed: bool = True,
    files: int | None = None,
    chunks: int = 0,
    skipped: int | None = None,
    merged: bool = False,
    cache: embed_cache.CacheStats | None = None,
    texts: int | None = None,
) -> IndexResult:
    """``texts``: what was embedded without a cache (chunks plus their windows)."""
    m = generation.manifest
    return IndexResult(
        action=action,
        changed=changed,
        generation=generation.name,
        commit=m.commit,
        index_type=m.index.type,
        vectors=m.counts,
        files=m.files_indexed if files is None else files,
        chunks=chunks,
        skipped=len(m.skipped) if skipped is None else skipped,
        merged=merged,
        embedded=cache.embedded if cache else (chunks if texts is None else texts),
        embed_cache_hits=cache.hits if cache else 0,
    )


def _collect_garbage(store: store_mod.Store, settings: settings_mod.Settings) -> None:
    started = time.perf_counter()
    removed = store.gc(
        settings.store.keep_generations,
        settings.store.gc_grace_seconds,
        embedding_cache_bytes=settings.store.embedding_cache_bytes,
    )
    if removed:
        logger.info("gc removed %s in %.2f s", ", ".join(removed), time.perf_counter() - started)
