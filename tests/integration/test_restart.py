"""A proxy killed and restarted in the middle of a run: every job still gets exactly one success.

This module starts a stack of its own, since it kills its proxy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import trio

from trio_litellm import HealthTransition, Job, JobResult, open_client
from trio_litellm.batch import run_batch
from trio_litellm.testing._devstack import DevStack

PROJECT_ROOT = Path(__file__).resolve().parents[2]
JOBS = 2000


@pytest.fixture(scope="module")
def own_stack() -> Iterator[DevStack]:
    with DevStack(
        log_dir=PROJECT_ROOT / "run" / "test-logs" / "restart", project_root=PROJECT_ROOT
    ) as stack:
        yield stack


async def test_a_proxy_restart_mid_run_loses_and_duplicates_nothing(own_stack: DevStack) -> None:
    results: list[JobResult] = []
    transitions: list[HealthTransition] = []
    async with open_client(
        proxy_url=own_stack.proxy_url,
        api_key=own_stack.api_key,
        max_in_flight=32,
        health_check_interval=1.0,
    ) as client:
        watch = client.health_transitions()

        async def watch_health() -> None:
            async with watch:
                async for transition in watch:
                    transitions.append(transition)

        third_done = trio.Event()

        async def restart_proxy() -> None:
            await third_done.wait()
            await trio.to_thread.run_sync(own_stack.kill_proxy)
            await trio.sleep(2.0)
            await trio.to_thread.run_sync(own_stack.start_proxy)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_health)
            nursery.start_soon(restart_proxy)
            async with client.open_jobs(max_buffer=64) as (send_jobs, receive_results):

                async def produce() -> None:
                    async with send_jobs:
                        for i in range(JOBS):
                            message = {"role": "user", "content": f"job {i}"}
                            await send_jobs.send(
                                Job(id=i, request={"model": "local-gpt", "messages": [message]})
                            )

                nursery.start_soon(produce)
                async for result in receive_results:
                    results.append(result)
                    if len(results) == JOBS // 3:
                        third_done.set()
            nursery.cancel_scope.cancel()  # the watcher; the restart is long done

    failures = [r for r in results if not r.ok]
    assert not failures, failures[:3]
    counts = Counter(r.id for r in results)
    assert set(counts) == set(range(JOBS))
    assert max(counts.values()) == 1
    assert all(r.response.text == f"Echo: job {r.id}" for r in results)
    states = [t.state for t in transitions]
    assert "down" in states
    assert states[states.index("down") :].count("up") >= 1
    assert any(r.attempts > 1 for r in results)


async def test_a_batch_survives_a_proxy_restart_with_every_line_a_success(
    own_stack: DevStack, tmp_path: Path
) -> None:
    requests, results = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    count = 1500
    with requests.open("wb") as file:
        for index in range(count):
            body = {"model": "local-gpt", "messages": [{"role": "user", "content": f"b {index}"}]}
            line = {
                "custom_id": f"b-{index}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": body,
            }
            file.write(msgspec.json.encode(line) + b"\n")
    seen = 0
    restarted = trio.Event()

    def on_result(result: JobResult) -> None:
        nonlocal seen
        seen += 1
        if seen == count // 3:
            restarted.set()

    async def restart_proxy() -> None:
        await restarted.wait()
        await trio.to_thread.run_sync(own_stack.kill_proxy)
        await trio.sleep(2.0)
        await trio.to_thread.run_sync(own_stack.start_proxy)

    async with (
        open_client(
            proxy_url=own_stack.proxy_url,
            api_key=own_stack.api_key,
            max_in_flight=32,
            health_check_interval=1.0,
        ) as client,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(restart_proxy)
        summary = await run_batch(client, requests, results, on_result=on_result)
    lines = [msgspec.json.decode(line) for line in results.read_bytes().splitlines()]
    assert Counter(line["custom_id"] for line in lines) == Counter(f"b-{i}" for i in range(count))
    assert all(line["response"]["status_code"] == 200 and line["error"] is None for line in lines)
    assert summary.succeeded == count and summary.failed == 0
    assert summary.retries >= 1
