"""The latency histogram: bounded memory, an exact merge, and percentiles within the promised
error of the exact nearest-rank values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_litellm import LatencyHistogram, Percentiles
from trio_litellm._histogram import MAX_RELATIVE_ERROR


def nearest_rank(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[max(-(-p * len(ordered) // 100), 1) - 1]


latencies = st.lists(
    st.floats(min_value=1e-4, max_value=100.0, allow_nan=False), min_size=1, max_size=300
)


def test_max_relative_error_is_within_the_promised_five_percent() -> None:
    assert MAX_RELATIVE_ERROR <= 0.05


@given(values=latencies, p=st.integers(min_value=0, max_value=100))
def test_histogram_percentile_is_within_five_percent_of_nearest_rank(
    values: list[float], p: int
) -> None:
    histogram = LatencyHistogram()
    for value in values:
        histogram.add(value)
    exact = nearest_rank(values, p)
    estimate = histogram.percentile(p)
    assert estimate is not None
    assert abs(estimate - exact) <= MAX_RELATIVE_ERROR * exact * (1 + 1e-9)


@given(values=latencies)
def test_histogram_count_max_and_min_are_exact(values: list[float]) -> None:
    histogram = LatencyHistogram()
    for value in values:
        histogram.add(value)
    assert histogram.count == len(values)
    assert histogram.max == max(values)
    assert histogram.min == min(values)
    assert histogram.percentile(100) == max(values)


@given(left=latencies, right=latencies)
def test_histogram_merge_equals_adding_everything(left: list[float], right: list[float]) -> None:
    merged, other, everything = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for value in left:
        merged.add(value)
        everything.add(value)
    for value in right:
        other.add(value)
        everything.add(value)
    merged.merge(other)
    assert merged == everything
    for p in (50, 95, 99):
        assert merged.percentile(p) == everything.percentile(p)


def test_histogram_merge_of_an_empty_histogram_changes_nothing() -> None:
    histogram = LatencyHistogram()
    histogram.add(0.25)
    histogram.merge(LatencyHistogram())
    assert histogram.count == 1
    assert histogram.max == 0.25
    assert histogram.min == 0.25


def test_empty_histogram_has_no_percentile_and_no_max() -> None:
    histogram = LatencyHistogram()
    assert histogram.percentile(50) is None
    assert histogram.max is None
    assert histogram.count == 0


def test_histogram_memory_is_bounded_whatever_the_spread() -> None:
    histogram = LatencyHistogram()
    value = 1e-7
    while value < 1e5:
        histogram.add(value)
        value *= 1.001
    assert histogram.buckets <= 400


def test_histogram_reports_durations_beyond_an_hour_as_the_maximum() -> None:
    histogram = LatencyHistogram()
    for value in (5000.0, 6000.0, 7200.0):
        histogram.add(value)
    assert histogram.percentile(50) == 7200.0


def test_histogram_reports_durations_below_a_tenth_of_a_millisecond_closely() -> None:
    histogram = LatencyHistogram()
    for value in (0.0, 2e-5, 5e-5):
        histogram.add(value)
    estimate = histogram.percentile(50)
    assert estimate is not None
    assert abs(estimate - 2e-5) < 1e-4


@pytest.mark.parametrize("bad", [-0.001, math.nan, math.inf])
def test_histogram_rejects_negative_or_non_finite_durations(bad: float) -> None:
    with pytest.raises(ValueError, match="duration"):
        LatencyHistogram().add(bad)


@pytest.mark.parametrize("bad", [-1, 101])
def test_histogram_percentile_is_between_0_and_100(bad: int) -> None:
    histogram = LatencyHistogram()
    histogram.add(1.0)
    with pytest.raises(ValueError, match="percentile"):
        histogram.percentile(bad)


@given(values=latencies)
def test_histogram_percentiles_are_its_percentile_at_50_95_99_and_its_exact_max(
    values: list[float],
) -> None:
    histogram = LatencyHistogram()
    for value in values:
        histogram.add(value)
    assert histogram.percentiles() == Percentiles(
        p50=histogram.percentile(50),
        p95=histogram.percentile(95),
        p99=histogram.percentile(99),
        max=max(values),
    )


def test_an_empty_histogram_has_no_percentiles() -> None:
    assert LatencyHistogram().percentiles() is None
