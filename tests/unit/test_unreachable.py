"""An unreachable or vanished proxy: every wait is bounded, every failure typed and explained.

The proxy is an in-memory HTTP transport that refuses connections (as a closed port does) until
told otherwise; the health monitor probes through the same transport. Everything runs on trio's
MockClock, so each bound is asserted at its exact time.
"""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx2
import pytest
import trio
import trio.testing

from _fakes import COMPLETION, MESSAGES, chunk, open_test_client
from trio_litellm import (
    Client,
    NotFoundError,
    ProxyConnectionError,
    RequestTimeoutError,
    ServiceUnavailableError,
    StreamInterruptedError,
)

URL = "http://proxy.test:4000"


class Proxy:
    """A proxy that is up or down (connections refused), answering every request it takes."""

    def __init__(self, *, up: bool) -> None:
        self.up = up
        self.requests: list[str] = []
        self.stream_body: Any = None

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        await trio.sleep(0.01)
        if not self.up:
            raise httpx2.ConnectError("[Errno 111] Connection refused", request=request)
        self.requests.append(request.url.path)
        if request.url.path == "/health/liveliness":
            return httpx2.Response(200, json="I'm alive!")
        if request.url.path == "/v1/models":
            return httpx2.Response(200, json={"object": "list", "data": []})
        if b'"stream":true' in request.content and self.stream_body is not None:
            return httpx2.Response(
                200, content=self.stream_body(), headers={"content-type": "text/event-stream"}
            )
        return httpx2.Response(200, content=COMPLETION)


def open_client_on(proxy: Proxy, **options: Any) -> AbstractAsyncContextManager[Client]:
    """A test client of ``proxy`` at URL, its health monitor on (as by default)."""
    return open_test_client(proxy, **({"proxy_url": URL, "health_check_interval": 5.0} | options))


# --- a proxy never reached ------------------------------------------------------------------------


async def test_a_call_to_a_proxy_never_reached_fails_after_its_retries_in_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    proxy = Proxy(up=False)
    async with open_client_on(proxy) as client:
        start = trio.current_time()
        with pytest.raises(ProxyConnectionError) as caught:
            await client.complete(model="m", messages=MESSAGES)
        elapsed = trio.current_time() - start
    # Three attempts, backing off 0.5 then 1 s: not the 900 s total_timeout.
    assert elapsed < 3.0
    assert URL in str(caught.value)
    assert "Connection refused" in str(caught.value)
    assert isinstance(caught.value.__cause__, Exception)


async def test_a_stream_to_a_proxy_never_reached_fails_in_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    proxy = Proxy(up=False)
    async with open_client_on(proxy) as client:
        start = trio.current_time()
        with pytest.raises(ProxyConnectionError) as caught:
            async with client.stream(model="m", messages=MESSAGES):
                pytest.fail("the block must not run")
        assert trio.current_time() - start < 3.0
    assert URL in str(caught.value)


async def test_an_embedding_and_a_model_list_fail_the_same_way(
    autojump_clock: trio.testing.MockClock,
) -> None:
    proxy = Proxy(up=False)
    async with open_client_on(proxy) as client:
        start = trio.current_time()
        with pytest.raises(ProxyConnectionError):
            await client.embed(model="e", input=["a"])
        with pytest.raises(ProxyConnectionError) as caught:
            await client.list_models()
        assert trio.current_time() - start < 6.0
    assert URL in str(caught.value)


async def test_the_health_monitor_off_changes_nothing_for_a_proxy_never_reached(
    autojump_clock: trio.testing.MockClock,
) -> None:
    proxy = Proxy(up=False)
    async with open_client_on(proxy, health_check_interval=None) as client:
        start = trio.current_time()
        with pytest.raises(ProxyConnectionError):
            await client.complete(model="m", messages=MESSAGES)
        assert trio.current_time() - start < 3.0


# --- a proxy that went away -----------------------------------------------------------------------


async def go_down(client: Any, proxy: Proxy) -> None:
    """Reach the proxy once, then take it down and let the monitor see it."""
    await client.complete(model="m", messages=MESSAGES)
    proxy.up = False
    with pytest.raises(ProxyConnectionError):
        await client.complete(model="m", messages=MESSAGES, max_retries=0)
    await trio.sleep(1.0)  # on the mock clock: the probe that the failure asked for has failed
    assert client.health_status == "down"


async def test_a_request_held_while_the_proxy_is_down_fails_after_unavailable_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    proxy = Proxy(up=True)
    async with open_client_on(proxy, unavailable_timeout=12.0) as client:
        await go_down(client, proxy)
        start = trio.current_time()
        with pytest.raises(ProxyConnectionError) as caught:
            await client.complete(model="m", messages=MESSAGES)
        elapsed = trio.current_time() - start
    assert 12.0 <= elapsed < 13.0
    message = str(caught.value)
    assert URL in message
    assert "unavailable_timeout" in message
    cause = caught.value.__cause__
    assert isinstance(cause, ProxyConnectionError)
    assert "Connection refused" in str(cause)


async def test_the_default_unavailable_timeout_is_thirty_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    proxy = Proxy(up=True)
    async with open_client_on(proxy) as client:
        assert client.config.unavailable_timeout == 30.0
        await go_down(client, proxy)
        start = trio.current_time()
        with pytest.raises(ProxyConnectionError):
            await client.complete(model="m", messages=MESSAGES)
        assert 30.0 <= trio.current_time() - start < 31.0


async def test_a_held_stream_fails_after_unavailable_timeout_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    proxy = Proxy(up=True)
    async with open_client_on(proxy, unavailable_timeout=5.0) as client:
        await go_down(client, proxy)
        start = trio.current_time()
        with pytest.raises(ProxyConnectionError):
            async with client.stream(model="m", messages=MESSAGES):
                pytest.fail("the block must not run")
        assert 5.0 <= trio.current_time() - start < 6.0


async def test_a_request_held_through_a_short_outage_succeeds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    proxy = Proxy(up=True)
    async with open_client_on(proxy, unavailable_timeout=30.0) as client:
        await go_down(client, proxy)

        async def come_back() -> None:
            await trio.sleep(10.0)
            proxy.up = True

        async with trio.open_nursery() as nursery:
            nursery.start_soon(come_back)
            start = trio.current_time()
            reply = await client.complete(model="m", messages=MESSAGES)
        assert reply.text == "ok"
        assert 10.0 <= trio.current_time() - start < 11.0


async def test_the_total_timeout_still_wins_when_shorter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    proxy = Proxy(up=True)
    async with open_client_on(proxy, unavailable_timeout=30.0) as client:
        await go_down(client, proxy)
        start = trio.current_time()
        with pytest.raises(RequestTimeoutError):
            await client.complete(model="m", messages=MESSAGES, timeout=4.0)
        assert trio.current_time() - start == pytest.approx(4.0)


# --- streams and their deadlines ------------------------------------------------------------------


async def test_a_stream_takes_a_timeout_that_bounds_it_whole(
    autojump_clock: trio.testing.MockClock,
) -> None:
    proxy = Proxy(up=True)

    async def endless() -> Any:
        for i in range(1000):
            yield chunk(f"{i} ")
            await trio.sleep(1.0)

    proxy.stream_body = endless
    async with open_client_on(proxy, stream_idle_timeout=5.0) as client:
        start = trio.current_time()
        with pytest.raises(StreamInterruptedError) as caught:
            async with client.stream(model="m", messages=MESSAGES, timeout=10.0) as stream:
                async for _ in stream:
                    pass
        assert trio.current_time() - start == pytest.approx(10.0, abs=0.1)
    assert isinstance(caught.value.__cause__, RequestTimeoutError)
    assert caught.value.partial.text.startswith("0 1 2 ")


async def test_total_timeout_bounds_a_stream(autojump_clock: trio.testing.MockClock) -> None:
    proxy = Proxy(up=True)

    async def stalled() -> Any:
        await trio.sleep_forever()
        yield b""

    proxy.stream_body = stalled
    async with open_client_on(proxy, total_timeout=5.0, max_retries=0) as client:
        start = trio.current_time()
        with pytest.raises(RequestTimeoutError):
            async with client.stream(model="m", messages=MESSAGES):
                pytest.fail("the block must not run")
        assert trio.current_time() - start == pytest.approx(5.0)


# --- what a retry says ------------------------------------------------------------------------------


async def test_each_retry_logs_a_warning_naming_the_url_and_the_reason(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = Proxy(up=False)
    caplog.set_level(logging.WARNING, logger="trio_litellm")
    async with open_client_on(proxy, api_key="sk-never-logged") as client:
        with pytest.raises(ProxyConnectionError):
            await client.complete(model="m", messages=MESSAGES)
    retries = [r for r in caplog.records if r.name == "trio_litellm" and "retry" in r.message]
    assert len(retries) == 2
    for record in retries:
        assert URL in record.message
        assert "Connection refused" in record.message
        assert "sk-never-logged" not in record.message


async def test_a_502_from_a_gateway_asks_for_a_probe_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backend_down = False

    async def gateway(request: httpx2.Request) -> httpx2.Response:
        if backend_down:
            return httpx2.Response(502, text="Bad Gateway")
        return httpx2.Response(200, content=COMPLETION if request.method == "POST" else b'"ok"')

    async with open_test_client(gateway, proxy_url=URL, health_check_interval=60.0) as client:
        await client.complete(model="m", messages=MESSAGES)
        backend_down = True
        with pytest.raises(ServiceUnavailableError):
            await client.complete(model="m", messages=MESSAGES, max_retries=0)
        await trio.sleep(0.1)  # not the 60 s probe interval: the 502 asked for a probe now
        assert client.health_status == "down"


async def test_an_answer_from_something_else_than_the_proxy_names_the_route() -> None:
    async def web_server(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(404, text="")

    async with open_test_client(web_server, proxy_url=URL) as client:
        with pytest.raises(NotFoundError) as caught:
            await client.list_models()
    assert str(caught.value).startswith(
        f"GET {URL}/v1/models answered 404 (is that a LiteLLM proxy's URL?)"
    )


async def test_connection_failures_while_the_monitor_sees_the_proxy_up_use_up_the_retries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Liveness answers, every call's connection breaks (a gateway resetting POSTs, a bad TLS
    # setup): the retries run out in seconds instead of going round until total_timeout.
    calls = 0

    async def half_broken(request: httpx2.Request) -> httpx2.Response:
        nonlocal calls
        if request.url.path == "/health/liveliness":
            return httpx2.Response(200, json="I'm alive!")
        calls += 1
        raise httpx2.ReadError("connection reset by peer", request=request)

    async with open_client_on(half_broken) as client:
        await trio.sleep(0.1)  # the first probe has answered: the proxy was reached
        start = trio.current_time()
        with pytest.raises(ProxyConnectionError):
            await client.complete(model="m", messages=MESSAGES)
        assert trio.current_time() - start < 3.0
    assert calls == 3


async def test_a_keyboard_interrupt_in_a_job_does_not_hang_leaving_open_jobs() -> None:
    # trio raises KeyboardInterrupt in whatever code runs when Ctrl-C comes: here, inside one
    # job's request, while the others are in flight and the block is waiting for results.
    from trio_litellm import Job

    interrupted = False

    class Interrupting(Proxy):
        async def __call__(self, request: httpx2.Request) -> httpx2.Response:
            nonlocal interrupted
            if request.url.path == "/v1/chat/completions" and not interrupted:
                interrupted = True
                raise KeyboardInterrupt
            return await super().__call__(request)

    proxy = Interrupting(up=True)
    with pytest.raises(BaseException) as caught:  # noqa: PT011 - KeyboardInterrupt, maybe grouped
        async with open_client_on(proxy, health_check_interval=None) as client:
            async with client.open_jobs() as (send_jobs, receive_results):
                for i in range(5):
                    await send_jobs.send(Job(id=i, request={"model": "m", "messages": MESSAGES}))
                await receive_results.receive()
    assert interrupted
    error = caught.value
    assert isinstance(error, KeyboardInterrupt) or (
        isinstance(error, BaseExceptionGroup) and error.subgroup(KeyboardInterrupt) is not None
    ), repr(error)
