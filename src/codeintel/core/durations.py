"""Durations as people read them in progress lines and status messages (``42s``, ``3m07s``,
``2h05m``): the indexer's progress log and the operator's ``status.progress`` say them alike."""

from __future__ import annotations


def compact(seconds: float, *, minute_seconds: bool = True) -> str:
    """``seconds`` rounded, in the largest two units; ``minute_seconds=False`` drops the
    seconds of a duration of minutes (``3m``), for text that changes only every poll."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s" if minute_seconds else f"{s // 60}m"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
