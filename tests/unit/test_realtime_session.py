"""Realtime sessions against an in-process websocket server playing the proxy: the turn, the
raw events, the typed errors at ``async with`` and mid-session, leaving, and the records.

The server speaks the proxy's side as ../shared/reference/litellm-realtime-observed.md records
it: a 403 with no body for a refused key, an error event then close 1011 for an unknown model, a
close 1011 with no error event for an upstream that is down. Its behaviour is chosen by the model.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
import trio
import trio_websocket

from _fakes import COMPLETION, MESSAGES, SECRET, open_test_client
from trio_litellm import (
    AuthenticationError,
    BadRequestError,
    Client,
    ClientClosedError,
    InvalidRequestError,
    ModelNotFoundError,
    ProxyConnectionError,
    RealtimeClosedError,
    RequestTimeoutError,
)
from trio_litellm.realtime import (
    ErrorEvent,
    RealtimeEvent,
    ResponseDone,
    ResponseOutputTextDelta,
    ResponseOutputTextDone,
    SessionCreated,
)

PIECES = ["Echo", ": he", "llo"]


class Proxy:
    """The proxy's realtime side, one behaviour per model."""

    def __init__(self) -> None:
        self.received: list[Any] = []  # every frame a client sent, as received
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.closes: list[int | None] = []
        self.connected = trio.Event()
        self.two_closed = trio.Event()
        self.first_closed = trio.Event()

    async def handle(self, request: trio_websocket.WebSocketRequest) -> None:
        headers = {name.decode().lower(): value.decode() for name, value in request.headers}
        self.headers.append(headers)
        self.paths.append(request.path)
        model = request.path.partition("model=")[2]
        if headers.get("authorization") != f"Bearer {SECRET}" or model == "deny":
            await request.reject(403)
            return
        ws = await request.accept()
        self.connected.set()
        try:
            await self._session(ws, model)
        except trio_websocket.ConnectionClosed as exc:
            self.closes.append(exc.reason.code if exc.reason else None)
            self.first_closed.set()
            if len(self.closes) >= 2:
                self.two_closed.set()

    async def _session(self, ws: trio_websocket.WebSocketConnection, model: str) -> None:
        if model == "unknown":
            await send(
                ws,
                type="error",
                error={
                    "type": "server_error",
                    "message": "400: {'error': '_arealtime: Invalid model name passed in model=unknown'}",
                },
            )
            await ws.aclose(1011, "400: {'error': '_arealtime: Invalid model name")
            return
        if model == "upstream401":  # the upstream refused the proxy's key
            await send(
                ws,
                type="error",
                error={
                    "type": "server_error",
                    "message": "Upstream realtime handshake rejected with HTTP 401",
                },
            )
            await ws.aclose(1008, "Upstream realtime handshake rejected with HTTP 401")
            return
        if model == "down":
            await ws.aclose(1011, "Internal server error: [Errno 111] Connection refused")
            return
        if model != "silent":
            await send(
                ws,
                type="session.created",
                event_id="ev-1",
                session={"id": "sess-1", "model": model},
            )
        number = 0
        while True:
            frame = await ws.get_message()
            self.received.append(frame)
            event = json.loads(frame)
            if event["type"] == "session.update":
                await send(ws, type="session.updated", session=event["session"])
            elif event["type"] == "conversation.item.create":
                await send(ws, type="conversation.item.added", item=event["item"])
                await send(ws, type="conversation.item.done", item=event["item"])
            elif event["type"] == "response.create":
                number += 1
                await self._respond(ws, model, f"resp-{number}")
            elif event["type"] == "input_audio_buffer.commit":
                await send(ws, type="input_audio_buffer.committed", item_id="item-a")

    async def _respond(self, ws: trio_websocket.WebSocketConnection, model: str, rid: str) -> None:
        await send(ws, type="response.created", response={"id": rid, "status": "in_progress"})
        if model == "error":
            await send(
                ws,
                type="error",
                error={
                    "type": "invalid_request_error",
                    "code": "400",
                    "message": "bad response request",
                },
            )
            return
        for index, piece in enumerate(PIECES):
            if index == 2 and model == "drop":
                await ws._stream.aclose()  # no close frame: the TCP connection just ends
                return
            if index == 2 and model == "close1011":
                await ws.aclose(1011, "upstream boom")
                return
            if index == 2 and model == "relayed1011":  # as LiteLLM relays an upstream's close
                await send(
                    ws,
                    type="error",
                    error={
                        "type": "server_error",
                        "message": "upstream websocket closed with code 1011: upstream boom",
                    },
                )
                await ws.aclose(1011, "upstream boom")
                return
            await send(ws, type="response.output_text.delta", response_id=rid, delta=piece)
        if model == "big":
            await send(
                ws, type="response.output_audio.delta", response_id=rid, delta="A" * 3_000_000
            )
        await send(ws, type="rate_limits.updated", rate_limits=[])
        await send(ws, type="response.output_text.done", response_id=rid, text="".join(PIECES))
        await send(
            ws,
            type="response.done",
            response={
                "id": rid,
                "status": "completed",
                "usage": {"input_tokens": 12, "output_tokens": 5, "total_tokens": 17},
            },
        )


async def send(ws: trio_websocket.WebSocketConnection, **event: Any) -> None:
    await ws.send_message(json.dumps(event))


@asynccontextmanager
async def proxy_and_client(**options: Any) -> AsyncIterator[tuple[Proxy, Client]]:
    proxy = Proxy()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: trio_websocket.serve_websocket(
                proxy.handle,
                "127.0.0.1",
                0,
                None,
                max_message_size=64 * 1024 * 1024,
                task_status=task_status,
            )
        )
        url = f"http://127.0.0.1:{server.port}"
        answer = httpx2.Response(200, content=COMPLETION)
        async with open_test_client(lambda request: answer, proxy_url=url, **options) as client:
            yield proxy, client
        nursery.cancel_scope.cancel()


async def test_a_turn_with_ask_has_the_text_and_the_usage_and_is_recorded() -> None:
    async with proxy_and_client() as (proxy, client):
        with trio.fail_after(10):
            async with client.realtime("m") as conn:
                assert conn.session_id == "sess-1"
                first = await conn.recv()
                assert isinstance(first, SessionCreated)
                turn = await conn.ask("hello")
                second = await conn.ask("again")
        totals = client.usage_totals()["m"]
    assert turn.text == "Echo: hello"
    assert turn.usage is not None
    assert (turn.usage.input_tokens, turn.usage.output_tokens, turn.usage.total_tokens) == (
        12,
        5,
        17,
    )
    assert (turn.response_id, turn.status) == ("resp-1", "completed")
    assert second.response_id == "resp-2"
    assert totals.succeeded == 2
    assert (totals.prompt_tokens, totals.completion_tokens) == (24, 10)
    sent = [json.loads(frame) for frame in proxy.received]
    assert [event["type"] for event in sent] == [
        "conversation.item.create",
        "response.create",
        "conversation.item.create",
        "response.create",
    ]
    assert sent[0]["item"]["content"] == [{"type": "input_text", "text": "hello"}]
    assert all(isinstance(frame, str) for frame in proxy.received)  # text frames only
    assert proxy.headers[0]["authorization"] == f"Bearer {SECRET}"
    assert "openai-beta" not in proxy.headers[0]
    assert proxy.paths[0] == "/v1/realtime?model=m"
    assert proxy.closes == [1000]


async def test_the_raw_events_come_in_order_typed_and_unknown_ones_as_realtime_events() -> None:
    async with proxy_and_client() as (_, client):
        with trio.fail_after(10):
            async with client.realtime("m") as conn:
                await conn.session.update(session={"instructions": "Be brief."})
                await conn.conversation.item.create(
                    item={
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "x"}],
                    }
                )
                await conn.response.create()
                seen = []
                async for event in conn:
                    seen.append(event)
                    if isinstance(event, ResponseDone):
                        break
    kinds = [event.type for event in seen]
    assert kinds == [
        "session.created",
        "session.updated",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "rate_limits.updated",
        "response.output_text.done",
        "response.done",
    ]
    deltas = "".join(e.delta for e in seen if isinstance(e, ResponseOutputTextDelta))
    done = next(e for e in seen if isinstance(e, ResponseOutputTextDone))
    assert deltas == done.text == "Echo: he" + "llo"
    unknown = next(e for e in seen if isinstance(e, RealtimeEvent))
    assert unknown.data == {"type": "rate_limits.updated", "rate_limits": []}


async def test_a_refused_key_fails_at_async_with() -> None:
    async with proxy_and_client(api_key="sk-wrong-0000") as (_, client):
        with trio.fail_after(10), pytest.raises(AuthenticationError) as caught:
            async with client.realtime("m"):
                pytest.fail("the body must not run")
    assert caught.value.status == 403
    assert "sk-wrong-0000" not in str(caught.value)


async def test_an_unknown_model_fails_at_async_with() -> None:
    async with proxy_and_client() as (_, client):
        with trio.fail_after(10), pytest.raises(ModelNotFoundError) as caught:
            async with client.realtime("unknown"):
                pytest.fail("the body must not run")
    assert "Invalid model name" in str(caught.value)
    assert isinstance(caught.value.__cause__, RealtimeClosedError)
    assert caught.value.__cause__.code == 1011


async def test_an_upstream_that_is_down_fails_at_async_with() -> None:
    async with proxy_and_client() as (_, client):
        with trio.fail_after(10), pytest.raises(RealtimeClosedError) as caught:
            async with client.realtime("down"):
                pytest.fail("the body must not run")
    assert caught.value.code == 1011
    assert "Connection refused" in str(caught.value)


async def test_an_upstream_that_refuses_the_proxy_fails_at_async_with() -> None:
    async with proxy_and_client() as (_, client):
        with trio.fail_after(10), pytest.raises(RealtimeClosedError) as caught:
            async with client.realtime("upstream401"):
                pytest.fail("the body must not run")
    assert caught.value.code == 1008
    assert "Upstream realtime handshake rejected with HTTP 401" in str(caught.value)


async def test_a_session_that_never_starts_times_out_at_async_with() -> None:
    async with proxy_and_client() as (_, client):
        start = trio.current_time()
        with trio.fail_after(10), pytest.raises(RequestTimeoutError) as caught:
            async with client.realtime("silent", connect_timeout=0.5):
                pytest.fail("the body must not run")
        assert 0.5 <= trio.current_time() - start < 3.0
    assert "session.created" in str(caught.value)


async def test_a_closed_port_fails_fast_and_typed() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with open_test_client(
        lambda request: None, proxy_url=f"http://127.0.0.1:{port}"
    ) as client:
        with trio.fail_after(10), pytest.raises(ProxyConnectionError) as caught:
            async with client.realtime("m"):
                pytest.fail("the body must not run")
    assert f"127.0.0.1:{port}" in str(caught.value)


@pytest.mark.parametrize(
    ("model", "code"), [("drop", 1006), ("close1011", 1011), ("relayed1011", 1011)]
)
async def test_a_session_closed_mid_response_raises_with_the_partial_turn(
    model: str, code: int
) -> None:
    async with proxy_and_client() as (_, client):
        with trio.fail_after(10):
            async with client.realtime(model) as conn:
                with pytest.raises(RealtimeClosedError) as caught:
                    await conn.ask("hello")
                with pytest.raises(RealtimeClosedError):
                    await conn.recv()  # and it stays closed
        totals = client.usage_totals()[model]
    assert caught.value.code == code
    assert caught.value.partial.text == "Echo: he"
    assert totals.errors == {"RealtimeClosedError": 1}


async def test_an_error_event_is_an_event_for_recv_and_a_typed_error_for_ask() -> None:
    async with proxy_and_client() as (_, client):
        with trio.fail_after(10):
            async with client.realtime("error") as conn:
                await conn.response.create()
                events = [await conn.recv() for _ in range(3)]
                assert isinstance(events[-1], ErrorEvent)
                assert events[-1].error.message == "bad response request"
                with pytest.raises(BadRequestError, match="bad response request"):
                    await conn.ask("hello")


async def test_a_big_event_arrives_whole() -> None:
    async with proxy_and_client() as (_, client):
        with trio.fail_after(20):
            async with client.realtime("big") as conn:
                turn = await conn.ask("hello")
    assert len(turn.audio) == 3_000_000 * 3 // 4  # base64 "A"s decode to zero bytes


async def test_leaving_early_is_prompt_closes_with_1000_and_the_client_stays_usable() -> None:
    async with proxy_and_client() as (proxy, client):
        with trio.fail_after(10):
            async with client.realtime("m") as conn:
                await conn.response.create()
                async for event in conn:
                    if isinstance(event, ResponseOutputTextDelta):
                        break  # leave in the middle of a response
            with trio.move_on_after(0.2):  # a cancel while waiting for an event
                async with client.realtime("silent") as conn:
                    pytest.fail("silent never starts")
            async with client.realtime("m") as conn:
                assert (await conn.ask("again")).text == "Echo: hello"
        with trio.fail_after(5):
            await proxy.two_closed.wait()
        totals = client.usage_totals()["m"]
    assert proxy.closes[0] == 1000
    # The response left in the middle is recorded as a call left early is.
    assert (totals.succeeded, totals.errors) == (1, {"ClientClosedError": 1})


async def test_beta_sends_the_beta_header_and_audio_goes_as_base64() -> None:
    async with proxy_and_client() as (proxy, client):
        with trio.fail_after(10):
            async with client.realtime("m", beta=True) as conn:
                await conn.input_audio_buffer.append(audio=b"\x00\x01\x02")
                await conn.input_audio_buffer.commit()
                events = [await conn.recv() for _ in range(2)]
    assert proxy.headers[0]["openai-beta"] == "realtime=v1"
    assert json.loads(proxy.received[0]) == {"type": "input_audio_buffer.append", "audio": "AAEC"}
    assert events[1].type == "input_audio_buffer.committed"


async def test_a_bad_model_or_timeout_is_misuse() -> None:
    async with proxy_and_client() as (_, client):
        with pytest.raises(InvalidRequestError, match="model"):
            client.realtime("")
        with pytest.raises(InvalidRequestError, match="connect_timeout"):
            client.realtime("m", connect_timeout=-1)
        with pytest.raises(InvalidRequestError, match="connect_timeout"):
            client.realtime("m", connect_timeout=math.nan)


async def test_on_a_fleet_a_session_opens_on_a_proxy_that_answers() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    proxy = Proxy()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: trio_websocket.serve_websocket(
                proxy.handle, "127.0.0.1", 0, None, task_status=task_status
            )
        )
        live = f"http://127.0.0.1:{server.port}"
        for order in ([dead, live], [live, dead]):
            async with open_test_client(lambda request: None, proxy_url=order) as client:
                with trio.fail_after(10):
                    for _ in range(3):
                        async with client.realtime("m") as conn:
                            assert (await conn.ask("hi")).text == "Echo: hello"
                stats = {p.url: p for p in client.statistics().proxies}
            assert stats[live].in_flight == stats[dead].in_flight == 0
        nursery.cancel_scope.cancel()
    assert len(proxy.paths) == 6


async def test_a_connection_used_after_its_block_says_it_is_closed() -> None:
    async with proxy_and_client() as (_, client):
        with trio.fail_after(10):
            async with client.realtime("m") as conn:
                await conn.response.create()  # events pile up unread: the reader waits on us
                await trio.sleep(0.2)
        with pytest.raises(RealtimeClosedError, match="closed by the client") as caught:
            while True:
                await conn.recv()  # what was read before the close, then the close
        assert caught.value.code == 1000
        with pytest.raises(RealtimeClosedError):
            await conn.send({"type": "response.create"})
        assert [event async for event in conn] == []


async def test_a_cancelled_block_leaves_at_once_having_sent_its_close() -> None:
    async with proxy_and_client() as (proxy, client):
        with trio.fail_after(10):
            with trio.CancelScope() as scope:
                async with client.realtime("m") as conn:
                    await conn.ask("hello")
                    scope.cancel()
                    leaving = trio.current_time()
                    await trio.sleep_forever()
            took = trio.current_time() - leaving
            await proxy.first_closed.wait()
            assert (await client.complete(model="m", messages=MESSAGES)).text == "ok"
    assert scope.cancelled_caught
    assert took < 1.0
    assert proxy.closes == [1000]


async def test_the_debug_recorder_keeps_each_response_with_what_asked_for_it() -> None:
    async with proxy_and_client(record_last=10) as (_, client):
        with trio.fail_after(10):
            async with client.realtime("m") as conn:
                await conn.ask("hello")
        assert client.recorder is not None
        (entry,) = client.recorder.entries()
    assert entry.record.kind == "realtime"
    assert (entry.record.model, entry.record.prompt_tokens, entry.record.completion_tokens) == (
        "m",
        12,
        5,
    )
    assert entry.path == "/v1/realtime?model=m"
    assert json.loads(entry.request_body)["type"] == "response.create"
    assert entry.response_body is not None
    assert json.loads(entry.response_body)["type"] == "response.done"


async def test_closing_the_client_ends_a_session_left_open_in_another_task() -> None:
    proxy = Proxy()
    outcome: list[BaseException] = []

    async def session(client: Client, task_status: trio.TaskStatus[None]) -> None:
        try:
            async with client.realtime("m") as conn:
                await conn.ask("hello")
                task_status.started()
                await trio.sleep_forever()
        except ClientClosedError as exc:
            outcome.append(exc)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: trio_websocket.serve_websocket(
                proxy.handle, "127.0.0.1", 0, None, task_status=task_status
            )
        )
        with trio.fail_after(10):
            async with trio.open_nursery() as sessions:  # outlives the client's block
                async with open_test_client(
                    lambda request: None, proxy_url=f"http://127.0.0.1:{server.port}"
                ) as client:
                    await sessions.start(session, client)
            await proxy.first_closed.wait()
        nursery.cancel_scope.cancel()
    assert len(outcome) == 1
    assert "the client closed while the session was open" in str(outcome[0])
    assert proxy.closes == [1000]
