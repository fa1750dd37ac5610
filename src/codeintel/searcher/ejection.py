"""Which shard replicas the router leaves out after a timeout, and for how long.

Without it a hung shard (a stopped process, a wedged node) costs every query
the full ``shard_timeout_seconds`` before the router answers ``partial``: three
queries in a row took 10.02 s each in the drill of issue 22. Outlier ejection
in the manner of Envoy's: a replica that timed out is *ejected* for a back-off
period; while it is out, queries skip it (going to another replica of the same
shard where one exists, else answering ``partial`` at once); a background probe
(``GET /healthz``, short timeout) takes it back as soon as it answers. Each
ejection doubles the back-off, up to :data:`MAX_BACKOFF_SECONDS`; a replica that
answers a query or a probe starts again from :data:`BASE_BACKOFF_SECONDS`.
"""

from __future__ import annotations

import dataclasses
import time

BASE_BACKOFF_SECONDS = 2.0
"""How long a replica stays out after its first timeout before it is probed."""

MAX_BACKOFF_SECONDS = 30.0
"""The longest back-off: a replica still hung is probed at least this often."""


@dataclasses.dataclass
class _Out:
    until: float
    backoff: float


class Ejections:
    """Ejected replica URLs and their back-off; single event loop, so no lock."""

    def __init__(self, base: float = BASE_BACKOFF_SECONDS, cap: float = MAX_BACKOFF_SECONDS):
        self._base = base
        self._cap = cap
        self._out: dict[str, _Out] = {}

    def is_out(self, url: str) -> bool:
        return url in self._out

    def eject(self, url: str) -> float | None:
        """Leave ``url`` out after a query timed out: the back-off in seconds, or None when
        it is out already (several queries in flight time out together: one ejection)."""
        if url in self._out:
            return None
        self._out[url] = _Out(time.monotonic() + self._base, self._base)
        return self._base

    def probe_failed(self, url: str) -> float:
        """Keep ``url`` out for twice as long as last time (up to the cap)."""
        previous = self._out.get(url)
        backoff = min(self._cap, previous.backoff * 2) if previous else self._base
        self._out[url] = _Out(time.monotonic() + backoff, backoff)
        return backoff

    def restore(self, url: str) -> bool:
        """Take ``url`` back; True if it was out."""
        return self._out.pop(url, None) is not None

    def due(self) -> list[str]:
        """Ejected replicas whose back-off has passed: the ones to probe now."""
        now = time.monotonic()
        return [url for url, out in self._out.items() if out.until <= now]

    def ejected(self) -> list[str]:
        return sorted(self._out)
