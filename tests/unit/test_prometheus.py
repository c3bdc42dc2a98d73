"""The Prometheus exposition: a valid text format, counters that never go down, histograms whose
buckets agree with the durations, and the ledger's lifetime totals and ``le`` counts under them."""

from __future__ import annotations

import math
import re
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx2
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _fakes import T0, completion, open_test_client, record
from trio_litellm import Client, InternalServerError, LatencyHistogram, prometheus_text
from trio_litellm._ledger import UsageLedger

# --- a hand-written check of the text exposition format (version 0.0.4) ---------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
_VALUE = r"[+-]?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|Inf|NaN)"
HELP = re.compile(rf"# HELP ({_NAME}) .*")
TYPE = re.compile(rf"# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)")
SAMPLE = re.compile(rf"({_NAME})(?:\{{((?:{_LABEL})(?:,{_LABEL})*)?\}})? ({_VALUE})")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_exposition(text: str) -> tuple[dict[str, str], Series]:
    """Check every line and return {family: type} and {(name, labels): value}.

    Each family has one TYPE line, before its samples and with its samples together; a sample
    belongs to the family declared last (a histogram's as ``_bucket``/``_sum``/``_count``); no
    series repeats; a histogram's buckets rise with ``le`` and end at ``+Inf`` equal to
    ``_count``.
    """
    assert text.endswith("\n")
    types: dict[str, str] = {}
    series: Series = {}
    current: str | None = None
    for line in text.splitlines():
        if match := HELP.fullmatch(line):
            continue
        if match := TYPE.fullmatch(line):
            name, kind = match.groups()
            assert name not in types, f"a second TYPE line for {name}"
            types[name] = kind
            current = name
            continue
        match = SAMPLE.fullmatch(line)
        assert match is not None, f"not a valid exposition line: {line!r}"
        name, labels, value = match.groups()
        assert current is not None
        allowed = {current}
        if types[current] == "histogram":
            allowed = {f"{current}_bucket", f"{current}_sum", f"{current}_count"}
        assert name in allowed, f"{name} outside its family {current}"
        pairs = tuple(LABEL.findall(labels or ""))
        assert len({key for key, _ in pairs}) == len(pairs), f"a repeated label in {line!r}"
        key = (name, pairs)
        assert key not in series, f"a repeated series: {line!r}"
        series[key] = float(value.replace("Inf", "inf"))
    for family, kind in types.items():
        if kind == "histogram":
            check_histogram(family, series)
    return types, series


def check_histogram(family: str, series: Series) -> None:
    buckets: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    for (name, labels), value in series.items():
        if name == f"{family}_bucket":
            rest = tuple(pair for pair in labels if pair[0] != "le")
            bound = float(dict(labels)["le"].replace("Inf", "inf"))
            buckets.setdefault(rest, []).append((bound, value))
    for rest, points in buckets.items():
        bounds = [bound for bound, _ in points]
        counts = [count for _, count in points]
        assert bounds == sorted(bounds) and bounds[-1] == math.inf
        assert counts == sorted(counts), f"{family}{rest}: buckets must not decrease"
        assert counts[-1] == series[(f"{family}_count", rest)]
        assert (f"{family}_sum", rest) in series


def test_the_checker_refuses_broken_expositions() -> None:
    good = '# TYPE a counter\na{x="1"} 1\n'
    parse_exposition(good)
    for bad in (
        'a{x="1"} 1\n',  # no TYPE
        '# TYPE a counter\na{x="1} 1\n',  # unclosed label
        "# TYPE a counter\na 1 2 3\n",
        '# TYPE a counter\na{x="1"} 1\na{x="1"} 2\n',  # repeated series
        "# TYPE h histogram\n"
        'h_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',  # decreasing
    ):
        with pytest.raises(AssertionError):
            parse_exposition(bad)


# --- through a client ---------------------------------------------------------------------------

BODY = completion(prompt_tokens=3, completion_tokens=5)
FAILURE = msgspec.json.encode({"error": {"message": "no", "type": "None", "code": "500"}})


async def answer(request: httpx2.Request) -> httpx2.Response:
    body = msgspec.json.decode(request.content)
    if body["model"] == "broken":
        return httpx2.Response(500, content=FAILURE)
    return httpx2.Response(200, content=BODY, headers={"x-litellm-response-cost": "0.25"})


def open_priced_client(**options: Any) -> AbstractAsyncContextManager[Client]:
    """A client whose proxy prices each answer 0.25 and fails the model ``broken``."""
    return open_test_client(answer, max_retries=0, **options)


async def test_the_exposition_is_valid_and_counts_what_the_client_did() -> None:
    async with open_priced_client() as client:
        for _ in range(3):
            await client.complete(
                model='we"ird\\model', messages=[{"role": "user", "content": "x"}]
            )
        with pytest.raises(InternalServerError):
            await client.complete(model="broken", messages=[{"role": "user", "content": "x"}])
        text = prometheus_text(client)
    types, series = parse_exposition(text)
    assert types["trio_litellm_requests_total"] == "counter"
    assert types["trio_litellm_request_duration_seconds"] == "histogram"
    weird = (("model", 'we\\"ird\\\\model'),)
    assert series[("trio_litellm_requests_total", (*weird, ("outcome", "ok")))] == 3
    broken = (("model", "broken"),)
    assert (
        series[("trio_litellm_requests_total", (*broken, ("outcome", "InternalServerError")))] == 1
    )
    assert series[("trio_litellm_tokens_total", (*weird, ("type", "prompt")))] == 9
    assert series[("trio_litellm_tokens_total", (*weird, ("type", "completion")))] == 15
    assert series[("trio_litellm_cost_usd_total", weird)] == 0.75
    assert series[("trio_litellm_request_duration_seconds_count", weird)] == 3
    assert series[("trio_litellm_request_duration_seconds_count", broken)] == 1
    assert series[("trio_litellm_in_flight_requests", ())] == 0
    assert ("trio_litellm_proxy_up", ()) not in series  # the monitor is off: no guess


async def test_usage_totals_count_everything_since_the_client_opened_per_model() -> None:
    async with open_priced_client() as client:
        for _ in range(2):
            await client.complete(model="m", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(InternalServerError):
            await client.complete(model="broken", messages=[{"role": "user", "content": "x"}])
        totals = client.usage_totals()
        assert list(totals) == ["broken", "m"]
        m, broken = totals["m"], totals["broken"]
        assert (m.requests, m.succeeded, m.errors, m.retries) == (2, 2, {}, 0)
        assert (m.prompt_tokens, m.completion_tokens, m.cost, m.uncosted) == (6, 10, 0.5, 0)
        assert (broken.requests, broken.errors) == (1, {"InternalServerError": 1})
        assert m.latency.count == 2 and m.ttft is None
        m.latency.add(1.0)  # the caller's copy: the client's figures do not move
        assert client.usage_totals()["m"].latency.count == 2


async def test_namespace_and_constant_labels_reach_every_sample() -> None:
    async with open_priced_client() as client:
        await client.complete(model="m", messages=[{"role": "user", "content": "x"}])
        text = prometheus_text(client, namespace="llm", labels={"proxy": "eu\nwest"})
    types, series = parse_exposition(text)
    assert all(name.startswith("llm_") for name in types)
    assert all(("proxy", "eu\\nwest") in labels for _, labels in series)


async def test_an_idle_client_exposes_its_gauges_only() -> None:
    async with open_priced_client() as client:
        _, series = parse_exposition(prometheus_text(client))
    assert not [name for name, _ in series if name.startswith("trio_litellm_requests")]
    assert series[("trio_litellm_max_in_flight_requests", ())] == 100


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"namespace": "9lives"}, "namespace"),
        ({"labels": {"model": "x"}}, "label name"),
        ({"labels": {"bad-name": "x"}}, "label name"),
        ({"buckets": (1.0, 0.5)}, "buckets"),
        ({"buckets": (1.0, math.inf)}, "buckets"),
    ],
)
async def test_bad_exposition_options_are_refused(options: dict[str, Any], problem: str) -> None:
    async with open_priced_client() as client:
        with pytest.raises(ValueError, match=problem):
            prometheus_text(client, **options)


# --- the ledger's lifetime totals and le counts -------------------------------------------------


def test_lifetime_totals_keep_what_retention_dropped() -> None:
    ledger = UsageLedger(bucket_seconds=60, retention=120)
    ledger.add(record(started_at=T0))
    ledger.add(record(started_at=T0 + 30, outcome="RateLimitError", cost=None))
    ledger.add(record(started_at=T0 + 3600, latency=2.0))
    assert ledger.usage().requests == 1  # the first two fell out of the window
    (total,) = ledger.lifetime().values()
    assert (total.requests, total.succeeded, total.errors) == (3, 2, {"RateLimitError": 1})
    assert total.prompt_tokens == 30
    assert total.latency.count == 3
    assert total.latency.sum == pytest.approx(3.0)


def test_lifetime_totals_never_decrease_as_time_moves_on() -> None:
    ledger = UsageLedger(bucket_seconds=60, retention=120)
    seen = 0
    for minute in range(30):
        ledger.add(record(started_at=T0 + 60 * minute, model=f"m{minute % 3}"))
        counted = sum(bucket.requests for bucket in ledger.lifetime().values())
        assert counted == seen + 1
        seen = counted
    assert sorted(ledger.lifetime()) == ["m0", "m1", "m2"]


@given(
    values=st.lists(st.floats(min_value=1e-4, max_value=600.0), min_size=1, max_size=200),
    bounds=st.lists(st.floats(min_value=1e-4, max_value=1000.0), min_size=1, max_size=10),
)
def test_le_counts_are_exact_but_for_durations_within_five_percent_of_a_bound(
    values: list[float], bounds: list[float]
) -> None:
    histogram = LatencyHistogram()
    for value in values:
        histogram.add(value)
    ordered = sorted(set(bounds))
    counts = histogram.count_at_or_below(ordered)
    assert counts == sorted(counts)
    for bound, count in zip(ordered, counts, strict=True):
        assert (
            sum(v <= bound * 0.95 for v in values)
            <= count
            <= sum(v <= bound * 1.05 for v in values)
        )
        if bound < min(values):
            assert count == 0
        if bound >= max(values):
            assert count == len(values)
    assert histogram.sum == pytest.approx(math.fsum(values))
