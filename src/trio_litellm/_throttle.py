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
model's. A waiter held only by its model's pause is parked aside, so those queued behind it for
other models are not held up by it; the FIFO order holds for what everyone shares (the rpm and
tpm limits, a pause for everyone).

Our own ``rpm`` and ``tpm`` are each a sliding window, the hard bound (never more than ``rpm``
start in any 60 s), with a token bucket pacing under it: ``rpm / 60`` a second with a burst of one
second's share (:data:`._bucket.BURST_SECONDS`), so a minute's requests are spread across the
minute rather than let out at once and then held for the rest of it. A model may have an rpm /
tpm of its own (:class:`._config.ModelLimits`): a request counts against the client's and its
model's, and one held by its model's is parked like one held by its model's pause.

The decisions are pure classes beside the actor (no trio, no await, no IO): :mod:`._admission`
(the queue, the parked and the scopes), :mod:`._rate_limit` (the window of :mod:`._rate_window`
with the bucket of :mod:`._bucket`) and what the proxy said in :mod:`._restrictions`. This module
is the actor's shell: its channel, its loop, the fast path and the methods other tasks call.

With no rpm, no tpm, no pause and no header cap in force for everyone or for the request's model
(a model with limits of its own always has one), :meth:`Throttle.acquire` admits on a fast path that only reads the actor's state and sends it
nothing: the dispatcher acquires for every request, and an unlimited client should pay close to
nothing for it. All times are trio's clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypeAlias

import msgspec
import trio

from ._admission import Admission, ModelThrottleStatistics, Permit, ThrottleStatistics, Ticket
from ._config import ModelLimits
from ._errors import ClientClosedError, ConfigError, LiteLLMError
from ._meta import MODEL_LIMITER_SCOPES, RateLimitInfo
from ._rate_window import WindowEntry
from ._restrictions import DEFAULT_PAUSE, in_limiter_window

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


# --- the actor's messages ---------------------------------------------------------------------


class _Acquire(msgspec.Struct, frozen=True, kw_only=True, tag="acquire"):
    ticket: Ticket


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
        self._send, self._receive = trio.open_memory_channel[_Message](MESSAGE_BUFFER)
        # Written by the actor only:
        self._state = Admission(rpm=rpm, tpm=tpm, model_limits=model_limits or {})
        self._wake_scope: trio.CancelScope | None = None  # cancelled to re-examine a blocked head
        self._received = 0
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
                deadline = self._state.admit(trio.current_time())
                if deadline == math.inf:
                    self._wake_scope = None
                    message = await self._receive.receive()
                else:
                    with trio.move_on_at(deadline) as scope:
                        self._wake_scope = scope
                        message = await self._receive.receive()
                    if scope.cancelled_caught:
                        self._state.drop_abandoned_parked()
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
        self._wake_scope = None
        self._state.release_all()
        while True:
            try:
                message = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if isinstance(message, _Acquire):
                message.ticket.event.set()
        self._receive.close()

    def _apply(self, message: _Message) -> None:
        state = self._state
        if isinstance(message, _Acquire):
            state.queue.append(message.ticket)
        elif isinstance(message, _Reconcile):
            state.reconcile(
                message.entry,
                message.model,
                message.model_entry,
                message.tokens,
                trio.current_time(),
            )
        elif isinstance(message, _RateLimited):
            state.rate_limited(message.until, message.model)
        else:
            state.observe(message.ratelimit, message.at, message.model)

    # --- what other tasks call -----------------------------------------------------------------

    def try_acquire(self, tokens: int, model: str | None = None) -> Permit | None:
        """:meth:`acquire`'s fast path alone: the permit when nothing limits admission for
        everyone or for ``model``, nobody is queued and no message is pending; else None (then
        :meth:`acquire` waits for it)."""
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, not {tokens!r}")
        state = self._state
        if (
            state.unlimited
            and self._sent == self._received
            and not state.queue
            and (
                state.restricted_until == -math.inf or state.restricted_until <= trio.current_time()
            )
            and (
                not state.model_restricted_until
                or not model
                or state.model_restricted_until.get(model, -math.inf) <= trio.current_time()
            )
        ):
            self._fast_admitted += 1
            return Permit(tokens=tokens)
        return None

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
        permit = self.try_acquire(tokens, model)
        if permit is not None:
            return permit
        event = trio.Event()
        ticket = Ticket(tokens, model or None, event)
        if not await self._post(_Acquire(ticket=ticket)):
            raise _closed_error()
        try:
            await event.wait()
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
        if ratelimit.remaining_requests is not None or ratelimit.remaining_tokens is not None:
            await self._post(_Observe(ratelimit=ratelimit, at=trio.current_time(), model=model))
        if not scopes:
            return
        at = trio.current_time()
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
        return self._state.statistics(
            trio.current_time(), fast_admitted=self._fast_admitted, messages=self._received
        )
