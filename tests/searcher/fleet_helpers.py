"""Helpers for the many-store tests: small real repositories indexed into a stores root."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from codeintel.core.settings import Settings
from codeintel.indexer import pipeline
from gitrepo import GitRepo

REPOS: dict[str, dict[str, str]] = {
    "team-a/billing": {
        "billing/invoice.py": (
            "def parse_invoice(text):\n"
            '    """Parse an invoice document into line items and a total."""\n'
            "    return [line.split(',') for line in text.splitlines() if line]\n"
        ),
        "README.md": "# Billing\n\nInvoices and taxes. shared_marker\n",
    },
    "team-a/mail": {
        "mail/sender.py": (
            "import smtplib\n\n\n"
            "def send_email(host, recipient, body):\n"
            '    """Send an email message through an SMTP relay."""\n'
            "    with smtplib.SMTP(host) as smtp:\n"
            "        smtp.sendmail('noreply@example.org', [recipient], body)\n"
        ),
        "README.md": "# Mail\n\nOutgoing email. shared_marker\n",
    },
    "team-b/web": {
        "web/server.go": (
            "package web\n\n"
            'import "net/http"\n\n'
            "// HealthHandler answers liveness probes.\n"
            "func HealthHandler(w http.ResponseWriter, r *http.Request) {\n"
            "\tw.WriteHeader(http.StatusOK)\n"
            "}\n"
        ),
        "README.md": "# Web\n\nThe HTTP front end. shared_marker\n",
    },
}


class RenamedModel:
    """The real local embedder under another model name (a rebuild with another model)."""

    def __init__(self, inner: Any, model: str) -> None:
        self._inner = inner
        self.model = model

    @property
    def dim(self) -> int:
        return int(self._inner.dim)

    def embed(self, texts: Any) -> np.ndarray:
        out: np.ndarray = self._inner.embed(texts)
        return out

    async def aembed(self, texts: Any) -> np.ndarray:
        out: np.ndarray = await self._inner.aembed(texts)
        return out

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def make_repo(path: Path, files: dict[str, str]) -> GitRepo:
    repo = GitRepo(path)
    repo.commit("initial import", dict(files))
    return repo


def build(root: Path, name: str, repo: GitRepo, embedder: Any) -> Settings:
    """Index ``repo`` into ``root/<name>`` (name is namespace/name)."""
    settings = Settings.from_env({}, store={"path": root / name})
    pipeline.build(settings, str(repo.path), embedder)
    return settings


def build_fleet(base: Path, repos: dict[str, dict[str, str]], embedder: Any) -> Path:
    """A repository under ``base`` for each of ``repos`` (name -> files), each indexed into
    ``base/stores/<name>``; returns that stores root."""
    for name, files in repos.items():
        build(base / "stores", name, make_repo(base / name.replace("/", "-"), files), embedder)
    return base / "stores"


def fleet_settings(root: Path, **fleet: Any) -> Settings:
    return Settings.from_env(
        {},
        server={"reload_interval_seconds": 0.1},
        fleet={"stores_root": str(root), "scan_interval_seconds": 0.1, **fleet},
    )
