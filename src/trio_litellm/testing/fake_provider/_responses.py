"""Building response bodies and SSE events, no IO.

Everything here is deterministic: the content echoes the last user message, token counts are
whitespace-separated words, embeddings come from a hash of the input. Tests can therefore
predict every byte the fake provider sends, and so can benchmarks that check answers.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Sequence
from typing import Final

import msgspec

from . import _wire as w

CREATED: Final = 1700000000
"""The ``created`` timestamp of every completion and model."""
FINGERPRINT: Final = "fp_fake"
MODEL_IDS: Final = ("echo", "text-embedding-3-small")

DONE_EVENT: Final = b"data: [DONE]\n\n"
MALFORMED_EVENT: Final = b"data: {not json\n\n"


def sse(payload: bytes) -> bytes:
    """Frame one JSON payload as OpenAI does: ``data: <json>\\n\\n``."""
    return b"data: " + payload + b"\n\n"


# --- errors --------------------------------------------------------------------------------

_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_denied_error",
    404: "not_found_error",
    408: "timeout",
    429: "rate_limit_exceeded",
}


def error_type(status: int) -> str:
    """OpenAI's error ``type`` for an HTTP status."""
    if status >= 500:
        return "server_error"
    return _ERROR_TYPES.get(status, "invalid_request_error")


def error_body(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> bytes:
    """An OpenAI error body; a 429 gets ``code: "rate_limit_exceeded"`` unless told otherwise."""
    if code is None and status == 429:
        code = "rate_limit_exceeded"
    detail = w.ErrorDetail(message=message, type=error_type(status), param=param, code=code)
    return w.encoder.encode(w.ErrorBody(error=detail))


MIDSTREAM_ERROR_EVENT: Final = sse(
    w.encoder.encode(
        w.ErrorBody(
            error=w.ErrorDetail(
                message="fake mid-stream failure", type="server_error", param=None, code="500"
            )
        )
    )
)

# --- words ---------------------------------------------------------------------------------


def message_text(message: w.InMessage) -> str:
    """The text of a message: its string content, or its text parts joined by spaces."""
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return " ".join(part.text for part in content if part.text is not None)


def last_user_text(messages: Sequence[w.InMessage]) -> str:
    """The raw text of the last ``user`` message, or ``""`` when there is none."""
    for message in reversed(messages):
        if message.role == "user":
            return message_text(message)
    return ""


def prompt_tokens(messages: Sequence[w.InMessage]) -> int:
    """Words across every message's content, at least 1 (OpenAI never reports 0)."""
    return max(1, sum(len(message_text(m).split()) for m in messages))


def split_pieces(text: str, chunks: int | None) -> list[str]:
    """Cut ``text`` into stream pieces that concatenate back to it exactly.

    By default one piece per word, each word carrying its leading space as real tokens do;
    with ``chunks`` N roughly equal pieces (fewer if the text is shorter than N characters).
    """
    if not text:
        return []
    if chunks is None:
        words = text.split(" ")
        return [p for p in (words[0], *(" " + word for word in words[1:])) if p]
    count = min(chunks, len(text))
    size, extra = divmod(len(text), count)
    pieces: list[str] = []
    start = 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


# --- chat ----------------------------------------------------------------------------------


class ChatPlan(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a chat answer contains, decided before a byte is sent."""

    id: str
    model: str
    n: int
    content: str | None
    """The echoed text; None when answering with a tool call."""
    tool_call: w.ToolCall | None
    finish_reason: str
    usage: w.Usage


def chosen_tool(request: w.ChatRequest) -> str | None:
    """The tool to call: the one ``tool_choice`` names, else the first; None for no tools."""
    if not request.tools or request.tool_choice == "none":
        return None
    if isinstance(request.tool_choice, w.NamedToolChoice):
        return request.tool_choice.function.name
    return request.tools[0].function.name


def plan_chat(request: w.ChatRequest, user_text: str, counter: int) -> ChatPlan:
    """Decide the answer to a chat request whose last user message reads ``user_text``.

    ``user_text`` has its ``[fake ...]`` tags removed already; ``counter`` numbers the ids.
    """
    n = request.n or 1
    prompt = prompt_tokens(request.messages)
    tool = chosen_tool(request)
    if tool is not None:
        arguments = w.encoder.encode({"echo": user_text}).decode()
        call = w.ToolCall(
            id=f"call_fake_{counter}",
            type="function",
            function=w.FunctionCall(name=tool, arguments=arguments),
        )
        content, finish, words = None, "tool_calls", len(arguments.split())
    else:
        call = None
        output = ["Echo:", *user_text.split()]
        limit = request.max_completion_tokens
        if limit is None:
            limit = request.max_tokens
        finish = "stop"
        if limit is not None and limit < len(output):
            output, finish = output[: max(limit, 0)], "length"
        content, words = " ".join(output), len(output)
    completion = words * n
    return ChatPlan(
        id=f"chatcmpl-fake-{counter}",
        model=request.model,
        n=n,
        content=content,
        tool_call=call,
        finish_reason=finish,
        usage=w.Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        ),
    )


def completion_body(plan: ChatPlan) -> bytes:
    """The non-stream ``chat.completion`` JSON."""
    message = w.OutMessage(
        role="assistant",
        content=plan.content,
        tool_calls=None if plan.tool_call is None else [plan.tool_call],
    )
    choices = [
        w.Choice(index=i, message=message, finish_reason=plan.finish_reason) for i in range(plan.n)
    ]
    return w.encoder.encode(
        w.ChatCompletion(
            id=plan.id,
            object="chat.completion",
            created=CREATED,
            model=plan.model,
            system_fingerprint=FINGERPRINT,
            choices=choices,
            usage=plan.usage,
        )
    )


def stream_pieces(plan: ChatPlan, chunks: int | None) -> list[str]:
    """The content pieces (or tool-call argument pieces) a stream sends."""
    if plan.tool_call is not None:
        return split_pieces(plan.tool_call.function.arguments, chunks)
    return split_pieces(plan.content or "", chunks)


def _chunk(plan: ChatPlan, choices: list[w.ChunkChoice], usage: w.Usage | None = None) -> bytes:
    return sse(
        w.encoder.encode(
            w.ChatCompletionChunk(
                id=plan.id,
                object="chat.completion.chunk",
                created=CREATED,
                model=plan.model,
                system_fingerprint=FINGERPRINT,
                choices=choices,
                usage=usage,
            )
        )
    )


def _per_choice(plan: ChatPlan, delta: w.Delta, finish_reason: str | None = None) -> bytes:
    """One event per choice index, all with the same delta."""
    return b"".join(
        _chunk(plan, [w.ChunkChoice(index=i, delta=delta, finish_reason=finish_reason)])
        for i in range(plan.n)
    )


def opening_events(plan: ChatPlan) -> bytes:
    """The role chunk, then for a tool call its header (id, type, name, empty arguments)."""
    events = _per_choice(plan, w.Delta(role="assistant", content=""))
    if plan.tool_call is not None:
        header = w.ToolCallDelta(
            index=0,
            id=plan.tool_call.id,
            type="function",
            function=w.FunctionDelta(name=plan.tool_call.function.name, arguments=""),
        )
        events += _per_choice(plan, w.Delta(tool_calls=[header]))
    return events


def piece_events(plan: ChatPlan, piece: str) -> bytes:
    """One content piece (or argument piece) for every choice."""
    if plan.tool_call is not None:
        call = w.ToolCallDelta(index=0, function=w.FunctionDelta(arguments=piece))
        return _per_choice(plan, w.Delta(tool_calls=[call]))
    return _per_choice(plan, w.Delta(content=piece))


def closing_events(plan: ChatPlan, *, include_usage: bool, done: bool) -> bytes:
    """The finish chunk, the usage chunk if asked for, and ``[DONE]`` unless suppressed."""
    events = _per_choice(plan, w.Delta(), plan.finish_reason)
    if include_usage:
        events += _chunk(plan, [], plan.usage)
    return events + DONE_EVENT if done else events


# --- embeddings ----------------------------------------------------------------------------

EmbeddingInput = str | list[int]


def embedding_inputs(raw: object) -> list[EmbeddingInput]:
    """Normalise ``input`` (string, strings, token ids, lists of token ids) to a list of items."""
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw:
        if all(isinstance(x, str) for x in raw):
            return list(raw)
        if all(_is_token(x) for x in raw):
            return [list(raw)]
        if all(isinstance(x, list) and x and all(_is_token(t) for t in x) for x in raw):
            return [list(x) for x in raw]
    raise ValueError(
        "'input' must be a string, a list of strings, a list of token ids "
        "or a list of lists of token ids, and not empty"
    )


def _is_token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def input_tokens(item: EmbeddingInput) -> int:
    """Words of a string input; one per id of a token input."""
    return len(item.split()) if isinstance(item, str) else len(item)


def embed(item: EmbeddingInput, dim: int) -> list[float]:
    """A unit vector from a hash of the input, already rounded to float32.

    Rounding first means the float form and the base64 (float32) form carry the same numbers.
    """
    key = b"s:" + item.encode() if isinstance(item, str) else b"t:" + w.encoder.encode(item)
    raw = struct.unpack(f"<{dim}I", hashlib.shake_256(key).digest(4 * dim))
    vector = [x / 2147483648.0 - 1.0 for x in raw]
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    packed = struct.pack(f"<{dim}f", *(x / norm for x in vector))
    return list(struct.unpack(f"<{dim}f", packed))


def embeddings_body(
    model: str, items: Sequence[EmbeddingInput], dim: int, *, as_base64: bool
) -> bytes:
    """The ``POST /v1/embeddings`` JSON."""
    data: list[w.Embedding] = []
    for index, item in enumerate(items):
        vector = embed(item, dim)
        value: list[float] | str = (
            base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode() if as_base64 else vector
        )
        data.append(w.Embedding(object="embedding", index=index, embedding=value))
    tokens = sum(input_tokens(item) for item in items)
    return w.encoder.encode(
        w.EmbeddingList(
            object="list",
            data=data,
            model=model,
            usage=w.EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
        )
    )


MODELS_BODY: Final = w.encoder.encode(
    w.ModelList(
        object="list",
        data=[
            w.Model(id=model, object="model", created=CREATED, owned_by="fake-provider")
            for model in MODEL_IDS
        ],
    )
)
"""``GET /v1/models``: the same two models every time."""
