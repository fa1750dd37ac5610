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
generation, and the temp directory is cleaned by the next run's GC. What goes
into a generation is written by :mod:`publishing`; where a run starts and how it
ends (the live generation, garbage collection, the result) is :mod:`runs`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import faiss
import msgspec
import numpy as np

from codeintel.core import embed as embedding_mod
from codeintel.core import errors, malloc
from codeintel.core import git as git_mod
from codeintel.core import settings as settings_mod
from codeintel.core import store as store_mod
from codeintel.core.indexresult import IndexResult
from codeintel.core.store import symbols as symbols_store
from codeintel.core.store.chunks import ChunkDB
from codeintel.core.store.vectors import VectorStore
from codeintel.indexer import ann, corpus, embed_cache, firstpass, history_build, publishing, runs
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
        parent = runs.readable_current(store)
        next_id = store.max_next_id()
        ids = np.arange(next_id, next_id + len(found.drafts), dtype=np.int64)
        files = publishing.files_with_chunks(found.drafts)
        base = publishing.BuildBase(
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
                publishing.write_chunks(writer.path / store_mod.CHUNKS_DB, ids, found.drafts)
                with reporter.stage("impact"):
                    writer.write_impact()
                with reporter.stage("symbols"):
                    symbols_store.write(writer.path / store_mod.SYMBOLS_DB, found.symbols)
                # Written: not held through the embedding (sympy: 1.5M occurrences).
                found.symbols = []
                malloc.trim()
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
                    parent = publishing.publish_first(writer, first, ids, base, settings, reporter)
                    malloc.trim()
                else:
                    generation, vids = publishing.publish_full(
                        writer, embedder, cached, found.drafts, ids, base, settings, reporter, first
                    )
            if partial:
                with store.begin(parent) as writer:
                    # Same commit, same chunks: the full index reuses them and the history.
                    writer.link_from_parent(store_mod.CHUNKS_DB)
                    _link_symbols(writer)
                    writer.write_impact()
                    history_build.write(
                        writer.path, store.mirror_path, commit, parent, cfg, reporter
                    )
                    generation, vids = publishing.publish_full(
                        writer, embedder, cached, found.drafts, ids, base, settings, reporter, first
                    )
        runs.collect_garbage(store, settings)
    malloc.trim()  # the vectors, the texts and the model's batches of the whole build
    return runs.index_result(
        "build",
        generation,
        files=files,
        chunks=len(ids),
        skipped=len(found.skipped),
        cache=cached.stats if cached else None,
        texts=len(vids),
    )


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
    name = runs.current_name_or_none(store)
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
        parent = runs.current_for(store, "update")
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
                return runs.index_result("update", parent, changed=False)
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
            vids, xv = publishing.embed_chunks(
                embedder, cached, found.drafts, ids, settings.index, reporter
            )
            if len(ids):
                embedding_mod.check_dimension(xv.shape[1], old.embedding.dim, embedder.model)
        tombstones = np.union1d(parent.tombstones(), dead).astype(np.int64)
        with store.begin(parent) as writer:
            writer.link_from_parent(store_mod.PRIMARY)
            for name in publishing.segment_files(parent):
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
                db.add(publishing.chunk_rows(ids, found.drafts))
                db.commit()
                files = len(db.paths())
            finally:
                db.close()
            with reporter.stage("impact"):
                writer.write_impact()
            publishing.update_symbols(parent, writer.path, removed, found.symbols)
            history_build.write(
                writer.path, store.mirror_path, commit, parent, settings.index, reporter
            )
            skipped = [s for s in old.skipped if s.path not in removed and s.path not in added]
            manifest = publishing.new_manifest(
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
        runs.collect_garbage(store, settings)
    result = runs.index_result(
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
        parent = runs.current_for(store, "merge")
        old = parent.manifest
        vectors = parent.vectors()
        dead = parent.tombstones()
        id_parts: list[np.ndarray] = []
        xb_parts: list[np.ndarray] = []
        with reporter.stage("load", total=len(vectors)) as stage:
            # float16, as stored: the primary is filled from it in float32 slices.
            for batch_ids, batch_xb in vectors.iter_batches(65_536, exclude=dead, dtype=np.float16):
                id_parts.append(batch_ids)
                xb_parts.append(batch_xb)
                stage.advance(len(batch_ids))
        dim = old.embedding.dim
        ids = np.concatenate(id_parts) if id_parts else np.empty(0, dtype=np.int64)
        xb = np.concatenate(xb_parts) if xb_parts else np.empty((0, dim), dtype=np.float16)
        with store.begin(parent) as writer:
            VectorStore.write_segment(writer.path / store_mod.VECTORS_DIR, writer.name, ids, xb)
            writer.link_from_parent(store_mod.CHUNKS_DB)
            _link_symbols(writer)
            with reporter.stage("impact"):
                writer.write_impact()  # the parent's, or read now when the parent has none
            history_build.write(
                writer.path, store.mirror_path, old.commit, parent, settings.index, reporter
            )
            queries = publishing.stored_queries(writer, embedder, old, settings.index)
            plan = publishing.write_indexes(writer, xb, ids, dim, settings.index, reporter, queries)
            manifest = publishing.new_manifest(
                writer,
                parent=parent,
                base=writer.name,
                source=old.repo_url,
                commit=old.commit,
                ref=old.ref,
                model=old.embedding.model,
                dim=dim,
                index=publishing.index_info(plan),
                counts=store_mod.Counts(primary=len(ids), secondary=0, tombstones=0),
                next_id=old.next_id,
                files=old.files_indexed,
                skipped=old.skipped,
                reporter=reporter,
                dense=old.dense_coverage,
            )
            generation = writer.publish(manifest)
        runs.collect_garbage(store, settings)
    return runs.index_result("merge", generation, files=old.files_indexed, chunks=0, merged=True)


def _link_symbols(writer: store_mod.GenerationWriter) -> None:
    """The parent's symbol index, by hard link: its database and, from format 8, its
    postings file; nothing when it has none (built before format 6)."""
    for name in store_mod.SYMBOL_FILES:
        if writer.parent is not None and (writer.parent.path / name).is_file():
            writer.link_from_parent(name)


def repo_url(source: str) -> str:
    if git_mod.is_url(source):
        return source
    return str(Path(source).expanduser().resolve())
