"""What the client counts of its requests: one record per request, and the figures made of them.

The client builds a :class:`RequestRecord` when a request ends (its cost from :func:`cost_of`) and
hands it to the usage ledger (``_ledger.py``), which answers :class:`UsageStats` for a time window
and :class:`UsageTotals` since the client opened. No trio, no IO.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from ._histogram import LatencyHistogram, Percentiles

__all__ = [
    "OTHER_MODELS",
    "CostSource",
    "LedgerStatistics",
    "ModelUsage",
    "RequestRecord",
    "UsageStats",
    "UsageTotals",
    "cost_of",
]

CostSource = Literal["header", "usage", "price"]
"""Where a request's cost came from: ``x-litellm-response-cost``, ``usage.cost``, or prices."""

OTHER_MODELS = "(other)"
"""The name under which models beyond ``UsageLedger(max_models=...)`` are counted."""


class RequestRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What one request did, start to end.

    ``model`` is the model the caller asked for, ``served_model`` the proxy's
    ``x-litellm-model-group`` and ``deployment_id`` its ``x-litellm-model-id``. ``started_at`` is
    wall-clock (``time.time()``) seconds; ``latency`` and ``ttft`` (streams only) are seconds.
    ``outcome`` is ``"ok"`` or the error class name (``"RateLimitError"``); ``attempts`` counts
    the client's tries (0: the request never left the client).
    """

    kind: Literal["chat", "embedding", "realtime"]
    model: str
    served_model: str | None
    deployment_id: str | None
    call_id: str | None
    started_at: float
    latency: float
    ttft: float | None
    stream: bool
    attempts: int
    outcome: str
    status: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: float | None
    cost_source: CostSource | None
    overhead_ms: float | None


def cost_of(
    meta_cost: float | None,
    usage_cost: float | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    prices: tuple[float | None, float | None] | None,
) -> tuple[float | None, CostSource | None]:
    """A request's cost and where it came from, or ``(None, None)`` when it cannot be known.

    The proxy's header cost first, else the body's ``usage.cost``, else the token counts times the
    model's (input, output) per-token prices from ``/model/info``. Pricing needs both token counts;
    a side with 0 tokens needs no price (an embedding model without an output price is priced).
    """
    if meta_cost is not None:
        return meta_cost, "header"
    if usage_cost is not None:
        return usage_cost, "usage"
    if prices is None or prompt_tokens is None or completion_tokens is None:
        return None, None
    input_price, output_price = prices
    if (input_price is None and prompt_tokens) or (output_price is None and completion_tokens):
        return None, None
    cost = 0.0
    if prompt_tokens:
        assert input_price is not None
        cost += prompt_tokens * input_price
    if completion_tokens:
        assert output_price is not None
        cost += completion_tokens * output_price
    return cost, "price"


class ModelUsage(msgspec.Struct, frozen=True, kw_only=True):
    """The figures of some requests: :class:`UsageStats` explains each one."""

    requests: int
    succeeded: int
    errors: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    cost_complete: bool
    retries: int
    latency: Percentiles | None
    ttft: Percentiles | None


class UsageStats(ModelUsage, frozen=True, kw_only=True):
    """What the client's requests did in a window, in total and per requested model.

    ``since``/``until`` are the window the figures cover: whole buckets, so they may start earlier
    and end later than the window asked for. ``errors`` counts failed requests by outcome (error
    class name); ``requests == succeeded + sum(errors.values())``. ``cost`` is None when no request
    had a known cost, else the sum of the known ones; ``cost_complete`` says whether every
    successful request had one (False when ``cost`` is None). ``retries`` counts extra attempts.
    ``latency`` covers requests that left the client, ``ttft`` streams; None when there are none.
    Models beyond the ledger's ``max_models`` are counted under :data:`OTHER_MODELS`.
    """

    since: float
    until: float
    per_model: dict[str, ModelUsage]


class LedgerStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a ledger's memory: buckets held, time slots, live models, records dropped
    for starting before the retention horizon."""

    memory_buckets: int
    slots: int
    models: int
    dropped_records: int


class UsageTotals(msgspec.Struct, frozen=True, kw_only=True):
    """Everything counted for one requested model since the client opened: figures that never go
    down while the client lives, what monotonic counters (Prometheus) are made of.

    ``requests == succeeded + sum(errors.values())``; ``errors`` counts failed requests by outcome
    (error class name). ``cost`` is the sum of the known costs (0.0 when none is known) and
    ``uncosted`` the successful requests whose cost is unknown. ``retries`` counts extra attempts.
    ``latency`` counts the requests that left the client, ``ttft`` streams (None when none was);
    both are fresh copies, the caller's to keep (and objects, not JSON: :class:`UsageStats` is
    the figures to encode).
    """

    requests: int
    succeeded: int
    errors: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    cost: float
    uncosted: int
    retries: int
    latency: LatencyHistogram
    ttft: LatencyHistogram | None
