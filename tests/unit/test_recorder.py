"""The debug recorder: what it keeps of each request, how it cuts and masks, its bound, its dump.

Requests go through a client over an in-memory HTTP transport, as in test_client_offline; the
recorder's own arithmetic (cutting, masking, the ring) is also tested on it directly.
"""

from __future__ import annotations

import io
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from _fakes import (
    MESSAGES,
    SECRET,
    Answer,
    Script,
    chunk,
    completion,
    error_body,
    json_answer,
    open_test_client,
    pieces,
    record,
    refuse,
    sse_answer,
)
from trio_litellm import (
    Client,
    ClientConfig,
    ConfigError,
    DebugRecorder,
    DumpFileError,
    InternalServerError,
    Job,
    LiteLLMError,
    ProxyConnectionError,
    RecordedExchange,
    StreamInterruptedError,
    read_dump,
)
from trio_litellm._recorder import Trace

HEADERS = {
    "content-type": "application/json",
    "x-litellm-call-id": "call-7",
    "x-litellm-model-group": "m",
    "x-ratelimit-remaining-requests": "99",
    "set-cookie": "session=abc",
    "x-other": "dropped",
}


def sse(*parts: bytes, stall: bool = False) -> Answer:
    """A stream answer carrying the headers the recorder keeps (and some it drops)."""
    return sse_answer(pieces(*parts, then_stall=stall), HEADERS)


def open_recording_client(script: Script, **options: Any) -> AbstractAsyncContextManager[Client]:
    """A test client keeping its last 10 requests (unless ``options`` say otherwise)."""
    return open_test_client(script, **({"record_last": 10} | options))


def answered_trace(request: bytes, response: bytes, headers: dict[str, str] | None = None) -> Trace:
    trace = Trace("POST", "/v1/chat/completions", request)
    trace.answered(1, 200, headers or {}, response)
    return trace


# --- configuration ------------------------------------------------------------------------------


async def test_recording_is_off_by_default_and_then_there_is_no_recorder() -> None:
    script = Script(json_answer(200, completion()))
    async with open_recording_client(script, record_last=0) as client:
        await client.complete(model="m", messages=MESSAGES)
        assert client.recorder is None
    assert ClientConfig().record_last == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("record_last", -1), ("record_last", 1.5), ("record_last", True), ("record_body_limit", -1)],
)
def test_a_bad_recording_option_names_its_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        ClientConfig(**{field: value})
    assert caught.value.field == field


# --- what an entry holds --------------------------------------------------------------------------


async def test_a_completion_is_recorded_with_its_bodies_status_and_safe_headers() -> None:
    body = completion("hello", prompt_tokens=1, completion_tokens=2)
    script = Script(json_answer(200, body, HEADERS))
    async with open_recording_client(script) as client:
        reply = await client.complete(model="m", messages=MESSAGES, max_tokens=5)
        (entry,) = client.recorder.entries()
    assert (entry.method, entry.path, entry.status) == ("POST", "/v1/chat/completions", 200)
    assert msgspec.json.decode(entry.request_body) == msgspec.json.decode(
        script.requests[0].content
    )
    assert entry.response_body == body.decode()
    assert (entry.request_body_cut, entry.response_body_cut) == (0, 0)
    assert entry.response_headers == {
        "content-type": "application/json",
        "x-litellm-call-id": "call-7",
        "x-litellm-model-group": "m",
        "x-ratelimit-remaining-requests": "99",
    }
    assert entry.record.outcome == "ok" and entry.ok
    assert entry.record.call_id == reply.meta.call_id == "call-7"
    assert (entry.record.prompt_tokens, entry.record.completion_tokens) == (1, 2)
    assert entry.error_type is None and entry.error_message is None


async def test_an_error_answer_is_recorded_with_its_body_type_status_and_message() -> None:
    script = Script(
        json_answer(500, error_body(500, "upstream broke"), {"x-litellm-call-id": "c-9"})
    )
    async with open_recording_client(script, max_retries=0) as client:
        with pytest.raises(InternalServerError):
            await client.complete(model="m", messages=MESSAGES)
        (entry,) = client.recorder.entries()
    assert entry.record.outcome == "InternalServerError" and not entry.ok
    assert entry.status == 500
    assert entry.error_type == "InternalServerError"
    assert entry.error_message is not None and "upstream broke" in entry.error_message
    assert entry.response_body == error_body(500, "upstream broke").decode()
    assert entry.response_headers["x-litellm-call-id"] == "c-9"
    assert msgspec.json.decode(entry.request_body)["model"] == "m"


async def test_an_error_answer_echoing_the_key_is_recorded_masked() -> None:
    script = Script(json_answer(401, error_body(401, f"Authentication Error, bad key {SECRET}")))
    async with open_recording_client(script, max_retries=0) as client:
        with pytest.raises(LiteLLMError) as caught:
            await client.complete(model="m", messages=MESSAGES)
        (entry,) = client.recorder.entries()
    assert SECRET not in (caught.value.response_body or "")
    assert entry.response_body is not None and "***" in entry.response_body
    assert SECRET not in msgspec.json.encode(entry).decode()


async def test_a_request_that_never_got_an_answer_has_no_status_and_no_body() -> None:
    script = Script(refuse)
    async with open_recording_client(script, max_retries=0) as client:
        with pytest.raises(ProxyConnectionError):
            await client.complete(model="m", messages=MESSAGES)
        (entry,) = client.recorder.entries()
    assert entry.status is None and entry.response_body is None
    assert entry.error_type == "ProxyConnectionError"
    assert entry.response_headers == {}


async def test_after_retries_the_last_attempts_answer_is_recorded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limited = json_answer(429, error_body(429, "slow down"), {"retry-after": "1"})
    script = Script(limited, json_answer(200, completion("second"), HEADERS))
    async with open_recording_client(script, max_retries=1) as client:
        await client.complete(model="m", messages=MESSAGES)
        (entry,) = client.recorder.entries()
    assert entry.record.attempts == 2
    assert entry.status == 200
    assert "second" in (entry.response_body or "")


async def test_a_failure_after_an_earlier_answer_does_not_show_that_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Attempt 1 answers 200 with an error body (read, then raised and retried); attempt 2 cannot
    # connect: the recorded answer must not be attempt 1's.
    in_disguise = json_answer(200, error_body(503, "overloaded"))
    script = Script(in_disguise, refuse)
    async with open_recording_client(script, max_retries=1) as client:
        with pytest.raises(ProxyConnectionError):
            await client.complete(model="m", messages=MESSAGES)
        (entry,) = client.recorder.entries()
    assert entry.record.attempts == 2
    assert entry.response_body is None and entry.status is None


async def test_an_embedding_is_recorded() -> None:
    body = msgspec.json.encode(
        {"data": [{"index": 0, "embedding": [0.5]}], "model": "e", "usage": {"prompt_tokens": 1}}
    )
    script = Script(json_answer(200, body))
    async with open_recording_client(script) as client:
        await client.embed(model="e", input=["a"])
        (entry,) = client.recorder.entries()
    assert entry.path == "/v1/embeddings" and entry.record.kind == "embedding"
    assert entry.response_body == body.decode()


async def test_jobs_are_recorded_like_calls() -> None:
    script = Script(json_answer(200, completion()))
    async with open_recording_client(script) as client:
        async with client.open_jobs() as (send, receive):
            async with send:
                for index in range(3):
                    await send.send(Job(id=index, request={"model": "m", "messages": MESSAGES}))
            results = [result async for result in receive]
        assert all(result.ok for result in results)
        assert len(client.recorder.entries()) == 3


# --- streams --------------------------------------------------------------------------------------


async def test_a_stream_is_recorded_with_the_completion_assembled_from_its_chunks() -> None:
    script = Script(sse(chunk("Hel"), chunk("lo"), chunk(finish="stop"), b"data: [DONE]\n\n"))
    async with open_recording_client(script) as client:
        async with client.stream(model="m", messages=MESSAGES) as stream:
            async for _ in stream:
                pass
        (entry,) = client.recorder.entries()
    assert entry.record.stream and entry.ok
    assert entry.status == 200 and entry.response_headers["x-litellm-call-id"] == "call-7"
    assembled = msgspec.json.decode(entry.response_body or "")
    assert assembled["choices"][0]["message"]["content"] == "Hello"
    assert "meta" not in assembled
    assert msgspec.json.decode(entry.request_body)["stream"] is True


async def test_an_interrupted_stream_is_recorded_with_what_had_arrived(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script(sse(chunk("par"), chunk("tial"), stall=True))
    async with open_recording_client(script, stream_idle_timeout=5.0) as client:
        with pytest.raises(StreamInterruptedError):
            async with client.stream(model="m", messages=MESSAGES) as stream:
                async for _ in stream:
                    pass
        (entry,) = client.recorder.entries()
    assert entry.error_type == "StreamInterruptedError"
    assert entry.record.outcome == "StreamInterruptedError"  # not counted as a success
    assembled = msgspec.json.decode(entry.response_body or "")
    assert assembled["choices"][0]["message"]["content"] == "partial"


# --- cutting, masking -----------------------------------------------------------------------------


async def test_bodies_are_cut_to_the_limit_and_the_cut_is_counted() -> None:
    long_text = "x" * 500
    script = Script(json_answer(200, completion(long_text)))
    async with open_recording_client(script, record_body_limit=64) as client:
        await client.complete(model="m", messages=[{"role": "user", "content": long_text}])
        (entry,) = client.recorder.entries()
    sent = script.requests[0].content
    assert entry.request_body == sent[:64].decode()
    assert entry.request_body_cut == len(sent) - 64
    assert entry.response_body == completion(long_text)[:64].decode()
    assert entry.response_body_cut == len(completion(long_text)) - 64


def test_a_cut_never_splits_a_character() -> None:
    recorder = DebugRecorder(5, body_limit=4)
    body = "aé€".encode()  # 1 + 2 + 3 bytes: a cut at 4 falls inside the euro sign
    recorder.add(record(), answered_trace(body, b"{}"), None)
    (entry,) = recorder.entries()
    assert entry.request_body == "aé"
    assert entry.request_body_cut == 3


def test_bytes_that_are_not_utf8_are_replaced_not_fatal() -> None:
    recorder = DebugRecorder(5)
    recorder.add(record(), answered_trace(b"ok\xff\xfe", b"\x80"), None)
    (entry,) = recorder.entries()
    assert entry.request_body == "ok\ufffd\ufffd" and entry.response_body == "\ufffd"


def test_a_zero_body_limit_keeps_no_body_but_counts_it() -> None:
    recorder = DebugRecorder(5, body_limit=0)
    recorder.add(record(), answered_trace(b"12345", b"678"), None)
    (entry,) = recorder.entries()
    assert (entry.request_body, entry.request_body_cut) == ("", 5)
    assert (entry.response_body, entry.response_body_cut) == ("", 3)


def test_credential_fields_in_bodies_are_masked_even_when_cut_short() -> None:
    recorder = DebugRecorder(5, body_limit=60)
    body = b'{"model":"m","api_key":"sk-provider-1","aws_secret_access_key":"AKIA0000000000000"}'
    recorder.add(record(), answered_trace(body, b"{}"), None)
    (entry,) = recorder.entries()
    assert "sk-provider-1" not in entry.request_body
    assert '"api_key":"***"' in entry.request_body
    assert "AKIA" not in entry.request_body  # its value was cut short, and masked all the same


async def test_the_key_never_appears_in_an_entry_or_the_dump(tmp_path: Path) -> None:
    echoing = json_answer(
        500, error_body(500, f"bad key {SECRET}"), {"x-litellm-key-alias": f"alias {SECRET}"}
    )
    leaky = json_answer(200, completion(f"you said {SECRET}"), {"x-litellm-echo": SECRET})
    script = Script(echoing, leaky)
    async with open_recording_client(script, max_retries=0, record_body_limit=40) as client:
        with pytest.raises(InternalServerError):
            await client.complete(model="m", messages=MESSAGES)
        await client.complete(
            model="m",
            messages=[{"role": "user", "content": "x" * 20 + SECRET}],  # straddles the cut
            extra_body={"api_key": SECRET},
        )
        assert script.requests[0].headers["authorization"] == f"Bearer {SECRET}"
        client.recorder.dump(tmp_path / "dump.jsonl")
        entries = client.recorder.entries()
    dump = (tmp_path / "dump.jsonl").read_bytes()
    assert len(entries) == 2
    assert SECRET.encode() not in dump
    assert SECRET[:12].encode() not in dump  # not even the part before a cut
    assert b"authorization" not in dump.lower()
    assert SECRET not in repr(entries)


# --- the ring, the dump ---------------------------------------------------------------------------


async def test_only_the_last_n_requests_are_kept_oldest_first() -> None:
    script = Script(json_answer(200, completion()))
    async with open_recording_client(script, record_last=3) as client:
        for index in range(5):
            await client.complete(model="m", messages=[{"role": "user", "content": f"n{index}"}])
        entries = client.recorder.entries()
        statistics = client.recorder.statistics()
    contents = [msgspec.json.decode(e.request_body)["messages"][0]["content"] for e in entries]
    assert contents == ["n2", "n3", "n4"]
    assert (statistics.held, statistics.limit, statistics.recorded, statistics.evicted) == (
        3,
        3,
        5,
        2,
    )


def test_clear_forgets_the_entries_but_not_the_counts() -> None:
    recorder = DebugRecorder(2)
    for _ in range(3):
        recorder.add(record(), answered_trace(b"{}", b"{}"), None)
    recorder.clear()
    assert recorder.entries() == [] and len(recorder) == 0
    statistics = recorder.statistics()
    assert (statistics.held, statistics.recorded, statistics.evicted) == (0, 3, 1)


def test_entries_is_a_snapshot() -> None:
    recorder = DebugRecorder(2)
    snapshot = recorder.entries()
    recorder.add(record(), answered_trace(b"{}", b"{}"), None)
    assert snapshot == []


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_a_recorder_needs_a_positive_integer_limit(bad: Any) -> None:
    with pytest.raises(ValueError, match="limit"):
        DebugRecorder(bad)


def test_the_dump_round_trips_through_a_path_and_a_binary_file(tmp_path: Path) -> None:
    recorder = DebugRecorder(4, body_limit=8)
    recorder.add(record(), answered_trace(b'{"a":1}', b'{"choices":[]}', HEADERS), None)
    error = InternalServerError("boom", status=500)
    recorder.add(
        record(outcome="InternalServerError", status=500), Trace("POST", "/p", b"x"), error
    )
    path = tmp_path / "dump.jsonl"
    assert recorder.dump(path) == 2
    buffer = io.BytesIO()
    assert recorder.dump(buffer) == 2
    assert path.read_bytes() == buffer.getvalue()
    lines = path.read_bytes().splitlines()
    assert len(lines) == 2
    assert msgspec.json.decode(lines[1])["error_type"] == "InternalServerError"
    assert read_dump(path) == recorder.entries()
    assert all(isinstance(entry, RecordedExchange) for entry in read_dump(path))


def test_a_dump_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "dump.jsonl"
    path.write_bytes(b"old contents\n" * 100)
    recorder = DebugRecorder(1)
    recorder.add(record(), answered_trace(b"{}", b"{}"), None)
    recorder.dump(path)
    assert len(read_dump(path)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["dump.jsonl"]  # no temporary file left


@pytest.mark.parametrize(
    ("contents", "line_no", "problem"),
    [
        (b"{not json\n", 1, "not a recorded exchange"),
        (b"", 0, None),
        (b'{"record": 1}\n', 1, "not a recorded exchange"),
    ],
)
def test_reading_a_bad_dump_names_the_line(
    tmp_path: Path, contents: bytes, line_no: int, problem: str | None
) -> None:
    path = tmp_path / "dump.jsonl"
    path.write_bytes(contents)
    if problem is None:
        assert read_dump(path) == []
        return
    with pytest.raises(DumpFileError, match=problem) as caught:
        read_dump(path)
    assert caught.value.line_no == line_no and str(path) in str(caught.value)


def test_reading_a_torn_dump_names_its_last_line(tmp_path: Path) -> None:
    recorder = DebugRecorder(2)
    for _ in range(2):
        recorder.add(record(), answered_trace(b"{}", b"{}"), None)
    path = tmp_path / "dump.jsonl"
    recorder.dump(path)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DumpFileError, match="torn") as caught:
        read_dump(path)
    assert caught.value.line_no == 2
