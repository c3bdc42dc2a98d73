"""msgspec Structs of the OpenAI / LiteLLM JSON, with their encoders and decoders built once.

Responses accept unknown fields and default their optional ones, because the proxy adds fields
(``provider_specific_fields``, ``usage.cost``, ``mode``...). Requests use ``omit_defaults`` so an
unset parameter is never sent. This module does no IO.

Answers and stream chunks are ``gc=False``: decoded data never refers back to itself, so the
cyclic garbage collector need not track them. A stream's chunks are many and live a while (in
the channel, in the caller's hands); tracked, they made every collection longer, and with 256
streams in flight the collector took a third of a chunk's cost.
"""

from __future__ import annotations

import array
import binascii
import sys
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from ._meta import ResponseMeta

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatRequest",
    "Choice",
    "ChunkChoice",
    "Delta",
    "Embedding",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "FunctionCall",
    "FunctionCallDelta",
    "Message",
    "Model",
    "ModelInfo",
    "ModelList",
    "RoutingHints",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
]


# --- messages ---------------------------------------------------------------------------------


class FunctionCall(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The function a tool call names, with its JSON ``arguments`` as a string."""

    name: str = ""
    arguments: str = ""


class ToolCall(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One tool call of an assistant message."""

    id: str = ""
    type: str = "function"
    function: FunctionCall = msgspec.field(default_factory=FunctionCall)


class Message(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A chat message, sent in a request or received in a completion.

    ``content`` is text, a list of content parts (``{"type": "text", ...}``, images...) or None
    (an assistant message that only calls tools).
    """

    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None
    reasoning_content: str | None = None


# --- requests ---------------------------------------------------------------------------------


class RoutingHints(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    """What the caller prefers when the proxy picks a deployment; sent as ``metadata.routing_hints``."""

    priority: Literal["cost", "speed", "quality"] | None = None
    max_cost: float | None = None
    max_latency: float | None = None
    required_capabilities: tuple[str, ...] | None = None


class ChatRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A ``/v1/chat/completions`` request: every OpenAI chat parameter, none sent unless set.

    ``messages`` holds :class:`Message` structs or plain dicts in the OpenAI shape. Parameters
    not listed here go in ``extra_body`` of the call.
    """

    model: str
    messages: list[Any]
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    seed: int | None = None
    user: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    service_tier: str | None = None
    store: bool | None = None
    metadata: dict[str, Any] | None = None
    routing_hints: RoutingHints | None = None


class EmbeddingRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A ``/v1/embeddings`` request."""

    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None


# --- responses --------------------------------------------------------------------------------


class Usage(msgspec.Struct, kw_only=True, gc=False):
    """Token counts; ``cost`` is LiteLLM's, when it includes it."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: float | None = None
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None


class Choice(msgspec.Struct, kw_only=True, gc=False):
    """One choice of a completion."""

    index: int = 0
    message: Message = msgspec.field(default_factory=lambda: Message(role="assistant"))
    finish_reason: str | None = None
    logprobs: Any = None


class ChatCompletion(msgspec.Struct, kw_only=True, gc=False):
    """A chat completion. ``meta`` is what the proxy said in its headers (cost, call id...)."""

    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[Choice] = msgspec.field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None
    meta: ResponseMeta | None = None

    @property
    def text(self) -> str:
        """The first choice's text, or "" when it has none."""
        if not self.choices:
            return ""
        content = self.choices[0].message.content
        return content if isinstance(content, str) else ""


class FunctionCallDelta(msgspec.Struct, kw_only=True, gc=False):
    """A piece of a streamed tool call's function."""

    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(msgspec.Struct, kw_only=True, gc=False):
    """A piece of a streamed tool call; pieces with the same ``index`` belong together."""

    index: int = 0
    id: str | None = None
    type: str | None = None
    function: FunctionCallDelta | None = None


class Delta(msgspec.Struct, kw_only=True, gc=False):
    """What one chunk adds to a choice."""

    role: str | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    refusal: str | None = None
    reasoning_content: str | None = None


class ChunkChoice(msgspec.Struct, kw_only=True, gc=False):
    """One choice's part of a stream chunk."""

    index: int = 0
    delta: Delta = msgspec.field(default_factory=Delta)
    finish_reason: str | None = None
    logprobs: Any = None


class ChatCompletionChunk(msgspec.Struct, kw_only=True, gc=False):
    """One chunk of a streamed completion; ``error`` is set on LiteLLM's in-band error events."""

    id: str = ""
    object: str = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    choices: list[ChunkChoice] = msgspec.field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None
    error: Any = None


class Embedding(msgspec.Struct, kw_only=True, gc=False):
    """One input's vector, a list of floats whichever ``encoding_format`` was asked for.

    With ``encoding_format: "base64"`` (the openai SDK's default) the proxy sends the vector as
    base64 of little-endian float32; it is decoded here, as the openai SDK does. A float list
    decodes straight into the list, with no step of ours.
    """

    index: int = 0
    if TYPE_CHECKING:
        embedding: list[float] = msgspec.field(default_factory=list)
    else:  # what the wire may carry; __post_init__ leaves only the list
        embedding: list[float] | str = msgspec.field(default_factory=list)
    object: str = "embedding"

    def __post_init__(self) -> None:
        if isinstance(self.embedding, str):
            self.embedding = floats_from_base64(self.embedding)


class EmbeddingResponse(msgspec.Struct, kw_only=True, gc=False):
    """The answer to an embeddings request."""

    data: list[Embedding] = msgspec.field(default_factory=list)
    model: str = ""
    object: str = "list"
    usage: Usage | None = None
    meta: ResponseMeta | None = None


class Model(msgspec.Struct, kw_only=True):
    """A model group the proxy serves, as ``/v1/models`` lists it."""

    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = ""
    mode: str | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None


class ModelList(msgspec.Struct, kw_only=True):
    data: list[Model] = msgspec.field(default_factory=list)
    object: str = "list"


class ModelInfo(msgspec.Struct, kw_only=True):
    """What the proxy knows of one deployment of a model group (``/v1/model/info``).

    Limits and prices are None when LiteLLM does not know the upstream model. ``litellm_params``
    is the deployment's configuration with its API key already removed by the proxy.
    """

    model_name: str = ""
    id: str | None = None
    key: str | None = None
    mode: str | None = None
    litellm_provider: str | None = None
    max_tokens: int | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    cache_read_input_token_cost: float | None = None
    supports_vision: bool | None = None
    supports_function_calling: bool | None = None
    supports_parallel_function_calling: bool | None = None
    supports_tool_choice: bool | None = None
    supports_response_schema: bool | None = None
    supports_prompt_caching: bool | None = None
    supports_system_messages: bool | None = None
    supports_pdf_input: bool | None = None
    supports_audio_input: bool | None = None
    supports_audio_output: bool | None = None
    supports_reasoning: bool | None = None
    supports_web_search: bool | None = None
    supported_openai_params: list[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    litellm_params: dict[str, Any] = msgspec.field(default_factory=dict)


class _ModelInfoEntry(msgspec.Struct):
    model_name: str = ""
    litellm_params: dict[str, Any] = msgspec.field(default_factory=dict)
    model_info: ModelInfo = msgspec.field(default_factory=ModelInfo)


class _ModelInfoList(msgspec.Struct):
    data: list[_ModelInfoEntry] = msgspec.field(default_factory=list)


def floats_from_base64(text: str) -> list[float]:
    """The floats of an OpenAI base64 embedding: little-endian float32, 4 bytes each.

    Raises ValueError for text that is not base64 of a whole number of float32s (inside a
    decoder, msgspec turns that into a ValidationError naming the field).
    """
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from None
    if len(raw) % 4:
        raise ValueError(f"{len(raw)} bytes is not a whole number of float32 values")
    values = array.array("f", raw)
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


# --- codecs, built once -----------------------------------------------------------------------

encoder = msgspec.json.Encoder()
completion_decoder = msgspec.json.Decoder(ChatCompletion)
chunk_decoder = msgspec.json.Decoder(ChatCompletionChunk)
embedding_decoder = msgspec.json.Decoder(EmbeddingResponse)
model_list_decoder = msgspec.json.Decoder(ModelList)
model_info_list_decoder = msgspec.json.Decoder(_ModelInfoList)
any_decoder = msgspec.json.Decoder()


def encode_chat_request(request: ChatRequest, extra_body: dict[str, Any] | None = None) -> bytes:
    """The JSON body of a chat request: routing hints folded into ``metadata``, ``extra_body``
    merged on top."""
    if request.routing_hints is not None:
        metadata = dict(request.metadata or {})
        metadata["routing_hints"] = msgspec.to_builtins(request.routing_hints)
        request = msgspec.structs.replace(request, routing_hints=None, metadata=metadata)
    if not extra_body:
        return encoder.encode(request)
    body = msgspec.to_builtins(request)
    body.update(extra_body)
    return encoder.encode(body)


def encode_embedding_request(
    request: EmbeddingRequest, extra_body: dict[str, Any] | None = None
) -> bytes:
    """The JSON body of an embeddings request, ``extra_body`` merged on top."""
    if not extra_body:
        return encoder.encode(request)
    body = msgspec.to_builtins(request)
    body.update(extra_body)
    return encoder.encode(body)


def model_infos(body: bytes) -> list[ModelInfo]:
    """Decode ``/v1/model/info``: one :class:`ModelInfo` per deployment, named by its group."""
    entries = model_info_list_decoder.decode(body).data
    infos = []
    for entry in entries:
        info = entry.model_info
        info.model_name = entry.model_name
        info.litellm_params = entry.litellm_params
        infos.append(info)
    return infos
