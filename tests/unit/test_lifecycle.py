"""A client's life: made only by ``open_client``, usable inside its block, closed after it.

After the block every method that talks to the proxy or starts something raises
:class:`ClientClosedError`; the snapshots stay readable. Requests in flight or waiting when it
closes end with that error, and leaving any block of the client early leaves it usable.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
import trio
import trio.testing

from _fakes import MESSAGES, Stalling, open_test_client, said
from trio_litellm import (
    Client,
    ClientClosedError,
    ClientConfig,
    Job,
    JobResult,
    ModelLimits,
    StreamInterruptedError,
)

SNAPSHOTS = frozenset(
    {
        "busy_connections",
        "config",
        "health_status",
        "open_connections",
        "recorder",
        "statistics",
        "usage",
        "usage_totals",
    }
)
"""The public members of Client that stay readable once it is closed: they only look."""

ARGUMENTS: dict[str, tuple[Any, ...]] = {
    "model_info": ("m",),
    "add_hook": (lambda event: None,),
    "realtime": ("m",),
}
"""The positional arguments a method cannot be called without."""


def _public_members() -> list[str]:
    return sorted(name for name in dir(Client) if not name.startswith("_"))


TALKERS = [name for name in _public_members() if name not in SNAPSHOTS]
"""Every other public member: each talks to the proxy or starts something."""


async def _use(result: Any) -> None:
    """Await what a method returned, or enter it if it is an async context manager."""
    if inspect.isawaitable(result):
        await result
    elif hasattr(result, "__aenter__"):
        async with result:
            pass


async def closed_client(proxy: Stalling) -> Client:
    async with open_test_client(proxy) as client:
        await client.complete(model="m", messages=MESSAGES)  # something to keep in the snapshots
    return client


async def assert_usable(client: Client) -> None:
    """Nothing of what came before holds a slot, and a call, a stream and a job all go through."""
    statistics = client.statistics().dispatcher
    assert (statistics.in_flight, statistics.waiting) == (0, 0)
    assert (await client.complete(model="m", messages=MESSAGES)).text == "ok"
    async with client.stream(model="m", messages=MESSAGES) as stream:
        assert [piece.choices[0].delta.content async for piece in stream] == ["a", "b"]
    async with client.open_jobs() as (send_jobs, receive_results):
        async with send_jobs:
            await send_jobs.send(Job(id="after", request={"model": "m", "messages": MESSAGES}))
        results = [result async for result in receive_results]
    assert [(result.id, result.ok) for result in results] == [("after", True)]


# --- a closed client ----------------------------------------------------------------------------


def test_the_members_enumerated_include_every_method_that_talks_to_the_proxy() -> None:
    expected = {
        "add_hook",
        "complete",
        "deployment_health",
        "embed",
        "events",
        "health",
        "health_transitions",
        "list_models",
        "model_info",
        "model_infos",
        "open_jobs",
        "realtime",
        "spend",
        "stream",
    }
    assert expected <= set(TALKERS)


def test_every_snapshot_allowed_after_closing_is_a_member_of_client() -> None:
    assert set(_public_members()) >= SNAPSHOTS


@pytest.mark.parametrize("name", TALKERS)
async def test_a_closed_client_raises_client_closed_error_from(name: str) -> None:
    proxy = Stalling()
    client = await closed_client(proxy)
    sent = len(proxy.requests)
    with pytest.raises(ClientClosedError, match=rf"^{name}\(\): the client is closed"):
        await _use(getattr(client, name)(*ARGUMENTS.get(name, ())))
    assert len(proxy.requests) == sent  # nothing reached the proxy


async def test_a_closed_client_still_answers_every_snapshot() -> None:
    client = await closed_client(Stalling())
    assert client.statistics().dispatcher.succeeded == 1
    assert client.usage().requests == 1
    assert list(client.usage_totals()) == ["m"]
    assert client.config.proxy_url == "http://proxy.test"
    assert client.recorder is None
    assert (client.open_connections, client.busy_connections) == (0, 0)
    assert client.health_status == "unknown"


def test_client_has_no_public_constructor_and_names_open_client() -> None:
    with pytest.raises(TypeError, match=r"open_client"):
        Client()
    with pytest.raises(TypeError, match=r"open_client"):
        Client(ClientConfig(proxy_url="http://proxy.test"))


async def test_the_repr_says_when_the_client_is_closed() -> None:
    async with open_test_client(Stalling()) as client:
        assert "closed" not in repr(client)
        assert "http://proxy.test" in repr(client)
    assert repr(client) == "<trio_litellm.Client http://proxy.test closed>"


# --- requests in flight or waiting when the client closes ---------------------------------------


async def test_calls_and_a_stream_in_flight_when_the_client_closes_end_with_client_closed_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    proxy = Stalling()
    outcomes: dict[str, BaseException] = {}

    async def catching(name: str, coro: Any) -> None:
        try:
            await coro
        except Exception as exc:
            outcomes[name] = exc

    async def stream_before_content(client: Client) -> None:
        async with client.stream(model="m", messages=MESSAGES) as stream:
            raise AssertionError(f"the stream opened: {stream!r}")

    async def stream_after_content(client: Client) -> None:
        async with client.stream(model="m", messages=said("stall")) as stream:
            async for _ in stream:
                pass

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:  # the callers outlive the client
            async with open_test_client(proxy, first_token_timeout=1000.0) as client:
                nursery.start_soon(
                    catching, "complete", client.complete(model="m", messages=said("stall"))
                )
                nursery.start_soon(catching, "embed", client.embed(model="e", input=["stall"]))
                nursery.start_soon(catching, "stream after content", stream_after_content(client))
                await trio.testing.wait_all_tasks_blocked()
                assert proxy.stalled == 3
                assert client.statistics().dispatcher.in_flight == 3
    assert set(outcomes) == {"complete", "embed", "stream after content"}
    assert isinstance(outcomes["complete"], ClientClosedError)
    assert isinstance(outcomes["embed"], ClientClosedError)
    interrupted = outcomes["stream after content"]
    assert isinstance(interrupted, StreamInterruptedError)
    assert interrupted.partial.text == "a"
    assert isinstance(interrupted.__cause__, ClientClosedError)
    assert client.statistics().dispatcher.in_flight == 0


async def test_a_stream_waiting_for_its_first_content_when_the_client_closes_raises_client_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def no_headers_yet(request: httpx2.Request) -> httpx2.Response:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    errors: list[BaseException] = []

    async def stream(client: Client) -> None:
        try:
            async with client.stream(model="m", messages=MESSAGES):
                raise AssertionError("the stream opened")
        except ClientClosedError as exc:
            errors.append(exc)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            async with open_test_client(no_headers_yet) as client:
                nursery.start_soon(stream, client)
                await trio.testing.wait_all_tasks_blocked()
                assert client.statistics().dispatcher.in_flight == 1
    assert len(errors) == 1


async def test_requests_waiting_for_a_slot_when_the_client_closes_raise_client_closed_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    proxy = Stalling()
    errors: dict[str, BaseException] = {}

    async def catching(name: str, coro: Any) -> None:
        try:
            await coro
        except Exception as exc:
            errors[name] = exc

    async def stream(client: Client) -> None:
        async with client.stream(model="m", messages=MESSAGES):
            raise AssertionError("the stream opened")

    with trio.fail_after(60):  # nothing hangs
        async with trio.open_nursery() as nursery:
            async with open_test_client(proxy, max_in_flight=1) as client:
                nursery.start_soon(
                    catching, "holder", client.complete(model="m", messages=said("stall"))
                )
                await proxy.stalling.wait()
                nursery.start_soon(
                    catching, "complete", client.complete(model="m", messages=MESSAGES)
                )
                nursery.start_soon(catching, "embed", client.embed(model="e", input=["x"]))
                nursery.start_soon(catching, "stream", stream(client))
                await trio.testing.wait_all_tasks_blocked()
                assert client.statistics().dispatcher.waiting == 3
    assert sorted(errors) == ["complete", "embed", "holder", "stream"]
    for error in errors.values():
        assert isinstance(error, ClientClosedError)
    assert len(proxy.requests) == 1


@pytest.mark.parametrize("model_limited", [False, True], ids=["client limit", "model limit"])
async def test_jobs_running_or_waiting_for_a_slot_when_the_client_closes_get_client_closed_error(
    autojump_clock: trio.testing.MockClock, model_limited: bool
) -> None:
    proxy = Stalling()
    results: list[JobResult] = []
    options: dict[str, Any] = {"max_in_flight": 1}
    if model_limited:
        options = {"model_limits": {"m": ModelLimits(max_in_flight=1)}}

    async def produce_and_consume(client: Client) -> None:
        async with client.open_jobs() as (send_jobs, receive_results):
            async with send_jobs:
                for number in range(2):
                    request = {"model": "m", "messages": said("stall")}
                    await send_jobs.send(Job(id=number, request=request))
            async for result in receive_results:
                results.append(result)

    with trio.fail_after(60):  # nothing hangs
        async with trio.open_nursery() as nursery:
            async with open_test_client(proxy, **options) as client:
                nursery.start_soon(produce_and_consume, client)
                await trio.testing.wait_all_tasks_blocked()
                assert proxy.stalled == 1
                if model_limited:  # the second job waits for its model's slot in a task
                    assert client.statistics().dispatcher.models["m"].waiting == 1
                # else it waits in the job channel: the one worker is busy with the first
    assert sorted(result.id for result in results) == [0, 1]
    for result in results:
        assert isinstance(result.error, ClientClosedError), result
    assert len(proxy.requests) == 1  # the waiting job was never sent


async def test_a_consumer_of_jobs_not_reading_never_holds_up_the_client_closing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    proxy = Stalling()
    got: list[JobResult] = []
    with trio.fail_after(60):  # nothing hangs
        async with trio.open_nursery() as nursery:
            async with open_test_client(proxy, max_in_flight=1) as client:
                blocks = await nursery.start(_open_jobs_and_wait, client, got)
                async with blocks.send_jobs:  # one job: with no buffer, a second would wait
                    request = {"model": "m", "messages": said("stall")}
                    await blocks.send_jobs.send(Job(id=0, request=request))
                await trio.testing.wait_all_tasks_blocked()
                assert proxy.stalled == 1
            blocks.read.set()  # the client closed with no room for any result
    assert got == []  # none was due: the results channel had no room


class _Jobs:
    def __init__(self, send_jobs: trio.MemorySendChannel[Job]) -> None:
        self.send_jobs = send_jobs
        self.read = trio.Event()


async def _open_jobs_and_wait(
    client: Client, got: list[JobResult], *, task_status: trio.TaskStatus[_Jobs]
) -> None:
    """Open jobs with no buffer for results, hand the job channel over, and read the results
    only once told to."""
    async with client.open_jobs(max_buffer=0) as (send_jobs, receive_results):
        blocks = _Jobs(send_jobs)
        task_status.started(blocks)
        await blocks.read.wait()
        got.extend([result async for result in receive_results])


# --- leaving a block early leaves the client usable ---------------------------------------------


class Boom(Exception):
    pass


@asynccontextmanager
async def leaving(how: str) -> AsyncIterator[trio.CancelScope]:
    """A block left by ``how``: "exception" raises Boom inside it (caught here), "cancel" is
    cancelled from outside after 5 s, "break" is left by the test itself."""
    with trio.move_on_after(5.0 if how == "cancel" else 1000.0) as scope:
        try:
            yield scope
        except* Boom:
            assert how == "exception"
    assert scope.cancelled_caught == (how == "cancel")


HOWS = ["break", "exception", "cancel"]


@pytest.mark.parametrize("how", HOWS)
async def test_leaving_a_stream_early_leaves_the_client_usable(
    autojump_clock: trio.testing.MockClock, how: str
) -> None:
    proxy = Stalling()
    async with open_test_client(proxy) as client:
        async with leaving(how):
            async with client.stream(model="m", messages=said("stall")) as stream:
                async for piece in stream:
                    assert piece.choices[0].delta.content == "a"
                    if how == "break":
                        break
                    if how == "exception":
                        raise Boom
                    # cancel: the next chunk never comes, and the deadline ends the wait
        assert client.statistics().dispatcher.failed == 1
        await assert_usable(client)
    assert client.usage().errors == {"ClientClosedError": 1}


@pytest.mark.parametrize("how", HOWS)
async def test_leaving_open_jobs_early_leaves_the_client_usable(
    autojump_clock: trio.testing.MockClock, how: str
) -> None:
    proxy = Stalling()
    async with open_test_client(proxy, max_in_flight=2) as client:
        async with leaving(how):
            async with client.open_jobs() as (send_jobs, receive_results):
                await send_jobs.send(Job(id="ok", request={"model": "m", "messages": MESSAGES}))
                for number in range(3):  # one runs and stalls, the others wait
                    request = {"model": "m", "messages": said("stall")}
                    await send_jobs.send(Job(id=number, request=request))
                async for result in receive_results:
                    assert result.id == "ok"
                    if how == "break":
                        break
                    if how == "exception":
                        raise Boom
        await assert_usable(client)
        assert proxy.stalled == 2  # the "ok" job, then two stalling ones in its place


@pytest.mark.parametrize("how", ["exception", "cancel"])
async def test_leaving_a_call_early_leaves_the_client_usable(
    autojump_clock: trio.testing.MockClock, how: str
) -> None:
    proxy = Stalling()

    async def fail_soon() -> None:
        await proxy.stalling.wait()
        raise Boom

    async with open_test_client(proxy, max_in_flight=1) as client:
        async with leaving(how):
            async with trio.open_nursery() as nursery:
                if how == "exception":
                    nursery.start_soon(fail_soon)  # a sibling's failure cancels the call
                await client.complete(model="m", messages=said("stall"))
        await assert_usable(client)
    assert client.usage().errors == {"ClientClosedError": 1}


async def test_health_transitions_with_the_monitor_off_is_a_config_error() -> None:
    from trio_litellm import ConfigError, UsageError

    async with open_test_client(Stalling(), health_check_interval=None) as client:
        with pytest.raises(ConfigError) as caught:
            client.health_transitions()
    assert isinstance(caught.value, UsageError)
    assert "health_check_interval" in str(caught.value)
