"""FastTransport: the httptools connection pool behind httpx2, against real sockets in-process.

The fake provider serves the ordinary traffic (keep-alive, streams, faults); small raw servers
written here serve the edge cases byte for byte (HTTP/1.0, ``Connection: close``, trailers,
interim answers, malformed answers, a server that closes idle connections). Steps are ordered
with ``wait_all_tasks_blocked``; real time passes only where a timeout is what is under test.
"""

from __future__ import annotations

import json
import math
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
import trio.testing

from _fakes import Peer, raw_server
from trio_litellm._fasthttp import FastTransport, _exchange, _pool
from trio_litellm.testing.fake_provider import FakeProviderConfig, serve_fake_provider

# --- helpers -------------------------------------------------------------------------------


def pool(**settings: Any) -> FastTransport:
    defaults: dict[str, Any] = {
        "max_connections": 10,
        "max_keepalive_connections": None,
        "keepalive_expiry": 5.0,
    }
    return FastTransport(**(defaults | settings))


def client(url: str, transport: FastTransport, **settings: Any) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(base_url=url, transport=transport, **({"timeout": 5} | settings))


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "echo", "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
async def url(nursery: trio.Nursery) -> str:
    found: str = await nursery.start(serve_fake_provider, FakeProviderConfig(port=0))
    return found


async def server_stats(http: httpx2.AsyncClient) -> dict[str, Any]:
    stats: dict[str, Any] = (await http.get("/_stats")).json()
    return stats


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def answer_ok_forever(peer: Peer) -> None:
    while await peer.request() is not None:
        await peer.send(OK)


# --- keep-alive and the pool ---------------------------------------------------------------


async def test_sequential_requests_share_one_keep_alive_connection(url: str) -> None:
    transport = pool()
    async with client(url, transport) as http:
        for n in range(20):
            response = await http.post("/v1/chat/completions", json=chat(f"hello {n}"))
            assert response.status_code == 200
            assert response.json()["choices"][0]["message"]["content"] == f"Echo: hello {n}"
            assert response.http_version == "HTTP/1.1"
            assert response.reason_phrase == "OK"
        stats = await server_stats(http)
        assert stats["connections"] == 1
        assert (transport.open_connections, transport.busy_connections) == (1, 0)
    assert transport.open_connections == 0


async def test_max_connections_holds_under_50_concurrent_requests(url: str) -> None:
    transport = pool(max_connections=5)
    most = 0
    async with client(url, transport) as http:

        async def one(n: int) -> None:
            nonlocal most
            body = chat(f"[fake latency=0.02] n{n}")
            response = await http.post("/v1/chat/completions", json=body)
            assert response.status_code == 200
            most = max(most, transport.open_connections)

        async with trio.open_nursery() as nursery:
            for n in range(50):
                nursery.start_soon(one, n)
            await trio.testing.wait_all_tasks_blocked()
            assert transport.open_connections == 5
        stats = await server_stats(http)
    assert most <= 5
    assert stats["connections"] <= 5
    assert stats["requests"] == 50


async def test_waiting_requests_are_served_in_arrival_order(url: str) -> None:
    transport = pool(max_connections=1)
    order: list[int] = []
    async with client(url, transport) as http:
        body = chat("[fake stall_after=1 stall=30] hold the only connection", stream=True)
        async with http.stream("POST", "/v1/chat/completions", json=body) as held:
            async with trio.open_nursery() as nursery:

                async def one(n: int) -> None:
                    await http.get("/v1/models")
                    order.append(n)

                for n in range(3):
                    nursery.start_soon(one, n)
                    await trio.testing.wait_all_tasks_blocked()
                assert transport.busy_connections == 1
                await held.aclose()  # closes the stalled connection and frees the slot
        assert transport.open_connections == 1
    assert order == [0, 1, 2]


async def test_pool_timeout_when_every_connection_is_busy(url: str) -> None:
    transport = pool(max_connections=1)
    async with client(url, transport) as http:
        body = chat("[fake stall_after=1 stall=30] hold", stream=True)
        async with http.stream("POST", "/v1/chat/completions", json=body):
            with pytest.raises(httpx2.PoolTimeout):
                await http.get("/v1/models", timeout=httpx2.Timeout(5, pool=0))
        assert (transport.open_connections, transport.busy_connections) == (0, 0)
        assert (await http.get("/v1/models")).status_code == 200


async def test_a_cancelled_waiter_leaves_the_line(url: str) -> None:
    transport = pool(max_connections=1)
    async with client(url, transport) as http:
        body = chat("[fake stall_after=1 stall=30] hold", stream=True)
        async with http.stream("POST", "/v1/chat/completions", json=body) as held:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(http.get, "/v1/models")
                    await trio.testing.wait_all_tasks_blocked()
                    scope.cancel()
            await held.aclose()
        assert (transport.open_connections, transport.busy_connections) == (0, 0)
        assert (await http.get("/v1/models")).status_code == 200
        assert transport.open_connections == 1


async def test_idle_connections_beyond_max_keepalive_are_closed(url: str) -> None:
    transport = pool(max_connections=5, max_keepalive_connections=2)
    async with client(url, transport) as http:

        async def one(n: int) -> None:
            await http.post("/v1/chat/completions", json=chat(f"[fake latency=0.02] {n}"))

        async with trio.open_nursery() as nursery:
            for n in range(5):
                nursery.start_soon(one, n)
            await trio.testing.wait_all_tasks_blocked()
            assert transport.open_connections == 5
        assert transport.open_connections == 2
    assert transport.busy_connections == 0


async def test_an_idle_connection_past_keepalive_expiry_is_not_reused(
    url: str, mock_clock: trio.testing.MockClock
) -> None:
    transport = pool(keepalive_expiry=5.0)
    async with client(url, transport) as http:
        await http.get("/v1/models")
        mock_clock.jump(4)
        await http.get("/v1/models")
        mock_clock.jump(6)
        await http.get("/v1/models")
        assert (await server_stats(http))["connections"] == 2


async def test_a_connection_the_server_closed_while_idle_is_not_used(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def one_request_then_close(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK)

    checks: list[bool] = []
    original = _pool.has_data_or_eof

    def spy(sock: Any) -> bool:
        checks.append(original(sock))
        return checks[-1]

    server = await raw_server(nursery, one_request_then_close)
    monkeypatch.setattr(_pool, "has_data_or_eof", spy)
    async with client(server.url, pool()) as http:
        assert (await http.get("/")).text == "ok"
        await trio.testing.wait_all_tasks_blocked()
        assert (await http.get("/")).text == "ok"
    assert checks == [True]
    assert len(server.peers) == 2


async def test_a_reused_connection_found_reset_by_the_first_write_is_retried_once(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def one_request_then_reset(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK)
        linger = struct.pack("ii", 1, 0)  # close with a reset: the next write fails at once
        peer.stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)

    server = await raw_server(nursery, one_request_then_reset)
    monkeypatch.setattr(_pool, "has_data_or_eof", lambda sock: False)  # the race: missed
    async with client(server.url, pool()) as http:
        assert (await http.post("/", content=b"first")).text == "ok"
        await trio.testing.wait_all_tasks_blocked()
        assert (await http.post("/", content=b"second")).text == "ok"
    assert len(server.peers) == 2
    assert server.peers[1].requests[0].endswith(b"second")


async def test_a_reused_connection_closed_after_the_request_left_is_not_retried(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def one_request_then_close(peer: Peer) -> None:
        await peer.request()
        await peer.send(OK)

    server = await raw_server(nursery, one_request_then_close)
    monkeypatch.setattr(_pool, "has_data_or_eof", lambda sock: False)  # the race: missed
    transport = pool()
    async with client(server.url, transport) as http:
        assert (await http.post("/", content=b"first")).text == "ok"
        await trio.testing.wait_all_tasks_blocked()
        # The write went out and only the read found the close: the server might have read it.
        with pytest.raises((httpx2.RemoteProtocolError, httpx2.ReadError)):
            await http.post("/", content=b"second")
    assert len(server.peers) == 1
    assert transport.open_connections == 0


async def test_a_fresh_connection_that_fails_is_not_retried(nursery: trio.Nursery) -> None:
    async def close_at_once(peer: Peer) -> None:
        await peer.request()

    server = await raw_server(nursery, close_at_once)
    transport = pool()
    async with client(server.url, transport) as http:
        with pytest.raises(httpx2.RemoteProtocolError, match="before the end of a response"):
            await http.get("/")
    assert len(server.peers) == 1
    assert transport.open_connections == 0


# --- request bodies ------------------------------------------------------------------------


async def test_a_request_with_its_body_in_memory_is_one_send(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[Any, bytes]] = []
    with trio.socket.socket() as probe:
        socket_type = type(probe)
    original_send, original_send_all = socket_type.send, trio.SocketStream.send_all

    async def spy_send(self: Any, data: Any, *args: Any) -> int:
        sent.append((self, bytes(data)))
        result: int = await original_send(self, data, *args)
        return result

    async def spy_send_all(self: trio.SocketStream, data: Any) -> None:
        sent.append((self.socket, bytes(data)))
        await original_send_all(self, data)

    monkeypatch.setattr(socket_type, "send", spy_send)
    monkeypatch.setattr(trio.SocketStream, "send_all", spy_send_all)
    transport = pool()
    async with client(url, transport) as http:
        for n in range(3):
            await http.post("/v1/chat/completions", json=chat(f"one write {n}"))
        (conn,) = transport.connections
        ours = [data for sock, data in sent if sock is conn.socket]
    assert len(ours) == 3
    assert all(data.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n") for data in ours)
    assert all(data.endswith(b'"}]}') for data in ours)


async def test_a_streamed_request_body_goes_chunked(nursery: trio.Nursery) -> None:
    async def read_chunked(peer: Peer) -> None:
        while not peer.buffer.endswith(b"\r\n0\r\n\r\n"):
            assert await peer._more()
        await peer.send(OK)

    server = await raw_server(nursery, read_chunked)

    async def pieces() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b""
        yield b"world"

    async with client(server.url, pool()) as http:
        response = await http.post("/upload", content=pieces())
        assert response.text == "ok"
    head, _, body = server.peers[0].buffer.partition(b"\r\n\r\n")
    assert b"\r\nTransfer-Encoding: chunked" in head
    assert b"Content-Length" not in head
    assert body == b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"


@pytest.mark.parametrize("streamed", [False, True])
async def test_an_early_answer_to_a_body_the_server_will_not_read_is_returned(
    nursery: trio.Nursery, streamed: bool
) -> None:
    async def refuse(peer: Peer) -> None:
        while b"\r\n\r\n" not in peer.buffer:
            assert await peer._more()
        await peer.send(
            b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbig!"
        )  # and close with the body unread: a reset

    server = await raw_server(nursery, refuse)

    async def pieces() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"x" * 65536

    content: Any = pieces() if streamed else b"x" * 6_553_600
    transport = pool()
    async with client(server.url, transport) as http:
        response = await http.post("/upload", content=content)
        assert (response.status_code, response.text) == (413, "big!")
        assert transport.open_connections == 0


async def test_a_streamed_request_body_is_accepted_by_a_real_server(url: str) -> None:
    payload = json.dumps(chat("streamed up")).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 7):
            yield payload[start : start + 7]

    async with client(url, pool()) as http:
        response = await http.post(
            "/v1/chat/completions", content=pieces(), headers={"content-type": "application/json"}
        )
    assert response.json()["choices"][0]["message"]["content"] == "Echo: streamed up"


# --- response bodies -----------------------------------------------------------------------


async def test_sse_arrives_chunk_by_chunk_without_buffering(nursery: trio.Nursery) -> None:
    acks_in, acks_out = trio.open_memory_channel[None](math.inf)

    async def sse(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            for n in range(3):
                event = b"data: %d\n\n" % n
                await peer.send(b"%x\r\n%b\r\n" % (len(event), event))
                await acks_out.receive()  # the next event only once the client saw this one
            await peer.send(b"0\r\n\r\n")

    server = await raw_server(nursery, sse)
    transport = pool()
    seen: list[bytes] = []
    async with client(server.url, transport) as http:
        with trio.fail_after(5):
            async with http.stream("GET", "/events") as response:
                async for piece in response.aiter_bytes():
                    seen.append(piece)
                    acks_in.send_nowait(None)
        assert (transport.open_connections, transport.busy_connections) == (1, 0)
    assert seen == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]


async def test_a_fake_provider_stream_is_read_whole_and_the_connection_kept(url: str) -> None:
    transport = pool()
    async with client(url, transport) as http:
        body = chat("one two three four", stream=True)
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            text = b"".join([piece async for piece in response.aiter_bytes()]).decode()
        assert text.endswith("data: [DONE]\n\n")
        assert "four" in text
        assert (await server_stats(http))["connections"] == 1


async def test_content_length_body(nursery: trio.Nursery) -> None:
    body = bytes(range(256)) * 1000

    async def big(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))

    server = await raw_server(nursery, big)
    async with client(server.url, pool()) as http:
        assert (await http.get("/a")).content == body
        assert (await http.get("/b")).content == body
    assert len(server.peers) == 1


async def test_chunked_body_with_trailers(nursery: trio.Nursery) -> None:
    async def chunked(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
                b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Sum: abc\r\n\r\n"
            )

    server = await raw_server(nursery, chunked)
    async with client(server.url, pool()) as http:
        for _ in range(2):
            response = await http.get("/")
            assert response.content == b"hello world"
            assert "x-sum" not in response.headers
    assert len(server.peers) == 1


async def test_an_http_1_0_body_ends_when_the_server_closes(nursery: trio.Nursery) -> None:
    async def old(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")

    server = await raw_server(nursery, old)
    transport = pool()
    async with client(server.url, transport) as http:
        response = await http.get("/")
        assert response.http_version == "HTTP/1.0"
        assert response.text == "until the end"
        assert transport.open_connections == 0


async def test_an_http_1_0_answer_with_a_length_still_closes(nursery: trio.Nursery) -> None:
    async def old(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server = await raw_server(nursery, old)
    transport = pool()
    async with client(server.url, transport) as http:
        assert (await http.get("/")).text == "ok"
        assert transport.open_connections == 0
        assert (await http.get("/")).text == "ok"
    assert len(server.peers) == 2


async def test_connection_close_from_the_server_closes_it(nursery: trio.Nursery) -> None:
    async def closing(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye")

    server = await raw_server(nursery, closing)
    transport = pool()
    async with client(server.url, transport) as http:
        for _ in range(2):
            assert (await http.get("/")).text == "bye"
            assert transport.open_connections == 0
    assert len(server.peers) == 2


async def test_connection_close_from_the_client_closes_it(nursery: trio.Nursery) -> None:
    server = await raw_server(nursery, answer_ok_forever)
    transport = pool()
    async with client(server.url, transport) as http:
        await http.get("/", headers={"connection": "close"})
        assert transport.open_connections == 0
        await http.get("/")
        assert transport.open_connections == 1
    assert len(server.peers) == 2


async def test_head_answer_has_no_body_and_keeps_the_connection(nursery: trio.Nursery) -> None:
    async def head(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            if request.startswith(b"HEAD "):
                await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            else:
                await peer.send(OK)

    server = await raw_server(nursery, head)
    async with client(server.url, pool()) as http:
        response = await http.head("/")
        assert (response.headers["content-length"], response.content) == ("100", b"")
        assert (await http.get("/")).text == "ok"
    assert len(server.peers) == 1


async def test_interim_answers_are_skipped(nursery: trio.Nursery) -> None:
    async def hints(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK)

    server = await raw_server(nursery, hints)
    async with client(server.url, pool()) as http:
        for _ in range(2):
            response = await http.get("/")
            assert (response.status_code, response.text) == (200, "ok")
            assert "link" not in response.headers
    assert len(server.peers) == 1


@pytest.mark.parametrize("split", [None, 20, 33, 34, 47])
async def test_an_obsolete_line_fold_becomes_a_space(
    nursery: trio.Nursery, split: int | None
) -> None:
    whole = (
        b"HTTP/1.1 200 OK\r\nX-Folded: one  \r\n two\r\n\t three\r\nX-Next: n\r\n"
        b"Content-Length: 2\r\n\r\nok"
    )

    async def folding(peer: Peer) -> None:
        while await peer.request() is not None:
            if split is None:
                await peer.send(whole)
            else:  # in two reads, the fold on either side
                await peer.send(whole[:split])
                await trio.testing.wait_all_tasks_blocked()
                await peer.send(whole[split:])

    server = await raw_server(nursery, folding)
    async with client(server.url, pool()) as http:
        for _ in range(2):
            response = await http.get("/")
            assert response.headers["x-folded"] == "one two three"
            assert response.headers["x-next"] == "n"
            assert response.text == "ok"
    assert len(server.peers) == 1


async def test_a_malformed_answer_is_a_protocol_error(nursery: trio.Nursery) -> None:
    async def garbage(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 2x0 What\r\n\r\n")

    server = await raw_server(nursery, garbage)
    transport = pool()
    async with client(server.url, transport) as http:
        with pytest.raises(httpx2.RemoteProtocolError, match="malformed"):
            await http.get("/")
    assert transport.open_connections == 0


async def test_a_body_dropped_midway_is_a_protocol_error(url: str) -> None:
    transport = pool()
    async with client(url, transport) as http:
        body = chat("[fake drop_after=2] one two three four", stream=True)
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            with pytest.raises(httpx2.RemoteProtocolError, match="end of the response body"):
                async for _ in response.aiter_bytes():
                    pass
        assert (transport.open_connections, transport.busy_connections) == (0, 0)


async def test_leaving_a_stream_early_closes_its_connection(url: str) -> None:
    transport = pool()
    async with client(url, transport) as http:
        body = chat("[fake stall_after=1 stall=30] one two three", stream=True)
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            async for _ in response.aiter_bytes():
                break
        assert (transport.open_connections, transport.busy_connections) == (0, 0)
        await trio.testing.wait_all_tasks_blocked()
        stats = await server_stats(http)
    assert stats["connections"] == 2
    assert stats["open_connections"] == 1  # the one that just asked for the stats


# --- timeouts and errors -------------------------------------------------------------------


async def test_read_timeout_waiting_for_the_answer(url: str) -> None:
    transport = pool()
    async with client(url, transport, timeout=httpx2.Timeout(5, read=0.1)) as http:
        with pytest.raises(httpx2.ReadTimeout):
            await http.post("/v1/chat/completions", json=chat("[fake latency=30] slow"))
    assert transport.open_connections == 0


async def test_read_timeout_between_body_pieces(url: str) -> None:
    transport = pool()
    async with client(url, transport, timeout=httpx2.Timeout(5, read=0.5)) as http:
        body = chat("[fake stall_after=1 stall=30] one two", stream=True)
        pieces = []
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            with pytest.raises(httpx2.ReadTimeout):
                async for piece in response.aiter_bytes():
                    pieces.append(piece)
        assert len(pieces) == 1
        assert (transport.open_connections, transport.busy_connections) == (0, 0)


async def test_a_short_read_timeout_is_not_held_up_by_a_longer_one_in_flight(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    # The pool's timer sleeps until the earliest bound it knows of: a later, shorter one must
    # wake it sooner, or the short timeout would fire when the long one does.
    transport = pool()
    async with client(url, transport) as http, trio.open_nursery() as nursery:

        async def long_wait() -> None:
            with pytest.raises(httpx2.ReadTimeout):
                body = chat("[fake latency=1000] slow")
                await http.post(
                    "/v1/chat/completions", json=body, timeout=httpx2.Timeout(5, read=30)
                )

        nursery.start_soon(long_wait)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        with pytest.raises(httpx2.ReadTimeout):
            body = chat("[fake latency=1000] slow")
            await http.post("/v1/chat/completions", json=body, timeout=httpx2.Timeout(5, read=0.5))
        assert trio.current_time() - start == pytest.approx(0.5, abs=0.01)
    assert transport.open_connections == 0


async def test_a_connection_answered_in_time_stays_open_past_its_read_timeout(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    # The bound of a read that is over no longer counts: the timer, waking at it, leaves the
    # connection (idle in the pool) alone, and the next request reuses it.
    transport = pool()
    async with client(url, transport, timeout=httpx2.Timeout(5, read=0.5)) as http:
        await http.get("/v1/models")
        await trio.sleep(2)
        await http.get("/v1/models")
        assert (await server_stats(http))["connections"] == 1


async def test_a_read_timeout_over_tls_closes_the_connection(
    nursery: trio.Nursery, certificate: tuple[Path, Path]
) -> None:
    async def never_answer(stream: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            await stream.do_handshake()
            await trio.sleep_forever()
        finally:
            await trio.aclose_forcefully(stream)

    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    listeners = await nursery.start(
        partial(trio.serve_ssl_over_tcp, never_answer, 0, context, host="127.0.0.1")
    )
    port = listeners[0].transport_listener.socket.getsockname()[1]
    transport = pool(ssl_context=ssl.create_default_context(cafile=str(cert)))
    async with client(f"https://127.0.0.1:{port}", transport) as http:
        with pytest.raises(httpx2.ReadTimeout):
            await http.get("/", timeout=httpx2.Timeout(5, read=0.1))
        assert transport.open_connections == 0


def timer_tasks() -> list[trio.lowlevel.Task]:
    root = trio.lowlevel.current_root_task()
    assert root is not None
    return [
        task
        for nursery in root.child_nurseries
        for task in nursery.child_tasks
        if task.name == "trio_litellm timer"
    ]


async def test_the_timer_ends_with_the_pool(url: str) -> None:
    transport = pool()
    async with client(url, transport) as http:
        await http.get("/v1/models")
        assert len(timer_tasks()) == 1  # one timer, however many requests
        await http.get("/v1/models")
        assert len(timer_tasks()) == 1
    await trio.testing.wait_all_tasks_blocked()
    assert timer_tasks() == []


class Owner:
    """A request's owner as the pool sees it (``_fasthttp.Owner``)."""

    def __init__(self, deadline: float = math.inf) -> None:
        self.deadline = deadline
        self.pending: Any = None


async def owned_exchange(
    transport: FastTransport, url: str, owner: Owner, text: str, timeouts: dict[str, float]
) -> bytes:
    """A chat request through ``transport.exchange`` for ``owner``; the whole body."""
    request = httpx2.Request("POST", f"{url}/v1/chat/completions", json=chat(text))
    key = transport.key_of(request.url)
    assert key is not None
    head, body, close = _exchange.encode_head(request)
    exchange = await transport.exchange(request, key, head, body, close, timeouts, owner)
    try:
        return b"".join([piece async for piece in exchange])
    finally:
        await exchange.aclose()


async def test_an_owner_s_deadline_bounds_the_wait_for_the_answer(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    transport = pool()
    owner = Owner(deadline=trio.current_time() + 2.0)
    with pytest.raises(httpx2.ReadTimeout):
        await owned_exchange(transport, url, owner, "[fake latency=1000] slow", {"read": 600})
    assert trio.current_time() == pytest.approx(owner.deadline, abs=1e-6)
    assert (owner.pending, transport.open_connections) == (None, 0)
    answered = await owned_exchange(transport, url, Owner(), "quick", {"read": 600})
    assert b"Echo: quick" in answered
    await transport.aclose()


async def test_aborting_what_an_owner_waits_on_ends_the_wait(
    url: str, autojump_clock: trio.testing.MockClock
) -> None:
    transport = pool(max_connections=1)
    first, second = Owner(), Owner()
    errors: list[type[BaseException]] = []

    async def run(owner: Owner) -> None:
        try:
            await owned_exchange(transport, url, owner, "[fake latency=1000] slow", {})
        except httpx2.TransportError as exc:
            errors.append(type(exc))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, first)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(run, second)
        await trio.testing.wait_all_tasks_blocked()
        assert isinstance(first.pending, _pool.Connection)  # waiting for its answer
        assert isinstance(second.pending, _pool._Waiter)  # in line for the one connection
        started = trio.current_time()
        second.pending.abort()
        await trio.testing.wait_all_tasks_blocked()
        assert errors == [httpx2.PoolTimeout]
        first.pending.abort()
    assert trio.current_time() == started  # neither waited for the fake's answer
    assert errors == [httpx2.PoolTimeout, httpx2.ReadError]
    assert (first.pending, second.pending, transport.open_connections) == (None, None, 0)


async def test_connect_error_when_nothing_listens() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        transport = pool()
        async with client(f"http://127.0.0.1:{port}", transport) as http:
            with pytest.raises(httpx2.ConnectError):
                await http.get("/")
    assert transport.open_connections == 0


async def test_connect_and_write_timeouts_are_mapped(url: str) -> None:
    transport = pool()
    async with client(url, transport) as http:
        with pytest.raises(httpx2.ConnectTimeout):
            await http.get("/v1/models", timeout=httpx2.Timeout(5, connect=0))
        with pytest.raises(httpx2.WriteTimeout):
            await http.get("/v1/models", timeout=httpx2.Timeout(5, write=0))
    assert transport.open_connections == 0


async def test_cancelled_mid_request_frees_the_connection(url: str) -> None:
    transport = pool()
    async with client(url, transport) as http:
        with trio.move_on_after(0.1) as scope:
            await http.post("/v1/chat/completions", json=chat("[fake latency=30] slow"))
        assert scope.cancelled_caught
        assert (transport.open_connections, transport.busy_connections) == (0, 0)
        assert (await http.get("/v1/models")).status_code == 200


async def test_cancelled_mid_body_leaves_no_busy_connection(url: str) -> None:
    transport = pool()
    pieces = []
    async with client(url, transport) as http:
        body = chat("[fake stall_after=1 stall=30] one two", stream=True)
        with trio.move_on_after(5) as scope:
            async with http.stream("POST", "/v1/chat/completions", json=body) as response:
                async for piece in response.aiter_bytes():
                    pieces.append(piece)
                    scope.deadline = trio.current_time() + 0.05  # cancelled while stalled
        assert scope.cancelled_caught
        assert len(pieces) == 1
        assert (transport.open_connections, transport.busy_connections) == (0, 0)
        assert (await http.get("/v1/models")).status_code == 200


async def test_closing_the_transport_closes_idle_connections(url: str) -> None:
    transport = pool()
    async with client(url, transport) as http, trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(http.get, "/v1/models")
    assert transport.open_connections == 0
    with pytest.raises(RuntimeError, match="closed"):
        await transport.handle_async_request(httpx2.Request("GET", "http://127.0.0.1:1/"))


# --- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made by the openssl command line."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = [
        "openssl", "req", "-x509", "-nodes", "-days", "1",
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        "-keyout", str(key), "-out", str(cert),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    return cert, key


async def tls_server(nursery: trio.Nursery, cert: Path, key: Path) -> tuple[str, list[str | None]]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["http/1.1"])
    protocols: list[str | None] = []

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            await stream.do_handshake()
            protocols.append(stream.selected_alpn_protocol())
            await answer_ok_forever(Peer(stream))
        except trio.BrokenResourceError:
            pass  # the client refused our certificate, or left without a TLS goodbye
        finally:
            await trio.aclose_forcefully(stream)

    listeners = await nursery.start(
        partial(trio.serve_ssl_over_tcp, handle, 0, context, host="127.0.0.1")
    )
    port = listeners[0].transport_listener.socket.getsockname()[1]
    return f"https://127.0.0.1:{port}", protocols


async def test_tls_round_trip_keeps_the_connection(
    nursery: trio.Nursery, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    url, protocols = await tls_server(nursery, cert, key)
    transport = pool(ssl_context=ssl.create_default_context(cafile=str(cert)))
    async with client(url, transport) as http:
        for _ in range(3):
            assert (await http.post("/", content=b"secret")).text == "ok"
        assert transport.open_connections == 1
    assert protocols == ["http/1.1"]


async def test_tls_with_an_untrusted_certificate_is_a_connect_error(
    nursery: trio.Nursery, certificate: tuple[Path, Path]
) -> None:
    url, protocols = await tls_server(nursery, *certificate)
    transport = pool()  # the default context: the system's CAs, which never signed ours
    async with client(url, transport) as http:
        with pytest.raises(httpx2.ConnectError):
            await http.get("/")
    assert transport.open_connections == 0
    assert protocols == []


async def test_an_untrusted_certificate_error_gives_openssl_s_reason(
    nursery: trio.Nursery, certificate: tuple[Path, Path]
) -> None:
    url, _ = await tls_server(nursery, *certificate)
    async with client(url, pool()) as http:
        with pytest.raises(httpx2.ConnectError, match="certificate verify failed: self-signed"):
            await http.get("/")


# --- forward proxying --------------------------------------------------------------------------


async def test_a_forward_proxy_gets_absolute_targets_and_its_credentials(
    nursery: trio.Nursery,
) -> None:
    server = await raw_server(nursery, answer_ok_forever)
    address = server.url.split("//", 1)[1]
    transport = pool(proxy=httpx2.Proxy(f"http://user:pa55@{address}"))
    async with client("http://upstream.test:8080", transport) as http:
        for _ in range(2):
            assert (await http.get("/v1/models?x=1")).text == "ok"
        assert transport.open_connections == 1  # kept alive, pooled by the target
    (peer,) = server.peers
    for request in peer.requests:
        assert request.startswith(b"GET http://upstream.test:8080/v1/models?x=1 HTTP/1.1\r\n")
        assert b"\r\nProxy-Authorization: Basic dXNlcjpwYTU1\r\n" in request
        assert b"\r\nHost: upstream.test:8080\r\n" in request


async def test_https_is_not_tunnelled_by_the_pool() -> None:
    transport = pool(proxy=httpx2.Proxy("http://127.0.0.1:9"))
    with pytest.raises(httpx2.UnsupportedProtocol, match="CONNECT"):
        await transport.handle_async_request(httpx2.Request("GET", "https://upstream.test/"))
