"""Folding stream chunks into the completion they spell."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from trio_litellm._aggregate import StreamAccumulator
from trio_litellm._wire import (
    ChatCompletionChunk,
    ChunkChoice,
    Delta,
    FunctionCallDelta,
    ToolCallDelta,
    Usage,
    chunk_decoder,
)


def chunk(*choices: ChunkChoice, usage: Usage | None = None, **fields: Any) -> ChatCompletionChunk:
    fields.setdefault("id", "chatcmpl-1")
    fields.setdefault("model", "fake-gpt")
    fields.setdefault("created", 1795735387)
    return ChatCompletionChunk(choices=list(choices), usage=usage, **fields)


def text(content: str | None, *, index: int = 0, role: str | None = None) -> ChunkChoice:
    return ChunkChoice(index=index, delta=Delta(content=content, role=role))


def finish(reason: str, *, index: int = 0) -> ChunkChoice:
    return ChunkChoice(index=index, delta=Delta(), finish_reason=reason)


def tool(
    index: int,
    *,
    id: str | None = None,
    name: str | None = None,
    arguments: str | None = None,
    type: str | None = None,
    choice: int = 0,
) -> ChunkChoice:
    function = (
        None
        if name is None and arguments is None
        else FunctionCallDelta(name=name, arguments=arguments)
    )
    piece = ToolCallDelta(index=index, id=id, type=type, function=function)
    return ChunkChoice(index=choice, delta=Delta(tool_calls=[piece]))


def fold(*chunks: ChatCompletionChunk) -> StreamAccumulator:
    acc = StreamAccumulator()
    for c in chunks:
        acc.add(c)
    return acc


# --- text ---------------------------------------------------------------------------------------


def test_text_pieces_are_concatenated() -> None:
    acc = fold(
        chunk(text("", role="assistant")),
        chunk(text("Hel")),
        chunk(text("lo")),
        chunk(finish("stop")),
    )
    result = acc.result()
    assert result.text == "Hello"
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].finish_reason == "stop"


def test_proxy_stream_json_folds_to_the_completion() -> None:
    raw = [
        b'{"id":"chatcmpl-9","created":1795735387,"model":"local-gpt","object":"chat.completion.chunk",'
        b'"choices":[{"index":0,"delta":{"content":"","role":"assistant"}}]}',
        b'{"id":"chatcmpl-9","created":1795735387,"model":"local-gpt","object":"chat.completion.chunk",'
        b'"choices":[{"index":0,"delta":{"content":"Echo:"}}]}',
        b'{"id":"chatcmpl-9","created":1795735387,"model":"local-gpt","object":"chat.completion.chunk",'
        b'"choices":[{"finish_reason":"stop","index":0,"delta":{}}]}',
        b'{"id":"chatcmpl-9","created":1795735387,"model":"local-gpt","object":"chat.completion.chunk",'
        b'"choices":[],"usage":{"completion_tokens":3,"prompt_tokens":5,"total_tokens":8,'
        b'"completion_tokens_details":{"reasoning_tokens":0,"text_tokens":3}}}',
    ]
    result = fold(*(chunk_decoder.decode(r) for r in raw)).result()
    assert (result.id, result.model, result.created, result.object) == (
        "chatcmpl-9",
        "local-gpt",
        1795735387,
        "chat.completion",
    )
    assert result.text == "Echo:"
    assert result.usage is not None
    assert result.usage.total_tokens == 8


def test_role_is_taken_from_the_first_chunk_that_has_one() -> None:
    result = fold(chunk(text("a", role="assistant")), chunk(text("b", role="tool"))).result()
    assert result.choices[0].message.role == "assistant"


def test_role_defaults_to_assistant() -> None:
    assert fold(chunk(text("a"))).result().choices[0].message.role == "assistant"


def test_last_non_null_finish_reason_wins() -> None:
    result = fold(
        chunk(finish("length")), chunk(text("x")), chunk(finish("stop")), chunk(text("y"))
    ).result()
    assert result.choices[0].finish_reason == "stop"


def test_refusal_and_reasoning_are_concatenated() -> None:
    acc = fold(
        chunk(ChunkChoice(delta=Delta(reasoning_content="think "))),
        chunk(ChunkChoice(delta=Delta(reasoning_content="hard"))),
        chunk(ChunkChoice(delta=Delta(refusal="I can"))),
        chunk(ChunkChoice(delta=Delta(refusal="not."))),
    )
    message = acc.result().choices[0].message
    assert (message.reasoning_content, message.refusal) == ("think hard", "I cannot.")


def test_refusal_and_reasoning_are_none_when_never_sent() -> None:
    message = fold(chunk(text("hi"))).result().choices[0].message
    assert (message.reasoning_content, message.refusal) == (None, None)


@given(st.lists(st.text(max_size=8), max_size=30))
def test_any_split_of_a_text_reassembles_it(pieces: list[str]) -> None:
    assert fold(*(chunk(text(p)) for p in pieces)).result().text == "".join(pieces)


# --- tool calls -------------------------------------------------------------------------------


def test_tool_call_pieces_merge_by_index() -> None:
    acc = fold(
        chunk(text("", role="assistant")),
        chunk(tool(0, id="call_1", type="function", name="get_weather", arguments="")),
        chunk(tool(0, arguments='{"city"')),
        chunk(tool(0, arguments=': "Paris"}')),
        chunk(finish("tool_calls")),
    )
    message = acc.result().choices[0].message
    assert message.tool_calls is not None
    [call] = message.tool_calls
    assert (call.id, call.type, call.function.name, call.function.arguments) == (
        "call_1",
        "function",
        "get_weather",
        '{"city": "Paris"}',
    )


def test_tool_call_message_without_text_has_content_none() -> None:
    acc = fold(chunk(text("", role="assistant")), chunk(tool(0, id="c", name="f", arguments="{}")))
    assert acc.result().choices[0].message.content is None


def test_tool_call_message_with_text_keeps_the_text() -> None:
    acc = fold(chunk(text("Let me check.")), chunk(tool(0, id="c", name="f", arguments="{}")))
    assert acc.result().choices[0].message.content == "Let me check."


def test_two_parallel_tool_calls_interleaved_stay_apart() -> None:
    acc = fold(
        chunk(tool(0, id="call_a", name="weather", arguments="")),
        chunk(tool(1, id="call_b", name="time", arguments="")),
        chunk(tool(0, arguments='{"city":')),
        chunk(tool(1, arguments='{"tz":')),
        chunk(tool(1, arguments='"CET"}')),
        chunk(tool(0, arguments='"Oslo"}')),
    )
    calls = acc.result().choices[0].message.tool_calls
    assert calls is not None
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_a", "weather", '{"city":"Oslo"}'),
        ("call_b", "time", '{"tz":"CET"}'),
    ]


def test_tool_calls_are_ordered_by_index_not_arrival() -> None:
    acc = fold(chunk(tool(1, id="second", name="g")), chunk(tool(0, id="first", name="f")))
    calls = acc.result().choices[0].message.tool_calls
    assert calls is not None
    assert [c.id for c in calls] == ["first", "second"]


def test_tool_call_id_and_name_repeated_in_later_pieces_are_not_duplicated() -> None:
    acc = fold(
        chunk(tool(0, id="call_1", name="f", arguments="{")),
        chunk(tool(0, id="call_1", name="f", arguments="}")),
    )
    calls = acc.result().choices[0].message.tool_calls
    assert calls is not None
    assert (calls[0].id, calls[0].function.name, calls[0].function.arguments) == (
        "call_1",
        "f",
        "{}",
    )


def test_tool_call_type_defaults_to_function() -> None:
    calls = fold(chunk(tool(0, id="c", name="f"))).result().choices[0].message.tool_calls
    assert calls is not None
    assert calls[0].type == "function"


def test_message_without_tool_calls_has_tool_calls_none() -> None:
    assert fold(chunk(text("hi"))).result().choices[0].message.tool_calls is None


# --- choices, usage, identity -----------------------------------------------------------------


def test_two_choices_are_kept_apart_and_sorted_by_index() -> None:
    acc = fold(
        chunk(text("B1", index=1)),
        chunk(text("A1", index=0)),
        chunk(text("A2", index=0), text("B2", index=1)),
        chunk(finish("stop", index=1), finish("length", index=0)),
    )
    choices = acc.result().choices
    assert [(c.index, c.message.content, c.finish_reason) for c in choices] == [
        (0, "A1A2", "length"),
        (1, "B1B2", "stop"),
    ]


def test_usage_comes_from_the_chunk_with_empty_choices() -> None:
    usage = Usage(prompt_tokens=5, completion_tokens=3, total_tokens=8, cost=1.95e-6)
    acc = fold(chunk(text("hi")), chunk(finish("stop")), chunk(usage=usage))
    result = acc.result()
    assert result.usage == usage
    assert len(result.choices) == 1


def test_usage_is_none_without_a_usage_chunk() -> None:
    assert fold(chunk(text("hi"))).result().usage is None


def test_identity_fields_come_from_the_chunks() -> None:
    acc = fold(
        chunk(text("a"), id="", model="", created=0),
        chunk(
            text("b"), id="chatcmpl-x", model="gpt-4o-mini", created=42, system_fingerprint="fp_1"
        ),
        chunk(text("c"), id="chatcmpl-y", model="other", created=43, system_fingerprint="fp_2"),
    )
    result = acc.result()
    assert (result.id, result.model, result.created, result.system_fingerprint) == (
        "chatcmpl-x",
        "gpt-4o-mini",
        42,
        "fp_1",
    )


def test_logprobs_token_lists_are_extended() -> None:
    acc = fold(
        chunk(
            ChunkChoice(
                delta=Delta(content="a"), logprobs={"content": [{"token": "a"}], "refusal": None}
            )
        ),
        chunk(
            ChunkChoice(
                delta=Delta(content="b"), logprobs={"content": [{"token": "b"}], "refusal": None}
            )
        ),
    )
    assert acc.result().choices[0].logprobs == {
        "content": [{"token": "a"}, {"token": "b"}],
        "refusal": None,
    }


def test_logprobs_are_none_when_never_sent() -> None:
    assert fold(chunk(text("a"))).result().choices[0].logprobs is None


# --- partial results and progress ---------------------------------------------------------------


def test_result_mid_stream_is_the_partial_completion() -> None:
    acc = fold(chunk(text("", role="assistant")), chunk(text("Hel")))
    partial = acc.result()
    assert partial.text == "Hel"
    assert partial.choices[0].finish_reason is None
    assert partial.usage is None


def test_result_is_not_changed_by_later_chunks() -> None:
    acc = fold(chunk(ChunkChoice(delta=Delta(content="Hel"), logprobs={"content": [1]})))
    partial = acc.result()
    acc.add(chunk(ChunkChoice(delta=Delta(content="lo"), logprobs={"content": [2]})))
    acc.add(chunk(tool(0, id="c", name="f")))
    assert partial.text == "Hel"
    assert partial.choices[0].message.tool_calls is None
    assert partial.choices[0].logprobs == {"content": [1]}
    assert acc.result().text == "Hello"


def test_result_before_any_chunk_is_empty() -> None:
    result = StreamAccumulator().result()
    assert (result.id, result.choices, result.usage) == ("", [], None)


def test_no_content_stream_has_no_content() -> None:
    acc = fold(chunk(text("", role="assistant")), chunk(usage=Usage(total_tokens=1)))
    assert acc.has_content is False
    assert acc.chunks == 2
    message = acc.result().choices[0].message
    assert (message.content, message.tool_calls) == ("", None)


def test_empty_string_content_is_not_content() -> None:
    assert fold(chunk(text(""))).has_content is False


def test_text_is_content() -> None:
    acc = fold(chunk(text("", role="assistant")))
    acc.add(chunk(text("x")))
    assert acc.has_content is True


def test_tool_call_is_content() -> None:
    assert fold(chunk(tool(0, id="c"))).has_content is True


def test_refusal_is_content() -> None:
    assert fold(chunk(ChunkChoice(delta=Delta(refusal="no")))).has_content is True


def test_reasoning_is_content() -> None:
    assert fold(chunk(ChunkChoice(delta=Delta(reasoning_content="hmm")))).has_content is True


def test_finish_reason_is_content() -> None:
    assert fold(chunk(finish("stop"))).has_content is True


def test_chunks_counts_every_chunk_added() -> None:
    assert fold(chunk(), chunk(text("a")), chunk(usage=Usage())).chunks == 3
