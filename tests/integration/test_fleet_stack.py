"""A fleet on one machine: a Redis server, the fake provider and two LiteLLM proxies sharing it.

This module starts a fleet of its own (``DevStack(proxies=2)``); the session's stack stays one
proxy without Redis.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest

from trio_litellm import open_client
from trio_litellm.testing._devstack import DevStack

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FLEET_RPM = 10  # fleet-limited-gpt's rpm in litellm_config.yaml
CALLS = 30
# Thirty calls take about a second here; this leaves room for a slow, busy machine.
MINUTE_MARGIN = 20.0


@pytest.fixture(scope="module")
def fleet() -> Iterator[DevStack]:
    with DevStack(
        log_dir=PROJECT_ROOT / "run" / "test-logs" / "fleet", project_root=PROJECT_ROOT, proxies=2
    ) as stack:
        yield stack


@pytest.fixture
def running_fleet(fleet: DevStack) -> DevStack:
    """The module's fleet, started again should a test before have stopped it."""
    fleet.start()
    return fleet


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def refuses(port: int) -> bool:
    """Whether nothing listens on the loopback ``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0):
            return False
    except ConnectionRefusedError:
        return True


def test_the_fleet_is_two_proxies_and_a_redis_server(running_fleet: DevStack) -> None:
    assert len(set(running_fleet.proxy_urls)) == 2
    assert running_fleet.proxy_url == running_fleet.proxy_urls[0]
    assert running_fleet.redis_url is not None
    assert running_fleet.redis_url.startswith("redis://127.0.0.1:")
    assert running_fleet.redis_running()


async def test_each_proxy_answers(running_fleet: DevStack) -> None:
    for url in running_fleet.proxy_urls:
        async with open_client(
            proxy_url=url, api_key=running_fleet.api_key, max_retries=0
        ) as client:
            reply = await client.complete(
                model="local-gpt", messages=[{"role": "user", "content": f"via {url}"}]
            )
        assert reply.choices[0].message.content == f"Echo: via {url}"


def test_two_proxies_enforce_a_deployments_rpm_jointly(running_fleet: DevStack) -> None:
    # LiteLLM counts a deployment's requests per calendar minute (wall clock), so the calls must
    # not straddle a minute boundary: near the end of a minute, wait for the next one. This wait
    # is what the proxies' clock requires, not a way of ordering steps.
    seconds_left = 60.0 - time.time() % 60.0
    if seconds_left < MINUTE_MARGIN:
        time.sleep(seconds_left + 0.5)
    body = {"model": "fleet-limited-gpt", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {running_fleet.api_key}"}
    clients = [
        httpx2.Client(base_url=url, timeout=30.0, trust_env=False)
        for url in running_fleet.proxy_urls
    ]
    statuses: Counter[int] = Counter()
    outcomes: Counter[tuple[int, int]] = Counter()  # (proxy index, status) -> calls
    refusals: list[str] = []
    try:
        started_minute = int(time.time() // 60)
        for call in range(CALLS):
            proxy = call % len(clients)
            response = clients[proxy].post("/v1/chat/completions", json=body, headers=headers)
            statuses[response.status_code] += 1
            outcomes[proxy, response.status_code] += 1
            if response.status_code == 429:
                refusals.append(response.json()["error"]["message"])
        assert int(time.time() // 60) == started_minute, "the calls crossed a minute boundary"
    finally:
        for client in clients:
            client.close()

    assert statuses == {200: FLEET_RPM, 429: CALLS - FLEET_RPM}
    # Both proxies served some of the ten and refused once the fleet's ten were used: one counter.
    assert all(outcomes[proxy, 200] > 0 and outcomes[proxy, 429] > 0 for proxy in (0, 1))
    assert all(f"RPM limit={FLEET_RPM}" in message for message in refusals)


def test_stopping_the_fleet_stops_redis_and_every_proxy(running_fleet: DevStack) -> None:
    assert running_fleet.redis_url is not None
    redis_port = port_of(running_fleet.redis_url)
    fleet_config = PROJECT_ROOT / f".litellm_config.fleet-{redis_port}.yaml"
    assert fleet_config.is_file()
    assert not refuses(redis_port)

    running_fleet.stop()

    assert not running_fleet.redis_running()
    assert refuses(redis_port)
    assert all(refuses(port_of(url)) for url in running_fleet.proxy_urls)
    assert not fleet_config.exists()
