"""Leaving an ``open_jobs`` block early, by any path, against a real LiteLLM proxy.

Whatever way the block is left (break after one result, an exception in the consumer or the
producer, a cancellation, a consumer that stops reading), the pending jobs are cancelled, nothing
is left running or holding a connection, the exception that left the block comes out as itself,
and the client goes on working.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from trio_litellm import Client, Job, JobResult, open_client
from trio_litellm.testing._devstack import Stack

_run = uuid.uuid4().hex[:8]
_ids = itertools.count()
JOBS = 100


def job(i: int, latency: float = 0.2) -> Job:
    """A job for the echo model, slow enough upstream that most are pending when we leave."""
    text = f"job {i} [fake latency={latency} id={_run}-{next(_ids)}]"
    return Job(
        id=i, request={"model": "local-gpt", "messages": [{"role": "user", "content": text}]}
    )


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[Client]:
    async with open_client(
        proxy_url=stack.proxy_url,
        api_key=stack.api_key,
        max_in_flight=16,
        price_lookup=False,  # no background lookup holding a connection when we count them
    ) as client:
        yield client


async def produce(send_jobs: trio.MemorySendChannel[Job], count: int = JOBS) -> None:
    async with send_jobs:
        for i in range(count):
            await send_jobs.send(job(i))


async def assert_idle_and_usable(client: Client) -> None:
    """Nothing of the block is left running, and the client still answers a call."""
    await trio.testing.wait_all_tasks_blocked()
    statistics = client.statistics()
    assert statistics.dispatcher.in_flight == 0
    assert statistics.dispatcher.waiting == 0
    assert client.busy_connections == 0
    reply = await client.complete(
        model="local-gpt", messages=[{"role": "user", "content": "still there?"}]
    )
    assert reply.text == "Echo: still there?"


class Stop(Exception):
    """The caller's own exception, raised inside the block."""


async def test_receiving_one_result_then_leaving_cancels_the_rest(client: Client) -> None:
    received: list[JobResult] = []
    async with client.open_jobs() as (send_jobs, receive_results):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce, send_jobs)
            received.append(await receive_results.receive())
            nursery.cancel_scope.cancel()
    assert received[0].ok
    await assert_idle_and_usable(client)


async def test_sending_every_job_in_the_block_then_leaving_after_one_result(
    client: Client,
) -> None:
    async with client.open_jobs() as (send_jobs, receive_results):
        for i in range(JOBS):  # fast answers: the results buffer fills, deliveries wait
            await send_jobs.send(job(i, latency=0))
        await trio.sleep(1)  # let the answers come (no order depends on it)
        first = await receive_results.receive()
    assert first.ok
    await assert_idle_and_usable(client)


async def test_a_cancelled_block_ends_its_jobs(client: Client) -> None:
    with trio.CancelScope() as scope:
        async with client.open_jobs() as (send_jobs, receive_results):
            for i in range(20):
                await send_jobs.send(job(i, latency=30))
            await trio.testing.wait_all_tasks_blocked()
            assert client.statistics().dispatcher.in_flight == 16
            scope.cancel()
            await receive_results.receive()
    assert scope.cancelled_caught
    await assert_idle_and_usable(client)


async def test_leaving_with_the_producer_still_sending_is_clean(client: Client) -> None:
    # The producer runs outside the block: once it is left, its next send says nobody listens.
    async with trio.open_nursery() as outer:
        async with client.open_jobs() as (send_jobs, receive_results):
            producer_error: list[BaseException] = []

            async def producer() -> None:
                try:
                    await produce(send_jobs)
                except trio.BrokenResourceError as exc:
                    producer_error.append(exc)

            outer.start_soon(producer)
            await receive_results.receive()
    assert len(producer_error) == 1
    await assert_idle_and_usable(client)


async def test_breaking_out_of_the_results_loop_is_clean(client: Client) -> None:
    count = 0
    async with client.open_jobs() as (send_jobs, receive_results):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce, send_jobs)
            async for _ in receive_results:
                count += 1
                if count == 3:
                    break
            nursery.cancel_scope.cancel()
    assert count == 3
    await assert_idle_and_usable(client)


async def test_an_exception_in_the_consumer_comes_out_as_itself(client: Client) -> None:
    with pytest.raises(Stop):
        async with client.open_jobs() as (send_jobs, receive_results):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce, send_jobs)
                await receive_results.receive()
                raise Stop
    await assert_idle_and_usable(client)


async def test_an_exception_in_the_producer_comes_out_as_itself(client: Client) -> None:
    async def failing_producer(send_jobs: trio.MemorySendChannel[Job]) -> None:
        async with send_jobs:
            for i in range(10):
                await send_jobs.send(job(i))
            raise Stop

    with pytest.raises(Stop):
        async with client.open_jobs() as (send_jobs, receive_results):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(failing_producer, send_jobs)
                async for _ in receive_results:
                    pass
    await assert_idle_and_usable(client)


async def test_a_consumer_that_stops_reading_can_leave_by_a_timeout(client: Client) -> None:
    # The results buffer (4) fills, the finished jobs wait to deliver, the producer waits: then
    # the caller's deadline passes and the whole block is left.
    with trio.move_on_after(3) as scope:
        async with client.open_jobs(max_buffer=4) as (send_jobs, receive_results):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce, send_jobs)
                await receive_results.receive()
                await trio.sleep_forever()
    assert scope.cancelled_caught
    await assert_idle_and_usable(client)


async def test_results_received_before_leaving_are_whole_and_unique(client: Client) -> None:
    ids: list[Any] = []
    async with client.open_jobs() as (send_jobs, receive_results):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce, send_jobs)
            async for result in receive_results:
                assert result.ok, result.error
                ids.append(result.id)
                if len(ids) == 20:
                    break
            nursery.cancel_scope.cancel()
    assert len(set(ids)) == 20
    # The same client runs a second block to its end.
    async with client.open_jobs() as (send_jobs, receive_results):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce, send_jobs, 10)
            results = [result async for result in receive_results]
    assert sorted(result.id for result in results) == list(range(10))
    assert all(result.ok for result in results)
