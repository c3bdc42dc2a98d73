"""The client over an in-memory HTTP transport, on trio's MockClock: retries, deadlines, events.

The proxy's side is played by a handler returning scripted answers (tests/_fakes.py), so every
deadline is asserted at its exact clock time. Streams have their own file, test_stream_reader.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import pytest
import trio
import trio.testing

from _fakes import (
    COMPLETION,
    MESSAGES,
    SECRET,
    Script,
    error_body,
    json_answer,
    open_test_client,
)
from trio_litellm import (
    AuthenticationError,
    BudgetExceededError,
    InternalServerError,
    RateLimitError,
    RequestTimeoutError,
    ResponseDecodeError,
    ServiceUnavailableError,
)
from trio_litellm._client import Client

TESTS = Path(__file__).resolve().parents[1]


async def complete(client: Client, **params: Any) -> Any:
    return await client.complete(model="m", messages=MESSAGES, **params)


# --- requests and retries -----------------------------------------------------------------------


async def test_the_request_carries_the_key_and_the_encoded_parameters() -> None:
    script = Script(json_answer(200, COMPLETION))
    async with open_test_client(script) as client:
        reply = await complete(client, temperature=0.5, stop=["x"], extra_body={"mock": 1})
    assert reply.text == "ok"
    request = script.requests[0]
    assert request.url.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    sent = msgspec.json.decode(request.content)
    assert sent == {
        "model": "m",
        "messages": MESSAGES,
        "temperature": 0.5,
        "stop": ["x"],
        "mock": 1,
    }


async def test_routing_hints_are_sent_as_metadata() -> None:
    script = Script(json_answer(200, COMPLETION))
    async with open_test_client(script) as client:
        await complete(
            client, routing_hints={"priority": "speed", "max_latency": 2.0}, metadata={"a": 1}
        )
    sent = msgspec.json.decode(script.requests[0].content)
    assert sent["metadata"] == {"a": 1, "routing_hints": {"priority": "speed", "max_latency": 2.0}}
    assert "routing_hints" not in sent


async def test_a_429_is_retried_after_exactly_its_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limited = json_answer(
        429, error_body(429, "slow down", "throttling_error"), {"llm_provider-retry-after": "3"}
    )
    script = Script(limited, limited, json_answer(200, COMPLETION))
    async with open_test_client(script, max_retries=2) as client:
        start = trio.current_time()
        reply = await complete(client)
    assert trio.current_time() - start == pytest.approx(6.0)
    assert reply.meta.attempts == 3
    assert len(script.requests) == 3


async def test_retries_back_off_exponentially_up_to_the_cap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script(json_answer(500, error_body(500, "boom")))
    async with open_test_client(
        script, max_retries=4, backoff_initial=1.0, backoff_max=3.0
    ) as client:
        start = trio.current_time()
        with pytest.raises(InternalServerError):
            await complete(client)
    assert len(script.requests) == 5
    assert trio.current_time() - start == pytest.approx(1 + 2 + 3 + 3)


async def test_a_retry_after_beyond_the_cap_is_raised_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script(json_answer(429, error_body(429, "later"), {"retry-after": "600"}))
    async with open_test_client(script, max_retries=3) as client:
        with pytest.raises(RateLimitError) as caught:
            await complete(client)
    assert caught.value.retry_after == 600
    assert len(script.requests) == 1


async def test_a_spent_budget_is_never_retried() -> None:
    body = error_body(429, "Budget has been exceeded! Max budget: 2.5", "budget_exceeded")
    script = Script(json_answer(429, body))
    async with open_test_client(script, max_retries=3) as client:
        with pytest.raises(BudgetExceededError):
            await complete(client)
    assert len(script.requests) == 1


async def test_max_retries_zero_makes_one_attempt() -> None:
    script = Script(json_answer(503, error_body(503, "down")))
    async with open_test_client(script, max_retries=0) as client:
        with pytest.raises(ServiceUnavailableError):
            await complete(client)
    assert len(script.requests) == 1


async def test_per_call_max_retries_overrides_the_config(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script(json_answer(500, error_body(500, "boom")))
    async with open_test_client(script, max_retries=5) as client:
        with pytest.raises(InternalServerError):
            await complete(client, max_retries=1)
    assert len(script.requests) == 2


async def test_the_total_timeout_bounds_a_call_with_its_retries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def stall(request: httpx2.Request) -> httpx2.Response:
        await trio.sleep_forever()
        raise AssertionError

    async with open_test_client(stall, total_timeout=7.0) as client:
        start = trio.current_time()
        with pytest.raises(RequestTimeoutError):
            await complete(client)
        assert trio.current_time() - start == pytest.approx(7.0)
        start = trio.current_time()
        with pytest.raises(RequestTimeoutError):
            await complete(client, timeout=2.0)
        assert trio.current_time() - start == pytest.approx(2.0)


async def test_the_key_is_scrubbed_from_an_error_that_echoes_it() -> None:
    script = Script(
        json_answer(401, error_body(401, f"Invalid key passed: {SECRET}", "auth_error"))
    )
    async with open_test_client(script) as client:
        with pytest.raises(AuthenticationError) as caught:
            await complete(client)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)
    assert SECRET not in repr(client) + repr(client.config)


async def test_a_200_that_is_not_json_is_a_decode_error() -> None:
    script = Script(json_answer(200, b"<html>oops</html>"))
    async with open_test_client(script) as client:
        with pytest.raises(ResponseDecodeError):
            await complete(client)


async def test_a_200_carrying_an_error_body_raises_it_typed() -> None:
    script = Script(json_answer(200, error_body(429, "limited", "throttling_error")))
    async with open_test_client(script, max_retries=0) as client:
        with pytest.raises(RateLimitError):
            await complete(client)


async def test_misused_calls_fail_before_sending() -> None:
    script = Script(json_answer(200, COMPLETION))
    async with open_test_client(script) as client:
        with pytest.raises(TypeError, match="temprature"):
            await client.complete(model="m", messages=MESSAGES, temprature=1)
        with pytest.raises(ValueError, match="messages must not be empty"):
            await client.complete(model="m", messages=[])
        with pytest.raises(TypeError, match=r"messages\[0\]"):
            await client.complete(model="m", messages=["hi"])
        with pytest.raises(ValueError, match="stream"):
            await client.complete(model="m", messages=MESSAGES, stream=True)
    assert script.requests == []


async def test_the_key_never_reaches_a_log_line(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    caplog.set_level(logging.DEBUG)
    echoing = json_answer(500, error_body(500, f"upstream said {SECRET}"), {"retry-after": "1"})
    script = Script(echoing, json_answer(200, COMPLETION))
    async with open_test_client(script, max_retries=1) as client:
        await complete(client)
    assert caplog.records, "retries and HTTP requests are logged"
    everything = caplog.text + "".join(repr(vars(record)) for record in caplog.records)
    assert SECRET not in everything


# --- monitoring hooks ---------------------------------------------------------------------------


async def test_a_slow_or_failing_hook_never_blocks_or_breaks_a_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script(json_answer(200, COMPLETION))
    calls: list[str] = []

    async def stuck(event: Any) -> None:
        calls.append(type(event).__name__)
        await trio.sleep_forever()

    def broken(event: Any) -> None:
        raise RuntimeError("hook bug")

    async with open_test_client(script) as client:
        client.add_hook(stuck)
        client.add_hook(broken)
        start = trio.current_time()
        for _ in range(20):
            assert (await complete(client)).text == "ok"
        assert trio.current_time() - start == 0.0  # no request waited for a hook
    assert calls  # the hooks did run, in the event task
    assert len(script.requests) == 20


async def test_events_tell_of_sends_retries_and_finished_requests(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limited = json_answer(
        429, error_body(429, "slow down", "throttling_error"), {"retry-after": "2"}
    )
    script = Script(limited, json_answer(200, COMPLETION))
    async with open_test_client(script, max_retries=1) as client:
        events = client.events()
        await complete(client)
        await trio.testing.wait_all_tasks_blocked()
        names = []
        while True:
            try:
                names.append(events.receive_nowait())
            except trio.WouldBlock:
                break
    kinds = [type(event).__name__ for event in names]
    assert kinds == [
        "RequestSent",
        "ThrottlePaused",
        "RetryScheduled",
        "RequestSent",
        "RequestFinished",
    ]
    finished = names[-1]
    assert finished.record.outcome == "ok" and finished.record.attempts == 2
    assert names[2].wait == 2.0


class Gated(Script):
    """Answers the request whose message is ``text`` once ``release(text)`` is called; records
    the order requests arrived in."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []
        self._gates: dict[str, trio.Event] = {}

    def release(self, text: str) -> None:
        self._gates.setdefault(text, trio.Event()).set()

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        text = msgspec.json.decode(request.content)["messages"][0]["content"]
        self.order.append(text)
        await self._gates.setdefault(text, trio.Event()).wait()
        return httpx2.Response(200, content=COMPLETION)


async def test_calls_beyond_max_in_flight_wait_for_a_slot_and_start_first_come_first_served() -> (
    None
):
    gated = Gated()
    replies: list[str] = []

    async def call(client: Client, text: str) -> None:
        await client.complete(model="m", messages=[{"role": "user", "content": text}])
        replies.append(text)

    async with open_test_client(gated, max_in_flight=3) as client:
        async with trio.open_nursery() as nursery:
            for number in range(6):
                nursery.start_soon(call, client, f"call {number}")
                await trio.testing.wait_all_tasks_blocked()
            assert sorted(gated.order) == ["call 0", "call 1", "call 2"]
            dispatcher = client.statistics().dispatcher
            assert (dispatcher.in_flight, dispatcher.waiting) == (3, 3)
            for number in range(6):  # each slot freed goes to the longest waiting call
                gated.release(f"call {number}")
                await trio.testing.wait_all_tasks_blocked()
                assert (
                    gated.order[3 : 4 + number] == [f"call {n}" for n in range(3, 6)][: number + 1]
                )
        assert sorted(replies) == [f"call {number}" for number in range(6)]
        assert client.statistics().dispatcher.in_flight == 0


async def test_jobs_beyond_max_in_flight_wait_for_a_slot_and_start_in_the_order_sent() -> None:
    from trio_litellm import Job

    gated = Gated()
    async with (
        open_test_client(gated, max_in_flight=2) as client,
        client.open_jobs() as (send_jobs, receive_results),
    ):
        async with send_jobs:
            for number in range(5):
                request = {"model": "m", "messages": [{"role": "user", "content": f"job {number}"}]}
                await send_jobs.send(Job(id=number, request=request))
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(gated.order) == ["job 0", "job 1"]
        assert client.statistics().dispatcher.in_flight == 2
        for number in range(5):  # each slot freed goes to the next job sent
            gated.release(f"job {number}")
            await trio.testing.wait_all_tasks_blocked()
            assert gated.order[2 : 3 + number] == ["job 2", "job 3", "job 4"][: number + 1]
        ids = [result.id async for result in receive_results if result.ok]
    assert sorted(ids) == [0, 1, 2, 3, 4]


class Stall(Script):
    """Takes every request and never answers it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = trio.Event()

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        self.entered.set()
        await trio.sleep_forever()
        raise AssertionError("unreachable")


async def test_closing_the_client_ends_a_call_in_flight_with_client_closed_error() -> None:
    from trio_litellm import ClientClosedError

    stall = Stall()
    errors: list[BaseException] = []

    async def call(client: Client) -> None:
        try:
            await complete(client)
        except ClientClosedError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:  # the caller outlives the client
        async with open_test_client(stall) as client:
            nursery.start_soon(call, client)
            await stall.entered.wait()
    assert len(errors) == 1
    assert "client closed" in str(errors[0])


async def test_a_cancelled_call_frees_its_slot_and_is_recorded_as_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stall = Stall()
    async with open_test_client(stall, max_in_flight=1) as client:
        with trio.move_on_after(3.0) as scope:
            await complete(client)
        assert scope.cancelled_caught
        assert client.statistics().dispatcher.in_flight == 0
        usage = client.usage()
        assert usage.requests == 1
        assert usage.errors == {"ClientClosedError": 1}
        with trio.move_on_after(1.0):  # the one slot is free again: this call is sent at once
            await complete(client)
        assert len(stall.requests) == 2


def test_retries_print_nothing_in_an_application_without_logging_set_up() -> None:
    program = textwrap.dedent(
        """
        import trio
        from _fakes import COMPLETION, MESSAGES, Script, error_body, json_answer, open_test_client

        down = json_answer(503, error_body(503, "down"))
        script = Script(down, down, json_answer(200, COMPLETION))

        async def main():
            async with open_test_client(script, backoff_initial=0.001) as client:
                answer = await client.complete(model="m", messages=MESSAGES)
                print(answer.text, client.statistics().dispatcher.retries)

        trio.run(main)
        """
    )
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok 2"
    assert done.stderr == ""
