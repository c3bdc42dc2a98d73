"""The dispatcher actor: the slots every request of a client takes, and the jobs it runs.

Why it is shaped this way: admission must be decided in one place for the whole client, or the
in-flight limit would see only part of the traffic. Every request, whatever started it, takes
a :meth:`Dispatcher.slot` before its first attempt and holds it until its outcome:

- a method call (:meth:`Client.complete`, :meth:`Client.embed`) takes it in its caller's task;
- a stream takes it in its reader task;
- a job takes it in a task of the dispatcher's own nursery: :meth:`Dispatcher.serve_jobs`
  starts, for each ``open_jobs`` block, a task there that receives the block's jobs on their
  channel and runs one task per job.

A slot is a ``trio.CapacityLimiter`` token (first come, first served: a request that finds every
slot taken queues behind those before it), plus one of its model's limiter first when the model
has a ``max_in_flight`` of its own (:class:`._config.ModelLimits`), so a request waiting for its
model holds no client slot and other models' requests pass it. The slot also owns the request's
total deadline (its cancel scope) and its record: leaving the slot by any path (an answer, an
error, the deadline, a cancellation, the client closing) records the outcome exactly once.

Backpressure reaches the producer of jobs: the task that receives them stops once
``max_in_flight`` jobs wait for a slot, the job channel fills, and the producer waits. When the
client closes, the dispatcher cancels every request still holding a slot and waits until each has
left it, so each ends with :class:`ClientClosedError`; jobs still waiting get that error as their
result when the results channel has room for it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import trio

from ._config import ModelLimits
from ._errors import ClientClosedError, InvalidRequestError
from ._jobs import Job, JobResult, prepare_job
from ._recorder import Trace
from ._retry import RetryPolicy, timed_out

if TYPE_CHECKING:
    from ._jobs import Call
    from ._meta import ResponseMeta
    from ._wire import ChatCompletion, EmbeddingResponse, Usage

__all__ = [
    "Dispatcher",
    "DispatcherStatistics",
    "JobBlock",
    "ModelDispatcherStatistics",
    "Request",
    "Slot",
]

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


class Request:
    """One request from its call to its outcome: what it is, how it goes, what it got.

    The request path fills in ``attempts``, ``meta``, ``usage`` and ``first_content_at`` as they
    become known; ``error`` is an outcome that did not raise (a stream interrupted after content
    hands its error to the caller through the stream, not as an exception).
    """

    __slots__ = (
        "attempts",
        "error",
        "first_content_at",
        "held",
        "kind",
        "last_error",
        "max_retries",
        "meta",
        "model",
        "scope",
        "started_at",
        "started_wall",
        "stream",
        "submitted_at",
        "timeout",
        "tokens",
        "trace",
        "usage",
    )

    def __init__(
        self,
        *,
        kind: str,
        model: str,
        tokens: int = 0,
        stream: bool = False,
        max_retries: int | None = None,
        timeout: float | None = None,
        trace: Trace | None = None,
    ) -> None:
        self.kind = kind
        self.model = model
        self.tokens = tokens
        self.stream = stream
        self.max_retries = max_retries
        self.timeout = timeout  # None: the client's total_timeout
        self.trace = trace  # only when the debug recorder is on: what was sent and got
        self.scope = trio.CancelScope()  # the total deadline; the client's closing cancels it
        self.attempts = 0
        self.held = 0.0  # seconds spent waiting for a proxy that is down
        self.last_error: Exception | None = None  # the latest failed attempt's error
        self.meta: ResponseMeta | None = None
        self.usage: Usage | None = None
        self.first_content_at: float | None = None
        self.error: Exception | None = None
        self.submitted_at = 0.0
        self.started_at = 0.0
        self.started_wall = 0.0


class Recorder(Protocol):
    """Whoever keeps the record of each finished request (the client's observer)."""

    def finished(self, request: Request, error: BaseException | None) -> None: ...


class Sender(Protocol):
    """Whoever sends a prepared call through its attempts (the client's request path)."""

    async def send(self, call: Call, request: Request) -> ChatCompletion | EmbeddingResponse: ...


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
        self._waiting_jobs = 0
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
        """Refuse new requests and cancel those in flight (each ends with ClientClosedError).

        The client calls it before stopping the actor, so every task being cancelled already
        knows why."""
        self._closing = True
        for request in self._active:
            request.scope.cancel()

    def statistics(self) -> DispatcherStatistics:
        limiter = self._limiter.statistics()
        return DispatcherStatistics(
            in_flight=limiter.borrowed_tokens,
            max_in_flight=int(limiter.total_tokens),
            waiting=limiter.tasks_waiting + self._waiting_jobs,
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
        """``async with dispatcher.slot(request):`` wait for a slot, then run under the request's
        deadline; the outcome is recorded on the way out. ``held``: the slot was already taken
        for it (:meth:`acquire`), in the order jobs were sent."""
        return Slot(self, request, held)

    def limits_model(self, model: str) -> bool:
        """Whether ``model`` has a ``max_in_flight`` of its own."""
        return bool(self._model_limiters) and model in self._model_limiters

    async def acquire(self, request: Request) -> None:
        """Wait for ``request``'s slot (its model's first, if limited), first come first served;
        :class:`ClientClosedError` once the client is closing."""
        if self._closing:
            raise ClientClosedError("the client is closed", model=request.model)
        request.submitted_at = trio.current_time()
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
        except BaseException:
            if model_limiter is not None:
                model_limiter.release_on_behalf_of(request)
            raise
        if self._closing:  # closed while it waited
            self._release(request)
            raise ClientClosedError("the client is closed", model=request.model)
        self._submitted += 1
        self._active.add(request)
        request.started_at = trio.current_time()
        request.started_wall = time.time()  # records are windowed by wall-clock time
        total = self._total_timeout if request.timeout is None else request.timeout
        if total is not None:
            request.scope.deadline = request.started_at + total

    def _release(self, request: Request) -> None:
        self._limiter.release_on_behalf_of(request)
        model_limiter = self._model_limiters.get(request.model) if self._model_limiters else None
        if model_limiter is not None:
            model_limiter.release_on_behalf_of(request)

    def _leave(self, request: Request, caught: bool, exc: BaseException | None) -> Exception | None:
        """``request`` left its slot: release it and record the outcome. When its scope caught
        a cancellation (the deadline, or the client closing), the error to raise instead."""
        self._active.discard(request)
        self._release(request)
        if self._closing and not self._active:
            self._drained.set()
        error: BaseException | None = exc
        replaced: Exception | None = None
        if caught:
            if trio.current_time() >= request.scope.deadline:
                total = self._total_timeout if request.timeout is None else request.timeout
                replaced = timed_out(total, request.model, request.last_error)
            elif self._closing:
                replaced = ClientClosedError(
                    "the client closed before the request finished", model=request.model
                )
            else:
                replaced = ClientClosedError(
                    "the request was cancelled before it finished", model=request.model
                )
            error = replaced
        elif exc is None:
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
        return replaced

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
        self._request.scope.__enter__()
        return self._request

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        request = self._request
        try:
            # True with no exception too: "caught" means a Cancelled of ours was swallowed.
            caught = request.scope.__exit__(exc_type, exc, traceback) and exc is not None
        except BaseException as changed:  # the scope turned the exception into another
            self._dispatcher._leave(request, False, changed)
            raise
        replaced = self._dispatcher._leave(request, caught, exc)
        if replaced is not None:
            raise replaced
        return False


class JobBlock:
    """The jobs of one ``open_jobs`` block, run in the dispatcher's nursery."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        jobs: trio.MemoryReceiveChannel[Job],
        results: trio.MemorySendChannel[JobResult],
        sender: Sender,
        *,
        estimate: bool,
        trace: bool,
    ) -> None:
        self._dispatcher = dispatcher
        self._jobs = jobs
        self._results = results
        self._sender = sender
        self._estimate = estimate
        self._trace = trace
        # Jobs taken from the channel and still waiting for a slot: at most max_in_flight.
        self._waiting_room = trio.CapacityLimiter(dispatcher._max_in_flight)
        self._scope = trio.CancelScope()
        self._ended = trio.Event()

    async def stop(self) -> None:
        """Cancel whatever is still running and wait, shielded, until all of it has ended."""
        self._scope.cancel()
        with trio.CancelScope(shield=True):
            await self._ended.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with self._scope, self._results, self._jobs:
                async with trio.open_nursery() as nursery:
                    task_status.started()
                    await self._feed(nursery)
        finally:
            self._ended.set()  # whatever ended it, a KeyboardInterrupt included

    async def _feed(self, nursery: trio.Nursery) -> None:
        jobs = self._jobs
        async for job in jobs:
            # Then whatever else is buffered, without a scheduler pass per job: when many
            # requests finished in one pass, as many new ones start in the next.
            while True:
                await self._start(job, nursery)
                try:
                    job = jobs.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break

    async def _start(self, job: Job, nursery: trio.Nursery) -> None:
        try:
            call = prepare_job(job, estimate=self._estimate)
        except InvalidRequestError as exc:
            await self._deliver(JobResult(id=getattr(job, "id", None), error=exc))
            return
        trace = Trace("POST", call.path, call.body) if self._trace else None
        request = Request(kind=call.kind, model=call.model, tokens=call.tokens, trace=trace)
        dispatcher = self._dispatcher
        if dispatcher.limits_model(call.model):
            # It waits for its model's slot in its own task, so other models' jobs pass it;
            # at most max_in_flight such jobs wait.
            await self._waiting_room.acquire_on_behalf_of(request)
            dispatcher._waiting_jobs += 1
            nursery.start_soon(self._run_job, job.id, call, request, False)
            return
        try:
            await dispatcher.acquire(request)  # in the order sent; the producer waits meanwhile
        except ClientClosedError as exc:
            await self._deliver(JobResult(id=job.id, error=exc))
            return
        except BaseException:
            if dispatcher._closing:  # cancelled with the client: say so, if there is room
                self._deliver_now(JobResult(id=job.id, error=_closed(request)))
            raise
        nursery.start_soon(self._run_job, job.id, call, request, True)

    async def _run_job(self, job_id: Any, call: Call, request: Request, held: bool) -> None:
        dispatcher = self._dispatcher
        submitted = request.submitted_at
        waiting = not held  # in the waiting room, until it holds a slot
        try:
            async with dispatcher.slot(request, held=held):
                if waiting:
                    waiting = self._leave_waiting_room(request)
                response = await self._sender.send(call, request)
        except Exception as exc:
            result = JobResult(
                id=job_id,
                error=exc,
                attempts=request.attempts,
                latency=trio.current_time() - submitted,
            )
        except BaseException:
            # Cancelled with the client, waiting for a slot or holding one (the dispatcher's
            # nursery is cancelled with the request's scope, so the Cancelled goes past the slot):
            # say so, if there is room.
            if dispatcher._closing:
                self._deliver_now(
                    JobResult(id=job_id, error=_closed(request), attempts=request.attempts)
                )
            raise
        else:
            result = JobResult(
                id=job_id,
                response=response,
                attempts=request.attempts,
                latency=trio.current_time() - submitted,
            )
        finally:
            if waiting:
                self._leave_waiting_room(request)
        await self._deliver(result)

    def _leave_waiting_room(self, request: Request) -> bool:
        """The job holds a slot, or stopped waiting for one (False: no longer waiting)."""
        self._waiting_room.release_on_behalf_of(request)
        self._dispatcher._waiting_jobs -= 1
        return False

    async def _deliver(self, result: JobResult) -> None:
        try:
            try:
                self._results.send_nowait(result)
            except trio.WouldBlock:
                await self._results.send(result)  # the consumer is behind: wait for it
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the consumer left the block

    def _deliver_now(self, result: JobResult) -> None:
        """Deliver without waiting (we are being cancelled), if there is room."""
        with contextlib.suppress(
            trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError
        ):
            self._results.send_nowait(result)


def _closed(request: Request) -> ClientClosedError:
    return ClientClosedError("the client closed before the request finished", model=request.model)
