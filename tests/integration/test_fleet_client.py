"""One client over a real fleet: two LiteLLM proxies sharing a Redis server.

The calls spread over both proxies; one proxy killed mid-run loses and duplicates nothing and
holds nothing up, and serves again once restarted; a dead URL in the list costs nothing; the
fleet's shared rpm refuses exactly what it should, and the client's own rpm keeps under it; a
batch survives a proxy's crash and restart. Which proxy served what is counted twice: by the
client (``statistics().proxies``) and, from outside it, in each proxy's access log.

This module starts a fleet of its own from ``fleet_client_config.yaml``, which gives each
rate-limit test a model of its own.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import pytest
import trio

from trio_litellm import (
    Client,
    Job,
    JobResult,
    ModelLimits,
    RateLimitError,
    open_client,
)
from trio_litellm.batch import run_batch
from trio_litellm.testing._devstack import DevStack, free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).resolve().with_name("fleet_client_config.yaml")

FLEET_RPM = 10  # fleet-limited-gpt's and fleet-paced-gpt's rpm in fleet_client_config.yaml
# The client's health monitor: every proxy probed each second while up, every quarter second
# while down (the defaults, 5 s and 0.5 s, would make the restart test wait longer for nothing).
HEALTH_INTERVAL = 1.0
HEALTH_DOWN_INTERVAL = 0.25
# One proxy answers 50-100 requests a second here (10-25 ms of its CPU each). The 450 jobs left
# when one proxy of two dies take the survivor 5-10 s on a quiet machine; 30 s leaves room for a
# busy one. A job held for the dead proxy would instead wait out UNAVAILABLE_TIMEOUT (or the
# 600 s read timeout): four times the bound.
REST_BOUND = 30.0
UNAVAILABLE_TIMEOUT = 120.0
# LiteLLM counts rpm per calendar minute: the 30 refused-or-not calls (a few seconds here) must
# all fall in one minute.
MINUTE_MARGIN = 15.0

_CHAT_ANSWERED = re.compile(rb'"POST /v1/chat/completions HTTP/1\.1" (\d{3})')
_encoder = msgspec.json.Encoder()


@pytest.fixture(scope="module")
def fleet_stack() -> Iterator[DevStack]:
    with DevStack(
        log_dir=PROJECT_ROOT / "run" / "test-logs" / "fleet-client",
        project_root=PROJECT_ROOT,
        config_path=CONFIG,
        proxies=2,
    ) as stack:
        yield stack


@pytest.fixture
def fleet(fleet_stack: DevStack) -> DevStack:
    """The module's fleet, every proxy running: started again should a test have stopped one."""
    fleet_stack.start()
    return fleet_stack


def client_options(fleet: DevStack, **options: Any) -> dict[str, Any]:
    """open_client's options for the whole fleet, with a quick health monitor."""
    return {
        "proxy_url": list(fleet.proxy_urls),
        "api_key": fleet.api_key,
        "health_check_interval": HEALTH_INTERVAL,
        "health_down_interval": HEALTH_DOWN_INTERVAL,
        **options,
    }


def logged_answers(fleet: DevStack, index: int) -> Counter[int]:
    """Chat completions the proxy at ``index`` has answered, by status, as its access log says.

    The log is the proxy's own account (uvicorn writes the line before it sends the answer), so
    it does not take the client's word for where a request went.
    """
    text = fleet.proxy_log_path(index).read_bytes()
    return Counter(int(status) for status in _CHAT_ANSWERED.findall(text))


def logged_successes(fleet: DevStack) -> list[int]:
    """Each proxy's 200 answers to chat completions so far, from its access log."""
    return [logged_answers(fleet, index)[200] for index in range(len(fleet.proxy_urls))]


def answered(client: Client) -> list[int]:
    """Each proxy's answered attempts, as the client counts them."""
    return [proxy.answered for proxy in client.statistics().proxies]


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def complete_all(client: Client, texts: list[str], *, workers: int) -> list[str]:
    """Ask for each text with ``workers`` calls in flight at a time; the answers, in order."""
    answers: dict[int, str] = {}
    pending = iter(enumerate(texts))

    async def worker() -> None:
        for index, text in pending:
            reply = await client.complete(model="local-gpt", messages=ask(text))
            answers[index] = reply.text

    async with trio.open_nursery() as nursery:
        for _ in range(workers):
            nursery.start_soon(worker)
    return [answers[index] for index in range(len(texts))]


async def test_calls_spread_over_both_proxies(fleet: DevStack) -> None:
    calls = 200
    logged_before = logged_successes(fleet)
    upstream_before = echo_requests(fleet)
    texts = [f"call {i}" for i in range(calls)]

    async with open_client(**client_options(fleet)) as client:
        with trio.fail_after(60):
            answers = await complete_all(client, texts, workers=16)
        counted = answered(client)

    assert answers == [f"Echo: {text}" for text in texts]
    logged = [
        now - before for now, before in zip(logged_successes(fleet), logged_before, strict=True)
    ]
    assert sum(counted) == calls
    assert min(counted) >= calls // 4, counted
    assert logged == counted, "the proxies' logs disagree with the client's counts"
    assert echo_requests(fleet) - upstream_before == calls


def echo_requests(fleet: DevStack) -> int:
    """Requests the fake provider has had for local-gpt's upstream model, through any proxy."""
    stats = httpx2.get(f"{fleet.fake_provider_url}/_stats", trust_env=False).json()
    return int(stats["by_model"].get("echo", 0))


async def test_a_killed_proxy_loses_nothing_holds_nothing_up_and_serves_again_on_restart(
    fleet: DevStack,
) -> None:
    jobs, kill_after, victim = 600, 150, 1
    results: list[JobResult] = []
    killed_at = math.inf
    async with open_client(
        **client_options(fleet, max_in_flight=32, unavailable_timeout=UNAVAILABLE_TIMEOUT)
    ) as client:
        with trio.fail_after(REST_BOUND + 60):
            async with client.open_jobs(max_buffer=64) as (send_jobs, receive_results):

                async def produce() -> None:
                    async with send_jobs:
                        for i in range(jobs):
                            request = {"model": "local-gpt", "messages": ask(f"job {i}")}
                            await send_jobs.send(Job(id=i, request=request))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(produce)
                    async for result in receive_results:
                        results.append(result)
                        if len(results) == kill_after:
                            # Results keep arriving while the thread sends the SIGKILL.
                            await trio.to_thread.run_sync(fleet.kill_proxy, victim)
                            killed_at = trio.current_time()
        assert killed_at < math.inf, "the proxy must die mid-run"
        rest_took = trio.current_time() - killed_at
        down = client.statistics().proxies[victim]

        counts = Counter(result.id for result in results)
        assert [result for result in results if not result.ok] == []
        assert set(counts) == set(range(jobs)) and max(counts.values()) == 1
        assert rest_took < REST_BOUND, f"the last {jobs - kill_after} jobs took {rest_took:.1f} s"
        slowest = max(result.latency for result in results)
        assert slowest < REST_BOUND, f"a job took {slowest:.1f} s"
        assert down.health == "down" and not down.available, down

        with client.health_transitions() as transitions:
            await trio.to_thread.run_sync(fleet.start_proxy, victim)  # returns once it is ready
            # The monitor probes a down proxy every HEALTH_DOWN_INTERVAL: four times in this bound.
            with trio.fail_after(HEALTH_INTERVAL):
                async for transition in transitions:
                    if transition.proxy == down.url and transition.state == "up":
                        break
        assert client.statistics().proxies[victim].health == "up"

        answered_before = answered(client)[victim]
        logged_before = logged_answers(fleet, victim)[200]
        with trio.fail_after(60):
            await complete_all(client, [f"again {i}" for i in range(40)], workers=8)
        assert answered(client)[victim] > answered_before
        assert logged_answers(fleet, victim)[200] > logged_before


async def test_a_dead_url_in_the_list_costs_nothing(fleet: DevStack) -> None:
    calls = 50
    live = fleet.proxy_urls[0]
    dead = f"http://127.0.0.1:{free_port()}"  # a closed loopback port: connections are refused

    async def time_calls(urls: list[str]) -> tuple[float, list[int]]:
        """Seconds to open a client on ``urls`` and make the calls one after another."""
        started = trio.current_time()
        async with open_client(**client_options(fleet, proxy_url=urls)) as client:
            with trio.fail_after(60):
                for i in range(calls):
                    reply = await client.complete(model="local-gpt", messages=ask(f"call {i}"))
                    assert reply.text == f"Echo: call {i}"
            took = trio.current_time() - started
            return took, answered(client)

    alone, _ = await time_calls([live])
    # The dead one first, so that a client trying its list in order would meet it at once.
    with_dead, counted = await time_calls([dead, live])

    assert counted == [0, calls]
    assert with_dead <= 2 * alone + 1.0, f"{with_dead:.2f} s with the dead URL, {alone:.2f} alone"


async def test_the_fleet_shares_an_rpm_and_the_clients_own_rpm_keeps_under_it(
    fleet: DevStack,
) -> None:
    # LiteLLM counts a deployment's requests per calendar minute (wall clock): near the end of
    # one, wait for the next to begin. This wait is what the proxies' clock requires, not a way
    # of ordering steps. The two halves run side by side, each on a model of its own, so that
    # neither spends the other's minute and the whole test waits for the clock at most once.
    # The paced half's first call then starts 1-45 s into a minute, and its last a minute later,
    # as far from a boundary.
    into_minute = time.time() % 60.0
    if into_minute > 60.0 - MINUTE_MARGIN:
        await trio.sleep(61.0 - into_minute)
    elif into_minute < 1.0:
        await trio.sleep(1.0 - into_minute)
    refused_calls: list[Counter[str]] = []
    paced_calls: list[Counter[str]] = []

    async with trio.open_nursery() as nursery:
        nursery.start_soon(calls_at_once, fleet, 3 * FLEET_RPM, refused_calls)
        nursery.start_soon(paced_calls_over_a_minute, fleet, FLEET_RPM + 1, paced_calls)

    # One counter for the whole fleet: ten answers (each proxy alone would allow ten of its own).
    [refused] = refused_calls
    assert refused == {"ok": FLEET_RPM, "rate limited": 2 * FLEET_RPM}
    # Eleven calls: the eleventh would be refused had the client let it start within the minute
    # of the first (ten would never see a 429, however sent).
    [paced] = paced_calls
    assert paced == {"ok": FLEET_RPM + 1}


async def calls_at_once(fleet: DevStack, calls: int, outcomes: list[Counter[str]]) -> None:
    """``calls`` calls of fleet-limited-gpt at once, without retries; outcomes by kind.

    At once, because the first 429 pauses the model in the client for its Retry-After (60 s):
    every call has been sent by the time it comes.
    """
    tally: Counter[str] = Counter()
    started_minute = int(time.time() // 60)
    async with open_client(**client_options(fleet, max_retries=0)) as client:

        async def call(i: int) -> None:
            try:
                await client.complete(model="fleet-limited-gpt", messages=ask(f"limited {i}"))
            except RateLimitError:
                tally["rate limited"] += 1
            else:
                tally["ok"] += 1

        with trio.fail_after(MINUTE_MARGIN):
            async with trio.open_nursery() as nursery:
                for i in range(calls):
                    nursery.start_soon(call, i)
        counted = answered(client)
    assert int(time.time() // 60) == started_minute, "the calls crossed a minute boundary"
    assert sum(counted) == calls and min(counted) > 0, counted
    outcomes.append(tally)


async def paced_calls_over_a_minute(
    fleet: DevStack, calls: int, outcomes: list[Counter[str]]
) -> None:
    """``calls`` calls of fleet-paced-gpt, all sent at once to a client with that model's rpm.

    The client starts one every 60 / rpm seconds, so the last starts a minute after the first:
    in the next calendar minute, since the first starts in its minute's first 45 s.
    """
    tally: Counter[str] = Counter()
    limits = {"fleet-paced-gpt": ModelLimits(rpm=FLEET_RPM)}
    async with open_client(**client_options(fleet, max_retries=0, model_limits=limits)) as client:

        async def call(i: int) -> None:
            try:
                await client.complete(model="fleet-paced-gpt", messages=ask(f"paced {i}"))
            except RateLimitError:
                tally["rate limited"] += 1
            else:
                tally["ok"] += 1

        with trio.fail_after(60.0 * (calls - 1) / FLEET_RPM + 30.0):
            async with trio.open_nursery() as nursery:
                for i in range(calls):
                    nursery.start_soon(call, i)
    outcomes.append(tally)


def write_batch_input(path: Path, count: int) -> list[str]:
    ids = [f"line-{index}" for index in range(count)]
    with path.open("wb") as file:
        for index, custom_id in enumerate(ids):
            line = {
                "custom_id": custom_id,
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "local-gpt", "messages": ask(f"line {index}")},
            }
            file.write(_encoder.encode(line) + b"\n")
    return ids


async def test_a_batch_survives_a_proxy_killed_and_restarted_mid_run(
    fleet: DevStack, tmp_path: Path
) -> None:
    lines, kill_after, victim = 3000, 600, 0
    requests, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = write_batch_input(requests, lines)
    recorded = 0
    enough = trio.Event()
    recorded_at_kill: list[int] = []

    def on_result(result: JobResult) -> None:
        nonlocal recorded
        recorded += 1
        if recorded == kill_after:
            enough.set()

    async def crash_and_restart() -> None:
        await enough.wait()
        await trio.to_thread.run_sync(fleet.kill_proxy, victim)
        recorded_at_kill.append(recorded)
        await trio.sleep(3.0)  # the proxy stays down a while, as after a crash
        await trio.to_thread.run_sync(fleet.start_proxy, victim)

    async with open_client(**client_options(fleet)) as client:
        with trio.fail_after(240):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(crash_and_restart)
                summary = await run_batch(client, requests, output, on_result=on_result)

    [at_kill] = recorded_at_kill
    assert at_kill < lines, "the proxy must die mid-run"
    written = [msgspec.json.decode(line) for line in output.read_bytes().splitlines()]
    counts = Counter(line["custom_id"] for line in written)
    assert set(counts) == set(ids) and max(counts.values()) == 1
    assert [line for line in written if line["error"] is not None] == []
    assert summary.succeeded == lines and summary.failed == 0
