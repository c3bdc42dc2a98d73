"""Request records, their cost, and the windowed usage ledger."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from _fakes import T0, record
from trio_litellm import Percentiles
from trio_litellm._histogram import MAX_RELATIVE_ERROR
from trio_litellm._ledger import UsageLedger
from trio_litellm._usage import OTHER_MODELS, cost_of

# --- cost_of ----------------------------------------------------------------------------------

PRICES = (1e-6, 2e-6)


def test_cost_of_prefers_the_header_cost() -> None:
    assert cost_of(0.5, 0.25, 10, 20, PRICES) == (0.5, "header")


def test_cost_of_falls_back_to_usage_cost() -> None:
    assert cost_of(None, 0.25, 10, 20, PRICES) == (0.25, "usage")


def test_cost_of_a_zero_header_cost_is_still_the_header_cost() -> None:
    assert cost_of(0.0, 0.25, 10, 20, PRICES) == (0.0, "header")


def test_cost_of_prices_tokens_when_no_cost_was_reported() -> None:
    cost, source = cost_of(None, None, 1000, 500, PRICES)
    assert source == "price"
    assert cost == pytest.approx(1000 * 1e-6 + 500 * 2e-6)


@pytest.mark.parametrize(
    ("prompt_tokens", "completion_tokens", "prices"),
    [
        (10, 20, None),
        (None, 20, PRICES),
        (10, None, PRICES),
        (10, 20, (None, 2e-6)),
        (10, 20, (1e-6, None)),
        (10, 20, (None, None)),
    ],
)
def test_cost_of_is_unknown_without_prices_or_token_counts(
    prompt_tokens: int | None,
    completion_tokens: int | None,
    prices: tuple[float | None, float | None] | None,
) -> None:
    assert cost_of(None, None, prompt_tokens, completion_tokens, prices) == (None, None)


def test_cost_of_needs_no_output_price_for_zero_output_tokens() -> None:
    cost, source = cost_of(None, None, 1000, 0, (1e-6, None))
    assert source == "price"
    assert cost == pytest.approx(1e-3)


# --- UsageLedger: figures ---------------------------------------------------------------------


def test_ledger_counts_requests_successes_and_errors_by_outcome() -> None:
    ledger = UsageLedger()
    ledger.add(record())
    ledger.add(record(outcome="RateLimitError", status=429, cost=None))
    ledger.add(record(outcome="RateLimitError", status=429, cost=None))
    ledger.add(record(outcome="APITimeoutError", status=None, cost=None))
    stats = ledger.usage(now=T0)
    assert stats.requests == 4
    assert stats.succeeded == 1
    assert stats.errors == {"APITimeoutError": 1, "RateLimitError": 2}


def test_ledger_sums_tokens_exactly_and_ignores_unknown_counts() -> None:
    ledger = UsageLedger()
    ledger.add(record(prompt_tokens=123, completion_tokens=456))
    ledger.add(record(prompt_tokens=1, completion_tokens=None))
    ledger.add(record(prompt_tokens=None, completion_tokens=None))
    stats = ledger.usage(now=T0)
    assert stats.prompt_tokens == 124
    assert stats.completion_tokens == 456


def test_ledger_sums_costs_and_is_complete_when_every_success_had_one() -> None:
    ledger = UsageLedger()
    ledger.add(record(cost=0.25))
    ledger.add(record(cost=0.5))
    ledger.add(record(outcome="BadRequestError", cost=None))
    stats = ledger.usage(now=T0)
    assert stats.cost == pytest.approx(0.75)
    assert stats.cost_complete


def test_ledger_cost_is_incomplete_when_a_success_had_no_cost() -> None:
    ledger = UsageLedger()
    ledger.add(record(cost=0.25))
    ledger.add(record(cost=None, cost_source=None))
    stats = ledger.usage(now=T0)
    assert stats.cost == pytest.approx(0.25)
    assert not stats.cost_complete


def test_ledger_cost_is_none_when_no_request_had_one() -> None:
    ledger = UsageLedger()
    ledger.add(record(cost=None, cost_source=None))
    stats = ledger.usage(now=T0)
    assert stats.cost is None
    assert not stats.cost_complete


def test_ledger_counts_retries_as_extra_attempts() -> None:
    ledger = UsageLedger()
    ledger.add(record(attempts=1))
    ledger.add(record(attempts=3))
    assert ledger.usage(now=T0).retries == 2


def test_ledger_latency_percentiles_and_ttft_from_streams_only() -> None:
    ledger = UsageLedger()
    for i in range(1, 101):
        ledger.add(record(latency=i / 100, ttft=i / 1000 if i % 2 else None, stream=bool(i % 2)))
    stats = ledger.usage(now=T0)
    assert stats.latency is not None
    assert stats.latency.max == 1.0
    assert stats.latency.p50 == pytest.approx(0.50, rel=MAX_RELATIVE_ERROR)
    assert stats.latency.p95 == pytest.approx(0.95, rel=MAX_RELATIVE_ERROR)
    assert stats.latency.p99 == pytest.approx(0.99, rel=MAX_RELATIVE_ERROR)
    assert stats.ttft is not None
    assert stats.ttft.max == 0.099
    assert stats.ttft.p50 == pytest.approx(0.049, rel=MAX_RELATIVE_ERROR)


def test_ledger_latency_skips_requests_that_never_left_the_client() -> None:
    ledger = UsageLedger()
    ledger.add(record(attempts=0, latency=9.0, outcome="InvalidRequestError", status=None))
    stats = ledger.usage(now=T0)
    assert stats.requests == 1
    assert stats.latency is None
    assert stats.ttft is None


def test_ledger_splits_figures_per_requested_model() -> None:
    ledger = UsageLedger()
    ledger.add(record(model="a", served_model="a-eu", prompt_tokens=1, cost=0.5))
    ledger.add(record(model="a", outcome="RateLimitError", cost=None, prompt_tokens=2))
    ledger.add(record(model="b", prompt_tokens=4, cost=None, latency=2.0))
    stats = ledger.usage(now=T0)
    assert list(stats.per_model) == ["a", "b"]
    a, b = stats.per_model["a"], stats.per_model["b"]
    assert (a.requests, a.succeeded, a.errors, a.prompt_tokens) == (2, 1, {"RateLimitError": 1}, 3)
    assert (a.cost, a.cost_complete) == (0.5, True)
    assert (b.requests, b.prompt_tokens, b.cost, b.cost_complete) == (1, 4, None, False)
    assert b.latency == Percentiles(p50=2.0, p95=2.0, p99=2.0, max=2.0)
    assert stats.requests == a.requests + b.requests


def test_ledger_model_filter_keeps_one_model() -> None:
    ledger = UsageLedger()
    ledger.add(record(model="a", prompt_tokens=1))
    ledger.add(record(model="b", prompt_tokens=10))
    stats = ledger.usage(model="b", now=T0)
    assert stats.requests == 1
    assert stats.prompt_tokens == 10
    assert list(stats.per_model) == ["b"]


def test_empty_ledger_reports_nothing() -> None:
    stats = UsageLedger().usage(now=T0)
    assert stats.requests == 0
    assert stats.errors == {}
    assert stats.cost is None
    assert stats.latency is None
    assert stats.per_model == {}


def test_usage_stats_encode_to_json() -> None:
    ledger = UsageLedger()
    ledger.add(record())
    decoded = msgspec.json.decode(msgspec.json.encode(ledger.usage(now=T0)))
    assert decoded["per_model"]["gpt-4o"]["requests"] == 1


# --- UsageLedger: windows ---------------------------------------------------------------------


def minutes_ledger() -> UsageLedger:
    """One request starting 10 s into each of the 10 minutes from T0."""
    ledger = UsageLedger(bucket_seconds=60.0)
    for minute in range(10):
        ledger.add(record(started_at=T0 + 60 * minute + 10, prompt_tokens=minute))
    return ledger


def test_window_with_float_bounds_covers_the_overlapping_buckets() -> None:
    stats = minutes_ledger().usage(since=T0 + 120, until=T0 + 300, now=T0 + 600)
    assert stats.requests == 3
    assert stats.prompt_tokens == 2 + 3 + 4
    assert (stats.since, stats.until) == (T0 + 120, T0 + 300)


def test_window_boundaries_widen_to_whole_buckets() -> None:
    # since=T0+150 falls in minute 2 after its record (T0+130): the whole bucket is counted.
    stats = minutes_ledger().usage(since=T0 + 150, until=T0 + 245, now=T0 + 600)
    assert stats.requests == 3
    assert (stats.since, stats.until) == (T0 + 120, T0 + 300)


def test_records_outside_the_window_buckets_are_excluded() -> None:
    stats = minutes_ledger().usage(since=T0 + 180, until=T0 + 240, now=T0 + 600)
    assert stats.requests == 1
    assert stats.prompt_tokens == 3


def test_window_without_bounds_covers_everything_retained() -> None:
    stats = minutes_ledger().usage(now=T0 + 600)
    assert stats.requests == 10
    assert (stats.since, stats.until) == (T0, T0 + 600)


def test_window_with_aware_datetimes() -> None:
    since = datetime.fromtimestamp(T0 + 120, tz=UTC)
    until = datetime.fromtimestamp(T0 + 300, tz=UTC)
    assert minutes_ledger().usage(since=since, until=until, now=T0 + 600).requests == 3


def test_window_with_naive_datetimes_is_local_time() -> None:
    since = datetime.fromtimestamp(T0 + 120)
    until = datetime.fromtimestamp(T0 + 300)
    assert since.tzinfo is None
    assert minutes_ledger().usage(since=since, until=until, now=T0 + 600).requests == 3


def test_window_with_timedelta_means_the_last_so_long_before_now() -> None:
    stats = minutes_ledger().usage(since=timedelta(minutes=3), now=T0 + 600)
    assert stats.requests == 3
    assert stats.prompt_tokens == 7 + 8 + 9
    assert stats.since == T0 + 420


def test_window_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="before it starts"):
        minutes_ledger().usage(since=T0 + 300, until=T0 + 100, now=T0 + 600)


def test_window_after_every_record_is_empty() -> None:
    stats = minutes_ledger().usage(since=T0 + 3600, now=T0 + 7200)
    assert stats.requests == 0
    assert stats.latency is None


def test_records_added_out_of_order_land_in_their_own_bucket() -> None:
    ledger = UsageLedger(bucket_seconds=60.0)
    ledger.add(record(started_at=T0 + 300))
    ledger.add(record(started_at=T0 + 10))
    assert ledger.usage(since=T0, until=T0 + 60, now=T0 + 600).requests == 1


# --- UsageLedger: bounded memory --------------------------------------------------------------


def test_retention_keeps_memory_bounded_over_thirty_simulated_days() -> None:
    ledger = UsageLedger(bucket_seconds=60.0, retention=86400.0)
    base = record(started_at=0.0)
    most = 0
    for second in range(30 * 86400):
        ledger.add(msgspec.structs.replace(base, started_at=T0 + second))
        if second % 3600 == 0:
            most = max(most, ledger.statistics().memory_buckets)
    statistics = ledger.statistics()
    assert max(most, statistics.memory_buckets) <= 1441
    assert statistics.slots <= 1441
    stats = ledger.usage(now=T0 + 30 * 86400)
    assert stats.requests == 1441 * 60
    assert stats.since == T0 + 30 * 86400 - 1441 * 60


def test_retention_drops_old_buckets_when_time_moves_on() -> None:
    ledger = UsageLedger(bucket_seconds=60.0, retention=3600.0)
    ledger.add(record(started_at=T0))
    ledger.add(record(started_at=T0 + 2 * 3600))
    assert ledger.statistics().memory_buckets == 1
    assert ledger.usage(now=T0 + 2 * 3600).requests == 1


def test_retention_drops_records_that_arrive_already_too_old() -> None:
    ledger = UsageLedger(bucket_seconds=60.0, retention=3600.0)
    ledger.add(record(started_at=T0 + 2 * 3600))
    ledger.add(record(started_at=T0))
    statistics = ledger.statistics()
    assert statistics.memory_buckets == 1
    assert statistics.dropped_records == 1
    assert ledger.usage(since=0.0, now=T0 + 2 * 3600).requests == 1


def test_window_is_clipped_to_what_retention_still_holds() -> None:
    ledger = UsageLedger(bucket_seconds=60.0, retention=3600.0)
    ledger.add(record(started_at=T0 + 2 * 3600))
    stats = ledger.usage(since=T0, now=T0 + 2 * 3600)
    assert stats.since == T0 + 3600


def test_models_beyond_max_models_fold_into_other() -> None:
    ledger = UsageLedger(max_models=2)
    for name in ("a", "b", "c", "d", "a"):
        ledger.add(record(model=name))
    stats = ledger.usage(now=T0)
    assert {name: usage.requests for name, usage in stats.per_model.items()} == {
        OTHER_MODELS: 2,
        "a": 2,
        "b": 1,
    }
    assert ledger.statistics().models == 3
    assert ledger.usage(model=OTHER_MODELS, now=T0).requests == 2


def test_folded_model_slots_free_up_when_their_buckets_expire() -> None:
    ledger = UsageLedger(bucket_seconds=60.0, retention=60.0, max_models=1)
    ledger.add(record(model="a", started_at=T0))
    ledger.add(record(model="b", started_at=T0))
    ledger.add(record(model="b", started_at=T0 + 3600))
    assert list(ledger.usage(now=T0 + 3600).per_model) == ["b"]


@pytest.mark.parametrize(
    "options",
    [{"bucket_seconds": 0.0}, {"retention": -1.0}, {"max_models": 0}, {"bucket_seconds": math.inf}],
)
def test_ledger_refuses_nonsense_options(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        UsageLedger(**options)  # type: ignore[arg-type]
