"""Response metadata from the headers LiteLLM proxy 1.110.2 was seen to send."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_litellm._meta import RateLimitInfo, ResponseMeta, meta_from_headers, parse_duration

# --- parse_duration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("12", 12.0),
        ("1.5", 1.5),
        ("0", 0.0),
        (" 7 ", 7.0),
        ("12ms", 0.012),
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("1h2m3.5s", 3723.5),
        ("250us", 0.00025),
        ("250\u00b5s", 0.00025),
        ("1.5ms", 0.0015),
        ("0s", 0.0),
    ],
)
def test_parse_duration_reads_seconds_and_go_durations(raw: str, seconds: float) -> None:
    assert parse_duration(raw) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "raw", ["-1", "-0.5", "abc", "1x", "", "   ", None, "5s junk", "5s3", "nan", "inf", "s", "m5s"]
)
def test_parse_duration_is_unknown_for_negative_or_unparseable_values(raw: str | None) -> None:
    assert parse_duration(raw) is None


def go_duration(hours: int, minutes: int, seconds: int, millis: int) -> str:
    """The string Go's ``time.Duration.String()`` gives for this duration."""
    if hours == minutes == seconds == 0:
        return f"{millis}ms" if millis else "0s"
    fraction = f".{millis:03d}".rstrip("0").rstrip(".")
    text = f"{seconds}{fraction}s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return text


def test_go_duration_helper_matches_go() -> None:
    assert [go_duration(0, 6, 0, 0), go_duration(0, 0, 0, 12), go_duration(1, 2, 3, 500)] == [
        "6m0s",
        "12ms",
        "1h2m3.5s",
    ]


@given(
    hours=st.integers(0, 1000),
    minutes=st.integers(0, 59),
    seconds=st.integers(0, 59),
    millis=st.integers(0, 999),
)
def test_any_go_formatted_duration_parses_to_its_total_seconds(
    hours: int, minutes: int, seconds: int, millis: int
) -> None:
    total = hours * 3600 + minutes * 60 + seconds + millis / 1000
    parsed = parse_duration(go_duration(hours, minutes, seconds, millis))
    assert parsed == pytest.approx(total, rel=1e-9, abs=1e-9)


# --- meta_from_headers ------------------------------------------------------------------------

# A non-streaming answer from the mock deployment `fake-gpt`, headers exactly as observed.
MOCK_ANSWER_HEADERS = {
    "content-type": "application/json",
    "vary": "Origin",
    "x-frame-options": "DENY",
    "x-litellm-call-id": "93fc36d4-2b1e-4c3a-9a57-0c6e0d1f2a3b",
    "x-litellm-model-id": "ee671c58f4b54c9d1d0a4f0f6c7b8b0e6a1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e",
    "x-litellm-model-name": "openai/gpt-4o-mini",
    "x-litellm-model-api-base": "https://api.openai.com",
    "x-litellm-version": "1.110.2",
    "x-litellm-response-cost": "1.35e-05",
    "x-litellm-response-cost-original": "1.35e-05",
    "x-litellm-response-cost-discount-amount": "0.0",
    "x-litellm-response-cost-margin-amount": "0.0",
    "x-litellm-response-cost-margin-percent": "0.0",
    "x-litellm-response-cost-input": "1.5e-06",
    "x-litellm-response-cost-output": "1.2e-05",
    "x-litellm-key-spend": "1.35e-05",
    "x-litellm-response-duration-ms": "59.2",
    "x-litellm-callback-duration-ms": "0.0",
    "x-litellm-model-group": "fake-gpt",
    "x-litellm-attempted-retries": "0",
    "x-litellm-attempted-fallbacks": "0",
}


def test_mock_answer_headers_give_the_full_meta() -> None:
    meta = meta_from_headers(200, MOCK_ANSWER_HEADERS, attempts=2, latency=0.25)
    assert meta == ResponseMeta(
        status=200,
        call_id="93fc36d4-2b1e-4c3a-9a57-0c6e0d1f2a3b",
        model_id="ee671c58f4b54c9d1d0a4f0f6c7b8b0e6a1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e",
        model_group="fake-gpt",
        model_name="openai/gpt-4o-mini",
        api_base="https://api.openai.com",
        version="1.110.2",
        request_id=None,
        response_cost=1.35e-05,
        key_spend=1.35e-05,
        response_duration_ms=59.2,
        overhead_duration_ms=None,
        attempted_retries=0,
        attempted_fallbacks=0,
        ratelimit=RateLimitInfo(),
        attempts=2,
        latency=0.25,
    )


def test_zero_attempted_retries_is_zero_not_unknown() -> None:
    meta = meta_from_headers(200, MOCK_ANSWER_HEADERS)
    assert (meta.attempted_retries, meta.attempted_fallbacks) == (0, 0)


def test_no_headers_give_an_empty_meta_with_defaults() -> None:
    assert meta_from_headers(200, {}) == ResponseMeta(status=200)


def test_stream_answer_without_cost_header_has_unknown_cost() -> None:
    headers = {k: v for k, v in MOCK_ANSWER_HEADERS.items() if k != "x-litellm-response-cost"}
    assert meta_from_headers(200, headers).response_cost is None


def test_overhead_duration_is_read_when_the_proxy_sends_it() -> None:
    meta = meta_from_headers(200, {"x-litellm-overhead-duration-ms": "8.07"})
    assert meta.overhead_duration_ms == 8.07


# The proxy's own limits on a deployment with rpm/tpm set, plus OpenAI-style resets.
RATELIMIT_HEADERS = {
    "x-ratelimit-remaining-tokens": "99970",
    "x-ratelimit-limit-tokens": "100000",
    "x-ratelimit-remaining-requests": "99",
    "x-ratelimit-limit-requests": "100",
    "x-ratelimit-reset-requests": "6m0s",
    "x-ratelimit-reset-tokens": "12ms",
}


def test_ratelimit_headers_give_limits_remaining_and_resets_in_seconds() -> None:
    ratelimit = meta_from_headers(200, RATELIMIT_HEADERS).ratelimit
    assert (ratelimit.limit_requests, ratelimit.remaining_requests) == (100, 99)
    assert (ratelimit.limit_tokens, ratelimit.remaining_tokens) == (100000, 99970)
    assert ratelimit.reset_requests == 360.0
    assert ratelimit.reset_tokens == pytest.approx(0.012)


NUMERIC_HEADERS = [
    "x-litellm-response-cost",
    "x-litellm-key-spend",
    "x-litellm-response-duration-ms",
    "x-litellm-overhead-duration-ms",
    "x-litellm-attempted-retries",
    "x-litellm-attempted-fallbacks",
    *RATELIMIT_HEADERS,
]


@pytest.mark.parametrize("garbage", ["None", "nan", "abc", "inf", ""])
def test_garbage_header_values_become_none(garbage: str) -> None:
    meta = meta_from_headers(200, dict.fromkeys(NUMERIC_HEADERS, garbage))
    assert meta == ResponseMeta(status=200)


def test_negative_counts_and_resets_are_unknown() -> None:
    meta = meta_from_headers(200, dict.fromkeys(NUMERIC_HEADERS, "-1"))
    assert (meta.attempted_retries, meta.attempted_fallbacks) == (None, None)
    assert meta.ratelimit == RateLimitInfo()


def test_request_id_is_read_from_x_request_id() -> None:
    headers = {"x-request-id": "req_own", "llm_provider-x-request-id": "req_upstream"}
    assert meta_from_headers(200, headers).request_id == "req_own"


def test_request_id_falls_back_to_the_upstream_request_id() -> None:
    headers = {"llm_provider-x-request-id": "req_upstream"}
    assert meta_from_headers(200, headers).request_id == "req_upstream"


def test_error_answer_headers_keep_status_and_zero_cost() -> None:
    headers = {
        "x-litellm-call-id": "c0ffee",
        "x-litellm-response-cost": "0",
        "x-litellm-key-spend": "0.0",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-limit-requests": "10",
    }
    meta = meta_from_headers(429, headers)
    assert (meta.status, meta.call_id, meta.response_cost, meta.key_spend) == (429, "c0ffee", 0, 0)
    assert (meta.ratelimit.remaining_requests, meta.ratelimit.limit_requests) == (0, 10)


# --- the proxy's response cache -------------------------------------------------------------------

CACHE_KEY = "d32111f5f20c2d416783c550b4f612c51de5edb25a5083b8078b8c6684f19e9c"


def test_a_cache_key_header_marks_an_answer_from_the_proxys_cache() -> None:
    meta = meta_from_headers(200, {**MOCK_ANSWER_HEADERS, "x-litellm-cache-key": CACHE_KEY})
    assert (meta.cache_hit, meta.cache_key) == (True, CACHE_KEY)


def test_an_answer_without_a_cache_key_was_not_from_the_cache() -> None:
    meta = meta_from_headers(200, MOCK_ANSWER_HEADERS)
    assert (meta.cache_hit, meta.cache_key) == (False, None)


def test_an_empty_cache_key_is_no_hit() -> None:
    meta = meta_from_headers(200, {"x-litellm-cache-key": ""})
    assert (meta.cache_hit, meta.cache_key) == (False, None)


# --- LiteLLM's own limiter: x-ratelimit-<scope>-... ----------------------------------------------

# A key with rpm 4 (custom auth), its first answer in a minute, as observed on the real proxy:
# LiteLLM's limiter (parallel_request_limiter_v3) names the scope it counts in the header.
KEY_LIMITED_HEADERS = {
    **MOCK_ANSWER_HEADERS,
    "x-litellm-key-rpm-limit": "4",
    "x-ratelimit-api_key-remaining-requests": "3",
    "x-ratelimit-api_key-limit-requests": "4",
}


def test_the_limiters_key_headers_are_read_as_the_keys_scope() -> None:
    meta = meta_from_headers(200, KEY_LIMITED_HEADERS)
    assert meta.scope_ratelimits == {
        "api_key": RateLimitInfo(limit_requests=4, remaining_requests=3)
    }
    assert meta.ratelimit == RateLimitInfo()  # the deployment's own headers are apart


def test_an_answer_without_the_limiters_headers_has_no_scopes() -> None:
    assert meta_from_headers(200, MOCK_ANSWER_HEADERS).scope_ratelimits == {}
    assert meta_from_headers(200, {}).scope_ratelimits == {}


def test_every_scope_is_read_with_its_requests_and_tokens() -> None:
    headers = {
        "x-ratelimit-remaining-requests": "99",
        "x-ratelimit-user-remaining-requests": "7",
        "x-ratelimit-user-limit-requests": "10",
        "x-ratelimit-team-remaining-tokens": "900",
        "x-ratelimit-team-limit-tokens": "1000",
        "x-ratelimit-end_user-remaining-requests": "0",
        "x-ratelimit-end_user-limit-requests": "2",
        "x-ratelimit-model_per_key-remaining-requests": "1",
        "x-ratelimit-model_per_key-limit-requests": "5",
        "x-ratelimit-model_per_key-remaining-tokens": "40",
        "x-ratelimit-model_per_key-limit-tokens": "100",
    }
    assert meta_from_headers(200, headers).scope_ratelimits == {
        "user": RateLimitInfo(limit_requests=10, remaining_requests=7),
        "team": RateLimitInfo(limit_tokens=1000, remaining_tokens=900),
        "end_user": RateLimitInfo(limit_requests=2, remaining_requests=0),
        "model_per_key": RateLimitInfo(
            limit_requests=5, remaining_requests=1, limit_tokens=100, remaining_tokens=40
        ),
    }


def test_a_scope_over_its_token_limit_has_none_left() -> None:
    # The limiter counts real usage after the call: the count can pass the limit, and it sends
    # the difference as it is.
    headers = {
        "x-ratelimit-api_key-remaining-tokens": "-50",
        "x-ratelimit-api_key-limit-tokens": "100",
    }
    info = meta_from_headers(200, headers).scope_ratelimits["api_key"]
    assert (info.remaining_tokens, info.limit_tokens) == (0, 100)


def test_the_limiters_parallel_request_gauge_is_not_a_rate_limit() -> None:
    headers = {
        "x-ratelimit-api_key-remaining-max_parallel_requests": "0",
        "x-ratelimit-api_key-limit-max_parallel_requests": "1",
    }
    assert meta_from_headers(200, headers).scope_ratelimits == {}
