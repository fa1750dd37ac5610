"""Logging for every command: readable lines on a terminal, one JSON object a line in a cluster."""

from __future__ import annotations

import json
import logging
import sys

from codeintel.core.settings import Settings


def configure(level: str | None) -> None:
    log = Settings.from_env(log={"level": level}).log
    handler = logging.StreamHandler(sys.stderr)
    if log.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log.level.upper())
    # faiss >= 1.10 dispatches SIMD at run time; its loader still logs every legacy
    # module it tries (avx512, avx2) at INFO, which reads like an error. Keep its warnings.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    # httpx logs every embeddings request at INFO: hundreds of lines a minute that
    # drown the indexer's progress lines (and push them out of a log tail).
    logging.getLogger("httpx").setLevel(logging.WARNING)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors in the cluster."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        progress = getattr(record, "progress", None)
        if progress is not None:
            entry["progress"] = progress
        return json.dumps(entry, ensure_ascii=False)
