"""What the proxy says about an answer in its headers: cost, call id, deployment, retries, limits.

Pure functions over a header mapping (case-insensitive or lower-case keyed); no IO.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import msgspec

__all__ = [
    "LIMITER_SCOPES",
    "MODEL_LIMITER_SCOPES",
    "RateLimitInfo",
    "ResponseMeta",
    "meta_from_headers",
    "parse_duration",
]

_MODEL_SCOPES = (
    "model_per_key",
    "model_per_team",
    "model_per_team_ptu",
    "model_per_organization",
    "model_per_project",
    "model_per_project_itpm",
    "model_per_project_otpm",
    "priority_model",
    "model_saturation_check",
)

LIMITER_SCOPES = (
    "api_key",
    "user",
    "team",
    "team_member",
    "end_user",
    "organization",
    "tag",
    "tag_per_key",
    "agent",
    "agent_session",
    "mcp_per_key",
    "mcp_per_team",
    "mcp_server",
    *_MODEL_SCOPES,
)
"""The scopes (descriptors) LiteLLM 1.110.2's own rate limiter counts, each reported on an answer
as ``x-ratelimit-<scope>-remaining-<requests|tokens>`` and ``x-ratelimit-<scope>-limit-...``
(``parallel_request_limiter_v3``; ``priority_model`` and ``model_saturation_check`` come from its
dynamic limiter). It sends them on non-streamed answers only, and no reset: each counts a fixed
window of ``LITELLM_RATE_LIMIT_WINDOW_SIZE`` seconds (60 by default) from its first request."""

MODEL_LIMITER_SCOPES = frozenset(_MODEL_SCOPES)
"""The scopes of :data:`LIMITER_SCOPES` that count one model group (for a key, team, organization,
project or priority); every other scope counts whatever model is asked for."""


class RateLimitInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The ``x-ratelimit-*`` headers; None where absent or unparseable. Resets are in seconds."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None


class ResponseMeta(msgspec.Struct, frozen=True, kw_only=True):
    """The proxy's ``x-litellm-*`` headers of one answer, and what the client saw of it.

    ``response_cost`` is absent on streams (the proxy sends headers before the cost is known) and
    for upstream models it has no price for. ``attempts`` counts the client's own tries.

    ``cache_hit`` says the proxy served the answer from its response cache (``litellm_settings:
    cache: true``), and ``cache_key`` is the key it was found under (``x-litellm-cache-key``,
    which the proxy sends only on a hit). LiteLLM 1.110.2 sends it for chat completions and
    streams, not for embeddings: a cached embedding reads as a miss (with a cost of 0).
    """

    status: int
    call_id: str | None = None
    model_id: str | None = None
    model_group: str | None = None
    model_name: str | None = None
    api_base: str | None = None
    version: str | None = None
    request_id: str | None = None
    response_cost: float | None = None
    key_spend: float | None = None
    response_duration_ms: float | None = None
    overhead_duration_ms: float | None = None
    attempted_retries: int | None = None
    attempted_fallbacks: int | None = None
    cache_hit: bool = False
    cache_key: str | None = None
    ratelimit: RateLimitInfo = RateLimitInfo()
    """The plain ``x-ratelimit-*`` headers: the limits of the deployment that served the answer."""
    scope_ratelimits: dict[str, RateLimitInfo] = msgspec.field(default_factory=dict)
    """What LiteLLM's own rate limiter says is left, by the scope it counts (``api_key``, ``user``,
    ``team``, ``end_user``, ``model_per_key``, ...: :data:`LIMITER_SCOPES`), from its
    ``x-ratelimit-<scope>-remaining-*`` and ``-limit-*`` headers; resets are None (it sends none).
    Empty when the answer has none of them: a key without limits, or a stream."""
    attempts: int = 1
    latency: float | None = None
    body: bytes | None = None
    """The answer's raw JSON, kept only when the request asked for it (batch output)."""


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(raw: str | None) -> float | None:
    """Seconds in a rate-limit reset header: ``12``, ``1.5``, ``12ms``, ``6m0s``, ``1h2m3.5s``.

    Negative or unparseable values (Azure's ``-1`` sentinel among them) are unknown: None.
    """
    if raw is None:
        return None
    text = raw.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        return value if math.isfinite(value) and value >= 0 else None
    total = 0.0
    position = 0
    for match in _GO_DURATION.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(text):
        return None
    return total


def _float(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _int(raw: str | None) -> int | None:
    value = _float(raw)
    return None if value is None or value < 0 else int(value)


def _remaining(raw: str | None) -> int | None:
    # The limiter sends its limit minus its count, which real usage can push below 0: none left.
    value = _float(raw)
    return None if value is None else max(int(value), 0)


_LIMITER_REMAINING = {
    f"x-ratelimit-{scope}-remaining-{kind}": scope
    for scope in LIMITER_SCOPES
    for kind in ("requests", "tokens")
}
_LIMITER_NAMES = frozenset(_LIMITER_REMAINING)
_RATELIMIT_NAMES = frozenset(
    f"x-ratelimit-{what}-{kind}"
    for what in ("limit", "remaining", "reset")
    for kind in ("requests", "tokens")
)
_NO_RATELIMIT = RateLimitInfo()
"""An answer without the deployment's ``x-ratelimit-*`` headers: one frozen value for all."""


def _scope_ratelimits(headers: Mapping[str, str]) -> dict[str, RateLimitInfo]:
    get = headers.get
    scopes: dict[str, RateLimitInfo] = {}
    for name in _LIMITER_NAMES.intersection(headers):
        scope = _LIMITER_REMAINING[name]
        if scope not in scopes:
            prefix = f"x-ratelimit-{scope}-"
            scopes[scope] = RateLimitInfo(
                limit_requests=_int(get(prefix + "limit-requests")),
                remaining_requests=_remaining(get(prefix + "remaining-requests")),
                limit_tokens=_int(get(prefix + "limit-tokens")),
                remaining_tokens=_remaining(get(prefix + "remaining-tokens")),
            )
    return scopes


def meta_from_headers(
    status: int,
    headers: Mapping[str, str],
    *,
    attempts: int = 1,
    latency: float | None = None,
    body: bytes | None = None,
) -> ResponseMeta:
    """Read a response's headers into a :class:`ResponseMeta`."""
    get = headers.get
    # Most answers carry none of the limiter's headers: one pass over the names (their hashes are
    # cached by the mapping) tells, for about a fifth of a microsecond.
    scopes = {} if _LIMITER_NAMES.isdisjoint(headers) else _scope_ratelimits(headers)
    ratelimit = (
        _NO_RATELIMIT
        if _RATELIMIT_NAMES.isdisjoint(headers)
        else RateLimitInfo(
            limit_requests=_int(get("x-ratelimit-limit-requests")),
            remaining_requests=_int(get("x-ratelimit-remaining-requests")),
            reset_requests=parse_duration(get("x-ratelimit-reset-requests")),
            limit_tokens=_int(get("x-ratelimit-limit-tokens")),
            remaining_tokens=_int(get("x-ratelimit-remaining-tokens")),
            reset_tokens=parse_duration(get("x-ratelimit-reset-tokens")),
        )
    )
    cache_key = get("x-litellm-cache-key") or None
    return ResponseMeta(
        status=status,
        call_id=get("x-litellm-call-id"),
        model_id=get("x-litellm-model-id"),
        model_group=get("x-litellm-model-group"),
        model_name=get("x-litellm-model-name"),
        api_base=get("x-litellm-model-api-base"),
        version=get("x-litellm-version"),
        request_id=get("x-request-id") or get("llm_provider-x-request-id"),
        response_cost=_float(get("x-litellm-response-cost")),
        key_spend=_float(get("x-litellm-key-spend")),
        response_duration_ms=_float(get("x-litellm-response-duration-ms")),
        overhead_duration_ms=_float(get("x-litellm-overhead-duration-ms")),
        attempted_retries=_int(get("x-litellm-attempted-retries")),
        attempted_fallbacks=_int(get("x-litellm-attempted-fallbacks")),
        cache_hit=cache_key is not None,
        cache_key=cache_key,
        ratelimit=ratelimit,
        scope_ratelimits=scopes,
        attempts=attempts,
        latency=latency,
        body=body,
    )
