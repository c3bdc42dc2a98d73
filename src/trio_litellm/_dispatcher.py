"""The dispatcher actor: every request of a client, method call or job, takes this one path.

Why it is shaped this way: admission must be decided in one place for the whole client, or the
rate limits, the health gate and the concurrency limit would each see only part of the traffic.
The dispatcher receives :class:`Work` over a bounded channel and starts one task per item under a
``CapacityLimiter`` of ``max_in_flight``; when every slot is taken it stops receiving, the channel
fills, and the submitter waits: backpressure reaches the producer instead of a queue growing.

Each attempt of a request waits for the health gate (the proxy is up), then for the throttle
(the rpm/tpm windows and any 429 pause), then runs. A 429 pauses the throttle for its model
group, or for everyone when the limit is the key's or the proxy's own; a connection failure (or a
502/503/504) is reported to the health monitor, which probes at once and may close the gate; the
answer's rate-limit headers and token usage go back to the throttle. Retries follow the
transport's stamina policy, with two rules of waiting: a connection failure that the monitor
then confirms as an outage does not use up ``max_retries`` (the retry waits at the gate until
the proxy is back, ``unavailable_timeout`` at most in all), while one the monitor does not
confirm does; and a proxy never reached since the client opened is not waited for at all (a
wrong URL, far more often than a restart), so its requests fail after their retries, in seconds.

A model may have a ``max_in_flight`` of its own (:class:`._config.ModelLimits`). Its work does
not go through the dispatcher's task: it gets a task of its own that takes a slot of the model's
``CapacityLimiter``, then one of the client's, so a request waiting for its model holds no client
slot, and other models' requests pass it. The producer still feels backpressure: such tasks
waiting for their slots are at most ``max_in_flight`` (of the client), and beyond that
:meth:`Dispatcher.submit` waits.

Every work item gets exactly one delivery: its result, its typed error, or
:class:`ClientClosedError` when the client closes first.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import trio

from ._config import ModelLimits
from ._errors import (
    APIStatusError,
    BudgetExceededError,
    ClientClosedError,
    LiteLLMError,
    ProxyConnectionError,
    RateLimitError,
    RequestTimeoutError,
    ServiceUnavailableError,
)
from ._events import EventBus, RequestSent, RetryScheduled, ThrottlePaused
from ._health import HealthMonitor
from ._limit_scope import rate_limit_model
from ._meta import ResponseMeta
from ._throttle import Throttle
from ._transport import Transport

if TYPE_CHECKING:
    from ._recorder import Trace

__all__ = ["Dispatcher", "DispatcherStatistics", "ModelDispatcherStatistics", "Runner", "Work"]

T = TypeVar("T")
logger = logging.getLogger("trio_litellm")
Runner = Callable[[Callable[[int], Awaitable[Any]]], Awaitable[Any]]
"""Runs an attempt function (``attempt(n)``) with admission and retries; given to operations."""

SUBMIT_BUFFER = 0
"""Work waiting for the dispatcher to take it: none. A submitter hands over directly, so a full
set of in-flight slots is felt by the submitter at once."""


class ModelDispatcherStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """One model's own concurrency limit: ``in_flight`` of its ``max_in_flight`` slots are taken
    (running, or waiting for a client slot); ``waiting`` requests wait for one."""

    in_flight: int
    max_in_flight: int
    waiting: int


class DispatcherStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of the dispatcher; ``models`` holds each model with a ``max_in_flight`` of
    its own."""

    in_flight: int
    max_in_flight: int
    waiting: int
    submitted: int
    succeeded: int
    failed: int
    retries: int
    models: dict[str, ModelDispatcherStatistics] = msgspec.field(default_factory=dict)


class Work:
    """One request for the dispatcher: what to run, its token estimate, and where its outcome goes.

    ``operation(run)`` does the request, calling ``run(attempt)`` for the part that must be
    admitted and retried; ``deliver(result, error, work)`` is awaited exactly once.
    """

    __slots__ = (
        "attempts",
        "deliver",
        "delivered",
        "ended",
        "held",
        "kind",
        "last_error",
        "max_retries",
        "model",
        "operation",
        "scope",
        "started_at",
        "started_wall",
        "stream",
        "submitted_at",
        "timeout",
        "tokens",
        "trace",
    )

    def __init__(
        self,
        operation: Callable[[Runner], Awaitable[Any]],
        deliver: Callable[[Any, BaseException | None, Work], Awaitable[None]],
        *,
        tokens: int = 0,
        max_retries: int | None = None,
        timeout: float | None = None,
        kind: str = "chat",
        model: str = "",
        stream: bool = False,
        trace: Trace | None = None,
    ) -> None:
        self.operation = operation
        self.deliver = deliver
        self.tokens = tokens
        self.max_retries = max_retries
        self.timeout = timeout
        self.kind = kind
        self.model = model
        self.stream = stream
        self.trace = trace  # only when the debug recorder is on: what the request sent and got
        self.scope = trio.CancelScope()
        self.attempts = 0
        self.held = 0.0  # seconds spent waiting for a proxy that is down
        self.last_error: Exception | None = None  # the latest failed attempt's error
        self.delivered = False
        # Set once the work's task is over, whatever way it ended (a KeyboardInterrupt included),
        # for whoever must wait for it (open_jobs' exit); None when nobody waits.
        self.ended: trio.Event | None = None
        self.submitted_at = 0.0
        self.started_at = 0.0
        self.started_wall = 0.0


class Dispatcher:
    """Admits, runs and retries every request of one client."""

    def __init__(
        self,
        transport: Transport,
        throttle: Throttle,
        monitor: HealthMonitor | None,
        *,
        max_in_flight: int,
        max_retries: int,
        backoff_initial: float,
        total_timeout: float | None = None,
        unavailable_timeout: float = math.inf,
        on_finished: Callable[[Work, Any, BaseException | None], None] | None = None,
        events: EventBus | None = None,
        model_limits: Mapping[str, ModelLimits] | None = None,
    ) -> None:
        self._on_finished = on_finished
        self._events = events
        self._transport = transport
        self._throttle = throttle
        self._monitor = monitor
        self._limiter = trio.CapacityLimiter(max_in_flight)
        # Models with a max_in_flight of their own, and the bound on work waiting for them.
        self._model_limiters = {
            model: trio.CapacityLimiter(limits.max_in_flight)
            for model, limits in (model_limits or {}).items()
            if limits.max_in_flight is not None
        }
        self._waiting_room = trio.CapacityLimiter(max_in_flight)
        self._max_retries = max_retries
        self._backoff_initial = backoff_initial
        self._total_timeout = total_timeout
        self._unavailable_timeout = unavailable_timeout
        # Whether the proxy ever answered this client (a request or a probe): a proxy never
        # reached is a wrong URL or a dead one far more often than a restarting one, so its
        # requests use up their retries instead of waiting at the gate.
        self._reached = False
        self._last_connection_error: ProxyConnectionError | None = None
        self._send, self._receive = trio.open_memory_channel[Work](SUBMIT_BUFFER)
        self._nursery: trio.Nursery | None = None
        self._idle = False  # run() waits in receive with nothing handed over since
        self._closing = False
        self._inline: set[Work] = set()  # work running in its caller's task (perform)
        self._inline_done = trio.Event()
        self._submitted = self._succeeded = self._failed = self._retries = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Take work and start a task for each, under the in-flight limit, until cancelled."""
        async with trio.open_nursery() as nursery:
            with self._receive, self._send:
                self._nursery = nursery
                task_status.started()
                try:
                    while True:
                        self._idle = True
                        work = await self._receive.receive()
                        try:
                            await self._limiter.acquire_on_behalf_of(work)
                        except trio.Cancelled:
                            await self._deliver_closed(work)
                            if work.ended is not None:
                                work.ended.set()
                            raise
                        nursery.start_soon(self._execute, work)
                finally:
                    self._idle = False
                    self._nursery = None
                    self._closing = True
                    for work in self._inline:
                        work.scope.cancel()
                    with trio.CancelScope(shield=True):  # they end at their next checkpoint
                        while self._inline:
                            self._inline_done = trio.Event()
                            await self._inline_done.wait()

    async def submit(self, work: Work) -> None:
        """Hand ``work`` over; waits while every in-flight slot is taken.

        When a slot is free and nobody is queued before us, the work's task starts right here,
        without a round trip through the dispatcher's own task: a producer submitting many jobs
        in a row fills every free slot in one go instead of one per scheduler pass.
        """
        work.submitted_at = trio.current_time()
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._model_limiters and work.model in self._model_limiters:
            await self._submit_limited(work, self._model_limiters[work.model])
            self._submitted += 1
            return
        nursery = self._claim_free_slot(work)
        if nursery is not None:
            nursery.start_soon(self._execute, work)
        else:
            self._idle = False  # a hand-over is under way: later submitters queue behind it
            try:
                await self._send.send(work)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                raise ClientClosedError("the client is closed") from None
        self._submitted += 1

    async def perform(self, work: Work) -> tuple[Any, BaseException | None] | None:
        """Run ``work`` in the calling task, if a slot is free and nobody is queued; else None
        (then :meth:`submit` it). Returns its result and its error, one of them None.

        A method call waits for its answer anyway, so running it here saves a task, a hand-over
        and a wake-up per request; it takes a slot, the gate, the throttle and the retries like
        any other work, and closing the client cancels it like any other.
        """
        work.submitted_at = trio.current_time()
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._model_limiters and work.model in self._model_limiters:
            return None  # it waits for its model's slot in a task of its own (submit)
        if self._claim_free_slot(work) is None:
            return None
        self._submitted += 1
        self._inline.add(work)
        try:
            return await self._perform(work)
        finally:
            self._inline.discard(work)
            self._limiter.release_on_behalf_of(work)
            if not self._inline:
                self._inline_done.set()

    def _claim_free_slot(self, work: Work) -> trio.Nursery | None:
        """Take a slot for ``work`` now if one is free and nobody is queued before it; then the
        nursery to run it in, else None (it must queue)."""
        nursery = self._nursery
        if not self._idle or nursery is None or self._limiter.available_tokens < 1:
            return None
        self._limiter.acquire_on_behalf_of_nowait(work)
        return nursery

    async def _submit_limited(self, work: Work, model_limiter: trio.CapacityLimiter) -> None:
        """Start ``work``'s task, which waits for its model's slot and then a client slot;
        waits while ``max_in_flight`` such tasks are already waiting."""
        await self._waiting_room.acquire_on_behalf_of(work)
        nursery = self._nursery
        if nursery is None:
            self._waiting_room.release_on_behalf_of(work)
            raise ClientClosedError("the client is closed")
        nursery.start_soon(self._execute_limited, work, model_limiter)

    async def _execute_limited(self, work: Work, model_limiter: trio.CapacityLimiter) -> None:
        try:
            try:
                await model_limiter.acquire_on_behalf_of(work)
                try:
                    await self._limiter.acquire_on_behalf_of(work)
                except BaseException:
                    model_limiter.release_on_behalf_of(work)
                    raise
            finally:
                self._waiting_room.release_on_behalf_of(work)
        except BaseException:
            await self._deliver_closed(work)  # only a cancellation: the client is closing
            if work.ended is not None:
                work.ended.set()
            raise
        try:
            await self._execute(work)
        finally:
            model_limiter.release_on_behalf_of(work)

    def statistics(self) -> DispatcherStatistics:
        limiter = self._limiter.statistics()
        return DispatcherStatistics(
            in_flight=limiter.borrowed_tokens,
            max_in_flight=int(limiter.total_tokens),
            waiting=self._send.statistics().tasks_waiting_send,
            submitted=self._submitted,
            succeeded=self._succeeded,
            failed=self._failed,
            retries=self._retries,
            models={
                model: ModelDispatcherStatistics(
                    in_flight=model_limiter.borrowed_tokens,
                    max_in_flight=int(model_limiter.total_tokens),
                    waiting=model_limiter.statistics().tasks_waiting,
                )
                for model, model_limiter in self._model_limiters.items()
            },
        )

    # --- one work item --------------------------------------------------------------------------

    async def _execute(self, work: Work) -> None:
        try:
            result, error = await self._perform(work)
            await self._deliver(work, result, error)
        finally:
            try:
                if not work.delivered:
                    await self._deliver_closed(work)
            finally:
                self._limiter.release_on_behalf_of(work)
                if work.ended is not None:
                    work.ended.set()

    async def _perform(self, work: Work) -> tuple[Any, BaseException | None]:
        """Run ``work`` to its outcome and record it; a cancellation from outside is recorded,
        then propagates."""
        result: Any = None
        error: BaseException | None = None
        work.started_at = trio.current_time()
        work.started_wall = time.time()  # records are windowed by wall-clock time
        # The total deadline (retries and waits included) is the work's own scope's: one cancel
        # scope less per request than a move_on_after of its own.
        total = self._total_timeout if work.timeout is None else work.timeout
        if total is not None:
            work.scope.deadline = work.started_at + total
        try:
            with work.scope:
                try:
                    result = await work.operation(lambda attempt: self._run(work, attempt))
                except Exception as exc:  # a failed request is an outcome, not a crash
                    error = exc
        except BaseException:
            self._failed += 1
            self._finished(work, None, ClientClosedError("the request was cancelled"))
            raise
        if work.scope.cancelled_caught:
            if trio.current_time() >= work.scope.deadline:
                error = RequestTimeoutError(
                    f"no answer within the total timeout of {total} s", model=work.model
                )
                error.__cause__ = work.last_error
            elif self._closing:
                error = ClientClosedError("the client closed before the request finished")
            else:
                error = ClientClosedError("the request was cancelled before it finished")
        if error is None:
            self._succeeded += 1
        else:
            self._failed += 1
        self._finished(work, result, error)
        return result, error

    def _finished(self, work: Work, result: Any, error: BaseException | None) -> None:
        """Tell the observer (usage records, logs); its failure never reaches the request."""
        if self._on_finished is None:
            return
        try:
            self._on_finished(work, result, error)
        except Exception:
            logger.exception("recording a finished request failed")

    async def _deliver(self, work: Work, result: Any, error: BaseException | None) -> None:
        work.delivered = True
        await work.deliver(result, error, work)

    async def _deliver_closed(self, work: Work) -> None:
        """Tell ``work`` the client closed, without waiting (we are being cancelled)."""
        with trio.CancelScope() as scope:
            scope.cancel()
            await self._deliver(
                work, None, ClientClosedError("the client closed before the request finished")
            )

    def _proxy_reached(self) -> bool:
        """Whether the proxy ever answered a request or a probe of this client."""
        if not self._reached and self._monitor is not None:
            probes = self._monitor.statistics()
            self._reached = probes.probes > probes.failed_probes
        return self._reached

    async def _wait_for_proxy(self, work: Work, monitor: HealthMonitor) -> bool:
        """Wait at the health gate while the proxy is down, for ``unavailable_timeout`` at most
        over the request's life; then raise a :class:`ProxyConnectionError` that is not retried.
        True if it waited (the monitor saw the proxy down).

        A proxy never reached is not waited for (the request tries, and uses up its retries).
        """
        gate = monitor.gate
        if gate.is_open or not self._proxy_reached():
            await trio.lowlevel.checkpoint_if_cancelled()
            return False
        if work.last_error is None:  # held for what another request ran into
            work.last_error = self._last_connection_error
        start = trio.current_time()
        with trio.move_on_after(self._unavailable_timeout - work.held):
            await gate.wait_open()
        work.held += trio.current_time() - start
        if gate.is_open:
            return True
        cause = work.last_error
        reason = (cause and str(cause)) or monitor.statistics().last_failure or "no answer"
        error = ProxyConnectionError(
            f"the proxy at {self._transport.display_url} is unavailable: waited "
            f"{work.held:.1f} s for it (unavailable_timeout={self._unavailable_timeout:g}); "
            f"last error: {reason}",
            model=work.model,
        )
        error.retryable = False  # the wait for it is over: no more retries
        raise error from cause

    async def _run(self, work: Work, attempt: Callable[[int], Awaitable[T]]) -> T:
        retries = self._max_retries if work.max_retries is None else work.max_retries
        failures = 0

        def hook(exc: Exception) -> bool | float:
            nonlocal failures
            if not isinstance(exc, LiteLLMError):
                return False  # a cancellation passing through stamina, or a bug: not ours to retry
            work.last_error = exc
            decision = self._transport.retry_decision(exc)
            if decision is False:
                return False
            failures += 1
            if failures > retries:
                return False
            self._retries += 1
            self._transport.log_retry(exc, work.attempts, decision, work.model)
            if self._events is not None and self._events.active:
                self._events.emit(
                    RetryScheduled(
                        at=trio.current_time(),
                        model=work.model,
                        attempt=work.attempts,
                        error=f"{type(exc).__name__}: {exc}",
                        wait=decision if not isinstance(decision, bool) else None,
                    )
                )
            if (
                isinstance(exc, ProxyConnectionError)
                and self._monitor is not None
                and self._proxy_reached()
            ):
                return self._backoff_initial  # the gate does the waiting while the proxy is down
            return decision

        async def admitted(number: int) -> T:
            nonlocal failures
            work.attempts = number
            if (
                self._monitor is not None
                and await self._wait_for_proxy(work, self._monitor)
                and isinstance(work.last_error, ProxyConnectionError)
                and failures
            ):
                # The monitor confirmed an outage: the connection failure before it was the
                # proxy's absence, and does not use up a retry (unavailable_timeout bounds the
                # waiting). A failure while the monitor sees the proxy up does.
                failures -= 1
            permit = await self._throttle.acquire(work.tokens, work.model)
            if self._events is not None and self._events.active:
                self._events.emit(
                    RequestSent(
                        at=trio.current_time(), kind=work.kind, model=work.model, attempt=number
                    )
                )
            try:
                outcome = await attempt(number)
            except RateLimitError as exc:
                if not isinstance(exc, BudgetExceededError):
                    await self._throttle.rate_limited(
                        exc.retry_after, model=rate_limit_model(exc.message, work.model)
                    )
                    if self._events is not None and self._events.active:
                        self._events.emit(
                            ThrottlePaused(
                                at=trio.current_time(), seconds=exc.retry_after, model=work.model
                            )
                        )
                raise
            except ProxyConnectionError as exc:
                self._last_connection_error = exc
                if self._monitor is not None:
                    await self._monitor.report_connection_failure(exc.message)
                raise
            except ServiceUnavailableError as exc:
                # A gateway in front of the proxy answers 502/503/504 when the proxy behind it is
                # gone: ask the monitor for a probe now (it decides; the upstream's own 503s leave
                # the proxy up).
                self._reached = True
                if self._monitor is not None:
                    await self._monitor.report_connection_failure(exc.message)
                raise
            except APIStatusError:
                self._reached = True
                raise
            self._reached = True
            meta = getattr(outcome, "meta", None)
            if isinstance(meta, ResponseMeta):
                await self._throttle.observe(
                    meta.ratelimit, model=work.model, scopes=meta.scope_ratelimits
                )
            usage = getattr(outcome, "usage", None)
            if usage is not None and work.tokens:
                await self._throttle.reconcile(permit, usage.total_tokens)
            return outcome

        return await self._transport.call(
            admitted, max_retries=retries, timeout=math.inf, hook=hook
        )
