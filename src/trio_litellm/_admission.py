"""What the throttle actor decides with: the queue of acquirers, our own limits, what the proxy
said for everyone and for each model group, and who is parked. Pure: no trio, no await, no IO; the
actor passes the time in and wakes the tickets this grants (their ``event`` is all this touches).

Admission is FIFO for what everyone shares (the client's rpm and tpm, a pause for everyone); a
ticket held only by its model's own limits or restrictions is parked aside so those behind it for
other models are not held up, and goes back in front once its model may go.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Protocol

import msgspec

from ._config import ModelLimits
from ._meta import RateLimitInfo
from ._rate_limit import RateLimit, RateLimits
from ._rate_window import WindowEntry
from ._restrictions import Restrictions

__all__ = ["Admission", "ModelThrottleStatistics", "Permit", "ThrottleStatistics", "Ticket"]


class Permit(msgspec.Struct, frozen=True, kw_only=True):
    """Admission of one request: give it back to :meth:`Throttle.reconcile` with the real usage.

    ``entry`` is the request's place in the tpm window (None when tpm is unlimited, or on the
    fast path), ``model_entry`` its place in its ``model``'s own tpm window (None without one);
    nothing needs releasing, the recorded units age out of the windows.
    """

    tokens: int
    entry: WindowEntry | None = None
    model: str | None = None
    model_entry: WindowEntry | None = None


class ModelThrottleStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """One model's own rpm / tpm windows: the limits (None when not set), what the last 60 s
    hold, what could start now under them (0 while the model is paused), and ``waiting``, its
    requests queued in the throttle."""

    rpm: int | None
    tpm: int | None
    requests_in_window: int | None
    tokens_in_window: int | None
    requests_available: int | None
    tokens_available: int | None
    waiting: int


class ThrottleStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of the throttle.

    ``queued`` counts acquirers inside the actor not yet admitted, ``parked`` those of them held
    only by their model's pause or cap; ``admitted`` counts all admissions, ``fast_admitted``
    those that took the fast path; ``abandoned`` counts acquirers cancelled while queued;
    ``messages`` counts messages the actor has received. The window fields are None for a limit
    that is not configured. ``requests_available`` and ``tokens_available`` are what could be
    admitted now for any model: 0 while everyone is paused, else the window's room (at most what
    the pacing bucket holds) further capped by what the proxy's key-wide headers said is left;
    None when neither applies.
    ``paused_until`` is trio time of the pause for everyone, None when none is in force;
    ``paused_models`` maps each model group paused on its own to the trio time its pause ends.
    ``pauses`` counts pause requests (429s, and answers saying nothing is left), for any scope.
    ``models`` holds the usage of each model with an rpm or tpm of its own.
    """

    queued: int
    admitted: int
    fast_admitted: int
    abandoned: int
    messages: int
    requests_in_window: int | None
    tokens_in_window: int | None
    requests_available: int | None
    tokens_available: int | None
    paused_until: float | None
    pauses: int
    paused_models: dict[str, float] = msgspec.field(default_factory=dict)
    parked: int = 0
    models: dict[str, ModelThrottleStatistics] = msgspec.field(default_factory=dict)


class Waker(Protocol):
    """What a ticket is woken with (a ``trio.Event`` in the actor)."""

    def set(self) -> None: ...


class Ticket:
    """An acquirer's reply slot: the admission fills ``permit`` and sets ``event``; the acquirer
    sets ``abandoned`` if it is cancelled first. ``permit`` stays None if the throttle stops."""

    __slots__ = ("abandoned", "event", "model", "permit", "tokens")

    def __init__(self, tokens: int, model: str | None, event: Waker) -> None:
        self.tokens = tokens
        self.model = model
        self.event = event
        self.permit: Permit | None = None
        self.abandoned = False


class Admission:
    """The throttle's state and decisions; only the actor's task calls what changes it."""

    def __init__(
        self, *, rpm: int | None, tpm: int | None, model_limits: Mapping[str, ModelLimits]
    ) -> None:
        self.limits = RateLimits(rpm, tpm)
        self.unlimited = rpm is None and tpm is None
        self.queue: deque[Ticket] = deque()
        self.parked: dict[str, deque[Ticket]] = {}  # held only by their model's restrictions
        self._everyone = Restrictions()
        self._models: dict[str, Restrictions] = {}
        self.restricted_until = -math.inf  # latest restriction for everyone: the fast path's test
        self.model_restricted_until: dict[str, float] = {}  # the same, per model
        # Models with an rpm or tpm of their own; each is restricted for good (no fast path).
        self._model_limits: dict[str, RateLimits] = {}
        for model, limits in model_limits.items():
            if limits.rpm is not None or limits.tpm is not None:
                self._model_limits[model] = RateLimits(limits.rpm, limits.tpm)
                self._models[model] = Restrictions()
                self.model_restricted_until[model] = math.inf
        self.admitted = 0
        self.abandoned = 0
        self.pauses = 0

    def reconcile(
        self,
        entry: WindowEntry | None,
        model: str | None,
        model_entry: WindowEntry | None,
        tokens: int,
        now: float,
    ) -> None:
        """Replace a permit's token estimate by the real usage, in our windows and buckets."""
        tokens = max(tokens, 0)
        if self.limits.tokens is not None and entry is not None:
            self.limits.tokens.adjust(entry, tokens, now)
        if model_entry is not None and model is not None:
            limit = self._model_limits[model].tokens
            if limit is not None:
                limit.adjust(model_entry, tokens, now)

    def rate_limited(self, until: float, model: str | None) -> None:
        """A 429: pause ``model``'s requests (None: everyone's) until ``until``."""
        self.pauses += 1
        self._restrict(model, self._scope(model).pause(until))

    def observe(self, info: RateLimitInfo, at: float, model: str | None) -> None:
        """An answer's ``x-ratelimit-remaining-*`` for ``model`` (None: everyone), seen at ``at``."""
        if (info.remaining_requests is not None and info.remaining_requests <= 0) or (
            info.remaining_tokens is not None and info.remaining_tokens <= 0
        ):
            self.pauses += 1
        self._restrict(model, self._scope(model).observe(info, at))

    def release_all(self) -> None:
        """Wake every queued and parked ticket without a permit: the throttle has stopped."""
        self.restricted_until = math.inf  # no fast path once stopped
        for parked in self.parked.values():
            self.queue.extend(parked)
        self.parked.clear()
        for ticket in self.queue:
            ticket.event.set()  # permit None: acquire raises
        self.queue.clear()

    def _scope(self, model: str | None) -> Restrictions:
        if model is None:
            return self._everyone
        restrictions = self._models.get(model)
        if restrictions is None:
            restrictions = self._models[model] = Restrictions()
        return restrictions

    def _restrict(self, model: str | None, until: float) -> None:
        if model is None:
            self.restricted_until = max(self.restricted_until, until)
        else:
            previous = self.model_restricted_until.get(model, -math.inf)
            self.model_restricted_until[model] = max(previous, until)

    def admit(self, now: float) -> float:
        """Admit queued acquirers in order while they fit; the next deadline, or inf if none.

        A ticket held only by its model's restrictions is parked; one held by what everyone
        shares stops the pass (FIFO). Parked tickets return to the front once their model may go.
        """
        deadline = self._unpark(now) if self.parked else math.inf
        queue = self.queue
        while queue:
            ticket = queue[0]
            if ticket.abandoned:
                queue.popleft()
                self.abandoned += 1
                continue
            model = ticket.model
            restrictions = None
            if model is not None and (restrictions := self._models.get(model)) is not None:
                ready = self._model_ready_at(model, restrictions, ticket.tokens, now)
                if ready > now:
                    queue.popleft()
                    self.parked.setdefault(model, deque()).append(ticket)
                    deadline = min(deadline, ready)
                    continue
            ready = self._shared_ready_at(ticket.tokens, now)
            if ready > now:
                return min(deadline, ready)
            queue.popleft()
            self._grant(ticket, restrictions, now)
        return deadline

    def _unpark(self, now: float) -> float:
        """Put back in front the parked tickets whose model may go; the next model deadline."""
        deadline = math.inf
        for model in list(self.parked):
            parked = self.parked[model]
            while parked and parked[0].abandoned:
                parked.popleft()
                self.abandoned += 1
            if not parked:
                del self.parked[model]
                continue
            ready = self._model_ready_at(model, self._models[model], parked[0].tokens, now)
            if ready > now:
                deadline = min(deadline, ready)
                continue
            del self.parked[model]
            self.queue.extendleft(reversed(parked))
        return deadline

    def drop_abandoned_parked(self) -> None:
        # Woken by a deadline or a cancelled acquirer: forget the parked ones that left, so they
        # are not counted as queued until their model's pause ends.
        for model, parked in list(self.parked.items()):
            live = deque(ticket for ticket in parked if not ticket.abandoned)
            self.abandoned += len(parked) - len(live)
            if live:
                self.parked[model] = live
            else:
                del self.parked[model]

    def _model_ready_at(
        self, model: str, restrictions: Restrictions, tokens: int, now: float
    ) -> float:
        ready = restrictions.ready_at(tokens, now)
        limits = self._model_limits.get(model)
        if limits is not None:
            ready = max(ready, limits.ready_at(tokens, now))
        return ready

    def _shared_ready_at(self, tokens: int, now: float) -> float:
        return max(self._everyone.ready_at(tokens, now), self.limits.ready_at(tokens, now))

    def _grant(self, ticket: Ticket, restrictions: Restrictions | None, now: float) -> None:
        entry = self.limits.record(ticket.tokens, now)
        self._everyone.grant(ticket.tokens)
        model_entry = None
        if restrictions is not None:
            restrictions.grant(ticket.tokens)
            limits = self._model_limits.get(ticket.model) if ticket.model is not None else None
            if limits is not None:
                model_entry = limits.record(ticket.tokens, now)
        ticket.permit = Permit(
            tokens=ticket.tokens, entry=entry, model=ticket.model, model_entry=model_entry
        )
        ticket.event.set()
        self.admitted += 1

    def statistics(self, now: float, *, fast_admitted: int, messages: int) -> ThrottleStatistics:
        """A frozen snapshot at ``now``, with the actor's own counts; changes no decision."""
        requests_used, requests_room = _usage(self.limits.requests, now)
        tokens_used, tokens_room = _usage(self.limits.tokens, now)
        everyone = self._everyone
        parked = sum(len(tickets) for tickets in self.parked.values())
        return ThrottleStatistics(
            queued=len(self.queue) + parked,
            admitted=self.admitted + fast_admitted,
            fast_admitted=fast_admitted,
            abandoned=self.abandoned,
            messages=messages,
            requests_in_window=requests_used,
            tokens_in_window=tokens_used,
            requests_available=everyone.request_room(requests_room, now),
            tokens_available=everyone.token_room(tokens_room, now),
            paused_until=everyone.pause_until if everyone.paused(now) else None,
            pauses=self.pauses,
            paused_models={
                model: restrictions.pause_until
                for model, restrictions in self._models.items()
                if restrictions.paused(now)
            },
            parked=parked,
            models={
                model: self._model_statistics(model, limits, now)
                for model, limits in self._model_limits.items()
            },
        )

    def _model_statistics(
        self, model: str, limits: RateLimits, now: float
    ) -> ModelThrottleStatistics:
        requests_used, requests_room = _usage(limits.requests, now)
        tokens_used, tokens_room = _usage(limits.tokens, now)
        restrictions = self._models[model]
        waiting = len(self.parked.get(model, ())) + sum(
            1 for ticket in self.queue if ticket.model == model and not ticket.abandoned
        )
        return ModelThrottleStatistics(
            rpm=None if limits.requests is None else limits.requests.limit,
            tpm=None if limits.tokens is None else limits.tokens.limit,
            requests_in_window=requests_used,
            tokens_in_window=tokens_used,
            requests_available=restrictions.request_room(requests_room, now),
            tokens_available=restrictions.token_room(tokens_room, now),
            waiting=waiting,
        )


def _usage(limit: RateLimit | None, now: float) -> tuple[int | None, int | None]:
    """What one of our limits counts in the last 60 s and could admit now; Nones without it."""
    if limit is None:
        return None, None
    used = round(limit.used(now))
    return used, limit.room(used, now)
