"""The throttle: a sliding window that never admits more than its limit in any window, and the
actor that admits requests FIFO under rpm / tpm (paced by a token bucket under the window), 429
pauses and what the proxy's headers say. The bucket's own arithmetic is in test_bucket.py.

Every async test runs on ``MockClock(autojump_threshold=0)`` (pytest-trio's ``autojump_clock``): time passes only when every task
waits, jumping straight to the next deadline, so admission times are asserted exactly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from trio.testing import MockClock, wait_all_tasks_blocked

from trio_litellm._errors import ConfigError, LiteLLMError
from trio_litellm._meta import RateLimitInfo
from trio_litellm._rate_window import RateWindow
from trio_litellm._restrictions import LIMITER_WINDOW, Restrictions
from trio_litellm._throttle import Permit, Throttle

Log = list[tuple[str, float]]


@asynccontextmanager
async def running(throttle: Throttle) -> AsyncIterator[trio.Nursery]:
    """The throttle's actor running in a nursery that is cancelled on exit, as the client does."""
    async with trio.open_nursery() as nursery:
        await nursery.start(throttle.run)
        yield nursery
        nursery.cancel_scope.cancel()


async def admit(throttle: Throttle, tokens: int, log: Log, name: str) -> Permit:
    permit = await throttle.acquire(tokens)
    log.append((name, trio.current_time()))
    return permit


async def start_in_order(
    nursery: trio.Nursery, throttle: Throttle, log: Log, *asks: int, first: int = 0
) -> None:
    """Start one acquirer per token count, each queued before the next starts; named #first..."""
    for number, tokens in enumerate(asks, start=first):
        nursery.start_soon(admit, throttle, tokens, log, f"#{number}")
        await wait_all_tasks_blocked()


def assert_no_window_exceeds(admissions: list[tuple[float, float]], limit: float) -> None:
    """In every 60 s window [t, t + 60) starting at an admission (the only windows that can hold
    the most), the admitted amounts sum to at most ``limit``, or one oversized amount is alone
    (with nothing else counted: zero amounts aside)."""
    for start, _ in admissions:
        inside = [amount for time, amount in admissions if start <= time < start + 60.0]
        assert sum(inside) <= limit or len([a for a in inside if a > 0]) == 1, (start, inside)


# --- RateWindow: the pure arithmetic ------------------------------------------------------------


def test_window_admits_up_to_its_limit_then_waits_for_the_oldest_to_leave() -> None:
    window = RateWindow(3, period=60.0)
    for now in (0.0, 10.0, 20.0):
        assert window.wait(1, now) == 0.0
        window.record(1, now)
    assert window.wait(1, 30.0) == 30.0  # the entry of t=0 leaves at 60
    assert window.wait(2, 30.0) == 40.0  # two must leave: t=0 and t=10
    assert window.used(59.0) == 3.0
    assert window.used(60.0) == 2.0


def test_window_admits_an_oversized_amount_only_when_empty() -> None:
    window = RateWindow(100)
    window.record(30, 0.0)
    window.record(30, 5.0)
    assert window.wait(500, 10.0) == 55.0  # until the last entry leaves at 65
    assert window.wait(500, 65.0) == 0.0
    window.record(500, 65.0)
    assert window.wait(1, 65.0) == 60.0  # nothing joins it while it is in the window


def test_window_adjust_replaces_the_recorded_amount() -> None:
    window = RateWindow(1000)
    entry = window.record(1000, 0.0)
    assert window.wait(500, 1.0) == 59.0
    window.adjust(entry, 200)
    assert window.used(1.0) == 200.0
    assert window.wait(500, 1.0) == 0.0


def test_window_adjust_has_no_effect_once_the_entry_has_left() -> None:
    window = RateWindow(10)
    entry = window.record(5, 0.0)
    window.record(1, 30.0)
    assert window.used(60.0) == 1.0
    window.adjust(entry, 9)
    assert window.used(60.0) == 1.0
    assert not entry.live


@pytest.mark.parametrize(("limit", "period"), [(0, 60.0), (-1, 60.0), (1, 0.0), (float("nan"), 1)])
def test_window_rejects_a_bad_limit_or_period(limit: float, period: float) -> None:
    with pytest.raises(ValueError, match="must be a positive"):
        RateWindow(limit, period)


def test_window_rejects_a_negative_amount() -> None:
    with pytest.raises(ValueError, match="amount"):
        RateWindow(10).record(-1, 0.0)


def reference_ready_at(
    entries: list[tuple[float, float]], limit: float, amount: float, now: float
) -> float:
    """The earliest time >= now at which ``amount`` fits, by brute force over (expires, amount)."""
    threshold = limit - amount if amount <= limit else 0.0
    live = [(expires, size) for expires, size in entries if expires > now]
    for candidate in [now, *sorted(expires for expires, _ in live)]:
        if sum(size for expires, size in live if expires > candidate) <= threshold:
            return candidate
    raise AssertionError("unreachable: an empty window fits anything")


@settings(deadline=None, max_examples=200)
@given(
    limit=st.integers(min_value=1, max_value=30),
    requests=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=90.0, allow_nan=False, allow_infinity=False),
            st.integers(min_value=0, max_value=70),
        ),
        max_size=60,
    ),
)
def test_window_waited_on_never_admits_more_than_its_limit_in_any_window(
    limit: int, requests: list[tuple[float, int]]
) -> None:
    window = RateWindow(limit, period=60.0)
    now = 0.0
    admissions: list[tuple[float, float]] = []
    recorded: list[tuple[float, float]] = []
    for gap, amount in requests:
        now += gap
        assert window.ready_at(amount, now) == reference_ready_at(recorded, limit, amount, now)
        while (delay := window.wait(amount, now)) > 0:
            now += delay
        entry = window.record(amount, now)
        admissions.append((now, amount))
        recorded.append((entry.expires, amount))
    assert_no_window_exceeds(admissions, limit)


@settings(deadline=None, max_examples=200)
@given(
    operations=st.lists(
        st.one_of(
            st.tuples(st.just("record"), st.integers(min_value=0, max_value=500)),
            st.tuples(st.just("adjust"), st.integers(min_value=0, max_value=10_000)),
            st.tuples(st.just("advance"), st.integers(min_value=0, max_value=40)),
        ),
        max_size=80,
    )
)
def test_window_adjust_keeps_the_sum_right(operations: list[tuple[str, int]]) -> None:
    window = RateWindow(1000, period=60.0)
    now = 0.0
    entries = []
    for kind, value in operations:
        if kind == "record":
            entries.append(window.record(value, now))
        elif kind == "adjust" and entries:
            window.adjust(entries[value % len(entries)], value)
        else:
            now += value
        used = window.used(now)
        assert used == sum(entry.amount for entry in entries if entry.expires > now)
        assert all(entry.live == (entry.expires > now) for entry in entries)


# --- rpm ----------------------------------------------------------------------------------------


async def test_rpm_acquirers_are_spread_across_the_minute_not_let_out_at_once(
    autojump_clock: MockClock,
) -> None:
    rpm = 6  # one request every 10 s; a burst of one (a second's share is less than one)
    throttle = Throttle(rpm=rpm, tpm=None)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        for number in range(3 * rpm):
            acquirers.start_soon(admit, throttle, 0, log, f"#{number}")
    times = sorted(time for _, time in log)
    assert times == [10.0 * k for k in range(3 * rpm)]
    assert_no_window_exceeds([(time, 1.0) for time in times], rpm)


async def test_a_high_rpm_lets_one_seconds_share_out_at_once_then_paces_the_rest(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=240, tpm=None)  # 4 a second: a burst of 4, then one every 0.25 s
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        for number in range(8):
            acquirers.start_soon(admit, throttle, 0, log, f"#{number}")
    assert sorted(time for _, time in log) == [0.0, 0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 1.0]


async def test_the_window_stays_the_hard_bound_over_the_pace(autojump_clock: MockClock) -> None:
    throttle = Throttle(rpm=120, tpm=None)  # 2 a second, a burst of 2
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        for number in range(122):
            acquirers.start_soon(admit, throttle, 0, log, f"#{number}")
    times = sorted(time for _, time in log)
    # Two at once, then one every 0.5 s: the 120th at 59.0. The pace would let the 121st out at
    # 59.5, a burst plus a minute's refill being more than rpm; the window holds it until the
    # first two leave at 60.
    assert times[:3] == [0.0, 0.0, 0.5]
    assert times[-3:] == [59.0, 60.0, 60.0]
    assert_no_window_exceeds([(time, 1.0) for time in times], 120)


async def run_bursts(rpm: int, bursts: list[tuple[float, int]]) -> tuple[list[float], list[float]]:
    throttle = Throttle(rpm=rpm, tpm=None)
    arrivals: list[float] = []
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        for gap, count in bursts:
            await trio.sleep(gap)
            for _ in range(count):
                arrivals.append(trio.current_time())
                acquirers.start_soon(admit, throttle, 0, log, "")
    return arrivals, sorted(time for _, time in log)


@settings(deadline=None, max_examples=40)
@given(
    rpm=st.sampled_from([1, 2, 3, 4, 5, 6, 8]),  # 60 / rpm is exact: admission times are too
    bursts=st.lists(
        st.tuples(st.sampled_from([0.0, 0.5, 7.0, 30.0, 59.0, 60.0, 61.0]), st.integers(0, 12)),
        max_size=8,
    ),
)
def test_throttle_admits_each_request_as_soon_as_the_pace_and_window_allow_and_no_sooner(
    rpm: int, bursts: list[tuple[float, int]]
) -> None:
    arrivals, admitted = trio.run(run_bursts, rpm, bursts, clock=MockClock(autojump_threshold=0))
    assert len(admitted) == len(arrivals)
    assert_no_window_exceeds([(time, 1.0) for time in admitted], rpm)
    # The k-th admission: its arrival, 60 / rpm after the one before (a burst of one below
    # 60 rpm), and once the (k-rpm)-th leaves the window.
    expected: list[float] = []
    for k, arrival in enumerate(sorted(arrivals)):
        ready = arrival
        if k >= 1:
            ready = max(ready, expected[k - 1] + 60.0 / rpm)
        if k >= rpm:
            ready = max(ready, expected[k - rpm] + 60.0)
        expected.append(ready)
    assert admitted == expected


# --- tpm ----------------------------------------------------------------------------------------


async def test_a_big_request_queued_first_is_admitted_before_later_small_ones(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=None, tpm=1000)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        await throttle.acquire(600)
        await start_in_order(acquirers, throttle, log, 900, 200)  # 200 would fit now, 900 not
        assert log == []
    # 900 once the 600 leaves at 60; 200 must then wait for the 900 to leave too.
    assert log == [("#0", 60.0), ("#1", 120.0)]


async def test_a_request_larger_than_tpm_is_admitted_alone_once_the_window_is_empty(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=None, tpm=960)  # 16 tokens a second
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        await throttle.acquire(300)
        await start_in_order(acquirers, throttle, log, 5000, 1)
    # 5000 when the 300 leaves the window at 60; then the pace: the next token waits for the
    # 5000 to be paid back at 16 a second, to within the burst of 16 (60 + 312.5 - 15 / 16).
    assert log == [("#0", 60.0), ("#1", 371.5625)]


async def test_reconcile_lowers_the_recorded_tokens_so_the_next_request_is_admitted_earlier(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=None, tpm=960)  # 16 tokens a second
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        permit = await throttle.acquire(960)  # the window is full and the pace owes 60 s
        await start_in_order(acquirers, throttle, log, 480)
        await throttle.reconcile(permit, 200)
    # Reconciled in the window (680 fit) and in the bucket: 760 tokens given back, 47.5 s.
    assert log == [("#0", 12.5)]
    assert throttle.statistics().tokens_in_window == 680


async def test_reconcile_raises_the_recorded_tokens_so_the_next_request_waits(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=None, tpm=1000)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        permit = await throttle.acquire(100)
        await throttle.reconcile(permit, 1000)
        await start_in_order(acquirers, throttle, log, 100)
    assert log == [("#0", 60.0)]


# --- 429 ----------------------------------------------------------------------------------------


async def test_rate_limited_pauses_everyone_until_exactly_retry_after(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        await throttle.rate_limited(5)
        await start_in_order(acquirers, throttle, log, 0, 10, 0)
        assert throttle.statistics().queued == 3
    assert sorted(log) == [("#0", 5.0), ("#1", 5.0), ("#2", 5.0)]
    assert throttle.statistics().pauses == 1


async def test_a_429_while_a_request_waits_on_the_window_extends_its_wait_at_once(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=1, tpm=None)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        await throttle.acquire(0)
        await start_in_order(acquirers, throttle, log, 0)  # due at 60
        await trio.sleep_until(58.0)
        await throttle.rate_limited(5)
    assert log == [("#0", 63.0)]


async def test_a_429_pauses_paced_requests_and_the_pace_resumes_after_it(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=60, tpm=None)  # one a second
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        await start_in_order(acquirers, throttle, log, 0, 0, 0)  # due at 0, 1 and 2
        await throttle.rate_limited(5)
    assert log == [("#0", 0.0), ("#1", 5.0), ("#2", 6.0)]


async def test_a_longer_429_extends_the_pause_and_a_shorter_one_does_not_shorten_it(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        await throttle.rate_limited(5)
        await start_in_order(acquirers, throttle, log, 0, 0)
        await trio.sleep_until(2.0)
        await throttle.rate_limited(10)  # until 12
        await trio.sleep_until(3.0)
        await throttle.rate_limited(1)  # until 4: ignored
        await wait_all_tasks_blocked()
        assert throttle.statistics().paused_until == 12.0
    assert sorted(log) == [("#0", 12.0), ("#1", 12.0)]
    assert throttle.statistics().pauses == 3


async def test_a_429_without_retry_after_pauses_one_second(autojump_clock: MockClock) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        await throttle.rate_limited(None)
        await start_in_order(acquirers, throttle, log, 0)
    assert log == [("#0", 1.0)]


# --- observe ------------------------------------------------------------------------------------


async def test_no_requests_remaining_pauses_until_the_reset(autojump_clock: MockClock) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        await throttle.observe(RateLimitInfo(remaining_requests=0, reset_requests=7.0))
        await start_in_order(acquirers, throttle, log, 0)
    assert log == [("#0", 7.0)]


async def test_no_tokens_remaining_with_an_unknown_reset_pauses_one_second(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        await throttle.observe(RateLimitInfo(remaining_tokens=0, remaining_requests=50))
        await start_in_order(acquirers, throttle, log, 0)
    assert log == [("#0", 1.0)]


async def test_observe_with_none_values_changes_nothing(autojump_clock: MockClock) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    async with running(throttle):
        await throttle.observe(RateLimitInfo())
        await throttle.observe(RateLimitInfo(limit_requests=10, reset_requests=30.0))
        await throttle.acquire(10)
        assert trio.current_time() == 0.0
        statistics = throttle.statistics()
    assert statistics.messages == 0
    assert statistics.fast_admitted == 1
    assert statistics.paused_until is None


async def test_remaining_requests_cap_admissions_until_the_reset(autojump_clock: MockClock) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        await throttle.observe(RateLimitInfo(remaining_requests=2, reset_requests=10.0))
        await start_in_order(acquirers, throttle, log, 0, 0)
        assert throttle.statistics().requests_available == 0
        # A stale answer (counted before our two admissions) does not raise the cap.
        await throttle.observe(RateLimitInfo(remaining_requests=50, reset_requests=10.0))
        await start_in_order(acquirers, throttle, log, 0, first=2)
    assert log == [("#0", 0.0), ("#1", 0.0), ("#2", 10.0)]


async def test_remaining_tokens_cap_admissions_until_the_reset(autojump_clock: MockClock) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        await throttle.observe(RateLimitInfo(remaining_tokens=500, reset_tokens=10.0))
        await start_in_order(acquirers, throttle, log, 400, 200)
    assert log == [("#0", 0.0), ("#1", 10.0)]


async def test_the_fast_path_returns_once_a_header_cap_lapses(autojump_clock: MockClock) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    async with running(throttle):
        await throttle.observe(RateLimitInfo(remaining_requests=5, reset_requests=10.0))
        await throttle.acquire(0)
        await trio.sleep_until(10.0)
        await throttle.acquire(0)
        statistics = throttle.statistics()
    assert (statistics.messages, statistics.fast_admitted, statistics.admitted) == (2, 1, 2)


# --- no limits ----------------------------------------------------------------------------------


async def test_without_limits_1000_acquires_take_no_time_and_send_the_actor_nothing(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    async with running(throttle):
        permits = [await throttle.acquire(100) for _ in range(1000)]
        for permit in permits:
            await throttle.reconcile(permit, 50)
        assert trio.current_time() == 0.0
        statistics = throttle.statistics()
    assert statistics.messages == 0
    assert statistics.admitted == statistics.fast_admitted == 1000
    assert statistics.requests_available is None
    assert statistics.tokens_in_window is None


# --- cancellation and shutdown ------------------------------------------------------------------


async def test_a_cancelled_acquirer_leaves_the_queue_and_does_not_delay_those_behind(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=None, tpm=960)  # 16 tokens a second
    log: Log = []

    async def impatient() -> None:
        with trio.move_on_after(5):
            await throttle.acquire(800)  # due at 60, when the 500 leaves the window
        log.append(("gave up", trio.current_time()))

    async with running(throttle), trio.open_nursery() as acquirers:
        await throttle.acquire(500)
        acquirers.start_soon(impatient)
        await wait_all_tasks_blocked()
        await start_in_order(acquirers, throttle, log, 400)  # fits the window, queued behind 800
        assert log == []
    # 400 once the pace has paid back the 500 (31.25 s), not after the 800 that gave up.
    assert sorted(log) == [("#0", 31.25), ("gave up", 5.0)]
    statistics = throttle.statistics()
    assert statistics.abandoned == 1
    assert statistics.queued == 0
    assert statistics.tokens_in_window == 900  # nothing recorded for the one that gave up


async def test_cancelling_the_actors_nursery_ends_run_and_leaves_no_task_behind(
    autojump_clock: MockClock,
) -> None:
    tasks_before = trio.lowlevel.current_statistics().tasks_living
    throttle = Throttle(rpm=1, tpm=None)
    ended: list[float] = []

    async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await throttle.run(task_status=task_status)
        finally:
            ended.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        await nursery.start(run)
        await throttle.acquire(0)
        for _ in range(3):
            nursery.start_soon(throttle.acquire, 0)
        await wait_all_tasks_blocked()
        assert throttle.statistics().queued == 3
        nursery.cancel_scope.cancel()
    assert ended == [0.0]
    assert trio.lowlevel.current_statistics().tasks_living == tasks_before


async def test_after_the_actor_stops_waiters_and_new_acquirers_get_an_error_and_reports_are_dropped(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=1, tpm=None)
    errors: list[LiteLLMError] = []

    async def waiter() -> None:
        with pytest.raises(LiteLLMError, match="not running") as info:
            await throttle.acquire(0)
        errors.append(info.value)

    async with trio.open_nursery() as callers:
        async with trio.open_nursery() as actor:
            await actor.start(throttle.run)
            await throttle.acquire(0)
            callers.start_soon(waiter)
            await wait_all_tasks_blocked()
            actor.cancel_scope.cancel()
    assert len(errors) == 1
    assert trio.current_time() == 0.0
    with pytest.raises(LiteLLMError, match="not running"):
        await throttle.acquire(0)
    await throttle.rate_limited(5)
    await throttle.observe(RateLimitInfo(remaining_requests=0))


async def test_run_can_be_called_only_once(autojump_clock: MockClock) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    async with running(throttle):
        with pytest.raises(RuntimeError, match="only once"):
            await throttle.run()


# --- statistics and arguments -------------------------------------------------------------------


async def test_statistics_is_a_frozen_snapshot_of_windows_and_room(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=60, tpm=960)  # one request and 16 tokens a second
    async with running(throttle):
        await throttle.acquire(300)
        await throttle.acquire(200)  # at 18.75: the 300 tokens paid back
        statistics = throttle.statistics()
        await trio.sleep_until(40.0)
        refilled = throttle.statistics()
        await trio.sleep_until(80.0)
        later = throttle.statistics()
    assert statistics.requests_in_window == 2
    assert statistics.tokens_in_window == 500
    # Room in the windows (58 requests, 460 tokens), none in the pace yet.
    assert (statistics.requests_available, statistics.tokens_available) == (0, 0)
    assert statistics.admitted == 2
    assert statistics.fast_admitted == 0
    # The buckets full again: a second's share of each, under the windows' room.
    assert (refilled.requests_available, refilled.tokens_available) == (1, 16)
    assert (later.requests_in_window, later.tokens_in_window) == (0, 0)
    with pytest.raises(AttributeError):
        statistics.queued = 1  # type: ignore[misc]
    assert msgspec.structs.asdict(statistics)["paused_until"] is None


@pytest.mark.parametrize("bad", [0, -5, 1.5, True])
def test_a_limit_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(ConfigError, match="rpm"):
        Throttle(rpm=bad, tpm=None)  # type: ignore[arg-type]


async def test_acquire_rejects_negative_tokens(autojump_clock: MockClock) -> None:
    with pytest.raises(ValueError, match="tokens"):
        await Throttle(rpm=None, tpm=None).acquire(-1)


# --- the scope of a pause: one model group, or everyone ------------------------------------------


async def admit_for(throttle: Throttle, model: str | None, log: Log, name: str) -> None:
    await throttle.acquire(0, model)
    log.append((name, trio.current_time()))


async def start_for(nursery: trio.Nursery, throttle: Throttle, log: Log, *models: str) -> None:
    """Start one acquirer per model, each queued before the next starts; named after the model
    and its place (``a#0``)."""
    for number, model in enumerate(models):
        nursery.start_soon(admit_for, throttle, model, log, f"{model}#{number}")
        await wait_all_tasks_blocked()


async def test_a_429_for_one_model_pauses_that_model_only(autojump_clock: MockClock) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        await throttle.rate_limited(5, model="throttled")
        await start_for(acquirers, throttle, log, "throttled", "local", "local")
        statistics = throttle.statistics()
    assert sorted(log) == [("local#1", 0.0), ("local#2", 0.0), ("throttled#0", 5.0)]
    assert statistics.paused_models == {"throttled": 5.0}
    assert statistics.paused_until is None
    assert (statistics.queued, statistics.parked) == (1, 1)


async def test_a_429_for_everyone_pauses_every_model(autojump_clock: MockClock) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        await throttle.rate_limited(5, model="throttled")
        await throttle.rate_limited(3)
        await start_for(acquirers, throttle, log, "throttled", "local")
        statistics = throttle.statistics()
    assert sorted(log) == [("local#1", 3.0), ("throttled#0", 5.0)]
    assert statistics.paused_until == 3.0
    assert statistics.paused_models == {"throttled": 5.0}
    assert statistics.pauses == 2


async def test_a_waiter_held_by_its_models_pause_does_not_hold_up_the_window_queue(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=2, tpm=None)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        await throttle.rate_limited(90, model="throttled")
        await start_for(acquirers, throttle, log, "throttled", "local", "local", "local")
    # The pace's order holds for the rest: one every 30 s; the throttled one, parked, takes
    # its turn once its pause ends at 90.
    assert sorted(log) == [
        ("local#1", 0.0),
        ("local#2", 30.0),
        ("local#3", 60.0),
        ("throttled#0", 90.0),
    ]


async def test_a_parked_waiter_goes_back_in_front_of_later_ones_when_its_pause_ends(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=1, tpm=None)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        await throttle.acquire(0, "local")  # the window is full until 60
        await throttle.rate_limited(10, model="throttled")
        await start_for(acquirers, throttle, log, "local", "throttled", "local")
    # At 60 the first local goes; the throttled one (unparked at 10) is then first in line.
    assert log == [("local#0", 60.0), ("throttled#1", 120.0), ("local#2", 180.0)]


async def test_a_cancelled_parked_waiter_is_forgotten(autojump_clock: MockClock) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    async with running(throttle), trio.open_nursery() as nursery:
        await throttle.rate_limited(30, model="throttled")
        with trio.move_on_after(2.0):
            await throttle.acquire(0, "throttled")
        await wait_all_tasks_blocked()
        statistics = throttle.statistics()
        nursery.cancel_scope.cancel()
    assert (statistics.queued, statistics.parked, statistics.abandoned) == (0, 0, 1)


async def test_no_requests_remaining_for_a_model_pauses_that_model_only(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        info = RateLimitInfo(remaining_requests=0, limit_requests=20, reset_requests=7.0)
        await throttle.observe(info, model="limited")
        await start_for(acquirers, throttle, log, "limited", "local")
        assert throttle.statistics().paused_models == {"limited": 7.0}
    assert sorted(log) == [("limited#0", 7.0), ("local#1", 0.0)]


async def test_a_models_header_cap_counts_only_that_models_admissions(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        await throttle.observe(RateLimitInfo(remaining_requests=1, reset_requests=10.0), model="a")
        await start_for(acquirers, throttle, log, "b", "a", "b", "a")
        assert throttle.statistics().requests_available is None  # no cap for everyone
    assert sorted(log) == [("a#1", 0.0), ("a#3", 10.0), ("b#0", 0.0), ("b#2", 0.0)]


async def test_other_models_keep_the_fast_path_while_one_model_is_paused(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        await throttle.rate_limited(5, model="throttled")
        await start_for(acquirers, throttle, log, "throttled")
        for _ in range(100):
            await throttle.acquire(10, "local")
        statistics = throttle.statistics()
    assert statistics.fast_admitted == 100
    assert statistics.messages == 2  # the 429 and the throttled acquirer
    assert log == [("throttled#0", 5.0)]


# A 429 is posted at a whole second and lasts a quarter more, an acquire comes at a half second:
# no two events of the property below fall at the same time.
pause_strategy = st.tuples(
    st.integers(0, 20), st.sampled_from(["a", "b", None]), st.integers(1, 10)
)
acquire_strategy = st.tuples(st.integers(0, 20), st.sampled_from(["a", "b"]))


@settings(max_examples=200, deadline=None)
@given(
    pauses=st.lists(pause_strategy, max_size=6),
    acquires=st.lists(acquire_strategy, min_size=1, max_size=6),
)
def test_each_request_waits_exactly_for_the_pauses_of_its_model_and_everyone(
    pauses: list[tuple[int, str | None, int]], acquires: list[tuple[int, str]]
) -> None:
    def expected(at: float, model: str) -> float:
        admitted = at
        moved = True
        while moved:  # a pause posted while it waits extends its wait
            moved = False
            for start, scope, seconds in pauses:
                if scope in (model, None) and start <= admitted < start + seconds + 0.25:
                    admitted = start + seconds + 0.25
                    moved = True
        return admitted

    admitted: dict[int, float] = {}

    async def acquirer(number: int, at: float, model: str) -> None:
        await trio.sleep_until(at)
        await throttle.acquire(0, model)
        admitted[number] = trio.current_time()

    async def pauser(at: float, scope: str | None, seconds: int) -> None:
        await trio.sleep_until(at)
        await throttle.rate_limited(seconds + 0.25, model=scope)

    async def main() -> None:
        async with running(throttle), trio.open_nursery() as nursery:
            for start, scope, seconds in pauses:
                nursery.start_soon(pauser, float(start), scope, seconds)
            for number, (start, model) in enumerate(acquires):
                nursery.start_soon(acquirer, number, start + 0.5, model)

    throttle = Throttle(rpm=None, tpm=None)
    trio.run(main, clock=MockClock(autojump_threshold=0))
    assert admitted == {
        number: expected(start + 0.5, model) for number, (start, model) in enumerate(acquires)
    }


# --- Restrictions: the pure arithmetic of one scope ----------------------------------------------


def test_restrictions_pause_extends_and_never_shortens() -> None:
    restrictions = Restrictions()
    assert restrictions.ready_at(0, 0.0) == 0.0
    assert restrictions.pause(10.0) == 10.0
    assert restrictions.pause(4.0) == 10.0
    assert restrictions.ready_at(0, 3.0) == 10.0
    assert restrictions.ready_at(0, 10.0) == 10.0
    assert not restrictions.paused(10.0)


@settings(max_examples=200)
@given(
    remaining=st.integers(1, 50),
    reset=st.floats(0.5, 100.0),
    asks=st.lists(st.integers(0, 20), max_size=60),
)
def test_restrictions_token_cap_admits_at_most_what_is_left_before_the_reset(
    remaining: int, reset: float, asks: list[int]
) -> None:
    restrictions = Restrictions()
    restrictions.observe(RateLimitInfo(remaining_tokens=remaining, reset_tokens=reset), 0.0)
    granted = 0
    for tokens in asks:
        ready = restrictions.ready_at(tokens, 0.0)
        assert ready in (0.0, reset)
        if ready == 0.0:
            restrictions.grant(tokens)
            granted += tokens
    assert granted <= remaining
    assert all(restrictions.ready_at(tokens, reset) == reset for tokens in asks)


# --- LiteLLM's limiter: a scope's x-ratelimit-<scope>-remaining-* ---------------------------------


@pytest.mark.parametrize("scope", ["api_key", "user", "team", "team_member", "end_user"])
async def test_nothing_left_for_a_key_user_or_team_pauses_everyone_for_the_limiters_window(
    autojump_clock: MockClock, scope: str
) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        info = RateLimitInfo(remaining_requests=0, limit_requests=4)
        await throttle.observe(RateLimitInfo(), model="a", scopes={scope: info})
        await start_for(acquirers, throttle, log, "a", "b")
        statistics = throttle.statistics()
    assert sorted(log) == [("a#0", LIMITER_WINDOW), ("b#1", LIMITER_WINDOW)]
    assert LIMITER_WINDOW == 60.0
    assert statistics.paused_until == LIMITER_WINDOW
    assert statistics.paused_models == {}
    assert statistics.pauses == 1


async def test_no_tokens_left_for_the_key_pauses_everyone(autojump_clock: MockClock) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        info = RateLimitInfo(remaining_tokens=0, limit_tokens=100)
        await throttle.observe(RateLimitInfo(), model="a", scopes={"api_key": info})
        await start_for(acquirers, throttle, log, "b")
    assert log == [("b#0", 60.0)]


@pytest.mark.parametrize(
    "scope", ["model_per_key", "model_per_team", "model_per_organization", "priority_model"]
)
async def test_nothing_left_for_a_model_scope_pauses_that_model_only(
    autojump_clock: MockClock, scope: str
) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        info = RateLimitInfo(remaining_requests=0, limit_requests=5)
        await throttle.observe(RateLimitInfo(), model="a", scopes={scope: info})
        await start_for(acquirers, throttle, log, "a", "b")
        statistics = throttle.statistics()
    assert sorted(log) == [("a#0", 60.0), ("b#1", 0.0)]
    assert statistics.paused_models == {"a": 60.0}
    assert statistics.paused_until is None


async def test_a_model_scope_of_a_request_for_no_model_pauses_everyone(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    async with running(throttle):
        info = RateLimitInfo(remaining_requests=0)
        await throttle.observe(RateLimitInfo(), scopes={"model_per_key": info})
        await throttle.acquire(0, "b")
    assert trio.current_time() == 60.0


async def test_what_is_left_for_the_key_caps_every_models_admissions(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    log: Log = []
    async with running(throttle), trio.open_nursery() as acquirers:
        info = RateLimitInfo(remaining_requests=2, limit_requests=4)
        await throttle.observe(RateLimitInfo(), model="a", scopes={"api_key": info})
        await wait_all_tasks_blocked()
        assert throttle.statistics().requests_available == 2
        await start_for(acquirers, throttle, log, "a", "b", "a")
    assert log == [("a#0", 0.0), ("b#1", 0.0), ("a#2", 60.0)]


async def test_the_key_and_the_deployment_each_pause_their_own_scope_from_one_answer(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    async with running(throttle):
        deployment = RateLimitInfo(remaining_requests=0, reset_requests=90.0)
        key = RateLimitInfo(remaining_requests=0)
        await throttle.observe(deployment, model="a", scopes={"api_key": key})
        await wait_all_tasks_blocked()
        statistics = throttle.statistics()
    assert (statistics.paused_until, statistics.paused_models) == (60.0, {"a": 90.0})
    assert statistics.pauses == 2


async def test_a_reset_sent_for_a_scope_is_used_instead_of_the_window(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    async with running(throttle):
        info = RateLimitInfo(remaining_requests=0, reset_requests=12.0)
        await throttle.observe(RateLimitInfo(), model="a", scopes={"api_key": info})
        await throttle.acquire(0, "b")
    assert trio.current_time() == 12.0


async def test_an_answer_without_any_remaining_count_sends_the_actor_nothing(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=None, tpm=None)
    async with running(throttle):
        await throttle.observe(RateLimitInfo(), model="a", scopes={})
        await throttle.observe(RateLimitInfo(), model="a", scopes={"user": RateLimitInfo()})
        await throttle.acquire(0, "a")
        statistics = throttle.statistics()
    assert (statistics.messages, statistics.fast_admitted) == (0, 1)
