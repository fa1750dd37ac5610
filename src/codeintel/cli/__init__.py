"""The single ``codeintel`` entry point (the commands of docs/architecture.md).

Parses flags (:mod:`parser`), builds :class:`~codeintel.core.settings.Settings` once
(flags over ``CODEINTEL_*`` env over defaults) and hands it to the component that does
the work (:mod:`commands`; :mod:`background` indexes beside a searcher, :mod:`logs`
sets up logging). Every ``CodeIntelError`` becomes one ``error: …`` line on stderr and
a non-zero exit; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from codeintel.cli import commands, logs
from codeintel.cli import parser as parser_mod
from codeintel.core import errors, malloc

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = parser_mod.build()
    args, extra = parser.parse_known_args(argv)
    if args.command == "operator":  # its options (and --help) belong to the operator's parser
        args.kopf_args = [*args.kopf_args, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "source", None):
        args.source = commands.absolute_source(args.source)
    try:
        logs.configure(args.log_level)
        malloc.limit_arenas()  # before the threads: docs/performance.md, *First dense answer and memory*
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        return int(args.func(args) or 0)
    except errors.CodeIntelError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
