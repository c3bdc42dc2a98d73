"""The error tree, and the pure classifier that turns a proxy's error answer into one of its leaves.

::

    LiteLLMError                      every error this package raises; ``status_code`` is ``status``
    ├── ConfigError                   you misused the API: a bad option or value (also a ValueError)
    ├── InvalidRequestError           you misused the API: a request that cannot be sent, ``field``
    │                                 names what is wrong (also a ValueError and a TypeError)
    ├── ClientClosedError             the client closed (or the caller left) before the end
    └── APIError                      the request was made and failed on the way or at the proxy
        ├── APIConnectionError        no answer came
        │   ├── ProxyConnectionError  the proxy could not be reached, or dropped the connection
        │   ├── ProxyCertificateError TLS failed on a certificate (theirs untrusted, ours refused)
        │   └── RequestTimeoutError   our own deadline passed, or the proxy answered 408
        │                             (also named APITimeoutError)
        ├── ResponseDecodeError       the proxy answered with something we cannot decode
        │   └── ResponseTooLargeError a response head, body or stream event over its cap
        ├── StreamInterruptedError    a stream ended abnormally after content reached you
        └── APIStatusError            the proxy answered with an error status or an in-band error
            ├── SpendUnavailableError a spend report needs a proxy database, and it has none
            ├── BadRequestError       400
            │   ├── ModelNotFoundError  400 "Invalid model name", or a model info lookup that found none
            │   ├── ContextWindowExceededError
            │   └── ContentPolicyViolationError
            ├── AuthenticationError   401, and LiteLLM's key errors (which it may send as 400)
            ├── PermissionDeniedError 403, and LiteLLM's model-access errors
            ├── NotFoundError         404
            ├── ConflictError         409
            ├── UnprocessableEntityError  422
            ├── RateLimitError        429 (``retry_after`` in seconds when the proxy said)
            │   └── BudgetExceededError   429/400 with type ``budget_exceeded``: never retried
            ├── InternalServerError   500 and any other 5xx
            └── ServiceUnavailableError   502, 503, 504

``APIError``, ``APIConnectionError``, ``APITimeoutError``, ``APIStatusError`` and the status
classes carry the openai SDK's names, so code ported from it keeps its ``except`` clauses: as
there, a timeout is a kind of connection error (``except APIConnectionError`` catches both),
while ``except ProxyConnectionError`` still means only that the proxy could not be reached.

LiteLLM's error JSON carries ``code`` as a *string* of the status and ``type``/``param`` that are
often the literal string ``"None"``; its ``type`` does not follow the status (a 408 comes typed
``invalid_request_error``, a 429 ``throttling_error``), so the classifier reads the status, the
type and the message together. This module does no IO.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import msgspec

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ClientClosedError",
    "ConfigError",
    "ConflictError",
    "ContentPolicyViolationError",
    "ContextWindowExceededError",
    "InternalServerError",
    "InvalidRequestError",
    "LiteLLMError",
    "ModelNotFoundError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProxyCertificateError",
    "ProxyConnectionError",
    "RateLimitError",
    "RequestTimeoutError",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "ServiceUnavailableError",
    "SpendUnavailableError",
    "StreamInterruptedError",
    "UnprocessableEntityError",
    "error_from_body",
    "error_from_response",
    "parse_retry_after",
]


class LiteLLMError(Exception):
    """Root of every error raised by trio-litellm.

    Carries what the proxy said when it said anything: the HTTP ``status``, its ``message``,
    ``type``, ``param`` and ``code`` fields, the ``call_id`` (``x-litellm-call-id``) and the
    ``model`` asked for. ``retryable`` says whether the retry policy may try the request again.
    An error answer's body (text, decoded as UTF-8 with bad bytes replaced, as the debug
    recorder keeps it) and headers are in ``response_body`` and ``response_headers`` (the API key
    masked, should the proxy echo it); None for errors that had no answer.
    """

    retryable: bool = False
    response_body: str | None = None
    response_headers: Mapping[str, str] | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        call_id: str | None = None,
        model: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code
        self.call_id = call_id
        self.model = model
        self.retry_after = retry_after

    @property
    def status_code(self) -> int | None:
        """The HTTP status (``status``), under the openai SDK's name; None when there was none."""
        return self.status

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.type:
            parts.append(f"type={self.type}")
        if self.model:
            parts.append(f"model={self.model}")
        if self.call_id:
            parts.append(f"call_id={self.call_id}")
        return " | ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status={self.status!r}, type={self.type!r})"
        )


class ConfigError(LiteLLMError, ValueError):
    """A configuration option is unknown or has a bad value; ``field`` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class InvalidRequestError(LiteLLMError, ValueError, TypeError):
    """You misused the API: a request that cannot be sent, refused before anything is sent.

    A misspelt or missing keyword, no model, no or empty messages, a message that is neither a
    dict nor a :class:`Message`, a bad per-call option, a job that is not a :class:`Job`...
    ``field`` (also ``param``, as the proxy names a bad parameter) names what is wrong. It is
    also a ValueError and a TypeError: Python raises those for such mistakes, and code that
    catches them keeps working.
    """

    def __init__(self, message: str, *, field: str | None = None, **fields: Any) -> None:
        super().__init__(message, param=field, **fields)
        self.field = field


class APIError(LiteLLMError):
    """The request was made and failed: no answer came, the answer was broken, or the proxy
    answered with an error. Misuse (ConfigError, InvalidRequestError) and cancellation
    (ClientClosedError) are not API errors, as in the openai SDK."""


class APIConnectionError(APIError):
    """No answer came: the proxy could not be reached, the connection broke, or a deadline
    passed. As in the openai SDK, timeouts are connection errors too."""


class ProxyConnectionError(APIConnectionError):
    """The proxy could not be reached, or the connection broke before a complete answer."""

    retryable = True


class ProxyCertificateError(APIConnectionError):
    """The TLS handshake with the proxy failed on a certificate: we do not trust the proxy's
    (``verify``, ``ssl_context``, ``$SSL_CERT_FILE``), or it refused or wanted ours (``cert``).

    Retrying cannot fix it, so it is never retried; the proxy answered, so it is not counted as
    the proxy being down either.
    """


class RequestTimeoutError(APIConnectionError):
    """A deadline passed: one of ours (connect, read, total, first token, stream idle) or the
    proxy's own (HTTP 408). Also named ``APITimeoutError``, as in the openai SDK."""

    retryable = True


APITimeoutError = RequestTimeoutError
"""The openai SDK's name for :class:`RequestTimeoutError`."""


class ResponseDecodeError(APIError):
    """The proxy answered, but the body is not what the OpenAI wire format says it should be."""


class ResponseTooLargeError(ResponseDecodeError):
    """A part of the answer grew past its cap: ``size`` bytes (at least) of the ``what`` (the
    response head, the body, a stream event) against a ``limit`` set by the option ``option``
    (None for a fixed cap). The connection is closed; retrying would read the same again."""

    def __init__(
        self,
        message: str,
        *,
        what: str,
        size: int,
        limit: int,
        option: str | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(message, **fields)
        self.what = what
        self.size = size
        self.limit = limit
        self.option = option


class StreamInterruptedError(APIError):
    """A stream ended abnormally after content had reached the caller.

    ``partial`` is the completion aggregated from the chunks received so far; ``__cause__`` is
    the typed error the proxy sent in-band, when it sent one. Such a stream is never retried.
    """

    def __init__(self, message: str, *, partial: Any = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.partial = partial


class ClientClosedError(LiteLLMError):
    """The request was cancelled before it finished: the client closed, or its caller left."""


class APIStatusError(APIError):
    """The proxy answered with an error: an HTTP error status, or an error event in a stream."""


class SpendUnavailableError(APIStatusError):
    """The proxy keeps spend only in its database, and it runs without one."""


class BadRequestError(APIStatusError):
    """400: the request is invalid."""


class ModelNotFoundError(BadRequestError):
    """The proxy serves no model of that name."""


class ContextWindowExceededError(BadRequestError):
    """The prompt (plus ``max_tokens``) does not fit the model's context window."""


class ContentPolicyViolationError(BadRequestError):
    """The provider refused the content."""


class AuthenticationError(APIStatusError):
    """401, or LiteLLM's key errors: the API key is missing, malformed, unknown or expired.

    The message says so first, then gives the proxy's words, which alone can mislead: a proxy
    without a database answers any key but its master key with "No connected db.".
    """


class PermissionDeniedError(APIStatusError):
    """403, or the key, team or user may not use this model."""


class NotFoundError(APIStatusError):
    """404: no such route or object."""


class ConflictError(APIStatusError):
    """409: a conflicting concurrent change; worth retrying."""

    retryable = True


class UnprocessableEntityError(APIStatusError):
    """422: the request is well-formed but cannot be processed."""


class RateLimitError(APIStatusError):
    """429: a rate limit; ``retry_after`` is how long the proxy asked us to wait, if it said."""

    retryable = True


class BudgetExceededError(RateLimitError):
    """The key, team or user spent its budget: permanent until the budget resets."""

    retryable = False


class InternalServerError(APIStatusError):
    """500 or another 5xx not named below."""

    retryable = True


class ServiceUnavailableError(APIStatusError):
    """502, 503 or 504: the proxy or its upstream is down or overloaded."""

    retryable = True


# --- classification -------------------------------------------------------------------------


class _ErrorDetail(msgspec.Struct):
    message: Any = None
    type: Any = None
    param: Any = None
    code: Any = None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail | None = None
    detail: Any = None


_error_body_decoder = msgspec.json.Decoder(_ErrorBody)

_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    500: InternalServerError,
    502: ServiceUnavailableError,
    503: ServiceUnavailableError,
    504: ServiceUnavailableError,
}

# LiteLLM's ProxyErrorTypes, which decide the class whatever the status says.
_BY_TYPE: dict[str, type[LiteLLMError]] = {
    "budget_exceeded": BudgetExceededError,
    "auth_error": AuthenticationError,
    "authentication_error": AuthenticationError,
    "expired_key": AuthenticationError,
    "token_not_found_in_db": AuthenticationError,
    # Without a database, a key that is not the master key is answered 400 no_db_connection.
    "no_db_connection": AuthenticationError,
    "key_model_access_denied": PermissionDeniedError,
    "team_model_access_denied": PermissionDeniedError,
    "user_model_access_denied": PermissionDeniedError,
    "org_model_access_denied": PermissionDeniedError,
    "permission_denied_error": PermissionDeniedError,
    "throttling_error": RateLimitError,
    "rate_limit_exceeded": RateLimitError,
}

# On the wire these are told apart only by their message text.
_BY_MESSAGE: tuple[tuple[re.Pattern[str], type[LiteLLMError]], ...] = (
    (re.compile(r"invalid model name|model not found|no such model", re.I), ModelNotFoundError),
    (
        re.compile(
            r"context window|context length|maximum context|ContextWindowExceeded|too many tokens",
            re.I,
        ),
        ContextWindowExceededError,
    ),
    (
        re.compile(r"content[ _]policy|ContentPolicyViolation|content_filter", re.I),
        ContentPolicyViolationError,
    ),
    (re.compile(r"budget has been exceeded|BudgetExceeded", re.I), BudgetExceededError),
)

# An AuthenticationError's message begins with one of these, then gives the proxy's words.
_KEY_REFUSED: dict[str | None, str] = {
    None: "the proxy refused the API key",
    "no_db_connection": (
        "the proxy refused the API key (without a database it accepts only its master key)"
    ),
}

_TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?)\s*(ms|s|seconds?)\b", re.I)


def _clean(value: Any) -> str | None:
    """LiteLLM sends ``None`` as JSON null or as the string "None"; both mean absent."""
    if value is None:
        return None
    text = str(value)
    return None if text in ("", "None", "null") else text


def parse_retry_after(
    headers: Mapping[str, str], message: str = "", *, now: float | None = None
) -> float | None:
    """Seconds the proxy asked us to wait, or None.

    Reads ``retry-after-ms``, then ``retry-after`` (seconds or an HTTP date), then LiteLLM's
    ``llm_provider-retry-after``, then a "try again in N s" phrase in the message. Only finite
    positive values count. ``headers`` must be case-insensitive or lower-case keyed.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            value = float(raw_ms) / 1000.0
        except ValueError:
            pass
        else:
            if 0 < value < float("inf"):
                return value
    for name in ("retry-after", "llm_provider-retry-after"):
        raw = headers.get(name)
        if raw is None:
            continue
        delay: float | None
        try:
            delay = float(raw)
        except ValueError:
            delay = _http_date_delay(raw, now)
        if delay is not None and 0 < delay < float("inf"):
            return delay
    match = _TRY_AGAIN.search(message)
    if match:
        value = float(match.group(1))
        if match.group(2).lower() == "ms":
            value /= 1000.0
        if value > 0:
            return value
    return None


def _http_date_delay(raw: str, now: float | None) -> float | None:
    import time

    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    return when.timestamp() - (time.time() if now is None else now)


def error_from_body(
    status: int | None,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    model: str | None = None,
) -> LiteLLMError:
    """Build the typed error for an error answer: an HTTP status with its body, or (``status``
    None) the JSON of an in-band ``{"error": ...}`` stream event.

    The status picks the class first; LiteLLM's ``type`` then overrides it, and message patterns
    refine a 400 or 500. An in-band error takes its status from the ``code`` field.
    """
    headers = headers or {}
    message, etype, param, code = _fields(body)
    if status is None and code is not None and len(code) == 3 and code.isascii() and code.isdigit():
        status = int(code) if code[0] != "0" else None  # "000" or "042" is no HTTP status
    if not message:
        message = f"HTTP {status}" if status is not None else "error event without a message"
    cls = _classify(status, etype, message)
    if cls is AuthenticationError:
        message = f"{_KEY_REFUSED.get(etype, _KEY_REFUSED[None])}: {message}"
    retry_after = parse_retry_after(headers, message)
    return cls(
        message,
        status=status,
        type=etype,
        param=param,
        code=code,
        call_id=headers.get("x-litellm-call-id"),
        model=model,
        retry_after=retry_after,
    )


def error_from_response(
    status: int, headers: Mapping[str, str], body: bytes, *, model: str | None = None
) -> LiteLLMError:
    """The typed error for an HTTP error response (status >= 400)."""
    return error_from_body(status, body, headers, model=model)


def _fields(body: bytes) -> tuple[str, str | None, str | None, str | None]:
    try:
        return _json_fields(_error_body_decoder.decode(body), body)
    except (msgspec.DecodeError, RecursionError):  # not JSON, or nested too deep to decode or str()
        text = body.decode("utf-8", "replace").strip()
        return text[:2000], None, None, None


def _json_fields(
    decoded: _ErrorBody, body: bytes
) -> tuple[str, str | None, str | None, str | None]:
    if decoded.error is not None:
        detail = decoded.error
        message = (
            detail.message if isinstance(detail.message, str) else _clean(detail.message) or ""
        )
        return message, _clean(detail.type), _clean(detail.param), _clean(detail.code)
    if decoded.detail is not None:
        detail_value = decoded.detail
        if isinstance(detail_value, dict):
            inner = detail_value.get("error", detail_value)
            return str(inner), None, None, None
        return str(detail_value), None, None, None
    return body.decode("utf-8", "replace")[:2000], None, None, None


def _classify(status: int | None, etype: str | None, message: str) -> type[LiteLLMError]:
    by_type = _BY_TYPE.get(etype or "")
    if by_type is BudgetExceededError or by_type in (AuthenticationError, PermissionDeniedError):
        return by_type
    for pattern, cls in _BY_MESSAGE:
        if pattern.search(message):
            if cls is ModelNotFoundError and status not in (None, 400, 404):
                continue
            return cls
    if status == 408 or etype == "timeout":
        return RequestTimeoutError
    if by_type is not None:
        return by_type
    if status is None:
        return APIStatusError
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return InternalServerError
    return APIStatusError
