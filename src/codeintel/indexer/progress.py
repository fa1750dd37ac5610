"""Stage reporting for long index builds: one live state, many ways to show it.

The pipeline calls ``reporter.stage(name, total)`` for each stage (mirror, chunk,
embed, train, add, …) and advances it. The reporter keeps the state under a lock,
because the build runs on a background thread while a server, a status patcher
or a log ticker read it: :meth:`Reporter.snapshot` returns a frozen
:class:`Progress` (stage, done/total, rate, ETA), and :meth:`Reporter.subscribe`
hands snapshots to a listener at stage start and end and at most once per
interval in between. A listener runs even while a stage sits in one long
blocking call (FAISS training advances once, at the end), so a Job's log and a
CodeIndex's ``status.progress`` never go quiet. Non-TTY runs log one line per
interval (docs/architecture.md, *Progress*); a terminal gets rich bars.

Every stage's wall time also goes to the ``codeintel_indexer_stage_seconds``
histogram and into the manifest's ``timings``; done/total of the running stage
go to the ``codeintel_indexer_progress_done`` / ``…_items`` gauges.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any, Protocol

import msgspec
from prometheus_client import Gauge, Histogram

from codeintel.core import durations

logger = logging.getLogger(__name__)

STAGE_SECONDS = Histogram(
    "codeintel_indexer_stage_seconds",
    "Wall time of one indexer stage.",
    ["stage"],
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400),
)
PROGRESS_DONE = Gauge(
    "codeintel_indexer_progress_done",
    "Items (files, chunks, vectors) done so far in the indexer stage.",
    ["stage"],
)
# Not ``…_total``: that suffix means a counter to Prometheus tooling.
PROGRESS_ITEMS = Gauge(
    "codeintel_indexer_progress_items",
    "Items the indexer stage has to do (0 while unknown).",
    ["stage"],
)

DEFAULT_INTERVAL = 10.0
"""Seconds between progress lines (and listener calls) inside a stage."""

RATE_WINDOW = 60.0
"""Seconds of recent advances the rate is measured over: recent enough to follow a
stage that speeds up (embedding runs longest texts first), long enough to be steady."""


class StageRecord(msgspec.Struct, frozen=True):
    """One finished stage."""

    name: str
    done: int
    total: int | None
    seconds: float


class Progress(msgspec.Struct, frozen=True):
    """What a build is doing now; ``stage`` is None before the first stage and after the last."""

    stage: str | None
    done: int
    total: int | None
    rate: float | None
    """Items per second over the last :data:`RATE_WINDOW` seconds of the stage (the
    stage's average when nothing advanced in that window); None before any advance."""
    eta_seconds: float | None
    """Seconds left in this stage at ``rate``; None while total or rate is unknown."""
    elapsed_seconds: float
    """Seconds since the stage started."""
    started_at: str | None
    """When the first stage started (UTC, ISO 8601)."""
    updated_at: str
    finished: bool
    """True once the reporter is closed: the build is over, whatever its outcome."""
    stages: tuple[StageRecord, ...] = ()

    @property
    def percent(self) -> float | None:
        if not self.total:
            return None
        return round(min(100.0, 100.0 * self.done / self.total), 1)

    def line_fields(self) -> dict[str, Any]:
        """The ``progress`` object of a JSON log line (docs/architecture.md, *Progress*)."""
        return {
            "stage": self.stage,
            "done": self.done,
            "total": self.total,
            "percent": self.percent,
            "rate": self.rate,
            "eta_seconds": self.eta_seconds,
            "elapsed_seconds": self.elapsed_seconds,
        }


Listener = Callable[[Progress], None]


class Stage(Protocol):
    def advance(self, n: int = 1) -> None: ...


class _Running:
    """The stage in progress; mutated only under the reporter's lock."""

    def __init__(self, name: str, total: int | None, now: float) -> None:
        self.name = name
        self.total = total
        self.done = 0
        self.start = now
        self.samples: collections.deque[tuple[float, int]] = collections.deque([(now, 0)])

    def rate(self, now: float) -> float | None:
        while len(self.samples) > 1 and now - self.samples[1][0] >= RATE_WINDOW:
            self.samples.popleft()
        t0, d0 = self.samples[0]
        if self.done > d0 and now > t0:
            return (self.done - d0) / (now - t0)
        if self.done and now > self.start:
            # No advance within the window (a CPU model can spend minutes on one group
            # of long chunks): the stage's average still gives an honest ETA.
            return self.done / (now - self.start)
        return None


class _Subscription:
    def __init__(self, listener: Listener, interval: float, edges: bool) -> None:
        self.listener = listener
        self.interval = interval
        self.edges = edges
        self.last = float("-inf")
        self.failed = False


class Reporter:
    """Plain reporter: a log line when a stage starts and ends, and one per ``interval``
    while it runs (None: no progress lines, e.g. under a terminal's bars)."""

    def __init__(
        self,
        interval: float | None = DEFAULT_INTERVAL,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timings: dict[str, float] = {}
        self._clock = clock
        self._lock = threading.RLock()
        self._deliver = threading.Lock()
        self._stack: list[_Running] = []
        self._history: list[StageRecord] = []
        self._started_at: str | None = None
        self._finished = False
        self._subs: list[_Subscription] = []
        self._wake = threading.Event()
        self._ticker: threading.Thread | None = None
        if interval is not None:
            self.subscribe(log_line, interval, edges=False)

    # -- reading ---------------------------------------------------------

    def snapshot(self) -> Progress:
        """The build's state now; safe from any thread."""
        with self._lock:
            now = self._clock()
            run = self._stack[-1] if self._stack else None
            rate = run.rate(now) if run else None
            eta = None
            if run and run.total is not None and rate:
                eta = round(max(0, run.total - run.done) / rate, 1)
            return Progress(
                stage=run.name if run else None,
                done=run.done if run else 0,
                total=run.total if run else None,
                rate=round(rate, 2) if rate is not None else None,
                eta_seconds=eta,
                elapsed_seconds=round(now - run.start, 2) if run else 0.0,
                started_at=self._started_at,
                updated_at=_utcnow(),
                finished=self._finished,
                stages=tuple(self._history),
            )

    def subscribe(
        self, listener: Listener, interval: float = DEFAULT_INTERVAL, *, edges: bool = True
    ) -> None:
        """Call ``listener(snapshot)`` every ``interval`` seconds while a stage runs (even
        if nothing advanced), and, with ``edges``, at each stage start and end and once
        on :meth:`close` (a status sink wants those; a log already has its lines).

        A listener that raises is logged once and skipped from then on: reporting
        progress must never fail a build.
        """
        if interval <= 0:
            raise ValueError(f"progress interval must be > 0, got {interval}")
        with self._lock:
            self._subs.append(_Subscription(listener, interval, edges))
            if self._stack:
                self._start_ticker()

    # -- writing (the pipeline) -----------------------------------------

    @contextlib.contextmanager
    def stage(self, name: str, total: int | None = None) -> Iterator[Stage]:
        with self._lock:
            run = _Running(name, total, self._clock())
            self._stack.append(run)
            if self._started_at is None:
                self._started_at = _utcnow()
            PROGRESS_DONE.labels(stage=name).set(0)
            PROGRESS_ITEMS.labels(stage=name).set(total or 0)
            for sub in self._subs:
                sub.last = run.start  # the first tick comes one interval into the stage
            if self._subs:
                self._start_ticker()
            started = self.snapshot()
        logger.info(
            "stage %s: started%s",
            name,
            f" ({total} items)" if total else "",
            extra={"progress": started.line_fields()},
        )
        self._notify(force=True)
        try:
            yield _Handle(self, run)
        finally:
            with self._lock:
                ended = self.snapshot()
                elapsed = self._clock() - run.start
                self._stack.remove(run)
                self._history.append(StageRecord(name, run.done, run.total, round(elapsed, 3)))
                if run.total is None:
                    PROGRESS_ITEMS.labels(stage=name).set(run.done)
            self.timings[name] = self.timings.get(name, 0.0) + elapsed
            STAGE_SECONDS.labels(stage=name).observe(elapsed)
            logger.info(
                "stage %s: %d items in %.2f s",
                name,
                run.done,
                elapsed,
                extra={"progress": ended.line_fields()},
            )
            self._notify(force=True)

    def _advance(self, run: _Running, n: int) -> None:
        with self._lock:
            run.done += n
            now = self._clock()
            if now - run.samples[-1][0] >= 1.0:
                run.samples.append((now, run.done))
            PROGRESS_DONE.labels(stage=run.name).set(run.done)

    def summary(self, rows: dict[str, Any]) -> None:
        logger.info("summary: %s", ", ".join(f"{k}={v}" for k, v in rows.items()))

    def close(self) -> None:
        """The build is over: stop the ticker and tell every listener, once."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            ticker, self._ticker = self._ticker, None
        self._wake.set()
        if ticker is not None and ticker is not threading.current_thread():
            ticker.join(timeout=5)
        self._notify(force=True)

    # -- delivery --------------------------------------------------------

    def _notify(self, *, force: bool = False) -> None:
        """Deliver a snapshot to the subscriptions that are due (``force``: at an edge).

        Deliveries are serialised, so a listener sees snapshots in order and the
        end of a stage never arrives before a tick taken inside it.
        """
        with self._deliver:
            with self._lock:
                now = self._clock()
                if force:
                    for sub in self._subs:
                        sub.last = now
                    due = [s for s in self._subs if s.edges and not s.failed]
                else:
                    due = [s for s in self._subs if not s.failed and now - s.last >= s.interval]
                    for sub in due:
                        sub.last = now
            if not due:
                return
            snap = self.snapshot()
            for sub in due:
                try:
                    sub.listener(snap)
                except Exception:
                    sub.failed = True
                    logger.warning(
                        "progress listener %r failed; skipping it", sub.listener, exc_info=True
                    )

    def _start_ticker(self) -> None:
        if self._ticker is not None or self._finished:
            return
        self._ticker = threading.Thread(target=self._tick, name="progress-ticker", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        """Deliver due snapshots while a stage runs; exit when none does (restarted by the next)."""
        while True:
            with self._lock:
                if self._finished or not self._stack:
                    self._ticker = None
                    return
                now = self._clock()
                live = [s for s in self._subs if not s.failed]
                wait = min((s.last + s.interval - now for s in live), default=DEFAULT_INTERVAL)
            if wait > 0:
                self._wake.wait(min(wait, DEFAULT_INTERVAL))
            else:
                self._notify()


class _Handle:
    def __init__(self, reporter: Reporter, run: _Running) -> None:
        self._reporter = reporter
        self._run = run

    @property
    def done(self) -> int:
        return self._run.done

    def advance(self, n: int = 1) -> None:
        self._reporter._advance(self._run, n)


def log_line(p: Progress) -> None:
    """One progress line for logs: ``progress embed: 1200/35483 (3.4%) 41.2/s eta 13m52s``."""
    if p.stage is None:
        return
    logger.info("progress %s", format_line(p), extra={"progress": p.line_fields()})


def format_line(p: Progress) -> str:
    if p.total is None and not p.done:
        return f"{p.stage}: running, elapsed {durations.compact(p.elapsed_seconds)}"
    parts = [f"{p.stage}: {p.done}/{p.total}" if p.total is not None else f"{p.stage}: {p.done}"]
    if p.percent is not None:
        parts.append(f"({p.percent:.1f}%)")
    parts.append(f"{p.rate:.1f}/s" if p.rate is not None else "-/s")
    parts.append(
        f"eta {durations.compact(p.eta_seconds)}" if p.eta_seconds is not None else "eta ?"
    )
    parts.append(f"elapsed {durations.compact(p.elapsed_seconds)}")
    return " ".join(parts)


def _utcnow() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class RichReporter(Reporter):
    """Progress bars per stage and a summary table, for a person at a terminal."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(interval=None)
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
        with super().stage(name, total) as handle:
            bar = _RichStage(self.progress, task, handle)
            yield bar
        if self.progress.tasks[task].total is None:
            self.progress.update(task, total=max(bar.handle.done, 1))
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
        super().close()


class _RichStage:
    def __init__(self, progress: Any, task: Any, handle: Any) -> None:
        self.progress = progress
        self.task = task
        self.handle = handle

    def advance(self, n: int = 1) -> None:
        self.handle.advance(n)
        self.progress.advance(self.task, n)


def make_reporter(
    interactive: bool | None = None, interval: float | None = DEFAULT_INTERVAL
) -> Reporter:
    """Progress bars when stderr is a terminal (or ``interactive``); otherwise plain
    log lines, with a progress line every ``interval`` seconds inside a stage."""
    if interactive is None:
        interactive = sys.stderr.isatty()
    return RichReporter() if interactive else Reporter(interval)
