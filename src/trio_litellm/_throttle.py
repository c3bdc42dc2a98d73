"""The throttle actor: admits requests under the client's rpm / tpm limits and the proxy's word.

Why an actor: admission is a decision over shared state (the rate windows, a 429 pause, what the
proxy's headers said is left, the queue of waiters), so one task owns that state and decides; every
other task talks to it over one bounded channel of small frozen messages. Waiters queue FIFO inside
the actor, so an early large request is never overtaken by later small ones. While the head of the
queue cannot be admitted, the actor keeps receiving messages under ``trio.move_on_at(head's
deadline)``: a 429 or a reconciliation that arrives meanwhile changes the head's deadline at once.
An acquirer cancelled while queued marks its ticket abandoned and cancels that wait (a trio cancel
scope may be cancelled from any task; it is the only actor object a caller touches), so the actor
skips it at once and those behind it are not held up by its deadline.

What the proxy says has a scope: a 429 or an ``x-ratelimit-remaining-*`` at 0 for one model group
pauses only the requests for that model (see :mod:`._limit_scope` for which 429s are whose); a
key's, team's or the proxy's own limit pauses everyone. LiteLLM's own limiter names the scope in
its headers (``x-ratelimit-api_key-remaining-requests``; :data:`._meta.LIMITER_SCOPES`): a key's,
user's, team's or end user's count is everyone's, a per-model one (``model_per_key``, ...) is the
model's. A waiter held only by its model's pause
is parked aside, so those queued behind it for other models are not held up by it; the FIFO
order holds for what everyone shares (the rpm and tpm windows, a pause for everyone).

Our own ``rpm`` and ``tpm`` are each a sliding window, the hard bound (never more than ``rpm``
start in any 60 s), with a token bucket pacing under it: ``rpm / 60`` a second with a burst of one
second's share (:data:`._bucket.BURST_SECONDS`), so a minute's requests are spread across the
minute rather than let out at once and then held for the rest of it. A model may have an rpm /
tpm of its own (:class:`._config.ModelLimits`): a request counts against the client's and its
model's, and one held by its model's is parked like one held by its model's pause.

The arithmetic is pure classes beside the actor (no trio, no await, no IO): :mod:`._rate_limit`
(the window of :mod:`._rate_window` with the bucket of :mod:`._bucket`) and what the proxy said
in :mod:`._restrictions`.

With no rpm, no tpm, no pause and no header cap in force for everyone or for the request's model
(a model with limits of its own always has one),
:meth:`Throttle.acquire` admits on a fast path that only reads the actor's state and sends it
nothing: the dispatcher acquires for every request, and an unlimited client should pay close to
nothing for it. All times are trio's clock.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import TypeAlias

import msgspec
import trio

from ._config import ModelLimits
from ._errors import ClientClosedError, ConfigError, LiteLLMError
from ._meta import MODEL_LIMITER_SCOPES, RateLimitInfo
from ._rate_limit import RateLimit, RateLimits
from ._rate_window import WindowEntry
from ._restrictions import DEFAULT_PAUSE, Restrictions, in_limiter_window

__all__ = [
    "MESSAGE_BUFFER",
    "ModelThrottleStatistics",
    "Permit",
    "Throttle",
    "ThrottleStatistics",
]

MESSAGE_BUFFER = 64
"""Messages that may wait for the actor. Reports (observe, reconcile, 429) are fire-and-forget, so
a small buffer lets a finishing request move on without waiting for the actor to be scheduled;
acquirers wait for their answer anyway, and their number is bounded by the dispatcher's in-flight
limit. A full buffer makes senders wait: backpressure, never an unbounded queue."""


# --- what the actor hands out and reports ------------------------------------------------------


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


# --- the actor's messages and private state ------------------------------------------------------


class _Ticket:
    """An acquirer's reply slot: the actor fills ``permit`` and sets ``event``; the acquirer sets
    ``abandoned`` if it is cancelled first. ``permit`` stays None if the throttle stops."""

    __slots__ = ("abandoned", "event", "model", "permit", "tokens")

    def __init__(self, tokens: int, model: str | None) -> None:
        self.tokens = tokens
        self.model = model
        self.event = trio.Event()
        self.permit: Permit | None = None
        self.abandoned = False


class _Acquire(msgspec.Struct, frozen=True, kw_only=True, tag="acquire"):
    ticket: _Ticket


class _Reconcile(msgspec.Struct, frozen=True, kw_only=True, tag="reconcile"):
    entry: WindowEntry | None
    model: str | None
    model_entry: WindowEntry | None
    tokens: int


class _RateLimited(msgspec.Struct, frozen=True, kw_only=True, tag="rate_limited"):
    until: float
    model: str | None


class _Observe(msgspec.Struct, frozen=True, kw_only=True, tag="observe"):
    ratelimit: RateLimitInfo
    at: float
    model: str | None


_Message: TypeAlias = _Acquire | _Reconcile | _RateLimited | _Observe


def _closed_error() -> LiteLLMError:
    return ClientClosedError("the throttle is not running: the client has closed")


class Throttle:
    """Admits requests FIFO under ``rpm`` / ``tpm`` (None: no limit), 429 pauses and header caps,
    each pause and cap for one model group or for everyone.

    ``run`` is the actor; it runs until cancelled (the client cancels its nursery on exit), and
    there is no ``close()``. When it stops, acquirers still queued (or whose message is still in
    the channel) get a :class:`ClientClosedError` rather than waiting forever, ``acquire`` raises the
    same from then on, and reports (``reconcile``, ``rate_limited``, ``observe``) are dropped:
    there is nothing left to adapt.
    """

    def __init__(
        self,
        *,
        rpm: int | None,
        tpm: int | None,
        model_limits: Mapping[str, ModelLimits] | None = None,
    ) -> None:
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigError(name, f"must be an integer >= 1 or None, not {value!r}")
        self._limits = RateLimits(rpm, tpm)
        self._unlimited = rpm is None and tpm is None
        self._send, self._receive = trio.open_memory_channel[_Message](MESSAGE_BUFFER)
        # Written by the actor only:
        self._queue: deque[_Ticket] = deque()
        self._parked: dict[str, deque[_Ticket]] = {}  # held only by their model's restrictions
        self._everyone = Restrictions()
        self._models: dict[str, Restrictions] = {}
        self._restricted_until = -math.inf  # latest restriction for everyone: the fast path's test
        self._model_restricted_until: dict[str, float] = {}  # the same, per model
        # Models with an rpm or tpm of their own; each is restricted for good (no fast path).
        self._model_limits: dict[str, RateLimits] = {}
        for model, limits in (model_limits or {}).items():
            if limits.rpm is not None or limits.tpm is not None:
                self._model_limits[model] = RateLimits(limits.rpm, limits.tpm)
                self._models[model] = Restrictions()
                self._model_restricted_until[model] = math.inf
        self._wake_scope: trio.CancelScope | None = None  # cancelled to re-examine a blocked head
        self._received = 0
        self._admitted = 0
        self._abandoned = 0
        self._pauses = 0
        self._started = False
        # Written by callers only (counters of their own; trio runs one task at a time):
        self._sent = 0  # messages handed to (or being handed to) the channel
        self._fast_admitted = 0

    # --- the actor -----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Admit and adapt until cancelled. Ready at once."""
        if self._started:
            raise RuntimeError("Throttle.run() can be called only once")
        self._started = True
        try:
            task_status.started()
            while True:
                deadline = self._admit(trio.current_time())
                if deadline == math.inf:
                    self._wake_scope = None
                    message = await self._receive.receive()
                else:
                    with trio.move_on_at(deadline) as scope:
                        self._wake_scope = scope
                        message = await self._receive.receive()
                    if scope.cancelled_caught:
                        self._drop_abandoned_parked()
                        continue
                self._received += 1
                self._apply(message)
                self._drain()
        except trio.EndOfChannel:  # pragma: no cover - we hold the send end and never close it
            pass
        finally:
            self._stop()

    def _drain(self) -> None:
        # Apply whatever else is already waiting before deciding: one admission pass per batch.
        for _ in range(MESSAGE_BUFFER):
            try:
                message = self._receive.receive_nowait()
            except trio.WouldBlock:
                return
            self._received += 1
            self._apply(message)

    def _stop(self) -> None:
        self._restricted_until = math.inf  # no fast path once stopped
        self._wake_scope = None
        for parked in self._parked.values():
            self._queue.extend(parked)
        self._parked.clear()
        for ticket in self._queue:
            ticket.event.set()  # permit None: acquire raises
        self._queue.clear()
        while True:
            try:
                message = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if isinstance(message, _Acquire):
                message.ticket.event.set()
        self._receive.close()

    def _apply(self, message: _Message) -> None:
        if isinstance(message, _Acquire):
            self._queue.append(message.ticket)
        elif isinstance(message, _Reconcile):
            tokens, now = max(message.tokens, 0), trio.current_time()
            if self._limits.tokens is not None and message.entry is not None:
                self._limits.tokens.adjust(message.entry, tokens, now)
            if message.model_entry is not None and message.model is not None:
                limit = self._model_limits[message.model].tokens
                if limit is not None:
                    limit.adjust(message.model_entry, tokens, now)
        elif isinstance(message, _RateLimited):
            self._pauses += 1
            self._restrict(message.model, self._scope(message.model).pause(message.until))
        else:
            info = message.ratelimit
            if (info.remaining_requests is not None and info.remaining_requests <= 0) or (
                info.remaining_tokens is not None and info.remaining_tokens <= 0
            ):
                self._pauses += 1
            until = self._scope(message.model).observe(info, message.at)
            self._restrict(message.model, until)

    def _scope(self, model: str | None) -> Restrictions:
        if model is None:
            return self._everyone
        restrictions = self._models.get(model)
        if restrictions is None:
            restrictions = self._models[model] = Restrictions()
        return restrictions

    def _restrict(self, model: str | None, until: float) -> None:
        if model is None:
            self._restricted_until = max(self._restricted_until, until)
        else:
            previous = self._model_restricted_until.get(model, -math.inf)
            self._model_restricted_until[model] = max(previous, until)

    def _admit(self, now: float) -> float:
        """Admit queued acquirers in order while they fit; the next deadline, or inf if none.

        A ticket held only by its model's restrictions is parked; one held by what everyone
        shares stops the pass (FIFO). Parked tickets return to the front once their model may go.
        """
        deadline = self._unpark(now) if self._parked else math.inf
        queue = self._queue
        while queue:
            ticket = queue[0]
            if ticket.abandoned:
                queue.popleft()
                self._abandoned += 1
                continue
            model = ticket.model
            restrictions = None
            if model is not None and (restrictions := self._models.get(model)) is not None:
                ready = self._model_ready_at(model, restrictions, ticket.tokens, now)
                if ready > now:
                    queue.popleft()
                    self._parked.setdefault(model, deque()).append(ticket)
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
        for model in list(self._parked):
            parked = self._parked[model]
            while parked and parked[0].abandoned:
                parked.popleft()
                self._abandoned += 1
            if not parked:
                del self._parked[model]
                continue
            ready = self._model_ready_at(model, self._models[model], parked[0].tokens, now)
            if ready > now:
                deadline = min(deadline, ready)
                continue
            del self._parked[model]
            self._queue.extendleft(reversed(parked))
        return deadline

    def _drop_abandoned_parked(self) -> None:
        # Woken by a deadline or a cancelled acquirer: forget the parked ones that left, so they
        # are not counted as queued until their model's pause ends.
        for model, parked in list(self._parked.items()):
            live = deque(ticket for ticket in parked if not ticket.abandoned)
            self._abandoned += len(parked) - len(live)
            if live:
                self._parked[model] = live
            else:
                del self._parked[model]

    def _model_ready_at(
        self, model: str, restrictions: Restrictions, tokens: int, now: float
    ) -> float:
        ready = restrictions.ready_at(tokens, now)
        limits = self._model_limits.get(model)
        if limits is not None:
            ready = max(ready, limits.ready_at(tokens, now))
        return ready

    def _shared_ready_at(self, tokens: int, now: float) -> float:
        return max(self._everyone.ready_at(tokens, now), self._limits.ready_at(tokens, now))

    def _grant(self, ticket: _Ticket, restrictions: Restrictions | None, now: float) -> None:
        entry = self._limits.record(ticket.tokens, now)
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
        self._admitted += 1

    # --- what other tasks call -----------------------------------------------------------------

    async def acquire(self, tokens: int, model: str | None = None) -> Permit:
        """Wait for admission of one request for ``model`` estimated at ``tokens``; FIFO with
        other acquirers, except that one held by its own model's pause lets others pass.

        Cancelled while queued, the caller gives up its place: the actor skips it and records
        nothing for it. If the permit was granted just as the caller was cancelled, its units stay
        recorded (conservative) and age out of the windows; nothing else is held.

        On the fast path (nothing limits admission for everyone or for ``model``, nobody is
        queued, no message is pending) this returns at once, sends nothing and is not a
        checkpoint. An empty ``model`` is None: only what limits everyone applies.
        """
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, not {tokens!r}")
        if (
            self._unlimited
            and self._sent == self._received
            and not self._queue
            and (
                self._restricted_until == -math.inf or self._restricted_until <= trio.current_time()
            )
            and (
                not self._model_restricted_until
                or not model
                or self._model_restricted_until.get(model, -math.inf) <= trio.current_time()
            )
        ):
            self._fast_admitted += 1
            return Permit(tokens=tokens)
        ticket = _Ticket(tokens, model or None)
        if not await self._post(_Acquire(ticket=ticket)):
            raise _closed_error()
        try:
            await ticket.event.wait()
        except BaseException:
            ticket.abandoned = True
            if self._wake_scope is not None:
                self._wake_scope.cancel()  # the actor re-examines its head, which may be us
            raise
        if ticket.permit is None:
            raise _closed_error()
        return ticket.permit

    async def reconcile(self, permit: Permit, actual_tokens: int) -> None:
        """Replace ``permit``'s token estimate by the real usage (no-op without a tpm entry)."""
        entry, model_entry = permit.entry, permit.model_entry
        if (entry is not None and entry.live) or (model_entry is not None and model_entry.live):
            await self._post(
                _Reconcile(
                    entry=entry, model=permit.model, model_entry=model_entry, tokens=actual_tokens
                )
            )

    async def rate_limited(self, retry_after: float | None, *, model: str | None = None) -> None:
        """The proxy answered 429: pause admission for ``retry_after`` seconds from now, of the
        requests for ``model`` only, or (None or empty) of everyone's.

        :func:`._limit_scope.rate_limit_model` tells from the 429's message which it is. None
        (or a value that is not a finite number) means :data:`DEFAULT_PAUSE`. A longer pause
        extends one in force for the same scope; a shorter one never shortens it.
        """
        if retry_after is None or not math.isfinite(retry_after):
            retry_after = DEFAULT_PAUSE
        until = trio.current_time() + max(retry_after, 0.0)
        await self._post(_RateLimited(until=until, model=model or None))

    async def observe(
        self,
        ratelimit: RateLimitInfo,
        *,
        model: str | None = None,
        scopes: Mapping[str, RateLimitInfo] | None = None,
    ) -> None:
        """Adapt to an answer's ``x-ratelimit-*`` headers; None fields are ignored.

        The plain ``x-ratelimit-remaining-*`` headers describe the limits of the deployment that
        served the request (its router ``rpm``/``tpm``, or the upstream provider's), so pass its
        ``model``: the pause or cap then applies to that model group only. None (or empty)
        applies it to everyone (a key-wide limit).

        ``remaining_requests == 0`` (or ``remaining_tokens == 0``) pauses admission until its
        reset (``reset_requests`` / ``reset_tokens``; :data:`DEFAULT_PAUSE` when unknown or not
        positive). A positive remaining R with reset T caps admissions: at most R more requests
        (or tokens, counted by estimate) before now + T; the cap then lapses. See
        :meth:`Restrictions.observe`. ``limit_*`` fields are not adopted as limits. Answers
        without remaining counts send nothing to the actor.

        ``scopes`` are LiteLLM's own limiter's counts by scope (:attr:`ResponseMeta.scope_ratelimits
        <._meta.ResponseMeta.scope_ratelimits>`), read the same way: a per-model scope
        (:data:`._meta.MODEL_LIMITER_SCOPES`) restricts ``model``, any other everyone. Their
        unknown resets are :data:`LIMITER_WINDOW`.
        """
        model = model or None
        at = trio.current_time()
        if ratelimit.remaining_requests is not None or ratelimit.remaining_tokens is not None:
            await self._post(_Observe(ratelimit=ratelimit, at=at, model=model))
        if not scopes:
            return
        for scope, info in scopes.items():
            if info.remaining_requests is None and info.remaining_tokens is None:
                continue
            target = model if scope in MODEL_LIMITER_SCOPES else None
            await self._post(_Observe(ratelimit=in_limiter_window(info), at=at, model=target))

    async def _post(self, message: _Message) -> bool:
        """Send to the actor; False if it has stopped."""
        self._sent += 1  # before the send, so the fast path sees a message on its way
        try:
            try:
                self._send.send_nowait(message)  # no round through the scheduler when there is room
            except trio.WouldBlock:
                await self._send.send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._sent -= 1
            return False
        except BaseException:
            self._sent -= 1  # cancelled before the actor got it: trio's send delivers nothing then
            raise
        return True

    def statistics(self) -> ThrottleStatistics:
        """A frozen snapshot; reading it changes nothing the actor would decide."""
        now = trio.current_time()
        requests_used, requests_room = _usage(self._limits.requests, now)
        tokens_used, tokens_room = _usage(self._limits.tokens, now)
        everyone = self._everyone
        parked = sum(len(tickets) for tickets in self._parked.values())
        return ThrottleStatistics(
            queued=len(self._queue) + parked,
            admitted=self._admitted + self._fast_admitted,
            fast_admitted=self._fast_admitted,
            abandoned=self._abandoned,
            messages=self._received,
            requests_in_window=requests_used,
            tokens_in_window=tokens_used,
            requests_available=everyone.request_room(requests_room, now),
            tokens_available=everyone.token_room(tokens_room, now),
            paused_until=everyone.pause_until if everyone.paused(now) else None,
            pauses=self._pauses,
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
        waiting = len(self._parked.get(model, ())) + sum(
            1 for ticket in self._queue if ticket.model == model and not ticket.abandoned
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
