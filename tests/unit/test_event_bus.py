"""The event bus: every subscriber gets every event it takes, a slow one misses only its own,
hooks run in the bus's task, and ``client.health_transitions()`` is the bus's health changes."""

from __future__ import annotations

from typing import TypeVar

import httpx2
import msgspec
import pytest
import trio
import trio.testing

import trio_litellm
from trio_litellm import ClientConfig, open_client
from trio_litellm._events import (
    Event,
    EventBus,
    FirstToken,
    HealthChanged,
    HealthTransition,
    RequestSent,
)


def sent(attempt: int) -> RequestSent:
    return RequestSent(at=0.0, kind="chat", model="m", attempt=attempt)


def changed(state: str, previous: str) -> HealthChanged:
    return HealthChanged(at=0.0, state=state, previous=previous, reason="r")  # type: ignore[arg-type]


E = TypeVar("E", bound=Event)


def drain(receive: trio.MemoryReceiveChannel[E]) -> list[E]:
    """Every event waiting in ``receive``, whether or not the bus has closed it."""
    events: list[E] = []
    while True:
        try:
            events.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return events


# --- fan-out ------------------------------------------------------------------------------------


def test_every_subscriber_gets_every_event_in_order() -> None:
    bus = EventBus()
    first, second, third = bus.subscribe(), bus.subscribe(), bus.subscribe()
    events = [sent(1), changed("down", "up"), sent(2)]
    for event in events:
        bus.emit(event)
    assert drain(first) == drain(second) == drain(third) == events
    assert bus.statistics().emitted == 3


def test_subscribers_get_events_without_the_bus_task_running() -> None:
    bus = EventBus()
    events = bus.subscribe()
    bus.emit(sent(1))  # handed over at once, not through the hooks' queue
    assert events.receive_nowait() == sent(1)


def test_a_full_subscriber_misses_the_newest_events_and_the_others_get_them_all() -> None:
    bus = EventBus()
    slow = bus.subscribe(buffer=2)
    fast = bus.subscribe(buffer=10)
    events = [sent(n) for n in range(5)]
    for event in events:
        bus.emit(event)
    assert drain(slow) == events[:2]
    assert drain(fast) == events
    stats = bus.statistics()
    assert (stats.emitted, stats.missed_by_subscribers) == (5, 3)


def test_a_subscriber_that_catches_up_gets_the_events_after() -> None:
    bus = EventBus()
    slow = bus.subscribe(buffer=1)
    bus.emit(sent(1))
    bus.emit(sent(2))  # missed
    assert slow.receive_nowait() == sent(1)
    bus.emit(sent(3))
    assert drain(slow) == [sent(3)]


# --- closing a subscription ---------------------------------------------------------------------


def test_a_closed_subscription_is_forgotten_and_the_others_go_on() -> None:
    bus = EventBus()
    gone, kept = bus.subscribe(), bus.subscribe()
    gone.close()
    assert bus.statistics().subscribers == 1
    bus.emit(sent(1))
    assert drain(kept) == [sent(1)]
    stats = bus.statistics()
    assert (stats.subscribers, stats.missed_by_subscribers) == (1, 0)


def test_closing_the_last_subscription_makes_the_bus_inactive_by_the_next_event() -> None:
    bus = EventBus()
    events = bus.subscribe()
    assert bus.active
    events.close()
    bus.emit(sent(1))
    assert not bus.active


async def test_stopping_the_bus_ends_every_subscription() -> None:
    bus = EventBus()
    events = bus.subscribe()
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        bus.emit(sent(1))
        nursery.cancel_scope.cancel()
    assert await events.receive() == sent(1)
    with pytest.raises(trio.EndOfChannel):
        await events.receive()
    assert bus.statistics().subscribers == 0


async def test_a_subscription_taken_after_the_bus_stopped_is_closed_from_the_start() -> None:
    bus = EventBus()
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        nursery.cancel_scope.cancel()
    with pytest.raises(trio.EndOfChannel):
        await bus.subscribe().receive()
    bus.emit(sent(1))  # nobody listens any more: never an error


# --- a subscription to one kind -----------------------------------------------------------------


def test_a_subscription_to_health_changes_gets_those_alone() -> None:
    bus = EventBus()
    health = bus.subscribe(only=HealthChanged)
    everything = bus.subscribe()
    events: list[Event] = [sent(1), changed("down", "up"), sent(2), changed("up", "down")]
    for event in events:
        bus.emit(event)
    assert drain(health) == [changed("down", "up"), changed("up", "down")]
    assert drain(everything) == events


def test_a_full_health_subscriber_is_not_charged_for_events_it_does_not_take() -> None:
    bus = EventBus()
    health = bus.subscribe(buffer=1, only=HealthChanged)
    for n in range(10):
        bus.emit(sent(n))
    bus.emit(changed("down", "up"))
    assert drain(health) == [changed("down", "up")]
    assert bus.statistics().missed_by_subscribers == 0


def test_only_health_subscribers_leave_the_bus_inactive_so_requests_build_no_events() -> None:
    bus = EventBus()
    bus.subscribe(only=HealthChanged)
    assert not bus.active
    bus.subscribe(only=FirstToken)
    assert bus.active


def test_health_transition_is_the_health_changed_event() -> None:
    assert trio_litellm.HealthTransition is trio_litellm.HealthChanged is HealthTransition
    change = HealthTransition(state="down", previous="up", at=1.0, reason="refused")
    assert isinstance(change, Event)
    assert change == HealthChanged(at=1.0, state="down", previous="up", reason="refused")


# --- hooks --------------------------------------------------------------------------------------


async def test_hooks_run_in_the_bus_task_after_emit_returns() -> None:
    bus = EventBus()
    seen: list[Event] = []
    bus.add_hook(seen.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(bus.run)
        bus.emit(sent(1))
        assert seen == []  # emit never runs a hook itself
        await trio.testing.wait_all_tasks_blocked()
        assert seen == [sent(1)]
        nursery.cancel_scope.cancel()


def test_hooks_that_fall_behind_the_queue_miss_events_without_slowing_emit() -> None:
    bus = EventBus(buffer=2)
    bus.add_hook(lambda event: None)
    for n in range(5):
        bus.emit(sent(n))  # the bus task is not running: the queue fills up
    stats = bus.statistics()
    assert (stats.emitted, stats.missed_by_hooks) == (5, 3)


def test_a_removed_hook_leaves_the_bus_inactive() -> None:
    bus = EventBus()
    remove = bus.add_hook(lambda event: None)
    assert bus.active
    remove()
    remove()  # twice is harmless
    assert not bus.active
    assert bus.statistics().hooks == 0


# --- the client's health transitions ------------------------------------------------------------


class Proxy:
    """Answers completions; its health route fails the connection while ``alive`` is False."""

    def __init__(self) -> None:
        self.alive = True

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        await trio.lowlevel.checkpoint()
        if request.url.path == "/health/liveliness":
            if not self.alive:
                raise httpx2.ConnectError("connection refused", request=request)
            return httpx2.Response(200, content=b'"I\'m alive!"')
        return httpx2.Response(
            200,
            content=msgspec.json.encode(
                {
                    "id": "chatcmpl-1",
                    "model": "m",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "ok"},
                            "finish_reason": "stop",
                        }
                    ],
                }
            ),
        )


def config() -> ClientConfig:
    return ClientConfig(
        proxy_url="http://proxy.test",
        api_key="sk-unit",
        health_check_interval=1.0,
        health_down_interval=1.0,
        health_failure_threshold=2,
        price_lookup=False,
    )


async def test_health_transitions_are_the_health_changes_of_the_client_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    proxy = Proxy()
    async with open_client(config(), transport=httpx2.MockTransport(proxy)) as client:
        health = client.health_transitions()
        everything = client.events()
        await client.complete(model="m", messages=[{"role": "user", "content": "hi"}])
        proxy.alive = False
        await trio.sleep_until(3.5)  # probes fail at 1 and 2: down at 2
        proxy.alive = True
        await trio.sleep_until(4.5)  # the probe at 3 fails, the one at 4 succeeds
        transitions = drain(health)
        events = drain(everything)
    assert [(t.state, t.previous, t.at) for t in transitions] == [
        ("down", "up", 2),
        ("up", "down", 4),
    ]
    assert [type(event).__name__ for event in events] == [
        "RequestSent",
        "RequestFinished",
        "HealthChanged",
        "HealthChanged",
    ]
    assert events[2:] == transitions


async def test_watching_health_alone_costs_requests_no_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_client(config(), transport=httpx2.MockTransport(Proxy())) as client:
        health = client.health_transitions()
        for _ in range(3):
            await client.complete(model="m", messages=[{"role": "user", "content": "hi"}])
        stats = client.statistics().events
    assert drain(health) == []
    assert (stats.emitted, stats.subscribers) == (0, 1)


async def test_health_transitions_end_when_the_client_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_client(config(), transport=httpx2.MockTransport(Proxy())) as client:
        health = client.health_transitions()
    with pytest.raises(trio.EndOfChannel):
        await health.receive()
