"""The README's first command, run for real: ``make serve`` in this checkout.

CI runs it after ``make test`` so that a README whose first command does not work
never lands again (issue 17). It starts ``make serve`` on an unused port in a
process group of its own, waits (bounded) until the repository is indexed and
``/readyz`` answers 200, checks that ``search_text`` and ``semantic_search``
answer 200 with results from this repository, and stops the whole group. It
prints how long indexing took; exit status 0 only if every check passed.

usage: .venv/bin/python .ci/serve_check.py [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, tool: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/{tool}", json=body, timeout=60)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Seconds until ``/readyz`` said 200 and a published generation answered."""
    start = time.monotonic()
    last = "no answer yet"
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"make serve exited with status {proc.returncode} before ready")
        try:
            ready = httpx.get(f"{url}/readyz", timeout=5)
            index = httpx.get(f"{url}/v1/index", timeout=5).json()
            last = f"readyz {ready.status_code}, index {str(index)[:300]}"
            published = str(index.get("generation") or "").startswith("g")
            if ready.status_code == 200 and published:
                return time.monotonic() - start
        except (httpx.HTTPError, ValueError) as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(1.0)
    raise SystemExit(f"not ready within {timeout:.0f} s ({last})")


def check(url: str) -> None:
    text = post(url, "search_text", pattern="def serve_check_marker", max_results=5)
    if text.status_code != 200:
        raise SystemExit(f"search_text answered {text.status_code}: {text.text[:500]}")
    paths = [r["path"] for r in text.json()["results"]]
    if ".ci/serve_check.py" not in paths:
        raise SystemExit(f"search_text did not find this script, only {paths}")
    for mode in ("hybrid", "semantic"):
        found = post(url, "semantic_search", query="resolve relative store paths", k=5, mode=mode)
        if found.status_code != 200:
            raise SystemExit(
                f"semantic_search ({mode}) answered {found.status_code}: {found.text[:500]}"
            )
        body = found.json()
        hits = [r["path"] for r in body["results"]]
        if not hits or not all((ROOT / p).exists() for p in hits):
            raise SystemExit(
                f"semantic_search ({mode}) hits are not this repository's files: {hits}"
            )
        print(f"semantic_search ({mode}) at {body['generation']} {body['commit'][:12]}: {hits[:3]}")


def serve_check_marker() -> None:
    """search_text looks for this function's name (with ``def`` before it) in this file."""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    # Stopped from outside (CI cancelled, a timeout): still stop the server's group.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = ROOT / ".ci" / "serve.log"
    env = {**os.environ, "PORT": str(port)}
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["make", "serve", f"PORT={port}"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: make, codeintel and git go together
        )
        try:
            seconds = wait_ready(url, proc, args.timeout)
            print(f"make serve: ready on {url} after {seconds:.1f} s (install already done)")
            check(url)
        except BaseException:
            sys.stdout.write(log_path.read_text(errors="replace")[-4000:])
            raise
        finally:
            with_group(proc, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                with_group(proc, signal.SIGKILL)
                proc.wait(10)
    print(f"make serve: checks passed, stopped after {time.monotonic() - started:.1f} s")
    return 0


def with_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


if __name__ == "__main__":
    sys.exit(main())
