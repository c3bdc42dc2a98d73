"""The per-stream reader task, and the :class:`ChatStream` the caller iterates.

Why a task: the HTTP body is read by one task that owns the response from open to close, so
that leaving the caller's ``async with`` (break, exception, cancellation) cancels that task and
closes the response at one place, whatever the caller was doing. :meth:`Client.stream` starts it
with ``nursery.start``: :meth:`StreamReader.run` is the stream's whole request, top to bottom
(the dispatcher's slot, then attempts through the request path's gate, throttle and retry
policy), and calls ``task_status.started()`` once the first content has arrived. It feeds the
sans-IO SSE parser, decodes chunks with msgspec and sends them into a bounded channel: a slow
consumer slows the reader (backpressure) and nothing queues without bound.

The reader holds chunks back until the first one with content. Until then nothing has reached
the caller, so any failure (an error status, an in-band ``{"error": ...}`` event, a dropped
connection, no first token in time) is raised and retried by the retry policy, and one that is
not retried comes out of ``nursery.start`` in the caller's task. After it, every abnormal end
becomes a :class:`StreamInterruptedError` carrying the partial completion, handed to the caller
at the end of the chunks: a stream never ends short in silence, and is never retried.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
import trio

from ._aggregate import StreamAccumulator
from ._calls import Call, Request
from ._classify import error_from_body
from ._dispatcher import Dispatcher
from ._errors import (
    ClientClosedError,
    LiteLLMError,
    ProxyConnectionError,
    RequestTimeoutError,
    ResponseDecodeError,
    StreamInterruptedError,
)
from ._meta import ResponseMeta, meta_from_headers
from ._requests import RequestPath
from ._sse import EventTooLarge, SSEParser
from ._transport import BodyStream, Transport
from ._wire import ChatCompletion, ChatCompletionChunk, Usage, chunk_decoder

__all__ = ["STREAM_BUFFER", "ChatStream", "StreamReader"]

STREAM_BUFFER = 8
"""Network reads the reader may decode ahead of the consumer. Each crosses the channel as one
list of chunks: a read often holds dozens, and one hand-over per read instead of per chunk is
most of what a chunk costs."""


class StreamReader:
    """One streamed completion: its request (retrying before content) and its reading."""

    def __init__(
        self,
        path: RequestPath,
        dispatcher: Dispatcher,
        call: Call,
        request: Request,
        *,
        first_token_timeout: float,
        idle_timeout: float | None,
        max_event_bytes: int | None = None,
    ) -> None:
        self._path = path
        self._transport: Transport | None = None  # the attempt's proxy's
        self._dispatcher = dispatcher
        self._call = call
        self._request = request
        self._model = call.model
        self._first_token_timeout = first_token_timeout
        self._idle_timeout = idle_timeout
        self._max_event_bytes = max_event_bytes
        self._started = False
        self._task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
        self.accumulator = StreamAccumulator()
        self.meta: ResponseMeta | None = None
        self.error: LiteLLMError | None = None
        self.finished = False
        self.headers: Mapping[str, str] | None = None  # the answer's, for the debug recorder

    async def run(
        self,
        send: trio.MemorySendChannel[list[ChatCompletionChunk]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The stream's request: read it into ``send``, then close it.

        Errors before the first content are raised (out of ``nursery.start``); later ones are
        kept in ``error``, as is a cancellation after it (the stream's total deadline, the
        client closing, the caller leaving): the consumer never sees such a stream end as if
        it were complete.
        """
        request = self._request
        self._task_status = task_status  # told once the first content is in (_start)
        with send:
            try:
                # The whole stream is one wait that its deadline and the client's closing end
                # (its reads are long and few: the cancel scope costs nothing here).
                async with self._dispatcher.slot(request):
                    with request.interruptible():
                        try:
                            await self._attempts(send)
                        except LiteLLMError as exc:
                            if not self._started:
                                raise
                            self.error = request.error = self._interrupted(exc)
            except LiteLLMError as exc:  # the total deadline, or the client closed
                if not self._started:
                    raise
                self.error = self._interrupted(exc)
            finally:
                if self._started and not self.finished and self.error is None:
                    self.error = self._interrupted(
                        ClientClosedError(
                            "the stream was cancelled before it finished", model=self._model
                        )
                    )

    async def _attempts(self, send: trio.MemorySendChannel[list[ChatCompletionChunk]]) -> None:
        """Open the stream through its attempts until one has content, and read it to its end."""
        path, request = self._path, self._request
        retrying = path.retrying(request)
        while True:
            number = retrying.next_attempt()
            request.attempts = number
            try:
                permit = await path.admit(request, retrying)
                await self._attempt(number, send)
            except LiteLLMError as exc:
                if self._started:
                    raise  # never retried once the caller has seen a chunk
                await path.failed(request, retrying, exc)
                continue
            request.meta, request.usage = self.meta, self.usage
            await path.answered(request, permit)
            return

    @property
    def _attempt_transport(self) -> Transport:
        """The transport of the attempt under way (its proxy's), for its errors' messages."""
        assert self._transport is not None
        return self._transport

    @property
    def usage(self) -> Usage | None:
        """The usage the stream reported, once it has ended (for the throttle's tpm window)."""
        return self.accumulator.usage if self.finished else None

    def _interrupted(self, exc: LiteLLMError) -> StreamInterruptedError:
        if isinstance(exc, StreamInterruptedError):
            return exc
        interrupted = StreamInterruptedError(
            f"stream interrupted after content: {exc.message}",
            partial=self.accumulator.result(),
            status=exc.status,
            type=exc.type,
            code=exc.code,
            call_id=exc.call_id or (self.meta.call_id if self.meta else None),
            model=self._model,
        )
        interrupted.__cause__ = exc
        return interrupted

    async def _attempt(
        self,
        number: int,
        send: trio.MemorySendChannel[list[ChatCompletionChunk]],
    ) -> None:
        accumulator = StreamAccumulator()
        self.accumulator = accumulator
        call = self._call
        proxy = self._request.proxy
        assert proxy is not None  # admit() chose it
        transport = self._transport = proxy.transport
        start = trio.current_time()
        # The first-token deadline covers the wait for headers too: the proxy sends none until
        # the upstream's first chunk. After the first content, _read moves it to the idle deadline.
        proxy.in_flight += 1
        try:
            with trio.CancelScope(deadline=start + self._first_token_timeout) as scope:
                async with transport.stream(
                    "POST", call.path, body=call.body, headers=call.headers, model=self._model
                ) as body:
                    self.meta = meta_from_headers(
                        body.status,
                        body.headers,
                        attempts=number,
                        latency=trio.current_time() - start,
                    )
                    self.headers = body.headers
                    # A body that opens with "{" is JSON whatever its label says (no SSE stream
                    # can start so): the proxy's error, or an answer to a request it did not
                    # stream.
                    first = await body.receive_some()
                    if first[:64].lstrip()[:1] == b"{":
                        raise await self._json_instead(body, first)
                    await self._read(body, first, accumulator, send, scope)
        finally:
            proxy.in_flight -= 1
        if scope.cancelled_caught:
            if self._started:
                raise self._interrupted(
                    RequestTimeoutError(
                        f"no chunk for {self._idle_timeout} s (stream_idle_timeout)",
                        model=self._model,
                    )
                )
            raise RequestTimeoutError(
                f"no first token within {self._first_token_timeout} s", model=self._model
            )

    async def _read(
        self,
        body: BodyStream,
        first: bytes,
        accumulator: StreamAccumulator,
        send: trio.MemorySendChannel[list[ChatCompletionChunk]],
        scope: trio.CancelScope,
    ) -> None:
        limit = self._max_event_bytes
        parser = SSEParser() if limit is None else SSEParser(max_event_size=limit)
        held: list[ChatCompletionChunk] = []
        idle = self._idle_timeout if self._idle_timeout is not None else float("inf")
        pending: bytes | None = first  # the body's first read, made by the caller
        while True:
            if pending is not None:
                data, pending = pending, None
            else:
                try:
                    data = await body.receive_some()
                except LiteLLMError as exc:
                    if self._started:
                        raise self._interrupted(exc) from exc
                    raise
            # One network read becomes one batch: one channel send and one deadline move for
            # all the chunks it held, however many.
            batch: list[ChatCompletionChunk] = []
            done = False
            try:
                for payload in parser.feed_data(data) if data else parser.finish_data():
                    if payload.startswith(b"[DONE]"):
                        done = True
                        break
                    chunk = self._decode(payload)
                    accumulator.add(chunk)
                    batch.append(chunk)
            except LiteLLMError:
                if self._started and batch:
                    await send.send(batch)  # what came before the bad event, then the error
                raise
            except EventTooLarge as exc:
                if self._started and batch:
                    await send.send(batch)
                error = self._attempt_transport.too_large(
                    "stream event", exc.size, exc.limit, "max_event_bytes", self._model
                )
                error.__cause__ = exc
                if self._started:
                    raise self._interrupted(error) from error
                raise error from exc
            if self._started:
                if batch:
                    await send.send(batch)
            else:
                held += batch
                if accumulator.has_content or (done and held):
                    await self._start(held, send)
                elif done:
                    raise ResponseDecodeError(
                        "the stream finished without any chunk", model=self._model
                    )
            if done:
                self.finished = True
                return
            if not data:
                break
            if self._started and batch:  # chunks, not bytes: keep-alive comments do not count
                scope.deadline = trio.current_time() + idle
        ended = "the stream ended without [DONE]" + (
            " (torn last event)" if parser.incomplete else ""
        )
        if self._started:
            raise self._interrupted(ProxyConnectionError(ended, model=self._model))
        raise ProxyConnectionError(f"{ended}, before any content", model=self._model)

    async def _json_instead(self, body: BodyStream, first: bytes) -> LiteLLMError:
        """The error for a JSON answer where a stream was asked for: the proxy's own error when
        it is one, else a ResponseDecodeError saying what came."""
        limit = self._max_event_bytes or 16 * 1024 * 1024
        parts: list[bytes] = []
        size = 0
        data = first
        while data:
            size += len(data)
            if size > limit:
                return self._attempt_transport.too_large(
                    "JSON answer", size, limit, "max_event_bytes", self._model
                )
            parts.append(data)
            data = await body.receive_some()
        content = b"".join(parts)
        if b'"error"' in content:
            error = self._attempt_transport.scrub(error_from_body(None, content, model=self._model))
            if error.call_id is None and self.meta is not None:
                error.call_id = self.meta.call_id
            return error
        return ResponseDecodeError(
            f"the proxy sent a JSON answer (status {body.status}) where a stream was asked for: "
            f"{content[:200]!r}",
            status=body.status,
            model=self._model,
        )

    async def _start(
        self,
        held: list[ChatCompletionChunk],
        send: trio.MemorySendChannel[list[ChatCompletionChunk]],
    ) -> None:
        self._started = True
        self._path.first_content(self._request)
        self._task_status.started()
        await send.send(held)

    def _decode(self, data: str | bytes) -> ChatCompletionChunk:
        try:
            chunk = chunk_decoder.decode(data)
        except msgspec.DecodeError as exc:
            error = ResponseDecodeError(f"a stream chunk is not valid: {exc}", model=self._model)
            error.__cause__ = exc
            if self._started:
                raise self._interrupted(error) from error
            raise error from exc
        if chunk.error is not None:
            raw = data.encode() if isinstance(data, str) else data
            in_band = self._attempt_transport.scrub(error_from_body(None, raw, model=self._model))
            if self.meta is not None and in_band.call_id is None:
                in_band.call_id = self.meta.call_id
            if self._started:
                raise self._interrupted(in_band)
            raise in_band
        return chunk


class ChatStream:
    """A streamed chat completion: ``async for chunk in stream``, then ``stream.result()``.

    ``meta`` holds the proxy's headers (no cost on streams: the proxy sends headers first).
    """

    __slots__ = ("_batch", "_next", "_reader", "_receive")

    def __init__(
        self, receive: trio.MemoryReceiveChannel[list[ChatCompletionChunk]], reader: StreamReader
    ) -> None:
        self._receive = receive
        self._reader = reader
        self._batch: list[ChatCompletionChunk] = []
        self._next = 0

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        batch, index = self._batch, self._next
        if index < len(batch):
            # The rest of a network read: no task switch, but still a cancellation point.
            await trio.lowlevel.checkpoint_if_cancelled()
            self._next = index + 1
            return batch[index]
        try:
            batch = await self._receive.receive()
        except trio.EndOfChannel:
            if self._reader.error is not None:
                raise self._reader.error from self._reader.error.__cause__
            raise StopAsyncIteration from None
        except trio.ClosedResourceError:
            raise StreamInterruptedError(
                "the stream is closed: iterate it inside its `async with` block",
                partial=self._reader.accumulator.result(),
            ) from None
        self._batch, self._next = batch, 1
        return batch[0]

    @property
    def meta(self) -> ResponseMeta | None:
        """What the proxy said in its response headers."""
        return self._reader.meta

    @property
    def finished(self) -> bool:
        """True once the proxy sent ``[DONE]``."""
        return self._reader.finished

    def partial(self) -> ChatCompletion:
        """The completion aggregated from the chunks received so far."""
        return self._with_meta(self._reader.accumulator.result())

    def result(self) -> ChatCompletion:
        """The aggregated completion: full text, tool calls, finish reason, usage.

        Raises the stream's error if it was interrupted, and ``RuntimeError`` before it ended.
        """
        if self._reader.error is not None:
            raise self._reader.error
        if not self._reader.finished:
            raise RuntimeError("the stream has not finished: iterate it to the end first")
        return self._with_meta(self._reader.accumulator.result())

    def _with_meta(self, completion: ChatCompletion) -> ChatCompletion:
        completion.meta = self._reader.meta
        return completion

    def __repr__(self) -> str:
        state = "failed" if self._reader.error else "finished" if self._reader.finished else "open"
        return f"<ChatStream {state} chunks={self._reader.accumulator.chunks}>"
