"""A token bucket: paces admissions at ``limit`` units per ``period``, with a small burst.

Why a bucket under the window: a :class:`._rate_window.RateWindow` of ``rpm`` lets ``rpm``
requests out at once and then none for the rest of the minute. That obeys the limit but hands the
proxy (and the provider behind it, which often enforces a per-minute limit as its per-second
share) a spike, then silence. The bucket spreads the same ``rpm`` across the minute; the window
stays the hard bound above it.

Pure: no trio, no await, no IO; times are passed in and must never decrease between calls.
"""

from __future__ import annotations

import math

from ._rate_window import check_amount

__all__ = ["BURST_SECONDS", "TokenBucket", "burst_for"]

BURST_SECONDS = 1.0
"""Seconds of refill a bucket holds when full: its burst is one second's share of the limit, at
least one unit (:func:`burst_for`). One second because providers that quantise a per-minute limit
do it per second (OpenAI documents 60,000 rpm enforced as 1,000 a second), so a burst of one
second's share is the largest that such a limit never refuses; and it is small enough that a
minute's requests are spread across the minute, not sent in its first seconds. At 6,000 rpm a
burst is 100 requests; at 60 rpm or less it is one, so requests start ``60 / rpm`` seconds
apart."""


_EPSILON = 1e-9
"""Seconds below which a wait is float rounding, not a wait."""


def burst_for(limit: float, period: float) -> float:
    """The burst of a bucket of ``limit`` units per ``period`` seconds: :data:`BURST_SECONDS`
    of refill, at least one unit."""
    return max(1.0, limit * BURST_SECONDS / period)


class TokenBucket:
    """Refills at ``limit / period`` units a second up to ``burst``; starts full.

    An amount is admitted once the level reaches it, and taking it lowers the level by it. An
    amount larger than ``burst`` waits for a full bucket and leaves the level below zero (a debt
    the refill pays back before anything else fits), so it is admitted, late, rather than never.
    Hence in any span of ``t`` seconds the admitted amounts sum to at most
    ``rate * t + max(burst, the largest of them)``.

    The state is one number, the time at which the bucket is (or was last) full: the level at
    ``now`` is ``burst - (full_at - now) * rate``, never above ``burst``. Keeping a time rather
    than a level means nothing is added up per call: a wait computed once is exact when it ends.
    """

    __slots__ = ("_full_at", "_unit", "burst", "limit", "period")

    def __init__(self, limit: float, period: float, burst: float) -> None:
        for name, value in (("limit", limit), ("period", period), ("burst", burst)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, not {value!r}")
        self.limit = float(limit)
        self.period = float(period)
        self.burst = float(burst)
        self._unit = self.period / self.limit  # seconds of refill one unit takes
        self._full_at = -math.inf

    @property
    def rate(self) -> float:
        """Units refilled per second."""
        return self.limit / self.period

    def level(self, now: float) -> float:
        """Units in the bucket at ``now``: at most ``burst``; below zero while in debt."""
        if self._full_at <= now:
            return self.burst
        return self.burst - (self._full_at - now) / self._unit

    def ready_at(self, amount: float, now: float) -> float:
        """The earliest time, ``now`` or later, at which ``amount`` may be taken."""
        check_amount(amount)
        room = self.burst - min(amount, self.burst)  # how far from full the level may be
        ready = self._full_at - room * self._unit
        # A level equal to the amount but for float rounding (1e-9 s of refill) is ready now.
        return now if ready <= now + _EPSILON else ready

    def wait(self, amount: float, now: float) -> float:
        """Seconds from ``now`` until ``amount`` may be taken; 0.0 if it may be now."""
        return self.ready_at(amount, now) - now

    def take(self, amount: float, now: float) -> None:
        """Take ``amount`` at ``now`` (whether or not it is ready: the caller decides)."""
        check_amount(amount)
        self._full_at = max(self._full_at, now) + amount * self._unit

    def adjust(self, delta: float, now: float) -> None:
        """Take ``delta`` more (an estimate found too low), or give ``-delta`` back (too high).

        What is given back never lifts the level above ``burst``: units whose refill time has
        already passed are not returned twice.
        """
        if not math.isfinite(delta):
            raise ValueError(f"delta must be a finite number, not {delta!r}")
        if delta >= 0:
            self._full_at = max(self._full_at, now) + delta * self._unit
        else:
            self._full_at += delta * self._unit
