"""The client against a misbehaving server: no silent replays, no lost answers, bounded memory.

Each server here is a raw trio server on loopback that writes the bytes given, so every case is
exact; the client is the public one (``open_client``) on both HTTP backends where the point
applies to both. Steps are ordered by the server's own reads, never by sleeps.
"""

from __future__ import annotations

import gzip
from functools import partial

import pytest
import trio
import trio.testing

from _fakes import (
    COMPLETION,
    HTTP_BACKENDS,
    MESSAGES,
    Peer,
    PeerHandler,
    chunk,
    client_of,
    http_answer,
    piece,
    raw_server,
    sse_head,
)
from trio_litellm import (
    APIStatusError,
    BadRequestError,
    ProxyConnectionError,
    RequestTimeoutError,
    ResponseDecodeError,
    ResponseTooLargeError,
    StreamInterruptedError,
)

BACKENDS = pytest.mark.parametrize("backend", HTTP_BACKENDS)


# --- 1. a request the server may have received is never sent again in silence ---------------------


@BACKENDS
async def test_a_post_read_then_dropped_on_a_reused_connection_is_not_replayed(
    nursery: trio.Nursery, backend: str
) -> None:
    async def answer_once_then_read_and_drop(peer: Peer) -> None:
        await peer.request()
        await peer.send(http_answer())
        await peer.request()  # received, then the server dies without a word

    server = await raw_server(nursery, answer_once_then_read_and_drop)
    async with client_of(server, backend, max_retries=0) as client:
        await client.complete(model="m", messages=MESSAGES)
        with pytest.raises(ProxyConnectionError):
            await client.complete(model="m", messages=MESSAGES)
    assert len(server.log) == 2
    assert server.connections == 1


@BACKENDS
async def test_a_post_read_then_dropped_is_retried_by_the_policy_as_an_attempt(
    nursery: trio.Nursery, backend: str
) -> None:
    async def answer_once_then_read_and_drop(peer: Peer) -> None:
        await peer.request()
        await peer.send(http_answer())
        await peer.request()

    server = await raw_server(nursery, answer_once_then_read_and_drop)
    async with client_of(server, backend, max_retries=1) as client:
        await client.complete(model="m", messages=MESSAGES)
        reply = await client.complete(model="m", messages=MESSAGES)
    assert reply.meta is not None
    assert reply.meta.attempts == 2
    assert len(server.log) == 3


# --- 2. an answer sent before the request was all read is not lost -------------------------------

TOO_LARGE = b'{"error": {"message": "request entity too large", "type": "None", "code": "413"}}'


@BACKENDS
async def test_an_early_error_answer_to_a_large_body_is_returned(
    nursery: trio.Nursery, backend: str
) -> None:
    async def refuse_after_the_head(peer: Peer) -> None:
        await peer.head()
        await peer.send(
            http_answer(TOO_LARGE, b"413 Payload Too Large", b"Connection: close\r\n")
        )  # and close, with most of the body unread: the kernel resets the connection

    server = await raw_server(nursery, refuse_after_the_head)
    big = [{"role": "user", "content": "x" * 5_000_000}]
    async with client_of(server, backend, max_retries=0) as client:
        with pytest.raises(APIStatusError) as caught:
            await client.complete(model="m", messages=big)
    assert caught.value.status == 413
    assert caught.value.response_body == TOO_LARGE.decode()


@BACKENDS
async def test_a_large_body_cut_off_without_an_answer_is_a_connection_error(
    nursery: trio.Nursery, backend: str
) -> None:
    async def drop_after_the_head(peer: Peer) -> None:
        await peer.head()

    server = await raw_server(nursery, drop_after_the_head)
    big = [{"role": "user", "content": "x" * 5_000_000}]
    async with client_of(server, backend, max_retries=0) as client:
        with pytest.raises(ProxyConnectionError):
            await client.complete(model="m", messages=big)


# --- 3. the response head is capped -------------------------------------------------------------


@BACKENDS
async def test_a_response_head_that_never_ends_is_cut_off_at_the_cap(
    nursery: trio.Nursery, backend: str
) -> None:
    async def endless_header_lines(peer: Peer) -> None:
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\n")
        line = b"X-Junk: " + b"j" * 1_000_000 + b"\r\n"
        try:
            for _ in range(8):  # bounded, so a client without a cap ends (and fails the test)
                await peer.send(line)
            await peer.send(http_answer()[len(b"HTTP/1.1 200 OK\r\n") :])
        except trio.BrokenResourceError:
            pass  # the client gave up, as it should

    server = await raw_server(nursery, endless_header_lines)
    async with client_of(server, backend, max_retries=0) as client:
        with pytest.raises(ResponseTooLargeError, match="response head") as caught:
            await client.complete(model="m", messages=MESSAGES)
    assert caught.value.what == "response head"
    assert caught.value.size > caught.value.limit
    assert caught.value.limit == (65536 if backend == "fast" else 100 * 1024)


@BACKENDS
async def test_a_large_head_under_the_cap_is_read(nursery: trio.Nursery, backend: str) -> None:
    async def big_head(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(http_answer(headers=b"X-Big: " + b"b" * 60_000 + b"\r\n"))

    server = await raw_server(nursery, big_head)
    async with client_of(server, backend, max_retries=0) as client:
        for _ in range(2):
            await client.complete(model="m", messages=MESSAGES)
    assert server.connections == 1


# --- 4. bodies and stream events are capped ------------------------------------------------------


@BACKENDS
@pytest.mark.parametrize("framing", ["length", "chunked"])
async def test_a_body_over_max_response_bytes_raises_and_closes_the_connection(
    nursery: trio.Nursery, backend: str, framing: str
) -> None:
    async def big_answers(peer: Peer) -> None:
        while await peer.request() is not None:
            try:
                if framing == "length":
                    await peer.send(http_answer(b" " * 3_000_000 + COMPLETION))
                else:
                    await peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    for _ in range(30):
                        await peer.send(b"%x\r\n%b\r\n" % (100_000, b" " * 100_000))
                    await peer.send(b"%x\r\n%b\r\n0\r\n\r\n" % (len(COMPLETION), COMPLETION))
            except trio.BrokenResourceError:
                return

    server = await raw_server(nursery, big_answers)
    async with client_of(server, backend, max_retries=0, max_response_bytes=1_000_000) as client:
        with pytest.raises(ResponseTooLargeError, match="max_response_bytes") as caught:
            await client.complete(model="m", messages=MESSAGES)
        assert caught.value.option == "max_response_bytes"
        assert caught.value.limit == 1_000_000 < caught.value.size
        assert isinstance(caught.value, ResponseDecodeError)
        with pytest.raises(ResponseTooLargeError):
            await client.complete(model="m", messages=MESSAGES)
    assert server.connections == 2  # the first connection was not reused


@BACKENDS
async def test_a_body_under_max_response_bytes_is_read(nursery: trio.Nursery, backend: str) -> None:
    async def padded(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(http_answer(b" " * 500_000 + COMPLETION))

    server = await raw_server(nursery, padded)
    async with client_of(server, backend, max_response_bytes=1_000_000) as client:
        reply = await client.complete(model="m", messages=MESSAGES)
    assert reply.choices[0].message.content == "ok"


def stream_of(*events: bytes, end: bytes = b"data: [DONE]\n\n") -> PeerHandler:
    """A handler answering every request with these SSE events, one chunked piece each."""

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            try:
                await peer.send(sse_head())
                for event in events:
                    await peer.send(piece(event))
                await peer.send(piece(end) + b"0\r\n\r\n")
            except trio.BrokenResourceError:
                return

    return handler


HUGE_EVENT = b"data: " + b"x" * 3_000_000 + b"\n\n"


@BACKENDS
async def test_a_stream_event_over_max_event_bytes_raises_before_content(
    nursery: trio.Nursery, backend: str
) -> None:
    server = await raw_server(nursery, stream_of(HUGE_EVENT))
    async with client_of(server, backend, max_retries=0, max_event_bytes=1_000_000) as client:
        for _ in range(2):
            with pytest.raises(ResponseTooLargeError, match="max_event_bytes") as caught:
                async with client.stream(model="m", messages=MESSAGES):
                    pass
    assert caught.value.option == "max_event_bytes"
    assert caught.value.what == "stream event"
    assert server.connections == 2  # the first connection was closed, not reused


@BACKENDS
async def test_a_stream_event_over_max_event_bytes_after_content_interrupts_the_stream(
    nursery: trio.Nursery, backend: str
) -> None:
    server = await raw_server(nursery, stream_of(chunk("hel"), HUGE_EVENT))
    async with client_of(server, backend, max_event_bytes=1_000_000) as client:
        texts = []
        with pytest.raises(StreamInterruptedError) as caught:
            async with client.stream(model="m", messages=MESSAGES) as stream:
                async for part in stream:
                    texts.append(part.choices[0].delta.content)
    assert texts == ["hel"]
    assert isinstance(caught.value.__cause__, ResponseTooLargeError)
    assert caught.value.partial.choices[0].message.content == "hel"


# --- 5. stream_idle_timeout counts chunks, not bytes -------------------------------------------


@BACKENDS
async def test_keep_alive_comments_do_not_hold_a_stalled_stream_open(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, backend: str
) -> None:
    async def one_chunk_then_comments(peer: Peer) -> None:
        await peer.request()
        await peer.send(sse_head() + piece(chunk("hel")))
        try:
            for _ in range(100):  # bounded, so a client that counts bytes sees a whole stream
                await trio.sleep(1)
                await peer.send(piece(b":\n"))
            await peer.send(piece(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        except trio.BrokenResourceError:
            pass

    server = await raw_server(nursery, one_chunk_then_comments)
    async with client_of(server, backend, stream_idle_timeout=5) as client:
        with pytest.raises(StreamInterruptedError, match="stream_idle_timeout") as caught:
            async with client.stream(model="m", messages=MESSAGES) as stream:
                started = trio.current_time()
                async for _ in stream:
                    pass
    assert trio.current_time() - started == pytest.approx(5, abs=1)
    assert isinstance(caught.value.__cause__, RequestTimeoutError)


@BACKENDS
async def test_chunks_closer_than_stream_idle_timeout_keep_a_slow_stream_going(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, backend: str
) -> None:
    async def a_chunk_every_4_seconds(peer: Peer) -> None:
        await peer.request()
        await peer.send(sse_head())
        for n in range(5):
            await peer.send(piece(chunk(str(n))))
            await trio.sleep(4)
        await peer.send(piece(b"data: [DONE]\n\n") + b"0\r\n\r\n")

    server = await raw_server(nursery, a_chunk_every_4_seconds)
    async with client_of(server, backend, stream_idle_timeout=5) as client:
        async with client.stream(model="m", messages=MESSAGES) as stream:
            async for _ in stream:
                pass
    assert stream.result().choices[0].message.content == "01234"


# --- 6. a whole non-stream answer has a deadline of its own --------------------------------------


def trickle(every: float) -> PeerHandler:
    """Answer with the head at once, then the body one byte every ``every`` seconds."""

    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            whole = http_answer()
            head, _, body = whole.partition(b"\r\n\r\n")
            try:
                await peer.send(head + b"\r\n\r\n")
                for n in range(len(body)):
                    await trio.sleep(every)
                    await peer.send(body[n : n + 1])
            except trio.BrokenResourceError:
                return

    return handler


@BACKENDS
async def test_a_trickled_answer_is_cut_off_by_response_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, backend: str
) -> None:
    server = await raw_server(nursery, trickle(1.0))
    options = {"read_timeout": 5, "response_timeout": 30, "max_retries": 0, "total_timeout": None}
    async with client_of(server, backend, **options) as client:
        started = trio.current_time()
        with pytest.raises(RequestTimeoutError, match="response_timeout"):
            await client.complete(model="m", messages=MESSAGES)
    assert trio.current_time() - started == pytest.approx(30)


@BACKENDS
async def test_response_timeout_is_per_attempt(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, backend: str
) -> None:
    server = await raw_server(nursery, trickle(1.0))
    options = {"response_timeout": 30, "max_retries": 1, "total_timeout": None}
    async with client_of(server, backend, **options) as client:
        started = trio.current_time()
        with pytest.raises(RequestTimeoutError):
            await client.complete(model="m", messages=MESSAGES)
    assert trio.current_time() - started == pytest.approx(60)
    assert len(server.log) == 2


@BACKENDS
async def test_a_slow_answer_within_response_timeout_is_read(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, backend: str
) -> None:
    server = await raw_server(nursery, trickle(0.01))
    async with client_of(server, backend, read_timeout=5, response_timeout=30) as client:
        reply = await client.complete(model="m", messages=MESSAGES)
    assert reply.choices[0].message.content == "ok"


# --- 7. what a wrong kind of answer is called -----------------------------------------------------

NO_BODY_ANSWERS = {
    "101": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    "204": b"HTTP/1.1 204 No Content\r\n\r\n" + COMPLETION,
    "304": b"HTTP/1.1 304 Not Modified\r\n\r\n" + COMPLETION,
}


def always(data: bytes) -> PeerHandler:
    async def handler(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(data)

    return handler


@BACKENDS
@pytest.mark.parametrize("status", sorted(NO_BODY_ANSWERS))
async def test_an_answer_that_has_no_body_says_so_to_complete(
    nursery: trio.Nursery, backend: str, status: str
) -> None:
    server = await raw_server(nursery, always(NO_BODY_ANSWERS[status]))
    async with client_of(server, backend, max_retries=0) as client:
        with pytest.raises(ResponseDecodeError, match=f"answered {status} .*no body") as caught:
            await client.complete(model="m", messages=MESSAGES)
    assert "truncated" not in str(caught.value)
    assert caught.value.status == int(status)


@BACKENDS
@pytest.mark.parametrize("status", sorted(NO_BODY_ANSWERS))
async def test_an_answer_that_has_no_body_says_so_to_stream(
    nursery: trio.Nursery, backend: str, status: str
) -> None:
    server = await raw_server(nursery, always(NO_BODY_ANSWERS[status]))
    async with client_of(server, backend, max_retries=0) as client:
        with pytest.raises(ResponseDecodeError, match=f"answered {status} .*no body") as caught:
            async with client.stream(model="m", messages=MESSAGES):
                pass
    assert "[DONE]" not in str(caught.value)


@BACKENDS
async def test_a_json_error_answer_to_a_stream_raises_the_proxy_s_error(
    nursery: trio.Nursery, backend: str
) -> None:
    error = (
        b'{"error": {"message": "bad temperature", "type": "None", "param": "None", "code": "400"}}'
    )
    server = await raw_server(nursery, always(http_answer(error)))
    async with client_of(server, backend, max_retries=0) as client:
        with pytest.raises(BadRequestError, match="bad temperature") as caught:
            async with client.stream(model="m", messages=MESSAGES):
                pass
    assert caught.value.status == 400


@BACKENDS
async def test_a_json_completion_answer_to_a_stream_is_named(
    nursery: trio.Nursery, backend: str
) -> None:
    server = await raw_server(nursery, always(http_answer()))
    async with client_of(server, backend, max_retries=0) as client:
        with pytest.raises(ResponseDecodeError, match=r"JSON answer .* where a stream") as caught:
            async with client.stream(model="m", messages=MESSAGES):
                pass
    assert "[DONE]" not in str(caught.value)


@BACKENDS
async def test_a_folded_header_line_is_read(nursery: trio.Nursery, backend: str) -> None:
    folded = b"X-Folded: one\r\n two\r\n\tthree\r\n"
    server = await raw_server(nursery, always(http_answer(headers=folded)))
    async with client_of(server, backend, max_retries=0) as client:
        for _ in range(2):
            reply = await client.complete(model="m", messages=MESSAGES)
            assert reply.choices[0].message.content == "ok"


# --- what already held, and must go on holding -----------------------------------------------------


async def test_bytes_after_an_answer_keep_the_answer_and_drop_the_connection(
    nursery: trio.Nursery,
) -> None:
    # Our pool only: httpx2's reads the leftover as the start of the next answer, and fails it.
    server = await raw_server(nursery, always(http_answer() + b"HTTP/1.1 200 OK\r\nleftover"))
    async with client_of(server, "fast", max_retries=0) as client:
        for _ in range(2):
            reply = await client.complete(model="m", messages=MESSAGES)
            assert reply.choices[0].message.content == "ok"
    assert len(server.log) == 2
    assert server.connections == 2


@BACKENDS
async def test_a_chunked_answer_with_extensions_and_trailers_is_read(
    nursery: trio.Nursery, backend: str
) -> None:
    half = len(COMPLETION) // 2
    data = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"%x;name=value\r\n%b\r\n" % (half, COMPLETION[:half])
        + b"%x\r\n%b\r\n" % (len(COMPLETION) - half, COMPLETION[half:])
        + b"0\r\nX-Trailer: t\r\n\r\n"
    )
    server = await raw_server(nursery, always(data))
    async with client_of(server, backend) as client:
        for _ in range(2):
            reply = await client.complete(model="m", messages=MESSAGES)
            assert reply.choices[0].message.content == "ok"
    assert server.connections == 1


@BACKENDS
async def test_a_chunked_answer_cut_short_is_a_connection_error(
    nursery: trio.Nursery, backend: str
) -> None:
    async def cut(peer: Peer) -> None:
        await peer.request()
        await peer.send(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%b" % (len(COMPLETION), COMPLETION[:10])
        )

    server = await raw_server(nursery, cut)
    async with client_of(server, backend, max_retries=0) as client:
        with pytest.raises(ProxyConnectionError):
            await client.complete(model="m", messages=MESSAGES)


@BACKENDS
async def test_a_gzip_answer_is_decompressed(nursery: trio.Nursery, backend: str) -> None:
    body = gzip.compress(COMPLETION)
    server = await raw_server(
        nursery, always(http_answer(body, headers=b"Content-Encoding: gzip\r\n"))
    )
    async with client_of(server, backend) as client:
        reply = await client.complete(model="m", messages=MESSAGES)
    assert reply.choices[0].message.content == "ok"


@BACKENDS
async def test_a_gzip_bomb_stops_at_max_response_bytes(nursery: trio.Nursery, backend: str) -> None:
    bomb = gzip.compress(b" " * 50_000_000)  # about 50 KB on the wire
    server = await raw_server(
        nursery, always(http_answer(bomb, headers=b"Content-Encoding: gzip\r\n"))
    )
    async with client_of(server, backend, max_retries=0, max_response_bytes=1_000_000) as client:
        with pytest.raises(ResponseTooLargeError, match="max_response_bytes"):
            await client.complete(model="m", messages=MESSAGES)


@BACKENDS
async def test_a_broken_gzip_answer_is_a_decode_error(nursery: trio.Nursery, backend: str) -> None:
    server = await raw_server(
        nursery, always(http_answer(b"not gzip at all", headers=b"Content-Encoding: gzip\r\n"))
    )
    async with client_of(server, backend, max_retries=0) as client:
        with pytest.raises(ResponseDecodeError):
            await client.complete(model="m", messages=MESSAGES)


@BACKENDS
async def test_a_call_cancelled_mid_body_closes_its_connection(
    nursery: trio.Nursery, backend: str
) -> None:
    body_started = trio.Event()

    async def half_then_stall(peer: Peer) -> None:
        await peer.request()
        whole = http_answer()
        await peer.send(whole[: len(whole) - 10])
        body_started.set()
        await trio.sleep_forever()

    async def answer_at_once(peer: Peer) -> None:
        await always(http_answer())(peer)

    handlers = [half_then_stall, answer_at_once]

    async def next_handler(peer: Peer) -> None:
        await handlers.pop(0)(peer)

    server = await raw_server(nursery, next_handler)
    async with client_of(server, backend, max_retries=0) as client:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as inner:
                inner.start_soon(partial(client.complete, model="m", messages=MESSAGES))
                await body_started.wait()
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()
        reply = await client.complete(model="m", messages=MESSAGES)
    assert reply.choices[0].message.content == "ok"
    assert server.connections == 2
