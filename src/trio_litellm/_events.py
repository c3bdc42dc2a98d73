"""Events for monitoring hooks and subscribers, and the one bus that hands them all out.

Why this shape: hooks and subscribers are the application's code, and a slow or failing one must
never block or break a request, nor the health monitor. So an emitter only ``emit``s, which never
waits:

- each subscriber has its own bounded channel, fed at once with ``send_nowait``. A trio channel
  cannot drop its oldest item, so a subscriber ``buffer`` events behind misses the new ones
  (counted in ``missed_by_subscribers``) while the others get every event.
- hooks are called by the bus's own task (:meth:`EventBus.run`), each in turn, a failing one
  logged and counted, an async one bounded by ``hook_timeout``. Events reach that task through a
  bounded channel that drops (and counts) what the hooks cannot keep up with.

A subscription may take one kind of event only: ``Client.health_transitions()`` is a
subscription to :class:`HealthChanged`, which the health monitor emits here like any other event.
Building an event costs a request something, so request events are built only while the bus is
:attr:`~EventBus.active` (a hook, or a subscriber taking more than health changes); health
changes are rare and always emitted.

When the bus stops, every subscriber's channel is closed; a subscription taken after that is
closed from the start.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeAlias, TypeVar, overload

import msgspec
import trio

from ._usage import RequestRecord

__all__ = [
    "EVENT_BUFFER",
    "SUBSCRIBER_BUFFER",
    "Event",
    "EventBus",
    "EventBusStatistics",
    "FirstToken",
    "HealthChanged",
    "HealthState",
    "HealthTransition",
    "Hook",
    "RequestFinished",
    "RequestSent",
    "RetryScheduled",
    "ThrottlePaused",
]

EVENT_BUFFER = 1024
"""Events the hooks may fall behind by before they miss new ones."""

SUBSCRIBER_BUFFER = 256
"""Default events a subscriber may leave unread before it misses new ones."""

HealthState: TypeAlias = Literal["up", "down"]

logger = logging.getLogger("trio_litellm")


class Event(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Base of every event; ``at`` is the trio time it happened."""

    at: float


class RequestSent(Event, frozen=True, kw_only=True):
    """An attempt of a request was admitted and is being sent."""

    kind: str
    model: str
    attempt: int


class RetryScheduled(Event, frozen=True, kw_only=True):
    """An attempt failed and will be tried again; ``wait`` is the proxy's Retry-After if any."""

    model: str
    attempt: int
    error: str
    wait: float | None


class FirstToken(Event, frozen=True, kw_only=True):
    """A stream's first content arrived, ``ttft`` seconds after it started."""

    model: str
    ttft: float


class RequestFinished(Event, frozen=True, kw_only=True):
    """A request ended: its record says how (a response, a stream's end, or an error)."""

    record: RequestRecord


class HealthChanged(Event, frozen=True, kw_only=True):
    """The health monitor saw the proxy go ``previous`` → ``state``, because of ``reason``.

    ``proxy`` is that proxy's URL (without credentials): a client on several proxies has a
    monitor for each."""

    state: HealthState
    previous: HealthState
    reason: str
    proxy: str = ""


HealthTransition = HealthChanged
"""Another name for :class:`HealthChanged`, kept for code written against it."""


class ThrottlePaused(Event, frozen=True, kw_only=True):
    """A 429 paused admission for everyone for ``seconds``."""

    seconds: float | None
    model: str


Hook = Callable[[Event], Awaitable[None] | None]

E = TypeVar("E", bound=Event)


class EventBusStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of the event bus.

    ``emitted`` counts every event emitted. ``missed_by_subscribers`` counts deliveries missed by
    a subscriber whose buffer was full; ``missed_by_hooks`` events the hooks never saw because
    they fell :data:`EVENT_BUFFER` behind (or came after the bus stopped). ``hook_failures``
    counts hooks that raised; ``hooks`` and ``subscribers`` are how many listen now.
    """

    emitted: int
    missed_by_subscribers: int
    missed_by_hooks: int
    hook_failures: int
    hooks: int
    subscribers: int


class _Subscriber:
    """One subscription: its channel, and the kind of event it takes."""

    __slots__ = ("kind", "send")

    def __init__(self, send: trio.MemorySendChannel[Any], kind: type[Event]) -> None:
        self.send = send
        self.kind = kind

    @property
    def closed(self) -> bool:
        """Whether the subscriber closed its end (every clone of it)."""
        return not self.send.statistics().open_receive_channels


class EventBus:
    """Hands events to hooks and subscribers, off the requests' path and the monitor's."""

    def __init__(self, *, buffer: int = EVENT_BUFFER, hook_timeout: float = 5.0) -> None:
        self._send, self._receive = trio.open_memory_channel[Event](buffer)
        self._hooks: list[Hook] = []
        self._subscribers: list[_Subscriber] = []
        self._hook_timeout = hook_timeout
        self._active = False
        self._stopped = False
        self._emitted = self._missed_by_subscribers = self._missed_by_hooks = 0
        self._hook_failures = 0

    @property
    def active(self) -> bool:
        """Whether anyone takes request events; emitters skip building them when nobody does."""
        return self._active

    def emit(self, event: Event) -> None:
        """Hand ``event`` to every subscriber that takes it and queue it for the hooks.

        Never blocks: a full subscriber or a full hook queue misses it, counted.
        """
        self._emitted += 1
        if self._subscribers:
            self._fan_out(event)
        if self._hooks:
            try:
                self._send.send_nowait(event)
            except (trio.WouldBlock, trio.BrokenResourceError):
                self._missed_by_hooks += 1

    def add_hook(self, hook: Hook) -> Callable[[], None]:
        """Call ``hook(event)`` for every event (sync or async); returns a function removing it."""
        self._hooks.append(hook)
        self._update_active()

        def remove() -> None:
            if hook in self._hooks:
                self._hooks.remove(hook)
                self._update_active()

        return remove

    @overload
    def subscribe(self, buffer: int = ...) -> trio.MemoryReceiveChannel[Event]: ...

    @overload
    def subscribe(self, buffer: int = ..., *, only: type[E]) -> trio.MemoryReceiveChannel[E]: ...

    def subscribe(
        self, buffer: int = SUBSCRIBER_BUFFER, *, only: type[Event] = Event
    ) -> trio.MemoryReceiveChannel[Any]:
        """A channel of the events from now on (``only`` those of one kind, if given).

        A reader that leaves ``buffer`` events unread misses later ones until it reads; it never
        slows anyone. Close the channel to unsubscribe; the bus closes it when it stops.
        """
        send, receive = trio.open_memory_channel[Any](buffer)
        if self._stopped:
            send.close()
            return receive
        self._subscribers = [sub for sub in self._subscribers if not sub.closed]
        self._subscribers.append(_Subscriber(send, only))
        self._update_active()
        return receive

    def statistics(self) -> EventBusStatistics:
        return EventBusStatistics(
            emitted=self._emitted,
            missed_by_subscribers=self._missed_by_subscribers,
            missed_by_hooks=self._missed_by_hooks,
            hook_failures=self._hook_failures,
            hooks=len(self._hooks),
            subscribers=sum(1 for sub in self._subscribers if not sub.closed),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Call the hooks on each event until cancelled; then close every subscriber's channel."""
        try:
            with self._receive:
                task_status.started()
                async for event in self._receive:
                    for hook in list(self._hooks):
                        await self._call(hook, event)
        finally:
            self._stopped = True
            for sub in self._subscribers:
                sub.send.close()
            self._subscribers.clear()
            self._update_active()

    async def _call(self, hook: Hook, event: Event) -> None:
        try:
            result: Any = hook(event)
            if inspect.isawaitable(result):
                with trio.move_on_after(self._hook_timeout if self._hook_timeout > 0 else math.inf):
                    await result
        except Exception:
            self._hook_failures += 1
            logger.exception("a monitoring hook failed on %s", type(event).__name__)

    def _fan_out(self, event: Event) -> None:
        gone = False
        for sub in self._subscribers:
            if isinstance(event, sub.kind):
                try:
                    sub.send.send_nowait(event)
                except trio.WouldBlock:
                    self._missed_by_subscribers += 1
                except trio.BrokenResourceError:
                    gone = True
        if gone:
            self._subscribers = [sub for sub in self._subscribers if not sub.closed]
            self._update_active()

    def _update_active(self) -> None:
        self._active = bool(self._hooks) or any(
            not issubclass(sub.kind, HealthChanged) for sub in self._subscribers
        )
