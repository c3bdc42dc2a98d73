"""Events for monitoring hooks, and the bus actor that hands them out.

Why an actor: a hook is the application's code, and a slow or failing hook must never block or
break a request. Requests only ``emit``: a ``send_nowait`` into the bus's bounded channel that
drops the event (and counts it) when the bus is behind. The bus task alone calls the hooks, each
in turn, a failing one logged and counted, an async one bounded by ``hook_timeout``; and it feeds
each subscriber's own bounded channel with ``send_nowait``, dropping for a subscriber that does
not keep up. Nothing here can hold up the dispatcher.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec
import trio

from ._usage import RequestRecord

__all__ = [
    "EVENT_BUFFER",
    "Event",
    "EventBus",
    "FirstToken",
    "HealthChanged",
    "Hook",
    "RequestFinished",
    "RequestSent",
    "RetryScheduled",
    "ThrottlePaused",
]

EVENT_BUFFER = 1024
"""Events the bus may fall behind by before it drops new ones."""

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
    """The health monitor saw the proxy go down or come back."""

    state: Literal["up", "down"]
    previous: Literal["up", "down"]
    reason: str


class ThrottlePaused(Event, frozen=True, kw_only=True):
    """A 429 paused admission for everyone for ``seconds``."""

    seconds: float | None
    model: str


Hook = Callable[[Event], Awaitable[None] | None]


class BusStatistics(msgspec.Struct, frozen=True, kw_only=True):
    emitted: int
    dropped: int
    hook_failures: int
    hooks: int
    subscribers: int


class EventBus:
    """Hands events to hooks and subscribers, off the requests' path."""

    def __init__(self, *, buffer: int = EVENT_BUFFER, hook_timeout: float = 5.0) -> None:
        self._send, self._receive = trio.open_memory_channel[Event](buffer)
        self._hooks: list[Hook] = []
        self._subscribers: list[trio.MemorySendChannel[Event]] = []
        self._hook_timeout = hook_timeout
        self._emitted = self._dropped = self._hook_failures = 0

    @property
    def active(self) -> bool:
        """Whether anyone listens; emitters skip building events when nobody does."""
        return bool(self._hooks or self._subscribers)

    def emit(self, event: Event) -> None:
        """Queue an event; never blocks (a full queue drops it, counted)."""
        try:
            self._send.send_nowait(event)
            self._emitted += 1
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            self._dropped += 1

    def add_hook(self, hook: Hook) -> Callable[[], None]:
        """Call ``hook(event)`` for every event (sync or async); returns a function removing it."""
        self._hooks.append(hook)
        return lambda: self._hooks.remove(hook) if hook in self._hooks else None

    def subscribe(self, buffer: int = 256) -> trio.MemoryReceiveChannel[Event]:
        """A channel of events from now on; a reader that falls ``buffer`` behind misses some."""
        send, receive = trio.open_memory_channel[Event](buffer)
        self._subscribers.append(send)
        return receive

    def statistics(self) -> BusStatistics:
        return BusStatistics(
            emitted=self._emitted,
            dropped=self._dropped,
            hook_failures=self._hook_failures,
            hooks=len(self._hooks),
            subscribers=len(self._subscribers),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver events until cancelled; then close every subscriber's channel."""
        try:
            with self._receive:
                task_status.started()
                async for event in self._receive:
                    for hook in list(self._hooks):
                        await self._call(hook, event)
                    self._fan_out(event)
        finally:
            for send in self._subscribers:
                send.close()
            self._subscribers.clear()

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
        for send in list(self._subscribers):
            try:
                send.send_nowait(event)
            except trio.WouldBlock:
                self._dropped += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.remove(send)
