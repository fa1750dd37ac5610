"""``codeintel doctor``: what this machine can run, checked rather than assumed.

Reports the git binary, the FAISS build and whether it trains on GPU (and with
cuVS) or falls back to the CPU, whether the configured embedder answers, and
whether the store's live generation is readable. Each check is independent:
one failing never hides the others.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

from codeintel.core import errors
from codeintel.core import settings as settings_mod

Check = dict[str, Any]


def _git() -> Check:
    path = shutil.which("git")
    if not path:
        return {"ok": False, "error": "the 'git' binary was not found on PATH"}
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return {"ok": out.returncode == 0, "path": path, "version": out.stdout.strip()}


def _faiss(settings: settings_mod.Settings) -> Check:
    from codeintel.core import gpu

    info = gpu.describe(settings.index.use_cuvs)
    return {"ok": True, **info}


def _embedder(settings: settings_mod.Settings) -> Check:
    from codeintel.core import embed

    cfg = settings.embedder
    target = cfg.url if cfg.kind == "openai" else cfg.model
    start = time.perf_counter()
    try:
        embedder = embed.make_embedder(cfg)
        try:
            xq = embedder.embed(["codeintel doctor"])
        finally:
            embedder.close()
    except errors.CodeIntelError as e:
        return {"ok": False, "kind": cfg.kind, "target": target, "error": str(e)}
    # Which runtime embeds (local only): torch, onnx or onnx-int8, after ``auto`` resolved.
    backend = getattr(embedder, "backend", None)
    return {
        "ok": True,
        "kind": cfg.kind,
        "target": target,
        "model": cfg.model,
        **({"backend": backend} if backend else {}),
        "dim": int(xq.shape[1]),
        "latency_ms": round((time.perf_counter() - start) * 1000, 1),
    }


def _store(settings: settings_mod.Settings) -> Check:
    from codeintel.core import store as store_mod

    store = store_mod.Store(settings.store.path)
    try:
        generation = store.current()
    except errors.NoGenerationError:
        return {"ok": True, "path": str(store.root), "generation": None, "note": "no store yet"}
    except errors.CodeIntelError as e:
        return {"ok": False, "path": str(store.root), "error": str(e)}
    m = generation.manifest
    return {
        "ok": True,
        "path": str(store.root),
        "generation": generation.name,
        "commit": m.commit,
        "index_type": m.index.type,
        "vectors": {"primary": m.counts.primary, "secondary": m.counts.secondary},
        "model": m.embedding.model,
    }


def run(settings: settings_mod.Settings) -> dict[str, Any]:
    """Every check's result, plus ``ok`` when all passed."""
    checks: dict[str, Callable[[], Check]] = {
        "git": _git,
        "faiss": lambda: _faiss(settings),
        "embedder": lambda: _embedder(settings),
        "store": lambda: _store(settings),
    }
    report: dict[str, Any] = {}
    for name, check in checks.items():
        try:
            report[name] = check()
        except Exception as e:  # a doctor reports every failure; it never crashes on one
            report[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    report["ok"] = all(c.get("ok") for c in report.values() if isinstance(c, dict))
    return report


def render(report: dict[str, Any]) -> str:
    """A person-readable report: one line per check."""
    lines = []
    for name, check in report.items():
        if not isinstance(check, dict):
            continue
        mark = "ok  " if check.get("ok") else "FAIL"
        details = ", ".join(f"{k}={v}" for k, v in check.items() if k != "ok")
        lines.append(f"[{mark}] {name}: {details}")
    lines.append("all checks passed" if report.get("ok") else "some checks failed")
    return "\n".join(lines)
