"""What ``serve PATH`` reports while its first build runs (``indexer/serving.progress_of``)."""

from __future__ import annotations

from codeintel.indexer import progress, serving


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_phase_and_eta_follow_the_stages() -> None:
    clock = Clock()
    reporter = progress.Reporter(interval=None, clock=clock)
    read = serving.progress_of(reporter)
    assert read()["phase"] == "starting"
    with reporter.stage("embed", total=1000) as stage:
        clock.now += 10
        stage.advance(100)
        clock.now += 10
        now = read()
        assert (now["phase"], now["done"], now["total"]) == ("embed", 100, 1000)
        assert now["rate"] == 5.0 and now["eta_seconds"] == 180.0
        # A CPU model may take minutes per group of long chunks: nothing advances within the
        # reporter's rate window, and the stage's average still gives a rate and an ETA.
        clock.now += progress.RATE_WINDOW + 80
        slow = read()
        assert slow["rate"] == round(100 / (20 + progress.RATE_WINDOW + 80), 2)
        # The ETA comes from the unrounded stage average: 900 left at 100 per 160 s.
        assert slow["eta_seconds"] == round(900 * (20 + progress.RATE_WINDOW + 80) / 100, 1)
    # Between stages: the last stage is the phase.
    assert read()["phase"] == "embed"
