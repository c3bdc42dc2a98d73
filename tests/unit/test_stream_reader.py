"""The stream reader, through ``client.stream`` over an in-memory proxy (tests/_fakes.py).

Chunks arrive in order and one by one, whatever the network reads held; a failure before the
first content is raised and retried, one after it interrupts the stream with what came so far;
leaving early closes the response; a slow consumer holds the reader back. Deadlines are asserted
at their exact MockClock times.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import msgspec
import pytest
import trio
import trio.testing

from _fakes import (
    COMPLETION,
    DONE,
    HTTP_BACKENDS,
    MESSAGES,
    Peer,
    Script,
    chunk,
    client_of,
    error_body,
    http_answer,
    in_band_error,
    json_answer,
    open_test_client,
    piece,
    pieces,
    raw_server,
    sse_answer,
    sse_head,
)
from trio_litellm import (
    ProxyConnectionError,
    RateLimitError,
    RequestTimeoutError,
    ResponseDecodeError,
    StreamInterruptedError,
)
from trio_litellm._reader import STREAM_BUFFER


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
    in_band = in_band_error(500, "upstream died")
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
    in_band = in_band_error(500, "Error processing stream start", "internal_server_error")
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
    in_band = in_band_error(429, "litellm.RateLimitError: x", "throttling_error")
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


# --- what the network did ----------------------------------------------------------------------


async def test_an_event_split_across_network_reads_arrives_whole() -> None:
    events = chunk("", role="assistant") + chunk("Hel") + chunk("lo") + DONE
    cuts = [0, 3, 7, 50, 51, len(events) - 2, len(events)]
    reads = [events[start:end] for start, end in itertools.pairwise(cuts)]
    script = Script(sse_answer(pieces(*reads)))
    async with (
        open_test_client(script) as client,
        client.stream(model="m", messages=MESSAGES) as stream,
    ):
        texts = [c.choices[0].delta.content async for c in stream]
    assert texts == ["", "Hel", "lo"]
    assert stream.finished


async def test_a_connection_broken_after_content_interrupts_the_stream_and_is_not_retried() -> None:
    script = Script(sse_answer(pieces(chunk("par"), chunk("tial"), then_break=True)))
    seen: list[str | None] = []
    async with open_test_client(script, max_retries=3) as client:
        with pytest.raises(StreamInterruptedError) as caught:
            async with client.stream(model="m", messages=MESSAGES) as stream:
                async for piece in stream:
                    seen.append(piece.choices[0].delta.content)
    assert seen == ["par", "tial"]
    assert caught.value.partial.text == "partial"
    assert isinstance(caught.value.__cause__, ProxyConnectionError)
    assert "connection reset by peer" in str(caught.value.__cause__)
    assert len(script.requests) == 1


async def test_a_connection_broken_before_content_is_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script(
        sse_answer(pieces(b": ping\n\n", then_break=True)), sse_answer(pieces(chunk("ok"), DONE))
    )
    async with (
        open_test_client(script, max_retries=1) as client,
        client.stream(model="m", messages=MESSAGES) as stream,
    ):
        texts = [c.choices[0].delta.content async for c in stream]
    assert texts == ["ok"]
    assert stream.meta is not None and stream.meta.attempts == 2
    assert len(script.requests) == 2


# --- leaving early ------------------------------------------------------------------------------


async def test_leaving_the_block_early_frees_its_slot_and_never_passes_for_whole() -> None:
    reads = [chunk(str(index)) for index in range(STREAM_BUFFER * 4)]
    script = Script(sse_answer(pieces(*reads, then_stall=True)))
    async with open_test_client(script, max_in_flight=1) as client:
        async with client.stream(model="m", messages=MESSAGES) as stream:
            async for _ in stream:
                await trio.testing.wait_all_tasks_blocked()  # the reader fills the channel
                break
        # The reader has ended by the time the block returns: its one slot is free at once.
        assert client.statistics().dispatcher.in_flight == 0
        script.answers = [json_answer(200, COMPLETION)]
        with trio.fail_after(1):  # a call waiting for the slot would never end
            assert (await client.complete(model="m", messages=MESSAGES)).text == "ok"
    assert not stream.finished
    with pytest.raises(StreamInterruptedError) as caught:
        stream.result()
    assert caught.value.partial.text.startswith("0")


async def test_iterating_a_stream_after_its_block_says_so() -> None:
    script = Script(sse_answer(pieces(chunk("a"), chunk("b"), DONE)))
    async with open_test_client(script) as client:
        async with client.stream(model="m", messages=MESSAGES) as stream:
            pass
        with pytest.raises(StreamInterruptedError, match="inside its `async with` block"):
            async for _ in stream:
                pass


@pytest.mark.parametrize("backend", HTTP_BACKENDS)
async def test_leaving_a_stream_early_closes_its_connection(
    nursery: trio.Nursery, backend: str
) -> None:
    # The body is unfinished: the connection cannot carry another request, so it must be closed
    # (not pooled) by the time the block returns, and the next call must open a new one.
    closed: list[bool] = []

    async def endless_stream_then_answers(peer: Peer) -> None:
        if len(server.peers) == 1:
            await peer.request()
            await peer.send(sse_head())
            for index in range(STREAM_BUFFER * 4):  # more than the reader may hold
                await peer.send(piece(chunk(str(index))))
            closed.append(await peer.closed())
            return
        while await peer.request() is not None:
            await peer.send(http_answer())

    server = await raw_server(nursery, endless_stream_then_answers)
    async with client_of(server, backend) as client:
        async with client.stream(model="m", messages=MESSAGES) as stream:
            async for _ in stream:
                await trio.testing.wait_all_tasks_blocked()  # the reader fills the channel
                break
        await trio.testing.wait_all_tasks_blocked()
        assert closed == [True]
        assert (await client.complete(model="m", messages=MESSAGES)).text == "ok"
    assert server.connections == 2
