"""Durations counted in log-spaced buckets: bounded memory, mergeable, approximate percentiles.

The usage ledger keeps two of these per (minute, model) bucket, and the Prometheus exposition turns
them into ``le`` buckets. No trio, no IO: durations are plain float seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

__all__ = ["MAX_RELATIVE_ERROR", "LatencyHistogram", "Percentiles"]

_GAMMA = 1.05
_LOWEST = 1e-4
_HIGHEST = 3600.0
_INV_LOWEST = 1.0 / _LOWEST
_INV_LOG_GAMMA = 1.0 / math.log(_GAMMA)
_MIDPOINT = 2.0 * _GAMMA / (1.0 + _GAMMA)
_FLOAT_MAX = 1.7976931348623157e308
_UNDERFLOW = -1
_OVERFLOW = 1 << 16
_log = math.log

MAX_RELATIVE_ERROR = (_GAMMA - 1.0) / (_GAMMA + 1.0)
"""The worst relative error of :meth:`LatencyHistogram.percentile` between 0.1 ms and 1 hour."""


class LatencyHistogram:
    """Durations counted in log-spaced buckets: bounded memory, mergeable, approximate percentiles.

    Bucket ``i`` counts durations in ``[0.1 ms * 1.05**i, 0.1 ms * 1.05**(i+1))`` up to 1 hour
    (about 360 buckets), plus one bucket below 0.1 ms and one from 1 hour up; only non-empty
    buckets are stored. A percentile is the nearest-rank value's bucket, reported at the point of
    least relative error and clamped to the exact minimum and maximum (the first and last ranks
    are exact), so it is within :data:`MAX_RELATIVE_ERROR` (2.44%, inside the 5% promised) of the
    exact nearest-rank value between 0.1 ms and 1 hour; below 0.1 ms it is off by less than
    0.1 ms, and from 1 hour up it is the maximum.
    """

    __slots__ = ("_count", "_counts", "_max", "_min", "_sum")

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self._count = 0
        self._sum = 0.0
        self._min = math.inf
        self._max = -1.0

    @property
    def count(self) -> int:
        """How many durations were added."""
        return self._count

    @property
    def sum(self) -> float:
        """The total of every duration added (exact, up to float rounding)."""
        return self._sum

    @property
    def max(self) -> float | None:
        """The largest duration added (exact), None when empty."""
        return self._max if self._count else None

    @property
    def min(self) -> float | None:
        """The smallest duration added (exact), None when empty."""
        return self._min if self._count else None

    @property
    def buckets(self) -> int:
        """How many buckets are non-empty (memory in use)."""
        return len(self._counts)

    def add(self, seconds: float) -> None:
        """Count one duration, in seconds: finite and >= 0, else ValueError."""
        if _LOWEST <= seconds < _HIGHEST:
            index = int(_log(seconds * _INV_LOWEST) * _INV_LOG_GAMMA)
        elif _HIGHEST <= seconds <= _FLOAT_MAX:
            index = _OVERFLOW
        elif 0.0 <= seconds < _LOWEST:
            index = _UNDERFLOW
        else:
            raise ValueError(f"a duration is a finite number of seconds >= 0, not {seconds!r}")
        counts = self._counts
        counts[index] = counts.get(index, 0) + 1
        self._count += 1
        self._sum += seconds
        if seconds > self._max:
            self._max = seconds
        if seconds < self._min:
            self._min = seconds

    def merge(self, other: LatencyHistogram) -> None:
        """Add every duration counted by ``other`` (the same as having added them here)."""
        counts = self._counts
        for index, count in other._counts.items():
            counts[index] = counts.get(index, 0) + count
        self._count += other._count
        self._sum += other._sum
        self._max = max(self._max, other._max)
        self._min = min(self._min, other._min)

    def percentile(self, p: float) -> float | None:
        """The ``p``-th percentile (0 <= p <= 100), nearest rank, approximate; None when empty.

        Nearest rank: the value at 1-based rank ``ceil(p * count / 100)`` of the sorted durations.
        """
        if not 0 <= p <= 100:
            raise ValueError(f"a percentile is between 0 and 100, not {p!r}")
        if not self._count:
            return None
        return self._value_at(p)

    def percentiles(self) -> Percentiles | None:
        """The median, 95th and 99th percentiles (as :meth:`percentile`) and the exact maximum;
        None when empty."""
        if not self._count:
            return None
        return Percentiles(
            p50=self._value_at(50), p95=self._value_at(95), p99=self._value_at(99), max=self._max
        )

    def count_at_or_below(self, bounds: Sequence[float]) -> list[int]:
        """For each bound (seconds, ascending), how many durations are at most it: what a
        Prometheus histogram's ``le`` buckets count.

        Exact for a bound below the minimum or from the maximum up; otherwise a bucket that
        straddles the bound counts below it when its estimate (as :meth:`percentile` reports it)
        does, so only durations within about 5% of a bound may be counted on the wrong side.
        """
        answer: list[int] = []
        ordered = sorted(self._counts.items())
        position = 0
        below = 0
        for bound in bounds:
            if not self._count or bound < self._min:
                answer.append(0)
                continue
            if bound >= self._max:
                answer.append(self._count)
                continue
            while position < len(ordered):
                index, count = ordered[position]
                if index == _UNDERFLOW:
                    estimate = self._min
                elif index == _OVERFLOW:
                    estimate = self._max
                else:
                    estimate = _LOWEST * _GAMMA**index * _MIDPOINT
                if estimate > bound:
                    break
                below += count
                position += 1
            answer.append(below)
        return answer

    def _value_at(self, p: float) -> float:
        """:meth:`percentile` of a non-empty histogram."""
        if float(p).is_integer():  # integer arithmetic: 0.95 * n in floats may land past an int
            rank = -(-int(p) * self._count // 100)
        else:
            rank = math.ceil(p * self._count / 100)
        if rank <= 1:
            return self._min
        if rank >= self._count:
            return self._max
        seen = 0
        for index in sorted(self._counts):
            seen += self._counts[index]
            if seen >= rank:
                break
        if index == _UNDERFLOW:
            return self._min
        if index == _OVERFLOW:
            return self._max
        estimate = _LOWEST * _GAMMA**index * _MIDPOINT
        return min(max(estimate, self._min), self._max)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyHistogram):
            return NotImplemented
        return (self._counts, self._count, self.min, self.max) == (
            other._counts,
            other._count,
            other.min,
            other.max,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable


class Percentiles(msgspec.Struct, frozen=True, kw_only=True):
    """Nearest-rank percentiles of a set of durations, in seconds. The ledger's come from
    :class:`LatencyHistogram` (approximate; ``max`` exact); the batch summary's are exact."""

    p50: float
    p95: float
    p99: float
    max: float
