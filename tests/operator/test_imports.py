"""The operator image holds only what the operator imports: no numpy, FAISS, torch or git."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("numpy", "faiss", "torch", "sqlite3", "httpx", "fastapi")


def test_the_operator_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import codeintel.operator.handlers, codeintel.operator.pooling, codeintel.cli\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
