"""The fake provider's realtime endpoint: the GA event sequence, audio, and every fault.

Each test starts the fake provider in-process on a free port and talks to ``/v1/realtime`` with
a plain trio-websocket client, as the LiteLLM proxy would (no proxy here: that is the
integration tests' business).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
import trio
import trio_websocket
from hypothesis import given
from hypothesis import strategies as st

from trio_litellm.testing.fake_provider import FakeProviderConfig, serve_fake_provider
from trio_litellm.testing.fake_provider._directives import (
    DirectiveError,
    RealtimeDirectives,
    resolve_realtime,
)
from trio_litellm.testing.fake_provider._realtime import is_websocket_upgrade
from trio_litellm.testing.fake_provider._realtime_session import (
    AUDIO_BYTES_PER_DELTA,
    answer_pieces,
    audio_for,
    echo_text,
)

MiB = 1024 * 1024
TIMEOUT = 10

# --- helpers -------------------------------------------------------------------------------


@pytest.fixture
async def url(nursery: trio.Nursery) -> str:
    """The fake provider's base URL (http://127.0.0.1:<port>)."""
    base: str = await nursery.start(serve_fake_provider, FakeProviderConfig(port=0))
    return base


class Session:
    """A raw client: send dicts, receive parsed events."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send_message(json.dumps(event))

    async def recv(self) -> dict[str, Any]:
        with trio.fail_after(TIMEOUT):
            event: dict[str, Any] = json.loads(await self.ws.get_message())
        return event

    async def until(self, type_: str) -> list[dict[str, Any]]:
        """Every event up to and including the first of ``type_``."""
        events = []
        while True:
            events.append(await self.recv())
            if events[-1]["type"] == type_:
                return events

    async def say(self, text: str) -> None:
        """Add a user message and ask for a response."""
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        }
        await self.send({"type": "conversation.item.create", "item": item})
        await self.send({"type": "response.create"})

    async def closed(self) -> trio_websocket.CloseReason:
        """Read events until the connection closes; the close reason."""
        with pytest.raises(trio_websocket.ConnectionClosed) as info:
            while True:
                await self.recv()
        return info.value.reason


@asynccontextmanager
async def session(
    url: str, model: str = "fake-realtime", *, path: str = "/v1/realtime"
) -> AsyncIterator[Session]:
    """A connected raw client, with a message limit that takes the 3 MB event.

    It owns its TCP stream and closes it itself: trio-websocket 0.12's client leaves its socket
    open when the server closes first (``open_websocket`` would leak one per such test).
    """
    host, _, port = url.removeprefix("http://").partition(":")
    stream = await trio.open_tcp_stream(host, int(port))
    try:
        async with trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(
                nursery,
                stream,
                f"{host}:{port}",
                f"{path}?model={model}",
                max_message_size=32 * MiB,
                receive_buffer_size=65536,
            )
            try:
                yield Session(ws)
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


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def deltas(events: list[dict[str, Any]], type_: str) -> list[str]:
    return [event["delta"] for event in events if event["type"] == type_]


# --- pure parts ----------------------------------------------------------------------------


def test_plain_model_names_carry_no_directives_but_audio_in_the_name_asks_for_audio() -> None:
    assert resolve_realtime("fake-realtime") == RealtimeDirectives()
    assert resolve_realtime("fake-realtime-audio") == RealtimeDirectives(audio=True)
    assert resolve_realtime("close_after=2,close_code=4000") == RealtimeDirectives(
        close_after=2, close_code=4000
    )


@pytest.mark.parametrize(
    ("model", "key"),
    [("chunks=3", "chunks"), ("close_code=999", "close_code"), ("deltas=0", "deltas")],
)
def test_unknown_realtime_keys_and_bad_values_name_the_key(model: str, key: str) -> None:
    with pytest.raises(DirectiveError) as info:
        resolve_realtime(model)
    assert info.value.key == key


@given(st.text(alphabet=" ab\u00e9", max_size=30), st.integers(1, 500))
def test_deltas_n_gives_exactly_n_pieces_of_the_repeated_echo(text: str, n: int) -> None:
    answer = echo_text(text, n)
    pieces = answer_pieces(answer, n)
    assert len(pieces) == n
    assert "".join(pieces) == answer
    assert answer.startswith(echo_text(text))


def test_the_upgrade_is_recognised_from_the_request_head() -> None:
    head = b"GET /v1/realtime?model=x HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\n\r\n"
    assert is_websocket_upgrade(head)
    assert not is_websocket_upgrade(b"POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\n\r\n")
    assert not is_websocket_upgrade(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n")  # incomplete


# --- a text turn ---------------------------------------------------------------------------


async def test_a_text_turn_streams_the_echo_in_ga_events(url: str) -> None:
    async with session(url) as s:
        created = await s.recv()
        await s.say("hello  there")
        events = await s.until("response.done")

    assert created["type"] == "session.created"
    assert created["session"]["model"] == "fake-realtime"
    assert created["session"]["output_modalities"] == ["text"]
    assert types(events) == [
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
        *["response.output_text.delta"] * 3,
        "response.output_text.done",
        "response.done",
    ]
    assert deltas(events, "response.output_text.delta") == ["Echo:", " hello", " there"]
    assert events[-2]["text"] == "Echo: hello there"
    response = events[-1]["response"]
    assert response["status"] == "completed"
    assert response["id"] == events[2]["response"]["id"]
    assert response["output"][0]["content"] == [
        {"type": "output_text", "text": "Echo: hello there"}
    ]
    assert response["usage"]["input_tokens"] == 2
    assert response["usage"]["output_tokens"] == 3
    assert response["usage"]["total_tokens"] == 5


async def test_every_event_has_a_unique_event_id(url: str) -> None:
    async with session(url) as s:
        events = [await s.recv()]
        await s.say("hi")
        events += await s.until("response.done")
        await s.send({"type": "no.such.event"})
        events.append(await s.recv())

    ids = [event["event_id"] for event in events]
    assert all(isinstance(i, str) and i for i in ids)
    assert len(set(ids)) == len(ids)


async def test_the_conversation_grows_so_a_second_turn_counts_more_input(url: str) -> None:
    async with session(url) as s:
        await s.recv()
        await s.send({"type": "session.update", "session": {"instructions": "Be brief."}})
        updated = await s.recv()
        await s.say("one")
        first = (await s.until("response.done"))[-1]["response"]["usage"]
        await s.say("two")
        second = await s.until("response.done")

    assert updated["type"] == "session.updated"
    assert updated["session"]["instructions"] == "Be brief."
    assert first["input_tokens"] == 3  # "Be brief." + "one"
    assert second[-2]["text"] == "Echo: two"
    assert second[-1]["response"]["usage"]["input_tokens"] == 3 + 2 + 1  # + "Echo: one", "two"


async def test_items_can_be_retrieved_truncated_and_deleted(url: str) -> None:
    async with session(url) as s:
        await s.recv()
        item = {"id": "item_mine", "type": "message", "role": "user", "content": []}
        await s.send({"type": "conversation.item.create", "item": item})
        added, done = await s.recv(), await s.recv()
        await s.send({"type": "conversation.item.retrieve", "item_id": "item_mine"})
        retrieved = await s.recv()
        await s.send(
            {"type": "conversation.item.truncate", "item_id": "item_mine", "audio_end_ms": 5}
        )
        truncated = await s.recv()
        await s.send({"type": "conversation.item.delete", "item_id": "item_mine"})
        deleted = await s.recv()
        await s.send({"type": "conversation.item.delete", "item_id": "item_mine"})
        missing = await s.recv()

    assert added["item"]["id"] == done["item"]["id"] == "item_mine"
    assert added["previous_item_id"] is None
    assert retrieved["item"]["id"] == "item_mine"
    assert (truncated["type"], truncated["audio_end_ms"]) == ("conversation.item.truncated", 5)
    assert (deleted["type"], deleted["item_id"]) == ("conversation.item.deleted", "item_mine")
    assert missing["type"] == "error"
    assert missing["error"]["code"] == "item_not_found"


async def test_unknown_types_and_bad_json_get_error_events_and_the_session_goes_on(
    url: str,
) -> None:
    async with session(url) as s:
        await s.recv()
        await s.send({"type": "no.such.event", "event_id": "evt_client_1"})
        unknown = await s.recv()
        await s.ws.send_message("{not json")
        bad = await s.recv()
        await s.send({"type": "response.cancel"})
        cancel = await s.recv()
        await s.say("still here")
        events = await s.until("response.done")

    assert unknown["type"] == "error"
    assert unknown["error"]["param"] == "type"
    assert unknown["error"]["event_id"] == "evt_client_1"
    assert "no.such.event" in unknown["error"]["message"]
    assert (bad["type"], bad["error"]["code"]) == ("error", "invalid_json")
    assert cancel["error"]["code"] == "response_cancel_not_active"
    assert events[-2]["text"] == "Echo: still here"


# --- audio ---------------------------------------------------------------------------------


def check_audio_turn(events: list[dict[str, Any]], text: str) -> None:
    transcript = deltas(events, "response.output_audio_transcript.delta")
    audio = [base64.b64decode(d) for d in deltas(events, "response.output_audio.delta")]
    assert "".join(transcript) == text
    assert audio == [audio_for(piece) for piece in transcript]
    assert all(len(chunk) == AUDIO_BYTES_PER_DELTA for chunk in audio)
    assert "response.output_text.delta" not in types(events)
    assert types(events)[-3:] == [
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.done",
    ]
    assert events[-2]["transcript"] == text
    content = events[-1]["response"]["output"][0]["content"]
    assert content == [{"type": "output_audio", "transcript": text}]


async def test_an_audio_model_name_answers_in_audio_with_a_transcript(url: str) -> None:
    async with session(url, "fake-realtime-audio") as s:
        created = await s.recv()
        await s.say("sing it")
        events = await s.until("response.done")

    assert created["session"]["output_modalities"] == ["audio"]
    check_audio_turn(events, "Echo: sing it")


@pytest.mark.parametrize(
    "settings",
    [{"output_modalities": ["audio"]}, {"modalities": ["text", "audio"]}],
    ids=["ga", "beta"],
)
async def test_a_session_update_can_ask_for_audio(url: str, settings: dict[str, Any]) -> None:
    async with session(url) as s:
        await s.recv()
        await s.send({"type": "session.update", "session": settings})
        updated = await s.recv()
        await s.say("sing it")
        events = await s.until("response.done")

    assert updated["session"]["output_modalities"] == ["audio"]
    check_audio_turn(events, "Echo: sing it")


async def test_response_create_can_ask_for_text_in_an_audio_session(url: str) -> None:
    async with session(url, "fake-realtime-audio") as s:
        await s.recv()
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}
        await s.send({"type": "conversation.item.create", "item": item})
        await s.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        events = await s.until("response.done")

    assert deltas(events, "response.output_text.delta") == ["Echo:", " x"]


async def test_appended_audio_is_silent_until_committed(url: str) -> None:
    chunk = base64.b64encode(b"\x00\x01" * 3 * MiB).decode()  # a 6 MiB buffer, 8 MiB of base64
    async with session(url) as s:
        await s.recv()
        await s.send({"type": "input_audio_buffer.commit"})
        empty = await s.recv()
        await s.send({"type": "input_audio_buffer.append", "audio": chunk})
        await s.send({"type": "input_audio_buffer.commit"})
        committed = await s.recv()
        await s.send({"type": "input_audio_buffer.append", "audio": "not base64!"})
        invalid = await s.recv()
        await s.send({"type": "input_audio_buffer.clear"})
        cleared = await s.recv()

    assert empty["error"]["code"] == "input_audio_buffer_commit_empty"
    assert committed["type"] == "input_audio_buffer.committed"
    assert committed["item_id"]
    assert (invalid["type"], invalid["error"]["code"]) == ("error", "invalid_value")
    assert cleared["type"] == "input_audio_buffer.cleared"


# --- directives ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "code", "reason"),
    [
        ("close_after=2", 1011, "upstream boom"),
        ("close_after=2,close_code=4000", 4000, "upstream boom"),
    ],
)
async def test_close_after_closes_mid_response(
    url: str, model: str, code: int, reason: str
) -> None:
    async with session(url, model) as s:
        await s.recv()
        await s.say("one two three")
        events = await s.until("response.created")
        events.append(await s.recv())
        events.append(await s.recv())
        close = await s.closed()

    assert types(events)[-3:] == ["response.created", *["response.output_text.delta"] * 2]
    assert (close.code, close.reason) == (code, reason)


async def test_drop_after_ends_the_tcp_connection_without_a_close_frame(url: str) -> None:
    async with session(url, "drop_after=2") as s:
        await s.recv()
        await s.say("one two three")
        events = await s.until("response.created")
        events += [await s.recv(), await s.recv()]
        close = await s.closed()

    assert deltas(events, "response.output_text.delta") == ["Echo:", " one"]
    assert close.code == 1006


async def test_status_refuses_the_upgrade_with_that_http_status(url: str) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(trio_websocket.ConnectionRejected) as info:
        async with session(url, "status=401"):
            pass

    assert info.value.status_code == 401
    assert info.value.body is not None
    assert json.loads(info.value.body)["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("model", "path", "status"),
    [
        ("fake-realtime", "/v1/other", 404),
        ("", "/v1/realtime", 400),
        ("colour=red", "/v1/realtime", 400),
    ],
    ids=["path", "no-model", "bad-directive"],
)
async def test_bad_paths_models_and_directives_are_refused(
    url: str, model: str, path: str, status: int
) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(trio_websocket.ConnectionRejected) as info:
        async with session(url, model, path=path):
            pass

    assert info.value.status_code == status


async def test_error_first_sends_an_error_instead_of_session_created_then_closes(url: str) -> None:
    async with session(url, "error_first=1") as s:
        error = await s.recv()
        close = await s.closed()

    assert error["type"] == "error"
    assert error["error"]["code"] == "invalid_api_key"
    assert (close.code, close.reason) == (1008, "invalid_api_key")


async def test_silent_never_sends_session_created_but_answers(url: str) -> None:
    async with session(url, "silent=1") as s:
        await s.say("hi")
        events = await s.until("response.done")

    assert types(events)[0] == "conversation.item.added"
    assert "session.created" not in types(events)
    assert events[-2]["text"] == "Echo: hi"


async def test_deltas_sends_exactly_that_many_text_deltas(url: str) -> None:
    async with session(url, "deltas=1000") as s:
        await s.recv()
        await s.say("long")
        events = await s.until("response.done")

    pieces = deltas(events, "response.output_text.delta")
    assert len(pieces) == 1000
    assert "".join(pieces) == events[-2]["text"] == echo_text("long", 1000)


async def test_big_audio_sends_one_event_of_about_three_megabytes(url: str) -> None:
    async with session(url, "big_audio=2250000") as s:
        await s.recv()
        await s.say("big")
        events = await s.until("response.done")

    audio = deltas(events, "response.output_audio.delta")
    assert len(audio) == 1
    assert len(audio[0]) == 3_000_000
    assert base64.b64decode(audio[0]) == audio_for("Echo: big", 2_250_000)
    assert "".join(deltas(events, "response.output_audio_transcript.delta")) == "Echo: big"


async def test_tps_paces_the_deltas(url: str) -> None:
    async with session(url, "tps=50") as s:
        await s.recv()
        await s.say("a b c d e")
        await s.until("response.created")
        start = trio.current_time()
        await s.until("response.done")
        elapsed = trio.current_time() - start

    assert elapsed >= 5 / 50  # six deltas, five pauses of 1/50 s


async def test_response_cancel_ends_a_streaming_response_with_what_was_sent(url: str) -> None:
    async with session(url, "tps=20") as s:
        await s.recv()
        await s.say("a b c d e f g h")
        events = await s.until("response.output_text.delta")
        await s.send({"type": "response.cancel"})
        events += await s.until("response.done")
        await s.send({"type": "response.cancel"})
        late = await s.recv()

    sent = deltas(events, "response.output_text.delta")
    assert 1 <= len(sent) < 9
    assert "response.output_text.done" not in types(events)
    response = events[-1]["response"]
    assert response["status"] == "cancelled"
    assert response["status_details"]["reason"] == "client_cancelled"
    assert response["output"][0]["content"][0]["text"] == "".join(sent)
    assert response["usage"]["output_tokens"] == len("".join(sent).split())
    assert late["error"]["code"] == "response_cancel_not_active"


async def test_client_events_are_answered_while_a_response_streams(url: str) -> None:
    async with session(url, "tps=20") as s:
        await s.recv()
        await s.say("a b c d")
        await s.until("response.output_text.delta")
        await s.send({"type": "response.create"})
        await s.send({"type": "session.update", "session": {"instructions": "x"}})
        events = await s.until("response.done")

    assert types(events).index("error") < types(events).index("session.updated")
    error = events[types(events).index("error")]
    assert error["error"]["code"] == "conversation_already_has_active_response"
    assert types(events).index("session.updated") < types(events).index("response.done")
    assert events[-1]["response"]["status"] == "completed"


# --- the server around it ------------------------------------------------------------------


async def test_sessions_at_once_stay_apart(url: str) -> None:
    texts: dict[int, str] = {}

    async def one(i: int) -> None:
        async with session(url) as s:
            await s.recv()
            await s.say(f"session {i}")
            texts[i] = (await s.until("response.done"))[-2]["text"]

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(one, i)

    assert texts == {i: f"Echo: session {i}" for i in range(8)}


async def test_http_and_realtime_share_the_port_and_the_stats(url: str) -> None:
    async with session(url, "fake-realtime") as s:
        await s.recv()
    async with session(url, "close_after=0") as s:
        await s.recv()
        await s.say("x")
        await s.closed()
    async with httpx2.AsyncClient(base_url=url, timeout=TIMEOUT) as http:
        body = {"model": "echo", "messages": [{"role": "user", "content": "ping"}]}
        answer = await http.post("/v1/chat/completions", json=body)
        stats = (await http.get("/_stats")).json()

    assert answer.json()["choices"][0]["message"]["content"] == "Echo: ping"
    assert stats["by_path"]["/v1/realtime"] == 2
    assert stats["by_model"]["close_after=0"] == 1
    assert stats["faults"]["realtime_close"] == 1
    assert stats["requests"] == 3
