"""Per-model limits through the client. Concurrency: a model's requests beyond its
``max_in_flight`` wait without taking one of the client's slots and without holding up other
models' requests; and a model's tpm needs the client's token estimates.

An in-memory proxy answers each request 10 s after it starts (on ``MockClock``), and logs when
each started, so the starts are asserted exactly.
"""

from __future__ import annotations

from pathlib import Path

import httpx2
import msgspec
import trio
from trio.testing import MockClock, wait_all_tasks_blocked

from _fakes import MESSAGES, open_test_client
from trio_litellm import Job, ModelLimits

BODY = (Path(__file__).parents[2] / "bench" / "bodies" / "chat_completion.json").read_bytes()


class SlowProxy:
    """Answers every chat completion after 10 s; records (content, start time) and the most
    requests of each model seen at once."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, float]] = []
        self.running: dict[str, int] = {}
        self.most: dict[str, int] = {}

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = msgspec.json.decode(request.content)
        model = body["model"]
        self.starts.append((body["messages"][0]["content"], trio.current_time()))
        self.running[model] = self.running.get(model, 0) + 1
        self.most[model] = max(self.most.get(model, 0), self.running[model])
        try:
            await trio.sleep(10)
        finally:
            self.running[model] -= 1
        return httpx2.Response(200, content=BODY, headers={"content-type": "application/json"})

    def by_time(self) -> list[tuple[str, float]]:
        return sorted(self.starts, key=lambda entry: (entry[1], entry[0]))


async def test_a_model_runs_no_more_than_its_max_in_flight(autojump_clock: MockClock) -> None:
    proxy = SlowProxy()
    async with (
        open_test_client(proxy, model_limits={"a": ModelLimits(max_in_flight=2)}) as client,
        trio.open_nursery() as nursery,
    ):
        for number in range(5):
            messages = [{"role": "user", "content": f"a{number}"}]
            nursery.start_soon(lambda m=messages: client.complete(model="a", messages=m))
    assert proxy.most["a"] == 2
    assert [time for _, time in proxy.by_time()] == [0.0, 0.0, 10.0, 10.0, 20.0]


async def test_waiting_on_its_model_takes_no_client_slot(autojump_clock: MockClock) -> None:
    proxy = SlowProxy()
    limits = {"a": ModelLimits(max_in_flight=1)}
    async with (
        open_test_client(proxy, max_in_flight=2, model_limits=limits) as client,
        trio.open_nursery() as nursery,
    ):
        for name in ("a0", "a1", "a2", "b0"):
            messages = [{"role": "user", "content": name}]
            nursery.start_soon(lambda n=name, m=messages: client.complete(model=n[0], messages=m))
            await wait_all_tasks_blocked()
    assert proxy.by_time() == [("a0", 0.0), ("b0", 0.0), ("a1", 10.0), ("a2", 20.0)]


async def test_one_producer_of_jobs_is_not_held_up_by_a_busy_model(
    autojump_clock: MockClock,
) -> None:
    proxy = SlowProxy()
    limits = {"a": ModelLimits(max_in_flight=1)}
    async with (
        open_test_client(proxy, max_in_flight=4, model_limits=limits) as client,
        client.open_jobs() as (send_jobs, results),
    ):
        async with send_jobs:
            for name in ("a0", "a1", "a2", "b0", "b1"):
                request = {"model": name[0], "messages": [{"role": "user", "content": name}]}
                await send_jobs.send(Job(id=name, request=request))
        finished = {result.id async for result in results if result.error is None}
    assert finished == {"a0", "a1", "a2", "b0", "b1"}
    assert proxy.by_time() == [
        ("a0", 0.0),
        ("b0", 0.0),
        ("b1", 0.0),
        ("a1", 10.0),
        ("a2", 20.0),
    ]


async def test_statistics_show_each_models_requests_in_flight(autojump_clock: MockClock) -> None:
    proxy = SlowProxy()
    limits = {"a": ModelLimits(max_in_flight=2)}
    async with (
        open_test_client(proxy, model_limits=limits) as client,
        trio.open_nursery() as nursery,
    ):
        for _ in range(3):
            nursery.start_soon(lambda: client.complete(model="a", messages=MESSAGES))
        await wait_all_tasks_blocked()
        usage = client.statistics().dispatcher.models["a"]
        assert (usage.in_flight, usage.max_in_flight, usage.waiting) == (2, 2, 1)
        assert client.statistics().dispatcher.in_flight == 2


async def test_leaving_open_jobs_cancels_the_requests_waiting_for_their_model_at_once(
    autojump_clock: MockClock,
) -> None:
    proxy = SlowProxy()
    limits = {"a": ModelLimits(max_in_flight=1)}
    async with open_test_client(proxy, model_limits=limits) as client:
        async with client.open_jobs() as (send_jobs, _):
            for name in ("a0", "a1", "a2"):
                request = {"model": "a", "messages": [{"role": "user", "content": name}]}
                await send_jobs.send(Job(id=name, request=request))
            await wait_all_tasks_blocked()
            assert client.statistics().dispatcher.models["a"].waiting == 2
        assert trio.current_time() == 0.0
        stats = client.statistics().dispatcher
        assert (stats.in_flight, stats.models["a"].in_flight, stats.models["a"].waiting) == (
            0,
            0,
            0,
        )
    assert proxy.running == {"a": 0}


async def test_a_models_tpm_alone_makes_the_client_estimate_tokens(
    autojump_clock: MockClock,
) -> None:
    proxy = SlowProxy()
    async with (
        open_test_client(proxy, model_limits={"a": ModelLimits(tpm=120)}) as client,
        trio.open_nursery() as nursery,
    ):
        for name in ("a0", "a1"):
            messages = [{"role": "user", "content": name}]
            nursery.start_soon(
                lambda m=messages: client.complete(model="a", messages=m, max_tokens=80)
            )
            await wait_all_tasks_blocked()
    # Each is estimated at 80 tokens and more, more than the model's pace lets out at once (2 a
    # second): the second waits for the first's tokens, reconciled with its answer's usage (436)
    # at 10 s, to be paid back at that pace.
    assert proxy.by_time() == [("a0", 0.0), ("a1", 218.0)]
