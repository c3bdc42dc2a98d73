"""Jobs and their results, and the preparation of any request into one encoded, estimated call.

A request arrives as a :class:`ChatRequest`, an :class:`EmbeddingRequest` or a plain dict in the
OpenAI request shape (a dict keeps every key it has, known to us or not). ``prepare`` turns it
into a :class:`Call`: the route, the JSON body encoded once, the model, and the tokens it is
expected to cost, which the throttle counts against ``tpm`` before the answer says the real
figure. ``chat_request`` builds and checks the request of a ``complete``/``stream`` call. This
module does no IO.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

from ._errors import LiteLLMError
from ._wire import (
    ChatCompletion,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    RoutingHints,
    encode_chat_request,
    encode_embedding_request,
    encoder,
)

__all__ = [
    "CHAT_PATH",
    "DEFAULT_COMPLETION_ESTIMATE",
    "EMBEDDINGS_PATH",
    "Call",
    "InvalidRequestError",
    "Job",
    "JobResult",
    "build_request",
    "chat_request",
    "prepare",
]

CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"

DEFAULT_COMPLETION_ESTIMATE = 256
"""Completion tokens assumed for a chat request that sets no ``max_tokens``."""

_CHARS_PER_TOKEN = 4


class InvalidRequestError(LiteLLMError, ValueError):
    """A request is malformed before it is sent: no model, no messages, an unknown shape."""


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """One unit of work for :meth:`Client.open_jobs`: an id of yours and the request."""

    id: Any
    request: ChatRequest | EmbeddingRequest | dict[str, Any]
    keep_body: bool = False
    """Keep the answer's raw JSON in ``response.meta.body`` (as batch output needs)."""


class JobResult(msgspec.Struct, frozen=True, kw_only=True):
    """The one result of a :class:`Job`: a response, or the typed error that ended it.

    ``attempts`` counts the tries made; ``latency`` is seconds from submission to result.
    """

    id: Any
    response: ChatCompletion | EmbeddingResponse | None = None
    error: Exception | None = None
    attempts: int = 0
    latency: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the job succeeded."""
        return self.error is None


class Call(msgspec.Struct, frozen=True, kw_only=True):
    """A prepared request: what the dispatcher sends, and what it may cost."""

    kind: Literal["chat", "embedding"]
    path: str
    body: bytes
    model: str
    tokens: int = 0
    headers: Mapping[str, str] | None = None
    keep_body: bool = False


def prepare(
    request: ChatRequest | EmbeddingRequest | Mapping[str, Any],
    *,
    extra_body: Mapping[str, Any] | None = None,
    extra_headers: Mapping[str, str] | None = None,
    estimate: bool = True,
) -> Call:
    """Encode a request once; raise :class:`InvalidRequestError` if it cannot be sent."""
    extra = dict(extra_body) if extra_body else None
    if isinstance(request, ChatRequest):
        tokens = (
            _chat_tokens(
                request.messages, request.max_tokens or request.max_completion_tokens, request.n
            )
            if estimate
            else 0
        )
        return Call(
            kind="chat",
            path=CHAT_PATH,
            body=encode_chat_request(request, extra),
            model=request.model,
            tokens=tokens,
            headers=extra_headers,
        )
    if isinstance(request, EmbeddingRequest):
        return Call(
            kind="embedding",
            path=EMBEDDINGS_PATH,
            body=encode_embedding_request(request, extra),
            model=request.model,
            tokens=_text_tokens(request.input) if estimate else 0,
            headers=extra_headers,
        )
    if isinstance(request, Mapping):
        return _prepare_dict(request, extra, extra_headers, estimate)
    raise InvalidRequestError(
        f"a request must be a ChatRequest, an EmbeddingRequest or a dict, not {type(request).__name__}"
    )


def _prepare_dict(
    request: Mapping[str, Any],
    extra: dict[str, Any] | None,
    headers: Mapping[str, str] | None,
    estimate: bool,
) -> Call:
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequestError(f"the request has no model (a non-empty string), got {model!r}")
    body = dict(request)
    if extra:
        body.update(extra)
    if body.get("stream"):
        raise InvalidRequestError("stream requests cannot be jobs; use client.stream()")
    if "messages" in body:
        messages = body["messages"]
        if not isinstance(messages, list) or not messages:
            raise InvalidRequestError("messages must be a non-empty list")
        for index, message in enumerate(messages):
            if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
                raise InvalidRequestError(f"messages[{index}] must be an object with a 'role'")
        hints = body.pop("routing_hints", None)
        if hints is not None:
            metadata = body.get("metadata") or {}
            if not isinstance(metadata, Mapping):
                raise InvalidRequestError("metadata must be an object to carry routing_hints")
            body["metadata"] = {**metadata, "routing_hints": hints}
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        tokens = (
            _chat_tokens(messages, limit if isinstance(limit, int) else None, body.get("n"))
            if estimate
            else 0
        )
        return Call(
            kind="chat",
            path=CHAT_PATH,
            body=_encode(body),
            model=model,
            tokens=tokens,
            headers=headers,
        )
    if "input" in body:
        tokens = _text_tokens(body["input"]) if estimate else 0
        return Call(
            kind="embedding",
            path=EMBEDDINGS_PATH,
            body=_encode(body),
            model=model,
            tokens=tokens,
            headers=headers,
        )
    raise InvalidRequestError("the request has neither 'messages' (chat) nor 'input' (embeddings)")


def _encode(body: dict[str, Any]) -> bytes:
    try:
        return encoder.encode(body)
    except (TypeError, msgspec.EncodeError) as exc:
        raise InvalidRequestError(f"the request cannot be encoded as JSON: {exc}") from exc


def _chat_tokens(messages: Any, max_tokens: int | None, n: Any) -> int:
    """Prompt characters / 4, plus the completion budget for each of the ``n`` choices."""
    chars = 0
    for message in messages:
        content = (
            message.get("content")
            if isinstance(message, Mapping)
            else getattr(message, "content", None)
        )
        chars += _chars(content)
    choices = n if isinstance(n, int) and n > 0 else 1
    completion = max_tokens if max_tokens is not None else DEFAULT_COMPLETION_ESTIMATE
    return chars // _CHARS_PER_TOKEN + 1 + completion * choices


def _text_tokens(value: Any) -> int:
    """Tokens of an embeddings input: characters / 4, or one per token id."""
    if isinstance(value, str):
        return len(value) // _CHARS_PER_TOKEN + 1
    if isinstance(value, list):
        return sum(1 if isinstance(item, int) else _text_tokens(item) for item in value)
    return 1


def _chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(
            len(text)
            for part in content
            if isinstance(part, Mapping) and isinstance(text := part.get("text"), str)
        )
    return 0


def build_request(cls: type[Any], params: dict[str, Any], method: str) -> Any:
    """``cls(**params)``, a wrong keyword named with the method it was given to."""
    try:
        return cls(**params)
    except TypeError as exc:
        raise TypeError(f"{method}(): {exc}") from None


def chat_request(
    request: ChatRequest | None, params: dict[str, Any], *, stream: bool
) -> ChatRequest:
    """The ChatRequest of a ``complete``/``stream`` call: a struct, keywords, or both; checked."""
    method = "stream" if stream else "complete"
    if "stream" in params:
        raise ValueError(
            f"{method}(): do not pass stream=; use client.{'stream' if params['stream'] else 'complete'}()"
        )
    hints = params.get("routing_hints")
    if isinstance(hints, Mapping):
        try:
            params["routing_hints"] = msgspec.convert(hints, RoutingHints)
        except msgspec.ValidationError as exc:
            raise ValueError(f"{method}(): routing_hints: {exc}") from None
    if request is None:
        chat: ChatRequest = build_request(ChatRequest, params, method)
    else:
        chat = (
            msgspec.structs.replace(request, **params)
            if params
            else msgspec.structs.replace(request)
        )
    _check_chat(chat, method)
    chat.stream = True if stream else None
    return chat


def _check_chat(chat: ChatRequest, method: str) -> None:
    if not isinstance(chat.model, str) or not chat.model:
        raise ValueError(f"{method}(): model must be a non-empty string, got {chat.model!r}")
    messages = chat.messages
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise TypeError(
            f"{method}(): messages must be a list of messages, got {type(messages).__name__}"
        )
    if not messages:
        raise ValueError(f"{method}(): messages must not be empty")
    for index, message in enumerate(messages):
        if isinstance(message, Message):
            continue
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise TypeError(
                f"{method}(): messages[{index}] must be a Message or a dict with a 'role', "
                f"got {type(message).__name__}"
            )
    if not isinstance(messages, list):
        chat.messages = list(messages)
