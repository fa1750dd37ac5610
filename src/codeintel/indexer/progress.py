"""Stage reporting for long index builds: progress bars on a terminal, log lines elsewhere.

The pipeline calls ``reporter.stage(name, total)`` for each stage (mirror, chunk,
embed, train, add, …) and advances it; the reporter decides how to show it.
Every stage's wall time also goes to the ``codeintel_indexer_stage_seconds``
histogram and into the manifest's ``timings``, so a build's cost is visible in
Prometheus, in ``/v1/index`` and in the summary table alike.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from typing import IO, Any, Protocol

from prometheus_client import Histogram

logger = logging.getLogger(__name__)

STAGE_SECONDS = Histogram(
    "codeintel_indexer_stage_seconds",
    "Wall time of one indexer stage.",
    ["stage"],
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400),
)


class Stage(Protocol):
    def advance(self, n: int = 1) -> None: ...


class Reporter:
    """Plain reporter: one log line when a stage starts and one when it ends."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Stage]:
        logger.info("stage %s: started%s", name, f" ({total} items)" if total else "")
        counter = _Counter(total)
        start = time.perf_counter()
        try:
            yield counter
        finally:
            elapsed = time.perf_counter() - start
            self.timings[name] = self.timings.get(name, 0.0) + elapsed
            STAGE_SECONDS.labels(stage=name).observe(elapsed)
            logger.info("stage %s: %d items in %.2f s", name, counter.done, elapsed)

    def summary(self, rows: dict[str, Any]) -> None:
        logger.info("summary: %s", ", ".join(f"{k}={v}" for k, v in rows.items()))

    def close(self) -> None:
        """Stop any live display."""


class _Counter:
    def __init__(self, total: int | None) -> None:
        self.total = total
        self.done = 0

    def advance(self, n: int = 1) -> None:
        self.done += n


class RichReporter(Reporter):
    """Progress bars per stage and a summary table, for a person at a terminal."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(file=stream or sys.stderr)
        self.progress = Progress(
            TextColumn("[bold]{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()

    @contextlib.contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Stage]:
        task = self.progress.add_task(name, total=total)
        bar = _RichStage(self.progress, task)
        with super().stage(name, total) as counter:
            bar.counter = counter if isinstance(counter, _Counter) else None
            yield bar
        if self.progress.tasks[task].total is None:
            self.progress.update(task, total=max(bar.counter.done, 1) if bar.counter else 1)
        self.progress.update(task, completed=self.progress.tasks[task].total)

    def summary(self, rows: dict[str, Any]) -> None:
        from rich.table import Table

        self.progress.stop()
        table = Table(title="codeintel index", show_header=False)
        table.add_column("what", style="bold")
        table.add_column("value", justify="right")
        for key, value in rows.items():
            table.add_row(key, f"{value:.2f} s" if isinstance(value, float) else str(value))
        for name, seconds in self.timings.items():
            table.add_row(f"time: {name}", f"{seconds:.2f} s")
        self.console.print(table)

    def close(self) -> None:
        self.progress.stop()


class _RichStage:
    def __init__(self, progress: Any, task: Any) -> None:
        self.progress = progress
        self.task = task
        self.counter: _Counter | None = None

    def advance(self, n: int = 1) -> None:
        if self.counter:
            self.counter.advance(n)
        self.progress.advance(self.task, n)


def make_reporter(interactive: bool | None = None) -> Reporter:
    """Progress bars when stderr is a terminal (or ``interactive``), plain log lines otherwise."""
    if interactive is None:
        interactive = sys.stderr.isatty()
    return RichReporter() if interactive else Reporter()
