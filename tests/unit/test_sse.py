"""SSE framing: the WHATWG rules, the proxy's real streams, and any split of the input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_litellm._sse import EventTooLarge, ServerSentEvent, SSEParser, is_done
from trio_litellm._wire import chunk_decoder


def parse(*pieces: bytes) -> list[ServerSentEvent]:
    parser = SSEParser()
    events = [event for piece in pieces for event in parser.feed(piece)]
    events += parser.finish()
    return events


def parse_with_flag(*pieces: bytes) -> tuple[list[ServerSentEvent], bool]:
    parser = SSEParser()
    events = [event for piece in pieces for event in parser.feed(piece)]
    events += parser.finish()
    return events, parser.incomplete


def datas(events: list[ServerSentEvent]) -> list[str]:
    return [event.data for event in events]


# --- what LiteLLM sends -------------------------------------------------------------------------

# The proxy's stream for the mock deployment with include_usage, framed exactly as observed:
# compact JSON, `data: ` prefix, LF LF, no `event:` lines, no CR, `[DONE]` last.
PROXY_STREAM = (
    b'data: {"id":"chatcmpl-93fc36d4-2b1e-4c3a-9a57-0c6e0d1f2a3b","created":1795735387,'
    b'"model":"fake-gpt","object":"chat.completion.chunk","choices":[{"index":0,'
    b'"delta":{"content":"","role":"assistant"}}]}\n\n'
    b'data: {"id":"chatcmpl-93fc36d4-2b1e-4c3a-9a57-0c6e0d1f2a3b","created":1795735387,'
    b'"model":"fake-gpt","object":"chat.completion.chunk","choices":[{"index":0,'
    b'"delta":{"content":"Hel"}}]}\n\n'
    b'data: {"id":"chatcmpl-93fc36d4-2b1e-4c3a-9a57-0c6e0d1f2a3b","created":1795735387,'
    b'"model":"fake-gpt","object":"chat.completion.chunk","choices":[{"index":0,'
    b'"delta":{"content":"lo"}}]}\n\n'
    b'data: {"id":"chatcmpl-93fc36d4-2b1e-4c3a-9a57-0c6e0d1f2a3b","created":1795735387,'
    b'"model":"fake-gpt","object":"chat.completion.chunk","choices":[{"finish_reason":"stop",'
    b'"index":0,"delta":{}}]}\n\n'
    b'data: {"id":"chatcmpl-93fc36d4-2b1e-4c3a-9a57-0c6e0d1f2a3b","created":1795735387,'
    b'"model":"fake-gpt","object":"chat.completion.chunk","choices":[],"usage":'
    b'{"completion_tokens":3,"prompt_tokens":5,"total_tokens":8,"completion_tokens_details":'
    b'{"reasoning_tokens":0,"text_tokens":3},"cost":1.95e-6}}\n\n'
    b"data: [DONE]\n\n"
)

# A mid-stream upstream failure: the proxy re-emits it with Python's default `", "` separators.
IN_BAND_ERROR = (
    b'data: {"error": {"message": "litellm.APIConnectionError: APIConnectionError: '
    b'OpenAIException - Connection error.", "type": "internal_server_error", "param": null, '
    b'"code": "500"}}\n\n'
    b"data: [DONE]\n\n"
)


def test_proxy_stream_yields_one_event_per_chunk_then_done() -> None:
    events = parse(PROXY_STREAM)
    assert len(events) == 6
    assert all(event.event == "message" and event.id is None for event in events)
    assert [is_done(event) for event in events] == [False] * 5 + [True]


def test_proxy_stream_chunks_decode_to_the_text() -> None:
    chunks = [chunk_decoder.decode(event.data) for event in parse(PROXY_STREAM)[:-1]]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello"
    assert chunks[3].choices[0].finish_reason == "stop"
    usage = chunks[4].usage
    assert chunks[4].choices == []
    assert usage is not None
    assert (usage.total_tokens, usage.cost) == (8, 1.95e-6)


def test_proxy_stream_ends_clean() -> None:
    _, incomplete = parse_with_flag(PROXY_STREAM)
    assert incomplete is False


def test_in_band_error_event_keeps_its_spaced_json() -> None:
    events = parse(IN_BAND_ERROR)
    assert len(events) == 2
    chunk = chunk_decoder.decode(events[0].data)
    assert chunk.error["code"] == "500"
    assert chunk.error["type"] == "internal_server_error"
    assert events[0].data.startswith('{"error": {"message": "litellm.APIConnectionError')
    assert is_done(events[1])


def test_keepalive_ping_comments_are_ignored() -> None:
    events = parse(b": ping\n\n: ping\n\n" + PROXY_STREAM)
    assert len(events) == 6


def test_keepalive_comment_after_last_event_is_a_clean_end() -> None:
    events, incomplete = parse_with_flag(b"data: x\n\n: keepalive\n")
    assert datas(events) == ["x"]
    assert incomplete is False


# --- line endings ---------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"], ids=["LF", "CR", "CRLF"])
def test_each_line_ending_frames_events(eol: bytes) -> None:
    stream = b"data: a" + eol + eol + b"event: e" + eol + b"data: b" + eol + eol
    events = parse(stream)
    assert [(e.event, e.data) for e in events] == [("message", "a"), ("e", "b")]


def test_mixed_line_endings_in_one_stream() -> None:
    assert datas(parse(b"data: a\r\n\rdata: b\n\r\ndata: c\r\r")) == ["a", "b", "c"]


def test_crlf_split_across_feeds_is_one_line_ending() -> None:
    # Were the CR and the LF two endings, the LF would be a blank line dispatching "a" alone.
    events = parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n")
    assert datas(events) == ["a\nb"]


def test_cr_at_end_of_feed_then_other_byte_is_a_line_ending() -> None:
    assert datas(parse(b"data: a\r", b"\r")) == ["a"]


def test_lf_after_cr_is_skipped_even_after_empty_feeds() -> None:
    assert datas(parse(b"data: a\r", b"", b"\ndata: b\n\n")) == ["a\nb"]


def test_other_unicode_line_breaks_are_not_line_endings() -> None:
    # str.splitlines would break on these; SSE does not.
    assert datas(parse("data: a\x0bb\x0cc\x1cd\u2028e\x85f\n\n".encode())) == [
        "a\x0bb\x0cc\x1cd\u2028e\x85f"
    ]


# --- fields -----------------------------------------------------------------------------------


def test_repeated_data_lines_join_with_newline() -> None:
    assert datas(parse(b"data: one\ndata: two\ndata:\ndata: four\n\n")) == ["one\ntwo\n\nfour"]


def test_blank_line_without_data_dispatches_nothing() -> None:
    assert parse(b"event: ping\nid: 1\nretry: 5\n\n") == []


def test_data_field_with_empty_value_dispatches_empty_event() -> None:
    assert datas(parse(b"data\n\n")) == [""]


def test_field_without_colon_has_empty_value() -> None:
    events = parse(b"event\ndata\n\n")
    assert [(e.event, e.data) for e in events] == [("message", "")]


def test_only_one_leading_space_is_stripped() -> None:
    assert datas(parse(b"data:  two spaces\ndata:none\n\n")) == [" two spaces\nnone"]


def test_value_keeps_later_colons() -> None:
    assert datas(parse(b'data: {"a": "b:c"}\n\n')) == ['{"a": "b:c"}']


def test_comment_lines_are_ignored_inside_an_event() -> None:
    assert datas(parse(b"data: a\n: comment\n:\ndata: b\n\n")) == ["a\nb"]


def test_unknown_fields_are_ignored() -> None:
    assert datas(parse(b"foo: bar\ndata: a\nDATA: b\n data: c\n\n")) == ["a"]


def test_event_type_names_the_event_and_resets_after_dispatch() -> None:
    events = parse(b"event: response.failed\ndata: a\n\ndata: b\n\n")
    assert [(e.event, e.data) for e in events] == [("response.failed", "a"), ("message", "b")]


def test_event_type_of_an_undispatched_event_does_not_leak() -> None:
    events = parse(b"event: ping\n\ndata: b\n\n")
    assert [(e.event, e.data) for e in events] == [("message", "b")]


def test_empty_event_type_means_message() -> None:
    assert parse(b"event:\ndata: a\n\n")[0].event == "message"


def test_id_persists_across_events() -> None:
    events = parse(b"id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\n")
    assert [e.id for e in events] == ["7", "7", ""]


def test_id_containing_nul_is_ignored() -> None:
    events = parse(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")
    assert [e.id for e in events] == ["1", "1"]


def test_retry_is_read_when_all_digits() -> None:
    assert parse(b"retry: 1500\ndata: a\n\n")[0].retry == 1500


@pytest.mark.parametrize("value", [b"", b"15x", b"-1", b"1.5", b" 15", "\u0661\u0662".encode()])
def test_retry_that_is_not_all_ascii_digits_is_ignored(value: bytes) -> None:
    assert parse(b"retry: " + value + b"\ndata: a\n\n")[0].retry is None


def test_retry_too_long_for_int_is_ignored() -> None:
    assert parse(b"retry: " + b"9" * 5000 + b"\ndata: a\n\n")[0].retry is None


def test_retry_belongs_to_its_event_only() -> None:
    assert [e.retry for e in parse(b"retry: 10\ndata: a\n\ndata: b\n\n")] == [10, None]


# --- bytes and text ---------------------------------------------------------------------------


def test_bom_at_start_of_stream_is_skipped() -> None:
    assert datas(parse(b"\xef\xbb\xbfdata: a\n\n")) == ["a"]


def test_bom_split_across_feeds_is_skipped() -> None:
    assert datas(parse(b"\xef", b"\xbb", b"\xbfdata: a\n\n")) == ["a"]


def test_bom_after_start_is_part_of_the_line() -> None:
    # A BOM later on is not skipped: here it makes the field name unknown.
    assert datas(parse(b"data: a\n\n\xef\xbb\xbfdata: b\n\ndata: c\n\n")) == ["a", "c"]


def test_bytes_that_only_start_like_a_bom_are_kept() -> None:
    assert datas(parse(b"\xef", b"data: a\n\n")) == []
    assert datas(parse(b"\xef\xbb", b":c\ndata: a\n\n")) == ["a"]


def test_invalid_utf8_is_replaced() -> None:
    events = parse(b"event: \xff\ndata: a\xffb\xe2\x82\nid: \xc0\n\n")
    assert [(e.event, e.data, e.id) for e in events] == [("\ufffd", "a\ufffdb\ufffd", "\ufffd")]


def test_multibyte_character_split_across_feeds_decodes_whole() -> None:
    encoded = "data: h\u00e9llo \u20ac \U0001f600\n\n".encode()
    pieces = [encoded[i : i + 1] for i in range(len(encoded))]
    assert datas(parse(*pieces)) == ["h\u00e9llo \u20ac \U0001f600"]


# --- end of input -----------------------------------------------------------------------------


def test_done_sentinel_is_recognised() -> None:
    assert is_done(ServerSentEvent(data="[DONE]"))
    assert is_done(ServerSentEvent(data="[DONE] trailing"))
    assert not is_done(ServerSentEvent(data='{"content":"[DONE]"}'))
    assert not is_done(ServerSentEvent(data=" [DONE]"))


def test_event_without_its_blank_line_is_not_dispatched_and_is_incomplete() -> None:
    events, incomplete = parse_with_flag(b"data: a\n\ndata: [DONE]\n")
    assert datas(events) == ["a"]
    assert incomplete is True


def test_torn_line_at_end_is_incomplete() -> None:
    events, incomplete = parse_with_flag(b'data: a\n\ndata: {"id":"chat')
    assert datas(events) == ["a"]
    assert incomplete is True


def test_unknown_field_without_blank_line_is_incomplete() -> None:
    assert parse_with_flag(b"data: a\n\nevent: x\n")[1] is True


def test_stream_ending_on_a_blank_line_is_complete() -> None:
    assert parse_with_flag(b"data: a\n\n")[1] is False


def test_stream_ending_on_a_lone_cr_blank_line_is_complete() -> None:
    assert parse_with_flag(b"data: a\n\r")[1] is False


def test_empty_stream_is_complete() -> None:
    assert parse_with_flag() == ([], False)


def test_stream_of_a_partial_bom_is_incomplete() -> None:
    assert parse_with_flag(b"\xef\xbb")[1] is True


def test_incomplete_is_false_before_finish() -> None:
    parser = SSEParser()
    parser.feed(b"data: a")
    assert parser.incomplete is False


def test_finish_twice_keeps_the_flag() -> None:
    parser = SSEParser()
    parser.feed(b"data: a")
    assert parser.finish() == []
    assert parser.finish() == []
    assert parser.incomplete is True


def test_feed_after_finish_raises() -> None:
    parser = SSEParser()
    parser.finish()
    with pytest.raises(RuntimeError):
        parser.feed(b"data: a\n\n")


def test_several_events_in_one_feed_are_all_returned_in_order() -> None:
    stream = b"".join(b"data: %d\n\n" % i for i in range(1000))
    assert datas(parse(stream)) == [str(i) for i in range(1000)]


# --- properties -------------------------------------------------------------------------------

# Text a field value can hold: no CR, LF or NUL (NUL only matters for id) and no surrogates.
_value_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\0"), max_size=20)
_name_text = st.text(
    st.characters(codec="utf-8", exclude_characters="\r\n\0"), min_size=1, max_size=10
)
_eols = st.sampled_from(["\n", "\r", "\r\n"])


@st.composite
def sse_streams(draw: st.DrawFn) -> tuple[bytes, list[ServerSentEvent]]:
    """A stream written by a simple SSE encoder, and the events a correct parser reads from it."""
    lines: list[str] = []
    expected: list[ServerSentEvent] = []
    last_id: str | None = None
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            lines.append(":" + draw(_value_text))
        event_type = draw(st.none() | _name_text)
        if event_type is not None:
            lines.append(f"event: {event_type}")
        if draw(st.booleans()):
            last_id = draw(_value_text)
            lines.append(f"id: {last_id}")
        retry = draw(st.none() | st.integers(0, 10**9))
        if retry is not None:
            lines.append(f"retry: {retry}")
        data_lines = draw(st.lists(_value_text, min_size=1, max_size=4))
        for value in data_lines:
            # One optional space after the colon is stripped, so a value starting with a space
            # needs the separator.
            spaced = value.startswith(" ") or draw(st.booleans())
            lines.append(("data: " if spaced else "data:") + value)
        lines.append("")
        expected.append(
            ServerSentEvent(
                event=event_type or "message",
                data="\n".join(data_lines),
                id=last_id,
                retry=retry,
            )
        )
    out: list[str] = []
    previous = ""
    for line in lines:
        eol = draw(_eols)
        if previous == "\r" and line == "" and eol == "\n":
            eol = "\r\n"  # CR then an LF-terminated blank line would read as one CRLF
        out.append(line + eol)
        previous = eol
    return "".join(out).encode(), expected


@settings(deadline=None)
@given(sse_streams())
def test_encoded_events_round_trip(stream_and_events: tuple[bytes, list[ServerSentEvent]]) -> None:
    stream, expected = stream_and_events
    events, incomplete = parse_with_flag(stream)
    assert events == expected
    assert incomplete is False


@st.composite
def split_streams(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """A stream (valid, or torn, with a BOM or not, with non-ASCII text and CRLFs) cut into
    pieces at arbitrary byte offsets, including inside CRLF and inside multi-byte characters."""
    stream, _ = draw(sse_streams())
    if draw(st.booleans()):
        stream = b"\xef\xbb\xbf" + stream
    stream = stream[: draw(st.integers(0, len(stream)))] if draw(st.booleans()) else stream
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    return stream, pieces


@settings(deadline=None)
@given(split_streams())
def test_any_split_gives_the_same_events_as_whole(
    stream_and_pieces: tuple[bytes, list[bytes]],
) -> None:
    stream, pieces = stream_and_pieces
    assert parse_with_flag(*pieces) == parse_with_flag(stream)


@settings(deadline=None)
@given(split_streams())
def test_feed_data_gives_each_events_data_as_its_raw_bytes(
    stream_and_pieces: tuple[bytes, list[bytes]],
) -> None:
    stream, pieces = stream_and_pieces
    raw = SSEParser()
    payloads = [payload for piece in pieces for payload in raw.feed_data(piece)]
    assert raw.finish_data() == []
    events = parse(stream)
    assert [payload.decode("utf-8", "replace") for payload in payloads] == datas(events)


@settings(deadline=None)
@given(st.binary(max_size=200), st.data())
def test_arbitrary_bytes_never_raise_and_split_anywhere_agrees(
    blob: bytes, data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(blob)), max_size=8)))
    pieces = [blob[a:b] for a, b in zip([0, *cuts], [*cuts, len(blob)], strict=True)]
    assert parse_with_flag(*pieces) == parse_with_flag(blob)


@settings(deadline=None)
@given(
    st.lists(
        st.sampled_from([b"data: x", b"data", b":c", b"id: 1", b"", b"\r", b"\n", b"\r\n"]),
        max_size=30,
    )
)
def test_byte_at_a_time_agrees_with_whole_on_line_ending_soup(parts: list[bytes]) -> None:
    stream = b"".join(parts)
    pieces = [stream[i : i + 1] for i in range(len(stream))]
    assert parse_with_flag(*pieces) == parse_with_flag(stream)


# --- the cap on one event ------------------------------------------------------------------------


def test_a_line_without_an_end_past_the_cap_raises() -> None:
    parser = SSEParser(max_event_size=100)
    parser.feed(b"data: " + b"x" * 50)
    with pytest.raises(EventTooLarge) as caught:
        parser.feed(b"x" * 60)
    assert (caught.value.size, caught.value.limit) == (116, 100)


def test_an_event_of_many_data_lines_past_the_cap_raises() -> None:
    parser = SSEParser(max_event_size=100)
    with pytest.raises(EventTooLarge):
        for _ in range(10):
            parser.feed(b"data: " + b"x" * 10 + b"\n")


def test_the_cap_counts_each_event_alone() -> None:
    parser = SSEParser(max_event_size=100)
    events = [e for _ in range(50) for e in parser.feed(b"data: " + b"x" * 80 + b"\n\n")]
    assert len(events) == 50


def test_comments_between_events_do_not_count() -> None:
    parser = SSEParser(max_event_size=100)
    events = parser.feed(b": " + b"k" * 60 + b"\n" + b"data: " + b"x" * 80 + b"\n\n")
    assert datas(events) == ["x" * 80]


@given(split_streams())
def test_a_cap_above_the_whole_stream_changes_nothing_at_any_split(
    stream_and_pieces: tuple[bytes, list[bytes]],
) -> None:
    stream, pieces = stream_and_pieces
    parser = SSEParser(max_event_size=len(stream))
    events = [event for piece in pieces for event in parser.feed(piece)] + parser.finish()
    assert (events, parser.incomplete) == parse_with_flag(stream)


@given(st.integers(1, 60), st.data())
def test_an_event_over_the_cap_raises_at_any_split(limit: int, data: st.DataObject) -> None:
    stream = b"data: " + b"x" * limit + b"\n\n"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    parser = SSEParser(max_event_size=limit)
    with pytest.raises(EventTooLarge):
        for piece in pieces:
            parser.feed(piece)
