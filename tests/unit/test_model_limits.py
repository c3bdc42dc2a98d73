"""Per-model limits: ``ModelLimits`` validation, and the throttle admitting each model under its
own rpm / tpm as well as the client's, without one model's wait holding up another's.

Async tests run on ``MockClock(autojump_threshold=0)``, so admission times are exact.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from trio.testing import MockClock, wait_all_tasks_blocked

from trio_litellm import ClientConfig, ConfigError, ModelLimits
from trio_litellm._throttle import Throttle

Log = list[tuple[str, float]]


@asynccontextmanager
async def running(throttle: Throttle) -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        await nursery.start(throttle.run)
        yield nursery
        nursery.cancel_scope.cancel()


async def admit(throttle: Throttle, model: str, tokens: int, log: Log, name: str) -> None:
    await throttle.acquire(tokens, model)
    log.append((name, trio.current_time()))


async def start_in_order(
    nursery: trio.Nursery, throttle: Throttle, log: Log, *asks: tuple[str, str, int]
) -> None:
    for name, model, tokens in asks:
        nursery.start_soon(admit, throttle, model, tokens, log, name)
        await wait_all_tasks_blocked()


def by_time(log: Log) -> Log:
    """The log by time, then name: tasks woken at one instant run in an order trio chooses."""
    return sorted(log, key=lambda entry: (entry[1], entry[0]))


# --- ModelLimits and the config ----------------------------------------------------------------


def test_model_limits_is_frozen_and_any_subset_may_be_set() -> None:
    limits = ModelLimits(rpm=500)
    assert (limits.rpm, limits.tpm, limits.max_in_flight) == (500, None, None)
    with pytest.raises(AttributeError):
        limits.rpm = 1  # type: ignore[misc]


@pytest.mark.parametrize("field", ["rpm", "tpm", "max_in_flight"])
@pytest.mark.parametrize("value", [0, -1, 1.5, True, "10"])
def test_a_bad_model_limit_is_a_config_error_naming_its_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        ModelLimits(**{field: value})  # type: ignore[arg-type]
    assert caught.value.field == field


def test_model_limits_in_the_config_are_keyed_by_model() -> None:
    config = ClientConfig(model_limits={"gpt-4o": ModelLimits(rpm=500, max_in_flight=4)})
    assert config.model_limits == {"gpt-4o": ModelLimits(rpm=500, max_in_flight=4)}


def test_model_limits_may_be_given_as_plain_mappings() -> None:
    config = ClientConfig(model_limits={"gpt-4o": {"tpm": 1000}})
    assert config.model_limits["gpt-4o"] == ModelLimits(tpm=1000)


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        ({"": ModelLimits(rpm=1)}, "model_limits"),
        ({"m": 5}, "model_limits"),
        ({"m": {"rpm": 0}}, "rpm"),
        ({"m": {"rmp": 1}}, "model_limits"),
        ([("m", ModelLimits())], "model_limits"),
    ],
)
def test_bad_model_limits_in_the_config_are_config_errors(limits: object, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ClientConfig(model_limits=limits)  # type: ignore[arg-type]
    assert caught.value.field == field


# --- the throttle ------------------------------------------------------------------------------


async def test_a_model_starts_its_rpm_spread_across_the_minute(autojump_clock: MockClock) -> None:
    throttle = Throttle(rpm=None, tpm=None, model_limits={"a": ModelLimits(rpm=2)})
    log: Log = []
    async with running(throttle) as nursery:
        await start_in_order(nursery, throttle, log, ("a0", "a", 0), ("a1", "a", 0), ("a2", "a", 0))
        await trio.sleep(61)
    assert by_time(log) == [("a0", 0.0), ("a1", 30.0), ("a2", 60.0)]


async def test_a_model_waiting_on_its_own_rpm_lets_other_models_pass(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=None, tpm=None, model_limits={"a": ModelLimits(rpm=1)})
    log: Log = []
    async with running(throttle) as nursery:
        await start_in_order(
            nursery, throttle, log, ("a0", "a", 0), ("a1", "a", 0), ("b0", "b", 0), ("a2", "a", 0)
        )
        await trio.sleep(121)
    assert by_time(log) == [("a0", 0.0), ("b0", 0.0), ("a1", 60.0), ("a2", 120.0)]


async def test_a_request_counts_against_the_client_rpm_and_its_models(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=3, tpm=None, model_limits={"a": ModelLimits(rpm=2)})
    log: Log = []
    async with running(throttle) as nursery:
        await start_in_order(
            nursery,
            throttle,
            log,
            ("a0", "a", 0),
            ("a1", "a", 0),
            ("a2", "a", 0),
            ("b0", "b", 0),
            ("b1", "b", 0),
        )
        await trio.sleep(121)
    # The client paces one every 20 s, a one every 30 s. a1 and a2 wait for a's pace, parked,
    # so b0 goes first, at 20; a1, unparked at 30, is then first for the client's pace (40);
    # a2 waits for a's pace again (70), so b1 takes the client's next turn (60), and a2 the one
    # after (80).
    assert by_time(log) == [("a0", 0.0), ("b0", 20.0), ("a1", 40.0), ("b1", 60.0), ("a2", 80.0)]


async def test_a_model_tpm_is_reconciled_with_real_usage(autojump_clock: MockClock) -> None:
    throttle = Throttle(rpm=None, tpm=None, model_limits={"a": ModelLimits(tpm=120)})
    log: Log = []
    async with running(throttle) as nursery:
        permit = await throttle.acquire(100, "a")  # 2 tokens a second: 50 s of pace
        await throttle.reconcile(permit, 40)  # 30 s of it given back
        await wait_all_tasks_blocked()
        await start_in_order(nursery, throttle, log, ("a1", "a", 80), ("a2", "a", 80))
        await trio.sleep(81)
    # a1 fits the window (40 + 80) once the pace allows, at 20 rather than 60; a2 waits for the
    # window, until a1 leaves it.
    assert by_time(log) == [("a1", 20.0), ("a2", 80.0)]


async def test_an_unlimited_model_keeps_the_fast_path(autojump_clock: MockClock) -> None:
    throttle = Throttle(rpm=None, tpm=None, model_limits={"a": ModelLimits(rpm=5)})
    async with running(throttle):
        await throttle.acquire(0, "b")
        await throttle.acquire(0, "a")
        stats = throttle.statistics()
    assert (stats.admitted, stats.fast_admitted) == (2, 1)


async def test_a_model_with_only_a_concurrency_limit_keeps_the_fast_path(
    autojump_clock: MockClock,
) -> None:
    throttle = Throttle(rpm=None, tpm=None, model_limits={"a": ModelLimits(max_in_flight=1)})
    async with running(throttle):
        await throttle.acquire(0, "a")
        assert throttle.statistics().fast_admitted == 1


async def test_statistics_show_each_limited_models_usage(autojump_clock: MockClock) -> None:
    throttle = Throttle(rpm=None, tpm=None, model_limits={"a": ModelLimits(rpm=2, tpm=120)})
    async with running(throttle) as nursery:
        await throttle.acquire(30, "a")
        nursery.start_soon(throttle.acquire, 0, "a")
        nursery.start_soon(throttle.acquire, 0, "a")
        await wait_all_tasks_blocked()
        usage = throttle.statistics().models["a"]
        assert (usage.rpm, usage.tpm) == (2, 120)
        assert (usage.requests_in_window, usage.tokens_in_window) == (1, 30)
        assert (usage.requests_available, usage.tokens_available) == (0, 0)  # paced
        assert usage.waiting == 2
        await trio.sleep(61)  # admitted at 0, 30 and 60
        assert throttle.statistics().models["a"].requests_in_window == 2


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(min_value=0, max_value=40)),
        min_size=1,
        max_size=40,
    )
)
def test_no_model_ever_starts_more_than_its_rpm_in_any_minute(
    asks: list[tuple[str, float]],
) -> None:
    limits = {"a": 3, "b": 5}
    starts: dict[str, list[float]] = {"a": [], "b": [], "c": []}

    async def main() -> None:
        throttle = Throttle(
            rpm=6, tpm=None, model_limits={m: ModelLimits(rpm=n) for m, n in limits.items()}
        )

        async def one(model: str, delay: float) -> None:
            await trio.sleep(delay)
            await throttle.acquire(0, model)
            starts[model].append(trio.current_time())

        async with running(throttle):
            async with trio.open_nursery() as inner:
                for model, delay in asks:
                    inner.start_soon(one, model, delay)

    trio.run(main, clock=MockClock(autojump_threshold=0))
    everyone = sorted(t for times in starts.values() for t in times)
    assert len(everyone) == len(asks)
    for model, times in [*((m, starts[m]) for m in limits), ("*", everyone)]:
        limit = limits.get(model, 6)
        for start in times:
            assert len([t for t in times if start <= t < start + 60.0]) <= limit, (model, times)
