"""The client's usage in the Prometheus text exposition format (version 0.0.4), with no dependency.

Counters count from the moment the client opened and never go down while it lives: they come
from :meth:`Client.usage_totals`, whose ledger keeps a running total of the buckets that fall out
of its seven-day window. Latencies are histograms built from the ledger's log-scale
buckets: ``_count`` and ``_sum`` are exact, and a ``le`` bucket is exact except for durations
within about 5% of its bound, which may be counted on the wrong side of it. Gauges show the
client's state at the moment of the call. Rendering is O(models x retained minutes): call it
when scraped, not per request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from ._histogram import LatencyHistogram

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["DEFAULT_BUCKETS", "prometheus_text"]

DEFAULT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""Histogram bounds in seconds: LLM calls take from milliseconds (a cache) to minutes."""

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_RESERVED_LABELS = frozenset({"model", "outcome", "type", "le", "proxy_url"})


def prometheus_text(
    client: Client,
    *,
    namespace: str = "trio_litellm",
    labels: Mapping[str, str] | None = None,
    buckets: Sequence[float] = DEFAULT_BUCKETS,
) -> str:
    """The client's requests, errors, retries, tokens, cost, latency, time to first token,
    in-flight requests, connections, and each proxy's health, attempts and failures (labelled
    ``proxy_url``), as Prometheus text exposition.

    ``model`` labels are the requested models; ``outcome`` is ``ok`` or the error class
    (``RateLimitError``). Every metric name starts with ``namespace``; ``labels`` (say
    ``{"proxy": "eu"}``) are added to every sample, so several clients can be told apart
    (render each with its own namespace, or join them under one set of HELP/TYPE lines yourself).
    Serve the text with content type ``text/plain; version=0.0.4``, or write it to a node
    exporter's textfile directory.
    """
    if not _METRIC_NAME.fullmatch(namespace):
        raise ValueError(f"namespace must match [a-zA-Z_:][a-zA-Z0-9_:]*, got {namespace!r}")
    constant = dict(labels or {})
    for name in constant:
        if not _LABEL_NAME.fullmatch(name) or name.startswith("__") or name in _RESERVED_LABELS:
            raise ValueError(f"{name!r} cannot be a label name here")
    bounds = [float(bound) for bound in buckets]
    if any(not math.isfinite(b) for b in bounds) or bounds != sorted(set(bounds)):
        raise ValueError("buckets must be finite, ascending and distinct")

    out = _Exposition(namespace, constant)
    totals = client.usage_totals()
    out.family(
        "requests_total",
        "counter",
        'Requests finished, by requested model and outcome ("ok" or the error class).',
        (
            ({"model": model, "outcome": outcome}, count)
            for model, total in totals.items()
            for outcome, count in (("ok", total.succeeded), *total.errors.items())
            if count or outcome == "ok"
        ),
    )
    out.family(
        "retries_total",
        "counter",
        "Attempts beyond the first, by requested model.",
        (({"model": model}, total.retries) for model, total in totals.items()),
    )
    out.family(
        "tokens_total",
        "counter",
        "Tokens the proxy reported, by requested model and type (prompt or completion).",
        (
            ({"model": model, "type": kind}, count)
            for model, total in totals.items()
            for kind, count in (
                ("prompt", total.prompt_tokens),
                ("completion", total.completion_tokens),
            )
        ),
    )
    out.family(
        "cost_usd_total",
        "counter",
        "Cost of the requests whose cost is known (the proxy's, or from model prices), in USD.",
        (({"model": model}, total.cost) for model, total in totals.items()),
    )
    out.family(
        "uncosted_requests_total",
        "counter",
        "Successful requests whose cost is unknown (not in cost_usd_total).",
        (({"model": model}, total.uncosted) for model, total in totals.items()),
    )
    out.histogram(
        "request_duration_seconds",
        "Seconds from a request's start to its end, retries included, by requested model.",
        ((model, total.latency) for model, total in totals.items()),
        bounds,
    )
    out.histogram(
        "time_to_first_token_seconds",
        "Streams: seconds from the start to the first content, by requested model.",
        ((model, total.ttft) for model, total in totals.items() if total.ttft is not None),
        bounds,
    )
    statistics = client.statistics()
    dispatcher = statistics.dispatcher
    out.gauge("in_flight_requests", "Requests running now.", dispatcher.in_flight)
    out.gauge("max_in_flight_requests", "Requests that may run at once.", dispatcher.max_in_flight)
    out.gauge("open_connections", "Connections to the proxy in the pool.", client.open_connections)
    proxies = statistics.proxies
    if proxies and proxies[0].health != "unknown":
        out.family(
            "proxy_up",
            "gauge",
            "1 while the proxy's health monitor sees it up, else 0, by proxy.",
            (({"proxy_url": proxy.url}, proxy.health == "up") for proxy in proxies),
        )
    out.family(
        "proxy_in_flight_requests",
        "gauge",
        "Attempts on the wire to each proxy now.",
        (({"proxy_url": proxy.url}, proxy.in_flight) for proxy in proxies),
    )
    out.family(
        "proxy_requests_total",
        "counter",
        "Attempts each proxy answered (any status).",
        (({"proxy_url": proxy.url}, proxy.answered) for proxy in proxies),
    )
    out.family(
        "proxy_failures_total",
        "counter",
        "Attempts that failed on the connection to each proxy, or got a 502/503/504 there.",
        (({"proxy_url": proxy.url}, proxy.failures) for proxy in proxies),
    )
    return out.text()


class _Exposition:
    """Lines of one exposition; every sample gets the constant labels."""

    def __init__(self, namespace: str, constant: Mapping[str, str]) -> None:
        self._namespace = namespace
        self._constant = constant
        self._lines: list[str] = []

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"

    def _header(self, name: str, kind: str, help: str) -> str:
        full = f"{self._namespace}_{name}"
        self._lines.append(f"# HELP {full} {_escape_help(help)}")
        self._lines.append(f"# TYPE {full} {kind}")
        return full

    def _sample(self, name: str, labels: Mapping[str, str], value: float) -> None:
        merged = {**labels, **self._constant}
        shown = ",".join(f'{key}="{_escape_label(val)}"' for key, val in merged.items())
        self._lines.append(
            f"{name}{{{shown}}} {_number(value)}" if shown else f"{name} {_number(value)}"
        )

    def family(
        self,
        name: str,
        kind: str,
        help: str,
        samples: Iterable[tuple[Mapping[str, str], float]],
    ) -> None:
        full = self._header(name, kind, help)
        for labels, value in samples:
            self._sample(full, labels, value)

    def gauge(self, name: str, help: str, value: float) -> None:
        self.family(name, "gauge", help, [({}, value)])

    def histogram(
        self,
        name: str,
        help: str,
        histograms: Iterable[tuple[str, LatencyHistogram]],
        bounds: list[float],
    ) -> None:
        full = self._header(name, "histogram", help)
        for model, histogram in histograms:
            counts = histogram.count_at_or_below(bounds)
            for bound, count in zip(bounds, counts, strict=True):
                self._sample(f"{full}_bucket", {"model": model, "le": _number(bound)}, count)
            self._sample(f"{full}_bucket", {"model": model, "le": "+Inf"}, histogram.count)
            self._sample(f"{full}_sum", {"model": model}, histogram.sum)
            self._sample(f"{full}_count", {"model": model}, histogram.count)


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
