"""``open_client()`` and the :class:`Client` facade: every call an application makes enters here.

Module map (a request goes down this list, and its answer comes back up as a return value):

- ``_client``      open_client(): owns the nursery, starts the actors, yields the Client facade
- ``_calls``       a request checked and encoded once into a ``Call``; the ``Request`` state it
                   carries in flight (no IO)
- ``_dispatcher``  dispatcher actor: the slot each request holds (in-flight limit, deadline,
                   record); ``_jobs`` the ``open_jobs`` workers it runs in its nursery
- ``_requests``    the request path: attempts under the retry policy, each through the health
                   gate, the throttle and the transport, decoded into the typed answer
- ``_reader``      a stream's reader task (the same steps) and the ``ChatStream`` it feeds
- ``_realtime``    a realtime session: its websocket, reader task and typed events
                   (``_realtime_wire``; public in ``realtime``)
- ``_retry``       the retry policy (stamina underneath) and the total deadline's error
- ``_throttle``    throttle actor; beside it, pure: ``_admission``, ``_rate_limit``,
                   ``_rate_window``, ``_bucket``, ``_restrictions``, ``_limit_scope``
- ``_fleet``       the proxies (one or several), each with its transport and health monitor;
                   which one takes each attempt (power of two choices among the available)
- ``_health``      health-monitor actor and its gate; ``_probes`` the probes and their answers
- ``_transport``   the only module that speaks HTTP: requests, answers, the error map;
                   ``_routes`` the pools, TLS and outbound proxy; ``_fasthttp`` our pool;
                   ``_classify`` error answers into typed errors
- ``_sse``, ``_wire``, ``_meta``, ``_aggregate``   parsing and wire structs, no IO
- ``_observer``    records of finished requests: ``_ledger``/``_usage``/``_histogram``, events,
                   the debug recorder (``_recorder``); ``_prometheus`` renders them
- ``_events``      the event bus (hooks and subscriptions); ``_errors`` the error tree
- ``_proxy_api``   the proxy's own routes: models, model info, spend, health
- ``batch/``       the batch job (no terminal code); ``cli/`` the command line;
                   ``testing/`` the fake provider and the local dev stack

A method call (:meth:`Client.complete`, :meth:`Client.embed`) runs its request in the caller's
task: ``async with dispatcher.slot(request): return await path.send(call, request)``. A stream
runs the same steps in its reader task, started with ``nursery.start``; jobs run them in workers
in the dispatcher's nursery. No cancel scope surrounds a call or a job: its answer's wait in our
pool ends at the request's deadline and can be aborted (``_fasthttp.Owner``), and its other
waits run in ``Request.interruptible()``; a stream is one such wait.

``open_client`` owns one nursery. It starts the actors in order (event bus, throttle, each
proxy's health monitor, dispatcher), each with ``nursery.start``, and stops them in the reverse order on exit,
so the dispatcher can still tell each pending request that the client closed. Then it closes
every connection: nothing outlives the ``async with``. A lone exception from inside the block
(the caller's or ours) comes out as itself, not wrapped in an ExceptionGroup.

The facade is long for its docstrings: the public surface is documented here, where a user's
editor finds it, and each method is a few lines that hand over to the module doing the work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import msgspec
import trio

from ._calls import chat_request, embedding_request, prepare, request_for
from ._config import ClientConfig, resolve_config
from ._dispatcher import Dispatcher, DispatcherStatistics
from ._errors import ClientClosedError, ConfigError, InvalidRequestError
from ._events import Event, EventBus, EventBusStatistics, HealthChanged, HealthTransition, Hook
from ._fleet import Fleet, Proxy, ProxyStatistics
from ._health import HealthMonitor, MonitorStatistics
from ._jobs import Job, JobResult
from ._nursery import collapsing_groups, open_collapsing_nursery
from ._observer import PROBE_TIMEOUT, Observer
from ._probes import DeploymentHealth, ProxyHealth, liveness_probe
from ._proxy_api import ProxyAPI
from ._reader import STREAM_BUFFER, ChatStream, StreamReader
from ._realtime import REALTIME_CONNECT_TIMEOUT, RealtimeConnection, open_realtime
from ._recorder import DebugRecorder
from ._requests import RequestPath
from ._retry import RetryPolicy
from ._throttle import Throttle, ThrottleStatistics
from ._transport import HTTPTransport, Transport
from ._usage import UsageStats, UsageTotals
from ._wire import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    Model,
    ModelInfo,
)

__all__ = ["Client", "ClientStatistics", "open_client"]

_LIVENESS_TIMEOUT = 5.0


class ClientStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of every actor of a client, and of its connection pools.

    ``health`` is the (first) proxy's monitor; ``proxies`` has each proxy's own, with its
    requests in flight, answers and failures.
    """

    dispatcher: DispatcherStatistics
    throttle: ThrottleStatistics
    health: MonitorStatistics | None
    events: EventBusStatistics
    open_connections: int
    proxies: tuple[ProxyStatistics, ...] = ()


@asynccontextmanager
async def open_client(
    config: ClientConfig | None = None,
    *,
    transport: HTTPTransport | None = None,
    **options: Any,
) -> AsyncIterator[Client]:
    """Open a client on a LiteLLM proxy for the duration of the ``async with`` block.

    Takes a :class:`ClientConfig`, keyword options (the same names), or both (options override
    the config). Unset values come from ``LITELLM_PROXY_URL`` / ``LITELLM_API_KEY``, then defaults.

    ``transport`` replaces the HTTP transport under the client (calls, streams and probes alike)
    with any ``httpx2.AsyncBaseTransport``: an ``httpx2.MockTransport`` for tests, as with httpx.
    """
    config = resolve_config(config, options)
    events = EventBus()
    throttle = Throttle(rpm=config.rpm, tpm=config.tpm, model_limits=config.model_limits)
    fleet = Fleet(
        [
            _proxy(config.for_proxy(url), transport, events)
            for url in config.proxy_urls  # each its own pool and health monitor
        ]
    )
    recorder = None
    if config.record_last:
        recorder = DebugRecorder(
            config.record_last, body_limit=config.record_body_limit, secret=config.api_key
        )
    observer = Observer(fleet, events, price_lookup=config.price_lookup, recorder=recorder)
    policy = RetryPolicy(
        max_retries=config.max_retries,
        max_retry_after=config.max_retry_after,
        backoff_initial=config.backoff_initial,
        backoff_max=config.backoff_max,
        backoff_jitter=config.backoff_jitter,
        display_url=config.display_url,
        events=events,
    )
    path = RequestPath(
        fleet, throttle, policy, events, unavailable_timeout=config.unavailable_timeout
    )
    dispatcher = Dispatcher(
        max_in_flight=config.in_flight_limit,
        total_timeout=config.total_timeout,
        recorder=observer,
        policy=policy,
        model_limits=config.model_limits,
    )
    client = Client._create(
        config,
        fleet,
        path,
        dispatcher,
        throttle,
        observer,
        events,
        ProxyAPI(fleet, policy, config.total_timeout),
    )
    monitors = [proxy.monitor.run for proxy in fleet.proxies if proxy.monitor is not None]
    actors: list[_Actor] = []
    try:
        async with open_collapsing_nursery() as nursery:
            for run in (events.run, throttle.run, *monitors, dispatcher.run):
                actor = _Actor(run)
                await nursery.start(actor.run)
                actors.append(actor)
            observer.nursery = nursery
            try:
                yield client
            finally:
                client._closed = True
                for session in client._sessions:  # realtime sessions left open elsewhere
                    session.cancel()
                dispatcher.close()
                for actor in reversed(actors):
                    await actor.stop()
                nursery.cancel_scope.cancel()  # a price lookup may still run
    finally:
        client._closed = True
        with trio.CancelScope(shield=True):
            for proxy in fleet.proxies:
                await proxy.transport.aclose()


def _proxy(config: ClientConfig, transport: HTTPTransport | None, events: EventBus) -> Proxy:
    """One proxy of the client's fleet (``config`` names it alone): its transport, and its health
    monitor unless the config turns monitors off."""
    http = Transport(config, http_transport=transport)
    monitor = None
    if config.health_check_interval is not None:
        monitor = HealthMonitor(
            lambda: liveness_probe(http, timeout=_LIVENESS_TIMEOUT),
            events=events,
            interval=config.health_check_interval,
            down_interval=config.health_down_interval,
            failure_threshold=config.health_failure_threshold,
            url=config.display_url,
        )
    return Proxy(http, monitor, eject_seconds=config.health_down_interval)


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


class _NoPublicConstructor(type):
    """``Client(...)`` raises TypeError: a client comes from :func:`open_client` (as trio's)."""

    def __call__(cls, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(
            f"{cls.__module__}.{cls.__qualname__} has no public constructor: "
            "use `async with trio_litellm.open_client(...) as client:`"
        )

    def _create(cls, *args: Any, **kwargs: Any) -> Any:
        return super().__call__(*args, **kwargs)


class Client(metaclass=_NoPublicConstructor):
    """Completions, streams, embeddings, jobs, models and health through one LiteLLM proxy.

    Made by :func:`open_client`; valid inside its ``async with`` block only. After the block,
    every method that would talk to the proxy raises :class:`ClientClosedError`; the snapshots
    (:meth:`statistics`, :meth:`usage`, :attr:`recorder`, :attr:`config`) stay readable.
    """

    if TYPE_CHECKING:

        @classmethod
        def _create(cls, *args: Any, **kwargs: Any) -> Client: ...

    def __init__(
        self,
        config: ClientConfig,
        fleet: Fleet,
        path: RequestPath,
        dispatcher: Dispatcher,
        throttle: Throttle,
        observer: Observer,
        events: EventBus,
        proxy_api: ProxyAPI,
    ) -> None:
        self._config = config
        self._fleet = fleet
        self._path = path
        self._dispatcher = dispatcher
        self._throttle = throttle
        self._monitor = fleet.proxies[0].monitor  # all on or all off: one config
        self._observer = observer
        self._events = events
        self._proxy_api = proxy_api
        self._closed = False
        self._sessions: set[trio.CancelScope] = set()  # the open realtime sessions'
        self._recording = observer.recorder is not None
        self._estimate = config.tpm is not None or any(
            limits.tpm is not None for limits in config.model_limits.values()
        )

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<trio_litellm.Client {self._config.display_url}{state}>"

    def _check_open(self, method: str) -> None:
        if self._closed:
            raise ClientClosedError(
                f"{method}(): the client is closed (use it inside its `async with open_client()`)"
            )

    @property
    def config(self) -> ClientConfig:
        """The configuration this client runs with."""
        return self._config

    @property
    def open_connections(self) -> int:
        """Connections to the proxies held in the pools right now, idle or busy."""
        return self._fleet.open_connections

    @property
    def busy_connections(self) -> int:
        """Connections carrying a request or a response right now."""
        return self._fleet.busy_connections

    @property
    def health_status(self) -> Literal["up", "down", "unknown"]:
        """What the health monitor believes; "unknown" when it is turned off. On several
        proxies: "up" while any is up (each one's is in ``statistics().proxies``)."""
        return self._fleet.health()

    def health_transitions(self, buffer: int = 16) -> trio.MemoryReceiveChannel[HealthTransition]:
        """A channel of the proxy's up/down transitions from now on (close it when done); on
        several proxies, each one's (its URL in ``proxy``).

        The same :class:`HealthChanged` events as :meth:`events` gives, and those alone. A reader
        that falls ``buffer`` events behind misses the newest ones; it never slows the monitor.
        Raises :class:`ConfigError` when the monitor is turned off (``health_check_interval=None``).
        """
        self._check_open("health_transitions")
        if self._monitor is None:
            raise ConfigError(
                "health_check_interval",
                "None turns the health monitor off: no transitions to follow",
            )
        return self._events.subscribe(buffer, only=HealthChanged)

    def statistics(self) -> ClientStatistics:
        """A snapshot of the dispatcher, the throttle, the health monitor, the event bus, the
        pool, and of each proxy (``proxies``, in the order of ``proxy_url``)."""
        return ClientStatistics(
            dispatcher=self._dispatcher.statistics(),
            throttle=self._throttle.statistics(),
            health=self._monitor.statistics() if self._monitor is not None else None,
            events=self._events.statistics(),
            open_connections=self._fleet.open_connections,
            proxies=self._fleet.statistics(),
        )

    def add_hook(self, hook: Hook) -> Callable[[], None]:
        """Call ``hook(event)`` (sync or async) for every event: request sent, retry scheduled,
        first token, request finished (with its record), health changed, throttle paused.

        Hooks run in the client's event task, never in a request's: a slow or failing hook
        cannot block or break a request (a failure is logged; an async hook gets 5 s). Returns
        a function that removes the hook.
        """
        self._check_open("add_hook")
        return self._events.add_hook(hook)

    def events(self, buffer: int = 256) -> trio.MemoryReceiveChannel[Event]:
        """A channel of the same events from now on (close it when done); a reader that falls
        ``buffer`` behind misses the newest, without slowing anything."""
        self._check_open("events")
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

    def usage_totals(self) -> dict[str, UsageTotals]:
        """Per requested model (sorted), everything this client counted since it opened, with
        the latency histograms: figures that never go down, for monotonic counters such as
        :func:`prometheus_text` renders. O(models x retained minutes): call it when scraped."""
        return self._observer.ledger.lifetime()

    @property
    def recorder(self) -> DebugRecorder | None:
        """The debug recorder: the last ``record_last`` requests with their bodies and answers,
        cut to ``record_body_limit`` bytes, the key masked. None when ``record_last`` is 0."""
        return self._observer.recorder

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
        ``timeout`` (default ``total_timeout``) bounds the call from the moment it holds one of
        the ``max_in_flight`` slots: retries, their backoff and the waits at the health gate and
        the throttle included.
        """
        self._check_open("complete")
        chat = chat_request(request, params, stream=False, timeout=timeout, max_retries=max_retries)
        call = prepare(
            chat, extra_body=extra_body, extra_headers=extra_headers, estimate=self._estimate
        )
        state = request_for(
            call, recording=self._recording, max_retries=max_retries, timeout=timeout
        )
        async with self._dispatcher.slot(state):
            reply = await self._path.send(call, state)
        assert isinstance(reply, ChatCompletion)
        return reply

    def realtime(
        self,
        model: str,
        *,
        beta: bool = False,
        connect_timeout: float = REALTIME_CONNECT_TIMEOUT,
    ) -> AbstractAsyncContextManager[RealtimeConnection]:
        """A realtime session (the OpenAI Realtime API) with ``model``, for an ``async with``::

            async with client.realtime(model="gpt-realtime") as conn:
                turn = await conn.ask("hello")

        Entering opens the proxy's ``/v1/realtime`` websocket and waits for ``session.created``,
        ``connect_timeout`` seconds at most: a refused key, an unknown model or an upstream
        that is down all fail here, typed. ``beta`` sends ``OpenAI-Beta: realtime=v1`` (events
        then come with the beta names). On several proxies the session stays on one. Each
        completed response is recorded (``usage()``), priced as the model's calls are.
        """
        self._check_open("realtime")
        if not isinstance(model, str) or not model:
            raise InvalidRequestError("realtime(): model must be a non-empty string", field="model")
        if not connect_timeout > 0:
            raise InvalidRequestError(
                "realtime(): connect_timeout must be a number of seconds above 0",
                field="connect_timeout",
            )
        return self._realtime_session(
            open_realtime(
                self._fleet,
                self._observer,
                model=model,
                api_key=self._config.api_key,
                headers=self._config.headers,
                connect_timeout=connect_timeout,
                beta=beta,
            )
        )

    @asynccontextmanager
    async def _realtime_session(
        self, session: AbstractAsyncContextManager[RealtimeConnection]
    ) -> AsyncIterator[RealtimeConnection]:
        """``session``, ended (with a :class:`ClientClosedError`) if the client closes first, as
        a call in flight is."""
        scope = trio.CancelScope()
        self._sessions.add(scope)
        try:
            with scope:
                async with session as conn:
                    yield conn
        finally:
            self._sessions.discard(scope)
        if scope.cancelled_caught:
            raise ClientClosedError("realtime(): the client closed while the session was open")

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
        self._check_open("embed")
        embedding = embedding_request(request, params, timeout=timeout, max_retries=max_retries)
        call = prepare(
            embedding, extra_body=extra_body, extra_headers=extra_headers, estimate=self._estimate
        )
        state = request_for(
            call, recording=self._recording, max_retries=max_retries, timeout=timeout
        )
        async with self._dispatcher.slot(state):
            reply = await self._path.send(call, state)
        assert isinstance(reply, EmbeddingResponse)
        return reply

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
        self._check_open("stream")
        chat = chat_request(request, params, stream=True, timeout=timeout, max_retries=max_retries)
        if chat.stream_options is None:
            chat.stream_options = {"include_usage": True}
        call = prepare(
            chat, extra_body=extra_body, extra_headers=extra_headers, estimate=self._estimate
        )
        config = self._config
        state = request_for(
            call,
            recording=self._recording,
            stream=True,
            max_retries=max_retries,
            timeout=timeout,
        )
        reader = StreamReader(
            self._path,
            self._dispatcher,
            call,
            state,
            first_token_timeout=config.first_token_timeout or config.read_timeout,
            idle_timeout=config.stream_idle_timeout,
            max_event_bytes=config.max_event_bytes,
        )
        if state.trace is not None:
            state.trace.reader = reader
        send, receive = trio.open_memory_channel[list[ChatCompletionChunk]](STREAM_BUFFER)
        with receive:
            async with open_collapsing_nursery() as nursery:
                await nursery.start(reader.run, send)
                try:
                    yield ChatStream(receive, reader)
                finally:
                    nursery.cancel_scope.cancel()

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
        self._check_open("open_jobs")
        if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 0:
            raise InvalidRequestError(
                f"open_jobs(): max_buffer must be an integer >= 0, got {max_buffer!r}",
                field="max_buffer",
            )
        job_send, job_receive = trio.open_memory_channel[Job](max_buffer)
        result_send, result_receive = trio.open_memory_channel[JobResult](max_buffer)
        with result_receive:
            # The dispatcher runs the jobs and owns both ends it was given from here on.
            block = await self._dispatcher.serve_jobs(
                job_receive,
                result_send,
                self._path,
                estimate=self._estimate,
                trace=self._recording,
            )
            try:
                with collapsing_groups():  # the caller's lone exception comes out as itself
                    yield job_send, result_receive
            finally:
                # The send side is the producer's to close; once the block stops, a producer
                # still sending gets BrokenResourceError: nobody takes jobs any more.
                result_receive.close()
                await block.stop()

    # --- the proxy's own routes ---------------------------------------------------------------

    async def list_models(self) -> list[Model]:
        """The model groups this key may use (``/v1/models``)."""
        self._check_open("list_models")
        return await self._proxy_api.list_models()

    async def model_infos(self) -> list[ModelInfo]:
        """What the proxy knows of every deployment (``/v1/model/info``): limits, prices, modes."""
        self._check_open("model_infos")
        return await self._proxy_api.model_infos()

    async def model_info(self, model: str) -> ModelInfo:
        """What the proxy knows of a model group (its first deployment when it has several).

        Raises :class:`ModelNotFoundError` when the proxy serves no model of that name.
        """
        self._check_open("model_info")
        return await self._proxy_api.model_info(model)

    async def spend(
        self, *, start_date: date | None = None, end_date: date | None = None
    ) -> list[dict[str, Any]]:
        """The proxy's own spend report for a date range (``/global/spend/report``), default the
        last 30 days. LiteLLM keeps spend only in its database: a proxy without one answers
        :class:`SpendUnavailableError`. For this client's own figures see :meth:`usage`.
        """
        self._check_open("spend")
        return await self._proxy_api.spend(start_date, end_date)

    async def health(self, *, timeout: float = PROBE_TIMEOUT) -> ProxyHealth:
        """Is the proxy up and ready? Cheap (no key, no model call); never raises for a down proxy.

        On several proxies, each is asked at once: healthy while any is (the first healthy
        one's report); else the first's, its ``error`` naming each proxy's."""
        self._check_open("health")
        return await self._proxy_api.health(timeout)

    async def deployment_health(
        self, model: str | None = None, *, timeout: float = 300.0
    ) -> DeploymentHealth:
        """Check every deployment (or one model group's) with a real call through the proxy.

        This is LiteLLM's ``/health``: it bills a small call per deployment and can take seconds.
        """
        self._check_open("deployment_health")
        return await self._proxy_api.deployment_health(model, timeout)
