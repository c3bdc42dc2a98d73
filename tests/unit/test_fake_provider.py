"""The fake provider: deterministic answers, correct HTTP/1.1, and every fault directive.

Each test starts the server in-process on a free port and talks to it over real sockets, with
httpx2 where the bytes matter and with the official openai SDK where compatibility does.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

import httpx2
import msgspec
import openai
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from trio_litellm.testing.fake_provider import FakeProviderConfig, serve_fake_provider
from trio_litellm.testing.fake_provider._directives import (
    DirectiveError,
    Directives,
    model_pairs,
    parse_pairs,
    resolve,
    split_tags,
)
from trio_litellm.testing.fake_provider._responses import split_pieces
from trio_litellm.testing.fake_provider._state import RequestWindow, go_duration

# --- helpers -------------------------------------------------------------------------------


async def start(nursery: trio.Nursery, **settings: Any) -> str:
    """Start a fake provider on a free port; pytest-trio cancels ``nursery`` after the test."""
    url: str = await nursery.start(serve_fake_provider, FakeProviderConfig(port=0, **settings))
    return url


@pytest.fixture
async def url(nursery: trio.Nursery) -> str:
    return await start(nursery)


@pytest.fixture
async def http(url: str) -> Any:
    async with httpx2.AsyncClient(base_url=url, timeout=5) as client:
        yield client


def chat(text: str, *, model: str = "echo", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def events(body: bytes) -> list[bytes]:
    """The ``data:`` payloads of an SSE body, in order."""
    assert body.endswith(b"\n\n"), body
    payloads = []
    for event in body.split(b"\n\n")[:-1]:
        assert event.startswith(b"data: "), event
        payloads.append(event.removeprefix(b"data: "))
    return payloads


def contents(payloads: Sequence[bytes]) -> list[str]:
    """The content deltas among SSE payloads."""
    out = []
    for payload in payloads:
        if payload == b"[DONE]":
            continue
        for choice in json.loads(payload).get("choices", []):
            if "content" in choice["delta"] and choice["delta"]["content"]:
                out.append(choice["delta"]["content"])
    return out


async def stream_body(http: httpx2.AsyncClient, body: dict[str, Any]) -> bytes:
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return b"".join([chunk async for chunk in response.aiter_raw()])


async def stats(http: httpx2.AsyncClient) -> dict[str, Any]:
    response = await http.get("/_stats")
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


# --- pure parts ----------------------------------------------------------------------------


def test_pairs_split_on_spaces_and_commas_and_later_wins() -> None:
    assert parse_pairs(" status=500,retry_after=1  status=429 ") == {
        "status": "429",
        "retry_after": "1",
    }


def test_model_name_directives_come_after_the_last_slash() -> None:
    assert model_pairs("openai/status=429,retry_after=1") == {"status": "429", "retry_after": "1"}
    assert model_pairs("status=500") == {"status": "500"}
    assert model_pairs("openai/gpt-4o") == {}


def test_tags_are_removed_and_their_text_returned() -> None:
    text, tag = split_tags("hello [fake status=500  id=a]  big\n[fake latency=1] world")
    assert text == "hello big world"
    assert tag == "status=500 id=a latency=1"
    assert split_tags("no  tag [fakery] here") == ("no tag [fakery] here", "")


def test_sources_merge_defaults_then_model_then_tag() -> None:
    base = Directives(latency=1.0, tps=5.0)
    merged = resolve(base, "x/latency=2,status=500", "latency=3")
    assert (merged.latency, merged.tps, merged.status) == (3.0, 5.0, 500)


@pytest.mark.parametrize(
    ("tag", "key"),
    [("colour=red", "colour"), ("status=abc", "status"), ("tps=0", "tps"), ("oops", "oops")],
)
def test_unknown_keys_and_bad_values_name_the_key(tag: str, key: str) -> None:
    with pytest.raises(DirectiveError) as info:
        resolve(Directives(), "echo", tag)
    assert info.value.key == key
    assert key in str(info.value)


def test_bare_fail_first_means_status_500_and_passing_removes_faults() -> None:
    d = resolve(Directives(), "echo", "fail_first=1 latency=0.5")
    assert d.error_status == 500
    assert d.without_faults() == Directives(latency=0.5)


@given(st.text(alphabet=" ab\u00e9", max_size=40), st.none() | st.integers(1, 50))
def test_stream_pieces_concatenate_back_to_the_text(text: str, chunks: int | None) -> None:
    pieces = split_pieces(text, chunks)
    assert "".join(pieces) == text
    assert all(pieces)
    if chunks is not None and text:
        assert len(pieces) == min(chunks, len(text))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.012, "12ms"), (1, "1s"), (360, "6m0s"), (17.28, "17.28s"), (3723, "1h2m3s")],
)
def test_durations_are_formatted_like_go(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_request_window_admits_limit_per_period_and_refusals_do_not_count() -> None:
    window = RequestWindow(2, period=60)
    assert [window.admit(t).admitted for t in (0, 10, 20, 59)] == [True, True, False, False]
    refused = window.admit(59.5)
    assert (refused.remaining, refused.retry_after) == (0, 1)
    assert window.admit(60).admitted  # the start at t=0 has left the window


# --- chat ----------------------------------------------------------------------------------


async def test_chat_echoes_last_user_message_with_word_usage(http: httpx2.AsyncClient) -> None:
    body = {
        "model": "echo",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "first  question"}]},
            {"role": "assistant", "content": None},
            {"role": "user", "content": "hello\n big [fake latency=0] world"},
        ],
    }
    response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(response.content))
    assert response.headers["x-request-id"] == "req_fake_1"
    data = response.json()
    assert data == {
        "id": "chatcmpl-fake-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "echo",
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Echo: hello big world"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
    }


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_max_tokens_truncates_words(http: httpx2.AsyncClient, field: str) -> None:
    limits: dict[str, Any] = {field: 2}
    response = await http.post("/chat/completions", json=chat("one two three", **limits))
    choice = response.json()["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("Echo: one", "length")
    assert response.json()["usage"]["completion_tokens"] == 2


async def test_n_gives_identical_indexed_choices(http: httpx2.AsyncClient) -> None:
    response = await http.post("/v1/chat/completions", json=chat("hi", n=3))
    choices = response.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2]
    assert {c["message"]["content"] for c in choices} == {"Echo: hi"}


async def test_tools_answer_with_one_call_to_the_chosen_tool(http: httpx2.AsyncClient) -> None:
    tools = [
        {"type": "function", "function": {"name": "first", "parameters": {}}},
        {"type": "function", "function": {"name": "second"}},
    ]
    chosen = {"type": "function", "function": {"name": "second"}}
    response = await http.post("/v1/chat/completions", json=chat("look up", tools=tools))
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["id"].startswith("call_fake_")
    assert call["type"] == "function"
    assert call["function"]["name"] == "first"
    assert json.loads(call["function"]["arguments"]) == {"echo": "look up"}

    named = await http.post("/v1/chat/completions", json=chat("x", tools=tools, tool_choice=chosen))
    assert named.json()["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "second"
    none = await http.post("/v1/chat/completions", json=chat("x", tools=tools, tool_choice="none"))
    assert none.json()["choices"][0]["message"]["content"] == "Echo: x"


# --- streams -------------------------------------------------------------------------------


async def test_stream_framing_is_exactly_openais(http: httpx2.AsyncClient) -> None:
    body = await stream_body(http, chat("hi there", stream=True))
    head = (
        b'data: {"id":"chatcmpl-fake-1","object":"chat.completion.chunk","created":1700000000,'
        b'"model":"echo","system_fingerprint":"fp_fake","choices":[{"index":0,"delta":'
    )
    assert body == (
        head + b'{"role":"assistant","content":""}}]}\n\n'
        + head + b'{"content":"Echo:"}}]}\n\n'
        + head + b'{"content":" hi"}}]}\n\n'
        + head + b'{"content":" there"}}]}\n\n'
        + head + b'{},"finish_reason":"stop"}]}\n\n'
        + b"data: [DONE]\n\n"
    )  # fmt: skip


async def test_include_usage_adds_a_usage_chunk_before_done(http: httpx2.AsyncClient) -> None:
    options = {"include_usage": True}
    payloads = events(await stream_body(http, chat("a b", stream=True, stream_options=options)))
    assert payloads[-1] == b"[DONE]"
    usage_chunk = json.loads(payloads[-2])
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert "usage" not in json.loads(payloads[-3])


async def test_chunks_directive_splits_content_into_n_pieces(http: httpx2.AsyncClient) -> None:
    payloads = events(await stream_body(http, chat("abcdef ghij [fake chunks=3]", stream=True)))
    pieces = contents(payloads)
    assert len(pieces) == 3
    assert "".join(pieces) == "Echo: abcdef ghij"


async def test_streamed_tool_call_arguments_reassemble(http: httpx2.AsyncClient) -> None:
    tools = [{"type": "function", "function": {"name": "lookup"}}]
    payloads = events(await stream_body(http, chat("find the cat", stream=True, tools=tools)))
    chunks = [json.loads(p) for p in payloads[:-1]]
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if "tool_calls" in c["choices"][0]["delta"]
    ]
    header, pieces = calls[0], calls[1:]
    assert header["id"].startswith("call_fake_")
    assert header["function"] == {"name": "lookup", "arguments": ""}
    assert len(pieces) > 1
    arguments = "".join(p["function"]["arguments"] for p in pieces)
    assert json.loads(arguments) == {"echo": "find the cat"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert all("finish_reason" not in c["choices"][0] for c in chunks[:-1])


async def test_tps_paces_content_chunks(nursery: trio.Nursery) -> None:
    url = await start(nursery, tps=40)
    async with httpx2.AsyncClient(base_url=url) as http:
        began = trio.current_time()
        body = await stream_body(http, chat("a b c", stream=True))  # 4 pieces: 3 pauses
    assert trio.current_time() - began >= 3 / 40
    assert contents(events(body)) == ["Echo:", " a", " b", " c"]


async def test_latency_delays_the_response(http: httpx2.AsyncClient) -> None:
    began = trio.current_time()
    response = await http.post("/v1/chat/completions", json=chat("x [fake latency=0.2]"))
    assert response.status_code == 200
    assert trio.current_time() - began >= 0.2


# --- embeddings and models -----------------------------------------------------------------


async def test_embeddings_are_deterministic_unit_vectors(http: httpx2.AsyncClient) -> None:
    body = {"model": "text-embedding-3-small", "input": ["a b", "c"], "encoding_format": "float"}
    first = (await http.post("/v1/embeddings", json=body)).json()
    again = (await http.post("/embeddings", json=body)).json()
    assert first == again
    assert first["object"] == "list"
    assert first["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    vectors = [item["embedding"] for item in first["data"]]
    assert [item["index"] for item in first["data"]] == [0, 1]
    assert vectors[0] != vectors[1]
    for vector in vectors:
        assert len(vector) == 8
        assert all(-1 <= x <= 1 for x in vector)
        assert math.isclose(sum(x * x for x in vector), 1, rel_tol=1e-5)


async def test_embedding_token_inputs_and_dimensions(http: httpx2.AsyncClient) -> None:
    tokens = {"model": "e", "input": [[1, 2, 3], [4]], "dimensions": 5}
    data = (await http.post("/v1/embeddings", json=tokens)).json()
    assert [len(item["embedding"]) for item in data["data"]] == [5, 5]
    assert data["usage"]["prompt_tokens"] == 4
    single = (await http.post("/v1/embeddings", json={"model": "e", "input": [1, 2, 3]})).json()
    assert len(single["data"]) == 1
    assert single["data"][0]["embedding"][:5] != data["data"][0]["embedding"]  # length matters


async def test_sdk_base64_embeddings_equal_the_float_form(url: str) -> None:
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
        decoded = await client.embeddings.create(model="e", input=["hello world"], dimensions=16)
        floats = await client.embeddings.create(
            model="e", input=["hello world"], dimensions=16, encoding_format="float"
        )
    assert decoded.data[0].embedding == floats.data[0].embedding
    assert len(decoded.data[0].embedding) == 16
    assert decoded.usage.prompt_tokens == 2


async def test_sdk_lists_models(url: str) -> None:
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
        page = await client.models.list()
    assert [m.id for m in page.data] == ["echo", "text-embedding-3-small"]
    assert {m.owned_by for m in page.data} == {"fake-provider"}


async def test_sdk_chat_and_stream(url: str) -> None:
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
        completion = await client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "ping pong"}]
        )
        stream = await client.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "ping pong"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, usage = [], None
        async for chunk in stream:
            pieces += [c.delta.content or "" for c in chunk.choices]
            usage = chunk.usage or usage
    assert completion.choices[0].message.content == "Echo: ping pong"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 5
    assert "".join(pieces) == "Echo: ping pong"
    assert usage is not None
    assert usage.completion_tokens == 3


# --- faults --------------------------------------------------------------------------------


async def test_status_fault_sends_openai_error_and_retry_headers(http: httpx2.AsyncClient) -> None:
    tag = "[fake status=429 retry_after=2 retry_after_ms=1500]"
    extras: list[dict[str, Any]] = [{}, {"stream": True}]
    for extra in extras:
        response = await http.post("/v1/chat/completions", json=chat(f"hi {tag}", **extra))
        assert response.status_code == 429
        assert response.headers["retry-after"] == "2"
        assert response.headers["retry-after-ms"] == "1500"
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "error": {
                "message": "fake upstream error 429",
                "type": "rate_limit_exceeded",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
    assert (await stats(http))["faults"] == {"status_429": 2}


async def test_sdk_sees_status_fault_as_its_own_error(url: str) -> None:
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
        with pytest.raises(openai.InternalServerError) as info:
            await client.chat.completions.create(
                model="echo", messages=[{"role": "user", "content": "[fake status=503]"}]
            )
    assert info.value.status_code == 503


async def test_model_name_directives_apply_like_tags(http: httpx2.AsyncClient) -> None:
    response = await http.post("/v1/chat/completions", json=chat("hi", model="status=503"))
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "server_error"
    model = "fake/status=429,retry_after=1"
    response = await http.post("/v1/embeddings", json={"model": model, "input": "x"})
    assert (response.status_code, response.headers["retry-after"]) == (429, "1")
    overridden = await http.post(
        "/v1/chat/completions", json=chat("ok [fake status=400]", model=model)
    )
    assert overridden.status_code == 400
    assert (await stats(http))["by_model"] == {"status=503": 1, model: 2}


async def test_fail_first_fails_n_times_per_model_and_tag(http: httpx2.AsyncClient) -> None:
    body = chat("hi [fake status=500 fail_first=2 id=t1]")
    codes = [(await http.post("/v1/chat/completions", json=body)).status_code for _ in range(3)]
    assert codes == [500, 500, 200]
    fresh = chat("hi [fake status=500 fail_first=2 id=t2]")
    assert (await http.post("/v1/chat/completions", json=fresh)).status_code == 500
    ok = (await http.post("/v1/chat/completions", json=body)).json()
    assert ok["choices"][0]["message"]["content"] == "Echo: hi"


async def test_drop_after_cuts_the_stream_after_k_chunks(http: httpx2.AsyncClient) -> None:
    received = []
    with pytest.raises((httpx2.RemoteProtocolError, httpx2.ReadError)):
        async with http.stream(
            "POST", "/v1/chat/completions", json=chat("a b c d [fake drop_after=2]", stream=True)
        ) as response:
            async for chunk in response.aiter_raw():
                received.append(chunk)
    assert contents(events(b"".join(received))) == ["Echo:", " a"]
    assert (await stats(http))["faults"] == {"drop": 1}


async def test_drop_after_on_non_stream_sends_nothing(http: httpx2.AsyncClient) -> None:
    with pytest.raises(httpx2.RemoteProtocolError):
        await http.post("/v1/chat/completions", json=chat("hi [fake drop_after=0]"))
    assert (await http.post("/v1/chat/completions", json=chat("hi"))).status_code == 200


async def test_error_after_sends_an_error_event_and_ends(http: httpx2.AsyncClient) -> None:
    payloads = events(await stream_body(http, chat("a b c [fake error_after=1]", stream=True)))
    assert contents(payloads) == ["Echo:"]
    assert json.loads(payloads[-1]) == {
        "error": {
            "message": "fake mid-stream failure",
            "type": "server_error",
            "param": None,
            "code": "500",
        }
    }


async def test_malformed_after_inserts_bad_json_and_continues(http: httpx2.AsyncClient) -> None:
    payloads = events(await stream_body(http, chat("a b [fake malformed_after=1]", stream=True)))
    bad = [p for p in payloads if p.startswith(b"{not")]
    assert bad == [b"{not json"]
    good = [p for p in payloads if p != b"{not json"]
    assert contents(good) == ["Echo:", " a", " b"]
    assert payloads[-1] == b"[DONE]"


async def test_no_done_ends_the_body_without_done(http: httpx2.AsyncClient) -> None:
    payloads = events(await stream_body(http, chat("a [fake no_done=1]", stream=True)))
    assert b"[DONE]" not in payloads
    assert json.loads(payloads[-1])["choices"][0]["finish_reason"] == "stop"


async def test_stall_holds_the_stream_and_frees_when_client_leaves(
    http: httpx2.AsyncClient,
) -> None:
    received = []
    with trio.move_on_after(0.3) as scope:
        async with http.stream(
            "POST", "/v1/chat/completions", json=chat("a b c [fake stall_after=1]", stream=True)
        ) as response:
            async for chunk in response.aiter_raw():
                received.append(chunk)
    assert scope.cancelled_caught
    assert contents(events(b"".join(received))) == ["Echo:"]
    await trio.testing.wait_all_tasks_blocked()
    after = await stats(http)
    assert after["in_flight"] == 0
    assert after["faults"] == {"stall": 1}


async def test_stall_alone_on_non_stream_acts_as_latency(http: httpx2.AsyncClient) -> None:
    with trio.move_on_after(0.2) as scope:
        await http.post("/v1/chat/completions", json=chat("hi [fake stall=30]"))
    assert scope.cancelled_caught


async def test_rpm_limit_refuses_with_retry_after_and_ratelimit_headers(
    nursery: trio.Nursery,
) -> None:
    url = await start(nursery, rpm=2)
    async with httpx2.AsyncClient(base_url=url) as http:
        responses = [await http.get("/v1/models") for _ in range(3)]
        assert [r.status_code for r in responses] == [200, 200, 429]
        assert [r.headers["x-ratelimit-remaining-requests"] for r in responses] == ["1", "0", "0"]
        assert {r.headers["x-ratelimit-limit-requests"] for r in responses} == {"2"}
        refused = responses[2]
        assert refused.headers["retry-after"] == "60"
        assert re.fullmatch(r"(59\.\d+s|1m0s)", refused.headers["x-ratelimit-reset-requests"])
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert (await stats(http))["faults"] == {"rate_limited": 1}
        assert (await http.post("/_reset")).status_code == 200
        assert (await http.get("/v1/models")).status_code == 200


# --- protocol, stats and errors ------------------------------------------------------------


async def test_stats_count_requests_and_reset_zeroes_them(http: httpx2.AsyncClient) -> None:
    await http.post("/v1/chat/completions", json=chat("hi"))
    await http.post("/v1/chat/completions", json=chat("[fake status=500]", model="m2"))
    await http.get("/models")
    snapshot = await stats(http)
    assert snapshot["requests"] == 3
    assert snapshot["by_path"] == {"/v1/chat/completions": 2, "/v1/models": 1}
    assert snapshot["by_model"] == {"echo": 1, "m2": 1}
    assert snapshot["faults"] == {"status_500": 1}
    assert snapshot["in_flight"] == 0
    await http.post("/_reset")
    cleared = await stats(http)
    assert (cleared["requests"], cleared["by_path"], cleared["faults"]) == (0, {}, {})


async def test_bad_json_and_bad_requests_get_400(http: httpx2.AsyncClient) -> None:
    bad = await http.post("/v1/chat/completions", content=b"{not json")
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    assert set(bad.json()["error"]) == {"message", "type", "param", "code"}
    missing = await http.post("/v1/chat/completions", json={"model": "echo"})
    assert missing.status_code == 400
    assert "messages" in missing.json()["error"]["message"]
    unknown = await http.post("/v1/chat/completions", json=chat("[fake wobble=1]"))
    assert unknown.status_code == 400
    assert "wobble" in unknown.json()["error"]["message"]


async def test_unknown_path_is_404_and_wrong_method_405(http: httpx2.AsyncClient) -> None:
    missing = await http.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"].endswith("/v1/nothing")
    wrong = await http.get("/v1/chat/completions")
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST")


async def test_keep_alive_serves_many_requests_on_one_connection(
    http: httpx2.AsyncClient,
) -> None:
    for _ in range(3):
        assert (await http.post("/v1/chat/completions", json=chat("hi"))).status_code == 200
    await stream_body(http, chat("hi", stream=True))
    await http.post("/v1/embeddings", json={"model": "e", "input": "x"})
    snapshot = await stats(http)
    assert (snapshot["connections"], snapshot["open_connections"]) == (1, 1)


async def test_pipelined_requests_are_answered_in_order(url: str) -> None:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    payload = msgspec.json.encode(chat("hi"))
    request = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (
        len(payload),
        payload,
    )
    async with await trio.open_tcp_stream(host, int(port)) as stream:
        await stream.send_all(request + request + b"GET /_stats HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        with trio.fail_after(5):
            while b'"requests":2' not in received:
                received += await stream.receive_some(65536)
    assert received.count(b"HTTP/1.1 200 OK") == 3
    assert b"x-request-id: req_fake_1\r\n" in received
    assert b"x-request-id: req_fake_2\r\n" in received
    assert b'"connections":1' in received


async def test_server_survives_clients_leaving_mid_stream(url: str) -> None:
    async with (
        httpx2.AsyncClient(base_url=url) as first,
        first.stream(
            "POST", "/v1/chat/completions", json=chat("a b c [fake tps=5]", stream=True)
        ) as response,
    ):
        async for _ in response.aiter_raw():
            break  # leave after the first piece, mid-stream
    await trio.testing.wait_all_tasks_blocked()
    async with httpx2.AsyncClient(base_url=url) as second:
        response = await second.post("/v1/chat/completions", json=chat("still here"))
        assert response.json()["choices"][0]["message"]["content"] == "Echo: still here"
        snapshot = await stats(second)
    assert (snapshot["in_flight"], snapshot["open_connections"]) == (0, 1)
