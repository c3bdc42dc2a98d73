"""One record per request, and a ledger that answers "what happened between then and now", sans-IO.

The client builds a :class:`RequestRecord` when a request ends and hands it to
:meth:`UsageLedger.add`. ``add`` runs for every request, for days, so the ledger keeps no list of
records: it folds each one into a bucket keyed by (``bucket_seconds`` window of its wall-clock start
time, requested model) that holds counters and two :class:`LatencyHistogram` (a few hundred
log-spaced counters at most). Buckets that fall out of ``retention`` are merged into one running
total per model (for :meth:`UsageLedger.lifetime`, what monotonic counters need) and dropped as
time moves on, and distinct models are capped, so memory is bounded by
``(retention / bucket_seconds + 2) * (max_models + 1)`` buckets whatever the request rate.
:meth:`UsageLedger.usage` merges the buckets of a window into a :class:`UsageStats`.

No trio, no IO: times are plain floats (``time.time()`` seconds) passed in by the caller.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from heapq import heappop, heappush
from typing import Literal

import msgspec

__all__ = [
    "OTHER_MODELS",
    "CostSource",
    "LatencyHistogram",
    "LedgerStatistics",
    "ModelUsage",
    "Percentiles",
    "RequestRecord",
    "UsageLedger",
    "UsageStats",
    "cost_of",
]

CostSource = Literal["header", "usage", "price"]
"""Where a request's cost came from: ``x-litellm-response-cost``, ``usage.cost``, or prices."""

OTHER_MODELS = "(other)"
"""The name under which models beyond ``UsageLedger(max_models=...)`` are counted."""


class RequestRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What one request did, start to end.

    ``model`` is the model the caller asked for, ``served_model`` the proxy's
    ``x-litellm-model-group`` and ``deployment_id`` its ``x-litellm-model-id``. ``started_at`` is
    wall-clock (``time.time()``) seconds; ``latency`` and ``ttft`` (streams only) are seconds.
    ``outcome`` is ``"ok"`` or the error class name (``"RateLimitError"``); ``attempts`` counts
    the client's tries (0: the request never left the client).
    """

    kind: Literal["chat", "embedding"]
    model: str
    served_model: str | None
    deployment_id: str | None
    call_id: str | None
    started_at: float
    latency: float
    ttft: float | None
    stream: bool
    attempts: int
    outcome: str
    status: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: float | None
    cost_source: CostSource | None
    overhead_ms: float | None


def cost_of(
    meta_cost: float | None,
    usage_cost: float | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    prices: tuple[float | None, float | None] | None,
) -> tuple[float | None, CostSource | None]:
    """A request's cost and where it came from, or ``(None, None)`` when it cannot be known.

    The proxy's header cost first, else the body's ``usage.cost``, else the token counts times the
    model's (input, output) per-token prices from ``/model/info``. Pricing needs both token counts;
    a side with 0 tokens needs no price (an embedding model without an output price is priced).
    """
    if meta_cost is not None:
        return meta_cost, "header"
    if usage_cost is not None:
        return usage_cost, "usage"
    if prices is None or prompt_tokens is None or completion_tokens is None:
        return None, None
    input_price, output_price = prices
    if (input_price is None and prompt_tokens) or (output_price is None and completion_tokens):
        return None, None
    cost = 0.0
    if prompt_tokens:
        assert input_price is not None
        cost += prompt_tokens * input_price
    if completion_tokens:
        assert output_price is not None
        cost += completion_tokens * output_price
    return cost, "price"


# --- latency histogram ------------------------------------------------------------------------

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


# --- the answer -------------------------------------------------------------------------------


class Percentiles(msgspec.Struct, frozen=True, kw_only=True):
    """Nearest-rank percentiles of a set of durations, in seconds. The ledger's come from
    :class:`LatencyHistogram` (approximate; ``max`` exact); the batch summary's are exact."""

    p50: float
    p95: float
    p99: float
    max: float


class ModelUsage(msgspec.Struct, frozen=True, kw_only=True):
    """The figures of some requests: :class:`UsageStats` explains each one."""

    requests: int
    succeeded: int
    errors: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    cost_complete: bool
    retries: int
    latency: Percentiles | None
    ttft: Percentiles | None


class UsageStats(ModelUsage, frozen=True, kw_only=True):
    """What the client's requests did in a window, in total and per requested model.

    ``since``/``until`` are the window the figures cover: whole buckets, so they may start earlier
    and end later than the window asked for. ``errors`` counts failed requests by outcome (error
    class name); ``requests == succeeded + sum(errors.values())``. ``cost`` is None when no request
    had a known cost, else the sum of the known ones; ``cost_complete`` says whether every
    successful request had one (False when ``cost`` is None). ``retries`` counts extra attempts.
    ``latency`` covers requests that left the client, ``ttft`` streams; None when there are none.
    Models beyond the ledger's ``max_models`` are counted under :data:`OTHER_MODELS`.
    """

    since: float
    until: float
    per_model: dict[str, ModelUsage]


class LedgerStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a ledger's memory: buckets held, time slots, live models, records dropped
    for starting before the retention horizon."""

    memory_buckets: int
    slots: int
    models: int
    dropped_records: int


# --- the ledger -------------------------------------------------------------------------------


class _Bucket:
    """The counters of one (time slot, model): ``add`` is the hot path."""

    __slots__ = (
        "completion_tokens",
        "cost",
        "cost_known",
        "cost_missing",
        "errors",
        "latency",
        "prompt_tokens",
        "requests",
        "retries",
        "succeeded",
        "ttft",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.succeeded = 0
        self.errors: dict[str, int] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost = 0.0
        self.cost_known = 0
        self.cost_missing = 0
        """Successful requests without a known cost."""
        self.retries = 0
        self.latency = LatencyHistogram()
        self.ttft: LatencyHistogram | None = None

    def add(self, record: RequestRecord) -> None:
        self.requests += 1
        ok = record.outcome == "ok"
        if ok:
            self.succeeded += 1
        else:
            errors = self.errors
            errors[record.outcome] = errors.get(record.outcome, 0) + 1
        if record.prompt_tokens:
            self.prompt_tokens += record.prompt_tokens
        if record.completion_tokens:
            self.completion_tokens += record.completion_tokens
        if record.cost is not None:
            self.cost += record.cost
            self.cost_known += 1
        elif ok:
            self.cost_missing += 1
        attempts = record.attempts
        if attempts > 0:
            self.latency.add(record.latency)
            if attempts > 1:
                self.retries += attempts - 1
        if record.ttft is not None:
            if self.ttft is None:
                self.ttft = LatencyHistogram()
            self.ttft.add(record.ttft)

    def merge(self, other: _Bucket) -> None:
        self.requests += other.requests
        self.succeeded += other.succeeded
        for outcome, count in other.errors.items():
            self.errors[outcome] = self.errors.get(outcome, 0) + count
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost += other.cost
        self.cost_known += other.cost_known
        self.cost_missing += other.cost_missing
        self.retries += other.retries
        self.latency.merge(other.latency)
        if other.ttft is not None:
            if self.ttft is None:
                self.ttft = LatencyHistogram()
            self.ttft.merge(other.ttft)

    def usage(self) -> ModelUsage:
        cost = self.cost if self.cost_known else None
        return ModelUsage(
            requests=self.requests,
            succeeded=self.succeeded,
            errors=dict(sorted(self.errors.items())),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost=cost,
            cost_complete=cost is not None and self.cost_missing == 0,
            retries=self.retries,
            latency=_percentiles(self.latency),
            ttft=_percentiles(self.ttft),
        )


def _percentiles(histogram: LatencyHistogram | None) -> Percentiles | None:
    if histogram is None or not histogram.count:
        return None
    return Percentiles(
        p50=histogram._value_at(50),
        p95=histogram._value_at(95),
        p99=histogram._value_at(99),
        max=histogram._max,
    )


def _timestamp(value: float | datetime | timedelta, now: float) -> float:
    """Epoch seconds of a window bound: a timedelta is "that long before ``now``"."""
    if isinstance(value, timedelta):
        return now - value.total_seconds()
    if isinstance(value, datetime):
        return value.timestamp()  # a naive datetime is local time, as datetime.timestamp() says
    return float(value)


_NEVER = -(1 << 62)


class UsageLedger:
    """Request records folded into (time slot, model) buckets, kept for ``retention`` seconds.

    Slot ``i`` holds the records that started in ``[i * bucket_seconds, (i + 1) * bucket_seconds)``.
    Retention follows the newest record seen, not a clock: the newest slot and the
    ``ceil(retention / bucket_seconds)`` slots before it are kept; older slots are dropped when a
    newer record arrives, and a record older than that is dropped on ``add`` (counted in
    :meth:`statistics`). A wall clock stepping forward by more than ``retention`` therefore drops
    everything before the step. Models are the requested ones; once ``max_models`` distinct models
    are held, further ones are counted under :data:`OTHER_MODELS` until buckets expire.
    """

    __slots__ = (
        "_dropped",
        "_keep_from",
        "_live",
        "_max_models",
        "_newest",
        "_retention_slots",
        "_retired",
        "_slot_heap",
        "_slots",
        "_width",
    )

    def __init__(
        self,
        *,
        bucket_seconds: float = 60.0,
        retention: float = 7 * 86400.0,
        max_models: int = 1000,
    ) -> None:
        if not 0 < bucket_seconds < math.inf:
            raise ValueError(f"bucket_seconds must be > 0 and finite, not {bucket_seconds!r}")
        if not 0 < retention < math.inf:
            raise ValueError(f"retention must be > 0 and finite, not {retention!r}")
        if max_models < 1:
            raise ValueError(f"max_models must be >= 1, not {max_models!r}")
        self._width = float(bucket_seconds)
        self._retention_slots = math.ceil(retention / bucket_seconds)
        self._max_models = max_models
        self._slots: dict[int, dict[str, _Bucket]] = {}
        self._slot_heap: list[int] = []  # the keys of _slots, oldest first to drop
        self._live: dict[str, int] = {}  # model -> how many slots hold a bucket for it
        self._retired: dict[str, _Bucket] = {}  # model -> every expired bucket, merged
        self._newest = _NEVER
        self._keep_from = _NEVER
        self._dropped = 0

    def add(self, record: RequestRecord) -> None:
        """Count one finished request: O(1), amortised over the buckets it makes expire."""
        slot = int(record.started_at // self._width)
        if slot > self._newest:
            self._advance(slot)
        elif slot < self._keep_from:
            self._dropped += 1
            return
        models = self._slots.get(slot)
        if models is None:
            models = self._slots[slot] = {}
            heappush(self._slot_heap, slot)
        bucket = models.get(record.model)
        if bucket is None:
            bucket = self._new_bucket(models, record.model)
        bucket.add(record)

    def _advance(self, slot: int) -> None:
        self._newest = slot
        keep_from = self._keep_from = slot - self._retention_slots
        heap = self._slot_heap
        while heap and heap[0] < keep_from:
            for model, bucket in self._slots.pop(heappop(heap)).items():
                self._retire(model, bucket)
                remaining = self._live[model] - 1
                if remaining:
                    self._live[model] = remaining
                else:
                    del self._live[model]

    def _retire(self, model: str, bucket: _Bucket) -> None:
        """Fold an expiring bucket into its model's running total (at most once a slot)."""
        retired = self._retired
        total = retired.get(model)
        if total is None:
            if len(retired) - (OTHER_MODELS in retired) >= self._max_models:
                model = OTHER_MODELS
                total = retired.get(model)
            if total is None:
                total = retired[model] = _Bucket()
        total.merge(bucket)

    def lifetime(self) -> dict[str, _Bucket]:
        """Per requested model, everything counted since the ledger was made, sorted by model:
        the retained buckets and the running totals of the expired ones, merged (fresh buckets,
        O(slots x models)). Never decreases, so it can feed monotonic counters (Prometheus)."""
        totals: dict[str, _Bucket] = {}
        for models in (self._retired, *self._slots.values()):
            for name, bucket in models.items():
                total = totals.get(name)
                if total is None:
                    total = totals[name] = _Bucket()
                total.merge(bucket)
        return {name: totals[name] for name in sorted(totals)}

    def _new_bucket(self, models: dict[str, _Bucket], model: str) -> _Bucket:
        live = self._live
        if model not in live and len(live) - (OTHER_MODELS in live) >= self._max_models:
            model = OTHER_MODELS
            bucket = models.get(model)
            if bucket is not None:
                return bucket
        bucket = models[model] = _Bucket()
        live[model] = live.get(model, 0) + 1
        return bucket

    def usage(
        self,
        *,
        since: float | datetime | timedelta | None = None,
        until: float | datetime | None = None,
        model: str | None = None,
        now: float | None = None,
    ) -> UsageStats:
        """The figures of the requests that started in a window, in total and per model.

        ``since``/``until`` are epoch seconds or datetimes (aware, or naive meaning local time);
        ``since`` may be a timedelta meaning "the last ...", counted back from ``now`` (default
        ``time.time()``). None is unbounded: everything retained. The answer covers every bucket
        that overlaps ``[since, until)`` and reports that window in ``since``/``until``, clipped
        to what retention still holds. ``model`` keeps one requested model (or
        :data:`OTHER_MODELS`).
        """
        if now is None:
            now = time.time()
        start = None if since is None else _timestamp(since, now)
        end = None if until is None else _timestamp(until, now)
        if start is not None and end is not None and end < start:
            raise ValueError(f"the window ends ({end}) before it starts ({start})")
        width = self._width
        if end is not None:
            last = math.ceil(end / width) - 1
        elif self._slots:
            last = self._newest
        else:
            last = math.floor(now / width)
        if start is not None:
            first = math.floor(start / width)
        elif self._slot_heap:
            first = self._slot_heap[0]
        else:
            first = last + 1
        first = max(first, self._keep_from)

        total = _Bucket()
        per_model: dict[str, _Bucket] = {}
        for slot, models in self._slots.items():
            if not first <= slot <= last:
                continue
            for name, bucket in models.items():
                if model is not None and name != model:
                    continue
                mine = per_model.get(name)
                if mine is None:
                    mine = per_model[name] = _Bucket()
                mine.merge(bucket)
                total.merge(bucket)
        figures = total.usage()
        return UsageStats(
            since=first * width,
            until=max(last + 1, first) * width,
            requests=figures.requests,
            succeeded=figures.succeeded,
            errors=figures.errors,
            prompt_tokens=figures.prompt_tokens,
            completion_tokens=figures.completion_tokens,
            cost=figures.cost,
            cost_complete=figures.cost_complete,
            retries=figures.retries,
            latency=figures.latency,
            ttft=figures.ttft,
            per_model={name: per_model[name].usage() for name in sorted(per_model)},
        )

    def statistics(self) -> LedgerStatistics:
        """How much the ledger holds (O(slots))."""
        return LedgerStatistics(
            memory_buckets=sum(len(models) for models in self._slots.values()),
            slots=len(self._slots),
            models=len(self._live),
            dropped_records=self._dropped,
        )
