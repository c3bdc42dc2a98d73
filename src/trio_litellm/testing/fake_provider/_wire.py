"""msgspec Structs of the OpenAI JSON the fake provider reads and writes; codecs built once.

Requests ignore unknown fields (the proxy forwards many we do not care about) and make every
optional field nullable, because clients send ``null`` as often as they omit a field. Response
field order follows OpenAI's, and ``omit_defaults`` drops what OpenAI leaves out (a stream
chunk's ``finish_reason`` before the last chunk, for one).
"""

from __future__ import annotations

from typing import Any

import msgspec

# --- requests ------------------------------------------------------------------------------


class ContentPart(msgspec.Struct, kw_only=True):
    """One element of a list-valued message content; only text parts carry words."""

    type: str = "text"
    text: str | None = None


class InMessage(msgspec.Struct, kw_only=True):
    """A chat message as sent by the client."""

    role: str
    content: str | list[ContentPart] | None = None


class FunctionName(msgspec.Struct, kw_only=True):
    """The part of a tool definition or a named tool choice that we use."""

    name: str


class ToolSpec(msgspec.Struct, kw_only=True):
    """A tool offered by the client."""

    type: str = "function"
    function: FunctionName


class NamedToolChoice(msgspec.Struct, kw_only=True):
    """``tool_choice`` naming one function."""

    type: str = "function"
    function: FunctionName


class StreamOptions(msgspec.Struct, kw_only=True):
    """``stream_options``: whether to append a usage chunk."""

    include_usage: bool | None = None


class ChatRequest(msgspec.Struct, kw_only=True):
    """``POST /v1/chat/completions``."""

    model: str
    messages: list[InMessage]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    n: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: str | NamedToolChoice | None = None


class EmbeddingRequest(msgspec.Struct, kw_only=True):
    """``POST /v1/embeddings``; ``input`` has four shapes, told apart by ``_responses``."""

    model: str
    input: Any
    encoding_format: str | None = None
    dimensions: int | None = None


# --- responses -----------------------------------------------------------------------------


class Usage(msgspec.Struct, kw_only=True):
    """Token counts; the fake provider counts whitespace-separated words."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class FunctionCall(msgspec.Struct, kw_only=True):
    """The function a tool call invokes, with its JSON-encoded arguments."""

    name: str
    arguments: str


class ToolCall(msgspec.Struct, kw_only=True):
    """A complete tool call in a non-stream message."""

    id: str
    type: str
    function: FunctionCall


class OutMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The assistant message; ``content`` is always present (null with tool calls)."""

    role: str
    content: str | None
    tool_calls: list[ToolCall] | None = None


class Choice(msgspec.Struct, kw_only=True):
    """One choice of a non-stream completion."""

    index: int
    message: OutMessage
    finish_reason: str


class ChatCompletion(msgspec.Struct, kw_only=True):
    """A non-stream chat completion."""

    id: str
    object: str
    created: int
    model: str
    system_fingerprint: str
    choices: list[Choice]
    usage: Usage


class FunctionDelta(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A piece of a streamed function call."""

    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A piece of a streamed tool call; only the first piece has ``id`` and ``type``."""

    index: int
    id: str | None = None
    type: str | None = None
    function: FunctionDelta | None = None


class Delta(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What one stream chunk adds to a choice; empty in the final chunk."""

    role: str | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One choice of a stream chunk; ``finish_reason`` only appears in the final chunk."""

    index: int
    delta: Delta
    finish_reason: str | None = None


class ChatCompletionChunk(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One SSE event of a streamed chat completion."""

    id: str
    object: str
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class Embedding(msgspec.Struct, kw_only=True):
    """One embedding: a list of floats, or base64 of little-endian float32."""

    object: str
    index: int
    embedding: list[float] | str


class EmbeddingUsage(msgspec.Struct, kw_only=True):
    """Embedding token counts."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingList(msgspec.Struct, kw_only=True):
    """``POST /v1/embeddings`` response."""

    object: str
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class Model(msgspec.Struct, kw_only=True):
    """One entry of ``GET /v1/models``."""

    id: str
    object: str
    created: int
    owned_by: str


class ModelList(msgspec.Struct, kw_only=True):
    """``GET /v1/models`` response."""

    object: str
    data: list[Model]


class ErrorDetail(msgspec.Struct, kw_only=True):
    """OpenAI's error object; ``param`` and ``code`` are always present, maybe null."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(msgspec.Struct, kw_only=True):
    """OpenAI's error envelope, also used for SSE error events."""

    error: ErrorDetail


class StatsSnapshot(msgspec.Struct, kw_only=True):
    """``GET /_stats``: counters since start or the last ``POST /_reset``."""

    requests: int
    by_path: dict[str, int]
    by_model: dict[str, int]
    faults: dict[str, int]
    in_flight: int
    connections: int
    open_connections: int


encoder = msgspec.json.Encoder()
chat_request_decoder = msgspec.json.Decoder(ChatRequest)
embedding_request_decoder = msgspec.json.Decoder(EmbeddingRequest)
