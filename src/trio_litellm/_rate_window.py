"""A sliding window: never more than ``limit`` units admitted in any ``period``-second window.

The hard bound under the throttle's ``rpm`` and ``tpm`` (and each model's): the proxy counts its
limits per window, so what we admit must fit in every window, not only on average. The pacing
under it is :class:`._bucket.TokenBucket`. Pure: no trio, no await, no IO; times are passed in.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["PERIOD", "RateWindow", "WindowEntry", "check_amount"]

PERIOD = 60.0
"""Seconds of the rpm and tpm windows: per minute."""


class WindowEntry:
    """One amount recorded in a :class:`RateWindow`: the handle :meth:`RateWindow.adjust` takes."""

    __slots__ = ("amount", "expires", "live", "time")

    def __init__(self, time: float, expires: float, amount: float) -> None:
        self.time = time
        self.expires = expires  # time + period, computed once so every comparison agrees
        self.amount = amount
        self.live = True  # False once dropped from the window: adjusting it does nothing

    def __repr__(self) -> str:
        return f"WindowEntry(time={self.time!r}, amount={self.amount!r}, live={self.live!r})"


class RateWindow:
    """Never more than ``limit`` units admitted in any ``period``-second window (a sliding log).

    Not a token bucket: a bucket of capacity R refilling at R per period starts full and refills
    while it is drained, so it admits up to 2R in some windows (R at once, then R more as it
    refills over the next period). A limit the proxy enforces per window must hold in every
    window, so this keeps the admitted amounts of the last ``period`` seconds and their sum.

    An entry recorded at ``t`` counts in every window ``[s, s + period)`` holding ``t``, and leaves
    at ``t + period``. An amount larger than ``limit`` fits only when nothing is counted in the
    window (zero amounts aside) and then stays alone in it: slow, but it never deadlocks. ``now`` must never decrease between calls.

    Cost: ``record``, ``adjust``, ``used`` and a ``wait`` that fits are O(1) amortised (each entry
    is appended once and dropped once). A ``wait`` that does not fit walks the oldest entries that
    must leave first; its answer is cached until the next ``record`` or ``adjust``, and the entries
    walked are the ones dropped before that amount is admitted, so the walk is paid for by their
    drops. Memory holds only the entries of the last ``period`` seconds.
    """

    __slots__ = ("_cache", "_entries", "_used", "_version", "limit", "period")

    def __init__(self, limit: float, period: float = PERIOD) -> None:
        if not (math.isfinite(limit) and limit > 0):
            raise ValueError(f"limit must be a positive number, not {limit!r}")
        if not (math.isfinite(period) and period > 0):
            raise ValueError(f"period must be a positive number of seconds, not {period!r}")
        self.limit = float(limit)
        self.period = float(period)
        self._entries: deque[WindowEntry] = deque()
        self._used = 0.0
        self._version = 0  # bumped by record and adjust: they invalidate the cached answer
        self._cache: tuple[float, int, float] | None = None  # (amount, version, ready_at)

    def wait(self, amount: float, now: float) -> float:
        """Seconds from ``now`` until ``amount`` more fits; 0.0 if it fits now."""
        return self.ready_at(amount, now) - now

    def ready_at(self, amount: float, now: float) -> float:
        """The earliest time, ``now`` or later, at which ``amount`` more fits."""
        check_amount(amount)
        self._expire(now)
        threshold = self._threshold(amount)
        if self._used <= threshold:
            return now
        cache = self._cache
        if (
            cache is not None
            and cache[0] == amount
            and cache[1] == self._version
            and cache[2] > now
        ):
            return cache[2]
        entries = self._entries
        ready = entries[-1].expires  # when the window is empty, anything fits
        remaining = self._used
        for entry in entries:  # the same subtractions, in the same order, as _expire will do
            remaining -= entry.amount
            if remaining <= threshold:
                ready = entry.expires
                break
        self._cache = (amount, self._version, ready)
        return ready

    def record(self, amount: float, now: float) -> WindowEntry:
        """Count ``amount`` as admitted at ``now`` (whether or not it fits: the caller decides)."""
        check_amount(amount)
        self._expire(now)
        entry = WindowEntry(now, now + self.period, amount)
        self._entries.append(entry)
        self._used += amount
        self._version += 1
        return entry

    def adjust(self, entry: WindowEntry, amount: float) -> None:
        """Replace a recorded amount (an estimate by the real count); no effect once it has left."""
        check_amount(amount)
        if entry.live:
            self._used += amount - entry.amount
            entry.amount = amount
            self._version += 1

    def used(self, now: float) -> float:
        """The units counted in the window ending at ``now``."""
        self._expire(now)
        return self._used

    def _threshold(self, amount: float) -> float:
        # What may already be used for ``amount`` to fit: an oversized amount needs an empty window.
        return self.limit - amount if amount <= self.limit else 0.0

    def _expire(self, now: float) -> None:
        # Dropping entries that left changes no answer (not even a cached one), so any task may
        # trigger it; it has no await, so nothing interleaves with it.
        entries = self._entries
        while entries and entries[0].expires <= now:
            entry = entries.popleft()
            entry.live = False
            self._used -= entry.amount
        if not entries:
            self._used = 0.0  # no float residue survives an empty window


def check_amount(amount: float) -> None:
    """Raise ValueError unless ``amount`` is a finite number >= 0."""
    if not (amount >= 0 and math.isfinite(amount)):
        raise ValueError(f"an amount must be a finite number >= 0, not {amount!r}")
