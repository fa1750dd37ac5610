"""Fixtures shared by every test package: real git repositories and the real local model."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada Lovelace",
    "GIT_AUTHOR_EMAIL": "ada@example.org",
    "GIT_COMMITTER_NAME": "Ada Lovelace",
    "GIT_COMMITTER_EMAIL": "ada@example.org",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


class GitRepo:
    """A real repository in a temp dir, driven through the git binary."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        out = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env={**os.environ, **GIT_ENV, **(env or {})},
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()

    def write(self, files: dict[str, str | bytes]) -> None:
        for rel, content in files.items():
            target = self.path / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content, encoding="utf-8")

    def delete(self, *rels: str) -> None:
        for rel in rels:
            (self.path / rel).unlink()

    def commit(
        self, message: str, files: dict[str, str | bytes] | None = None, *, date: str | None = None
    ) -> str:
        if files:
            self.write(files)
        self.git("add", "-A")
        env = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date} if date else None
        self.git("commit", "-q", "--allow-empty", "-m", message, env=env)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")


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
    from codeintel.core.local_embedder import LocalEmbedder

    embedder = LocalEmbedder()
    yield embedder
    embedder.close()
