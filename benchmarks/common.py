"""Where every benchmark puts its numbers: ``results/<name>.json`` plus a markdown table.

One writer so that results share a shape: ``{"meta": {...}, "rows": [...]}`` in
JSON for tools, and the same rows as a table for the README and reviews. Both
files are written to a temp name and renamed, so a benchmark killed halfway
leaves the previous results intact.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_results(name: str, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Write ``rows`` (one dict per measurement) and ``meta`` (how they were measured)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    meta = {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        **meta,
    }
    _replace(RESULTS_DIR / f"{name}.json", json.dumps({"meta": meta, "rows": rows}, indent=2))
    _replace(RESULTS_DIR / f"{name}.md", _markdown(name, rows, meta))


def _markdown(name: str, rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = [f"# {name}", ""]
    lines += [f"- {key}: {_cell(value)}" for key, value in meta.items()]
    lines.append("")
    if columns:
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "---|" * len(columns))
        lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
