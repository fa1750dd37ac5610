"""The layer under everything: settings, errors, the store format, embedders, git access.

Deliberately light: importing ``codeintel.core`` pulls in no FAISS or torch,
so the operator can use settings and errors alone. Import the
modules you need (``from codeintel.core import store``).
"""

from __future__ import annotations

from codeintel.core.errors import CodeIntelError
from codeintel.core.settings import Settings

__all__ = ["CodeIntelError", "Settings"]
