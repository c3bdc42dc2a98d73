"""How a request through our own pool ends early: at its total deadline, and when the client closes.

No cancel scope surrounds such a request: our pool bounds its waits by the request's deadline and
can abort the one under way (``_fasthttp.Owner``). These tests run the client against the fake
provider in-process, over real sockets, so the request goes through ``FastTransport`` (the
MockTransport of the other unit tests goes through the other route, ``Request.interruptible``).
The clock is trio's MockClock: a bound that fires late, or a close that waits for the answer,
shows as a different time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from trio_litellm import (
    Client,
    ClientClosedError,
    Job,
    ProxyConnectionError,
    RequestTimeoutError,
    open_client,
)
from trio_litellm.testing.fake_provider import FakeProviderConfig, serve_fake_provider


def said(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


SLOW = said("[fake latency=1000] slow")  # the fake answers after 1,000 s


def options(url: str, **more: Any) -> dict[str, Any]:
    return {
        "proxy_url": url,
        "api_key": "sk-test",
        "health_check_interval": None,
        "price_lookup": False,
        "max_retries": 0,
    } | more


@pytest.mark.parametrize(("timeout", "expected"), [(None, 5.0), (2.5, 2.5)])
async def test_a_call_ends_at_its_total_deadline_while_its_answer_is_awaited(
    provider_url: str,
    autojump_clock: trio.testing.MockClock,
    timeout: float | None,
    expected: float,
) -> None:
    async with open_client(**options(provider_url, total_timeout=5.0)) as client:
        start = trio.current_time()
        with pytest.raises(RequestTimeoutError, match=rf"total timeout of {expected} s"):
            await client.complete(model="echo", messages=SLOW, timeout=timeout)
        assert trio.current_time() == pytest.approx(start + expected, abs=1e-6)
        assert client.statistics().open_connections == 0  # the connection went with it
        reply = await client.complete(model="echo", messages=said("after"))  # still usable
        assert reply.text == "Echo: after"
    assert client.usage().errors == {"RequestTimeoutError": 1}


async def test_a_deadline_passed_during_a_retry_is_a_timeout_not_a_retry(
    provider_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    # The read timeout (1 s) fails the first attempt; the retry's answer would come after the
    # total deadline (3 s), which ends the request there as a RequestTimeoutError.
    config = options(provider_url, total_timeout=3.0, read_timeout=1.0, max_retries=5)
    async with open_client(**config) as client:
        start = trio.current_time()
        with pytest.raises(RequestTimeoutError, match=r"total timeout of 3\.0 s") as caught:
            await client.complete(model="echo", messages=SLOW)
        assert trio.current_time() == pytest.approx(start + 3.0, abs=1e-6)
    cause = caught.value.__cause__  # the attempt the deadline cut short
    assert isinstance(cause, RequestTimeoutError) and "total timeout" not in str(cause)


async def close_while(
    url: str, run: Callable[[Client], Awaitable[None]], *, in_flight: int
) -> Client:
    """Run ``run(client)`` in a task and close the client once ``in_flight`` requests wait for
    their answers; the closing must not wait for them (the clock does not move)."""
    async with trio.open_nursery() as nursery:
        async with open_client(**options(url)) as client:
            nursery.start_soon(run, client)
            await trio.testing.wait_all_tasks_blocked()
            assert client.statistics().dispatcher.in_flight == in_flight
            closed_at = trio.current_time()
    assert trio.current_time() == closed_at
    return client


async def test_closing_the_client_ends_a_call_awaiting_its_answer_at_once(
    provider_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    raised: list[BaseException] = []

    async def call(client: Client) -> None:
        try:
            await client.complete(model="echo", messages=SLOW)
        except ClientClosedError as exc:
            raised.append(exc)

    client = await close_while(provider_url, call, in_flight=1)
    assert [type(exc) for exc in raised] == [ClientClosedError]
    assert "the client closed" in str(raised[0])
    assert client.usage().errors == {"ClientClosedError": 1}


async def test_closing_the_client_ends_the_jobs_awaiting_their_answers(
    provider_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    results = []

    async def run_jobs(client: Client) -> None:
        async with client.open_jobs() as (send_jobs, receive_results):
            async with send_jobs:
                for i in range(3):
                    await send_jobs.send(Job(id=i, request={"model": "echo", "messages": SLOW}))
            async for result in receive_results:
                results.append(result)

    await close_while(provider_url, run_jobs, in_flight=3)
    assert sorted(r.id for r in results) == [0, 1, 2]
    assert {type(r.error) for r in results} == {ClientClosedError}


async def test_cancelling_a_call_from_outside_leaves_the_client_usable(
    provider_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_client(**options(provider_url)) as client:
        with trio.move_on_after(2.0) as scope:
            await client.complete(model="echo", messages=SLOW)
        assert scope.cancelled_caught
        assert client.statistics().open_connections == 0
        reply = await client.complete(model="echo", messages=said("again"))
        assert reply.text == "Echo: again"
    assert client.usage().errors == {"ClientClosedError": 1}


async def test_a_deadline_passed_while_waiting_to_retry_names_the_failure_before_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        config = options(
            f"http://127.0.0.1:{port}", max_retries=5, backoff_initial=10.0, backoff_max=10.0
        )
        async with open_client(**config) as client:
            start = trio.current_time()
            with pytest.raises(RequestTimeoutError, match=r"total timeout of 2\.0 s") as caught:
                await client.complete(model="echo", messages=said("hi"), timeout=2.0)
            assert trio.current_time() == pytest.approx(start + 2.0, abs=1e-6)
    assert isinstance(caught.value.__cause__, ProxyConnectionError)


async def test_a_deadline_passed_while_the_proxy_is_down_names_the_failure_before_it(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    # The proxy answered once, then went away: the monitor closes its gate and the request
    # waits there (an interruptible wait inside the attempt) until its deadline.
    serving = trio.CancelScope()

    async def serve(*, task_status: trio.TaskStatus[str]) -> None:
        with serving:
            await serve_fake_provider(FakeProviderConfig(port=0), task_status=task_status)

    url: str = await nursery.start(serve)
    async with open_client(**options(url, health_check_interval=0.5, max_retries=5)) as client:
        await client.complete(model="echo", messages=said("hi"))
        serving.cancel()
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        with pytest.raises(RequestTimeoutError, match=r"total timeout of 2\.0 s") as caught:
            await client.complete(model="echo", messages=said("hi"), timeout=2.0)
        assert trio.current_time() == pytest.approx(start + 2.0, abs=1e-6)
    assert isinstance(caught.value.__cause__, ProxyConnectionError)
