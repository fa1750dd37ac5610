"""The one duration format the indexer's progress lines and the operator's status share."""

from __future__ import annotations

import pytest

from codeintel.core import durations


@pytest.mark.parametrize(
    ("seconds", "precise", "coarse"),
    [
        (0.4, "0s", "0s"),
        (59.4, "59s", "59s"),
        (59.6, "1m00s", "1m"),
        (187, "3m07s", "3m"),
        (3599, "59m59s", "59m"),
        (3600, "1h00m", "1h00m"),
        (7530, "2h05m", "2h05m"),
    ],
)
def test_compact_keeps_two_units_and_drops_seconds_of_minutes_when_asked(
    seconds: float, precise: str, coarse: str
) -> None:
    assert durations.compact(seconds) == precise
    assert durations.compact(seconds, minute_seconds=False) == coarse
