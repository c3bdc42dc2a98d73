"""What a batch run did: counters kept per result, percentiles and rates computed once at the end.

:meth:`SummaryBuilder.add` runs once per finished request, up to millions of times, so it only
bumps counters and appends latencies to ``array('d')`` buffers (8 bytes a value, no float
objects kept). Sorting and percentiles happen in :meth:`SummaryBuilder.summary`, once. No trio and
no IO here, except :func:`write_summary_json` writing the summary file.

Percentiles use the nearest-rank method: the p-th percentile of ``n`` sorted values is the value
at 1-based rank ``ceil(p * n / 100)``, the smallest value with at least p% of the values at or
below it. It is always one of the observed values (no interpolation), so a p99 of a small run is
a latency that some request really had.
"""

from __future__ import annotations

import os
from array import array
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import msgspec

from .._files import write_atomically
from .._histogram import Percentiles

__all__ = [
    "BatchSummary",
    "JobTotals",
    "ModelSummary",
    "Percentiles",
    "SummaryBuilder",
    "summary_to_dict",
    "write_summary_json",
]

SUCCEEDED = "succeeded"
"""The outcome of a request that got a successful answer; every other outcome is a failure kind."""


class ModelSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One model's share of a run. ``cost`` is None when none of its requests reported one;
    ``latency`` is None when none of them reached the proxy."""

    requests: int
    succeeded: int
    failed: int
    tokens_in: int
    tokens_out: int
    cost: float | None
    latency: Percentiles | None


class JobTotals(msgspec.Struct, frozen=True, kw_only=True):
    """The whole job: every line of the output, written by this run and every earlier one.

    ``cost`` is None when no line has one; ``cost_complete`` says whether every success has one.
    """

    requests: int
    succeeded: int
    failed: int
    tokens_in: int
    tokens_out: int
    cost: float | None
    cost_complete: bool


class BatchSummary(msgspec.Struct, frozen=True, kw_only=True):
    """The report of one batch run.

    ``input_requests`` are the requests of the input (in this shard); ``already_done`` were
    skipped because the output already held their answer; ``invalid`` are input lines that could
    not be sent. ``ran`` counts every result recorded this run (``succeeded + failed``), and
    ``outcomes`` splits it by outcome. ``retries`` is the number of extra attempts.
    Rates are over ``elapsed`` (0.0 when ``elapsed`` is 0); ``tokens_per_second`` counts input
    and output tokens, as rate limits (TPM) do. ``cost`` is None when no request reported a
    cost, else their sum; ``cost_complete`` says whether every successful request reported one
    (False when ``cost`` is None). ``latency`` is None when no request reached the proxy,
    ``ttft`` when no request was a stream. ``failed_in_output`` counts the failed lines the
    output holds once the run is over, earlier runs' too: while it is not 0 the output is not
    done (``--retry-failed`` runs them again), and the command exits 1. ``interrupted`` says the
    run was stopped before the end (Ctrl-C): its figures cover what finished until then.
    Every figure above is this run's; ``job`` sums the whole output after the run, earlier
    runs' lines too (None when the summary was built without the output's figures).
    """

    input_requests: int
    already_done: int
    invalid: int
    ran: int
    succeeded: int
    failed: int
    outcomes: dict[str, int]
    retries: int
    elapsed: float
    requests_per_second: float
    tokens_per_second: float
    tokens_in: int
    tokens_out: int
    cost: float | None
    cost_complete: bool
    latency: Percentiles | None
    ttft: Percentiles | None
    per_model: dict[str, ModelSummary]
    failed_in_output: int = 0
    interrupted: bool = False
    job: JobTotals | None = None


def _nearest_rank(ordered: Sequence[float], percent: int) -> float:
    """The ``percent``-th percentile of non-empty ``ordered`` (sorted ascending), nearest rank.

    Integer arithmetic for the rank: ``0.95 * n`` in floats can land a hair above an integer.
    """
    rank = max(-(-percent * len(ordered) // 100), 1)
    return ordered[rank - 1]


def _percentiles(values: array[float]) -> Percentiles | None:
    if not values:
        return None
    ordered = sorted(values)
    return Percentiles(
        p50=_nearest_rank(ordered, 50),
        p95=_nearest_rank(ordered, 95),
        p99=_nearest_rank(ordered, 99),
        max=ordered[-1],
    )


class _ModelStats:
    """One model's counters; ``failed`` is ``requests - succeeded``."""

    __slots__ = ("cost", "costed", "latencies", "requests", "succeeded", "tokens_in", "tokens_out")

    def __init__(self) -> None:
        self.requests = 0
        self.succeeded = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self.cost = 0.0
        self.costed = 0
        self.latencies: array[float] = array("d")


class SummaryBuilder:
    """Collects one record per finished request; :meth:`summary` turns them into a report.

    The live counters ``done`` (results recorded, successes and failures), ``failed``,
    ``retries``, ``tokens_in``, ``tokens_out`` and ``cost`` (0.0 until a request reports one)
    are plain attributes for a progress display to read; treat them as read-only.
    """

    __slots__ = (
        "_costed_ok",
        "_models",
        "_outcomes",
        "_ttfts",
        "cost",
        "done",
        "failed",
        "retries",
        "tokens_in",
        "tokens_out",
    )

    def __init__(self) -> None:
        self.done = 0
        self.failed = 0
        self.retries = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self.cost = 0.0
        self._costed_ok = 0
        self._outcomes: defaultdict[str, int] = defaultdict(int)
        self._models: dict[str, _ModelStats] = {}
        self._ttfts: array[float] = array("d")

    @property
    def succeeded(self) -> int:
        """Results recorded as successes so far."""
        return self.done - self.failed

    def add(
        self,
        *,
        model: str,
        ok: bool,
        outcome: str,
        attempts: int,
        latency: float,
        ttft: float | None = None,
        tokens_in: int = 0,
        tokens_out: int = 0,
        cost: float | None = None,
    ) -> None:
        """Record one finished request, in O(1).

        ``outcome`` is ``"succeeded"`` or a failure kind (``"RateLimitError"``, ``"http_400"``,
        ``"invalid_line"``...). ``attempts`` counts tries, so it adds ``attempts - 1`` retries;
        a request with ``attempts=0`` never reached the proxy (an invalid line) and its
        ``latency`` is not counted. ``latency`` and ``ttft`` are in seconds, and not NaN.
        """
        stats = self._models.get(model)
        if stats is None:
            stats = self._models[model] = _ModelStats()
        stats.requests += 1
        self.done += 1
        self._outcomes[outcome] += 1
        if ok:
            stats.succeeded += 1
        else:
            self.failed += 1
        if attempts > 0:
            stats.latencies.append(latency)
            if attempts > 1:
                self.retries += attempts - 1
        if ttft is not None:
            self._ttfts.append(ttft)
        if tokens_in:
            self.tokens_in += tokens_in
            stats.tokens_in += tokens_in
        if tokens_out:
            self.tokens_out += tokens_out
            stats.tokens_out += tokens_out
        if cost is not None:
            self.cost += cost
            stats.cost += cost
            stats.costed += 1
            if ok:
                self._costed_ok += 1

    def summary(
        self,
        *,
        elapsed: float,
        input_requests: int,
        already_done: int,
        invalid: int,
        failed_before: int = 0,
        interrupted: bool = False,
        before: JobTotals | None = None,
    ) -> BatchSummary:
        """The report of everything added so far (sorts the latencies: O(n log n), call once).

        ``failed_before`` is the number of failed lines the output held before this run and kept;
        ``before`` the totals of those lines, to which this run's are added in ``job``.
        """
        per_model: dict[str, ModelSummary] = {}
        latencies: array[float] = array("d")
        costed = 0
        for model, stats in self._models.items():
            latencies.extend(stats.latencies)
            costed += stats.costed
            per_model[model] = ModelSummary(
                requests=stats.requests,
                succeeded=stats.succeeded,
                failed=stats.requests - stats.succeeded,
                tokens_in=stats.tokens_in,
                tokens_out=stats.tokens_out,
                cost=stats.cost if stats.costed else None,
                latency=_percentiles(stats.latencies),
            )
        tokens = self.tokens_in + self.tokens_out
        cost = self.cost if costed else None
        cost_complete = costed > 0 and self._costed_ok == self.succeeded
        return BatchSummary(
            input_requests=input_requests,
            already_done=already_done,
            invalid=invalid,
            ran=self.done,
            succeeded=self.succeeded,
            failed=self.failed,
            outcomes=dict(sorted(self._outcomes.items(), key=_outcome_order)),
            retries=self.retries,
            elapsed=elapsed,
            requests_per_second=self.done / elapsed if elapsed > 0 else 0.0,
            tokens_per_second=tokens / elapsed if elapsed > 0 else 0.0,
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            cost=cost,
            cost_complete=cost_complete,
            latency=_percentiles(latencies),
            ttft=_percentiles(self._ttfts),
            per_model=per_model,
            failed_in_output=failed_before + self.failed,
            interrupted=interrupted,
            job=None if before is None else self._job(before, cost, cost_complete),
        )

    def _job(self, before: JobTotals, cost: float | None, cost_complete: bool) -> JobTotals:
        """The output's totals before the run plus this run's."""
        costs = [c for c in (before.cost, cost) if c is not None]
        complete = (before.succeeded == 0 or before.cost_complete) and (
            self.succeeded == 0 or cost_complete
        )
        return JobTotals(
            requests=before.requests + self.done,
            succeeded=before.succeeded + self.succeeded,
            failed=before.failed + self.failed,
            tokens_in=before.tokens_in + self.tokens_in,
            tokens_out=before.tokens_out + self.tokens_out,
            cost=sum(costs) if costs else None,
            cost_complete=bool(costs) and complete,
        )


def _outcome_order(item: tuple[str, int]) -> tuple[bool, int, str]:
    """Successes first, then failure kinds by count, most frequent first."""
    outcome, count = item
    return (outcome != SUCCEEDED, -count, outcome)


def summary_to_dict(summary: BatchSummary) -> dict[str, object]:
    """The summary as plain dicts, lists and numbers (what its JSON file holds)."""
    result: dict[str, object] = msgspec.to_builtins(summary)
    return result


def write_summary_json(summary: BatchSummary, path: str | os.PathLike[str]) -> None:
    """Write the summary as indented JSON, atomically: a reader sees the old file or the new one.

    The bytes go to a temporary file beside ``path``, are fsynced, then ``os.replace`` it.
    """
    path = Path(path)
    data = msgspec.json.format(msgspec.json.encode(summary), indent=2) + b"\n"
    write_atomically(path, data)
