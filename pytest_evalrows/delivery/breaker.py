"""The circuit breaker of a delivery: once the store is known down, stop paying for retries."""

from __future__ import annotations

from collections.abc import Callable

# While the store is down, how often the writer tries it again with what the spool holds.
PROBE_SECONDS = 2.0


class Breaker:
    """Open from the first failure (after the store's own retries) until a write succeeds;
    while open, the store is probed at most every ``PROBE_SECONDS``."""

    def __init__(self, clock: Callable[[], float], probe_seconds: float = PROBE_SECONDS) -> None:
        self._clock = clock
        self._probe_seconds = probe_seconds
        self._down_since: float | None = None
        self._last_probe = 0.0

    @property
    def open(self) -> bool:
        return self._down_since is not None

    def trip(self) -> None:
        now = self._clock()
        if self._down_since is None:
            self._down_since = now
        self._last_probe = now

    def close(self) -> None:
        self._down_since = None

    def probe_due(self) -> bool:
        return self._clock() - self._last_probe >= self._probe_seconds

    def probing(self) -> None:
        self._last_probe = self._clock()
