"""One client over several proxies: the balance, failover, waiting while all are down, the
shared pause of a model, and what the client shows of each proxy.

Each proxy is an in-memory one, told apart by its host; the health monitors probe through the
same transport. Everything runs on trio's MockClock.
"""

from __future__ import annotations

import logging
from collections import Counter
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

import httpx2
import pytest
import trio
import trio.testing

from _fakes import COMPLETION, MESSAGES, chunk, open_test_client
from trio_litellm import (
    Client,
    HealthChanged,
    ProxyConnectionError,
    ProxyStatistics,
    RateLimitError,
    prometheus_text,
)

URLS = ["http://a.test:4000", "http://b.test:4000", "http://c.test:4000"]
Mode = Literal["up", "refuse", "reset", "503", "hold"]


class Member:
    """One proxy of the fleet: answers, refuses connections, breaks them after the request went
    out, answers 503, or holds each request until ``release`` is set."""

    def __init__(self, mode: Mode = "up") -> None:
        self.mode: Mode = mode
        self.calls = 0  # completions it answered
        self.received = 0  # completions that reached it, whatever it did with them
        self.release = trio.Event()

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        await trio.sleep(0.001)
        if self.mode == "refuse":
            raise httpx2.ConnectError("[Errno 111] Connection refused", request=request)
        if request.url.path == "/health/liveliness":
            return httpx2.Response(200, json="I'm alive!")
        if request.url.path == "/health/readiness":
            return httpx2.Response(200, json={"status": "healthy", "litellm_version": "1.0"})
        if request.url.path == "/v1/models":
            return httpx2.Response(200, json={"object": "list", "data": []})
        self.received += 1
        if self.mode == "reset":
            raise httpx2.ReadError("connection reset by peer", request=request)
        if self.mode == "503":
            return httpx2.Response(503, json={"error": {"message": "no healthy deployment"}})
        if self.mode == "hold":
            await self.release.wait()
        self.calls += 1
        if b'"stream":true' in request.content:
            body = chunk("o") + chunk("k") + b"data: [DONE]\n\n"
            return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})
        return httpx2.Response(200, content=COMPLETION)


class Fleet:
    """The proxies at ``URLS``, routed by host."""

    def __init__(self, *modes: Mode) -> None:
        self.members = [Member(mode) for mode in modes]
        self.urls = URLS[: len(modes)]
        self._by_host = {
            httpx2.URL(url).host: member
            for url, member in zip(self.urls, self.members, strict=True)
        }

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        return await self._by_host[request.url.host](request)


def open_fleet_client(fleet: Fleet, **options: Any) -> AbstractAsyncContextManager[Client]:
    return open_test_client(
        fleet, **({"proxy_url": fleet.urls, "health_check_interval": 5.0} | options)
    )


async def call(client: Client, **options: Any) -> str:
    reply = await client.complete(model="m", messages=MESSAGES, **options)
    return reply.text


def by_url(client: Client) -> dict[str, ProxyStatistics]:
    return {proxy.url: proxy for proxy in client.statistics().proxies}


# --- spreading ------------------------------------------------------------------------------------


async def test_calls_spread_over_every_proxy(autojump_clock: trio.testing.MockClock) -> None:
    fleet = Fleet("up", "up")
    async with open_fleet_client(fleet) as client, trio.open_nursery() as nursery:
        for _ in range(200):
            nursery.start_soon(call, client)
    served = [member.calls for member in fleet.members]
    assert sum(served) == 200
    assert min(served) >= 50, served


async def test_an_attempt_goes_to_the_proxy_with_fewer_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fleet = Fleet("hold", "up")
    slow = fleet.members[0]
    async with open_fleet_client(fleet) as client:
        async with trio.open_nursery() as nursery:
            for _ in range(6):  # some held on the slow proxy, the rest quickly done on the other
                nursery.start_soon(call, client)
            await trio.sleep(1.0)
            held = slow.received
            assert held >= 1
            for _ in range(40):
                await call(client)
            # With two proxies, the power of two choices is "the less busy": never the one
            # holding requests while the other holds none.
            assert slow.received == held
            assert by_url(client)[fleet.urls[0]].in_flight == held
            slow.release.set()
        assert by_url(client)[fleet.urls[0]].in_flight == 0


async def test_one_url_is_a_fleet_of_one(autojump_clock: trio.testing.MockClock) -> None:
    fleet = Fleet("up")
    async with open_test_client(fleet, proxy_url=URLS[0]) as client:
        assert await call(client) == "ok"
        (proxy,) = client.statistics().proxies
    assert proxy.url == URLS[0]
    assert proxy.answered == 1
    assert proxy.failures == 0


# --- failover ---------------------------------------------------------------------------------------


async def test_a_refused_connection_fails_over_without_using_a_retry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fleet = Fleet("refuse", "up")
    async with open_fleet_client(
        fleet, max_retries=0, backoff_initial=10.0, backoff_max=10.0
    ) as client:
        start = trio.current_time()
        for _ in range(20):
            assert await call(client) == "ok"
        assert trio.current_time() - start < 1.0  # no backoff: the other proxy, at once
        dead, live = by_url(client)[fleet.urls[0]], by_url(client)[fleet.urls[1]]
    assert fleet.members[1].calls == 20
    assert live.answered == 20
    assert dead.failures >= 1
    assert dead.answered == 0
    assert dead.last_error is not None and "Connection refused" in dead.last_error


async def test_a_broken_connection_after_sending_counts_as_an_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fleet = Fleet("reset", "up")
    async with open_fleet_client(fleet, backoff_initial=10.0, backoff_max=10.0) as client:
        # Whether a reset request ran upstream is unknown: it uses up a retry...
        outcomes = Counter[str]()
        for _ in range(20):
            try:
                await call(client, max_retries=0)
                outcomes["ok"] += 1
            except ProxyConnectionError:
                outcomes["failed"] += 1
        assert outcomes["failed"] >= 1
        # ... and with one to spare it goes to the other proxy at once, no backoff.
        fleet.members[0].mode = "reset"
        start = trio.current_time()
        for _ in range(10):
            assert await call(client, max_retries=1) == "ok"
        assert trio.current_time() - start < 1.0


async def test_a_503_fails_over_at_once(autojump_clock: trio.testing.MockClock) -> None:
    fleet = Fleet("503", "up")
    async with open_fleet_client(
        fleet, max_retries=1, backoff_initial=10.0, backoff_max=10.0
    ) as client:
        start = trio.current_time()
        for _ in range(30):  # the balance picks the 503 proxy first at least once
            assert await call(client) == "ok"
        assert trio.current_time() - start < 1.0
        assert by_url(client)[fleet.urls[0]].failures >= 1


async def test_a_stream_fails_over_before_its_first_chunk(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fleet = Fleet("refuse", "up")
    async with open_fleet_client(fleet, max_retries=0) as client:
        for _ in range(5):
            async with client.stream(model="m", messages=MESSAGES) as stream:
                text = "".join([piece.choices[0].delta.content or "" async for piece in stream])
            assert text == "ok"


async def test_every_proxy_refusing_uses_up_the_retries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fleet = Fleet("refuse", "refuse", "refuse")
    async with open_fleet_client(fleet, max_retries=2, backoff_initial=0.1) as client:
        start = trio.current_time()
        with pytest.raises(ProxyConnectionError):
            await call(client)
        assert trio.current_time() - start < 5.0  # never reached: nothing waited for


# --- leaving a failed proxy alone, and coming back ------------------------------------------------


async def test_a_failed_proxy_gets_traffic_again_once_its_monitor_sees_it_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fleet = Fleet("up", "up")
    first = fleet.members[0]
    async with open_fleet_client(fleet) as client:
        await trio.sleep(1.0)  # both probed up
        first.mode = "refuse"
        for _ in range(20):
            await call(client)
        await trio.sleep(1.0)  # the probe the failure asked for has failed: down
        assert by_url(client)[fleet.urls[0]].health == "down"
        assert not by_url(client)[fleet.urls[0]].available
        served = first.calls
        first.mode = "up"
        await trio.sleep(client.config.health_down_interval + 1.0)
        assert by_url(client)[fleet.urls[0]].health == "up"
        for _ in range(40):
            await call(client)
        assert first.calls > served


async def test_a_503_leaves_the_proxy_alone_only_until_its_next_good_probe(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fleet = Fleet("up", "up")
    async with open_fleet_client(fleet, max_retries=1) as client:
        fleet.members[0].mode = "503"
        for _ in range(5):
            await call(client)
        fleet.members[0].mode = "up"
        await trio.sleep(1.0)  # the probe asked for by the 503 found the proxy up
        assert by_url(client)[fleet.urls[0]].available
        assert by_url(client)[fleet.urls[0]].health == "up"


async def test_a_503_the_proxy_answered_itself_fails_over_but_leaves_it_in_the_balance(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fleet = Fleet("up", "up")

    async def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.host == "a.test" and request.url.path == "/v1/chat/completions":
            fleet.members[0].received += 1
            return httpx2.Response(
                503,
                json={"error": {"message": "litellm.ServiceUnavailableError: upstream down"}},
                headers={"x-litellm-call-id": "call-1"},  # LiteLLM's own answer
            )
        return await fleet(request)

    async with open_test_client(
        handler,
        proxy_url=fleet.urls,
        health_check_interval=None,  # no probe would bring a proxy back: only the rule does
        max_retries=1,
        backoff_initial=10.0,
        backoff_max=10.0,
    ) as client:
        start = trio.current_time()
        for _ in range(40):
            assert await call(client) == "ok"  # the retry went to the other proxy, at once
        assert trio.current_time() - start < 1.0
        first = by_url(client)[fleet.urls[0]]
    assert fleet.members[0].received >= 2  # still chosen after its upstream's 503s
    assert first.available
    assert first.failures == fleet.members[0].received


# --- every proxy down -----------------------------------------------------------------------------


async def test_while_every_proxy_is_down_requests_wait_bounded_by_unavailable_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fleet = Fleet("up", "up")
    async with open_fleet_client(fleet, unavailable_timeout=12.0) as client:
        await call(client)
        await call(client)
        for member in fleet.members:
            member.mode = "refuse"
        with pytest.raises(ProxyConnectionError):
            await call(client, max_retries=0)
        await trio.sleep(2.0)
        assert client.health_status == "down"
        start = trio.current_time()
        with pytest.raises(ProxyConnectionError) as caught:
            await call(client)
        assert 12.0 <= trio.current_time() - start < 13.0
    message = str(caught.value)
    assert "every proxy" in message
    assert all(url in message for url in fleet.urls)


async def test_a_request_held_while_every_proxy_is_down_goes_to_the_first_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fleet = Fleet("up", "up")
    async with open_fleet_client(fleet, unavailable_timeout=60.0) as client:
        await call(client)
        await call(client)
        for member in fleet.members:
            member.mode = "refuse"
        with pytest.raises(ProxyConnectionError):
            await call(client, max_retries=0)
        await trio.sleep(2.0)
        assert client.health_status == "down"

        async def second_comes_back() -> None:
            await trio.sleep(10.0)
            fleet.members[1].mode = "up"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(second_comes_back)
            start = trio.current_time()
            assert await call(client) == "ok"
        assert 10.0 <= trio.current_time() - start < 10.0 + client.config.health_down_interval + 1
        assert fleet.members[1].calls >= 1


# --- a model's limit is the fleet's ---------------------------------------------------------------


async def test_a_model_groups_429_from_one_proxy_pauses_that_model_on_every_proxy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limited = {"n": 0}
    fleet = Fleet("up", "up")
    members = fleet.members

    async def handler(request: httpx2.Request) -> httpx2.Response:
        if request.url.host == "a.test" and b'"model":"m"' in request.content and not limited["n"]:
            limited["n"] += 1
            return httpx2.Response(
                429,
                json={
                    "error": {
                        "message": "No deployments available for selected model. "
                        "Try again in 5 seconds. Passed model=m. pre-call-checks=False",
                        "type": "None",
                        "code": "429",
                    }
                },
                headers={"retry-after": "5"},
            )
        return await fleet(request)

    async with open_test_client(
        handler, proxy_url=fleet.urls, health_check_interval=5.0, max_retries=0
    ) as client:
        while not limited["n"]:
            try:
                await call(client)
            except RateLimitError:
                break
        start = trio.current_time()
        assert await call(client) == "ok"  # whichever proxy: it waits for the model's pause
        assert trio.current_time() - start >= 4.9
    assert sum(member.calls for member in members) >= 1


# --- what the client shows ------------------------------------------------------------------------


async def test_statistics_prometheus_and_transitions_name_each_proxy(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = Fleet("up", "up")
    async with open_fleet_client(fleet, api_key="sk-fleet-secret-1") as client:
        transitions = client.health_transitions()
        for _ in range(10):
            await call(client)
        fleet.members[1].mode = "refuse"
        with caplog.at_level(logging.WARNING, logger="trio_litellm"):
            for _ in range(30):  # the balance picks the refusing proxy at least once
                await call(client)
        await trio.sleep(1.0)
        with trio.fail_after(1):
            change = await transitions.receive()
        assert isinstance(change, HealthChanged)
        assert (change.proxy, change.state) == (fleet.urls[1], "down")
        stats = client.statistics().proxies
        text = prometheus_text(client)
    assert [proxy.url for proxy in stats] == fleet.urls
    assert stats[0].health == "up" and stats[0].available
    assert stats[1].health == "down" and not stats[1].available
    assert stats[0].answered + stats[1].answered == 40
    assert stats[1].failures >= 1
    for url in fleet.urls:
        assert f'trio_litellm_proxy_up{{proxy_url="{url}"}}' in text
        assert f'trio_litellm_proxy_requests_total{{proxy_url="{url}"}}' in text
    assert f'trio_litellm_proxy_up{{proxy_url="{fleet.urls[1]}"}} 0' in text
    assert "another proxy" in caplog.text
    assert "sk-fleet-secret-1" not in caplog.text + text + repr(stats)


async def test_health_is_healthy_while_any_proxy_is(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fleet = Fleet("refuse", "up")
    async with open_fleet_client(fleet) as client:
        assert (await client.health()).healthy
        fleet.members[1].mode = "refuse"
        report = await client.health()
    assert not report.healthy
    assert report.error is not None
    assert all(url in report.error for url in fleet.urls)
