"""Whole-pipeline indexing throughput against raw ``SentenceTransformer.encode``.

Indexes a real tree (this project's own repository by default) with the local
model through ``codeintel.indexer.pipeline.build`` and, in the same run, times
a bare ``SentenceTransformer.encode`` over exactly the texts the pipeline
embedded. The ratio (pipeline chunks/s ÷ raw chunks/s) says how much the
pipeline costs beyond the model itself; the issue aims for ≥ 0.9.

    python -m benchmarks.indexing_bench [--repo PATH] [--limit N]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from benchmarks.common import write_results
from codeintel.core import git as git_mod
from codeintel.core.embed.local import LocalEmbedder
from codeintel.core.settings import Settings
from codeintel.indexer import corpus, pipeline, progress


def run(repo: Path, repeats: int = 1) -> dict[str, object]:
    embedder = LocalEmbedder()
    embedder.embed(["warm up the model"])  # load weights outside both timings
    settings = Settings.from_env({})
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(repeats):
            store = Path(tmp) / f"store{attempt}"
            s = settings.replace(store={"path": store})
            reporter = progress.Reporter()
            start = time.perf_counter()
            result = pipeline.build(s, str(repo), embedder, reporter=reporter)
            pipeline_s = time.perf_counter() - start

            with git_mod.GitClient(store / "mirror.git") as git:
                found = corpus.read_corpus(git, result.commit, s.index, progress.Reporter())
            texts = [corpus.embedding_text(d) for d in found.drafts]
            model = embedder._load()
            start = time.perf_counter()
            model.encode(texts, batch_size=s.embedder.batch_size, normalize_embeddings=True)
            raw_s = time.perf_counter() - start

            n = result.chunks
            rows.append(
                {
                    "repo": str(repo),
                    "files": result.files,
                    "chunks": n,
                    "pipeline_s": round(pipeline_s, 2),
                    "pipeline_chunks_per_s": round(n / pipeline_s, 1),
                    "raw_encode_s": round(raw_s, 2),
                    "raw_chunks_per_s": round(n / raw_s, 1),
                    "ratio": round(raw_s / pipeline_s, 3),
                    **{f"stage_{k}_s": round(v, 2) for k, v in reporter.timings.items()},
                }
            )
    embedder.close()
    return {"rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    out = run(args.repo, args.repeats)
    write_results(
        "indexing",
        out["rows"],  # type: ignore[arg-type]
        {"what": "pipeline.build vs raw SentenceTransformer.encode on the same texts"},
    )


if __name__ == "__main__":
    main()
