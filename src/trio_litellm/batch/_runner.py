"""``run_batch``: an OpenAI Batch API input file through the proxy, exactly once per custom_id.

How "exactly once" holds across crashes: the output file is the only record of what is done.
Each result is appended as one whole line, with one ``write`` call, as it arrives; a process killed
mid-write can leave at most a torn last line, which the next run cuts off before it starts. A run
first reads the output (``recover_output``), then submits only the custom_ids it does not hold, so
a request whose answer was not written is done again, and one whose answer was written is never
repeated. The input is validated whole before anything is sent, then read a second time, line by
line, to submit: memory holds custom_ids, never the file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import msgspec
import trio

from .._client import Client
from .._errors import APIStatusError, LiteLLMError
from .._jobs import Job, JobResult
from .._meta import ResponseMeta, meta_from_headers
from ._input import InputProblem, InputScan, iter_input, scan_input
from ._lock import OutputLock
from ._output import (
    OutputState,
    OutputWriter,
    ProxyFigures,
    drop_failed,
    error_record,
    recover_output,
    response_record,
)
from ._report import read_output_usage
from ._summary import BatchSummary, JobTotals, SummaryBuilder

__all__ = ["BatchDisplay", "run_batch"]

SYNC_INTERVAL = 1.0
"""Seconds between fsyncs of the output: a machine crash loses at most this much finished work
(a killed process loses nothing that was written)."""

_error_body_encoder = msgspec.json.Encoder()


class BatchDisplay(Protocol):
    """What shows a run's progress while it goes: the command's bar or plain lines
    (:class:`trio_litellm.cli.BatchProgress`), or anything of this shape.

    The run makes one once it knows how many results it will record (``progress(total)``),
    enters it before the first request, runs :meth:`run` beside the requests, calls
    :meth:`update` after every result, and leaves it when the run ends, however it ends.
    """

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def run(self, client: Client) -> None:
        """Until cancelled: show what happens while no result comes (an outage, time passing)."""
        ...

    def update(self, builder: SummaryBuilder) -> None:
        """After every result, with the run's live counters; called up to millions of times."""
        ...


class _NoDisplay:
    """The display of a run that shows nothing."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass

    async def run(self, client: Client) -> None:
        pass

    def update(self, builder: SummaryBuilder) -> None:
        pass


async def run_batch(
    client: Client,
    input_path: str | Path,
    output_path: str | Path,
    *,
    model: str | None = None,
    shard: tuple[int, int] | None = None,
    retry_failed: bool = False,
    skip_invalid: bool = False,
    progress: Callable[[int], BatchDisplay] | None = None,
    max_buffer: int = 256,
    on_result: Callable[[JobResult], None] | None = None,
    stop: trio.Event | None = None,
) -> BatchSummary:
    """Run every request of ``input_path`` not yet answered in ``output_path``; return the summary.

    Raises :class:`BatchInputError` (every bad line, with its number) before sending anything,
    unless ``skip_invalid``: then bad lines are written to the output as errors. ``shard=(i, n)``
    runs only the custom_ids that hash to shard ``i`` of ``n``. ``retry_failed`` first removes
    the failed answers from the output and runs those requests again. ``progress`` makes the
    run's display from the number of results it will record (for the command's bar,
    ``lambda total: BatchProgress(total, console=Console(stderr=True))`` with
    :class:`trio_litellm.cli.BatchProgress`); None shows nothing. The run holds the output's
    lock throughout: while
    another run holds it, raises :class:`OutputLockedError` at once, naming that run's PID.
    Setting ``stop`` ends the run early but cleanly: the requests in flight are cancelled (they
    are not written, so the next run sends them) and the summary, marked ``interrupted``, covers
    what finished.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    with OutputLock(output_path):
        return await _run_locked(
            client,
            input_path,
            output_path,
            model=model,
            shard=shard,
            retry_failed=retry_failed,
            skip_invalid=skip_invalid,
            progress=progress,
            max_buffer=max_buffer,
            on_result=on_result,
            stop=stop,
        )


async def _run_locked(
    client: Client,
    input_path: Path,
    output_path: Path,
    *,
    model: str | None,
    shard: tuple[int, int] | None,
    retry_failed: bool,
    skip_invalid: bool,
    progress: Callable[[int], BatchDisplay] | None,
    max_buffer: int,
    on_result: Callable[[JobResult], None] | None,
    stop: trio.Event | None,
) -> BatchSummary:
    state: OutputState = await trio.to_thread.run_sync(recover_output, output_path)
    if retry_failed:
        await trio.to_thread.run_sync(drop_failed, output_path, state)  # state.failed is now 0
    skip = state.done
    # Only the input's own ids count as done: an output holding another job's ids (or ids since
    # removed from the input) would otherwise make the figures not add up.
    scan: InputScan = await trio.to_thread.run_sync(
        lambda: scan_input(input_path, model=model, shard=shard, done=skip)
    )
    if not skip_invalid:
        scan.raise_for_problems()
    before = await trio.to_thread.run_sync(_job_totals, output_path)
    already = scan.already_done
    invalid = scan.in_shard_problems
    total = max(scan.in_shard - already, 0) + (invalid if skip_invalid else 0)
    builder = SummaryBuilder()
    display: BatchDisplay = _NoDisplay() if progress is None else progress(total)
    start = trio.current_time()
    with OutputWriter(output_path) as writer, display:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_sync_periodically, writer)
            if stop is not None:
                nursery.start_soon(_cancel_when_set, stop, nursery.cancel_scope)
            nursery.start_soon(display.run, client)
            async with client.open_jobs(max_buffer=max_buffer) as (send_jobs, receive_results):
                nursery.start_soon(
                    _produce, input_path, model, shard, skip, send_jobs, writer, builder
                )
                async for result in receive_results:
                    writer.write(_record(result))
                    _account(builder, result)
                    display.update(builder)
                    if on_result is not None:
                        on_result(result)
            nursery.cancel_scope.cancel()
        display.update(builder)
    return builder.summary(
        elapsed=trio.current_time() - start,
        input_requests=scan.in_shard,
        already_done=already,
        invalid=invalid,
        failed_before=state.failed,
        interrupted=stop is not None and stop.is_set(),
        before=before,
    )


def _job_totals(output_path: Path) -> JobTotals:
    """The figures of what the output holds, earlier runs' lines, from the file itself."""
    usage = read_output_usage(output_path)
    return JobTotals(
        requests=usage.requests,
        succeeded=usage.succeeded,
        failed=usage.failed,
        tokens_in=usage.tokens_in,
        tokens_out=usage.tokens_out,
        cost=usage.cost,
        cost_complete=usage.cost_complete,
    )


async def _produce(
    input_path: Path,
    model: str | None,
    shard: tuple[int, int] | None,
    skip: dict[str, bool],
    send_jobs: trio.MemorySendChannel[Job],
    writer: OutputWriter,
    builder: SummaryBuilder,
) -> None:
    """Read the input a second time and submit what is not done; bad lines go out as errors."""
    async with send_jobs:
        for item in iter_input(input_path, model=model, shard=shard, skip=skip):
            if isinstance(item, InputProblem):
                # A line without a usable id of its own (none, or a duplicate) is recorded under
                # "line-N", once: a resumed run finds that id in the output and skips it.
                custom_id = (
                    item.custom_id if item.recordable and item.custom_id else f"line-{item.line_no}"
                )
                if custom_id in skip:
                    continue
                writer.write(
                    error_record(
                        custom_id,
                        code="invalid_line",
                        message=f"line {item.line_no}: {item.message}",
                    )
                )
                builder.add(model="-", ok=False, outcome="invalid_line", attempts=0, latency=0.0)
                continue
            await send_jobs.send(Job(id=item.custom_id, request=item.body, keep_body=True))
            await trio.lowlevel.checkpoint_if_cancelled()


def _record(result: JobResult) -> bytes:
    """The output line for one result, in OpenAI's batch output format, with the proxy's own
    figures under ``"litellm"``.

    An answer is written as it came: its status, its request id and its body bytes, whether or
    not we could decode it (an answer our decoder refuses was still paid for).
    """
    custom_id = str(result.id)
    figures = _figures(result)
    response = result.response
    meta = response.meta if response is not None else None
    if meta is not None and meta.body is not None:
        return response_record(
            custom_id,
            status_code=meta.status,
            request_id=meta.request_id or meta.call_id,
            body=meta.body,
            litellm=figures,
        )
    error = result.error
    answered = _answer_of(error)
    if answered is not None:
        meta, body = answered
        return response_record(
            custom_id,
            status_code=meta.status,
            request_id=meta.request_id or meta.call_id,
            body=body,
            litellm=figures,
        )
    if isinstance(error, APIStatusError) and error.status is not None:
        body = _error_body_encoder.encode(
            {
                "error": {
                    "message": error.message,
                    "type": error.type,
                    "param": error.param,
                    "code": error.code,
                }
            }
        )
        return response_record(
            custom_id,
            status_code=error.status,
            request_id=error.call_id,
            body=body,
            litellm=figures,
        )
    code = type(error).__name__ if error is not None else "unknown"
    return error_record(
        custom_id,
        code=code,
        message=str(error) if error is not None else "no result",
        litellm=figures,
    )


def _answer_of(error: Exception | None) -> tuple[ResponseMeta, bytes] | None:
    """The proxy's answer an error carries (an error status, or a body we could not decode),
    with what its headers say; None for an error that had no answer."""
    if not isinstance(error, LiteLLMError):
        return None
    if error.status is None or error.response_body is None:
        return None
    body = error.response_body.encode()  # the text of the answer's bytes, the key masked
    return meta_from_headers(error.status, error.response_headers or {}), body


def _figures(result: JobResult) -> ProxyFigures:
    """What the proxy said of one request (its headers), for the output line and the summary.

    The cost is ``x-litellm-response-cost``, else the ``usage.cost`` of the body.
    """
    meta: ResponseMeta | None = None
    cost: float | None = None
    response = result.response
    if response is not None:
        meta = response.meta
        usage = response.usage
        cost = usage.cost if usage is not None else None
    else:
        answered = _answer_of(result.error)
        meta = answered[0] if answered is not None else None
    if meta is not None and meta.response_cost is not None:
        cost = meta.response_cost
    error = result.error
    return ProxyFigures(
        response_cost=cost,
        call_id=(meta.call_id if meta is not None else None)
        or (error.call_id if isinstance(error, LiteLLMError) else None),
        model_id=meta.model_id if meta is not None else None,
        model_group=meta.model_group if meta is not None else None,
        attempts=result.attempts,
    )


def _account(builder: SummaryBuilder, result: JobResult) -> None:
    figures = _figures(result)
    response = result.response
    if response is not None:
        usage = response.usage
        builder.add(
            model=figures.model_group or response.model or "-",
            ok=True,
            outcome="succeeded",
            attempts=result.attempts,
            latency=result.latency,
            tokens_in=usage.prompt_tokens if usage is not None else 0,
            tokens_out=usage.completion_tokens if usage is not None else 0,
            cost=figures.response_cost,
        )
        return
    error = result.error
    answered = _answer_of(error)
    asked = error.model if isinstance(error, LiteLLMError) else None
    if answered is not None and 200 <= answered[0].status < 300:
        # Written as a success; only its tokens are unknown, as its body could not be read.
        builder.add(
            model=figures.model_group or asked or "-",
            ok=True,
            outcome="succeeded",
            attempts=result.attempts,
            latency=result.latency,
            cost=figures.response_cost,
        )
        return
    if isinstance(error, APIStatusError) and error.status is not None:
        outcome = f"http_{error.status}"
    else:
        outcome = type(error).__name__ if error is not None else "unknown"
    builder.add(
        model=asked or "-",
        ok=False,
        outcome=outcome,
        attempts=result.attempts,
        latency=result.latency,
        cost=figures.response_cost,
    )


async def _cancel_when_set(stop: trio.Event, scope: trio.CancelScope) -> None:
    await stop.wait()
    scope.cancel()


async def _sync_periodically(writer: OutputWriter) -> None:
    while True:
        await trio.sleep(SYNC_INTERVAL)
        await trio.to_thread.run_sync(writer.sync)
