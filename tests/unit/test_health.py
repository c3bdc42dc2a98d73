"""The health monitor and its gate, on trio's MockClock: every time asserted is exact.

Its changes are watched as a client's user watches them: a subscription to the event bus that
takes only :class:`HealthChanged`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from trio_litellm._events import EventBus, HealthChanged
from trio_litellm._health import Gate, HealthMonitor, MonitorStatistics, ProbeResult

Scripted = str | None | ProbeResult | Exception
"""A probe's answer in a script: a reason (down), None (up), a whole result, or an exception."""


class ScriptedProbe:
    """Answers from a script (then ``default``), taking ``latency`` seconds; records call times."""

    def __init__(
        self, script: list[Scripted], *, latency: float = 0.0, default: Scripted = None
    ) -> None:
        self.script = list(script)
        self.latency = latency
        self.default = default
        self.calls: list[float] = []

    async def __call__(self) -> ProbeResult:
        self.calls.append(trio.current_time())
        if self.latency:
            await trio.sleep(self.latency)
        else:
            await trio.lowlevel.checkpoint()
        result = self.script.pop(0) if self.script else self.default
        if isinstance(result, Exception):
            raise result
        return result if isinstance(result, ProbeResult) else ProbeResult(failure=result)


def make_monitor(
    probe: ScriptedProbe,
    *,
    events: EventBus | None = None,
    interval: float = 5.0,
    down_interval: float = 2.0,
    failure_threshold: int = 3,
) -> HealthMonitor:
    return HealthMonitor(
        probe,
        events=events if events is not None else EventBus(),
        interval=interval,
        down_interval=down_interval,
        failure_threshold=failure_threshold,
    )


def watched(
    probe: ScriptedProbe,
    *,
    interval: float = 5.0,
    down_interval: float = 2.0,
    failure_threshold: int = 3,
) -> tuple[HealthMonitor, trio.MemoryReceiveChannel[HealthChanged]]:
    """A monitor, and a subscription to its changes on the bus it emits them on."""
    bus = EventBus()
    changes = bus.subscribe(only=HealthChanged)
    monitor = make_monitor(
        probe,
        events=bus,
        interval=interval,
        down_interval=down_interval,
        failure_threshold=failure_threshold,
    )
    return monitor, changes


@asynccontextmanager
async def running(monitor: HealthMonitor) -> AsyncIterator[trio.Nursery]:
    """Run the monitor in a nursery that is cancelled (as the client does) when the block ends."""
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run)
        yield nursery
        nursery.cancel_scope.cancel()


def drain(receive: trio.MemoryReceiveChannel[HealthChanged]) -> list[HealthChanged]:
    """Every event waiting in ``receive``, whether or not its sender has closed it."""
    events = []
    while True:
        try:
            events.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return events


def down(at: float, reason: str) -> HealthChanged:
    return HealthChanged(state="down", previous="up", at=at, reason=reason)


def up(at: float) -> HealthChanged:
    return HealthChanged(state="up", previous="down", at=at, reason="probe succeeded")


# --- starting ---------------------------------------------------------------------------------


def test_it_starts_up_with_the_gate_open_before_any_probe() -> None:
    monitor = make_monitor(ScriptedProbe([]))
    assert monitor.state == "up"
    assert monitor.gate.is_open
    assert monitor.statistics().probes == 0


@pytest.mark.parametrize(
    ("interval", "down_interval", "failure_threshold"),
    [(0, 1, 1), (1, 0, 1), (1, -1, 1), (1, 1, 0)],
)
def test_it_refuses_meaningless_settings(
    interval: float, down_interval: float, failure_threshold: int
) -> None:
    with pytest.raises(ValueError, match="must be"):
        HealthMonitor(
            ScriptedProbe([]),
            events=EventBus(),
            interval=interval,
            down_interval=down_interval,
            failure_threshold=failure_threshold,
        )


async def test_run_is_ready_at_once_and_probes_immediately(autojump_clock: object) -> None:
    probe = ScriptedProbe([])
    monitor = make_monitor(probe)
    async with running(monitor):
        assert trio.current_time() == 0
        await trio.testing.wait_all_tasks_blocked()
        assert probe.calls == [0]


async def test_run_can_be_called_only_once(autojump_clock: object) -> None:
    monitor = make_monitor(ScriptedProbe([]))
    async with running(monitor):
        pass
    with pytest.raises(RuntimeError, match="only once"):
        await monitor.run()


# --- up ---------------------------------------------------------------------------------------


async def test_healthy_probes_keep_it_up_with_one_probe_every_interval(
    autojump_clock: object,
) -> None:
    probe = ScriptedProbe([])
    monitor, events = watched(probe, interval=5)
    async with running(monitor):
        await trio.sleep_until(22)
        assert monitor.state == "up"
        assert monitor.gate.is_open
    assert probe.calls == [0, 5, 10, 15, 20]
    assert drain(events) == []


async def test_the_interval_runs_from_probe_start_to_probe_start(autojump_clock: object) -> None:
    probe = ScriptedProbe([], latency=1.5)
    monitor = make_monitor(probe, interval=5)
    async with running(monitor):
        await trio.sleep_until(16)
    assert probe.calls == [0, 5, 10, 15]


async def test_threshold_consecutive_failures_mark_it_down_at_that_probe(
    autojump_clock: object,
) -> None:
    probe = ScriptedProbe([None, "e1", "e2", "e3"], default="still down")
    monitor, events = watched(probe, interval=5, down_interval=2, failure_threshold=3)
    async with running(monitor):
        await trio.sleep_until(10.5)
        assert monitor.statistics().state == "up"
        assert monitor.gate.is_open
        assert await events.receive() == down(15, "e3")
        assert trio.current_time() == 15
        assert monitor.state == "down"
        assert not monitor.gate.is_open
        await trio.sleep_until(30)
    assert drain(events) == []  # failures while down change nothing
    assert probe.calls[:4] == [0, 5, 10, 15]


async def test_a_success_between_failures_resets_the_count(autojump_clock: object) -> None:
    probe = ScriptedProbe(["a", "b", None, "c", "d", None])
    monitor, events = watched(probe, interval=5, failure_threshold=3)
    async with running(monitor):
        await trio.sleep_until(21)
        assert monitor.statistics().consecutive_failures == 2
        await trio.sleep_until(26)
        assert monitor.statistics().consecutive_failures == 0
    assert monitor.state == "up"
    assert probe.calls == [0, 5, 10, 15, 20, 25]
    assert drain(events) == []


# --- down -------------------------------------------------------------------------------------


async def test_while_down_it_probes_every_down_interval(autojump_clock: object) -> None:
    probe = ScriptedProbe([], default="refused")
    monitor = make_monitor(probe, interval=5, down_interval=2, failure_threshold=1)
    async with running(monitor):
        await trio.sleep_until(9)
    assert probe.calls == [0, 2, 4, 6, 8]


async def test_the_first_success_reopens_the_gate_and_wakes_every_waiter(
    autojump_clock: object,
) -> None:
    probe = ScriptedProbe(["x", "x", "x", None])
    monitor, events = watched(probe, interval=5, down_interval=2, failure_threshold=1)
    woke: list[tuple[int, float]] = []

    async def waiter(n: int) -> None:
        await monitor.gate.wait_open()
        woke.append((n, trio.current_time()))

    async with running(monitor) as nursery:
        await trio.testing.wait_all_tasks_blocked()
        assert not monitor.gate.is_open
        for n in range(5):
            nursery.start_soon(waiter, n)
        await trio.testing.wait_all_tasks_blocked()
        assert monitor.gate.statistics().tasks_waiting == 5
        await trio.sleep_until(6.5)
        assert sorted(woke) == [(n, 6) for n in range(5)]
        assert monitor.state == "up"
        assert monitor.statistics().consecutive_failures == 0
        await trio.sleep_until(12)
    assert probe.calls == [0, 2, 4, 6, 11]
    assert drain(events) == [down(0, "x"), up(6)]


# --- reported connection failures ------------------------------------------------------------


async def test_a_report_probes_at_once_and_a_failed_probe_means_down_at_once(
    autojump_clock: object,
) -> None:
    probe = ScriptedProbe([None, "connection refused"], default="connection refused")
    monitor, events = watched(probe, interval=10, down_interval=4, failure_threshold=3)
    async with running(monitor):
        await trio.sleep_until(3)
        await monitor.report_connection_failure("ConnectError: refused")
        await trio.testing.wait_all_tasks_blocked()
        assert trio.current_time() == 3
        assert monitor.state == "down"
        assert not monitor.gate.is_open
        await trio.sleep_until(8)
    assert probe.calls == [0, 3, 7]
    assert drain(events) == [down(3, "connection refused")]
    stats = monitor.statistics()
    assert (stats.reports, stats.last_report) == (1, "ConnectError: refused")


async def test_a_burst_of_reports_triggers_one_probe(autojump_clock: object) -> None:
    probe = ScriptedProbe([], latency=0.5)
    monitor = make_monitor(probe, interval=10, failure_threshold=3)
    async with running(monitor):
        await trio.sleep_until(3)
        async with trio.open_nursery() as reporters:
            for n in range(50):
                reporters.start_soon(monitor.report_connection_failure, f"refused {n}")
        await trio.sleep_until(12)
    assert probe.calls == [0, 3]  # the next scheduled probe is at 13
    stats = monitor.statistics()
    assert stats.reports + stats.reports_dropped == 50
    assert stats.reports_dropped >= 48


async def test_a_report_while_the_probe_succeeds_leaves_it_up(autojump_clock: object) -> None:
    probe = ScriptedProbe([])
    monitor, events = watched(probe, interval=10, failure_threshold=3)
    async with running(monitor):
        await trio.sleep_until(3)
        await monitor.report_connection_failure("reset by peer")
        await trio.sleep_until(14)
        assert monitor.state == "up"
        assert monitor.gate.is_open
    assert probe.calls == [0, 3, 13]
    assert drain(events) == []


async def test_a_report_during_a_probe_is_answered_by_that_probe(autojump_clock: object) -> None:
    probe = ScriptedProbe([None, "timed out"], latency=1)
    monitor, events = watched(probe, interval=5, failure_threshold=3)
    async with running(monitor):
        await trio.sleep_until(5.5)
        await monitor.report_connection_failure("refused")
        await trio.sleep_until(6.5)
    assert probe.calls == [0, 5]
    assert drain(events) == [down(6, "timed out")]


async def test_reports_while_down_are_ignored(autojump_clock: object) -> None:
    probe = ScriptedProbe([], default="refused")
    monitor = make_monitor(probe, interval=5, down_interval=4, failure_threshold=1)
    async with running(monitor):
        await trio.sleep_until(1)
        await monitor.report_connection_failure("refused")
        await trio.sleep_until(9)
    assert probe.calls == [0, 4, 8]
    assert monitor.statistics().reports == 0


# --- probes that raise -------------------------------------------------------------------------


async def test_a_probe_that_raises_counts_as_a_failure_with_its_text(
    autojump_clock: object,
) -> None:
    probe = ScriptedProbe([OSError("connection refused")])
    monitor, events = watched(probe, failure_threshold=1)
    async with running(monitor):
        await trio.sleep_until(1)
    reason = "probe raised OSError: connection refused"
    assert drain(events) == [down(0, reason)]
    assert monitor.statistics().last_failure == reason


# --- a health route something in front of the proxy answers ------------------------------------

GATEWAY_404 = "/health/liveliness answered 404, so GET /v1/models decides"


def via_models(failure: str | None = None) -> ProbeResult:
    """A probe behind a gateway that passes only /v1/*: decided by GET /v1/models."""
    return ProbeResult(failure=failure, health_route="missing", detail=GATEWAY_404)


async def test_probes_decided_without_the_health_route_keep_it_up_through_every_interval(
    autojump_clock: object,
) -> None:
    probe = ScriptedProbe([], default=via_models())
    monitor, events = watched(probe, interval=5, failure_threshold=2)
    async with running(monitor):
        await trio.sleep_until(99)
        assert monitor.gate.is_open
    assert probe.calls == [5.0 * n for n in range(20)]
    stats = monitor.statistics()
    assert (stats.state, stats.failed_probes, stats.transitions) == ("up", 0, 0)
    assert stats.health_route == "missing"
    assert drain(events) == []


async def test_without_the_health_route_a_failed_fallback_still_brings_it_down_and_back_up(
    autojump_clock: object,
) -> None:
    bad_gateway = "GET /v1/models answered 502"
    probe = ScriptedProbe([via_models(), via_models(bad_gateway), via_models(bad_gateway)])
    probe.default = via_models()
    monitor, events = watched(probe, interval=5, down_interval=2, failure_threshold=2)
    async with running(monitor):
        await trio.sleep_until(11)
        assert not monitor.gate.is_open
        await trio.sleep_until(13)
        assert monitor.gate.is_open
    assert probe.calls == [0, 5, 10, 12]
    assert drain(events) == [down(10, bad_gateway), up(12)]


async def test_a_missing_health_route_is_said_once_at_debug_and_so_is_its_return(
    autojump_clock: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_litellm")
    no_answer = ProbeResult(failure="cannot connect to the proxy", health_route="unknown")
    script: list[Scripted] = [via_models()] * 5 + [no_answer, OSError("reset")] + [via_models()] * 3
    probe = ScriptedProbe(script, default=ProbeResult())
    monitor = make_monitor(probe, interval=1, down_interval=1, failure_threshold=5)
    assert monitor.statistics().health_route == "unknown"
    async with running(monitor):
        await trio.sleep_until(9.5)
        # five probes via /v1/models, two with no answer at all, three via /v1/models again
        assert monitor.statistics().health_route == "missing"
        await trio.sleep_until(15)
    assert monitor.statistics().health_route == "present"
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "health route" in r.getMessage()]
    assert said == [
        (
            logging.DEBUG,
            "the proxy's health route is not reachable (a gateway that passes only /v1/*?): "
            + GATEWAY_404,
        ),
        (logging.DEBUG, "the proxy's health route answers again; health is decided from it"),
    ]


async def test_a_probe_that_raises_leaves_the_health_route_unknown(autojump_clock: object) -> None:
    monitor = make_monitor(ScriptedProbe([OSError("refused")]))
    async with running(monitor):
        await trio.sleep_until(1)
    assert monitor.statistics().health_route == "unknown"


# --- the gate ---------------------------------------------------------------------------------


async def test_wait_open_returns_at_once_when_open(autojump_clock: object) -> None:
    gate = Gate()
    await gate.wait_open()
    assert trio.current_time() == 0


async def test_wait_open_is_cancellable_and_leaves_nothing_behind(autojump_clock: object) -> None:
    gate = Gate()
    gate._close()
    with trio.move_on_after(1) as scope:
        await gate.wait_open()
    assert scope.cancelled_caught
    assert trio.current_time() == 1
    assert gate.statistics().tasks_waiting == 0
    gate._open()
    await gate.wait_open()
    assert trio.current_time() == 1


async def test_a_waiter_does_not_pass_a_gate_that_closed_again_before_it_ran() -> None:
    gate = Gate()
    gate._close()
    passed = trio.Event()

    async def waiter() -> None:
        await gate.wait_open()
        passed.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        gate._open()
        gate._close()
        await trio.testing.wait_all_tasks_blocked()
        assert not passed.is_set()
        assert gate.statistics().tasks_waiting == 1
        gate._open()
    assert passed.is_set()


# --- listeners ----------------------------------------------------------------------------------


async def test_a_slow_listener_never_blocks_the_monitor_and_misses_only_its_own_events(
    autojump_clock: object,
) -> None:
    probe = ScriptedProbe(["x", None, "x", None, "x"])
    bus = EventBus()
    slow = bus.subscribe(buffer=1, only=HealthChanged)
    fast = bus.subscribe(only=HealthChanged)
    monitor = make_monitor(probe, events=bus, interval=5, down_interval=5, failure_threshold=1)
    seen: list[HealthChanged] = []

    async def read_fast() -> None:
        async for event in fast:
            seen.append(event)

    async with running(monitor) as nursery:
        nursery.start_soon(read_fast)
        await trio.sleep_until(21)
    assert probe.calls == [0, 5, 10, 15, 20]
    assert seen == [down(0, "x"), up(5), down(10, "x"), up(15), down(20, "x")]
    assert drain(slow) == [down(0, "x")]
    assert bus.statistics().missed_by_subscribers == 4


async def test_stopping_the_monitor_opens_the_gate_and_later_reports_do_nothing(
    autojump_clock: object,
) -> None:
    probe = ScriptedProbe([], default="refused")
    monitor, events = watched(probe, failure_threshold=1)
    released: list[float] = []

    async def waiter() -> None:
        await monitor.gate.wait_open()
        released.append(trio.current_time())

    async with trio.open_nursery() as outer:
        async with running(monitor):
            await trio.testing.wait_all_tasks_blocked()
            assert not monitor.gate.is_open
            outer.start_soon(waiter)
            await trio.sleep_until(3)
        assert monitor.gate.is_open
    assert released == [3]
    assert drain(events) == [down(0, "refused")]  # the gate's opening on exit is no transition
    await monitor.report_connection_failure("after the end")  # a no-op, never an error
    assert monitor.statistics().reports == 0


# --- statistics -------------------------------------------------------------------------------


async def test_statistics_is_a_frozen_snapshot_of_the_monitor(autojump_clock: object) -> None:
    probe = ScriptedProbe([None, "a", "b"], latency=0.25)
    monitor, listener = watched(probe, interval=5, down_interval=2, failure_threshold=2)
    async with running(monitor):
        await trio.sleep_until(11)
        stats = monitor.statistics()
    assert stats == MonitorStatistics(
        state="down",
        gate_open=False,
        probes=3,
        failed_probes=2,
        consecutive_failures=2,
        transitions=1,
        last_probe_at=10.25,
        last_latency=0.25,
        last_failure="b",
        reports=0,
        last_report=None,
        reports_dropped=0,
        health_route="present",
    )
    with pytest.raises(AttributeError):
        stats.probes = 0  # type: ignore[misc]
    assert drain(listener) == [down(10.25, "b")]
