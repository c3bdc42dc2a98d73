"""The dispatcher: the slot every request takes (in-flight limit, total deadline, record).

Its own interface (``slot``, ``close``, ``statistics``) is tested on a dispatcher alone; what it
does for a client's calls, streams and jobs is tested through the client, on MockClock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import httpx2
import msgspec
import pytest
import trio
import trio.testing

from _fakes import (
    COMPLETION,
    MESSAGES,
    Stalling,
    error_body,
    open_test_client,
    said,
)
from trio_litellm import (
    AuthenticationError,
    Client,
    ClientClosedError,
    InternalServerError,
    Job,
    LiteLLMError,
    ModelLimits,
    RequestFinished,
    RequestTimeoutError,
    StreamInterruptedError,
)
from trio_litellm._dispatcher import Dispatcher, Request
from trio_litellm._retry import RetryPolicy

# --- a dispatcher alone -------------------------------------------------------------------------


class Records:
    """The dispatcher's recorder: what each request ended with (None: it succeeded)."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[Request, BaseException | None]] = []

    def finished(self, request: Request, error: BaseException | None) -> None:
        self.outcomes.append((request, error))


@asynccontextmanager
async def running(
    *,
    max_in_flight: int = 2,
    total_timeout: float | None = None,
    model_limits: dict[str, ModelLimits] | None = None,
    records: Records | None = None,
) -> AsyncIterator[Dispatcher]:
    """A dispatcher running in a nursery of its own for the block."""
    policy = RetryPolicy(
        max_retries=0,
        max_retry_after=0.0,
        backoff_initial=0.0,
        backoff_max=0.0,
        backoff_jitter=0.0,
        display_url="http://proxy.test",
    )
    dispatcher = Dispatcher(
        max_in_flight=max_in_flight,
        total_timeout=total_timeout,
        recorder=records if records is not None else Records(),
        policy=policy,
        model_limits=model_limits,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher.run)
        yield dispatcher
        nursery.cancel_scope.cancel()


class Holders:
    """Tasks that each take a slot and hold it until released; ``order`` is the order they
    got their slots in."""

    def __init__(self, dispatcher: Dispatcher, nursery: trio.Nursery) -> None:
        self._dispatcher = dispatcher
        self._nursery = nursery
        self._release: dict[str, trio.Event] = {}
        self.order: list[str] = []

    async def start(self, name: str, model: str = "m") -> None:
        """Start ``name`` and wait until it holds its slot or waits for one."""
        self._release[name] = trio.Event()
        self._nursery.start_soon(self._hold, name, model)
        await trio.testing.wait_all_tasks_blocked()

    async def release(self, name: str) -> None:
        self._release[name].set()
        await trio.testing.wait_all_tasks_blocked()

    async def _hold(self, name: str, model: str) -> None:
        async with self._dispatcher.slot(Request(kind="chat", model=model)):
            self.order.append(name)
            await self._release[name].wait()


async def test_slots_are_taken_first_come_first_served() -> None:
    async with running(max_in_flight=2) as dispatcher, trio.open_nursery() as nursery:
        holders = Holders(dispatcher, nursery)
        for number in range(6):
            await holders.start(f"r{number}")
        assert holders.order == ["r0", "r1"]
        statistics = dispatcher.statistics()
        assert (statistics.in_flight, statistics.waiting) == (2, 4)
        # Each slot freed goes to the longest waiting, whichever slot it was.
        for freed, expected in [("r1", "r2"), ("r0", "r3"), ("r3", "r4"), ("r2", "r5")]:
            await holders.release(freed)
            assert holders.order[-1] == expected
        for name in ("r4", "r5"):
            await holders.release(name)
        assert dispatcher.statistics().in_flight == 0


async def test_a_model_with_its_own_max_in_flight_lets_other_models_pass() -> None:
    limits = {"slow": ModelLimits(max_in_flight=1)}
    async with (
        running(max_in_flight=2, model_limits=limits) as dispatcher,
        trio.open_nursery() as nursery,
    ):
        holders = Holders(dispatcher, nursery)
        await holders.start("slow 1", "slow")
        await holders.start("slow 2", "slow")  # waits for its model, holding no client slot
        await holders.start("fast", "fast")
        assert holders.order == ["slow 1", "fast"]
        statistics = dispatcher.statistics()
        assert (statistics.in_flight, statistics.waiting) == (2, 0)
        slow = statistics.models["slow"]
        assert (slow.in_flight, slow.max_in_flight, slow.waiting) == (1, 1, 1)
        assert "fast" not in statistics.models
        await holders.release("fast")
        await holders.release("slow 1")
        assert holders.order == ["slow 1", "fast", "slow 2"]
        await holders.release("slow 2")


async def test_the_slot_ends_a_request_at_its_deadline_with_request_timeout_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    records = Records()
    async with running(total_timeout=7.0, records=records) as dispatcher:
        for timeout, expected in [(None, 7.0), (2.5, 2.5)]:
            start = trio.current_time()
            request = Request(kind="chat", model="m", timeout=timeout)
            with pytest.raises(RequestTimeoutError, match=rf"total timeout of {expected} s"):
                async with dispatcher.slot(request):
                    with request.interruptible():  # how a request's waits honour its deadline
                        await trio.sleep_forever()
            assert trio.current_time() == start + expected
    assert [type(error) for _, error in records.outcomes] == [RequestTimeoutError] * 2


class Boom(Exception):
    pass


async def _ok() -> None:
    await trio.lowlevel.checkpoint()


async def _error() -> None:
    raise Boom


async def _forever() -> None:
    await trio.sleep_forever()


OUTCOMES: dict[str, tuple[Callable[[], Any], type[BaseException] | None]] = {
    "ok": (_ok, None),
    "error": (_error, Boom),
    "deadline": (_forever, RequestTimeoutError),
}


@pytest.mark.parametrize("outcome", [*OUTCOMES, "cancelled", "client closed"])
async def test_the_slot_records_each_request_once_whatever_ended_it(
    autojump_clock: trio.testing.MockClock, outcome: str
) -> None:
    records = Records()
    raised: list[BaseException] = []

    async def one(dispatcher: Dispatcher, body: Callable[[], Any]) -> None:
        try:
            async with dispatcher.slot(Request(kind="chat", model="m")) as request:
                with request.interruptible():
                    await body()
        except Exception as exc:
            raised.append(exc)

    async with running(total_timeout=5.0, records=records) as dispatcher:
        if outcome in OUTCOMES:
            await one(dispatcher, OUTCOMES[outcome][0])
        elif outcome == "cancelled":
            with trio.move_on_after(1.0):
                await one(dispatcher, _forever)
        else:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(one, dispatcher, _forever)
                await trio.testing.wait_all_tasks_blocked()
                dispatcher.close()
    expected = {"cancelled": ClientClosedError, "client closed": ClientClosedError}.get(
        outcome, OUTCOMES.get(outcome, (None, None))[1]
    )
    assert len(records.outcomes) == 1
    recorded = records.outcomes[0][1]
    assert type(recorded) is expected if expected is not None else recorded is None
    if outcome in ("error", "deadline", "client closed"):  # raised to the caller as recorded
        assert [type(exc) for exc in raised] == [expected]
    statistics = dispatcher.statistics()
    assert (statistics.submitted, statistics.in_flight) == (1, 0)
    assert (statistics.succeeded, statistics.failed) == ((1, 0) if expected is None else (0, 1))


async def test_a_closed_dispatcher_refuses_new_requests() -> None:
    records = Records()
    async with running(records=records) as dispatcher:
        dispatcher.close()
        with pytest.raises(ClientClosedError):
            async with dispatcher.slot(Request(kind="chat", model="m")):
                raise AssertionError("a slot was given")
    assert records.outcomes == []
    assert dispatcher.statistics().submitted == 0


# --- through the client -------------------------------------------------------------------------


class Gated:
    """A proxy that holds each request until its message is released; records the order the
    requests arrived in. ``answers`` gives a message its statuses, one per attempt (the last
    repeats); any other gets a 200."""

    def __init__(self, answers: dict[str, list[int]] | None = None) -> None:
        self.order: list[str] = []
        self._answers = answers or {}
        self._gates: dict[str, trio.Event] = {}

    def release(self, text: str) -> None:
        self._gates.setdefault(text, trio.Event()).set()

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        text = msgspec.json.decode(request.content)["messages"][0]["content"]
        attempt = self.order.count(text)
        self.order.append(text)
        await self._gates.setdefault(text, trio.Event()).wait()
        statuses = self._answers.get(text, [200])
        status = statuses[min(attempt, len(statuses) - 1)]
        if status == 200:
            return httpx2.Response(200, content=COMPLETION)
        return httpx2.Response(status, content=error_body(status, f"status {status}"))


async def test_calls_and_jobs_share_one_limit_first_come_first_served() -> None:
    gated = Gated()

    async def call(client: Client, text: str) -> None:
        await client.complete(model="m", messages=said(text))

    async with open_test_client(gated, max_in_flight=2) as client, trio.open_nursery() as nursery:
        async with client.open_jobs() as (send_jobs, receive_results):
            for text in ("call 0", "call 1"):
                nursery.start_soon(call, client, text)
                await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(call, client, "call 2")
            await trio.testing.wait_all_tasks_blocked()
            await send_jobs.send(Job(id=3, request={"model": "m", "messages": said("job 3")}))
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(call, client, "call 4")
            await trio.testing.wait_all_tasks_blocked()
            assert gated.order == ["call 0", "call 1"]
            assert client.statistics().dispatcher.waiting == 3
            for freed, expected in [("call 1", "call 2"), ("call 0", "job 3"), ("job 3", "call 4")]:
                gated.release(freed)
                await trio.testing.wait_all_tasks_blocked()
                assert gated.order[-1] == expected
            gated.release("call 2")
            gated.release("call 4")
            await send_jobs.aclose()
            assert [result.id async for result in receive_results if result.ok] == [3]


class DownAfterFirst:
    """A proxy that answers the first call and every probe, then goes away: probes and calls
    are refused."""

    def __init__(self) -> None:
        self.up = True

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        if not self.up:
            raise httpx2.ConnectError("[Errno 111] Connection refused", request=request)
        if request.url.path.startswith("/health"):
            return httpx2.Response(200, content=b'"I\'m alive!"')
        return httpx2.Response(200, content=COMPLETION)


async def _stall(request: httpx2.Request) -> httpx2.Response:
    await trio.sleep_forever()
    raise AssertionError("unreachable")


def _always_500(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(500, content=error_body(500, "boom"))


@asynccontextmanager
async def _waiting_on(what: str, **options: Any) -> AsyncIterator[Client]:
    """A client whose next call waits on ``what`` (its proxy never answers it)."""
    if what == "the transport":
        async with open_test_client(_stall, **options) as client:
            yield client
    elif what == "the throttle":
        async with open_test_client(Stalling(), rpm=1, **options) as client:
            await client.complete(model="m", messages=MESSAGES)  # the next may go in 60 s
            yield client
    elif what == "a retry's backoff":
        async with open_test_client(
            _always_500, max_retries=3, backoff_initial=100.0, backoff_max=100.0, **options
        ) as client:
            yield client
    else:
        proxy = DownAfterFirst()
        health = {"health_check_interval": 1.0, "health_failure_threshold": 1}
        async with open_test_client(proxy, **health, **options) as client:
            await client.complete(model="m", messages=MESSAGES)  # the proxy was reached
            transitions = client.health_transitions()
            proxy.up = False
            assert (await transitions.receive()).state == "down"
            assert client.statistics().health is not None
            yield client


WAITS = ["the transport", "the throttle", "a retry's backoff", "the health gate"]


@pytest.mark.parametrize("what", WAITS)
@pytest.mark.parametrize("set_by", ["total_timeout", "timeout="])
async def test_the_total_deadline_ends_a_request_at_its_exact_time_whatever_it_waits_on(
    autojump_clock: trio.testing.MockClock, what: str, set_by: str
) -> None:
    options = {"total_timeout": 5.0 if set_by == "total_timeout" else 1000.0}
    per_call = {"timeout": 5.0} if set_by == "timeout=" else {}
    async with _waiting_on(what, **options) as client:
        start = trio.current_time()
        with pytest.raises(RequestTimeoutError, match=r"total timeout of 5\.0 s") as caught:
            await client.complete(model="m", messages=MESSAGES, **per_call)
        assert trio.current_time() == start + 5.0
        if what == "a retry's backoff":
            assert isinstance(caught.value.__cause__, InternalServerError)
        assert client.usage().errors == {"RequestTimeoutError": 1}


async def test_the_total_deadline_ends_a_stream_waiting_for_its_first_token_at_its_exact_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_test_client(_stall, total_timeout=5.0, first_token_timeout=60.0) as client:
        start = trio.current_time()
        with pytest.raises(RequestTimeoutError, match=r"total timeout of 5\.0 s"):
            async with client.stream(model="m", messages=MESSAGES):
                raise AssertionError("the stream opened")
        assert trio.current_time() == start + 5.0


async def _run(client: Client, kind: str, text: str) -> None:
    """One request of ``kind`` whose message is ``text``; its error raised as itself."""
    if kind == "call":
        await client.complete(model="m", messages=said(text))
    elif kind == "stream":
        async with client.stream(model="m", messages=said(text)) as stream:
            async for _ in stream:
                pass
    else:
        async with client.open_jobs() as (send_jobs, receive_results):
            async with send_jobs:
                await send_jobs.send(Job(id=1, request={"model": "m", "messages": said(text)}))
            async for result in receive_results:
                if result.error is not None:
                    raise result.error


RECORDED = {
    "ok": {},
    "error": {"AuthenticationError": 1},
    "deadline": {"RequestTimeoutError": 1},
    "cancelled": {"ClientClosedError": 1},
    "client closed": {"ClientClosedError": 1},
}


@pytest.mark.parametrize("outcome", list(RECORDED))
@pytest.mark.parametrize("kind", ["call", "stream", "job"])
async def test_every_request_is_recorded_once_in_usage_whatever_ended_it(
    autojump_clock: trio.testing.MockClock, kind: str, outcome: str
) -> None:
    proxy = Stalling()
    raised: list[Exception] = []

    async def run(client: Client, text: str) -> None:
        try:
            await _run(client, kind, text)
        except LiteLLMError as exc:
            raised.append(exc)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            async with open_test_client(proxy, total_timeout=5.0) as client:
                if outcome == "ok":
                    await run(client, "hi")
                elif outcome == "error":
                    await run(client, "deny")
                elif outcome == "deadline":
                    await run(client, "stall")
                elif outcome == "cancelled":
                    with trio.move_on_after(1.0):
                        await run(client, "stall")
                else:
                    nursery.start_soon(run, client, "stall")
                    await proxy.stalling.wait()
                    await trio.testing.wait_all_tasks_blocked()
    usage = client.usage()
    assert usage.requests == 1
    assert usage.errors == RECORDED[outcome]
    statistics = client.statistics().dispatcher
    assert (statistics.submitted, statistics.in_flight) == (1, 0)
    assert statistics.succeeded + statistics.failed == 1
    if outcome == "error":
        assert [type(exc) for exc in raised] == [AuthenticationError]
    elif outcome == "deadline" and kind == "stream":  # after content: the stream says so
        assert [type(exc) for exc in raised] == [StreamInterruptedError]
        assert isinstance(raised[0].__cause__, RequestTimeoutError)
    elif outcome == "deadline":
        assert [type(exc) for exc in raised] == [RequestTimeoutError]


async def test_statistics_add_up() -> None:
    gated = Gated({"retried": [500, 200], "denied": [401]})
    finished: list[RequestFinished] = []

    async def call(client: Client, text: str) -> None:
        with suppress(AuthenticationError):
            await client.complete(model="m", messages=said(text))

    async with (
        open_test_client(gated, max_in_flight=2, backoff_initial=0.0) as client,
        trio.open_nursery() as nursery,
    ):
        events = client.events()
        async with client.open_jobs() as (send_jobs, receive_results):
            for text in ("first", "second", "denied"):
                nursery.start_soon(call, client, text)
                await trio.testing.wait_all_tasks_blocked()
            await send_jobs.send(Job(id=1, request={"model": "m", "messages": said("retried")}))
            await trio.testing.wait_all_tasks_blocked()
            statistics = client.statistics().dispatcher
            assert (statistics.in_flight, statistics.max_in_flight, statistics.waiting) == (2, 2, 2)
            assert (statistics.submitted, statistics.succeeded, statistics.failed) == (2, 0, 0)
            for text in ("first", "second", "denied", "retried"):
                gated.release(text)
            await send_jobs.aclose()
            assert [result.ok async for result in receive_results] == [True]
        await trio.testing.wait_all_tasks_blocked()
        statistics = client.statistics().dispatcher
        assert (statistics.in_flight, statistics.waiting) == (0, 0)
        assert (statistics.submitted, statistics.succeeded, statistics.failed) == (4, 3, 1)
        assert statistics.retries == 1
        while True:
            try:
                event = events.receive_nowait()
            except trio.WouldBlock:
                break
            if isinstance(event, RequestFinished):
                finished.append(event)
    assert len(finished) == statistics.submitted
    assert sum(event.record.attempts - 1 for event in finished) == statistics.retries
    assert sorted(event.record.outcome for event in finished) == [
        "AuthenticationError",
        "ok",
        "ok",
        "ok",
    ]
