"""The progress reporter: snapshots, listeners and their throttling, across threads."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import REGISTRY, generate_latest

from codeintel.core.settings import Settings
from codeintel.indexer import pipeline, progress


def test_snapshot_follows_stages_and_keeps_history() -> None:
    reporter = progress.Reporter(interval=None)
    assert reporter.snapshot().stage is None
    with reporter.stage("embed", total=40) as stage:
        stage.advance(10)
        snap = reporter.snapshot()
        assert (snap.stage, snap.done, snap.total, snap.percent) == ("embed", 10, 40, 25.0)
        assert snap.started_at is not None
        assert not snap.finished
    after = reporter.snapshot()
    assert after.stage is None
    assert [(s.name, s.done, s.total) for s in after.stages] == [("embed", 10, 40)]
    reporter.close()
    assert reporter.snapshot().finished


def test_rate_and_eta_come_from_recent_advances() -> None:
    now = [100.0]
    reporter = progress.Reporter(interval=None, clock=lambda: now[0])
    with reporter.stage("embed", total=1000) as stage:
        assert reporter.snapshot().rate is None  # nothing done yet: no rate, no ETA
        for _ in range(5):
            now[0] += 2.0
            stage.advance(40)
        snap = reporter.snapshot()
    assert snap.rate == pytest.approx(20.0)
    assert snap.eta_seconds == pytest.approx((1000 - 200) / 20.0)


def test_a_long_silence_falls_back_to_the_stage_average() -> None:
    now = [0.0]
    reporter = progress.Reporter(interval=None, clock=lambda: now[0])
    with reporter.stage("embed", total=2048) as stage:
        now[0] = 100.0
        stage.advance(512)  # one group of long chunks took 100 s
        now[0] = 250.0  # the next group has been running for 150 s
        snap = reporter.snapshot()
    assert snap.rate == pytest.approx(512 / 250.0, abs=0.01)
    assert snap.eta_seconds == pytest.approx((2048 - 512) / (512 / 250.0), rel=0.01)


def test_snapshot_is_consistent_while_another_thread_advances() -> None:
    reporter = progress.Reporter(interval=None)
    seen: list[progress.Progress] = []
    with reporter.stage("chunk", total=20_000) as stage:
        worker = threading.Thread(target=lambda: [stage.advance() for _ in range(20_000)])
        worker.start()
        while worker.is_alive():
            seen.append(reporter.snapshot())
        worker.join()
        assert reporter.snapshot().done == 20_000
    dones = [s.done for s in seen]
    assert dones == sorted(dones)
    assert all(0 <= d <= 20_000 for d in dones)


def test_listener_gets_edges_and_ticks_even_without_advances() -> None:
    reporter = progress.Reporter(interval=None)
    got: list[progress.Progress] = []
    reporter.subscribe(got.append, interval=0.1)
    with reporter.stage("train", total=10) as stage:
        time.sleep(0.55)  # one long blocking call, as FAISS training is
        stage.advance(10)
    reporter.close()
    assert got[0].stage == "train" and got[0].done == 0  # start edge
    ticks = [g for g in got[1:] if g.stage == "train"]
    assert 3 <= len(ticks) <= 7, len(ticks)
    assert got[-2].stage is None and not got[-2].finished  # end of stage
    assert got[-1].finished  # close


def test_a_failing_listener_is_logged_once_and_never_fails_the_build(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reporter = progress.Reporter(interval=None)
    calls = []

    def broken(p: progress.Progress) -> None:
        calls.append(p)
        raise RuntimeError("api server down")

    reporter.subscribe(broken, interval=0.05)
    with reporter.stage("embed", total=3) as stage:
        time.sleep(0.2)
        stage.advance(3)
    reporter.close()
    assert len(calls) == 1
    assert [r.message for r in caplog.records].count(
        f"progress listener {broken!r} failed; skipping it"
    ) == 1


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval"):
        progress.Reporter(interval=None).subscribe(lambda p: None, interval=0)


def test_ticker_thread_ends_with_the_stage() -> None:
    reporter = progress.Reporter(interval=0.05)
    with reporter.stage("embed", total=1) as stage:
        stage.advance()
        ticker = reporter._ticker
        assert ticker is not None and ticker.is_alive()
    ticker.join(timeout=2)
    assert not ticker.is_alive(), "ticker outlived its stage"


def _gauge(name: str, stage: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"stage": stage})


@pytest.mark.slow
def test_gauges_follow_a_real_build(sample_repo, local_embedder, tmp_path) -> None:
    """``codeintel_indexer_progress_done`` / ``…_items`` as Prometheus sees them, mid-build and after."""
    settings = Settings().replace(store={"path": tmp_path / "store"}, index={"history": False})
    reporter = progress.Reporter(interval=None)
    seen: list[tuple[progress.Progress, float | None, float | None]] = []

    def read_gauges(p: progress.Progress) -> None:
        if p.stage is not None:
            done = _gauge("codeintel_indexer_progress_done", p.stage)
            items = _gauge("codeintel_indexer_progress_items", p.stage)
            seen.append((p, done, items))

    reporter.subscribe(read_gauges, interval=0.01)
    result = pipeline.build(settings, str(sample_repo.path), local_embedder, reporter=reporter)
    reporter.close()

    embed_seen = [(p, done, items) for p, done, items in seen if p.stage == "embed"]
    assert embed_seen[0][1] == 0 and embed_seen[0][2] == result.chunks  # at the start edge
    for p, done, items in seen:
        assert items == (p.total or 0)
        assert done is not None and done >= p.done  # the gauge is set as the stage advances
    assert _gauge("codeintel_indexer_progress_done", "embed") == result.chunks
    assert _gauge("codeintel_indexer_progress_items", "embed") == result.chunks
    for record in reporter.snapshot().stages:
        assert _gauge("codeintel_indexer_progress_done", record.name) == record.done
    exposition = generate_latest(REGISTRY).decode()
    assert f'codeintel_indexer_progress_done{{stage="embed"}} {float(result.chunks)}' in exposition


def test_a_terminal_gets_bars_and_no_progress_lines(caplog: pytest.LogCaptureFixture) -> None:
    import io

    caplog.set_level("INFO", logger="codeintel.indexer.progress")
    screen = io.StringIO()
    reporter = progress.make_reporter(interactive=True, interval=0.05)
    assert isinstance(reporter, progress.RichReporter)
    reporter.console.file = screen
    with reporter.stage("embed", total=4) as stage:
        time.sleep(0.3)
        stage.advance(4)
        assert reporter.snapshot().done == 4
    reporter.close()
    assert not [r for r in caplog.records if r.getMessage().startswith("progress ")]
    assert "embed" in screen.getvalue()
