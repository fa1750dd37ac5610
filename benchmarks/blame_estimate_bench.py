"""blame_range's ``tokens`` estimate against the packaged tokenizer's count (issue 19).

Whole-file blames of a store's files over the tool (in-process, ``max_tokens`` at its
maximum so nothing degrades), with every field and with ``fields=["text"]``: the
answer's bytes, the bytes of its text strings as JSON, its ``tokens`` and the
tokenizer's count of its JSON (``answer_size_bench.tokenizer``). Sizes only, no timing.

    python -m benchmarks.blame_estimate_bench --store /tmp/text4/cjson-store [--files cJSON.c ...]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import msgspec

from benchmarks.answer_size_bench import tokenizer
from benchmarks.common import write_results
from codeintel.core import settings as settings_mod
from codeintel.searcher import budget, context, models

FILES = (
    "cJSON.c",
    "cJSON_Utils.c",
    "cJSON.h",
    "README.md",
    "CMakeLists.txt",
    "tests/parse_examples.c",
    "test.c",
    "tests/misc_tests.c",
    "CHANGELOG.md",
    "library_config/cJSONConfig.cmake.in",
)


async def measure(store: Path, files: list[str]) -> list[dict[str, Any]]:
    tok = tokenizer()
    settings = settings_mod.Settings().replace(store={"path": store})
    ctx = context.AppContext(settings)
    await ctx.start()
    await ctx.wait_ready(60)
    rows = []
    try:
        for path in files:
            for fields in (None, ["text"]):
                req = models.BlameRangeRequest(
                    path=path,
                    start_line=1,
                    end_line=5000,
                    max_tokens=budget.MAX_MAX_TOKENS,
                    max_results=5000,
                    fields=fields,
                )
                answer = await ctx.service.blame_range(req)
                body = msgspec.json.encode(answer)
                texts = [r[2] for r in answer["results"] if len(r) > 2]
                counted = len(tok.encode(body.decode(), add_special_tokens=False).ids)
                rows.append(
                    {
                        "path": path,
                        "fields": ",".join(fields or ["all"]),
                        "bytes": len(body),
                        "text_bytes": sum(len(msgspec.json.encode(t)) for t in texts),
                        "tokenizer": counted,
                        "estimate": answer["tokens"],
                        "estimate / tokenizer": round(answer["tokens"] / counted, 3),
                        "json / 1.7 / tokenizer": round(
                            len(body) / budget.BYTES_PER_TOKEN / counted, 3
                        ),
                    }
                )
                print(rows[-1], flush=True)
    finally:
        await ctx.aclose()
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", type=Path, default=Path("/tmp/text4/cjson-store"))
    p.add_argument("--files", nargs="*", default=list(FILES))
    p.add_argument("--name", default="blame_estimate")
    a = p.parse_args(argv)
    rows = asyncio.run(measure(a.store, a.files))
    meta = {"store": str(a.store), "text_bytes_per_token": budget.TEXT_BYTES_PER_TOKEN}
    write_results(a.name, rows, meta)


if __name__ == "__main__":
    main()
