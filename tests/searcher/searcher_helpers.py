"""Helpers the searcher tests share: a repository with history, a store, a threaded server."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

import servers
from codeintel.core.settings import Settings
from codeintel.indexer import pipeline
from gitrepo import GitRepo

NON_ASCII_PATH = "docs/naïve café.md"
AUTHORS = {
    "ada": ("Ada Lovelace", "ada@example.org"),
    "zoe": ("Zoë Ürban-Ñúñez", "zoe@example.org"),
}


class Repo(GitRepo):
    """A repository whose commits carry chosen authors and dates (blame and history tests)."""

    def commit(  # type: ignore[override]
        self, message: str, files: dict[str, str], author: str = "ada", n: int = 0
    ) -> str:
        name, email = AUTHORS[author]
        date = f"2024-01-{1 + n % 28:02d}T12:00:00+02:00"
        self.write(dict(files))
        self.git("add", "-A")
        env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_AUTHOR_DATE": date}
        self.git(
            "commit", "-q", "--allow-empty", "-m", message, env={**env, "GIT_COMMITTER_DATE": date}
        )
        return self.head()


FILES = {
    "README.md": "# Sample\n\nA tiny service that parses invoices and sends emails.\n",
    "billing/invoice.py": (
        "import decimal\n\n\n"
        "def parse_invoice(text):\n"
        '    """Parse an invoice document into line items and a total."""\n'
        "    items = [line.split(',') for line in text.splitlines() if line]\n"
        "    total = sum(decimal.Decimal(price) for _, price in items)\n"
        "    return items, total\n"
    ),
    "mail/sender.py": (
        "import smtplib\n\n\n"
        "def send_email(host, recipient, subject, body):\n"
        '    """Send an email message through an SMTP relay."""\n'
        "    with smtplib.SMTP(host) as smtp:\n"
        "        smtp.sendmail('noreply@example.org', [recipient], subject + body)\n"
    ),
    "web/server.go": (
        "package web\n\n"
        'import "net/http"\n\n'
        "// HealthHandler answers liveness probes.\n"
        "func HealthHandler(w http.ResponseWriter, r *http.Request) {\n"
        "\tw.WriteHeader(http.StatusOK)\n"
        "}\n"
    ),
    NON_ASCII_PATH: "# Naïve café\n\nCrème brûlée recipes for the cafeteria.\n",
}


def make_repo(path: Path) -> Repo:
    repo = Repo(path)
    repo.commit("initial import", FILES, "ada", 0)
    repo.commit(
        "billing: compute tax — Steuer berechnen",
        {
            "billing/invoice.py": FILES["billing/invoice.py"]
            + "\n\nclass TaxCalculator:\n    def __init__(self, rate):\n        self.rate = rate\n\n"
            "    def tax_for(self, amount):\n        return amount * self.rate\n"
        },
        "zoe",
        1,
    )
    repo.commit(
        "café: more recipes", {NON_ASCII_PATH: FILES[NON_ASCII_PATH] + "Tarte Tatin.\n"}, "zoe", 2
    )
    os.symlink("/etc", repo.path / "escape")
    os.symlink("../../outside", repo.path / "link_out")
    os.symlink("billing/invoice.py", repo.path / "alias.py")
    repo.commit("symlinks", {}, "ada", 3)
    for i in range(4, 12):
        repo.commit(
            f"mail: tweak {i}",
            {"mail/sender.py": FILES["mail/sender.py"] + f"# rev {i}\n"},
            "ada",
            i,
        )
    return repo


def settings_for(store: Path, **server: Any) -> Settings:
    return Settings.from_env(
        {}, store={"path": store}, server={"reload_interval_seconds": 0.2, **server}
    )


def build_store(repo: Repo, store: Path, embedder: Any) -> Settings:
    settings = settings_for(store)
    pipeline.build(settings, str(repo.path), embedder)
    return settings


def until(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """``check()``'s first truthy result, polled every 50 ms; fails with ``what`` at ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return result


def metric(url: str, series: str) -> float | None:
    """The value of one series in ``/metrics``, or None when it is absent."""
    text = httpx.get(f"{url}/metrics").text
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def serving(url: str) -> dict[str, Any]:
    """The ``serving`` part of ``/v1/index``: generation, fallback, current, reason."""
    r = httpx.get(f"{url}/v1/index")
    assert r.status_code == 200, r.text
    return dict(r.json()["serving"])


class Served:
    """The app served on loopback through ``servers.serve`` (its own bound socket)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.url = ""
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Served:
        self.url = self._stack.enter_context(servers.serve(self.app))
        return self

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def wait_ready(
        self, timeout: float = 60.0, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            r = httpx.get(f"{self.url}/readyz", headers=headers)
            if r.status_code == 200:
                return dict(r.json())
            if time.monotonic() > deadline:
                raise TimeoutError(r.text)
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


ReadyServer = Callable[[Settings], contextlib.AbstractContextManager[Served]]
"""The ``ready_server`` fixture (conftest): ``with ready_server(settings) as served``."""


def blame_lines(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """A packed blame_range answer (``searcher/blame.py``) as one row per line, each with
    its commit's fields: the shape ``git blame`` gives."""
    commits, authors = answer.get("commits") or {}, answer.get("authors") or {}
    rows = []
    line = answer["start_line"]
    for count, index, *rest in answer["results"]:
        meta = {k: v[index] for k, v in commits.items() if k != "author"}
        if "author" in commits:
            who = commits["author"][index]
            meta.update({"author" if k == "name" else k: v[who] for k, v in authors.items()})
        texts = rest[0].split("\n") if rest else [None] * count
        for n in range(count):
            rows.append({"line": line + n, **meta, "text": texts[n] if n < len(texts) else None})
        line += count
    return rows
