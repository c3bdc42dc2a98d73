"""The actor runtime against the real proxy: jobs through channels, the rate limit, cancellation.

`limited-gpt` is rate-limited by the proxy itself (rpm 20 in litellm_config.yaml, enforced per
calendar minute), so the two rate-limit tests take one to two minutes each.
"""

from __future__ import annotations

import collections

import trio

from trio_litellm import (
    ChatRequest,
    Client,
    EmbeddingRequest,
    InternalServerError,
    InvalidRequestError,
    Job,
    JobResult,
    open_client,
)
from trio_litellm.testing._devstack import Stack

PROXY_RPM = 20  # limited-gpt's rpm in litellm_config.yaml


async def run_jobs(client: Client, jobs: list[Job], *, max_buffer: int = 16) -> list[JobResult]:
    results: list[JobResult] = []
    async with client.open_jobs(max_buffer=max_buffer) as (send_jobs, receive_results):

        async def produce() -> None:
            async with send_jobs:
                for job in jobs:
                    await send_jobs.send(job)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            async for result in receive_results:
                results.append(result)
    return results


async def test_every_job_gets_exactly_one_result_of_the_right_kind(stack: Stack) -> None:
    jobs = [
        *(
            Job(
                id=f"chat-{i}",
                request={"model": "local-gpt", "messages": [{"role": "user", "content": f"n {i}"}]},
            )
            for i in range(60)
        ),
        *(
            Job(
                id=f"struct-{i}",
                request=ChatRequest(model="fake-gpt", messages=[{"role": "user", "content": "x"}]),
            )
            for i in range(20)
        ),
        *(
            Job(id=f"emb-{i}", request=EmbeddingRequest(model="local-embed", input=[f"t{i}"]))
            for i in range(20)
        ),
        Job(id="broken", request={"model": "local-gpt"}),
        Job(
            id="failing",
            request={"model": "failing-gpt", "messages": [{"role": "user", "content": "x"}]},
        ),
    ]
    async with open_client(
        proxy_url=stack.proxy_url, api_key=stack.api_key, max_retries=0
    ) as client:
        results = await run_jobs(client, jobs)
        stats = client.statistics()
    by_id = {result.id: result for result in results}
    assert len(results) == len(jobs) == len(by_id)
    assert by_id["chat-7"].ok and by_id["chat-7"].response.text == "Echo: n 7"
    assert by_id["struct-3"].response.text == "Hello"
    assert len(by_id["emb-5"].response.data) == 1
    assert isinstance(by_id["broken"].error, InvalidRequestError)
    assert isinstance(by_id["failing"].error, InternalServerError)
    assert all(r.ok for r in results if r.id not in ("broken", "failing"))
    assert all(r.attempts == 1 and r.latency > 0 for r in results if r.id != "broken")
    assert stats.dispatcher.in_flight == 0
    assert stats.dispatcher.succeeded == len(jobs) - 2


async def test_with_the_client_rpm_at_the_proxys_a_burst_completes_without_errors(
    stack: Stack,
) -> None:
    jobs = [
        Job(
            id=i,
            request={"model": "limited-gpt", "messages": [{"role": "user", "content": f"r{i}"}]},
        )
        for i in range(2 * PROXY_RPM)
    ]
    async with open_client(
        proxy_url=stack.proxy_url, api_key=stack.api_key, rpm=PROXY_RPM, max_retries=5
    ) as client:
        start = trio.current_time()
        results = await run_jobs(client, jobs)
        elapsed = trio.current_time() - start
        stats = client.statistics()
    assert sorted(r.id for r in results) == list(range(2 * PROXY_RPM))
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    assert stats.dispatcher.retries <= 2  # few or no 429s from the proxy
    # Paced one every 60 / rpm seconds, all sent at once: the client never outran its rpm.
    assert elapsed >= (2 * PROXY_RPM - 1) * 60 / PROXY_RPM


async def test_without_a_client_rpm_the_proxys_429s_pause_the_throttle_and_all_complete(
    stack: Stack,
) -> None:
    jobs = [
        Job(
            id=i,
            request={"model": "limited-gpt", "messages": [{"role": "user", "content": f"p{i}"}]},
        )
        for i in range(2 * PROXY_RPM)
    ]
    async with open_client(
        proxy_url=stack.proxy_url, api_key=stack.api_key, max_retries=10
    ) as client:
        results = await run_jobs(client, jobs)
        stats = client.statistics()
    assert sorted(r.id for r in results) == list(range(2 * PROXY_RPM))
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    assert stats.throttle.pauses >= 1
    attempts = collections.Counter(r.attempts for r in results)
    assert sum(count for tries, count in attempts.items() if tries > 1) >= 1


async def test_cancelling_the_application_mid_run_ends_everything_and_frees_every_connection(
    stack: Stack,
) -> None:
    async with open_client(proxy_url=stack.proxy_url, api_key=stack.api_key) as client:
        nurseries = len(trio.lowlevel.current_task().child_nurseries)
        received = 0
        with trio.CancelScope() as scope:
            async with (
                client.open_jobs(max_buffer=8) as (send_jobs, receive_results),
                trio.open_nursery() as nursery,
            ):

                async def produce() -> None:
                    async with send_jobs:
                        for i in range(10_000):
                            content = f"slow {i} [fake latency=0.5]"
                            await send_jobs.send(
                                Job(
                                    id=i,
                                    request={
                                        "model": "local-gpt",
                                        "messages": [{"role": "user", "content": content}],
                                    },
                                )
                            )

                async def stream_forever() -> None:
                    async with client.stream(
                        model="local-gpt",
                        messages=[{"role": "user", "content": "a b c d e f g h [fake tps=2]"}],
                    ) as stream:
                        async for _ in stream:
                            pass

                nursery.start_soon(produce)
                nursery.start_soon(stream_forever)
                async for _ in receive_results:
                    received += 1
                    if received == 20:
                        assert client.statistics().dispatcher.in_flight > 0
                        scope.cancel()
        assert scope.cancelled_caught
        assert len(trio.lowlevel.current_task().child_nurseries) == nurseries
        stats = client.statistics()
        assert stats.dispatcher.in_flight == 0
        assert client.busy_connections == 0
    assert client.open_connections == 0
