"""A request, checked and prepared once into a :class:`Call`; and the state of one in flight.

A request arrives as a :class:`ChatRequest`, an :class:`EmbeddingRequest` or a plain dict in the
OpenAI request shape (a dict keeps every key it has, known to us or not). ``prepare`` turns it
into a :class:`Call`: the route, the JSON body encoded once, the model, and the tokens it is
expected to cost, which the throttle counts against ``tpm`` before the answer says the real
figure. ``chat_request`` / ``embedding_request`` build and check the request of a method call,
``_jobs.prepare_job`` checks and prepares a job's: one rule for both, a request that cannot be
sent is an :class:`InvalidRequestError` naming the field. :class:`Request` is what one request
in flight carries from its call to its record. This module does no IO.

Most of its length is the checks, one small function per field, each naming the field and what
was wrong with it; they belong beside the encoding they guard.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import msgspec
import trio

from ._errors import ClientClosedError, InvalidRequestError, LiteLLMError
from ._meta import ResponseMeta
from ._recorder import Trace
from ._retry import timed_out
from ._wire import (
    ChatRequest,
    EmbeddingRequest,
    Message,
    RoutingHints,
    Usage,
    encode_chat_request,
    encode_embedding_request,
    encoder,
)

if TYPE_CHECKING:
    from ._fasthttp import Abortable
    from ._fleet import Proxy

__all__ = [
    "CHAT_PATH",
    "DEFAULT_COMPLETION_ESTIMATE",
    "EMBEDDINGS_PATH",
    "Call",
    "Request",
    "build_request",
    "chat_request",
    "check_call_options",
    "check_chat",
    "check_embedding",
    "completion_budget",
    "embedding_request",
    "invalid",
    "kind_of",
    "prepare",
    "request_for",
]

CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"

DEFAULT_COMPLETION_ESTIMATE = 256
"""Completion tokens assumed for a chat request that sets no ``max_tokens``."""

_CHARS_PER_TOKEN = 4


class Call(msgspec.Struct, frozen=True, kw_only=True):
    """A prepared request: what the dispatcher sends, and what it may cost."""

    kind: Literal["chat", "embedding"]
    path: str
    body: bytes
    model: str
    tokens: int = 0
    headers: Mapping[str, str] | None = None
    keep_body: bool = False


class Request:
    """One request from its call to its outcome: what it is, how it goes, what it got.

    The request path fills in ``attempts``, ``meta``, ``usage`` and ``first_content_at`` as they
    become known; ``error`` is an outcome that did not raise (a stream interrupted after content
    hands its error to the caller through the stream, not as an exception).
    """

    __slots__ = (
        "attempts",
        "closing",
        "deadline",
        "error",
        "first_content_at",
        "held",
        "interrupted",
        "kind",
        "last_error",
        "max_retries",
        "meta",
        "model",
        "pending",
        "proxy",
        "scope",
        "started_at",
        "started_wall",
        "stream",
        "submitted_at",
        "timeout",
        "tokens",
        "total",
        "trace",
        "usage",
    )

    def __init__(
        self,
        *,
        kind: str,
        model: str,
        tokens: int = 0,
        stream: bool = False,
        max_retries: int | None = None,
        timeout: float | None = None,
        trace: Trace | None = None,
    ) -> None:
        self.kind = kind
        self.model = model
        self.tokens = tokens
        self.stream = stream
        self.max_retries = max_retries
        self.timeout = timeout  # None: the client's total_timeout
        self.trace = trace  # only when the debug recorder is on: what was sent and got
        self.attempts = 0
        self.held = 0.0  # seconds spent waiting for a proxy that is down
        self.last_error: Exception | None = None  # the latest failed attempt's error
        self.meta: ResponseMeta | None = None
        self.proxy: Proxy | None = None  # the proxy of the attempt under way
        self.usage: Usage | None = None
        self.first_content_at: float | None = None
        self.error: Exception | None = None
        self.submitted_at = 0.0
        self.started_at = 0.0
        self.started_wall = 0.0
        # How the request ends early (the dispatcher sets deadline and total when it takes its
        # slot, closing when the client closes): see interruptible() and interrupt().
        self.deadline = math.inf
        self.total: float | None = None
        self.closing = False
        self.scope: trio.CancelScope | None = None  # the interruptible wait under way
        self.pending: Abortable | None = None  # what our pool is waiting on for it
        self.interrupted: LiteLLMError | None = None  # why it ended early, once it did

    # --- ending early: the total deadline, the client closing ----------------------------------
    #
    # Why no cancel scope around the whole request: entering and leaving one costs about a tenth
    # of a small request's CPU. A request's common wait is its answer from our pool, which ends
    # it by the deadline itself and can abort it (``_fasthttp.Owner``: ``deadline``,
    # ``pending``); every other wait that may last (a proxy to come back, the throttle, a
    # retry's backoff, another transport) runs in ``interruptible()``.

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """Run the block under the request's deadline, where :meth:`interrupt` reaches it; a
        block ended so raises :meth:`interruption`'s error."""
        outer = self.scope
        with trio.CancelScope(deadline=self.deadline) as scope:
            self.scope = scope
            if self.closing:
                scope.cancel()
            try:
                yield
            finally:
                self.scope = outer
        if scope.cancelled_caught:
            raise self.interruption() or ClientClosedError(
                "the request was cancelled before it finished", model=self.model
            )

    def interrupt(self) -> None:
        """The client is closing: end the wait under way (``interruptible`` or our pool's)."""
        self.closing = True
        if self.scope is not None:
            self.scope.cancel()
        if self.pending is not None:
            self.pending.abort()

    def interruption(self) -> LiteLLMError | None:
        """Why the request must end now, if it must: the client closed, or its total deadline
        passed (then an attempt's failure is that, not something to retry). Once said, the same
        error each time: the one an interruptible wait raised is not wrapped again."""
        if self.interrupted is None:
            if self.closing:
                self.interrupted = ClientClosedError(
                    "the client closed before the request finished", model=self.model
                )
            elif trio.current_time() >= self.deadline:
                self.interrupted = timed_out(self.total, self.model, self.last_error)
        return self.interrupted


def request_for(
    call: Call,
    *,
    recording: bool,
    stream: bool = False,
    max_retries: int | None = None,
    timeout: float | None = None,
) -> Request:
    """The state ``call`` carries in flight; with its debug-recorder trace when ``recording``."""
    return Request(
        kind=call.kind,
        model=call.model,
        tokens=call.tokens,
        stream=stream,
        max_retries=max_retries,
        timeout=timeout,
        trace=Trace("POST", call.path, call.body) if recording else None,
    )


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
    raise invalid(
        "",
        "request",
        f"must be a ChatRequest, an EmbeddingRequest or a dict, not {type(request).__name__}",
    )


def _prepare_dict(
    request: Mapping[str, Any],
    extra: dict[str, Any] | None,
    headers: Mapping[str, str] | None,
    estimate: bool,
) -> Call:
    model = _check_model(request.get("model"), "")
    body = dict(request)
    if extra:
        body.update(extra)
    if body.get("stream"):
        raise invalid("", "stream", "cannot be set in a job; use client.stream()")
    if "messages" in body:
        messages = body["messages"]
        if not isinstance(messages, list):
            raise invalid("", "messages", f"must be a non-empty list, got {kind_of(messages)}")
        _check_messages(messages, "")
        hints = body.pop("routing_hints", None)
        if hints is not None:
            metadata = body.get("metadata") or {}
            if not isinstance(metadata, Mapping):
                raise invalid("", "metadata", "must be an object to carry routing_hints")
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
        _check_input(body["input"], "")
        _check_encoding_format(body.get("encoding_format"), "")
        tokens = _text_tokens(body["input"]) if estimate else 0
        return Call(
            kind="embedding",
            path=EMBEDDINGS_PATH,
            body=_encode(body),
            model=model,
            tokens=tokens,
            headers=headers,
        )
    raise invalid("", "request", "has neither 'messages' (chat) nor 'input' (embeddings)")


def _encode(body: dict[str, Any]) -> bytes:
    try:
        return encoder.encode(body)
    except (TypeError, msgspec.EncodeError) as exc:
        field = next((key for key, value in body.items() if not _encodable(value)), "request")
        raise invalid("", str(field), f"cannot be encoded as JSON: {exc}") from exc


def _encodable(value: Any) -> bool:
    try:
        encoder.encode(value)
    except (TypeError, msgspec.EncodeError):
        return False
    return True


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
    return chars // _CHARS_PER_TOKEN + 1 + completion_budget(max_tokens, n)


def completion_budget(max_tokens: Any, n: Any) -> int:
    """Completion tokens a chat request may cost: its ``max_tokens`` (else
    :data:`DEFAULT_COMPLETION_ESTIMATE`) for each of its ``n`` choices."""
    choices = n if isinstance(n, int) and n > 0 else 1
    completion = max_tokens if isinstance(max_tokens, int) else DEFAULT_COMPLETION_ESTIMATE
    return completion * choices


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
    """``cls(**params)``; a misspelt or missing keyword is an :class:`InvalidRequestError`."""
    where = f"{method}()"
    _check_keywords(cls, params, where)
    for field in _required(cls):
        if field not in params:
            raise invalid(where, field, "is missing (a required argument)")
    return cls(**params)


def chat_request(
    request: ChatRequest | None,
    params: dict[str, Any],
    *,
    stream: bool,
    timeout: float | None = None,
    max_retries: int | None = None,
) -> ChatRequest:
    """The ChatRequest of a ``complete``/``stream`` call: a struct, keywords, or both; checked."""
    method = "stream" if stream else "complete"
    where = f"{method}()"
    check_call_options(where, timeout=timeout, max_retries=max_retries)
    if "stream" in params:
        raise invalid(
            where,
            "stream",
            f"must not be passed; use client.{'stream' if params['stream'] else 'complete'}()",
        )
    hints = params.get("routing_hints")
    if isinstance(hints, Mapping):
        try:
            params["routing_hints"] = msgspec.convert(hints, RoutingHints)
        except msgspec.ValidationError as exc:
            raise invalid(where, "routing_hints", f"is invalid: {exc}") from None
    chat: ChatRequest
    if request is None:
        chat = build_request(ChatRequest, params, method)
    elif isinstance(request, ChatRequest):
        _check_keywords(ChatRequest, params, where)
        chat = msgspec.structs.replace(request, **params)
    else:
        raise invalid(where, "request", _not_a_struct(request, "ChatRequest"))
    check_chat(chat, where)
    if not isinstance(chat.messages, list):
        chat.messages = list(chat.messages)
    chat.stream = True if stream else None
    return chat


def embedding_request(
    request: EmbeddingRequest | None,
    params: dict[str, Any],
    *,
    timeout: float | None = None,
    max_retries: int | None = None,
) -> EmbeddingRequest:
    """The EmbeddingRequest of an ``embed`` call: a struct, keywords, or both; checked."""
    where = "embed()"
    check_call_options(where, timeout=timeout, max_retries=max_retries)
    embedding: EmbeddingRequest
    if request is None:
        embedding = build_request(EmbeddingRequest, params, "embed")
    elif isinstance(request, EmbeddingRequest):
        _check_keywords(EmbeddingRequest, params, where)
        embedding = msgspec.structs.replace(request, **params) if params else request
    else:
        raise invalid(where, "request", _not_a_struct(request, "EmbeddingRequest"))
    check_embedding(embedding, where)
    return embedding


def check_call_options(
    where: str, *, timeout: float | None = None, max_retries: int | None = None
) -> None:
    """A call's ``timeout`` is None or seconds > 0; its ``max_retries`` None or an int >= 0."""
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or math.isnan(timeout)
        or timeout <= 0
    ):
        raise invalid(where, "timeout", f"must be a number of seconds > 0, got {timeout!r}")
    if max_retries is not None and (
        isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0
    ):
        raise invalid(where, "max_retries", f"must be an integer >= 0, got {max_retries!r}")


# --- the checks, shared by method calls and jobs ----------------------------------------------


def invalid(where: str, field: str, problem: str) -> InvalidRequestError:
    """The error for a bad ``field``; ``where`` names the method ("complete()"), "" for a job."""
    prefix = f"{where}: " if where else ""
    return InvalidRequestError(f"{prefix}{field} {problem}", field=field)


def kind_of(value: Any) -> str:
    return type(value).__name__


def _not_a_struct(request: object, name: str) -> str:
    return f"must be a {name} (or pass its fields as keywords), not {kind_of(request)}"


_REQUIRED: dict[type[Any], tuple[str, ...]] = {}
_FIELDS: dict[type[Any], frozenset[str]] = {}


def _required(cls: type[Any]) -> tuple[str, ...]:
    if cls not in _REQUIRED:
        _REQUIRED[cls] = tuple(f.name for f in msgspec.structs.fields(cls) if f.required)
    return _REQUIRED[cls]


def _check_keywords(cls: type[Any], params: Mapping[str, Any], where: str) -> None:
    """Every keyword must be a field of ``cls``; a misspelt one names its likely intent."""
    fields = _FIELDS.get(cls)
    if fields is None:
        fields = _FIELDS[cls] = frozenset(f.name for f in msgspec.structs.fields(cls))
    for name in params:
        if name not in fields:
            close = difflib.get_close_matches(name, sorted(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else " (extra_body= sends any field)"
            raise invalid(where, name, f"is not a parameter{hint}")


def _check_model(model: Any, where: str) -> str:
    if not isinstance(model, str) or not model:
        raise invalid(where, "model", f"must be a non-empty string, got {model!r}")
    return model


def check_chat(chat: ChatRequest, where: str) -> None:
    _check_model(chat.model, where)
    messages = chat.messages
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise invalid(where, "messages", f"must be a list of messages, got {kind_of(messages)}")
    _check_messages(messages, where)


def _check_messages(messages: Sequence[Any], where: str) -> None:
    if not messages:
        raise invalid(where, "messages", "must not be empty")
    for index, message in enumerate(messages):
        if isinstance(message, Message):
            continue
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise invalid(
                where,
                f"messages[{index}]",
                f"must be a Message or an object with a string 'role', got {kind_of(message)}",
            )


def check_embedding(embedding: EmbeddingRequest, where: str) -> None:
    _check_model(embedding.model, where)
    _check_input(embedding.input, where)
    _check_encoding_format(embedding.encoding_format, where)


def _check_input(value: Any, where: str) -> None:
    if isinstance(value, str | list) and not value:
        raise invalid(where, "input", "must not be empty")
    if not isinstance(value, str | list):
        raise invalid(
            where,
            "input",
            f"must be a string or a list of strings or token ids, got {kind_of(value)}",
        )


def _check_encoding_format(value: Any, where: str) -> None:
    if value is not None and value not in ("float", "base64"):
        raise invalid(where, "encoding_format", f'must be "float" or "base64", got {value!r}')
