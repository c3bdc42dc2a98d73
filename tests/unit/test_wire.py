"""The wire Structs: requests encode only what was set; responses round-trip and tolerate extras."""

from __future__ import annotations

import base64
import struct
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_litellm import (
    ChatCompletionChunk,
    ChatRequest,
    EmbeddingRequest,
    Message,
    RoutingHints,
)
from trio_litellm._wire import (
    chunk_decoder,
    completion_decoder,
    embedding_decoder,
    encode_chat_request,
    encode_embedding_request,
    model_infos,
)

text = st.text(max_size=40)
usage = st.fixed_dictionaries(
    {
        "prompt_tokens": st.integers(0, 10**6),
        "completion_tokens": st.integers(0, 10**6),
        "total_tokens": st.integers(0, 10**6),
    }
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["assistant", "user"]), "content": st.none() | text}
)
completion = st.fixed_dictionaries(
    {
        "id": text,
        "object": st.just("chat.completion"),
        "created": st.integers(0, 2**40),
        "model": text,
        "choices": st.lists(
            st.fixed_dictionaries(
                {
                    "index": st.integers(0, 8),
                    "message": message,
                    "finish_reason": st.none() | st.sampled_from(["stop", "length"]),
                }
            ),
            max_size=3,
        ),
        "usage": usage,
    }
)


@given(completion)
def test_a_completion_decodes_and_encodes_back_to_the_same_json(body: dict[str, Any]) -> None:
    decoded = completion_decoder.decode(msgspec.json.encode(body))
    again = msgspec.to_builtins(decoded)
    for key, value in body.items():
        if key == "choices":
            for sent, got in zip(value, again["choices"], strict=True):
                assert got["index"] == sent["index"]
                assert got["finish_reason"] == sent["finish_reason"]
                assert got["message"].get("content") == sent["message"]["content"]
        elif key == "usage":
            assert {k: again["usage"][k] for k in value} == value
        else:
            assert again[key] == value


@given(st.dictionaries(st.text(max_size=10).map(lambda k: f"x_{k}"), st.integers()))
def test_unknown_fields_are_ignored_at_any_depth(extra: dict[str, int]) -> None:
    body = {
        "id": "x",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi", **extra}, **extra}
        ],
        **extra,
    }
    decoded = completion_decoder.decode(msgspec.json.encode(body))
    assert decoded.text == "hi"


def test_a_request_sends_only_the_parameters_that_were_set() -> None:
    request = ChatRequest(model="m", messages=[Message(role="user", content="hi")], max_tokens=5)
    assert msgspec.json.decode(encode_chat_request(request)) == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
    }


def test_extra_body_is_merged_over_the_request() -> None:
    request = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], temperature=1.0)
    body = msgspec.json.decode(
        encode_chat_request(request, {"temperature": 0.0, "mock_testing": True})
    )
    assert body["temperature"] == 0.0
    assert body["mock_testing"] is True


def test_routing_hints_travel_inside_metadata_and_leave_the_request_unchanged() -> None:
    hints = RoutingHints(priority="quality", required_capabilities=("vision",))
    request = ChatRequest(model="m", messages=[], metadata={"k": "v"}, routing_hints=hints)
    body = msgspec.json.decode(encode_chat_request(request))
    assert body["metadata"] == {
        "k": "v",
        "routing_hints": {"priority": "quality", "required_capabilities": ["vision"]},
    }
    assert "routing_hints" not in body
    assert request.metadata == {"k": "v"}


def test_an_embedding_request_encodes_its_input_as_given() -> None:
    request = EmbeddingRequest(model="e", input=[[1, 2], [3]], dimensions=4)
    assert msgspec.json.decode(encode_embedding_request(request)) == {
        "model": "e",
        "input": [[1, 2], [3]],
        "dimensions": 4,
    }


def test_the_proxys_stream_chunk_decodes_with_its_omitted_finish_reason() -> None:
    raw = b'{"id":"chatcmpl-1","created":1,"model":"local-gpt","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Echo:"}}]}'
    chunk = chunk_decoder.decode(raw)
    assert isinstance(chunk, ChatCompletionChunk)
    assert chunk.choices[0].delta.content == "Echo:"
    assert chunk.choices[0].finish_reason is None
    assert chunk.error is None


def test_model_info_entries_are_flattened_and_named_by_their_group() -> None:
    raw = msgspec.json.encode(
        {
            "data": [
                {
                    "model_name": "fake-gpt",
                    "litellm_params": {"model": "openai/gpt-4o-mini", "mock_response": "Hello"},
                    "model_info": {
                        "id": "abc",
                        "max_input_tokens": 128000,
                        "input_cost_per_token": 1.5e-07,
                        "mode": "chat",
                        "unknown": 1,
                    },
                }
            ]
        }
    )
    (info,) = model_infos(raw)
    assert (info.model_name, info.id, info.max_input_tokens, info.mode) == (
        "fake-gpt",
        "abc",
        128000,
        "chat",
    )
    assert info.litellm_params["model"] == "openai/gpt-4o-mini"


# --- embeddings -------------------------------------------------------------------------------


def base64_floats(values: list[float]) -> str:
    """What OpenAI sends for ``encoding_format: "base64"``: little-endian float32, base64."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def embeddings_body(*vectors: Any) -> bytes:
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return msgspec.json.encode({"object": "list", "data": data, "model": "e"})


def test_base64_embeddings_decode_to_the_same_floats_as_float_lists() -> None:
    vector = [0.25, -1.5, 3.0, 0.0]  # exact in float32
    from_base64 = embedding_decoder.decode(embeddings_body(base64_floats(vector)))
    from_floats = embedding_decoder.decode(embeddings_body(vector))
    assert from_base64.data[0].embedding == vector
    assert from_floats.data[0].embedding == vector


@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), max_size=64))
def test_any_float32_vector_survives_base64(vector: list[float]) -> None:
    decoded = embedding_decoder.decode(embeddings_body(base64_floats(vector), vector))
    assert decoded.data[0].embedding == decoded.data[1].embedding == vector
    assert all(type(x) is float for x in decoded.data[0].embedding)


@pytest.mark.parametrize("bad", ["not base64!", base64.b64encode(b"12345").decode()])
def test_base64_that_is_not_float32_is_a_decode_error(bad: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=r"\$\.data\[0\]"):
        embedding_decoder.decode(embeddings_body(bad))
