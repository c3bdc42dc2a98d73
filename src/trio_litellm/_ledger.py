"""The usage ledger: request records folded into bounded buckets, sans-IO.

``UsageLedger.add`` runs for every request, for days, so the ledger keeps no list of records: it
folds each one into a bucket keyed by (``bucket_seconds`` window of its wall-clock start time,
requested model) that holds counters and two :class:`LatencyHistogram` (a few hundred log-spaced
counters at most). Buckets that fall out of ``retention`` are merged into one running total per
model (for :meth:`UsageLedger.lifetime`, what monotonic counters need) and dropped as time moves
on, and distinct models are capped, so memory is bounded by
``(retention / bucket_seconds + 2) * (max_models + 1)`` buckets whatever the request rate.
:meth:`UsageLedger.usage` merges the buckets of a window into a :class:`UsageStats`.

No trio, no IO: times are plain floats (``time.time()`` seconds) passed in by the caller.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta
from heapq import heappop, heappush

from ._histogram import LatencyHistogram
from ._usage import (
    OTHER_MODELS,
    LedgerStatistics,
    ModelUsage,
    RequestRecord,
    UsageStats,
    UsageTotals,
)

__all__ = ["UsageLedger"]


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
            latency=self.latency.percentiles(),
            ttft=self.ttft.percentiles() if self.ttft is not None else None,
        )

    def totals(self) -> UsageTotals:
        """The bucket's figures; its histograms go with them, so only for a bucket made to be
        handed out (as :meth:`UsageLedger.lifetime` merges into fresh ones)."""
        return UsageTotals(
            requests=self.requests,
            succeeded=self.succeeded,
            errors=dict(sorted(self.errors.items())),
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost=self.cost,
            uncosted=self.cost_missing,
            retries=self.retries,
            latency=self.latency,
            ttft=self.ttft,
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

    def lifetime(self) -> dict[str, UsageTotals]:
        """Per requested model, everything counted since the ledger was made, sorted by model:
        the retained buckets and the running totals of the expired ones, merged
        (O(slots x models)). Never decreases, so it can feed monotonic counters (Prometheus)."""
        totals: dict[str, _Bucket] = {}
        for models in (self._retired, *self._slots.values()):
            for name, bucket in models.items():
                total = totals.get(name)
                if total is None:
                    total = totals[name] = _Bucket()
                total.merge(bucket)
        return {name: totals[name].totals() for name in sorted(totals)}

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
