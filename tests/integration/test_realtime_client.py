"""Realtime sessions (``client.realtime``) through a real LiteLLM proxy to the fake provider's
``/v1/realtime``: text turns and their usage, the raw event stream, failures at ``async with``
and mid-response, a 3 MB event, sessions side by side, leaving early, the beta protocol, and the
official openai SDK getting the same answer from the same proxy.

The fake upstream answers a text turn with the echo of the prompt; its failure modes are chosen by
the deployment (rt-drop, rt-close1011, ...; see litellm_config.yaml). Every wait is bounded: a
session on this proxy takes tens of milliseconds, so the bounds only catch a hang.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_litellm import (
    AuthenticationError,
    Client,
    ModelNotFoundError,
    RealtimeClosedError,
    RequestTimeoutError,
    open_client,
)
from trio_litellm.testing._devstack import Stack

TIMEOUT = 30.0  # one session, on a shared 2-core machine; a bound for hangs, not a latency target
SDK_TIMEOUT = 90.0  # a fresh Python importing the openai SDK, then one session
PROMPT_EXIT = 2.0  # leaving a session mid-answer must take less than this
BIG_AUDIO_BYTES = 2_250_000  # rt-big's PCM in one response.output_audio.delta: 3,000,000 base64
AUDIO_BYTES_PER_WORD = 2400  # rt-audio: one audio delta per word of the echo, 50 ms of 24 kHz PCM
SDK_SCRIPT = Path(__file__).with_name("_realtime_sdk.py")


def echo(prompt: str) -> str:
    """What the fake upstream answers a text turn with."""
    return f"Echo: {prompt}"


def fake_pcm(piece: str, size: int) -> bytes:
    """The fake upstream's audio for ``piece``: its SHA-256 repeated to ``size`` bytes."""
    seed = hashlib.sha256(piece.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def user_message(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[Client]:
    async with open_client(
        proxy_url=stack.proxy_url, api_key=stack.api_key, max_retries=0
    ) as client:
        yield client


async def collect_one_response(conn: Any) -> list[Any]:
    """Every server event from now until ``response.done`` (included)."""
    events = []
    async for event in conn:
        events.append(event)
        if event.type == "response.done":
            break
    return events


# --- text turns ------------------------------------------------------------------------------


async def test_ask_answers_the_echo_with_its_usage_counted(client: Client) -> None:
    prompt = f"hello there {uuid.uuid4().hex[:6]}"
    with trio.fail_after(TIMEOUT):
        async with client.realtime(model="rt-text") as conn:
            turn = await conn.ask(prompt)

    assert turn.text == echo(prompt)
    assert turn.status == "completed"
    assert turn.response_id
    usage = turn.usage
    assert usage is not None
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    totals = client.usage_totals()["rt-text"]
    assert (totals.requests, totals.succeeded, totals.errors) == (1, 1, {})
    assert (totals.prompt_tokens, totals.completion_tokens) == (
        usage.input_tokens,
        usage.output_tokens,
    )


async def test_two_turns_in_one_session_are_two_records(client: Client) -> None:
    with trio.fail_after(TIMEOUT):
        async with client.realtime(model="rt-text") as conn:
            first = await conn.ask("first turn")
            second = await conn.ask("second turn")

    assert (first.text, second.text) == (echo("first turn"), echo("second turn"))
    assert first.response_id != second.response_id
    assert first.usage is not None and second.usage is not None
    totals = client.usage_totals()["rt-text"]
    assert (totals.requests, totals.succeeded) == (2, 2)
    assert totals.completion_tokens == first.usage.output_tokens + second.usage.output_tokens


async def test_the_raw_event_stream_comes_in_protocol_order(client: Client) -> None:
    prompt = "in order please"
    with trio.fail_after(TIMEOUT):
        async with client.realtime(model="rt-text") as conn:
            assert conn.session_id and conn.model == "rt-text"
            await conn.session.update(session={"instructions": "Be brief."})
            await conn.conversation.item.create(item=user_message(prompt))
            await conn.response.create()
            events = await collect_one_response(conn)

    types = [event.type for event in events]
    deltas = [i for i, kind in enumerate(types) if kind == "response.output_text.delta"]
    created = types.index("response.created")
    text_done = types.index("response.output_text.done")
    assert types[0] == "session.created"  # entering waited for it, and still hands it over
    assert types.index("session.updated") < types.index("conversation.item.added") < created
    assert len(deltas) > 1, types
    assert created < deltas[0] and deltas[-1] < text_done
    assert types[-1] == "response.done" and types.count("response.done") == 1
    text = "".join(events[i].delta for i in deltas)
    assert text == events[text_done].text == echo(prompt)
    assert events[-1].response.status == "completed"


# --- failures --------------------------------------------------------------------------------


async def test_a_refused_key_fails_at_async_with(stack: Stack) -> None:
    key = "sk-wrong-7d1e0b"
    entered = False
    async with open_client(proxy_url=stack.proxy_url, api_key=key, max_retries=0) as client:
        with trio.fail_after(TIMEOUT), pytest.raises(AuthenticationError) as caught:
            async with client.realtime(model="rt-text"):
                entered = True
    assert not entered
    assert caught.value.status == 403
    assert key not in str(caught.value) + repr(caught.value)


async def test_an_unknown_model_fails_at_async_with(client: Client) -> None:
    entered = False
    with trio.fail_after(TIMEOUT), pytest.raises(ModelNotFoundError) as caught:
        async with client.realtime(model="no-such-rt-model"):
            entered = True
    assert not entered
    assert "no-such-rt-model" in str(caught.value)


@pytest.mark.parametrize(
    ("model", "said"),
    [
        ("rt-reject401", "Upstream realtime handshake rejected with HTTP 401"),
        ("rt-errorfirst", "invalid_api_key"),
    ],
)
async def test_an_upstream_that_refuses_fails_at_async_with(
    client: Client, model: str, said: str
) -> None:
    entered = False
    with trio.fail_after(TIMEOUT), pytest.raises(RealtimeClosedError) as caught:
        async with client.realtime(model=model):
            entered = True
    assert not entered
    assert caught.value.code == 1008
    assert said in str(caught.value)


async def test_an_upstream_that_is_down_fails_at_async_with(client: Client) -> None:
    entered = False
    with trio.fail_after(TIMEOUT), pytest.raises(RealtimeClosedError) as caught:
        async with client.realtime(model="rt-down"):
            entered = True
    assert not entered
    assert caught.value.code == 1011
    assert "Connection refused" in str(caught.value)


async def test_an_upstream_that_never_says_session_created_times_out_at_async_with(
    client: Client,
) -> None:
    entered = False
    with trio.fail_after(TIMEOUT), pytest.raises(RequestTimeoutError, match=r"no session\.created"):
        async with client.realtime(model="rt-silent", connect_timeout=1.0):
            entered = True
    assert not entered


@pytest.mark.parametrize(
    ("model", "reason"),
    [("rt-drop", "no close frame received or sent"), ("rt-close1011", "upstream boom")],
)
async def test_an_upstream_failure_mid_response_raises_with_the_partial_turn(
    client: Client, model: str, reason: str
) -> None:
    prompt = "this answer breaks off"
    with trio.fail_after(TIMEOUT):
        async with client.realtime(model=model) as conn:
            with pytest.raises(RealtimeClosedError) as caught:
                await conn.ask(prompt)

    error = caught.value
    assert (error.code, error.reason) == (1011, reason)
    partial = error.partial
    assert partial is not None
    assert partial.text == "Echo: this"  # the two deltas the upstream sent before it failed
    assert partial.usage is None
    totals = client.usage_totals()[model]
    assert (totals.requests, totals.succeeded, totals.errors) == (1, 0, {"RealtimeClosedError": 1})


# --- size, concurrency, leaving --------------------------------------------------------------


async def test_a_3mb_event_arrives_whole(client: Client) -> None:
    prompt = "something big"
    with trio.fail_after(TIMEOUT):
        async with client.realtime(model="rt-big") as conn:
            await conn.conversation.item.create(item=user_message(prompt))
            await conn.response.create()
            events = await collect_one_response(conn)

    audio = [event for event in events if event.type == "response.output_audio.delta"]
    assert len(audio) == 1
    assert len(audio[0].delta) == 3_000_000  # base64: one websocket message of more than 3 MB
    assert audio[0].audio == fake_pcm(echo(prompt), BIG_AUDIO_BYTES)


async def test_an_audio_turn_brings_the_audio_and_its_transcript(client: Client) -> None:
    prompt = "say it aloud"
    with trio.fail_after(TIMEOUT):
        async with client.realtime(model="rt-audio") as conn:
            turn = await conn.ask(prompt)

    words = echo(prompt).split()
    assert turn.transcript == echo(prompt)
    assert turn.text == ""
    assert len(turn.audio) == AUDIO_BYTES_PER_WORD * len(words)
    assert turn.audio.startswith(fake_pcm(words[0], AUDIO_BYTES_PER_WORD))
    assert turn.usage is not None and turn.usage.output_tokens == len(words)


async def test_eight_sessions_at_once_each_get_only_their_own_answers(client: Client) -> None:
    sessions = 8
    answers: dict[int, tuple[str, str]] = {}
    opened = 0
    all_open = trio.Event()

    async def session(index: int) -> None:
        nonlocal opened
        async with client.realtime(model="rt-text") as conn:
            opened += 1
            if opened == sessions:
                all_open.set()
            await all_open.wait()
            first = await conn.ask(f"session {index} speaks")
            second = await conn.ask(f"session {index} again")
            answers[index] = (first.text, second.text)

    with trio.fail_after(2 * TIMEOUT):
        async with trio.open_nursery() as nursery:
            for index in range(sessions):
                nursery.start_soon(session, index)

    assert answers == {
        index: (echo(f"session {index} speaks"), echo(f"session {index} again"))
        for index in range(sessions)
    }
    totals = client.usage_totals()["rt-text"]
    assert (totals.requests, totals.succeeded) == (2 * sessions, 2 * sessions)


async def start_long_answer(conn: Any) -> None:
    """Ask rt-long for its long answer and return after the first delta of it."""
    await conn.conversation.item.create(item=user_message("tell me everything"))
    await conn.response.create()
    async for event in conn:
        assert event.type != "response.done", "the long answer ended before the test left"
        if event.type == "response.output_text.delta":
            return
    pytest.fail("the session ended before the first delta")


async def still_works(client: Client) -> None:
    with trio.fail_after(TIMEOUT):
        async with client.realtime(model="rt-text") as conn:
            turn = await conn.ask("still here")
        completion = await client.complete(
            model="local-gpt", messages=[{"role": "user", "content": "still here"}]
        )
    assert turn.text == echo("still here")
    assert completion.choices[0].message.content == "Echo: still here"


async def test_breaking_out_mid_answer_leaves_promptly(client: Client) -> None:
    with trio.fail_after(TIMEOUT):
        async with client.realtime(model="rt-long") as conn:
            await start_long_answer(conn)
            leaving = trio.current_time()
        took = trio.current_time() - leaving

    assert took < PROMPT_EXIT
    await still_works(client)


async def test_a_cancellation_mid_answer_leaves_promptly(client: Client) -> None:
    with trio.fail_after(TIMEOUT):
        with trio.CancelScope() as scope:
            async with client.realtime(model="rt-long") as conn:
                await start_long_answer(conn)
                scope.cancel()
                leaving = trio.current_time()
                await trio.sleep_forever()
        took = trio.current_time() - leaving

    assert scope.cancelled_caught
    assert took < PROMPT_EXIT
    await still_works(client)


# --- the beta protocol, and the openai SDK ---------------------------------------------------


async def test_a_beta_session_speaks_beta_names_and_answers_right(client: Client) -> None:
    prompt = "beta words"
    with trio.fail_after(TIMEOUT):
        async with client.realtime(model="rt-text", beta=True) as conn:
            await conn.conversation.item.create(item=user_message(prompt))
            await conn.response.create()
            events = await collect_one_response(conn)
            turn = await conn.ask("beta again")

    types = [event.type for event in events]
    assert "response.text.delta" in types and "response.text.done" in types
    assert "response.output_text.delta" not in types
    assert "conversation.item.created" in types and "conversation.item.added" not in types
    deltas = [event.delta for event in events if event.type == "response.text.delta"]
    assert "".join(deltas) == echo(prompt)
    assert turn.text == echo("beta again")
    assert turn.usage is not None and turn.usage.output_tokens > 0


async def test_the_openai_sdk_and_ours_get_the_same_answer(stack: Stack, client: Client) -> None:
    prompt = f"same words both ways {uuid.uuid4().hex[:6]}"
    with trio.fail_after(SDK_TIMEOUT):
        done = await trio.run_process(
            [sys.executable, str(SDK_SCRIPT), stack.proxy_url, "rt-text", prompt],
            env={**os.environ, "OPENAI_API_KEY": stack.api_key},
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    sdk = json.loads(done.stdout)

    with trio.fail_after(TIMEOUT):
        async with client.realtime(model="rt-text") as conn:
            await conn.conversation.item.create(item=user_message(prompt))
            await conn.response.create()
            events = await collect_one_response(conn)
            turn = await conn.ask(prompt)

    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert sdk["text"] == "".join(deltas) == echo(prompt)
    assert sdk["types"] == [event.type for event in events]  # session.created first, in both
    assert turn.text == echo(prompt)
    assert events[-1].type == "response.done"
    usage = events[-1].response.usage
    assert usage is not None
    assert (sdk["usage"]["input_tokens"], sdk["usage"]["output_tokens"]) == (
        usage.input_tokens,
        usage.output_tokens,
    )
