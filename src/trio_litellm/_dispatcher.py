"""The dispatcher actor: the slots every request of a client takes, and the jobs it runs.

Why it is shaped this way: admission must be decided in one place for the whole client, or the
in-flight limit would see only part of the traffic. Every request, whatever started it, takes
a :meth:`Dispatcher.slot` before its first attempt and holds it until its outcome:

- a method call (:meth:`Client.complete`, :meth:`Client.embed`) takes it in its caller's task;
- a stream takes it in its reader task;
- a job takes it in the dispatcher's own nursery: :meth:`Dispatcher.serve_jobs` starts there,
  for each ``open_jobs`` block, a :class:`._jobs.JobBlock` whose task receives the block's jobs
  on their channel, takes each one's slot in the order sent and runs a task per job.

A slot is a ``trio.CapacityLimiter`` token (first come, first served: a request that finds every
slot taken queues behind those before it), plus one of its model's limiter first when the model
has a ``max_in_flight`` of its own (:class:`._config.ModelLimits`), so a request waiting for its
model holds no client slot and other models' requests pass it. The slot also sets the request's
total deadline (``Request.deadline``; no cancel scope surrounds the request: its waits honour the
deadline, see ``_calls.Request``) and owns its record: leaving the slot by any path (an answer,
an error, the deadline, a cancellation, the client closing) records the outcome exactly once.

Backpressure reaches the producer of jobs: the task that receives them waits for each job's
slot before taking the next, the job channel fills, and the producer waits. When the
client closes, the dispatcher interrupts every request still holding a slot
(``Request.interrupt``: the wait under way ends) and waits until each has left it, so each ends
with :class:`ClientClosedError`; jobs still waiting get that error as their
result when the results channel has room for it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Protocol

import msgspec
import trio

from ._calls import Request
from ._config import ModelLimits
from ._errors import ClientClosedError
from ._jobs import Job, JobBlock, JobResult, Sender
from ._retry import RetryPolicy

__all__ = ["Dispatcher", "DispatcherStatistics", "ModelDispatcherStatistics", "Slot"]

logger = logging.getLogger("trio_litellm")


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


class Recorder(Protocol):
    """Whoever keeps the record of each finished request (the client's observer)."""

    def finished(self, request: Request, error: BaseException | None) -> None: ...


class Dispatcher:
    """The slots of one client's requests, and the runner of its jobs."""

    def __init__(
        self,
        *,
        max_in_flight: int,
        total_timeout: float | None,
        recorder: Recorder,
        policy: RetryPolicy,
        model_limits: Mapping[str, ModelLimits] | None = None,
    ) -> None:
        self._recorder = recorder
        self._policy = policy
        self._total_timeout = total_timeout
        self._limiter = trio.CapacityLimiter(max_in_flight)
        # Models with a max_in_flight of their own.
        self._model_limiters = {
            model: trio.CapacityLimiter(limits.max_in_flight)
            for model, limits in (model_limits or {}).items()
            if limits.max_in_flight is not None
        }
        self._max_in_flight = max_in_flight
        self._nursery: trio.Nursery | None = None
        self._closing = False
        self._active: set[Request] = set()  # requests holding a slot
        self._drained = trio.Event()
        self.waiting_jobs = 0  # jobs of models with a limit of their own, waiting in their tasks
        self._submitted = self._succeeded = self._failed = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the nursery the jobs run in, until cancelled; then end every request in flight."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self.close()
            with trio.CancelScope(shield=True):  # they leave their slots at their next checkpoint
                while self._active:
                    self._drained = trio.Event()
                    await self._drained.wait()

    def close(self) -> None:
        """Refuse new requests and end those in flight (each with ClientClosedError).

        The client calls it before stopping the actor, so every request being ended already
        knows why."""
        self._closing = True
        for request in self._active:
            request.interrupt()

    def statistics(self) -> DispatcherStatistics:
        limiter = self._limiter.statistics()
        return DispatcherStatistics(
            in_flight=limiter.borrowed_tokens,
            max_in_flight=int(limiter.total_tokens),
            waiting=limiter.tasks_waiting + self.waiting_jobs,
            submitted=self._submitted,
            succeeded=self._succeeded,
            failed=self._failed,
            retries=self._policy.retries,
            models={
                model: ModelDispatcherStatistics(
                    in_flight=model_limiter.borrowed_tokens,
                    max_in_flight=int(model_limiter.total_tokens),
                    waiting=model_limiter.statistics().tasks_waiting,
                )
                for model, model_limiter in self._model_limiters.items()
            },
        )

    # --- slots ----------------------------------------------------------------------------------

    def slot(self, request: Request, *, held: bool = False) -> Slot:
        """``async with dispatcher.slot(request):`` wait for a slot and set the request's
        deadline; the outcome is recorded on the way out. ``held``: the slot was already taken
        for it (:meth:`acquire`), in the order jobs were sent."""
        return Slot(self, request, held)

    @property
    def closing(self) -> bool:
        """Whether the client is closing (or closed): new requests are refused."""
        return self._closing

    @property
    def max_in_flight(self) -> int:
        """Requests that may hold a slot at once."""
        return self._max_in_flight

    def limits_model(self, model: str) -> bool:
        """Whether ``model`` has a ``max_in_flight`` of its own."""
        return bool(self._model_limiters) and model in self._model_limiters

    async def acquire(self, request: Request) -> None:
        """Wait for ``request``'s slot (its model's first, if limited), first come first served;
        :class:`ClientClosedError` once the client is closing."""
        if self._closing:
            raise ClientClosedError("the client is closed", model=request.model)
        now = request.submitted_at = trio.current_time()
        model_limiter = self._model_limiters.get(request.model) if self._model_limiters else None
        if model_limiter is not None:
            await model_limiter.acquire_on_behalf_of(request)
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                # Free and nobody queued (trio's limiter checks both): no trip through the
                # scheduler; else wait in line, first come first served.
                self._limiter.acquire_on_behalf_of_nowait(request)
            except trio.WouldBlock:
                await self._limiter.acquire_on_behalf_of(request)
                now = trio.current_time()
        except BaseException:
            if model_limiter is not None:
                model_limiter.release_on_behalf_of(request)
            raise
        if self._closing:  # closed while it waited
            self._release(request)
            raise ClientClosedError("the client is closed", model=request.model)
        self._submitted += 1
        self._active.add(request)
        if model_limiter is not None:
            now = trio.current_time()  # it may have waited for its model
        request.started_at = now
        request.started_wall = time.time()  # records are windowed by wall-clock time
        total = request.total = self._total_timeout if request.timeout is None else request.timeout
        request.deadline = math.inf if total is None else request.started_at + total

    def _release(self, request: Request) -> None:
        self._limiter.release_on_behalf_of(request)
        model_limiter = self._model_limiters.get(request.model) if self._model_limiters else None
        if model_limiter is not None:
            model_limiter.release_on_behalf_of(request)

    def _leave(self, request: Request, exc: BaseException | None) -> None:
        """``request`` left its slot, with ``exc`` raised: release it and record the outcome."""
        self._active.discard(request)
        self._release(request)
        if self._closing and not self._active:
            self._drained.set()
        error: BaseException | None = exc
        if exc is None:
            error = request.error
        elif not isinstance(exc, Exception):  # cancelled from outside, or interrupted
            error = ClientClosedError("the request was cancelled", model=request.model)
        if error is None:
            self._succeeded += 1
        else:
            self._failed += 1
        try:
            self._recorder.finished(request, error)
        except Exception:  # the record's failure never reaches the request
            logger.exception("recording a finished request failed")

    # --- jobs -----------------------------------------------------------------------------------

    async def serve_jobs(
        self,
        jobs: trio.MemoryReceiveChannel[Job],
        results: trio.MemorySendChannel[JobResult],
        sender: Sender,
        *,
        estimate: bool,
        trace: bool,
    ) -> JobBlock:
        """Run the jobs arriving on ``jobs`` in the dispatcher's nursery until that channel
        closes, each result on ``results``; both channels are ours from now on (closed when
        done). :meth:`JobBlock.stop` ends it early."""
        nursery = self._nursery
        if nursery is None:
            jobs.close()
            results.close()
            raise ClientClosedError("the client is closed")
        block = JobBlock(self, jobs, results, sender, estimate=estimate, trace=trace)
        await nursery.start(block.run)
        return block


class Slot:
    """A request's hold on the dispatcher (see :meth:`Dispatcher.slot`)."""

    __slots__ = ("_dispatcher", "_held", "_request")

    def __init__(self, dispatcher: Dispatcher, request: Request, held: bool) -> None:
        self._dispatcher = dispatcher
        self._request = request
        self._held = held

    async def __aenter__(self) -> Request:
        if not self._held:
            await self._dispatcher.acquire(self._request)
        return self._request

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        self._dispatcher._leave(self._request, exc)
        return False
