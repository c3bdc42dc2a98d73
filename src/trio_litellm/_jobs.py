"""Jobs: work sent on a channel, each answered by one result on another.

:meth:`Client.open_jobs` hands the two channels to the caller and the job side to a
:class:`JobBlock`, which the dispatcher runs in its own nursery: one task receives the jobs,
takes each one's slot in the order sent (the producer waits meanwhile: backpressure), and starts
a task per job that runs the same request path as a method call
(``RequestPath.send`` under the job's slot) and sends its :class:`JobResult`. A job for a model
with a ``max_in_flight`` of its own waits for its model in its own task instead, so other models'
jobs pass it; at most ``max_in_flight`` such jobs wait.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import trio

from ._calls import (
    Call,
    Request,
    check_chat,
    check_embedding,
    invalid,
    kind_of,
    prepare,
    request_for,
)
from ._errors import ClientClosedError, InvalidRequestError
from ._wire import ChatCompletion, ChatRequest, EmbeddingRequest, EmbeddingResponse

if TYPE_CHECKING:
    from ._dispatcher import Dispatcher

__all__ = ["Job", "JobBlock", "JobResult", "Sender", "prepare_job"]


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """One unit of work for :meth:`Client.open_jobs`: an id of yours and the request."""

    id: Any
    request: ChatRequest | EmbeddingRequest | dict[str, Any]
    keep_body: bool = False
    """Keep the answer's raw JSON in ``response.meta.body`` (as batch output needs); an answer
    that does not decode comes as a ``ResponseDecodeError`` with ``status``, ``response_body``
    and ``response_headers`` set."""


class JobResult(msgspec.Struct, frozen=True, kw_only=True):
    """The one result of a :class:`Job`: a response, or the typed error that ended it.

    ``attempts`` counts the tries made; ``latency`` is seconds from submission to result.
    """

    id: Any
    response: ChatCompletion | EmbeddingResponse | None = None
    error: Exception | None = None
    attempts: int = 0
    latency: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the job succeeded."""
        return self.error is None


class Sender(Protocol):
    """Whoever sends a prepared call through its attempts (the client's request path)."""

    async def send(self, call: Call, request: Request) -> ChatCompletion | EmbeddingResponse: ...


def prepare_job(job: object, *, estimate: bool = True) -> Call:
    """Check and prepare a :class:`Job`'s request, by the same rules as a method call's."""
    if not isinstance(job, Job):
        raise invalid("", "job", f"must be a Job(id=..., request=...), not {kind_of(job)}")
    request = job.request
    if isinstance(request, ChatRequest):
        if request.stream:
            raise invalid("", "stream", "cannot be set in a job; use client.stream()")
        check_chat(request, "")
    elif isinstance(request, EmbeddingRequest):
        check_embedding(request, "")
    call = prepare(request, estimate=estimate)
    return msgspec.structs.replace(call, keep_body=True) if job.keep_body else call


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
        self._waiting_room = trio.CapacityLimiter(dispatcher.max_in_flight)
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
                try:
                    async with trio.open_nursery() as nursery:
                        for _ in range(self._dispatcher.max_in_flight):
                            nursery.start_soon(self._work, nursery)
                        task_status.started()
                finally:
                    if self._dispatcher.closing:
                        self._refuse_buffered()
        finally:
            self._ended.set()  # whatever ended it, a KeyboardInterrupt included

    def _refuse_buffered(self) -> None:
        """The client closed: the jobs sent and not yet taken get their ClientClosedError too
        (as far as the results channel has room)."""
        while True:
            try:
                job = self._jobs.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return
            error = ClientClosedError("the client closed before the request was sent")
            self._deliver_now(JobResult(id=getattr(job, "id", None), error=error))

    async def _work(self, nursery: trio.Nursery) -> None:
        """One worker: take the next job, run it to its result, again, until the channel ends.

        ``max_in_flight`` workers share the channel, so no more jobs than that are taken from it
        before they can run: the producer waits (backpressure). A worker spawns nothing for a
        job; only one for a model with its own limit waits in a task of its own.
        """
        jobs = self._jobs
        while True:
            # What is buffered is taken without a trip through the scheduler.
            try:
                job = jobs.receive_nowait()
            except trio.WouldBlock:
                try:
                    job = await jobs.receive()
                except trio.EndOfChannel:
                    return
            except trio.EndOfChannel:
                return
            if not await self._start(job, nursery):
                return

    async def _start(self, job: Job, nursery: trio.Nursery) -> bool:
        """Run ``job`` (or hand it to a task of its own); False once the client is closing."""
        try:
            call = prepare_job(job, estimate=self._estimate)
        except InvalidRequestError as exc:
            await self._deliver(JobResult(id=getattr(job, "id", None), error=exc))
            return True
        request = request_for(call, recording=self._trace)
        dispatcher = self._dispatcher
        if dispatcher.limits_model(call.model):
            # It waits for its model's slot in its own task, so other models' jobs pass it;
            # at most max_in_flight such jobs wait.
            await self._waiting_room.acquire_on_behalf_of(request)
            dispatcher.waiting_jobs += 1
            nursery.start_soon(self._run_job, job.id, call, request, False)
            return True
        try:
            await dispatcher.acquire(request)
        except ClientClosedError as exc:
            await self._deliver(JobResult(id=job.id, error=exc))
            return False
        except BaseException:
            if dispatcher.closing:  # cancelled with the client: say so, if there is room
                self._deliver_now(JobResult(id=job.id, error=_closed(request)))
            raise
        await self._run_job(job.id, call, request, True)
        return True

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
            # nursery is cancelled when the client closes, so the Cancelled goes past the slot):
            # say so, if there is room.
            if dispatcher.closing:
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
        self._dispatcher.waiting_jobs -= 1
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
