"""Misuse of the API: one rule for method calls and jobs.

A request that cannot be sent raises :class:`InvalidRequestError` naming the field (a misspelt
keyword, no or empty messages, a message that is neither a dict nor a Message, a bad per-call
option...), before anything is sent. It is a ValueError and a TypeError too, so ``except``
clauses written for the plain errors Python raises for such mistakes keep working.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from trio_litellm import (
    ChatRequest,
    Client,
    EmbeddingRequest,
    InvalidRequestError,
    Job,
    LiteLLMError,
    Message,
    open_client,
)

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    # Nothing listens there: every case must fail before a request is sent.
    async with open_client(
        proxy_url="http://127.0.0.1:9", health_check_interval=None, max_retries=0
    ) as client:
        yield client


def test_invalid_request_error_is_a_value_error_and_a_type_error() -> None:
    error = InvalidRequestError("complete(): messages must not be empty", field="messages")
    assert isinstance(error, LiteLLMError)
    assert isinstance(error, ValueError)
    assert isinstance(error, TypeError)
    assert (error.field, error.param) == ("messages", "messages")
    assert error.status is None


CHAT_MISUSE: list[tuple[dict[str, Any], str]] = [
    ({"model": "m", "mesages": HI}, "mesages"),  # misspelt: the struct then lacks messages
    ({"model": "m", "messages": HI, "temprature": 0.2}, "temprature"),
    ({"model": "m"}, "messages"),
    ({"messages": HI}, "model"),
    ({"model": "", "messages": HI}, "model"),
    ({"model": 3, "messages": HI}, "model"),
    ({"model": "m", "messages": []}, "messages"),
    ({"model": "m", "messages": "hi"}, "messages"),
    ({"model": "m", "messages": ["hi"]}, "messages[0]"),
    ({"model": "m", "messages": [*HI, {"content": "no role"}]}, "messages[1]"),
    ({"model": "m", "messages": HI, "stream": True}, "stream"),
    ({"model": "m", "messages": HI, "routing_hints": {"priority": "fast"}}, "routing_hints"),
    ({"model": "m", "messages": HI, "timeout": -1}, "timeout"),
    ({"model": "m", "messages": HI, "timeout": "soon"}, "timeout"),
    ({"model": "m", "messages": HI, "max_retries": -1}, "max_retries"),
    ({"model": "m", "messages": HI, "max_retries": 1.5}, "max_retries"),
]


@pytest.mark.parametrize(("params", "field"), CHAT_MISUSE)
async def test_complete_names_the_bad_field(
    client: Client, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await client.complete(**params)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"complete(): {field} ")


# A stream has per-phase deadlines (first token, idle), no timeout=.
STREAM_MISUSE = [(params, field) for params, field in CHAT_MISUSE if field != "timeout"]


@pytest.mark.parametrize(("params", "field"), STREAM_MISUSE)
async def test_stream_names_the_bad_field(
    client: Client, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        async with client.stream(**params):
            pass
    assert caught.value.field == field
    assert str(caught.value).startswith(f"stream(): {field} ")


async def test_a_misspelt_keyword_suggests_the_right_one(client: Client) -> None:
    with pytest.raises(InvalidRequestError, match="did you mean 'messages'"):
        await client.complete(model="m", mesages=HI)


async def test_code_catching_the_plain_python_errors_still_catches_them(client: Client) -> None:
    with pytest.raises(TypeError):
        await client.complete(model="m", mesages=HI)
    with pytest.raises(ValueError, match="messages"):
        await client.complete(model="m", messages=[])
    with pytest.raises(TypeError):
        await client.embed(model="e", inptu="x")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (ChatRequest(model="m", messages=[]), "messages"),
        (ChatRequest(model="", messages=HI), "model"),
        (ChatRequest(model="m", messages=[Message(role="user", content="x"), 3]), "messages[1]"),
        ({"model": "m", "messages": HI}, "request"),  # a dict goes in keywords, not positionally
    ],
)
async def test_a_bad_chat_request_struct_names_the_field(
    client: Client, request_: Any, field: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await client.complete(request_)
    assert caught.value.field == field


EMBED_MISUSE: list[tuple[dict[str, Any], str]] = [
    ({"model": "e", "inptu": "x"}, "inptu"),
    ({"model": "e"}, "input"),
    ({"input": "x"}, "model"),
    ({"model": "", "input": "x"}, "model"),
    ({"model": "e", "input": []}, "input"),
    ({"model": "e", "input": 3}, "input"),
    ({"model": "e", "input": "x", "encoding_format": "hex"}, "encoding_format"),
    ({"model": "e", "input": "x", "timeout": 0}, "timeout"),
    ({"model": "e", "input": "x", "max_retries": "2"}, "max_retries"),
]


@pytest.mark.parametrize(("params", "field"), EMBED_MISUSE)
async def test_embed_names_the_bad_field(
    client: Client, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await client.embed(**params)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"embed(): {field} ")


async def test_a_bad_embedding_request_struct_names_the_field(client: Client) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await client.embed(EmbeddingRequest(model="e", input=[]))
    assert caught.value.field == "input"


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": ["hi"]}, "messages[0]"),
        ({"messages": HI}, "model"),
        ({"model": "m", "messages": HI, "stream": True}, "stream"),
        (ChatRequest(model="m", messages=[]), "messages"),
        (ChatRequest(model="m", messages=["hi"]), "messages[0]"),
        (ChatRequest(model="m", messages=HI, stream=True), "stream"),
        (EmbeddingRequest(model="", input="x"), "model"),
        ({"model": "e", "input": []}, "input"),
        (EmbeddingRequest(model="e", input="x", encoding_format="hex"), "encoding_format"),  # type: ignore[arg-type]
    ],
)
async def test_a_job_with_a_bad_request_gets_the_same_error_as_a_call(
    client: Client, request_: Any, field: str
) -> None:
    async with client.open_jobs() as (send, receive):
        async with send:
            await send.send(Job(id=1, request=request_))
        results = [result async for result in receive]
    [result] = results
    assert isinstance(result.error, InvalidRequestError)
    assert result.error.field == field
    assert str(result.error).startswith(f"{field} ")


@pytest.mark.parametrize("max_buffer", [-1, 1.5, "8", True])
async def test_open_jobs_refuses_a_bad_max_buffer(client: Client, max_buffer: Any) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        async with client.open_jobs(max_buffer=max_buffer):
            pass
    assert caught.value.field == "max_buffer"
    assert str(caught.value).startswith("open_jobs(): max_buffer must be an integer >= 0")
    assert isinstance(caught.value, ValueError)


async def test_nothing_was_sent_for_any_misuse(client: Client) -> None:
    with pytest.raises(InvalidRequestError):
        await client.complete(model="m", messages=[])
    assert client.statistics().dispatcher.submitted == 0
