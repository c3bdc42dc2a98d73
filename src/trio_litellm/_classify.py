"""Which error of the tree a proxy's error answer is: a pure classifier of status, headers and body.

LiteLLM's error JSON carries ``code`` as a *string* of the status and ``type``/``param`` that are
often the literal string ``"None"``; its ``type`` does not follow the status (a 408 comes typed
``invalid_request_error``, a 429 ``throttling_error``), so the classifier reads the status, the
type and the message together. ``Retry-After`` and its kin are read here too. This module does no
IO.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import msgspec

from ._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ConflictError,
    ContentPolicyViolationError,
    ContextWindowExceededError,
    InternalServerError,
    LiteLLMError,
    ModelNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ServiceUnavailableError,
    UnprocessableEntityError,
)

__all__ = ["error_from_body", "error_from_fields", "error_from_response", "parse_retry_after"]


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
    message, etype, param, code = _fields(body)
    return error_from_fields(status, message, etype, param, code, headers, model=model)


def error_from_fields(
    status: int | None,
    message: str,
    etype: Any,
    param: Any,
    code: Any,
    headers: Mapping[str, str] | None = None,
    *,
    model: str | None = None,
) -> LiteLLMError:
    """:func:`error_from_body` for an error already decoded into its fields (a realtime error
    event's); ``etype``, ``param`` and ``code`` as LiteLLM sends them ("None" is absent)."""
    headers = headers or {}
    etype, param, code = _clean(etype), _clean(param), _clean(code)
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
