"""The fake provider's mutable state: counters, ``fail_first`` tallies, the rpm window. No IO.

Time is passed in (the server reads ``trio.current_time()``), so the window arithmetic can be
tested with plain numbers.
"""

from __future__ import annotations

import math
from collections import Counter, deque

import msgspec

from . import _wire as w


class Stats:
    """Counters served by ``GET /_stats``; ``reset()`` zeroes all but the live gauges."""

    def __init__(self) -> None:
        self.in_flight = 0
        """Requests being answered right now (a live gauge, never reset)."""
        self.open_connections = 0
        """Connections open right now (a live gauge, never reset)."""
        self.reset()

    def reset(self) -> None:
        """Start counting afresh."""
        self.requests = 0
        self.connections = 0
        self.by_path: Counter[str] = Counter()
        self.by_model: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()

    def snapshot(self) -> w.StatsSnapshot:
        """A copy that later requests will not change."""
        return w.StatsSnapshot(
            requests=self.requests,
            by_path=dict(self.by_path),
            by_model=dict(self.by_model),
            faults=dict(self.faults),
            in_flight=self.in_flight,
            connections=self.connections,
            open_connections=self.open_connections,
        )


class FailFirst:
    """How many requests each (model, tag text) pair has made, for ``fail_first=N``."""

    def __init__(self) -> None:
        self._seen: Counter[tuple[str, str]] = Counter()

    def should_fail(self, key: tuple[str, str], limit: int) -> bool:
        """Count one more request for ``key``; True while it is among the first ``limit``."""
        self._seen[key] += 1
        return self._seen[key] <= limit

    def reset(self) -> None:
        """Forget every pair."""
        self._seen.clear()


class RateDecision(msgspec.Struct, frozen=True, kw_only=True):
    """The answer of the rpm window to one request."""

    admitted: bool
    limit: int
    remaining: int
    """Requests still allowed in the current window, after this one."""
    reset_after: float
    """Seconds until the oldest request in the window leaves it and a slot frees."""

    @property
    def retry_after(self) -> int:
        """Whole seconds for ``Retry-After``: until a slot frees, at least 1."""
        return max(1, math.ceil(self.reset_after))

    def headers(self) -> list[tuple[str, str]]:
        """OpenAI's ``x-ratelimit-*-requests`` headers."""
        return [
            ("x-ratelimit-limit-requests", str(self.limit)),
            ("x-ratelimit-remaining-requests", str(self.remaining)),
            ("x-ratelimit-reset-requests", go_duration(self.reset_after)),
        ]


class RequestWindow:
    """A rolling window of request start times: at most ``limit`` starts in any ``period``.

    Refused requests are not recorded, so a client hammering the limit cannot extend it.
    """

    def __init__(self, limit: int, period: float = 60.0) -> None:
        self.limit = limit
        self.period = period
        self._starts: deque[float] = deque()

    def admit(self, now: float) -> RateDecision:
        """Record a request starting at ``now`` if the window has room."""
        starts = self._starts
        while starts and starts[0] <= now - self.period:
            starts.popleft()
        admitted = len(starts) < self.limit
        if admitted:
            starts.append(now)
        return RateDecision(
            admitted=admitted,
            limit=self.limit,
            remaining=self.limit - len(starts),
            reset_after=max(0.0, starts[0] + self.period - now),
        )

    def reset(self) -> None:
        """Empty the window."""
        self._starts.clear()


def go_duration(seconds: float) -> str:
    """Format a duration the way OpenAI's headers do (Go's ``time.Duration``), to the ms.

    ``0.012`` → ``12ms``, ``1`` → ``1s``, ``360`` → ``6m0s``, ``17.28`` → ``17.28s``.
    """
    ms = round(seconds * 1000)
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    if minutes:
        return f"{minutes}m{secs}"
    return secs
