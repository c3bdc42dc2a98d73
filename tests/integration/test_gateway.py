"""The client behind a gateway that routes only ``/v1/*`` to the real proxy (tests/_gateway.py).

Many companies put the proxy behind an ingress or API gateway that passes only the OpenAI routes:
``/health/liveliness`` then answers the gateway's 404 while every call works. The health monitor
must keep the gate open there, and still see the proxy go away (the gateway's 502) and come back.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from _gateway import Gateway, open_gateway

from trio_litellm import Client, ServiceUnavailableError, open_client
from trio_litellm.testing._devstack import Stack

MESSAGES = [{"role": "user", "content": "hi"}]
INTERVAL = 0.05  # seconds between probes while up: many intervals in a short test


@asynccontextmanager
async def client_behind_gateway(
    stack: Stack, **options: Any
) -> AsyncIterator[tuple[Gateway, Client]]:
    async with (
        open_gateway(stack.proxy_url) as gateway,
        open_client(
            proxy_url=gateway.url, api_key=stack.api_key, price_lookup=False, **options
        ) as client,
    ):
        yield gateway, client


def probes(client: Client) -> int:
    health = client.statistics().health
    assert health is not None
    return health.probes


async def test_calls_keep_working_through_many_probes_when_health_routes_are_unreachable(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="trio_litellm")
    async with client_behind_gateway(stack, health_check_interval=INTERVAL) as (gateway, client):
        calls = 0
        while probes(client) < 20:
            reply = await client.complete(model="fake-gpt", messages=MESSAGES, timeout=10)
            assert reply.text == "Hello"
            calls += 1
        health = client.statistics().health
    assert health is not None
    assert (health.state, health.gate_open, health.transitions) == ("up", True, 0)
    assert health.health_route == "missing"
    assert gateway.answered["/health/liveliness", 404] >= 20
    assert gateway.answered["/v1/models", 200] >= 20
    assert gateway.answered["/v1/chat/completions", 200] == calls
    missing = [r for r in caplog.records if "/health/liveliness answered 404" in r.getMessage()]
    assert len(missing) == 1  # said once, not per probe
    assert missing[0].levelno == logging.DEBUG


async def test_behind_the_gateway_the_monitor_sees_the_proxy_go_down_and_come_back(
    stack: Stack,
) -> None:
    async with client_behind_gateway(
        stack, health_check_interval=INTERVAL, health_down_interval=INTERVAL, max_retries=0
    ) as (gateway, client):
        transitions = client.health_transitions()
        assert (await client.complete(model="fake-gpt", messages=MESSAGES)).text == "Hello"

        gateway.cut()
        with pytest.raises(ServiceUnavailableError):  # the gateway's 502, before the gate closes
            await client.complete(model="fake-gpt", messages=MESSAGES)
        with trio.fail_after(10):
            went_down = await transitions.receive()
        assert went_down.state == "down"
        assert "/v1/models answered 502" in went_down.reason

        replies: list[str] = []

        async def call() -> None:
            reply = await client.complete(model="fake-gpt", messages=MESSAGES, timeout=30)
            replies.append(reply.text)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            await trio.testing.wait_all_tasks_blocked()
            assert replies == []  # it waits at the closed gate
            calls_before = gateway.answered["/v1/chat/completions", 502]
            gateway.restore()
            with trio.fail_after(10):
                came_back = await transitions.receive()
        assert (came_back.state, came_back.previous) == ("up", "down")
        assert replies == ["Hello"]
        assert gateway.answered["/v1/chat/completions", 502] == calls_before


async def test_health_reports_a_proxy_behind_the_gateway_healthy_when_calls_get_through(
    stack: Stack,
) -> None:
    async with client_behind_gateway(stack, health_check_interval=None) as (gateway, client):
        report = await client.health()
        gateway.cut()
        cut_off = await client.health()
    assert (report.status, report.live, report.ready, report.error) == (
        "healthy",
        True,
        True,
        None,
    )
    assert report.via == "/v1/models"
    assert (cut_off.status, cut_off.live) == ("unhealthy", False)
    assert cut_off.error is not None and "502" in cut_off.error
