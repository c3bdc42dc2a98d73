"""The rt-* deployments relay the fake realtime upstream through the real proxy as observed.

A raw trio-websocket client (no trio_litellm code) talks to ``/v1/realtime`` on the proxy, so
these check the fake provider and litellm_config.yaml, not our client: a text turn arrives in
order with its deltas adding up to the text, and each failure deployment gives what
litellm-realtime-observed.md recorded for it (error events the proxy makes carry no event_id).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
import trio_websocket

from trio_litellm.testing._devstack import Stack

MiB = 1024 * 1024
TIMEOUT = 30

Event = dict[str, Any]


@asynccontextmanager
async def realtime(stack: Stack, model: str) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A raw WebSocket to the proxy's ``/v1/realtime?model=...`` with the master key.

    It owns its TCP stream and closes it itself: trio-websocket 0.12's client leaves its socket
    open when the server closes first, as the proxy does on upstream trouble.
    """
    target = urlsplit(stack.proxy_url)
    host, port = target.hostname or "127.0.0.1", target.port or 80
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream(host, port)
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(TIMEOUT):
                ws = await trio_websocket.wrap_client_stream(
                    nursery,
                    stream,
                    f"{host}:{port}",
                    f"/v1/realtime?model={model}",
                    extra_headers=[(b"Authorization", f"Bearer {stack.api_key}".encode())],
                    max_message_size=32 * MiB,
                    receive_buffer_size=65536,
                )
            try:
                yield ws
            finally:
                with trio.move_on_after(TIMEOUT):
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the nursery's: one error, the handshake's or the test's
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        await trio.aclose_forcefully(stream)


async def recv(ws: trio_websocket.WebSocketConnection) -> Event:
    with trio.fail_after(TIMEOUT):
        event: Event = json.loads(await ws.get_message())
    return event


async def send(ws: trio_websocket.WebSocketConnection, event: Event) -> None:
    await ws.send_message(json.dumps(event))


async def say(ws: trio_websocket.WebSocketConnection, text: str) -> None:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    await send(ws, {"type": "conversation.item.create", "item": item})
    await send(ws, {"type": "response.create"})


async def until_closed(ws: trio_websocket.WebSocketConnection) -> tuple[list[Event], Any]:
    """Every event until the connection closes, and the close reason."""
    events: list[Event] = []
    with pytest.raises(trio_websocket.ConnectionClosed) as info:
        while True:
            events.append(await recv(ws))
    return events, info.value.reason


def types(events: list[Event]) -> list[str]:
    return [event["type"] for event in events]


async def test_a_text_turn_arrives_in_order_and_its_deltas_add_up(stack: Stack) -> None:
    async with realtime(stack, "rt-text") as ws:
        created = await recv(ws)
        await send(ws, {"type": "session.update", "session": {"instructions": "Be brief."}})
        updated = await recv(ws)
        await say(ws, "hello over the relay")
        events = []
        while not events or events[-1]["type"] != "response.done":
            events.append(await recv(ws))

    assert created["type"] == "session.created"
    assert created["session"]["model"] == "fake-realtime"  # the upstream name, after openai/
    assert updated["type"] == "session.updated"
    assert updated["session"]["instructions"] == "Be brief."
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert types(events) == [
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
        *["response.output_text.delta"] * len(deltas),
        "response.output_text.done",
        "response.done",
    ]
    assert "".join(deltas) == events[-2]["text"] == "Echo: hello over the relay"
    assert len(deltas) == 5
    response = events[-1]["response"]
    assert response["status"] == "completed"
    usage = response["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (6, 5, 11)
    assert all(event.get("event_id") for event in [created, updated, *events])


async def test_close1011_mid_response_gives_an_error_event_then_close_1011(stack: Stack) -> None:
    async with realtime(stack, "rt-close1011") as ws:
        assert (await recv(ws))["type"] == "session.created"
        await say(ws, "one two three")
        events, reason = await until_closed(ws)

    assert types(events) == [
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
        "response.output_text.delta",
        "response.output_text.delta",
        "error",
    ]
    error = events[-1]
    assert "event_id" not in error  # made by the proxy, not relayed
    assert error["error"]["message"] == "upstream websocket closed with code 1011: upstream boom"
    assert (reason.code, reason.reason) == (1011, "upstream boom")


@pytest.mark.parametrize(
    ("model", "relayed_errors", "messages", "code", "reason"),
    [
        (
            "rt-drop",
            0,
            ["upstream websocket closed with code 1006: no close frame received or sent"],
            1011,
            "no close frame received or sent",
        ),
        (
            "rt-reject401",
            0,
            ["Upstream realtime handshake rejected with HTTP 401"],
            1008,
            "Upstream realtime handshake rejected with HTTP 401",
        ),
        (
            "rt-errorfirst",
            1,
            ["upstream websocket closed with code 1008: invalid_api_key"],
            1008,
            "invalid_api_key",
        ),
        ("rt-down", 0, [], 1011, "Internal server error: [Errno 111] Connection refused"),
    ],
)
async def test_each_failure_deployment_ends_as_the_proxy_was_seen_to_end_it(
    stack: Stack,
    model: str,
    relayed_errors: int,
    messages: list[str],
    code: int,
    reason: str,
) -> None:
    async with realtime(stack, model) as ws:
        await say(ws, "one two three")
        events, closed = await until_closed(ws)

    errors = [e for e in events if e["type"] == "error"]
    relayed = [e for e in errors if "event_id" in e]  # the fake's own error events
    made = [e["error"]["message"] for e in errors if "event_id" not in e]
    assert len(relayed) == relayed_errors
    assert made == messages
    assert (closed.code, closed.reason) == (code, reason)
    if model == "rt-drop":
        deltas = [e for e in events if e["type"] == "response.output_text.delta"]
        assert len(deltas) == 2


async def test_silent_sends_no_session_created_yet_the_turn_completes(stack: Stack) -> None:
    async with realtime(stack, "rt-silent") as ws:
        await say(ws, "quiet")
        events = []
        while not events or events[-1]["type"] != "response.done":
            events.append(await recv(ws))

    assert "session.created" not in types(events)
    assert events[-2]["text"] == "Echo: quiet"
