"""The retry policy: which failures are tried again, how many times, after how long, and what
each retry says (a log line, an event). ``RetryPolicy`` and ``Retrying`` are tested through their
own small interface on MockClock; which answers retry, through the client.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx2
import pytest
import trio
import trio.testing

from _fakes import (
    COMPLETION,
    DONE,
    MESSAGES,
    SECRET,
    Script,
    chunk,
    error_body,
    in_band_error,
    json_answer,
    open_test_client,
    pieces,
    refuse,
    sse_answer,
)
from trio_litellm import (
    BadRequestError,
    ClientClosedError,
    InternalServerError,
    LiteLLMError,
    ProxyConnectionError,
    RateLimitError,
    RetryScheduled,
    StreamInterruptedError,
)
from trio_litellm._retry import Retrying, RetryPolicy


def policy(**changes: Any) -> RetryPolicy:
    settings: dict[str, Any] = {
        "max_retries": 2,
        "max_retry_after": 60.0,
        "backoff_initial": 1.0,
        "backoff_max": 8.0,
        "backoff_jitter": 0.0,
        "display_url": "http://proxy.test",
    }
    return RetryPolicy(**(settings | changes))


def boom() -> InternalServerError:
    return InternalServerError("boom", status=500)


async def attempts_until_raised(retrying: Retrying, exc: Exception, *, limit: int = 20) -> int:
    """Fail every attempt with ``exc``: the number of attempts made when the policy gave up."""
    for _ in range(limit):
        number = retrying.next_attempt()
        try:
            await retrying.failed(exc)
        except type(exc) as raised:
            given_up = raised
        else:
            continue
        assert given_up is exc  # raised as itself
        return number
    raise AssertionError(f"still retrying after {limit} attempts")


async def waits(retrying: Retrying, *failures: Exception, gated: bool = False) -> list[float]:
    """The seconds each failure made the next attempt wait."""
    waited = []
    for exc in failures:
        retrying.next_attempt()
        start = trio.current_time()
        await retrying.failed(exc, gated=gated)
        waited.append(trio.current_time() - start)
    return waited


# --- which failures retry -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
async def test_a_timeout_conflict_rate_limit_or_server_error_is_retried(
    autojump_clock: trio.testing.MockClock, status: int
) -> None:
    script = Script(json_answer(status, error_body(status, "again")), json_answer(200, COMPLETION))
    async with open_test_client(script, max_retries=1) as client:
        reply = await client.complete(model="m", messages=MESSAGES)
    assert reply.meta is not None and reply.meta.attempts == 2
    assert len(script.requests) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
async def test_any_other_4xx_is_raised_at_once(status: int) -> None:
    script = Script(json_answer(status, error_body(status, "no")), json_answer(200, COMPLETION))
    async with open_test_client(script, max_retries=3) as client:
        with pytest.raises(LiteLLMError) as caught:
            await client.complete(model="m", messages=MESSAGES)
        assert client.statistics().dispatcher.retries == 0
    assert caught.value.status == status
    assert len(script.requests) == 1


async def test_a_refused_connection_is_retried(autojump_clock: trio.testing.MockClock) -> None:
    script = Script(refuse, json_answer(200, COMPLETION))
    async with open_test_client(script, max_retries=1) as client:
        await client.complete(model="m", messages=MESSAGES)
    assert len(script.requests) == 2


def test_the_decision_is_a_backoff_the_proxys_retry_after_or_no() -> None:
    retry = policy(max_retry_after=60.0)
    assert retry.decision(boom()) is True
    assert retry.decision(ProxyConnectionError("refused")) is True
    assert retry.decision(RateLimitError("slow down", status=429)) is True
    assert retry.decision(RateLimitError("slow down", status=429, retry_after=3.0)) == 3.0
    assert retry.decision(RateLimitError("slow down", status=429, retry_after=60.0)) == 60.0
    assert retry.decision(RateLimitError("come back later", retry_after=60.5)) is False
    assert retry.decision(BadRequestError("bad", status=400)) is False
    assert retry.decision(ClientClosedError("closed")) is False
    assert retry.decision(StreamInterruptedError("after content", status=500)) is False
    assert retry.decision(ValueError("not ours")) is False


async def test_a_retry_after_beyond_max_retry_after_is_raised_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limited = json_answer(429, error_body(429, "later", "throttling_error"), {"retry-after": "31"})
    script = Script(limited, json_answer(200, COMPLETION))
    async with open_test_client(script, max_retries=3, max_retry_after=30.0) as client:
        start = trio.current_time()
        with pytest.raises(RateLimitError):
            await client.complete(model="m", messages=MESSAGES)
        assert trio.current_time() == start
    assert len(script.requests) == 1


# --- how many times -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("configured", "per_call", "attempts"),
    [(2, None, 3), (0, None, 1), (5, 1, 2), (5, 0, 1), (0, 3, 4)],
)
async def test_max_retries_counts_the_retries_after_the_first_attempt(
    autojump_clock: trio.testing.MockClock, configured: int, per_call: int | None, attempts: int
) -> None:
    retrying = policy(max_retries=configured).start(max_retries=per_call)
    assert await attempts_until_raised(retrying, boom()) == attempts


async def test_forgive_gives_the_last_failure_back(autojump_clock: trio.testing.MockClock) -> None:
    retrying = policy(max_retries=1).start()
    retrying.next_attempt()
    await retrying.failed(boom())
    retrying.forgive()  # the proxy was down: that failure does not count
    assert await attempts_until_raised(retrying, boom()) == 3


async def test_forgive_before_any_failure_gives_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    retrying = policy(max_retries=1).start()
    retrying.forgive()
    assert await attempts_until_raised(retrying, boom()) == 2


async def test_retries_are_counted_for_the_whole_client(
    autojump_clock: trio.testing.MockClock,
) -> None:
    retry = policy(max_retries=2)
    for _ in range(2):
        await attempts_until_raised(retry.start(), boom())
    assert retry.retries == 4


# --- how long -----------------------------------------------------------------------------------


async def test_a_retry_waits_exactly_the_proxys_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    retrying = policy(max_retries=3, backoff_initial=100.0, backoff_max=100.0).start()
    limited = [RateLimitError("slow down", retry_after=seconds) for seconds in (3.0, 0.25, 7.5)]
    assert await waits(retrying, *limited) == pytest.approx([3.0, 0.25, 7.5], abs=1e-9)


async def test_without_retry_after_the_wait_doubles_from_backoff_initial_up_to_backoff_max(
    autojump_clock: trio.testing.MockClock,
) -> None:
    retrying = policy(max_retries=5, backoff_initial=0.5, backoff_max=3.0).start()
    assert await waits(retrying, *[boom() for _ in range(5)]) == pytest.approx(
        [0.5, 1.0, 2.0, 3.0, 3.0], abs=1e-9
    )


async def test_jitter_adds_at_most_backoff_jitter(autojump_clock: trio.testing.MockClock) -> None:
    retrying = policy(max_retries=4, backoff_initial=1.0, backoff_jitter=0.5).start()
    waited = await waits(retrying, *[boom() for _ in range(4)])
    for base, wait in zip([1.0, 2.0, 4.0, 8.0], waited, strict=True):
        assert base - 1e-9 <= wait <= base + 0.5 + 1e-9  # the clock's float sums


async def test_a_failure_the_health_gate_waits_for_backs_off_only_backoff_initial(
    autojump_clock: trio.testing.MockClock,
) -> None:
    retrying = policy(max_retries=3, backoff_initial=0.5).start()
    refused = [ProxyConnectionError("refused") for _ in range(3)]
    assert await waits(retrying, *refused, gated=True) == pytest.approx([0.5, 0.5, 0.5], abs=1e-9)


# --- what a retry says --------------------------------------------------------------------------


async def test_each_retry_logs_one_warning_naming_the_proxy_and_never_the_key(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    echoing = json_answer(500, error_body(500, f"upstream rejected {SECRET}"))
    script = Script(echoing, echoing, json_answer(200, COMPLETION))
    url = "http://user:url-password@proxy.test"
    async with open_test_client(script, proxy_url=url, max_retries=2) as client:
        await client.complete(model="m", messages=MESSAGES)
    ours = [record for record in caplog.records if record.name == "trio_litellm"]
    assert [record.levelno for record in ours] == [logging.WARNING] * 2
    for number, record in enumerate(ours, start=1):
        message = record.getMessage()
        assert "http://proxy.test" in message
        assert f"after attempt {number}" in message
        assert "InternalServerError" in message
    everything = caplog.text + "".join(repr(vars(record)) for record in caplog.records)
    assert SECRET not in everything
    assert "url-password" not in everything


async def test_each_retry_emits_one_retry_scheduled_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limited = json_answer(
        429, error_body(429, "slow down", "throttling_error"), {"retry-after": "2"}
    )
    script = Script(
        limited, json_answer(500, error_body(500, "boom")), json_answer(200, COMPLETION)
    )
    async with open_test_client(script, max_retries=2) as client:
        events = client.events()
        await client.complete(model="gpt", messages=MESSAGES)
        await trio.testing.wait_all_tasks_blocked()
        scheduled = []
        while True:
            try:
                event = events.receive_nowait()
            except trio.WouldBlock:
                break
            if isinstance(event, RetryScheduled):
                scheduled.append(event)
    assert [(event.model, event.attempt, event.wait) for event in scheduled] == [
        ("gpt", 1, 2.0),
        ("gpt", 2, None),
    ]
    assert scheduled[0].error.startswith("RateLimitError: slow down")
    assert scheduled[1].error.startswith("InternalServerError: boom")


# --- streams ------------------------------------------------------------------------------------

FIRST = chunk("a", role="assistant")

AFTER_CONTENT = {
    "a broken connection": lambda: pieces(FIRST, then_break=True),
    "an in-band server error": lambda: pieces(FIRST, in_band_error(500, "upstream failed")),
    "an end without [DONE]": lambda: pieces(FIRST),
}


@pytest.mark.parametrize("failure", list(AFTER_CONTENT))
async def test_a_stream_is_never_retried_once_a_chunk_was_seen(
    autojump_clock: trio.testing.MockClock, failure: str
) -> None:
    whole = sse_answer(pieces(FIRST, chunk("b", finish="stop"), DONE))
    script = Script(sse_answer(AFTER_CONTENT[failure]()), whole)
    seen: list[str | None] = []
    async with open_test_client(script, max_retries=3) as client:
        with pytest.raises(StreamInterruptedError) as caught:
            async with client.stream(model="m", messages=MESSAGES) as stream:
                async for piece in stream:
                    seen.append(piece.choices[0].delta.content)
        assert client.statistics().dispatcher.retries == 0
    assert seen == ["a"]
    assert caught.value.partial.text == "a"
    assert len(script.requests) == 1


async def test_a_stream_that_fails_before_any_chunk_is_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def broken(request: httpx2.Request) -> httpx2.Response:
        return sse_answer(pieces(then_break=True))(request)

    whole = sse_answer(pieces(FIRST, chunk("b", finish="stop"), DONE))
    script = Script(json_answer(503, error_body(503, "down")), broken, whole)
    async with open_test_client(script, max_retries=2) as client:
        async with client.stream(model="m", messages=MESSAGES) as stream:
            text = "".join([piece.choices[0].delta.content or "" async for piece in stream])
        assert client.statistics().dispatcher.retries == 2
    assert text == "ab"
    assert len(script.requests) == 3
