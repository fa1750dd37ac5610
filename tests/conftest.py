"""Fixtures shared by every test package: real git repositories and the real local model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitrepo import GitRepo

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def git_repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path / "repo")


SAMPLE_FILES: dict[str, str | bytes] = {
    "README.md": "# Sample\n\nA tiny service that parses invoices and sends emails.\n",
    "billing/invoice.py": (
        "import decimal\n\n\n"
        "def parse_invoice(text):\n"
        '    """Parse an invoice document into line items and a total."""\n'
        "    items = [line.split(',') for line in text.splitlines() if line]\n"
        "    total = sum(decimal.Decimal(price) for _, price in items)\n"
        "    return items, total\n\n\n"
        "class TaxCalculator:\n"
        "    def __init__(self, rate):\n"
        "        self.rate = rate\n\n"
        "    def tax_for(self, amount):\n"
        "        return amount * self.rate\n"
    ),
    "mail/sender.py": (
        "import smtplib\n\n\n"
        "def send_email(host, recipient, subject, body):\n"
        '    """Send an email message through an SMTP relay."""\n'
        "    with smtplib.SMTP(host) as smtp:\n"
        "        smtp.sendmail('noreply@example.org', [recipient], f'Subject: {subject}\\n\\n{body}')\n"
    ),
    "web/server.go": (
        "package web\n\n"
        'import "net/http"\n\n'
        "// HealthHandler answers liveness probes.\n"
        "func HealthHandler(w http.ResponseWriter, r *http.Request) {\n"
        "\tw.WriteHeader(http.StatusOK)\n"
        "}\n"
    ),
    "assets/logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00binary",
    "vendor/lib/dep.py": "def vendored():\n    return 1\n",
}


@pytest.fixture
def sample_repo(git_repo: GitRepo) -> GitRepo:
    git_repo.commit("initial import", SAMPLE_FILES)
    return git_repo


@pytest.fixture(scope="session")
def local_embedder() -> Iterator[object]:
    """The real bundled model, loaded once per test session."""
    from codeintel.core.embed.local import LocalEmbedder

    embedder = LocalEmbedder()
    yield embedder
    embedder.close()
