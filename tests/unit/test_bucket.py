"""The pacing under the throttle's windows: the token bucket's arithmetic, and a rate limit that is
a window with a bucket under it. Pure classes: no trio, times passed in."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_litellm._bucket import BURST_SECONDS, TokenBucket, burst_for
from trio_litellm._rate_limit import RateLimit, RateLimits

# --- TokenBucket ---------------------------------------------------------------------------------


def test_a_bucket_starts_full_and_refills_at_its_rate() -> None:
    bucket = TokenBucket(6, 60.0, burst=2)  # one unit every 10 s
    assert bucket.rate == 0.1
    assert bucket.wait(2, 0.0) == 0.0
    bucket.take(2, 0.0)
    assert bucket.level(0.0) == 0.0
    assert bucket.wait(1, 0.0) == 10.0
    assert bucket.wait(2, 0.0) == 20.0
    assert bucket.level(15.0) == 1.5
    assert bucket.level(100.0) == 2.0  # never above the burst


def test_an_amount_above_the_burst_waits_for_a_full_bucket_and_leaves_a_debt() -> None:
    bucket = TokenBucket(60, 60.0, burst=5)  # one unit a second
    bucket.take(3, 0.0)
    assert bucket.ready_at(50, 0.0) == 3.0  # full again at 3
    bucket.take(50, 3.0)
    assert bucket.level(3.0) == -45.0
    assert bucket.ready_at(0, 3.0) == 48.0  # even nothing waits for the debt to be paid
    assert bucket.ready_at(1, 3.0) == 49.0


def test_adjust_takes_more_or_gives_back_but_never_above_the_burst() -> None:
    bucket = TokenBucket(60, 60.0, burst=10)
    bucket.take(10, 0.0)
    bucket.adjust(5, 0.0)  # the estimate was 5 too low
    assert bucket.level(0.0) == -5.0
    bucket.adjust(-12, 2.0)  # then 12 too high
    assert bucket.level(2.0) == 9.0
    bucket.adjust(-100, 2.0)
    assert bucket.level(2.0) == 10.0
    bucket.take(10, 2.0)
    assert bucket.level(2.0) == 0.0  # what was given back beyond full is not kept


def test_a_charge_after_the_bucket_has_refilled_counts_from_now() -> None:
    bucket = TokenBucket(60, 60.0, burst=10)
    bucket.take(4, 0.0)
    bucket.adjust(3, 30.0)
    assert bucket.level(30.0) == 7.0


@pytest.mark.parametrize(
    ("limit", "period", "burst"), [(0, 60.0, 1), (1, 0.0, 1), (1, 60.0, 0), (math.nan, 60.0, 1)]
)
def test_a_bucket_rejects_a_bad_limit_period_or_burst(
    limit: float, period: float, burst: float
) -> None:
    with pytest.raises(ValueError, match="must be a positive"):
        TokenBucket(limit, period, burst)


def test_a_bucket_rejects_a_negative_amount() -> None:
    with pytest.raises(ValueError, match="amount"):
        TokenBucket(1, 60.0, 1).take(-1, 0.0)


@pytest.mark.parametrize(
    ("limit", "burst"), [(1, 1.0), (60, 1.0), (90, 1.5), (6000, 100.0), (90_000, 1500.0)]
)
def test_the_burst_is_a_seconds_share_of_the_limit_and_at_least_one(
    limit: int, burst: float
) -> None:
    assert BURST_SECONDS == 1.0
    assert burst_for(limit, 60.0) == burst


def assert_no_span_exceeds(
    admissions: list[tuple[float, float]], rate: float, burst: float
) -> None:
    """In every span [s, e] between two admissions, the amounts sum to at most rate * (e - s)
    plus the burst or the largest amount in the span, whichever is larger."""
    for i, (start, _) in enumerate(admissions):
        inside: list[float] = []
        for end, amount in admissions[i:]:
            inside.append(amount)
            bound = rate * (end - start) + max(burst, *inside)
            assert sum(inside) <= bound * (1 + 1e-9) + 1e-9, (start, end, inside)


amounts = st.integers(min_value=0, max_value=40)
gaps = st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0, 3.0, 10.0, 60.0])


@settings(deadline=None, max_examples=300)
@given(
    limit=st.integers(min_value=1, max_value=600),
    burst=st.floats(min_value=1.0, max_value=30.0),
    requests=st.lists(st.tuples(gaps, amounts), max_size=50),
)
def test_a_bucket_waited_on_never_admits_more_than_its_rate_and_burst_in_any_span(
    limit: int, burst: float, requests: list[tuple[float, int]]
) -> None:
    bucket = TokenBucket(limit, 60.0, burst)
    now = 0.0
    admissions: list[tuple[float, float]] = []
    for gap, amount in requests:
        now += gap
        ready = bucket.ready_at(amount, now)
        need = min(amount, burst)
        if ready > now:  # no sooner than needed: it did not fit at ``now``
            assert bucket.level(now) < need
        now = ready
        assert bucket.level(now) >= need - 1e-9
        bucket.take(amount, now)
        admissions.append((now, amount))
    assert_no_span_exceeds(admissions, limit / 60.0, burst)


# --- RateLimit: the window as the hard bound, the bucket pacing under it --------------------------


@settings(deadline=None, max_examples=200)
@given(
    limit=st.integers(min_value=1, max_value=150),
    requests=st.lists(st.tuples(gaps, st.integers(min_value=0, max_value=3)), max_size=80),
)
def test_a_rate_limit_never_admits_more_than_its_limit_in_any_minute_nor_faster_than_its_pace(
    limit: int, requests: list[tuple[float, int]]
) -> None:
    rate_limit = RateLimit(limit)
    now = 0.0
    admissions: list[tuple[float, float]] = []
    for gap, amount in requests:
        now = rate_limit.ready_at(amount, now + gap)
        rate_limit.record(amount, now)
        admissions.append((now, amount))
    for start, _ in admissions:
        inside = [amount for time, amount in admissions if start <= time < start + 60.0]
        assert sum(inside) <= limit or len([a for a in inside if a > 0]) == 1, (start, inside)
    assert_no_span_exceeds(admissions, limit / 60.0, burst_for(limit, 60.0))


def test_a_rate_limit_adjusts_the_window_and_the_bucket_until_the_entry_leaves() -> None:
    rate_limit = RateLimit(60)  # one a second, a burst of one
    entry = rate_limit.record(30, 0.0)
    assert rate_limit.ready_at(1, 0.0) == 30.0  # the pace owes 30 s
    rate_limit.adjust(entry, 10, 0.0)
    assert rate_limit.used(0.0) == 10
    assert rate_limit.ready_at(1, 0.0) == 10.0
    assert rate_limit.ready_at(51, 10.0) == 60.0  # the window: 10 + 51 > 60 until it leaves
    rate_limit.adjust(entry, 0, 61.0)  # it has left: nothing changes
    assert rate_limit.bucket.level(61.0) == 1.0


def test_room_is_the_windows_at_most_what_the_bucket_holds() -> None:
    rate_limit = RateLimit(600)  # 10 a second, a burst of 10
    assert rate_limit.room(0, 0.0) == 10
    for _ in range(4):
        rate_limit.record(1, 0.0)
    assert rate_limit.room(4, 0.0) == 6
    assert rate_limit.room(595, 0.3) == 5  # 9 in the bucket, 5 left in the window


def test_rate_limits_count_a_request_against_rpm_and_its_tokens_against_tpm() -> None:
    limits = RateLimits(rpm=60, tpm=None)
    assert limits.record(500, 0.0) is None  # no tpm: no entry to reconcile
    assert limits.ready_at(500, 0.0) == 1.0
    limits = RateLimits(rpm=None, tpm=600)
    entry = limits.record(50, 0.0)
    assert entry is not None
    assert entry.amount == 50
    assert limits.ready_at(0, 0.0) == 4.0  # 50 tokens at 10 a second, less the burst of 10
