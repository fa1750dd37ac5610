"""Seconds from ``codeintel serve PATH`` to its first answers, on a repository of >= 30K chunks.

    nice -n 10 python -m benchmarks.first_answer_bench [--repo DIR] [--embedder local]

Spawns the real CLI on a fresh store and polls it over HTTP: the port opening, the
first ``search_text`` answer (from the commit's tree), the first lexical
``semantic_search`` answer (from the build's chunks) and the first dense one (once
a generation with vectors is published: a progressive first generation over the
chunks embedded first, or the full index on builds that publish only at the end)
and the full index (a generation whose manifest records no partial dense coverage).
On CPU with the local model; ``--embedder instant`` serves hash vectors from a
loopback OpenAI-compatible endpoint instead, which measures everything but the
model's cost. ``/v1/index``'s ``indexing`` phases are recorded as they change, and
the serve process's resident memory (``VmRSS``, sampled every 0.5 s, and the
kernel's ``VmHWM`` peak) at each milestone; SIGTERM stops the wait and writes what
was measured. Writes ``results/first_answer[-LABEL].{json,md}`` (``--label``, e.g.
``before`` for a run of an older checkout through ``PYTHONPATH``); the default
repository is the sympy corpus that ``benchmarks/retrieval_corpus.py`` makes under
/work/benchcache.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.common import write_results

DEFAULT_REPO = Path("/work/benchcache/corpora/sympy")
WORK = Path("/work/benchcache/f1")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _InstantEmbeddings(http.server.BaseHTTPRequestHandler):
    """``POST /v1/embeddings``: a unit vector seeded by each text's hash, at once."""

    DIM = 384

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        data = []
        for i, text in enumerate(body["input"]):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.DIM).astype(np.float32)
            data.append(
                {"index": i, "object": "embedding", "embedding": (v / np.linalg.norm(v)).tolist()}
            )
        payload = json.dumps({"object": "list", "model": body["model"], "data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        """Quiet."""


def _instant_server() -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _InstantEmbeddings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


class _Memory:
    """Resident memory of one process: VmRSS sampled in a thread, and the kernel's VmHWM."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def read(self, key: str = "VmRSS") -> float:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self.peak_mb = max(self.peak_mb, self.read())

    def stop(self) -> float:
        """The peak RSS in MB (the kernel's high-water mark when it can be read)."""
        hwm = self.read("VmHWM")
        self._stop.set()
        return round(max(hwm, self.peak_mb), 1)


def _post(client: httpx.Client, tool: str, body: dict[str, Any]) -> httpx.Response | None:
    try:
        return client.post(f"/v1/{tool}", json=body)
    except httpx.TransportError:
        return None


interrupted = False
"""Set by SIGTERM: stop waiting and write what was measured."""


def _stop(signum: int, frame: Any) -> None:
    global interrupted
    interrupted = True


def _full_index(body: dict[str, Any]) -> bool:
    """A published generation whose dense vectors cover every chunk, with nothing indexing."""
    phase = (body.get("indexing") or {}).get("phase")
    return bool(body.get("generation")) and not body.get("dense_coverage") and phase == "ready"


def run(repo: Path, embedder: str, timeout: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    store = WORK / f"store-{stamp}"
    log_path = WORK / f"serve-{stamp}.log"
    WORK.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    command = [sys.executable, "-m", "codeintel.cli", "serve", str(repo), "--store", str(store)]
    command += ["--port", str(port)]
    instant = None
    if embedder == "instant":
        instant, url = _instant_server()
        command += ["--embedder", "openai", "--embed-url", url, "--embed-model", "instant-hash"]
        command += ["--embed-dim", str(_InstantEmbeddings.DIM)]
    else:
        command += ["--embedder", embedder]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    files = subprocess.run(
        ["git", "-C", str(repo), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.count("\n")
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    phases: list[dict[str, Any]] = []
    total_chunks = None
    with log_path.open("w") as log:
        started = time.monotonic()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        memory = _Memory(proc.pid)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
        try:
            todo = [
                ("port open", "GET /healthz", None),
                ("search_text", "search_text", {"pattern": "def integrate", "max_results": 20}),
                (
                    "semantic_search lexical",
                    "semantic_search",
                    {"query": "integrate a rational function", "mode": "lexical", "k": 10},
                ),
                (
                    "semantic_search dense",
                    "semantic_search",
                    {"query": "integrate a rational function", "mode": "semantic", "k": 10},
                ),
                ("full index", "GET /v1/index", None),
            ]
            last_phase = None
            last_index = 0.0
            last_indexing: dict[str, Any] = {}
            while todo:
                now = time.monotonic() - started
                if now > timeout or interrupted:
                    # Not reached: say so, with where the build was, rather than write nothing.
                    for name, _, _ in todo:
                        rows.append(
                            {
                                "milestone": name,
                                "seconds": f"not reached in {now:.0f} s",
                                "generation": "",
                                "commit": "",
                                "results": f"build at {last_indexing}",
                                "rss_mb": round(memory.read(), 1),
                                "peak_rss_mb_so_far": round(memory.read("VmHWM"), 1),
                            }
                        )
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"serve exited with {proc.returncode}; see {log_path}")
                name, tool, body = todo[0]
                answer: dict[str, Any] = {}
                if body is None:
                    path = tool.split()[1]
                    try:
                        r = client.get(path)
                        answered = r.status_code == 200
                        if path == "/v1/index":
                            answer = r.json()
                            answered = _full_index(answer)
                    except (httpx.TransportError, ValueError):
                        answered = False
                else:
                    r = _post(client, tool, body)
                    answered = r is not None and r.status_code == 200
                    answer = r.json() if answered and r is not None else {}
                if answered:
                    rows.append(
                        {
                            "milestone": name,
                            "seconds": round(time.monotonic() - started, 2),
                            "generation": answer.get("generation", ""),
                            "commit": str(answer.get("commit", ""))[:12],
                            "results": len(answer.get("results", [])) if body else "",
                            "notice": str(answer.get("notice") or "")[:120],
                            "rss_mb": round(memory.read(), 1),
                            "peak_rss_mb_so_far": round(memory.read("VmHWM"), 1),
                        }
                    )
                    print(f"{rows[-1]['seconds']:8.2f} s  {name}", flush=True)
                    todo.pop(0)
                    continue
                if now - last_index >= 1.0 and rows:
                    last_index = now
                    try:
                        indexing = client.get("/v1/index").json().get("indexing") or {}
                    except (httpx.TransportError, ValueError):
                        indexing = {}
                    last_indexing = {
                        k: indexing.get(k)
                        for k in ("phase", "done", "total", "rate", "eta_seconds")
                    }
                    phase = indexing.get("phase")
                    if phase == "embed" and indexing.get("total"):
                        total_chunks = indexing["total"]
                    if phase and phase != last_phase:
                        last_phase = phase
                        phases.append({"phase": phase, "at_seconds": round(now, 1)})
                        print(f"{now:8.2f} s  phase {phase} {indexing}", flush=True)
                time.sleep(0.1 if body is not None and name != "semantic_search dense" else 1.0)
        finally:
            client.close()
            peak_rss = memory.stop()
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if instant is not None:
                instant.shutdown()
    meta = {
        "command": " ".join(command),
        "repo": str(repo),
        "files": files,
        "chunks": total_chunks,
        "embedder": embedder,
        "load_average_at_start": [round(x, 2) for x in load_before],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "peak_rss_mb": peak_rss,
        "phases": phases,
        "log": str(log_path),
        "store": str(store),
    }
    return rows, meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=DEFAULT_REPO)
    parser.add_argument("--embedder", default="local")
    parser.add_argument("--timeout", type=float, default=3 * 3600)
    parser.add_argument("--label", default="", help="suffix of the results' name")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    rows, meta = run(args.repo, args.embedder, args.timeout)
    import codeintel

    meta["codeintel"] = str(Path(codeintel.__file__).parent)
    name = "first_answer" if args.embedder == "local" else f"first_answer-{args.embedder}"
    write_results(f"{name}-{args.label}" if args.label else name, rows, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
