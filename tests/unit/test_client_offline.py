"""The client over an in-memory HTTP transport, on trio's MockClock: retries, deadlines, streams.

The proxy's side is played by a handler returning scripted answers; stream bodies are async
generators that can stall forever, so every deadline is asserted at its exact clock time.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import msgspec
import pytest
import trio
import trio.testing

from trio_litellm import (
    AuthenticationError,
    BudgetExceededError,
    ClientConfig,
    InternalServerError,
    ProxyConnectionError,
    RateLimitError,
    RequestTimeoutError,
    ResponseDecodeError,
    ServiceUnavailableError,
    StreamInterruptedError,
)
from trio_litellm._client import Client, _open_client
from trio_litellm._reader import STREAM_BUFFER

SECRET = "sk-unit-secret-0000"
MESSAGES = [{"role": "user", "content": "hi"}]


def chunk(
    content: str | None = None, *, role: str | None = None, finish: str | None = None
) -> bytes:
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    choice: dict[str, Any] = {"index": 0, "delta": delta}
    if finish is not None:
        choice["finish_reason"] = finish
    body = {"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}
    return b"data: " + msgspec.json.encode(body) + b"\n\n"


DONE = b"data: [DONE]\n\n"
COMPLETION = msgspec.json.encode(
    {
        "id": "chatcmpl-1",
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
)


def error_body(status: int, message: str, etype: str = "None") -> bytes:
    return msgspec.json.encode(
        {"error": {"message": message, "type": etype, "param": None, "code": str(status)}}
    )


class Script:
    """Answers requests in order from a list of factories; counts requests."""

    def __init__(self, *answers: Callable[[], httpx2.Response]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx2.Request] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.answers[min(len(self.requests), len(self.answers)) - 1]()


def json_answer(
    status: int, body: bytes, headers: dict[str, str] | None = None
) -> Callable[[], httpx2.Response]:
    return lambda: httpx2.Response(status, content=body, headers=headers)


def sse_answer(body: Callable[[], AsyncIterator[bytes]]) -> Callable[[], httpx2.Response]:
    return lambda: httpx2.Response(
        200, content=body(), headers={"content-type": "text/event-stream"}
    )


def pieces(
    *parts: bytes, then_stall: bool = False, log: list[str] | None = None
) -> Callable[[], AsyncIterator[bytes]]:
    async def body() -> AsyncIterator[bytes]:
        try:
            for part in parts:
                yield part
            if then_stall:
                await trio.sleep_forever()
        finally:
            if log is not None:
                log.append("closed")

    return body


def open_test_client(script: Script, **options: Any) -> Any:
    settings: dict[str, Any] = {
        "proxy_url": "http://proxy.test",
        "api_key": SECRET,
        "backoff_jitter": 0.0,
        "health_check_interval": None,  # these tests script every request the client makes
        "price_lookup": False,
    }
    settings.update(options)
    return _open_client(ClientConfig(**settings), http_transport=httpx2.MockTransport(script))


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

    async with _open_client(
        ClientConfig(
            proxy_url="http://proxy.test",
            total_timeout=7.0,
            health_check_interval=None,
            price_lookup=False,
        ),
        http_transport=httpx2.MockTransport(stall),
    ) as client:
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


# --- streams ------------------------------------------------------------------------------------


async def test_a_stream_delivers_every_chunk_and_the_aggregate() -> None:
    script = Script(
        sse_answer(
            pieces(
                chunk("", role="assistant"), chunk("Hel"), chunk("lo"), chunk(finish="stop"), DONE
            )
        )
    )
    async with (
        open_test_client(script) as client,
        client.stream(model="m", messages=MESSAGES) as stream,
    ):
        texts = [c.choices[0].delta.content async for c in stream]
    assert texts == ["", "Hel", "lo", None]
    assert stream.result().text == "Hello"
    sent = msgspec.json.decode(script.requests[0].content)
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


async def test_chunks_of_one_network_read_arrive_one_by_one_in_order() -> None:
    one_read = b"".join(chunk(str(index)) for index in range(50))
    script = Script(sse_answer(pieces(chunk("", role="assistant"), one_read, DONE)))
    async with (
        open_test_client(script) as client,
        client.stream(model="m", messages=MESSAGES) as stream,
    ):
        texts = [c.choices[0].delta.content async for c in stream]
    assert texts == ["", *[str(index) for index in range(50)]]
    assert stream.result().text == "".join(str(index) for index in range(50))


async def test_a_bad_event_in_a_read_comes_after_the_chunks_before_it() -> None:
    in_band = b'data: {"error": {"message": "upstream died", "type": "None", "param": null, "code": "500"}}\n\n'
    script = Script(sse_answer(pieces(chunk("a"), chunk("b") + chunk("c") + in_band + chunk("d"))))
    seen: list[str | None] = []
    async with open_test_client(script) as client:
        with pytest.raises(StreamInterruptedError) as caught:
            async with client.stream(model="m", messages=MESSAGES) as stream:
                async for piece in stream:
                    seen.append(piece.choices[0].delta.content)
    assert seen == ["a", "b", "c"]
    assert caught.value.partial.text == "abc"


async def test_cancellation_is_honoured_between_chunks_of_one_read(
    autojump_clock: trio.testing.MockClock,
) -> None:
    one_read = b"".join(chunk(str(index)) for index in range(10))
    script = Script(sse_answer(pieces(one_read, DONE)))
    seen: list[str | None] = []
    async with open_test_client(script) as client:
        with trio.CancelScope() as scope:
            async with client.stream(model="m", messages=MESSAGES) as stream:
                async for piece in stream:
                    seen.append(piece.choices[0].delta.content)
                    if len(seen) == 3:
                        scope.cancel()  # the next chunk is already in hand: it must not come
    assert scope.cancelled_caught
    assert seen == ["0", "1", "2"]


async def test_cancelling_a_stream_closes_its_body_at_the_exact_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    script = Script(sse_answer(pieces(chunk("a"), chunk("b"), then_stall=True, log=log)))
    async with open_test_client(script, stream_idle_timeout=None) as client:
        received = []
        start = trio.current_time()
        with trio.move_on_after(5.0) as scope:
            async with client.stream(model="m", messages=MESSAGES) as stream:
                async for piece in stream:
                    received.append(piece.choices[0].delta.content)
        assert scope.cancelled_caught
        assert trio.current_time() - start == pytest.approx(5.0)
        assert received == ["a", "b"]
        assert log == ["closed"]
        assert not stream.finished


async def test_a_stalled_stream_is_interrupted_by_the_idle_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script(sse_answer(pieces(chunk("a"), chunk("b"), then_stall=True)))
    async with open_test_client(script, stream_idle_timeout=4.0) as client:
        start = trio.current_time()
        with pytest.raises(StreamInterruptedError) as caught:
            async with client.stream(model="m", messages=MESSAGES) as stream:
                async for _ in stream:
                    pass
    assert trio.current_time() - start == pytest.approx(4.0)
    assert caught.value.partial.text == "ab"
    assert isinstance(caught.value.__cause__, RequestTimeoutError)


async def test_no_first_token_in_time_is_retried_then_raised(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script(sse_answer(pieces(b": ping\n\n", then_stall=True)))
    async with open_test_client(
        script, first_token_timeout=3.0, max_retries=1, backoff_initial=1.0
    ) as client:
        start = trio.current_time()
        with pytest.raises(RequestTimeoutError):
            async with client.stream(model="m", messages=MESSAGES):
                pytest.fail("the block must not run")
    assert trio.current_time() - start == pytest.approx(3.0 + 1.0 + 3.0)
    assert len(script.requests) == 2


async def test_an_end_without_done_after_content_is_an_interruption() -> None:
    script = Script(sse_answer(pieces(chunk("par"), chunk("tial"))))
    async with open_test_client(script) as client:
        with pytest.raises(StreamInterruptedError) as caught:
            async with client.stream(model="m", messages=MESSAGES) as stream:
                async for _ in stream:
                    pass
        with pytest.raises(StreamInterruptedError):
            stream.result()
    assert caught.value.partial.text == "partial"
    assert isinstance(caught.value.__cause__, ProxyConnectionError)


async def test_an_empty_end_before_content_is_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script(
        sse_answer(pieces(chunk("", role="assistant"))), sse_answer(pieces(chunk("ok"), DONE))
    )
    async with (
        open_test_client(script) as client,
        client.stream(model="m", messages=MESSAGES) as stream,
    ):
        async for _ in stream:
            pass
    assert stream.result().text == "ok"
    assert len(script.requests) == 2


async def test_an_in_band_error_before_content_raises_typed_and_is_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    in_band = b'data: {"error": {"message": "Error processing stream start", "type": "internal_server_error", "param": null, "code": "500"}}\n\n'
    script = Script(
        sse_answer(pieces(b": ping\n\n", in_band, DONE)), sse_answer(pieces(chunk("fine"), DONE))
    )
    async with (
        open_test_client(script, max_retries=1) as client,
        client.stream(model="m", messages=MESSAGES) as stream,
    ):
        async for _ in stream:
            pass
    assert stream.result().text == "fine"
    assert stream.meta is not None and stream.meta.attempts == 2


async def test_an_in_band_error_after_content_interrupts_with_the_typed_cause() -> None:
    in_band = b'data: {"error": {"message": "litellm.RateLimitError: x", "type": "throttling_error", "param": null, "code": "429"}}\n\n'
    script = Script(sse_answer(pieces(chunk("half"), in_band, DONE)))
    async with open_test_client(script) as client:
        with pytest.raises(StreamInterruptedError) as caught:
            async with client.stream(model="m", messages=MESSAGES) as stream:
                async for _ in stream:
                    pass
    assert isinstance(caught.value.__cause__, RateLimitError)
    assert caught.value.partial.text == "half"
    assert len(script.requests) == 1


async def test_a_malformed_chunk_after_content_interrupts() -> None:
    script = Script(sse_answer(pieces(chunk("a"), b"data: {not json\n\n", chunk("b"), DONE)))
    async with open_test_client(script) as client:
        with pytest.raises(StreamInterruptedError) as caught:
            async with client.stream(model="m", messages=MESSAGES) as stream:
                async for _ in stream:
                    pass
    assert isinstance(caught.value.__cause__, ResponseDecodeError)


async def test_done_without_any_chunk_is_a_decode_error() -> None:
    script = Script(sse_answer(pieces(DONE)))
    async with open_test_client(script) as client:
        with pytest.raises(ResponseDecodeError):
            async with client.stream(model="m", messages=MESSAGES):
                pytest.fail("the block must not run")


async def test_a_slow_consumer_holds_the_reader_back() -> None:
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for index in range(200):
            pulled += 1
            yield chunk(str(index))
        yield DONE

    script = Script(sse_answer(body))
    async with (
        open_test_client(script) as client,
        client.stream(model="m", messages=MESSAGES) as stream,
    ):
        await trio.testing.wait_all_tasks_blocked()
        assert pulled <= STREAM_BUFFER + 2
        texts = [c.choices[0].delta.content async for c in stream]
    assert texts == [str(i) for i in range(200)]


async def test_an_error_status_on_a_stream_raises_at_entry() -> None:
    script = Script(
        json_answer(
            400, error_body(400, "Invalid model name passed in model=nope", "invalid_request_error")
        )
    )
    async with open_test_client(script) as client:
        with pytest.raises(Exception, match="Invalid model name") as caught:
            async with client.stream(model="nope", messages=MESSAGES):
                pytest.fail("the block must not run")
    assert type(caught.value).__name__ == "ModelNotFoundError"


async def test_an_exception_in_the_callers_block_comes_out_unwrapped() -> None:
    script = Script(sse_answer(pieces(chunk("a"), DONE)))
    async with open_test_client(script) as client:
        with pytest.raises(KeyError):
            async with client.stream(model="m", messages=MESSAGES):
                raise KeyError("mine")
    with pytest.raises(KeyError):
        async with open_test_client(script):
            raise KeyError("mine too")


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
    """Answers each request once ``release`` is set; records the order requests arrived in."""

    def __init__(self) -> None:
        super().__init__()
        self.release = trio.Event()
        self.order: list[str] = []

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.order.append(msgspec.json.decode(request.content)["messages"][0]["content"])
        await self.release.wait()
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
            gated.release.set()
        assert gated.order[3:] == ["call 3", "call 4", "call 5"]  # first come, first served
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
        gated.release.set()
        ids = [result.id async for result in receive_results if result.ok]
    assert gated.order[2:] == ["job 2", "job 3", "job 4"]
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
    import subprocess
    import sys
    import textwrap

    program = textwrap.dedent(
        """
        import httpx2, trio
        from trio_litellm import ClientConfig
        from trio_litellm._client import _open_client

        BODY = (b'{"id": "c", "model": "m", "choices": [{"index": 0, "message":'
                b' {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}')
        answers = [503, 503, 200]

        async def handler(request):
            return httpx2.Response(answers.pop(0), content=BODY)

        async def main():
            config = ClientConfig(proxy_url="http://proxy.test", api_key="sk-x",
                                  health_check_interval=None, price_lookup=False,
                                  backoff_initial=0.001, backoff_jitter=0.0)
            async with _open_client(config, http_transport=httpx2.MockTransport(handler)) as c:
                answer = await c.complete(model="m", messages=[{"role": "user", "content": "x"}])
                print(answer.text, c.statistics().dispatcher.retries)

        trio.run(main)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok 2"
    assert done.stderr == ""
