"""Our own limits, ``rpm`` and ``tpm`` (the client's, or one model's): each a sliding window as
the hard bound with a token bucket pacing under it.

The window (:class:`._rate_window.RateWindow`) guarantees never more than the limit in any 60 s;
the bucket (:class:`._bucket.TokenBucket`) spreads what the window allows across the minute, at
``limit / 60`` a second with a burst of :data:`._bucket.BURST_SECONDS` of refill. An amount is
admitted when both agree; it is recorded in both, and reconciling it corrects both.

Pure: no trio, no await, no IO; times are passed in.
"""

from __future__ import annotations

import math

from ._bucket import TokenBucket, burst_for
from ._rate_window import PERIOD, RateWindow, WindowEntry

__all__ = ["RateLimit", "RateLimits"]


class RateLimit:
    """At most ``limit`` units in any ``period`` seconds, paced at ``limit / period`` a second."""

    __slots__ = ("bucket", "limit", "window")

    def __init__(self, limit: int, period: float = PERIOD) -> None:
        self.limit = limit
        self.window = RateWindow(limit, period)
        self.bucket = TokenBucket(limit, period, burst_for(limit, period))

    def ready_at(self, amount: float, now: float) -> float:
        """The earliest time, ``now`` or later, at which both the window and the pace allow
        ``amount``."""
        return max(self.window.ready_at(amount, now), self.bucket.ready_at(amount, now))

    def record(self, amount: float, now: float) -> WindowEntry:
        """Count ``amount`` as admitted at ``now``; the entry is the handle :meth:`adjust` takes."""
        self.bucket.take(amount, now)
        return self.window.record(amount, now)

    def adjust(self, entry: WindowEntry, amount: float, now: float) -> None:
        """Replace a recorded amount by the real one, in the window and the bucket; no effect
        once the entry has left the window."""
        if entry.live:
            self.bucket.adjust(amount - entry.amount, now)
            self.window.adjust(entry, amount)

    def used(self, now: float) -> float:
        """The units counted in the window ending at ``now``."""
        return self.window.used(now)

    def room(self, used: float, now: float) -> int:
        """Whole units that could be admitted now: the window's room (``used`` of it taken), at
        most what the bucket holds."""
        level = math.floor(self.bucket.level(now) + 1e-9)  # no 0.999... for a refilled unit
        return max(min(self.limit - math.ceil(used), level), 0)


class RateLimits:
    """The ``rpm`` and ``tpm`` of the client or of one model; either may be None (no limit)."""

    __slots__ = ("requests", "tokens")

    def __init__(self, rpm: int | None, tpm: int | None) -> None:
        self.requests = RateLimit(rpm) if rpm is not None else None
        self.tokens = RateLimit(tpm) if tpm is not None else None

    def ready_at(self, tokens: int, now: float) -> float:
        """The earliest time, ``now`` or later, at which a request of ``tokens`` may start."""
        ready = now
        if self.requests is not None:
            ready = self.requests.ready_at(1, now)
        if self.tokens is not None:
            ready = max(ready, self.tokens.ready_at(tokens, now))
        return ready

    def record(self, tokens: int, now: float) -> WindowEntry | None:
        """Count a request of ``tokens`` as started at ``now``; its tpm entry (None without tpm)."""
        if self.requests is not None:
            self.requests.record(1, now)
        return self.tokens.record(tokens, now) if self.tokens is not None else None
