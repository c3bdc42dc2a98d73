"""The classifier, fed the exact bodies and headers LiteLLM proxy 1.110.2 was seen to send."""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_litellm._classify import error_from_body, error_from_response, parse_retry_after
from trio_litellm._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ConfigError,
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
    StreamInterruptedError,
    UnprocessableEntityError,
)


def body(message: str, type: Any, code: str, param: Any = None, **extra: Any) -> bytes:
    """LiteLLM's ProxyException JSON, as the proxy serialises it (compact)."""
    return msgspec.json.encode(
        {"error": {"message": message, "type": type, "param": param, "code": code, **extra}}
    )


# --- authentication ---------------------------------------------------------------------------

NO_KEY = (
    b'{"error":{"message":"Authentication Error, No api key passed in.",'
    b'"type":"auth_error","param":null,"code":"401"}}'
)
WRONG_KEY_NO_DB = (
    b'{"error":{"message":"No connected db.","type":"no_db_connection","param":null,"code":"400"}}'
)


def test_no_key_is_authentication_error_401() -> None:
    error = error_from_body(401, NO_KEY)
    assert type(error) is AuthenticationError
    assert (error.status, error.type, error.param, error.code) == (401, "auth_error", None, "401")
    assert error.message.endswith("Authentication Error, No api key passed in.")
    assert error.retryable is False


def test_wrong_key_without_db_is_authentication_error_despite_400() -> None:
    error = error_from_body(400, WRONG_KEY_NO_DB)
    assert type(error) is AuthenticationError
    assert (error.status, error.type) == (400, "no_db_connection")


def test_wrong_key_without_db_says_the_key_was_refused_then_the_proxys_words() -> None:
    message = error_from_body(400, WRONG_KEY_NO_DB).message
    assert message.startswith("the proxy refused the API key")
    assert "master key" in message  # why a proxy without a database refuses every other key
    assert message.endswith(": No connected db.")


def test_every_authentication_error_says_the_key_was_refused() -> None:
    error = error_from_body(401, NO_KEY)
    assert str(error).startswith(
        "the proxy refused the API key: Authentication Error, No api key passed in. | status=401"
    )


def test_malformed_key_is_authentication_error() -> None:
    message = "Authentication Error, Malformed API Key passed in. Ensure Key has `Bearer ` prefix."
    assert type(error_from_body(401, body(message, "auth_error", "401"))) is AuthenticationError


def test_model_access_denied_type_is_permission_denied_whatever_the_status() -> None:
    error = error_from_body(
        401, body("key not allowed to access model", "key_model_access_denied", "401")
    )
    assert type(error) is PermissionDeniedError


# --- request errors ---------------------------------------------------------------------------

UNKNOWN_MODEL_MESSAGE = (
    "/chat/completions: Invalid model name passed in model=nope. "
    "Call `/v1/models` to view available models for your key."
)
UNKNOWN_MODEL = (
    b'{"error":{"message":"' + UNKNOWN_MODEL_MESSAGE.encode() + b'","type":"invalid_request_error",'
    b'"param":null,"code":"400","provider_specific_fields":{"error":"'
    + UNKNOWN_MODEL_MESSAGE.encode()
    + b'"}}}'
)


def test_unknown_model_is_model_not_found() -> None:
    error = error_from_body(400, UNKNOWN_MODEL, model="nope")
    assert type(error) is ModelNotFoundError
    assert isinstance(error, BadRequestError)
    assert (error.status, error.type, error.model) == (400, "invalid_request_error", "nope")
    assert error.message == UNKNOWN_MODEL_MESSAGE


def test_invalid_model_name_in_a_5xx_is_not_model_not_found() -> None:
    error = error_from_body(500, body("upstream said: Invalid model name", "None", "500"))
    assert type(error) is InternalServerError


def test_missing_messages_is_bad_request_with_param() -> None:
    raw = (
        b'{"error":{"message":"/chat/completions: Missing required parameter: \'messages\'.",'
        b'"type":"invalid_request_error","param":"messages","code":"400"}}'
    )
    error = error_from_body(400, raw)
    assert type(error) is BadRequestError
    assert error.param == "messages"


def test_malformed_json_request_is_bad_request() -> None:
    raw = (
        b'{"error":{"message":"Invalid JSON payload: unexpected end of data: line 1 column 35 (char 34)",'
        b'"type":"invalid_request_error","param":"request_body","code":"400"}}'
    )
    error = error_from_body(400, raw)
    assert type(error) is BadRequestError
    assert error.param == "request_body"


def test_context_window_message_is_context_window_exceeded() -> None:
    message = (
        "litellm.ContextWindowExceededError: litellm.BadRequestError: OpenAIException - "
        "This model's maximum context length is 128000 tokens. However, your messages resulted "
        "in 130000 tokens."
    )
    error = error_from_body(400, body(message, "None", "400", "None"))
    assert type(error) is ContextWindowExceededError


def test_content_policy_message_is_content_policy_violation() -> None:
    message = (
        "litellm.ContentPolicyViolationError: litellm.BadRequestError: AzureException - "
        "The response was filtered due to the prompt triggering content_policy_violation."
    )
    error = error_from_body(400, body(message, "None", "400"))
    assert type(error) is ContentPolicyViolationError


# --- rate limits and budgets ------------------------------------------------------------------

BUDGET = (
    b'{"error":{"message":"Budget has been exceeded! Key=sk-...abcd Current cost: 0.0, '
    b'Estimated request cost: 3.64, Max budget: 2.5","type":"budget_exceeded","param":null,"code":"429"}}'
)
UPSTREAM_THROTTLE = body(
    "litellm.RateLimitError: RateLimitError: OpenAIException - fake upstream rate limit\n\n"
    "LiteLLM: model group 'rate-limited' failed with the error above and no fallback model group "
    "was found for it",
    "throttling_error",
    "429",
)
UPSTREAM_THROTTLE_HEADERS = {
    "llm_provider-retry-after": "7",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-limit-requests": "10",
    "x-litellm-call-id": "93fc36d4-2b1e-4c3a-9a57-0c6e0d1f2a3b",
}


def test_budget_exceeded_429_is_budget_error() -> None:
    error = error_from_body(429, BUDGET)
    assert type(error) is BudgetExceededError
    assert isinstance(error, RateLimitError)


def test_budget_exceeded_is_not_retryable() -> None:
    assert error_from_body(429, BUDGET).retryable is False


def test_budget_exceeded_sent_as_400_by_older_proxies_is_budget_error() -> None:
    raw = BUDGET.replace(b'"code":"429"', b'"code":"400"')
    assert type(error_from_body(400, raw)) is BudgetExceededError


def test_upstream_throttling_429_is_rate_limit_with_provider_retry_after() -> None:
    error = error_from_body(429, UPSTREAM_THROTTLE, UPSTREAM_THROTTLE_HEADERS)
    assert type(error) is RateLimitError
    assert error.retryable is True
    assert error.retry_after == 7.0
    assert error.call_id == "93fc36d4-2b1e-4c3a-9a57-0c6e0d1f2a3b"


def test_proxy_model_rate_limit_429_reads_provider_retry_after() -> None:
    raw = (
        b'{"error":{"message":"litellm.RateLimitError: Model rate limit exceeded. RPM limit=5, '
        b'current usage=6","type":"throttling_error","param":null,"code":"429"}}'
    )
    error = error_from_body(429, raw, {"llm_provider-retry-after": "60"})
    assert type(error) is RateLimitError
    assert error.retry_after == 60.0


def test_rate_limit_without_retry_after_has_none() -> None:
    assert error_from_body(429, UPSTREAM_THROTTLE).retry_after is None


def test_retry_after_ms_header_is_milliseconds() -> None:
    assert error_from_body(429, UPSTREAM_THROTTLE, {"retry-after-ms": "1500"}).retry_after == 1.5


def test_retry_after_ms_wins_over_retry_after() -> None:
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25


def test_retry_after_seconds_header() -> None:
    assert error_from_body(429, UPSTREAM_THROTTLE, {"retry-after": "3"}).retry_after == 3.0


def test_retry_after_plain_header_wins_over_provider_header() -> None:
    assert parse_retry_after({"retry-after": "2", "llm_provider-retry-after": "7"}) == 2.0


def test_retry_after_http_date_is_seconds_from_now() -> None:
    now = 1_445_412_450.0  # 30 s before Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=now) == 30.0


def test_retry_after_http_date_through_the_classifier_uses_the_clock() -> None:
    date = formatdate(time.time() + 60, usegmt=True)
    retry_after = error_from_body(429, UPSTREAM_THROTTLE, {"retry-after": date}).retry_after
    assert retry_after is not None
    assert 55.0 <= retry_after <= 61.0


def test_retry_after_http_date_in_the_past_is_ignored() -> None:
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "soon", ""])
def test_retry_after_that_is_not_a_positive_finite_delay_is_ignored(value: str) -> None:
    assert parse_retry_after({"retry-after": value, "retry-after-ms": value}) is None


def test_retry_after_phrase_in_message_is_read() -> None:
    assert parse_retry_after({}, "Rate limit reached. Please try again in 20ms.") == 0.02
    assert parse_retry_after({}, "Please try again in 1.5s.") == 1.5


# --- timeouts and server errors ---------------------------------------------------------------

UPSTREAM_TIMEOUT = body(
    "litellm.Timeout: APITimeoutError - Request timed out. Error_str: Request timed out. - "
    "timeout value=2.0, time taken=2.0 seconds LiteLLM Retried: 2 times, LiteLLM Max Retries: 2",
    "invalid_request_error",
    "408",
)
UPSTREAM_500 = body(
    "litellm.InternalServerError: InternalServerError: OpenAIException - fake upstream internal "
    "error\n\nLiteLLM: model group 'fail-500' failed with the error above and no fallback model "
    "group was found for it",
    "internal_server_error",
    "500",
)


def test_408_typed_invalid_request_is_request_timeout() -> None:
    error = error_from_body(408, UPSTREAM_TIMEOUT, {"x-litellm-timeout": "2.0"})
    assert type(error) is RequestTimeoutError
    assert (error.status, error.type, error.retryable) == (408, "invalid_request_error", True)


def test_upstream_500_is_retryable_internal_server_error() -> None:
    error = error_from_body(500, UPSTREAM_500)
    assert type(error) is InternalServerError
    assert (error.status, error.code, error.retryable) == (500, "500", True)


def test_upstream_connection_refused_500_is_internal_server_error() -> None:
    raw = body(
        "litellm.InternalServerError: InternalServerError: OpenAIException - Connection error.",
        "None",
        "500",
    )
    assert type(error_from_body(500, raw)) is InternalServerError


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_statuses_are_service_unavailable(status: int) -> None:
    error = error_from_body(
        status, body("litellm.ServiceUnavailableError: down", "None", str(status))
    )
    assert type(error) is ServiceUnavailableError
    assert error.retryable is True


@pytest.mark.parametrize("status", [501, 507, 599])
def test_other_5xx_are_internal_server_errors(status: int) -> None:
    assert type(error_from_body(status, b"")) is InternalServerError


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
    ],
)
def test_status_picks_the_class_when_the_body_says_nothing(
    status: int, cls: type[LiteLLMError]
) -> None:
    assert type(error_from_body(status, body("something", "None", str(status)))) is cls


def test_unmapped_4xx_is_a_plain_api_status_error() -> None:
    assert type(error_from_body(418, body("teapot", "None", "418"))) is APIStatusError


def test_conflict_is_retryable() -> None:
    assert error_from_body(409, b"").retryable is True


# --- other body shapes ------------------------------------------------------------------------


def test_fastapi_detail_body_gives_its_inner_error_message() -> None:
    raw = (
        b'{"detail":{"error":"DB not connected. This endpoint needs a database; set DATABASE_URL"}}'
    )
    error = error_from_body(500, raw)
    assert type(error) is InternalServerError
    assert error.message == "DB not connected. This endpoint needs a database; set DATABASE_URL"


def test_fastapi_detail_string_body_is_the_message() -> None:
    error = error_from_body(404, b'{"detail":"Not Found"}')
    assert type(error) is NotFoundError
    assert error.message == "Not Found"


def test_plain_text_body_is_the_message() -> None:
    error = error_from_response(
        500, {"content-type": "text/plain; charset=utf-8"}, b"Internal Server Error"
    )
    assert type(error) is InternalServerError
    assert error.message == "Internal Server Error"


def test_empty_body_message_names_the_status() -> None:
    assert error_from_body(502, b"").message == "HTTP 502"


def test_json_that_is_not_an_object_is_kept_as_text() -> None:
    assert error_from_body(500, b'"I\'m alive!"').message == '"I\'m alive!"'


def test_deeply_nested_detail_does_not_raise() -> None:
    raw = b'{"detail":' + b"[" * 5000 + b"]" * 5000 + b"}"
    error = error_from_body(500, raw)
    assert type(error) is InternalServerError
    assert error.message.startswith('{"detail":[[[')


def test_none_strings_for_type_and_param_become_none() -> None:
    error = error_from_body(500, body("boom", "None", "500", "None"))
    assert (error.type, error.param) == (None, None)


def test_null_type_and_param_become_none() -> None:
    error = error_from_body(
        500, b'{"error":{"message":"boom","type":null,"param":null,"code":"500"}}'
    )
    assert (error.type, error.param) == (None, None)


def test_non_string_message_is_stringified() -> None:
    raw = b'{"error":{"message":{"error":"No db connected"},"type":"internal_error","code":"500"}}'
    assert error_from_body(500, raw).message == "{'error': 'No db connected'}"


# --- in-band stream errors --------------------------------------------------------------------

IN_BAND_CONNECTION_ERROR = (
    b'{"error": {"message": "litellm.APIConnectionError: APIConnectionError: OpenAIException - '
    b'Connection error.", "type": "internal_server_error", "param": null, "code": "500"}}'
)


def test_in_band_error_takes_its_status_from_code() -> None:
    error = error_from_body(None, IN_BAND_CONNECTION_ERROR)
    assert type(error) is InternalServerError
    assert (error.status, error.code, error.type) == (500, "500", "internal_server_error")


def test_in_band_stream_start_timeout_is_request_timeout() -> None:
    raw = b'{"error": {"message": "Error processing stream start", "type": "internal_server_error", "param": null, "code": "408"}}'
    error = error_from_body(None, raw)
    assert type(error) is RequestTimeoutError
    assert error.status == 408


def test_in_band_error_without_code_is_a_plain_api_status_error() -> None:
    error = error_from_body(None, b'{"error": {"message": "something broke"}}')
    assert type(error) is APIStatusError
    assert error.status is None


@pytest.mark.parametrize("code", ["\u00b2", "9" * 5000, "5000", "rate_limit_exceeded"])
def test_in_band_code_that_is_not_an_http_status_is_not_used_as_one(code: str) -> None:
    error = error_from_body(None, body("boom", "None", code))
    assert error.status is None
    assert error.code == code


def test_in_band_error_without_message_says_so() -> None:
    assert error_from_body(None, b'{"error": {"code": "500"}}').message == "HTTP 500"


# --- presentation -----------------------------------------------------------------------------


def test_str_joins_message_status_type_model_and_call_id() -> None:
    error = error_from_body(429, UPSTREAM_THROTTLE, UPSTREAM_THROTTLE_HEADERS, model="rate-limited")
    assert str(error) == (
        f"{error.message} | status=429 | type=throttling_error | model=rate-limited "
        "| call_id=93fc36d4-2b1e-4c3a-9a57-0c6e0d1f2a3b"
    )


def test_str_leaves_out_what_is_unknown() -> None:
    assert str(error_from_body(502, b"")) == "HTTP 502 | status=502"


def test_repr_names_the_class_message_status_and_type() -> None:
    error = error_from_body(401, NO_KEY)
    assert repr(error) == (
        "AuthenticationError('the proxy refused the API key: Authentication Error, "
        "No api key passed in.', status=401, type='auth_error')"
    )


def test_error_from_response_matches_error_from_body() -> None:
    a = error_from_response(429, UPSTREAM_THROTTLE_HEADERS, UPSTREAM_THROTTLE, model="m")
    b = error_from_body(429, UPSTREAM_THROTTLE, UPSTREAM_THROTTLE_HEADERS, model="m")
    assert (type(a), str(a), a.retry_after) == (type(b), str(b), b.retry_after)


def test_stream_interrupted_carries_the_partial() -> None:
    partial = object()
    error = StreamInterruptedError("stream broke", partial=partial, status=200)
    assert (error.partial, error.status, error.retryable) == (partial, 200, False)


def test_config_error_is_a_value_error_naming_the_field() -> None:
    error = ConfigError("max_retries", "must be >= 0")
    assert isinstance(error, ValueError)
    assert (error.field, error.message) == ("max_retries", "max_retries: must be >= 0")


# --- properties -------------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_error_fields = st.fixed_dictionaries(
    {},
    optional={
        "message": _json,
        "type": _json,
        "param": _json,
        "code": _json | st.from_regex(r"\d{1,5}", fullmatch=True),
    },
)
_bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda e: msgspec.json.encode({"error": e}), _error_fields | _json),
    st.builds(lambda d: msgspec.json.encode({"detail": d}), _json),
    st.builds(msgspec.json.encode, _json),
)


@given(_bodies, st.integers(400, 599))
def test_error_from_body_never_raises_for_error_statuses(raw: bytes, status: int) -> None:
    error = error_from_body(status, raw)
    assert isinstance(error, LiteLLMError)
    assert error.status == status
    assert isinstance(error.message, str)
    assert error.message


@given(_bodies)
def test_error_from_body_never_raises_for_in_band_errors(raw: bytes) -> None:
    error = error_from_body(None, raw)
    assert isinstance(error, LiteLLMError)
    assert error.status is None or 100 <= error.status <= 999


# --- status codes ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503, 599])
def test_every_status_error_has_status_code(status: int) -> None:
    error = error_from_body(status, b"")
    assert error.status_code == error.status == status
