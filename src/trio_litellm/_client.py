"""``open_client()`` and the :class:`Client` facade: every call an application makes goes here.

``open_client`` owns one nursery. It starts the actors in order (throttle, health monitor,
dispatcher), each with ``nursery.start``, and stops them in the reverse order on exit, so the
dispatcher can still tell each pending request that the client closed. Then it closes every
connection: nothing outlives the ``async with``. A lone exception from inside the block (the
caller's or ours) comes out as itself, not wrapped in an ExceptionGroup.

Every request, whether a method call (:meth:`Client.complete`, :meth:`Client.embed`,
:meth:`Client.stream`) or a job (:meth:`Client.open_jobs`), is a :class:`Work` for the dispatcher.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import trio

from ._config import ClientConfig, resolve_config
from ._dispatcher import Dispatcher, DispatcherStatistics, Runner, Work
from ._errors import (
    APIStatusError,
    ClientClosedError,
    LiteLLMError,
    ModelNotFoundError,
    ResponseDecodeError,
    SpendUnavailableError,
    error_from_body,
)
from ._events import (
    Event,
    EventBus,
    EventBusStatistics,
    FirstToken,
    HealthChanged,
    HealthTransition,
    Hook,
    RequestFinished,
)
from ._health import HealthMonitor, MonitorStatistics
from ._jobs import (
    Call,
    InvalidRequestError,
    Job,
    JobResult,
    chat_request,
    embedding_request,
    prepare,
    prepare_job,
)
from ._meta import ResponseMeta, meta_from_headers
from ._nursery import open_collapsing_nursery
from ._probes import (
    DeploymentHealth,
    ProxyHealth,
    check_deployments,
    liveness_probe,
    probe_proxy,
)
from ._reader import STREAM_BUFFER, ChatStream, StreamReader
from ._recorder import DebugRecorder, Trace
from ._throttle import Throttle, ThrottleStatistics
from ._transport import Transport
from ._usage import RequestRecord, UsageLedger, UsageStats, cost_of
from ._wire import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    Model,
    ModelInfo,
    ModelList,
    Usage,
    completion_decoder,
    embedding_decoder,
    model_infos,
    model_list_decoder,
)

if TYPE_CHECKING:
    import httpx2  # only for the test hook's annotation: HTTP lives in _transport

__all__ = ["Client", "ClientStatistics", "open_client"]

logger = logging.getLogger("trio_litellm")

_NO_DATABASE = re.compile(
    r"database not connected|no db connected|db not connected|no_db_connection", re.I
)
_spend_decoder = msgspec.json.Decoder(list[dict[str, Any]])

_PROBE_TIMEOUT = 10.0
_LIVENESS_TIMEOUT = 5.0


class ClientStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of every actor of a client, and of its connection pool."""

    dispatcher: DispatcherStatistics
    throttle: ThrottleStatistics
    health: MonitorStatistics | None
    events: EventBusStatistics
    open_connections: int


@asynccontextmanager
async def open_client(config: ClientConfig | None = None, **options: Any) -> AsyncIterator[Client]:
    """Open a client on a LiteLLM proxy for the duration of the ``async with`` block.

    Takes a :class:`ClientConfig`, keyword options (the same names), or both (options override
    the config). Unset values come from ``LITELLM_PROXY_URL`` / ``LITELLM_API_KEY``, then defaults.
    """
    async with _open_client(resolve_config(config, options)) as client:
        yield client


@asynccontextmanager
async def _open_client(
    config: ClientConfig, *, http_transport: httpx2.AsyncBaseTransport | None = None
) -> AsyncIterator[Client]:
    """:func:`open_client` on a resolved config; tests may put an in-memory HTTP transport under it."""
    transport = Transport(config, http_transport=http_transport)
    throttle = Throttle(rpm=config.rpm, tpm=config.tpm, model_limits=config.model_limits)
    events = EventBus()
    monitor = None
    if config.health_check_interval is not None:
        monitor = HealthMonitor(
            lambda: liveness_probe(transport, timeout=_LIVENESS_TIMEOUT),
            events=events,
            interval=config.health_check_interval,
            down_interval=config.health_down_interval,
            failure_threshold=config.health_failure_threshold,
        )
    recorder = None
    if config.record_last:
        recorder = DebugRecorder(
            config.record_last, body_limit=config.record_body_limit, secret=config.api_key
        )
    observer = _Observer(transport, events, price_lookup=config.price_lookup, recorder=recorder)
    dispatcher = Dispatcher(
        transport,
        throttle,
        monitor,
        max_in_flight=config.in_flight_limit,
        max_retries=config.max_retries,
        backoff_initial=config.backoff_initial,
        total_timeout=config.total_timeout,
        unavailable_timeout=config.unavailable_timeout,
        on_finished=observer.finished,
        events=events,
        model_limits=config.model_limits,
    )
    actors: list[_Actor] = []
    try:
        async with open_collapsing_nursery() as nursery:
            for run in (events.run, throttle.run, monitor.run if monitor else None, dispatcher.run):
                if run is not None:
                    actor = _Actor(run)
                    await nursery.start(actor.run)
                    actors.append(actor)
            observer.nursery = nursery
            try:
                yield Client(config, transport, dispatcher, throttle, monitor, observer, events)
            finally:
                for actor in reversed(actors):
                    await actor.stop()
                nursery.cancel_scope.cancel()  # a price lookup may still run
    finally:
        with trio.CancelScope(shield=True):
            await transport.aclose()


class _Observer:
    """Turns every finished request into a :class:`RequestRecord`: the usage ledger, the log,
    and, when ``record_last`` is set, the debug recorder (with the request's :class:`Trace`).

    Costs come from the proxy's header, else the usage's ``cost``, else the model's per-token
    prices from ``/v1/model/info``, fetched in the background when first needed and again at
    most once a minute while some model has no price.
    """

    PRICE_RETRY = 60.0

    def __init__(
        self,
        transport: Transport,
        events: EventBus,
        *,
        price_lookup: bool,
        recorder: DebugRecorder | None = None,
    ) -> None:
        self._transport = transport
        self._events = events
        self._price_lookup = price_lookup
        self.ledger = UsageLedger()
        self.recorder = recorder
        self.nursery: trio.Nursery | None = None
        self._prices: dict[str, tuple[float | None, float | None]] = {}
        self._price_attempt = -math.inf
        self._fetching = False

    def finished(self, work: Work, result: Any, error: BaseException | None) -> None:
        if error is None and work.stream:
            error = getattr(result, "error", None)  # interrupted after content: not a success
        meta = getattr(result, "meta", None)
        meta = meta if isinstance(meta, ResponseMeta) else None
        usage = getattr(result, "usage", None)
        usage = usage if isinstance(usage, Usage) else None
        prompt = usage.prompt_tokens if usage is not None else None
        completion = usage.completion_tokens if usage is not None else None
        prices = self._price_of(work.model) if usage is not None else None
        cost, source = cost_of(
            meta.response_cost if meta is not None else None,
            usage.cost if usage is not None else None,
            prompt,
            completion,
            prices,
        )
        first = getattr(result, "first_content_at", None)
        record = RequestRecord(
            kind="embedding" if work.kind == "embedding" else "chat",
            model=work.model,
            served_model=meta.model_group if meta is not None else None,
            deployment_id=meta.model_id if meta is not None else None,
            call_id=(meta.call_id if meta is not None else None) or getattr(error, "call_id", None),
            started_at=work.started_wall,
            latency=trio.current_time() - work.started_at,
            ttft=first - work.started_at if isinstance(first, float) else None,
            stream=work.stream,
            attempts=work.attempts,
            outcome="ok" if error is None else type(error).__name__,
            status=meta.status if meta is not None else getattr(error, "status", None),
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=cost,
            cost_source=source,
            overhead_ms=meta.overhead_duration_ms if meta is not None else None,
        )
        self.ledger.add(record)
        if self._events.active:
            self._events.emit(RequestFinished(at=trio.current_time(), record=record))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s model=%s served=%s call_id=%s outcome=%s status=%s attempts=%d "
                "latency=%.3fs tokens=%s/%s cost=%s",
                record.kind,
                "stream" if record.stream else "call",
                record.model,
                record.served_model,
                record.call_id,
                record.outcome,
                record.status,
                record.attempts,
                record.latency,
                record.prompt_tokens,
                record.completion_tokens,
                record.cost,
            )
        if work.trace is not None and self.recorder is not None:
            self.recorder.add(record, work.trace, error)

    def _price_of(self, model: str) -> tuple[float | None, float | None] | None:
        prices = self._prices.get(model)
        due = trio.current_time() - self._price_attempt >= self.PRICE_RETRY
        if prices is None and due and self._price_lookup and not self._fetching and self.nursery:
            self._fetching = True
            self.nursery.start_soon(self._fetch_prices)
        return prices

    async def _fetch_prices(self) -> None:
        self._price_attempt = trio.current_time()
        try:
            answer = await self._transport.request("GET", "/v1/model/info", timeout=_PROBE_TIMEOUT)
            for info in model_infos(answer.content):
                if info.model_name not in self._prices or self._prices[info.model_name] == (
                    None,
                    None,
                ):
                    self._prices[info.model_name] = (
                        info.input_cost_per_token,
                        info.output_cost_per_token,
                    )
        except (LiteLLMError, msgspec.DecodeError) as exc:
            logger.debug("model prices unavailable: %s", exc)
        finally:
            self._fetching = False


class _Actor:
    """An actor's ``run`` in a cancel scope of its own, so actors stop one at a time, in order."""

    def __init__(self, run: Callable[..., Awaitable[None]]) -> None:
        self._run = run
        self._scope = trio.CancelScope()
        self._stopped = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with self._scope:
                await self._run(task_status=task_status)
        finally:
            self._stopped.set()

    async def stop(self) -> None:
        self._scope.cancel()
        with trio.CancelScope(shield=True):
            await self._stopped.wait()


class _Reply:
    """Where a method call waits for its work's one outcome."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    async def deliver(self, result: Any, error: BaseException | None, work: Work) -> None:
        self.result, self.error = result, error
        self.done.set()


class _StreamStart:
    """The stream reader's ``task_status``: set when the first content arrived or it failed."""

    __slots__ = ("error", "finished", "on_first", "ready", "send")

    def __init__(self, send: trio.MemorySendChannel[list[ChatCompletionChunk]]) -> None:
        self.on_first: Callable[[], None] | None = None
        self.ready = trio.Event()
        self.finished = trio.Event()
        self.error: BaseException | None = None
        self.send = send

    def started(self, value: None = None) -> None:
        self.ready.set()
        if self.on_first is not None:
            self.on_first()

    async def deliver(self, result: Any, error: BaseException | None, work: Work) -> None:
        self.error = error
        self.send.close()
        self.ready.set()
        self.finished.set()


class Client:
    """Completions, streams, embeddings, jobs, models and health through one LiteLLM proxy.

    Made by :func:`open_client`; valid inside its ``async with`` block only.
    """

    def __init__(
        self,
        config: ClientConfig,
        transport: Transport,
        dispatcher: Dispatcher,
        throttle: Throttle,
        monitor: HealthMonitor | None,
        observer: _Observer,
        events: EventBus,
    ) -> None:
        self._observer = observer
        self._recorder = observer.recorder
        self._events = events
        self._config = config
        self._transport = transport
        self._dispatcher = dispatcher
        self._throttle = throttle
        self._monitor = monitor
        self._estimate = config.tpm is not None or any(
            limits.tpm is not None for limits in config.model_limits.values()
        )

    def __repr__(self) -> str:
        return f"<trio_litellm.Client {self._config.display_url}>"

    @property
    def config(self) -> ClientConfig:
        """The configuration this client runs with."""
        return self._config

    @property
    def open_connections(self) -> int:
        """Connections to the proxy held in the pool right now, idle or busy."""
        return self._transport.open_connections

    @property
    def busy_connections(self) -> int:
        """Connections carrying a request or a response right now."""
        return self._transport.busy_connections

    @property
    def health_status(self) -> Literal["up", "down", "unknown"]:
        """What the health monitor believes; "unknown" when it is turned off."""
        return self._monitor.state if self._monitor is not None else "unknown"

    def health_transitions(self, buffer: int = 16) -> trio.MemoryReceiveChannel[HealthTransition]:
        """A channel of the proxy's up/down transitions from now on (close it when done).

        The same :class:`HealthChanged` events as :meth:`events` gives, and those alone. A reader
        that falls ``buffer`` events behind misses the newest ones; it never slows the monitor.
        Raises RuntimeError when the monitor is turned off.
        """
        if self._monitor is None:
            raise RuntimeError("the health monitor is off (health_check_interval=None)")
        return self._events.subscribe(buffer, only=HealthChanged)

    def statistics(self) -> ClientStatistics:
        """A snapshot of the dispatcher, the throttle, the health monitor, the event bus and the
        pool."""
        return ClientStatistics(
            dispatcher=self._dispatcher.statistics(),
            throttle=self._throttle.statistics(),
            health=self._monitor.statistics() if self._monitor is not None else None,
            events=self._events.statistics(),
            open_connections=self._transport.open_connections,
        )

    def add_hook(self, hook: Hook) -> Callable[[], None]:
        """Call ``hook(event)`` (sync or async) for every event: request sent, retry scheduled,
        first token, request finished (with its record), health changed, throttle paused.

        Hooks run in the client's event task, never in a request's: a slow or failing hook
        cannot block or break a request (a failure is logged; an async hook gets 5 s). Returns
        a function that removes the hook.
        """
        return self._events.add_hook(hook)

    def events(self, buffer: int = 256) -> trio.MemoryReceiveChannel[Event]:
        """A channel of the same events from now on (close it when done); a reader that falls
        ``buffer`` behind misses the newest, without slowing anything."""
        return self._events.subscribe(buffer)

    def usage(
        self,
        *,
        since: float | datetime | timedelta | None = None,
        until: float | datetime | None = None,
        model: str | None = None,
    ) -> UsageStats:
        """What this client did in a time window: requests, errors by type, tokens, cost,
        latency and time-to-first-token percentiles, per model.

        ``since`` is a time (epoch seconds or a datetime) or a ``timedelta`` back from now; the
        window is widened to whole one-minute buckets. Memory stays bounded: buckets older than
        seven days are dropped.
        """
        return self._observer.ledger.usage(since=since, until=until, model=model)

    @property
    def recorder(self) -> DebugRecorder | None:
        """The debug recorder: the last ``record_last`` requests with their bodies and answers,
        cut to ``record_body_limit`` bytes, the key masked. None when ``record_last`` is 0."""
        return self._recorder

    # --- chat and embeddings --------------------------------------------------------------------

    async def complete(
        self,
        request: ChatRequest | None = None,
        /,
        *,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        **params: Any,
    ) -> ChatCompletion:
        """A chat completion: ``complete(model=..., messages=[...], max_tokens=..., ...)``.

        Takes every OpenAI chat parameter by keyword (or a :class:`ChatRequest`), plus
        ``routing_hints``; ``extra_body`` / ``extra_headers`` reach the proxy as given.
        ``timeout`` bounds the whole call, retries and waits for admission included.
        """
        chat = chat_request(request, params, stream=False, timeout=timeout, max_retries=max_retries)
        call = prepare(
            chat, extra_body=extra_body, extra_headers=extra_headers, estimate=self._estimate
        )
        result: ChatCompletion = await self._call(call, max_retries=max_retries, timeout=timeout)
        return result

    async def embed(
        self,
        request: EmbeddingRequest | None = None,
        /,
        *,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        **params: Any,
    ) -> EmbeddingResponse:
        """Embeddings: ``embed(model=..., input=["a", "b"])``; vectors in ``.data[i].embedding``."""
        embedding = embedding_request(request, params, timeout=timeout, max_retries=max_retries)
        call = prepare(
            embedding, extra_body=extra_body, extra_headers=extra_headers, estimate=self._estimate
        )
        result: EmbeddingResponse = await self._call(call, max_retries=max_retries, timeout=timeout)
        return result

    async def _call(self, call: Call, *, max_retries: int | None, timeout: float | None) -> Any:
        reply = _Reply()
        trace = Trace("POST", call.path, call.body) if self._recorder is not None else None
        work = Work(
            self._operation(call, trace),
            reply.deliver,
            tokens=call.tokens,
            max_retries=max_retries,
            timeout=timeout,
            kind=call.kind,
            model=call.model,
            trace=trace,
        )
        outcome = await self._dispatcher.perform(work)
        if outcome is not None:
            if outcome[1] is not None:
                raise outcome[1]
            return outcome[0]
        await self._dispatcher.submit(work)
        try:
            await reply.done.wait()
        finally:
            if not reply.done.is_set():
                work.scope.cancel()  # the caller left: stop the request, and wait until it has
                with trio.CancelScope(shield=True):
                    await reply.done.wait()
        if reply.error is not None:
            raise reply.error
        return reply.result

    def _operation(
        self, call: Call, trace: Trace | None = None
    ) -> Callable[[Runner], Awaitable[Any]]:
        """The work of a request answered in one JSON body: run its attempts, decode the answer."""
        decoder = completion_decoder if call.kind == "chat" else embedding_decoder
        transport = self._transport

        async def attempt(number: int) -> Any:
            try:
                answer = await transport.request(
                    "POST", call.path, body=call.body, headers=call.headers, model=call.model
                )
            except LiteLLMError as exc:
                if trace is not None and exc.response_body is not None and exc.status is not None:
                    trace.answered(
                        number, exc.status, exc.response_headers or {}, exc.response_body.encode()
                    )
                raise
            if trace is not None:
                trace.answered(number, answer.status, answer.headers, answer.content)
            try:
                response = _decode(decoder, answer.content, call.model)
            except ResponseDecodeError as exc:
                if call.keep_body:  # a paid answer: whoever asked for the bytes keeps them
                    exc.status = answer.status
                    exc.response_body = answer.content.decode("utf-8", "replace")
                    exc.response_headers = answer.headers
                raise
            if not (response.choices if call.kind == "chat" else response.data):
                raise _empty_answer(answer.status, answer.content, call.model)
            response.meta = meta_from_headers(
                answer.status,
                answer.headers,
                attempts=number,
                latency=answer.latency,
                body=answer.content if call.keep_body else None,
            )
            return response

        async def operation(run: Runner) -> Any:
            return await run(attempt)

        return operation

    @asynccontextmanager
    async def stream(
        self,
        request: ChatRequest | None = None,
        /,
        *,
        extra_body: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        **params: Any,
    ) -> AsyncIterator[ChatStream]:
        """A streamed chat completion: ``async with client.stream(...) as s: async for chunk in s``.

        Same parameters as :meth:`complete`. Usage is asked for (``stream_options.include_usage``)
        unless ``stream_options`` is given. Entering waits for the first content, retrying
        failures until then; leaving early closes the response and its connection, and returns
        only once the stream's reader task has ended. ``timeout`` (default ``total_timeout``)
        bounds the whole stream, from the call to its last chunk: before content it raises
        :class:`RequestTimeoutError`, after it :class:`StreamInterruptedError`.
        """
        chat = chat_request(request, params, stream=True, timeout=timeout, max_retries=max_retries)
        if chat.stream_options is None:
            chat.stream_options = {"include_usage": True}
        call = prepare(
            chat, extra_body=extra_body, extra_headers=extra_headers, estimate=self._estimate
        )
        config = self._config
        total = config.total_timeout if timeout is None else timeout
        reader = StreamReader(
            self._transport,
            path=call.path,
            body=call.body,
            headers=call.headers,
            model=call.model,
            first_token_timeout=config.first_token_timeout or config.read_timeout,
            idle_timeout=config.stream_idle_timeout,
            total_timeout=total,
            max_event_bytes=config.max_event_bytes,
        )
        send, receive = trio.open_memory_channel[list[ChatCompletionChunk]](STREAM_BUFFER)
        start = _StreamStart(send)

        async def operation(run: Runner) -> StreamReader:
            await reader.run(send, run, task_status=start)
            return reader  # its meta, usage and first-content time make the request's record

        work = Work(
            operation,
            start.deliver,
            tokens=call.tokens,
            max_retries=max_retries,
            timeout=math.inf if total is None else total,
            kind="chat",
            model=call.model,
            stream=True,
            trace=(
                Trace("POST", call.path, call.body, reader=reader)
                if self._recorder is not None
                else None
            ),
        )

        if self._events.active:
            events = self._events
            start.on_first = lambda: events.emit(
                FirstToken(
                    at=trio.current_time(),
                    model=call.model,
                    ttft=trio.current_time() - work.started_at,
                )
            )
        with receive:
            await self._dispatcher.submit(work)
            try:
                await start.ready.wait()
                if start.error is not None:
                    raise start.error
                yield ChatStream(receive, reader)
            finally:
                work.scope.cancel()
                with trio.CancelScope(shield=True):
                    await start.finished.wait()

    # --- jobs -----------------------------------------------------------------------------------

    @asynccontextmanager
    async def open_jobs(
        self, *, max_buffer: int = 64
    ) -> AsyncIterator[tuple[trio.MemorySendChannel[Job], trio.MemoryReceiveChannel[JobResult]]]:
        """Channels for work produced in one task and results consumed in another.

        Send :class:`Job` s (a request struct or an OpenAI-shaped dict, with an id of yours);
        every job gets exactly one :class:`JobResult`, in completion order, carrying its response
        or its typed error. Close the send side (``async with send_jobs:``) when done: the pending
        jobs finish, then the receive side ends. Both channels buffer ``max_buffer`` items; beyond
        that, and beyond ``max_in_flight``, the producer waits. Leaving the block cancels whatever
        is still running.
        """
        if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 0:
            raise InvalidRequestError(
                f"open_jobs(): max_buffer must be an integer >= 0, got {max_buffer!r}",
                field="max_buffer",
            )
        job_send, job_receive = trio.open_memory_channel[Job](max_buffer)
        result_send, result_receive = trio.open_memory_channel[JobResult](max_buffer)
        active = _ActiveWork()
        async with open_collapsing_nursery() as nursery:
            nursery.start_soon(self._feed_jobs, job_receive, result_send, active)
            try:
                yield job_send, result_receive
            finally:
                # The send side is the producer's to close; once the feeder stops, a producer
                # still sending gets BrokenResourceError: nobody takes jobs any more.
                nursery.cancel_scope.cancel()
                result_receive.close()
                await active.cancel_and_wait()

    async def _feed_jobs(
        self,
        jobs: trio.MemoryReceiveChannel[Job],
        results: trio.MemorySendChannel[JobResult],
        active: _ActiveWork,
    ) -> None:
        async with jobs, results:
            async for job in jobs:
                # Then whatever else is buffered, without a scheduler pass per job: when many
                # requests finished in one pass, as many new ones start in the next.
                while await self._submit_job(job, results, active):
                    try:
                        job = jobs.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                else:
                    return

    async def _submit_job(
        self, job: Job, results: trio.MemorySendChannel[JobResult], active: _ActiveWork
    ) -> bool:
        """Hand one job to the dispatcher (or answer it with its error); False once closed."""
        try:
            call = prepare_job(job, estimate=self._estimate)
        except InvalidRequestError as exc:
            await results.send(JobResult(id=getattr(job, "id", None), error=exc))
            return True
        delivery = _JobDelivery(job.id, results.clone(), active)
        trace = Trace("POST", call.path, call.body) if self._recorder is not None else None
        work = Work(
            self._operation(call, trace),
            delivery.deliver,
            tokens=call.tokens,
            kind=call.kind,
            model=call.model,
            trace=trace,
        )
        active.add(work)
        try:
            await self._dispatcher.submit(work)
        except BaseException as exc:
            # Not handed over (a cancelled send delivers nothing): it will never deliver.
            active.discard(work)
            delivery.send.close()
            if not isinstance(exc, ClientClosedError):
                raise
            await results.send(JobResult(id=job.id, error=exc))
            return False
        return True

    # --- models -------------------------------------------------------------------------------

    async def list_models(self) -> list[Model]:
        """The model groups this key may use (``/v1/models``)."""

        async def attempt(number: int) -> list[Model]:
            answer = await self._transport.request("GET", "/v1/models")
            models: ModelList = _decode(model_list_decoder, answer.content, None)
            return models.data

        return await self._transport.call(attempt)

    async def model_infos(self) -> list[ModelInfo]:
        """What the proxy knows of every deployment (``/v1/model/info``): limits, prices, modes."""

        async def attempt(number: int) -> list[ModelInfo]:
            answer = await self._transport.request("GET", "/v1/model/info")
            try:
                return model_infos(answer.content)
            except msgspec.DecodeError as exc:
                raise ResponseDecodeError(f"unreadable /v1/model/info answer: {exc}") from exc

        return await self._transport.call(attempt)

    async def model_info(self, model: str) -> ModelInfo:
        """What the proxy knows of a model group (its first deployment when it has several).

        Raises :class:`ModelNotFoundError` when the proxy serves no model of that name.
        """
        for info in await self.model_infos():
            if info.model_name == model:
                return info
        raise ModelNotFoundError(f"the proxy serves no model named {model!r}", model=model)

    # --- spend --------------------------------------------------------------------------------

    async def spend(
        self, *, start_date: date | None = None, end_date: date | None = None
    ) -> list[dict[str, Any]]:
        """The proxy's own spend report for a date range (``/global/spend/report``), default the
        last 30 days. LiteLLM keeps spend only in its database: a proxy without one answers
        :class:`SpendUnavailableError`. For this client's own figures see :meth:`usage`.
        """
        end = end_date or datetime.now(UTC).date()
        start = start_date or end - timedelta(days=30)
        path = f"/global/spend/report?start_date={start.isoformat()}&end_date={end.isoformat()}"
        try:
            answer = await self._transport.request("GET", path, timeout=_PROBE_TIMEOUT)
        except APIStatusError as exc:
            if _NO_DATABASE.search(exc.message):
                raise SpendUnavailableError(
                    f"the proxy has no database, so it keeps no spend: {exc.message}",
                    status=exc.status,
                    type=exc.type,
                    call_id=exc.call_id,
                ) from exc
            raise
        report: list[dict[str, Any]] = _decode(_spend_decoder, answer.content, None)
        return report

    # --- health -------------------------------------------------------------------------------

    async def health(self, *, timeout: float = _PROBE_TIMEOUT) -> ProxyHealth:
        """Is the proxy up and ready? Cheap (no key, no model call); never raises for a down proxy."""
        return await probe_proxy(self._transport, timeout=timeout)

    async def deployment_health(
        self, model: str | None = None, *, timeout: float = 300.0
    ) -> DeploymentHealth:
        """Check every deployment (or one model group's) with a real call through the proxy.

        This is LiteLLM's ``/health``: it bills a small call per deployment and can take seconds.
        """
        return await check_deployments(self._transport, model=model, timeout=timeout)


class _ActiveWork:
    """The jobs of one ``open_jobs`` block still running, so leaving it can end them all.

    Leaving waits for each job's task to be over (``Work.ended``, set by the dispatcher in a
    ``finally``), not only for its delivery: a KeyboardInterrupt, which trio raises in whatever
    code runs when it comes, may cut a delivery short, and must not leave the exit waiting.
    """

    def __init__(self) -> None:
        self._works: set[Work] = set()

    def add(self, work: Work) -> None:
        work.ended = trio.Event()
        self._works.add(work)

    def discard(self, work: Work) -> None:
        """``work`` delivered its result, or was never handed over: it is over."""
        self._works.discard(work)
        if work.ended is not None:
            work.ended.set()

    async def cancel_and_wait(self) -> None:
        """Cancel every running job and wait, shielded, until each is over."""
        works = list(self._works)
        for work in works:
            work.scope.cancel()
        with trio.CancelScope(shield=True):
            for work in works:
                if work.ended is not None:
                    await work.ended.wait()


class _JobDelivery:
    """Sends one job's result on the results channel (its own clone), then closes that clone."""

    __slots__ = ("active", "job_id", "send")

    def __init__(
        self, job_id: Any, send: trio.MemorySendChannel[JobResult], active: _ActiveWork
    ) -> None:
        self.job_id = job_id
        self.send = send
        self.active = active

    async def deliver(self, result: Any, error: BaseException | None, work: Work) -> None:
        self.active.discard(work)
        outcome = JobResult(
            id=self.job_id,
            response=result,
            error=error if isinstance(error, Exception) else None,
            attempts=work.attempts,
            latency=trio.current_time() - work.submitted_at,
        )
        with self.send:
            try:
                try:
                    self.send.send_nowait(outcome)
                except trio.WouldBlock:
                    await self.send.send(outcome)  # the consumer is behind: wait for it
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the consumer left the block (whether or not it was waited for)


def _decode(decoder: msgspec.json.Decoder[Any], content: bytes, model: str | None) -> Any:
    try:
        return decoder.decode(content)
    except msgspec.DecodeError as exc:
        raise ResponseDecodeError(f"the proxy's answer is not valid: {exc}", model=model) from exc


def _empty_answer(status: int, content: bytes, model: str | None) -> Exception:
    """A 200 without choices or data: an error body in disguise, or a broken answer."""
    if b'"error"' in content:
        return error_from_body(status if status >= 400 else None, content, model=model)
    return ResponseDecodeError(
        f"the proxy answered {status} with no result: {content[:200]!r}", model=model
    )
