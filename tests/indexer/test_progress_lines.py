"""Progress lines of a real build whose stderr is not a terminal (a Job, CI, a log file)."""

from __future__ import annotations

import datetime
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from codeintel.indexer import corpus
from gitrepo import GitRepo
from servers import FakeEmbeddingsServer

pytestmark = pytest.mark.slow

INTERVAL = 0.4
LINE = re.compile(
    r"^(?P<ts>\S+ \S+) INFO codeintel\.indexer\.progress: progress embed: "
    r"(?P<done>\d+)/(?P<total>\d+) \((?P<pct>[\d.]+)%\) (?P<rate>[\d.]+|-)/s "
    r"eta (?P<eta>\S+) elapsed \S+$"
)


@pytest.fixture
def many_chunk_repo(git_repo: GitRepo) -> GitRepo:
    """Enough one-function files that embedding advances in several groups."""
    n = 3 * corpus.EMBED_GROUP + 17
    git_repo.commit(
        "many files",
        {f"pkg/m{i:04d}.py": f"def handler_{i}(x):\n    return x + {i}\n" for i in range(n)},
    )
    return git_repo


def _build(repo: GitRepo, store: Path, server: FakeEmbeddingsServer, fmt: str) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "CODEINTEL_LOG_PROGRESS_INTERVAL_SECONDS": str(INTERVAL),
        "CODEINTEL_LOG_FORMAT": fmt,
    }
    cmd = [sys.executable, "-m", "codeintel.cli", "index", "build", str(repo.path)]
    cmd += ["--store", str(store), "--no-history", "--embedder", "openai"]
    cmd += ["--embed-url", server.url, "--embed-model", "fake", "--embed-dim", str(server.dim)]
    # stderr is a pipe, as in a pod or a CI runner: no bars, log lines.
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "\x1b[" not in out.stderr, "terminal escapes in a non-TTY log"
    return out.stderr


def _time(ts: str) -> float:
    return datetime.datetime.strptime(ts, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_non_tty_build_logs_done_total_rate_and_eta_every_interval(
    many_chunk_repo: GitRepo, tmp_path: Path
) -> None:
    server = FakeEmbeddingsServer(delay=0.12)  # 8 requests per group: ~1 s a group
    with server.running():
        log = _build(many_chunk_repo, tmp_path / "store", server, "text")
    lines = [m for m in map(LINE.match, log.splitlines()) if m]
    total = 3 * corpus.EMBED_GROUP + 17
    assert len(lines) >= 4, log[-3000:]
    assert {int(m["total"]) for m in lines} == {total}
    dones = [int(m["done"]) for m in lines]
    assert dones == sorted(dones) and dones[-1] < total
    with_rate = [m for m in lines if m["rate"] != "-"]
    assert with_rate, "no line gave a rate once embedding advanced"
    for m in with_rate:
        assert float(m["rate"]) > 0 and re.fullmatch(r"(\d+h)?(\d+m)?\d+s", m["eta"])
        assert float(m["pct"]) == pytest.approx(100 * int(m["done"]) / total, abs=0.06)

    # Timing: one line per interval, never more often, never a long silence.
    start = re.search(r"^(\S+ \S+) .*stage embed: started", log, re.M)
    end = re.search(r"^(\S+ \S+) .*stage embed: \d+ items in", log, re.M)
    assert start and end
    stamps = [_time(start[1]), *(_time(m["ts"]) for m in lines), _time(end[1])]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps[:-1]) >= INTERVAL * 0.9, gaps
    assert max(gaps) <= INTERVAL + 1.0, gaps


def test_json_lines_carry_a_progress_object(many_chunk_repo: GitRepo, tmp_path: Path) -> None:
    server = FakeEmbeddingsServer(delay=0.12)
    with server.running():
        log = _build(many_chunk_repo, tmp_path / "store", server, "json")
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    ticks = [r for r in records if r["msg"].startswith("progress embed:")]
    assert ticks
    for r in ticks:
        p = r["progress"]
        assert p["stage"] == "embed" and p["total"] == 3 * corpus.EMBED_GROUP + 17
        assert r["msg"].startswith(f"progress embed: {p['done']}/{p['total']} ")
    advanced = [r["progress"] for r in ticks if r["progress"]["rate"]]
    assert advanced and all(p["eta_seconds"] is not None for p in advanced)
    # Stage edges carry it too, so the last line always names the current stage.
    edges = [r["progress"]["stage"] for r in records if r["msg"].startswith("stage ")]
    assert "embed" in edges and "train" in edges
